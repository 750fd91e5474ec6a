"""Every recovery fixture: `memento inspect` exits and reports as expected.json says, without touching the
directory, and Log.open recovers (or refuses) as it says. Plus: the generator rebuilds the same bytes."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from memento.cli import app
from memento.errors import CorruptRecord, RecoveryRefused, UnsupportedVersion
from memento.log import Log
from tools.gen_recovery_fixtures import BROKER_PREFIX, BROKER_SECTION, CASES, SEGMENT_SIZE, generate

FIXTURES = Path(__file__).resolve().parents[2] / "recovery-fixtures"
# broker-* cases are real broker logs: tests/integration/test_broker_fixtures.py checks them.
CASE_DIRS = sorted(
    p.parent for p in FIXTURES.glob("*/expected.json") if not p.parent.name.startswith(BROKER_PREFIX)
)


def tree(root: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under `root` (directories as '<dir>')."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "<dir>"
        for p in sorted(root.rglob("*"))
    }


def expected(case_dir: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((case_dir / "expected.json").read_text())
    return doc


def test_every_case_is_committed() -> None:
    assert {p.name for p in CASE_DIRS} == set(CASES)
    assert len(CASES) >= 25


@pytest.mark.parametrize("case_dir", CASE_DIRS, ids=lambda p: p.name)
def test_inspect(case_dir: Path) -> None:
    exp = expected(case_dir)
    data = case_dir / "data"
    before = tree(data)
    result = CliRunner().invoke(app, ["inspect", str(data), *exp.get("inspect_args", [])])
    assert result.exit_code == exp["inspect_exit"], result.output
    assert exp["message"] in result.output
    assert tree(data) == before, "inspect modified the fixture"
    as_json = CliRunner().invoke(app, ["inspect", "--json", str(data), *exp.get("inspect_args", [])])
    assert as_json.exit_code == exp["inspect_exit"]
    assert json.loads(as_json.output)["exit_code"] == exp["inspect_exit"]


@pytest.mark.parametrize("case_dir", CASE_DIRS, ids=lambda p: p.name)
def test_recovery(case_dir: Path, tmp_path: Path) -> None:
    exp = expected(case_dir)
    data = tmp_path / "data"
    shutil.copytree(case_dir / "data", data)
    args = exp.get("open_args", {})
    outcome = exp["recovery"]
    if outcome in ("refused", "unsupported"):
        error = UnsupportedVersion if outcome == "unsupported" else RecoveryRefused
        with pytest.raises(error) as info:
            Log.open(data, segment_size=SEGMENT_SIZE, **args)
        if outcome == "refused":
            assert not isinstance(info.value, UnsupportedVersion)
        assert exp["message"] in str(info.value)
        return
    with Log.open(data, segment_size=SEGMENT_SIZE, **args) as log:
        report = log.recovery_report
        said = "\n".join(report.warnings)
        if outcome == "clean":
            assert not report.warnings and not report.repaired, said
        else:
            assert report.warnings or report.repaired
            assert exp["message"] in said
        assert log.snapshot_lsn == exp["snapshot_lsn"]
        kept = exp["kept_lsns"]
        snap = exp["snapshot_lsn"]
        end = kept[1] if kept else snap
        assert log.end_lsn == end
        if kept is not None:
            assert log.segments[0].base_lsn == kept[0]
        if exp.get("full_replay", True):
            whole = list(range(kept[0], kept[1] + 1)) if kept else []
            assert [r.lsn for r in log.replay(after_lsn=0)] == whole
        else:
            with pytest.raises(CorruptRecord):
                list(log.replay(after_lsn=0))
        assert [r.lsn for r in log.replay()] == list(range(snap + 1, end + 1))
        # The repaired log takes appends and opens clean afterwards.
        log.append(1, b"after recovery")
    with Log.open(data, segment_size=SEGMENT_SIZE, **args) as again:
        assert not again.recovery_report.findings
        assert again.end_lsn == end + 1


def test_generator_reproduces_committed_fixtures(tmp_path: Path) -> None:
    generate(tmp_path)
    for case_dir in CASE_DIRS:
        assert tree(tmp_path / case_dir.name) == tree(case_dir), case_dir.name
    committed = (FIXTURES / "README.md").read_text().partition(BROKER_SECTION)[0]
    assert (tmp_path / "README.md").read_text() == committed
