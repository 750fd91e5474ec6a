"""Whole-message encoders, checked with pika's frame decoder and with our reader."""

from typing import Any

import pika.frame
import pika.spec
import pytest

from ottermq.amqp.frames import (
    HEARTBEAT_FRAME,
    BodyFrame,
    Frame,
    FrameReader,
    HeaderFrame,
    MethodFrame,
    encode_basic_ack,
    encode_basic_nack,
    encode_content,
    encode_deliver,
    encode_get_ok,
    encode_method_frame,
    encode_return,
)
from ottermq.amqp.methods import BasicAck, BasicDeliver, BasicGetOk, BasicNack, BasicReturn
from ottermq.amqp.properties import BasicProperties, encode_properties

PROPS = encode_properties(BasicProperties(content_type="text/plain", delivery_mode=2, headers={"h": 1}))


def _pika_frames(wire: bytes) -> list[Any]:
    frames = []
    while wire:
        used, frame = pika.frame.decode_frame(wire)
        assert used > 0 and frame is not None
        frames.append(frame)
        wire = wire[used:]
    return frames


def _ours(wire: bytes, frame_max: int = 0) -> list[Frame]:
    reader = FrameReader(frame_max=frame_max, expect_protocol_header=False)
    reader.feed(wire)
    frames = list(reader.frames())
    assert reader.buffered == 0
    return frames


def _check_content(frames: list[Any], body: bytes, frame_max: int) -> None:
    header, *bodies = frames
    assert isinstance(header, pika.frame.Header)
    assert header.body_size == len(body)
    assert header.properties.content_type == "text/plain"
    assert header.properties.headers == {"h": 1}
    assert b"".join(b.fragment for b in bodies) == body
    for b in bodies:
        assert isinstance(b, pika.frame.Body)
        assert 0 < len(b.fragment) <= (frame_max - 8 if frame_max else len(body))
    assert len(bodies) == (0 if not body else -(-len(body) // (frame_max - 8)) if frame_max else 1)


@pytest.mark.parametrize(
    ("size", "frame_max"),
    [(0, 4096), (16, 4096), (1024, 0), (4088, 4096), (4089, 4096), (20000, 4096), (300000, 131072)],
)
def test_encode_deliver(size: int, frame_max: int) -> None:
    body = bytes(range(256)) * (size // 256) + b"z" * (size % 256)
    wire = encode_deliver(7, "ctag-ü", 2**64 - 1, True, "amq.topic", "a.b.c", PROPS, body, frame_max)
    method, *content = _pika_frames(wire)
    assert method.channel_number == 7
    m = method.method
    assert isinstance(m, pika.spec.Basic.Deliver)
    assert (m.consumer_tag, m.delivery_tag, m.redelivered, m.exchange, m.routing_key) == (
        "ctag-ü",
        2**64 - 1,
        True,
        "amq.topic",
        "a.b.c",
    )
    _check_content(content, body, frame_max)
    frames = _ours(wire, frame_max)
    assert frames[0] == MethodFrame(7, BasicDeliver("ctag-ü", 2**64 - 1, True, "amq.topic", "a.b.c"))
    assert frames[1] == HeaderFrame(7, 60, size, PROPS)
    assert b"".join(f.payload for f in frames[2:] if isinstance(f, BodyFrame)) == body


def test_encode_get_ok_and_return() -> None:
    body = b"x" * 5000
    wire = encode_get_ok(3, 42, False, "", "q", 17, PROPS, body, 4096)
    method, *content = _pika_frames(wire)
    m = method.method
    assert isinstance(m, pika.spec.Basic.GetOk)
    got = (m.delivery_tag, m.redelivered, m.exchange, m.routing_key, m.message_count)
    assert got == (42, False, "", "q", 17)
    _check_content(content, body, 4096)
    assert _ours(wire)[0] == MethodFrame(3, BasicGetOk(42, False, "", "q", 17))

    wire = encode_return(3, 312, "NO_ROUTE", "ex", "rk", PROPS, b"", 4096)
    method, *content = _pika_frames(wire)
    m = method.method
    assert isinstance(m, pika.spec.Basic.Return)
    assert (m.reply_code, m.reply_text, m.exchange, m.routing_key) == (312, "NO_ROUTE", "ex", "rk")
    _check_content(content, b"", 4096)
    assert _ours(wire)[0] == MethodFrame(3, BasicReturn(312, "NO_ROUTE", "ex", "rk"))


def test_acks_match_pika_and_the_generic_encoder() -> None:
    for tag, multiple in [(1, False), (2**64 - 1, True)]:
        wire = encode_basic_ack(5, tag, multiple)
        assert wire == pika.frame.Method(5, pika.spec.Basic.Ack(tag, multiple)).marshal()
        assert wire == encode_method_frame(5, BasicAck(tag, multiple))
    for multiple in (False, True):
        for requeue in (False, True):
            wire = encode_basic_nack(5, 9, multiple, requeue)
            assert wire == pika.frame.Method(5, pika.spec.Basic.Nack(9, multiple, requeue)).marshal()
            assert _ours(wire) == [MethodFrame(5, BasicNack(9, multiple, requeue))]


def test_encode_content_alone() -> None:
    wire = encode_content(2, 60, PROPS, b"abc" * 3000, 4096)
    _check_content(_pika_frames(wire), b"abc" * 3000, 4096)
    assert (
        encode_content(2, 60, PROPS, b"", 4096)
        == pika.frame.Header(
            2, 0, pika.spec.BasicProperties(content_type="text/plain", delivery_mode=2, headers={"h": 1})
        ).marshal()
    )


def test_heartbeat_frame() -> None:
    assert pika.frame.Heartbeat().marshal() == HEARTBEAT_FRAME


def test_encoders_reject_long_short_strings() -> None:
    with pytest.raises(ValueError):
        encode_deliver(1, "c" * 256, 1, False, "", "", PROPS, b"", 0)
    with pytest.raises(ValueError):
        encode_method_frame(1, BasicDeliver(consumer_tag="c" * 256))
