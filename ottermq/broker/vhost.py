"""A virtual host's operations: declare, delete, bind, purge, checked as RabbitMQ checks them.

Strategy: every change follows validate -> journal -> apply. The public methods check the request against
the current state and raise RabbitMQ's errors; a change is then described as an event (events.py), appended
to the journal when it touches durable state, and applied by the model's `_apply_*` method for that event
(topology.py), the same method a replay runs. Exclusive queues are never durable, so their owner (an opaque
object, in practice the connection) never needs to be journaled.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Callable, Mapping
from typing import Any, Final

from ottermq.amqp.constants import (
    ACCESS_REFUSED,
    INTERNAL_ERROR,
    PRECONDITION_FAILED,
)
from ottermq.amqp.errors import AMQPConnectionError, ChannelError
from ottermq.broker import exchange_types, queue_types
from ottermq.broker.arguments import (
    EXCHANGE_EQUIVALENCE_KEYS,
    QUEUE_EQUIVALENCE_KEYS,
    assert_arguments_equivalent,
    assert_field_equivalent,
    check_exchange_arguments,
    check_queue_arguments,
)
from ottermq.broker.events import (
    BindingAdded,
    BindingRemoved,
    DestinationKind,
    Event,
    ExchangeDeclared,
    ExchangeDeleted,
    QueueDeclared,
    QueueDeleted,
    QueuePurged,
)
from ottermq.broker.exchange import DEFAULT_EXCHANGE, Binding, Exchange
from ottermq.broker.publishing import Publishing
from ottermq.broker.queue import Queue
from ottermq.broker.stream import StreamQueue

SERVER_NAMED_PREFIX: Final = "amq.gen-"


def server_generated_name(prefix: str = SERVER_NAMED_PREFIX) -> str:
    """`prefix` plus 22 url-safe base64 characters (128 random bits), as RabbitMQ names queues."""
    return prefix + base64.urlsafe_b64encode(os.urandom(16)).decode("ascii").rstrip("=")


class VHost(Publishing):
    """One virtual host: its model (topology.py), publishing (publishing.py) and the operations that
    change them."""

    def __repr__(self) -> str:
        return f"VHost({self.name!r}, {len(self.exchanges)} exchanges, {len(self.queues)} queues)"

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
        requested_durable = bool(durable)
        durable = requested_durable and not exclusive  # exclusive queues never outlive their connection
        server_named = not name
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
            keys: tuple[str, ...] = QUEUE_EQUIVALENCE_KEYS
            if existing.queue_type == queue_types.CLASSIC and args.get("x-queue-type") in (None, "classic"):
                # A classic queue is one whether or not x-queue-type says so, as in RabbitMQ.
                keys = tuple(key for key in keys if key != "x-queue-type")
            assert_arguments_equivalent(keys, resource, existing.arguments, args)
            if existing.features is not None:
                existing.features.used()  # a redeclare restarts x-expires
            self.churn.queues_declared += 1
            return existing
        resource = self._resource("queue", name)
        kind = queue_types.check_type(resource, args)
        if self.clustered:
            queue_types.check_replicated(kind, resource)
        check_queue_arguments(resource, args)
        queue_types.check_properties(kind, resource, requested_durable, exclusive, auto_delete, server_named)
        if 0 <= self.max_queues <= len(self.queues):
            raise ChannelError(
                PRECONDITION_FAILED,
                f"PRECONDITION_FAILED - cannot declare queue '{name}': queue limit in vhost '{self.name}' "
                f"({self.max_queues}) is reached",
            )
        event = QueueDeclared(self.name, name, durable, exclusive, auto_delete, args)
        self._journal(event, durable)
        self._apply_queue_declared(event, owner)
        churn = self.churn
        churn.queues_declared += 1
        churn.queues_created += 1
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
        if isinstance(queue, StreamQueue):
            # Before the deletion is logged: a stream declared again must never find these records.
            queue.drop()
            self.streams.remove(self.name, queue.name)
        event = QueueDeleted(self.name, queue.name)
        self._journal(event, queue.durable)
        self._apply_queue_deleted(event)
        self.churn.queues_deleted += 1
        self._auto_delete_exchanges(sources)

    def _queue_unused(self, queue: Queue) -> None:
        """An auto-delete queue lost its last consumer."""
        if self.queues.get(queue.name) is queue:
            self._delete_queue(queue)

    def purge_queue(self, name: str, owner: object | None = None) -> int:
        """queue.purge: the number of ready messages dropped."""
        queue = self.lookup_queue(name, owner)
        if isinstance(queue, StreamQueue):
            queue.purge()  # RabbitMQ's 540
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
