"""The spare segment: zero-filled in the background, renamed into place at rollover, never left over."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from memento.disk import DiskIO
from memento.log import Log
from memento.spare import SPARE_DIR, SPARE_NAME, SparePreparer

from .helpers import wal_files

SEG = 16 * 1024


def test_rollover_uses_the_prepared_spare(tmp_path: Path) -> None:
    spare = tmp_path / SPARE_DIR / SPARE_NAME
    with Log.open(tmp_path, segment_size=SEG) as log:
        for _ in range(10):
            log.append(1, b"a" * 1000)  # over half of the first segment
        log.sync()  # the flush that crosses half of the segment starts the preparation
        log._spares.wait()
        inode = spare.stat().st_ino
        assert spare.read_bytes() == bytes(SEG)
        for _ in range(10):
            log.append(1, b"b" * 1000)  # rolls over
        log.sync()
        second = wal_files(tmp_path)[1]
        assert second.stat().st_ino == inode and second.stat().st_size == SEG
    assert not (tmp_path / SPARE_DIR).exists()
    with Log.open(tmp_path, segment_size=SEG) as log:
        assert len(list(log.replay())) == 20


def test_leftover_spare_is_dropped_on_open(tmp_path: Path) -> None:
    Log.open(tmp_path).close()
    (tmp_path / SPARE_DIR).mkdir()
    (tmp_path / SPARE_DIR / SPARE_NAME).write_bytes(os.urandom(100))
    with Log.open(tmp_path) as log:
        assert not (tmp_path / SPARE_DIR).exists()
        assert log.append(1, b"x") == 1


class CountingFullDisk(DiskIO):
    """A disk with no room for a spare: preallocation fails with ENOSPC (counted)."""

    def __init__(self) -> None:
        self.attempts = 0

    def preallocate(self, fd: int, size: int) -> None:
        self.attempts += 1
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_failed_spare_is_not_retried_at_once(tmp_path: Path) -> None:
    """The writer asks for a spare after every batch past half a segment; on a full disk each attempt
    would fill it to the last block and delete the file again, many times a second."""
    disk = CountingFullDisk()
    spares = SparePreparer(str(tmp_path / SPARE_DIR), disk)
    spares.start(SEG)
    spares.wait()
    assert disk.attempts == 1 and not (tmp_path / SPARE_DIR / SPARE_NAME).exists()
    for _ in range(20):
        spares.start(SEG)
        spares.wait()
    assert disk.attempts == 1
    assert spares.take(SEG) is None


def test_preallocate_refuses_what_cannot_fit_without_allocating(tmp_path: Path) -> None:
    path = tmp_path / "f"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        real = os.fstatvfs(fd)
        free = real.f_bavail * real.f_frsize
        with pytest.raises(OSError) as caught:
            DiskIO().preallocate(fd, free + (1 << 30))  # more than the file system has
        assert caught.value.errno == errno.ENOSPC and "bytes needed" in str(caught.value)
        assert os.fstat(fd).st_blocks == 0  # nothing was taken from the disk
        DiskIO().preallocate(fd, SEG)
        assert os.fstat(fd).st_size == SEG
    finally:
        os.close(fd)
