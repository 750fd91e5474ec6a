"""What the HTTP transport and the management application exchange: `Request` in, `Response` out.

The transport (ottermq.http.server) builds a Request per HTTP request and calls the application (`App`)
with it; handlers answer a Response, or raise HttpError for RabbitMQ's error body.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class Request:
    """One HTTP request as the application sees it."""

    method: str
    target: bytes
    headers: dict[str, str]
    body: bytes
    peer_host: str
    # Set by the application once the request's credentials are accepted: the connection is proven.
    authenticated: bool = False
    # Set by the application while the request only waits for its password check: an unproven connection
    # may then be evicted to make room (the application's await is cancelled).
    waiting: bool = False


@dataclass(slots=True)
class Response:
    """What the application answers: status, body and extra headers."""

    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: list[tuple[str, str]] = field(default_factory=list)


def json_response(status: int, value: Any, headers: list[tuple[str, str]] | None = None) -> Response:
    """A JSON response (compact, as RabbitMQ sends it)."""
    body = json.dumps(value, separators=(",", ":")).encode()
    return Response(status, body, "application/json", headers or [])


def error_response(status: int, error: str, reason: str) -> Response:
    """RabbitMQ's error body: {"error": ..., "reason": ...}."""
    return json_response(status, {"error": error, "reason": reason})


class HttpError(Exception):
    """Raised by a handler to answer with RabbitMQ's error body."""

    def __init__(self, status: int, error: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.error = error
        self.reason = reason

    def response(self) -> Response:
        """The error as a response."""
        return error_response(self.status, self.error, self.reason)


App = Callable[[Request], Awaitable[Response]]
