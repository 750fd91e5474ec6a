"""The snapshot store under an address-space limit (ulimit -v): its LMDB map only reserves address space,
so it starts small and grows; a map that cannot be reserved is an OSError (ENOMEM) that names the store,
not damage that would suggest salvaging."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from memento.snapshot import INITIAL_MAP_SIZE, SnapshotStore

ROOT = Path(__file__).resolve().parents[2]

# Run in a child: RLIMIT_AS set a little above what the interpreter already uses, below the map.
CHILD = """
import errno, resource, sys
from memento.snapshot import SnapshotStore
with open("/proc/self/status") as f:
    used = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
resource.setrlimit(resource.RLIMIT_AS, (used + int(sys.argv[2]), resource.RLIM_INFINITY))
try:
    SnapshotStore(sys.argv[1])
except OSError as exc:
    print(exc.errno == errno.ENOMEM, exc.filename == sys.argv[1], "ulimit -v" in str(exc))
else:
    print("opened")
"""


def test_the_map_starts_small() -> None:
    assert INITIAL_MAP_SIZE <= 64 << 20


def test_a_map_that_cannot_be_reserved_is_an_os_error_naming_the_store(tmp_path: Path) -> None:
    with SnapshotStore(tmp_path) as store:
        store.save(1, b"state")
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path), str(INITIAL_MAP_SIZE // 4)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=30,
        check=False,
    )
    assert done.stdout.split() == ["True", "True", "True"], done.stdout + done.stderr
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path), str(INITIAL_MAP_SIZE * 4)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=30,
        check=False,
    )
    assert done.stdout.strip() == "opened", done.stdout + done.stderr


# Run in a child: before LMDB's lock file had its blocks, this died of SIGBUS (exit -7) with no output.
FULL_CHILD = """
import os, sys
from memento.snapshot import SnapshotStore
store = SnapshotStore(sys.argv[1])
try:
    store.save(1, b"state" * 1000)
except OSError as exc:
    print("refused", exc.errno, exc.filename)
os.unlink(sys.argv[2])
store.save(2, b"state" * 1000)
store.close()
print("saved", SnapshotStore(sys.argv[1]).load_latest().lsn)
"""


def test_a_first_snapshot_on_a_full_file_system_is_an_error_then_works_once_there_is_room(
    tiny_tmpfs: Path,
) -> None:
    filler = tiny_tmpfs / "filler"
    with filler.open("wb") as f:  # fill the file system up to the last block
        try:
            while True:
                f.write(bytes(1 << 16))
                f.flush()
        except OSError:
            pass
    store = tiny_tmpfs / "snapshots"
    done = subprocess.run(
        [sys.executable, "-c", FULL_CHILD, str(store), str(filler)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, (done.returncode, done.stderr)
    assert done.stdout.splitlines() == [f"refused 28 {store / 'lock.mdb'}", "saved 2"]
