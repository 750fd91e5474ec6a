"""One stream-protocol subscription: reads its stream from an offset and delivers chunks while it has
credit (one credit = one chunk).

Strategy: a subscription registers as a reader of its `StreamQueue` (`queue.readers`), so it hears when
records became durable, as the queue's AMQP 0.9.1 consumers do. It reads the log in large sequential
reads (`READ_BYTES`), keeps what it read ahead, and lays each chunk out of the records that fit one frame
(`chunk.chunk`). Records appended over the stream protocol hold the client's AMQP 1.0 bytes and go out as
stored; records published over AMQP 0.9.1 are converted to AMQP 1.0 here. Nothing is sent while the
socket's buffer is full: the connection calls `pump` again when it drains.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from ottermq.amqp.amqp10 import AMQP10, to_amqp10
from ottermq.broker.stream import StreamRecord
from ottermq.streamproto import chunk as osiris
from ottermq.streamproto import codec

if TYPE_CHECKING:
    from ottermq.broker.stream import StreamQueue

READ_BYTES: Final = 1 << 20
# Bytes of one Deliver frame beyond its messages: frame head, subscription id, chunk header.
_OVERHEAD: Final = 9 + osiris.HEADER.size


def message_bytes(record: StreamRecord) -> bytes:
    """What a stream-protocol subscriber receives for `record` (an AMQP 1.0 message)."""
    if record.properties == AMQP10:
        return record.body
    return to_amqp10(record.properties, record.body)


class Subscription:
    """A subscriber's position, credit and the records read ahead."""

    __slots__ = ("_ahead", "credit", "frame_max", "id", "next_offset", "queue", "send", "stream", "writable")

    def __init__(
        self,
        subscription_id: int,
        queue: StreamQueue,
        offset: int,
        credit: int,
        frame_max: int,
        send: Callable[[list[bytes]], None],
        writable: Callable[[], bool],
    ) -> None:
        self.id = subscription_id
        self.queue = queue
        self.stream = queue.name
        self.next_offset = offset
        self.credit = credit
        self.frame_max = frame_max
        self.send = send
        self.writable = writable
        self._ahead: list[StreamRecord] = []  # in reverse order: pop() gives the next

    def pump(self) -> None:
        """Deliver chunks while there is credit, something to read, and room in the socket's buffer."""
        limit = (self.frame_max or (8 << 20)) - _OVERHEAD
        while self.credit > 0 and self.writable():
            ahead = self._ahead
            if not ahead:
                ahead = self.queue.log.read(self.next_offset, READ_BYTES)
                if not ahead:
                    return
                ahead.reverse()
                self._ahead = ahead
            first = ahead[-1]
            messages: list[bytes] = []
            size = 0
            while ahead and len(messages) < osiris.MAX_ENTRIES:
                body = message_bytes(ahead[-1])
                if messages and size + 4 + len(body) > limit:
                    break
                ahead.pop()
                messages.append(body)
                size += 4 + len(body)
            self.next_offset = first.offset + len(messages)
            self.credit -= 1
            self.send(codec.deliver(self.id, osiris.chunk(first.offset, first.timestamp, messages)))
