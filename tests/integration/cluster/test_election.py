"""Leader election through etcd with real nodes: one leader, failover on SIGKILL, step-down, fencing when
etcd goes away, followers relaying clients to the leader, and cluster_status."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import Any

import pika
import pytest

from tests.integration.cluster.conftest import TTL, Cluster, Node, wait_until
from tests.integration.conftest import _ROOT, _free_port, serve_cmd

pytestmark = pytest.mark.timeout(90)


def amqp(node: Node) -> pika.BlockingConnection:
    params = pika.URLParameters(f"amqp://guest:guest@127.0.0.1:{node.port}/")
    params.socket_timeout = 5
    params.stack_timeout = 10
    return pika.BlockingConnection(params)


def refusal(node: Node) -> str:
    """The text of the broker's refusal at connection.open (pika reports it as a probable access denial)."""
    with pytest.raises(pika.exceptions.AMQPConnectionError) as caught:
        amqp(node)
    return str(caught.value)


def http(node: Node, path: str, method: str = "GET") -> tuple[int, Any]:
    req = urllib.request.Request(f"http://127.0.0.1:{node.http_port}{path}", method=method)
    req.add_header("Authorization", "Basic Z3Vlc3Q6Z3Vlc3Q=")  # guest:guest
    try:
        with urllib.request.urlopen(req, timeout=5) as answer:
            body = answer.read()
            return answer.status, json.loads(body) if body.startswith((b"{", b"[")) else body.decode()
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def full_isr(cluster: Cluster, size: int) -> None:
    """Wait until the leader has put every live node in the in-sync set (so any may take over)."""
    leader = cluster.leader()
    wait_until(lambda: len((leader.status() or {}).get("isr", [])) == size, 10, f"an ISR of {size}")


def test_one_leader_among_three_and_followers_relay_clients(cluster: Cluster) -> None:
    nodes = [cluster.start(name) for name in ("a", "b", "c")]
    leader = cluster.leader()
    full_isr(cluster, 3)
    statuses = [node.status() for node in nodes]
    assert all(s is not None for s in statuses)
    assert {s["leader"]["name"] for s in statuses if s} == {leader.name}
    assert len({s["term"] for s in statuses if s}) == 1
    with amqp(leader) as connection:
        assert connection.is_open
    for node in nodes:
        if node is leader:
            continue
        # A follower relays AMQP clients to the leader (ottermq.cluster.proxy; tests in test_proxy.py).
        with amqp(node) as connection:
            connection.channel().queue_declare(f"via-{node.name}")
        assert f"via-{node.name}" in {q["name"] for q in leader.ctl("list_queues")}
        # The management API of a follower answers reads, refuses changes naming the leader.
        status, rows = http(node, "/api/nodes")
        assert status == 200 and rows[0]["cluster"]["leader"]["name"] == leader.name
        status, body = http(node, "/api/vhosts/v1", "PUT")
        assert status == 421 and f"leader is 127.0.0.1:{leader.port}" in body["reason"]
    status, body = http(leader, "/api/vhosts/v1", "PUT")
    assert status == 201, body
    status, text = http(leader, "/metrics")
    assert "ottermq_cluster_is_leader 1" in text and "ottermq_cluster_members 3" in text
    assert "ottermq_cluster_isr_size 3" in text


def test_cluster_status_output(cluster: Cluster) -> None:
    a = cluster.start("a")
    cluster.leader()
    b = cluster.start("b")
    wait_until(lambda: len((b.status() or {}).get("members", [])) == 2, 10, "two members")
    out = subprocess.run(
        [sys.executable, "-m", "ottermq", "ctl", "--data-dir", str(b.data_dir), "cluster_status"],
        capture_output=True, text=True, cwd=_ROOT, timeout=30,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert f"leader: a (127.0.0.1:{a.port})" in lines
    assert "node: b" in lines and "is_leader: false" in lines
    assert any(line.startswith("term: ") and int(line.split()[1]) >= 1 for line in lines)
    assert "name\thost\tamqp_port\tdurable_lsn\tlast_seen_s\tleader" in lines
    rows = [line.split("\t") for line in lines if line.startswith(("a\t", "b\t"))]
    assert [row[0] for row in rows] == ["a", "b"]
    assert rows[0][5] == "true" and rows[1][5] == "false"
    assert all(int(row[3]) >= 0 and float(row[4]) < 5 for row in rows)
    # Changes are refused on a follower, with the leader's address.
    out = subprocess.run(
        [sys.executable, "-m", "ottermq", "ctl", "--data-dir", str(b.data_dir), "add_vhost", "v"],
        capture_output=True, text=True, cwd=_ROOT, timeout=30,
    )  # fmt: skip
    assert out.returncode == 69 and f"leader is 127.0.0.1:{a.port}" in out.stderr


def test_sigkill_of_the_leader_fails_over_within_ttl_plus_one_second(cluster: Cluster) -> None:
    for name in ("a", "b", "c"):
        cluster.start(name)
    slowest = 0.0
    for _round in range(2):
        leader = cluster.leader()
        full_isr(cluster, sum(1 for n in cluster.nodes if n.alive()))
        term = leader.status()["term"]  # type: ignore[index]
        killed = time.monotonic()
        leader.kill()
        survivors = [n for n in cluster.nodes if n.alive()]
        successor = cluster.leader(timeout=TTL + 5, among=survivors)
        took = time.monotonic() - killed
        slowest = max(slowest, took)
        print(f"failover {leader.name} -> {successor.name}: {took:.2f} s")
        assert took <= TTL + 1, f"failover took {took:.2f} s"
        assert successor.status()["term"] > term  # type: ignore[index]
        with amqp(successor) as connection:
            assert connection.is_open
        # Restart the killed node: it rejoins as a follower.
        cluster.nodes.remove(leader)
        cluster.start(leader.name)
    print(f"slowest failover: {slowest:.2f} s (lease TTL {TTL} s)")


def test_step_down_hands_over(cluster: Cluster) -> None:
    for name in ("a", "b"):
        cluster.start(name)
    leader = cluster.leader()
    full_isr(cluster, 2)
    term = leader.status()["term"]  # type: ignore[index]
    started = time.monotonic()
    result = leader.ctl("step_down")
    assert result["stepped_down"] is True
    other = next(n for n in cluster.nodes if n is not leader)
    successor = cluster.leader(timeout=5)
    assert successor is other
    print(f"step-down handover: {time.monotonic() - started:.2f} s")
    assert successor.status()["term"] > term  # type: ignore[index]
    assert not leader.is_leader()

    def following() -> bool:
        return bool((leader.status() or {}).get("leader", {}).get("name") == other.name)

    wait_until(following, 5, "the old leader to follow the new one")
    with amqp(leader) as connection:  # relayed to the new leader
        connection.channel().queue_declare("via-old-leader")
    assert "via-old-leader" in {q["name"] for q in other.ctl("list_queues")}
    # step_down on a follower is an error.
    with pytest.raises(Exception, match="not the leader"):
        leader.ctl("step_down")


def test_leader_cut_off_from_etcd_stops_leading_within_ttl(private_cluster: Cluster) -> None:
    node = private_cluster.start("a")
    private_cluster.leader()
    connection = amqp(node)
    channel = connection.channel()
    channel.confirm_delivery()
    channel.queue_declare("q", durable=True)
    confirmed = 0
    for _ in range(10):
        channel.basic_publish("", "q", b"m", pika.BasicProperties(delivery_mode=2))
        confirmed += 1
    private_cluster.etcd.pause()
    paused = time.monotonic()
    try:
        # Publish with confirms until the broker fences: the connection is closed with 320 and its socket
        # at once, so a publish racing the close may meet the closed socket before the close frame is read.
        with pytest.raises(
            (pika.exceptions.ConnectionClosedByBroker, pika.exceptions.StreamLostError)
        ) as caught:
            while time.monotonic() - paused < TTL + 3:
                channel.basic_publish("", "q", b"m", pika.BasicProperties(delivery_mode=2))
                confirmed += 1
        fenced = time.monotonic() - paused
        print(f"fenced {fenced:.2f} s after etcd stopped answering ({confirmed} confirms)")
        if isinstance(caught.value, pika.exceptions.ConnectionClosedByBroker):
            assert caught.value.reply_code == 320 and "not the leader" in caught.value.reply_text
        assert fenced < TTL, f"still leading {fenced:.2f} s after etcd stopped (TTL {TTL} s)"
        wait_until(lambda: 'msg="leadership lost"' in node.log(), 5, "the log line")
        log = node.log()
        # on_lost (the gate closing every connection) ran before anything else of the loss.
        assert log.index("stopped serving clients: leadership lost") < log.index('msg="leadership lost"')
        # The node opens its log again as a follower (its listeners are down for that moment), then
        # refuses clients, saying it does not lead.
        wait_until(
            lambda: "(320) 'CONNECTION_FORCED - not the leader" in refusal(node), 10, "a 320 refusal", 0.2
        )
    finally:
        private_cluster.etcd.resume()
    # etcd is back: the node leads again, in a new term.
    private_cluster.leader(timeout=TTL * 3 + 5)
    assert node.status()["term"] >= 2  # type: ignore[index]


def test_without_etcd_nothing_changes(broker: Any) -> None:
    if broker.external:
        pytest.skip("needs the suite's own broker")
    from ottermq.ctl import CtlError, request

    with pytest.raises(CtlError, match="not in a cluster"):
        request(broker.data_dir / "ctl.sock", "cluster_status", {})
    req = urllib.request.Request(f"http://127.0.0.1:{broker.http_port}/api/nodes")
    req.add_header("Authorization", "Basic Z3Vlc3Q6Z3Vlc3Q=")
    with urllib.request.urlopen(req, timeout=5) as answer:
        assert "cluster" not in json.loads(answer.read())[0]
    with urllib.request.urlopen(f"http://127.0.0.1:{broker.http_port}/metrics", timeout=5) as answer:
        assert b"ottermq_cluster_" not in answer.read()
    assert "etcd" not in broker.log_tail(400)


def test_a_node_that_cannot_listen_for_clients_leaves_the_cluster(cluster: Cluster) -> None:
    """Its AMQP port is taken: the node must not go on leading with no listener (clients, and followers
    relaying them, would find nobody), even when it was elected before it noticed. It leaves the election
    and exits non-zero, so that another node may lead."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        data_dir = cluster.root / "a"
        cmd = serve_cmd(
            data_dir, "--etcd", cluster.etcd.url, "--node-name", "a", "--cluster-name", cluster.name,
            "--cluster-port", str(_free_port()), port=port,
        )  # fmt: skip
        env = {k: v for k, v in os.environ.items() if not k.startswith("OTTERMQ_")}
        env["OTTERMQ_CLUSTER_LEASE_TTL"] = str(TTL)
        env["OTTERMQ_CLUSTER_SECRET"] = "test-cluster-secret"
        log_path = cluster.root / "a.log"
        with log_path.open("ab") as log:
            process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=_ROOT, env=env)
        try:
            code = process.wait(timeout=20)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    text = log_path.read_text(errors="replace")
    assert code != 0, text
    assert "cannot listen on" in text
