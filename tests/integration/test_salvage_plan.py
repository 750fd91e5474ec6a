"""Salvage on real broker data that never destroys more than the damage, says beforehand what it drops,
and stays done.

A broker writes 3000 persistent messages to three queues in 1 MiB segments (three full segments and a
tail) and stops cleanly, so that its snapshot covers them all; each test damages a copy of that data
directory as an operator might find it. Damage the snapshot covers is not a reason to cut the log: the
segments stay, the messages whose bodies cannot be read are dropped at start (one error line per queue
with the count) and every other message is served. Damage after the snapshot still cuts the log there,
and so does a record the broker cannot apply. `serve --salvage --dry-run` prints the plan and changes
nothing; the real salvage logs the same plan first; the next start without salvage finds the same state.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from memento.log import Log
from ottermq.broker.events import MessagePublished, QueueDeclared
from ottermq.store.codec import RECORD_TYPES, encode
from ottermq.store.store import LOG_DIR
from tests.integration.conftest import serve_cmd
from tests.integration.test_restart import PERSISTENT, Node, drain_all

pytestmark = [
    pytest.mark.skipif(bool(os.environ.get("OTTERMQ_TEST_URL")), reason="needs a broker process of our own"),
    pytest.mark.timeout(120),
]

SEGMENT_SIZE = 1 << 20
QUEUES = ("a", "b", "c")
COUNT = 3000


def body(i: int) -> bytes:
    return b"%06d" % i * 170  # ~1 KB, findable on disk


def queue_of(i: int) -> str:
    return QUEUES[i % 3]


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data directory: 3000 messages in three queues, a clean stop (its snapshot covers them all)."""
    base = tmp_path_factory.mktemp("salvage-template")
    node = Node(base, log_segment_size=SEGMENT_SIZE)
    node.start()
    try:
        conn = node.connect()
        ch = conn.channel()
        ch.confirm_delivery()
        for queue in QUEUES:
            ch.queue_declare(queue, durable=True)
        for i in range(COUNT):
            ch.basic_publish("", queue_of(i), body(i), PERSISTENT)
        conn.close()
        node.stop()
    finally:
        node.close()
    assert len(segments(node.data_dir)) >= 4
    return node.data_dir


@pytest.fixture
def node(template: Path, tmp_path: Path) -> Iterator[Node]:
    """A broker (not started) on a copy of the template's data directory."""
    shutil.copytree(template, tmp_path / "data")
    n = Node(tmp_path, log_segment_size=SEGMENT_SIZE)
    try:
        yield n
    finally:
        n.close()


def segments(data_dir: Path) -> list[Path]:
    return sorted((data_dir / "log" / "wal").glob("*.wal"))


def messages_in(segment: Path) -> list[int]:
    raw = segment.read_bytes()
    return [i for i in range(COUNT) if raw.find(body(i)) >= 0]


def per_queue(ids: list[int]) -> dict[str, int]:
    return dict(Counter(queue_of(i) for i in ids))


def drain(node: Node) -> dict[str, list[bytes]]:
    """Every message of every queue, consumed by a real consumer and acked (each one readable)."""
    conn = node.connect()
    ch = conn.channel()
    ch.basic_qos(prefetch_count=200)
    got: dict[str, list[bytes]] = {}
    for queue in QUEUES:
        expected = ch.queue_declare(queue, durable=True, passive=True).method.message_count
        bodies: list[bytes] = []
        for method, _props, payload in ch.consume(queue, inactivity_timeout=3):
            if method is None:
                break
            bodies.append(payload)
            ch.basic_ack(method.delivery_tag)
            if len(bodies) == expected:
                break
        ch.cancel()
        got[queue] = bodies
    assert conn.is_open  # no 541: no message was unreadable
    conn.close()
    return got


def counts(node: Node) -> dict[str, int]:
    conn = node.connect()
    ch = conn.channel()
    found = {q: ch.queue_declare(q, durable=True, passive=True).method.message_count for q in QUEUES}
    conn.close()
    return found


def lost_lines(text: str) -> dict[str, int]:
    """The per-queue 'dropped N messages' lines of a salvaging start."""
    return {
        m.group(2): int(m.group(1))
        for m in re.finditer(r"salvage: dropped (\d+) messages from queue '([^']+)' in vhost '/'", text)
    }


def expect_survivors(node: Node, lost: list[int]) -> None:
    """Every message but `lost` is delivered, readable and in order."""
    gone = set(lost)
    got = drain(node)
    for queue in QUEUES:
        assert got[queue] == [body(i) for i in range(COUNT) if queue_of(i) == queue and i not in gone]


def restart_without_salvage(node: Node) -> None:
    node.stop()
    node.settings.pop("salvage", None)
    node.start()
    text = node.log_text()
    assert "salvage:" not in text and "salvage plan:" not in text and "level=error" not in text, text


def salvage(node: Node) -> str:
    node.settings["salvage"] = "true"
    node.start()
    return node.log_text()


def test_a_bad_header_in_a_covered_segment_loses_nothing(node: Node) -> None:
    victim = segments(node.data_dir)[1]
    with victim.open("r+b") as f:  # the header's crc no longer matches
        f.seek(20)
        f.write(b"\xff")
    assert node.start(expect_failure=True) == 2
    text = salvage(node)
    assert "keep damaged segment " + victim.name in text and "salvage: dropped" not in text, text
    assert victim.exists() and not list((node.data_dir / "log" / "quarantine").glob("*.wal*"))
    assert counts(node) == {q: COUNT // 3 for q in QUEUES}
    restart_without_salvage(node)  # the salvage is permanent: accepted, not refused again
    assert counts(node) == {q: COUNT // 3 for q in QUEUES}
    expect_survivors(node, [])


def test_damaged_records_in_a_covered_segment_drop_only_their_messages(node: Node) -> None:
    victim = segments(node.data_dir)[1]
    held = messages_in(victim)
    damaged = held[10:16] + held[-3:]
    raw = bytearray(victim.read_bytes())
    for i in damaged:  # one byte in the middle of each body: its record's crc fails
        raw[raw.find(body(i)) + 500] ^= 0xFF
    victim.write_bytes(bytes(raw))
    text = salvage(node)
    assert lost_lines(text) == per_queue(damaged), text
    assert f"salvage plan: keep damaged segment {victim.name} in place" in text
    expected = {q: COUNT // 3 - per_queue(damaged).get(q, 0) for q in QUEUES}
    assert counts(node) == expected
    restart_without_salvage(node)
    assert counts(node) == expected
    expect_survivors(node, damaged)


def test_a_missing_covered_segment_drops_the_messages_it_held(node: Node) -> None:
    victim = segments(node.data_dir)[1]
    held = messages_in(victim)
    victim.unlink()
    assert node.start(expect_failure=True) == 2
    assert "are missing" in node.log_text()
    text = salvage(node)
    assert lost_lines(text) == per_queue(held), text
    assert all(path.exists() for path in segments(node.data_dir))  # nothing moved to quarantine
    restart_without_salvage(node)
    assert counts(node) == {q: COUNT // 3 - per_queue(held)[q] for q in QUEUES}
    expect_survivors(node, held)


def _tree_digest(root: Path) -> dict[str, str]:
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        # LOCK holds the pid of whoever took it (the dry run does, so that no broker runs meanwhile).
        if path.is_file() and path.name not in ("lock.mdb", "LOCK")
    }


def test_dry_run_prints_the_plan_and_changes_nothing(node: Node) -> None:
    wal = segments(node.data_dir)
    held = messages_in(wal[1])
    wal[1].unlink()
    raw = bytearray(wal[2].read_bytes())  # and one damaged body in the next segment
    hit = messages_in(wal[2])[5]
    raw[raw.find(body(hit)) + 100] ^= 0xFF
    wal[2].write_bytes(bytes(raw))
    before = _tree_digest(node.data_dir)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTTERMQ_")}
    done = subprocess.run(
        serve_cmd(node.data_dir, "--salvage", "--dry-run"),
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    planned = [line for line in done.stdout.splitlines() if line.startswith("salvage plan:")]
    assert "salvage plan: dry run, nothing was changed" in planned
    expected = per_queue([*held, hit])
    for queue, count in expected.items():
        assert (
            f"salvage plan: drop {count} messages from queue '{queue}' in vhost '/': their bodies lie in "
            "damaged or dropped parts of the log"
        ) in planned, done.stdout
    assert _tree_digest(node.data_dir) == before  # nothing changed, nothing created

    text = salvage(node)  # the real salvage logs the same plan before it acts
    logged = re.findall(r'msg="(salvage plan: [^"]*)"', text)
    assert logged == planned[:-1], (logged, planned)
    assert lost_lines(text) == expected
    restart_without_salvage(node)
    expect_survivors(node, [*held, hit])


def test_damage_after_the_snapshot_still_cuts_the_log_there(node: Node) -> None:
    node.start()
    conn = node.connect()
    ch = conn.channel()
    ch.confirm_delivery()
    extra = [b"late-%d" % i * 50 for i in range(10)]
    for payload in extra:
        ch.basic_publish("", "a", payload, PERSISTENT)
    conn.close()
    node.kill()  # no final snapshot: the ten publishes are the tail replay needs
    tail = segments(node.data_dir)[-1]
    raw = bytearray(tail.read_bytes())
    raw[raw.find(extra[4]) + 20] ^= 0xFF
    tail.write_bytes(bytes(raw))
    text = salvage(node)
    assert re.search(r"salvage plan: drop records LSN \d+\.\.\d+ \(6 records\) in " + tail.name, text), text
    assert "salvage plan: 6 messages published to queue 'a'" not in text  # the damaged one cannot be read
    assert "salvage plan: 5 messages published to queue 'a' in vhost '/' are in the dropped records" in text
    restart_without_salvage(node)
    got = drain(node)
    assert got["a"][-4:] == extra[:4] and len(got["a"]) == COUNT // 3 + 4


def test_a_record_the_broker_cannot_apply_is_cut_at_with_salvage(node: Node) -> None:
    log = Log.open(node.data_dir / LOG_DIR, registry=RECORD_TYPES, segment_size=SEGMENT_SIZE)
    rtype, payload = encode(QueueDeclared("/", "late", True, False, False, {}))
    log.append(rtype, payload)
    bad = log.append(rtype, b"\xff\x00not an event")  # a valid frame and checksum, a payload no codec reads
    rtype, payload = encode(MessagePublished("/", ("a",), "", "a", b"", b"after the bad record"))
    log.append(rtype, payload)
    log.sync()
    log.close()
    assert node.start(expect_failure=True) == 2
    assert f"record LSN {bad} (type 4)" in node.log_text()
    text = salvage(node)
    assert "salvage plan: finding: " in text and f"LSN {bad}: record cannot be decoded or applied" in text
    assert f"salvage plan: drop records LSN {bad}..{bad + 1} (2 records)" in text, text
    assert "salvage plan: 1 messages published to queue 'a' in vhost '/' are in the dropped records" in text
    conn = node.connect()
    ch = conn.channel()
    ch.queue_declare("late", durable=True, passive=True)  # applied: it lies before the cut
    conn.close()
    restart_without_salvage(node)
    assert counts(node) == {q: COUNT // 3 for q in QUEUES}
    quarantined = list((node.data_dir / "log" / "quarantine").iterdir())
    assert quarantined and b"not an event" in quarantined[0].read_bytes()


def test_a_broken_snapshot_store_without_the_whole_log_needs_salvage_once(node: Node) -> None:
    node.start()
    conn = node.connect()
    ch = conn.channel()
    for _ in range(800):  # the oldest 2400 messages: the oldest segments hold nothing live any more
        for queue in QUEUES:
            ch.basic_get(queue, auto_ack=True)
    conn.close()
    node.restart()  # the start after a clean stop reclaims: the oldest segments go
    for _ in range(200):
        if "log space reclaimed" in node.log_text():
            break
        time.sleep(0.05)
    assert not segments(node.data_dir)[0].name.startswith("0000000000000001-"), node.log_text()
    node.stop()
    data = node.data_dir / "log" / "snapshots" / "data.mdb"
    os.truncate(data, data.stat().st_size // 2)
    assert node.start(expect_failure=True) == 2
    assert "does not hold every record from LSN 1" in node.log_text()
    text = salvage(node)
    assert "salvage: ignoring snapshots" in text
    assert "salvage plan: move the unusable snapshot store to quarantine/ and make a new one" in text
    assert list((node.data_dir / "log" / "quarantine").glob("snapshots.*"))
    # What the log still holds starts after the users, vhosts and queues were declared: the broker
    # serves what is there (nothing a client could log in to), and a snapshot of it is written at once.
    assert re.search(r'msg="snapshot saved" lsn=\d+', text), text
    restart_without_salvage(node)  # the next start needs no salvage
    assert re.search(r"msg=recovered snapshot_lsn=[1-9]\d* ", node.log_text()), node.log_text()


def test_damage_under_the_snapshot_in_the_only_segment_drops_only_that_message(tmp_path: Path) -> None:
    # Default 64 MiB segments: the one segment is the last one, and the clean stop's snapshot covers it.
    node = Node(tmp_path)
    node.start()
    try:
        conn = node.connect()
        ch = conn.channel()
        ch.confirm_delivery()
        ch.queue_declare("a", durable=True)
        for i in range(300):
            ch.basic_publish("", "a", body(i), PERSISTENT)
        conn.close()
        node.stop()
        (segment,) = segments(node.data_dir)
        raw = bytearray(segment.read_bytes())
        raw[raw.find(body(150)) + 500] ^= 0xFF
        segment.write_bytes(bytes(raw))
        assert node.start(expect_failure=True) == 2
        text = salvage(node)
        assert lost_lines(text) == {"a": 1}, text
        assert "salvage plan: drop no records" in text
        restart_without_salvage(node)
        conn = node.connect()
        ch = conn.channel()
        got = [b for b, _ in drain_all(ch, "a")]
        conn.close()
        assert got == [body(i) for i in range(300) if i != 150]
    finally:
        node.close()
