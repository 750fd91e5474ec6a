"""The direct exchange type: a message goes to the destinations bound with exactly its routing key.

Strategy: a dict from binding key to the destinations bound with it (counted, since one destination may be
bound with the same key under different arguments), plus a ready-made tuple per key, so routing is one dict
lookup and allocates nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from ottermq.broker.exchange_types import Destination, Router
    from ottermq.broker.message import Message

_NOWHERE: Final[tuple[()]] = ()


class DirectRouter:
    """Bindings of one direct exchange."""

    __slots__ = ("_bound", "_routes")

    def __init__(self) -> None:
        self._bound: dict[str, dict[Destination, int]] = {}
        self._routes: dict[str, tuple[Destination, ...]] = {}

    def bind(self, routing_key: str, arguments: Mapping[str, Any], destination: Destination) -> None:
        """Add a binding."""
        counts = self._bound.setdefault(routing_key, {})
        counts[destination] = counts.get(destination, 0) + 1
        self._routes[routing_key] = tuple(counts)

    def unbind(self, routing_key: str, arguments: Mapping[str, Any], destination: Destination) -> None:
        """Remove a binding."""
        counts = self._bound.get(routing_key)
        if counts is None or destination not in counts:
            return
        if counts[destination] > 1:
            counts[destination] -= 1
            return
        del counts[destination]
        if counts:
            self._routes[routing_key] = tuple(counts)
        else:
            del self._bound[routing_key]
            del self._routes[routing_key]

    def route(self, routing_key: str, message: Message) -> Sequence[Destination]:
        """The destinations bound with `routing_key`."""
        return self._routes.get(routing_key, _NOWHERE)


class DirectType:
    """The "direct" exchange type."""

    __slots__ = ()
    name: Final = "direct"

    def check(self) -> None:
        """Direct exchanges are always available."""

    def new_router(self) -> Router:
        """An empty direct router."""
        return DirectRouter()

    def validate_binding(self, routing_key: str, arguments: Mapping[str, Any]) -> None:
        """Any key and arguments are acceptable."""


TYPE: Final = DirectType()
