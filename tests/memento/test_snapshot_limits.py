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
