"""The stream protocol's publish when the stream's log refuses appends (it failed, or a full disk suspends
it): each refused message gets a PublishError (code 15, internal error) and the connection stays open,
as a confirmed AMQP 0.9.1 publish is nacked."""

from __future__ import annotations

import struct

from ottermq.broker.broker import Broker
from ottermq.broker.stream import MemoryStreamLog, StreamFailed, StreamQueue
from ottermq.streamproto import codec
from ottermq.streamproto.codec import Reader
from ottermq.streamproto.session import Publisher, StreamSession
from ottermq.streamproto.tracking import Tracking


class RefusingLog(MemoryStreamLog):
    """A stream log that takes `room` appends, then refuses (as a failed or suspended Memento log)."""

    def __init__(self, room: int) -> None:
        super().__init__()
        self.room = room

    def append(self, exchange: str, routing_key: str, properties: bytes, body: bytes, timestamp: int) -> int:
        if self.room <= 0:
            raise StreamFailed("the stream's log has failed: test")
        self.room -= 1
        return super().append(exchange, routing_key, properties, body, timestamp)


class Link:
    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.closed = False

    def write(self, parts: list[bytes]) -> None:
        self.sent.append(b"".join(parts))

    def close(self) -> None:
        self.closed = True

    def is_writable(self) -> bool:
        return True


def publish_fields(publisher_id: int, messages: list[tuple[int, bytes]]) -> memoryview:
    body = b"".join(struct.pack(">Qi", pid, len(data)) + data for pid, data in messages)
    return memoryview(struct.pack(">Bi", publisher_id, len(messages)) + body)


def test_a_refused_append_is_a_publish_error_and_the_connection_stays() -> None:
    broker = Broker()
    link = Link()
    session = StreamSession(broker, link, Tracking(None), ("127.0.0.1", 1), ("127.0.0.1", 5552))
    session.state = "opened"
    session.vhost = broker.vhosts["/"]
    queue = StreamQueue("s", "/", {"x-queue-type": "stream"}, RefusingLog(room=2))
    session.publishers[7] = Publisher(7, "", queue)
    session._publish(Reader(publish_fields(7, [(1, b"a"), (2, b"b"), (3, b"c"), (4, b"d")])), 1)
    assert session.state == "opened" and not link.closed
    assert codec.publish_error(7, [(3, codec.INTERNAL_ERROR), (4, codec.INTERNAL_ERROR)]) in link.sent
    assert codec.publish_confirm(7, [1, 2]) in link.sent  # the log here is durable at once
    assert queue.log.next_offset == 2
