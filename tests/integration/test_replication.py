"""Replication between real broker processes with a fixed role (the test-only `cluster_static_leader`
setting: "self" leads, "HOST:PORT" follows the leader listening there).

A follower joins by a bulk sync (it has another log) and then follows live; its log is the leader's, LSN
for LSN, and its data directory opened as a standalone broker holds every confirmed message, the same
queues, bindings, users, and the leader's unacked messages as ready ones. A follower that stops
acknowledging is dropped from the in-sync set and confirms go on; a wrong secret or another cluster is
refused with a log line on both sides; an old leader that comes back as a follower cuts the tail the new
leader never had.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pika
import pika.exceptions
import pytest

from memento.log import Log
from ottermq.store.codec import RECORD_TYPES
from ottermq.store.store import LOG_DIR, DurableStore, StoreOptions
from ottermq.store.view import diff_views, durable_view
from tests.integration.conftest import _free_port, serve_cmd

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(bool(os.environ.get("OTTERMQ_TEST_URL")), reason="starts its own brokers"),
]

ROOT = Path(__file__).resolve().parents[2]
SECRET = "s3cret-for-tests"
PERSISTENT = pika.BasicProperties(delivery_mode=2)


class Node:
    """One `ottermq serve` process in a static cluster role."""

    def __init__(self, tmp: Path, name: str, *, lead: str, cluster_port: int = 0, **settings: str) -> None:
        self.name = name
        self.data_dir = tmp / name
        self.log_path = tmp / f"{name}.log"
        self.cluster_port = cluster_port
        self.amqp_port = _free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("OTTERMQ_")}
        env.update(
            OTTERMQ_NODE_NAME=name,
            OTTERMQ_CLUSTER_SECRET=SECRET,
            OTTERMQ_CLUSTER_STATIC_LEADER=lead,
            OTTERMQ_CLUSTER_PORT=str(cluster_port),
            OTTERMQ_LOG_SEGMENT_SIZE=str(1 << 20),
            OTTERMQ_SCRUB_INTERVAL="0",
        )
        env.update({f"OTTERMQ_{key.upper()}": value for key, value in settings.items()})
        cmd = serve_cmd(self.data_dir, port=self.amqp_port, http_port=0)
        with self.log_path.open("ab") as out:
            self.process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env=env)

    def text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_log(self, pattern: str, timeout: float = 30.0, count: int = 1) -> None:
        deadline = time.monotonic() + timeout
        while len(re.findall(pattern, self.text())) < count:
            if self.process.poll() is not None:
                raise AssertionError(f"{self.name} exited waiting for {pattern!r}:\n{self.text()[-3000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name}: no {pattern!r} after {timeout} s:\n{self.text()[-3000:]}")
            time.sleep(0.05)

    def connect(self) -> pika.BlockingConnection:
        return pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", self.amqp_port))

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(timeout=5)


@pytest.fixture
def nodes() -> Iterator[list[Node]]:
    started: list[Node] = []
    yield started
    for node in started:
        if node.process.poll() is None:
            os.kill(node.process.pid, signal.SIGCONT)
            node.stop(signal.SIGKILL)


def leader(tmp: Path, nodes: list[Node], name: str = "a", **settings: str) -> Node:
    node = Node(tmp, name, lead="self", cluster_port=_free_port(), **settings)
    nodes.append(node)
    node.wait_log(r"replication listening on")
    node.wait_log(r"listening on amqp://")
    return node


def follower(tmp: Path, nodes: list[Node], of: Node, name: str = "b", **settings: str) -> Node:
    node = Node(tmp, name, lead=f"127.0.0.1:{of.cluster_port}", cluster_port=0, **settings)
    nodes.append(node)
    return node


def publish(node: Node, queue: str, bodies: list[bytes]) -> None:
    """Publish with confirms; returns once every one is confirmed."""
    with node.connect() as conn:
        ch = conn.channel()
        ch.confirm_delivery()
        for body in bodies:
            ch.basic_publish("", queue, body, PERSISTENT, mandatory=True)


def recovered_view(data_dir: Path) -> tuple[dict[str, Any], list[tuple[int, int, bytes]]]:
    """The durable view of a broker rebuilt from `data_dir` (the code a restart runs), and its log's
    records (LSN, type, payload)."""
    with Log.open(data_dir / LOG_DIR, registry=RECORD_TYPES) as memento_log:
        records = [(r.lsn, r.type, r.payload) for r in memento_log.replay(0)]
    store = DurableStore.open(data_dir, StoreOptions(scrub_rate=0))
    try:
        broker = store.new_broker()
        store.recover(broker)
        return durable_view(broker), records
    finally:
        store.close()


def test_follower_bulk_syncs_then_streams_and_holds_every_confirmed_message(
    tmp_path: Path, nodes: list[Node]
) -> None:
    a = leader(tmp_path, nodes)
    with a.connect() as conn:
        ch = conn.channel()
        ch.exchange_declare("orders", "topic", durable=True)
        for name in ("q.before", "q.after", "q.unacked", "q.sentinel"):
            ch.queue_declare(name, durable=True)
        ch.queue_bind("q.after", "orders", "order.#")
    subprocess.run(
        [sys.executable, "-m", "ottermq", "ctl", "--data-dir", str(a.data_dir), "add_user", "carol", "pw"],
        check=True,
        capture_output=True,
        cwd=ROOT,
    )
    # Enough to fill several 1 MiB segments before the follower exists: it joins by a bulk sync.
    publish(a, "q.before", [f"before-{i:04}".encode() * 2000 for i in range(200)])
    b = follower(tmp_path, nodes, a)
    b.wait_log(r"bulk sync installed")
    a.wait_log(r"follower b joined the in-sync set")
    with a.connect() as conn:
        ch = conn.channel()
        ch.confirm_delivery()
        for i in range(200):
            ch.basic_publish("orders", f"order.{i}", f"after-{i}".encode(), PERSISTENT)
        for i in range(20):
            ch.basic_publish("", "q.unacked", f"unacked-{i}".encode(), PERSISTENT)
        for _ in range(10):  # consumed and acknowledged: gone on both
            method, _props, _body = ch.basic_get("q.before")
            assert method is not None
            ch.basic_ack(method.delivery_tag)
    holder = a.connect()  # holds 20 deliveries unacknowledged when the leader dies
    hold = holder.channel()
    hold.basic_qos(prefetch_count=100)
    got: list[bytes] = []
    hold.basic_consume("q.unacked", lambda _c, _m, _p, body: got.append(body))
    deadline = time.monotonic() + 10
    while len(got) < 20 and time.monotonic() < deadline:
        holder.process_data_events(time_limit=0.05)
    assert len(got) == 20
    # A confirm on the in-sync follower covers every record before it: the follower has them all.
    publish(a, "q.sentinel", [b"sentinel"])
    a.stop(signal.SIGKILL)
    with contextlib.suppress(pika.exceptions.AMQPError):
        holder.close()
    b.stop()
    leader_view, leader_records = recovered_view(a.data_dir)
    follower_view, follower_records = recovered_view(b.data_dir)
    assert follower_records == leader_records  # LSN for LSN, the same records
    assert diff_views(leader_view, follower_view) == []
    queues = follower_view["vhosts"]["/"]["queues"]
    assert len(queues["q.before"]["messages"]) == 190
    assert len(queues["q.after"]["messages"]) == 200
    assert len(queues["q.unacked"]["messages"]) == 20  # unacked on the leader: ready here
    assert "carol" in follower_view["users"]


def test_a_follower_that_stops_acking_leaves_the_isr_and_confirms_go_on(
    tmp_path: Path, nodes: list[Node]
) -> None:
    a = leader(tmp_path, nodes, replication_ack_timeout="0.5")
    with a.connect() as conn:
        conn.channel().queue_declare("q", durable=True)
    b = follower(tmp_path, nodes, a)
    a.wait_log(r"follower b joined the in-sync set")
    publish(a, "q", [b"while in sync"])
    status = subprocess.run(
        [sys.executable, "-m", "ottermq", "ctl", "--data-dir", str(a.data_dir), "--json", "status"],
        check=True,
        capture_output=True,
        cwd=ROOT,
    )
    replication = json.loads(status.stdout)["replication"]
    assert replication["isr"] == ["a", "b"]
    assert replication["followers"]["b"]["lag_records"] == 0
    os.kill(b.process.pid, signal.SIGSTOP)  # connected, but acknowledges nothing
    try:
        started = time.monotonic()
        publish(a, "q", [b"after the follower stalled"])
        waited = time.monotonic() - started
        assert 0.4 <= waited < 10, waited
        assert "follower b dropped from the in-sync set" in a.text()
        started = time.monotonic()
        publish(a, "q", [b"x"] * 50)  # the set no longer holds b: no wait
        assert time.monotonic() - started < 2.0
    finally:
        os.kill(b.process.pid, signal.SIGCONT)
    a.wait_log(r"follower b joined the in-sync set", count=2)  # it caught up again


def replication_status(node: Node) -> dict[str, Any]:
    status = subprocess.run(
        [sys.executable, "-m", "ottermq", "ctl", "--data-dir", str(node.data_dir), "--json", "status"],
        check=True,
        capture_output=True,
        cwd=ROOT,
    )
    replication: dict[str, Any] = json.loads(status.stdout)["replication"]
    return replication


@pytest.mark.parametrize("threads", ["false", "true"], ids=["event-loop", "sender-thread"])
def test_a_burst_of_publishes_reaches_the_follower_in_one_frame_per_group_commit(
    tmp_path: Path, nodes: list[Node], threads: str
) -> None:
    """Records go to a follower by group commit, not by event-loop turn (nor one frame per publish): a
    burst of N publishes costs about one RECORDS frame per leader fsync, far fewer than N, from the event
    loop or from a sender thread (`replication_sender_threads`). (That a confirm still waits for the
    follower's ACK: the test of a follower that stops acking, above.)"""
    a = leader(tmp_path, nodes, replication_sender_threads=threads)
    with a.connect() as conn:
        conn.channel().queue_declare("q", durable=True)
    follower(tmp_path, nodes, a)
    a.wait_log(r"follower b joined the in-sync set")
    before = replication_status(a)
    sent_before = before["followers"]["b"]
    count = 3000
    with a.connect() as conn:
        burst = conn.channel()  # no confirms: the publishes arrive as fast as the client writes them
        for i in range(count):
            burst.basic_publish("", "q", f"m{i}".encode() * 100, PERSISTENT)
        last = conn.channel()
        last.confirm_delivery()  # confirmed once durable on both: every record before it is there too
        last.basic_publish("", "q", b"last", PERSISTENT)
    after = replication_status(a)
    sent = after["followers"]["b"]
    assert sent["acked_lsn"] == after["durable_lsn"]
    frames = sent["frames_sent"] - sent_before["frames_sent"]
    records = sent["records_sent"] - sent_before["records_sent"]
    commits = after["group_commits"] - before["group_commits"]
    assert records >= count + 1
    # One frame per group commit (and no more than a few for the frame in progress at each end); a sender
    # thread, woken by a batch, also sends what was appended since, which the next batch then holds.
    assert 1 <= frames <= (commits if threads == "false" else 2 * commits) + 2, (frames, commits, records)
    assert frames * 5 <= count, (frames, commits, records)


def test_a_killed_follower_restarts_from_its_own_log_and_rejoins(tmp_path: Path, nodes: list[Node]) -> None:
    a = leader(tmp_path, nodes, replication_ack_timeout="0.5")
    with a.connect() as conn:
        conn.channel().queue_declare("q", durable=True)
    b = follower(tmp_path, nodes, a)
    a.wait_log(r"follower b joined the in-sync set")
    publish(a, "q", [b"%d" % i for i in range(100)])
    b.stop(signal.SIGKILL)
    publish(a, "q", [b"%d" % i for i in range(100, 200)])  # b leaves the set, confirms go on
    nodes.remove(b)
    b = follower(tmp_path, nodes, a)
    a.wait_log(r"follower b joined the in-sync set", count=2)
    assert a.text().count("follower b (") == 3  # the first bulk sync, its stream, and this stream
    assert re.search(r"follower b \(\S+\) streams from LSN [1-9]\d+\" .*follower_lsn=[1-9]", a.text())
    publish(a, "q", [b"sentinel"])
    a.stop(signal.SIGKILL)
    b.stop()
    a_view, a_records = recovered_view(a.data_dir)
    b_view, b_records = recovered_view(b.data_dir)
    assert b_records == a_records
    assert diff_views(a_view, b_view) == []
    assert len(b_view["vhosts"]["/"]["queues"]["q"]["messages"]) == 201


def test_below_min_in_sync_publishers_are_blocked_until_a_follower_is_back(
    tmp_path: Path, nodes: list[Node]
) -> None:
    a = leader(tmp_path, nodes, min_in_sync="2", replication_ack_timeout="0.3")
    a.wait_log(r"publishes are refused and publishers blocked: 1 node\(s\) in sync, min_in_sync is 2")
    b = follower(tmp_path, nodes, a)
    a.wait_log(r"enough nodes are in sync again")
    with a.connect() as conn:
        conn.channel().queue_declare("q", durable=True)
    publish(a, "q", [b"two in sync"])
    conn = a.connect()
    blocked: list[str] = []
    conn.add_on_connection_blocked_callback(lambda _conn, method: blocked.append(method.method.reason))
    b.stop()
    a.wait_log(r"follower b dropped from the in-sync set")
    a.wait_log(r"publishes are refused and publishers blocked", count=2)
    deadline = time.monotonic() + 10
    while not blocked and time.monotonic() < deadline:
        conn.process_data_events(time_limit=0.05)
    assert blocked == ["too few in-sync replicas"]
    nodes.remove(b)
    follower(tmp_path, nodes, a)
    a.wait_log(r"enough nodes are in sync again", count=2)
    ch = conn.channel()
    ch.confirm_delivery()
    ch.basic_publish("", "q", b"back to two", PERSISTENT)  # confirmed (raises if nacked)
    conn.close()


@pytest.mark.parametrize(
    ("settings", "reason"),
    [({"cluster_secret": "wrong"}, "wrong cluster secret"), ({"cluster_name": "other"}, "another cluster")],
)
def test_wrong_secret_or_cluster_is_refused_on_both_sides(
    tmp_path: Path, nodes: list[Node], settings: dict[str, str], reason: str
) -> None:
    a = leader(tmp_path, nodes)
    b = follower(tmp_path, nodes, a, **settings)
    b.wait_log(r"replication: the leader at 127\.0\.0\.1:\d+ refused this node: .*" + reason)
    if "cluster_secret" in settings:
        a.wait_log(r"replication: refused node b from 127\.0\.0\.1:\d+: wrong cluster secret")
    assert "joined the in-sync set" not in a.text()
    time.sleep(0.5)
    assert len(re.findall("refused this node", b.text())) == 1  # said once, not at every retry


@pytest.mark.parametrize("how", ["killed", "stopped"])
def test_an_old_leader_back_as_follower_cuts_what_was_never_replicated(
    tmp_path: Path, nodes: list[Node], how: str
) -> None:
    """Killed, the old leader cuts its tail (truncate_after); stopped cleanly, its final snapshot covers
    the records the new leader lacks, so it is given a bulk sync instead."""
    a = leader(tmp_path, nodes, replication_ack_timeout="0.3")
    with a.connect() as conn:
        conn.channel().queue_declare("q", durable=True)
    b = follower(tmp_path, nodes, a)
    a.wait_log(r"follower b joined the in-sync set")
    publish(a, "q", [f"both-{i}".encode() for i in range(50)])
    b.stop()
    # Only a has these (b is dropped from the set, confirms go on): never replicated.
    publish(a, "q", [f"only-a-{i}".encode() for i in range(30)])
    a.stop(signal.SIGKILL if how == "killed" else signal.SIGTERM)
    nodes.clear()
    # b takes over (as an election would make it leader) and writes its own records past the cut.
    b2 = leader(tmp_path, nodes, name="b")
    publish(b2, "q", [f"only-b-{i}".encode() for i in range(5)])
    a2 = follower(tmp_path, nodes, b2, name="a")
    if how == "killed":
        a2.wait_log(r"replication: dropped LSNs \d+\.\.\d+, which the leader does not have")
    else:
        a2.wait_log(r"the snapshot at LSN \d+ covers some of them: asking for a bulk sync")
        a2.wait_log(r"bulk sync installed")
    b2.wait_log(r"follower a joined the in-sync set")
    publish(b2, "q", [b"sentinel"])
    b2.stop()
    a2.stop()
    b_view, b_records = recovered_view(b2.data_dir)
    a_view, a_records = recovered_view(a2.data_dir)
    assert a_records == b_records
    assert diff_views(b_view, a_view) == []
    bodies = [m for m in a_view["vhosts"]["/"]["queues"]["q"]["messages"]]
    assert len(bodies) == 56
    if how == "killed":
        assert any(name.endswith(".bin") for name in os.listdir(a2.data_dir / LOG_DIR / "quarantine"))
