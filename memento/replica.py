"""What replication needs of a log: read durable records while a writer owns it (leader), append records
exactly as another log wrote them, cut the tail back to an LSN, and build a log directory from copied files
(follower).

Strategy: a leader streams its records as the version-3 record bytes (`len | crc | type | flags | reserved |
lsn | time | payload`), which for a version-3 segment are the file's own bytes: the follower checks the crc
of what it received and appends the same record (`Log.append_replica`), so both logs hold the same LSN,
type, flags, payload and time. Segment boundaries are each log's own (a follower rolls over when its own
segment is full); seals are not records and are never streamed.

`Cursor` reads forward from an LSN with plain preads of the segment files, only up to an LSN the caller
knows is durable, so it never meets a record the writer thread is still writing. `read_live` also reads
the batches in memory (under the log's lock), so a cursor may run on a thread of its own (a replication
leader's sender) while the owner's thread appends and an AsyncWriter flushes.

`truncate_after` drops the records after an LSN (a returning old leader drops what was never replicated),
crash-safely and without deleting anything: MARK is lowered first, later segments are moved whole to
quarantine/, the bytes after the cut are copied to quarantine/ and made durable before the segment is
truncated at the cut and preallocated again (FORMAT.md, "Replication").
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Final

import crc32c

from memento.errors import CorruptRecord
from memento.identity import Mark, MarkFile, encode_identity
from memento.identity import _fsync_dir as fsync_dir
from memento.identity import _replace_durably as replace_durably
from memento.private import create_private, private_dir
from memento.record import BODY_HEAD, HEAD, PREFIX, SEAL_SIZE, TYPE_SEAL, Frame, encode
from memento.segment import FORMAT_VERSION, HEADER_SIZE

if TYPE_CHECKING:
    from memento.log import Log
    from memento.staging import _Chunk, _Segment

_crc = crc32c.crc32c
_READ: Final = 1 << 20  # bytes a cursor reads at a time
IDENTITY_FILE: Final = "IDENTITY"


class Behind(Exception):
    """The records asked for are no longer in the log (reclaimed, or before its first segment)."""


def encode_wire(rtype: int, flags: int, lsn: int, when: int, payload: bytes | memoryview) -> bytes:
    """A record in the version-3 layout (what `Cursor.read` yields and `Log.append_replica` checks)."""
    return encode(rtype, flags, lsn, payload, when)


def decode_wire(data: bytes | memoryview, at: int) -> tuple[int, int, int, int, int, memoryview]:
    """(end offset, type, flags, lsn, time, payload) of the version-3 record at data[at:]; raises
    CorruptRecord when it is cut short or its crc does not match."""
    view = memoryview(data)
    if len(view) - at < HEAD.size:
        raise CorruptRecord(f"replicated record at {at}: cut short", offset=at)
    length, stored, rtype, flags, _res, lsn, when = HEAD.unpack_from(view, at)
    end = at + 8 + length
    if length < BODY_HEAD.size or end > len(view) or _crc(view[at + 8 : end]) != stored:
        raise CorruptRecord(f"replicated record at {at} (LSN {lsn}): checksum mismatch", offset=at, lsn=lsn)
    return end, rtype, flags, lsn, when, view[at + HEAD.size : end]


class Cursor:
    """Reads the records after an LSN from `log`'s segment files, in order, up to a durable LSN."""

    def __init__(self, log: Log, after_lsn: int, start: tuple[int, int, int] | None = None) -> None:
        """`start` = (segment seq, offset, LSN) of a record known to start there, at or before the first
        one to read and in the same segment (an index's entry): positioning walks from there instead of
        from the segment's first record. A hint that turns out wrong raises CorruptRecord on the read."""
        self.log = log
        self.next_lsn = after_lsn + 1  # the LSN of the next record to read
        self._seq = -1
        self._off = 0
        self._fd = -1
        self._start = start
        # Where the last read in memory stopped (a staged chunk and the offset in it): the next one goes
        # on from there instead of walking the chunk again.
        self._memory: tuple[_Chunk | None, int] = (None, 0)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def _segment(self) -> _Segment:
        """The segment holding `next_lsn` (positioning there by walking record headers)."""
        segs = list(self.log._segments)  # a copy: a sender thread reads while the owner rolls over
        if not segs or self.next_lsn < segs[0].base_lsn:
            raise Behind(f"LSN {self.next_lsn} is before the log's first segment")
        for i in range(len(segs) - 1, -1, -1):
            seg = segs[i]
            if seg.base_lsn <= self.next_lsn:
                break
        if seg.seq == self._seq and self._fd >= 0:
            return seg
        self.close()
        try:
            self._fd = os.open(seg.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise Behind(f"segment {seg.name} was reclaimed") from None
        self._seq = seg.seq
        start, self._start = self._start, None
        if start is not None and start[0] == seg.seq and start[2] <= self.next_lsn:
            self._off = _walk(self._fd, seg, self.next_lsn, start[1], start[2])
        else:
            self._off = _walk(self._fd, seg, self.next_lsn)
        return seg

    def read_live(self, max_bytes: int = _READ) -> list[bytes]:
        """The next records appended to the log, durable or not (a leader streams them while it syncs
        them itself): from the staged and in-flight batches in memory, or, for records before those,
        from the files (every record not in memory has been written whole). On any one thread.
        From memory an item may hold several whole records (the rest of a staged chunk, in one copy);
        `next_lsn` tells how many were read."""
        log = self.log
        with log._lock:
            chunks = list(log._written.chunks) if log._written is not None else []
            if log._inflight is not None:
                chunks.extend(log._inflight.chunks)
            chunks.extend(log._staged)
            held = next((chunk for chunk in chunks if len(chunk.data) >= HEAD.size), None)
            first = _lsn_at(held.data, 0) if held is not None else None
            if first is not None and self.next_lsn >= first:
                # Under the lock: a sender thread copies from chunks that appends on the owner's thread
                # are growing (and a memoryview held over a bytearray would make them fail to resize).
                return self._read_memory(chunks, max_bytes)
            # Everything before what is in memory is written (read under the lock: a record appended
            # after it would be staged, not yet in the files).
            upto = first - 1 if first is not None else log._next_lsn - 1
            # The records before `first` end where its chunk starts, and with nothing in memory the
            # written ones end at the tail's end: no read goes past that in its segment.
            if held is not None:
                until: tuple[int, int] | None = (held.segment.seq, held.offset)
            else:
                until = (log._tail.seq, log._tail_off) if log._tail is not None else None
        return self.read(upto, max_bytes, until, joined=True)

    def follow(self, other: Cursor) -> None:
        """Stand where `other` (a cursor of the same log) stands: the records between were sent by other
        means (a frame `other` read, sent to this cursor's follower too)."""
        self.close()
        self._seq = -1
        self.next_lsn = other.next_lsn
        self._memory = other._memory
        if other._seq >= 0:
            self._start = (other._seq, other._off, other.next_lsn)
        else:
            self._start = other._start

    def _read_memory(self, chunks: list[_Chunk], max_bytes: int) -> list[bytes]:
        log = self.log
        self.close()  # the file position no longer follows next_lsn: found again when needed
        self._seq = -1
        # The LSN that follows each chunk's last record: the next chunk's first, or the log's next.
        afters = [0] * len(chunks)
        after = log._next_lsn
        for i in range(len(chunks) - 1, -1, -1):
            afters[i] = after
            if len(chunks[i].data) >= HEAD.size:
                after = _lsn_at(chunks[i].data, 0)
        out: list[bytes] = []
        size = 0
        cached_chunk, cached_pos = self._memory
        for i, chunk in enumerate(chunks):
            data = chunk.data
            pos = cached_pos if chunk is cached_chunk else 0
            # A chunk's records are consecutive and only a seal, always its last record, is not sent:
            # when its next record is `next_lsn`, the rest of it goes whole, without a walk per record.
            end = len(data) - SEAL_SIZE if chunk.seal else len(data)
            if (
                pos + HEAD.size <= end
                and size + end - pos <= max_bytes
                and _lsn_at(data, pos) == self.next_lsn
            ):
                out.append(bytes(memoryview(data)[pos:end]))
                size += end - pos
                self.next_lsn = afters[i]
                pos = len(data)
            while pos + HEAD.size <= len(data):
                length, _crc_stored, rtype, _flags, _res, lsn, _when = HEAD.unpack_from(data, pos)
                end = pos + 8 + length
                if lsn == self.next_lsn and rtype != TYPE_SEAL:
                    out.append(bytes(data[pos:end]))
                    size += end - pos
                    self.next_lsn += 1
                pos = end
                if size >= max_bytes:
                    break
            self._memory = (chunk, pos)
            if size >= max_bytes:
                break
        last, pos = self._memory
        if last is not None:
            # Where `next_lsn` starts (or will start) in the files, for when the batches have left memory
            # before the next read: walking the segment from its first record instead cost a leader under
            # steady load a quarter of its time (a walk per read that falls behind the in-flight batch).
            # A record that goes to the next segment instead is found from that segment's start.
            self._start = (last.segment.seq, last.offset + pos, self.next_lsn)
        return out

    def read(
        self,
        upto_lsn: int,
        max_bytes: int = _READ,
        until: tuple[int, int] | None = None,
        joined: bool = False,
    ) -> list[bytes]:
        """The next records (version-3 bytes each), none beyond `upto_lsn` (which must be durable), about
        `max_bytes` at most (at least one record when there is one). `until` = (segment seq, offset) where
        `upto_lsn`'s record ends, when known: no read goes past it in that segment. `joined`: an item may
        hold several whole records (consecutive ones of a version-3 segment, in one slice)."""
        out: list[bytes] = []
        size = 0
        while self.next_lsn <= upto_lsn and size < max_bytes:
            seg = self._segment()
            frame = seg.frame
            window = max(max_bytes - size, _READ)
            if until is not None and until[0] == seg.seq and until[1] > self._off:
                window = min(window, until[1] - self._off)
            data = os.pread(self._fd, window, self._off)
            at = 0
            moved = False
            run = 0  # where the records not yet added to `out` start in `data` (version-3 segments)
            while self.next_lsn <= upto_lsn and at + frame.head_size <= len(data):
                length, stored, rtype, flags, _res, lsn, when = frame.unpack(data, at)
                end = at + 8 + length
                if length == 0 or rtype == TYPE_SEAL:
                    break
                if end > len(data):
                    if not out and not moved:  # one record larger than the read: read it whole
                        data = os.pread(self._fd, end - at, self._off)
                        at = 0
                        continue
                    # Records were read already and the next one does not fit the window: stop here (not
                    # "the segment ends": that would leave for the next segment and come back forever).
                    if run < at:
                        out.append(data[run:at])
                    self._off += at
                    return out
                if lsn != self.next_lsn or _crc(memoryview(data)[at + 8 : end]) != stored:
                    raise CorruptRecord(
                        f"{seg.name} offset {self._off + at}: not LSN {self.next_lsn}'s record",
                        offset=self._off + at,
                        lsn=self.next_lsn,
                    )
                if not frame.timed:
                    out.append(encode_wire(rtype, flags, lsn, when, data[at + frame.head_size : end]))
                    run = end
                elif not joined:
                    out.append(data[at:end])
                    run = end
                size += end - at
                self.next_lsn += 1
                at = end
                moved = True
                if size >= max_bytes:
                    break
            if run < at:  # the file's own bytes: the records read, in one slice
                out.append(data[run:at])
            self._off += at
            if not moved:
                # The segment ends here (its seal, or end of data): the next record is in the next one.
                segs = self.log._segments
                if not segs or self._seq == segs[-1].seq:
                    break
                self.close()
                self._seq = -1
        return out


def _lsn_at(data: bytes | bytearray, at: int) -> int:
    lsn: int = HEAD.unpack_from(data, at)[5]
    return lsn


def record_crc(log: Log, lsn: int) -> int | None:
    """The crc of the record at `lsn` (what a returning node compares with the leader's), or None when
    the log does not hold it."""
    if lsn < 1 or lsn > log.durable_lsn:
        return None
    cursor = Cursor(log, lsn - 1)
    try:
        found = cursor.read(lsn, 1)
    except Behind:
        return None
    finally:
        cursor.close()
    return PREFIX.unpack_from(found[0])[1] if found else None


def truncate_after(log: Log, lsn: int) -> None:
    """`Log.truncate_after`'s work (see there)."""
    from memento.staging import staged_data

    if log._error is not None:
        raise log._error
    if staged_data(log) or log._inflight is not None:
        raise ValueError("truncate_after: records are staged; sync first (and no AsyncWriter may run)")
    if lsn >= log.end_lsn:
        return
    if lsn < log.snapshot_lsn:
        raise ValueError(f"truncate_after({lsn}): the snapshot covers LSN {log.snapshot_lsn}")
    segs = log._segments
    if not segs or lsn + 1 < segs[0].base_lsn:
        raise ValueError(f"truncate_after({lsn}): the log starts at LSN {segs[0].base_lsn if segs else 0}")
    index = max(i for i, seg in enumerate(segs) if seg.base_lsn <= lsn + 1)
    seg = segs[index]
    if not seg.frame.timed:
        raise ValueError(
            f"truncate_after({lsn}): {seg.name} is of an older format version than {FORMAT_VERSION}"
        )
    offset = _offset_of(seg, lsn + 1)
    root = log.path
    quarantine = root / "quarantine"
    private_dir(quarantine)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    # 1. MARK names the segment that becomes the tail (a MARK older than the newest file is what a crash
    # mid-rollover leaves, and opens; a newer one would be refused).
    if log._mark is not None:
        log._mark.write(log.log_id, seg.seq, seg.base_lsn, None)
    # 2. Later segments go whole to quarantine.
    for later in segs[index + 1 :]:
        if later.fd >= 0:
            os.close(later.fd)
            later.fd = -1
        log._close_read_fd(later.seq)
        if os.path.exists(later.path):
            os.rename(later.path, quarantine / f"{later.name}.{stamp}")
        del log._by_seq[later.seq]
        log.relocated_through.pop(later.seq, None)
    del segs[index + 1 :]
    log.disk.fsync_dir(str(quarantine))
    log.disk.fsync_dir(log.wal_dir)
    # 3. The bytes after the cut are copied aside durably, then cut; the file is preallocated again.
    fd = seg.fd if seg.fd >= 0 else os.open(seg.path, os.O_RDWR | os.O_CLOEXEC)
    try:
        cut = os.pread(fd, seg.size - offset, offset)
        used = len(cut.rstrip(b"\0"))
        if used:
            target = quarantine / f"{seg.name}.{offset}.{stamp}.bin"
            qfd = create_private(target, os.O_WRONLY | os.O_TRUNC)
            try:
                log.disk.pwrite(qfd, cut[:used], 0)
                log.disk.fdatasync(qfd)
            finally:
                os.close(qfd)
            log.disk.fsync_dir(str(quarantine))
        os.ftruncate(fd, offset)
        log.disk.preallocate(fd, seg.size)
        log.disk.fdatasync(fd)
    except BaseException:
        if fd != seg.fd:
            os.close(fd)
        raise
    log._close_read_fd(seg.seq)
    seg.fd = fd
    log._set_tail(seg, offset)
    log._next_lsn = lsn + 1
    log._durable_lsn = lsn
    log._newest = (seg.seq, seg.base_lsn)
    log._last_off = -1
    log._window = (-1, 0, b"", log._window[3])
    log._last_read = (-1, 0)


def _walk(fd: int, seg: _Segment, lsn: int, off: int = HEADER_SIZE, expected: int = 0) -> int:
    """The offset in `seg` (open as `fd`) where the record `lsn` starts, or would start (the end of data),
    walking record lengths through reads of _READ bytes from the record `expected` at `off` (by default
    the segment's first)."""
    frame: Frame = seg.frame
    expected = expected or seg.base_lsn
    data = b""
    at = 0  # where `data` starts in the file
    while expected < lsn:
        rel = off - at
        if rel + frame.head_size > len(data):
            data = os.pread(fd, _READ, off)
            at, rel = off, 0
            if len(data) < frame.head_size:
                raise CorruptRecord(f"{seg.name} offset {off}: end of file before LSN {lsn}", offset=off)
        length = PREFIX.unpack_from(data, rel)[0]
        if length == 0:
            raise CorruptRecord(f"{seg.name} offset {off}: end of data before LSN {lsn}", offset=off)
        off += 8 + length
        expected += 1
    return off


def _offset_of(seg: _Segment, lsn: int) -> int:
    """The offset in `seg` where the record `lsn` starts (or would start: the end of data)."""
    fd = os.open(seg.path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return _walk(fd, seg, lsn)
    finally:
        os.close(fd)


def install_copied(root: Path, log_id: bytes) -> None:
    """Make a directory of copied files (wal/ segments, snapshots/) a log of id `log_id` that `Log.open`
    accepts: IDENTITY, and MARK naming the newest segment, not stopped cleanly (a follower's bulk sync:
    the last segment was copied up to some record, which recovery finds as the end)."""
    from memento.segment import parse_name

    private_dir(root)
    names = sorted(n for n in os.listdir(root / "wal") if parse_name(n) is not None)
    parsed = parse_name(names[-1]) if names else None
    seq, base = parsed if parsed is not None else (0, 0)
    for leftover in ("MARK", IDENTITY_FILE):
        (root / leftover).unlink(missing_ok=True)
    mark = MarkFile(root, Mark(1, log_id, seq, base, None))
    mark.close()
    replace_durably(root / IDENTITY_FILE, encode_identity(log_id))
    fsync_dir(root)
