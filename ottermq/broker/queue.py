"""A queue: ready messages in FIFO order and the consumers they are dispatched to.

Strategy: ready messages are a deque of `QueueEntry` ordered by `seq`; enqueue appends, delivery pops from
the head, and requeued entries are merged back at the head by `seq`, so a message returned by a consumer
takes its original place again. Unacknowledged entries are not kept here: the channel that received them
holds them and hands them back through `requeue` or `settle`.

Consumers are grouped by priority, highest first; within a group they are served round-robin, skipping
those without credit. `dispatch` runs until the ready list is empty or no consumer has credit, and is
re-entrancy safe: a consumer that calls back into the queue from `deliver` does not start a nested pass.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from operator import attrgetter
from typing import Any, Final

from ottermq.amqp.constants import ACCESS_REFUSED
from ottermq.amqp.errors import ChannelError
from ottermq.broker.consumer import Consumer
from ottermq.broker.content import Contents
from ottermq.broker.message import Message, QueueEntry

_by_seq = attrgetter("seq")
# The content store of queues made without a vhost (unit tests): contents are added by whoever makes
# their entries, so one store for all of them is enough.
_ORPHANS: Final = Contents()


class _PriorityGroup:
    """Consumers of one priority, served round-robin from `next`."""

    __slots__ = ("members", "next", "priority")

    def __init__(self, priority: int) -> None:
        self.priority = priority
        self.members: list[Consumer] = []
        self.next = 0


class Queue:
    """A queue of one vhost. Created and removed by `VHost`, which owns its lifecycle."""

    __slots__ = (
        "_dispatching",
        "_exclusive_consumer",
        "_groups",
        "_had_consumer",
        "_logged",
        "_ready",
        "_seq",
        "_sole",
        "arguments",
        "auto_delete",
        "consumer_count",
        "contents",
        "deleted",
        "durable",
        "exclusive_owner",
        "features",
        "name",
        "on_removed",
        "on_unused",
        "resource",
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
    ) -> None:
        self.name = name
        self.vhost = vhost
        self.durable = durable
        self.exclusive_owner = exclusive_owner
        self.auto_delete = auto_delete
        self.arguments: dict[str, Any] = arguments if arguments is not None else {}
        # How RabbitMQ names a queue in its error texts.
        self.resource = f"queue '{name}' in vhost '{vhost}'"
        self.consumer_count = 0
        self.deleted = False
        # The owner of the contents its entries name: each entry holds one reference, given back when it
        # leaves the queue for good. Set by the vhost (a queue made alone, in tests, gets its own).
        self.contents: Contents = _ORPHANS
        # Set by the vhost: called when an auto-delete queue loses its last consumer.
        self.on_unused: Callable[[Queue], None] | None = None
        # TTL, limits, dead lettering... (limits_queue.QueueFeatures) on a FeatureQueue; None on plain queues.
        self.features: Any = None
        # Set by the vhost on durable queues: called with the ids of logged messages that leave for good.
        self.on_removed: Callable[[Queue, list[int], str], None] | None = None
        # Logged messages of a durable queue, ready or delivered, by id in log order: what a snapshot
        # records and what keeps their records alive in the log.
        self._logged: dict[int, QueueEntry] = {}
        self._ready: deque[QueueEntry] = deque()
        self._seq = 0
        self._groups: list[_PriorityGroup] = []
        self._exclusive_consumer: Consumer | None = None
        # The only consumer, when there is exactly one (the enqueue fast path).
        self._sole: Consumer | None = None
        self._had_consumer = False
        self._dispatching = False

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

    # -- messages ---------------------------------------------------------------------------------------

    def new_entry(self, msg_id: int, size: int, priority: int, published: int, ttl: int | None) -> QueueEntry:
        """This queue's record of a message published at `published` (ms since the epoch) whose own
        `expiration` is `ttl` ms (None: none); it expires `ttl` after `published`."""
        return QueueEntry(msg_id, size, priority, published + ttl if ttl is not None else 0)

    def index(self, entry: QueueEntry) -> None:
        """A logged message joins this durable queue (the apply of its publish, live or replayed): it
        counts among the logged messages from now on (a snapshot keeps it, its record stays live). It
        becomes ready through `enqueue` (live) or `recovered` (after a replay)."""
        self._seq = entry.seq = self._seq + 1
        if self.durable:
            self._logged[entry.msg_id] = entry

    def enqueue(self, entry: QueueEntry) -> bool:
        """Make an entry ready and hand it to a consumer if one has credit; False when the queue refused
        it (a full queue with x-overflow reject-publish, see limits_queue.py; its reference is given back)."""
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

    def refuses(self, size: int) -> bool:
        """True when `enqueue` would refuse a message of `size` bytes now (a full queue with x-overflow
        reject-publish or reject-publish-dlx): a confirm channel then enqueues it nowhere (a nacked
        message is never delivered)."""
        features = self.features
        return (
            features is not None
            and features.overflow != "drop-head"
            and (features.max_length is not None or features.max_bytes is not None)
            and features.would_overflow(len(self._ready), size)
        )

    def content_of(self, entry: QueueEntry) -> Message:
        """The content to deliver for `entry` (from the content store)."""
        return self.contents.get(entry.msg_id)

    def get(self) -> QueueEntry | None:
        """Take the oldest ready message (basic.get), or None when there is none."""
        ready = self._ready
        return ready.popleft() if ready else None

    def requeue(self, entries: Iterable[QueueEntry]) -> None:
        """Put delivered entries back at the head, in their original queue order, marked redelivered.

        Entries requeued earlier and still ready are merged by `seq`, so the ready list stays in publish
        order. A deleted queue drops them.
        """
        if self.deleted:
            self._release(entries)
            return
        back = sorted(entries, key=_by_seq)
        if not back:
            return
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
        self.dispatch()

    def settle(self, entries: Iterable[QueueEntry], reason: str = "ack") -> None:
        """Entries leave for good (`reason` as in `events.REMOVAL_REASONS`) and give their content
        reference back. Logged ones are reported to `on_removed` (one call per settle), which journals
        their removal and then applies it (`forget`)."""
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

    def forget(self, ids: Iterable[int]) -> None:
        """Logged messages removed for good (the apply of a MessagesRemoved event): their entries give
        their content references back."""
        logged = self._logged
        release = self.contents.release
        for msg_id in ids:
            if logged.pop(msg_id, None) is not None:
                release(msg_id)

    def ready_logged_ids(self) -> list[int]:
        """Ids of the logged messages that are ready (what a purge removes)."""
        if not self.durable:
            return []
        return [entry.msg_id for entry in self._ready if entry.msg_id > 0]

    def logged_entries(self) -> list[QueueEntry]:
        """Every logged message of the queue, ready or delivered, oldest first."""
        return list(self._logged.values())

    @property
    def logged_count(self) -> int:
        """How many logged messages the queue holds (ready or delivered)."""
        return len(self._logged)

    def restore_index(self, entries: list[QueueEntry]) -> None:
        """Recovery in bulk (a snapshot's index of the queue, in log order): `index` of each entry,
        without a method call per entry (a million at start-up)."""
        start = self._seq + 1
        for seq, entry in enumerate(entries, start):
            entry.seq = seq
        self._seq += len(entries)
        self._logged.update([(entry.msg_id, entry) for entry in entries])

    def recovered(self, redelivered: bool) -> None:
        """Recovery is over: every restored message still logged becomes ready, in log order;
        `redelivered` marks them all (after a crash they may have been delivered)."""
        entries = self._logged.values()
        if redelivered:
            for entry in entries:
                entry.redelivered = True
        self._ready.extend(entries)

    def purge(self) -> int:
        """Drop every ready message; return how many there were. Logged ones were removed (and their
        references given back) by the purge's MessagesRemoved; the others give theirs back here."""
        ready = self._ready
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

    # -- consumers --------------------------------------------------------------------------------------

    def check_can_consume(self, exclusive: bool) -> None:
        """Raise 403 unless a new consumer (exclusive or not) may subscribe now."""
        if self._exclusive_consumer is not None or (exclusive and self.consumer_count):
            raise ChannelError(ACCESS_REFUSED, f"ACCESS_REFUSED - {self.resource} in exclusive use")

    def add_consumer(self, consumer: Consumer) -> None:
        """Register a consumer (403 when exclusivity forbids it).

        It does not dispatch: the channel sends basic.consume-ok first, then calls `dispatch()`.
        """
        self.check_can_consume(consumer.exclusive)
        priority = consumer.priority
        groups = self._groups
        index = 0
        while index < len(groups) and groups[index].priority > priority:
            index += 1
        if index == len(groups) or groups[index].priority != priority:
            groups.insert(index, _PriorityGroup(priority))
        groups[index].members.append(consumer)
        self.consumer_count += 1
        self._sole = consumer if self.consumer_count == 1 else None
        self._had_consumer = True
        if consumer.exclusive:
            self._exclusive_consumer = consumer

    def remove_consumer(self, consumer: Consumer) -> bool:
        """Unregister a consumer (a no-op if unknown).

        Returns True when this was the last consumer of an auto-delete queue: the queue is then deleted
        (through `on_unused`) before this returns.
        """
        place = self._locate(consumer)
        if place is None:
            return False
        gi, index = place
        group = self._groups[gi]
        del group.members[index]
        if index < group.next:
            group.next -= 1
        if not group.members:
            del self._groups[gi]
        self.consumer_count -= 1
        self._sole = self._groups[0].members[0] if self.consumer_count == 1 else None
        if self._exclusive_consumer is consumer:
            self._exclusive_consumer = None
        if self.auto_delete and not self.consumer_count and self._had_consumer and not self.deleted:
            if self.on_unused is not None:
                self.on_unused(self)
            return True
        return False

    def _locate(self, consumer: Consumer) -> tuple[int, int] | None:
        """(group index, member index) of a consumer, compared by identity."""
        for gi, group in enumerate(self._groups):
            for index, member in enumerate(group.members):
                if member is consumer:
                    return gi, index
        return None

    def consumers(self) -> list[Consumer]:
        """The consumers, highest priority first."""
        return [member for group in self._groups for member in group.members]

    def dispatch(self) -> None:
        """Deliver ready messages to consumers with credit: priority first, round-robin within a priority."""
        ready = self._ready
        if self._dispatching or not ready or not self.consumer_count:
            return
        self._dispatching = True
        try:
            groups = self._groups
            gi = 0
            # Indexes are re-read every turn: a consumer may go away inside deliver().
            while ready and gi < len(groups):
                group = groups[gi]
                gi += 1
                members = group.members
                i = group.next
                idle = 0
                while ready:
                    n = len(members)
                    if idle >= n:
                        break
                    if i >= n:
                        i = 0
                    consumer = members[i]
                    i += 1
                    if consumer.has_credit():
                        consumer.deliver(self, ready.popleft())
                        idle = 0
                    else:
                        idle += 1
                group.next = i
        finally:
            self._dispatching = False

    # -- lifecycle (called by the vhost) -----------------------------------------------------------------

    def detach_consumers(self) -> list[Consumer]:
        """Forget every consumer without telling them; return them."""
        consumers = self.consumers()
        self._groups.clear()
        self.consumer_count = 0
        self._sole = None
        self._exclusive_consumer = None
        return consumers

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
        for consumer in self.detach_consumers():
            consumer.cancelled_by_broker()
        return count
