"""Replication with automatic failover, with real nodes and a real etcd: a confirmed message survives the
SIGKILL of the leader, the old leader comes back as a follower, and step_down hands over without loss."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pika
import pytest

from tests.integration.cluster.conftest import TTL, Cluster, Node, free_port, wait_until
from tests.integration.conftest import _ROOT

pytestmark = pytest.mark.timeout(180)

# Deadlines for what must happen "eventually": generous, for a loaded 2-core machine. The correctness
# facts (every confirmed message, equal definitions) are checked exactly.
EVENTUALLY = 30.0


def amqp(node: Node) -> pika.BlockingConnection:
    params = pika.URLParameters(f"amqp://guest:guest@127.0.0.1:{node.port}/")
    params.socket_timeout = 5
    params.stack_timeout = 10
    params.blocked_connection_timeout = 10
    return pika.BlockingConnection(params)


def publish_confirmed(node: Node, bodies: list[bytes], queue: str = "q") -> list[bytes]:
    """Publish `bodies` persistently with confirms to `node`; the ones confirmed (stops at the first
    failure: a connection closed by fencing, a nack)."""
    confirmed: list[bytes] = []
    try:
        connection = amqp(node)
    except pika.exceptions.AMQPError:
        return confirmed
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        for body in bodies:
            channel.basic_publish("", queue, body, pika.BasicProperties(delivery_mode=2), mandatory=True)
            confirmed.append(body)
    except pika.exceptions.AMQPError:
        pass
    finally:
        if connection.is_open:
            connection.close()
    return confirmed


def drain(node: Node, queue: str = "q", redelivered: set[bytes] | None = None) -> list[bytes]:
    """Every message of `queue` on `node`, acked (the bodies that came redelivered into `redelivered`)."""
    connection = amqp(node)
    channel = connection.channel()
    got: list[bytes] = []
    while True:
        method, _props, body = channel.basic_get(queue, auto_ack=True)
        if method is None:
            break
        got.append(body)
        if redelivered is not None and method.redelivered:
            redelivered.add(body)
    connection.close()
    return got


def definitions(node: Node) -> dict[str, Any]:
    """What must be equal on every node: queues (and their message counts), bindings, users, permissions."""
    queues = sorted((q["name"], q["durable"], str(q["arguments"])) for q in node.ctl("list_queues"))
    bindings = sorted(tuple(sorted((k, str(v)) for k, v in b.items())) for b in node.ctl("list_bindings"))
    users = sorted(tuple(sorted((k, str(v)) for k, v in u.items())) for u in node.ctl("list_users"))
    permissions = sorted(tuple(sorted(p.items())) for p in node.ctl("list_permissions"))
    return {"queues": queues, "bindings": bindings, "users": users, "permissions": permissions}


def in_sync(leader: Node, size: int) -> dict[str, Any]:
    """Wait until `size` nodes are in the leader's in-sync set and every follower is caught up."""

    def ready() -> dict[str, Any] | None:
        status = leader.status()
        if not status or len(status.get("isr", [])) != size:
            return None
        followers = status.get("replication", {}).get("followers", {})
        connected = [f for f in followers.values() if f["connected"] and f["in_sync"]]
        if len(connected) != size - 1 or any(f["lag_records"] for f in connected):
            return None
        return status

    found: dict[str, Any] = wait_until(ready, EVENTUALLY, f"{size} nodes in sync", 0.1)
    return found


def setup(leader: Node) -> None:
    """Definitions to compare after a failover: a queue with a binding, a user with permissions."""
    connection = amqp(leader)
    channel = connection.channel()
    channel.queue_declare("q", durable=True)
    channel.exchange_declare("ex", "direct", durable=True)
    channel.queue_bind("q", "ex", "rk")
    channel.queue_declare("other", durable=True, arguments={"x-max-length": 1000})
    connection.close()
    leader.ctl("add_user", name="alice", password="secret", tags=["monitoring"])
    leader.ctl("set_permissions", user="alice", vhost="/", configure="^a", write=".*", read=".*")


def test_sigkill_of_the_leader_loses_no_confirmed_message(cluster: Cluster) -> None:
    for name in ("a", "b", "c"):
        cluster.start(name)
    leader = cluster.leader(timeout=EVENTUALLY)
    setup(leader)
    in_sync(leader, 3)
    bodies = [f"m{i}".encode() for i in range(2000)]
    confirmed = publish_confirmed(leader, bodies)
    assert len(confirmed) == len(bodies)
    before = definitions(leader)
    status = in_sync(leader, 3)
    assert all(f["lag_bytes"] == 0 for f in status["replication"]["followers"].values())

    # Three messages delivered and not acknowledged when the leader dies.
    holder = amqp(leader)
    unacked = [holder.channel().basic_get("q", auto_ack=False)[2] for _ in range(3)]
    leader.kill()
    killed = time.monotonic()
    survivors = [n for n in cluster.nodes if n.alive()]
    new = cluster.leader(timeout=EVENTUALLY, among=survivors)
    took_over = time.monotonic() - killed
    extra = publish_confirmed(new, [b"after"])
    first_confirm = time.monotonic() - killed
    print(f"failover: leader serving after {took_over:.2f} s, first confirm after {first_confirm:.2f} s")
    assert took_over < TTL + 4, f"took {took_over:.2f} s (lease TTL {TTL} s)"
    assert extra == [b"after"]

    assert definitions(new) == before
    redelivered: set[bytes] = set()
    got = drain(new, redelivered=redelivered)
    missing = set(confirmed) - set(got)
    assert not missing, f"{len(missing)} confirmed messages lost, e.g. {sorted(missing)[:5]}"
    assert b"after" in got
    assert set(unacked) <= redelivered  # the unacked ones are back, redelivered

    # The old leader comes back: it follows, catches up and rejoins the in-sync set.
    back = cluster.start(leader.name)
    status = in_sync(new, 3)
    assert back.name in status["isr"]
    assert not back.is_leader()
    assert definitions(back) == definitions(new)
    cluster_status = back.ctl("cluster_status")
    assert cluster_status["leader"]["name"] == new.name


def test_step_down_moves_leadership_without_loss(cluster: Cluster) -> None:
    for name in ("a", "b", "c"):
        cluster.start(name)
    leader = cluster.leader(timeout=EVENTUALLY)
    setup(leader)
    in_sync(leader, 3)
    confirmed = publish_confirmed(leader, [f"s{i}".encode() for i in range(500)])
    assert len(confirmed) == 500
    before = definitions(leader)
    started = time.monotonic()
    result = leader.ctl("step_down")
    assert result["stepped_down"]
    others = [n for n in cluster.nodes if n is not leader]
    new = cluster.leader(timeout=EVENTUALLY, among=others)
    print(f"step_down: {new.name} serving after {time.monotonic() - started:.2f} s")
    assert definitions(new) == before
    more = publish_confirmed(new, [f"t{i}".encode() for i in range(100)])
    assert len(more) == 100
    # The node that stepped down follows the new leader and is back in the in-sync set.
    in_sync(new, 3)
    assert not leader.is_leader()
    got = drain(new)
    missing = (set(confirmed) | set(more)) - set(got)
    assert not missing, f"{len(missing)} confirmed messages lost"


def test_step_down_refused_without_an_in_sync_follower(cluster: Cluster) -> None:
    node = cluster.start("solo")
    cluster.leader(timeout=EVENTUALLY)
    from ottermq.ctl import CtlError

    with pytest.raises(CtlError, match="in-sync"):
        node.ctl("step_down")
    assert node.is_leader()


def test_cluster_status_api_and_metrics_show_each_followers_lag(cluster: Cluster) -> None:
    prometheus = {name: free_port() for name in ("a", "b")}
    for name, port in prometheus.items():
        cluster.start(name, "--prometheus-port", str(port))
    leader = cluster.leader(timeout=EVENTUALLY)
    follower = next(n for n in cluster.nodes if n is not leader)
    setup(leader)
    assert len(publish_confirmed(leader, [b"x"] * 50)) == 50
    in_sync(leader, 2)
    out = subprocess.run(
        [sys.executable, "-m", "ottermq", "ctl", "--data-dir", str(leader.data_dir), "cluster_status"],
        capture_output=True, text=True, cwd=_ROOT, timeout=30,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    header = "follower\tconnected\tin_sync\tacked_lsn\tlag_records\tlag_bytes\tlast_ack_age"
    assert header in lines
    table = lines[lines.index(header) + 1 :]
    row = next(line.split("\t") for line in table if line.startswith(f"{follower.name}\t"))
    assert row[1:3] == ["true", "true"] and row[4:6] == ["0", "0"] and float(row[6]) < 5
    assert int(row[3]) == leader.ctl("cluster_status")["replication"]["durable_lsn"]
    # The same in /api/nodes (the node's `cluster` field) ...
    request = urllib.request.Request(f"http://127.0.0.1:{leader.http_port}/api/nodes")
    request.add_header("Authorization", "Basic Z3Vlc3Q6Z3Vlc3Q=")  # guest:guest
    with urllib.request.urlopen(request, timeout=5) as answer:
        nodes = json.loads(answer.read())
    followers = nodes[0]["cluster"]["replication"]["followers"]
    assert followers[follower.name]["in_sync"] and followers[follower.name]["lag_records"] == 0
    # ... and in Prometheus.
    url = f"http://127.0.0.1:{prometheus[leader.name]}/metrics"
    with urllib.request.urlopen(url, timeout=5) as answer:
        text = answer.read().decode()
    assert f'ottermq_cluster_follower_lag_records{{node="{follower.name}"}} 0' in text
    assert f'ottermq_cluster_follower_in_sync{{node="{follower.name}"}} 1' in text
    assert "ottermq_cluster_is_leader 1" in text and "ottermq_cluster_isr_size 2" in text
    # A follower shows no replication section (only the leader streams).
    assert "replication" not in follower.ctl("cluster_status")


def test_a_clustered_node_needs_the_cluster_secret(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTTERMQ_")}
    out = subprocess.run(
        [sys.executable, "-m", "ottermq", "serve", "--etcd", "http://127.0.0.1:1", "--node-name", "a",
         "--port", "5999", "--data-dir", str(tmp_path / "d")],
        capture_output=True, text=True, cwd=_ROOT, env=env, timeout=30,
    )  # fmt: skip
    assert out.returncode == 2 and "cluster_secret" in out.stderr, out.stderr


def test_delivery_counts_are_the_same_on_the_new_leader(cluster: Cluster) -> None:
    """A quorum queue's x-delivery-count survives a failover as RabbitMQ 3.10's survives a node's loss: a
    message ready at the SIGKILL keeps its two returns; one delivered and unacknowledged then counts one
    failed delivery more, and the limit (3) still holds."""
    for name in ("a", "b", "c"):
        cluster.start(name)
    leader = cluster.leader(timeout=EVENTUALLY)
    connection = amqp(leader)
    channel = connection.channel()
    channel.confirm_delivery()
    arguments = {"x-queue-type": "quorum", "x-delivery-limit": 3}
    for queue in ("dc.ready", "dc.held"):
        channel.queue_declare(queue, durable=True, arguments=arguments)
        channel.basic_publish("", queue, queue.encode(), pika.BasicProperties(delivery_mode=2))
        for expected in (0, 1):
            method, properties, _ = channel.basic_get(queue)
            assert (properties.headers or {}).get("x-delivery-count") == expected
            channel.basic_nack(method.delivery_tag, requeue=True)
    holder = connection.channel()
    method, properties, _ = holder.basic_get("dc.held")
    assert method is not None and properties.headers["x-delivery-count"] == 2
    channel.queue_declare("barrier", durable=True)  # every delivery and return above is logged
    in_sync(leader, 3)
    leader.kill()
    survivors = [n for n in cluster.nodes if n.alive()]
    new = cluster.leader(timeout=EVENTUALLY, among=survivors)
    connection = amqp(new)
    channel = connection.channel()
    method, properties, body = channel.basic_get("dc.ready")
    assert body == b"dc.ready" and properties.headers["x-delivery-count"] == 2
    channel.basic_nack(method.delivery_tag, requeue=True)
    method, properties, body = channel.basic_get("dc.ready")
    assert properties.headers["x-delivery-count"] == 3
    method, properties, body = channel.basic_get("dc.held")
    assert body == b"dc.held" and method.redelivered and properties.headers["x-delivery-count"] == 3
    channel.basic_nack(method.delivery_tag, requeue=True)  # the fourth return: over the limit
    assert channel.basic_get("dc.held")[0] is None
    connection.close()
