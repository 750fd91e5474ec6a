"""A tiny client for driving a sans-IO broker `Connection` with plain bytes, and its own sanity test.

Strategy: the test transport only collects what the broker writes and records timers; the client
builds frames with the project's codec, parses the broker's output with a `FrameReader`, and offers
`expect(MethodClass)` to read the next method. No part of the broker is mocked.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from ottermq.amqp.constants import PROTOCOL_HEADER
from ottermq.amqp.frames import (
    BodyFrame,
    FrameReader,
    HeaderFrame,
    HeartbeatFrame,
    MethodFrame,
    encode_content,
    encode_method_frame,
)
from ottermq.amqp.methods import (
    ChannelOpen,
    ChannelOpenOk,
    ConnectionOpen,
    ConnectionOpenOk,
    ConnectionStart,
    ConnectionStartOk,
    ConnectionTune,
    ConnectionTuneOk,
    Method,
)
from ottermq.amqp.properties import BasicProperties, encode_properties
from ottermq.broker.broker import Broker, BrokerSettings
from ottermq.broker.connection import Connection

M = TypeVar("M", bound=Method)

CLIENT_CAPABILITIES = {
    "authentication_failure_close": True,
    "basic.nack": True,
    "connection.blocked": True,
    "consumer_cancel_notify": True,
    "publisher_confirms": True,
}


class Timer:
    def __init__(self, delay: float, callback: Callable[[], None]) -> None:
        self.delay = delay
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class CollectingTransport:
    """Records writes, close and timers; `is_writable` is settable."""

    def __init__(self) -> None:
        self.out = bytearray()
        self.closed = False
        self.is_writable = True
        self.reading = True
        self.timers: list[Timer] = []
        # A test sets it to play a TLS connection with a verified client certificate.
        self.peer_cert_cn: str | None = None

    def write(self, data: bytes) -> None:
        assert not self.closed, "write after close"
        self.out += data

    def close(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        timer = Timer(delay, callback)
        self.timers.append(timer)
        return timer

    def run_timers(self) -> None:
        timers, self.timers = self.timers, []
        for timer in timers:
            if not timer.cancelled:
                timer.callback()


class Client:
    """One client connection to a broker, spoken to in frames."""

    def __init__(
        self,
        broker: Broker | None = None,
        settings: BrokerSettings | None = None,
        peer: tuple[str, int] = ("127.0.0.1", 40000),
    ) -> None:
        self.broker = broker if broker is not None else Broker(settings)
        self.transport = CollectingTransport()
        self.conn: Connection = self.broker.new_connection(self.transport, peer)
        self.reader = FrameReader(expect_protocol_header=False)
        self.frame_max = 131072
        self.pending: list[Any] = []

    # -- sending --------------------------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        self.conn.data_received(data)

    def method(self, channel: int, method: Method) -> None:
        self.send(encode_method_frame(channel, method))

    def content(
        self, channel: int, body: bytes, properties: bytes | None = None, body_size: int | None = None
    ) -> bytes:
        props = properties if properties is not None else encode_properties(BasicProperties())
        data = encode_content(channel, 60, props, body, self.frame_max)
        if body_size is not None:  # forge the declared size
            head = bytearray(data[:19])
            head[11:19] = body_size.to_bytes(8, "big")
            data = bytes(head) + data[19:]
        return data

    def publish(
        self,
        channel: int,
        exchange: str,
        routing_key: str,
        body: bytes,
        *,
        mandatory: bool = False,
        properties: BasicProperties | None = None,
    ) -> None:
        from ottermq.amqp.methods import BasicPublish

        props = encode_properties(properties or BasicProperties())
        self.send(
            encode_method_frame(channel, BasicPublish(0, exchange, routing_key, mandatory, False))
            + self.content(channel, body, props)
        )

    # -- receiving ------------------------------------------------------------------------------------

    def frames(self) -> list[Any]:
        """Every frame the broker wrote since the last call (plus any not yet consumed by `expect`)."""
        out = self.transport.out
        if out:
            self.reader.feed(bytes(out))
            out.clear()
        frames = self.pending
        self.pending = []
        while (frame := self.reader.next_frame()) is not None:
            frames.append(frame)
        return frames

    def next_frame(self) -> Any:
        frames = self.frames()
        assert frames, "the broker wrote nothing"
        self.pending = frames[1:]
        return frames[0]

    def expect(self, cls: type[M], channel: int | None = None) -> M:
        frame = self.next_frame()
        while isinstance(frame, HeartbeatFrame):
            frame = self.next_frame()
        assert isinstance(frame, MethodFrame), f"expected {cls.__name__}, got {frame!r}"
        assert isinstance(frame.method, cls), f"expected {cls.__name__}, got {frame.method!r}"
        if channel is not None:
            assert frame.channel == channel
        return frame.method

    def expect_content(self) -> tuple[bytes, bytes]:
        """The header properties and the whole body of the content that follows."""
        header = self.next_frame()
        assert isinstance(header, HeaderFrame), header
        body = b""
        while len(body) < header.body_size:
            frame = self.next_frame()
            assert isinstance(frame, BodyFrame), frame
            body += frame.payload
        return header.properties, body

    def silent(self) -> bool:
        return not self.frames()

    # -- handshake ------------------------------------------------------------------------------------

    def start(self) -> ConnectionStart:
        self.send(PROTOCOL_HEADER)
        return self.expect(ConnectionStart, 0)

    def login(self, response: bytes = b"\x00guest\x00guest", mechanism: str = "PLAIN") -> None:
        self.method(0, ConnectionStartOk({"capabilities": CLIENT_CAPABILITIES}, mechanism, response, "en_US"))

    def handshake(self, heartbeat: int = 0, vhost: str = "/") -> None:
        self.start()
        self.login()
        tune = self.expect(ConnectionTune, 0)
        self.method(0, ConnectionTuneOk(tune.channel_max, tune.frame_max, heartbeat))
        self.frame_max = tune.frame_max
        self.method(0, ConnectionOpen(vhost))
        self.expect(ConnectionOpenOk, 0)

    def open_channel(self, number: int = 1) -> None:
        self.method(number, ChannelOpen())
        self.expect(ChannelOpenOk, number)


def connected(broker: Broker | None = None, channel: int | None = 1, **kwargs: Any) -> Client:
    """A client past the handshake, with `channel` open."""
    client = Client(broker, **kwargs)
    client.handshake()
    if channel is not None:
        client.open_channel(channel)
    return client


def test_harness_reaches_an_open_channel() -> None:
    client = connected()
    assert client.conn.state == "running"
    assert 1 in client.conn.channels
    assert client.silent()
