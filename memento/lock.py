"""The directory lock: one Log per directory, across processes and within one."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from memento.errors import LogLocked
from memento.private import create_private


def lock_directory(path: Path) -> int:
    """Take the exclusive flock on `path` (the LOCK file) and write our pid in it; returns the fd, which
    holds the lock until closed. Raises LogLocked, naming the holder's pid, when someone holds it (flock
    is per open file, so a second Log in the same process is refused too)."""
    fd = create_private(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
        os.close(fd)
        raise LogLocked(f"{path.parent} is in use: {path} is locked by process {holder}") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd
