#!/usr/bin/env python3
"""Benchmarks of the durable broker against RabbitMQ: S3/S7 throughput and restart with a large backlog.

Strategy: throughput reuses tools/bench (same loadgen runs, same interleaving of the two brokers, medians);
restart fills one durable queue with N persistent messages through loadgen, then times each broker from
process start until a basic.get returns one of them: first after SIGKILL (replay of the log tail), then after
a clean stop. RabbitMQ for the restart is a private node on port 5673 with its own data directory, so the
shared node on 5672 that other runs use is never killed; it runs the same 3.10 server with default settings.
RSS is read from /proc for the OtterMQ process and for RabbitMQ's beam.smp while they hold the backlog.

Usage: tools/bench_durable.py [--what throughput,restart] [--rounds 3] [--messages 1000000] [--size 1024]
                              [--no-rabbit] [--no-write]
"""

from __future__ import annotations

import argparse
import importlib.machinery
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import pika
import pika.exceptions

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tools.rabbit_node import RabbitNode, free_port  # noqa: E402

RESTART_QUEUE = "bench.restart"
THROUGHPUT = ("<!-- durable:begin -->", "<!-- durable:end -->")
RESTART = ("<!-- restart:begin -->", "<!-- restart:end -->")
RABBIT_NODE = "bench@localhost"
RABBIT_PORT = 5673
RABBIT_DIST_PORT = 25673


def log(message: str) -> None:
    print(f"bench_durable: {message}", file=sys.stderr, flush=True)


def load_bench() -> ModuleType:
    """tools/bench (a script without .py) as a module, to share its loadgen and OtterMQ helpers."""
    loader = importlib.machinery.SourceFileLoader("ottermq_bench", str(ROOT / "tools" / "bench"))
    spec = importlib.util.spec_from_loader("ottermq_bench", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


# -- S3 / S7 -------------------------------------------------------------------------------------------------


def throughput(bench: ModuleType, rounds: int, duration: float, rabbit: bool) -> str:
    """S3 and S7 against both brokers, interleaved; the markdown block for BENCHMARKS.md.

    RabbitMQ is a private node (port 5673) started for the run: the shared node on 5672 serves other
    engineers' tests, whose connections would skew (or, at a few hundred, stall) its figures.
    """
    binary = bench.ensure_loadgen()
    results: dict[str, dict[str, list[dict[str, Any]]]] = {}
    with (
        tempfile.TemporaryDirectory(prefix="ottermq-bench-") as tmp,
        bench.ottermq_process(Path(tmp) / "data", Path(tmp) / "ottermq.log") as (pid, port),
    ):
        targets = [("OtterMQ", f"amqp://guest:guest@127.0.0.1:{port}/", pid)]
        node = rabbit_node(Path(tmp) / "rabbit")
        try:
            if rabbit:
                Path(tmp).chmod(0o755)  # the node runs as the rabbitmq user
                node.start()
                node.wait_port()
                targets.append(("RabbitMQ", f"amqp://guest:guest@127.0.0.1:{node.port}/", node.pid))
            for round_no in range(1, rounds + 1):
                order = targets if round_no % 2 else targets[::-1]
                for scenario in ("S3", "S7"):
                    for name, uri, broker_pid in order:
                        log(f"round {round_no}/{rounds} {scenario} {name}")
                        r = bench.run_loadgen(binary, uri, scenario, duration, broker_pid)
                        results.setdefault(scenario, {}).setdefault(name, []).append(r)
                        log(
                            f"  confirmed/s {r.get('confirmed_per_s')} consumed/s {r.get('consumed_per_s')} "
                            f"errors {r.get('errors')}"
                        )
        finally:
            node.shutdown()
    return render_throughput(bench, results, rounds, duration)


def render_throughput(
    bench: ModuleType,
    results: dict[str, dict[str, list[dict[str, Any]]]],
    rounds: int,
    duration: float,
) -> str:
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    columns = [
        ("confirmed/s", "confirmed_per_s", "{:.0f}"),
        ("consumed/s", "consumed_per_s", "{:.0f}"),
        ("p50 ms", "latency_p50_ms", "{:.1f}"),
        ("p99 ms", "latency_p99_ms", "{:.1f}"),
        ("broker cpu%", "broker_cpu_pct", "{:.0f}"),
    ]
    lines = [
        THROUGHPUT[0],
        f"Measured {now}, median of {rounds} interleaved rounds ({duration:g} s windows for S3). "
        "Reproduce with:",
        "",
        "```sh",
        f"tools/bench_durable.py --what throughput --rounds {rounds}",
        "```",
        "",
        "| scenario | broker | " + " | ".join(c[0] for c in columns) + " | errors |",
        "|---|---|" + "---|" * (len(columns) + 1),
    ]
    ratios = ["", "| scenario | figure | OtterMQ | RabbitMQ | OtterMQ/RabbitMQ |", "|---|---|---|---|---|"]
    for scenario, raw in results.items():
        # A run that never got going (connect failure: published 0) has no figures; its error still counts.
        by_broker = {b: [r for r in rs if r.get("published")] for b, rs in raw.items()}
        for broker, rs in by_broker.items():
            cells = [bench.fmt(bench.median(rs, key), spec) for _, key, spec in columns]
            errors = sum(int(r.get("errors", 0)) for r in raw[broker])
            lines.append(f"| {scenario} | {broker} | " + " | ".join(cells) + f" | {errors} |")
        for key in ("confirmed_per_s", "consumed_per_s"):
            ours = bench.median(by_broker.get("OtterMQ", []), key)
            theirs = bench.median(by_broker.get("RabbitMQ", []), key)
            cells = [bench.fmt(ours, "{:.0f}"), bench.fmt(theirs, "{:.0f}"), bench.ratio(ours, theirs)]
            ratios.append(f"| {scenario} | {key} | " + " | ".join(cells) + " |")
    return "\n".join([*lines, *ratios, THROUGHPUT[1]]) + "\n"


# -- restart with a backlog ----------------------------------------------------------------------------------


@dataclass
class RestartResult:
    """One broker's figures for the restart benchmark."""

    broker: str
    messages: int = 0
    publish_per_s: float = 0.0
    rss_loaded_mib: float = 0.0
    ready_after_kill_s: float = 0.0
    rss_after_kill_mib: float = 0.0
    ready_after_stop_s: float = 0.0
    stop_s: float = 0.0
    rss_after_stop_mib: float = 0.0
    count_after: int = 0
    disk_mib: float = 0.0
    notes: list[str] = field(default_factory=list)


def rss_mib(pid: int) -> float:
    """Resident set size of `pid` in MiB (0 when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def dir_mib(path: Path) -> float:
    """Disk usage of a directory tree (allocated blocks), in MiB."""
    total = 0
    for p in path.rglob("*"):
        try:
            if p.is_file():
                total += p.stat().st_blocks * 512
        except OSError:
            pass
    return total / 2**20


def wait_served(port: int, began: float, timeout: float = 900.0) -> float:
    """Seconds from `began` until a basic.get on the restart queue returns a message (requeued afterwards)."""
    params = pika.ConnectionParameters(
        "127.0.0.1",
        port,
        credentials=pika.PlainCredentials("guest", "guest"),
        socket_timeout=1,
        stack_timeout=5,
        connection_attempts=1,
        blocked_connection_timeout=5,
    )
    while time.monotonic() - began < timeout:
        try:
            conn = pika.BlockingConnection(params)
        except (pika.exceptions.AMQPError, OSError):
            time.sleep(0.01)
            continue
        try:
            method, _, _ = conn.channel().basic_get(RESTART_QUEUE, auto_ack=False)
            if method is not None:
                return time.monotonic() - began
        except (pika.exceptions.AMQPError, OSError):
            pass  # queue not recovered yet (404) or the node is still booting
        finally:
            try:
                conn.close()
            except (pika.exceptions.AMQPError, OSError):
                pass
        time.sleep(0.01)
    raise RuntimeError(f"no basic.get served within {timeout:g} s")


def queue_count(port: int) -> int:
    params = pika.ConnectionParameters("127.0.0.1", port, credentials=pika.PlainCredentials("guest", "guest"))
    conn = pika.BlockingConnection(params)
    try:
        count: int = conn.channel().queue_declare(RESTART_QUEUE, passive=True).method.message_count
        return count
    finally:
        conn.close()


def fill(binary: Path, port: int, pid: int, messages: int, size: int) -> float:
    """Publish `messages` persistent messages with confirms into the restart queue; confirmed msg/s."""
    args = [
        str(binary),
        "--uri",
        f"amqp://guest:guest@127.0.0.1:{port}/",
        "--consumers",
        "0",
        "--size",
        str(size),
        "--persistent",
        "--confirm",
        "1000",
        "--messages",
        str(messages),
        "--duration",
        "0",
        "--queue-name",
        RESTART_QUEUE,
        "--keep",
        "--json",
        "--quiet",
        "--broker-pid",
        str(pid),
    ]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=1800)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        output = proc.stdout[-800:] + proc.stderr[-800:]
        raise RuntimeError(f"loadgen fill failed ({proc.returncode}): {output}")
    result = json.loads(lines[-1])
    return float(result["confirmed_per_s"])


class OtterMQNode:
    """`ottermq serve` on a fixed port and data directory, started and stopped at will."""

    def __init__(self, data_dir: Path, log_path: Path, port: int) -> None:
        self.data_dir, self.log_path, self.port = data_dir, log_path, port
        # The management API is served as by default (its memory and start-up time count too).
        self.http_port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> float:
        venv = ROOT / ".venv" / "bin" / "python"
        python = str(venv if venv.exists() else sys.executable)
        cmd = [
            python,
            "-m",
            "ottermq",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--http-port",
            str(self.http_port),
            "--data-dir",
            str(self.data_dir),
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith("OTTERMQ_")}
        env["OTTERMQ_PERSISTENCE"] = "memento"
        began = time.monotonic()
        with self.log_path.open("ab") as out:
            self.process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
        return began

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def wait_port(self, timeout: float = 120.0) -> None:
        began = time.monotonic()
        while time.monotonic() - began < timeout:
            try:
                pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", self.port)).close()
                return
            except (pika.exceptions.AMQPError, OSError):
                if self.process is not None and self.process.poll() is not None:
                    raise RuntimeError(f"ottermq exited; see {self.log_path}") from None
                time.sleep(0.05)
        raise RuntimeError("ottermq did not start")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(30)

    def stop(self) -> float:
        assert self.process is not None
        began = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(120)
        return time.monotonic() - began


def rabbit_node(base: Path) -> RabbitNode:
    """The private RabbitMQ node (port 5673, default settings and no plugins), run as the rabbitmq user."""
    return RabbitNode(RABBIT_NODE, base, RABBIT_PORT, RABBIT_DIST_PORT, user="rabbitmq")


def restart_one(
    name: str, node: OtterMQNode | RabbitNode, binary: Path, messages: int, size: int, data: Path
) -> RestartResult:
    """Fill, SIGKILL + restart, clean stop + restart; the figures of one broker."""
    result = RestartResult(name, messages)
    node.start()
    node.wait_port()
    log(f"{name}: publishing {messages} x {size} B persistent")
    result.publish_per_s = fill(binary, node.port, node.pid, messages, size)
    time.sleep(2)
    result.rss_loaded_mib = rss_mib(node.pid)
    result.disk_mib = dir_mib(data)
    log(f"{name}: {result.publish_per_s:.0f} msg/s, RSS {result.rss_loaded_mib:.0f} MiB; SIGKILL")
    node.kill()
    began = node.start()
    result.ready_after_kill_s = wait_served(node.port, began)
    time.sleep(2)
    result.rss_after_kill_mib = rss_mib(node.pid)
    log(f"{name}: ready {result.ready_after_kill_s:.2f} s after SIGKILL; clean stop")
    result.stop_s = node.stop()
    began = node.start()
    result.ready_after_stop_s = wait_served(node.port, began)
    time.sleep(2)
    result.rss_after_stop_mib = rss_mib(node.pid)
    result.count_after = queue_count(node.port)
    log(f"{name}: ready {result.ready_after_stop_s:.2f} s after a clean stop; {result.count_after} queued")
    node.stop()
    return result


def restart_bench(binary: Path, messages: int, size: int, rabbit: bool, ottermq: bool = True) -> str:
    """The restart benchmark for each broker in turn; the markdown block."""
    results: list[RestartResult] = []
    base = Path(tempfile.mkdtemp(prefix="ottermq-restart-"))
    base.chmod(0o755)  # the RabbitMQ node runs as the rabbitmq user
    try:
        if ottermq:
            # Bytecode compiled first, as `make run` and an installed package have it: where
            # PYTHONDONTWRITEBYTECODE is set, each start would otherwise compile every module again
            # (~0.15 s here), which is not what a deployment pays.
            subprocess.run(
                [sys.executable, "-m", "compileall", "-q", "ottermq", "memento"],
                cwd=ROOT,
                check=True,
                stdout=subprocess.DEVNULL,
            )
            data = base / "ottermq"
            otter = OtterMQNode(data, base / "ottermq.log", free_port())
            try:
                results.append(restart_one("OtterMQ", otter, binary, messages, size, data))
            finally:
                otter.kill()
            shutil.rmtree(data, ignore_errors=True)
        if rabbit:
            node = rabbit_node(base / "rabbit")
            try:
                mnesia = base / "rabbit" / "mnesia"
                results.append(restart_one("RabbitMQ", node, binary, messages, size, mnesia))
            finally:
                node.shutdown()
    finally:
        shutil.rmtree(base, ignore_errors=True)
    for r in results:
        print(json.dumps(r.__dict__))
    return render_restart(results, messages, size, rabbit)


def render_restart(results: list[RestartResult], messages: int, size: int, rabbit: bool) -> str:
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    flags = "" if rabbit else " --no-rabbit"
    lines = [
        RESTART[0],
        f"Measured {now}: {messages} messages of {size} B, persistent, in one durable queue. Reproduce with:",
        "",
        "```sh",
        f"tools/bench_durable.py --what restart --messages {messages} --size {size}{flags}",
        "```",
        "",
        "| broker | fill msg/s | RSS loaded MiB | ready after SIGKILL s | RSS after SIGKILL restart MiB | "
        "clean stop s | ready after clean stop s | RSS after clean restart MiB | queued after | disk MiB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r.broker} | {r.publish_per_s:.0f} | {r.rss_loaded_mib:.0f} | {r.ready_after_kill_s:.2f} | "
            f"{r.rss_after_kill_mib:.0f} | {r.stop_s:.2f} | {r.ready_after_stop_s:.2f} | "
            f"{r.rss_after_stop_mib:.0f} | {r.count_after} | {r.disk_mib:.0f} |",
        )
    return "\n".join([*lines, RESTART[1]]) + "\n"


def main() -> int:
    """Parse flags, run the chosen benchmarks, print and record the blocks."""
    parser = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--what", default="throughput,restart")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--no-rabbit", action="store_true")
    parser.add_argument("--no-ottermq", action="store_true", help="restart: measure RabbitMQ only")
    parser.add_argument("--no-write", action="store_true")
    opts = parser.parse_args()
    what = {w.strip() for w in opts.what.split(",") if w.strip()}
    if not what <= {"throughput", "restart"}:
        parser.error("--what takes throughput and/or restart")
    bench = load_bench()
    os.environ["OTTERMQ_PERSISTENCE"] = "memento"
    if "throughput" in what:
        block = throughput(bench, opts.rounds, opts.duration, not opts.no_rabbit)
        print(block)
        if not opts.no_write:
            bench.write_benchmarks(block, *THROUGHPUT)
    if "restart" in what:
        block = restart_bench(
            bench.ensure_loadgen(),
            opts.messages,
            opts.size,
            not opts.no_rabbit,
            not opts.no_ottermq,
        )
        print(block)
        if not opts.no_write:
            bench.write_benchmarks(block, *RESTART)
    return 0


if __name__ == "__main__":
    sys.exit(main())
