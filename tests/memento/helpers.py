"""Shared helpers for the Memento tests: build segment bytes, damage files on purpose."""

from __future__ import annotations

import errno
import os
from pathlib import Path

from memento.disk import DiskIO
from memento.log import WAL_DIR
from memento.record import TYPE_SEAL, encode
from memento.segment import FORMAT_VERSION, HEADER_SIZE, encode_header, segment_name

SEG_SIZE = 64 * 1024


def segment_bytes(
    seq: int,
    base: int,
    payloads: list[bytes],
    *,
    size: int = 4096,
    seal: bool = False,
    rtype: int = 1,
    version: int = FORMAT_VERSION,
    time: int = 0,
) -> bytes:
    """A whole preallocated segment file holding `payloads` as records base, base+1, ... in the layout of
    format `version`; record i has time `time + i` (from version 3 on)."""
    data = bytearray(encode_header(seq, base, size, version=version))
    timed = version >= 3
    for i, payload in enumerate(payloads):
        data += encode(rtype, 0, base + i, payload, time + i, timed=timed)
    if seal:
        data += encode(TYPE_SEAL, 0, base + len(payloads), b"", time + len(payloads), timed=timed)
    assert len(data) <= size
    return bytes(data.ljust(size, b"\0"))


def wal_files(root: Path) -> list[Path]:
    """The segment files of a log directory, oldest first."""
    return sorted((root / WAL_DIR).glob("*.wal"))


def patch(path: Path, offset: int, data: bytes) -> None:
    """Overwrite bytes of a file in place."""
    fd = os.open(path, os.O_RDWR)
    try:
        os.pwrite(fd, data, offset)
    finally:
        os.close(fd)


def flip(path: Path, offset: int, bit: int = 0) -> None:
    """Flip one bit of a file."""
    with open(path, "rb") as f:
        f.seek(offset)
        byte = f.read(1)[0]
    patch(path, offset, bytes([byte ^ (1 << bit)]))


def write_segments(root: Path, segments: list[tuple[int, int, bytes]]) -> None:
    """Create a log directory by hand from (seq, base, file bytes)."""
    (root / WAL_DIR).mkdir(parents=True, exist_ok=True)
    for seq, base, data in segments:
        (root / WAL_DIR / segment_name(seq, base)).write_bytes(data)


class FillableDisk(DiskIO):
    """New segments cannot be made while `full` (ENOSPC), as on a file system with no room left: neither
    preallocated nor taken from a spare finished in the background (its header write fails)."""

    def __init__(self) -> None:
        self.full = False
        self.refusals = 0

    def _refuse(self) -> None:
        self.refusals += 1
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def preallocate(self, fd: int, size: int) -> None:
        if self.full:
            self._refuse()
        super().preallocate(fd, size)

    def pwrite(self, fd: int, data: bytes | bytearray | memoryview, offset: int) -> None:
        if self.full and offset == 0 and len(data) == HEADER_SIZE:
            self._refuse()
        super().pwrite(fd, data, offset)
