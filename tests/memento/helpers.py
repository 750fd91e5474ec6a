"""Shared helpers for the Memento tests: build segment bytes, damage files on purpose."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from memento.disk import DiskIO
from memento.identity import Mark, MarkFile, read_mark
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


def crashed(root: Path) -> None:
    """Make a log closed cleanly look as if its process had died instead (MARK: not stopped cleanly), so
    that damage done to its tail afterwards is what a crash leaves, not loss after a clean stop."""
    mark = read_mark(root)
    assert isinstance(mark, Mark)
    marks = MarkFile(root, mark)
    marks.write(mark.log_id, mark.newest_seq, mark.newest_base, None)
    marks.close()


def unprivileged() -> list[str]:
    """A command prefix under which file modes apply to this (root) test run: setpriv with every
    capability dropped (so no CAP_DAC_OVERRIDE). Not `runuser -u nobody`: the interpreter of the test
    run may live where nobody cannot reach it (a pyenv under /root). Fails, never skips, when setpriv is
    missing or does not take the privilege away."""
    if os.geteuid() != 0:
        return []  # modes already apply
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.fail("these tests need setpriv (util-linux): apt-get install util-linux")
    prefix = [setpriv, "--bounding-set=-all", "--inh-caps=-all", "--"]
    with tempfile.TemporaryDirectory() as tmp:
        probe = Path(tmp) / "probe"
        probe.write_bytes(b"x")
        probe.chmod(0)
        done = subprocess.run([*prefix, "cat", str(probe)], capture_output=True, check=False)
    if done.returncode == 0:
        pytest.fail(f"{' '.join(prefix)} still reads a file of mode 000: cannot test permission errors")
    return prefix
