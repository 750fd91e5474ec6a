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
import os
import shutil
import struct
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from memento.log import Log
from memento.replica import Cursor, decode_wire
from memento.writer import AsyncWriter
from ottermq.broker.stream import StreamLog, StreamRecord

RT_STREAM: Final = 1
_HEAD: Final = struct.Struct("<QHHI")
STREAMS_DIR: Final = "streams"
# Smaller than the main log's segments: a reader positions itself by walking one segment's headers.
SEGMENT_SIZE: Final = 16 << 20
DELETED: Final = ".deleted-"
_CURSORS: Final = 32  # open read positions kept per stream (one per consumer reading along)


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


class MementoStreamLog:
    """A `StreamLog` kept in its own Memento log."""

    def __init__(
        self, path: Path, on_committed: Callable[[], None], segment_size: int = SEGMENT_SIZE
    ) -> None:
        self.path = path
        self.log = Log.open(path, segment_size=segment_size, registry=(RT_STREAM,))
        self.on_committed = on_committed
        self.writer: AsyncWriter | None = None
        self.closed = False
        self._cursors: OrderedDict[int, Cursor] = OrderedDict()

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
        return sum(os.path.getsize(segment.path) for segment in self.log.segments)

    # -- writing -----------------------------------------------------------------------------------------

    def append(self, exchange: str, routing_key: str, properties: bytes, body: bytes, timestamp: int) -> int:
        writer = self.writer
        if writer is None:
            # Made on first use, inside the running loop (a replay opens logs before there is one).
            writer = self.writer = AsyncWriter(self.log)
            writer.on_durable = self._durable
        lsn = writer.append(RT_STREAM, encode_record(timestamp, exchange, routing_key, properties, body))
        return lsn - 1

    def _durable(self, _lsn: int) -> None:
        if not self.closed:
            self.on_committed()

    def when_durable(self, offset: int, callback: Callable[[bool], None]) -> None:
        writer = self.writer
        if writer is None:
            callback(True)
            return
        # A failed writer never calls back: the confirm stays unanswered (see docs/streams.md).
        writer.when_durable(offset + 1, lambda: callback(True))

    # -- reading -----------------------------------------------------------------------------------------

    def read(self, offset: int, max_bytes: int) -> list[StreamRecord]:
        upto = self.committed_offset  # the last durable LSN
        after = max(offset, self.first_offset)
        if after >= upto:
            return []
        cursor = self._cursors.pop(after, None)
        if cursor is None:
            cursor = Cursor(self.log, after)
        out: list[StreamRecord] = []
        for data in cursor.read(upto, max_bytes):
            _end, _type, _flags, lsn, _when, payload = decode_wire(data, 0)
            out.append(decode_record(lsn - 1, payload))
        cursors = self._cursors
        cursors[cursor.next_lsn - 1] = cursor
        while len(cursors) > _CURSORS:
            _, old = cursors.popitem(last=False)
            old.close()
        return out

    def _first_time(self, base_lsn: int) -> int | None:
        records = self.read(base_lsn - 1, 1)
        return records[0].timestamp if records else None

    def offset_at(self, timestamp: int) -> int:
        """Binary search over the segments by their first record's time, then a scan of one segment."""
        segments = [segment.base_lsn for segment in self.log.segments]
        low, high = 0, len(segments) - 1
        start = segments[0] if segments else 1
        while low <= high:
            middle = (low + high) // 2
            first = self._first_time(segments[middle])
            if first is not None and first < timestamp:
                start = segments[middle]
                low = middle + 1
            else:
                high = middle - 1
        offset = start - 1
        while True:
            records = self.read(offset, 1 << 20)
            if not records:
                return self.committed_offset
            for record in records:
                if record.timestamp >= timestamp:
                    return record.offset
            offset = records[-1].offset + 1

    # -- closing -----------------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop using the log: its writer is closed in the background (now when no loop runs)."""
        if self.closed:
            return
        self.closed = True
        for cursor in self._cursors.values():
            cursor.close()
        self._cursors.clear()
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
        for cursor in self._cursors.values():
            cursor.close()
        self._cursors.clear()
        writer = self.writer
        if writer is not None:
            await self._close_writer(writer)
        else:
            self.log.close()


class MementoStreams:
    """`StreamStorage` on disk, under `<data_dir>/streams`."""

    def __init__(self, root: Path, segment_size: int = SEGMENT_SIZE) -> None:
        self.root = root
        self.segment_size = segment_size
        self.logs: dict[tuple[str, str], MementoStreamLog] = {}
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
        log = self.logs[key] = MementoStreamLog(path, on_committed, self.segment_size)
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

    async def close(self) -> None:
        """Close every stream's log (a clean stop)."""
        for log in list(self.logs.values()):
            await log.aclose()
        self.logs.clear()
