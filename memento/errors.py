"""What Memento raises. Every recovery error names the segment file, the byte offset and the LSN."""

from __future__ import annotations


class MementoError(Exception):
    """Base of every error Memento raises on purpose."""


class LogLocked(MementoError):
    """Another process (or another `Log` in this one) holds the directory's LOCK file."""


class RecoveryRefused(MementoError):
    """The log is damaged in a way that may have lost durable records; open with salvage=True to keep
    what is valid up to the damage.

    `segment` is the file name (or "" when the damage is not inside one file), `offset` the byte offset in
    it (-1 when unknown) and `lsn` the first LSN concerned (-1 when unknown).
    """

    def __init__(self, message: str, *, segment: str = "", offset: int = -1, lsn: int = -1) -> None:
        super().__init__(message)
        self.segment = segment
        self.offset = offset
        self.lsn = lsn


class UnsupportedVersion(RecoveryRefused):
    """The directory holds something written by a newer format: a segment version or a record type
    this reader does not know."""


class LogFailed(MementoError):
    """A write or fsync failed: nothing appended after the last durable LSN can be trusted, so the log
    accepts no more appends and every pending waiter fails. Restart to recover."""


class SyncFailed(OSError):
    """An fdatasync or directory fsync failed. Unlike running out of space while creating or writing a
    file, this is never retried: after a failed flush what the file holds is unknown."""


class LogClosed(MementoError):
    """The log (or writer) was used after close()."""


class CorruptRecord(RecoveryRefused):
    """A record read back after open (by position or during replay) fails its checks."""
