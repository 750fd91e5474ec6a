"""The protocol machine alone: bytes in, events out; methods in, bytes out; no broker, no clock."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ottermq.amqp.constants import PROTOCOL_HEADER
from ottermq.amqp.errors import AMQPConnectionError, AMQPError, BadProtocolHeader, ChannelError
from ottermq.amqp.events import NEED_DATA, ContentReceived, Event
from ottermq.amqp.frames import (
    HEARTBEAT_FRAME,
    BodyFrame,
    FrameReader,
    HeaderFrame,
    MethodFrame,
    ProtocolHeader,
    encode_content,
    encode_method_frame,
)
from ottermq.amqp.heartbeat import HeartbeatClock, HeartbeatDue
from ottermq.amqp.machine import ConnectionMachine
from ottermq.amqp.methods import (
    BasicAck,
    BasicPublish,
    ChannelClose,
    ChannelCloseOk,
    ChannelOpen,
    ChannelOpenOk,
    ConnectionClose,
    ConnectionCloseOk,
    ConnectionOpen,
    ConnectionOpenOk,
    ConnectionSecureOk,
    ConnectionStart,
    ConnectionStartOk,
    ConnectionTune,
    ConnectionTuneOk,
    ConnectionUpdateSecret,
    Method,
    QueueDeclare,
)

PROPS = b"\x10\x00\x01"  # delivery-mode only (transient)
MAX_BODY = 1_000_000


def frame(channel: int, method: Method) -> bytes:
    return encode_method_frame(channel, method)


def header(channel: int, body_size: int, class_id: int = 60, properties: bytes = PROPS) -> bytes:
    size = 12 + len(properties)
    return (
        bytes((2,))
        + channel.to_bytes(2, "big")
        + size.to_bytes(4, "big")
        + class_id.to_bytes(2, "big")
        + b"\x00\x00"
        + body_size.to_bytes(8, "big")
        + properties
        + b"\xce"
    )


def body(channel: int, payload: bytes) -> bytes:
    return bytes((3,)) + channel.to_bytes(2, "big") + len(payload).to_bytes(4, "big") + payload + b"\xce"


def publish(channel: int, payload: bytes, frame_max: int = 131072, routing_key: str = "q") -> bytes:
    return frame(channel, BasicPublish(0, "", routing_key, False, False)) + encode_content(
        channel, 60, PROPS, payload, frame_max
    )


def events(machine: ConnectionMachine, data: bytes = b"") -> list[Event]:
    """Feed `data`; every event up to NEED_DATA."""
    if data:
        machine.receive_data(data)
    out: list[Event] = []
    while (event := machine.next_event()) is not NEED_DATA:
        out.append(event)
    return out


def methods(machine: ConnectionMachine, data: bytes) -> list[tuple[int, Method]]:
    out = []
    for event in events(machine, data):
        assert isinstance(event, MethodFrame), event
        out.append((event.channel, event.method))
    return out


def handshake(
    machine: ConnectionMachine, channel_max: int = 2047, frame_max: int = 131072, heartbeat: int = 0
) -> None:
    assert events(machine, PROTOCOL_HEADER) == [ProtocolHeader()]
    machine.send(0, ConnectionStart(0, 9, {}, b"PLAIN", b"en_US"))
    start_ok = ConnectionStartOk({}, "PLAIN", b"\x00guest\x00guest", "en_US")
    assert methods(machine, frame(0, start_ok)) == [(0, start_ok)]
    machine.send(0, ConnectionTune(2047, 131072, 60))
    tune_ok = ConnectionTuneOk(channel_max, frame_max, heartbeat)
    assert methods(machine, frame(0, tune_ok)) == [(0, tune_ok)]
    assert methods(machine, frame(0, ConnectionOpen("/"))) == [(0, ConnectionOpen("/"))]
    machine.send(0, ConnectionOpenOk())


def running(*channels: int, content_limit: int = 8 * 1024 * 1024, **tune: int) -> ConnectionMachine:
    machine = ConnectionMachine(MAX_BODY, content_limit)
    handshake(machine, **tune)
    for number in channels:
        assert methods(machine, frame(number, ChannelOpen())) == [(number, ChannelOpen())]
        machine.send(number, ChannelOpenOk())
    return machine


def refused(machine: ConnectionMachine, data: bytes) -> AMQPError:
    machine.receive_data(data)
    with pytest.raises(AMQPError) as info:
        while machine.next_event() is not NEED_DATA:
            pass
    return info.value


# -- the handshake ------------------------------------------------------------------------------------------


def test_a_full_handshake_moves_through_every_state() -> None:
    machine = ConnectionMachine(MAX_BODY, 0)
    assert machine.state == 0
    assert events(machine, PROTOCOL_HEADER[:5]) == []
    assert events(machine, PROTOCOL_HEADER[5:]) == [ProtocolHeader()]
    start = machine.send(0, ConnectionStart(0, 9, {}, b"PLAIN", b"en_US"))
    reader = FrameReader(expect_protocol_header=False)
    reader.feed(start)
    assert next(reader.frames()) == MethodFrame(0, ConnectionStart(0, 9, {}, b"PLAIN", b"en_US"))
    assert machine.state == 1
    start_ok = ConnectionStartOk({"product": "test"}, "PLAIN", b"\x00guest\x00guest", "en_US")
    assert methods(machine, frame(0, start_ok)) == [(0, start_ok)]
    machine.send(0, ConnectionTune(100, 65536, 60))
    assert machine.state == 2
    assert methods(machine, frame(0, ConnectionTuneOk(50, 8192, 10))) == [(0, ConnectionTuneOk(50, 8192, 10))]
    assert (machine.state, machine.channel_max, machine.frame_max, machine.heartbeat) == (3, 50, 8192, 10)
    assert methods(machine, frame(0, ConnectionOpen("/"))) == [(0, ConnectionOpen("/"))]
    machine.send(0, ConnectionOpenOk())
    assert machine.state == 4
    assert methods(machine, frame(0, ConnectionUpdateSecret(b"s", "r"))) == [
        (0, ConnectionUpdateSecret(b"s", "r"))
    ]
    # The client closes: close-ok ends it.
    assert methods(machine, frame(0, ConnectionClose(200, "bye", 0, 0))) == [
        (0, ConnectionClose(200, "bye", 0, 0))
    ]
    machine.send(0, ConnectionCloseOk())
    assert machine.state == 6


def test_frame_max_is_enforced_from_tune_ok_on() -> None:
    machine = running(frame_max=4096)
    error = refused(machine, body(1, b"x" * 5000))
    assert error.reply_code == 501
    assert not machine.readable


def test_before_tune_ok_frames_are_bounded_by_the_minimum() -> None:
    machine = ConnectionMachine(MAX_BODY, 0)
    events(machine, PROTOCOL_HEADER)
    machine.send(0, ConnectionStart(0, 9, {}, b"PLAIN", b"en_US"))
    error = refused(machine, frame(0, ConnectionStartOk({"x": "y" * 5000}, "PLAIN", b"", "en_US")))
    assert error.reply_code == 501 and not machine.readable


def test_a_bad_protocol_header_is_refused() -> None:
    machine = ConnectionMachine(MAX_BODY, 0)
    with pytest.raises(BadProtocolHeader):
        events(machine, b"AMQP\x00\x00\x09\x02")
    assert not machine.readable


@pytest.mark.parametrize(
    ("channel_max", "frame_max", "text"),
    [
        (
            2047,
            1000,
            "NOT_ALLOWED - negotiated frame_max = 1000 is lower than the minimum allowed value (4096)",
        ),
        (
            2047,
            200000,
            "NOT_ALLOWED - negotiated frame_max = 200000 is higher than the maximum allowed value (131072)",
        ),
        (2047, 0, "NOT_ALLOWED - negotiated frame_max = 0 is higher than the maximum allowed value (131072)"),
        (
            0,
            131072,
            "NOT_ALLOWED - negotiated channel_max = 0 (no limit) "
            "is higher than the maximum allowed value (2047)",
        ),
        (
            3000,
            131072,
            "NOT_ALLOWED - negotiated channel_max = 3000 is higher than the maximum allowed value (2047)",
        ),
    ],
)
def test_tune_ok_out_of_bounds_is_530(channel_max: int, frame_max: int, text: str) -> None:
    machine = ConnectionMachine(MAX_BODY, 0)
    events(machine, PROTOCOL_HEADER)
    machine.send(0, ConnectionStart(0, 9, {}, b"PLAIN", b"en_US"))
    events(machine, frame(0, ConnectionStartOk({}, "PLAIN", b"", "en_US")))
    machine.send(0, ConnectionTune(2047, 131072, 60))
    error = refused(machine, frame(0, ConnectionTuneOk(channel_max, frame_max, 0)))
    assert (error.reply_code, error.reply_text, error.class_id, error.method_id) == (530, text, 10, 30)
    assert machine.state == 2 and machine.readable


def test_an_unlimited_server_accepts_an_unlimited_client() -> None:
    machine = ConnectionMachine(MAX_BODY, 0)
    events(machine, PROTOCOL_HEADER)
    machine.send(0, ConnectionStart(0, 9, {}, b"PLAIN", b"en_US"))
    events(machine, frame(0, ConnectionStartOk({}, "PLAIN", b"", "en_US")))
    machine.send(0, ConnectionTune(0, 0, 0))
    events(machine, frame(0, ConnectionTuneOk(0, 0, 0)))
    assert (machine.channel_max, machine.frame_max) == (0, 0)


# -- illegal frames, state by state -------------------------------------------------------------------------


def _at(state: str) -> ConnectionMachine:
    machine = ConnectionMachine(MAX_BODY, 0)
    events(machine, PROTOCOL_HEADER)
    machine.send(0, ConnectionStart(0, 9, {}, b"PLAIN", b"en_US"))
    if state == "starting":
        return machine
    events(machine, frame(0, ConnectionStartOk({}, "PLAIN", b"", "en_US")))
    machine.send(0, ConnectionTune(2047, 131072, 60))
    if state == "tuning":
        return machine
    events(machine, frame(0, ConnectionTuneOk(2047, 131072, 0)))
    if state == "opening":
        return machine
    events(machine, frame(0, ConnectionOpen("/")))
    machine.send(0, ConnectionOpenOk())
    return machine


@pytest.mark.parametrize(
    ("state", "data", "code", "text", "ids"),
    [
        (
            "starting",
            frame(0, ConnectionTuneOk(1, 4096, 0)),
            504,
            "unexpected method in connection state starting",
            (10, 31),
        ),
        (
            "starting",
            frame(0, ConnectionSecureOk(b"")),
            504,
            "unexpected method in connection state securing",
            (10, 21),
        ),
        (
            "tuning",
            frame(0, ConnectionOpen("/")),
            504,
            "unexpected method in connection state tuning",
            (10, 40),
        ),
        (
            "opening",
            frame(0, ConnectionStartOk({}, "PLAIN", b"", "")),
            504,
            "unexpected method in connection state opening",
            (10, 11),
        ),
        (
            "running",
            frame(0, ConnectionTuneOk(2047, 131072, 0)),
            504,
            "unexpected method in connection state running",
            (10, 31),
        ),
        (
            "running",
            frame(0, ConnectionOpen("/")),
            504,
            "unexpected method in connection state running",
            (10, 40),
        ),
        (
            "tuning",
            frame(0, ConnectionUpdateSecret(b"", "")),
            504,
            "unexpected method in connection state tuning",
            (10, 70),
        ),
        ("opening", frame(1, ChannelOpen()), 505, "channel.open before connection.open", (20, 10)),
        ("starting", header(0, 1), 505, "content header on channel 0", (60, 40)),
        ("opening", body(1, b"x"), 505, "content body on channel 1", (60, 40)),
        ("running", header(0, 1), 505, "content header on channel 0", (60, 40)),
        ("running", body(7, b"x"), 505, "expected method frame, got non method frame instead", (60, 40)),
        ("running", frame(7, QueueDeclare(queue="q")), 504, "expected 'channel.open'", (50, 10)),
    ],
)
def test_illegal_frames_in_each_state(
    state: str, data: bytes, code: int, text: str, ids: tuple[int, int]
) -> None:
    machine = _at(state)
    error = refused(machine, data)
    assert isinstance(error, AMQPConnectionError)
    assert (error.reply_code, error.reply_text.split(" - ", 1)[1], (error.class_id, error.method_id)) == (
        code,
        text,
        ids,
    )
    assert machine.readable  # a protocol error, not a framing one: the stream can still be read


@pytest.mark.parametrize(
    ("data", "text"),
    [
        (header(1, 1), "expected method frame, got non method frame instead"),
        (body(1, b"x"), "expected method frame, got non method frame instead"),
        (
            frame(1, BasicPublish(0, "", "q", False, False)) + body(1, b"x"),
            "expected content header for class 60, got non content header frame instead",
        ),
        (
            frame(1, BasicPublish(0, "", "q", False, False)) + frame(1, BasicAck(1, False)),
            "expected content header for class 60, got non content header frame instead",
        ),
        (
            frame(1, BasicPublish(0, "", "q", False, False)) + header(1, 2) + frame(1, BasicAck(1, False)),
            "expected content body, got non content body frame instead",
        ),
        (
            frame(1, BasicPublish(0, "", "q", False, False)) + header(1, 2) + header(1, 2),
            "expected content body, got non content body frame instead",
        ),
        (
            frame(1, BasicPublish(0, "", "q", False, False)) + header(1, 2, class_id=50),
            "expected content header for class 60, got one for class 50 instead",
        ),
    ],
)
def test_content_out_of_order_is_505(data: bytes, text: str) -> None:
    error = refused(running(1), data)
    assert (error.reply_code, error.reply_text, error.class_id, error.method_id) == (
        505,
        "UNEXPECTED_FRAME - " + text,
        60,
        40,
    )


def test_publish_with_immediate_is_540() -> None:
    error = refused(running(1), frame(1, BasicPublish(0, "", "q", False, True)))
    assert (error.reply_code, error.reply_text, error.class_id, error.method_id) == (
        540,
        "NOT_IMPLEMENTED - immediate=true",
        60,
        40,
    )


def test_an_unknown_method_is_540_and_ends_reading() -> None:
    machine = running(1)
    error = refused(machine, b"\x01\x00\x01\x00\x00\x00\x04\x00\x3c\x03\xe7\xce")
    assert (error.reply_code, error.class_id, error.method_id) == (540, 60, 999)
    assert not machine.readable


def test_after_our_connection_close_only_close_and_close_ok_are_read() -> None:
    machine = running(1)
    machine.send(0, ConnectionClose(541, "INTERNAL_ERROR", 0, 0))
    assert machine.state == 5
    noise = (
        frame(1, QueueDeclare(queue="q"))
        + publish(1, b"abc")
        + frame(2, ChannelOpen())
        + header(0, 1)
        + frame(0, ConnectionOpen("/"))
    )
    assert events(machine, noise) == []
    # The closes crossed: answered, and close-ok is still awaited.
    assert methods(machine, frame(0, ConnectionClose(200, "", 0, 0))) == [(0, ConnectionClose(200, "", 0, 0))]
    machine.send(0, ConnectionCloseOk())
    assert machine.state == 5
    assert methods(machine, frame(0, ConnectionCloseOk())) == [(0, ConnectionCloseOk())]
    assert machine.state == 6


# -- channels ---------------------------------------------------------------------------------------------


def test_channel_max_counts_channels_in_use_not_their_numbers() -> None:
    machine = running(3000, 65535, channel_max=3)
    assert machine.channel_in_use(3000) and machine.channel_in_use(65535)
    assert methods(machine, frame(9, ChannelOpen())) == [(9, ChannelOpen())]
    error = refused(machine, frame(10, ChannelOpen()))
    assert (error.reply_code, error.reply_text, error.class_id, error.method_id) == (
        530,
        "NOT_ALLOWED - number of channels opened (3) has reached the negotiated channel_max (3)",
        20,
        10,
    )


def test_a_channel_closed_by_the_client_frees_its_number_with_our_close_ok() -> None:
    machine = running(1, channel_max=1)
    assert methods(machine, frame(1, ChannelClose(200, "", 0, 0))) == [(1, ChannelClose(200, "", 0, 0))]
    assert machine.channel_in_use(1)
    machine.send(1, ChannelCloseOk())
    assert not machine.channel_in_use(1)
    assert methods(machine, frame(1, ChannelOpen())) == [(1, ChannelOpen())]


def test_a_closing_channel_reads_only_close_and_close_ok() -> None:
    machine = running(1, 2, channel_max=2)
    machine.receive_data(frame(1, BasicPublish(0, "", "q", False, False)) + header(1, 10) + body(1, b"12345"))
    assert events(machine) == []
    assert machine.content_bytes == 5 and machine.content_in_progress
    machine.send(1, ChannelClose(406, "PRECONDITION_FAILED - x", 60, 40))
    assert machine.content_bytes == 0 and not machine.content_in_progress
    assert events(machine, body(1, b"67890") + publish(1, b"abc") + frame(1, QueueDeclare(queue="q"))) == []
    # The client's close crosses ours: answered, and the number stays in use until its close-ok.
    assert methods(machine, frame(1, ChannelClose(200, "", 0, 0))) == [(1, ChannelClose(200, "", 0, 0))]
    machine.send(1, ChannelCloseOk())
    assert machine.channel_in_use(1)
    assert refused(machine, frame(3, ChannelOpen())).reply_code == 530
    assert methods(machine, frame(1, ChannelCloseOk())) == [(1, ChannelCloseOk())]
    assert not machine.channel_in_use(1)
    assert methods(machine, frame(3, ChannelOpen())) == [(3, ChannelOpen())]


def test_methods_on_an_open_channel_pass_through() -> None:
    machine = running(1)
    declare = QueueDeclare(queue="q", durable=True)
    assert methods(machine, frame(1, declare) + frame(1, BasicAck(7, True))) == [
        (1, declare),
        (1, BasicAck(7, True)),
    ]


# -- content ----------------------------------------------------------------------------------------------


def test_a_publish_is_one_event_once_its_body_is_whole() -> None:
    machine = running(1)
    method = BasicPublish(0, "x", "rk", True, False)
    machine.receive_data(frame(1, method) + header(1, 6))
    assert events(machine) == []
    assert machine.header_seen
    assert events(machine, body(1, b"abc")) == []
    assert machine.content_bytes == 3
    assert events(machine, body(1, b"def")) == [ContentReceived(1, method, PROPS, b"abcdef")]
    assert machine.content_bytes == 0


def test_an_empty_body_completes_at_its_header() -> None:
    machine = running(1)
    assert events(machine, frame(1, BasicPublish(0, "", "q", False, False)) + header(1, 0)) == [
        ContentReceived(1, BasicPublish(0, "", "q", False, False), PROPS, b"")
    ]


def test_a_body_larger_than_declared_is_501() -> None:
    machine = running(1)
    error = refused(
        machine, frame(1, BasicPublish(0, "", "q", False, False)) + header(1, 4) + body(1, b"abcdef")
    )
    assert (error.reply_code, error.reply_text, error.class_id, error.method_id) == (
        501,
        "FRAME_ERROR - content body exceeds the declared size by 2 octets",
        60,
        40,
    )
    machine = running(1)
    data = frame(1, BasicPublish(0, "", "q", False, False)) + header(1, 4) + body(1, b"abc") + body(1, b"de")
    assert (
        refused(machine, data).reply_text
        == "FRAME_ERROR - content body exceeds the declared size by 1 octets"
    )


def test_a_message_over_the_max_size_is_a_soft_406_on_its_channel() -> None:
    machine = ConnectionMachine(100, 0)
    handshake(machine)
    events(machine, frame(5, ChannelOpen()))
    error = refused(machine, frame(5, BasicPublish(0, "", "q", False, False)) + header(5, 101))
    assert isinstance(error, ChannelError)
    assert (error.reply_code, error.reply_text, error.channel, error.class_id, error.method_id) == (
        406,
        "PRECONDITION_FAILED - message size 101 is larger than configured max size 100",
        5,
        60,
        40,
    )
    assert not machine.header_seen and not machine.content_in_progress


def test_several_messages_under_way_are_bounded_by_the_content_limit() -> None:
    machine = running(1, 2, content_limit=10_000)
    start = frame(1, BasicPublish(0, "", "q", False, False)) + header(1, 30_000)
    assert events(machine, start + body(1, b"a" * 16_000)) == []
    assert machine.content_bytes == 16_000
    start2 = frame(2, BasicPublish(0, "", "q", False, False)) + header(2, 30_000)
    error = refused(machine, start2 + body(2, b"b" * 4000))
    assert isinstance(error, ChannelError)
    assert (error.reply_code, error.channel) == (406, 2)
    assert error.reply_text == (
        "PRECONDITION_FAILED - 20000 bytes of messages in progress on this connection "
        "is more than the limit 10000"
    )
    assert machine.content_bytes == 16_000
    machine.send(2, ChannelClose(406, error.reply_text, 60, 40))
    contents = events(machine, body(2, b"b" * 4000) + body(1, b"a" * 14_000))
    assert [(c.channel, len(c.body)) for c in contents if isinstance(c, ContentReceived)] == [(1, 30_000)]
    assert machine.content_bytes == 0


def test_a_closed_connection_drops_what_was_under_way() -> None:
    machine = running(1)
    events(machine, frame(1, BasicPublish(0, "", "q", False, False)) + header(1, 10) + body(1, b"abc"))
    assert machine.buffered == 3
    machine.send(0, ConnectionClose(320, "CONNECTION_FORCED - shutdown", 0, 0))
    assert machine.content_bytes == 0 and machine.buffered == 0


def test_content_interleaved_over_channels_and_heartbeats() -> None:
    machine = running(1, 2, frame_max=4096)
    one = publish(1, b"1" * 10_000, 4096, "one")
    two = publish(2, b"2" * 5000, 4096, "two")
    # Frames of the two messages alternate (channels are independent); heartbeats come between.
    reader = FrameReader(expect_protocol_header=False)
    reader.feed(one)
    one_frames = [encode_frame_of(f) for f in reader.frames()]
    reader.feed(two)
    two_frames = [encode_frame_of(f) for f in reader.frames()]
    data = b""
    for index in range(max(len(one_frames), len(two_frames))):
        data += b"".join(frames[index] for frames in (one_frames, two_frames) if index < len(frames))
        data += HEARTBEAT_FRAME
    got = events(machine, data)
    assert [(e.channel, e.method.routing_key, e.body) for e in got if isinstance(e, ContentReceived)] == [
        (2, "two", b"2" * 5000),
        (1, "one", b"1" * 10_000),
    ]


def encode_frame_of(value: object) -> bytes:
    """The bytes of a frame the reader returned (one of a method, header or body)."""
    if isinstance(value, MethodFrame):
        return frame(value.channel, value.method)
    if isinstance(value, BodyFrame):
        return body(value.channel, value.payload)
    assert isinstance(value, HeaderFrame)
    return header(value.channel, value.body_size, value.class_id, value.properties)


STREAM_MESSAGES = [b"", b"x", b"y" * 4088, b"z" * 4089, b"w" * 10_000]


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_split_reads_give_the_same_events(data: st.DataObject) -> None:
    """Any chunking of the stream gives the events of reading it at once."""
    stream = b"".join(publish(1 + i % 2, payload, 4096, f"k{i}") for i, payload in enumerate(STREAM_MESSAGES))
    expected = events(running(1, 2, frame_max=4096), stream)
    assert len(expected) == len(STREAM_MESSAGES)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=12)))
    machine = running(1, 2, frame_max=4096)
    got: list[Event] = []
    for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        got += events(machine, stream[start:end])
    assert got == expected


def outcome(machine: ConnectionMachine, chunks: list[bytes]) -> tuple[list[Event], tuple[int, str] | None]:
    """The events of feeding `chunks` one by one, and the error that ended reading (code, text), if any."""
    got: list[Event] = []
    for chunk in chunks:
        machine.receive_data(chunk)
        try:
            while (event := machine.next_event()) is not NEED_DATA:
                got.append(event)
        except AMQPError as error:
            return got, (error.reply_code, error.reply_text)
    return got, None


@st.composite
def _message_frames(draw: st.DrawFn) -> bytes:
    """A publish's frames, mostly well formed: each part is sometimes off (its channel, class, size)."""
    channel = draw(st.sampled_from([1, 2]))
    others = st.sampled_from([channel, channel, channel, 1, 2, 3])
    payload = draw(st.sampled_from([b"", b"a", b"abc", b"x" * 4088, b"x" * 4089, b"x" * 4097]))
    size = draw(st.sampled_from([len(payload)] * 4 + [0, 2, MAX_BODY + 1]))
    class_id = draw(st.sampled_from([60, 60, 60, 50]))
    properties = draw(
        st.sampled_from([PROPS, b"\x00\x00", b"\x90\x00\x05\x00\x00\x00\x00\x02", b"\x00\x00" + b"p" * 4090])
    )
    parts = [
        frame(draw(others), BasicPublish(0, "", "k", False, False)),
        header(draw(others), size, class_id, properties),
        body(draw(others), payload),
    ]
    return b"".join(parts[: draw(st.sampled_from([3, 3, 3, 2, 1]))])


_FRAME_PARTS = st.one_of(
    _message_frames(),
    _message_frames(),
    st.just(frame(1, BasicAck(1, False))),
    st.just(HEARTBEAT_FRAME),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_FRAME_PARTS, min_size=1, max_size=8))
def test_a_whole_read_gives_what_frame_by_frame_reading_gives(parts: list[bytes]) -> None:
    """A publish whose header and body are already buffered is taken in one step (take_content): any
    sequence of frames, well formed or not, gives the same events and the same error as reading it one
    byte at a time, where each frame is handled alone."""
    data = b"".join(parts)
    whole = outcome(running(1, 2, frame_max=4096), [data])
    assert whole == outcome(running(1, 2, frame_max=4096), [data[i : i + 1] for i in range(len(data))])


def _raw_ack(
    channel: int, tag: int, bits: int, size: int = 13, end: int = 0xCE, index: int = 0x003C0050
) -> bytes:
    """A basic.ack frame as octets, possibly off: reserved bits set, a longer payload, a bad end octet, or
    another method of the same layout (basic.reject, basic.nack)."""
    head = struct.pack(">BHIIQB", 1, channel, size, index, tag, bits)
    return head + b"\xce" * (size - 13) + bytes([end])


@st.composite
def _ack_run(draw: st.DrawFn) -> bytes:
    """Acks back to back on one channel, as a consumer sends them, some with reserved bits set."""
    channel = draw(st.sampled_from([1, 2, 3]))
    tags = draw(st.lists(st.integers(0, 2**64 - 1), min_size=1, max_size=6))
    frames = [_raw_ack(channel, tag, draw(st.sampled_from([0, 1, 2, 3]))) for tag in tags]
    odd = draw(st.sampled_from([None] * 6 + ["end", "reject", "nack"]))
    if odd is not None:  # one frame of the run is not an ack after all
        at = draw(st.integers(0, len(frames) - 1))
        index = {"reject": 0x003C005A, "nack": 0x003C0078}.get(odd, 0x003C0050)
        frames[at] = _raw_ack(channel, tags[at], 0, end=0 if odd == "end" else 0xCE, index=index)
    return b"".join(frames)


_ACK_PARTS = st.one_of(
    _ack_run(),
    _ack_run(),
    st.builds(
        _raw_ack, st.sampled_from([1, 1, 1, 2, 3]), st.integers(0, 2**64 - 1), st.sampled_from([0, 1, 2, 3])
    ),
    st.builds(
        _raw_ack,
        st.just(1),
        st.integers(1, 9),
        st.just(0),
        st.sampled_from([13, 14]),
        st.sampled_from([0xCE, 0xCE, 0]),
    ),
    _message_frames(),
    st.just(frame(2, ChannelClose(200, "bye", 0, 0))),
    st.just(HEARTBEAT_FRAME),
)


def acks_taken(machine: ConnectionMachine, data: bytes) -> tuple[list[Event], tuple[int, str] | None]:
    """`outcome` of reading `data` at once, taking every run of acks that follows an ack event as the
    broker does (`take_acks`), each as the event it stands for."""
    got: list[Event] = []
    machine.receive_data(data)
    try:
        while (event := machine.next_event()) is not NEED_DATA:
            got.append(event)
            if isinstance(event, MethodFrame) and type(event.method) is BasicAck:
                for tag, multiple in machine.take_acks(event.channel):
                    got.append(MethodFrame(event.channel, BasicAck(tag, multiple)))
    except AMQPError as error:
        return got, (error.reply_code, error.reply_text)
    return got, None


@settings(max_examples=400, deadline=None)
@given(st.lists(_ACK_PARTS, min_size=1, max_size=12))
def test_acks_taken_together_are_the_acks_frame_by_frame_reading_gives(parts: list[bytes]) -> None:
    """A consumer's acks already buffered are taken in one step (take_acks): any sequence of acks (on
    other channels, with reserved bits, longer, badly ended), publishes and other frames gives the same
    events and the same error as reading it one byte at a time."""
    data = b"".join(parts)
    taken = acks_taken(running(1, 2, frame_max=4096), data)
    assert taken == outcome(running(1, 2, frame_max=4096), [data[i : i + 1] for i in range(len(data))])


def test_a_publish_split_at_every_byte_offset() -> None:
    message = publish(1, b"0123456789" * 500, 4096)
    expected = events(running(1, frame_max=4096), message)
    for cut in range(1, len(message)):
        machine = running(1, frame_max=4096)
        assert events(machine, message[:cut]) + events(machine, message[cut:]) == expected, cut


# -- heartbeats -------------------------------------------------------------------------------------------


def test_tune_ok_sets_the_heartbeat_interval() -> None:
    assert running(heartbeat=10).heartbeats.interval == 10


def test_heartbeats_are_due_after_half_an_idle_interval() -> None:
    clock = HeartbeatClock(10)
    assert clock.poll(100.0, False, False) is HeartbeatDue.NOTHING  # starts both clocks
    assert clock.poll(104.0, True, False) is HeartbeatDue.NOTHING
    assert clock.poll(105.0, True, False) is HeartbeatDue.SEND
    assert clock.poll(106.0, True, False) is HeartbeatDue.NOTHING  # one was just sent
    assert clock.poll(109.0, True, True) is HeartbeatDue.NOTHING  # traffic counts as one
    assert clock.poll(114.0, True, False) is HeartbeatDue.SEND


def test_a_peer_silent_for_two_intervals_is_dead() -> None:
    clock = HeartbeatClock(10)
    clock.poll(100.0, False, False)
    clock.poll(115.0, True, True)
    assert clock.poll(134.0, False, True) is HeartbeatDue.NOTHING
    assert clock.poll(135.0, False, True) is HeartbeatDue.PEER_DEAD


def test_interval_zero_disables_heartbeats() -> None:
    clock = HeartbeatClock(0)
    assert clock.poll(0.5, False, False) is HeartbeatDue.NOTHING
    assert clock.poll(10_000.0, False, False) is HeartbeatDue.NOTHING
