"""TaskHealth and describe: the one-line causes of failed snapshots and reclaims (ctl status, /metrics)."""

from __future__ import annotations

import errno

from memento.errors import CorruptRecord
from memento.snapshot import SnapshotError
from ottermq.store.health import TaskHealth, describe, iso_time


def test_a_cause_is_one_line_naming_the_file_and_the_os_error() -> None:
    assert describe(FileNotFoundError(errno.ENOENT, "No such file or directory", "/d/wal/x.wal")) == (
        "/d/wal/x.wal: No such file or directory"
    )
    assert describe(OSError(errno.ENOSPC, "No space left on device")) == "No space left on device"
    assert describe(SnapshotError("snapshot store s: cannot save\\nLSN 3:\n  full")) == (
        "snapshot store s: cannot save\\nLSN 3: full"
    )
    assert describe(CorruptRecord("x.wal offset 64 LSN 1: record damaged since open")) == (
        "x.wal offset 64 LSN 1: record damaged since open"
    )
    assert describe(RuntimeError()) == "RuntimeError"


def test_failures_are_counted_and_the_last_error_stays_after_a_success() -> None:
    health = TaskHealth()
    assert health.status("snapshot") == {
        "snapshot_failures": 0,
        "snapshot_last_error": None,
        "snapshot_last_error_time": None,
        "snapshot_last_success_time": None,
    }
    assert health.failed(OSError(errno.EIO, "Input/output error", "f")) == "f: Input/output error"
    health.failed(OSError(errno.EIO, "Input/output error", "g"))
    health.succeeded()
    status = health.status("reclaim")
    assert status["reclaim_failures"] == 2 and status["reclaim_last_error"] == "g: Input/output error"
    assert status["reclaim_last_success_time"] is not None and status["reclaim_last_success_time"].endswith(
        "Z"
    )
    assert iso_time(0) == "1970-01-01T00:00:00Z"
