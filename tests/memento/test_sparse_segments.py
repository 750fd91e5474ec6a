"""Sparse segments (a stream's): opening a log does not read the holes after its data, and finds exactly
what a scan of every byte finds.

A stream's segment is 500 MB, created sparse: it takes on disk what was written into it. Scanning the rest
byte by byte cost every restart about a second per stream, and on tmpfs each page read was allocated, so
every stream took its whole segment size of memory after a restart.
"""

from __future__ import annotations

import mmap
import os
import shutil
from pathlib import Path

import pytest

from memento.log import Log
from memento.record import encode
from memento.scan import scan_segment, zeros_from
from memento.segment import FORMAT_VERSION
from ottermq.store.streams import SparseDisk

from .helpers import segment_bytes, wal_files

MiB = 1024 * 1024
SIZE = 16 * MiB


def _sparse_file(path: Path, data: bytes, size: int, *writes: tuple[int, bytes]) -> int:
    """`data` at the start of a sparse file of `size` bytes, plus `writes` at their offsets; an fd."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    os.pwrite(fd, data, 0)
    os.ftruncate(fd, size)
    for offset, chunk in writes:
        os.pwrite(fd, chunk, offset)
    return fd


def test_zeros_from_finds_the_trailing_holes(tmp_path: Path) -> None:
    fd = _sparse_file(tmp_path / "f", b"x" * 5000, SIZE)
    try:
        start = zeros_from(fd, SIZE)
        assert 5000 <= start < SIZE  # block-aligned: the rest of the last written block is data
        assert os.pread(fd, SIZE - start, start) == bytes(SIZE - start)
    finally:
        os.close(fd)


@pytest.mark.parametrize("at", [SIZE // 2, SIZE - 1])
def test_zeros_from_is_after_data_behind_a_hole(tmp_path: Path, at: int) -> None:
    fd = _sparse_file(tmp_path / "f", b"x" * 100, SIZE, (at, b"j"))
    try:
        assert zeros_from(fd, SIZE) > at
    finally:
        os.close(fd)


def test_zeros_from_a_file_of_written_zeros_is_its_size(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(bytes(MiB))
    fd = os.open(path, os.O_RDONLY)
    try:
        assert zeros_from(fd, MiB) == MiB  # written zeros are data: read as before
    finally:
        os.close(fd)


def test_zeros_from_an_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"")
    fd = os.open(path, os.O_RDONLY)
    try:
        assert zeros_from(fd, 0) == 0
    finally:
        os.close(fd)


# Bytes after the end of data, where a torn write or damage could leave them: right after the records, in
# the middle of the hole, at the last byte, and a whole valid-looking record far after the data.
JUNK = {
    "none": [],
    "right after": [(-1, b"\x07\x00\x00\x00junk")],
    "mid hole": [(SIZE // 2, b"junk")],
    "last byte": [(SIZE - 1, b"\x01")],
    "later record": [(SIZE // 2, encode(1, 0, 4, b"written after the damage", 0, timed=FORMAT_VERSION >= 3))],
}


@pytest.mark.parametrize("junk", list(JUNK))
def test_a_scan_that_skips_the_holes_finds_what_a_scan_of_every_byte_finds(tmp_path: Path, junk: str) -> None:
    records = segment_bytes(1, 1, [b"alpha", b"bravo" * 50, b"charlie"], size=SIZE).rstrip(b"\0")
    writes = [(len(records) if offset == -1 else offset, chunk) for offset, chunk in JUNK[junk]]
    path = tmp_path / "0000000000000001-0000000000000001.wal"
    fd = _sparse_file(path, records, SIZE, *writes)
    try:
        with mmap.mmap(fd, 0, access=mmap.ACCESS_READ) as data:
            skipping = scan_segment(path.name, data, zeros=zeros_from(fd, SIZE))
            every_byte = scan_segment(path.name, data)
    finally:
        os.close(fd)
    assert skipping == every_byte
    assert (skipping.damage is None) == (junk == "none")


def test_a_torn_tail_behind_a_hole_is_repaired_at_open(tmp_path: Path) -> None:
    root = tmp_path / "log"
    log = Log.open(root, segment_size=SIZE, disk=SparseDisk())
    for i in range(10):
        log.append(1, b"record %d" % i)
    log.sync()
    log.close()
    (segment,) = wal_files(root)
    fd = os.open(segment, os.O_RDWR)
    try:
        os.pwrite(fd, b"torn", SIZE - 4)  # junk at the very end, behind megabytes of holes
    finally:
        os.close(fd)
    log = Log.open(root, segment_size=SIZE, disk=SparseDisk())
    try:
        assert log.end_lsn == 10
        assert [bytes(r.payload) for r in log.replay()] == [b"record %d" % i for i in range(10)]
    finally:
        log.close()
    with segment.open("rb") as f:
        f.seek(SIZE - 4)
        assert f.read() == bytes(4)  # zeroed, so that later appends never meet it
    assert any((root / "quarantine").iterdir())


def _tmpfs() -> Path:
    shm = Path("/dev/shm")
    if not shm.is_dir() or os.statvfs(shm).f_bsize == 0:
        pytest.skip("no /dev/shm")
    with open("/proc/mounts") as mounts:
        if not any(line.split()[1] == str(shm) and line.split()[2] == "tmpfs" for line in mounts):
            pytest.skip("/dev/shm is not tmpfs")
    return shm


def test_reopening_a_sparse_log_on_tmpfs_does_not_fill_its_segment(tmp_path: Path) -> None:
    """On tmpfs a page read through an mmap is allocated: a scan of the holes would take the whole
    segment's size of memory."""
    shm = _tmpfs()
    root = shm / f"ottermq-test-{os.getpid()}-{tmp_path.name}"
    size = 256 * MiB
    try:
        log = Log.open(root, segment_size=size, disk=SparseDisk())
        log.append(1, b"x" * 1000)
        log.sync()
        log.close()
        for _ in range(2):
            log = Log.open(root, segment_size=size, disk=SparseDisk())
            log.close()
        (segment,) = wal_files(root)
        assert os.stat(segment).st_size == size
        assert os.stat(segment).st_blocks * 512 < MiB
    finally:
        shutil.rmtree(root, ignore_errors=True)
