"""Owner-only files: the log holds message bodies and password hashes, so nothing Memento (or its owner)
writes may be readable by other local users.

Strategy: modes are set explicitly, never left to the umask (which only takes bits away, and which another
thread may change for a moment): files are created with `create_private` (O_CREAT with 0600, then an
fchmod, so a umask of 0277 does not leave them unwritable either), directories with `private_dir` (mkdir,
then chmod 0700). Existing files and directories keep their modes (the broker warns at start when its
data directory is open to others).
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Final

PRIVATE_FILE: Final = 0o600
PRIVATE_DIR: Final = 0o700


def create_private(path: str | os.PathLike[str], flags: int) -> int:
    """`os.open(path, flags | O_CREAT | O_CLOEXEC)` with the file owner-only (0600); the fd."""
    fd = os.open(path, flags | os.O_CREAT | os.O_CLOEXEC, PRIVATE_FILE)
    try:
        os.fchmod(fd, PRIVATE_FILE)
    except BaseException:
        os.close(fd)
        raise
    return fd


def private_dir(path: str | os.PathLike[str]) -> None:
    """Create the directory `path` and any missing parents, each 0700 (owner only); a directory that
    exists is left as it is. NotADirectoryError (naming it) when `path` or a parent is something else."""
    missing: list[Path] = []
    current = Path(path)
    while not current.is_dir():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for directory in reversed(missing):
        try:
            os.mkdir(directory, PRIVATE_DIR)
        except FileExistsError:
            if directory.is_dir():
                continue  # made meanwhile by someone else: theirs to set
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(directory)) from None
        os.chmod(directory, PRIVATE_DIR)
