"""A queue's durable index: its logged messages by id, what a snapshot records and replay rebuilds.

Strategy: a durable queue keeps the entries of its logged messages (ready or delivered) in a dict by
message id, in log order. `index` adds one (the apply of a publish, live or replayed), `forget` removes
them (the apply of a MessagesRemoved: each gives its content reference back), `restore_index` adds a
snapshot's index in bulk, and `recovered` makes them all ready once replay is over. Nothing here decides
anything or dispatches: the live path makes entries ready itself (queue.py). `Queue` is this plus its
consumers (dispatch.py, the base) and its messages (queue.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from operator import attrgetter

from ottermq.broker.content import Contents
from ottermq.broker.dispatch import Dispatcher
from ottermq.broker.message import QueueEntry, message_priority
from ottermq.broker.ttl import now_ms

_deadline_of = attrgetter("deadline")


class DurableIndex(Dispatcher):
    """The logged entries of one queue, by id in log order."""

    __slots__ = ("_logged", "_seq")

    # Kept by Queue (queue.py), read here.
    contents: Contents
    durable: bool

    def __init__(self) -> None:
        Dispatcher.__init__(self)
        # Logged messages of a durable queue, ready or delivered, by id in log order: what a snapshot
        # records and what keeps their records alive in the log.
        self._logged: dict[int, QueueEntry] = {}
        self._seq = 0

    def _may_expire(self) -> None:
        """Entries with deadlines may be ready from now on (Queue reads the clock from then on)."""
        raise NotImplementedError

    def index(self, entry: QueueEntry) -> None:
        """A logged message joins this durable queue (the apply of its publish, live or replayed): it
        counts among the logged messages from now on (a snapshot keeps it, its record stays live). It
        becomes ready through `enqueue` (live) or `recovered` (after a replay)."""
        self._seq = entry.seq = self._seq + 1
        if self.durable:
            self._logged[entry.msg_id] = entry

    def forget(self, ids: Iterable[int]) -> None:
        """Logged messages removed for good (the apply of a MessagesRemoved event): their entries give
        their content references back."""
        logged = self._logged
        release = self.contents.release
        features = self.features
        delivery = features.delivery if features is not None else None
        for msg_id in ids:
            entry = logged.pop(msg_id, None)
            if entry is not None:
                release(msg_id)
                if delivery is not None:
                    delivery.forget((entry,))

    # -- recovery -----------------------------------------------------------------

    def ready_logged_ids(self) -> list[int]:
        """Ids of the logged messages that are ready (what a purge removes)."""
        if not self.durable:
            return []
        return [entry.msg_id for entry in self._ready if entry.msg_id > 0]

    def logged_entries(self) -> list[QueueEntry]:
        """Every logged message of the queue, ready or delivered, oldest first."""
        return list(self._logged.values())

    def holds_logged(self, msg_id: int) -> bool:
        """True when the logged message `msg_id` is one of this queue's (ready or delivered)."""
        return msg_id in self._logged

    @property
    def logged_count(self) -> int:
        """How many logged messages the queue holds (ready or delivered)."""
        return len(self._logged)

    def seqs(self, count: int) -> range:
        """The next `count` sequence numbers, for entries restored in bulk (`restore_index`)."""
        start = self._seq + 1
        self._seq += count
        return range(start, start + count)

    def restore_index(self, ids: list[int], entries: list[QueueEntry]) -> None:
        """Recovery in bulk (a snapshot's index of the queue, in log order): `index` of each entry
        (`ids` are their ids, their seqs come from `seqs`), without a method call per entry (a million at
        start-up).

        The deadlines the log kept come back as they are. A message of an older log has none (0 with
        x-message-ttl set cannot be a kept deadline): the queue's x-message-ttl then counts again from
        the restart; its own `expiration` is not read here, as that would read every content of the
        backlog from the log. On a priority queue, a priority not kept (-1) is read from the content once.
        """
        self._logged.update(zip(ids, entries, strict=True))
        if not self._expiring and any(map(_deadline_of, entries)):
            self._may_expire()
        features = self.features
        if features is None:
            return
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

    def promoted(self) -> None:
        """A replication follower's projection starts serving (its node leads now): publishes it applied
        were only indexed and its ready entries are those of its last recovery, so every logged message
        becomes ready again, in log order, redelivered (it may have been delivered by the old leader)."""
        self._ready.clear()
        self.recovered(True)

    def recovered(self, redelivered: bool) -> None:
        """Recovery is over: every restored message still logged becomes ready, in log order, but those
        logged as out to a consumer (a queue counting deliveries: `Queue.return_unacked` returns them);
        `redelivered` marks them all (after a crash they may have been delivered)."""
        entries: Iterable[QueueEntry] = self._logged.values()
        if redelivered:
            for entry in entries:
                entry.redelivered = True
        features = self.features
        if features is not None and features.limit is not None and features.limit.sized:
            # Sizes not kept by an older snapshot (-1) are learnt from the contents, once.
            get = self.contents.get
            for entry in entries:
                if entry.size < 0:
                    entry.size = get(entry.msg_id).body_size
        delivery = features.delivery if features is not None else None
        if delivery is not None and delivery.any_out:
            # Still out to a consumer when the log ended: they come back when the broker serves again
            # (`Queue.return_unacked`), counted as a failed delivery, as RabbitMQ returns them.
            entries = [entry for entry in entries if not delivery.is_out(entry)]
        self._ready.extend(entries)
