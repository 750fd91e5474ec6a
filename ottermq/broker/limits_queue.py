"""Queues with RabbitMQ's optional features: TTL, x-expires, length limits, dead lettering, priorities,
single active consumer and delivery limits.

Strategy: a plain `Queue` stays exactly as fast as it is; a queue declared with any of these arguments is
a `FeatureQueue`, a subclass that adds no slots (so a plain queue can become one in place when it first
receives a message with a per-message `expiration`, see `ensure_features`). Its state lives in one
`QueueFeatures` object in the queue's `features` slot. The subclass overrides the places where messages
enter and leave: `enqueue` (overflow checks, deadlines), `dispatch` and `get` (expiry at the head, as
RabbitMQ does it), `requeue` (delivery counts) and `settle` (dead lettering of rejects). Every message that
leaves other than by an ack goes through `Queue.settle` with its reason, so the durable store logs it, and
is dead-lettered first when the queue has a dead-letter exchange (a crash in between leaves a duplicate,
never a loss). `tick` runs once a second from `Broker.tick`: it expires what reached its deadline (so a
queue with a TTL and no consumer does not grow without bound) and deletes a queue unused for x-expires.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Final

from ottermq.amqp.errors import ChannelError
from ottermq.amqp.properties import FLAG_EXPIRATION, peek_expiration
from ottermq.broker import deadletter
from ottermq.broker.consumer import Consumer
from ottermq.broker.delivery_limit import DeliveryCounts, with_delivery_count
from ottermq.broker.message import Message, QueueEntry, message_priority
from ottermq.broker.priority import PriorityReady
from ottermq.broker.queue import Queue
from ottermq.broker.single_active import WaitingConsumers
from ottermq.broker.ttl import deadline, now_ms, parse_expiration

if TYPE_CHECKING:
    from ottermq.broker.vhost import VHost

# Arguments that make a queue a FeatureQueue (x-overflow alone changes nothing without a limit).
FEATURE_ARGUMENTS: Final = frozenset(
    [
        "x-message-ttl",
        "x-expires",
        "x-dead-letter-exchange",
        "x-max-length",
        "x-max-length-bytes",
        "x-max-priority",
        "x-single-active-consumer",
        "x-delivery-limit",
    ]
)

# The expiration flag in the first octet of the raw property flags.
_EXPIRATION_BIT: Final = FLAG_EXPIRATION >> 8


def _int_arg(arguments: dict[str, Any], key: str) -> int | None:
    value = arguments.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class QueueFeatures:
    """The parsed feature arguments of one queue and the state they need."""

    __slots__ = (
        "delivery",
        "dlrk",
        "dlx",
        "expires",
        "last_used",
        "max_bytes",
        "max_length",
        "max_priority",
        "message_ttl",
        "overflow",
        "ready_bytes",
        "sized",
        "vhost",
        "waiting",
    )

    def __init__(self, arguments: dict[str, Any], vhost: VHost | None) -> None:
        self.vhost = vhost
        self.message_ttl = _int_arg(arguments, "x-message-ttl")
        self.expires = _int_arg(arguments, "x-expires")
        dlx = arguments.get("x-dead-letter-exchange")
        self.dlx: str | None = dlx if isinstance(dlx, str) else None
        dlrk = arguments.get("x-dead-letter-routing-key")
        self.dlrk: str | None = dlrk if isinstance(dlrk, str) else None
        self.max_length = _int_arg(arguments, "x-max-length")
        self.max_bytes = _int_arg(arguments, "x-max-length-bytes")
        overflow = arguments.get("x-overflow")
        self.overflow: str = overflow if isinstance(overflow, str) else "drop-head"
        self.max_priority = _int_arg(arguments, "x-max-priority")
        self.waiting = WaitingConsumers() if arguments.get("x-single-active-consumer") is True else None
        limit = _int_arg(arguments, "x-delivery-limit")
        self.delivery = DeliveryCounts(limit) if limit is not None and limit >= 0 else None
        # Body bytes of the ready messages (x-max-length-bytes counts these, as RabbitMQ does); kept only
        # when `sized`, so that expiring or delivering a message never loads a stored body just to count it.
        self.sized = self.max_bytes is not None
        self.ready_bytes = 0
        # The last time the queue was used (declared, consumed from, basic.get): x-expires counts from it.
        self.last_used = now_ms()

    def used(self) -> None:
        """The queue was used (redeclared, consumed from, read with basic.get): x-expires starts over."""
        self.last_used = now_ms()

    def would_overflow(self, ready: int, size: int) -> bool:
        """True when one more message of `size` bytes would take the ready messages over a limit."""
        max_length, max_bytes = self.max_length, self.max_bytes
        return (max_length is not None and ready + 1 > max_length) or (
            max_bytes is not None and self.ready_bytes + size > max_bytes
        )


def has_features(arguments: dict[str, Any]) -> bool:
    """True when a queue declared with `arguments` needs to be a FeatureQueue."""
    if not arguments:
        return False
    return any(
        key in arguments and (key != "x-single-active-consumer" or arguments[key] is True)
        for key in FEATURE_ARGUMENTS
    )


def new_queue(
    name: str,
    vhost: VHost,
    durable: bool,
    exclusive_owner: object | None,
    auto_delete: bool,
    arguments: dict[str, Any],
) -> Queue:
    """The queue for a declare: a FeatureQueue when the arguments ask for a feature, else a plain Queue."""
    if not has_features(arguments):
        return Queue(name, vhost.name, durable, exclusive_owner, auto_delete, arguments)
    queue = FeatureQueue(name, vhost.name, durable, exclusive_owner, auto_delete, arguments)
    queue.setup(QueueFeatures(arguments, vhost))
    return queue


def ensure_features(queue: Queue, vhost: VHost) -> None:
    """Turn a plain queue into a FeatureQueue in place (it received a message with an expiration)."""
    if type(queue) is not Queue:
        return
    queue.__class__ = FeatureQueue
    assert isinstance(queue, FeatureQueue)
    queue.setup(QueueFeatures(queue.arguments, vhost))


def properties_ttl(properties: bytes) -> int | None:
    """The `expiration` in ms of raw content-header properties, or None (also for a malformed one)."""
    if not (properties and properties[0] & _EXPIRATION_BIT):
        return None
    raw = peek_expiration(properties)
    if raw is None:
        return None
    try:
        return parse_expiration(raw)
    except ChannelError:
        return None


def ready_bytes(queue: Queue, entries: Iterable[QueueEntry]) -> int:
    """The body bytes of `entries`; a size not known yet (a message restored from an older snapshot)
    is learnt by reading that content once."""
    total = 0
    for entry in entries:
        size = entry.size
        if size < 0:
            size = entry.size = queue.contents.get(entry.msg_id).body_size
        total += size
    return total


class FeatureQueue(Queue):
    """A queue with RabbitMQ's optional features; its state is `self.features` (a QueueFeatures)."""

    __slots__ = ()

    def setup(self, features: QueueFeatures) -> None:
        """Attach the features (right after construction, or when a plain queue is converted)."""
        self.features = features
        if features.max_priority and not isinstance(self._ready, PriorityReady):
            ready = PriorityReady(features.max_priority)
            ready.extend(self._ready)
            self._ready = ready  # type: ignore[assignment]
        if features.sized:
            features.ready_bytes = ready_bytes(self, self._ready)

    # -- messages in ------------------------------------------------------------------------------------

    def new_entry(self, msg_id: int, size: int, priority: int, published: int, ttl: int | None) -> QueueEntry:
        """As `Queue.new_entry`, with the queue's x-message-ttl (also counted from `published`)."""
        queue_ttl = self.features.message_ttl
        if ttl is None and queue_ttl is None:
            return QueueEntry(msg_id, size, priority)
        due = deadline(published or now_ms(), ttl, queue_ttl)
        return QueueEntry(msg_id, size, priority, due)

    def enqueue(self, entry: QueueEntry) -> bool:
        """Make an entry ready unless the queue is full with reject-publish (then False, and the entry
        leaves as `maxlen`); deliver it if a consumer can take it; then expire and drop from the head as
        the queue's TTL and limits say."""
        features: QueueFeatures = self.features
        size = entry.size
        if (
            features.overflow != "drop-head"
            and (features.max_length is not None or features.max_bytes is not None)
            and features.would_overflow(len(self._ready), size)
        ):
            if features.overflow == "reject-publish-dlx":
                self._dead_letter([entry], deadletter.MAXLEN)
            Queue.settle(self, (entry,), "maxlen")
            return False
        now = now_ms()
        if not entry.seq:
            self._seq = entry.seq = self._seq + 1
        self._ready.append(entry)
        if features.sized:
            features.ready_bytes += size
        if self.consumer_count and not self._dispatching:
            self._dispatch(now, entry)
        self._expire_head(now)
        self._enforce_limits()
        return True

    def requeue(self, entries: Iterable[QueueEntry]) -> None:
        """Put delivered entries back (counting failed deliveries when x-delivery-limit is set)."""
        if self.deleted:
            self._release(entries)
            return
        features: QueueFeatures = self.features
        back = list(entries)
        if features.delivery is not None:
            back, over = features.delivery.returned(back)
            if over:
                self._remove(over, deadletter.DELIVERY_LIMIT, "drop")
        if features.sized:
            features.ready_bytes += sum(entry.size for entry in back)
        super().requeue(back)
        self._expire_head(now_ms())
        self._enforce_limits()

    def restore_index(self, entries: list[QueueEntry]) -> None:
        """Recovery: logged messages come back with the absolute deadlines the log kept (publish time +
        TTL). A message of an older log has none (0 with x-message-ttl set cannot be a kept deadline):
        the queue's x-message-ttl then counts again from the restart; its own `expiration` is not read
        here, as that would read every content of the backlog from the log. On a priority queue, a
        priority not kept (-1) is read from the content once."""
        super().restore_index(entries)
        features: QueueFeatures = self.features
        if features.message_ttl is not None:
            due = now_ms() + features.message_ttl
            for entry in entries:
                if not entry.deadline:
                    entry.deadline = due
        if features.max_priority:
            contents = self.contents
            for entry in entries:
                if entry.priority < 0:
                    entry.priority = message_priority(contents.get(entry.msg_id).properties)

    def content_of(self, entry: QueueEntry) -> Message:
        """The content to deliver: with x-delivery-count when the entry came back before."""
        message = self.contents.get(entry.msg_id)
        delivery = self.features.delivery
        if delivery is not None:
            count = delivery.count(entry)
            if count:
                return with_delivery_count(message, count)
        return message

    def recovered(self, redelivered: bool) -> None:
        """After replay: restored messages become ready (then byte counts are taken again)."""
        super().recovered(redelivered)
        features: QueueFeatures = self.features
        if features.sized:
            features.ready_bytes = ready_bytes(self, self._ready)

    # -- messages out -----------------------------------------------------------------------------------

    def get(self) -> QueueEntry | None:
        """basic.get: the head after expired entries are removed."""
        features: QueueFeatures = self.features
        now = now_ms()
        features.last_used = now
        self._expire_head(now)
        ready = self._ready
        if not ready:
            return None
        entry = ready.popleft()
        if features.sized:
            features.ready_bytes -= entry.size
        return entry

    def dispatch(self) -> None:
        """Deliver ready messages to consumers with credit, expiring entries that reach the head late."""
        self._dispatch(now_ms(), None)

    def _dispatch(self, now: int, fresh: QueueEntry | None) -> None:
        """The dispatch loop of `Queue.dispatch` with expiry at the head; `fresh` (the entry being
        enqueued) is exempt, so a TTL of 0 still reaches a consumer that can take it at once."""
        ready = self._ready
        if self._dispatching or not ready or not self.consumer_count:
            return
        features: QueueFeatures = self.features
        self._dispatching = True
        expired: list[QueueEntry] = []
        try:
            groups = self._groups
            gi = 0
            while ready and gi < len(groups):
                group = groups[gi]
                gi += 1
                members = group.members
                i = group.next
                idle = 0
                while ready:
                    head = ready[0]
                    due = head.deadline
                    if due and due <= now and head is not fresh:
                        expired.append(ready.popleft())
                        if features.sized:
                            features.ready_bytes -= head.size
                        continue
                    n = len(members)
                    if idle >= n:
                        break
                    if i >= n:
                        i = 0
                    consumer = members[i]
                    i += 1
                    if consumer.has_credit():
                        entry = ready.popleft()
                        if features.sized:
                            features.ready_bytes -= entry.size
                        consumer.deliver(self, entry)
                        idle = 0
                    else:
                        idle += 1
                group.next = i
        finally:
            self._dispatching = False
        if expired:
            self._remove(expired, deadletter.EXPIRED, "expired")

    def settle(self, entries: Iterable[QueueEntry], reason: str = "ack") -> None:
        """Entries leave for good; rejected ones (nack/reject without requeue) are dead-lettered."""
        features: QueueFeatures = self.features
        settled = entries if isinstance(entries, (list, tuple)) else list(entries)
        if features.delivery is not None:
            features.delivery.forget(settled)
        if reason == "reject" and features.dlx is not None and not self.deleted:
            self._dead_letter(settled, deadletter.REJECTED)
        super().settle(settled, reason)

    def purge(self) -> int:
        """Drop every ready message (nothing is dead-lettered, as in RabbitMQ)."""
        features: QueueFeatures = self.features
        if features.delivery is not None:
            features.delivery.forget(self._ready)  # unacked entries keep theirs
        count = super().purge()
        features.ready_bytes = 0
        return count

    def _expire_head(self, now: int) -> None:
        """Remove the entries at the head whose deadline has passed."""
        ready = self._ready
        if not ready:
            return
        due = ready[0].deadline
        if not due or due > now:
            return
        features: QueueFeatures = self.features
        expired: list[QueueEntry] = []
        while ready:
            head = ready[0]
            due = head.deadline
            if not due or due > now:
                break
            expired.append(ready.popleft())
            if features.sized:
                features.ready_bytes -= head.size
        self._remove(expired, deadletter.EXPIRED, "expired")

    def _enforce_limits(self) -> None:
        """drop-head: drop (or dead-letter) from the head until the ready messages fit the limits."""
        features: QueueFeatures = self.features
        if features.overflow != "drop-head":
            return
        max_length, max_bytes = features.max_length, features.max_bytes
        if max_length is None and max_bytes is None:
            return
        ready = self._ready
        dropped: list[QueueEntry] = []
        while ready and (
            (max_length is not None and len(ready) > max_length)
            or (max_bytes is not None and features.ready_bytes > max_bytes)
        ):
            entry = ready.popleft()
            if features.sized:
                features.ready_bytes -= entry.size
            dropped.append(entry)
        if dropped:
            self._remove(dropped, deadletter.MAXLEN, "maxlen")

    def _remove(self, entries: list[QueueEntry], death: str, reason: str) -> None:
        """Entries leave without an ack: dead-letter them first (if configured), then log the removal."""
        features: QueueFeatures = self.features
        if features.delivery is not None:
            features.delivery.forget(entries)
        self._dead_letter(entries, death)
        Queue.settle(self, entries, reason)

    def _dead_letter(self, entries: Iterable[QueueEntry], reason: str) -> None:
        """Republish the contents of `entries` to the dead-letter exchange (before they are settled:
        settling gives their content references back)."""
        features: QueueFeatures = self.features
        if features.dlx is None or features.vhost is None:
            return
        get = self.contents.get
        messages = [get(entry.msg_id) for entry in entries if entry.msg_id]
        deadletter.dead_letter(
            features.vhost, self.name, features.dlx, features.dlrk, messages, reason, now_ms() / 1000
        )

    # -- consumers --------------------------------------------------------------------------------------

    def add_consumer(self, consumer: Consumer) -> None:
        """Register a consumer; on a single-active-consumer queue with an active one, it waits."""
        features: QueueFeatures = self.features
        features.used()
        waiting = features.waiting
        if waiting is None or not self.consumer_count:
            super().add_consumer(consumer)
            return
        self.check_can_consume(consumer.exclusive)
        waiting.park(consumer)
        self.consumer_count += 1
        self._had_consumer = True

    def remove_consumer(self, consumer: Consumer) -> bool:
        """Unregister a consumer; when the active one of a single-active-consumer queue leaves, the next
        waiting consumer becomes active and gets what is ready."""
        features: QueueFeatures = self.features
        features.used()
        waiting = features.waiting
        if waiting is None or not len(waiting):
            return super().remove_consumer(consumer)
        if waiting.leave(consumer):
            self.consumer_count -= 1
            return False
        # The active consumer leaves while others wait: hide them from the base bookkeeping (consumer
        # count, auto-delete), then promote the longest-waiting one.
        hidden = len(waiting)
        self.consumer_count -= hidden
        auto_delete = self.auto_delete
        self.auto_delete = False
        try:
            if self._locate(consumer) is None:
                self.consumer_count += hidden
                return False
            super().remove_consumer(consumer)
            successor = waiting.next()
            assert successor is not None
            super().add_consumer(successor)
        finally:
            self.auto_delete = auto_delete
        self.consumer_count += hidden - 1
        self.dispatch()
        return False

    def consumers(self) -> list[Consumer]:
        """Every consumer: the active ones, then those waiting their turn."""
        active = super().consumers()
        waiting = self.features.waiting
        return active + waiting.members() if waiting is not None else active

    def detach_consumers(self) -> list[Consumer]:
        """Forget every consumer (waiting ones too) without telling them; return them."""
        waiting = self.features.waiting
        parked = waiting.take_all() if waiting is not None else []
        return super().detach_consumers() + parked

    # -- timers -----------------------------------------------------------------------------------------

    def tick(self, now: int) -> None:
        """Once a second: expire what is due at the head; delete the queue once unused for x-expires."""
        if self.deleted:
            return
        self._expire_head(now)
        features: QueueFeatures = self.features
        expires = features.expires
        if (
            expires is not None
            and not self.consumer_count
            and now - features.last_used >= expires
            and features.vhost is not None
        ):
            features.vhost.delete_queue(self.name, owner=self.exclusive_owner)


def tick_queues(vhosts: Iterable[VHost], now: int) -> None:
    """Run the timers of every FeatureQueue of `vhosts` (`now` in ms since the epoch)."""
    for vhost in vhosts:
        for queue in [queue for queue in vhost.queues.values() if queue.features is not None]:
            if isinstance(queue, FeatureQueue):
                queue.tick(now)
