"""A queue: ready messages in FIFO order, the consumers they are dispatched to, and its features.

Strategy: ready messages are `QueueEntry` records ordered by `seq` in a `Ready` container (a deque, or
per priority: ready.py); enqueue appends, delivery pops from the head, and requeued entries are merged
back at the head by `seq`, so a message returned by a consumer takes its original place again.
Unacknowledged entries are not kept here: the channel that received them holds them and hands them back
through `requeue` or `settle`.

Consumers are grouped by priority, highest first (consumer_groups.py); within a group they are served
round-robin, skipping those without credit. `dispatch` runs until the ready list is empty or no consumer
has credit, and is re-entrancy safe: a consumer that calls back into the queue from `deliver` does not
start a nested pass.

Features (TTL, x-expires, length limits, dead lettering, priorities, single active consumer, delivery
limit) are chosen once, at declare, as parts (features.py) that the queue consults where messages enter
and leave. A queue without features whose entries never expire is `plain`: `enqueue` and `get` take
their short paths (a sole consumer keeping up gets each message without the round-robin machinery). Any
other queue takes the checked ones: overflow checks before a message enters, head expiry, drop-head
after. Expiry works on every queue, as in RabbitMQ: an entry with a `deadline` leaves when it is found at
the head past it (and on the once-a-second tick, queue_expiry.py); the clock is read only by a queue
that may hold such entries (`_expiring`, set when one is made here), so a plain queue never reads it.
Every message that leaves other than by an ack goes through `settle` with its reason, so the durable
store logs it, and is dead-lettered first when the queue has a dead-letter exchange (a crash in between
leaves a duplicate, never a loss).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from operator import attrgetter
from typing import Any, Final

from ottermq.broker import deadletter
from ottermq.broker.content import Contents, UnreadableContent
from ottermq.broker.delivery_limit import DeliveryCounts, with_delivery_count
from ottermq.broker.durable_index import DurableIndex
from ottermq.broker.features import QueueFeatures
from ottermq.broker.length_limit import REJECT_PUBLISH_DLX, LengthLimit, unwrap
from ottermq.broker.message import Message, QueueEntry
from ottermq.broker.object_stats import QueueStats
from ottermq.broker.queue_types import queue_type
from ottermq.broker.ready import Ready
from ottermq.broker.ttl import deadline, now_ms

log: Final = logging.getLogger("ottermq.broker")

_by_seq = attrgetter("seq")
_deadline_of = attrgetter("deadline")
# The content store of queues made without a vhost (unit tests): contents are added by whoever makes
# their entries, so one store for all of them is enough.
_ORPHANS: Final = Contents()


class Queue(DurableIndex):
    """A queue of one vhost. Created and removed by `VHost`, which owns its lifecycle."""

    __slots__ = (
        "_expiring",
        "_fresh",
        "_ready",
        "arguments",
        "auto_delete",
        "contents",
        "deleted",
        "durable",
        "exclusive_owner",
        "features",
        "name",
        "on_delivered",
        "on_removed",
        "on_returned",
        "plain",
        "policy_arguments",
        "resource",
        "stats",
        "vhost",
    )

    def __init__(
        self,
        name: str,
        vhost: str = "/",
        durable: bool = False,
        exclusive_owner: object | None = None,
        auto_delete: bool = False,
        arguments: dict[str, Any] | None = None,
        features: QueueFeatures | None = None,
    ) -> None:
        """`features` are those `features.parse_features` reads from the declare `arguments` (None: none)."""
        self.name = name
        self.vhost = vhost
        self.durable = durable
        self.exclusive_owner = exclusive_owner
        self.auto_delete = auto_delete
        self.arguments: dict[str, Any] = arguments if arguments is not None else {}
        # How RabbitMQ names a queue in its error texts.
        self.resource = f"queue '{name}' in vhost '{vhost}'"
        self.deleted = False
        # Message counters for the management API (object_stats.py), bumped where messages come and go.
        self.stats = QueueStats()
        # The owner of the contents its entries name: each entry holds one reference, given back when it
        # leaves the queue for good. Set by the vhost (a queue made alone, in tests, gets its own).
        self.contents: Contents = _ORPHANS
        self.features = features
        # The arguments the queue works by under the policies that apply to it (its own merged with
        # theirs, policies.py), or None when no policy applies: then `arguments` alone.
        self.policy_arguments: dict[str, Any] | None = None
        # Set by the vhost on durable queues: called with the ids of logged messages that leave for good.
        self.on_removed: Callable[[Queue, list[int], str], None] | None = None
        # Set by the vhost on durable queues: called with the id of a logged message delivered to a
        # consumer that must acknowledge it, and with the ids of logged messages that came back, when the
        # queue counts deliveries (delivery_limit.py): they journal and then apply (`apply_delivered`,
        # `apply_returned`).
        self.on_delivered: Callable[[Queue, int], None] | None = None
        self.on_returned: Callable[[Queue, list[int]], None] | None = None
        self._ready: Ready = deque() if features is None else features.new_ready()
        # True once the queue may hold entries with a deadline (it has an x-message-ttl, or an entry with
        # one was made here): only then is the clock read. It stays set.
        self._expiring = features is not None and features.message_ttl is not None
        # No features and no entry that may expire: the short paths suffice (and there are no timers).
        self.plain = features is None
        DurableIndex.__init__(self)
        # The entry `enqueue` is dispatching, exempt from expiry while it is (see `dispatch`).
        self._fresh: QueueEntry | None = None

    def __repr__(self) -> str:
        return f"Queue({self.name!r}, ready={len(self._ready)}, consumers={self.consumer_count})"

    @property
    def exclusive(self) -> bool:
        """True for a queue locked to the connection that declared it."""
        return self.exclusive_owner is not None

    @property
    def ready_count(self) -> int:
        """Messages waiting for delivery (not counting delivered, unacknowledged ones)."""
        return len(self._ready)

    def ready_entries(self) -> Iterator[QueueEntry]:
        """The ready entries, head first (for the management API's figures; do not change the queue
        while iterating)."""
        return iter(self._ready)

    def _may_expire(self) -> None:
        """Entries with deadlines may be ready from now on: read the clock, take the checked paths."""
        self._expiring = True
        self.plain = False

    def replace_features(self, features: QueueFeatures | None) -> None:
        """Work by other features from now on (a policy changed, policies.py): the ready entries stay,
        in a container counting bytes if the new length limit needs it. Decides nothing about them:
        see `enforce_limits`."""
        inner = unwrap(self._ready)
        self.features = features
        limit = features.limit if features is not None else None
        self._ready = limit.wrap(inner) if limit is not None else inner
        if features is not None and features.message_ttl is not None:
            self._expiring = True
        self.plain = features is None and not self._expiring

    def enforce_limits(self) -> None:
        """Live, after `replace_features`: expire the head and drop what a lower length limit leaves
        over (dead-lettered first, as any drop-head)."""
        if not self.plain:
            features = self.features
            self._after_change(features.limit if features is not None else None)

    # -- messages in ------------------------------------------------------------------------------------

    def new_entry(self, msg_id: int, size: int, priority: int, published: int, ttl: int | None) -> QueueEntry:
        """This queue's record of a message published at `published` (ms since the epoch; 0: now) whose own
        `expiration` is `ttl` ms (None: none); it expires `ttl` after `published`, or the queue's
        x-message-ttl after it when that is earlier."""
        features = self.features
        queue_ttl = features.message_ttl if features is not None else None
        if ttl is None and queue_ttl is None:
            return QueueEntry(msg_id, size, priority)
        self._may_expire()
        # Publish time 0: a transient publish without TTL or priority properties, whose time only a
        # queue with x-message-ttl needs (read here, not on every publish).
        return QueueEntry(msg_id, size, priority, deadline(published or now_ms(), ttl, queue_ttl))

    def enqueue(self, entry: QueueEntry) -> bool:
        """Make an entry ready and hand it to a consumer if one has credit; False when the queue refused
        it (a full queue with x-overflow reject-publish, see length_limit.py; its reference is given back)."""
        if not self.plain:
            return self._enqueue_checked(entry)
        self.stats.publish += 1
        if not entry.seq:
            self._seq = entry.seq = self._seq + 1
        sole = self._sole
        if sole is not None and not self._ready and not self._dispatching and sole.has_credit():
            # The common case, one consumer keeping up: deliver without the round-robin machinery.
            self._dispatching = True
            try:
                sole.deliver(self, entry)
            finally:
                self._dispatching = False
            if self._ready:  # the consumer requeued something while we were delivering
                self.dispatch()
            return True
        self._ready.append(entry)
        if self.consumer_count and not self._dispatching:
            self.dispatch()
        return True

    def _enqueue_checked(self, entry: QueueEntry) -> bool:
        """`enqueue` on a queue that is not plain: refused (and left as `maxlen`) when full with
        reject-publish; else ready, delivered if a consumer can take it (a deadline of now still reaches
        one), then the head expires and drops as deadlines and drop-head say."""
        features = self.features
        ready = self._ready
        limit = features.limit if features is not None else None
        if limit is not None and limit.refuses(len(ready), entry.size):
            if limit.overflow == REJECT_PUBLISH_DLX:
                self._dead_letter([entry], deadletter.MAXLEN)
            self.settle((entry,), "maxlen")
            return False
        self.stats.publish += 1
        if not entry.seq:
            self._seq = entry.seq = self._seq + 1
        ready.append(entry)
        if self.consumer_count and not self._dispatching:
            self._fresh = entry
            try:
                self.dispatch()
            finally:
                self._fresh = None
        self._after_change(limit)
        return True

    def _after_change(self, limit: LengthLimit | None) -> None:
        """After messages entered: expire the head (if entries may expire), then drop-head."""
        if self._expiring:
            self._expire_head(now_ms())
        if limit is not None and limit.drops_head:
            ready = self._ready
            dropped: list[QueueEntry] = []
            while ready and limit.over(len(ready)):
                dropped.append(ready.popleft())
            if dropped:
                self._remove(dropped, deadletter.MAXLEN, "maxlen")

    def refuses(self, size: int) -> bool:
        """True when `enqueue` would refuse a message of `size` bytes now (a full queue with x-overflow
        reject-publish or reject-publish-dlx): a confirm channel then enqueues it nowhere (a nacked
        message is never delivered)."""
        features = self.features
        if features is None:
            return False
        limit = features.limit
        return limit is not None and limit.refuses(len(self._ready), size)

    @property
    def queue_type(self) -> str:
        """classic, quorum or stream (queue_types.py)."""
        return queue_type(self.arguments)

    def content_of(self, entry: QueueEntry) -> Message:
        """The content to deliver for `entry` (from the content store), with x-delivery-count when the
        queue has a delivery limit and the entry came back before."""
        message = self.contents.get(entry.msg_id)
        features = self.features
        if features is not None and features.delivery is not None:
            delivery = features.delivery
            count = delivery.count(entry)
            if count or delivery.always:
                return with_delivery_count(message, count)
        return message

    # -- messages out -----------------------------------------------------------------------------------

    def checked_out(self, entry: QueueEntry) -> None:
        """Live: `entry` was handed to a consumer (or basic.get) that must acknowledge it. A durable queue
        that counts deliveries logs it, so that recovery knows it was out (delivery_limit.py)."""
        features = self.features
        if (
            features is not None
            and features.delivery is not None
            and entry.msg_id > 0
            and self.on_delivered is not None
            and self._logged.get(entry.msg_id) is entry
        ):
            self.on_delivered(self, entry.msg_id)

    def apply_delivered(self, ids: Iterable[int]) -> None:
        """The apply of MessagesDelivered: these logged messages are out."""
        features = self.features
        if features is not None and features.delivery is not None:
            logged = self._logged
            features.delivery.delivered([logged[msg_id] for msg_id in ids if msg_id in logged])

    def apply_returned(self, ids: Iterable[int]) -> None:
        """The apply of MessagesReturned: one failed delivery more for each of these logged messages."""
        features = self.features
        if features is not None and features.delivery is not None:
            logged = self._logged
            features.delivery.add_returns([logged[msg_id] for msg_id in ids if msg_id in logged])

    def _count_returns(self, delivery: DeliveryCounts, entries: Iterable[QueueEntry]) -> list[QueueEntry]:
        """Count one failed delivery for each returned entry: logged ones through `on_returned` (journaled,
        then `apply_returned`), the others here."""
        listed = list(entries)
        on_returned = self.on_returned
        if on_returned is None:
            delivery.add_returns(listed)
            return listed
        logged_map = self._logged
        logged: list[int] = []
        others: list[QueueEntry] = []
        for entry in listed:
            if entry.msg_id > 0 and logged_map.get(entry.msg_id) is entry:
                logged.append(entry.msg_id)
            else:
                others.append(entry)
        if logged:
            on_returned(self, logged)
        if others:
            delivery.add_returns(others)
        return listed

    def return_unacked(self) -> int:
        """The broker serves again (a restart, a promotion): the logged messages that were out to
        consumers when the log ended come back as their channels' close would have brought them (one
        failed delivery each, logged; over the limit they leave). How many came back."""
        features = self.features
        delivery = features.delivery if features is not None else None
        if delivery is None or not delivery.any_out or self.deleted:
            return 0
        out = [entry for entry in self._logged.values() if delivery.is_out(entry)]
        self.requeue(out)
        return len(out)

    def restore_delivery(self, counts: Iterable[tuple[int, int, bool]]) -> None:
        """A snapshot's delivery counts and delivered marks: (id, count, out) of logged messages."""
        features = self.features
        if features is None or features.delivery is None:
            return
        delivery = features.delivery
        logged = self._logged
        for msg_id, count, out in counts:
            entry = logged.get(msg_id)
            if entry is not None:
                delivery.restore(entry, count, out)

    def delivery_state(self) -> list[tuple[int, int, bool]]:
        """(id, count, out) of each logged message with a count or delivered, oldest first (snapshots,
        views)."""
        features = self.features
        if features is None or features.delivery is None:
            return []
        delivery = features.delivery
        state: list[tuple[int, int, bool]] = []
        for msg_id, entry in self._logged.items():
            count = delivery.count(entry)
            out = delivery.is_out(entry)
            if count or out:
                state.append((msg_id, count, out))
        return state

    def get(self) -> QueueEntry | None:
        """Take the oldest ready message (basic.get), or None when there is none (expired ones leave)."""
        ready = self._ready
        if not self.plain:
            now = now_ms()
            features = self.features
            if features is not None and features.expiry is not None:
                features.expiry.used(now)
            if self._expiring:
                self._expire_head(now)
        return ready.popleft() if ready else None

    def requeue(self, entries: Iterable[QueueEntry]) -> None:
        """Put delivered entries back at the head, in their original queue order, marked redelivered.

        Entries requeued earlier and still ready are merged by `seq`, so the ready list stays in publish
        order. With x-delivery-limit each return counts a failed delivery, and an entry over the limit
        leaves instead (dead-lettered as `delivery_limit`). A deleted queue drops them.
        """
        if self.deleted:
            self._release(entries)
            return
        features = self.features
        if features is not None and features.delivery is not None:
            delivery = features.delivery
            entries, over = delivery.over_limit(self._count_returns(delivery, entries))
            if over:
                self._remove(over, deadletter.DELIVERY_LIMIT, "drop")
        back = sorted(entries, key=_by_seq)
        if back:
            for entry in back:
                entry.redelivered = True
            ready = self._ready
            last = back[-1].seq
            if ready and ready[0].seq < last:
                # Only entries requeued before and not yet redelivered can sit ahead; there are few.
                while ready and ready[0].seq < last:
                    back.append(ready.popleft())
                back.sort(key=_by_seq)
            ready.extendleft(reversed(back))
        if back:
            self.dispatch()
        if not self.plain:
            self._after_change(features.limit if features is not None else None)

    def settle(self, entries: Iterable[QueueEntry], reason: str = "ack") -> None:
        """Entries leave for good (`reason` as in `events.REMOVAL_REASONS`) and give their content
        reference back; rejected ones (nack/reject without requeue) are dead-lettered first. Logged ones
        are reported to `on_removed` (one call per settle), which journals their removal and then
        applies it (`forget`)."""
        features = self.features
        if reason == "reject" and (features is None or features.dead_letter is None):
            # Dropped, having no dead-letter exchange to go to: counted as RabbitMQ counts it.
            if not isinstance(entries, (list, tuple)):
                entries = list(entries)
            self.contents.dead_lettered.add(deadletter.REJECTED, deadletter.DISABLED, len(entries))
        if features is None and not self.durable:  # the common case: nothing to log, nothing to decide
            release = self.contents.release
            for entry in entries:
                release(entry.msg_id)
            return
        if features is not None:
            if not isinstance(entries, (list, tuple)):
                entries = list(entries)
            if features.delivery is not None:
                features.delivery.forget(entries)
            if reason == "reject" and features.dead_letter is not None and not self.deleted:
                self._dead_letter(entries, deadletter.REJECTED)
        release = self.contents.release
        if not self.durable or self.deleted:
            for entry in entries:
                release(entry.msg_id)
            return
        logged: list[int] = []
        for entry in entries:
            if entry.msg_id > 0 and self.durable and not self.deleted:
                logged.append(entry.msg_id)
            else:
                release(entry.msg_id)
        if logged:
            if self.on_removed is not None:
                self.on_removed(self, logged, reason)
            else:
                self.forget(logged)

    def _expire_head(self, now: int) -> None:
        """Remove the entries at the head whose deadline has passed at `now`."""
        ready = self._ready
        if not ready:
            return
        due = ready[0].deadline
        if not due or due > now:
            return
        expired: list[QueueEntry] = []
        while ready:
            due = ready[0].deadline
            if not due or due > now:
                break
            expired.append(ready.popleft())
        self._remove(expired, deadletter.EXPIRED, "expired")

    def _remove(self, entries: list[QueueEntry], death: str, reason: str) -> None:
        """Entries leave without an ack: dead-letter them first (if configured), then log the removal."""
        self._dead_letter(entries, death)
        self.settle(entries, reason)

    def _dead_letter(self, entries: Iterable[QueueEntry], reason: str) -> None:
        """Republish the contents of `entries` to the dead-letter exchange, if the queue has one (before
        they are settled: settling gives their content references back). A content that cannot be read
        is not dead-lettered (the entry leaves all the same), with an error line naming it."""
        features = self.features
        target = features.dead_letter if features is not None else None
        if not isinstance(entries, (list, tuple)):
            entries = list(entries)
        if target is None:
            self.contents.dead_lettered.add(reason, deadletter.DISABLED, len(entries))
            return
        self.contents.dead_lettered.add(reason, deadletter.AT_MOST_ONCE, len(entries))
        get = self.contents.get
        messages: list[Message] = []
        for entry in entries:
            if entry.msg_id:
                try:
                    messages.append(get(entry.msg_id))
                except UnreadableContent as exc:
                    self.contents.unreadable += 1
                    log.error(
                        f"message not dead-lettered: its content cannot be read: {exc}",
                        extra={"vhost": self.vhost, "queue": self.name},
                    )
        target.send(self.name, messages, reason)

    def unreadable(self, entry: QueueEntry, error: UnreadableContent) -> None:
        """The content of `entry` cannot be read (its record is damaged, or not its own): the message
        leaves the queue as dropped, with an error line naming the queue, the message and where it lay,
        and is counted (`contents.unreadable`: /metrics and `ctl status`). Whoever asked (a consumer, a
        basic.get) goes on with the next message; nothing else is disturbed."""
        self.contents.unreadable += 1
        log.error(
            f"message dropped: its content cannot be read: {error}",
            extra={"vhost": self.vhost, "queue": self.name},
        )
        self.settle((entry,), "drop")

    def purge(self) -> int:
        """Drop every ready message (nothing is dead-lettered, as in RabbitMQ); return how many there
        were. Logged ones were removed (and their references given back) by the purge's MessagesRemoved;
        the others give theirs back here. Their delivery counts go (delivered entries keep theirs)."""
        ready = self._ready
        features = self.features
        if features is not None and features.delivery is not None:
            features.delivery.forget(ready)
        count = len(ready)
        self._release_transient(ready)
        ready.clear()
        return count

    def _release_transient(self, entries: Iterable[QueueEntry]) -> None:
        """Give back the references of the entries that are not logged here (logged ones give theirs
        back through `forget`)."""
        release = self.contents.release
        durable = self.durable
        for entry in entries:
            if not (durable and entry.msg_id > 0):
                release(entry.msg_id)

    def _release(self, entries: Iterable[QueueEntry]) -> None:
        """Entries of a deleted queue come back: give their references back (0 for logged ones: `drop`
        did already)."""
        release = self.contents.release
        for entry in entries:
            release(entry.msg_id)

    # -- lifecycle (called by the vhost) -----------------------------------------------------------------

    def tick(self, now: int) -> bool:
        """Once a second, on a queue that is not plain (queue_expiry.tick_queues): expire what is due at
        the head; True when the queue has been unused for its x-expires (the vhost then deletes it)."""
        if self.deleted:
            return False
        if self._expiring:
            self._expire_head(now)
        features = self.features
        expiry = features.expiry if features is not None else None
        return expiry is not None and not self.consumer_count and expiry.due(now)

    def drop(self) -> int:
        """Mark the queue deleted, drop its ready messages and cancel its consumers; return the drop count."""
        self.deleted = True
        ready = self._ready
        count = len(ready)
        self._release_transient(ready)
        ready.clear()
        release = self.contents.release
        logged = self._logged
        for msg_id, entry in logged.items():
            release(msg_id)
            entry.msg_id = 0  # delivered ones settle later: their reference is given back already
        logged.clear()
        features = self.features
        if features is not None and features.delivery is not None:
            features.delivery.clear()  # entries that come back now are dropped: no count is needed
        for consumer in self.detach_consumers():
            consumer.cancelled_by_broker()
        return count
