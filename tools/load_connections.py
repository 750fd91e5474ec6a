"""Load test: hold many concurrent connections and queues, and report the broker's memory per item.

Strategy: one asyncio process speaks just enough AMQP (with the project's own codec) to open N
connections, each with a channel, and then to declare Q queues spread over those connections, pipelined.
The broker's resident memory is read from /proc/<pid>/statm before, after the connections and after the
queues, so per-connection and per-queue costs are RSS deltas divided by the counts. OtterMQ is started by
the tool (its own process, so nothing else shares the heap); RabbitMQ is measured in place (its beam.smp
process, found by name) when `--rabbitmq URL` is given. Queues are exclusive, so closing the connections
cleans everything up on both brokers.

    .venv/bin/python tools/load_connections.py                      # OtterMQ: 1000 connections, 10000 queues
    .venv/bin/python tools/load_connections.py --rabbitmq amqp://guest:guest@127.0.0.1:5672/
    .venv/bin/python tools/load_connections.py --connections 200 --queues 2000 --json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TypeVar
from urllib.parse import unquote, urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ottermq.amqp.constants import PROTOCOL_HEADER  # noqa: E402
from ottermq.amqp.frames import FrameReader, MethodFrame, encode_method_frame  # noqa: E402
from ottermq.amqp.methods import (  # noqa: E402
    ChannelOpen,
    ChannelOpenOk,
    ConnectionOpen,
    ConnectionOpenOk,
    ConnectionStart,
    ConnectionStartOk,
    ConnectionTune,
    ConnectionTuneOk,
    Method,
    QueueDeclare,
    QueueDeclareOk,
)

_PAGE = os.sysconf("SC_PAGE_SIZE")
M = TypeVar("M", bound=Method)


@dataclass
class Result:
    """What one run measured."""

    broker: str
    connections: int
    queues: int
    rss_idle_mb: float
    rss_connections_mb: float
    rss_queues_mb: float
    kib_per_connection: float
    kib_per_queue: float
    connect_s: float
    declare_s: float
    # RabbitMQ only: its own accounting (connection_* and queue_procs of `rabbitmqctl status`).
    accounted_kib_per_connection: float | None = None
    accounted_kib_per_queue: float | None = None


def rss(pid: int) -> int:
    """Resident set size of `pid` in bytes."""
    with open(f"/proc/{pid}/statm", "rb") as f:
        return int(f.read().split()[1]) * _PAGE


def find_beam() -> int:
    """The pid of RabbitMQ's Erlang VM (beam.smp) on this machine."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip().startswith("beam"):
                    return int(entry.name)
            except OSError:
                continue
    raise SystemExit("load_connections: no beam.smp process found; is RabbitMQ running here?")


def rabbit_memory() -> dict[str, int]:
    """RabbitMQ's own memory breakdown (`rabbitmqctl status`), in bytes: {} when rabbitmqctl fails.

    Its RSS moves with whatever else the shared node does; the per-category counters do not.
    """
    try:
        out = subprocess.run(
            ["rabbitmqctl", "status", "--formatter", "json"], capture_output=True, text=True, timeout=60
        ).stdout
        memory = json.loads(out)["memory"]
    except (OSError, ValueError, KeyError, subprocess.TimeoutExpired):
        return {}
    connections = sum(
        memory.get(k, 0)
        for k in ("connection_readers", "connection_writers", "connection_channels", "connection_other")
    )
    return {
        "connections": connections,
        "queues": memory.get("queue_procs", 0),
        "erlang": memory.get("total", {}).get("erlang", 0),
    }


def raise_fd_limit(needed: int) -> None:
    """Raise this process's open-file limit to the hard limit; exit with a message if that is too low."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard != resource.RLIM_INFINITY and hard < needed:
        raise SystemExit(f"load_connections: the hard open-file limit ({hard}) is below the {needed} needed")


class Client:
    """One AMQP connection with channel 1 open, driven by awaiting the method it expects next."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.frames = FrameReader(expect_protocol_header=False)
        self.pending: list[Method] = []

    @classmethod
    async def open(cls, host: str, port: int, user: str, password: str, vhost: str) -> Client:
        """Connect, log in with PLAIN, open the vhost and channel 1."""
        reader, writer = await asyncio.open_connection(host, port)
        client = cls(reader, writer)
        writer.write(PROTOCOL_HEADER)
        await client.expect(ConnectionStart)
        response = b"\x00" + user.encode() + b"\x00" + password.encode()
        client.send(ConnectionStartOk({"product": "load_connections"}, "PLAIN", response, "en_US"))
        tune = await client.expect(ConnectionTune)
        client.send(ConnectionTuneOk(tune.channel_max, tune.frame_max, 0))
        client.send(ConnectionOpen(vhost))
        await client.expect(ConnectionOpenOk)
        client.send(ChannelOpen(), channel=1)
        await client.expect(ChannelOpenOk)
        return client

    def send(self, method: Method, channel: int = 0) -> None:
        """Queue one method frame."""
        self.writer.write(encode_method_frame(channel, method))

    async def expect(self, kind: type[M]) -> M:
        """The next method from the server, which must be of `kind`."""
        while not self.pending:
            data = await self.reader.read(65536)
            if not data:
                raise ConnectionError(f"server closed the connection while we waited for {kind.NAME}")
            self.frames.feed(data)
            self.pending.extend(f.method for f in self.frames.frames() if type(f) is MethodFrame)
        method = self.pending.pop(0)
        if not isinstance(method, kind):
            raise ConnectionError(f"expected {kind.NAME}, got {method!r}")
        return method

    async def declare(self, names: list[str]) -> None:
        """Declare exclusive queues, pipelined, and wait for every declare-ok."""
        for name in names:
            self.send(QueueDeclare(queue=name, exclusive=True), channel=1)
        await self.writer.drain()
        for _ in names:
            await self.expect(QueueDeclareOk)

    def close(self) -> None:
        """Drop the socket (the broker cleans up the connection and its exclusive queues)."""
        self.writer.close()


async def settle(pid: int, seconds: float = 2.0) -> int:
    """RSS after letting the broker finish what it was doing (the lowest of a few samples)."""
    samples = []
    for _ in range(int(seconds / 0.25)):
        await asyncio.sleep(0.25)
        samples.append(rss(pid))
    return min(samples[-4:])


async def measure(label: str, url: str, pid: int, connections: int, queues: int) -> Result:
    """Open the connections, declare the queues, and read the RSS at each step."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 5672
    user, password = unquote(parts.username or "guest"), unquote(parts.password or "guest")
    vhost = unquote(parts.path[1:]) if len(parts.path) > 1 else "/"
    rabbit = label == "rabbitmq"
    idle = await settle(pid, 1.0)
    memory_idle = rabbit_memory() if rabbit else {}
    started = time.monotonic()
    clients: list[Client] = []
    # Batches of 50 keep the accept queue short on both brokers.
    for offset in range(0, connections, 50):
        batch = range(offset, min(offset + 50, connections))
        opening = (Client.open(host, port, user, password, vhost) for _ in batch)
        try:
            clients.extend(await asyncio.wait_for(asyncio.gather(*opening), 30))
        except (TimeoutError, OSError, ConnectionError) as exc:
            raise SystemExit(
                f"load_connections: {label} stopped accepting after {len(clients)} connections "
                f"({exc or type(exc).__name__}); check its open-file / socket limit"
            ) from None
    connect_s = time.monotonic() - started
    with_connections = await settle(pid)
    memory_connections = rabbit_memory() if rabbit else {}
    started = time.monotonic()
    tag = f"load-{os.getpid()}"
    per_client = -(-queues // len(clients))
    jobs = []
    for i, client in enumerate(clients):
        names = [f"{tag}-{i}-{n}" for n in range(per_client) if i * per_client + n < queues]
        if names:
            jobs.append(client.declare(names))
    await asyncio.gather(*jobs)
    declare_s = time.monotonic() - started
    with_queues = await settle(pid)
    memory_queues = rabbit_memory() if rabbit else {}
    for client in clients:
        client.close()
    await asyncio.sleep(0.5)
    mb = 1024 * 1024
    accounted_connection = accounted_queue = None
    if memory_idle and memory_connections and memory_queues:
        accounted_connection = round(
            (memory_connections["connections"] - memory_idle["connections"]) / connections / 1024, 1
        )
        accounted_queue = round(
            (memory_queues["queues"] - memory_connections["queues"]) / max(queues, 1) / 1024, 2
        )
    return Result(
        broker=label,
        connections=connections,
        queues=queues,
        rss_idle_mb=round(idle / mb, 1),
        rss_connections_mb=round(with_connections / mb, 1),
        rss_queues_mb=round(with_queues / mb, 1),
        kib_per_connection=round((with_connections - idle) / connections / 1024, 1),
        kib_per_queue=round((with_queues - with_connections) / max(queues, 1) / 1024, 2),
        connect_s=round(connect_s, 2),
        declare_s=round(declare_s, 2),
        accounted_kib_per_connection=accounted_connection,
        accounted_kib_per_queue=accounted_queue,
    )


def start_ottermq(data_dir: Path) -> tuple[subprocess.Popen[bytes], int, Path]:
    """`ottermq serve` on a free port with a raised fd limit; returns the process, port and log path."""
    log_path = data_dir / "ottermq.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTTERMQ_")}
    cmd = [
        sys.executable,
        "-m",
        "ottermq",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--data-dir",
        str(data_dir / "data"),
    ]
    with log_path.open("wb") as out:
        # The child inherits the raised open-file limit.
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
    deadline = time.monotonic() + 20
    pattern = re.compile(r"listening on amqp://[^\s:/]+:(\d+)")
    while time.monotonic() < deadline:
        match = pattern.search(log_path.read_text(errors="replace"))
        if match:
            return proc, int(match.group(1)), log_path
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    raise SystemExit(f"load_connections: ottermq did not start:\n{log_path.read_text(errors='replace')}")


def main() -> None:
    """Parse the options, run the measurements and print a table (or JSON)."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--queues", type=int, default=10000)
    parser.add_argument("--rabbitmq", metavar="URL", help="also measure the RabbitMQ at URL (on this host)")
    parser.add_argument("--skip-ottermq", action="store_true", help="measure only RabbitMQ")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()
    if args.connections < 1 or args.queues < 0:
        parser.error("--connections must be at least 1 and --queues not negative")
    raise_fd_limit(args.connections + 100)
    results: list[Result] = []
    if not args.skip_ottermq:
        with tempfile.TemporaryDirectory(prefix="ottermq-load-") as tmp:
            proc, port, _ = start_ottermq(Path(tmp))
            try:
                url = f"amqp://guest:guest@127.0.0.1:{port}/"
                results.append(asyncio.run(measure("ottermq", url, proc.pid, args.connections, args.queues)))
            finally:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
    if args.rabbitmq:
        beam = find_beam()
        results.append(asyncio.run(measure("rabbitmq", args.rabbitmq, beam, args.connections, args.queues)))
    if args.json:
        print(json.dumps([asdict(r) for r in results], indent=2))
        return
    print(
        f"{'broker':<9} {'conns':>6} {'queues':>7} {'idle MB':>8} {'+conns MB':>10} {'+queues MB':>11} "
        f"{'KiB/conn':>9} {'KiB/queue':>10} {'connect s':>10} {'declare s':>10}"
    )
    for r in results:
        if r.accounted_kib_per_connection is not None:
            print(
                f"  ({r.broker} by its own accounting: {r.accounted_kib_per_connection} KiB/conn, "
                f"{r.accounted_kib_per_queue} KiB/queue)",
                file=sys.stderr,
            )
        print(
            f"{r.broker:<9} {r.connections:>6} {r.queues:>7} {r.rss_idle_mb:>8} {r.rss_connections_mb:>10} "
            f"{r.rss_queues_mb:>11} {r.kib_per_connection:>9} {r.kib_per_queue:>10} {r.connect_s:>10} "
            f"{r.declare_s:>10}"
        )


if __name__ == "__main__":
    main()
