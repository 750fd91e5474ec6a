"""`memento inspect/verify/replay` pointed at an OtterMQ data directory (not at DATA/log).

A real broker makes the data directory: entities and messages, a clean stop (snapshot), more traffic and a
SIGKILL (a log tail after the snapshot). The tools find DATA/log themselves and say so on stderr, and
`replay --decoder ottermq --to-lsn N` shows entities and per-queue message counts as they stood at N,
with or without the snapshot.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from memento.cli import app
from tests.integration.test_restart import Node, barrier, publish_confirmed, running_node

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("OTTERMQ_TEST_URL")), reason="needs a broker process of our own"
)

MEMENTO = [sys.executable, "-c", "from memento.cli import main; main()"]


def memento(*args: str) -> subprocess.CompletedProcess[str]:
    """The CLI in-process (a subprocess per replay would cost a second each): exit code, stdout, stderr."""
    result = CliRunner().invoke(app, list(args))
    return subprocess.CompletedProcess(list(args), result.exit_code, result.stdout, result.stderr)


def replay(data: Path, *args: str) -> tuple[dict[str, Any], str]:
    done = memento("replay", str(data), "--decoder", "ottermq", *args)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout), done.stderr


def counts(state: dict[str, Any]) -> dict[str, int]:
    return {
        name: q["messages"]
        for name, q in state["vhosts"]["/"]["queues"].items()
        if not name.startswith("barrier-")
    }


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A data directory: 3 + 1 messages before a clean stop (snapshot), then 2 more, 1 acked, SIGKILL."""
    node_iter = running_node(tmp_path_factory.mktemp("memento-data"))
    node: Node = next(node_iter)
    conn = node.connect()
    ch = conn.channel()
    ch.confirm_delivery()
    ch.exchange_declare("shown", "topic", durable=True)
    ch.queue_declare("counted", durable=True)
    ch.queue_declare("other", durable=True)
    ch.queue_bind("counted", "shown", "k.#")
    publish_confirmed(ch, "shown", "k.1", [b"a", b"b", b"c"])
    publish_confirmed(ch, "", "other", [b"o"])
    conn.close()
    node.restart()  # clean stop: a snapshot holding both queues' indexes
    conn = node.connect()
    ch = conn.channel()
    ch.confirm_delivery()
    publish_confirmed(ch, "shown", "k.2", [b"d", b"e"])
    method, _, _ = ch.basic_get("counted")
    ch.basic_ack(method.delivery_tag)
    barrier(ch)
    conn.close()
    node.kill()
    yield node.data_dir
    node.close()


def test_inspect_and_verify_find_the_log(data: Path) -> None:
    for command in ("inspect", "verify"):
        done = memento(command, str(data))
        assert done.returncode in (0, 1), done.stdout + done.stderr  # 1: the killed run's RUNNING mark
        assert done.stderr.splitlines()[0] == f"memento: using {data / 'log'}"
        assert f"log directory {data / 'log'}" in done.stdout
    doc = json.loads(memento("inspect", "--json", str(data)).stdout)
    assert doc["path"] == str(data / "log") and doc["snapshot_lsn"] > 0


def test_replay_includes_the_snapshot_and_the_tail(data: Path) -> None:
    snapshot_lsn = json.loads(memento("inspect", "--json", str(data)).stdout)["snapshot_lsn"]
    now, stderr = replay(data)
    assert stderr.strip() == f"memento: using {data / 'log'}"
    assert now["snapshot_lsn"] == snapshot_lsn and now["last_lsn"] > snapshot_lsn
    assert counts(now) == {"counted": 4, "other": 1}  # 3 from the snapshot + 2 - 1 acked
    vhost = now["vhosts"]["/"]
    assert vhost["exchanges"]["shown"]["type"] == "topic"
    assert {
        "source": "shown",
        "destination": "counted",
        "destination_kind": "queue",
        "routing_key": "k.#",
        "arguments": {},
    } in vhost["bindings"]
    # Exactly at the snapshot: its state alone, nothing replayed after it.
    at, _ = replay(data, "--to-lsn", str(snapshot_lsn))
    assert at["snapshot_lsn"] == snapshot_lsn and at["records_replayed"] == 0
    assert counts(at) == {"counted": 3, "other": 1}


def test_replay_before_the_snapshot_starts_from_the_first_record(data: Path) -> None:
    full, _ = replay(data, "--from-start")
    assert full["snapshot_lsn"] is None and counts(full) == {"counted": 4, "other": 1}
    history = []
    for lsn in range(1, full["last_lsn"] + 1):
        state, stderr = replay(data, "--to-lsn", str(lsn))
        if state["snapshot_lsn"] is None:
            assert "replaying from the first record: the snapshot is at LSN" in stderr
        history.append(counts(state))
    # Declares first (empty queues appear), then the messages one by one, then the ack.
    assert history[0] == {}
    seen = [h for i, h in enumerate(history) if i == 0 or h != history[i - 1]]
    assert seen[-4:] == [
        {"counted": 3, "other": 1},
        {"counted": 4, "other": 1},
        {"counted": 5, "other": 1},
        {"counted": 4, "other": 1},
    ]
    assert {"counted": 1, "other": 0} in seen and {"counted": 3, "other": 0} in seen


def test_a_directory_without_a_log_is_explained(tmp_path: Path, data: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes").mkdir()
    done = memento("inspect", str(tmp_path / "empty"))
    assert done.returncode == 4
    assert done.stderr.strip() == (
        f"memento: error: {tmp_path / 'empty'}: not a Memento log directory (it has neither wal/ nor "
        "snapshots/); its subdirectories (notes) are not either"
    )
    both = tmp_path / "both"
    both.mkdir()
    for name in ("one", "two"):
        (both / name / "wal").mkdir(parents=True)
    done = memento("replay", str(both))
    assert done.returncode == 4 and "several subdirectories are: one, two; name one of them" in done.stderr
    # The console script, as a user runs it.
    script = subprocess.run(
        [*MEMENTO, "replay", str(data), "--decoder", "ottermq"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert counts(json.loads(script.stdout)) == {"counted": 4, "other": 1}
    assert script.stderr.strip() == f"memento: using {data / 'log'}"
    # The log directory itself still works as before, without the note.
    direct = memento("inspect", str(data / "log"))
    assert direct.returncode in (0, 1) and "using" not in direct.stderr
