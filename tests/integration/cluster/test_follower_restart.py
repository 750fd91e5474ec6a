"""A follower SIGKILLed and started again, with real nodes on a real etcd: it recovers its own log, streams
from where it was (no bulk sync) and rejoins the in-sync set; `memento inspect` and `memento verify` read
its data directory, which holds the leader's log (same log id) record for record up to its end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pika
import pytest

from tests.integration.cluster.conftest import Cluster, Node, wait_until
from tests.integration.conftest import _ROOT

pytestmark = pytest.mark.timeout(180)

EVENTUALLY = 30.0
MEMENTO = [sys.executable, "-c", "from memento.cli import main; main()"]


def amqp(node: Node) -> pika.BlockingConnection:
    params = pika.URLParameters(f"amqp://guest:guest@127.0.0.1:{node.port}/")
    params.socket_timeout = 5
    params.stack_timeout = 10
    params.blocked_connection_timeout = 30
    return pika.BlockingConnection(params)


def publish_confirmed(node: Node, bodies: list[bytes]) -> None:
    connection = amqp(node)
    channel = connection.channel()
    channel.queue_declare("q", durable=True)
    channel.confirm_delivery()
    for body in bodies:
        channel.basic_publish("", "q", body, pika.BasicProperties(delivery_mode=2), mandatory=True)
    connection.close()


def follower_state(leader: Node, name: str) -> dict[str, Any] | None:
    """The leader's view of follower `name` once it is in sync and caught up, else None."""
    status = leader.status() or {}
    state = status.get("replication", {}).get("followers", {}).get(name)
    if name in status.get("isr", []) and state and state["in_sync"] and not state["lag_records"]:
        found: dict[str, Any] = state
        return found
    return None


def memento(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*MEMENTO, *args], capture_output=True, text=True, cwd=_ROOT, timeout=60)


def records(data_dir: Path) -> dict[int, dict[str, Any]]:
    """Every record of the node's log by LSN, without where it sits (segment boundaries are each node's)."""
    done = memento("inspect", "--records", "--json", "--payload", str(data_dir))
    assert done.returncode in (0, 1), done.stderr  # 1: a running (or killed) node's RUNNING mark
    found: dict[int, dict[str, Any]] = {}
    for line in done.stdout.splitlines():
        doc = json.loads(line)
        doc.pop("segment"), doc.pop("offset")
        found[doc["lsn"]] = doc
    return found


def test_a_killed_follower_catches_up_and_holds_the_leaders_log(cluster: Cluster) -> None:
    leader = cluster.start("a")
    assert cluster.leader(timeout=EVENTUALLY) is leader
    follower = cluster.start("b")
    wait_until(lambda: follower_state(leader, "b"), EVENTUALLY, "b in sync", 0.1)
    publish_confirmed(leader, [f"m{i}".encode() for i in range(300)])
    wait_until(lambda: follower_state(leader, "b"), EVENTUALLY, "b caught up", 0.1)

    follower.kill()
    wait_until(lambda: (leader.status() or {}).get("isr") == ["a"], EVENTUALLY, "b to leave the ISR", 0.1)
    publish_confirmed(leader, [f"n{i}".encode() for i in range(300)])  # b misses these
    logged = follower.log_path.stat().st_size
    follower = cluster.start("b")
    state = wait_until(lambda: follower_state(leader, "b"), EVENTUALLY, "b to rejoin the in-sync set", 0.1)
    since_restart = follower.log()[logged:]
    assert "bulk sync" not in since_restart, since_restart  # it streamed on from its own log
    assert not follower.is_leader()
    publish_confirmed(leader, [f"o{i}".encode() for i in range(50)])  # b in the set: durable there too
    state = wait_until(lambda: follower_state(leader, "b"), EVENTUALLY, "b caught up again", 0.1)
    acked = state["acked_lsn"]

    follower.kill()
    theirs = json.loads(memento("inspect", "--json", str(follower.data_dir)).stdout)
    ours = json.loads(memento("inspect", "--json", str(leader.data_dir)).stdout)
    assert theirs["log_id"] == ours["log_id"] and theirs["log_id"]
    assert theirs["end_lsn"] >= acked, (theirs["end_lsn"], acked)
    verified = memento("verify", str(follower.data_dir))
    assert verified.returncode in (0, 1), verified.stdout + verified.stderr  # 1: killed, RUNNING mark
    assert "damage:" not in verified.stdout, verified.stdout
    # Record for record the leader's, up to the follower's end (from the first LSN both still hold).
    copy, original = records(follower.data_dir), records(leader.data_dir)
    assert max(copy) == theirs["end_lsn"]
    shared = [lsn for lsn in copy if lsn >= min(original)]
    assert shared and min(shared) <= acked - 600
    print(f"{len(shared)} records compared; the follower's log ends at {theirs['end_lsn']}, acked {acked}")
    different = [lsn for lsn in shared if copy[lsn] != original.get(lsn)]
    assert not different, (
        f"records differ at LSN {different[:5]}: {copy[different[0]]} vs {original.get(different[0])}"
    )
