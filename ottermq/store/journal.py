"""The broker's `Journal` over a Memento log: appends encode and stage, a writer thread group-commits.

Strategy: `append` encodes the event and stages it in the log (no I/O, no await) and returns the LSN as
the position. Durability callbacks wait in a FIFO ordered by position; at most one AsyncWriter future is
outstanding at a time, for the newest position waited on, so a batch of thousands of confirms costs one
future, not one each. When it resolves, every callback up to the writer's durable LSN runs in order.

A full disk suspends the journal (the writer retries until space returns): the failure callbacks of
everything pending run (confirms become basic.nack, tx.commit fails), `failed` turns True (new publishes
are nacked, durable changes refused with 541) and `suspended` too, and the `on_suspended` hook (the store)
raises the disk alarm and says why. Removals (acks) keep being staged, so consumers keep draining and what
they settled is logged on resume, in order; what was staged is written then too. When a retry succeeds,
`on_resumed` runs and everything works again.

Replication (ottermq.cluster) adds a second condition: a position is confirmed only once it is durable here
AND at or below `replica_lsn`, the LSN every in-sync follower has acknowledged (no cluster: no limit).
Replication moves it with `replicated(lsn)`, and `hold(reason)` refuses new work as a full disk does while
too few nodes are in sync. Any other write or fsync failure is final: the same
callbacks run, `failed` stays True for good, and `on_failure` is called.

Reading a message back (`read_content`) checks that the record found is that message's own publish; the
content store (store/contents.py) keeps what was read, so fan-out copies and redeliveries do not read
the segment again.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Final

from memento.errors import MementoError
from memento.log import Log
from memento.record import RecordPosition, original
from memento.writer import AsyncWriter
from ottermq.amqp.constants import INTERNAL_ERROR
from ottermq.amqp.errors import AMQPConnectionError
from ottermq.broker.events import (
    MESSAGE_INDEX_BITS,
    Event,
    MessagePublished,
    MessagesDelivered,
    MessagesRemoved,
    MessagesReturned,
)
from ottermq.store.codec import (
    PUBLISH_TYPES,
    PUBLISHED_AT,
    RT_PUBLISH_AT,
    RT_REMOVED,
    RT_TX,
    CodecError,
    decode_content,
    encode,
    encode_removed,
    inner_records,
    pack_loc,
    publish_prefix,
    unpack_loc,
)

_INDEX_MASK: Final = (1 << MESSAGE_INDEX_BITS) - 1
NO_REPLICA_LIMIT: Final = 1 << 63  # `replica_lsn` without replication: every durable position confirms
# What a suspended journal (full disk) still stages: nobody waits for these, and consumers keep going.
_KEPT_WHILE_SUSPENDED: Final = frozenset((MessagesRemoved, MessagesDelivered, MessagesReturned))


class ContentMismatch(CodecError):
    """The record at a message's stored position is not that message's publish."""


Waiter = tuple[int, Callable[[], None], "Callable[[], None] | None"]


class MementoJournal:
    """A `Journal` writing to a Memento log; `start()` inside the event loop before the first append."""

    def __init__(self, log: Log) -> None:
        self.log = log
        self.writer: AsyncWriter | None = None
        self.last_loc = 0
        self.appended_bytes = 0  # since open: the store snapshots by log volume
        self.on_failure: Callable[[BaseException], None] | None = None
        self.on_suspended: Callable[[OSError], None] | None = None
        self.on_resumed: Callable[[float], None] | None = None
        self._error: BaseException | None = None
        self._suspended: OSError | None = None
        self._refusing = False  # failed or suspended: read on every publish, so a plain attribute
        self._waiters: deque[Waiter] = deque()
        self._requested = 0  # the position the outstanding writer future waits for (0: none)
        # Publish payload prefixes by (vhost, queues, exchange, routing key, properties size).
        self._prefixes: dict[tuple[str, tuple[str, ...], str, str, int], bytes] = {}
        # Removals waiting for the end of the event-loop turn, by (vhost, queue, reason): one record each.
        self._removed: dict[tuple[str, str, str], list[int]] = {}
        # Deliveries of queues counting them (MessagesDelivered), gathered the same way by (vhost, queue),
        # and staged before the removals (a message acked in the turn it was delivered in).
        self._delivered: dict[tuple[str, str], list[int]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        # The highest LSN every in-sync follower has acknowledged (ottermq.cluster.replication).
        self.replica_lsn = NO_REPLICA_LIMIT
        self._held: str | None = None  # why replication refuses new work (too few in sync), or None

    def start(self) -> None:
        """Start group commit (inside the running event loop)."""
        writer = self.writer = AsyncWriter(self.log)
        writer.on_suspended = self._suspend
        writer.on_resumed = self._resume
        self._loop = asyncio.get_running_loop()

    # -- the Journal protocol ---------------------------------------------------------------------------

    @property
    def durable_position(self) -> int:
        """The highest LSN on disk."""
        writer = self.writer
        return writer.durable_lsn if writer is not None else self.log.durable_lsn

    @property
    def failed(self) -> bool:
        """True once a write or fsync failed, and while suspended by a full disk: nothing new is
        confirmed, publishes are nacked and durable changes refused."""
        return self._refusing

    @property
    def suspended(self) -> bool:
        """True while a full disk holds writing up (until it resumes or fails for good); removals are
        still staged meanwhile."""
        return self._suspended is not None

    @property
    def next_position(self) -> int:
        """The LSN the next append gets (gathered removals are staged first, so that it really does)."""
        if self._removed or self._delivered:
            self.flush_removals()
        return self.log.end_lsn + 1

    def append(self, event: Event) -> int:
        """Encode and stage `event`; its LSN. 541 (connection error) if the log cannot take it.

        Removals (acks...) are not waited for by anyone, so while serving they are gathered until the end
        of the event-loop turn and logged as one record per queue; the position returned for one is that
        of the last record already staged. Deliveries (MessagesDelivered) are gathered too, and staged
        before the removals. Any other event but a publish first stages the gathered ones, so the order
        of deliveries, returns, removals and entity changes is kept. Like removals, deliveries and
        returns are still taken while the disk is full.
        """
        if self._refusing and (self._error is not None or type(event) not in _KEPT_WHILE_SUSPENDED):
            why = (
                "has failed"
                if self._error is not None
                else f"is held: {self._held}"
                if self._held is not None
                else "is suspended: the disk is full"
            )
            raise AMQPConnectionError(INTERNAL_ERROR, f"INTERNAL_ERROR - the journal {why}")
        if isinstance(event, MessagePublished):
            key = (event.vhost, event.queues, event.exchange, event.routing_key, len(event.properties))
            prefix = self._prefixes.get(key)
            if prefix is None:
                if len(self._prefixes) >= 4096:
                    self._prefixes.clear()
                prefix = self._prefixes[key] = publish_prefix(*key)
            rtype = RT_PUBLISH_AT
            payload = b"".join((PUBLISHED_AT.pack(event.published), prefix, event.properties, event.body))
        elif isinstance(event, MessagesRemoved) and self._loop is not None:
            key_removed = (event.vhost, event.queue, event.reason)
            pending = self._removed.get(key_removed)
            if pending is None:
                if not self._removed and not self._delivered:
                    self._loop.call_soon(self.flush_removals)
                self._removed[key_removed] = list(event.ids)
            else:
                pending.extend(event.ids)
            return self.log.end_lsn
        elif type(event) is MessagesDelivered and self._loop is not None:
            assert isinstance(event, MessagesDelivered)
            key_delivered = (event.vhost, event.queue)
            gathered = self._delivered.get(key_delivered)
            if gathered is None:
                if not self._removed and not self._delivered:
                    self._loop.call_soon(self.flush_removals)
                self._delivered[key_delivered] = list(event.ids)
            else:
                gathered.extend(event.ids)
            return self.log.end_lsn
        else:
            if self._removed or self._delivered:
                self.flush_removals()
            rtype, payload = encode(event)
        return self._stage(rtype, payload)

    def flush_removals(self) -> None:
        """Stage the gathered deliveries (one record per queue), then removals (one per queue and
        reason)."""
        delivered, self._delivered = self._delivered, {}
        removed, self._removed = self._removed, {}
        if self._error is not None:
            return
        for (vhost, queue), ids in delivered.items():
            try:
                self._stage(*encode(MessagesDelivered(vhost, queue, tuple(ids))))
            except AMQPConnectionError:
                return
        for (vhost, queue, reason), ids in removed.items():
            try:
                self._stage(RT_REMOVED, encode_removed(MessagesRemoved(vhost, queue, tuple(ids), reason)))
            except AMQPConnectionError:
                return  # the failure is recorded and reported; nothing more can be logged

    def _stage(self, rtype: int, payload: bytes) -> int:
        log = self.log
        try:
            lsn = log.append(rtype, payload)
        except MementoError as exc:
            self._fail(exc)
            raise AMQPConnectionError(
                INTERNAL_ERROR, f"INTERNAL_ERROR - the journal has failed: {exc}"
            ) from None
        position = log.last_position
        self.last_loc = pack_loc(position.segment, position.offset)
        self.appended_bytes += len(payload)
        return lsn

    def when_durable(
        self, position: int, callback: Callable[[], None], failed: Callable[[], None] | None = None
    ) -> None:
        """Run `callback` once `position` is on disk, or `failed` if the log fails or suspends first
        (at once while it is suspended: nothing further is confirmed)."""
        if self._refusing:
            if failed is not None:
                failed()
            return
        writer = self.writer
        if writer is None or (position <= writer.durable_lsn and position <= self.replica_lsn):
            callback()
            return
        self._waiters.append((position, callback, failed))
        if not self._requested and position > writer.durable_lsn:
            self._request(position)

    # -- waking waiters -----------------------------------------------------------------------------------

    def _request(self, position: int) -> None:
        writer = self.writer
        assert writer is not None
        self._requested = position
        try:
            future = writer.wait_durable(position)
        except MementoError as exc:
            self._fail(exc)
            return
        future.add_done_callback(self._on_durable)

    def _on_durable(self, future: asyncio.Future[None]) -> None:
        self._requested = 0
        if future.cancelled():
            return
        error = future.exception()
        if error is not None:
            self._fail(error)
            return
        writer = self.writer
        assert writer is not None
        self._release(writer.durable_lsn)

    def _release(self, durable: int) -> None:
        """Confirm the waiters up to `durable` and the replicas' LSN; wait for the writer past it."""
        confirmed = min(durable, self.replica_lsn)
        waiters = self._waiters
        while waiters and waiters[0][0] <= confirmed:
            waiters.popleft()[1]()
        # Positions are appended in order, so the newest waited on is the last one. Waiters durable here
        # but not yet acknowledged by the replicas are released by `replicated`.
        if waiters and not self._requested and waiters[-1][0] > durable:
            self._request(waiters[-1][0])

    def replicated(self, lsn: int) -> None:
        """Every in-sync follower has acknowledged up to `lsn` (NO_REPLICA_LIMIT: none is left to wait
        for): confirm what is durable here up to it."""
        self.replica_lsn = lsn
        writer = self.writer
        if writer is not None and not self._refusing:
            self._release(writer.durable_lsn)

    def hold(self, reason: str | None) -> None:
        """Refuse new work and nack what waits (`reason`: why, e.g. too few nodes in sync), or accept
        again (None) unless the disk or the log keeps refusing."""
        self._held = reason
        if reason is not None:
            self._refusing = True
            self._fail_waiters()
        elif self._error is None and self._suspended is None:
            self._refusing = False

    def _fail(self, error: BaseException) -> None:
        if self._error is not None:
            return
        self._error = error
        self._suspended = None
        self._refusing = True
        self._fail_waiters()
        if self.on_failure is not None:
            self.on_failure(error)

    def _fail_waiters(self) -> None:
        waiters, self._waiters = self._waiters, deque()
        for _position, _callback, failed in waiters:
            if failed is not None:
                failed()

    def _suspend(self, error: OSError) -> None:
        """The writer met a full disk: nothing pending will be confirmed (it is written on resume all the
        same), nothing new is accepted but removals."""
        if self._error is not None:
            return
        self._suspended = error
        self._refusing = True
        # The report of the last good batch may still be on its way to `_on_durable`: what it made
        # durable is confirmed, not nacked.
        writer = self.writer
        durable = min(writer.durable_lsn, self.replica_lsn) if writer is not None else 0
        waiters = self._waiters
        while waiters and waiters[0][0] <= durable:
            waiters.popleft()[1]()
        self._fail_waiters()
        if self.on_suspended is not None:
            self.on_suspended(error)

    def _resume(self, seconds: float) -> None:
        """A retry got through: what was staged meanwhile follows; confirm and accept again."""
        if self._error is not None or self._suspended is None:
            return
        self._suspended = None
        self._refusing = self._held is not None
        if self.on_resumed is not None:
            self.on_resumed(seconds)

    def check(self) -> None:
        """Notice a writer failure even when nobody waits (the store polls this)."""
        writer = self.writer
        if writer is not None and self._error is None and writer.failed is not None:
            self._fail(writer.failed)

    # -- reading messages back ---------------------------------------------------------------------------

    def read_content(self, msg_id: int, loc: int) -> tuple[str, str, bytes, bytes]:
        """(exchange, routing_key, properties, body) of message `msg_id`, whose publish is at `loc`
        (the reader of store/contents.py's LogContents, which keeps what it read). The record found there
        must be that message's own: its LSN (or, for a copy made by compaction, its original's) and the
        publish's index in it are those of `msg_id`; anything else (a position that went stale, a segment
        that is not this log's) raises `ContentMismatch`."""
        segment, offset, index = unpack_loc(loc)
        record = self.log.read(RecordPosition(segment, offset))
        lsn, payload = original(record)
        if lsn and (lsn != msg_id >> MESSAGE_INDEX_BITS or index != msg_id & _INDEX_MASK):
            raise ContentMismatch(
                f"message {msg_id} (LSN {msg_id >> MESSAGE_INDEX_BITS} index "
                f"{msg_id & _INDEX_MASK}): the record at segment {segment} offset {offset} "
                f"is LSN {lsn}'s, not its own; refusing to serve another message's body"
            )
        if record.type in PUBLISH_TYPES:
            content = decode_content(payload, record.type)
        elif record.type == RT_TX:
            publishes = [(rtype, inner) for rtype, inner in inner_records(payload) if rtype in PUBLISH_TYPES]
            if index >= len(publishes):
                raise ContentMismatch(
                    f"message {msg_id}: the transaction at segment {segment} offset "
                    f"{offset} holds {len(publishes)} publishes, not {index + 1}"
                )
            content = decode_content(publishes[index][1], publishes[index][0])
        else:
            raise ContentMismatch(
                f"message {msg_id}: no message at segment {segment} offset {offset} "
                f"(record type {record.type})"
            )
        return content
