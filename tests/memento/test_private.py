"""Everything a log directory holds is owner-only (0700 directories, 0600 files) whatever the umask: the
log holds message bodies, and for OtterMQ every user's password hash."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from memento.log import Log
from memento.private import create_private, private_dir
from tests.memento.helpers import SEG_SIZE


@pytest.fixture(params=[0o000, 0o022, 0o277], ids=["umask-000", "umask-022", "umask-277"])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def modes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): stat.S_IMODE(p.lstat().st_mode) for p in [root, *root.rglob("*")]}


def test_a_log_directory_is_owner_only(tmp_path: Path, umask: int) -> None:
    root = tmp_path / "a" / "log"
    with Log.open(root, segment_size=SEG_SIZE) as log:
        for i in range(200):
            log.append(1, b"%04d" % i + b"p" * 1000)  # several rollovers
        log.sync()
        log.save_snapshot(log.durable_lsn, b"state")
        log._spares.wait()
    found = modes(tmp_path / "a")
    assert len([name for name in found if name.endswith(".wal")]) >= 2
    assert "log/snapshots/data.mdb" in found and "log/LOCK" in found
    wrong = {
        name: f"{mode:04o}"
        for name, mode in found.items()
        if mode != (0o700 if (tmp_path / "a" / name).is_dir() else 0o600)
    }
    assert not wrong


def test_private_dir_leaves_an_existing_directory_alone(tmp_path: Path, umask: int) -> None:
    os.chmod(tmp_path, 0o755)
    private_dir(tmp_path)
    assert stat.S_IMODE(tmp_path.stat().st_mode) == 0o755
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(NotADirectoryError) as info:
        private_dir(tmp_path / "file" / "sub")
    assert info.value.filename == str(tmp_path / "file")
    fd = create_private(tmp_path / "new", os.O_WRONLY)
    os.close(fd)
    assert stat.S_IMODE((tmp_path / "new").stat().st_mode) == 0o600
