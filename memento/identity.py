"""Who a log is and how far it got: the IDENTITY file (the log's id) and the MARK file (the newest segment
ever created, and whether the last stop was clean, at which LSN).

Strategy: a log gets a random 128-bit id when it is created. It is written once to IDENTITY (crash-safely:
a `.tmp`, synced, renamed, directory synced) and into every segment header (format version 3), so that a
segment or a snapshot store from another log is refused instead of served. MARK is rewritten in place at
each rollover, at open and at close; it has two slots (in different 512-byte sectors) written alternately
with a growing generation, so a write torn by a crash leaves the other slot, the previous state, valid.
Both are checked by `memento.recovery.classify` (through `IdentityCheck`), the same way for `Log.open` and
for `memento inspect`. FORMAT.md ("Identity and high-water mark") gives the bytes and the rules.
"""

from __future__ import annotations

import contextlib
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import crc32c

from memento.errors import SyncFailed
from memento.private import create_private
from memento.segment import LOG_ID_SIZE

IDENTITY_FILE: Final = "IDENTITY"
MARK_FILE: Final = "MARK"
TMP_SUFFIX: Final = ".tmp"

IDENTITY_MAGIC: Final = b"MEMLOGID"
IDENTITY_VERSION: Final = 1
IDENTITY: Final = struct.Struct("<8sHH16s")  # magic, version, reserved, log id
CRC: Final = struct.Struct("<I")
IDENTITY_SIZE: Final = IDENTITY.size + CRC.size

MARK_MAGIC: Final = b"MEMMARK\n"
MARK_VERSION: Final = 1
# magic, version, flags, reserved, generation, log id, newest seq, newest base LSN, clean end LSN
MARK_SLOT: Final = struct.Struct("<8sHHIQ16sQQQ")
MARK_SLOT_SIZE: Final = MARK_SLOT.size + CRC.size
MARK_SLOT_AT: Final = (0, 512)  # one slot per sector: a torn write damages one slot at most
MARK_FILE_SIZE: Final = 1024
FLAG_CLEAN: Final = 0x0001


def new_log_id() -> bytes:
    """A fresh random log id."""
    return os.urandom(LOG_ID_SIZE)


def show_id(log_id: bytes | None) -> str:
    """A log id as printed in messages (32 hex digits), or "none" for a segment older than version 3."""
    return log_id.hex() if log_id is not None else "none"


# -- IDENTITY ------------------------------------------------------------------------------------------


def encode_identity(log_id: bytes) -> bytes:
    """The bytes of an IDENTITY file."""
    head = IDENTITY.pack(IDENTITY_MAGIC, IDENTITY_VERSION, 0, log_id)
    return head + CRC.pack(crc32c.crc32c(head))


def decode_identity(data: bytes) -> bytes | str:
    """The log id in IDENTITY file bytes, or a sentence saying why they are not a valid identity."""
    if len(data) != IDENTITY_SIZE:
        return f"{len(data)} bytes, not {IDENTITY_SIZE}"
    magic, version, _reserved, log_id = IDENTITY.unpack_from(data)
    if magic != IDENTITY_MAGIC:
        return f"bad magic {magic!r}"
    (stored,) = CRC.unpack_from(data, IDENTITY.size)
    if crc32c.crc32c(data[: IDENTITY.size]) != stored:
        return "checksum mismatch"
    if version != IDENTITY_VERSION:
        return f"unsupported identity version {version}"
    return bytes(log_id)


def read_identity(root: Path) -> bytes | str | None:
    """The log id in `root`/IDENTITY; None when the file is missing; a sentence when it is damaged.
    Other OSErrors (permissions, I/O) propagate."""
    try:
        data = (root / IDENTITY_FILE).read_bytes()
    except FileNotFoundError:
        return None
    found = decode_identity(data)
    return f"{root / IDENTITY_FILE}: {found}" if isinstance(found, str) else found


def write_identity(root: Path, log_id: bytes) -> None:
    """Write `root`/IDENTITY crash-safely: a crash leaves the old file (or none) or the new one whole."""
    _replace_durably(root / IDENTITY_FILE, encode_identity(log_id))


def drop_leftovers(root: Path) -> list[str]:
    """Delete `IDENTITY.tmp` / `MARK.tmp` left by a crash while creating them; the names deleted."""
    dropped = []
    for name in (IDENTITY_FILE + TMP_SUFFIX, MARK_FILE + TMP_SUFFIX):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(root / name)
            dropped.append(name)
    return dropped


def _replace_durably(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + TMP_SUFFIX)
    fd = create_private(tmp, os.O_WRONLY | os.O_TRUNC)
    try:
        os.pwrite(fd, data, 0)
        os.fdatasync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, path)
    _fsync_dir(path.parent)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# -- MARK ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Mark:
    """One state of the MARK file: the newest segment created, and the clean stop (if the last was)."""

    generation: int
    log_id: bytes
    newest_seq: int  # 0: no segment created yet
    newest_base: int
    clean_lsn: int | None  # the last LSN written when the log was closed cleanly; None while open/crashed


def encode_mark_slot(mark: Mark) -> bytes:
    """One slot's bytes."""
    flags = FLAG_CLEAN if mark.clean_lsn is not None else 0
    body = MARK_SLOT.pack(
        MARK_MAGIC,
        MARK_VERSION,
        flags,
        0,
        mark.generation,
        mark.log_id,
        mark.newest_seq,
        mark.newest_base,
        mark.clean_lsn or 0,
    )
    return body + CRC.pack(crc32c.crc32c(body))


def decode_mark_slot(data: bytes) -> Mark | None:
    """The state in one slot, or None when the slot does not verify (empty, torn, damaged)."""
    if len(data) < MARK_SLOT_SIZE:
        return None
    magic, version, flags, _res, generation, log_id, seq, base, clean = MARK_SLOT.unpack_from(data)
    (stored,) = CRC.unpack_from(data, MARK_SLOT.size)
    if magic != MARK_MAGIC or version != MARK_VERSION or crc32c.crc32c(data[: MARK_SLOT.size]) != stored:
        return None
    return Mark(generation, bytes(log_id), seq, base, clean if flags & FLAG_CLEAN else None)


def decode_mark(data: bytes) -> Mark | str:
    """The newest valid state of MARK file bytes, or a sentence when no slot verifies."""
    slots = [decode_mark_slot(data[at : at + MARK_SLOT_SIZE]) for at in MARK_SLOT_AT]
    valid = [s for s in slots if s is not None]
    if not valid:
        return f"{len(data)} bytes, no valid slot"
    return max(valid, key=lambda s: s.generation)


def read_mark(root: Path) -> Mark | str | None:
    """The state in `root`/MARK; None when missing; a sentence naming the file when it is damaged."""
    try:
        data = (root / MARK_FILE).read_bytes()
    except FileNotFoundError:
        return None
    found = decode_mark(data)
    return f"{root / MARK_FILE}: {found}" if isinstance(found, str) else found


class MarkFile:
    """The MARK file of an open log, rewritten in place (alternate slots, fdatasync after each write)."""

    def __init__(self, root: Path, current: Mark | None) -> None:
        self.path = root / MARK_FILE
        self.current = current
        self._fd = -1
        if current is None or not self.path.exists():
            # Created whole (both slots' room) crash-safely; later writes never extend the file, so they
            # need no free space.
            first = current or Mark(0, bytes(LOG_ID_SIZE), 0, 0, None)
            data = bytearray(MARK_FILE_SIZE)
            data[:MARK_SLOT_SIZE] = encode_mark_slot(first)
            _replace_durably(self.path, bytes(data))
            self.current = first
        self._fd = os.open(self.path, os.O_RDWR | os.O_CLOEXEC)

    def write(self, log_id: bytes, newest_seq: int, newest_base: int, clean_lsn: int | None) -> None:
        """Make this state durable (into the slot the current state is not in)."""
        generation = (self.current.generation if self.current is not None else 0) + 1
        mark = Mark(generation, log_id, newest_seq, newest_base, clean_lsn)
        os.pwrite(self._fd, encode_mark_slot(mark), MARK_SLOT_AT[generation % 2])
        try:
            os.fdatasync(self._fd)
        except OSError as exc:  # final, as for segments: what the file holds is unknown
            raise SyncFailed(exc.errno, f"fdatasync failed: {exc.strerror or exc}", str(self.path)) from exc
        self.current = mark

    def close(self) -> None:
        """Close the file descriptor."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
