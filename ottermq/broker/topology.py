"""The model of a virtual host: its exchanges, queues and bindings, how events change them, and routing.

Strategy: this is the state a log rebuilds. Each durable event type has one `_apply_*` method, and `apply`
is the entry point used by replay, by a follower, and by the live path right after it journals the same
event (vhost.py), so the state after any prefix of the log is the same live and rebuilt. Applying never
decides anything: consequences (an auto-delete exchange losing its last binding...) are decided on the live
path, after the apply, and become events of their own. Publishes are applied by `apply.apply_published`.

Routing looks at the source exchange's router first; only when the exchange has exchange-to-exchange
bindings, or an alternate exchange and nothing matched, does it walk the exchange graph, visiting each
exchange once (so cycles end) and collecting each queue once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Final, cast

from ottermq.amqp.constants import (
    ACCESS_REFUSED,
    NOT_FOUND,
    RESOURCE_LOCKED,
)
from ottermq.amqp.errors import ChannelError
from ottermq.broker import exchange_types
from ottermq.broker.churn import Churn
from ottermq.broker.content import Contents
from ottermq.broker.events import (
    REMOVAL_REASONS,
    BindingAdded,
    BindingRemoved,
    DestinationKind,
    Event,
    ExchangeDeclared,
    ExchangeDeleted,
    MessagesDelivered,
    MessagesRemoved,
    MessagesReturned,
    PolicyCleared,
    PolicySet,
    QueueDeclared,
    QueueDeleted,
    QueuePurged,
)
from ottermq.broker.exchange import DEFAULT_EXCHANGE, Binding, DefaultRouter, Exchange
from ottermq.broker.features import parse_features
from ottermq.broker.journal import Journal, MemoryJournal
from ottermq.broker.message import Message
from ottermq.broker.policies import VHostPolicies, apply_event, enforce
from ottermq.broker.queue import Queue
from ottermq.broker.queue_types import STREAM
from ottermq.broker.stream import MemoryStreams, StreamQueue, StreamStorage

if TYPE_CHECKING:
    from ottermq.broker.vhost import VHost

# Exchanges every vhost has from the start: (name, type, internal). All durable.
PREDECLARED: Final = (
    ("amq.direct", "direct", False),
    ("amq.fanout", "fanout", False),
    ("amq.topic", "topic", False),
    ("amq.headers", "headers", False),
    ("amq.match", "headers", False),
    ("amq.rabbitmq.trace", "topic", True),
)

_PREDECLARED_NAMES: Final = frozenset([DEFAULT_EXCHANGE, *(name for name, _, _ in PREDECLARED)])


class Topology:
    """Exchanges, queues and bindings of one virtual host, changed only by applying events."""

    def __init__(
        self, name: str = "/", journal: Journal | None = None, contents: Contents | None = None
    ) -> None:
        self.name = name
        self.journal: Journal = journal if journal is not None else MemoryJournal()
        self.exchanges: dict[str, Exchange] = {}
        self.queues: dict[str, Queue] = {}
        # Queues declared, created, deleted (churn.py): the broker's, shared by its vhosts, once it adopts us.
        self.churn = Churn()
        # The vhost's max-queues limit (negative = none); the Broker sets it from set_vhost_limits.
        self.max_queues = -1
        # A replicated node's vhost (the Broker sets it from its settings): no stream queues here.
        self.clustered = False
        # Its policies and operator policies (policies.py), applied at declare and when they change.
        self.policies = VHostPolicies()
        # The message counters of its channels that have ended (Channel.fold_counts), and of management
        # API publishes and gets, by channel.MESSAGE_COUNTERS name (absent = 0).
        self.message_counts: dict[str, int] = {}
        # Bindings by destination, to drop them with the destination.
        self._bound_to: dict[tuple[DestinationKind, str], dict[Binding, None]] = {}
        self._default_router = DefaultRouter()
        # Where its stream queues keep their records (the broker's; see stream.py).
        self.streams: StreamStorage = MemoryStreams()
        # True once a stream was declared here: publishing looks for streams among the targets only then.
        self.streams_declared = False
        # The owner of every message content its queues hold (the broker's; see content.py).
        self.contents: Contents = contents if contents is not None else Contents()
        # While tx.commit runs: the removals of its single record (see begin_tx).
        self._tx_events: list[Event] | None = None
        self.exchanges[DEFAULT_EXCHANGE] = Exchange(
            DEFAULT_EXCHANGE, "direct", self._default_router, name, durable=True
        )
        for exchange_name, type_name, internal in PREDECLARED:
            router = exchange_types.lookup(type_name).new_router()
            self.exchanges[exchange_name] = Exchange(
                exchange_name, type_name, router, name, durable=True, internal=internal
            )
        self._appliers: dict[type, Callable[[Any], None]] = {
            ExchangeDeclared: self._apply_exchange_declared,
            ExchangeDeleted: self._apply_exchange_deleted,
            QueueDeclared: self._apply_queue_declared,
            QueueDeleted: self._apply_queue_deleted,
            QueuePurged: self._apply_queue_purged,
            MessagesRemoved: self._apply_messages_removed,
            MessagesDelivered: self._apply_messages_delivered,
            MessagesReturned: self._apply_messages_returned,
            BindingAdded: self._apply_binding_added,
            BindingRemoved: self._apply_binding_removed,
            PolicySet: self._apply_policy,
            PolicyCleared: self._apply_policy,
        }

    def _resource(self, kind: str, name: str) -> str:
        return f"{kind} '{name}' in vhost '{self.name}'"

    def _not_found(self, kind: str, name: str) -> ChannelError:
        return ChannelError(NOT_FOUND, f"NOT_FOUND - no {kind} '{name}' in vhost '{self.name}'")

    @staticmethod
    def _default_refused() -> ChannelError:
        return ChannelError(
            ACCESS_REFUSED, "ACCESS_REFUSED - operation not permitted on the default exchange"
        )

    @staticmethod
    def _locked(queue: Queue) -> ChannelError:
        return ChannelError(
            RESOURCE_LOCKED,
            f"RESOURCE_LOCKED - cannot obtain exclusive access to locked {queue.resource}. It could be "
            "originally declared on another connection or the exclusive property value does not match "
            "that of the original declaration.",
        )

    def _messages_removed(self, queue: Queue, ids: list[int], reason: str) -> None:
        """A durable queue settled logged messages for good: journal (without waiting), then forget them.

        With a failed journal the removal is not logged (consumers keep draining); after a restart those
        messages come back, which at-least-once allows. A suspended journal (disk full) still stages it,
        to be written when it resumes.
        """
        if reason not in REMOVAL_REASONS:
            reason = "drop"  # the log knows a fixed set of reasons; the removal itself is what matters
        event = MessagesRemoved(self.name, queue.name, tuple(ids), reason)
        if self._tx_events is not None:
            self._tx_events.append(event)
        elif not self.journal.failed or self.journal.suspended:
            self.journal.append(event)
        self._apply_messages_removed(event)

    def _message_delivered(self, queue: Queue, msg_id: int) -> None:
        """A durable queue counting deliveries handed a logged message to a consumer that must
        acknowledge it: journal (gathered per turn, not waited for), then apply. Not logged with a failed
        journal (a restart then does not count that delivery's loss)."""
        event = MessagesDelivered(self.name, queue.name, (msg_id,))
        if not self.journal.failed or self.journal.suspended:
            self.journal.append(event)
        queue.apply_delivered(event.ids)

    def _messages_returned(self, queue: Queue, ids: list[int]) -> None:
        """A durable queue counting deliveries got logged messages back: journal (not waited for: a
        return is confirmed to no one), then apply (one failed delivery each)."""
        event = MessagesReturned(self.name, queue.name, tuple(ids))
        if not self.journal.failed or self.journal.suspended:
            self.journal.append(event)
        queue.apply_returned(event.ids)

    def _queue_unused(self, queue: Queue) -> None:
        """An auto-delete queue lost its last consumer: `VHost` deletes it. (A model only replayed into, as
        the `memento replay` decoder builds it, never has consumers.)"""

    def recovered(self, crashed: bool) -> None:
        """Replay is over: restored messages become ready (redelivered after a crash)."""
        for queue in self.queues.values():
            if queue.durable:
                queue.recovered(crashed)

    def return_unacked(self) -> int:
        """Serving again (a restart, a promotion): the durable queues counting deliveries take back what
        was out to consumers when the log ended (`Queue.return_unacked`); how many came back."""
        return sum(queue.return_unacked() for queue in list(self.queues.values()) if queue.durable)

    def enforce_limits(self) -> None:
        """Serving again (a restart, a promotion): a durable queue holding more than its length limit drops
        its head, as the publish that took it over the limit did. That drop is logged after the publish is
        confirmed (the message reaches its queue once durable), so a crash in between brings the dropped
        message back."""
        enforce(queue for queue in list(self.queues.values()) if queue.durable)

    def apply(self, event: Event) -> None:
        """Apply one entity or removal event to the model: the replay entry point, also used by the live
        path. Publishes are applied by `apply.apply_published`."""
        self._appliers[type(event)](event)

    def bindings(self) -> Iterator[Binding]:
        """Every binding of the vhost, by source exchange."""
        for exchange in self.exchanges.values():
            yield from exchange.bindings

    def durable_events(self) -> list[Event]:
        """Events that rebuild this vhost's durable exchanges, queues and bindings from scratch (a snapshot
        of the durable state, in an order `apply` accepts)."""
        events: list[Event] = list(self.policies.events())
        for exchange in self.exchanges.values():
            if exchange.durable and exchange.name not in _PREDECLARED_NAMES:
                events.append(
                    ExchangeDeclared(
                        self.name,
                        exchange.name,
                        exchange.type,
                        True,
                        exchange.auto_delete,
                        exchange.internal,
                        dict(exchange.arguments),
                    )
                )
        for queue in self.queues.values():
            if queue.durable:
                arguments = dict(queue.arguments)
                events.append(QueueDeclared(self.name, queue.name, True, False, queue.auto_delete, arguments))
        for binding in self.bindings():
            destination = self._destination(binding.destination_kind, binding.destination)
            if destination is not None and destination.durable and self.exchanges[binding.source].durable:
                events.append(
                    BindingAdded(
                        self.name,
                        binding.source,
                        binding.destination,
                        binding.destination_kind,
                        binding.routing_key,
                        dict(binding.arguments),
                    )
                )
        return events

    def route(self, exchange: Exchange | str, routing_key: str, message: Message) -> Sequence[Queue]:
        """The queues a message published to `exchange` reaches, each once (do not mutate the result).

        Follows exchange-to-exchange bindings (each exchange visited once, so cycles end) and alternate
        exchanges. `exchange` is an `Exchange` (from `exchange_for_publish`) or a name (404 if missing).
        """
        if isinstance(exchange, str):
            found = self.exchanges.get(exchange)
            if found is None:
                raise self._not_found("exchange", exchange)
            exchange = found
        destinations = exchange.router.route(routing_key, message)
        if not exchange.exchange_bindings and (destinations or exchange.alternate is None):
            return cast("Sequence[Queue]", destinations)  # no exchange among them
        return self._route_graph(exchange, routing_key, message, destinations)

    def _route_graph(
        self, exchange: Exchange, routing_key: str, message: Message, destinations: Sequence[object]
    ) -> Sequence[Queue]:
        queues: dict[Queue, None] = {}
        seen: set[Exchange] = {exchange}
        pending: list[tuple[Exchange, Sequence[object]]] = [(exchange, destinations)]
        exchanges = self.exchanges
        while pending:
            current, found = pending.pop()
            if not found and current.alternate is not None:
                alternate = exchanges.get(current.alternate)
                if alternate is not None and alternate not in seen:
                    seen.add(alternate)
                    pending.append((alternate, alternate.router.route(routing_key, message)))
                continue
            for destination in found:
                if isinstance(destination, Queue):
                    queues[destination] = None
                elif isinstance(destination, Exchange) and destination not in seen:
                    seen.add(destination)
                    pending.append((destination, destination.router.route(routing_key, message)))
        return tuple(queues)

    def _apply_exchange_declared(self, event: ExchangeDeclared) -> None:
        if event.name in self.exchanges:
            return
        router = exchange_types.lookup(event.type).new_router()
        self.exchanges[event.name] = Exchange(
            event.name,
            event.type,
            router,
            self.name,
            event.durable,
            event.auto_delete,
            event.internal,
            dict(event.arguments),
        )
        if self.policies:
            self.exchanges[event.name].alternate = self.policies.alternate(self.exchanges[event.name])

    def _apply_exchange_deleted(self, event: ExchangeDeleted) -> None:
        exchange = self.exchanges.get(event.name)
        if exchange is None:
            return
        for binding in list(exchange.bindings):
            self._unlink(binding)
        for binding in list(self._bound_to.get(("exchange", event.name), ())):
            self._unlink(binding)
        del self.exchanges[event.name]
        exchange.deleted = True

    def _apply_queue_declared(self, event: QueueDeclared, owner: object | None = None) -> None:
        if event.name in self.queues:
            return
        arguments = dict(event.arguments)
        if arguments.get("x-queue-type") == STREAM:
            stream = StreamQueue(event.name, self.name, arguments, None)
            stream.log = self.streams.open(self.name, event.name, arguments, stream.dispatch)
            stream.contents = self.contents
            self.streams_declared = True
            self.queues[event.name] = stream
            self._default_router.add_queue(stream)
            return
        # What the policies make of the arguments (None: no policy applies to the queue).
        effective = self.policies.queue_arguments(event.name, arguments) if self.policies else None
        queue = Queue(
            event.name,
            self.name,
            event.durable,
            owner if event.exclusive else None,
            event.auto_delete,
            arguments,
            # Dead lettering and x-expires act through the vhost's operations.
            parse_features(effective if effective is not None else arguments, cast("VHost", self)),
        )
        queue.policy_arguments = effective
        queue.on_unused = self._queue_unused
        queue.contents = self.contents
        if queue.durable:
            queue.on_removed = self._messages_removed
            queue.on_delivered = self._message_delivered
            queue.on_returned = self._messages_returned
        self.queues[event.name] = queue
        self._default_router.add_queue(queue)

    def _apply_policy(self, event: PolicySet | PolicyCleared) -> None:
        apply_event(self, event)

    def _apply_queue_deleted(self, event: QueueDeleted) -> None:
        queue = self.queues.get(event.name)
        if queue is None:
            return
        for binding in list(self._bound_to.get(("queue", event.name), ())):
            self._unlink(binding)
        del self.queues[event.name]
        self._default_router.remove_queue(event.name)
        queue.drop()

    def _apply_messages_removed(self, event: MessagesRemoved) -> None:
        queue = self.queues.get(event.queue)
        if queue is not None:
            queue.forget(event.ids)

    def _apply_messages_delivered(self, event: MessagesDelivered) -> None:
        queue = self.queues.get(event.queue)
        if queue is not None:
            queue.apply_delivered(event.ids)

    def _apply_messages_returned(self, event: MessagesReturned) -> None:
        queue = self.queues.get(event.queue)
        if queue is not None:
            queue.apply_returned(event.ids)

    def _apply_queue_purged(self, event: QueuePurged) -> None:
        queue = self.queues.get(event.name)
        if queue is not None:
            queue.purge()

    def _destination(self, kind: DestinationKind, name: str) -> Queue | Exchange | None:
        return self.queues.get(name) if kind == "queue" else self.exchanges.get(name)

    def _apply_binding_added(self, event: BindingAdded) -> None:
        source = self.exchanges.get(event.source)
        destination = self._destination(event.destination_kind, event.destination)
        if source is None or destination is None:
            return
        binding = Binding.of(
            event.source, event.destination, event.destination_kind, event.routing_key, event.arguments
        )
        if binding in source.bindings:
            return
        source.bindings[binding] = None
        source.router.bind(binding.routing_key, binding.arguments, destination)
        if binding.destination_kind == "exchange":
            source.exchange_bindings += 1
        self._bound_to.setdefault((binding.destination_kind, binding.destination), {})[binding] = None

    def _apply_binding_removed(self, event: BindingRemoved) -> None:
        binding = Binding.of(
            event.source, event.destination, event.destination_kind, event.routing_key, event.arguments
        )
        self._unlink(binding)

    def _unlink(self, binding: Binding) -> None:
        """Remove one binding from its source's router and from both indexes."""
        source = self.exchanges.get(binding.source)
        destination = self._destination(binding.destination_kind, binding.destination)
        if source is None or binding not in source.bindings:
            return
        del source.bindings[binding]
        if destination is not None:
            # Routers key arguments order-insensitively, so these arguments name the binding as bound.
            source.router.unbind(binding.routing_key, binding.arguments, destination)
        if binding.destination_kind == "exchange":
            source.exchange_bindings -= 1
        key = (binding.destination_kind, binding.destination)
        by_destination = self._bound_to.get(key)
        if by_destination is not None:
            by_destination.pop(binding, None)
            if not by_destination:
                del self._bound_to[key]
