"""A data directory the broker cannot use, and a tight open-file limit.

Strategy: the real `ottermq serve` is started on a data directory made by a first (clean) run, then spoiled:
mounted read-only (a bind mount; skipped where mounting is not permitted), unreadable to the user the broker
runs as (root ignores modes, so the broker runs as `nobody` through setpriv; skipped where that is not
possible), or with a foreign file where the log keeps one of its own. Each is refused with exit 74 (EX_IOERR)
and one line on stderr naming the file, never a traceback; a foreign file in the log's scratch place (spare/)
is replaced, one in the ctl socket's place only costs `ottermq ctl` (logged), and the broker serves. Under
`prlimit --nofile=64` the broker keeps descriptors for its log: it refuses clients beyond what the limit
leaves, and rollovers still work.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pika
import pika.exceptions
import pytest

from tests.integration.conftest import _LISTENING, serve_cmd
from tests.integration.test_restart import Node
from tests.memento.helpers import unprivileged

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(bool(os.environ.get("OTTERMQ_TEST_URL")), reason="needs a broker process of our own"),
]

ROOT = Path(__file__).resolve().parents[2]
EXIT_DATA_DIR = 74
SEGMENT = "0000000000000001-0000000000000001.wal"


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data directory left by a clean run (a segment, a snapshot, LOCK)."""
    node = Node(tmp_path_factory.mktemp("made"))
    node.start()
    node.stop()
    return node.data_dir


def serve(data_dir: Path, *prefix: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    """Run `ottermq serve` on `data_dir` until it exits (it must, for these directories)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTTERMQ_")}
    env["PYTHONPATH"] = str(ROOT)
    cmd = [*prefix, *serve_cmd(data_dir)]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=timeout)


def assert_refused(result: subprocess.CompletedProcess[str], names: str) -> None:
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert result.returncode == EXIT_DATA_DIR, result.stderr
    assert len(lines) == 1 and lines[0].startswith("ottermq: error: ") and names in lines[0], lines


@pytest.fixture
def copy(made: Path, tmp_path: Path) -> Path:
    target = tmp_path / "data"
    shutil.copytree(made, target, symlinks=True)
    return target


def replace_by_dir(path: Path) -> None:
    path.unlink()
    path.mkdir()


def replace_by_file(path: Path) -> None:
    shutil.rmtree(path)
    path.write_bytes(b"not ours\n")


SPOILERS: dict[str, tuple[str, Callable[[Path], None]]] = {
    "segment-is-a-directory": (f"log/wal/{SEGMENT}", replace_by_dir),
    "lock-is-a-directory": ("log/LOCK", replace_by_dir),
    "wal-is-a-file": ("log/wal", replace_by_file),
    "snapshots-is-a-file": ("log/snapshots", replace_by_file),
    "log-is-a-file": ("log", replace_by_file),
    "running-mark-is-a-directory": ("log/ottermq-running", lambda path: path.mkdir()),
    "quarantine-is-a-file": ("log/quarantine", lambda path: path.symlink_to("/etc/hostname")),
}


@pytest.mark.parametrize("case", sorted(SPOILERS))
def test_a_foreign_file_in_the_data_directory_is_named_in_one_line(copy: Path, case: str) -> None:
    name, spoil = SPOILERS[case]
    spoil(copy / name)
    assert_refused(serve(copy), str(copy / name))


def test_foreign_files_the_broker_can_do_without_are_survived(copy: Path, tmp_path: Path) -> None:
    (copy / "log" / "spare").write_bytes(b"not ours\n")  # scratch space: replaced
    (copy / "ctl.sock").mkdir()  # `ottermq ctl` is not served, AMQP is
    node = Node(tmp_path)
    node.start()
    conn = node.connect()
    conn.channel().queue_declare("q", durable=True)
    conn.close()
    node.stop()
    text = node.log_text()
    assert "Traceback" not in text
    assert f"cannot serve ottermq ctl on {copy / 'ctl.sock'}: Is a directory" in text


@pytest.fixture
def read_only(copy: Path, tmp_path: Path) -> Iterator[Path]:
    """`copy` seen through a read-only bind mount (skips when mounting is not permitted)."""
    mount = tmp_path / "ro"
    mount.mkdir()
    done = subprocess.run(["mount", "--bind", str(copy), str(mount)], capture_output=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot bind-mount here: {done.stderr.decode(errors='replace').strip()}")
    try:
        done = subprocess.run(
            ["mount", "-o", "remount,bind,ro", str(mount)], capture_output=True, check=False
        )
        if done.returncode != 0:
            pytest.skip(f"cannot remount read-only here: {done.stderr.decode(errors='replace').strip()}")
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_read_only_data_directory_is_refused_in_one_line(read_only: Path) -> None:
    assert_refused(serve(read_only), "Read-only file system")


def test_a_data_directory_the_broker_may_not_enter_is_refused_in_one_line(made: Path) -> None:
    setpriv = shutil.which("setpriv")
    if os.geteuid() != 0 or setpriv is None:
        pytest.skip("needs root and setpriv to run the broker as another user")
    probe = subprocess.run(
        [setpriv, "--reuid=nobody", "--regid=nogroup", "--clear-groups", "true"],
        capture_output=True,
        check=False,
    )
    if probe.returncode != 0:
        pytest.skip("cannot run as nobody here")
    # The broker's user (nobody) reaches the data directory but may not enter it (root's, 0700).
    base = Path(tempfile.mkdtemp(prefix="ottermq-nobody-"))
    try:
        os.chmod(base, 0o755)
        shutil.copytree(made, base / "data", symlinks=True)
        result = serve(base / "data", setpriv, "--reuid=nobody", "--regid=nogroup", "--clear-groups")
    finally:
        shutil.rmtree(base)
    assert_refused(result, "Permission denied")


def test_a_tight_open_file_limit_keeps_descriptors_for_the_log(tmp_path: Path) -> None:
    prlimit = shutil.which("prlimit")
    if prlimit is None:
        pytest.skip("prlimit is not installed")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTTERMQ_")}
    env.update(PYTHONPATH=str(ROOT), OTTERMQ_LOG_SEGMENT_SIZE=str(1 << 20))
    log_path = tmp_path / "limited.log"
    with log_path.open("wb") as out:
        process = subprocess.Popen(
            [prlimit, "--nofile=64", *serve_cmd(tmp_path / "data")],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=ROOT,
        )
    conns: list[pika.BlockingConnection] = []
    try:
        deadline = time.monotonic() + 20
        while (match := _LISTENING.search(log_path.read_text())) is None:
            assert process.poll() is None and time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.05)
        port = int(match.group(1))
        params = pika.ConnectionParameters("127.0.0.1", port, socket_timeout=3, connection_attempts=1)
        for _ in range(70):
            try:
                conns.append(pika.BlockingConnection(params))
            except pika.exceptions.AMQPError:
                break
        assert 16 <= len(conns) <= 40, len(conns)  # 64 less the descriptors kept for the log
        ch = conns[0].channel()
        ch.confirm_delivery()
        ch.queue_declare("big", durable=True)
        body = b"x" * 50_000
        for i in range(100):  # about five rollovers, each opening a new segment file
            ch.basic_publish("", "big", b"%03d" % i + body, pika.BasicProperties(delivery_mode=2))
        assert ch.queue_declare("big", passive=True).method.message_count == 100
        text = log_path.read_text()
        assert "Traceback" not in text and "journal" not in text, text
        assert "open-file limit leaves no room for more clients" in text
    finally:
        for conn in conns:
            try:
                conn.close()
            except pika.exceptions.AMQPError:
                pass
        process.terminate()
        process.wait(20)


UNREADABLE = [
    f"log/wal/{SEGMENT}",
    "log/wal",
    "log/snapshots/data.mdb",
    "log/snapshots/lock.mdb",
    "log/IDENTITY",
    "log/MARK",
    "log/LOCK",
]


@pytest.mark.parametrize("name", UNREADABLE)
def test_a_file_of_the_log_the_broker_may_not_open_is_named_in_one_line(copy: Path, name: str) -> None:
    """Mode 000 on one file or directory of the log: refused with exit 74 naming it (not a refusal that
    offers --salvage: a permission error is not damage). The broker runs as root without capabilities,
    so that modes apply (see tests.memento.helpers.unprivileged)."""
    (copy / name).chmod(0)
    assert_refused(serve(copy, *unprivileged()), f"Permission denied: {copy / name}")
