"""Fixtures for the integration suite: a real broker process and real clients.

Strategy: one broker per pytest process (per xdist worker), started as `python -m ottermq serve` on a port the
OS picks, so parallel workers never collide. Setting OTTERMQ_TEST_URL points the whole suite at an external
broker instead; that is how every test is first validated against RabbitMQ. Tests never share names: each one
asks `unique()` for fresh queue and exchange names and registers what it leaves behind with `resources`, so a
re-run on a long-lived RabbitMQ finds nothing in its way.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pika
import pytest

# Every integration test gets this bound unless it sets its own: a broker that never answers must fail the
# test fast, not hold the whole run for pytest-timeout's global 120 s. OTTERMQ_TEST_TIMEOUT overrides it.
DEFAULT_TEST_TIMEOUT = float(os.environ.get("OTTERMQ_TEST_TIMEOUT", "30"))
# How long a started broker may take to say where it listens.
STARTUP_TIMEOUT = 20.0
# SIGTERM, then this long for a graceful stop, then SIGKILL.
SHUTDOWN_GRACE = 10.0

_LISTENING = re.compile(r"listening on amqp://[^\s:/]+:(\d+)")
_HTTP_LISTENING = re.compile(r"management API listening on http://[^\s/]+:(\d+)")
_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class BrokerInfo:
    """Where the broker under test listens, and the process when this suite started it."""

    host: str
    port: int
    url: str
    data_dir: Path | None
    process: subprocess.Popen[bytes] | None
    log_path: Path | None = None
    # The management HTTP API's port (None when it is not served).
    http_port: int | None = None

    @property
    def external(self) -> bool:
        """True when the suite runs against a broker it did not start (e.g. RabbitMQ)."""
        return self.process is None

    def params(self, **overrides: Any) -> pika.URLParameters:
        """pika connection parameters for this broker; keyword arguments override single settings."""
        params = pika.URLParameters(self.url)
        params.socket_timeout = 5
        params.stack_timeout = 10
        params.blocked_connection_timeout = 10
        for name, value in overrides.items():
            setattr(params, name, value)
        return params

    def log_tail(self, lines: int = 40) -> str:
        """The last lines the broker wrote, for failure messages."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def unique(prefix: str = "t") -> str:
    """A fresh resource name, so tests never collide on a shared broker."""
    return f"test.{prefix}.{uuid.uuid4().hex[:12]}"


def serve_cmd(
    data_dir: Path, *extra: str, port: int = 0, http_port: int = 0, host: str = "127.0.0.1"
) -> list[str]:
    """The command line of `python -m ottermq serve` on `data_dir` (loopback, any free ports unless told)."""
    # The Prometheus port is off unless a test asks (`extra` may: the last flag wins): parallel brokers
    # would all want 15692.
    return [
        sys.executable, "-m", "ottermq", "serve", "--host", host, "--port", str(port),
        "--http-port", str(http_port), "--prometheus-port", "0", "--data-dir", str(data_dir), *extra,
    ]  # fmt: skip


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _port_accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=SHUTDOWN_GRACE)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


def _start(data_dir: Path, log_path: Path, port: int) -> tuple[subprocess.Popen[bytes], int | None]:
    """Start the CLI and return it with the port it reports (None when it exits or never says)."""
    cmd = serve_cmd(data_dir, port=port, http_port=_free_port())  # http port 0 would disable the API
    # Settings come from the flags and defaults only: a developer's OTTERMQ_* variables must not leak in.
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTTERMQ_")}
    with log_path.open("ab") as log:
        process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=_ROOT, env=env)
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        match = _LISTENING.search(log_path.read_text(errors="replace"))
        if match is not None:
            return process, int(match.group(1))
        if process.poll() is not None:
            return process, None
        # The log file is the only signal the child gives; polling it briefly is the cheapest wait.
        time.sleep(0.05)
    return process, None


def _launch(data_dir: Path, log_path: Path) -> tuple[subprocess.Popen[bytes], int]:
    process, port = _start(data_dir, log_path, 0)
    if port is None or port == 0:
        # The CLI may not support port 0 yet: choose a free port ourselves and try once more.
        _stop(process)
        chosen = _free_port()
        process, port = _start(data_dir, log_path, chosen)
        if port is None and process.poll() is None and _port_accepts("127.0.0.1", chosen):
            port = chosen
    if port is None or port == 0:
        _stop(process)
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-40:])
        code = process.poll()
        raise RuntimeError(f"ottermq did not report a listening port (exit code {code}); log:\n{tail}")
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while not _port_accepts("127.0.0.1", port):
        if process.poll() is not None or time.monotonic() > deadline:
            _stop(process)
            raise RuntimeError(f"ottermq announced port {port} but it does not accept connections")
    return process, port


def _http_port(log_path: Path) -> int | None:
    """The management API's port as the broker logged it (it starts right after the AMQP listener)."""
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        match = _HTTP_LISTENING.search(log_path.read_text(errors="replace"))
        if match is not None:
            return int(match.group(1))
        time.sleep(0.02)
    return None


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerInfo]:
    """The broker under test: OTTERMQ_TEST_URL if set, else an OtterMQ process started for this worker."""
    url = os.environ.get("OTTERMQ_TEST_URL")
    if url:
        parts = urlsplit(url)
        yield BrokerInfo(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or 5672,
            url=url,
            data_dir=None,
            process=None,
            http_port=int(os.environ.get("OTTERMQ_TEST_HTTP_PORT", "15672")),
        )
        return
    base = tmp_path_factory.mktemp("ottermq")
    data_dir = base / "data"
    data_dir.mkdir()
    log_path = base / "ottermq.log"
    process, port = _launch(data_dir, log_path)
    info = BrokerInfo(
        host="127.0.0.1",
        port=port,
        url=f"amqp://guest:guest@127.0.0.1:{port}/%2F",
        data_dir=data_dir,
        process=process,
        log_path=log_path,
        http_port=_http_port(log_path),
    )
    try:
        yield info
    finally:
        _stop(process)


@pytest.fixture
def connection(broker: BrokerInfo) -> Iterator[pika.BlockingConnection]:
    """A pika BlockingConnection to the broker, closed after the test."""
    conn = pika.BlockingConnection(broker.params())
    try:
        yield conn
    finally:
        if conn.is_open:
            try:
                conn.close()
            except Exception:
                pass  # the test may have broken the connection on purpose


@pytest.fixture
def channel(connection: pika.BlockingConnection) -> Any:
    """A channel on `connection`."""
    return connection.channel()


@dataclass
class Resources:
    """Queues and exchanges a test created that nothing else removes; deleted at teardown."""

    broker: BrokerInfo
    queues: list[str] = field(default_factory=list)
    exchanges: list[str] = field(default_factory=list)

    def queue(self, name: str | None = None) -> str:
        """Register (and return) a queue name to delete at teardown; a fresh one when none is given."""
        name = name or unique("q")
        self.queues.append(name)
        return name

    def exchange(self, name: str | None = None) -> str:
        """Register (and return) an exchange name to delete at teardown; a fresh one when none is given."""
        name = name or unique("x")
        self.exchanges.append(name)
        return name

    def cleanup(self) -> None:
        """Delete everything registered, on a connection of its own (the test's may be closed)."""
        if not self.queues and not self.exchanges:
            return
        conn = pika.BlockingConnection(self.broker.params())
        try:
            for kind, names in (("queue", self.queues), ("exchange", self.exchanges)):
                for name in names:
                    ch = conn.channel()
                    try:
                        if kind == "queue":
                            ch.queue_delete(name)
                        else:
                            ch.exchange_delete(name)
                        ch.close()
                    except pika.exceptions.ChannelClosedByBroker:
                        pass  # already gone (or exclusive to a closed connection)
        finally:
            if conn.is_open:
                conn.close()


@pytest.fixture
def resources(broker: BrokerInfo) -> Iterator[Resources]:
    """Names registered here are deleted after the test, even when it fails."""
    res = Resources(broker)
    try:
        yield res
    finally:
        res.cleanup()


def wait_for(
    connection: pika.BlockingConnection,
    predicate: Callable[[], bool],
    timeout: float = 5.0,
    what: str = "",
) -> None:
    """Pump the blocking connection's I/O until `predicate()` holds; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")
        connection.process_data_events(time_limit=min(0.05, remaining))


def get_message(
    channel: Any,
    queue: str,
    timeout: float = 5.0,
    auto_ack: bool = False,
) -> tuple[Any, Any, bytes]:
    """basic.get until a message arrives (publishes are asynchronous); fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        method, props, body = channel.basic_get(queue, auto_ack=auto_ack)
        if method is not None:
            return method, props, body
        if time.monotonic() > deadline:
            raise AssertionError(f"no message on {queue} within {timeout} s")
        channel.connection.process_data_events(time_limit=0.02)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Bound every integration test tighter than the global timeout (a hung pika wait fails in seconds)."""
    here = Path(__file__).parent
    for item in items:
        if Path(str(item.fspath)).parent == here and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(DEFAULT_TEST_TIMEOUT))


def broker_error(
    call: Callable[[], object],
    kind: type[Exception] = pika.exceptions.ChannelClosedByBroker,
) -> tuple[int, str]:
    """Run `call`, expect the broker to close the channel (or, with `kind`, the connection).

    Returns the reply code and text.
    """
    with pytest.raises(kind) as caught:
        call()
    error: Any = caught.value
    return error.reply_code, error.reply_text


def drain(channel: Any, queue: str) -> list[bytes]:
    """Every message ready on `queue` now, by basic.get with auto-ack.

    On the channel that published them, the broker has routed them before it answers the get.
    """
    bodies: list[bytes] = []
    while True:
        method, _, body = channel.basic_get(queue, auto_ack=True)
        if method is None:
            return bodies
        bodies.append(body)


def routed(channel: Any, exchange: str, routing_key: str, queues: dict[str, str], **props: Any) -> set[str]:
    """Publish one message; return the labels of the queues it reached (each read empty afterwards)."""
    body = unique("m").encode()
    channel.basic_publish(exchange, routing_key, body, pika.BasicProperties(**props) if props else None)
    reached: set[str] = set()
    for label, queue in queues.items():
        got = drain(channel, queue)
        assert got in ([], [body]), f"{label} got {got!r}"
        if got:
            reached.add(label)
    return reached


def queue_counts(channel: Any, queue: str, expect: tuple[int, int], timeout: float = 5.0) -> tuple[int, int]:
    """(message_count, consumer_count) by passive declare, polled until it equals `expect` or time is up.

    RabbitMQ's declare-ok counts may lag publishes that are not yet confirmed, so a count is read until it
    settles; the caller asserts on the returned value.
    """
    deadline = time.monotonic() + timeout
    while True:
        ok = channel.queue_declare(queue, passive=True).method
        counts = (ok.message_count, ok.consumer_count)
        if counts == expect or time.monotonic() > deadline:
            return counts
        channel.connection.process_data_events(time_limit=0.02)


def wait_queue_gone(connection: pika.BlockingConnection, queue: str, timeout: float = 5.0) -> tuple[int, str]:
    """Passive-declare `queue` until the broker answers 404 (RabbitMQ removes queues of a closed connection
    asynchronously); return that close's code and text, or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        ch = connection.channel()
        try:
            ch.queue_declare(queue, passive=True)
        except pika.exceptions.ChannelClosedByBroker as error:
            return error.reply_code, error.reply_text
        ch.close()
        if time.monotonic() > deadline:
            raise AssertionError(f"queue {queue} still exists after {timeout} s")
        connection.process_data_events(time_limit=0.02)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
    """On a failure, attach the tail of the log of the broker this suite started to the report."""
    outcome = yield
    report = outcome.get_result()
    if report.failed and isinstance(item, pytest.Function):
        info = item.funcargs.get("broker")
        if isinstance(info, BrokerInfo) and info.log_path is not None:
            report.sections.append(("ottermq log (tail)", info.log_tail()))
