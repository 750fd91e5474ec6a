"""Hostile peers against a live broker: each ends with a clean close, and a healthy client never notices.

Strategy: one broker per module (1 s handshake timeout so the slow cases stay fast). A well-behaved pika
client publishes and gets in a background thread for the whole module; at the end it must have made
progress without a single error. Every hostile case checks the reply code (RabbitMQ's, where RabbitMQ
answers) and that the server closes the socket; the module ends by checking that the broker process holds
no more file descriptors than it did before the first attack.
"""

from __future__ import annotations

import os
import socket
import struct
import threading
import time
from collections.abc import Iterator
from typing import Any

import pika
import pytest
from pika import frame, spec

from tests.integration.test_raw import PROTOCOL_HEADER, RawClient, ServerProcess, ottermq_server, raw_frame

HANDSHAKE_TIMEOUT = 1.0


def open_fds(pid: int) -> int:
    """How many file descriptors process `pid` holds."""
    return len(os.listdir(f"/proc/{pid}/fd"))


class Healthy:
    """A pika client doing publish/get round trips until told to stop; counts them and keeps any error."""

    def __init__(self, port: int) -> None:
        self.url = pika.URLParameters(f"amqp://guest:guest@127.0.0.1:{port}/%2F")
        self.round_trips = 0
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            connection = pika.BlockingConnection(self.url)
            channel = connection.channel()
            queue = channel.queue_declare("", exclusive=True).method.queue
            while not self._stop.is_set():
                channel.basic_publish("", queue, b"still here")
                method, _, body = channel.basic_get(queue, auto_ack=True)
                while method is None:
                    connection.process_data_events(time_limit=0.01)
                    method, _, body = channel.basic_get(queue, auto_ack=True)
                assert body == b"still here"
                self.round_trips += 1
                connection.process_data_events(time_limit=0.02)
            connection.close()
        except BaseException as exc:
            self.error = exc

    def stop(self) -> None:
        """Stop and fail if anything went wrong."""
        self._stop.set()
        self._thread.join(10)
        assert self.error is None, f"the healthy client failed: {self.error!r}"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A broker with a 1 s handshake timeout; no fd may leak across the module's tests."""
    env = {"OTTERMQ_HANDSHAKE_TIMEOUT": str(HANDSHAKE_TIMEOUT)}
    with ottermq_server(tmp_path_factory.mktemp("hostile"), env=env) as proc:
        time.sleep(0.2)
        before = open_fds(proc.proc.pid)
        healthy = Healthy(proc.port)
        yield proc
        healthy.stop()
        assert healthy.round_trips > 0
        deadline = time.monotonic() + 5
        while open_fds(proc.proc.pid) > before:
            assert time.monotonic() < deadline, (
                f"the broker holds {open_fds(proc.proc.pid)} fds, {before} before the attacks"
            )
            time.sleep(0.05)
        assert proc.proc.poll() is None
        assert "internal error" not in proc.log().lower()


def closed_with(client: RawClient, timeout: float = 5.0) -> int:
    """Read until connection.close (answered with close-ok) and the socket's end; the reply code."""
    while True:
        got = client.read_frame(timeout)
        assert got is not None, "socket closed without connection.close"
        if isinstance(got, frame.Method) and isinstance(got.method, spec.Connection.Close):
            break
    code: int = got.method.reply_code
    try:
        client.send_method(0, spec.Connection.CloseOk())
    except (BrokenPipeError, ConnectionResetError):
        return code  # after a frame error the server does not wait for close-ok
    client.read_until_closed(timeout)
    return code


def opened(port: int, **handshake: Any) -> RawClient:
    client = RawClient(port)
    client.handshake(**handshake)
    client.send_method(1, spec.Channel.Open())
    client.expect(spec.Channel.OpenOk)
    return client


def method_payload(class_id: int, method_id: int, body: bytes) -> bytes:
    return struct.pack(">HH", class_id, method_id) + body


def test_slowloris_during_the_protocol_header_is_dropped(server: ServerProcess) -> None:
    client = RawClient(server.port)
    started = time.monotonic()
    try:
        with pytest.raises((BrokenPipeError, ConnectionResetError)):
            for byte in PROTOCOL_HEADER * 10:
                client.send(bytes([byte]))
                time.sleep(0.25)
                client.sock.setblocking(False)
                try:
                    if client.sock.recv(1) == b"":
                        raise ConnectionResetError("closed by the server")
                except BlockingIOError:
                    pass
                finally:
                    client.sock.setblocking(True)
        assert time.monotonic() - started < HANDSHAKE_TIMEOUT + 2.5
    finally:
        client.close()


def test_slowloris_during_start_ok_is_dropped(server: ServerProcess) -> None:
    client = RawClient(server.port)
    try:
        started = time.monotonic()
        client.send(PROTOCOL_HEADER)
        client.expect(spec.Connection.Start)
        start_ok = frame.Method(
            0,
            spec.Connection.StartOk(
                client_properties={},
                mechanism="PLAIN",
                response=b"\x00guest\x00guest",
            ),
        ).marshal()
        closed = False
        for byte in start_ok:
            try:
                client.send(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            time.sleep(0.2)
            if time.monotonic() - started > HANDSHAKE_TIMEOUT + 0.5:
                closed = client.read_until_closed(timeout=3) is not None
                break
        assert closed
        assert time.monotonic() - started < HANDSHAKE_TIMEOUT + 3
    finally:
        client.close()


def test_half_open_handshakes_are_all_dropped(server: ServerProcess) -> None:
    clients = [RawClient(server.port) for _ in range(40)]
    try:
        for i, client in enumerate(clients):
            if i % 2:
                client.send(PROTOCOL_HEADER)  # and then nothing: stuck after connection.start
        for client in clients:
            client.read_until_closed(timeout=HANDSHAKE_TIMEOUT + 3)
    finally:
        for client in clients:
            client.close()


def test_a_flood_of_channel_open_stops_at_channel_max(server: ServerProcess) -> None:
    client = RawClient(server.port, timeout=10)
    try:
        tune = client.handshake()
        limit = tune.channel_max
        client.send(b"".join(frame.Method(n, spec.Channel.Open()).marshal() for n in range(1, limit + 2)))
        opened_ok = 0
        while True:
            got = client.read_frame(10)
            assert got is not None
            if isinstance(got.method, spec.Channel.OpenOk):
                opened_ok += 1
                continue
            assert isinstance(got.method, spec.Connection.Close)
            # RabbitMQ's answer to one channel more than channel_max.
            assert got.method.reply_code == 530
            break
        assert opened_ok == limit
        client.send_method(0, spec.Connection.CloseOk())
        client.read_until_closed()
    finally:
        client.close()


def test_reopening_an_open_channel_is_a_channel_error(server: ServerProcess) -> None:
    client = opened(server.port)
    try:
        client.send_method(1, spec.Channel.Open())
        assert closed_with(client) == 504
    finally:
        client.close()


def test_huge_client_properties_before_tune_are_a_frame_error(server: ServerProcess) -> None:
    client = RawClient(server.port)
    try:
        client.send(PROTOCOL_HEADER)
        client.expect(spec.Connection.Start)
        # Before tune-ok, frames are bounded by the protocol minimum (4096 octets). The frame's header is
        # enough for the server to refuse it; sending all of it would race the server's close (a reset).
        start_ok = frame.Method(
            0,
            spec.Connection.StartOk(
                client_properties={"junk": "x" * 100_000},
                mechanism="PLAIN",
                response=b"\x00guest\x00guest",
            ),
        ).marshal()
        client.send(start_ok[:1024])
        assert closed_with(client) == 501
    finally:
        client.close()


def test_deeply_nested_tables_are_a_clean_close(server: ServerProcess) -> None:
    client = opened(server.port)
    try:
        nested = b""
        for _ in range(2000):
            nested = b"\x01aF" + struct.pack(">I", len(nested)) + nested
        table = struct.pack(">I", len(nested)) + nested
        body = b"\x00\x00" + b"\x01q" + b"\x00" + table
        client.send(raw_frame(1, 1, method_payload(50, 10, body)))
        assert closed_with(client) in (501, 502)
    finally:
        client.close()


@pytest.mark.parametrize(
    ("label", "payload"),
    [
        # queue.declare with a field table claiming ~4 GB.
        ("table length", method_payload(50, 10, b"\x00\x00\x01q\x00" + struct.pack(">I", 0xFFFFFFF0))),
        # a long string (x) inside a table whose length is "negative" (0x80000000 and up as signed).
        (
            "long string",
            method_payload(
                50,
                10,
                b"\x00\x00\x01q\x00" + struct.pack(">I", 8) + b"\x01kS" + struct.pack(">I", 0x80000001),
            ),
        ),
        # an array whose length runs past its table.
        (
            "array length",
            method_payload(
                50,
                10,
                b"\x00\x00\x01q\x00" + struct.pack(">I", 8) + b"\x01kA" + struct.pack(">I", 0x7FFFFFFF),
            ),
        ),
        # a short string longer than the frame.
        ("short string", method_payload(50, 10, b"\x00\x00\xffabc")),
        # invalid UTF-8 in a short string (the queue name).
        ("invalid utf-8", method_payload(50, 10, b"\x00\x00\x02\xff\xfe\x00" + struct.pack(">I", 0))),
        # invalid UTF-8 in a table key.
        (
            "utf-8 key",
            method_payload(
                50,
                10,
                b"\x00\x00\x01q\x00" + struct.pack(">I", 4) + b"\x02\xc3\x28t",
            ),
        ),
        # an unknown field type.
        ("field type", method_payload(50, 10, b"\x00\x00\x01q\x00" + struct.pack(">I", 3) + b"\x01kZ")),
        # an unknown method.
        ("unknown method", method_payload(50, 99, b"")),
    ],
)
def test_bad_lengths_and_strings_end_in_a_clean_close(
    server: ServerProcess, label: str, payload: bytes
) -> None:
    client = opened(server.port)
    try:
        client.send(raw_frame(1, 1, payload))
        code = closed_with(client)
        assert code in (501, 502, 540), f"{label}: {code}"
    finally:
        client.close()


def test_a_frame_size_of_four_gigabytes_is_a_frame_error(server: ServerProcess) -> None:
    client = opened(server.port)
    try:
        client.send(struct.pack(">BHI", 1, 1, 0xFFFFFFFF) + b"\x00" * 16)
        assert closed_with(client) == 501
    finally:
        client.close()


def test_a_content_header_with_a_huge_body_size_is_refused(server: ServerProcess) -> None:
    client = opened(server.port)
    try:
        client.send_method(1, spec.Basic.Publish(exchange="", routing_key="q"))
        client.send(frame.Header(1, 2**63, spec.BasicProperties()).marshal())
        got = client.read_frame()
        assert isinstance(got.method, spec.Channel.Close) and got.method.reply_code == 406
    finally:
        client.close()


def test_a_peer_that_vanishes_mid_frame_is_forgotten(server: ServerProcess) -> None:
    for _ in range(20):
        client = opened(server.port)
        client.send(struct.pack(">BHI", 1, 1, 1000) + b"\x00" * 10)  # a frame that never completes
        client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.close()  # reset
