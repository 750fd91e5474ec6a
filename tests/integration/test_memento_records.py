"""`memento inspect --records`, `dump` and `verify --decoder` on a real broker's log: what an SRE reads in
an incident (publishes with their properties, acks, rejects, dead-lettering, transactions), every
filter, JSON lines, flat memory on a big log, and `--follow` while a broker publishes across rollovers."""

from __future__ import annotations

import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pika
import pytest
from typer.testing import CliRunner

from memento.cli import app
from memento.log import Log
from memento.record import encode
from ottermq.broker.events import MessagePublished, MessagesRemoved
from ottermq.store.codec import RT_REMOVED
from ottermq.store.codec import encode as encode_event
from tests.integration.test_restart import Node

MEMENTO = str(Path(sys.executable).with_name("memento"))
SEGMENT = 1 << 20  # the smallest segment the broker accepts: rollovers come quickly


def run(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


def lines(*args: str) -> list[dict[str, Any]]:
    result = run("inspect", "--records", "--json", *args)
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


def persistent(**props: Any) -> pika.BasicProperties:
    return pika.BasicProperties(delivery_mode=2, **props)


@pytest.fixture(scope="module")
def incident(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A data directory whose log holds declarations, publishes with properties, an ack, a reject that
    dead-letters, and a transaction (an ack and two publishes); the broker is stopped."""
    node = Node(tmp_path_factory.mktemp("incident"), log_segment_size=SEGMENT)
    port = node.start()
    conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", port))
    try:
        ch = conn.channel()
        ch.exchange_declare("dlx", "fanout", durable=True)
        ch.queue_declare("dead", durable=True)
        ch.queue_bind("dead", "dlx")
        ch.queue_declare("work", durable=True, arguments={"x-dead-letter-exchange": "dlx"})
        ch.queue_declare("other", durable=True)
        ch.confirm_delivery()
        headers = {"tenant": "acme", "n": 7}
        ch.basic_publish(
            "", "work", b"hello\x00world", persistent(message_id="m-1", correlation_id="c-1", headers=headers)
        )
        ch.basic_publish("", "work", b"two", persistent(message_id="m-2"))
        ch.basic_publish("", "other", b"three", persistent(message_id="m-3"))
        method, _, _ = ch.basic_get("work")
        ch.basic_ack(method.delivery_tag)
        method, _, _ = ch.basic_get("work")
        ch.basic_reject(method.delivery_tag, requeue=False)
        deadline = time.monotonic() + 5
        while ch.queue_declare("dead", passive=True).method.message_count < 1:
            assert time.monotonic() < deadline, "the rejected message was not dead-lettered"
            conn.process_data_events(0.05)
        tx = conn.channel()
        tx.tx_select()
        tx.basic_publish("", "other", b"four", persistent(message_id="m-4"))
        tx.basic_publish("", "other", b"five", persistent(message_id="m-5"))
        method, _, _ = tx.basic_get("other")
        tx.basic_ack(method.delivery_tag)
        tx.tx_commit()
    finally:
        conn.close()
        node.stop()
    yield node.data_dir


def test_records_text_names_types_and_decodes(incident: Path) -> None:
    plain = run("inspect", "--records", str(incident))
    assert plain.exit_code == 0, plain.output
    names = [line.split()[2] for line in plain.stdout.splitlines() if not line.startswith(" " * 11 + "-")]
    expected = {"vhost.added", "exchange.declared", "queue.declared", "binding.added", "publish", "removed"}
    assert expected | {"tx"} <= set(names)
    assert "message_id" not in plain.stdout  # fields only with --decode
    text = run("inspect", "--records", "--decode", str(incident)).stdout
    first = next(line for line in text.splitlines() if "message_id=m-1" in line)
    assert "routing_key=work" in first and "correlation_id=c-1" in first
    assert "headers={tenant=acme,n=7}" in first and "body_size=11" in first and "hello" not in first
    assert any("removed" in line and "reason=ack" in line for line in text.splitlines())
    assert any("removed" in line and "reason=reject" in line for line in text.splitlines())
    assert any('x-death="work/rejected x1"' in line for line in text.splitlines())
    tx_line = next(i for i, line in enumerate(text.splitlines()) if line.split()[2:3] == ["tx"])
    inner = text.splitlines()[tx_line + 1 : tx_line + 4]
    assert [line.split()[1] for line in inner] == ["removed", "publish", "publish"]
    assert "password_hash=(hidden)" in text  # a user record never prints the hash


def test_records_json_lines(incident: Path) -> None:
    records = lines("--decode", str(incident))
    assert [r["lsn"] for r in records] == list(range(1, len(records) + 1))
    first = next(r for r in records if r.get("message_id") == "m-1")
    assert first["type"] == "publish" and first["type_code"] == 5
    assert first["exchange"] == "" and first["routing_key"] == "work" and first["queues"] == ["work"]
    assert first["correlation_id"] == "c-1" and first["headers"] == {"tenant": "acme", "n": 7}
    assert first["body_size"] == 11 and "body" not in first
    assert first["time"].endswith("Z") and len(first["time"]) == len("2026-12-07T06:17:47.123Z")
    removed = [r for r in records if r["type"] == "removed"]
    assert {(r["queue"], r["reason"]) for r in removed} == {("work", "ack"), ("work", "reject")}
    assert next(r for r in removed if r["reason"] == "ack")["ids"] == first["ids"]
    tx = next(r for r in records if r["type"] == "tx")
    assert [i["type"] for i in tx["records"]] == ["removed", "publish", "publish"]
    assert [i.get("message_id") for i in tx["records"]] == [None, "m-4", "m-5"]
    with_body = lines("--decode", "--payload", "--message-id", "m-1", str(incident))
    assert with_body[0]["body"] == "hello\\x00world"
    raw = lines("--payload", "--decoder", "generic", "--to-lsn", "1", str(incident))
    assert raw[0]["type"] == "4" and raw[0]["payload"]  # no decoder: numbers and raw bytes


def test_filters(incident: Path) -> None:
    d = str(incident)
    assert [r["lsn"] for r in lines("--from-lsn", "3", "--to-lsn", "5", d)] == [3, 4, 5]
    publishes = lines("--type", "publish", d)
    assert len(publishes) == 4 and {r["type"] for r in publishes} == {"publish"}
    assert lines("--type", "5", d) == publishes
    assert {r["type"] for r in lines("--type", "removed", "--type", "tx", d)} == {"removed", "tx"}
    assert [r["name"] for r in lines("--decode", "--type", "queue.declared", d)] == ["dead", "work", "other"]
    other = lines("--queue", "other", d)
    assert [r["type"] for r in other] == ["queue.declared", "publish", "tx"]
    # A message followed from its publish: acked; rejected then dead-lettered (a new publish, same id).
    assert [(r["type"], r.get("reason")) for r in lines("--decode", "--message-id", "m-1", d)] == [
        ("publish", None),
        ("removed", "ack"),
    ]
    m2 = lines("--decode", "--message-id", "m-2", d)
    assert [(r["type"], r.get("reason")) for r in m2] == [
        ("publish", None),
        ("publish", None),
        ("removed", "reject"),
    ]
    assert m2[1]["queues"] == ["dead"] and m2[1]["exchange"] == "dlx"
    assert [r["type"] for r in lines("--message-id", "m-3", d)] == ["publish", "tx"]  # acked inside the tx
    # Time: a record has its own (format version 3), else its publish time, else none.
    everything = lines(d)
    timed = [r["lsn"] for r in everything if r["time"] is not None]
    assert {r["lsn"] for r in publishes} <= set(timed)
    recent = run("inspect", "--records", "--json", "--since", "1h", d)
    assert recent.exit_code == 0
    assert [json.loads(line)["lsn"] for line in recent.stdout.splitlines()] == timed
    untimed = len(everything) - len(timed)
    assert ("have no time: --since/--until cannot place them" in recent.stderr) == bool(untimed)
    if untimed:
        assert f"{untimed} records (LSN" in recent.stderr
    assert len(lines("--since", "now-1h", "--type", "publish", d)) == 4
    assert lines("--until", "2000-01-01T00:00:00Z", "--type", "publish", d) == []
    assert lines("--since", "2999-01-01T00:00:00+02:00", d) == []
    last = publishes[-1]["time"]
    assert [r["lsn"] for r in lines("--since", last, "--type", "publish", d)] == [publishes[-1]["lsn"]]
    for bad in (
        ["--type", "nosuch"],
        ["--since", "yesterday"],
        ["--decoder", "generic", "--queue", "work"],
        ["--decoder", "generic", "--decode"],
        ["--decoder", "nosuch"],
    ):
        result = run("inspect", "--records", *bad, d)
        assert result.exit_code == 4 and "memento: error:" in result.stderr, bad


def test_dump_segment_and_quarantine_file(incident: Path, tmp_path: Path) -> None:
    segment = next((incident / "log" / "wal").glob("*.wal"))
    listed = lines("--decode", str(incident))
    dumped = run("dump", "--json", "--decode", str(segment))
    assert dumped.exit_code == 0, dumped.output
    assert [json.loads(line) for line in dumped.stdout.splitlines()] == listed
    assert "segment seq 1, base LSN 1" in dumped.stderr and "end of data (zeros)" in dumped.stderr
    # A torn tail as recovery quarantines it: the bytes from a record on, no header; one byte damaged.
    start = next(r for r in listed if r.get("message_id") == "m-1")
    damaged = next(r for r in listed if r["lsn"] == start["lsn"] + 3)
    data = bytearray(segment.read_bytes()[start["offset"] :])
    data[damaged["offset"] - start["offset"] + 30] ^= 0xFF
    quarantined = tmp_path / f"{segment.name}.{start['offset']}.20261207T061700Z.bin"
    quarantined.write_bytes(bytes(data).rstrip(b"\0"))
    result = run("dump", "--json", "--decode", str(quarantined))
    assert result.exit_code == 1
    got = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(r["lsn"], r["offset"]) for r in got] == [(r["lsn"], r["offset"]) for r in listed][
        start["lsn"] - 1 : damaged["lsn"] - 1
    ]
    assert got[0]["message_id"] == "m-1"
    assert f"stop parsing at offset {damaged['offset']}: record checksum mismatch" in result.stderr
    assert "no header" in result.stderr
    assert run("dump", str(tmp_path / "missing.wal")).exit_code == 4


def test_verify_decoder_names_a_valid_crc_record_that_does_not_decode(incident: Path, tmp_path: Path) -> None:
    copy = tmp_path / "data"
    shutil.copytree(incident, copy)
    removal = next(r for r in lines(str(copy)) if r["type"] == "removed")
    segment = next((copy / "log" / "wal").glob("*.wal"))
    # Same length, valid crc, a payload no removal can have (a vhost length past its end).
    record = encode(RT_REMOVED, 0, removal["lsn"], b"\xff" * removal["size"])
    with open(segment, "r+b") as f:
        f.seek(removal["offset"])
        f.write(record)
    assert run("verify", str(copy)).exit_code == 0  # the checksum is right: invisible without a decoder
    result = run("verify", "--decoder", "ottermq", str(copy))
    assert result.exit_code == 2, result.output
    assert f"{segment.name} offset {removal['offset']} LSN {removal['lsn']}" in result.stdout
    assert "undecodable" in result.stdout and "does not decode" in result.stdout
    doc = json.loads(run("verify", "--json", "--decoder", "ottermq", str(copy)).stdout)
    finding = next(f for f in doc["findings"] if f["kind"] == "undecodable")
    where = (finding["lsn"], finding["offset"], finding["segment"])
    assert where == (removal["lsn"], removal["offset"], segment.name)
    # inspect --records still lists it, with the error, and goes on.
    listed = lines(str(copy))
    assert "error" in next(r for r in listed if r["lsn"] == removal["lsn"])
    assert listed[-1]["type"] == "tx"


def _peak_rss_kib(*args: str) -> int:
    """Peak RSS of `memento *args` (its output discarded), measured by a wrapper that runs only it."""
    probe = (
        "import resource, subprocess, sys\n"
        "subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, check=True)\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    )
    cmd = [sys.executable, "-c", probe, MEMENTO, *args]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return int(out.stdout)


def _fill(path: Path, messages: int) -> None:
    """A log of the broker's own records: publishes with properties and their acks, as `serve` writes them
    (built directly with the codec: a broker would take minutes for this many)."""
    props = (0x1080).to_bytes(2, "big") + b"\x02" + b"\x03m-x"  # delivery-mode 2, message-id "m-x"
    with Log.open(path) as log:
        for i in range(messages):
            lsn = log.append(*encode_event(MessagePublished("/", ("q",), "x", "rk", props, b"b" * 40, 1)))
            if i % 2:
                log.append(*encode_event(MessagesRemoved("/", "q", (lsn << 20,), "ack")))
        log.sync()


@pytest.mark.timeout(240)
def test_records_json_streams_in_flat_memory(tmp_path: Path) -> None:
    small, big = tmp_path / "small", tmp_path / "big"
    _fill(small, 20_000)
    _fill(big, 140_000)  # 210k records
    (small / "LOCK").unlink()
    (big / "LOCK").unlink()
    args = ("inspect", "--records", "--json", "--decode")
    small_rss = _peak_rss_kib(*args, str(small))
    big_rss = _peak_rss_kib(*args, str(big))
    # A document built in memory grew by ~1.7 KiB a record (1.6 GB for 920k): 300k would add ~500 MB.
    assert big_rss - small_rss < 40 * 1024, (small_rss, big_rss)


@pytest.mark.timeout(90)
def test_follow_across_rollovers_while_a_broker_publishes(tmp_path: Path) -> None:
    node = Node(tmp_path, log_segment_size=SEGMENT)
    port = node.start()
    follower = subprocess.Popen(
        [MEMENTO, "inspect", "--records", "--json", "--follow", str(node.data_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", port))
        ch = conn.channel()
        ch.queue_declare("tail", durable=True)
        ch.confirm_delivery()
        count = 300  # 8 KiB each: 2.4 MB, two rollovers of 1 MiB segments at least
        for i in range(count):
            ch.basic_publish("", "tail", b"x" * 8192, persistent(message_id=f"t-{i}"))
        conn.close()
        seen = _read_until(follower, lambda rs: sum(r.get("type") == "publish" for r in rs) >= count)
        follower.send_signal(signal.SIGTERM)
        assert follower.wait(timeout=10) == 0, follower.stderr.read() if follower.stderr else ""
    finally:
        if follower.poll() is None:
            follower.kill()
        node.stop()
    assert [r["lsn"] for r in seen] == list(range(seen[0]["lsn"], seen[0]["lsn"] + len(seen)))
    assert len({r["segment"] for r in seen if r["type"] == "publish"}) >= 3


def _read_until(process: subprocess.Popen[bytes], done: Any, timeout: float = 60.0) -> list[dict[str, Any]]:
    assert process.stdout is not None
    os.set_blocking(process.stdout.fileno(), False)
    sel = selectors.DefaultSelector()
    sel.register(process.stdout, selectors.EVENT_READ)
    buf = b""
    records: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while not done(records):
        assert time.monotonic() < deadline, f"follow saw {len(records)} records"
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        if sel.select(0.5):
            buf += process.stdout.read() or b""
            *complete, buf = buf.split(b"\n")
            records.extend(json.loads(line) for line in complete)
    return records
