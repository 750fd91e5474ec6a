"""Network partitions, with real nodes, a real etcd and a TCP relay the test cuts (tcp_proxy.py):

- a follower cut off from the leader's replication port leaves the in-sync set after
  replication_ack_timeout, confirms wait for it until then and go on without it after; healed, it catches
  up and rejoins, and holds every confirmed message (it is elected when the leader is then killed);
- a leader cut off from etcd fences itself: no publish sent after its lease may have expired is confirmed,
  the follower is elected and holds every confirmed message, and the old leader, healed, follows it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pika
import pytest

from tests.integration.cluster.conftest import TTL, Cluster, Etcd, Node, free_port, wait_until
from tests.integration.cluster.tcp_proxy import TcpProxy

pytestmark = pytest.mark.timeout(180)

EVENTUALLY = 30.0
ACK_TIMEOUT = 2.0  # replication_ack_timeout's default, as the nodes run


@pytest.fixture
def proxies() -> Iterator[list[TcpProxy]]:
    made: list[TcpProxy] = []
    try:
        yield made
    finally:
        for proxy in made:
            proxy.close()


def amqp(node: Node) -> pika.BlockingConnection:
    params = pika.URLParameters(f"amqp://guest:guest@127.0.0.1:{node.port}/")
    params.socket_timeout = 5
    params.stack_timeout = 10
    params.blocked_connection_timeout = 30
    return pika.BlockingConnection(params)


@dataclass
class Publisher:
    """A thread publishing persistently with confirms to one node, reconnecting after errors, recording
    when each confirmed publish was sent and when its confirm came."""

    node: Node
    stop: threading.Event = field(default_factory=threading.Event)
    confirmed: list[tuple[bytes, float, float]] = field(default_factory=list)  # body, sent, confirmed
    thread: threading.Thread | None = None

    def start(self) -> Publisher:
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        return self

    def finish(self) -> list[tuple[bytes, float, float]]:
        self.stop.set()
        assert self.thread is not None
        self.thread.join(30)
        assert not self.thread.is_alive(), "publisher stuck"
        return self.confirmed

    def _run(self) -> None:
        seq = 0
        while not self.stop.is_set():
            try:
                connection = amqp(self.node)
            except pika.exceptions.AMQPError:
                self.stop.wait(0.1)
                continue
            try:
                channel = connection.channel()
                channel.confirm_delivery()
                while not self.stop.is_set():
                    seq += 1
                    body = f"p{seq}".encode()
                    sent = time.monotonic()
                    channel.basic_publish("", "q", body, pika.BasicProperties(delivery_mode=2))
                    self.confirmed.append((body, sent, time.monotonic()))
            except (pika.exceptions.AMQPError, OSError):
                pass  # fenced, refused, nacked: reconnect with fresh bodies
            finally:
                if connection.is_open:
                    try:
                        connection.close()
                    except (pika.exceptions.AMQPError, OSError):
                        pass


def declare(node: Node) -> None:
    connection = amqp(node)
    connection.channel().queue_declare("q", durable=True)
    connection.close()


def drain(node: Node) -> set[bytes]:
    connection = amqp(node)
    channel = connection.channel()
    got: set[bytes] = set()
    while True:
        method, _props, body = channel.basic_get("q", auto_ack=True)
        if method is None:
            break
        got.add(body)
    connection.close()
    return got


def assert_all_on(node: Node, confirmed: list[tuple[bytes, float, float]]) -> None:
    """Every confirmed body is in `node`'s queue."""
    missing = {body for body, _sent, _at in confirmed} - drain(node)
    assert not missing, f"{len(missing)} of {len(confirmed)} confirmed lost, e.g. {sorted(missing)[:5]}"


def isr(node: Node) -> list[str]:
    return list((node.status() or {}).get("isr") or [])


def caught_up(leader: Node, follower: str) -> bool:
    status = leader.status() or {}
    state = status.get("replication", {}).get("followers", {}).get(follower)
    return bool(follower in status.get("isr", []) and state and state["in_sync"] and not state["lag_records"])


def test_a_follower_cut_off_from_the_leader_leaves_the_isr_and_rejoins(
    cluster: Cluster, proxies: list[TcpProxy]
) -> None:
    # The leader advertises a relay in front of its replication port: the follower streams through it.
    cluster_port = free_port()
    relay = TcpProxy(cluster_port)
    proxies.append(relay)
    leader = cluster.start(
        "a", cluster_port=cluster_port, settings={"OTTERMQ_ADVERTISE_CLUSTER_PORT": str(relay.port)}
    )
    assert cluster.leader(timeout=EVENTUALLY) is leader
    follower = cluster.start("b")
    wait_until(lambda: caught_up(leader, "b"), EVENTUALLY, "b in sync", 0.1)
    declare(leader)
    publisher = Publisher(leader).start()
    wait_until(lambda: len(publisher.confirmed) > 100, EVENTUALLY, "confirms before the cut")

    relay.cut()
    cut = time.monotonic()
    wait_until(lambda: isr(leader) == ["a"], EVENTUALLY, "b to leave the in-sync set", 0.05)
    left = time.monotonic() - cut
    count = len(publisher.confirmed)
    wait_until(lambda: len(publisher.confirmed) > count + 100, EVENTUALLY, "confirms without b")
    # Confirms waited for b until it left: nothing sent after the cut was confirmed within about the
    # ack timeout of it (b acknowledged continuously under this load until the cut).
    first_after = min(confirmed for _body, sent, confirmed in publisher.confirmed if sent > cut)
    print(f"b left the in-sync set {left:.2f} s after the cut; first confirm {first_after - cut:.2f} s")
    assert first_after - cut > ACK_TIMEOUT - 1.0
    assert left > ACK_TIMEOUT - 1.0
    assert not follower.is_leader() and leader.is_leader()

    relay.heal()
    healed = time.monotonic()
    wait_until(lambda: caught_up(leader, "b"), EVENTUALLY, "b to rejoin the in-sync set", 0.1)
    print(f"b back in the in-sync set {time.monotonic() - healed:.2f} s after the heal")
    confirmed = publisher.finish()
    wait_until(lambda: caught_up(leader, "b"), EVENTUALLY, "b caught up", 0.1)

    # b holds every confirmed message: kill a, b is elected and delivers them all.
    leader.kill()
    assert cluster.leader(timeout=EVENTUALLY, among=[follower]) is follower
    assert_all_on(follower, confirmed)


def test_a_leader_cut_off_from_etcd_fences_itself(
    cluster: Cluster, etcd: Etcd, proxies: list[TcpProxy]
) -> None:
    relay = TcpProxy(etcd.client_port)
    proxies.append(relay)
    leader = cluster.start("a", etcd_url=f"http://127.0.0.1:{relay.port}")
    assert cluster.leader(timeout=EVENTUALLY) is leader
    follower = cluster.start("b")
    wait_until(lambda: caught_up(leader, "b"), EVENTUALLY, "b in sync", 0.1)
    declare(leader)
    publisher = Publisher(leader).start()
    wait_until(lambda: len(publisher.confirmed) > 100, EVENTUALLY, "confirms before the cut")

    relay.cut()
    cut = time.monotonic()
    assert cluster.leader(timeout=EVENTUALLY, among=[follower]) is follower
    elected = time.monotonic() - cut
    confirmed = publisher.finish()
    last_sent = max(sent for _body, sent, _at in confirmed) - cut
    print(f"b elected {elected:.2f} s after the cut; a's last confirmed publish sent at {last_sent:.2f} s")
    # The lease a held could expire TTL s after the cut at the earliest: nothing sent after that may have
    # been confirmed by a (strict: a publish is sent before its confirm).
    assert last_sent < TTL, f"a confirmed a publish sent {last_sent:.2f} s after it lost etcd"
    assert not leader.is_leader()

    # Every message a confirmed is on b.
    assert_all_on(follower, confirmed)

    # Healed: a follows b, catches up and is in its in-sync set again.
    relay.heal()
    wait_until(lambda: caught_up(follower, "a"), EVENTUALLY, "a to rejoin as a follower", 0.1)
    assert not leader.is_leader()
    assert (leader.status() or {})["leader"]["name"] == "b"
