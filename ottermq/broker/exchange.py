"""Exchanges and bindings.

Strategy: an `Exchange` is the declared entity (name, type, flags, arguments) plus the router its type made
for it; the router holds the routing index, the exchange keeps the bindings it is the source of (for
listing, if-unused and deletion). The default exchange is an exchange like the others whose router looks
queues up by name; it holds no bindings and cannot be given any.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from ottermq.broker.arguments import freeze
from ottermq.broker.events import DestinationKind
from ottermq.broker.exchange_types import Router
from ottermq.broker.object_stats import ExchangeStats

if TYPE_CHECKING:
    from ottermq.broker.exchange_types import Destination
    from ottermq.broker.message import Message
    from ottermq.broker.queue import Queue

DEFAULT_EXCHANGE: Final = ""


@dataclass(frozen=True, slots=True)
class Binding:
    """A binding from exchange `source` to a queue or exchange; bindings differing only in argument order
    are the same binding."""

    source: str
    destination: str
    destination_kind: DestinationKind
    routing_key: str
    arguments: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    arguments_key: Any = field(default=(), repr=False)

    @classmethod
    def of(
        cls,
        source: str,
        destination: str,
        destination_kind: DestinationKind,
        routing_key: str,
        arguments: Mapping[str, Any] | None,
    ) -> Binding:
        """A binding whose identity includes its arguments, compared order-insensitively."""
        args = dict(arguments) if arguments else {}
        return cls(source, destination, destination_kind, routing_key, args, freeze(args))


class Exchange:
    """An exchange of one vhost."""

    __slots__ = (
        "alternate",
        "arguments",
        "auto_delete",
        "bindings",
        "deleted",
        "durable",
        "exchange_bindings",
        "internal",
        "name",
        "resource",
        "router",
        "stats",
        "type",
        "vhost",
    )

    def __init__(
        self,
        name: str,
        type: str,
        router: Router,
        vhost: str = "/",
        durable: bool = False,
        auto_delete: bool = False,
        internal: bool = False,
        arguments: dict[str, Any] | None = None,
    ) -> None:
        self.name = name
        self.type = type
        self.router = router
        self.vhost = vhost
        self.durable = durable
        self.auto_delete = auto_delete
        self.internal = internal
        self.arguments: dict[str, Any] = arguments if arguments is not None else {}
        alternate = self.arguments.get("alternate-exchange")
        # Where messages this exchange cannot route go (RabbitMQ's alternate-exchange argument).
        self.alternate: str | None = alternate if isinstance(alternate, str) else None
        # How RabbitMQ names an exchange in its error texts.
        self.resource = f"exchange '{name}' in vhost '{vhost}'"
        # Bindings this exchange is the source of, in binding order.
        self.bindings: dict[Binding, None] = {}
        # How many of them lead to exchanges: routing follows chains only when there are some.
        self.exchange_bindings = 0
        self.deleted = False
        # Message counters for the management API (object_stats.py).
        self.stats = ExchangeStats()

    def __repr__(self) -> str:
        return f"Exchange({self.name!r}, {self.type!r}, bindings={len(self.bindings)})"


class DefaultRouter:
    """The default exchange's router: the routing key names the queue."""

    __slots__ = ("_routes",)

    def __init__(self) -> None:
        self._routes: dict[str, tuple[Queue]] = {}

    def add_queue(self, queue: Queue) -> None:
        """A queue was declared: it is reachable by its name."""
        self._routes[queue.name] = (queue,)

    def remove_queue(self, name: str) -> None:
        """A queue was deleted."""
        self._routes.pop(name, None)

    def bind(self, routing_key: str, arguments: Mapping[str, Any], destination: Destination) -> None:
        """Never called: the vhost refuses bindings to the default exchange."""
        raise AssertionError("the default exchange takes no bindings")

    def unbind(self, routing_key: str, arguments: Mapping[str, Any], destination: Destination) -> None:
        """Never called: the default exchange has no bindings."""
        raise AssertionError("the default exchange has no bindings")

    def route(self, routing_key: str, message: Message) -> Sequence[Destination]:
        """The queue named by the routing key, if it exists."""
        return self._routes.get(routing_key, ())
