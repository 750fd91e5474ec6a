"""The spare segment: the next segment file, zero-filled in the background before it is needed.

Strategy: fdatasync after writing into blocks that were only fallocated (or are holes) must also commit
the file system's extent metadata; after writing into blocks that already hold written zeros it flushes
data only, which measures about twice as fast. So while the active segment fills up, a helper thread
writes a zero-filled file `spare/next.tmp` (fallocate first, so ENOSPC shows up here rather than on the
commit path) and syncs it. At rollover the writer writes the header into it, syncs, renames it to its
segment name in wal/ and syncs the directory: the same crash-safe order as a fresh creation. When no
spare is ready (or its size does not fit) the segment is created directly. A crash leaves at most a
spare file, which `Log.open` deletes.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
import time
from typing import Final

from memento.disk import DiskIO
from memento.private import create_private, private_dir

SPARE_DIR: Final = "spare"
SPARE_NAME: Final = "next.tmp"
_ZERO_CHUNK: Final = bytes(1 << 20)
# After a failed preparation (a full disk), no new attempt before this many seconds: the writer asks for
# a spare after every batch once the segment is half full.
RETRY_AFTER: Final = 5.0


class Spare:
    """A ready spare file: an O_RDWR fd on it, its path and size."""

    __slots__ = ("fd", "path", "size")

    def __init__(self, fd: int, path: str, size: int) -> None:
        self.fd = fd
        self.path = path
        self.size = size


class SparePreparer:
    """Prepares at most one spare at a time in a daemon thread; `take` hands it over (any thread)."""

    def __init__(self, directory: str, disk: DiskIO) -> None:
        self.directory = directory
        self.disk = disk
        self._lock = threading.Lock()
        self._ready: Spare | None = None
        self._thread: threading.Thread | None = None
        self._failed_at = -RETRY_AFTER  # time.monotonic() of the last failed preparation

    @staticmethod
    def clear(directory: str) -> None:
        """Delete what a previous run left behind (a spare is never part of the log), even a file in the
        directory's place."""
        if os.path.isdir(directory) and not os.path.islink(directory):
            shutil.rmtree(directory, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(directory)

    def start(self, size: int) -> None:
        """Begin preparing a spare of `size` bytes unless one is ready or under way."""
        with self._lock:
            if self._ready is not None or (self._thread is not None and self._thread.is_alive()):
                return
            if time.monotonic() - self._failed_at < RETRY_AFTER:
                return
            self._thread = threading.Thread(
                target=self._prepare, args=(size,), name="memento-spare", daemon=True
            )
            self._thread.start()

    def ready(self, size: int) -> bool:
        """True when a spare of this size is ready to be taken."""
        with self._lock:
            return self._ready is not None and self._ready.size == size

    def take(self, size: int) -> Spare | None:
        """The ready spare if it has this size (the caller now owns it), else None."""
        with self._lock:
            spare = self._ready
            if spare is None or spare.size != size:
                return None
            self._ready = None
            return spare

    def wait(self) -> None:
        """Wait for a preparation under way to end (ready or failed)."""
        thread = self._thread
        if thread is not None:
            thread.join()

    def close(self) -> None:
        """Wait for a preparation under way, then delete any spare."""
        self.wait()
        with self._lock:
            spare, self._ready = self._ready, None
        if spare is not None:
            os.close(spare.fd)
        self.clear(self.directory)

    def _prepare(self, size: int) -> None:
        path = os.path.join(self.directory, SPARE_NAME)
        fd = -1
        try:
            private_dir(self.directory)
            fd = create_private(path, os.O_RDWR | os.O_TRUNC)
            self.disk.preallocate(fd, size)
            for offset in range(0, size, len(_ZERO_CHUNK)):
                self.disk.pwrite(fd, _ZERO_CHUNK[: min(len(_ZERO_CHUNK), size - offset)], offset)
            self.disk.fdatasync(fd)
        except OSError:
            # No spare then: the rollover creates the segment directly and reports any real error. The
            # half-made file goes, so that a full disk gets its space back for the log itself.
            if fd >= 0:
                os.close(fd)
                with contextlib.suppress(OSError):
                    os.unlink(path)
            with self._lock:
                self._failed_at = time.monotonic()
            return
        with self._lock:
            self._ready = Spare(fd, path, size)
