"""Where `memento replay --to-lsn N` starts: the newest snapshot at or before N.

Strategy: the store keeps two snapshots (the newest and the one before), and space reclamation keeps every
record after the OLDER one, so the state at any LSN from the older snapshot on can be rebuilt from a
snapshot plus the records after it. Replaying from the first record instead works only while the log
still starts at LSN 1. A snapshot that does not verify is skipped for the next older one, as recovery
skips a damaged newest snapshot.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import lmdb

from memento.inspect import SNAPSHOT_DIR
from memento.snapshot import Snapshot, SnapshotStore


@dataclass(frozen=True, slots=True)
class Start:
    """The snapshot a replay starts from (None: the first record), and the LSNs of the snapshots kept."""

    snapshot: Snapshot | None
    kept: tuple[int, ...]
    skipped: tuple[str, ...] = ()  # why newer candidates at or before the target were not used

    def describe(self, target: int) -> str:
        """One line for stderr: which snapshot the replay uses and why."""
        if self.snapshot is not None:
            newer = [lsn for lsn in self.kept if lsn > self.snapshot.lsn]
            text = f"replaying from the snapshot at LSN {self.snapshot.lsn}"
            if newer:
                text += f", the newest at or before LSN {target} (kept: {_lsns(self.kept)})"
            if self.skipped:
                text += f"; skipped: {'; '.join(self.skipped)}"
            return text
        if not self.kept:
            return "replaying from the first record: there is no snapshot"
        held = "the snapshot is at LSN" if len(self.kept) == 1 else "the snapshots are at LSN"
        text = f"replaying from the first record: {held} {_lsns(self.kept)}, after LSN {target}"
        if self.skipped:
            text += f"; skipped: {'; '.join(self.skipped)}"
        return text


def _lsns(lsns: tuple[int, ...]) -> str:
    return ", ".join(str(lsn) for lsn in lsns)


def choose_start(root: Path, target: int) -> Start:
    """The newest snapshot of the log at `root` at or before `target` that verifies (read-only)."""
    with SnapshotStore(root / SNAPSHOT_DIR, readonly=True) as store:
        try:
            infos = store.list()
        except lmdb.Error:
            return Start(None, ())
        kept = tuple(info.lsn for info in infos)
        skipped: list[str] = []
        for info in reversed(infos):
            if info.lsn > target:
                continue
            snapshot = store.load(info)
            if snapshot is not None:
                return Start(snapshot, kept, tuple(skipped))
            skipped.append(info.damage or f"snapshot {info.lsn} does not verify")
        return Start(None, kept, tuple(skipped))
