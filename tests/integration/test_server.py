"""The server process: where it listens, what it logs, and how it stops on SIGTERM and SIGINT."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pika import spec

from tests.integration.test_raw import RawClient, ottermq_server


def wait_for_log(server_log: Path, text: str, timeout: float = 5.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        content = server_log.read_text(errors="replace")
        if text in content:
            return content
        if time.monotonic() > deadline:
            raise AssertionError(f"{text!r} not logged within {timeout} s:\n{content}")
        time.sleep(0.05)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_closes_clients_with_320_and_exits_0(tmp_path: Path, sig: signal.Signals) -> None:
    with ottermq_server(tmp_path) as server:
        client = RawClient(server.port)
        try:
            client.handshake()
            server.proc.send_signal(sig)
            close = client.expect(spec.Connection.Close)
            assert close.reply_code == 320
            assert close.reply_text.startswith("CONNECTION_FORCED")
            client.send_method(0, spec.Connection.CloseOk())
            assert server.proc.wait(5) == 0
        finally:
            client.close()
    log = server.log()
    assert "shutting down" in log and "stopped" in log


def test_shutdown_does_not_wait_forever_for_a_silent_client(tmp_path: Path) -> None:
    with ottermq_server(tmp_path, env={"OTTERMQ_SHUTDOWN_TIMEOUT": "0.5"}) as server:
        client = RawClient(server.port)
        try:
            client.handshake()
            started = time.monotonic()
            server.proc.send_signal(signal.SIGTERM)
            client.expect(spec.Connection.Close)  # ...and never answer it
            assert server.proc.wait(5) == 0
            assert time.monotonic() - started < 3
            assert client.read_until_closed() == b""
        finally:
            client.close()


def test_second_signal_cuts_the_wait_short(tmp_path: Path) -> None:
    with ottermq_server(tmp_path, env={"OTTERMQ_SHUTDOWN_TIMEOUT": "30"}) as server:
        client = RawClient(server.port)
        try:
            client.handshake()
            server.proc.send_signal(signal.SIGTERM)
            client.expect(spec.Connection.Close)  # ...and never answer it
            started = time.monotonic()
            server.proc.send_signal(signal.SIGINT)
            assert server.proc.wait(5) == 0
            assert time.monotonic() - started < 2
        finally:
            client.close()
    assert "second signal" in server.log()


def test_listening_line_data_dir_and_port_zero(tmp_path: Path) -> None:
    with ottermq_server(tmp_path, "--data-dir", str(tmp_path / "nested" / "data")) as server:
        assert server.port != 0
        assert (tmp_path / "nested" / "data").is_dir()
        assert f"listening on amqp://127.0.0.1:{server.port}" in server.log()
        assert "management API disabled" in server.log()  # ottermq_server passes --http-port 0


def test_json_logs_carry_connection_ids_and_close_reasons(tmp_path: Path) -> None:
    with ottermq_server(tmp_path, "--log-format", "json") as server:
        client = RawClient(server.port)
        client.send(b"HELLO!!!")
        client.read_until_closed()
        client.close()
        wait_for_log(server.log_path, "connection closed")
        records = [json.loads(line) for line in server.log().splitlines() if line.strip()]
    assert all({"ts", "level", "msg"} <= set(r) for r in records)
    listening = next(r for r in records if r["msg"].startswith("listening on"))
    assert listening["port"] == server.port
    opened = next(r for r in records if r["msg"] == "connection opened")
    closed = next(r for r in records if r["msg"] == "connection closed")
    assert opened["conn"] == closed["conn"]
    assert opened["conn"].startswith("127.0.0.1:")
    assert closed["reason"]


def test_key_value_logs(tmp_path: Path) -> None:
    with ottermq_server(tmp_path) as server:
        client = RawClient(server.port)
        client.handshake()
        client.close()
        log = wait_for_log(server.log_path, "connection closed")
    line = next(line for line in log.splitlines() if "connection closed" in line)
    assert 'msg="connection closed"' in line and " conn=" in line and " reason=" in line
    assert line.startswith("ts=") and " level=info " in line


def test_port_in_use_is_a_clean_error(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "ottermq",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--data-dir",
                str(tmp_path / "data"),
            ],
            capture_output=True,
            text=True,
            timeout=20,
        )
    assert result.returncode == 1
    assert f"cannot listen on amqp://127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr
