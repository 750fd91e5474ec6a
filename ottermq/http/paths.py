"""Request targets: split a raw HTTP path into percent-decoded segments, and match routes against them.

Strategy: the raw path is split on "/" before decoding, so a vhost named "/" travels as one segment
"%2F", exactly as RabbitMQ's management API expects. Decoding is strict: a malformed escape or bytes
that are not UTF-8 raise `BadPath`, which the server answers with 400, never with a guess.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Generic, TypeVar
from urllib.parse import unquote_to_bytes

_BAD_ESCAPE: Final = re.compile(rb"%(?![0-9A-Fa-f]{2})")

H = TypeVar("H")


class BadPath(ValueError):
    """A request target that cannot be decoded."""


def _decode(raw: bytes, plus_is_space: bool = False) -> str:
    if _BAD_ESCAPE.search(raw):
        raise BadPath("bad percent-encoding in the request path")
    if plus_is_space:
        raw = raw.replace(b"+", b" ")
    try:
        return unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise BadPath("the request path is not UTF-8") from None


def split_target(target: bytes) -> tuple[tuple[str, ...], dict[str, str]]:
    """(decoded path segments, query parameters) of a request target such as b"/api/queues/%2F/q?x=1".

    A trailing slash is ignored ("/api/queues/" is "/api/queues"), as in RabbitMQ.
    """
    path, _, query = target.partition(b"?")
    if not path.startswith(b"/"):
        raise BadPath("the request target must be an absolute path")
    raw_segments = path[1:].split(b"/")
    if raw_segments and raw_segments[-1] == b"":
        raw_segments.pop()
    segments = tuple(_decode(segment) for segment in raw_segments)
    params: dict[str, str] = {}
    if query:
        for pair in query.split(b"&"):
            if not pair:
                continue
            key, _, value = pair.partition(b"=")
            params[_decode(key, True)] = _decode(value, True)
    return segments, params


@dataclass(frozen=True, slots=True)
class Route(Generic[H]):
    """One path pattern ("api", "queues", "{vhost}") and its handler per HTTP method."""

    pattern: tuple[str, ...]
    handlers: dict[str, H]

    def match(self, segments: tuple[str, ...]) -> dict[str, str] | None:
        """The values of the pattern's {names} when `segments` fit it, else None."""
        if len(segments) != len(self.pattern):
            return None
        found: dict[str, str] = {}
        for part, segment in zip(self.pattern, segments, strict=True):
            if part.startswith("{"):
                found[part[1:-1]] = segment
            elif part != segment:
                return None
        return found


class NotFound(LookupError):
    """No route has this path."""


class MethodNotAllowed(LookupError):
    """A route has this path, but not for this method."""

    def __init__(self, allowed: list[str]) -> None:
        super().__init__(", ".join(allowed))
        self.allowed = allowed


class Router(Generic[H]):
    """Routes in registration order; the first whose pattern fits the path wins."""

    def __init__(self) -> None:
        self.routes: list[Route[H]] = []

    def add(self, method: str, path: str) -> Callable[[H], H]:
        """Decorator: register the handler for `method` on `path` ("/api/queues/{vhost}")."""
        pattern = tuple(path.strip("/").split("/")) if path.strip("/") else ()

        def register(handler: H) -> H:
            for route in self.routes:
                if route.pattern == pattern:
                    route.handlers[method] = handler
                    return handler
            self.routes.append(Route(pattern, {method: handler}))
            return handler

        return register

    def resolve(self, method: str, segments: tuple[str, ...]) -> tuple[H, dict[str, str]]:
        """The handler and path parameters; NotFound or MethodNotAllowed otherwise."""
        allowed: list[str] = []
        for route in self.routes:
            params = route.match(segments)
            if params is None:
                continue
            handler = route.handlers.get(method)
            if handler is None and method == "HEAD":
                handler = route.handlers.get("GET")
            if handler is not None:
                return handler, params
            allowed.extend(route.handlers)
        if allowed:
            raise MethodNotAllowed(sorted(set(allowed)))
        raise NotFound()
