"""The spare segment: zero-filled in the background, renamed into place at rollover, never left over."""

from __future__ import annotations

import os
from pathlib import Path

from memento.log import Log
from memento.spare import SPARE_DIR, SPARE_NAME

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
