"""Exchange types by name: the registry, the `Router` protocol they provide, and the null type.

Strategy: an exchange type is a small plug-in: it validates binding arguments and makes one `Router` per
exchange, which indexes that exchange's bindings and answers "where does this message go" with each
destination once. Types register under their AMQP name; looking up an unknown name yields a null type whose
every use raises what RabbitMQ raises for it (503 COMMAND_INVALID), so callers never test for None.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, NoReturn, Protocol, TypeAlias

from ottermq.amqp.constants import COMMAND_INVALID
from ottermq.amqp.errors import AMQPConnectionError

if TYPE_CHECKING:
    from ottermq.broker.exchange import Exchange
    from ottermq.broker.message import Message
    from ottermq.broker.queue import Queue

    Destination: TypeAlias = Queue | Exchange


class Router(Protocol):
    """The bindings of one exchange, indexed for routing.

    The vhost calls `bind`/`unbind` once per distinct binding (source, destination, key, arguments); a
    destination bound several ways is still returned once by `route`.
    """

    def bind(self, routing_key: str, arguments: Mapping[str, Any], destination: Destination) -> None:
        """Add a binding."""
        ...

    def unbind(self, routing_key: str, arguments: Mapping[str, Any], destination: Destination) -> None:
        """Remove a binding added before with the same key, arguments and destination."""
        ...

    def route(self, routing_key: str, message: Message) -> Sequence[Destination]:
        """The destinations a message goes to, each once (the result must not be mutated)."""
        ...


class ExchangeType(Protocol):
    """A kind of exchange (direct, fanout, topic, headers...)."""

    @property
    def name(self) -> str:
        """The name clients declare it by."""
        ...

    def check(self) -> None:
        """Raise if this type cannot be used (only the null type does)."""
        ...

    def new_router(self) -> Router:
        """An empty router for a new exchange of this type."""
        ...

    def validate_binding(self, routing_key: str, arguments: Mapping[str, Any]) -> None:
        """Raise 406 when a binding's arguments make no sense for this type."""
        ...


class NullExchangeType:
    """What an unknown type name resolves to: every use raises 503 COMMAND_INVALID as RabbitMQ does."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def _refuse(self) -> NoReturn:
        # RabbitMQ words the empty name differently from a name it does not know.
        adjective = "invalid" if self.name == "" else "unknown"
        text = f"COMMAND_INVALID - {adjective} exchange type '{self.name}'"
        raise AMQPConnectionError(COMMAND_INVALID, text)

    def check(self) -> None:
        """Always refuses: the type does not exist."""
        self._refuse()

    def new_router(self) -> Router:
        """Always refuses: the type does not exist."""
        self._refuse()

    def validate_binding(self, routing_key: str, arguments: Mapping[str, Any]) -> None:
        """Always refuses: the type does not exist."""
        self._refuse()


_REGISTRY: dict[str, ExchangeType] = {}


def register(exchange_type: ExchangeType) -> None:
    """Make `exchange_type` available under its name (a later registration replaces an earlier one).

    A type's routing must depend only on its bindings, the routing key and the message's headers: a
    channel's publish run (channel_publish.PublishRun) routes the first of a batch's publishes with the
    same exchange and key and no headers, and sends the next ones the same way."""
    _REGISTRY[exchange_type.name] = exchange_type


def lookup(name: str) -> ExchangeType:
    """The type registered under `name`, or a null type that refuses every use."""
    found = _REGISTRY.get(name)
    return found if found is not None else NullExchangeType(name)


def registered() -> list[str]:
    """Names of the registered types."""
    return sorted(_REGISTRY)


def _register_builtin_types() -> None:
    # Imported here, not at the top: the type modules only need this module's protocols for typing.
    from ottermq.broker.exchanges import direct, fanout, headers, topic

    for exchange_type in (direct.TYPE, fanout.TYPE, topic.TYPE, headers.TYPE):
        register(exchange_type)


_register_builtin_types()
