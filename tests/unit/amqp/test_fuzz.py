"""Hostile input: random and mutated bytes only ever raise the codec's own AMQPError."""

import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ottermq.amqp.constants import PROTOCOL_HEADER
from ottermq.amqp.errors import AMQPError
from ottermq.amqp.frames import FrameReader, encode_content, encode_method_frame
from ottermq.amqp.method import Method
from ottermq.amqp.methods import METHODS
from ottermq.amqp.properties import (
    BasicProperties,
    decode_properties,
    encode_properties,
    peek_delivery_mode,
    peek_expiration,
    peek_priority,
)
from ottermq.amqp.table import decode_table, encode_table
from tests.unit.amqp.samples import TABLE_SAMPLE, all_specs, ours, sample_kwargs

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

PROPS = encode_properties(
    BasicProperties(content_type="a", headers=TABLE_SAMPLE, delivery_mode=2, priority=3, expiration="100")
)
PAYLOADS = [ours(name)(**sample_kwargs(fields)).encode() for name, fields in all_specs()]
FRAMES = [encode_method_frame(1, ours(name)(**sample_kwargs(fields))) for name, fields in all_specs()] + [
    encode_content(1, 60, PROPS, b"body" * 10, 4096)
]
CLASSES = list(METHODS.values())


def _mutate(data: bytes, edits: list[tuple[int, int, int]]) -> bytes:
    """Apply (kind, position, byte) edits: 0 overwrite, 1 insert, 2 delete, 3 truncate."""
    buf = bytearray(data)
    for kind, pos, byte in edits:
        if not buf:
            break
        pos %= len(buf)
        if kind == 0:
            buf[pos] = byte
        elif kind == 1:
            buf.insert(pos, byte)
        elif kind == 2:
            del buf[pos]
        else:
            del buf[pos:]
    return bytes(buf)


edits = st.lists(st.tuples(st.integers(0, 3), st.integers(0, 2**16), st.integers(0, 255)), max_size=6)


def _drain(data: bytes, chunk: int, frame_max: int, header: bool) -> None:
    reader = FrameReader(frame_max=frame_max, expect_protocol_header=header)
    try:
        for i in range(0, len(data), chunk):
            reader.feed(data[i : i + chunk])
            for _ in reader.frames():
                pass
    except AMQPError:
        pass


@FUZZ
@given(st.binary(max_size=300), st.integers(1, 64), st.sampled_from([0, 4096, 200]), st.booleans())
def test_random_bytes_into_reader(data: bytes, chunk: int, frame_max: int, header: bool) -> None:
    _drain((PROTOCOL_HEADER if header else b"") + data, chunk, frame_max, header)


@FUZZ
@given(st.lists(st.sampled_from(FRAMES), min_size=1, max_size=4), edits, st.integers(1, 512))
def test_mutated_frames_into_reader(
    frames: list[bytes], changes: list[tuple[int, int, int]], chunk: int
) -> None:
    _drain(_mutate(b"".join(frames), changes), chunk, 0, False)


@FUZZ
@given(st.integers(0, len(PAYLOADS) - 1), edits)
def test_mutated_payload_in_valid_envelope(index: int, changes: list[tuple[int, int, int]]) -> None:
    cls = ours(all_specs()[index][0])
    payload = struct.pack(">HH", cls.CLASS_ID, cls.METHOD_ID) + _mutate(PAYLOADS[index], changes)
    frame = b"\x01\x00\x01" + struct.pack(">I", len(payload)) + payload + b"\xce"
    _drain(frame, len(frame), 0, False)


@FUZZ
@given(st.sampled_from(CLASSES), st.binary(max_size=64))
def test_random_method_payloads(cls: type[Method], data: bytes) -> None:
    try:
        cls.decode(data)
    except AMQPError:
        pass


@FUZZ
@given(st.integers(0, len(PAYLOADS) - 1), edits)
def test_mutated_method_payloads(index: int, changes: list[tuple[int, int, int]]) -> None:
    name = all_specs()[index][0]
    try:
        ours(name).decode(_mutate(PAYLOADS[index], changes))
    except AMQPError:
        pass


@FUZZ
@given(st.one_of(st.binary(max_size=64), edits.map(lambda e: _mutate(PROPS, e))))
def test_properties_and_peeks(raw: bytes) -> None:
    for fn in (decode_properties, peek_delivery_mode, peek_priority, peek_expiration):
        try:
            fn(raw)
        except AMQPError:
            pass


@FUZZ
@given(st.one_of(st.binary(max_size=64), edits.map(lambda e: _mutate(encode_table(TABLE_SAMPLE), e))))
def test_tables(raw: bytes) -> None:
    try:
        decode_table(raw, 0)
    except AMQPError:
        pass
