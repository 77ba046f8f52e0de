"""The admin address's live event view: `view.py` (routes and JSON API) and `static/` (the page, no build step)."""
