"""The `memento` command line: inspect, verify and replay on real log directories, and bad input."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import lmdb
import pytest
from typer.testing import CliRunner

from memento import inspect_decoders
from memento.cli import app
from memento.log import Log
from memento.snapshot import CHUNK_KEY, CHUNK_PREFIX

from .helpers import crashed

SEGMENT = 4096


def run(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


def make_log(path: Path, count: int, snapshot_at: int | None = None, after: int = 0) -> None:
    with Log.open(path, segment_size=SEGMENT) as log:
        for i in range(1, count + 1):
            log.append(1 + i % 2, b"p" * (i % 30))
        log.sync()
        if snapshot_at is not None:
            log.save_snapshot(snapshot_at, b"S" * snapshot_at)
        for i in range(after):
            log.append(3, b"tail %d" % i)


class Summer:
    """A test decoder: sums the first payload byte of every record on top of the snapshot's length."""

    def __init__(self) -> None:
        self.total = 0
        self.last = 0

    def load_snapshot(self, lsn: int, state: bytes) -> None:
        self.total = len(state)

    def apply(self, record: inspect_decoders.RecordView) -> None:
        self.total += len(record.payload)
        self.last = record.lsn

    def projection(self) -> dict[str, Any]:
        return {"total": self.total, "last": self.last}


class Broken(Summer):
    def apply(self, record: inspect_decoders.RecordView) -> None:
        raise ValueError(f"cannot decode LSN {record.lsn}")


@pytest.fixture
def logdir(tmp_path: Path) -> Path:
    path = tmp_path / "log"
    make_log(path, 150, snapshot_at=100, after=20)
    (path / "LOCK").unlink()
    return path


def test_inspect_text_and_json(logdir: Path) -> None:
    before = sorted(p.name for p in logdir.rglob("*"))
    result = run("inspect", str(logdir))
    assert result.exit_code == 0, result.output
    assert "recovery starts from LSN 100" in result.output
    assert "verdict: clean (exit 0)" in result.output and "sealed" in result.output
    doc = json.loads(run("inspect", "--json", str(logdir)).output)
    assert doc["end_lsn"] == 170 and doc["snapshot_lsn"] == 100 and doc["findings"] == []
    assert sum(s["records"] for s in doc["segments"]) == 170
    listed = run("inspect", "--json", "--records", "--decoder", "generic", str(logdir)).output
    assert [json.loads(line)["lsn"] for line in listed.splitlines()] == list(range(1, 171))
    by_type: dict[str, int] = {}
    for seg in doc["segments"]:
        for t, n in seg["records_by_type"].items():
            by_type[t] = by_type.get(t, 0) + n
    assert by_type == {"1": 75, "2": 75, "3": 20}
    assert doc["snapshots"][0]["lsn"] == 100
    # Read-only: no LOCK taken, no lock.mdb created, nothing added.
    assert sorted(p.name for p in logdir.rglob("*")) == before


def test_inspect_records_text(logdir: Path) -> None:
    result = run("inspect", "--records", "--decoder", "generic", str(logdir))
    lsn, _time, rtype = result.output.splitlines()[-1].split()[:3]  # time: "-" before format version 3
    assert (lsn, rtype) == ("170", "3")


def test_inspect_while_log_is_open(tmp_path: Path) -> None:
    with Log.open(tmp_path, segment_size=SEGMENT) as log:
        log.append(1, b"x")
        log.sync()
        result = run("inspect", str(tmp_path))
        assert result.exit_code == 0 and "LSN 1..1" in result.output


def test_inspect_torn_tail_then_types(logdir: Path) -> None:
    crashed(logdir)  # a torn tail is what a crash leaves; after a clean stop it would be refused
    tail = sorted((logdir / "wal").iterdir())[-1]
    with open(tail, "r+b") as f:  # damage the last record's crc
        data = f.read()
        end = len(data.rstrip(b"\0"))
        f.seek(end - 1)
        f.write(bytes([data[end - 1] ^ 1]))
    result = run("inspect", str(logdir))
    assert result.exit_code == 1 and "torn-tail" in result.output
    assert run("verify", str(logdir)).exit_code == 1
    # With --types 1,2 the type-3 records count as unsupported.
    assert run("inspect", "--types", "1-2", str(logdir)).exit_code == 3
    assert run("inspect", "--types", "x", str(logdir)).exit_code == 4


def test_verify_checks_every_snapshot(logdir: Path) -> None:
    with Log.open(logdir, segment_size=SEGMENT) as log:
        log.save_snapshot(150, b"newer")
    (logdir / "LOCK").unlink()
    assert run("verify", str(logdir)).exit_code == 0
    env = lmdb.open(str(logdir / "snapshots"))
    with env.begin(write=True) as txn:  # damage the OLDER snapshot: recovery would not notice
        key = CHUNK_KEY.pack(CHUNK_PREFIX, 100, 0)
        txn.put(key, b"\0" + (txn.get(key) or b"")[1:])
    env.close()
    assert run("inspect", str(logdir)).exit_code == 0
    result = run("verify", str(logdir))
    assert result.exit_code == 2 and "snapshot 100: chunk 0/1 checksum mismatch" in result.output


def test_replay_generic(logdir: Path) -> None:
    result = run("replay", str(logdir))
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["snapshot_lsn"] == 100 and doc["first_lsn"] == 101 and doc["last_lsn"] == 170
    assert doc["records_by_type"] == {"1": 25, "2": 25, "3": 20}
    full = json.loads(run("replay", "--from-start", str(logdir)).stdout)
    assert full["snapshot_lsn"] is None and full["first_lsn"] == 1 and full["records"] == 170
    before = run("replay", "--to-lsn", "40", str(logdir))
    early = json.loads(before.stdout)
    assert early["snapshot_lsn"] is None and early["last_lsn"] == 40
    assert "replaying from the first record: the snapshot is at LSN 100, after LSN 40" in before.stderr


def test_replay_custom_decoders(logdir: Path) -> None:
    spec = f"{__name__}:Summer"
    doc = json.loads(run("replay", "--decoder", spec, "--to-lsn", "120", str(logdir)).stdout)
    expected = 100 + sum(i % 30 for i in range(101, 121))
    assert doc == {"total": expected, "last": 120}
    inspect_decoders.register("summer", Summer)
    assert json.loads(run("replay", "--decoder", "summer", str(logdir)).stdout)["last"] == 170
    assert "summer" in inspect_decoders.names()
    bad = run("replay", "--decoder", "nope", str(logdir))
    assert bad.exit_code == 4 and "unknown decoder 'nope'" in bad.output
    assert run("replay", "--decoder", "no.such.module:x", str(logdir)).exit_code == 4
    broken = run("replay", "--decoder", f"{__name__}:Broken", str(logdir))
    assert broken.exit_code == 4 and "cannot decode LSN 101" in broken.output


def test_replay_cannot_go_before_reclaimed_segments(tmp_path: Path) -> None:
    with Log.open(tmp_path, segment_size=SEGMENT) as log:
        for _ in range(300):
            log.append(1, b"r" * 40)
        log.sync()
        log.save_snapshot(290, b"state")
        log.reclaim(290, lambda _p: False)
    result = run("replay", "--to-lsn", "10", str(tmp_path))
    assert result.exit_code == 4 and "the log starts at LSN" in result.output


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("missing", "no such directory"),
        ("file", "is a file, not a log directory"),
        ("plain", "not a Memento log directory"),
    ],
)
def test_bad_input_is_one_line(tmp_path: Path, target: str, message: str) -> None:
    path = tmp_path / target
    if target == "file":
        path.write_text("hello")
    elif target == "plain":
        path.mkdir()
    for command in ("inspect", "verify", "replay"):
        result = run(command, str(path))
        assert result.exit_code == 4
        assert message in result.output and "Traceback" not in result.output
        assert result.output.count("\n") == 1


def test_console_script(logdir: Path, tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("memento")
    if not exe.exists():
        pytest.skip("console script not installed")
    ok = subprocess.run([str(exe), "inspect", str(logdir)], capture_output=True, text=True, check=False)
    assert ok.returncode == 0 and "verdict: clean" in ok.stdout
    bad = subprocess.run(
        [str(exe), "verify", str(tmp_path / "nope")], capture_output=True, text=True, check=False
    )
    assert bad.returncode == 4
    assert bad.stderr.strip() == f"memento: error: {tmp_path / 'nope'}: no such directory"
    copy = tmp_path / "copy"
    shutil.copytree(logdir, copy)
    assert subprocess.run([str(exe), "replay", str(copy)], capture_output=True, check=False).returncode == 0


def test_replay_stops_at_damage_and_says_so() -> None:
    data = Path(__file__).resolve().parents[2] / "recovery-fixtures" / "bit-flip-then-valid-records" / "data"
    end = json.loads(run("inspect", "--json", str(data)).output)["end_lsn"]
    result = run("replay", str(data))
    assert result.exit_code == 2
    assert f"replayed only up to LSN {end}" in result.output
    assert f'"last_lsn": {end}' in result.output


def test_parse_types() -> None:
    from memento.inspect import parse_types

    assert parse_types("1-3, 7,0x10") == frozenset({1, 2, 3, 7, 16})
    with pytest.raises(ValueError):
        parse_types("one")
