"""Raw-socket tests: what client libraries hide (bad headers, oversized frames, silence), byte by byte.

Strategy: a real `ottermq serve` process per module (handshake timeout 1 s so the slow cases stay fast) and a
tiny blocking client that encodes and decodes frames with pika's spec module, which is independent of our
codec, so each test states on the wire what RabbitMQ would do.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pika
import pytest
from pika import frame, spec

from tests.integration.conftest import serve_cmd

ROOT = Path(__file__).resolve().parents[2]
PROTOCOL_HEADER = b"AMQP\x00\x00\x09\x01"
_LISTENING = re.compile(r"listening on amqp://[^\s:/]+:(\d+)")


class ServerProcess:
    """A running `ottermq serve` subprocess: its port, its log, and how to signal it."""

    def __init__(self, proc: subprocess.Popen[bytes], port: int, log_path: Path) -> None:
        self.proc = proc
        self.port = port
        self.log_path = log_path

    def log(self) -> str:
        """Everything the server has printed so far."""
        return self.log_path.read_text(errors="replace")


@contextmanager
def ottermq_server(tmp: Path, *args: str, env: dict[str, str] | None = None) -> Iterator[ServerProcess]:
    """Start `ottermq serve` on a free loopback port and stop it (SIGTERM, then SIGKILL) afterwards."""
    tmp.mkdir(parents=True, exist_ok=True)
    log_path = tmp / "ottermq.log"
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("OTTERMQ_")}
    full_env.update(env or {})
    cmd = serve_cmd(tmp / "data", *args)
    with log_path.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env=full_env)
    try:
        deadline = time.monotonic() + 20
        while True:
            match = _LISTENING.search(log_path.read_text(errors="replace"))
            if match:
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"ottermq did not start:\n{log_path.read_text(errors='replace')}")
            time.sleep(0.05)
        yield ServerProcess(proc, int(match.group(1)), log_path)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


class RawClient:
    """A blocking AMQP peer that sends exactly the bytes a test asks for."""

    def __init__(self, port: int, timeout: float = 5.0, rcvbuf: int = 0) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            # Set before connect, so the window stays small and the server feels backpressure early.
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect(("127.0.0.1", port))
        self.buffer = b""

    def close(self) -> None:
        """Close the socket."""
        self.sock.close()

    def send(self, data: bytes) -> None:
        """Send raw bytes."""
        self.sock.sendall(data)

    def send_method(self, channel: int, method: Any) -> None:
        """Send one method frame encoded by pika."""
        self.send(frame.Method(channel, method).marshal())

    def read_frame(self, timeout: float = 5.0, skip_heartbeats: bool = True) -> Any:
        """The next frame from the server; None when it closed the socket."""
        deadline = time.monotonic() + timeout
        while True:
            if self.buffer:
                used, decoded = frame.decode_frame(self.buffer)
                if decoded is not None:
                    self.buffer = self.buffer[used:]
                    if skip_heartbeats and isinstance(decoded, frame.Heartbeat):
                        continue
                    return decoded
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no frame from the server in time")
            self.sock.settimeout(remaining)
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            self.buffer += chunk

    def expect(self, method_type: Any, timeout: float = 5.0) -> Any:
        """Read frames until a method arrives; fail unless it is of `method_type`."""
        got = self.read_frame(timeout)
        assert isinstance(got, frame.Method), f"expected {method_type.NAME}, got {got!r}"
        assert isinstance(got.method, method_type), f"expected {method_type.NAME}, got {got.method!r}"
        return got.method

    def read_until_closed(self, timeout: float = 5.0) -> bytes:
        """Every byte until the server closes the socket (raises TimeoutError if it does not)."""
        data, self.buffer = self.buffer, b""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("the server did not close the socket")
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                return data
            if not chunk:
                return data
            data += chunk

    def handshake(self, heartbeat: int = 0, frame_max: int = 131072, channel_max: int = 0) -> Any:
        """Header, start-ok (PLAIN guest), tune-ok with these values, open '/'; returns the server's Tune."""
        self.send(PROTOCOL_HEADER)
        self.expect(spec.Connection.Start)
        self.send_method(
            0,
            spec.Connection.StartOk(
                client_properties={"product": "raw-test"},
                mechanism="PLAIN",
                response=b"\x00guest\x00guest",
            ),
        )
        tune = self.expect(spec.Connection.Tune)
        self.send_method(
            0,
            spec.Connection.TuneOk(
                channel_max=channel_max or tune.channel_max,
                frame_max=frame_max,
                heartbeat=heartbeat,
            ),
        )
        self.send_method(0, spec.Connection.Open(virtual_host="/"))
        self.expect(spec.Connection.OpenOk)
        return tune


def opened(port: int, *channels: int) -> RawClient:
    """A RawClient past the handshake with `channels` open."""
    client = RawClient(port)
    client.handshake()
    for number in channels:
        client.send_method(number, spec.Channel.Open())
        client.expect(spec.Channel.OpenOk)
    return client


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One broker for this module, with a 1 s handshake timeout."""
    with ottermq_server(tmp_path_factory.mktemp("raw"), env={"OTTERMQ_HANDSHAKE_TIMEOUT": "1"}) as proc:
        yield proc


@pytest.fixture
def client(server: ServerProcess) -> Iterator[RawClient]:
    """A fresh raw socket to the module's broker."""
    c = RawClient(server.port)
    try:
        yield c
    finally:
        c.close()


def raw_frame(frame_type: int, channel: int, payload: bytes, end: int = 0xCE) -> bytes:
    """A frame with any payload and any end byte, valid or not."""
    return struct.pack(">BHI", frame_type, channel, len(payload)) + payload + bytes([end])


def expect_connection_close(client: RawClient, reply_code: int) -> Any:
    """The server closes the connection with `reply_code`, answers our close-ok by closing the socket."""
    close = client.expect(spec.Connection.Close)
    assert close.reply_code == reply_code, close
    client.send_method(0, spec.Connection.CloseOk())
    client.read_until_closed()
    return close


@pytest.mark.parametrize(
    "header",
    [b"HTTP/1.1", b"AMQP\x01\x01\x08\x00", b"AMQP\x00\x00\x09\x00", b"AMQP\x00\x01\x00\x00"],
    ids=["http", "amqp-0-8", "amqp-0-9", "amqp-1-0"],
)
def test_wrong_protocol_header_gets_ours_and_a_close(client: RawClient, header: bytes) -> None:
    # Exactly 8 bytes: anything unread when the server closes would turn its FIN into a reset.
    client.send(header)
    assert client.read_until_closed() == PROTOCOL_HEADER


def test_server_starts_with_connection_start(client: RawClient) -> None:
    client.send(PROTOCOL_HEADER)
    start = client.expect(spec.Connection.Start)
    assert (start.version_major, start.version_minor) == (0, 9)
    assert b"PLAIN" in start.mechanisms
    capabilities = start.server_properties["capabilities"]
    assert capabilities["publisher_confirms"] is True


def test_handshake_and_clean_close(client: RawClient) -> None:
    tune = client.handshake()
    assert (tune.frame_max, tune.channel_max, tune.heartbeat) == (131072, 2047, 60)
    client.send_method(0, spec.Connection.Close(reply_code=200, reply_text="bye", class_id=0, method_id=0))
    client.expect(spec.Connection.CloseOk)
    # Closing the socket is now ours to do (RabbitMQ waits for it); nothing else may arrive.
    client.sock.settimeout(0.2)
    try:
        assert client.sock.recv(100) == b""
    except TimeoutError:
        pass


def test_oversized_frame_after_tune_is_a_frame_error(client: RawClient) -> None:
    client.handshake(frame_max=4096)
    client.send_method(1, spec.Channel.Open())
    client.expect(spec.Channel.OpenOk)
    client.send(raw_frame(3, 1, b"x" * 5000))
    close = expect_connection_close(client, 501)
    assert close.reply_text.startswith("FRAME_ERROR")


def test_frame_on_an_unopened_channel_is_a_channel_error(client: RawClient) -> None:
    client.handshake()
    client.send_method(5, spec.Queue.Declare(queue="raw-unopened"))
    close = expect_connection_close(client, 504)
    assert close.reply_text.startswith("CHANNEL_ERROR")


def test_bad_frame_end_is_a_frame_error(client: RawClient) -> None:
    client.handshake()
    client.send(raw_frame(8, 0, b"", end=0x00))
    close = expect_connection_close(client, 501)
    assert close.reply_text.startswith("FRAME_ERROR")


def test_unknown_frame_type_is_a_frame_error(client: RawClient) -> None:
    client.handshake()
    client.send(raw_frame(9, 0, b"abc"))
    expect_connection_close(client, 501)


def test_silent_peer_is_dropped_after_two_heartbeat_intervals(client: RawClient) -> None:
    client.handshake(heartbeat=1)
    opened = time.monotonic()
    heartbeats = 0
    while True:
        got = client.read_frame(timeout=6.0, skip_heartbeats=False)
        if got is None:
            break
        assert isinstance(got, frame.Heartbeat), got
        heartbeats += 1
    elapsed = time.monotonic() - opened
    assert 1.5 <= elapsed <= 4.5, elapsed
    assert heartbeats >= 1  # the server kept its side of the heartbeat while waiting for ours


def test_heartbeats_from_the_client_keep_the_connection(client: RawClient) -> None:
    client.handshake(heartbeat=1)
    deadline = time.monotonic() + 3.5
    while time.monotonic() < deadline:
        client.send(frame.Heartbeat().marshal())
        time.sleep(0.4)
    client.send_method(1, spec.Channel.Open())
    client.expect(spec.Channel.OpenOk)


def test_client_that_never_finishes_the_handshake_is_dropped(client: RawClient) -> None:
    started = time.monotonic()
    client.send(PROTOCOL_HEADER)
    client.expect(spec.Connection.Start)
    client.read_until_closed(timeout=5.0)
    assert 0.8 <= time.monotonic() - started <= 3.5


def test_client_that_sends_nothing_is_dropped(client: RawClient) -> None:
    started = time.monotonic()
    assert client.read_until_closed(timeout=5.0) == b""
    assert 0.8 <= time.monotonic() - started <= 3.5


def test_bytes_split_into_single_byte_writes_still_parse(client: RawClient) -> None:
    client.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for byte in PROTOCOL_HEADER:
        client.send(bytes([byte]))
        time.sleep(0.001)
    client.expect(spec.Connection.Start)


def test_other_clients_survive_a_bad_one(server: ServerProcess) -> None:
    good = RawClient(server.port)
    bad = RawClient(server.port)
    try:
        good.handshake()
        bad.handshake()
        bad.send(raw_frame(1, 0, b"\xff\xff"))  # a method frame too short to hold its ids
        bad.expect(spec.Connection.Close)
        good.send_method(1, spec.Channel.Open())
        good.expect(spec.Channel.OpenOk)
    finally:
        good.close()
        bad.close()


def test_slow_consumer_backpressure_keeps_messages_in_the_queue(server: ServerProcess) -> None:
    queue, count, size = f"raw-backpressure-{os.getpid()}", 400, 64 * 1024
    consumer = RawClient(server.port, rcvbuf=64 * 1024)
    publisher = pika.BlockingConnection(pika.URLParameters(f"amqp://guest:guest@127.0.0.1:{server.port}/%2F"))
    try:
        consumer.handshake()
        consumer.send_method(1, spec.Channel.Open())
        consumer.expect(spec.Channel.OpenOk)
        consumer.send_method(1, spec.Queue.Declare(queue=queue, auto_delete=True))
        consumer.expect(spec.Queue.DeclareOk)
        consumer.send_method(1, spec.Basic.Consume(queue=queue, consumer_tag="slow", no_ack=True))
        consumer.expect(spec.Basic.ConsumeOk)
        channel = publisher.channel()
        body = b"x" * size
        for _ in range(count):
            channel.basic_publish("", queue, body)
        # The consumer reads nothing, so the server must stop delivering and keep the rest queued.
        deadline = time.monotonic() + 10
        while True:
            ready = channel.queue_declare(queue, passive=True).method.message_count
            if ready > 0 or time.monotonic() > deadline:
                break
            publisher.process_data_events(time_limit=0.05)
        assert ready > count // 4, f"only {ready} of {count} held back: deliveries ignored backpressure"
        delivered = 0
        while delivered < count:
            got = consumer.read_frame(timeout=10)
            assert got is not None, "server closed the slow consumer"
            if isinstance(got, frame.Method) and isinstance(got.method, spec.Basic.Deliver):
                delivered += 1
        assert channel.queue_declare(queue, passive=True).method.message_count == 0
    finally:
        publisher.close()
        consumer.close()


def test_a_flooding_publisher_does_not_starve_other_connections(server: ServerProcess) -> None:
    flood, probe = RawClient(server.port, timeout=30), RawClient(server.port)
    try:
        flood.handshake()
        probe.handshake()
        flood.send_method(1, spec.Channel.Open())
        flood.expect(spec.Channel.OpenOk)
        flood.send_method(1, spec.Queue.Declare(queue="", exclusive=True))
        queue = flood.expect(spec.Queue.DeclareOk).queue
        one = (
            frame.Method(1, spec.Basic.Publish(exchange="", routing_key=queue)).marshal()
            + frame.Header(1, 16, spec.BasicProperties()).marshal()
            + frame.Body(1, b"m" * 16).marshal()
        )
        blob = one * 100_000  # ~8 MB: far more than one wake-up's worth of reads

        def publish_all() -> None:
            flood.send(blob)
            # The reply comes once the server has read every publish before it.
            flood.send_method(1, spec.Basic.Qos(prefetch_count=1))
            flood.expect(spec.Basic.QosOk, timeout=30)

        sender = threading.Thread(target=publish_all)
        sender.start()
        time.sleep(0.05)
        worst, channel = 0.0, 1
        while sender.is_alive() and channel < 2000:
            channel += 1
            started = time.monotonic()
            probe.send_method(channel, spec.Channel.Open())
            probe.expect(spec.Channel.OpenOk, timeout=30)
            worst = max(worst, time.monotonic() - started)
        sender.join(30)
        assert worst < 0.5, f"a round trip took {worst:.2f} s while another connection published"
    finally:
        flood.close()
        probe.close()
