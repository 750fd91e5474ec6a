"""Stream queues (x-queue-type: stream) over AMQP 0.9.1: an append-only log read from offsets.

Strategy: a `StreamQueue` is a `Queue` whose messages are not entries but records of a `StreamLog` (the
broker defines the protocol; the memory one is here, the durable one, one Memento log per stream, is the
store's `store/streams.py`). A publish appends the message (every message, persistent or not, as
RabbitMQ does) and is confirmed once the record is durable in the stream's own log. Each consumer reads
from its own offset (`x-stream-offset`) while it has prefetch credit; a delivery is tracked in the
channel's unacked deliveries like any other, but settling it removes nothing: an ack only gives the credit
back. Nothing is ever ready in the classic sense: `get`, `requeue`, `purge` do not apply.

The declaration is the ordinary `QueueDeclared` event (the main log's one apply path opens the stream's
log by vhost and name); a live deletion removes the stream's files before it is journaled, so that a
redeclared stream never finds an older one's records.
"""

from __future__ import annotations

import bisect
import datetime
import struct
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, NamedTuple, Protocol

from ottermq.amqp.amqp10 import AMQP10, from_amqp10
from ottermq.amqp.constants import INTERNAL_ERROR, NOT_IMPLEMENTED, PRECONDITION_FAILED
from ottermq.amqp.errors import AMQPConnectionError, ChannelError
from ottermq.amqp.frames import encode_deliver
from ottermq.amqp.properties import EMPTY_PROPERTIES, decode_properties, peek_delivery_mode
from ottermq.amqp.table import Long
from ottermq.broker.arguments import max_age_seconds
from ottermq.broker.deadletter import fresh_properties
from ottermq.broker.message import Message, QueueEntry
from ottermq.broker.queue import Queue

if TYPE_CHECKING:
    from ottermq.broker.channel_consumer import ChannelConsumer
    from ottermq.broker.consumer import Consumer

# How many bytes of records a consumer takes from the log at once (one sequential read).
READ_BYTES = 1 << 20
_INT32_MAX: Final = 2**31 - 1


class StreamFailed(Exception):
    """A stream's log takes no appends (it failed, or a full disk suspends it)."""


class StreamRecord(NamedTuple):
    """One message of a stream, as its log gives it back."""

    offset: int
    timestamp: int  # ms since the epoch, when it was appended
    exchange: str
    routing_key: str
    properties: bytes
    body: bytes


class StreamLog(Protocol):
    """Where a stream's messages live. Offsets start at 0 and never change."""

    @property
    def first_offset(self) -> int:
        """The offset of the oldest record kept (== next_offset when empty)."""
        ...

    @property
    def next_offset(self) -> int:
        """The offset the next append gets."""
        ...

    @property
    def committed_offset(self) -> int:
        """Records before this offset are durable (readable)."""
        ...

    @property
    def size_bytes(self) -> int:
        """Bytes the stream's records take."""
        ...

    def append(self, exchange: str, routing_key: str, properties: bytes, body: bytes, timestamp: int) -> int:
        """Append one message; its offset. Raises StreamFailed when the log takes no appends."""
        ...

    def when_durable(self, offset: int, callback: Callable[[bool], None]) -> None:
        """`callback(True)` once `offset` is durable, `callback(False)` if it never will be."""
        ...

    def read(self, offset: int, max_bytes: int) -> list[StreamRecord]:
        """Committed records from `offset` on, about `max_bytes` (at least one when there is one)."""
        ...

    def offset_at(self, timestamp: int) -> int:
        """The first offset whose record was appended at or after `timestamp` (ms; next_offset if none)."""
        ...

    def close(self) -> None:
        """Stop using the log (its files stay)."""
        ...


class StreamStorage(Protocol):
    """Opens and removes the logs of streams, by vhost and name."""

    def open(
        self, vhost: str, name: str, arguments: dict[str, Any], on_committed: Callable[[], None]
    ) -> StreamLog:
        """The log of stream `name` (created when new); `on_committed()` after records became durable."""
        ...

    def remove(self, vhost: str, name: str) -> None:
        """Delete the stream's records for good (a live queue.delete)."""
        ...


class MemoryStreamLog:
    """A stream held in memory (persistence = memory, and unit tests): durable as soon as appended."""

    def __init__(self, on_committed: Callable[[], None] | None = None) -> None:
        self.on_committed = on_committed
        self._records: list[StreamRecord] = []
        self._times: list[int] = []
        self._bytes = 0

    @property
    def first_offset(self) -> int:
        return 0

    @property
    def next_offset(self) -> int:
        return len(self._records)

    @property
    def committed_offset(self) -> int:
        return len(self._records)

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def append(self, exchange: str, routing_key: str, properties: bytes, body: bytes, timestamp: int) -> int:
        offset = len(self._records)
        self._records.append(StreamRecord(offset, timestamp, exchange, routing_key, properties, body))
        self._times.append(timestamp)
        self._bytes += len(body) + len(properties)
        if self.on_committed is not None:
            self.on_committed()  # durable at once: consumers may read it
        return offset

    def when_durable(self, offset: int, callback: Callable[[bool], None]) -> None:
        callback(True)

    def read(self, offset: int, max_bytes: int) -> list[StreamRecord]:
        out: list[StreamRecord] = []
        size = 0
        records = self._records
        while offset < len(records) and (not out or size < max_bytes):
            record = records[offset]
            out.append(record)
            size += len(record.body)
            offset += 1
        return out

    def offset_at(self, timestamp: int) -> int:
        return bisect.bisect_left(self._times, timestamp)

    def close(self) -> None:
        pass


class MemoryStreams:
    """`StreamStorage` in memory: a stream's records live as long as the broker."""

    def __init__(self) -> None:
        self._logs: dict[tuple[str, str], MemoryStreamLog] = {}

    def open(
        self, vhost: str, name: str, arguments: dict[str, Any], on_committed: Callable[[], None]
    ) -> StreamLog:
        log = self._logs.get((vhost, name))
        if log is None:
            log = self._logs[vhost, name] = MemoryStreamLog()
        log.on_committed = on_committed
        return log

    def remove(self, vhost: str, name: str) -> None:
        self._logs.pop((vhost, name), None)


class StreamEntry(QueueEntry):
    """A delivery from a stream: the entry carries its message (a stream keeps no content store refs)."""

    __slots__ = ("message",)

    def __init__(self, offset: int, message: Message) -> None:
        # QueueEntry's fields set here (one call less per delivery).
        self.msg_id = offset
        self.size = message.body_size
        self.priority = 0
        self.deadline = 0
        self.seq = 0
        self.redelivered = False
        self.message = message


def offset_properties(raw: bytes, offset: int) -> bytes:
    """`raw` re-encoded with the x-stream-offset header = `offset` added (or replaced)."""
    headers = dict(decode_properties(raw).headers or {})
    headers["x-stream-offset"] = offset
    return fresh_properties(raw, headers=headers)


# The offset is a table value of fixed size, 'I' (int32) or 'l' (int64) by its value, and nothing else in
# the re-encoded properties depends on it: so the properties of a delivery are those of any other offset of
# the same width with that value's bytes replaced. Templates (before, after the value) per raw properties
# and width spare decoding and encoding every delivery's properties (a stream's publishers mostly send the
# same few). Markers: values whose bytes are found once in the output (else no template, the slow path).
_MARKERS: Final = ((b"I", struct.Struct(">i"), 0x5A3C1E2D), (b"l", struct.Struct(">q"), 0x5A3C1E2D4B6F7081))
_TEMPLATES_MAX: Final = 256
# A template also says whether the delivery is persistent (delivery_mode, which the offset never changes).
_templates: dict[tuple[bytes, bool], tuple[bytes, bytes, bool] | None] = {}


def _template(raw: bytes, wide: bool) -> tuple[bytes, bytes, bool] | None:
    tag, packer, marker = _MARKERS[wide]
    encoded = offset_properties(raw, Long(marker) if wide else marker)
    value = tag + packer.pack(marker)
    at = encoded.find(value)
    if at < 0 or encoded.find(value, at + 1) >= 0:
        return None
    return encoded[: at + 1], encoded[at + len(value) :], peek_delivery_mode(encoded) == 2


def with_offset(record: StreamRecord) -> Message:
    """The message of `record` with the x-stream-offset header every stream delivery carries."""
    raw = record.properties or EMPTY_PROPERTIES
    if raw == AMQP10:
        return amqp10_message(record)
    offset = record.offset
    wide = offset > _INT32_MAX
    key = (raw, wide)
    try:
        template = _templates[key]
    except KeyError:
        if len(_templates) >= _TEMPLATES_MAX:
            _templates.clear()
        template = _templates[key] = _template(raw, wide)
    if template is None:
        return Message(record.exchange, record.routing_key, offset_properties(raw, offset), record.body)
    before, after, persistent = template
    properties = b"".join((before, _MARKERS[wide][1].pack(offset), after))
    return Message(record.exchange, record.routing_key, properties, record.body, persistent)


def now_ms() -> int:
    """The wall clock in ms since the epoch."""
    return time.time_ns() // 1_000_000


class StreamQueue(Queue):
    """A stream: publishes are appended to its log; each consumer reads from its own offset."""

    __slots__ = ("_cursors", "_stream_consumers", "log", "readers")

    def __init__(
        self, name: str, vhost: str, arguments: dict[str, Any], log: StreamLog | None = None
    ) -> None:
        super().__init__(name, vhost, True, None, False, arguments, None)
        self.log: StreamLog = log if log is not None else MemoryStreamLog()
        self.plain = False  # deliveries take `content_of`, which hands back the entry's own message
        self._stream_consumers: list[ChannelConsumer] = []
        # Per consumer: the next offset to read and the records read ahead (one large read at a time).
        self._cursors: dict[ChannelConsumer, tuple[int, list[StreamRecord]]] = {}
        # Readers other than AMQP 0.9.1 consumers (stream-protocol subscriptions): `reader(False)` when
        # records may have become readable, `reader(True)` once the stream is deleted.
        self.readers: list[Callable[[bool], None]] = []

    # -- counts ------------------------------------------------------------------------------------------

    @property
    def ready_count(self) -> int:
        """What queue.declare-ok reports: the records in the stream."""
        log = self.log
        return log.committed_offset - log.first_offset

    # -- publishing --------------------------------------------------------------------------------------

    def append(self, message: Message) -> int:
        """Append `message` to the stream; its offset (durable once the log says so)."""
        self.stats.publish += 1
        return self.log.append(
            message.exchange, message.routing_key, message.properties, message.body, now_ms()
        )

    def enqueue(self, entry: QueueEntry) -> bool:
        raise AssertionError("a stream takes messages through append(), never as entries")

    # -- consuming ---------------------------------------------------------------------------------------

    def check_consume(self, no_ack: bool, prefetch: int) -> None:
        """RabbitMQ's refusals of a stream consumer: auto-ack (540), no consumer prefetch (406)."""
        if no_ack:
            raise ChannelError(
                NOT_IMPLEMENTED,
                f"NOT_IMPLEMENTED - automatic acknowledgement not supported by stream queues {self.resource}",
            )
        if prefetch == 0:
            raise ChannelError(
                PRECONDITION_FAILED,
                f"PRECONDITION_FAILED - consumer prefetch count is not set for '{self.resource}'",
            )

    def start_offset(self, spec: Any) -> int:
        """Where a consumer with `x-stream-offset` = `spec` starts (RabbitMQ's rules, see docs/streams.md)."""
        log = self.log
        first, end = log.first_offset, log.committed_offset
        if spec is None or spec == "next":
            return end
        if spec == "first":
            return first
        if spec == "last":
            return max(first, end - 1)  # the last chunk: here one record
        if isinstance(spec, int) and not isinstance(spec, bool):
            return min(max(spec, first), end)
        if isinstance(spec, datetime.datetime):
            stamp = spec if spec.tzinfo is not None else spec.replace(tzinfo=datetime.UTC)
            return max(first, log.offset_at(int(stamp.timestamp() * 1000)))
        if isinstance(spec, str):
            seconds = max_age_seconds(spec)
            if seconds is not None:
                return max(first, log.offset_at(now_ms() - seconds * 1000))
            if spec[:1].isdigit():
                # RabbitMQ: digits then a unit it does not know ("10x"), or zero ("0s").
                raise ChannelError(
                    PRECONDITION_FAILED,
                    f"PRECONDITION_FAILED - invalid arg 'x-stream-offset' for {self.resource}: "
                    f'{{invalid_stream_offset_arg,{{longstr,<<"{spec}">>}}}}',
                )
        # Anything else ("bogus", "-1", a boolean, a table...) makes RabbitMQ 3.10 fail the connection.
        raise AMQPConnectionError(INTERNAL_ERROR, "INTERNAL_ERROR")

    def attach(self, consumer: ChannelConsumer, offset: int) -> None:
        """A consumer starts reading at `offset` (call `dispatch` once consume-ok is sent)."""
        self._stream_consumers.append(consumer)
        self._cursors[consumer] = (offset, [])

    def add_consumer(self, consumer: Consumer) -> None:
        raise AssertionError("stream consumers attach at an offset (attach)")

    def remove_consumer(self, consumer: Consumer) -> bool:
        if consumer in self._cursors:
            del self._cursors[consumer]
            self._stream_consumers.remove(consumer)
        return False

    def consumers(self) -> list[Consumer]:
        return list(self._stream_consumers)

    def detach_consumers(self) -> list[Consumer]:
        detached: list[Consumer] = list(self._stream_consumers)
        self._stream_consumers.clear()
        self._cursors.clear()
        return detached

    def dispatch(self) -> None:
        """Each consumer with credit gets the next records from its offset, as many as its credit takes
        at once (`_deliver`)."""
        for consumer in list(self._stream_consumers):
            cursor = self._cursors.get(consumer)
            if cursor is None:
                continue
            offset, ahead = cursor
            credit = consumer.credit()
            while credit > 0:
                if not ahead:
                    ahead = self.log.read(offset, READ_BYTES)
                    if not ahead:
                        break
                    ahead.reverse()  # taken from the end, in offset order
                    offset = ahead[0].offset + 1
                if credit >= len(ahead):
                    batch = ahead[::-1]
                    ahead = []
                else:
                    batch = ahead[: -credit - 1 : -1]
                    del ahead[-credit:]
                self._deliver(consumer, batch)
                credit -= len(batch)
            self._cursors[consumer] = (offset, ahead)
        if self.readers:
            for reader in list(self.readers):
                reader(False)

    def _deliver(self, consumer: ChannelConsumer, records: list[StreamRecord]) -> None:
        """`ChannelConsumer.deliver` of each record in one go: a stream consumer acks manually
        (check_consume), nothing is redelivered, and the records are the contents."""
        channel = consumer.channel
        unacked = channel.unacked
        track = unacked.track
        tag = unacked.last_tag
        number = channel.number
        consumer_tag = consumer.tag
        connection = channel.connection
        frame_max = connection.frame_max
        frames = []
        for record in records:
            message = with_offset(record)
            tag += 1
            frames.append(
                encode_deliver(
                    number,
                    consumer_tag,
                    tag,
                    False,
                    message.exchange,
                    message.routing_key,
                    message.properties,
                    message.body,
                    frame_max,
                )
            )
            track(tag, (tag, self, StreamEntry(record.offset, message), consumer))
        unacked.last_tag = tag
        connection.sent = True
        channel.transport.write(b"".join(frames))
        count = len(records)
        consumer.window.outstanding += count
        channel.qos.shared.outstanding += count
        channel.n_delivered_consume_manual_ack += count
        self.stats.deliver += count

    def content_of(self, entry: QueueEntry) -> Message:
        assert isinstance(entry, StreamEntry)
        return entry.message

    # -- settling: nothing leaves a stream by consumption ----------------------------------------------

    def settle(self, entries: Any, reason: str = "ack") -> None:
        return None

    def requeue(self, entries: Any) -> None:
        return None

    def get(self) -> QueueEntry | None:
        raise ChannelError(
            NOT_IMPLEMENTED, f"NOT_IMPLEMENTED - basic.get not supported by stream queues {self.resource}"
        )

    def purge(self) -> int:
        raise ChannelError(
            NOT_IMPLEMENTED, f"NOT_IMPLEMENTED - queue.purge not supported by stream queues {self.resource}"
        )

    def drop(self) -> int:
        self.deleted = True
        for consumer in list(self._stream_consumers):
            consumer.cancelled_by_broker()
        self.detach_consumers()
        for reader in list(self.readers):
            reader(True)
        self.readers.clear()
        self.log.close()
        return 0


def refuse_nack(queue: Queue) -> None:
    """basic.nack / basic.reject of a stream delivery: RabbitMQ's 540."""
    raise ChannelError(
        NOT_IMPLEMENTED,
        f"NOT_IMPLEMENTED - basic.nack and basic.reject not supported by stream queues {queue.resource}",
    )


def amqp10_message(record: StreamRecord) -> Message:
    """An AMQP 1.0 message appended over the stream protocol, as an AMQP 0.9.1 delivery (converted at
    read time, see ottermq/amqp/amqp10.py; bytes that do not parse are delivered as the body)."""
    try:
        raw, body = from_amqp10(record.body)
    except ValueError:
        raw, body = EMPTY_PROPERTIES, record.body
    return Message(record.exchange, record.routing_key, offset_properties(raw, record.offset), body)
