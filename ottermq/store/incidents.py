"""What the store does when its journal fails, suspends on a full disk, or resumes: say why, and raise or
clear the journal alarm that blocks publishers.

Strategy: the journal calls these from the writer's report (store.py wires them); each logs one line an
operator can act on (which file system, how many bytes, which limit) and sets the broker's alarm.
"""

from __future__ import annotations

import errno
import logging
import os
from typing import TYPE_CHECKING, Final

from ottermq.broker.alarms import ALARM_JOURNAL

if TYPE_CHECKING:
    from ottermq.store.store import DurableStore

log: Final = logging.getLogger("ottermq.store")


def _file_system_size(path: str) -> int | None:
    """Total bytes of the file system holding `path` (None if unreadable)."""
    try:
        stat = os.statvfs(path)
    except OSError:
        return None
    return stat.f_blocks * stat.f_frsize


class JournalIncidents:
    """The journal's failure, suspension and resumption, reported for one store."""

    def __init__(self, store: DurableStore) -> None:
        self.store = store

    def failed(self, error: BaseException) -> None:
        log.error(
            f"the journal failed; nothing further is confirmed and publishers are blocked: {error}",
            extra={"lsn": self.store.journal.durable_position},
        )
        # An alarm of its own: the free-disk monitor must not clear it when space looks fine again.
        if self.store.broker is not None:
            self.store.broker.set_alarm(ALARM_JOURNAL, True)

    def suspended(self, error: OSError) -> None:
        if error.errno in (errno.EMFILE, errno.ENFILE):
            why = (
                f"out of file descriptors ({error}): nothing further is confirmed and publishers are "
                "blocked until writing resumes (retrying); raise the open-file limit (ulimit -n) or "
                "lower connection_max"
            )
        else:
            why = (
                f"the disk is full ({error}): nothing further is confirmed and publishers are blocked "
                f"until writing resumes; the log needs {self.store.log.segment_size} bytes free in "
                f"{self.store.log.wal_dir} for its next segment (retrying)"
            )
        log.error(f"the journal is suspended, {why}", extra={"lsn": self.store.journal.durable_position})
        total = _file_system_size(self.store.log.wal_dir)
        segment_size = self.store.log.segment_size
        if total is not None and total < segment_size:
            log.error(
                f"the file system holding {self.store.log.wal_dir} is {total} bytes, smaller than one log "
                f"segment ({segment_size} bytes): writing cannot resume there; lower log_segment_size or "
                f"move data_dir to a larger file system",
            )
        if self.store.broker is not None:
            self.store.broker.set_alarm(ALARM_JOURNAL, True)

    def resumed(self, seconds: float) -> None:
        log.warning(
            "journal resumed",
            extra={"suspended_seconds": round(seconds, 3), "lsn": self.store.journal.durable_position},
        )
        if self.store.broker is not None and not self.store.streams.refusing():
            self.store.broker.set_alarm(ALARM_JOURNAL, False)

    def stream_failed(self, error: BaseException) -> None:
        """A stream's log failed or suspended (it logged why): publishers are blocked as for the journal."""
        if self.store.broker is not None:
            self.store.broker.set_alarm(ALARM_JOURNAL, True)

    def stream_resumed(self) -> None:
        store = self.store
        if store.broker is not None and not store.journal.failed and not store.streams.refusing():
            store.broker.set_alarm(ALARM_JOURNAL, False)
