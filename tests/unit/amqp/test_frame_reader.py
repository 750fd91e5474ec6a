"""FrameReader: chunking, the protocol header, and every framing error."""

import struct

import pika.frame
import pika.spec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ottermq.amqp.constants import FRAME_ERROR, NOT_IMPLEMENTED, PROTOCOL_HEADER, SYNTAX_ERROR
from ottermq.amqp.errors import AMQPConnectionError, BadProtocolHeader
from ottermq.amqp.frames import (
    HEARTBEAT_FRAME,
    BodyFrame,
    Frame,
    FrameReader,
    HeaderFrame,
    HeartbeatFrame,
    MethodFrame,
    ProtocolHeader,
)
from ottermq.amqp.methods import BasicPublish, ConnectionStartOk, QueueDeclare
from ottermq.amqp.properties import BasicProperties, encode_properties

PROPS = BasicProperties(content_type="text/plain", delivery_mode=2, headers={"k": "v"})


def _stream() -> tuple[bytes, list[Frame]]:
    """A client's opening bytes and the frames they hold."""
    start_ok = pika.spec.Connection.StartOk({"product": "pika"}, "PLAIN", b"\x00guest\x00guest", "en_US")
    publish = pika.spec.Basic.Publish(exchange="amq.direct", routing_key="rk", mandatory=True)
    pika_props = pika.spec.BasicProperties(content_type="text/plain", delivery_mode=2, headers={"k": "v"})
    wire = b"".join(
        [
            PROTOCOL_HEADER,
            pika.frame.Method(0, start_ok).marshal(),
            pika.frame.Method(1, pika.spec.Queue.Declare(queue="q", durable=True)).marshal(),
            pika.frame.Method(1, publish).marshal(),
            pika.frame.Header(1, 11, pika_props).marshal(),
            pika.frame.Body(1, b"hello ").marshal(),
            pika.frame.Body(1, b"world").marshal(),
            pika.frame.Heartbeat().marshal(),
        ]
    )
    frames: list[Frame] = [
        ProtocolHeader(),
        MethodFrame(0, ConnectionStartOk({"product": "pika"}, "PLAIN", b"\x00guest\x00guest", "en_US")),
        MethodFrame(1, QueueDeclare(queue="q", durable=True)),
        MethodFrame(1, BasicPublish(exchange="amq.direct", routing_key="rk", mandatory=True)),
        HeaderFrame(1, 60, 11, encode_properties(PROPS)),
        BodyFrame(1, b"hello "),
        BodyFrame(1, b"world"),
        HeartbeatFrame(),
    ]
    return wire, frames


def _drain(reader: FrameReader) -> list[Frame]:
    return list(reader.frames())


def test_whole_stream_at_once() -> None:
    wire, frames = _stream()
    reader = FrameReader()
    reader.feed(wire)
    assert _drain(reader) == frames
    assert reader.next_frame() is None
    assert reader.buffered == 0


def test_byte_at_a_time() -> None:
    wire, frames = _stream()
    reader = FrameReader()
    got: list[Frame] = []
    for i in range(len(wire)):
        reader.feed(wire[i : i + 1])
        got += _drain(reader)
    assert got == frames
    assert all(type(f.payload) is bytes for f in got if isinstance(f, BodyFrame))


@pytest.mark.parametrize("size", [2, 3, 7, 13, 64])
def test_arbitrary_chunks(size: int) -> None:
    wire, frames = _stream()
    reader = FrameReader()
    got: list[Frame] = []
    for i in range(0, len(wire), size):
        reader.feed(wire[i : i + size])
        got += _drain(reader)
    assert got == frames


def test_feed_accepts_bytearray_and_empty() -> None:
    wire, frames = _stream()
    reader = FrameReader()
    reader.feed(b"")
    reader.feed(bytearray(wire[:30]))  # type: ignore[arg-type]
    reader.feed(memoryview(wire)[30:])  # type: ignore[arg-type]
    assert _drain(reader) == frames


def _error(data: bytes, frame_max: int = 0, header: bool = False) -> AMQPConnectionError:
    reader = FrameReader(frame_max=frame_max, expect_protocol_header=header)
    reader.feed(data)
    with pytest.raises(AMQPConnectionError) as info:
        _drain(reader)
    return info.value


@pytest.mark.parametrize(
    "data",
    [b"GET / HTTP/1.1\r\n", b"AMQP\x00\x00\x09\x00", b"AMQP\x01\x01\x00\x09", b"\x01\x00\x00\x00\x00"],
)
def test_bad_protocol_header(data: bytes) -> None:
    err = _error(data, header=True)
    assert isinstance(err, BadProtocolHeader)
    assert err.reply_code == FRAME_ERROR


def test_partial_protocol_header_waits() -> None:
    reader = FrameReader()
    reader.feed(b"AMQP\x00")
    assert reader.next_frame() is None
    reader.feed(b"\x00\x09\x01" + HEARTBEAT_FRAME)
    assert _drain(reader) == [ProtocolHeader(), HeartbeatFrame()]


def test_bad_frame_end() -> None:
    assert _error(HEARTBEAT_FRAME[:-1] + b"\x00").reply_code == FRAME_ERROR


def test_unknown_frame_type_is_rejected_before_its_payload() -> None:
    assert _error(b"\x04\x00\x01\xff\xff\xff\xff").reply_code == FRAME_ERROR


def test_oversize_frame() -> None:
    # RabbitMQ tolerates a payload of frame_max octets (8 more than the spec allows), not one more.
    body = pika.frame.Body(1, b"x" * 4096).marshal()
    reader = FrameReader(frame_max=4096, expect_protocol_header=False)
    reader.feed(body)
    assert _drain(reader) == [BodyFrame(1, b"x" * 4096)]
    body = pika.frame.Body(1, b"x" * 4097).marshal()
    err = _error(body[:7], frame_max=4096)  # refused from the frame header alone
    assert err.reply_code == FRAME_ERROR
    assert err.reply_text == "FRAME_ERROR - type 3, all octets = <<>>: {frame_too_large,4097,4088}"


def test_frame_max_can_change_between_frames() -> None:
    reader = FrameReader(frame_max=4096, expect_protocol_header=False)
    reader.feed(pika.frame.Body(1, b"x" * 5000).marshal()[:7])
    reader.frame_max = 131072
    assert reader.next_frame() is None


def test_heartbeat_rules() -> None:
    assert _error(b"\x08\x00\x01\x00\x00\x00\x00\xce").reply_code == FRAME_ERROR
    assert _error(b"\x08\x00\x00\x00\x00\x00\x01\x00\xce").reply_code == FRAME_ERROR


def test_unknown_method() -> None:
    err = _error(b"\x01\x00\x01\x00\x00\x00\x04\x00\x3c\x03\xe7\xce")
    assert err.reply_code == NOT_IMPLEMENTED
    assert (err.class_id, err.method_id) == (60, 999)


def test_short_method_and_header_frames() -> None:
    assert _error(b"\x01\x00\x01\x00\x00\x00\x02\x00\x3c\xce").reply_code == FRAME_ERROR
    header = b"\x02\x00\x01\x00\x00\x00\x0c" + struct.pack(">HHQ", 60, 0, 5) + b"\xce"
    assert _error(header).reply_code == FRAME_ERROR


def test_malformed_method_fields() -> None:
    # basic.publish whose exchange name claims 9 octets but the frame ends first.
    frame = b"\x01\x00\x01\x00\x00\x00\x08\x00\x3c\x00\x28\x00\x00\x09a\xce"
    err = _error(frame)
    assert err.reply_code == SYNTAX_ERROR
    assert (err.class_id, err.method_id) == (60, 40)
    # Invalid UTF-8 in a short string.
    payload = b"\x00\x3c\x00\x28\x00\x00\x02\xff\xfe\x00\x00"
    err = _error(b"\x01\x00\x01" + struct.pack(">I", len(payload)) + payload + b"\xce")
    assert err.reply_code == SYNTAX_ERROR


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 40), min_size=1, max_size=30))
def test_any_chunking_gives_the_same_frames(sizes: list[int]) -> None:
    wire, frames = _stream()
    reader = FrameReader()
    got: list[Frame] = []
    pos = 0
    for size in sizes * (len(wire) // sum(sizes) + 1):
        reader.feed(wire[pos : pos + size])
        pos += size
        got += _drain(reader)
        if pos >= len(wire):
            break
    assert got == frames
    assert reader.buffered == 0
