"""The content store's reference counts stay exact through everything a client can do to a message.

Every queue entry naming a message holds one reference to its content (content.py); the content goes when
the last one is given back. A reference given back twice drops a content that an entry still names (a
delivery then fails, or serves nothing); one never given back keeps a content, and for a logged message
its record in the log, forever. Random sequences of client work run through real channels (the in-process
frame client) against a broker over a real log and its LogContents with a small resident budget, and after
every step the references are counted from the broker's own state: each entry that is ready, delivered
and unacknowledged, or logged by a durable queue, is one reference to its id; the store must hold exactly
those ids with exactly those counts, and count exactly the transient ones' bytes. Once everything is
settled the store is empty. Two paths the machine does not take are checked on their own: the counts a
restart rebuilds (replay and snapshot), and publishes held until durable (confirms, transactions) whose
queue is deleted meanwhile.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from memento.log import Log
from ottermq.amqp.methods import (
    BasicAck,
    BasicCancel,
    BasicConsume,
    BasicGet,
    BasicNack,
    BasicQos,
    BasicRecover,
    BasicReject,
    ChannelClose,
    ChannelOpen,
    ConfirmSelect,
    ExchangeDeclare,
    QueueBind,
    QueueDeclare,
    QueueDelete,
    QueuePurge,
    TxCommit,
    TxSelect,
)
from ottermq.amqp.properties import BasicProperties, encode_properties
from ottermq.broker.auth import hash_password
from ottermq.broker.broker import Broker, BrokerSettings
from ottermq.broker.events import PasswordChanged
from ottermq.broker.memory import MESSAGE_OVERHEAD
from ottermq.broker.message import Message, QueueEntry
from ottermq.broker.queue import Queue
from ottermq.broker.queue_expiry import tick_queues
from ottermq.broker.ttl import now_ms
from ottermq.store.codec import RECORD_TYPES
from ottermq.store.contents import LogContents
from ottermq.store.snapshot import encode_snapshot
from ottermq.store.store import LOG_DIR, DurableStore, StoreOptions
from tests.unit.broker.test_connection_harness import Client, connected
from tests.unit.store.brokers import live_broker, log_contents, snapshot_indexes

# name: (durable, arguments). d2 drops from its head past 3 messages; t2 has a queue TTL.
QUEUES: dict[str, tuple[bool, dict[str, Any]]] = {
    "d1": (True, {}),
    "d2": (True, {"x-max-length": 3}),
    "t1": (False, {}),
    "t2": (False, {"x-message-ttl": 60_000}),
}
NAMES = sorted(QUEUES)
EXCHANGE = "x"  # a topic exchange: routing key "d1.t2" reaches d1 and t2
CONSUMING = 2  # the channel that consumes (prefetch 3); channel 1 gets, publishes and manages
# Shrinking a failure runs the machine thousands of times: let Hypothesis's own shrink limit (5 minutes)
# end it, so that a bug is reported with its smallest example found, not as a timeout.
pytestmark = pytest.mark.timeout(420)

CHEAP_GUEST = hash_password("guest", 1_000)
SETTLES = ["ack", "ack-multiple", "reject", "reject-requeue", "nack-multiple", "nack-multiple-requeue"]

MANAGE = ["consume", "cancel", "recover", "reopen", "purge", "delete", "expire"]

queue_names = st.sampled_from(NAMES)
channels = st.sampled_from([1, CONSUMING])
publishes = st.tuples(
    st.just("publish"),
    st.booleans(),
    st.lists(queue_names, min_size=1, max_size=3, unique=True).map(sorted).map(tuple),
    st.sampled_from([None, "0", "60000"]),
)
gets = st.tuples(st.just("get"), queue_names, st.sampled_from([False, False, True]))  # no_ack
settles = st.tuples(st.just("settle"), channels, st.integers(0, 20), st.sampled_from(SETTLES))
manages = st.tuples(st.just("manage"), st.sampled_from(MANAGE), queue_names, channels, st.booleans())
# What the client does, by weight: publishes, deliveries and settles make the traffic; queue and
# channel management is rarer. One rule draws them, so that Hypothesis keeps these proportions.
actions = st.one_of(publishes, publishes, publishes, gets, gets, gets, settles, manages, manages)


def declare(client: Client, name: str) -> None:
    durable, arguments = QUEUES[name]
    client.method(1, QueueDeclare(queue=name, durable=durable, arguments=dict(arguments)))
    client.method(1, QueueBind(queue=name, exchange=EXCHANGE, routing_key=f"#.{name}.#"))


def open_consuming_channel(client: Client) -> None:
    client.method(CONSUMING, ChannelOpen())
    client.method(CONSUMING, BasicQos(prefetch_count=3))


def live_entries(client: Client) -> list[tuple[str, QueueEntry]]:
    """Every entry holding a reference, once, with its queue's name: ready, delivered and unacknowledged,
    or logged by a durable queue. An entry of a deleted queue that gave its reference back names id 0."""
    found: dict[int, tuple[str, QueueEntry]] = {}
    broker = client.conn.broker
    for queue in broker.vhosts["/"].queues.values():
        logged = queue.logged_entries()
        ready = list(queue._ready)
        for entry in (*ready, *logged):
            found[id(entry)] = (queue.name, entry)
    for channel in client.conn.channels.values():
        for _tag, queue, entry, _consumer in channel.unacked.outstanding():
            found[id(entry)] = (queue.name, entry)
    return [(name, entry) for name, entry in found.values() if entry.msg_id != 0]


def check(client: Client, contents: LogContents) -> None:
    """The content store holds exactly the ids the live entries name, each with one reference per entry,
    each the content published to that entry's queue; the broker counts the transient ones' bytes."""
    conn = client.conn
    assert conn.state == "running" and all(channel.is_open for channel in conn.channels.values())
    entries = live_entries(client)
    references = Counter(entry.msg_id for _name, entry in entries)
    assert {msg_id: contents.refs(msg_id) for msg_id in references} == dict(references)
    assert len(contents) == len(references)  # nothing held that no entry names
    held = 0
    for name, entry in entries:
        message = contents.get(entry.msg_id)
        _number, key = message.body.split(b":")
        targets = key.decode().split(".")
        assert name in targets and message.routing_key == key.decode()
        # Logged (id > 0) exactly when persistent and routed to a durable queue.
        assert (entry.msg_id > 0) == (message.persistent and any(QUEUES[t][0] for t in targets))
        assert entry.size == message.body_size
    for msg_id in references:
        if msg_id < 0:
            held += contents.get(msg_id).body_size + MESSAGE_OVERHEAD
    assert conn.broker.memory.held_bytes == held


def settle_everything(client: Client) -> None:
    """Ack what channel 1 holds, close the consuming channel (its deliveries go back), purge every queue."""
    if client.conn.channels[1].unacked.tags():
        client.method(1, BasicAck(0, True))
    client.method(CONSUMING, ChannelClose(200, "bye"))
    for name in NAMES:
        client.method(1, QueuePurge(queue=name))
    client.transport.out.clear()


class ClientWork(RuleBasedStateMachine):
    """A broker over a fresh log, a client with two channels, and rules for what the client does; the
    references are checked after every step, and the store must be empty once everything is settled."""

    def __init__(self) -> None:
        super().__init__()
        self.path = Path(tempfile.mkdtemp(prefix="ottermq-refcounts-"))
        self.store = DurableStore.open(self.path, StoreOptions(segment_size=1 << 20))
        # The default user gets a cheap password hash: at the production cost (tens of ms) the logins
        # of a few hundred examples, shrinking included, would take most of the test's time.
        broker = self.store.new_broker(BrokerSettings(default_pass=""))
        self.store.recover(broker)
        broker.apply(PasswordChanged("guest", CHEAP_GUEST))
        # A small budget: contents are evicted and read back from the log while the machine runs.
        self.store.contents.resident_limit = 600
        self.contents = log_contents(broker)
        self.client = client = connected(broker)
        client.method(1, ExchangeDeclare(exchange=EXCHANGE, type="topic", durable=True))
        for name in NAMES:
            declare(client, name)
        open_consuming_channel(client)
        self.number = 0
        # Set by each step until the references are checked after it (see teardown).
        self.broken = False

    def sent(self) -> None:
        """After each step: what the broker sent is not looked at; the log's staging area is kept small
        (durability plays no part here)."""
        self.client.transport.out.clear()
        self.store.log.sync()

    @rule(action=actions)
    def step(self, action: tuple[Any, ...]) -> None:
        """One thing the client does (see `actions`)."""
        self.broken = True
        kind, *arguments = action
        getattr(self, kind)(*arguments)
        self.sent()

    def publish(self, persistent: bool, reached: tuple[str, ...], expiration: str | None) -> None:
        """Publish through the topic exchange to the queues `reached` (1 to 3, durable or not)."""
        self.number += 1
        key = ".".join(reached)
        properties = BasicProperties(delivery_mode=2 if persistent else 1, expiration=expiration)
        body = b"%d:%s" % (self.number, key.encode())
        self.client.publish(1, EXCHANGE, key, body, properties=properties)

    def get(self, queue: str, no_ack: bool) -> None:
        self.client.method(1, BasicGet(queue=queue, no_ack=no_ack))

    def settle(self, channel: int, pick: int, how: str) -> None:
        """Settle one delivery the channel holds (or all up to it)."""
        tags = self.client.conn.channels[channel].unacked.tags()
        if not tags:
            return
        tag = tags[pick % len(tags)]
        if how.startswith("ack"):
            self.client.method(channel, BasicAck(tag, how == "ack-multiple"))
        elif how.startswith("reject"):
            self.client.method(channel, BasicReject(tag, how == "reject-requeue"))
        else:
            self.client.method(channel, BasicNack(tag, True, how == "nack-multiple-requeue"))

    def manage(self, what: str, queue: str, channel: int, busy: bool) -> None:
        """Consume from `queue` on the consuming channel (prefetch 3), cancel its consumers, recover
        `channel`'s deliveries, close and reopen the consuming channel (its deliveries go back), purge
        `queue`, delete it (its consumers are cancelled, its deliveries stay with the channels) and
        declare it again, or let an hour pass (every entry with a deadline expires). `busy`: rather a
        queue with deliveries outstanding, if there is one (where references are easiest to get wrong,
        and which random choices seldom hit)."""
        client = self.client
        if busy:
            outstanding = [
                delivery[1].name
                for channel_ in client.conn.channels.values()
                for delivery in channel_.unacked.outstanding()
            ]
            if outstanding:
                queue = outstanding[-1]
        if what == "consume":
            self.number += 1
            client.method(CONSUMING, BasicConsume(queue=queue, consumer_tag=f"c{self.number}"))
        elif what == "cancel":
            for tag in list(client.conn.channels[CONSUMING].consumers):
                client.method(CONSUMING, BasicCancel(tag))
        elif what == "recover":
            client.method(channel, BasicRecover(requeue=True))
        elif what == "reopen":
            client.method(CONSUMING, ChannelClose(200, "bye"))
            open_consuming_channel(client)
        elif what == "purge":
            client.method(1, QueuePurge(queue=queue))
        elif what == "delete":
            client.method(1, QueueDelete(queue=queue))
            declare(client, queue)
        else:
            assert what == "expire"
            tick_queues(client.conn.broker.vhosts.values(), now_ms() + 3_600_000)

    @invariant()
    def references_are_exact(self) -> None:
        check(self.client, self.contents)
        self.broken = False

    def teardown(self) -> None:
        """Settle everything: the store must be empty. Skipped after a failed step or check, whose error
        is the one to report."""
        try:
            if not self.broken:
                settle_everything(self.client)
                check(self.client, self.contents)
                assert not live_entries(self.client)
                assert len(self.contents) == 0 and not self.contents.locations
                assert self.client.conn.broker.memory.held_bytes == 0 and self.contents.resident_bytes == 0
        finally:
            self.store.close()
            shutil.rmtree(self.path, ignore_errors=True)


ClientWork.TestCase.settings = settings(max_examples=60, stateful_step_count=50, deadline=None)
test_every_reference_is_counted_once_and_given_back_once = ClientWork.TestCase


# -- after a restart ----------------------------------------------------------------------------------------


def restart_workload(broker: Broker, log: Log, snapshot_at: int | None) -> None:
    """Fan-out to durable queues, partial acks and a deleted queue; a snapshot after step `snapshot_at`
    (None: none, everything is replayed)."""
    vhost = broker.vhosts["/"]
    vhost.declare_exchange("fan", "fanout", durable=True)
    for name in ("a", "b", "c"):
        vhost.declare_queue(name, durable=True)
        vhost.bind_queue(name, "fan")
    vhost.declare_queue("t")
    vhost.bind_queue("t", "fan")

    def publish(body: bytes, persistent: bool = True) -> None:
        message = Message(
            "fan", "", encode_properties(BasicProperties(delivery_mode=2 if persistent else 1)), body
        )
        vhost.publish_now(message, vhost.route("fan", "", message))

    steps = [
        lambda: publish(b"m1"),  # a, b, c and t
        lambda: publish(b"m2"),
        lambda: publish(b"transient", persistent=False),  # gone after the restart
        lambda: settle_head(vhost.queues["a"]),  # m1 leaves a
        lambda: settle_head(vhost.queues["b"]),  # m1 leaves b
        lambda: vhost.delete_queue("c"),  # m1 and m2 leave c with it
        lambda: publish(b"m3"),  # a, b and t
        lambda: settle_head(vhost.queues["b"]),  # m2 leaves b
    ]
    for number, step in enumerate(steps):
        step()
        if number == snapshot_at:
            log.sync()
            state = encode_snapshot(broker.durable_events(), snapshot_indexes(broker), clean=False)
            log.save_snapshot(log.end_lsn, state)
    log.sync()


def settle_head(queue: Queue) -> None:
    entry = queue.get()
    assert entry is not None
    queue.settle([entry])


@pytest.mark.parametrize("snapshot_at", [None, 0, 3, 5, 7], ids=lambda at: f"snapshot@{at}")
def test_a_restart_rebuilds_the_reference_counts(tmp_path: Path, snapshot_at: int | None) -> None:
    """Replayed publishes and a snapshot's indexes give each content one reference per durable queue
    still holding it: settling them all empties the store, and not before the last."""
    log = Log.open(tmp_path / LOG_DIR, registry=RECORD_TYPES, segment_size=1 << 20)
    restart_workload(live_broker(log), log, snapshot_at)
    log.close()
    store = DurableStore.open(tmp_path)
    try:
        broker = store.new_broker()
        store.recover(broker)
        contents = log_contents(broker)
        queues = broker.vhosts["/"].queues
        assert sorted(queues) == ["a", "b"]
        held = {name: [contents.get(e.msg_id).body for e in queues[name].logged_entries()] for name in queues}
        assert held == {"a": [b"m2", b"m3"], "b": [b"m3"]}
        by_body = {contents.get(e.msg_id).body: e.msg_id for e in queues["a"].logged_entries()}
        assert contents.refs(by_body[b"m2"]) == 1 and contents.refs(by_body[b"m3"]) == 2
        assert len(contents) == 2 and broker.memory.held_bytes == 0
        settle_head(queues["a"])  # m2: its last reference
        assert by_body[b"m2"] not in contents and contents.refs(by_body[b"m3"]) == 2
        settle_head(queues["a"])  # m3 from a: b still holds it
        assert contents.refs(by_body[b"m3"]) == 1 and contents.get(by_body[b"m3"]).body == b"m3"
        settle_head(queues["b"])
        assert len(contents) == 0 and not contents.locations and contents.resident_bytes == 0
    finally:
        store.close()


# -- publishes held until durable -------------------------------------------------------------------------


@pytest.mark.parametrize("deleted", [(), ("t1",), ("d1",), ("d1", "t1")], ids=lambda names: "-".join(names))
@pytest.mark.parametrize("mode", ["confirm", "tx"])
def test_a_queue_deleted_before_its_held_publish_is_durable_takes_no_reference(
    tmp_path: Path, mode: str, deleted: tuple[str, ...]
) -> None:
    """A publish on a confirm channel (or a committed transaction) reaches its queues once its record is
    durable; a queue deleted meanwhile must give back the reference made for it, once, and the queues
    left keep theirs."""
    asyncio.run(held_publish(tmp_path, mode, deleted))


async def held_publish(tmp_path: Path, mode: str, deleted: tuple[str, ...]) -> None:
    store = DurableStore.open(tmp_path, StoreOptions(segment_size=1 << 20, check_interval=3600))
    broker = store.new_broker(BrokerSettings(default_pass=""))
    store.recover(broker)
    broker.apply(PasswordChanged("guest", CHEAP_GUEST))
    await store.start()
    try:
        contents = log_contents(broker)
        client = connected(broker)
        client.method(1, ExchangeDeclare(exchange=EXCHANGE, type="topic", durable=True))
        for name in ("d1", "t1"):
            declare(client, name)
        client.method(1, ConfirmSelect() if mode == "confirm" else TxSelect())
        client.transport.out.clear()
        properties = BasicProperties(delivery_mode=2)
        client.publish(1, EXCHANGE, "d1.t1", b"0:d1.t1", properties=properties)
        if mode == "tx":
            client.method(1, TxCommit())
        vhost = broker.vhosts["/"]
        # Logged and applied, ready in no queue yet: held until its record is durable.
        assert len(contents) == 1 and not any(queue.ready_count for queue in vhost.queues.values())
        client.method(3, ChannelOpen())  # channel 1 waits for its commit: another channel deletes
        for name in deleted:
            client.method(3, QueueDelete(queue=name))
        writer = store.journal.writer
        assert writer is not None
        await writer.sync()
        for _ in range(20):  # the durability callbacks run on the loop
            await asyncio.sleep(0)
        kept = [name for name in ("d1", "t1") if name not in deleted]
        assert sorted(name for name in kept if vhost.queues[name].ready_count == 1) == kept
        check(client, contents)
        assert len(contents) == (1 if kept else 0)
        for name in kept:
            client.method(1, QueuePurge(queue=name))
        assert len(contents) == 0 and broker.memory.held_bytes == 0
    finally:
        await store.stop()
