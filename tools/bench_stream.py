#!/usr/bin/env python3
"""Streams against RabbitMQ 3.10 with its stream plugin, in the same run on this machine (issue 15).

Strategy: one OtterMQ (stream port on) and one private RabbitMQ node (`otterstream@localhost`, AMQP 5690,
stream 5591, its own data under /tmp/rmq-stream, never the shared node) run side by side for the whole
run; each round measures both, the broker that goes first alternating per round; the figures are medians.
Phases, 1 KiB messages:
- `amqp`: loadgen, one producer with confirms (1000 outstanding) and one consumer (prefetch 100, attached
  at `next`) on a stream queue, together for `--duration` seconds: publish+confirm and consume msg/s.
- `first`: loadgen fills a stream with `--messages` (producer only, confirms), then tools/streamread (Go,
  amqp091-go; x-stream-offset first, prefetch 1000, manual acks, multiple every 250) reads them all and
  checks the offsets are consecutive: consume msg/s from consume-ok to the last delivery. (A pika consumer
  measured pika: it is the slower side for both brokers.)
- `stream`: rstream publishes `--messages` with confirms (batches of 500, at most 20k unconfirmed), then
  a subscriber reads them from `first`.
Broker CPU seconds are read from /proc (utime+stime of the OtterMQ process, of RabbitMQ's beam.smp).

`--rss GB` instead fills a stream of that many GB over the stream protocol (OtterMQ only) and samples the
broker's RSS while an AMQP 0.9.1 consumer and a stream-protocol consumer read it from `first`.

Usage: tools/bench_stream.py [--rounds 3] [--duration 10] [--messages 500000] [--phases amqp,first,stream]
                             [--no-rabbit] [--json]
       tools/bench_stream.py --rss 5 [--size 4096]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pika
import pika.exceptions

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tools import rabbit_node  # noqa: E402
from tools.rabbit_node import RabbitNode, free_port  # noqa: E402

LOADGEN_DIR = Path(os.environ.get("LOADGEN_DIR", ROOT.parent / "shared" / "tools" / "loadgen")).resolve()
LOADGEN_BIN = Path(os.environ.get("LOADGEN_BIN", "/tmp/loadgen/loadgen"))
STREAMREAD_BIN = Path(os.environ.get("STREAMREAD_BIN", "/tmp/streamread/streamread"))
RABBIT_BASE = Path("/tmp/rmq-stream")
RABBIT_NODE = "otterstream@localhost"
RABBIT_PORT = 5690
RABBIT_STREAM_PORT = 5591
RABBIT_DIST_PORT = 25690
SIZE = 1024
TICK = os.sysconf("SC_CLK_TCK")


def log(message: str) -> None:
    print(f"bench_stream: {message}", file=sys.stderr, flush=True)


def cpu_seconds(pid: int) -> float:
    """utime + stime of `pid` (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


# -- brokers -------------------------------------------------------------------------------------------------


@dataclass
class Broker:
    name: str
    amqp_port: int
    stream_port: int
    pid: int

    @property
    def uri(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.amqp_port}/%2F"


def wait_amqp(port: int, timeout: float, alive: Callable[[], bool]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", port)).close()
            return
        except (pika.exceptions.AMQPError, OSError):
            if not alive():
                break
            time.sleep(0.2)
    raise RuntimeError(f"no broker answered on {port}")


@contextmanager
def ottermq(data_dir: Path, log_path: Path) -> Iterator[Broker]:
    """`ottermq serve` with its stream port on; SIGTERM at the end."""
    python = ROOT / ".venv" / "bin" / "python"
    port, stream_port = free_port(), free_port()
    cmd = [
        str(python if python.exists() else sys.executable), "-m", "ottermq", "serve", "--host", "127.0.0.1",
        "--port", str(port), "--http-port", "0", "--prometheus-port", "0", "--stream-port", str(stream_port),
        "--data-dir", str(data_dir), "--log-level", "warning",
    ]  # fmt: skip
    with log_path.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        wait_amqp(port, 60, lambda: proc.poll() is None)
        yield Broker("OtterMQ", port, stream_port, proc.pid)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def rabbit_node_for_streams() -> RabbitNode:
    """The private RabbitMQ node with the stream plugin, run as the rabbitmq user."""
    return RabbitNode(
        RABBIT_NODE, RABBIT_BASE, RABBIT_PORT, RABBIT_DIST_PORT, stream_port=RABBIT_STREAM_PORT,
        plugins=["rabbitmq_stream"], user="rabbitmq",
    )  # fmt: skip


def start_rabbit(node: RabbitNode) -> Broker:
    """Start the node on fresh data and wait for both its ports."""
    if not rabbit_node.installed():
        sys.exit("bench_stream: rabbitmq-server is not installed (apt-get install -y rabbitmq-server)")
    shutil.rmtree(node.base / "mnesia", ignore_errors=True)
    node.start()
    node.wait_port()
    return Broker("RabbitMQ", node.port, RABBIT_STREAM_PORT, node.pid)


# -- phases --------------------------------------------------------------------------------------------------


def ensure_loadgen() -> Path:
    if not os.access(LOADGEN_BIN, os.X_OK):
        log("building loadgen")
        subprocess.run(
            [str(LOADGEN_DIR / "build.sh")], check=True, env={**os.environ, "LOADGEN_BIN": str(LOADGEN_BIN)}
        )
    return LOADGEN_BIN


def ensure_streamread() -> Path:
    """tools/streamread, built when missing or older than its source."""
    source = ROOT / "tools" / "streamread"
    newest = max(path.stat().st_mtime for path in source.iterdir())
    if not os.access(STREAMREAD_BIN, os.X_OK) or STREAMREAD_BIN.stat().st_mtime < newest:
        log("building streamread")
        subprocess.run(
            [str(source / "build.sh")], check=True, env={**os.environ, "STREAMREAD_BIN": str(STREAMREAD_BIN)}
        )
    return STREAMREAD_BIN


def loadgen(broker: Broker, args: list[str], timeout: float) -> dict[str, Any]:
    cmd = [str(ensure_loadgen()), "--uri", broker.uri, "--json", "--quiet", "--broker-pid", str(broker.pid)]
    cmd += ["--queue-type", "stream", "--persistent", "--confirm", "1000", "--size", str(SIZE), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(
            f"loadgen printed no result (exit {proc.returncode}): {proc.stderr.strip()[-500:]}"
        )
    result: dict[str, Any] = json.loads(lines[-1])
    if proc.returncode != 0:
        log(f"{broker.name}: loadgen exit {proc.returncode}: {result.get('error_messages')}")
    return result


def phase_amqp(broker: Broker, duration: float) -> dict[str, float]:
    """Publish with confirms and consume at `next`, together."""
    cpu = cpu_seconds(broker.pid)
    result = loadgen(broker, ["--producers", "1", "--consumers", "1", "--prefetch", "100",
                              "--duration", f"{duration:g}s"], duration * 4 + 120)  # fmt: skip
    confirmed = float(result.get("confirmed_per_s", 0.0))
    used = cpu_seconds(broker.pid) - cpu
    return {
        "publish_confirm": confirmed,
        "consume": float(result.get("consumed_per_s", 0.0)),
        "broker_cpu_s": used,
        "cpu_us_per_msg": used / max(1.0, confirmed * duration) * 1e6,
    }


def delete_queue(broker: Broker, name: str) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(broker.uri))
    try:
        connection.channel().queue_delete(name)
    finally:
        connection.close()


def amqp_read_first(uri: str, queue: str, count: int, prefetch: int = 1000) -> tuple[float, int]:
    """Read `count` messages of `queue` from `first` with streamread (manual acks, multiple every 250);
    (seconds from consume-ok to the last delivery, body bytes). Raises unless all came, each with its
    offset; offsets skipped are only logged (RabbitMQ's offsets may skip one: a chunk of its own that holds
    no message)."""
    cmd = [str(ensure_streamread()), "--uri", uri, "--queue", queue, "--offset", "first"]
    cmd += ["--count", str(count), "--prefetch", str(prefetch), "--ack-every", "250", "--idle", "30"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=count / 1000 + 300)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    result: dict[str, Any] = json.loads(lines[-1]) if lines else {}
    if proc.returncode != 0 or result.get("consumed") != count or result.get("missing_headers") != 0:
        raise RuntimeError(f"streamread (exit {proc.returncode}): {result or proc.stderr.strip()[-500:]}")
    if result.get("gaps"):
        log(f"streamread: {result['gaps']} gap(s) in the offsets of {queue}: {result}")
    return float(result["seconds"]), int(result["bytes"])


def phase_first(broker: Broker, messages: int) -> dict[str, float]:
    """Fill a stream (loadgen, confirms), then read it all from `first`."""
    queue = f"bench-first-{os.getpid()}-{time.monotonic_ns()}"
    cpu = cpu_seconds(broker.pid)
    fill = loadgen(broker, ["--producers", "1", "--consumers", "0", "--messages", str(messages),
                            "--queue-name", queue, "--keep", "--duration", "600s"], 900)  # fmt: skip
    fill_cpu = cpu_seconds(broker.pid) - cpu
    cpu = cpu_seconds(broker.pid)
    elapsed, _size = amqp_read_first(broker.uri, queue, messages)
    read_cpu = cpu_seconds(broker.pid) - cpu
    delete_queue(broker, queue)
    return {
        "fill_publish_confirm": float(fill.get("confirmed_per_s", 0.0)),
        "consume_first": messages / elapsed,
        "fill_broker_cpu_s": fill_cpu,
        "read_broker_cpu_s": read_cpu,
        "fill_cpu_us_per_msg": fill_cpu / messages * 1e6,
        "read_cpu_us_per_msg": read_cpu / messages * 1e6,
    }


async def stream_publish(port: int, stream: str, messages: int, size: int, create: bool = True) -> float:
    """Publish `messages` of `size` bytes with confirms over the stream protocol; seconds to the last."""
    from rstream import AMQPMessage, Producer

    body = bytes(AMQPMessage(body=os.urandom(size)))  # encoded once: the client's cost is not measured
    window = 20_000
    batch = max(1, min(500, 900_000 // (len(body) + 16)))  # one Publish frame within 1 MiB (rstream's max)
    confirmed = 0
    failed: list[Any] = []
    room = asyncio.Event()
    done = asyncio.Event()

    def on_confirm(status: Any) -> None:
        nonlocal confirmed
        if not status.is_confirmed:
            failed.append(status)
            done.set()
        confirmed += 1
        room.set()
        if confirmed >= messages:
            done.set()

    async with Producer("127.0.0.1", port=port, username="guest", password="guest") as producer:
        if create:
            await producer.create_stream(stream, exists_ok=True)
        began = time.monotonic()
        sent = 0
        while sent < messages and not failed:
            while sent - confirmed >= window and not failed:
                room.clear()
                await asyncio.wait_for(room.wait(), 60)
            n = min(batch, messages - sent)
            await producer.send_batch(stream, [body] * n, on_publish_confirm=on_confirm)
            sent += n
        await asyncio.wait_for(done.wait(), 120)
        if failed:
            raise RuntimeError(f"publish not confirmed: {failed[0]}")
        return time.monotonic() - began


async def stream_read_first(port: int, stream: str, messages: int) -> float:
    """Subscribe from `first` and read `messages`; seconds to the last."""
    from rstream import Consumer, ConsumerOffsetSpecification, MessageContext, OffsetType

    seen = 0
    done = asyncio.Event()

    def on_message(_message: Any, _context: MessageContext) -> None:
        nonlocal seen
        seen += 1
        if seen >= messages:
            done.set()

    consumer = Consumer("127.0.0.1", port=port, username="guest", password="guest")
    await consumer.start()
    try:
        began = time.monotonic()
        await consumer.subscribe(
            stream, on_message, offset_specification=ConsumerOffsetSpecification(OffsetType.FIRST, None)
        )
        await asyncio.wait_for(done.wait(), 1800)
        return time.monotonic() - began
    finally:
        await consumer.close()


async def stream_delete(port: int, stream: str) -> None:
    from rstream import Producer

    async with Producer("127.0.0.1", port=port, username="guest", password="guest") as producer:
        await producer.delete_stream(stream)


def phase_stream(broker: Broker, messages: int) -> dict[str, float]:
    stream = f"bench-sp-{os.getpid()}-{time.monotonic_ns()}"
    cpu = cpu_seconds(broker.pid)
    publish = asyncio.run(stream_publish(broker.stream_port, stream, messages, SIZE))
    publish_cpu = cpu_seconds(broker.pid) - cpu
    cpu = cpu_seconds(broker.pid)
    read = asyncio.run(stream_read_first(broker.stream_port, stream, messages))
    read_cpu = cpu_seconds(broker.pid) - cpu
    asyncio.run(stream_delete(broker.stream_port, stream))
    return {
        "publish_confirm": messages / publish,
        "consume_first": messages / read,
        "publish_broker_cpu_s": publish_cpu,
        "read_broker_cpu_s": read_cpu,
        "publish_cpu_us_per_msg": publish_cpu / messages * 1e6,
        "read_cpu_us_per_msg": read_cpu / messages * 1e6,
    }


PHASES: dict[str, Callable[[Broker, argparse.Namespace], dict[str, float]]] = {
    "amqp": lambda broker, args: phase_amqp(broker, args.duration),
    "first": lambda broker, args: phase_first(broker, args.messages),
    "stream": lambda broker, args: phase_stream(broker, args.messages),
}


# -- RSS while reading a large stream ------------------------------------------------------------------------


@dataclass
class RssCurve:
    samples: list[tuple[float, float]] = field(default_factory=list)  # (seconds, MB)

    def summary(self) -> dict[str, float]:
        values = [mb for _t, mb in self.samples]
        return {
            "start_mb": round(values[0], 1),
            "peak_mb": round(max(values), 1),
            "end_mb": round(values[-1], 1),
            "samples": len(values),
        }


@contextmanager
def sample_rss(pid: int, every: float = 0.5) -> Iterator[RssCurve]:
    curve = RssCurve()
    stop = threading.Event()
    began = time.monotonic()

    def run() -> None:
        while True:
            curve.samples.append((time.monotonic() - began, rss_mb(pid)))
            if stop.wait(every):
                curve.samples.append((time.monotonic() - began, rss_mb(pid)))
                return

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield curve
    finally:
        stop.set()
        thread.join()


def fill_stream(stream_port: int, stream: str, total_bytes: int, size: int) -> int:
    """Publish `total_bytes` of `size`-byte messages to `stream` over the stream protocol; how many."""
    messages = max(1, total_bytes // size)
    asyncio.run(stream_publish(stream_port, stream, messages, size))
    return messages


def read_both(broker: Broker, stream: str, messages: int) -> tuple[RssCurve, float, float]:
    """An AMQP 0.9.1 consumer (a thread) and a stream-protocol subscriber read `stream` from `first` at the
    same time while the broker's RSS is sampled; (curve, AMQP msg/s, stream msg/s)."""
    rates: dict[str, float] = {}
    errors: list[BaseException] = []

    def amqp() -> None:
        try:
            elapsed, _ = amqp_read_first(broker.uri, stream, messages)
            rates["amqp"] = messages / elapsed
        except BaseException as exc:  # reported by the caller
            errors.append(exc)

    with sample_rss(broker.pid) as curve:
        thread = threading.Thread(target=amqp)
        thread.start()
        try:
            rates["stream"] = messages / asyncio.run(stream_read_first(broker.stream_port, stream, messages))
        finally:
            thread.join()
    if errors:
        raise errors[0]
    return curve, rates["amqp"], rates["stream"]


def rss_run(broker: Broker, gigabytes: float, size: int) -> dict[str, Any]:
    """Fill a stream of `gigabytes` over the stream protocol, then read it from `first` over AMQP 0.9.1 and
    over the stream protocol at the same time while sampling the broker's RSS."""
    stream = "bench-rss"
    before = rss_mb(broker.pid)
    began = time.monotonic()
    with sample_rss(broker.pid) as fill_curve:
        messages = fill_stream(broker.stream_port, stream, int(gigabytes * 1e9), size)
    seconds = time.monotonic() - began
    log(f"filled {messages} x {size} B in {seconds:.1f} s; RSS {rss_mb(broker.pid):.0f} MB")
    curve, amqp_rate, stream_rate = read_both(broker, stream, messages)
    out = {
        "messages": messages,
        "size": size,
        "fill_s": round(seconds, 1),
        "rss_before_fill_mb": round(before, 1),
        "fill": fill_curve.summary(),
        "read": curve.summary(),
        "amqp_msg_per_s": round(amqp_rate),
        "stream_msg_per_s": round(stream_rate),
        "curve_mb": [round(mb) for _t, mb in curve.samples[:: max(1, len(curve.samples) // 40)]],
    }
    log(f"read from first by both: {out['read']}")
    return out


# -- main ----------------------------------------------------------------------------------------------------


def median_table(results: dict[str, dict[str, list[dict[str, float]]]], loads: list[str]) -> str:
    rows = [
        ("AMQP 0.9.1 publish+confirm (consumer at next)", "amqp", "publish_confirm"),
        ("AMQP 0.9.1 consume (at next, with the publisher)", "amqp", "consume"),
        ("AMQP 0.9.1 publish+confirm (producer alone)", "first", "fill_publish_confirm"),
        ("AMQP 0.9.1 consume from first (streamread)", "first", "consume_first"),
        ("stream protocol publish+confirm (rstream)", "stream", "publish_confirm"),
        ("stream protocol consume from first (rstream)", "stream", "consume_first"),
        ("broker CPU us per message: AMQP 0.9.1 publish+consume at next", "amqp", "cpu_us_per_msg"),
        ("broker CPU us per message: AMQP 0.9.1 publish alone", "first", "fill_cpu_us_per_msg"),
        ("broker CPU us per message: AMQP 0.9.1 read from first", "first", "read_cpu_us_per_msg"),
        ("broker CPU us per message: stream protocol publish", "stream", "publish_cpu_us_per_msg"),
        ("broker CPU us per message: stream protocol read from first", "stream", "read_cpu_us_per_msg"),
    ]
    lines = [
        "| msg/s (CPU: us per message), median (min-max) | OtterMQ | RabbitMQ 3.10 | ratio of medians "
        "| median of round ratios |",
        "|---|---:|---:|---:|---:|",
    ]

    def cell(runs: list[dict[str, float]], key: str) -> tuple[float, str]:
        values = [run[key] for run in runs if key in run]
        if not values:
            return 0.0, "-"
        med = statistics.median(values)
        if med < 1000:  # CPU per message
            return med, f"{med:.1f} ({min(values):.1f}-{max(values):.1f})"
        return med, f"{med:,.0f} ({min(values):,.0f}-{max(values):,.0f})"

    for label, phase, key in rows:
        otter = results.get("OtterMQ", {}).get(phase, [])
        rabbit = results.get("RabbitMQ", {}).get(phase, [])
        if not otter and not rabbit:
            continue
        o_med, o_cell = cell(otter, key)
        r_med, r_cell = cell(rabbit, key)
        ratio = f"{o_med / r_med:.2f}x" if r_med else "-"
        # Each round runs the two brokers back to back: their ratio shares that moment's machine load.
        pairs = [o[key] / r[key] for o, r in zip(otter, rabbit, strict=False) if r.get(key) and key in o]
        paired = f"{statistics.median(pairs):.2f}x" if pairs else "-"
        lines.append(f"| {label} | {o_cell} | {r_cell} | {ratio} | {paired} |")
    lines.append("")
    lines.append(f"Load average (1/5/15 min) at each phase: {', '.join(loads)}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--messages", type=int, default=500_000)
    parser.add_argument("--phases", default="amqp,first,stream")
    parser.add_argument("--no-rabbit", action="store_true")
    parser.add_argument("--json", action="store_true", help="print every run as JSON too")
    parser.add_argument("--rss", type=float, default=0.0, help="GB: the RSS mode (OtterMQ only)")
    parser.add_argument("--size", type=int, default=SIZE, help="message size of the RSS mode")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the brokers on the way out

    with tempfile.TemporaryDirectory(prefix="ottermq-bench-stream-") as tmp:
        if args.rss:
            with ottermq(Path(tmp) / "data", Path(tmp) / "ottermq.log") as broker:
                print(json.dumps(rss_run(broker, args.rss, args.size), indent=2))
            return
        rabbit = None if args.no_rabbit else rabbit_node_for_streams()
        brokers: list[Broker] = []
        try:
            with ottermq(Path(tmp) / "data", Path(tmp) / "ottermq.log") as otter:
                brokers.append(otter)
                if rabbit is not None:
                    brokers.append(start_rabbit(rabbit))
                results: dict[str, dict[str, list[dict[str, float]]]] = {b.name: {} for b in brokers}
                loads: list[str] = []
                for round_no in range(args.rounds):
                    order = brokers if round_no % 2 == 0 else list(reversed(brokers))
                    for phase in args.phases.split(","):
                        for broker in order:
                            loads.append(loadavg())
                            figures = PHASES[phase](broker, args)
                            log(f"round {round_no + 1} {phase} {broker.name}: {figures} (load {loads[-1]})")
                            results[broker.name].setdefault(phase, []).append(figures)
                print(median_table(results, loads))
                if args.json:
                    print(json.dumps(results, indent=2))
        finally:
            if rabbit is not None:
                rabbit.shutdown()


if __name__ == "__main__":
    main()
