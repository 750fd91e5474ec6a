"""A private RabbitMQ node for the benchmarks that compare OtterMQ with RabbitMQ (bench_stream, bench_durable,
bench_cluster): its own node name, ports, data, plugins and configuration, so that the shared node on 5672
is never touched.

Strategy: everything of a node lives in one directory `base`: mnesia, logs, pid file, `enabled_plugins`,
`rabbitmq.conf` (the stream listener, when there is one) and an empty `rabbitmq-env.conf`, so nothing under
/etc/rabbitmq is read. The node is started with `rabbitmq-server -detached`, either as the `rabbitmq` user
through su (the Debian package's cookie under /var/lib/rabbitmq and the machine's epmd), or as the caller
with the environment it passes (bench_cluster: its own HOME for the cookie and its own ERL_EPMD_PORT). AMQP
and the Erlang distribution listen on 127.0.0.1. Ready means an AMQP connection opens (and the stream port,
if any, accepts one); the pid is read from the pid file; stop is `rabbitmqctl stop PIDFILE`, which returns
once the node has exited; kill is SIGKILL. A start first waits until epmd has forgotten a killed node of the
same name (rabbitmq-server refuses to start a name epmd still lists).
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import pika
import pika.exceptions

RABBIT_BIN = Path(os.environ.get("RABBITMQ_BIN", "/usr/lib/rabbitmq/bin"))


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def installed() -> bool:
    """True when Debian's rabbitmq-server scripts are where RABBIT_BIN says."""
    return (RABBIT_BIN / "rabbitmq-server").exists()


def alive(pid: int) -> bool:
    """True while the process exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _without_erlang_env() -> dict[str, str]:
    """This process's environment without RABBITMQ_* and ERL_* (the caller's own node must not leak in)."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "ERL_"))}


class RabbitNode:
    """One private `rabbitmq-server` node.

    `user`: run the node and rabbitmqctl as this user through su (None: as the caller). `env`: more
    environment for the node and rabbitmqctl (HOME, ERL_EPMD_PORT...). `port` and `dist_port` default to
    free ports; `stream_port` turns on a stream listener there (with `plugins` naming rabbitmq_stream).
    """

    def __init__(
        self,
        name: str,
        base: Path,
        port: int | None = None,
        dist_port: int | None = None,
        *,
        stream_port: int | None = None,
        plugins: Sequence[str] = (),
        user: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.name = name
        self.base = base
        self.port = port or free_port()
        self.dist_port = dist_port or free_port()
        self.stream_port = stream_port
        self.plugins = tuple(plugins)
        self.user = user
        self.pid_file = base / "pid"
        self.env = {
            **(env or {}),
            "RABBITMQ_NODENAME": name,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(base / "log"),
            "RABBITMQ_PID_FILE": str(self.pid_file),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
            "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(base / "advanced.config"),
            "RABBITMQ_CONF_ENV_FILE": str(base / "rabbitmq-env.conf"),
        }
        # The distribution listener on loopback too (unless the caller says otherwise).
        self.env.setdefault(
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS", "-kernel inet_dist_use_interface {127,0,0,1}"
        )

    def _run(self, argv: Sequence[str], timeout: float) -> str:
        """Run a RabbitMQ script with the node's environment (as `user` when set); its stdout."""
        clean = _without_erlang_env()
        if self.user is None:
            cmd = list(argv)
            env = {**clean, **self.env}
        else:
            # su resets HOME (and so the cookie) to the user's; the node's variables go on the command line.
            exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in self.env.items())
            command = " ".join(shlex.quote(a) for a in argv)
            cmd, env = ["su", self.user, "-s", "/bin/sh", "-c", f"{exports} {command}"], clean
        done = subprocess.run(
            cmd, env=env, cwd=self.base, capture_output=True, text=True, timeout=timeout, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv[:3])} on {self.name}: {(done.stderr or done.stdout).strip()}")
        return done.stdout

    def ctl(self, *args: str, timeout: float = 120.0) -> str:
        """`rabbitmqctl -n NODE ARGS...`; its stdout (RuntimeError when it fails)."""
        return self._run([str(RABBIT_BIN / "rabbitmqctl"), "-n", self.name, *args], timeout)

    def start(self) -> float:
        """Write the node's files and start it detached; the monotonic time just before the start."""
        self.base.mkdir(parents=True, exist_ok=True)
        (self.base / "enabled_plugins").write_text(f"[{','.join(self.plugins)}].\n")
        conf = f"stream.listeners.tcp.1 = {self.stream_port}\n" if self.stream_port else ""
        (self.base / "rabbitmq.conf").write_text(conf)
        (self.base / "rabbitmq-env.conf").write_text("")
        self.pid_file.unlink(missing_ok=True)  # a stale one would name a process long gone
        if self.user is not None:
            for path in (self.base, *self.base.iterdir()):
                shutil.chown(path, self.user)
        self._wait_unregistered()
        began = time.monotonic()
        self._run([str(RABBIT_BIN / "rabbitmq-server"), "-detached"], 120.0)
        return began

    def _wait_unregistered(self, timeout: float = 10.0) -> None:
        """Wait (bounded) until epmd no longer lists this node's name: just after a SIGKILL it still may."""
        short = self.name.split("@", 1)[0]
        env = {**_without_erlang_env(), **{k: v for k, v in self.env.items() if k == "ERL_EPMD_PORT"}}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            done = subprocess.run(["epmd", "-names"], env=env, capture_output=True, text=True, timeout=10)
            if f"name {short} at port" not in done.stdout:
                return  # not listed, or no epmd running at all
            time.sleep(0.1)

    def running_pid(self) -> int | None:
        """The node's pid when its pid file names a live Erlang VM (never some other process reusing it)."""
        try:
            pid = int(self.pid_file.read_text().split()[0])
            running = alive(pid) and Path(f"/proc/{pid}/comm").read_text().startswith("beam")
        except (OSError, ValueError, IndexError):
            return None
        return pid if running else None

    @property
    def pid(self) -> int:
        """The pid in the node's pid file, waiting (bounded) for the node to write it."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                return int(self.pid_file.read_text().split()[0])
            except (OSError, ValueError, IndexError):
                time.sleep(0.05)
        raise RuntimeError(f"RabbitMQ node {self.name} wrote no pid file")

    def wait_port(self, timeout: float = 120.0) -> None:
        """Wait until an AMQP connection opens (and the stream port accepts); RuntimeError if the node dies
        first or `timeout` passes."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", self.port)).close()
                break
            except (pika.exceptions.AMQPError, OSError):
                if self.pid_file.exists() and self.running_pid() is None:
                    raise RuntimeError(f"RabbitMQ node {self.name} exited; see {self.base / 'log'}") from None
                if time.monotonic() > deadline:
                    raise RuntimeError(f"RabbitMQ node {self.name} did not start") from None
                time.sleep(0.1)
        while self.stream_port is not None:
            try:
                socket.create_connection(("127.0.0.1", self.stream_port), 1).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"nothing listens on {self.stream_port}") from None
                time.sleep(0.2)

    def stop(self, timeout: float = 120.0) -> float:
        """Stop the node cleanly and wait until it has exited; seconds it took."""
        began = time.monotonic()
        self.ctl("stop", str(self.pid_file), timeout=timeout)
        return time.monotonic() - began

    def kill(self) -> float:
        """SIGKILL the node; the monotonic time once it is gone."""
        pid = self.pid
        os.kill(pid, signal.SIGKILL)
        while alive(pid):
            time.sleep(0.001)
        return time.monotonic()

    def shutdown(self) -> None:
        """Stop the node if it runs (after a failure too): cleanly, else SIGKILL. Never waits on a node that
        never started."""
        pid = self.running_pid()
        if pid is None:
            return
        try:
            self.stop(60.0)
        except (RuntimeError, subprocess.SubprocessError, OSError) as exc:
            print(
                f"rabbit_node: {self.name}: rabbitmqctl stop failed ({exc}); killing the node",
                file=sys.stderr,
            )
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
