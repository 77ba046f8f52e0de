"""Talking to Intercom's REST API: the HTTP client, and the sender that carries out plans with it."""
