"""Reading records back in log order: one pread serves a window of neighbouring records."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from memento.errors import CorruptRecord
from memento.log import WAL_DIR, Log
from memento.record import HEAD_SIZE, RecordPosition

from .helpers import flip


class CountingPread:
    """os.pread, counting its calls (the point of the window is fewer of them)."""

    def __init__(self) -> None:
        self.calls = 0
        self._pread = os.pread

    def __call__(self, fd: int, size: int, offset: int) -> bytes:
        self.calls += 1
        return self._pread(fd, size, offset)


def append_all(log: Log, payloads: list[bytes]) -> list[RecordPosition]:
    positions = []
    for i, payload in enumerate(payloads):
        log.append(1 + i % 3, payload)
        positions.append(log.last_position)
    return positions


def test_forward_reads_use_few_preads_and_return_every_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    payloads = [bytes([i % 251]) * (900 + i % 200) for i in range(2000)]
    with Log.open(tmp_path) as log:
        positions = append_all(log, payloads)
        log.sync()
        pread = CountingPread()
        monkeypatch.setattr(os, "pread", pread)
        for i, (position, payload) in enumerate(zip(positions, payloads, strict=True)):
            record = log.read(position)
            assert (record.lsn, record.type, record.payload, record.position) == (
                i + 1,
                1 + i % 3,
                payload,
                position,
            )
        # ~2 MB read forward: a handful of windows, not one pread per record.
        assert pread.calls < 40


def test_random_reads_stay_single(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    payloads = [bytes([i % 251]) * 1000 for i in range(600)]
    with Log.open(tmp_path) as log:
        positions = append_all(log, payloads)
        log.sync()
        order = list(range(599, -1, -7))
        pread = CountingPread()
        monkeypatch.setattr(os, "pread", pread)
        for i in order:
            assert log.read(positions[i]).payload == payloads[i]
        assert pread.calls == len(order)  # backwards: never a window


def test_window_past_the_written_end_is_read_again(tmp_path: Path) -> None:
    """A window read while the tail was being written holds zeros past it; records written after that
    are read from the disk, not from the stale window."""
    with Log.open(tmp_path) as log:
        first = append_all(log, [b"a" * 1000 for _ in range(3)])
        log.sync()
        for position in first:
            assert log.read(position).payload == b"a" * 1000
        later = append_all(log, [bytes([i]) * 1000 for i in range(50)])
        log.sync()
        for i, position in enumerate(later):
            assert log.read(position).payload == bytes([i]) * 1000
        # Staged, not yet written: served from memory even inside the window's range.
        staged = append_all(log, [b"s" * 10])
        assert log.read(staged[0]).payload == b"s" * 10


def test_damage_inside_a_window_is_reported(tmp_path: Path) -> None:
    payloads = [bytes([i]) * 1000 for i in range(20)]
    with Log.open(tmp_path) as log:
        positions = append_all(log, payloads)
        log.sync()
        flip(Path(log.segments[-1].path), positions[10].offset + HEAD_SIZE + 5)  # damaged while open
        for i in range(10):
            assert log.read(positions[i]).payload == payloads[i]
        with pytest.raises(CorruptRecord):
            log.read(positions[10])
        assert log.read(positions[11]).payload == payloads[11]


def test_reads_across_many_segments_keep_few_descriptors(tmp_path: Path) -> None:
    """Reading back records from every one of many sealed segments holds only a few descriptors: one per
    segment ever read would exhaust a low `ulimit -n` (the log then could not create its next segment)."""

    def open_fds() -> int:
        """Descriptors open on this log's segment files: not those the test runner opens, nor the spare
        segment the background preparer may be writing between two counts."""
        count = 0
        for name in os.listdir("/proc/self/fd"):
            try:
                target = os.readlink(f"/proc/self/fd/{name}")
            except OSError:
                continue  # closed meanwhile (the listing's own descriptor)
            count += target.startswith(str(tmp_path / WAL_DIR))
        return count

    with Log.open(tmp_path, segment_size=4096) as log:
        positions = append_all(log, [bytes([i % 251]) * 1500 for i in range(200)])
        log.sync()
        assert len(log.segments) > 24
        before = open_fds()
        for _ in range(2):
            for i, position in enumerate(positions):
                assert log.read(position).payload == bytes([i % 251]) * 1500
        assert open_fds() <= before + 8  # the LRU's size
    assert open_fds() < before
