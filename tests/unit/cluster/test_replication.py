"""Replication in one event loop: a real leader store and a real follower store over loopback TCP.

Confirms wait for the in-sync follower's acknowledgement (its log holds the record when the confirm
runs); the follower's projection is built as records arrive; a follower refuses records of a term lower
than one it has seen; an interrupted bulk sync resumes without the files it completed.
"""

from __future__ import annotations

import asyncio
import functools
import json
import socket
import threading
from pathlib import Path

import crc32c
import pytest

from memento.log import Log
from memento.replica import decode_wire, encode_wire, record_crc
from ottermq.amqp.properties import BasicProperties, encode_properties
from ottermq.broker.broker import Broker
from ottermq.broker.events import UserAdded
from ottermq.broker.message import Message
from ottermq.cluster import wire
from ottermq.cluster.follower import SYNC_DIR, TERM_FILE, Follower, FollowerOptions
from ottermq.cluster.leader import ReplicationLeader, ReplicationOptions
from ottermq.cluster.static import StaticRole
from ottermq.store.codec import RECORD_TYPES, encode
from ottermq.store.store import LOG_DIR, DurableStore, StoreOptions
from ottermq.store.view import durable_view

PERSISTENT = encode_properties(BasicProperties(delivery_mode=2))
OPTIONS = StoreOptions(segment_size=1 << 20, scrub_rate=0, check_interval=0.05)


def opener(path: Path, *, compact: bool = True) -> DurableStore:
    store = DurableStore.open(path, StoreOptions(segment_size=1 << 20, scrub_rate=0, compact=compact))
    store.recover(store.new_broker(), defaults=compact)
    return store


async def wait(predicate: object, timeout: float = 10.0) -> None:
    assert callable(predicate)
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


def test_confirms_wait_for_the_in_sync_follower(tmp_path: Path) -> None:
    asyncio.run(confirms_scenario(tmp_path))


async def confirms_scenario(tmp_path: Path) -> None:
    store = opener(tmp_path / "a")
    await store.start()
    role = StaticRole("a", leader=True)
    leader = ReplicationLeader(store, role, ReplicationOptions("127.0.0.1", 0, "c", "secret"))
    host, port = (await leader.start())[0]
    follower = Follower(
        tmp_path / "b",
        FollowerOptions((host, port), "b", "c", "secret"),
        lambda: opener(tmp_path / "b", compact=False),
    )
    task = asyncio.create_task(follower.run())
    try:
        await wait(lambda: "b" in role.isr())
        broker = store.broker
        assert isinstance(broker, Broker)
        vhost = broker.vhosts["/"]
        queue = vhost.declare_queue("q", durable=True)
        seen: list[tuple[int, int]] = []
        for i in range(50):
            position, placed = vhost.publish(Message("", "q", PERSISTENT, b"m%d" % i), [queue])
            for target, entry in placed:
                target.enqueue(entry)

            def confirmed(position: int = position) -> None:
                assert follower.store is not None
                seen.append((position, follower.store.log.durable_lsn))

            store.journal.when_durable(position, confirmed)
        await wait(lambda: len(seen) == 50)
        assert all(follower_lsn >= position for position, follower_lsn in seen)
        assert follower.store is not None and follower.store.broker is not None
        # The hot standby's projection is the leader's (entries are made ready only on recovery).
        await wait(lambda: durable_view(follower.store.broker) == durable_view(broker))

        # Fencing: once the leadership is lost, nothing more is confirmed (pending ones are nacked).
        outcome: list[str] = []
        position, placed = vhost.publish(Message("", "q", PERSISTENT, b"late"), [queue])
        store.journal.when_durable(position, lambda: outcome.append("ack"), lambda: outcome.append("nack"))
        role.lose()
        await asyncio.sleep(0.3)
        assert outcome == ["nack"]
        assert store.journal.failed
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await leader.stop()
        await store.stop()


class FakeLeader:
    """Speaks the leader's side of the protocol by hand, one scripted session per connection."""

    def __init__(self, sessions: list[object]) -> None:
        self.sessions = sessions
        self.hellos: list[dict[str, object]] = []
        self.server: asyncio.Server | None = None

    async def start(self) -> tuple[str, int]:
        self.server = await asyncio.start_server(self.serve, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[:2]

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonce = wire.new_nonce()
        writer.write(wire.json_frame(wire.CHALLENGE, {"cluster": "c", "nonce": nonce, "node": "z"}))
        _kind, auth = await wire.read_json(reader, wire.AUTH)
        assert wire.check_mac("secret", "c", "follower", nonce, auth["mac"])
        proof = wire.mac("secret", "c", "leader", str(auth["nonce"]))
        writer.write(wire.json_frame(wire.WELCOME, {"mac": proof, "term": 5}))
        _kind, hello = await wire.read_json(reader, wire.HELLO)
        self.hellos.append(hello)
        script = self.sessions.pop(0) if self.sessions else None
        try:
            if callable(script):
                await script(reader, writer, hello)
        finally:
            writer.close()


def records(first_lsn: int, count: int) -> bytes:
    out = b""
    for lsn in range(first_lsn, first_lsn + count):
        rtype, payload = encode(UserAdded(f"user{lsn}", "hash", ()))
        out += encode_wire(rtype, 0, lsn, 1_000_000 + lsn, payload)
    return out


def test_records_of_a_lower_term_are_refused(tmp_path: Path) -> None:
    asyncio.run(term_scenario(tmp_path))


async def term_scenario(tmp_path: Path) -> None:
    refused = asyncio.Event()

    async def stream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, hello: dict) -> None:
        start = int(hello["durable"])
        writer.write(wire.json_frame(wire.STREAM, {"from": start, "truncate": False}))
        writer.write(wire.frame(wire.RECORDS, wire.TERM.pack(5) + records(start + 1, 3)))
        _kind, body = await wire.read_frame(reader)
        assert wire.ACK.unpack(body) == (5, start + 3)
        writer.write(wire.frame(wire.RECORDS, wire.TERM.pack(4) + records(start + 4, 1)))  # deposed
        assert await reader.read() == b""  # the follower hung up
        refused.set()

    fake = FakeLeader([stream])
    follower = Follower(
        tmp_path / "b",
        FollowerOptions(await fake.start(), "b", "c", "secret"),
        lambda: opener(tmp_path / "b", compact=False),
    )
    task = asyncio.create_task(follower.run())
    try:
        await asyncio.wait_for(refused.wait(), 10)
        assert follower.term == 5
        assert (tmp_path / "b" / TERM_FILE).read_text() == "5\n"  # a restart refuses term 4 too
        store = follower.store
        assert store is not None and store.broker is not None
        end = store.log.end_lsn
        assert {f"user{lsn}" for lsn in range(end - 2, end + 1)} <= set(store.broker.access.users)
        assert f"user{end + 1}" not in store.broker.access.users
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def test_an_interrupted_bulk_sync_resumes_without_the_files_it_completed(tmp_path: Path) -> None:
    asyncio.run(resume_scenario(tmp_path))


async def resume_scenario(tmp_path: Path) -> None:
    # The leader's log: a few segments of records a follower can apply.
    source = tmp_path / "a" / LOG_DIR
    with Log.open(source, segment_size=1 << 20, registry=RECORD_TYPES) as log:
        for lsn in range(1, 401):
            rtype, payload = encode(UserAdded(f"user{lsn}", "h" * 8000, ()))
            log.append(rtype, payload)
        log.sync()
        segments = [(Path(seg.path).name, seg.path, seg.size) for seg in log.segments]
        log_id = log.log_id.hex()
    assert len(segments) >= 3
    manifest_files = [
        {"name": name, "size": size, "length": Path(path).stat().st_size, "skip": False}
        for name, path, size in segments
    ]
    manifest = {"log_id": log_id, "term": 5, "snapshot_lsn": 0, "files": manifest_files}

    async def send_file(writer: asyncio.StreamWriter, name: str, path: str, cut: bool = False) -> None:
        data = Path(path).read_bytes()
        writer.write(wire.chunk_frame(name, 0, data[: len(data) // 2]))
        if cut:
            await writer.drain()
            return
        writer.write(wire.chunk_frame(name, len(data) // 2, data[len(data) // 2 :]))
        end = {"name": name, "length": len(data), "crc": crc32c.crc32c(data)}
        writer.write(wire.json_frame(wire.FILE_END, end))

    async def interrupted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, hello: dict) -> None:
        writer.write(wire.json_frame(wire.BULK, manifest))
        await send_file(writer, *segments[0][:2])
        await send_file(writer, *segments[1][:2], cut=True)  # the connection drops mid-file

    async def resumed(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, hello: dict) -> None:
        staged = hello["staged"]
        first = segments[0]
        assert staged == {
            first[0]: [Path(first[1]).stat().st_size, crc32c.crc32c(Path(first[1]).read_bytes())]
        }
        files = [dict(entry, skip=entry["name"] == first[0]) for entry in manifest_files]
        writer.write(wire.json_frame(wire.BULK, dict(manifest, files=files)))
        for name, path, _size in segments[1:]:
            await send_file(writer, name, path)
        writer.write(wire.json_frame(wire.BULK_DONE, {"durable": 400}))
        await writer.drain()
        await reader.read()

    fake = FakeLeader([interrupted, resumed])
    follower = Follower(
        tmp_path / "b",
        FollowerOptions(await fake.start(), "b", "c", "secret"),
        lambda: opener(tmp_path / "b", compact=False),
    )
    task = asyncio.create_task(follower.run())
    try:
        await wait(lambda: len(fake.hellos) >= 3)  # the third session comes after the install
        assert json.dumps(fake.hellos[2]["log_id"]) == json.dumps(log_id)
        assert not (tmp_path / "b" / SYNC_DIR).exists()
        store = follower.store
        assert store is not None and store.broker is not None
        assert store.log.end_lsn == 400
        assert "user400" in store.broker.access.users
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def test_acks_are_read_in_bulk_and_only_the_highest_counts() -> None:
    """The leader reads whatever ACKs arrived at once: the highest LSN of the complete ones counts, a
    partial frame waits for its rest, and any other frame is refused."""
    acks = [wire.frame(wire.ACKED, wire.ACK.pack(3, lsn)) for lsn in (10, 12, 11)]
    buffer = bytearray(b"".join(acks) + acks[0][:7])
    assert wire.last_ack(buffer, "b") == 12
    assert buffer == acks[0][:7]  # the partial one stays
    assert wire.last_ack(buffer, "b") is None
    buffer += acks[0][7:]
    assert wire.last_ack(buffer, "b") == 10
    assert buffer == b""
    try:
        wire.last_ack(bytearray(wire.json_frame(wire.HELLO, {})), "b")
    except wire.ProtocolError as exc:
        assert "from follower b" in str(exc)
    else:
        raise AssertionError("a frame other than ACK was accepted")


def test_a_records_frame_holds_the_term_then_the_records_as_given() -> None:
    records_ = [encode_wire(1, 0, 1, 5, b"a"), encode_wire(1, 0, 2, 5, b"b") + encode_wire(1, 0, 3, 5, b"c")]
    frame = wire.records_frame(7, records_)
    length, kind = wire.FRAME.unpack_from(frame)
    assert (length, kind) == (len(frame) - 4, wire.RECORDS)
    body = frame[wire.FRAME.size :]
    assert wire.TERM.unpack_from(body)[0] == 7
    assert body[wire.TERM.size :] == b"".join(records_)


async def raw_follower(
    leader_log: Log, address: tuple[str, int], node: str, *, rcvbuf: int = 0
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, int]:
    """A follower by hand: authenticates, says it holds the leader's log up to its durable LSN, and gets
    STREAM from there; (reader, writer, that LSN). `rcvbuf`: a small receive buffer (a slow follower)."""
    sock = None
    if rcvbuf:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.connect(address)
        sock.setblocking(False)
    if sock is not None:
        reader, writer = await asyncio.open_connection(sock=sock)
    else:
        reader, writer = await asyncio.open_connection(*address)
    _kind, challenge = await wire.read_json(reader, wire.CHALLENGE)
    await wait(lambda: leader_log.durable_lsn == leader_log.end_lsn)  # its probe is a durable record
    proof = wire.mac("secret", "c", "follower", str(challenge["nonce"]))
    writer.write(wire.json_frame(wire.AUTH, {"node": node, "cluster": "c", "mac": proof, "nonce": "n"}))
    await wire.read_json(reader, wire.WELCOME)
    durable = leader_log.durable_lsn
    probes = [[durable, record_crc(leader_log, durable)]]
    writer.write(
        wire.json_frame(wire.HELLO, {"log_id": leader_log.log_id.hex(), "durable": durable, "probes": probes})
    )
    _kind, answer = await wire.read_json(reader, wire.STREAM)
    assert answer["from"] == durable
    return reader, writer, durable


def sender_threads(node: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == f"ottermq-replication-{node}"]


def stage_user(store: DurableStore, name: str) -> int:
    """Append a record straight to the log (under the journal: it also goes when publishes are refused)."""
    writer = store.journal.writer
    assert writer is not None
    rtype, payload = encode(UserAdded(name, "hash", ()))
    return writer.append(rtype, payload)


@pytest.mark.parametrize("threads", [True, False], ids=["sender-thread", "event-loop"])
def test_after_fencing_the_sender_stops_and_sends_nothing(tmp_path: Path, threads: bool) -> None:
    """Leadership lost: the follower's sender (thread, or task on the event loop) ends and not one byte
    more reaches the follower, even of records the group commit takes afterwards."""
    asyncio.run(fencing_scenario(tmp_path, threads))


async def fencing_scenario(tmp_path: Path, threads: bool) -> None:
    store = opener(tmp_path / "a")
    await store.start()
    role = StaticRole("a", leader=True)
    leader = ReplicationLeader(
        store, role, ReplicationOptions("127.0.0.1", 0, "c", "secret", sender_threads=threads)
    )
    address = (await leader.start())[0]
    try:
        reader, writer, start = await raw_follower(store.log, address, "b")
        await wait(lambda: len(sender_threads("b")) == int(threads))
        received: list[int] = []  # the last LSN of each RECORDS frame
        first = stage_user(store, "before")
        while not received or received[-1] < first:
            kind, body = await asyncio.wait_for(wire.read_frame(reader), 10)
            assert kind == wire.RECORDS and wire.TERM.unpack_from(body)[0] == role.term()
            records_ = memoryview(body)[wire.TERM.size :]
            at = 0
            while at < len(records_):
                at, _rtype, _flags, lsn, _when, _payload = decode_wire(records_, at)
            received.append(lsn)
        writer.write(wire.frame(wire.ACKED, wire.ACK.pack(role.term(), first)))
        await wait(lambda: leader.links["b"].acked == first)

        role.lose()
        await wait(lambda: not sender_threads("b"))
        for i in range(20):  # taken by the group commit after the fencing: nobody may send them
            stage_user(store, f"after{i}")
        await store.journal.writer.sync()  # type: ignore[union-attr]
        rest = await asyncio.wait_for(reader.read(), 10)  # until the leader's side is closed
        assert rest == b"", f"{len(rest)} bytes sent after fencing"
        assert received[-1] == first and start < first
    finally:
        await leader.stop()
        await store.stop()


def test_a_slow_follower_holds_up_neither_the_writer_nor_another_follower(tmp_path: Path) -> None:
    """A follower that stops reading blocks its own sender thread only: group commits go on, the other
    follower gets everything and acknowledges it, confirms go on once the slow one left the joining set
    after the ack timeout; the slow one's thread ends when its connection does."""
    asyncio.run(slow_follower_scenario(tmp_path))


async def slow_follower_scenario(tmp_path: Path) -> None:
    store = opener(tmp_path / "a")
    await store.start()
    role = StaticRole("a", leader=True)
    options = ReplicationOptions("127.0.0.1", 0, "c", "secret", ack_timeout=0.5, sender_threads=True)
    leader = ReplicationLeader(store, role, options)
    address = (await leader.start())[0]
    follower = Follower(
        tmp_path / "b",
        FollowerOptions(address, "b", "c", "secret"),
        lambda: opener(tmp_path / "b", compact=False),
    )
    task = asyncio.create_task(follower.run())
    slow_writer: asyncio.StreamWriter | None = None
    try:
        await wait(lambda: "b" in role.isr())
        _reader, slow_writer, slow_start = await raw_follower(store.log, address, "slow", rcvbuf=4096)
        await wait(lambda: "slow" in leader.links and len(sender_threads("slow")) == 1)
        writer = store.journal.writer
        assert writer is not None
        batches = writer.batches
        broker = store.broker
        assert isinstance(broker, Broker)
        vhost = broker.vhosts["/"]
        queue = vhost.declare_queue("q", durable=True)
        confirmed: list[int] = []
        body = b"x" * 4096
        for i in range(3000):  # 12 MiB: far more than the slow follower's socket buffers hold
            position, placed = vhost.publish(Message("", "q", PERSISTENT, body), [queue])
            for target, entry in placed:
                target.enqueue(entry)
            store.journal.when_durable(position, functools.partial(confirmed.append, position))
            if i % 100 == 99:
                await asyncio.sleep(0)  # let group commits and acks run, as a broker's turns would
        await wait(lambda: len(confirmed) == 3000, timeout=30)
        end = store.log.end_lsn
        await wait(lambda: leader.links["b"].acked >= end)
        assert writer.batches - batches >= 2
        slow = leader.links["slow"]
        assert slow.records < end - slow_start  # it got only what its socket buffers took
        assert len(sender_threads("slow")) == 1  # blocked in its send, not holding anyone up
        assert "slow" not in role.isr()
        slow_writer.transport.abort()
        await wait(lambda: "slow" not in leader.links and not sender_threads("slow"))
    finally:
        if slow_writer is not None:
            slow_writer.transport.abort()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await leader.stop()
        await store.stop()
