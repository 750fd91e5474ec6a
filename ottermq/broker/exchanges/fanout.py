"""The fanout exchange type: a message goes to every bound destination, whatever its routing key."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from ottermq.broker.exchange_types import Destination, Router
    from ottermq.broker.message import Message


class FanoutRouter:
    """Bindings of one fanout exchange: the destinations, counted, and a ready-made tuple of them."""

    __slots__ = ("_counts", "_destinations")

    def __init__(self) -> None:
        self._counts: dict[Destination, int] = {}
        self._destinations: tuple[Destination, ...] = ()

    def bind(self, routing_key: str, arguments: Mapping[str, Any], destination: Destination) -> None:
        """Add a binding (its key is irrelevant)."""
        self._counts[destination] = self._counts.get(destination, 0) + 1
        self._destinations = tuple(self._counts)

    def unbind(self, routing_key: str, arguments: Mapping[str, Any], destination: Destination) -> None:
        """Remove a binding."""
        count = self._counts.get(destination)
        if count is None:
            return
        if count > 1:
            self._counts[destination] = count - 1
        else:
            del self._counts[destination]
            self._destinations = tuple(self._counts)

    def route(self, routing_key: str, message: Message) -> Sequence[Destination]:
        """Every bound destination."""
        return self._destinations


class FanoutType:
    """The "fanout" exchange type."""

    __slots__ = ()
    name: Final = "fanout"

    def check(self) -> None:
        """Fanout exchanges are always available."""

    def new_router(self) -> Router:
        """An empty fanout router."""
        return FanoutRouter()

    def validate_binding(self, routing_key: str, arguments: Mapping[str, Any]) -> None:
        """Any key and arguments are acceptable."""


TYPE: Final = FanoutType()
