"""Nodes added to and removed from a running cluster: a new node follows, catches up from nothing (bulk
sync) and joins the in-sync set; a node stopped with SIGTERM leaves the in-sync set and the members, and
confirms go on without it (docs/replication.md, "Adding a node", "Removing a node")."""

from __future__ import annotations

import pytest

from tests.integration.cluster.conftest import Cluster, wait_until
from tests.integration.cluster.test_follower_restart import amqp, follower_state, publish_confirmed

pytestmark = pytest.mark.timeout(180)

EVENTUALLY = 30.0


def test_a_node_added_at_run_time_catches_up_and_a_stopped_one_leaves(cluster: Cluster) -> None:
    cluster.start("a")
    cluster.start("b")
    leader = cluster.leader(timeout=EVENTUALLY)
    other = next(n for n in cluster.nodes if n is not leader)
    wait_until(lambda: follower_state(leader, other.name), EVENTUALLY, f"{other.name} in sync")
    publish_confirmed(leader, [b"before %d" % i for i in range(200)])

    added = cluster.start("c")  # a new member: an empty data directory
    state = wait_until(lambda: follower_state(leader, "c"), EVENTUALLY, "the new node in sync")
    assert "c" in [m["name"] for m in (leader.status() or {})["members"]]
    assert state["acked_lsn"] > 200  # it holds everything published before it came
    assert not added.is_leader()
    publish_confirmed(leader, [b"with c %d" % i for i in range(50)])
    wait_until(lambda: follower_state(leader, "c"), EVENTUALLY, "the new node caught up again")

    added.process.terminate()  # removed: a clean stop
    assert added.process.wait(timeout=15) == 0

    def gone() -> bool:
        status = leader.status() or {}
        members = [m["name"] for m in status.get("members", [])]
        return bool(members) and "c" not in status.get("isr", []) and "c" not in members

    wait_until(gone, EVENTUALLY, "the stopped node out of the in-sync set and the members")
    publish_confirmed(leader, [b"after %d" % i for i in range(50)])  # confirms go on without it

    connection = amqp(leader)
    channel = connection.channel()
    got = []
    while (message := channel.basic_get("q", auto_ack=True))[0] is not None:
        got.append(message[2])
    connection.close()
    assert got[:200] == [b"before %d" % i for i in range(200)]
    assert got[200:] == [b"with c %d" % i for i in range(50)] + [b"after %d" % i for i in range(50)]
