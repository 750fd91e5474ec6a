"""The headers exchange type: bindings match on message headers instead of the routing key.

Strategy: each binding is parsed once into its match mode and a tuple of (key, value, value-less) tests;
routing decodes the message's headers (lazily, once per message) and checks the bindings in turn.
Matching follows RabbitMQ: `x-match` is `all` (the default) or `any`, and since 3.10 `all-with-x` /
`any-with-x`; in `all`/`any` binding keys starting with "x-" are ignored, in the `-with-x` modes they are
matched too (only `x-match` itself never is). A binding value of void (None) matches on presence alone.
With `all` a binding with nothing to match matches every message; with `any` it matches none.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

from ottermq.amqp.constants import PRECONDITION_FAILED
from ottermq.amqp.errors import ChannelError
from ottermq.broker.arguments import erl, freeze, type_name

if TYPE_CHECKING:
    from ottermq.broker.exchange_types import Destination, Router
    from ottermq.broker.message import Message

MATCH_MODES: Final = ("all", "any", "all-with-x", "any-with-x")


def _same(expected: Any, actual: Any) -> bool:
    """Header value equality as RabbitMQ compares terms: numbers by value, booleans only with booleans."""
    if expected == actual:
        return (type(expected) is bool) == (type(actual) is bool)
    if isinstance(expected, str) and isinstance(actual, bytes):
        return expected.encode() == actual
    if isinstance(expected, bytes) and isinstance(actual, str):
        return expected == actual.encode()
    return False


class HeadersBinding:
    """One binding's match rule, parsed from its arguments."""

    __slots__ = ("match_all", "tests")

    def __init__(self, arguments: Mapping[str, Any]) -> None:
        mode = arguments.get("x-match", "all")
        self.match_all = mode not in ("any", "any-with-x")
        with_x = mode in ("all-with-x", "any-with-x")
        self.tests: tuple[tuple[str, Any, bool], ...] = tuple(
            (key, value, value is None)
            for key, value in arguments.items()
            if key != "x-match" and (with_x or not key.startswith("x-"))
        )

    def matches(self, headers: Mapping[str, Any]) -> bool:
        """Whether a message with these headers matches."""
        if self.match_all:
            for key, value, void in self.tests:
                if key not in headers or not (void or _same(value, headers[key])):
                    return False
            return True
        return any(key in headers and (void or _same(value, headers[key])) for key, value, void in self.tests)


def headers_match(arguments: Mapping[str, Any], headers: Mapping[str, Any] | None) -> bool:
    """Whether a binding with `arguments` matches a message with `headers`."""
    return HeadersBinding(arguments).matches(headers or {})


_NO_HEADERS: Final[Mapping[str, Any]] = {}


class HeadersRouter:
    """Bindings of one headers exchange, checked in turn for every message."""

    __slots__ = ("_bindings", "_flat")

    def __init__(self) -> None:
        self._bindings: dict[tuple[str, Any, Destination], HeadersBinding] = {}
        self._flat: tuple[tuple[HeadersBinding, Destination], ...] = ()

    def bind(self, routing_key: str, arguments: Mapping[str, Any], destination: Destination) -> None:
        """Add a binding (its routing key is irrelevant)."""
        self._bindings[(routing_key, freeze(dict(arguments)), destination)] = HeadersBinding(arguments)
        self._rebuild()

    def unbind(self, routing_key: str, arguments: Mapping[str, Any], destination: Destination) -> None:
        """Remove a binding."""
        if self._bindings.pop((routing_key, freeze(dict(arguments)), destination), None) is not None:
            self._rebuild()

    def _rebuild(self) -> None:
        self._flat = tuple((binding, key[2]) for key, binding in self._bindings.items())

    def route(self, routing_key: str, message: Message) -> Sequence[Destination]:
        """The destinations of every binding the message's headers match."""
        if not self._flat:
            return ()
        headers = message.headers or _NO_HEADERS
        out: dict[Destination, None] = {}
        for binding, destination in self._flat:
            if destination not in out and binding.matches(headers):
                out[destination] = None
        return tuple(out)


class HeadersType:
    """The "headers" exchange type."""

    __slots__ = ()
    name: Final = "headers"

    def check(self) -> None:
        """Headers exchanges are always available."""

    def new_router(self) -> Router:
        """An empty headers router."""
        return HeadersRouter()

    def validate_binding(self, routing_key: str, arguments: Mapping[str, Any]) -> None:
        """406 for an x-match that is not one of the four modes, worded as RabbitMQ words it."""
        if "x-match" not in arguments:
            return
        mode = arguments["x-match"]
        if not isinstance(mode, str):
            raise ChannelError(
                PRECONDITION_FAILED,
                f"PRECONDITION_FAILED - Invalid x-match field type {type_name(mode)} (value {erl(mode)}); "
                "expected longstr",
            )
        if mode not in MATCH_MODES:
            raise ChannelError(
                PRECONDITION_FAILED,
                f'PRECONDITION_FAILED - Invalid x-match field value <<"{mode}">>; '
                "expected all, any, all-with-x, or any-with-x",
            )


TYPE: Final = HeadersType()
