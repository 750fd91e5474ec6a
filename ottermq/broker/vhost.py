"""A virtual host: its exchanges, queues and bindings, and routing between them.

Strategy: every change follows validate -> journal -> apply. The public methods check the request against
the current state and raise RabbitMQ's errors; a change is then described as an event (events.py), appended
to the journal when it touches durable state, and applied by the `_apply_*` method for that event, the same
method `apply` uses to replay a journal. Applying never decides anything: consequences such as an
auto-delete exchange losing its last binding are decided on the live path, after the apply, and become
events of their own. Exclusive queues are never durable, so their owner (an opaque object, in practice the
connection) never needs to be journaled.

Routing looks at the source exchange's router first; only when the exchange has exchange-to-exchange
bindings, or an alternate exchange and nothing matched, does it walk the exchange graph, visiting each
exchange once (so cycles end) and collecting each queue once.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Final, cast

from ottermq.amqp.constants import (
    ACCESS_REFUSED,
    INTERNAL_ERROR,
    NOT_FOUND,
    PRECONDITION_FAILED,
    RESOURCE_LOCKED,
)
from ottermq.amqp.errors import AMQPConnectionError, ChannelError
from ottermq.broker import exchange_types
from ottermq.broker.apply import Placed, apply_published
from ottermq.broker.arguments import (
    EXCHANGE_EQUIVALENCE_KEYS,
    QUEUE_EQUIVALENCE_KEYS,
    assert_arguments_equivalent,
    assert_field_equivalent,
    check_exchange_arguments,
    check_queue_arguments,
)
from ottermq.broker.content import Contents
from ottermq.broker.events import (
    REMOVAL_REASONS,
    BindingAdded,
    BindingRemoved,
    DestinationKind,
    Event,
    ExchangeDeclared,
    ExchangeDeleted,
    MessagePublished,
    MessagesRemoved,
    QueueDeclared,
    QueueDeleted,
    QueuePurged,
    TxCommitted,
    message_id,
)
from ottermq.broker.exchange import DEFAULT_EXCHANGE, Binding, DefaultRouter, Exchange
from ottermq.broker.features import parse_features
from ottermq.broker.journal import Journal, MemoryJournal
from ottermq.broker.message import Message, message_priority
from ottermq.broker.queue import Queue
from ottermq.broker.ttl import now_ms, properties_ttl

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

SERVER_NAMED_PREFIX: Final = "amq.gen-"


def server_generated_name(prefix: str = SERVER_NAMED_PREFIX) -> str:
    """`prefix` plus 22 url-safe base64 characters (128 random bits), as RabbitMQ names queues."""
    return prefix + base64.urlsafe_b64encode(os.urandom(16)).decode("ascii").rstrip("=")


class VHost:
    """Exchanges, queues and bindings of one virtual host."""

    def __init__(
        self, name: str = "/", journal: Journal | None = None, contents: Contents | None = None
    ) -> None:
        self.name = name
        self.journal: Journal = journal if journal is not None else MemoryJournal()
        self.exchanges: dict[str, Exchange] = {}
        self.queues: dict[str, Queue] = {}
        # The vhost's max-queues limit (negative = none); the Broker sets it from set_vhost_limits.
        self.max_queues = -1
        # Bindings by destination, to drop them with the destination.
        self._bound_to: dict[tuple[DestinationKind, str], dict[Binding, None]] = {}
        self._default_router = DefaultRouter()
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
            BindingAdded: self._apply_binding_added,
            BindingRemoved: self._apply_binding_removed,
        }

    def __repr__(self) -> str:
        return f"VHost({self.name!r}, {len(self.exchanges)} exchanges, {len(self.queues)} queues)"

    # -- texts ------------------------------------------------------------------------------------------

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

    # -- the journal ------------------------------------------------------------------------------------

    def _journal(self, event: Event, durable: bool) -> None:
        if durable:
            if self.journal.failed:
                raise AMQPConnectionError(
                    INTERNAL_ERROR, "INTERNAL_ERROR - the journal has failed: no durable change is accepted"
                )
            if self._tx_events is not None:
                self._tx_events.append(event)
            else:
                self.journal.append(event)

    # -- publishing -------------------------------------------------------------------------------------

    def publish(self, message: Message, queues: Sequence[Queue]) -> tuple[int, list[Placed]]:
        """A message routed to `queues` (outside a transaction): logged when persistent and one of them
        is durable, and applied (`apply_published`) as a replay would; then added to the others. Returns
        the position to wait for before confirming (0: nothing logged; -1: the journal refuses, nothing
        was logged, and the message was added as a transient one) and each queue's entry, which the
        caller makes ready (`Queue.enqueue`) at once, or once the position is durable."""
        contents = self.contents
        properties = message.properties
        ttl = properties_ttl(properties)
        priority = message_priority(properties)
        size = message.body_size
        position = 0
        if message.persistent:
            durable = tuple([queue.name for queue in queues if queue.durable])
            if durable:
                journal = self.journal
                if journal.failed:
                    position = -1
                else:
                    event = MessagePublished(
                        self.name,
                        durable,
                        message.exchange,
                        message.routing_key,
                        properties,
                        message.body,
                        now_ms(),
                    )
                    position = journal.append(event)
                    msg_id = message_id(position)
                    placed = apply_published(self, event, msg_id, journal.last_loc, message)
                    if len(placed) < len(queues):
                        others = [queue for queue in queues if not queue.durable]
                        contents.retain(msg_id, len(others))
                        published = event.published
                        placed.extend(
                            (queue, queue.new_entry(msg_id, size, priority, published, ttl))
                            for queue in others
                        )
                    return position, placed
        msg_id = contents.put(message, len(queues))
        now = now_ms() if ttl is not None or self._ttl_queues(queues) else 0
        return position, [(queue, queue.new_entry(msg_id, size, priority, now, ttl)) for queue in queues]

    @staticmethod
    def _ttl_queues(queues: Sequence[Queue]) -> bool:
        return any(queue.features is not None and queue.features.message_ttl is not None for queue in queues)

    def publish_now(self, message: Message, queues: Sequence[Queue]) -> int:
        """`publish`, and every entry made ready at once (no confirm waits for it); the position."""
        position, placed = self.publish(message, queues)
        for queue, entry in placed:
            queue.enqueue(entry)
        return position

    def publish_nacked(self, placed: Iterable[Placed]) -> None:
        """Published entries that never became ready (a nacked publish, held by a confirm channel until
        its record was durable, or refused by a full queue) leave: a logged one's removal is logged, so
        that the record, should it still be written (a full disk resumes), does not bring the message
        back after a restart; the others give their content reference back."""
        for queue, entry in placed:
            if queue.durable and not queue.deleted and entry.msg_id > 0:
                self._messages_removed(queue, [entry.msg_id], "nacked")
            else:
                self.contents.release(entry.msg_id)

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

    def begin_tx(self) -> None:
        """tx.commit starts: removals are collected, to be logged with the publishes in one record."""
        self._tx_events = []

    def end_tx(self, publishes: Sequence[tuple[Message, Sequence[Queue]]]) -> tuple[int, list[list[Placed]]]:
        """tx.commit's work is done: log the collected removals and the persistent publishes to durable
        queues as one TxCommitted record, and apply its publishes; the position to wait for before
        tx.commit-ok (0 when nothing was logged) and each publish's entries, to be made ready when it
        is durable. 541 when the journal has failed and there is something to log."""
        events = self._tx_events or []
        self._tx_events = None
        logged: list[tuple[int, MessagePublished]] = []
        published = now_ms()
        for index, (message, queues) in enumerate(publishes):
            if message.persistent:
                durable = tuple([queue.name for queue in queues if queue.durable])
                if durable:
                    event = MessagePublished(
                        self.name,
                        durable,
                        message.exchange,
                        message.routing_key,
                        message.properties,
                        message.body,
                        published,
                    )
                    logged.append((index, event))
        position = 0
        placed: list[list[Placed]] = []
        journal = self.journal
        if events or logged:
            if journal.failed:
                raise AMQPConnectionError(
                    INTERNAL_ERROR, "INTERNAL_ERROR - the journal has failed: the transaction was not logged"
                )
            position = journal.append(TxCommitted((*events, *[event for _, event in logged])))
        loc = journal.last_loc
        by_index = dict(logged)
        number = 0
        for index, (message, queues) in enumerate(publishes):
            logged_event = by_index.get(index)
            if logged_event is None:
                placed.append(self.publish(message, queues)[1])
                continue
            msg_id = message_id(position, number)
            entries = apply_published(self, logged_event, msg_id, loc + number, message)
            number += 1
            others = [queue for queue in queues if not queue.durable]
            if others:
                self.contents.retain(msg_id, len(others))
                ttl = properties_ttl(message.properties)
                priority = message_priority(message.properties)
                entries.extend(
                    (queue, queue.new_entry(msg_id, message.body_size, priority, published, ttl))
                    for queue in others
                )
            placed.append(entries)
        return position, placed

    def recovered(self, crashed: bool) -> None:
        """Replay is over: restored messages become ready (redelivered after a crash)."""
        for queue in self.queues.values():
            if queue.durable:
                queue.recovered(crashed)

    def apply(self, event: Event) -> None:
        """Apply one entity or removal event to the model: the replay entry point, also used by the live
        path. Publishes are applied by `apply.apply_published`."""
        self._appliers[type(event)](event)

    # -- exchanges --------------------------------------------------------------------------------------

    def lookup_exchange(self, name: str) -> Exchange:
        """The exchange called `name` (404 if there is none)."""
        exchange = self.exchanges.get(name)
        if exchange is None:
            raise self._not_found("exchange", name)
        return exchange

    def exchange_for_publish(self, name: str) -> Exchange:
        """The exchange a basic.publish names: 404 if missing, 403 if internal."""
        exchange = self.exchanges.get(name)
        if exchange is None:
            raise self._not_found("exchange", name)
        if exchange.internal:
            raise ChannelError(
                ACCESS_REFUSED, f"ACCESS_REFUSED - cannot publish to internal {exchange.resource}"
            )
        return exchange

    def declare_exchange(
        self,
        name: str,
        type: str = "direct",
        passive: bool = False,
        durable: bool = False,
        auto_delete: bool = False,
        internal: bool = False,
        arguments: Mapping[str, Any] | None = None,
    ) -> Exchange:
        """exchange.declare: the exchange, created if new (errors and checks in RabbitMQ's order)."""
        if passive:
            if name == DEFAULT_EXCHANGE:
                raise self._default_refused()
            return self.lookup_exchange(name)
        exchange_types.lookup(type).check()
        if name == DEFAULT_EXCHANGE:
            raise self._default_refused()
        durable, auto_delete, internal = bool(durable), bool(auto_delete), bool(internal)
        args = dict(arguments) if arguments else {}
        existing = self.exchanges.get(name)
        if existing is not None:
            resource = existing.resource
            assert_field_equivalent("type", resource, existing.type, type)
            assert_field_equivalent("durable", resource, existing.durable, durable)
            assert_field_equivalent("auto_delete", resource, existing.auto_delete, auto_delete)
            assert_field_equivalent("internal", resource, existing.internal, internal)
            assert_arguments_equivalent(EXCHANGE_EQUIVALENCE_KEYS, resource, existing.arguments, args)
            return existing
        if name.startswith("amq."):
            raise ChannelError(
                ACCESS_REFUSED, f"ACCESS_REFUSED - exchange name '{name}' contains reserved prefix 'amq.*'"
            )
        check_exchange_arguments(self._resource("exchange", name), args)
        event = ExchangeDeclared(self.name, name, type, durable, auto_delete, internal, args)
        self._journal(event, durable)
        self._apply_exchange_declared(event)
        return self.exchanges[name]

    def delete_exchange(self, name: str, if_unused: bool = False) -> None:
        """exchange.delete: deleting a missing exchange is fine; the default and amq.* ones are not."""
        if name == DEFAULT_EXCHANGE:
            raise self._default_refused()
        if name.startswith("amq."):
            raise ChannelError(
                ACCESS_REFUSED,
                f"ACCESS_REFUSED - deletion of system {self._resource('exchange', name)} not allowed",
            )
        exchange = self.exchanges.get(name)
        if exchange is None:
            return
        if if_unused and exchange.bindings:
            raise ChannelError(PRECONDITION_FAILED, f"PRECONDITION_FAILED - {exchange.resource} in use")
        self._delete_exchange(exchange)

    def _delete_exchange(self, exchange: Exchange) -> None:
        sources = self._sources_of("exchange", exchange.name)
        event = ExchangeDeleted(self.name, exchange.name)
        self._journal(event, exchange.durable)
        self._apply_exchange_deleted(event)
        self._auto_delete_exchanges(sources)

    def _sources_of(self, kind: DestinationKind, name: str) -> list[str]:
        bindings = self._bound_to.get((kind, name))
        return list(dict.fromkeys(binding.source for binding in bindings)) if bindings else []

    def _auto_delete_exchanges(self, names: list[str]) -> None:
        """Delete the auto-delete exchanges among `names` that have lost their last binding."""
        for name in names:
            exchange = self.exchanges.get(name)
            if exchange is not None and exchange.auto_delete and not exchange.bindings:
                self._delete_exchange(exchange)

    # -- queues -----------------------------------------------------------------------------------------

    def lookup_queue(self, name: str, owner: object | None = None) -> Queue:
        """The queue called `name`, usable by `owner`: 404 if missing, 405 if exclusive to another owner."""
        queue = self.queues.get(name)
        if queue is None:
            raise self._not_found("queue", name)
        if queue.exclusive_owner is not None and queue.exclusive_owner is not owner:
            raise self._locked(queue)
        return queue

    def declare_queue(
        self,
        name: str = "",
        passive: bool = False,
        durable: bool = False,
        exclusive: bool = False,
        auto_delete: bool = False,
        arguments: Mapping[str, Any] | None = None,
        owner: object | None = None,
        check: Callable[[str, bool], None] | None = None,
    ) -> Queue:
        """queue.declare: the queue, created if new; an empty name gets a server-generated one.

        `owner` identifies the declaring connection (required for exclusive queues). The declare-ok
        counts are `queue.ready_count` and `queue.consumer_count`. `check(name, new)` (access control)
        runs once the final name is known, before anything is looked up or created, as RabbitMQ orders it.
        """
        if passive:
            found = self.lookup_queue(name, owner)
            if found.features is not None:
                found.features.used()  # any declare restarts x-expires, as in RabbitMQ
            return found
        if exclusive and owner is None:
            raise ValueError("an exclusive queue needs an owner")
        exclusive, auto_delete = bool(exclusive), bool(auto_delete)
        durable = bool(durable) and not exclusive  # exclusive queues never outlive their connection
        if not name:
            name = server_generated_name()
            while name in self.queues:
                name = server_generated_name()
        elif name.startswith("amq."):
            raise ChannelError(
                ACCESS_REFUSED, f"ACCESS_REFUSED - queue name '{name}' contains reserved prefix 'amq.*'"
            )
        args = dict(arguments) if arguments else {}
        existing = self.queues.get(name)
        if check is not None:
            check(name, existing is None)
        if existing is not None:
            if existing.exclusive_owner is not (owner if exclusive else None):
                raise self._locked(existing)
            resource = existing.resource
            assert_field_equivalent("durable", resource, existing.durable, durable)
            assert_field_equivalent("auto_delete", resource, existing.auto_delete, auto_delete)
            assert_arguments_equivalent(QUEUE_EQUIVALENCE_KEYS, resource, existing.arguments, args)
            if existing.features is not None:
                existing.features.used()  # a redeclare restarts x-expires
            return existing
        check_queue_arguments(self._resource("queue", name), args)
        if 0 <= self.max_queues <= len(self.queues):
            raise ChannelError(
                PRECONDITION_FAILED,
                f"PRECONDITION_FAILED - cannot declare queue '{name}': queue limit in vhost '{self.name}' "
                f"({self.max_queues}) is reached",
            )
        event = QueueDeclared(self.name, name, durable, exclusive, auto_delete, args)
        self._journal(event, durable)
        self._apply_queue_declared(event, owner)
        return self.queues[name]

    def delete_queue(
        self, name: str, owner: object | None = None, if_unused: bool = False, if_empty: bool = False
    ) -> int:
        """queue.delete: the number of ready messages dropped (0 for a missing queue, which is fine)."""
        queue = self.queues.get(name)
        if queue is None:
            return 0
        if queue.exclusive_owner is not None and queue.exclusive_owner is not owner:
            raise self._locked(queue)
        if if_empty and queue.ready_count:
            raise ChannelError(PRECONDITION_FAILED, f"PRECONDITION_FAILED - {queue.resource} not empty")
        if if_unused and queue.consumer_count:
            raise ChannelError(PRECONDITION_FAILED, f"PRECONDITION_FAILED - {queue.resource} in use")
        count = queue.ready_count
        self._delete_queue(queue)
        return count

    def _delete_queue(self, queue: Queue) -> None:
        sources = self._sources_of("queue", queue.name)
        event = QueueDeleted(self.name, queue.name)
        self._journal(event, queue.durable)
        self._apply_queue_deleted(event)
        self._auto_delete_exchanges(sources)

    def _queue_unused(self, queue: Queue) -> None:
        """An auto-delete queue lost its last consumer."""
        if self.queues.get(queue.name) is queue:
            self._delete_queue(queue)

    def purge_queue(self, name: str, owner: object | None = None) -> int:
        """queue.purge: the number of ready messages dropped."""
        queue = self.lookup_queue(name, owner)
        count = queue.ready_count
        event = QueuePurged(self.name, name)
        self._journal(event, queue.durable)
        if queue.logged_count:
            ids = queue.ready_logged_ids()
            if ids:
                self._messages_removed(queue, ids, "purge")
        self._apply_queue_purged(event)
        return count

    def owner_closed(self, owner: object) -> None:
        """The connection `owner` is gone: delete its exclusive queues (their consumers were its own)."""
        for queue in [queue for queue in self.queues.values() if queue.exclusive_owner is owner]:
            queue.detach_consumers()
            self._delete_queue(queue)

    # -- bindings ---------------------------------------------------------------------------------------

    def bind_queue(
        self,
        queue: str,
        exchange: str,
        routing_key: str = "",
        arguments: Mapping[str, Any] | None = None,
        owner: object | None = None,
    ) -> None:
        """queue.bind (binding again what is bound already is fine)."""
        if exchange == DEFAULT_EXCHANGE:
            raise self._default_refused()
        source = self.lookup_exchange(exchange)
        destination = self.queues.get(queue)
        if destination is None:
            raise self._not_found("queue", queue)
        exchange_types.lookup(source.type).validate_binding(routing_key, arguments or {})
        if destination.exclusive_owner is not None and destination.exclusive_owner is not owner:
            raise self._locked(destination)
        self._add_binding(Binding.of(exchange, queue, "queue", routing_key, arguments), destination.durable)

    def unbind_queue(
        self,
        queue: str,
        exchange: str,
        routing_key: str = "",
        arguments: Mapping[str, Any] | None = None,
        owner: object | None = None,
    ) -> None:
        """queue.unbind: unbinding what is not bound (or does not exist) is fine, as in RabbitMQ."""
        if exchange == DEFAULT_EXCHANGE:
            raise self._default_refused()
        source = self.exchanges.get(exchange)
        destination = self.queues.get(queue)
        if source is None or destination is None:
            return
        binding = Binding.of(exchange, queue, "queue", routing_key, arguments)
        if binding not in source.bindings:
            return
        if destination.exclusive_owner is not None and destination.exclusive_owner is not owner:
            raise self._locked(destination)
        self._remove_binding(binding, source.durable and destination.durable)

    def bind_exchange(
        self, destination: str, source: str, routing_key: str = "", arguments: Mapping[str, Any] | None = None
    ) -> None:
        """exchange.bind: messages routed by `source` also go through `destination`."""
        if destination == DEFAULT_EXCHANGE or source == DEFAULT_EXCHANGE:
            raise self._default_refused()
        source_exchange = self.lookup_exchange(source)
        destination_exchange = self.lookup_exchange(destination)
        exchange_types.lookup(source_exchange.type).validate_binding(routing_key, arguments or {})
        binding = Binding.of(source, destination, "exchange", routing_key, arguments)
        self._add_binding(binding, destination_exchange.durable)

    def unbind_exchange(
        self, destination: str, source: str, routing_key: str = "", arguments: Mapping[str, Any] | None = None
    ) -> None:
        """exchange.unbind: unbinding what is not bound (or does not exist) is fine."""
        if destination == DEFAULT_EXCHANGE or source == DEFAULT_EXCHANGE:
            raise self._default_refused()
        source_exchange = self.exchanges.get(source)
        destination_exchange = self.exchanges.get(destination)
        if source_exchange is None or destination_exchange is None:
            return
        binding = Binding.of(source, destination, "exchange", routing_key, arguments)
        if binding in source_exchange.bindings:
            self._remove_binding(binding, source_exchange.durable and destination_exchange.durable)

    def _add_binding(self, binding: Binding, destination_durable: bool) -> None:
        source = self.exchanges[binding.source]
        if binding in source.bindings:
            return
        event = BindingAdded(
            self.name,
            binding.source,
            binding.destination,
            binding.destination_kind,
            binding.routing_key,
            binding.arguments,
        )
        self._journal(event, source.durable and destination_durable)
        self._apply_binding_added(event)

    def _remove_binding(self, binding: Binding, durable: bool) -> None:
        event = BindingRemoved(
            self.name,
            binding.source,
            binding.destination,
            binding.destination_kind,
            binding.routing_key,
            binding.arguments,
        )
        self._journal(event, durable)
        self._apply_binding_removed(event)
        self._auto_delete_exchanges([binding.source])

    def bindings(self) -> Iterator[Binding]:
        """Every binding of the vhost, by source exchange."""
        for exchange in self.exchanges.values():
            yield from exchange.bindings

    def durable_events(self) -> list[Event]:
        """Events that rebuild this vhost's durable exchanges, queues and bindings from scratch (a snapshot
        of the durable state, in an order `apply` accepts)."""
        events: list[Event] = []
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

    # -- routing ----------------------------------------------------------------------------------------

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

    # -- apply: the one place each event changes the model ----------------------------------------------

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
        queue = Queue(
            event.name,
            self.name,
            event.durable,
            owner if event.exclusive else None,
            event.auto_delete,
            arguments,
            parse_features(arguments, self),
        )
        queue.on_unused = self._queue_unused
        queue.contents = self.contents
        if queue.durable:
            queue.on_removed = self._messages_removed
        self.queues[event.name] = queue
        self._default_router.add_queue(queue)

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
