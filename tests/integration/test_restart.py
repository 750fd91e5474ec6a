"""Restarts through the real process: what survives a graceful stop and a SIGKILL, and what does not.

Each test owns a data directory and starts `python -m ottermq serve --data-dir D` on it, stops it (SIGTERM)
or kills it (SIGKILL), and starts it again on the same D. `Node` is shared by the other durability tests
(test_durable*.py, test_torn_tail*.py).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pika
import pytest

from tests.integration.conftest import STARTUP_TIMEOUT, get_message, serve_cmd

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("OTTERMQ_TEST_URL")), reason="restarts need a broker process of our own"
)

_LISTENING = re.compile(r"listening on amqp://[^\s:/]+:(\d+)")
_ROOT = Path(__file__).resolve().parents[2]
PERSISTENT = pika.BasicProperties(delivery_mode=2)


class Node:
    """An OtterMQ process on a data directory that outlives it."""

    def __init__(self, base: Path, *, http_port: int = 0, **settings: Any) -> None:
        self.base = base
        self.http_port = http_port  # 0: no management API
        self.data_dir = base / "data"
        self.settings = settings
        self.runs = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.log_path = base / "ottermq-0.log"

    def start(self, expect_failure: bool = False) -> int | None:
        """Start the broker; its port (or, with `expect_failure`, its exit code once it has exited)."""
        self.runs += 1
        self.log_path = self.base / f"ottermq-{self.runs}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("OTTERMQ_")}
        env.update({f"OTTERMQ_{k.upper()}": str(v) for k, v in self.settings.items()})
        cmd = serve_cmd(self.data_dir, http_port=self.http_port)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=_ROOT, env=env)
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            match = _LISTENING.search(self.log_text())
            if match is not None:
                if expect_failure:
                    raise AssertionError(f"broker started although it should not:\n{self.log_text()}")
                self.port = int(match.group(1))
                return self.port
            code = self.process.poll()
            if code is not None:
                if expect_failure:
                    return code
                raise AssertionError(f"broker exited with {code}:\n{self.log_text()}")
            time.sleep(0.05)
        raise AssertionError(f"broker did not start:\n{self.log_text()}")

    def log_text(self) -> str:
        """What the current run wrote."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        """SIGTERM and wait for a clean exit (status 0)."""
        process = self.process
        assert process is not None
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=20)
        assert code == 0, self.log_text()
        self.process = None

    def kill(self) -> None:
        """SIGKILL: nothing gets to run."""
        process = self.process
        assert process is not None
        process.kill()
        process.wait(timeout=10)
        self.process = None

    def restart(self, kill: bool = False) -> None:
        """Stop (or kill) and start again on the same data directory."""
        if kill:
            self.kill()
        else:
            self.stop()
        self.start()

    def connect(self) -> pika.BlockingConnection:
        """A pika connection to the running broker."""
        params = pika.URLParameters(f"amqp://guest:guest@127.0.0.1:{self.port}/%2F")
        params.socket_timeout = 5
        params.blocked_connection_timeout = 10
        return pika.BlockingConnection(params)

    def close(self) -> None:
        """Kill the process if it still runs (test teardown)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


def running_node(tmp_path: Path) -> Iterator[Node]:
    """A broker on a fresh data directory (started), killed at teardown: the body of `node` fixtures."""
    n = Node(tmp_path)
    n.start()
    try:
        yield n
    finally:
        n.close()


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    """A broker on a fresh data directory (started), killed at teardown."""
    yield from running_node(tmp_path)


def drain_all(channel: Any, queue: str) -> list[tuple[bytes, bool]]:
    """Every ready message of `queue` as (body, redelivered), acked."""
    got: list[tuple[bytes, bool]] = []
    while True:
        method, _, body = channel.basic_get(queue, auto_ack=True)
        if method is None:
            return got
        got.append((body, method.redelivered))


def publish_confirmed(channel: Any, exchange: str, routing_key: str, bodies: list[bytes]) -> None:
    """Publish persistent messages on a confirm channel (each confirmed before the next)."""
    for body in bodies:
        channel.basic_publish(exchange, routing_key, body, PERSISTENT)


def barrier(channel: Any) -> None:
    """Return once everything the broker logged so far is on disk: a durable declare-ok waits for that
    (acks and other removals are logged without waiting, so a kill right after them may undo them)."""
    channel.queue_declare(f"barrier-{time.monotonic_ns()}", durable=True)


def setup_entities(channel: Any) -> None:
    channel.confirm_delivery()
    channel.exchange_declare("dx", "topic", durable=True)
    channel.exchange_declare("dx2", "fanout", durable=True)
    channel.exchange_declare("tx-transient", "fanout", durable=False)
    channel.queue_declare("dq", durable=True)
    channel.queue_declare("tq", durable=False)
    channel.queue_bind("dq", "dx", "a.#")
    channel.exchange_bind("dx2", "dx", "b.*")
    channel.queue_bind("dq", "dx2", "")


@pytest.mark.parametrize("kill", [False, True], ids=["graceful", "sigkill"])
def test_durable_entities_and_persistent_messages_survive(node: Node, kill: bool) -> None:
    conn = node.connect()
    ch = conn.channel()
    setup_entities(ch)
    publish_confirmed(ch, "dx", "a.1", [b"p1", b"p2"])
    publish_confirmed(ch, "dx", "b.x", [b"via-e2e"])
    ch.basic_publish("dx", "a.2", b"transient")  # delivery_mode 1: not logged
    publish_confirmed(ch, "", "tq", [b"lost-with-tq"])
    conn.close()
    node.restart(kill=kill)

    conn = node.connect()
    ch = conn.channel()
    ch.exchange_declare("dx", "topic", passive=True)
    ch.exchange_declare("dx2", "fanout", passive=True)
    assert drain_all(ch, "dq") == [(b"p1", kill), (b"p2", kill), (b"via-e2e", kill)]
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as gone:
        ch.queue_declare("tq", passive=True)
    assert gone.value.reply_code == 404
    ch = conn.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker):
        ch.exchange_declare("tx-transient", passive=True)
    # Bindings survived: both routes still reach dq.
    ch = conn.channel()
    ch.confirm_delivery()
    publish_confirmed(ch, "dx", "a.z", [b"after-1"])
    publish_confirmed(ch, "dx", "b.y", [b"after-2"])
    assert [body for body, _ in drain_all(ch, "dq")] == [b"after-1", b"after-2"]
    conn.close()


def test_unacked_at_crash_come_back_redelivered_and_acked_do_not(node: Node) -> None:
    conn = node.connect()
    ch = conn.channel()
    ch.confirm_delivery()
    ch.queue_declare("work", durable=True)
    publish_confirmed(ch, "", "work", [b"m%d" % i for i in range(6)])
    consumer = conn.channel()
    acked = []
    for _ in range(4):
        method, _, body = get_message(consumer, "work")
        acked.append((method.delivery_tag, body))
    # Ack the first two; the next two stay unacknowledged when the broker dies.
    consumer.basic_ack(acked[1][0], multiple=True)
    barrier(ch)
    node.kill()
    node.start()
    conn = node.connect()
    ch = conn.channel()
    got = drain_all(ch, "work")
    assert got == [(b"m2", True), (b"m3", True), (b"m4", True), (b"m5", True)]
    conn.close()


def test_graceful_stop_requeues_unacked_with_exact_flags_and_replays_nothing(node: Node) -> None:
    conn = node.connect()
    ch = conn.channel()
    ch.confirm_delivery()
    ch.queue_declare("g", durable=True)
    publish_confirmed(ch, "", "g", [b"a", b"b", b"c"])
    get_message(ch, "g")  # "a" unacked at shutdown: requeued, redelivered
    node.stop()
    node.start()
    assert "replayed=0" in node.log_text()
    assert "crashed=False" in node.log_text()
    conn = node.connect()
    ch = conn.channel()
    assert drain_all(ch, "g") == [(b"a", True), (b"b", False), (b"c", False)]
    conn.close()


def test_confirmed_message_survives_sigkill_right_after_its_confirm(node: Node) -> None:
    conn = node.connect()
    ch = conn.channel()
    ch.confirm_delivery()
    ch.queue_declare("c", durable=True)
    bodies = [b"x%d" % i for i in range(50)]
    publish_confirmed(ch, "", "c", bodies)  # each returns only after its basic.ack
    node.kill()
    node.start()
    conn = node.connect()
    ch = conn.channel()
    assert [body for body, _ in drain_all(ch, "c")] == bodies
    conn.close()


def test_fanout_to_several_durable_queues_survives_once_each(node: Node) -> None:
    conn = node.connect()
    ch = conn.channel()
    ch.confirm_delivery()
    ch.exchange_declare("fan", "fanout", durable=True)
    for name in ("f1", "f2", "f3"):
        ch.queue_declare(name, durable=True)
        ch.queue_bind(name, "fan")
    publish_confirmed(ch, "fan", "", [b"one", b"two"])
    drain_all(ch, "f2")
    barrier(ch)
    node.restart(kill=True)
    conn = node.connect()
    ch = conn.channel()
    assert [b for b, _ in drain_all(ch, "f1")] == [b"one", b"two"]
    assert drain_all(ch, "f2") == []
    assert [b for b, _ in drain_all(ch, "f3")] == [b"one", b"two"]
    conn.close()


def test_purge_and_delete_are_replayed(node: Node) -> None:
    conn = node.connect()
    ch = conn.channel()
    ch.confirm_delivery()
    for name in ("purged", "deleted", "kept"):
        ch.queue_declare(name, durable=True)
        publish_confirmed(ch, "", name, [b"1", b"2"])
    assert ch.queue_purge("purged").method.message_count == 2
    ch.queue_delete("deleted")
    ch.queue_declare("deleted", durable=True)  # again, empty
    node.restart(kill=True)
    conn = node.connect()
    ch = conn.channel()
    assert drain_all(ch, "purged") == []
    assert drain_all(ch, "deleted") == []
    assert len(drain_all(ch, "kept")) == 2
    conn.close()
