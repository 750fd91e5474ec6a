#!/usr/bin/env python3
"""Confirmed publishes per second on a leader with 0, 1 or 2 followers (static roles: the test-only
`cluster_static_leader` setting), all on this machine.

Strategy: start the leader and its followers, wait until every follower is in the in-sync set, then
publish 1 KiB persistent messages to one durable queue with publisher confirms and `--window` publishes
outstanding, for `--duration` seconds; report confirmed msg/s. No consumer: the point is the cost of
waiting for the followers' fsync and acknowledgement on top of the leader's own.

Usage: tools/bench_replication.py [--followers 0,1] [--duration 10] [--window 1000] [--size 1024]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aio_pika

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start(base: Path, name: str, lead: str, cluster_port: int, amqp_port: int) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTTERMQ_")}
    env.update(
        OTTERMQ_NODE_NAME=name,
        OTTERMQ_CLUSTER_SECRET="bench",
        OTTERMQ_CLUSTER_STATIC_LEADER=lead,
        OTTERMQ_CLUSTER_PORT=str(cluster_port),
    )
    cmd = [
        sys.executable, "-m", "ottermq", "serve", "--host", "127.0.0.1", "--port", str(amqp_port),
        "--http-port", "0", "--data-dir", str(base / name),
    ]  # fmt: skip
    with (base / f"{name}.log").open("ab") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env=env)


def wait_log(path: Path, pattern: str, count: int = 1, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while len(re.findall(pattern, path.read_text(errors="replace") if path.exists() else "")) < count:
        if time.monotonic() > deadline:
            raise SystemExit(f"no {pattern!r} in {path}")
        time.sleep(0.05)


async def publish(port: int, duration: float, window: int, size: int) -> float:
    connection = await aio_pika.connect(f"amqp://guest:guest@127.0.0.1:{port}/")
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        await channel.declare_queue("bench.repl", durable=True)
        body = b"x" * size
        confirmed = 0
        slots = asyncio.Semaphore(window)
        deadline = time.monotonic() + duration
        pending: set[asyncio.Task[None]] = set()

        async def one() -> None:
            nonlocal confirmed
            try:
                message = aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT)
                await channel.default_exchange.publish(message, "bench.repl")
                confirmed += 1
            finally:
                slots.release()

        began = time.monotonic()
        while time.monotonic() < deadline:
            await slots.acquire()
            task = asyncio.create_task(one())
            pending.add(task)
            task.add_done_callback(pending.discard)
        await asyncio.gather(*pending)
        return confirmed / (time.monotonic() - began)


def s3(loadgen: Path, port: int, duration: float, window: int, size: int) -> float:
    """Confirmed msg/s of one loadgen run (the S3 scenario of tools/bench)."""
    args = [
        str(loadgen), "--uri", f"amqp://guest:guest@127.0.0.1:{port}/", "--label", "S3-repl",
        "--duration", f"{duration:g}s", "--json", "--quiet", "--size", str(size), "--persistent",
        "--confirm", str(window), "--prefetch", "100",
    ]  # fmt: skip
    proc = subprocess.run(args, capture_output=True, text=True, timeout=duration * 4 + 120)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise SystemExit(f"loadgen printed no result: {proc.stderr[-500:]}")
    result = json.loads(lines[-1])
    print(f"  loadgen: {lines[-1][:400]}", file=sys.stderr)
    rate: float = result.get("confirmed_per_s") or result.get("published_per_s") or 0.0
    return rate


def run(followers: int, duration: float, window: int, size: int) -> float:
    with tempfile.TemporaryDirectory(prefix="bench-repl-") as tmp:
        base = Path(tmp)
        cluster_port, amqp_port = free_port(), free_port()
        processes = [start(base, "a", "self", cluster_port, amqp_port)]
        try:
            wait_log(base / "a.log", r"listening on amqp://")
            for i in range(followers):
                processes.append(start(base, f"f{i}", f"127.0.0.1:{cluster_port}", 0, free_port()))
            wait_log(base / "a.log", r"joined the in-sync set", followers)
            loadgen = Path(os.environ.get("LOADGEN_BIN", "/tmp/loadgen/loadgen"))
            if loadgen.exists():  # S3 of tools/bench: confirms 1000 outstanding, a consumer, prefetch 100
                return s3(loadgen, amqp_port, duration, window, size)
            return asyncio.run(publish(amqp_port, duration, window, size))
        finally:
            for process in processes:
                process.send_signal(signal.SIGTERM)
            for process in processes:
                process.wait(timeout=30)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--followers", default="0,1")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--window", type=int, default=1000)
    parser.add_argument("--size", type=int, default=1024)
    args = parser.parse_args()
    for count in (int(n) for n in args.followers.split(",")):
        rate = run(count, args.duration, args.window, args.size)
        print(f"followers={count} confirmed_msgs_per_s={rate:.0f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
