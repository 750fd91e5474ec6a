"""Hypothesis fuzzing a live broker: random and mutated frames after a valid handshake, over real sockets.

Strategy: one broker process for the module, one fresh connection per example. After the handshake and
channel.open, the example's bytes are sent (valid frames, mutated frames, random bytes, frame headers with
any size), then a connection.close of our own. The server must answer with a close code from the protocol's
set (541 INTERNAL_ERROR means it hit a bug) or accept our close; either way it must end the socket or keep
serving it. Meanwhile a healthy client keeps doing round trips, and at the end the broker process holds no
more file descriptors than before and is still running.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from pika import frame, spec

from tests.integration.test_hostile import Healthy, open_fds
from tests.integration.test_raw import RawClient, ServerProcess, ottermq_server
from tests.unit.amqp.test_fuzz_live import streams

# Codes a broker may close with for bad input; 541 (INTERNAL_ERROR) is deliberately absent.
CONNECTION_CODES = {501, 502, 503, 504, 505, 506, 530, 540}
CHANNEL_CODES = {403, 404, 405, 406}
CLOSE = frame.Method(0, spec.Connection.Close(200, "bye", 0, 0)).marshal()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A broker that must survive the module's fuzzing without leaking a descriptor."""
    env = {"OTTERMQ_HANDSHAKE_TIMEOUT": "2"}
    with ottermq_server(tmp_path_factory.mktemp("fuzz"), env=env) as proc:
        time.sleep(0.2)
        before = open_fds(proc.proc.pid)
        healthy = Healthy(proc.port)
        yield proc
        healthy.stop()
        assert healthy.round_trips > 0
        deadline = time.monotonic() + 5
        while open_fds(proc.proc.pid) > before:
            assert time.monotonic() < deadline, f"{open_fds(proc.proc.pid)} fds open, {before} before"
            time.sleep(0.05)
        assert proc.proc.poll() is None
        assert "internal error" not in proc.log().lower()


def _codes(data: bytes) -> tuple[list[int], list[int]]:
    """Connection and channel close codes among the frames in `data` (a truncated tail is ignored);
    close-ok counts as code 200."""
    connection_codes: list[int] = []
    channel_codes: list[int] = []
    while data:
        try:
            used, decoded = frame.decode_frame(data)
        except Exception:
            break
        if decoded is None or used == 0:
            break
        data = data[used:]
        method = getattr(decoded, "method", None)
        if isinstance(method, spec.Connection.Close):
            connection_codes.append(method.reply_code)
        elif isinstance(method, spec.Connection.CloseOk):
            connection_codes.append(200)
        elif isinstance(method, spec.Channel.Close):
            channel_codes.append(method.reply_code)
    return connection_codes, channel_codes


def _read_for(client: RawClient, seconds: float) -> bytes:
    data = client.buffer
    deadline = time.monotonic() + seconds
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return data
        client.sock.settimeout(remaining)
        try:
            chunk = client.sock.recv(65536)
        except TimeoutError:
            return data
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk
        if _codes(data)[0]:
            return data  # the connection is ending: close-ok to ours, or the server's own close


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=streams)
def test_fuzzed_frames_get_protocol_answers_and_the_broker_survives(
    server: ServerProcess, data: bytes
) -> None:
    client = RawClient(server.port)
    try:
        client.handshake()
        client.send_method(1, spec.Channel.Open())
        client.expect(spec.Channel.OpenOk)
        try:
            client.send(data + CLOSE)
        except (BrokenPipeError, ConnectionResetError):
            return  # the server already dropped us: a clean end
        received = _read_for(client, 1.0)
        connection_codes, channel_codes = _codes(received)
        assert set(connection_codes) <= CONNECTION_CODES | {200}, connection_codes
        assert set(channel_codes) <= CHANNEL_CODES | CONNECTION_CODES, channel_codes
    finally:
        client.close()
