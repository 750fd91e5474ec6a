"""Shared helpers for the Memento tests: build segment bytes, damage files on purpose."""

from __future__ import annotations

import os
from pathlib import Path

from memento.log import WAL_DIR
from memento.record import TYPE_SEAL, encode
from memento.segment import encode_header, segment_name

SEG_SIZE = 64 * 1024


def segment_bytes(seq: int, base: int, payloads: list[bytes], *, size: int = 4096, seal: bool = False,
                  rtype: int = 1) -> bytes:
    """A whole preallocated segment file holding `payloads` as records base, base+1, ..."""
    data = bytearray(encode_header(seq, base, size))
    for i, payload in enumerate(payloads):
        data += encode(rtype, 0, base + i, payload)
    if seal:
        data += encode(TYPE_SEAL, 0, base + len(payloads), b"")
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
