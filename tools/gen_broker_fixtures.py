"""Rebuild recovery-fixtures/broker-*: data directories of a real broker, damaged once each, with what
`memento inspect`, `ottermq serve` and `ottermq serve --salvage` currently do on them.

Strategy: a real `ottermq serve` (subprocess, 127.0.0.1, a free port, 64 KiB segments, no periodic
snapshot) is driven over AMQP with pika through three runs on one data directory: run 1 and run 2 end
with SIGTERM (a clean stop snapshots), run 3 with SIGKILL. Snapshots therefore fall exactly between runs
and the log's record sequence does not depend on timing, so a second workload whose bodies differ (run
"B") has the same layout: its segments carry the same names and LSNs and are the "foreign" segments. The
killed directory is the "crash" base; starting it once and stopping it with SIGTERM gives the "clean"
base. Each case copies one base and applies one damage of issue 12 to it.

The expected outcomes are not written by hand: each one is observed here, on a fresh copy per outcome,
with the code as it is now (`observe`), and tests/integration/test_broker_fixtures.py observes the same
way and asserts the recorded outcome. So a change of behaviour shows as a diff of expected.json when the
fixtures are rebuilt; each case's "issue_expectation" says what issue 12 asks for, which the recorded
outcome may not (yet) meet. expected.json:
    description, damage, base        what the directory is and what was done to it
    issue_expectation                what issue 12 requires (text; not asserted)
    inspect    {exit, verdict, damage}                  `memento inspect DIR` (exit -N: killed by signal N)
    serve      {started, exit | queues, reported, ...}  `ottermq serve`: refused (exit, reported lines) or
               started: per queue the message ids a consumer receives, in order, as runs "or0020..or0059"
               (bad_bodies: ids whose body is not the one published under that id), the warning and
               error lines of the whole run (reported) and the exit code of the SIGTERM stop
    salvage    the same for `ottermq serve --salvage`, plus "then_serve": a plain start afterwards
               (started or exit, ready messages per queue)

Runtime files are left out on purpose: LOCK (holds a pid), snapshots/lock.mdb (LMDB's reader table),
ctl.sock (a socket) and spare/ (a zero-filled next segment, never part of the log; Log.open deletes it).
log/ottermq-running stays where the broker left it: after SIGKILL it tells the next start that it crashed.

    .venv/bin/python tools/gen_broker_fixtures.py [OUT_DIR] [CASE...]     (default: recovery-fixtures/)
    .venv/bin/python tools/gen_broker_fixtures.py --outcomes-only [OUT_DIR] [CASE...]
        records the outcomes of the committed directories again (behaviour changed, the format did not)
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import crc32c
import pika
import pika.exceptions

from memento.reader import records_in
from memento.segment import HEADER_SIZE, parse_name

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "recovery-fixtures"
PREFIX = "broker-"
SEGMENT_SIZE = 64 * 1024
BODY_SIZE = 200
STARTUP_TIMEOUT = 30.0
STOP_TIMEOUT = 30.0
# No periodic snapshot: the only snapshots are those of clean stops, so they fall between runs.
SETTINGS = {
    "log_segment_size": str(SEGMENT_SIZE),
    "snapshot_log_bytes": str(1 << 50),
    "snapshot_interval": "86400",
    "log_format": "json",
    "http_port": "0",
    # The background scrub would report covered damage at a time that depends on the machine's speed.
    "scrub_rate": "0",
}
# The first store check (and its reclaim) runs this long after a start; runs wait for it before traffic
# so that compaction copies land at the same place in every workload.
CHECK_INTERVAL = 1.0
# Queue -> message-id prefix. "dead" receives dead-lettered "work" messages (their ids stay wk....).
QUEUES = {"archive": "ar", "orders": "or", "work": "wk", "events": "ev", "dead": "wk", "inflight": "if"}
RUNTIME_FILES = ("LOCK", "snapshots/lock.mdb", "spare")
_LISTENING = re.compile(r"listening on amqp://[^\s:/]+:(\d+)")
PERSISTENT = 2

Outcome = dict[str, Any]


# -- messages ----------------------------------------------------------------------------------------


def body(tag: str, mid: str) -> bytes:
    """The body published under message id `mid` by workload `tag`: every byte depends on both."""
    seed = hashlib.sha256(f"{tag}/{mid}".encode()).hexdigest().encode()
    return (f"{tag}:{mid}:".encode() + seed * 8)[:BODY_SIZE]


def mid(prefix: str, n: int) -> str:
    return f"{prefix}{n:04d}"


def runs(ids: list[str]) -> list[str]:
    """Message ids in order, consecutive numbers of one prefix folded: ["or0020..or0059", "wk0003"]."""
    out: list[str] = []
    start = prev = None
    for item in [*ids, None]:
        if (
            item is not None
            and prev is not None
            and item[:2] == prev[:2]
            and item[2:].isdigit()
            and prev[2:].isdigit()
            and int(item[2:]) == int(prev[2:]) + 1
        ):
            prev = item
            continue
        if start is not None and prev is not None:
            out.append(start if start == prev else f"{start}..{prev}")
        start = prev = item
    return out


# -- the broker process ------------------------------------------------------------------------------


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a broker or tool: no developer OTTERMQ_* leaks in; SETTINGS and `extra` do."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTTERMQ_")}
    env.update({f"OTTERMQ_{k.upper()}": v for k, v in SETTINGS.items()})
    env.update(extra or {})
    return env


class Broker:
    """One `ottermq serve` process on a data directory; its output (JSON log lines) goes to a file."""

    def __init__(self, data: Path, log_path: Path, *, salvage: bool = False) -> None:
        self.data = data
        self.log_path = log_path
        self.salvage = salvage
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.exit_code: int | None = None

    def start(self) -> bool:
        """Start; True once it listens, False when it exits first (its code in `exit_code`)."""
        cmd = [
            sys.executable, "-m", "ottermq", "serve", "--host", "127.0.0.1", "--port", "0",
            "--data-dir", str(self.data), *(["--salvage"] if self.salvage else []),
        ]  # fmt: skip
        with self.log_path.open("wb") as out:
            self.process = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env=clean_env()
            )
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            match = _LISTENING.search(self.text())
            if match is not None:
                self.port = int(match.group(1))
                return True
            code = self.process.poll()
            if code is not None:
                self.exit_code = code
                self.process = None
                return False
            time.sleep(0.02)  # the log file is the only signal the child gives
        self.kill()
        raise RuntimeError(f"ottermq did not start within {STARTUP_TIMEOUT} s:\n{self.text()}")

    def text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> int:
        """SIGTERM and wait; the exit code."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.kill()
            raise RuntimeError(f"ottermq did not stop within {STOP_TIMEOUT} s:\n{self.text()}") from None
        self.process = None
        self.exit_code = code
        return code

    def kill(self) -> None:
        """SIGKILL and wait."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=STOP_TIMEOUT)
            self.process = None

    def connect(self) -> pika.BlockingConnection:
        params = pika.URLParameters(f"amqp://guest:guest@127.0.0.1:{self.port}/%2F")
        params.socket_timeout = 10
        params.blocked_connection_timeout = 10
        return pika.BlockingConnection(params)


@contextmanager
def running(data: Path, log_path: Path) -> Iterator[Broker]:
    """A broker that must start; killed if the block fails."""
    broker = Broker(data, log_path)
    if not broker.start():
        raise RuntimeError(f"ottermq exited with {broker.exit_code}:\n{broker.text()}")
    try:
        yield broker
    finally:
        broker.kill()


# -- the workload ------------------------------------------------------------------------------------


def publish(channel: Any, queue: str, ids: list[str], tag: str) -> None:
    for m in ids:
        props = pika.BasicProperties(delivery_mode=PERSISTENT, message_id=m)
        channel.basic_publish("", queue, body(tag, m), props)


def ids(prefix: str, first: int, last: int) -> list[str]:
    return [mid(prefix, n) for n in range(first, last + 1)]


def get_ids(channel: Any, queue: str, count: int) -> list[tuple[int, str]]:
    """basic.get `count` messages (not acked): (delivery tag, message id) each."""
    got = []
    for _ in range(count):
        method, props, _body = channel.basic_get(queue, auto_ack=False)
        assert method is not None, f"{queue} is empty"
        got.append((method.delivery_tag, props.message_id))
    return got


def settle(channel: Any, queue: str) -> None:
    """Removals (acks, rejects) are gathered until the end of the broker's event-loop turn and logged then:
    a round trip that logs nothing makes sure they are, so that the next publish comes after them in the
    log in every run (the layouts of two workloads then match)."""
    channel.queue_declare(queue, passive=True)


def wait_check(broker: Broker) -> None:
    """Let the store's first check (and the reclaim it starts) run before any traffic."""
    time.sleep(CHECK_INTERVAL + 0.5)
    assert broker.process is not None and broker.process.poll() is None, broker.text()


def wait_on_disk(data: Path, needle: bytes, timeout: float = 10.0) -> None:
    """Until `needle` is in the newest segment file (written, not necessarily synced)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if needle in segments(data)[-1].read_bytes():
            return
        time.sleep(0.02)
    raise RuntimeError("the last unconfirmed publish never reached the log")


def workload(tag: str, data: Path, work: Path) -> None:
    """Three broker runs on `data`; the last one killed while unacked and unconfirmed messages exist."""
    # Run 1: the entities, a dense segment of messages nobody consumes, orders partly acked. SIGTERM.
    with running(data, work / f"{tag}-run1.log") as broker:
        conn = broker.connect()
        ch = conn.channel()
        ch.confirm_delivery()
        ch.exchange_declare("dlx", "fanout", durable=True)
        for queue in ("archive", "orders", "events", "dead", "inflight"):
            ch.queue_declare(queue, durable=True)
        ch.queue_declare("work", durable=True, arguments={"x-dead-letter-exchange": "dlx"})
        ch.queue_bind("dead", "dlx")
        publish(ch, "archive", ids("ar", 0, 199), tag)
        publish(ch, "orders", ids("or", 0, 59), tag)
        ch.basic_ack(get_ids(ch, "orders", 20)[-1][0], multiple=True)
        settle(ch, "orders")
        conn.close()
        assert broker.stop() == 0
    # Run 2: dead-lettering, a committed and a rolled-back transaction, events. SIGTERM.
    with running(data, work / f"{tag}-run2.log") as broker:
        wait_check(broker)
        conn = broker.connect()
        ch = conn.channel()
        ch.confirm_delivery()
        publish(ch, "work", ids("wk", 0, 59), tag)
        ch.basic_nack(get_ids(ch, "work", 10)[-1][0], multiple=True, requeue=False)
        settle(ch, "work")
        tx = conn.channel()
        tx.tx_select()
        publish(tx, "orders", ids("or", 60, 64), tag)
        tx.basic_ack(get_ids(tx, "orders", 5)[-1][0], multiple=True)
        tx.tx_commit()
        publish(tx, "orders", ids("or", 900, 902), tag)
        tx.tx_rollback()
        publish(ch, "events", ids("ev", 0, 149), tag)
        conn.close()
        assert broker.stop() == 0
    # Run 3: more events and orders, 10 orders delivered and never acked, 5 publishes never confirmed
    # (no confirm mode) but written; then SIGKILL.
    with running(data, work / f"{tag}-run3.log") as broker:
        wait_check(broker)
        conn = broker.connect()
        ch = conn.channel()
        ch.confirm_delivery()
        publish(ch, "events", ids("ev", 150, 449), tag)
        publish(ch, "orders", ids("or", 65, 104), tag)
        consumer = conn.channel()
        consumer.basic_qos(prefetch_count=10)
        taken: list[str] = []
        consumer.basic_consume("orders", lambda _ch, _m, props, _b: taken.append(props.message_id))
        deadline = time.monotonic() + 10
        while len(taken) < 10 and time.monotonic() < deadline:
            conn.process_data_events(time_limit=0.05)
        assert len(taken) == 10, taken
        loose = conn.channel()
        publish(loose, "inflight", ids("if", 0, 4), tag)
        wait_on_disk(data, body(tag, mid("if", 4)))
        broker.kill()


def strip_runtime(data: Path) -> None:
    """Leave out what is not state (see the module docstring)."""
    log_dir = data / "log"
    for name in RUNTIME_FILES:
        path = log_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    for path in data.iterdir():
        if path.is_socket():
            path.unlink()


@dataclass
class Bases:
    """The undamaged data directories every case starts from."""

    crash: Path  # workload A, killed after run 3
    clean: Path  # the same, started once more and stopped with SIGTERM
    foreign: Path  # workload B (other bodies, same layout), killed after run 3


def build_bases(work: Path) -> Bases:
    bases = Bases(work / "crash", work / "clean", work / "foreign")
    workload("A", bases.crash, work)
    strip_runtime(bases.crash)
    workload("B", bases.foreign, work)
    strip_runtime(bases.foreign)
    shutil.copytree(bases.crash, bases.clean, symlinks=True)
    with running(bases.clean, work / "clean.log") as broker:
        assert broker.stop() == 0
    strip_runtime(bases.clean)
    return bases


# -- byte surgery ------------------------------------------------------------------------------------


class Rec(NamedTuple):
    """A record found in a segment file: where it starts and ends, its LSN, type and payload."""

    offset: int
    end: int
    lsn: int
    type: int
    payload: bytes


def segments(data: Path) -> list[Path]:
    """Segment files of a data directory, oldest first."""
    wal = data / "log" / "wal"
    return sorted(
        (p for p in wal.iterdir() if parse_name(p.name) is not None),
        key=lambda p: parse_name(p.name) or (0, 0),
    )


def records(path: Path) -> list[Rec]:
    """The records of a healthy segment (seal included)."""
    seq, base = parse_name(path.name) or (0, 0)
    raw = path.read_bytes()
    found = []
    for r in records_in(raw, seq, base, path.name):
        offset = r.position.offset
        length = int.from_bytes(raw[offset : offset + 4], "little")
        found.append(Rec(offset, offset + 8 + length, r.lsn, r.type, r.payload))
    return found


def snapshot_lsn(data: Path) -> int:
    """The newest snapshot's LSN, as `memento inspect --json` reports it."""
    done = run_memento(["inspect", "--json", str(data)])
    doc: dict[str, Any] = json.loads(done.stdout)
    return int(doc["snapshot_lsn"])


def find(data: Path, needle: bytes) -> tuple[Path, Rec]:
    """The segment and record whose payload holds `needle`."""
    for path in segments(data):
        for rec in records(path):
            if needle in rec.payload:
                return path, rec
    raise LookupError(needle)


def flip(path: Path, offset: int, mask: int = 0x10) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([byte ^ mask]))


# -- cases -------------------------------------------------------------------------------------------


class Case(NamedTuple):
    base: str  # "crash" or "clean"
    description: str
    issue_expectation: str
    damage: Callable[[Path, Bases], str]  # damages the copy; returns what it did


CASES: dict[str, Case] = {}


def case(name: str, base: str, description: str, issue_expectation: str) -> Callable[..., Any]:
    def register(fn: Callable[[Path, Bases], str]) -> Callable[[Path, Bases], str]:
        CASES[name] = Case(base, description, issue_expectation, fn)
        return fn

    return register


@case(
    "torn-tail-after-sigkill",
    "crash",
    "the normal crash: SIGKILL with 10 orders unacked and 5 publishes never confirmed; the write of the "
    "last one (if0004) is torn",
    "started: the torn record is quarantined and reported as a repair; every confirmed message survives "
    "(unacked ones come back redelivered), only the unconfirmed, torn if0004 may be lost",
)
def torn_tail(data: Path, _bases: Bases) -> str:
    path, rec = find(data, body("A", mid("if", 4)))
    half = rec.offset + (rec.end - rec.offset) // 2
    with open(path, "r+b") as f:
        f.seek(half)
        f.write(bytes(rec.end - half))
    return f"zeroed the second half of LSN {rec.lsn} ({path.name} offset {half}..{rec.end})"


@case(
    "missing-newest-segment",
    "crash",
    "the newest segment (written after the last snapshot) is gone",
    "refused by serve and by inspect, naming the missing segment (log identity / high-water mark); "
    "salvage starts from what is left and reports the confirmed messages lost",
)
def missing_newest(data: Path, _bases: Bases) -> str:
    segs = segments(data)
    newest = segs[-1]
    base = (parse_name(newest.name) or (0, 0))[1]
    assert snapshot_lsn(data) < base - 1, "the snapshot must not cover the remaining log's end"
    newest.unlink()
    return f"deleted {newest.name} (LSN {base}..)"


@case(
    "foreign-segment",
    "crash",
    "a segment after the snapshot (sealed if there is one, else the tail) replaced by the segment of the "
    "same name from another broker's log with the same layout (same queues and message ids, other bodies)",
    "refused by serve and by inspect, naming the foreign segment (log identity in every segment header); "
    "never are another log's bodies delivered",
)
def foreign_segment(data: Path, bases: Bases) -> str:
    snap = snapshot_lsn(data)
    segs = segments(data)
    # A sealed one first; the tail when the snapshot lies in the last sealed segment.
    for path in [*reversed(segs[:-1]), segs[-1]]:
        base = (parse_name(path.name) or (0, 0))[1]
        other = bases.foreign / "log" / "wal" / path.name
        if base > snap and other.exists():
            shutil.copyfile(other, path)
            return f"replaced {path.name} by the other log's file of that name"
    raise RuntimeError("no segment after the snapshot has a namesake in the other log")


@case(
    "undecodable-payload",
    "crash",
    "a publish record replayed at start (ev0200) has a payload no decoder reads, under a valid checksum",
    "inspect (verify --decoder ottermq) reports it; serve refuses naming its LSN, segment and offset; "
    "salvage can cut the log at that record and says what it drops",
)
def undecodable(data: Path, _bases: Bases) -> str:
    path, rec = find(data, body("A", mid("ev", 200)))
    start = rec.end - len(rec.payload)
    raw = bytearray(path.read_bytes())
    raw[start : rec.end] = b"\xff" * len(rec.payload)
    # The crc32c covers everything after the length and crc words (FORMAT.md), whatever the head holds.
    raw[rec.offset + 4 : rec.offset + 8] = crc32c.crc32c(bytes(raw[rec.offset + 8 : rec.end])).to_bytes(
        4, "little"
    )
    path.write_bytes(bytes(raw))
    return f"payload of LSN {rec.lsn} ({path.name} offset {rec.offset}) set to 0xff bytes, crc recomputed"


@case(
    "covered-segment-bad-header",
    "clean",
    "the header of the oldest segment, which the snapshot covers and whose archive messages are still "
    "queued, is damaged",
    "refused by serve, naming the segment; salvage never quarantines a segment the snapshot's queues "
    "point into: it keeps the other segments and marks only the messages of the damaged one lost, says so "
    "beforehand, and no message is served whose body is gone",
)
def covered_bad_header(data: Path, _bases: Bases) -> str:
    oldest = segments(data)[0]
    flip(oldest, HEADER_SIZE // 2)
    return f"flipped a bit at offset {HEADER_SIZE // 2} of {oldest.name}'s header"


@case(
    "covered-segment-bit-flip",
    "clean",
    "one bit flipped inside the body of ar0100, in a segment the snapshot covers (not read at start)",
    "started; the consumer that reaches ar0100 gets every other message; ar0100 is dropped with an error "
    "line naming queue, message and position, counted in ctl status and /metrics; the connection stays",
)
def covered_bit_flip(data: Path, _bases: Bases) -> str:
    path, rec = find(data, body("A", mid("ar", 100)))
    at = rec.end - BODY_SIZE // 2
    flip(path, at)
    return f"flipped a bit at {path.name} offset {at} (LSN {rec.lsn})"


@case(
    "broken-snapshot-store",
    "clean",
    "the snapshot store's two meta pages are overwritten (LMDB cannot open it); every segment since LSN 1 "
    "is still there",
    "started by a full replay of the log (as with a missing store), with a warning naming the store; "
    "nothing lost; snapshots are written again afterwards",
)
def broken_store(data: Path, _bases: Bases) -> str:
    mdb = data / "log" / "snapshots" / "data.mdb"
    with open(mdb, "r+b") as f:
        f.write(b"\xa5" * 8192)
    return "overwrote the first 8192 bytes of snapshots/data.mdb"


@case(
    "truncated-snapshot-file",
    "clean",
    "the snapshot store's data.mdb is cut to half its size; every segment since LSN 1 is still there",
    "no crash of any tool (no SIGBUS): inspect names the file as truncated; as the log is intact from LSN "
    "1, serve falls back to a full replay with a warning naming the file, nothing lost; later starts and "
    "snapshots work",
)
def truncated_store(data: Path, _bases: Bases) -> str:
    mdb = data / "log" / "snapshots" / "data.mdb"
    size = mdb.stat().st_size
    os.truncate(mdb, size // 2)
    return f"cut snapshots/data.mdb from {size} to {size // 2} bytes"


# -- observing the outcomes --------------------------------------------------------------------------


def run_memento(args: list[str]) -> subprocess.CompletedProcess[str]:
    # The console script next to this interpreter (as tests/memento/test_cli.py runs it).
    memento = str(Path(sys.executable).with_name("memento"))
    return subprocess.run(
        [memento, *args], capture_output=True, text=True, timeout=120, env=clean_env(), check=False
    )


_STAMP = re.compile(r"\.\d{8}T\d{6}Z")


def normalize(text: str, data: Path) -> str:
    """Machine paths and times out: the data directory becomes <data>, a quarantine file's time <time>."""
    for path in {str(data.resolve()), str(data)}:
        text = text.replace(path, "<data>")
    return _STAMP.sub(".<time>", text)


FOLD_FROM = 4


def fold(lines: list[str]) -> list[str]:
    """Runs of FOLD_FROM or more lines that differ only in their numbers (a message dropped, and the
    next...) as the first one and how many more there were."""
    out: list[str] = []
    run: list[str] = []
    for line in [*lines, None]:
        if line is not None and run and re.sub(r"\d+", "#", line) == re.sub(r"\d+", "#", run[0]):
            run.append(line)
            continue
        if len(run) >= FOLD_FROM:
            out.append(f"{run[0]} (and {len(run) - 1} more like it)")
        else:
            out.extend(run)
        run = [line] if line is not None else []
    return out


def observe_inspect(data: Path, command: tuple[str, ...] = ("inspect",)) -> Outcome:
    done = run_memento([*command, str(data)])
    lines = [normalize(line, data) for line in done.stdout.splitlines()]
    verdict = next((line for line in lines if line.startswith("verdict:")), None)
    damage = [line.strip() for line in lines if line.startswith("  [")]
    outcome: Outcome = {"exit": done.returncode, "verdict": verdict, "damage": damage}
    errors = [
        normalize(line, data)
        for line in done.stderr.splitlines()
        if line and not line.startswith("memento: using")
    ]
    if errors:
        outcome["stderr"] = errors[-3:]
    return outcome


# Fields of a log line that differ from run to run.
VOLATILE = frozenset({"ts", "seconds", "pid", "uptime", "port", "host", "conn", "channel", "python"})


def reported(text: str, data: Path) -> list[str]:
    """Warning and error lines of a broker's output (JSON), and whatever it printed that is not JSON
    (a refusal's 'ottermq: error:' line; a traceback as the exception it ends with)."""
    out: list[str] = []
    in_traceback = False
    for line in text.splitlines():
        try:
            doc = json.loads(line)
        except json.JSONDecodeError:
            if line.startswith("Traceback"):
                in_traceback = True
            elif line.strip() and not line.startswith(" "):
                out.append(normalize(("traceback: " if in_traceback else "") + line, data))
                in_traceback = False
            continue
        if not isinstance(doc, dict) or doc.get("level") not in ("warning", "error", "critical"):
            continue
        if "exc" in doc:  # a traceback: its last line says what was raised (the frames hold machine paths)
            doc["exc"] = str(doc["exc"]).strip().splitlines()[-1]
        fields = " ".join(
            f"{k}={v}" for k, v in doc.items() if k not in VOLATILE and k not in ("level", "logger", "msg")
        )
        out.append(normalize(f"{doc['level']}: {doc['msg']}" + (f" [{fields}]" if fields else ""), data))
    return fold(out)


def drain(broker: Broker, tag: str) -> dict[str, Any]:
    """Per queue: the message ids a consumer receives (not acked: the channel's close requeues them).
    A connection the broker closes is recorded for that queue and the next queue gets a new one."""
    result: dict[str, Any] = {}
    conn: pika.BlockingConnection | None = None
    for queue in QUEUES:
        try:
            if conn is None or not conn.is_open:
                conn = broker.connect()
            result[queue] = drain_queue(conn, queue, tag)
        except pika.exceptions.ChannelClosedByBroker as exc:
            result[queue] = {"error": f"channel closed: {exc.reply_code} {exc.reply_text}"}
        except pika.exceptions.AMQPConnectionError as exc:
            result[queue] = {"error": f"connection lost: {exc!r}"}
    if conn is not None and conn.is_open:
        conn.close()
    return result


def drain_queue(conn: pika.BlockingConnection, queue: str, tag: str) -> dict[str, Any]:
    ch = conn.channel()
    got: list[tuple[str, bool, bool]] = []

    def on_message(_ch: Any, method: Any, props: Any, payload: bytes) -> None:
        m = props.message_id or "?"
        got.append((m, payload == body(tag, m), method.redelivered))

    ch.basic_consume(queue, on_message)
    # Deliveries sent before a declare-ok come before it on the channel: once the queue has nothing
    # ready, every message it had was delivered (or dropped by the broker) and is in `got`.
    deadline = time.monotonic() + 30
    while ch.queue_declare(queue, passive=True).method.message_count:
        conn.process_data_events(time_limit=0.01)
        if time.monotonic() > deadline:
            raise RuntimeError(f"{queue} does not drain")
    conn.process_data_events(time_limit=0)
    ch.close()
    entry: dict[str, Any] = {"ids": runs([m for m, _, _ in got])}
    bad = [m for m, ok, _ in got if not ok]
    if bad:
        entry["bad_bodies"] = runs(bad)
    entry["redelivered"] = sum(1 for _, _, again in got if again)
    return entry


def ready_counts(broker: Broker) -> dict[str, Any]:
    conn = broker.connect()
    counts: dict[str, Any] = {}
    for queue in QUEUES:
        ch = conn.channel()
        try:
            counts[queue] = ch.queue_declare(queue, passive=True).method.message_count
            ch.close()
        except pika.exceptions.ChannelClosedByBroker as exc:
            counts[queue] = f"{exc.reply_code} {exc.reply_text}"
    conn.close()
    return counts


def observe_serve(data: Path, logs: Path, *, salvage: bool, tag: str = "A") -> Outcome:
    """Start the broker on `data` (modified in place), drain every queue, stop it."""
    broker = Broker(data, logs / ("salvage.log" if salvage else "serve.log"), salvage=salvage)
    try:
        if not broker.start():
            return {"started": False, "exit": broker.exit_code, "reported": reported(broker.text(), data)}
        queues = drain(broker, tag)
        stop_exit = broker.stop()
    finally:
        broker.kill()
    outcome: Outcome = {"started": True, "queues": queues, "reported": reported(broker.text(), data)}
    outcome["stop_exit"] = stop_exit
    if salvage:
        after = Broker(data, logs / "after-salvage.log")
        try:
            if after.start():
                then: Outcome = {"started": True, "ready": ready_counts(after)}
                then["stop_exit"] = after.stop()
            else:
                then = {"started": False, "exit": after.exit_code}
            then["reported"] = reported(after.text(), data)
        finally:
            after.kill()
        outcome["then_serve"] = then
    return outcome


def observe(case_dir: Path, outcome: str, work: Path) -> Outcome:
    """One outcome ("inspect", "verify", "serve", "salvage") of the fixture in `case_dir`, on a copy in
    `work`."""
    data = work / "data"
    if data.exists():
        shutil.rmtree(data)
    shutil.copytree(case_dir / "data", data, symlinks=True)
    # Owner-only, as the broker made them: git keeps no modes, and a checkout's 0755/0644 would add the
    # broker's "open to other local users" warning to every outcome.
    for path in [data, *data.rglob("*")]:
        path.chmod(0o700 if path.is_dir() else 0o600)
    if outcome == "inspect":
        return observe_inspect(data)
    if outcome == "verify":
        # verify --decoder ottermq also decodes every payload: what a valid checksum cannot vouch for.
        return observe_inspect(data, ("verify", "--decoder", "ottermq"))
    return observe_serve(data, work, salvage=outcome == "salvage")


OUTCOMES = ("inspect", "verify", "serve", "salvage")


# -- driver ------------------------------------------------------------------------------------------


def generate(out: Path, only: list[str] | None = None) -> list[str]:
    """Rebuild every case (or those named) under `out`: bases, damage and outcomes; the names built."""
    out.mkdir(parents=True, exist_ok=True)
    built = []
    with tempfile.TemporaryDirectory(prefix="ottermq-fixtures-") as tmp:
        work = Path(tmp)
        started = time.monotonic()
        bases = build_bases(work)
        print(f"bases built in {time.monotonic() - started:.1f} s", file=sys.stderr)
        for name, spec in CASES.items():
            if only and name not in only:
                continue
            target = out / f"{PREFIX}{name}"
            if target.exists():
                shutil.rmtree(target)
            target.mkdir(parents=True)
            data = target / "data"
            shutil.copytree(bases.crash if spec.base == "crash" else bases.clean, data, symlinks=True)
            damage = spec.damage(data, bases)
            doc: dict[str, Any] = {"case": target.name, "description": spec.description, "base": spec.base}
            doc.update(damage=damage, issue_expectation=spec.issue_expectation)
            record_outcomes(target, doc, work)
            built.append(target.name)
    write_readme(out)
    return built


def record_outcomes(target: Path, doc: dict[str, Any], work: Path) -> None:
    """Observe every outcome of the case in `target` and write its expected.json (`doc` plus them)."""
    started = time.monotonic()
    for outcome in OUTCOMES:
        scratch = work / f"{target.name}-{outcome}"
        scratch.mkdir(parents=True, exist_ok=True)
        doc[outcome] = observe(target, outcome, scratch)
    (target / "expected.json").write_text(json.dumps(doc, indent=2) + "\n")
    print(f"{target.name}: {summary(doc)} ({time.monotonic() - started:.1f} s)", file=sys.stderr)


def rerecord(out: Path, only: list[str] | None = None) -> list[str]:
    """Record the outcomes of the committed data directories again, without rebuilding them (behaviour
    changed, the format did not); descriptions and issue expectations come from CASES."""
    done = []
    with tempfile.TemporaryDirectory(prefix="ottermq-fixtures-") as tmp:
        for name, spec in CASES.items():
            target = out / f"{PREFIX}{name}"
            if (only and name not in only) or not (target / "expected.json").exists():
                continue
            old = json.loads((target / "expected.json").read_text())
            doc: dict[str, Any] = {"case": target.name, "description": spec.description, "base": spec.base}
            doc.update(damage=old["damage"], issue_expectation=spec.issue_expectation)
            record_outcomes(target, doc, Path(tmp))
            done.append(target.name)
    write_readme(out)
    return done


def summary(doc: dict[str, Any]) -> str:
    """inspect's exit, and what serve and salvage did, in a few words."""

    def started(o: Outcome) -> str:
        return "started" if o["started"] else f"refused ({o['exit']})"

    return (
        f"inspect {doc['inspect']['exit']}, serve {started(doc['serve'])}, salvage {started(doc['salvage'])}"
    )


README_HEAD = "## From real broker logs"


def write_readme(out: Path) -> None:
    """Replace the "from real broker logs" table of README.md (the rest is gen_recovery_fixtures.py's)."""
    readme = out / "README.md"
    text = readme.read_text() if readme.exists() else "# Recovery fixtures\n"
    text = text.split("\n" + README_HEAD)[0].rstrip("\n") + "\n"
    lines = [
        "",
        README_HEAD,
        "",
        "`broker-*`: a real broker's data directory (three runs over AMQP: durable queues, persistent",
        "messages with message ids, acks, unacked deliveries, dead-lettering, transactions, 64 KiB",
        "segments, snapshots at clean stops; the last run killed), damaged once each as issue 12 describes.",
        "Rebuilt by `tools/gen_broker_fixtures.py` (do not edit by hand), which records what `memento",
        "inspect`, `ottermq serve` and `ottermq serve --salvage` do now;",
        "`tests/integration/test_broker_fixtures.py` checks that they still do. `issue` is what issue 12",
        "asks for: where it differs from the recorded outcome, the behaviour has yet to change (and the",
        "fixtures are rebuilt with it). Every field of expected.json: see the generator's docstring.",
        "",
        "| case | damage | inspect | serve | salvage | issue |",
        "|---|---|---|---|---|---|",
    ]
    for case_dir in sorted(p for p in out.glob(f"{PREFIX}*") if (p / "expected.json").exists()):
        doc = json.loads((case_dir / "expected.json").read_text())

        def started(o: Outcome) -> str:
            if not o["started"]:
                return f"refused, exit {o['exit']}"
            errors = sum(1 for line in o["reported"] if line.startswith("error"))
            return "started" + (f", {errors} error line{'s' if errors > 1 else ''}" if errors else "")

        lines.append(
            f"| {case_dir.name} | {doc['description']} | {doc['inspect']['exit']} | {started(doc['serve'])} "
            f"| {started(doc['salvage'])} | {doc['issue_expectation']} |"
        )
    readme.write_text(text + "\n".join(lines) + "\n")


def main(argv: list[str]) -> None:
    """Command line: gen_broker_fixtures.py [--outcomes-only] [OUT_DIR] [CASE...]."""
    again = "--outcomes-only" in argv
    argv = [a for a in argv if a != "--outcomes-only"]
    out = Path(argv[0]) if argv else DEFAULT_OUT
    started = time.monotonic()
    names = (rerecord if again else generate)(out, argv[1:] or None)
    print(f"built {len(names)} cases in {out} in {time.monotonic() - started:.1f} s")


if __name__ == "__main__":
    main(sys.argv[1:])
