"""Live = replay: the durable state of a busy broker equals the state rebuilt from its log at the same LSN.

Strategy: the broker runs in this process (event loop in a thread, real sockets on a free port) over a
durable store, so its `Broker` can be read while pika clients drive it. One busy session uses every
queue feature: direct, fanout, topic and headers exchanges, exchange-to-exchange bindings, an alternate
exchange, durable and transient queues, persistent and transient messages, fan-out, x-message-ttl and
per-message expiration (long ones, plus two that expire on purpose), dead lettering by expiry, reject,
max-length and delivery limit, drop-head, reject-publish and reject-publish-dlx, x-max-length-bytes,
priorities, single active consumer, transactions committed and rolled back, confirms, acks, rejects with
and without requeue, basic.get, purge, deletions and unbinds, a second vhost with limits, and users and
permissions changed. Halfway through, the store snapshots while a confirm-mode publish waits for its
fsync (the disk's fdatasync is slowed for that moment). At a quiescent point (clients idle, one of them
still holding unacked messages) the loop thread flushes the journal, takes `durable_view` of the live
broker and copies the log as it is at that LSN twice: the segments alone, and the segments with the
snapshot. Each copy is recovered by `DurableStore.recover`, the code a restart runs, and the views are
compared object by object.

Deadlines and each queue's feature parts are asserted separately: they were the two divergences this
test first found (live deadlines counted from the enqueue, a queue converted in place by a transient
expiring message), fixed by applying publishes through one function and choosing features at declare.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pika
import pika.exceptions
import pytest

from memento.disk import DiskIO
from memento.identity import IDENTITY_FILE, MARK_FILE
from memento.snapshot import SnapshotStore
from ottermq.broker.broker import Broker, BrokerSettings
from ottermq.broker.policies import clear_policy, set_policy
from ottermq.server.server import Server
from ottermq.store.store import LOG_DIR, DurableStore, StoreOptions
from ottermq.store.view import diff_views, durable_view

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(bool(os.environ.get("OTTERMQ_TEST_URL")), reason="reads the broker in-process"),
]

T = TypeVar("T")

# Small segments (preallocated) keep the copies cheap; the whole session fits in the first one.
SEGMENT_SIZE = 4 << 20
# TTLs that never run out during the test, and the two that do, on purpose.
LONG_TTL = 600_000
SHORT_TTL = 150
# How long the slowed fdatasync takes while the snapshot is taken with a publish held.
SLOW_SYNC = 0.5

PERSISTENT = pika.BasicProperties(delivery_mode=2)
TRANSIENT = pika.BasicProperties(delivery_mode=1)


class SlowDisk(DiskIO):
    """Plain I/O, but the next `slow` fdatasyncs first sleep SLOW_SYNC seconds."""

    def __init__(self) -> None:
        self.slow = 0

    def fdatasync(self, fd: int) -> None:
        if self.slow:
            self.slow -= 1
            time.sleep(SLOW_SYNC)
        super().fdatasync(fd)


class LiveBroker:
    """A broker over a durable store, served by this process on a free port (event loop in a thread)."""

    def __init__(self, data_dir: Path, disk: DiskIO) -> None:
        self.data_dir = data_dir
        self.store = DurableStore.open(data_dir, StoreOptions(disk=disk, segment_size=SEGMENT_SIZE))
        self.broker = self.store.new_broker(BrokerSettings())
        self.store.recover(self.broker)
        self.server = Server(self.broker, shutdown_timeout=1.0)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.port: int = self.run(self._start())

    async def _start(self) -> int:
        await self.store.start()
        addresses = await self.server.start("127.0.0.1", 0)
        return addresses[0][1]

    def run(self, work: Any, timeout: float = 10.0) -> Any:
        """Run a coroutine on the broker's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(work, self.loop).result(timeout)

    def call(self, function: Callable[[], T]) -> T:
        """Run `function` on the broker's loop (the broker is not thread-safe) and return its result."""

        async def call() -> T:
            return function()

        result: T = self.run(call())
        return result

    def connect(self, vhost: str = "/") -> pika.BlockingConnection:
        return pika.BlockingConnection(
            pika.ConnectionParameters(
                "127.0.0.1", self.port, vhost, socket_timeout=5, stack_timeout=10, connection_attempts=1
            )
        )

    async def settled_end(self) -> int:
        """Stage the gathered removals and wait until everything appended is durable; the last LSN."""
        journal = self.store.journal
        writer = journal.writer
        assert writer is not None
        journal.flush_removals()
        lsn = self.store.log.end_lsn
        await writer.wait_durable(lsn)
        return lsn

    async def snapshot_while_held(self, after: int) -> tuple[int, bool]:
        """Once a record past LSN `after` is appended, snapshot at once, before it is durable: (the
        snapshot's LSN, whether that record was still waiting for its fsync when the state was taken)."""
        log = self.store.log
        for _ in range(5000):
            if log.end_lsn > after:
                break
            await asyncio.sleep(0.001)
        held = self.store.journal.durable_position < log.end_lsn
        lsn = await self.store.snapshot(clean=False)
        return lsn, held

    async def capture(self, copies: dict[str, Path]) -> tuple[dict[str, Any], dict[str, dict[str, str]], int]:
        """At a quiescent point: the live view, the live queue classes and the LSN, with the log copied
        as it is at that LSN into each of `copies` ("log": segments only, "snapshot": with snapshots)."""
        for _ in range(50):
            lsn = await self.settled_end()
            self.store.journal.flush_removals()
            if self.store.log.end_lsn == lsn:
                break  # nothing was appended while waiting: this turn sees the state at `lsn`
        else:
            raise AssertionError("the broker never became quiescent")
        view = durable_view(self.broker)
        kinds = queue_kinds(self.broker)
        source = self.data_dir / LOG_DIR
        for kind, target in copies.items():
            shutil.copytree(source / "wal", target / LOG_DIR / "wal")
            for name in (IDENTITY_FILE, MARK_FILE):  # the log's id and high-water mark go with it
                shutil.copyfile(source / name, target / LOG_DIR / name)
            if kind == "snapshot":
                latest = self.store.log.snapshots.load_latest()
                assert latest is not None, "the session's snapshot is missing"
                with SnapshotStore(target / LOG_DIR / "snapshots") as store:
                    store.save(latest.lsn, latest.state)
        return view, kinds, lsn

    async def _stop(self) -> None:
        await self.server.stop("shutdown")
        await self.store.stop()

    def close(self) -> None:
        try:
            self.run(self._stop(), 30)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()


def queue_kinds(broker: Broker) -> dict[str, dict[str, str]]:
    """What each durable queue is, by vhost: its class and the feature parts it has (they follow from its
    declaration alone, never from the messages it received)."""
    return {
        vhost.name: {
            name: " ".join([type(queue).__name__, *(queue.features.parts() if queue.features else [])])
            for name, queue in vhost.queues.items()
            if queue.durable
        }
        for vhost in broker.vhosts.values()
    }


@dataclass
class Rebuilt:
    """A broker recovered from a copy of the live log."""

    view: dict[str, Any]
    kinds: dict[str, dict[str, str]]
    end_lsn: int
    snapshot_lsn: int


@dataclass
class Session:
    """What the busy session left: the live state at `lsn` and the brokers rebuilt from its log."""

    live: dict[str, Any]
    kinds: dict[str, dict[str, str]]
    lsn: int
    snapshot_lsn: int
    held_at_snapshot: bool
    rebuilt: dict[str, Rebuilt]


def rebuild(data_dir: Path) -> Rebuilt:
    """What `ottermq serve` would hold after starting on `data_dir` (nothing is served)."""
    store = DurableStore.open(data_dir, StoreOptions(segment_size=SEGMENT_SIZE))
    try:
        broker = store.new_broker(BrokerSettings())
        info = store.recover(broker)
        return Rebuilt(durable_view(broker), queue_kinds(broker), info.end_lsn, info.snapshot_lsn)
    finally:
        store.close()


# -- the busy session -------------------------------------------------------------------------------------


def declare_topology(ch: Any) -> None:
    """Exchanges of every type, bindings between them, and a queue for each feature."""
    for name, kind in (("ex.direct", "direct"), ("ex.fanout", "fanout"), ("ex.topic", "topic")):
        ch.exchange_declare(name, kind, durable=True)
    ch.exchange_declare("ex.headers", "headers", durable=True)
    ch.exchange_declare("ex.e2e", "fanout", durable=True)
    ch.exchange_declare("ex.dlx", "direct", durable=True)
    ch.exchange_declare("ex.transient", "direct", durable=False)
    ch.exchange_declare("ex.ae", "direct", durable=True, arguments={"alternate-exchange": "ex.fanout"})
    ch.exchange_declare("ex.doomed", "topic", durable=True)
    ch.exchange_declare("ex.autodel", "direct", durable=True, auto_delete=True)
    ch.exchange_declare("ex.internal", "topic", durable=True, internal=True)
    dead = {"x-dead-letter-exchange": "ex.dlx", "x-dead-letter-routing-key": "dead"}
    queues: dict[str, dict[str, Any] | None] = {
        "q.plain": None,
        "q.fan2": None,
        "q.headers": None,
        "q.e2e": None,
        "q.dead": None,
        "q.conv": None,
        "q.conv2": None,
        "q.expire-own": None,
        "q.ttl": {"x-message-ttl": LONG_TTL, **dead},
        "q.expire": {"x-message-ttl": SHORT_TTL, **dead},
        "q.maxlen": {"x-max-length": 3, **dead},
        "q.rejpub": {"x-max-length": 2, "x-overflow": "reject-publish"},
        "q.rejdlx": {"x-max-length": 1, "x-overflow": "reject-publish-dlx", **dead},
        "q.bytes": {"x-max-length-bytes": 100},
        "q.prio": {"x-max-priority": 5},
        "q.sac": {"x-single-active-consumer": True},
        "q.dlimit": {"x-delivery-limit": 1, **dead},
        "q.quorum": {"x-queue-type": "quorum", "x-delivery-limit": 5},
        "q.expires": {"x-expires": LONG_TTL},
        "q.tx": None,
        "q.purge": None,
        "q.doomed": None,
    }
    for name, arguments in queues.items():
        ch.queue_declare(name, durable=True, arguments=arguments)
    ch.queue_declare("q.autodel", durable=True, auto_delete=True)
    ch.queue_declare("q.autodel2", durable=True, auto_delete=True)
    ch.queue_declare("q.transient", durable=False)
    ch.queue_bind("q.plain", "ex.direct", "k")
    ch.queue_bind("q.plain", "ex.direct", "old")
    ch.queue_bind("q.plain", "ex.topic", "a.*")
    ch.queue_bind("q.plain", "ex.doomed", "#")
    ch.queue_bind("q.plain", "ex.internal", "i.#")
    for name in ("q.plain", "q.fan2", "q.transient"):
        ch.queue_bind(name, "ex.fanout")
    ch.queue_bind("q.transient", "ex.direct", "k")
    ch.queue_bind("q.headers", "ex.headers", arguments={"x-match": "all", "h": "v", "n": 7})
    ch.queue_bind("q.e2e", "ex.e2e")
    ch.queue_bind("q.dead", "ex.dlx", "dead")
    ch.queue_bind("q.fan2", "ex.autodel", "x")
    ch.queue_bind("q.fan2", "ex.transient", "t")
    ch.exchange_bind("ex.e2e", "ex.topic", "e2e.#")
    ch.exchange_bind("ex.e2e", "ex.topic", "gone.#")
    ch.exchange_bind("ex.internal", "ex.topic", "i.#")


def policies_before(live: LiveBroker, ch: Any) -> None:
    """Policies and an operator policy set before the queues they apply to exist, then messages that
    their limits (the lower one of the two) and TTL apply to; before the snapshot."""

    def change() -> None:
        vhost = live.broker.vhosts["/"]
        set_policy(vhost, "pol.len", r"^q\.pol", {"max-length": 4, "message-ttl": LONG_TTL}, 1, "queues")
        set_policy(vhost, "pol.ae", r"^ex\.pol$", {"alternate-exchange": "ex.fanout"}, 0, "exchanges")
        set_policy(vhost, "op.len", r"^q\.pol", {"max-length": 3}, 0, "queues", operator=True)

    live.call(change)
    ch.queue_declare("q.pol", durable=True)
    ch.queue_declare("q.pol2", durable=True, arguments={"x-max-length": 10})
    ch.exchange_declare("ex.pol", "direct", durable=True)
    for i in range(5):
        publish(ch, "", "q.pol", b"pol-%d" % i)  # the operator policy's 3: two dropped
        publish(ch, "", "q.pol2", b"pol2-%d" % i)


def policies_after(live: LiveBroker) -> None:
    """After the snapshot: a policy replaced on queues that hold messages (a lower limit drops heads at
    once), one cleared, one on another vhost."""

    def change() -> None:
        vhost = live.broker.vhosts["/"]
        set_policy(vhost, "pol.len", r"^q\.pol$", {"max-length": 1}, 1, "queues")
        clear_policy(vhost, "pol.ae")
        set_policy(live.broker.vhosts["v2"], "pol.v2", ".*", {"expires": LONG_TTL})

    live.call(change)


def publish(ch: Any, exchange: str, key: str, body: bytes, props: pika.BasicProperties = PERSISTENT) -> None:
    ch.basic_publish(exchange, key, body, props)


def first_half(ch: Any) -> None:
    """Routing, fan-out, TTL, limits, priorities: no consumers yet."""
    for i in range(3):
        publish(ch, "ex.direct", "k", b"direct-%d" % i)
        publish(ch, "ex.fanout", "", b"fan-%d" % i)
        publish(ch, "ex.topic", "a.b", b"topic-%d" % i)
        publish(ch, "ex.topic", "e2e.x", b"e2e-%d" % i)
        publish(ch, "ex.topic", "i.x", b"internal-%d" % i)
    publish(ch, "ex.fanout", "", b"fan-transient", TRANSIENT)
    publish(ch, "ex.ae", "unroutable", b"alternate")
    publish(
        ch,
        "ex.headers",
        "",
        b"headers-match",
        pika.BasicProperties(delivery_mode=2, headers={"h": "v", "n": 7}),
    )
    publish(ch, "ex.headers", "", b"headers-miss", pika.BasicProperties(delivery_mode=2, headers={"h": "w"}))
    publish(ch, "ex.doomed", "any", b"doomed-exchange")
    # Per-message TTL longer and shorter than the queue's, and none.
    publish(ch, "", "q.ttl", b"ttl-queue")
    publish(
        ch,
        "",
        "q.ttl",
        b"ttl-own-short",
        pika.BasicProperties(delivery_mode=2, expiration=str(LONG_TTL // 2)),
    )
    publish(
        ch, "", "q.ttl", b"ttl-own-long", pika.BasicProperties(delivery_mode=2, expiration=str(LONG_TTL * 2))
    )
    # A plain durable queue that sees a per-message expiration: persistent and transient ones.
    publish(ch, "", "q.conv", b"conv-before")
    publish(
        ch,
        "",
        "q.conv",
        b"conv-transient-ttl",
        pika.BasicProperties(delivery_mode=1, expiration=str(LONG_TTL)),
    )
    publish(ch, "", "q.conv", b"conv-after")
    # Another that sees a persistent one, gone before the snapshot.
    publish(ch, "", "q.conv2", b"conv2-ttl", pika.BasicProperties(delivery_mode=2, expiration=str(LONG_TTL)))
    publish(ch, "", "q.conv2", b"conv2-keep")
    method, _, body = ch.basic_get("q.conv2")
    assert body == b"conv2-ttl"
    ch.basic_ack(method.delivery_tag)
    # These expire on purpose: by the queue's x-message-ttl (dead-lettered) and by their own expiration.
    publish(ch, "", "q.expire", b"expire-1")
    publish(ch, "", "q.expire", b"expire-2")
    publish(
        ch,
        "",
        "q.expire-own",
        b"expire-own",
        pika.BasicProperties(delivery_mode=2, expiration=str(SHORT_TTL)),
    )
    publish(ch, "", "q.expire-own", b"expire-own-keep")
    for i in range(5):
        publish(ch, "", "q.maxlen", b"maxlen-%d" % i)  # drop-head: two dead-lettered
    for i in range(4):
        publish(ch, "", "q.rejpub", b"rejpub-%d" % i)  # two refused
    for i in range(3):
        publish(ch, "", "q.rejdlx", b"rejdlx-%d" % i)  # two refused and dead-lettered
    for i in range(4):
        publish(ch, "", "q.bytes", b"%040d" % i)  # 40 bytes each: the oldest two dropped
    for priority in (1, 5, 3, 0, 5):
        publish(
            ch, "", "q.prio", b"prio-%d" % priority, pika.BasicProperties(delivery_mode=2, priority=priority)
        )
    for i in range(4):
        publish(ch, "", "q.purge", b"purge-%d" % i)
        publish(ch, "", "q.doomed", b"doomed-%d" % i)
        publish(ch, "", "q.sac", b"sac-%d" % i)
    publish(ch, "", "q.dlimit", b"dlimit")
    # Delivery counts are logged (issue 13): one return, then the same message held unacked on `ch` to
    # the end, across the snapshot (out, count 1).
    for i in range(3):
        publish(ch, "", "q.quorum", b"quorum-%d" % i)
    method, _, _ = ch.basic_get("q.quorum")
    ch.basic_nack(method.delivery_tag, requeue=True)
    ch.basic_get("q.quorum")
    publish(ch, "", "q.expires", b"expires")
    publish(ch, "", "q.autodel", b"autodel")
    publish(ch, "", "q.transient", b"transient-queue")
    ch.queue_declare("q.plain", durable=True, passive=True)  # a round trip: every publish above is in


def confirmed_publishes(ch: Any) -> list[str]:
    """Publishes on a confirm channel; what the broker answered for each."""
    ch.confirm_delivery()
    outcomes = []
    for exchange, key, body, props in (
        # The first is the one held while the snapshot is taken.
        ("", "q.ttl", b"confirm-ttl", pika.BasicProperties(delivery_mode=2, expiration=str(LONG_TTL // 3))),
        ("ex.fanout", "", b"confirm-fan", PERSISTENT),
        ("", "q.plain", b"confirm-transient", TRANSIENT),
        ("", "q.rejpub", b"confirm-rejpub", PERSISTENT),
        ("", "q.rejdlx", b"confirm-rejdlx", PERSISTENT),
    ):
        try:
            ch.basic_publish(exchange, key, body, props)
            outcomes.append("ack")
        except pika.exceptions.NackError:
            outcomes.append("nack")
    return outcomes


def consume_and_settle(conn: pika.BlockingConnection, ch: Any) -> Any:
    """basic.get with and without ack, rejects, priorities, delivery limit, purge with an unacked message;
    returns a channel left holding unacked messages."""
    method, _, body = ch.basic_get("q.prio")
    assert body == b"prio-5"  # the highest priority first
    ch.basic_ack(method.delivery_tag)
    ch.basic_get("q.prio", auto_ack=True)
    method, _, _ = ch.basic_get("q.plain")
    ch.basic_reject(method.delivery_tag, requeue=True)
    method, _, _ = ch.basic_get("q.plain")
    ch.basic_ack(method.delivery_tag)
    method, _, _ = ch.basic_get("q.ttl")
    ch.basic_reject(method.delivery_tag, requeue=False)  # dead-lettered as rejected
    method, _, _ = ch.basic_get("q.headers")
    ch.basic_nack(method.delivery_tag, requeue=False)  # no dead-letter exchange: dropped
    for _ in range(2):  # x-delivery-limit 1: the second return is over the limit, dead-lettered
        method, _, _ = ch.basic_get("q.dlimit")
        ch.basic_nack(method.delivery_tag, requeue=True)
    assert ch.basic_get("q.dlimit")[0] is None
    # An unacked message survives a purge; it stays unacked on `holder` until the end.
    holder = conn.channel()
    holder.basic_get("q.purge")
    holder.basic_get("q.fan2")
    holder.basic_get("q.quorum")  # out, count 0
    method, _, _ = ch.basic_get("q.quorum")
    ch.basic_nack(method.delivery_tag, requeue=True)  # count 1, back
    assert ch.queue_purge("q.purge").method.message_count == 3
    # An auto-delete queue goes with its last consumer.
    tag = ch.basic_consume("q.autodel2", lambda _c, _m, _p, _b: None)
    ch.basic_cancel(tag)
    # An exclusive queue is never durable, whatever the declaration says.
    holder.queue_declare("q.exclusive", durable=True, exclusive=True)
    holder.basic_publish("", "q.exclusive", b"exclusive", PERSISTENT)
    # Single active consumer: the first consumer takes everything (prefetch 2), acks one, then leaves;
    # the waiting one takes over what it returns.
    sac = conn.channel()
    sac.basic_qos(prefetch_count=2)
    first: list[Any] = []
    second: list[Any] = []
    tag = sac.basic_consume("q.sac", lambda _c, m, _p, _b: first.append(m))
    sac.basic_consume("q.sac", lambda _c, m, _p, _b: second.append(m))
    deadline = time.monotonic() + 5
    while len(first) < 2 and time.monotonic() < deadline:
        conn.process_data_events(time_limit=0.02)
    assert len(first) == 2 and not second
    sac.basic_ack(first[0].delivery_tag)
    sac.basic_cancel(tag)
    while len(second) < 2 and time.monotonic() < deadline:
        conn.process_data_events(time_limit=0.02)
    assert len(second) == 2
    sac.basic_ack(second[0].delivery_tag)
    return holder


def transactions(ch: Any, before_last_commit: Callable[[], None]) -> None:
    """A commit with publishes and an ack, a rollback, and a commit of a publish to a TTL queue."""
    ch.tx_select()
    publish(ch, "", "q.tx", b"tx-1")
    publish(ch, "ex.fanout", "", b"tx-fan")
    method, _, _ = ch.basic_get("q.e2e")
    ch.basic_ack(method.delivery_tag)
    ch.tx_commit()
    publish(ch, "", "q.tx", b"tx-rolled-back")
    method, _, _ = ch.basic_get("q.e2e")
    ch.basic_ack(method.delivery_tag)
    ch.tx_rollback()
    ch.basic_reject(method.delivery_tag, requeue=True)  # the rolled-back ack: the message goes back
    publish(ch, "", "q.ttl", b"tx-ttl")
    publish(ch, "", "q.tx", b"tx-transient", TRANSIENT)
    before_last_commit()
    ch.tx_commit()


def deletions(ch: Any) -> None:
    """Queue and exchange deletion, unbinding (an auto-delete exchange goes with its last binding)."""
    ch.queue_delete("q.doomed")
    ch.exchange_delete("ex.doomed")
    ch.queue_unbind("q.plain", "ex.direct", "old")
    ch.queue_unbind("q.fan2", "ex.autodel", "x")
    ch.exchange_unbind("ex.e2e", "ex.topic", "gone.#")
    ch.queue_declare("q.transient", durable=False, passive=True)


def access_changes(live: LiveBroker) -> None:
    """Users, permissions, a second vhost, vhost and user limits and topic permissions, as `ottermq ctl`
    changes them."""

    def change() -> None:
        broker = live.broker
        access = broker.access
        access.add_user("alice", "secret", ("management",))
        access.set_permissions("alice", "/", "^q\\.", ".*", ".*")
        access.set_permissions("alice", "/", "^alice\\.", "^ex\\.", ".*")
        access.add_user("bob", "bob")
        access.set_permissions("bob", "/", ".*", ".*", ".*")
        access.set_user_limits("bob", {"max-connections": 1})
        access.set_topic_permissions("bob", "/", "amq.topic", "^b", "^b")
        access.delete_user("bob")
        access.change_password("alice", "changed")
        access.set_user_tags("alice", ("monitoring", "policymaker"))
        broker.add_vhost("v2")
        access.set_permissions("guest", "v2", ".*", ".*", ".*")
        access.set_permissions("alice", "v2", ".*", "", ".*")
        access.clear_permissions("alice", "v2")
        broker.set_vhost_limits("v2", {"max-queues": 100})
        broker.set_vhost_limit("/", "max-connections", 50)
        access.set_user_limits("alice", {"max-connections": 5})
        access.set_user_limits("alice", {"max-channels": 7})
        access.clear_user_limits("alice", "max-connections")
        access.set_topic_permissions("alice", "/", "amq.topic", "^{username}\\.", ".*")
        access.set_topic_permissions("alice", "/", "other", "a", "b")
        access.clear_topic_permissions("alice", "/", "other")
        access.set_topic_permissions("alice", "v2", "amq.topic", "x", "")
        broker.add_vhost("v3")
        access.set_topic_permissions("alice", "v3", "amq.topic", "x", "y")
        broker.delete_vhost("v3")

    live.call(change)


def limits_before(live: LiveBroker) -> None:
    """A user limit and a topic permission of guest (harmless to the session), before the snapshot, so
    the snapshot's own events carry them."""

    def change() -> None:
        access = live.broker.access
        access.set_user_limits("guest", {"max-channels": 100, "max-connections": 100})
        access.set_topic_permissions("guest", "/", "ex.unused", "^a", "^b")

    live.call(change)


def second_vhost(live: LiveBroker) -> pika.BlockingConnection:
    conn = live.connect("v2")
    ch = conn.channel()
    ch.queue_declare("q.v2", durable=True, arguments={"x-message-ttl": LONG_TTL})
    for i in range(3):
        publish(ch, "", "q.v2", b"v2-%d" % i)
    method, _, _ = ch.basic_get("q.v2")
    ch.basic_ack(method.delivery_tag)
    return conn


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Session]:
    root = tmp_path_factory.mktemp("live-replay")
    disk = SlowDisk()
    live = LiveBroker(root / "live", disk)
    connections: list[pika.BlockingConnection] = []
    try:
        conn = live.connect()
        connections.append(conn)
        ch = conn.channel()
        declare_topology(ch)
        policies_before(live, ch)
        limits_before(live)
        first_half(ch)
        # A snapshot taken while a confirm-mode publish waits for its (slowed) fsync.
        before = live.run(live.settled_end())
        disk.slow = 1
        snapshot = asyncio.run_coroutine_threadsafe(live.snapshot_while_held(before), live.loop)
        outcomes = confirmed_publishes(conn.channel())
        snapshot_lsn, held = snapshot.result(10)
        assert outcomes == ["ack", "ack", "ack", "nack", "nack"]
        # The two short TTLs run out: the messages leave at the head, by basic.get or the broker's tick.
        time.sleep(3 * SHORT_TTL / 1000)
        assert ch.basic_get("q.expire")[0] is None
        _, _, body = ch.basic_get("q.expire-own", auto_ack=True)
        assert body == b"expire-own-keep"
        holder = consume_and_settle(conn, ch)

        def slow_commit() -> None:
            live.run(live.settled_end())
            disk.slow = 1  # the commit's publish reaches its TTL queue a slowed fsync after it was logged

        transactions(conn.channel(), slow_commit)
        deletions(ch)
        access_changes(live)
        connections.append(second_vhost(live))
        policies_after(live)
        holder.basic_get("q.plain")  # one more unacked message, held to the end
        copies = {"log": root / "copy-log", "snapshot": root / "copy-snapshot"}
        view, kinds, lsn = live.run(live.capture(copies))
        rebuilt = {kind: rebuild(path) for kind, path in copies.items()}
        yield Session(view, kinds, lsn, snapshot_lsn, held, rebuilt)
    finally:
        for connection in connections:
            if connection.is_open:
                connection.close()
        live.close()


SOURCES = ["log", "snapshot"]


def without_deadlines(view: dict[str, Any]) -> dict[str, Any]:
    """The view with each message's deadline reduced to whether it has one."""
    return {
        **view,
        "vhosts": {
            name: {
                **vhost,
                "queues": {
                    queue_name: {
                        **queue,
                        "messages": [(msg_id, size, bool(due)) for msg_id, size, due in queue["messages"]],
                    }
                    for queue_name, queue in vhost["queues"].items()
                },
            }
            for name, vhost in view["vhosts"].items()
        },
    }


def assert_same(live: Any, rebuilt: Any) -> None:
    differences = diff_views(live, rebuilt)
    assert not differences, "the rebuilt broker differs from the live one:\n" + "\n".join(differences)


def test_the_session_did_what_it_says(session: Session) -> None:
    """The comparison is not vacuous: the session left the state each feature should leave."""
    assert session.held_at_snapshot, "the snapshot was not taken while the confirm-mode publish was held"
    assert 0 < session.snapshot_lsn < session.lsn
    queues = session.live["vhosts"]["/"]["queues"]
    counts = {name: len(queue["messages"]) for name, queue in queues.items()}
    assert counts["q.expire"] == 0 and counts["q.expire-own"] == 0
    assert counts["q.maxlen"] == 3 and counts["q.rejpub"] == 2 and counts["q.rejdlx"] == 1
    assert counts["q.bytes"] == 2 and counts["q.prio"] == 3 and counts["q.purge"] == 1
    assert counts["q.dlimit"] == 0 and counts["q.tx"] == 1
    # Delivery counts and what was out to a consumer: (count, out) of each message of the quorum queue.
    assert [(count, out) for _, count, out in queues["q.quorum"]["delivery"]] == [
        (1, True),
        (0, True),
        (1, False),
    ]
    # Dead letters: 2 expired, 2 max-length, 3 refused (two reject-publish-dlx, one confirmed), 1 rejected,
    # 1 over the delivery limit.
    assert counts["q.dead"] == 9
    assert "q.doomed" not in queues and "q.transient" not in queues
    exchanges = session.live["vhosts"]["/"]["exchanges"]
    assert "ex.doomed" not in exchanges and "ex.autodel" not in exchanges and "ex.transient" not in exchanges
    assert any(due for queue in queues.values() for _, _, due in queue["messages"])
    assert session.live["vhosts"]["v2"]["limits"] == {"max-queues": 100}
    assert set(session.live["users"]) == {"alice", "guest"}
    assert session.live["users"]["alice"]["limits"] == {"max-channels": 7}
    assert session.live["topic_permissions"] == {
        "alice @ / @ amq.topic": {"write": "^{username}\\.", "read": ".*"},
        "alice @ v2 @ amq.topic": {"write": "x", "read": ""},
        "guest @ / @ ex.unused": {"write": "^a", "read": "^b"},
    }
    assert session.live["users"]["guest"]["limits"] == {"max-channels": 100, "max-connections": 100}
    # Policies: q.pol kept the operator policy's 3, then the replaced policy's 1; q.pol2 its 3 (no
    # longer matched by the replaced policy: the operator policy's 3 and its own 10).
    assert counts["q.pol"] == 1 and counts["q.pol2"] == 3
    assert queues["q.pol"]["policy_arguments"] == {"x-max-length": 1}
    assert queues["q.pol2"]["policy_arguments"] == {"x-max-length": 3}
    assert set(session.live["vhosts"]["/"]["policies"]) == {"pol.len"}
    assert set(session.live["vhosts"]["/"]["operator_policies"]) == {"op.len"}
    assert set(session.live["vhosts"]["v2"]["policies"]) == {"pol.v2"}


@pytest.mark.parametrize("source", SOURCES)
def test_rebuilt_at_the_same_lsn(session: Session, source: str) -> None:
    rebuilt = session.rebuilt[source]
    assert rebuilt.end_lsn == session.lsn
    assert rebuilt.snapshot_lsn == (session.snapshot_lsn if source == "snapshot" else 0)


@pytest.mark.parametrize("source", SOURCES)
def test_replay_equals_live(session: Session, source: str) -> None:
    """Entities, access, limits and every logged message (id, size, whether it expires) are equal."""
    assert_same(without_deadlines(session.live), without_deadlines(session.rebuilt[source].view))


@pytest.mark.parametrize("source", SOURCES)
def test_replay_keeps_live_deadlines(session: Session, source: str) -> None:
    """Deadlines count from the publish time the event carries, live and on replay alike: a confirm-mode
    or transactional publish, made ready only after its fsync, expires exactly when it does after a
    restart (the snapshot was taken while one was held)."""
    assert_same(session.live, session.rebuilt[source].view)


@pytest.mark.parametrize("source", SOURCES)
def test_replay_keeps_queue_kinds(session: Session, source: str) -> None:
    """Queues come back with the features they were declared with; a message with its own expiration
    (q.conv: a transient one; q.conv2: a persistent one settled before the snapshot) changes none."""
    kinds = session.rebuilt[source].kinds
    assert_same(session.kinds, kinds)
    assert kinds["/"]["q.conv"] == kinds["/"]["q.conv2"] == "Queue"
