"""Stream queues on disk: one Memento log per stream, in `<data_dir>/streams/<id>/`.

Strategy: a stream's records are the records of its own Memento log, so its offsets are the log's LSNs
minus one (contiguous, never reused) and retention can drop whole segments without rewriting anything.
The declaration stays in the main log (`QueueDeclared`, applied the same way live and in replay): applying
it opens this log by vhost and name (`<id>` is a hash of both; a `NAME` file says which). Appends go
through an `AsyncWriter` (group commit on its own thread); a confirm waits for the record to be durable
there, and consumers read only durable records, through `memento.replica.Cursor` (sequential preads of up
to 1 MiB straight from the segment files: nothing of the stream is held in memory). A live delete renames
the directory away at once (a stream declared again starts empty) and removes it once its writer closed.

Record payload (type `RT_STREAM`): `<QHHI` append time (ms since the epoch), exchange length, routing-key
length, properties length, then exchange, routing key, raw properties, body.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import shutil
import struct
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from memento.disk import DiskIO
from memento.errors import CorruptRecord, MementoError
from memento.log import Log
from memento.reclaim import delete_oldest, sealed_segments
from memento.record import HEAD_SIZE
from memento.replica import Behind, Cursor
from memento.segment import MIN_SEGMENT_SIZE
from memento.writer import AsyncWriter
from ottermq.amqp.properties import decode_properties
from ottermq.broker.arguments import max_age_seconds
from ottermq.broker.stream import StreamFailed, StreamLog, StreamRecord
from ottermq.store.stream_index import EVERY, INDEX_DIR, StreamIndex

logger: Final = logging.getLogger("ottermq.store")

RT_STREAM: Final = 1
_HEAD: Final = struct.Struct("<QHHI")
_TIME: Final = struct.Struct("<Q")  # a record's append time, the first field of its payload
_LSN: Final = struct.Struct("<Q")
_LSN_AT: Final = 12  # where the LSN is in a record's head (memento.record.HEAD: len, crc, type, flags, res)
# A record as a cursor reads it: Memento's head (LSN at 12), then the payload's head (_HEAD).
_WIRE: Final = struct.Struct("<12xQ8xQHHI")
_NAMES: Final = 1024  # (exchange, routing key) strings kept per stream, by their bytes
STREAMS_DIR: Final = "streams"
# RabbitMQ's default for x-stream-max-segment-size-bytes (500 MB): retention drops whole segments of it.
SEGMENT_SIZE: Final = 500_000_000
DELETED: Final = ".deleted-"
_CURSORS: Final = 32  # open read positions kept per stream (one per consumer reading along)
# Index entries written at once while appending (170 entries, one per 16 KiB of records: a crash leaves
# at most ~2.7 MB of the last segment for the next open to walk beyond what the index file says).
INDEX_FLUSH: Final = 4096
# The newest records appended, kept in memory for readers at the end of the stream (a consumer attached
# at `next` reads what was just published without reading it back from the file): at most TAIL_BYTES of
# bodies, and only while a reader reached the end in the last TAIL_SECONDS (else nothing is kept).
TAIL_BYTES: Final = 4 << 20
TAIL_SECONDS: Final = 2.0
_new_tuple: Final = tuple.__new__
_TAIL_COST: Final = 128  # bytes counted per record beyond its body (the record's objects)


class SparseDisk(DiskIO):
    """A stream's segments take on disk what they hold (as RabbitMQ's do), not their whole size at once:
    nothing is reserved ahead; a full disk met while writing suspends the writer as any other."""

    def preallocate(self, fd: int, size: int) -> None:
        if os.fstat(fd).st_size < size:
            os.ftruncate(fd, size)


def stream_dir(root: Path, vhost: str, name: str) -> Path:
    """Where the stream `name` of `vhost` keeps its log."""
    digest = hashlib.sha256(f"{vhost}\0{name}".encode()).hexdigest()[:32]
    return root / digest


def encode_record(timestamp: int, exchange: str, routing_key: str, properties: bytes, body: bytes) -> bytes:
    """The payload of one stream record."""
    raw_exchange = exchange.encode()
    raw_key = routing_key.encode()
    head = _HEAD.pack(timestamp, len(raw_exchange), len(raw_key), len(properties))
    return b"".join((head, raw_exchange, raw_key, properties, body))


def decode_record(offset: int, payload: memoryview) -> StreamRecord:
    """A stream record back from its payload."""
    timestamp, xlen, rlen, plen = _HEAD.unpack_from(payload)
    pos = _HEAD.size
    exchange = str(payload[pos : pos + xlen], "utf-8")
    pos += xlen
    routing_key = str(payload[pos : pos + rlen], "utf-8")
    pos += rlen
    properties = bytes(payload[pos : pos + plen])
    return StreamRecord(offset, timestamp, exchange, routing_key, properties, bytes(payload[pos + plen :]))


@dataclass(frozen=True, slots=True)
class Retention:
    """What a stream keeps: its segment size, and the limits past which its oldest segments go."""

    segment_size: int = SEGMENT_SIZE
    max_bytes: int | None = None  # x-max-length-bytes
    max_age_ms: int | None = None  # x-max-age

    @classmethod
    def of(cls, arguments: dict[str, Any], segment_size: int = SEGMENT_SIZE) -> Retention:
        """The retention the (validated) declare arguments ask for."""
        size = arguments.get("x-stream-max-segment-size-bytes")
        max_bytes = arguments.get("x-max-length-bytes")
        age = arguments.get("x-max-age")
        seconds = max_age_seconds(age) if isinstance(age, str) else None
        if isinstance(size, int) and not isinstance(size, bool):
            segment_size = max(MIN_SEGMENT_SIZE, size)
        return cls(
            segment_size,
            max_bytes if isinstance(max_bytes, int) and not isinstance(max_bytes, bool) else None,
            seconds * 1000 if seconds is not None else None,
        )


class MementoStreamLog:
    """A `StreamLog` kept in its own Memento log, with its offset index (stream_index.py)."""

    def __init__(
        self,
        path: Path,
        on_committed: Callable[[], None],
        retention: Retention | None = None,
        disk: DiskIO | None = None,
    ) -> None:
        self.path = path
        self.retention = retention or Retention()
        self.log = Log.open(
            path, segment_size=self.retention.segment_size, registry=(RT_STREAM,), disk=disk or SparseDisk()
        )
        self.index = StreamIndex(self.log, path / INDEX_DIR)
        self.index.load()
        self.on_committed = on_committed
        # Called (once) when the log fails for good or suspends on a full disk (the store raises its alarm).
        self.on_failure: Callable[[BaseException], None] | None = None
        self.on_resumed: Callable[[], None] | None = None
        self.writer: AsyncWriter | None = None
        self.closed = False
        self._cursors: OrderedDict[int, Cursor] = OrderedDict()
        self._names: dict[tuple[bytes, int], tuple[str, str]] = {}
        self._tail: list[StreamRecord] = []  # the newest records, consecutive (see TAIL_BYTES)
        self._tail_bytes = 0
        self._tail_until = 0.0  # monotonic time until which appends are kept in _tail (0: none are)
        # The encoded head of the last record appended (time, route, properties) and what it was made of.
        self._head_key: tuple[int, str, str, bytes] | None = None
        self._head = b""
        self._retention_due = False
        self._refusing: BaseException | None = None  # why appends are refused (failed, or suspended)
        self._waiters: deque[tuple[int, Callable[[bool], None]]] = deque()  # (LSN, callback), in order
        self._requested = 0  # the LSN the outstanding writer future waits for (0: none)
        self.enforce_retention()

    # -- positions ---------------------------------------------------------------------------------------

    @property
    def first_offset(self) -> int:
        segments = self.log.segments
        return max(0, segments[0].base_lsn - 1) if segments else self.next_offset

    @property
    def next_offset(self) -> int:
        return self.log.end_lsn

    @property
    def committed_offset(self) -> int:
        writer = self.writer
        return writer.durable_lsn if writer is not None else self.log.durable_lsn

    @property
    def size_bytes(self) -> int:
        return self.index.size_bytes

    @property
    def first_timestamp(self) -> int | None:
        """When the oldest record kept was appended (ms), None when empty."""
        segments = self.index.segments
        return segments[0].times[0] if segments and segments[0].times else None

    # -- writing -----------------------------------------------------------------------------------------

    def append(self, exchange: str, routing_key: str, properties: bytes, body: bytes, timestamp: int) -> int:
        if self._refusing is not None:
            raise StreamFailed(f"the stream's log {self._why()}")
        writer = self.writer
        if writer is None:
            # Made on first use, inside the running loop (a replay opens logs before there is one).
            writer = self.writer = AsyncWriter(self.log)
            writer.on_durable = self._durable
            writer.on_suspended = self._suspended
            writer.on_resumed = self._resumed
        key = (timestamp, exchange, routing_key, properties)
        if key == self._head_key:
            payload = self._head + body  # a Publish frame's messages share all but the body
        else:
            payload = encode_record(timestamp, exchange, routing_key, properties, body)
            self._head_key = key
            self._head = payload[: len(payload) - len(body)]
        try:
            lsn = writer.append(RT_STREAM, payload)
        except MementoError as exc:
            self._fail(exc)
            raise StreamFailed(f"the stream's log {self._why()}") from None
        seq, offset = self.log.last_position
        segments = self.index.segments
        if segments and segments[-1].seq == seq:
            segments[-1].add(lsn, offset, HEAD_SIZE + len(payload), timestamp)  # `added`, one call less
        elif self.index.added(seq, offset, HEAD_SIZE + len(payload), lsn, timestamp):
            self._retention_due = True
        if self._tail_until:
            # (tuple.__new__: a NamedTuple's own __new__ is a Python call, twice as slow)
            record = _new_tuple(StreamRecord, (lsn - 1, timestamp, exchange, routing_key, properties, body))
            self._keep(record)
        return lsn - 1

    def _keep(self, record: StreamRecord) -> None:
        """Keep `record` for readers at the end (while there are some), dropping the oldest half of what
        is kept when over TAIL_BYTES."""
        tail = self._tail
        if time.monotonic() > self._tail_until or type(record.body) is not bytes:
            self._tail_until = 0.0
            tail.clear()
            self._tail_bytes = 0
            return
        if tail and tail[-1].offset != record.offset - 1:
            tail.clear()
            self._tail_bytes = 0
        tail.append(record)
        self._tail_bytes += len(record.body) + _TAIL_COST
        if self._tail_bytes > TAIL_BYTES:
            cut = len(tail) // 2
            self._tail_bytes -= sum(len(old.body) + _TAIL_COST for old in tail[:cut])
            del tail[:cut]

    def _why(self) -> str:
        error = self._refusing
        return f"is suspended: {error}" if isinstance(error, OSError) else f"has failed: {error}"

    @property
    def refusing(self) -> bool:
        """True while appends are refused (the log failed, or a full disk suspends it)."""
        return self._refusing is not None

    def when_durable(self, offset: int, callback: Callable[[bool], None]) -> None:
        """Like the main journal: callbacks in order as records become durable; all pending ones get
        False when the log fails or suspends (their confirms become nacks), and any new one while it does."""
        lsn = offset + 1
        writer = self.writer
        if writer is None or lsn <= writer.durable_lsn:
            callback(True)
            return
        if self._refusing is not None:
            callback(False)
            return
        self._waiters.append((lsn, callback))
        if not self._requested:
            self._request()

    def _request(self) -> None:
        """Wait on the writer for the newest LSN waited on: its failure fails every waiter."""
        writer = self.writer
        assert writer is not None
        lsn = self._waiters[-1][0]
        try:
            future = writer.wait_durable(lsn)
        except MementoError as exc:
            self._fail(exc)
            return
        self._requested = lsn
        future.add_done_callback(self._requested_done)

    def _requested_done(self, future: asyncio.Future[None]) -> None:
        self._requested = 0
        if future.cancelled():
            return
        error = future.exception()
        if error is not None:
            self._fail(error)
            return
        self._release()
        if self._waiters:
            self._request()

    def _release(self) -> None:
        writer = self.writer
        durable = writer.durable_lsn if writer is not None else self.log.durable_lsn
        waiters = self._waiters
        while waiters and waiters[0][0] <= durable:
            waiters.popleft()[1](True)

    def _fail_waiters(self) -> None:
        waiters, self._waiters = self._waiters, deque()
        for _lsn, callback in waiters:
            callback(False)

    def _durable(self, _lsn: int) -> None:
        self._release()
        if self.closed:
            return
        self.index.flush(INDEX_FLUSH)
        if self._retention_due:
            self.enforce_retention()
        self.on_committed()

    def _fail(self, error: BaseException) -> None:
        """The log failed for good: nothing pending is confirmed, nothing new is taken."""
        if self._refusing is not None and not isinstance(self._refusing, OSError):
            return
        self._refusing = error
        self._fail_waiters()
        logger.error(f"the log of stream {self.path.name} failed; its publishes are nacked: {error}")
        if self.on_failure is not None:
            self.on_failure(error)

    def _suspended(self, error: OSError) -> None:
        """A full disk holds the writer up: what is already durable is confirmed, the rest nacked (it is
        written on resume all the same, as the main journal's), nothing new taken until it resumes."""
        if self._refusing is not None:
            return
        self._release()
        self._refusing = error
        self._fail_waiters()
        logger.error(f"the log of stream {self.path.name} is suspended, the disk is full: {error}")
        if self.on_failure is not None:
            self.on_failure(error)

    def _resumed(self, seconds: float) -> None:
        if not isinstance(self._refusing, OSError):
            return
        self._refusing = None
        logger.warning(f"the log of stream {self.path.name} resumed", extra={"suspended_seconds": seconds})
        if self.on_resumed is not None:
            self.on_resumed()

    # -- retention ---------------------------------------------------------------------------------------

    def enforce_retention(self, now: int | None = None) -> None:
        """Delete the oldest sealed segments while the stream is larger than x-max-length-bytes or their
        records are older than x-max-age (RabbitMQ's rule: whole segments, never the one written to)."""
        retention = self.retention
        sealed = sealed_segments(self.log)
        if len(sealed) == len(self.log.segments) - 1:
            self._retention_due = False  # every segment but the active one is sealed and durable
        if sealed and sealed[-1][1] > self.log.snapshot_lsn:
            try:
                # A snapshot (of nothing) covering the sealed segments: opening only checks their headers.
                self.log.save_snapshot(sealed[-1][1], b"")
            except (OSError, MementoError) as exc:
                logger.error(f"stream snapshot failed in {self.path}: {exc}")
        if retention.max_bytes is None and retention.max_age_ms is None:
            return
        now = now if now is not None else int(time.time() * 1000)
        total = self.index.size_bytes
        through = 0
        for (seg, last), index in zip(sealed, self.index.segments, strict=False):
            too_big = retention.max_bytes is not None and total > retention.max_bytes
            too_old = retention.max_age_ms is not None and index.last_time < now - retention.max_age_ms
            if index.seq != seg.seq or not (too_big or too_old):
                break
            total -= index.end
            through = last
        if not through:
            return
        try:
            # Recovery starts at the first segment kept: the snapshot (of nothing) says it may.
            if through > self.log.snapshot_lsn:
                self.log.save_snapshot(through, b"")
            names, freed = delete_oldest(self.log, through)
        except (OSError, MementoError) as exc:
            logger.error(f"stream retention failed in {self.path}: {exc}")
            return
        self.index.dropped(through + 1)
        logger.info(
            f"stream retention deleted {len(names)} segment(s) of {self.path.name}",
            extra={"freed_bytes": freed, "first_offset": through},
        )

    # -- reading -----------------------------------------------------------------------------------------

    def _cursor(self, after: int) -> Cursor:
        """A cursor reading the records after LSN `after`, positioned through the index."""
        return Cursor(self.log, after, self.index.position(after + 1))

    def read(self, offset: int, max_bytes: int) -> list[StreamRecord]:
        upto = self.committed_offset  # the last durable LSN
        # (A reader at the end, the common case, is told so before `first_offset` lists the segments.)
        after = offset if offset >= upto else max(offset, self.first_offset)
        if after >= upto:
            # A reader at the end: what is appended next is kept for it (see TAIL_BYTES).
            self._tail_until = time.monotonic() + TAIL_SECONDS
            return []
        tail = self._tail
        if tail and tail[0].offset <= after <= tail[-1].offset:
            # Durable records kept in memory: the same records the file would give back.
            kept: list[StreamRecord] = []
            size = 0
            for at in range(after - tail[0].offset, len(tail)):
                record = tail[at]
                if record.offset >= upto or size >= max_bytes:
                    break
                kept.append(record)
                size += len(record.body)
            if kept[-1].offset == upto - 1:
                self._tail_until = time.monotonic() + TAIL_SECONDS
            return kept
        cursor = self._cursors.pop(after, None)
        if cursor is None:
            cursor = self._cursor(after)
        try:
            found = cursor.read(upto, max_bytes)
        except CorruptRecord:
            # A wrong index hint (an index file from before a crash): walk the segment from its start.
            cursor.close()
            cursor = Cursor(self.log, after)
            found = cursor.read(upto, max_bytes)
        except Behind:
            cursor.close()  # retention took the segment meanwhile: from the first record kept
            return self.read(self.first_offset, max_bytes) if self.first_offset > after else []
        out: list[StreamRecord] = []
        append = out.append
        unpack = _WIRE.unpack_from
        start = _WIRE.size
        names = self._names
        for data in found:
            # The cursor checked each record's CRC: its fields are read here in one unpack (decode_wire
            # and decode_record would check it again and copy the payload twice).
            lsn, timestamp, xlen, rlen, plen = unpack(data)
            pos = start + xlen + rlen
            route = data[start:pos]
            try:
                exchange, routing_key = names[route, xlen]
            except KeyError:
                if len(names) >= _NAMES:
                    names.clear()
                exchange = str(route[:xlen], "utf-8")
                routing_key = str(route[xlen:], "utf-8")
                names[route, xlen] = (exchange, routing_key)
            append(
                StreamRecord(
                    lsn - 1, timestamp, exchange, routing_key, data[pos : pos + plen], data[pos + plen :]
                )
            )
        cursors = self._cursors
        cursors[cursor.next_lsn - 1] = cursor
        while len(cursors) > _CURSORS:
            _, old = cursors.popitem(last=False)
            old.close()
        if out and out[-1].offset == upto - 1:
            self._tail_until = time.monotonic() + TAIL_SECONDS  # this reader caught up
        return out

    def offset_at(self, timestamp: int) -> int:
        """Two binary searches in the index (segments, then entries), then a read of about one index
        interval, looking at each record's time only."""
        position = self.index.time_position(timestamp)
        if position is None:
            return self.committed_offset
        upto = self.committed_offset
        cursor = Cursor(self.log, max(position[2] - 1, self.first_offset), position)
        try:
            while True:
                found = cursor.read(upto, EVERY)
                if not found:
                    return upto
                for data in found:
                    if _TIME.unpack_from(data, HEAD_SIZE)[0] >= timestamp:
                        return int(_LSN.unpack_from(data, _LSN_AT)[0]) - 1
        except (CorruptRecord, Behind):
            return self._scan_for(timestamp)
        finally:
            cursor.close()

    def _scan_for(self, timestamp: int) -> int:
        """`offset_at` without the index's hint (it was wrong): reading from the hinted segment's start."""
        offset = self.first_offset
        while True:
            records = self.read(offset, 1 << 20)
            if not records:
                return self.committed_offset
            for record in records:
                if record.timestamp >= timestamp:
                    return record.offset
            offset = records[-1].offset + 1

    # -- closing -----------------------------------------------------------------------------------------

    def _forget_cursors(self) -> None:
        for cursor in self._cursors.values():
            cursor.close()
        self._cursors.clear()

    def close(self) -> None:
        """Stop using the log: its writer is closed in the background (now when no loop runs)."""
        if self.closed:
            return
        self.closed = True
        self._forget_cursors()
        self.index.flush()
        writer = self.writer
        if writer is None:
            self.log.close()
            return
        asyncio.get_running_loop().create_task(self._close_writer(writer))

    async def _close_writer(self, writer: AsyncWriter) -> None:
        try:
            await writer.close()
        finally:
            self.log.close()

    async def aclose(self) -> None:
        """Close now (store.stop)."""
        if self.closed:
            return
        self.closed = True
        self._forget_cursors()
        self.index.flush()
        writer = self.writer
        if writer is not None:
            await self._close_writer(writer)
        else:
            self.log.close()


class MementoStreams:
    """`StreamStorage` on disk, under `<data_dir>/streams`."""

    def __init__(self, root: Path, segment_size: int = SEGMENT_SIZE, disk: DiskIO | None = None) -> None:
        self.root = root
        self.segment_size = segment_size  # when a stream's declaration does not say
        self.disk = disk  # None: SparseDisk
        self.logs: dict[tuple[str, str], MementoStreamLog] = {}
        # A stream's log failed or suspended (the store raises its alarm), or resumed.
        self.on_failure: Callable[[BaseException], None] | None = None
        self.on_resumed: Callable[[], None] | None = None
        if root.is_dir():
            for leftover in root.glob(f"*{DELETED}*"):
                shutil.rmtree(leftover, ignore_errors=True)  # deleted streams a crash left behind

    def open(
        self, vhost: str, name: str, arguments: dict[str, Any], on_committed: Callable[[], None]
    ) -> StreamLog:
        key = (vhost, name)
        log = self.logs.get(key)
        if log is not None and not log.closed:
            log.on_committed = on_committed
            return log
        path = stream_dir(self.root, vhost, name)
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        log = self.logs[key] = MementoStreamLog(
            path, on_committed, Retention.of(arguments, self.segment_size), self.disk
        )
        log.on_failure = self._failed
        log.on_resumed = self._resumed
        label = path / "NAME"
        if not label.exists():
            label.write_text(f"vhost={vhost!r} queue={name!r}\n")
        return log

    def remove(self, vhost: str, name: str) -> None:
        log = self.logs.pop((vhost, name), None)
        path = stream_dir(self.root, vhost, name)
        if not path.exists():
            return
        gone = path.with_name(f"{path.name}{DELETED}{os.urandom(4).hex()}")
        os.rename(path, gone)  # at once: a stream declared again now starts empty
        if log is not None:
            log.close()
        try:
            # Once its writer has closed (a crash before that leaves it to the next start).
            asyncio.get_running_loop().call_later(2.0, shutil.rmtree, gone, True)
        except RuntimeError:
            shutil.rmtree(gone, ignore_errors=True)

    def refusing(self) -> bool:
        """True while some stream's log refuses appends (failed, or suspended by a full disk)."""
        return any(log.refusing for log in self.logs.values() if not log.closed)

    def _failed(self, error: BaseException) -> None:
        if self.on_failure is not None:
            self.on_failure(error)

    def _resumed(self) -> None:
        if self.on_resumed is not None:
            self.on_resumed()

    async def close(self) -> None:
        """Close every stream's log (a clean stop)."""
        for log in list(self.logs.values()):
            await log.aclose()
        self.logs.clear()


class StreamDecoder:
    """The `memento` decoder of a stream's log (`memento inspect --records --decoder ottermq-stream
    <data_dir>/streams/<id>`, also `replay` and `verify --decoder`): each record is one message at offset
    LSN - 1."""

    def __init__(self) -> None:
        self._count = 0
        self._bytes = 0
        self._first: int | None = None
        self._last: int | None = None
        self._times: tuple[int, int] | None = None

    def load_snapshot(self, lsn: int, state: bytes) -> None:
        """A stream's snapshots hold nothing: they only say where retention cut the log."""

    def apply(self, record: Any) -> None:
        """Count the record and note its offset and time."""
        timestamp = _TIME.unpack_from(record.payload)[0]
        self._count += 1
        self._bytes += len(record.payload)
        if self._first is None:
            self._first = record.lsn - 1
            self._times = (timestamp, timestamp)
        self._last = record.lsn - 1
        if self._times is not None:
            self._times = (self._times[0], timestamp)

    def projection(self) -> dict[str, Any]:
        """The messages replayed: how many, their offsets, bytes and append times (ms)."""
        return {
            "messages": self._count,
            "payload_bytes": self._bytes,
            "first_offset": self._first,
            "last_offset": self._last,
            "first_time_ms": self._times[0] if self._times else None,
            "last_time_ms": self._times[1] if self._times else None,
        }

    def describe(self, record: Any) -> dict[str, Any]:
        """One message: its offset, time, route, some properties and its body."""
        if record.type != RT_STREAM:
            raise ValueError(f"record type {record.type} is not a stream record")
        message = decode_record(record.lsn - 1, memoryview(record.payload))
        properties = decode_properties(message.properties) if message.properties else None
        described: dict[str, Any] = {
            "type": "stream.message",
            "offset": message.offset,
            "time_us": message.timestamp * 1000,
            "exchange": message.exchange,
            "routing_key": message.routing_key,
        }
        if properties is not None:
            if properties.message_id is not None:
                described["message_id"] = properties.message_id
            if properties.headers:
                described["headers"] = {key: repr(value) for key, value in properties.headers.items()}
        described["body"] = message.body
        return described

    def type_names(self) -> list[str]:
        return ["stream.message"]
