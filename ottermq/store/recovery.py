"""Rebuilding a broker from the log when the store opens, and what that found (`RecoveryInfo`).

Strategy: `replay_log` (ottermq.store.replay) loads the snapshot and applies the records after it; this
module decides what the rest of the start needs to know: whether the last run crashed (the running mark
is still there, or the log holds records after the last snapshot, or that snapshot was not clean), a
fresh log (then the broker's defaults are created), and how many messages came back. Recovered messages
are made ready only then: redelivered after a crash, exactly as recorded after a clean stop.
"""

from __future__ import annotations

import errno
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from memento.log import Log
from ottermq.store.replay import replay_log
from ottermq.store.salvage import drop_lost, find_lost

if TYPE_CHECKING:
    from ottermq.broker.broker import Broker

log: Final = logging.getLogger("ottermq.store")

# Present while a broker serves from the log; a start that finds it knows the last run did not stop
# cleanly, even when nothing was logged after the last (clean) snapshot.
RUNNING_MARK: Final = "ottermq-running"


@dataclass(slots=True)
class RecoveryInfo:
    """What opening the store found: for the start-up log lines and for tests."""

    snapshot_lsn: int = 0
    end_lsn: int = 0
    replayed: int = 0
    crashed: bool = False
    fresh: bool = False
    messages: int = 0
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)
    quarantined: list[str] = field(default_factory=list)
    # Messages dropped at start because their bodies lie in damaged or dropped parts of the log, by
    # (vhost, queue), and the lines saying so.
    lost: dict[tuple[str, str], int] = field(default_factory=dict)
    lost_lines: list[str] = field(default_factory=list)
    salvaged: bool = False  # salvage changed the log or its snapshots (the store snapshots at once)


def rebuild(
    broker: Broker,
    memento_log: Log,
    info: RecoveryInfo,
    reader: Callable[[int, int], object],
    defaults: bool = True,
) -> RecoveryInfo:
    """Replay `memento_log` into `broker` (made with `defaults=False`) and fill `info`; `info`. A fresh
    log gets the broker's defaults (user, vhost) unless not `defaults` (a replication follower writes no
    record of its own). Held
    messages whose bodies lie in damaged or dropped parts of the log (`reader(msg_id, loc)` cannot read
    them back) are dropped now, counted per queue."""
    started = time.monotonic()
    report = memento_log.recovery_report
    info.warnings = list(report.warnings)
    info.quarantined = list(report.quarantined)
    info.salvaged = report.salvaged or report.snapshots_replaced
    snapshot = memento_log.snapshot
    clean, info.snapshot_lsn, replayed = replay_log(broker, memento_log)
    lost = find_lost(broker, memento_log, reader)
    if lost:
        info.lost = {key: len(entries) for key, entries in lost.items()}
        info.lost_lines = drop_lost(lost, broker)
        info.salvaged = True
    info.replayed = replayed
    info.end_lsn = memento_log.end_lsn
    info.fresh = snapshot is None and memento_log.end_lsn == 0
    mark = memento_log.path / RUNNING_MARK
    running = os.path.lexists(mark)
    if running and not mark.is_file():
        # Serving would fail on it later (start() opens it): say so now, before anything is served.
        raise IsADirectoryError(
            errno.EISDIR, "not a regular file (the broker keeps its running mark there)", str(mark)
        )
    # A clean stop is known from the snapshot (a clean one, nothing after it) or from Memento's MARK (closed
    # cleanly at the LSN the log ends at: a full replay past an unusable snapshot store is no crash).
    stopped_cleanly = report.clean_stop_lsn is not None and report.clean_stop_lsn == memento_log.end_lsn
    info.crashed = not info.fresh and (running or not (stopped_cleanly or (clean and replayed == 0)))
    if info.fresh and defaults:
        broker.create_defaults()
    for vhost in broker.vhosts.values():
        vhost.recovered(info.crashed)
    info.messages = sum(
        queue.logged_count for vhost in broker.vhosts.values() for queue in vhost.queues.values()
    )
    info.seconds = time.monotonic() - started
    return info


def report_recovery(info: RecoveryInfo) -> None:
    """Log what recovery found and did (repairs first, as warnings; messages lost at error level)."""
    for warning in info.warnings:
        log.warning(f"recovery: {warning}")
    for name in info.quarantined:
        log.warning(f"recovery: damaged bytes kept in {name}")
    for line in info.lost_lines:
        log.error(line)
    log.info(
        "recovered" if not info.fresh else "new log created",
        extra={
            "snapshot_lsn": info.snapshot_lsn,
            "end_lsn": info.end_lsn,
            "replayed": info.replayed,
            "crashed": info.crashed,
            "messages": info.messages,
            "seconds": round(info.seconds, 3),
        },
    )
