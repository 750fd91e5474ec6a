"""Hostile frames into a whole sans-IO broker connection, past a valid handshake.

Strategy: the codec fuzz (test_fuzz.py) shows the codec raises only AMQPError; this one feeds the same
valid, mutated and random frames to a broker `Connection` with an open channel, the way a hostile client
would, in random chunkings. Whatever arrives, the broker must answer with a protocol error (never 541
INTERNAL_ERROR, which means a bug was hit), nothing may escape `data_received`, and once the socket is gone
the broker must hold nothing of the connection: no live connection, no consumer, no exclusive queue.
"""

from __future__ import annotations

import logging
import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ottermq.amqp.constants import INTERNAL_ERROR
from ottermq.amqp.frames import FrameReader, MethodFrame, encode_method_frame
from ottermq.amqp.methods import BasicPublish, ConnectionClose, QueueDeclare
from ottermq.broker.broker import Broker
from tests.unit.amqp.samples import all_specs, ours, sample_kwargs
from tests.unit.broker.test_connection_harness import connected

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Methods a client may send (the server-to-client ones are refused the same way, so keep a few).
_CLIENT_FRAMES = [
    encode_method_frame(1, ours(name)(**sample_kwargs(fields)))
    for name, fields in all_specs()
    if not name.endswith("-ok") or name in ("channel.close-ok", "connection.close-ok")
]
_PUBLISH = (
    encode_method_frame(1, BasicPublish(0, "", "q", False, False))
    + b"\x02\x00\x01\x00\x00\x00\x0e\x00\x3c\x00\x00\x00\x00\x00\x00\x00\x00\x00\x04\x00\x00\xce"
    + b"\x03\x00\x01\x00\x00\x00\x04body\xce"
)
FRAMES = [*_CLIENT_FRAMES, _PUBLISH]


def _mutate(data: bytes, edits: list[tuple[int, int, int]]) -> bytes:
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


edits = st.lists(st.tuples(st.integers(0, 3), st.integers(0, 2**16), st.integers(0, 255)), max_size=4)
frame_lists = st.lists(st.sampled_from(FRAMES), min_size=1, max_size=6)
streams = st.one_of(
    st.tuples(frame_lists, edits).map(lambda fe: _mutate(b"".join(fe[0]), fe[1])),
    frame_lists.map(b"".join),
    st.binary(max_size=200),
    # A frame header with any type, channel and size, then some bytes.
    st.tuples(
        st.integers(0, 255), st.integers(0, 65535), st.integers(0, 2**32 - 1), st.binary(max_size=40)
    ).map(lambda t: struct.pack(">BHI", t[0], t[1], t[2]) + t[3]),
)


class _InternalErrors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _close_codes(written: bytes) -> list[int]:
    reader = FrameReader(expect_protocol_header=False)
    reader.feed(written)
    codes = []
    try:
        for frame in reader.frames():
            if type(frame) is MethodFrame and type(frame.method) is ConnectionClose:
                codes.append(frame.method.reply_code)
    except Exception:  # our own output must parse; a failure here is reported by the assertion below
        codes.append(-1)
    return codes


# One broker for every example (building one hashes the default user's password, which is slow on
# purpose); sharing it also shows that hundreds of hostile connections leave nothing behind.
_BROKER: list[Broker] = []


def _broker() -> Broker:
    if not _BROKER:
        _BROKER.append(Broker())
    return _BROKER[0]


@FUZZ
@given(streams, st.integers(1, 300))
def test_hostile_frames_after_the_handshake_end_in_protocol_errors(data: bytes, chunk: int) -> None:
    handler = _InternalErrors()
    logger = logging.getLogger("ottermq")
    logger.addHandler(handler)
    try:
        broker = _broker()
        client = connected(broker)
        client.method(1, QueueDeclare(queue="", exclusive=True))
        client.frames()
        client.transport.out.clear()
        for i in range(0, len(data), chunk):
            client.send(data[i : i + chunk])
        codes = _close_codes(bytes(client.transport.out))
        assert INTERNAL_ERROR not in codes and -1 not in codes, codes
        assert not handler.records, [r.getMessage() for r in handler.records]
        client.conn.connection_lost()
        assert not broker.connections
        vhost = broker.vhosts["/"]
        assert all(q.exclusive_owner is None for q in vhost.queues.values())
        assert all(q.consumer_count == 0 for q in vhost.queues.values())
    finally:
        logger.removeHandler(handler)
