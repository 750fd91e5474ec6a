"""The consumer side of a queue: who may consume, the consumers by priority, and the one dispatch loop.

Strategy: consumers are grouped by priority, highest first (consumer_groups.py); within a group they are
served round-robin, skipping those without credit. `dispatch` runs until the ready list is empty or no
consumer has credit, and is re-entrancy safe: a consumer that calls back into the queue from `deliver`
does not start a nested pass. Entries found at the head past their deadline leave as expired on the way
(only on a queue that may hold such entries). On a single-active-consumer queue only the active consumer
is in the groups; the others wait in the feature part (single_active.py) and count as consumers all the
same. `Queue` (queue.py) is this plus its messages.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, cast

from ottermq.amqp.constants import ACCESS_REFUSED
from ottermq.amqp.errors import ChannelError
from ottermq.broker import deadletter
from ottermq.broker.consumer import Consumer
from ottermq.broker.consumer_groups import ConsumerGroups
from ottermq.broker.features import QueueFeatures
from ottermq.broker.message import QueueEntry
from ottermq.broker.ready import Ready
from ottermq.broker.ttl import now_ms

if TYPE_CHECKING:
    from ottermq.broker.queue import Queue


class Dispatcher:
    """The consumers of one queue and the loop that hands them its ready entries."""

    __slots__ = (
        "_consumers",
        "_dispatching",
        "_exclusive_consumer",
        "_groups",
        "_had_consumer",
        "_sole",
        "consumer_count",
        "on_unused",
    )

    # Kept by Queue (queue.py), read here.
    _ready: Ready
    _expiring: bool
    _fresh: QueueEntry | None
    features: QueueFeatures | None
    deleted: bool
    auto_delete: bool
    resource: str

    def __init__(self) -> None:
        self.consumer_count = 0
        # Set by the vhost: called when an auto-delete queue loses its last consumer.
        self.on_unused: Callable[[Queue], None] | None = None
        self._consumers = ConsumerGroups()
        # The groups the dispatch loop walks (the same list as `_consumers.groups`: one lookup less).
        self._groups = self._consumers.groups
        self._exclusive_consumer: Consumer | None = None
        # The only consumer, when there is exactly one (the enqueue fast path).
        self._sole: Consumer | None = None
        self._had_consumer = False
        self._dispatching = False

    def _remove(self, entries: list[QueueEntry], death: str, reason: str) -> None:
        """Entries leave without an ack (expired here): Queue dead-letters and settles them."""
        raise NotImplementedError

    def check_can_consume(self, exclusive: bool) -> None:
        """Raise 403 unless a new consumer (exclusive or not) may subscribe now."""
        if self._exclusive_consumer is not None or (exclusive and self.consumer_count):
            raise ChannelError(ACCESS_REFUSED, f"ACCESS_REFUSED - {self.resource} in exclusive use")

    def add_consumer(self, consumer: Consumer) -> None:
        """Register a consumer (403 when exclusivity forbids it); on a single-active-consumer queue with
        an active one, it waits its turn (and counts among the consumers all the same).

        It does not dispatch: the channel sends basic.consume-ok first, then calls `dispatch()`.
        """
        self.check_can_consume(consumer.exclusive)
        features = self.features
        if features is not None:
            features.used()
        waiting = features.single_active if features is not None else None
        if waiting is not None and self.consumer_count:
            waiting.park(consumer)
        else:
            self._consumers.add(consumer)
        self.consumer_count += 1
        self._sole = consumer if self.consumer_count == 1 else None
        self._had_consumer = True
        if consumer.exclusive:
            self._exclusive_consumer = consumer

    def remove_consumer(self, consumer: Consumer) -> bool:
        """Unregister a consumer (a no-op if unknown). When the active consumer of a single-active-consumer
        queue leaves, the longest-waiting one takes over and gets what is ready.

        Returns True when this was the last consumer of an auto-delete queue: the queue is then deleted
        (through `on_unused`) before this returns.
        """
        features = self.features
        waiting = None
        if features is not None:
            features.used()
            waiting = features.single_active
            if waiting is not None and waiting.leave(consumer):
                self.consumer_count -= 1
                self._sole = self._consumers.first() if self.consumer_count == 1 else None
                return False
        consumers = self._consumers
        if not consumers.remove(consumer):
            return False
        self.consumer_count -= 1
        if self._exclusive_consumer is consumer:
            self._exclusive_consumer = None
        successor = waiting.next() if waiting is not None else None
        if successor is not None:
            consumers.add(successor)
        self._sole = consumers.first() if self.consumer_count == 1 else None
        if successor is not None:
            self.dispatch()
            return False
        if self.auto_delete and not self.consumer_count and self._had_consumer and not self.deleted:
            if self.on_unused is not None:
                self.on_unused(cast("Queue", self))
            return True
        return False

    def consumers(self) -> list[Consumer]:
        """The consumers, highest priority first, then those waiting their turn (single active)."""
        active = self._consumers.members()
        features = self.features
        if features is not None and features.single_active is not None:
            return active + features.single_active.members()
        return active

    def dispatch(self) -> None:
        """Deliver ready messages to consumers with credit: priority first, round-robin within a priority.

        Entries found at the head past their deadline leave as expired instead (the clock is read only
        when entries may expire); the entry being enqueued (`_fresh`) is exempt, so a TTL of 0 still
        reaches a consumer that can take it at once.
        """
        ready = self._ready
        if self._dispatching or not ready or not self.consumer_count:
            return
        # A Dispatcher is the base of a Queue and nothing else (no typing.cast: a call on every pass).
        queue: Queue = self  # type: ignore[assignment]
        # A bool, not the time: the per-message test of the loop stays a pointer comparison.
        expiring = self._expiring
        now = now_ms() if expiring else 0
        expired: list[QueueEntry] | None = None
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
                    if expiring:
                        head = ready[0]
                        due = head.deadline
                        if due and due <= now and head is not self._fresh:
                            if expired is None:
                                expired = []
                            expired.append(ready.popleft())
                            continue
                    n = len(members)
                    if idle >= n:
                        break
                    if i >= n:
                        i = 0
                    consumer = members[i]
                    i += 1
                    if consumer.has_credit():
                        consumer.deliver(queue, ready.popleft())
                        idle = 0
                    else:
                        idle += 1
                group.next = i
        finally:
            self._dispatching = False
        if expired is not None:
            self._remove(expired, deadletter.EXPIRED, "expired")

    def detach_consumers(self) -> list[Consumer]:
        """Forget every consumer (waiting ones too) without telling them; return them."""
        consumers = self.consumers()
        features = self.features
        if features is not None and features.single_active is not None:
            features.single_active.take_all()
        self._consumers.clear()
        self.consumer_count = 0
        self._sole = None
        self._exclusive_consumer = None
        return consumers
