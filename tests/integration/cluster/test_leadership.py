"""The election itself, in-process against a real etcd: terms, the ISR rule, set_isr, fencing order."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable

import pytest

from ottermq.cluster.election import ClusterError, Leadership, NodeInfo
from ottermq.cluster.etcd import EtcdClient, compare_create, op_put, prefix_end
from tests.integration.cluster.conftest import TTL, Etcd

pytestmark = pytest.mark.timeout(60)


def node(etcd: Etcd, cluster: str, name: str) -> Leadership:
    client = EtcdClient([etcd.url], timeout=TTL / 3)
    return Leadership(client, NodeInfo(name, "127.0.0.1", 1, 2, 3), cluster_name=cluster, lease_ttl=TTL)


async def until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def run(coro: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(coro())  # type: ignore[arg-type]


def test_prefix_end() -> None:
    assert prefix_end(b"/a/") == b"/a0"
    assert prefix_end(b"a\xff") == b"b"
    assert prefix_end(b"\xff") == b"\x00"


def test_client_txn_and_leases(etcd: Etcd) -> None:
    async def scenario() -> None:
        client = EtcdClient([etcd.url])
        key = f"/{uuid.uuid4().hex}/k".encode()
        lease, ttl = await client.lease_grant(TTL)
        assert ttl == TTL
        first = await client.txn([compare_create(key, 0)], [op_put(key, b"1", lease)])
        second = await client.txn([compare_create(key, 0)], [op_put(key, b"2", lease)])
        assert first.succeeded and not second.succeeded
        kvs, _ = await client.range(key)
        assert kvs[0].value == b"1" and kvs[0].lease == lease and kvs[0].create_revision == first.revision
        assert await client.lease_keepalive(lease) == TTL
        await client.lease_revoke(lease)
        assert await client.lease_keepalive(lease) == 0  # gone: the key went with it
        assert (await client.range(key))[0] == []
        await client.lease_revoke(lease)  # revoking twice is no error
        await client.close()

    run(scenario)


def test_terms_grow_and_only_isr_members_campaign(etcd: Etcd) -> None:
    cluster = f"l{uuid.uuid4().hex[:8]}"

    async def scenario() -> None:
        a, b, c = (node(etcd, cluster, name) for name in "abc")
        elected: list[tuple[str, int]] = []
        for n in (a, b, c):

            async def note(term: int, n: Leadership = n) -> None:
                elected.append((n.node_name, term))

            n.on_elected(note)
        await a.start()
        await until(a.is_leader, 5, "a to lead")
        assert a.term() >= 1 and a.isr() == ["a"]
        await b.start()
        await c.start()
        await until(lambda: len(a.members()) == 3, 5, "three members")
        # Only the leader writes the ISR; b joins it, c does not.
        with pytest.raises(ClusterError):
            await b.set_isr(["a", "b"])
        with pytest.raises(ClusterError):
            await a.set_isr(["b"])
        await a.set_isr(["a", "b"])
        assert a.isr() == ["a", "b"]
        first = a.term()
        await a.step_down()
        assert not a.is_leader()
        await until(b.is_leader, TTL + 1, "b to lead (c is not in the ISR)")
        assert b.term() > first and not c.is_leader()
        await until(lambda: c.leader_address() == ("127.0.0.1", 3) and c.term() == b.term(), 5, "c to see b")
        assert elected == [("a", first), ("b", b.term())]
        for n in (a, b, c):
            await n.stop()

    run(scenario)


def test_on_lost_runs_first_and_synchronously_when_the_lease_goes(
    etcd: Etcd, caplog: pytest.LogCaptureFixture
) -> None:
    cluster = f"l{uuid.uuid4().hex[:8]}"

    async def scenario() -> None:
        a = node(etcd, cluster, "a")
        order: list[str] = []

        def lost() -> None:
            # Synchronously, before the election logs or does anything else about the loss.
            order.append("on_lost")
            assert not a.is_leader()
            assert not any("leadership lost" in r.getMessage() for r in caplog.records)

        a.on_lost(lost)
        await a.start()
        await until(a.is_leader, 5, "a to lead")
        term = a.term()
        # Another client revokes a's lease (as if it expired in etcd): a's next keep-alive says so.
        other = EtcdClient([etcd.url])
        leader_key = f"/{cluster}/leader".encode()
        kvs, _ = await other.range(leader_key)
        started = time.monotonic()
        await other.lease_revoke(kvs[0].lease)
        await until(lambda: bool(order), TTL, "on_lost")
        print(f"lease revoked -> on_lost in {time.monotonic() - started:.2f} s")
        # a campaigns again on a new lease, in a higher term.
        await until(a.is_leader, TTL + 2, "a to lead again")
        assert a.term() > term
        kvs, _ = await other.range(leader_key)
        assert json.loads(kvs[0].value)["term"] == a.term()
        await a.stop()
        await other.close()
        assert order == ["on_lost", "on_lost"]  # the second: stop() while leading

    with caplog.at_level(logging.INFO, logger="ottermq.cluster"):
        run(scenario)


def test_the_follower_with_the_highest_durable_lsn_takes_over(etcd: Etcd) -> None:
    cluster = f"l{uuid.uuid4().hex[:8]}"

    async def scenario() -> None:
        lsns = {"a": 10, "b": 5, "c": 7}
        nodes = {}
        for name in "abc":
            client = EtcdClient([etcd.url], timeout=TTL / 3)
            info = NodeInfo(name, "127.0.0.1", 1, 2, 3)
            lsn = functools.partial(lsns.__getitem__, name)
            nodes[name] = Leadership(client, info, cluster_name=cluster, lease_ttl=TTL, durable_lsn=lsn)
        a, b, c = nodes.values()
        await a.start()
        await until(a.is_leader, 5, "a to lead")
        await b.start()
        await c.start()
        await until(lambda: len(a.members()) == 3, 5, "three members")
        await a.set_isr(["a", "b", "c"])
        # b and c must have read the new ISR and each other's LSN before the leader goes.
        await until(lambda: all(len(n.isr()) == 3 and len(n.members()) == 3 for n in (b, c)), 5, "views")
        await a.step_down()
        await until(lambda: b.is_leader() or c.is_leader(), TTL + 1, "a successor")
        assert c.is_leader() and not b.is_leader()  # c's log is longer than b's
        for n in (a, b, c):
            await n.stop()

    run(scenario)


def test_a_kept_alive_connection_etcd_closed_is_replaced(private_etcd: Etcd) -> None:
    async def scenario() -> None:
        client = EtcdClient([private_etcd.url])
        await client.put(b"/k", b"1")
        # etcd restarts: the pooled connection is dead, the next call must not fail for it (a connection
        # seen closed is dropped from the pool; one closed unseen is retried once on a new connection).
        await asyncio.to_thread(private_etcd.stop)
        await asyncio.to_thread(private_etcd.start)
        kvs, _ = await client.range(b"/k")
        assert kvs[0].value == b"1"
        await client.close()

    run(scenario)
