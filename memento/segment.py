"""Segment files: their names, their 64-byte header, and their crash-safe creation.

A segment is `wal/<seq:016x>-<base_lsn:016x>.wal`, preallocated with zeros, starting with a header and then
records from offset HEADER_SIZE. It is created as `<name>.tmp`, preallocated, its header written and synced,
then renamed and the directory synced: a segment under its final name always has a valid header. A
creation that fails before the rename removes its `*.tmp`, so that it can simply be tried again once the
disk has room (a failed sync is never retried: see `synced`).
"""

from __future__ import annotations

import contextlib
import mmap
import os
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, TypeVar

import crc32c

from memento.disk import DiskIO
from memento.errors import SyncFailed
from memento.private import create_private
from memento.spare import Spare

_T = TypeVar("_T")

MAGIC: Final = b"MEMWAL\r\n"  # \r\n catches a file mangled by text-mode transfers
FORMAT_VERSION: Final = 3
HEADER_SIZE: Final = 64
HEADER: Final = struct.Struct("<8sHHIQQQ")  # magic, version, flags, header size, seq, base LSN, file size
HEADER_CRC: Final = struct.Struct("<I")
# Since version 3 the padding holds the log's id (16 bytes at 44) and a second crc32c (at 60) over bytes
# 0..59; the first crc (at 40, over 0..39) stays in every version, so any reader can still tell a newer
# version from damage.
ID_VERSION: Final = 3
LOG_ID_SIZE: Final = 16
LOG_ID_AT: Final = HEADER.size + HEADER_CRC.size
ID_CRC_AT: Final = LOG_ID_AT + LOG_ID_SIZE
DEFAULT_SEGMENT_SIZE: Final = 64 << 20
MIN_SEGMENT_SIZE: Final = 4096
SUFFIX: Final = ".wal"
TMP_SUFFIX: Final = ".tmp"
NAME_RE: Final = re.compile(r"^([0-9a-f]{16})-([0-9a-f]{16})\.wal$")


@dataclass(frozen=True, slots=True)
class SegmentHeader:
    """The decoded header of a segment file."""

    version: int
    seq: int
    base_lsn: int
    size: int
    log_id: bytes | None = None  # the log this segment belongs to (version 3 on; None before)


def segment_name(seq: int, base_lsn: int) -> str:
    """The file name of segment `seq` whose first record has LSN `base_lsn`."""
    return f"{seq:016x}-{base_lsn:016x}{SUFFIX}"


def parse_name(name: str) -> tuple[int, int] | None:
    """(seq, base LSN) from a segment file name, or None when the name is not a segment's."""
    match = NAME_RE.match(name)
    if match is None:
        return None
    return int(match.group(1), 16), int(match.group(2), 16)


def encode_header(
    seq: int, base_lsn: int, size: int, version: int = FORMAT_VERSION, log_id: bytes = bytes(LOG_ID_SIZE)
) -> bytes:
    """The HEADER_SIZE bytes that open a segment file (`log_id` is written from version 3 on)."""
    fields = HEADER.pack(MAGIC, version, 0, HEADER_SIZE, seq, base_lsn, size)
    head = fields + HEADER_CRC.pack(crc32c.crc32c(fields))
    if version < ID_VERSION:
        return head.ljust(HEADER_SIZE, b"\0")
    if len(log_id) != LOG_ID_SIZE:
        raise ValueError(f"a log id is {LOG_ID_SIZE} bytes, not {len(log_id)}")
    head += log_id
    return (head + HEADER_CRC.pack(crc32c.crc32c(head))).ljust(HEADER_SIZE, b"\0")


def decode_header(data: bytes | memoryview | mmap.mmap) -> SegmentHeader | str:
    """The header at the start of `data`, or a sentence saying why it is not a valid one.

    A header whose crc verifies but whose version is newer than FORMAT_VERSION is returned as is: the
    caller reports it as an unsupported version rather than as damage.
    """
    if len(data) < HEADER_SIZE:
        return f"file is {len(data)} bytes, shorter than the {HEADER_SIZE}-byte header"
    magic, version, _flags, header_size, seq, base_lsn, size = HEADER.unpack_from(data)
    if magic != MAGIC:
        return f"bad magic {bytes(magic)!r}"
    (stored,) = HEADER_CRC.unpack_from(data, HEADER.size)
    if crc32c.crc32c(data[: HEADER.size]) != stored:
        return "header checksum mismatch"
    if not 1 <= version <= FORMAT_VERSION:
        return SegmentHeader(version, seq, base_lsn, size)
    if header_size != HEADER_SIZE:
        return f"header size {header_size} != {HEADER_SIZE}"
    if version < ID_VERSION:
        if any(data[LOG_ID_AT:HEADER_SIZE]):
            return "header padding is not zero"
        return SegmentHeader(version, seq, base_lsn, size)
    (stored_id_crc,) = HEADER_CRC.unpack_from(data, ID_CRC_AT)
    if crc32c.crc32c(data[:ID_CRC_AT]) != stored_id_crc:
        return "header checksum mismatch (log id)"
    if any(data[ID_CRC_AT + HEADER_CRC.size : HEADER_SIZE]):
        return "header padding is not zero"
    log_id = bytes(data[LOG_ID_AT:ID_CRC_AT])
    # All zeros: written by something that did not know the log (a tool, a test), so no claim to check.
    return SegmentHeader(version, seq, base_lsn, size, log_id if any(log_id) else None)


def create_segment(
    wal_dir: str,
    seq: int,
    base_lsn: int,
    size: int,
    disk: DiskIO,
    spare: Spare | None = None,
    *,
    log_id: bytes,
) -> tuple[int, str]:
    """Create segment `seq` crash-safely; returns (an O_RDWR fd on it, its path).

    Order: create <name>.tmp and preallocate it (or take a ready `spare` of that size, already
    preallocated and zero-filled), write and sync the header, rename, sync the directory. A crash at any
    point leaves either no segment (a *.tmp or spare that recovery drops) or a complete empty one.
    """
    path = os.path.join(wal_dir, segment_name(seq, base_lsn))
    if spare is not None:
        fd, tmp = spare.fd, spare.path
    else:
        tmp = path + TMP_SUFFIX
        fd = create_private(tmp, os.O_RDWR | os.O_TRUNC)
    renamed = False
    try:
        if spare is None:
            disk.preallocate(fd, size)
        disk.pwrite(fd, encode_header(seq, base_lsn, size, log_id=log_id), 0)
        synced(disk.fdatasync, fd)
        os.rename(tmp, path)
        renamed = True
        synced(disk.fsync_dir, wal_dir)
    except BaseException:
        os.close(fd)
        if not renamed:
            # Give back whatever the half-made file holds (a full disk is retried); recovery drops it anyway.
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        raise
    return fd, path


def synced(flush: Callable[[_T], None], target: _T) -> None:
    """`flush(target)` (an fdatasync or directory fsync), raising SyncFailed if it fails: such a failure is
    final, unlike a full disk met while creating or writing."""
    try:
        flush(target)
    except SyncFailed:
        raise
    except OSError as exc:
        name = getattr(flush, "__name__", "sync")
        raise SyncFailed(exc.errno, f"{name} failed: {exc.strerror or exc}") from exc
