"""Clients of a follower are relayed to the leader (ottermq.cluster.proxy), with real nodes on a real etcd:
publish with confirms and consume through the follower, messages bigger than frame_max, a flood of clients
that vanish abruptly (nothing left open on the follower), proxied clients cut off when the leader dies, and
the management API of a follower (reads only; changes get 421 naming the leader)."""

from __future__ import annotations

import os
import signal
import socket
import struct
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pika
import pytest

from tests.integration.cluster.conftest import TTL, Cluster, Node, free_port, wait_until
from tests.integration.test_tls import client_context, make_certificates

pytestmark = pytest.mark.timeout(90)

PROTOCOL_HEADER = b"AMQP\x00\x00\x09\x01"


def amqp(node: Node) -> pika.BlockingConnection:
    params = pika.URLParameters(f"amqp://guest:guest@127.0.0.1:{node.port}/")
    params.socket_timeout = 5
    params.stack_timeout = 10
    params.heartbeat = 0
    return pika.BlockingConnection(params)


def two_nodes(cluster: Cluster) -> tuple[Node, Node]:
    """A leader and a follower that knows it (the follower's view names the leader)."""
    a = cluster.start("a")
    leader = cluster.leader()
    b = cluster.start("b")
    wait_until(lambda: ((b.status() or {}).get("leader") or {}).get("name") == leader.name, 10, "b to follow")
    assert leader is a
    # In the in-sync set: its first sync is over (a follower that replaces its log restarts its
    # listeners, which ends the connections it relays).
    wait_until(lambda: "b" in ((a.status() or {}).get("isr") or []), 20, "b to be in sync")
    return a, b


def proxied(node: Node) -> int:
    status = node.status() or {}
    return int(status["proxy"]["connections"])


def open_fds(node: Node) -> int:
    return len(os.listdir(f"/proc/{node.process.pid}/fd"))


def test_a_client_of_the_follower_is_served_by_the_leader(cluster: Cluster) -> None:
    leader, follower = two_nodes(cluster)
    big = os.urandom(5 * 1024 * 1024 + 17)  # several MiB: many frames of frame_max (128 KiB)
    with amqp(follower) as connection:
        channel = connection.channel()
        channel.confirm_delivery()
        channel.queue_declare("proxied", durable=True)
        for i in range(50):
            channel.basic_publish("", "proxied", f"m{i}".encode(), pika.BasicProperties(delivery_mode=2))
        channel.basic_publish("", "proxied", big, pika.BasicProperties(delivery_mode=2))
        assert proxied(follower) == 1
        # The queue and its messages are the leader's: the follower only relays bytes.
        queues = {q["name"]: q for q in leader.ctl("list_queues")}
        assert queues["proxied"]["messages"] == 51
        assert leader.ctl("status")["connections"] == 1
        received: list[bytes] = []
        for _method, _props, body in channel.consume("proxied", inactivity_timeout=5):
            assert body is not None, "no delivery within 5 s"
            received.append(body)
            if len(received) == 51:
                break
        channel.cancel()
        assert received[:50] == [f"m{i}".encode() for i in range(50)]
        assert received[50] == big
        channel.basic_ack(0, multiple=True)
        # A big message the other way too: published on the leader, consumed through the proxy.
        with amqp(leader) as direct:
            direct.channel().basic_publish("", "proxied", big[::-1])
        _method, _props, body = next(channel.consume("proxied", auto_ack=True, inactivity_timeout=5))
        assert body == big[::-1]
    wait_until(lambda: proxied(follower) == 0, 5, "the proxied connection to end")
    wait_until(lambda: leader.ctl("status")["connections"] == 0, 5, "the leader's side to end")
    assert "connection proxied to the leader at 127.0.0.1" in follower.log()


def test_a_flood_of_vanishing_clients_leaves_nothing_open(cluster: Cluster) -> None:
    leader, follower = two_nodes(cluster)
    with amqp(follower):
        pass  # the first proxied connection: whatever is made once (the watcher task) exists now
    wait_until(lambda: proxied(follower) == 0, 5, "the first connection to end")
    time.sleep(0.3)
    baseline = open_fds(follower)
    sockets = []
    for i in range(150):
        sock = socket.create_connection(("127.0.0.1", follower.port), timeout=5)
        if i % 3:
            sock.sendall(PROTOCOL_HEADER if i % 3 == 1 else PROTOCOL_HEADER[:3])
        sockets.append(sock)
    wait_until(lambda: proxied(follower) >= 100, 10, "the flood to be proxied")
    for sock in sockets:
        # An abrupt end: RST, not FIN.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    wait_until(lambda: proxied(follower) == 0, 10, "every proxied connection to end")
    # A little slack for what the node opens on its own meanwhile (an etcd reconnect, a log segment); a
    # leak would be hundreds (two sockets per proxied client).
    wait_until(lambda: open_fds(follower) <= baseline + 3, 10, f"the descriptors back to {baseline}")
    wait_until(lambda: leader.ctl("status")["connections"] == 0, 10, "the leader's connections to end")
    # The follower still proxies.
    with amqp(follower) as connection:
        connection.channel().queue_declare("after-flood")
    assert "after-flood" in {q["name"] for q in leader.ctl("list_queues")}


def test_proxied_clients_are_disconnected_when_the_leader_dies(cluster: Cluster) -> None:
    leader, follower = two_nodes(cluster)
    wait_until(lambda: len((leader.status() or {}).get("isr", [])) == 2, 10, "an ISR of 2")
    connection = amqp(follower)
    channel = connection.channel()
    channel.queue_declare("q")
    leader.kill()
    killed = time.monotonic()
    with pytest.raises((pika.exceptions.StreamLostError, pika.exceptions.ConnectionClosed)):
        while time.monotonic() - killed < 10:
            connection.process_data_events(time_limit=0.1)
    wait_until(lambda: proxied(follower) == 0, 5, "the proxied connection to end")
    # The follower takes over and serves the reconnecting client itself.
    cluster.leader(timeout=TTL + 5, among=[follower])
    with amqp(follower) as again:
        assert again.is_open
    assert follower.ctl("status")["connections"] == 0
    assert proxied(follower) == 0


def test_a_new_leader_closes_connections_proxied_to_the_old_one(cluster: Cluster) -> None:
    leader, follower = two_nodes(cluster)
    wait_until(lambda: len((leader.status() or {}).get("isr", [])) == 2, 10, "an ISR of 2")
    connection = amqp(follower)
    connection.channel()
    assert proxied(follower) == 1
    # The leader freezes (SIGSTOP: its sockets stay open, it neither answers nor closes them): once the
    # follower is elected it closes the connection it relays to the old leader itself.
    leader.process.send_signal(signal.SIGSTOP)
    try:
        cluster.leader(timeout=TTL + 5, among=[follower])
        wait_until(lambda: proxied(follower) == 0, 5, "the proxied connection to be closed")
        with pytest.raises((pika.exceptions.StreamLostError, pika.exceptions.ConnectionClosed)):
            for _ in range(50):
                connection.process_data_events(time_limit=0.1)
        assert "closing 1 proxied connection(s) to the leader at 127.0.0.1" in follower.log()
    finally:
        leader.process.send_signal(signal.SIGCONT)
    # The old leader wakes up, finds its lease gone and follows: it relays its clients to the new one.
    wait_until(
        lambda: ((leader.status() or {}).get("leader") or {}).get("name") == follower.name, 10, "a to follow"
    )
    with amqp(leader) as relayed:
        relayed.channel().queue_declare("via-a")
    assert "via-a" in {q["name"] for q in follower.ctl("list_queues")}


def test_after_a_step_down_the_old_leader_relays_to_the_new_one(cluster: Cluster) -> None:
    leader, follower = two_nodes(cluster)
    wait_until(lambda: len((leader.status() or {}).get("isr", [])) == 2, 10, "an ISR of 2")
    leader.ctl("step_down")
    cluster.leader(timeout=5, among=[follower])
    wait_until(
        lambda: ((leader.status() or {}).get("leader") or {}).get("name") == follower.name, 5, "a to follow"
    )
    with amqp(leader) as relayed:
        relayed.channel().queue_declare("via-a")
    assert "via-a" in {q["name"] for q in follower.ctl("list_queues")}


def test_a_tls_client_of_the_follower_is_relayed(cluster: Cluster, tmp_path: Path) -> None:
    """The client's TLS ends on the follower (its AMQPS listener); the hop to the leader is plain."""
    certs = make_certificates(tmp_path / "certs")
    tls_port = free_port()
    config = tmp_path / "tls.toml"
    config.write_text(
        f'tls_port = {tls_port}\ntls_certfile = "{certs.server_cert}"\ntls_keyfile = "{certs.server_key}"\n'
    )
    leader = cluster.start("a")
    cluster.leader()
    follower = cluster.start("b", "--config", str(config))
    wait_until(lambda: ((follower.status() or {}).get("leader") or {}).get("name") == "a", 10, "b to follow")
    wait_until(lambda: "b" in ((leader.status() or {}).get("isr") or []), 20, "b to be in sync")
    params = pika.ConnectionParameters(
        host="127.0.0.1",
        port=tls_port,
        ssl_options=pika.SSLOptions(client_context(certs), "127.0.0.1"),
        credentials=pika.PlainCredentials("guest", "guest"),
        socket_timeout=5,
        stack_timeout=10,
    )
    with pika.BlockingConnection(params) as connection:
        channel = connection.channel()
        channel.confirm_delivery()
        channel.queue_declare("over-tls")
        channel.basic_publish("", "over-tls", b"m")
        assert proxied(follower) == 1
    queues = {q["name"]: q for q in leader.ctl("list_queues")}
    assert queues["over-tls"]["messages"] == 1


def http(node: Node, path: str, method: str = "GET") -> tuple[int, Any]:
    import json

    req = urllib.request.Request(f"http://127.0.0.1:{node.http_port}{path}", method=method)
    req.add_header("Authorization", "Basic Z3Vlc3Q6Z3Vlc3Q=")  # guest:guest
    try:
        with urllib.request.urlopen(req, timeout=5) as answer:
            body = answer.read()
            return answer.status, json.loads(body) if body else None
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def listening(node: Node) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", node.http_port), timeout=1):
            return True
    except OSError:
        return False


def test_the_management_api_of_a_follower_is_read_only(cluster: Cluster) -> None:
    leader, follower = two_nodes(cluster)
    # Its listeners start again once its first sync has replaced its log: wait for the API to be back.
    wait_until(lambda: listening(follower), 20, "the follower's management API")
    status, rows = http(follower, "/api/nodes")
    assert status == 200 and rows[0]["cluster"]["leader"]["name"] == leader.name
    status, body = http(follower, "/api/vhosts/v1", "PUT")
    assert status == 421, body
    assert f"leader is 127.0.0.1:{leader.port}" in body["reason"]
    assert f"changes go to http://127.0.0.1:{leader.http_port}" in body["reason"]
    status, body = http(leader, "/api/vhosts/v1", "PUT")
    assert status == 201, body
