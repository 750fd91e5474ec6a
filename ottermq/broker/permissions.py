"""Which permission each AMQP method needs, and the per-connection check with its cache.

Strategy: RabbitMQ's mapping (its access-control guide and `rabbit_channel`), written down once:

    exchange.declare (not passive)   configure on the exchange
        new exchange with alternate-exchange: also read on the exchange, write on the alternate
    exchange.delete                  configure on the exchange
    queue.declare (not passive)      configure on the queue (server-named queues too: amq.gen-...)
        new queue with x-dead-letter-exchange: also read on the queue, write on the dead-letter exchange
    queue.delete                     configure on the queue
    queue.bind / queue.unbind        write on the queue, read on the exchange
    exchange.bind / exchange.unbind  write on the destination exchange, read on the source
    basic.publish                    write on the exchange
    basic.consume / basic.get        read on the queue
    queue.purge                      read on the queue

Passive declares need no permission. The default exchange is checked under the name "amq.default".
Checks come before the lookups, so a refused user learns nothing about what exists; the default
exchange's own refusal (403 "operation not permitted on the default exchange") and the "amq." name
checks keep RabbitMQ's order, so `required` leaves out checks on "" that the vhost refuses anyway.

Decisions are cached per connection (user and vhost are fixed once it is open); the broker calls
`reset` on every connection when any user, vhost or permission changes. basic.publish looks only at the
`writable` set, one membership test per message; an exchange on which the user has a topic permission
(topic_permissions.py) never enters it, so each publish there has its routing key checked.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from ottermq.amqp.constants import ACCESS_REFUSED
from ottermq.amqp.errors import ChannelError
from ottermq.amqp.methods import (
    BasicConsume,
    BasicGet,
    BasicPublish,
    ExchangeBind,
    ExchangeDeclare,
    ExchangeDelete,
    ExchangeUnbind,
    Method,
    QueueBind,
    QueueDeclare,
    QueueDelete,
    QueuePurge,
    QueueUnbind,
)
from ottermq.broker.access import CONFIGURE, READ, WRITE
from ottermq.broker.topic_permissions import TOPIC, compiled
from ottermq.broker.topic_permissions import refused as topic_refused

if TYPE_CHECKING:
    from ottermq.broker.access import AccessControl
    from ottermq.broker.exchange import Exchange

DEFAULT_EXCHANGE_RESOURCE: Final = "amq.default"
# Bound on cached decisions per connection; past it the cache starts over (names can be unbounded).
_CACHE_LIMIT: Final = 4096

Check = tuple[str, str, str]  # (access, kind, name): ("write", "exchange", "amq.direct")


def resource_name(kind: str, name: str) -> str:
    """The name permissions are matched against: the default exchange is "amq.default"."""
    return DEFAULT_EXCHANGE_RESOURCE if kind == "exchange" and not name else name


def refused(kind: str, name: str, vhost: str, user: str) -> ChannelError:
    """RabbitMQ's 403 for a resource the user may not use."""
    return ChannelError(
        ACCESS_REFUSED,
        f"ACCESS_REFUSED - access to {kind} '{resource_name(kind, name)}' in vhost '{vhost}' "
        f"refused for user '{user}'",
    )


def _binding(destination_kind: str, destination: str, source: str) -> tuple[Check, ...]:
    write: Check = (WRITE, destination_kind, destination)
    if not source or (destination_kind == "exchange" and not destination):
        return (write,)  # the vhost refuses the default exchange right after the write check
    return (write, (READ, "exchange", source))


def required(method: Method, queue: str = "") -> tuple[Check, ...]:
    """The checks `method` needs, in RabbitMQ's order; `queue` is its queue name with the channel's
    "last declared queue" shortcut applied. Declare extras (alternate and dead-letter exchanges) depend
    on whether the entity is new, so the channel asks `declare_extras` for those."""
    kind = type(method)
    if kind is BasicPublish:
        return ((WRITE, "exchange", method.exchange),)  # type: ignore[attr-defined]
    if kind is BasicConsume or kind is BasicGet or kind is QueuePurge:
        return ((READ, "queue", queue),)
    if kind is QueueBind or kind is QueueUnbind:
        return _binding("queue", queue, method.exchange)  # type: ignore[attr-defined]
    if kind is ExchangeBind or kind is ExchangeUnbind:
        return _binding("exchange", method.destination, method.source)  # type: ignore[attr-defined]
    if kind is QueueDeclare:
        return () if method.passive else ((CONFIGURE, "queue", queue),)  # type: ignore[attr-defined]
    if kind is QueueDelete:
        return ((CONFIGURE, "queue", queue),)
    if kind is ExchangeDeclare:
        if method.passive or not method.exchange:  # type: ignore[attr-defined]
            return ()  # "" is refused by the vhost (after the type check, as RabbitMQ)
        return ((CONFIGURE, "exchange", method.exchange),)  # type: ignore[attr-defined]
    if kind is ExchangeDelete:
        name: str = method.exchange  # type: ignore[attr-defined]
        if not name or name.startswith("amq."):
            return ()  # the vhost refuses to delete these before any permission check
        return ((CONFIGURE, "exchange", name),)
    return ()


def declare_extras(kind: str, name: str, arguments: dict[str, Any]) -> tuple[Check, ...]:
    """Extra checks for declaring a NEW exchange with an alternate exchange or a NEW queue with a
    dead-letter exchange: read on the entity, write on the other exchange."""
    key = "alternate-exchange" if kind == "exchange" else "x-dead-letter-exchange"
    other = arguments.get(key)
    if isinstance(other, bytes):
        other = other.decode("utf-8", "replace")
    if not isinstance(other, str):
        return ()  # absent, or of a type the argument checks refuse
    return ((READ, kind, name), (WRITE, "exchange", other))


class Guard:
    """The access checks of one open connection (fixed user and vhost), with cached decisions."""

    __slots__ = ("_allowed", "_topics", "access", "user", "vhost", "writable")

    def __init__(self, access: AccessControl, user: str, vhost: str) -> None:
        self.access = access
        self.user = user
        self.vhost = vhost
        self._allowed: set[Check] = set()
        # Exchanges this connection may publish to without a routing-key check (the hot path's one lookup).
        self.writable: set[str] = set()
        # (access, exchange) -> the topic permission's expanded pattern, compiled (None: matches nothing).
        self._topics: dict[tuple[str, str], re.Pattern[str] | None] = {}

    def reset(self) -> None:
        """Forget every cached decision (users, vhosts or permissions changed)."""
        self._allowed.clear()
        self.writable.clear()
        self._topics.clear()

    def check(self, access: str, kind: str, name: str) -> None:
        """Raise 403 ACCESS_REFUSED unless the user may `access` the resource."""
        key = (access, kind, name)
        if key in self._allowed:
            return
        if not self.access.allowed(self.user, self.vhost, access, resource_name(kind, name)):
            raise refused(kind, name, self.vhost, self.user)
        if len(self._allowed) >= _CACHE_LIMIT:
            self._allowed.clear()
        self._allowed.add(key)

    def check_all(self, checks: tuple[Check, ...]) -> None:
        """Every check in order; the first refusal raises."""
        for access, kind, name in checks:
            self.check(access, kind, name)

    def check_publish(self, exchange: str) -> None:
        """basic.publish: write on the exchange (callers test `writable` first, and call `check_topic`
        with the exchange once looked up)."""
        if not self.access.allowed(self.user, self.vhost, WRITE, resource_name("exchange", exchange)):
            raise refused("exchange", exchange, self.vhost, self.user)
        if self.access.topic_permission(self.user, self.vhost, exchange) is not None:
            return  # every publish there has its routing key checked
        if len(self.writable) >= _CACHE_LIMIT:
            self.writable.clear()
        self.writable.add(exchange)

    def check_topic(self, access: str, exchange: Exchange, routing_key: str) -> None:
        """403 unless the user's topic permission on `exchange` ("write" for a publish, "read" for a
        binding from it) allows `routing_key`; only topic exchanges with a topic permission are checked."""
        if exchange.type != TOPIC:
            return
        name = exchange.name
        permission = self.access.topic_permission(self.user, self.vhost, name)
        if permission is None:
            return
        key = (access, name)
        if key in self._topics:
            pattern = self._topics[key]
        else:
            if len(self._topics) >= _CACHE_LIMIT:
                self._topics.clear()
            pattern = self._topics[key] = compiled(permission.pattern(access), self.user, self.vhost)
        if pattern is None or pattern.search(routing_key) is None:
            raise topic_refused(routing_key, name, self.vhost, self.user)

    def check_binding_topic(self, exchanges: dict[str, Exchange], source: str, routing_key: str) -> None:
        """queue/exchange bind and unbind: the read topic check on the source, when it exists (RabbitMQ
        skips it for a missing source and answers the bind's own 404)."""
        exchange = exchanges.get(source)
        if exchange is not None and self.access.topic_permissions:
            self.check_topic(READ, exchange, routing_key)

    def check_method(self, method: Method, queue: str = "") -> None:
        """The checks `required(method, queue)` names."""
        for access, kind, name in required(method, queue):
            self.check(access, kind, name)

    def check_exchange_declare(self, method: ExchangeDeclare, exists: bool) -> None:
        """exchange.declare after its type check: configure, and for a new exchange with an alternate
        exchange, read on it and write on the alternate."""
        self.check_method(method)
        name = method.exchange
        if not method.passive and name and not exists and not name.startswith("amq."):
            self.check_all(declare_extras("exchange", name, method.arguments or {}))

    def queue_declare_check(self, arguments: dict[str, Any]) -> Callable[[str, bool], None]:
        """The `check(name, new)` hook for `VHost.declare_queue`: configure on the final name; for a new
        queue with a dead-letter exchange, read on the queue and write on that exchange."""

        def check(name: str, new: bool) -> None:
            self.check(CONFIGURE, "queue", name)
            if new:
                self.check_all(declare_extras("queue", name, arguments))

        return check
