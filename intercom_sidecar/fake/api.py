"""What route handlers take and give: :class:`Call` in, a :data:`Result` out or an :class:`ApiError` raised."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["ApiError", "Call", "Result", "company_not_found", "user_not_found"]

#: HTTP status and JSON payload (``None``: empty body).
Result = tuple[int, Any]


@dataclass(slots=True)
class Call:
    """One API call, as the routes see it: path parameters, query (last value wins) and parsed JSON body."""

    method: str
    params: list[str]
    query: dict[str, str]
    body: Any


class ApiError(Exception):
    """Answer ``status`` with Intercom's error envelope holding one ``{"code", "message"}``."""

    def __init__(
        self, status: int, code: str, message: str | None, *, headers: list[tuple[str, str]] | None = None
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or []


def user_not_found() -> ApiError:
    return ApiError(404, "not_found", "User Not Found")


def company_not_found() -> ApiError:
    return ApiError(404, "company_not_found", "Company Not Found")
