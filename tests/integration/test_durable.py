"""Durability beyond a plain restart: transactions, declare-ok, space reclamation, `memento replay`.

Same `Node` as test_restart.py: a broker process on a data directory of the test's own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.test_restart import (
    PERSISTENT,
    Node,
    barrier,
    drain_all,
    publish_confirmed,
    running_node,
)

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("OTTERMQ_TEST_URL")), reason="needs a broker process of our own"
)


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    """A broker on a fresh data directory (started), killed at teardown."""
    yield from running_node(tmp_path)


def test_tx_commit_is_all_or_nothing_across_a_crash(node: Node) -> None:
    conn = node.connect()
    setup = conn.channel()
    setup.confirm_delivery()
    setup.queue_declare("src", durable=True)
    setup.queue_declare("dst", durable=True)
    publish_confirmed(setup, "", "src", [b"s1", b"s2"])
    ch = conn.channel()
    ch.tx_select()
    method, _, _ = ch.basic_get("src")
    ch.basic_ack(method.delivery_tag)
    for i in range(3):
        ch.basic_publish("", "dst", b"t%d" % i, PERSISTENT)
    ch.tx_commit()  # commit-ok only once the one record holding all of it is durable
    ch.basic_publish("", "dst", b"uncommitted", PERSISTENT)
    method, _, _ = ch.basic_get("src")
    ch.basic_ack(method.delivery_tag)  # inside the open transaction: not applied
    node.kill()
    node.start()
    conn = node.connect()
    ch = conn.channel()
    assert [b for b, _ in drain_all(ch, "dst")] == [b"t0", b"t1", b"t2"]
    assert drain_all(ch, "src") == [(b"s2", True)]
    conn.close()


def test_durable_declarations_survive_a_kill_right_after_declare_ok(node: Node) -> None:
    conn = node.connect()
    ch = conn.channel()
    ch.exchange_declare("fresh-x", "direct", durable=True)
    ch.queue_declare("fresh-q", durable=True, arguments={"x-message-ttl": 60000})
    ch.queue_bind("fresh-q", "fresh-x", "k")
    node.kill()
    node.start()
    conn = node.connect()
    ch = conn.channel()
    ch.confirm_delivery()
    ch.queue_declare("fresh-q", durable=True, arguments={"x-message-ttl": 60000})
    publish_confirmed(ch, "fresh-x", "k", [b"routed"])
    assert [b for b, _ in drain_all(ch, "fresh-q")] == [b"routed"]
    conn.close()


def wal_bytes(node: Node) -> int:
    wal = node.data_dir / "log" / "wal"
    return sum(p.stat().st_size for p in wal.iterdir())


def test_a_drained_queue_gives_its_disk_space_back(tmp_path: Path) -> None:
    node = Node(tmp_path, log_segment_size=1 << 20, snapshot_interval=0.2)
    node.start()
    try:
        conn = node.connect()
        ch = conn.channel()
        ch.queue_declare("big", durable=True)
        start = wal_bytes(node)
        body = b"x" * 1024
        for _ in range(6000):
            ch.basic_publish("", "big", body, PERSISTENT)
        assert ch.queue_declare("big", durable=True, passive=True).method.message_count == 6000
        barrier(ch)  # everything written, so every segment exists
        full = wal_bytes(node)
        assert full >= start + 5 * (1 << 20)
        # Drain with acks, then keep a trickle of durable changes so snapshots (and reclaims) follow.
        for seen, (method, _, _) in enumerate(ch.consume("big", inactivity_timeout=2), 1):
            if method is None:
                break
            if seen % 200 == 0 or seen == 6000:
                ch.basic_ack(method.delivery_tag, multiple=True)
            if seen == 6000:
                break
        ch.cancel()
        deadline = time.monotonic() + 15
        while wal_bytes(node) > start + 2 * (1 << 20) and time.monotonic() < deadline:
            ch.exchange_declare(f"tick-{time.monotonic_ns()}", "fanout", durable=False)
            ch.queue_declare("tick", durable=True)
            ch.queue_delete("tick")
            conn.sleep(0.3)
        assert wal_bytes(node) <= start + 2 * (1 << 20), (start, full, wal_bytes(node))
        conn.close()
        node.stop()
        node.start()
        conn = node.connect()
        assert drain_all(conn.channel(), "big") == []
        conn.close()
    finally:
        node.close()


def test_memento_replay_shows_the_broker_state(node: Node) -> None:
    conn = node.connect()
    ch = conn.channel()
    ch.confirm_delivery()
    ch.exchange_declare("shown", "topic", durable=True)
    ch.queue_declare("counted", durable=True)
    ch.queue_bind("counted", "shown", "k.#")
    publish_confirmed(ch, "shown", "k.1", [b"a", b"b", b"c"])
    conn.close()
    node.stop()
    memento = [sys.executable, "-c", "from memento.cli import main; main()"]
    out = subprocess.run(
        [*memento, "replay", str(node.data_dir / "log"), "--decoder", "ottermq"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    state = json.loads(out)["vhosts"]["/"]
    assert state["exchanges"]["shown"]["type"] == "topic"
    assert state["queues"]["counted"]["messages"] == 3
    assert {
        "source": "shown",
        "destination": "counted",
        "destination_kind": "queue",
        "routing_key": "k.#",
        "arguments": {},
    } in state["bindings"]
    # As it stood before the publishes, replayed from the start.
    early = subprocess.run(
        [
            *memento,
            "replay",
            str(node.data_dir / "log"),
            "--decoder",
            "ottermq",
            "--from-start",
            "--to-lsn",
            "6",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert json.loads(early)["messages"] == 0
