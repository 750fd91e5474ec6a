"""The I/O seam: every write and flush of the log goes through one `DiskIO`, so that tests can replace it
and inject EIO or ENOSPC exactly where a real disk would fail."""

from __future__ import annotations

import errno
import os
from typing import Final

# What a full disk looks like (ENOSPC, or a quota): writing may succeed later at the same place, once
# space is freed, so the writer retries and opening a log starts without its next segment.
FULL_DISK_ERRNOS: Final = frozenset({errno.ENOSPC, errno.EDQUOT})


def disk_full(exc: BaseException) -> bool:
    """True for an OSError that says the file system (or the user's quota) has no room left."""
    return isinstance(exc, OSError) and exc.errno in FULL_DISK_ERRNOS


class DiskIO:
    """Plain POSIX calls. Subclass and override to inject faults; every method raises OSError on failure."""

    def pwrite(self, fd: int, data: bytes | bytearray | memoryview, offset: int) -> None:
        """Write all of `data` at `offset` (retrying short writes)."""
        view = memoryview(data)
        while view:
            written = os.pwrite(fd, view, offset)
            view = view[written:]
            offset += written

    def fdatasync(self, fd: int) -> None:
        """Make the file's data durable."""
        os.fdatasync(fd)

    def fsync_dir(self, path: str) -> None:
        """Make a directory's entries (creations, renames, unlinks) durable."""
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def free_bytes(self, path: str) -> int:
        """Bytes an unprivileged writer may still allocate on the file system holding `path`."""
        fs = os.statvfs(path)
        return fs.f_bavail * fs.f_frsize

    def preallocate(self, fd: int, size: int) -> None:
        """Reserve `size` bytes of zeros so that later writes cannot fail for lack of space.

        Raises ENOSPC at once, allocating nothing, when the file system plainly lacks the room: a
        fallocate that fails part-way fills the disk to the last block first, so that every other writer
        (and the free-disk alarm) would see it full until the file is deleted. Falls back to ftruncate (a
        sparse file: reads give zeros, space is taken on write) where the file system cannot allocate.
        """
        needed = size - os.fstat(fd).st_blocks * 512
        if needed > 0:
            fs = os.fstatvfs(fd)
            if fs.f_bavail * fs.f_frsize < needed:
                raise OSError(
                    errno.ENOSPC,
                    f"{os.strerror(errno.ENOSPC)} ({needed} bytes needed, {fs.f_bavail * fs.f_frsize} free)",
                )
        try:
            os.posix_fallocate(fd, 0, size)
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                raise
            os.ftruncate(fd, size)
