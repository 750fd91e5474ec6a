"""What a stream delivery carries (ottermq/broker/stream.py `with_offset`, `StreamEntry`): the properties with
x-stream-offset are those a full decode and re-encode gives, whichever path builds them (a template per raw
properties and width, or the slow path), and the message knows whether it is persistent."""

from __future__ import annotations

import pytest

from ottermq.amqp.properties import BasicProperties, decode_properties, encode_properties
from ottermq.broker.stream import StreamEntry, StreamRecord, offset_properties, with_offset

RAWS = [
    b"\x00\x00",
    encode_properties(BasicProperties(delivery_mode=2)),
    encode_properties(BasicProperties(delivery_mode=1, content_type="text/plain")),
    encode_properties(BasicProperties(headers={"a": 1, "x-stream-offset": "old"}, delivery_mode=2)),
    encode_properties(BasicProperties(headers={"nested": {"k": [1, "v"]}}, message_id="m", priority=3)),
]
OFFSETS = [0, 1, 255, 2**31 - 1, 2**31, 2**40 + 7]


@pytest.mark.parametrize("raw", RAWS)
def test_a_delivery_has_the_offset_header_and_the_published_delivery_mode(raw: bytes) -> None:
    published = decode_properties(raw)
    for offset in OFFSETS:
        for _ in range(2):  # the first builds the template, the second uses it
            record = StreamRecord(offset, 1_000, "ex", "key", raw, b"body")
            message = with_offset(record)
            assert message.properties == offset_properties(raw, offset)
            props = decode_properties(message.properties)
            assert props.headers is not None and props.headers["x-stream-offset"] == offset
            assert props.delivery_mode == published.delivery_mode
            assert message.persistent is (published.delivery_mode == 2)
            assert (message.exchange, message.routing_key, message.body) == ("ex", "key", b"body")


def test_a_stream_entry_is_a_fresh_entry_at_its_offset() -> None:
    message = with_offset(StreamRecord(41, 1_000, "", "q", b"\x00\x00", b"12345"))
    entry = StreamEntry(41, message)
    assert (entry.msg_id, entry.size, entry.priority, entry.deadline, entry.seq) == (41, 5, 0, 0, 0)
    assert entry.redelivered is False and entry.message is message
