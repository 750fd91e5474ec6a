"""A nearly full disk: rollovers make smaller segments instead of suspending the log.

When the file system has less than two segments of room, the next segment is a quarter of what is free
(at least 1 MiB), so appends (consumers' acks, above all) keep becoming durable while a whole segment
would no longer fit; only a disk that is really full suspends the log.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from memento.disk import DiskIO
from memento.log import Log

MiB = 1 << 20


class SmallDisk(DiskIO):
    """A file system with `room` bytes for segments: preallocations beyond it fail with ENOSPC."""

    def __init__(self, room: int) -> None:
        self.room = room
        self.allocated = 0

    def free_bytes(self, path: str) -> int:
        return self.room - self.allocated

    def preallocate(self, fd: int, size: int) -> None:
        if size > self.room - self.allocated:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.allocated += size
        super().preallocate(fd, size)


def test_rollover_on_a_nearly_full_disk_makes_a_smaller_segment(tmp_path: Path) -> None:
    disk = SmallDisk(room=4 * MiB + MiB // 2)
    record = b"x" * 4000
    with Log.open(tmp_path, segment_size=2 * MiB, disk=disk) as log:
        written = 0
        # 2 MiB + 2.5 MiB of room: a second full segment would not fit, a smaller one does.
        while written < 3 * MiB:
            log.append(1, record)
            written += len(record)
        log.sync()
        sizes = [info.size for info in log.segments]
        assert sizes[0] == 2 * MiB and len(sizes) >= 2
        assert all(size < 2 * MiB for size in sizes[1:])
        assert log.durable_lsn == log.end_lsn
    with Log.open(tmp_path, segment_size=2 * MiB) as log:
        assert [r.payload for r in log.replay()] == [record] * (written // len(record))


def test_a_roomy_disk_gets_full_segments(tmp_path: Path) -> None:
    disk = SmallDisk(room=64 * MiB)
    with Log.open(tmp_path, segment_size=MiB, disk=disk) as log:
        for _ in range(800):
            log.append(1, b"y" * 4000)
        log.sync()
        assert {info.size for info in log.segments} == {MiB}
