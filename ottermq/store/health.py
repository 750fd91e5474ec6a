"""How the store's background work went: snapshots and space reclamation, each counted apart.

Strategy: a failed snapshot or reclaim must never stop the broker (the next one is tried later), but it
must not be silent either: a log that cannot snapshot never shrinks. Each kind of work keeps its number of
failures, the last error (one line naming the cause: the file and the OS error where there is one) with
its time, and the time of the last success; `ottermq ctl status` and `/metrics` show them.
"""

from __future__ import annotations

import datetime
import time
from dataclasses import dataclass
from typing import Any, Final

from memento.errors import MementoError
from memento.snapshot import SnapshotError

# Failures whose cause is the environment (a full disk, a permission, damage on disk): their message says
# everything, a traceback would only hide it. Anything else is a bug and keeps its traceback.
EXPECTED_FAILURES: Final = (OSError, MementoError, SnapshotError)


def describe(exc: BaseException) -> str:
    """One line naming the cause of `exc`: the file and the OS error where there is one."""
    if isinstance(exc, OSError) and exc.strerror:
        where = exc.filename if exc.filename is not None else ""
        return f"{where}: {exc.strerror}" if where else exc.strerror
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def iso_time(when: float | None) -> str | None:
    """A unix time as ISO 8601 UTC (to the second), or None."""
    if when is None:
        return None
    moment = datetime.datetime.fromtimestamp(when, datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(slots=True)
class TaskHealth:
    """The outcomes of one kind of background work since the broker started (times are unix times)."""

    failures: int = 0
    last_error: str | None = None
    last_error_time: float | None = None
    last_success_time: float | None = None

    def failed(self, exc: BaseException) -> str:
        """Count a failure; the one-line cause."""
        self.failures += 1
        self.last_error = describe(exc)
        self.last_error_time = time.time()
        return self.last_error

    def succeeded(self) -> None:
        """Note a success (the last error stays, with its time, until the next one)."""
        self.last_success_time = time.time()

    def status(self, kind: str) -> dict[str, Any]:
        """The `ctl status` fields, prefixed with `kind`."""
        return {
            f"{kind}_failures": self.failures,
            f"{kind}_last_error": self.last_error,
            f"{kind}_last_error_time": iso_time(self.last_error_time),
            f"{kind}_last_success_time": iso_time(self.last_success_time),
        }
