"""When the disk fails (fsync error, ENOSPC), nothing further is confirmed and durable changes are refused;
after a full disk (ENOSPC creating a segment) the store resumes once space returns.

A real log over a `DiskIO` that fails on demand (memento's fault-injection seam), the real store and
broker, driven inside an event loop as `ottermq serve` runs them.
"""

from __future__ import annotations

import asyncio
import errno
from functools import partial
from pathlib import Path

import pytest

from memento.disk import DiskIO
from memento.log import Log
from ottermq.amqp.errors import AMQPConnectionError
from ottermq.amqp.properties import BasicProperties, encode_properties
from ottermq.broker.message import Message
from ottermq.store.codec import RECORD_TYPES
from ottermq.store.store import LOG_DIR, DurableStore, StoreOptions
from tests.memento.helpers import FillableDisk

PERSISTENT = encode_properties(BasicProperties(delivery_mode=2))


class FlakyDisk(DiskIO):
    """Fails every fdatasync with `error` once told to."""

    def __init__(self) -> None:
        self.error: int | None = None

    def fdatasync(self, fd: int) -> None:
        if self.error is not None:
            raise OSError(self.error, "injected")
        super().fdatasync(fd)


@pytest.mark.parametrize("error", [errno.EIO, errno.ENOSPC], ids=["EIO", "ENOSPC"])
def test_a_failed_fsync_nacks_pending_confirms_and_refuses_durable_work(tmp_path: Path, error: int) -> None:
    asyncio.run(scenario(tmp_path, error))


async def scenario(tmp_path: Path, error: int) -> None:
    disk = FlakyDisk()
    log = Log.open(tmp_path / LOG_DIR, registry=RECORD_TYPES, disk=disk, segment_size=1 << 20)
    store = DurableStore(log, StoreOptions(check_interval=0.05))
    broker = store.new_broker()
    store.recover(broker)
    await store.start()
    journal = store.journal
    vhost = broker.vhosts["/"]
    queue = vhost.declare_queue("q", durable=True)
    outcome: list[str] = []

    def publish(body: bytes) -> int:
        message = Message("", "q", PERSISTENT, body)
        position, placed = vhost.publish(message, [queue])
        if position < 0:
            vhost.publish_nacked(placed)  # what a confirm channel does: nacked, enqueued nowhere
            return position
        for target, entry in placed:
            target.enqueue(entry)
        if position > 0:
            journal.when_durable(
                position, lambda: outcome.append(f"ack {body!r}"), lambda: outcome.append(f"nack {body!r}")
            )
        return position

    assert publish(b"before") > 0
    assert journal.writer is not None
    await journal.writer.sync()
    assert outcome == ["ack b'before'"]

    disk.error = error
    assert publish(b"pending") > 0
    for _ in range(100):
        if journal.failed:
            break
        await asyncio.sleep(0.01)
    assert journal.failed
    assert outcome == ["ack b'before'", "nack b'pending'"]
    assert "journal" in broker.alarms.active  # publishers are blocked
    # The free-disk monitor clearing its own alarm does not unblock publishers after a journal failure.
    broker.set_alarm("disk", True)
    broker.set_alarm("disk", False)
    assert broker.alarms.blocking
    assert publish(b"after") == -1  # the channel nacks it at once
    with pytest.raises(AMQPConnectionError) as refused:
        vhost.declare_queue("new", durable=True)
    assert refused.value.reply_code == 541
    # Consumers keep draining: taking and settling messages does not fail.
    entry = queue.get()
    assert entry is not None
    queue.settle([entry])
    vhost.declare_queue("transient")  # nothing durable: still fine
    await store.stop()


def test_removals_gathered_in_a_turn_do_not_slip_into_a_transaction(tmp_path: Path) -> None:
    asyncio.run(gathered_then_tx(tmp_path))


async def gathered_then_tx(tmp_path: Path) -> None:
    store = DurableStore.open(tmp_path, StoreOptions(segment_size=1 << 20))
    broker = store.new_broker()
    store.recover(broker)
    await store.start()
    vhost = broker.vhosts["/"]
    queue = vhost.declare_queue("q", durable=True)
    for body in (b"a", b"b", b"c"):
        vhost.publish_now(Message("", "q", PERSISTENT, body), [queue])
    first = queue.get()
    assert first is not None
    queue.settle([first])  # gathered until the end of the turn
    vhost.begin_tx()
    second = queue.get()
    assert second is not None
    queue.settle([second])
    position, placed = vhost.end_tx([(Message("", "q", PERSISTENT, b"in-tx"), [queue])])
    ((target, entry),) = placed[0]
    assert entry.msg_id >> 20 == position
    target.enqueue(entry)
    await store.stop()
    store = DurableStore.open(tmp_path)
    rebuilt = store.new_broker()
    store.recover(rebuilt)
    bodies = [rebuilt.contents.get(e.msg_id).body for e in rebuilt.vhosts["/"].queues["q"].logged_entries()]
    store.close()
    assert bodies == [b"c", b"in-tx"]


def test_a_full_disk_blocks_publishers_until_space_returns(tmp_path: Path) -> None:
    kept = asyncio.run(full_disk_scenario(tmp_path))
    # Restarted from the same directory: every message logged and not settled, nothing settled.
    store = DurableStore.open(tmp_path)
    rebuilt = store.new_broker()
    store.recover(rebuilt)
    bodies = [rebuilt.contents.get(e.msg_id).body for e in rebuilt.vhosts["/"].queues["q"].logged_entries()]
    store.close()
    assert bodies == kept


async def full_disk_scenario(tmp_path: Path) -> list[bytes]:
    """Publish until a rollover meets the full disk, drain some while suspended, free space, publish more;
    the bodies the log must hold afterwards, in order."""
    disk = FillableDisk()
    log = Log.open(tmp_path / LOG_DIR, registry=RECORD_TYPES, disk=disk, segment_size=1 << 20)
    store = DurableStore(log, StoreOptions(check_interval=0.05))
    broker = store.new_broker()
    store.recover(broker)
    await store.start()
    journal = store.journal
    writer = journal.writer
    assert writer is not None
    vhost = broker.vhosts["/"]
    queue = vhost.declare_queue("q", durable=True)
    outcome: dict[bytes, str] = {}
    body_size = 64 * 1024

    def publish(i: int) -> int:
        body = b"%06d" % i + bytes(body_size)
        message = Message("", "q", PERSISTENT, body)
        position, placed = vhost.publish(message, [queue])
        if position < 0:
            vhost.publish_nacked(placed)  # what a confirm channel does: nacked, enqueued nowhere
            outcome[body] = "refused"
            return position
        for target, entry in placed:
            target.enqueue(entry)
        outcome[body] = "pending"
        journal.when_durable(
            position, partial(outcome.__setitem__, body, "ack"), partial(outcome.__setitem__, body, "nack")
        )
        return position

    for i in range(10):
        publish(i)
    await writer.sync()
    disk.full = True
    i = 10
    while not journal.suspended:
        assert i < 200, "never suspended"
        publish(i)
        i += 1
        await asyncio.sleep(0.002)
    assert disk.refusals and "journal" in broker.alarms.active
    assert journal.failed and writer.failed is None
    assert "pending" not in outcome.values()  # everything pending was nacked
    assert publish(999) == -1  # refused at once: nacked
    with pytest.raises(AMQPConnectionError) as refused:
        vhost.declare_queue("new", durable=True)
    assert refused.value.reply_code == 541 and "new" not in vhost.queues
    # Consumers keep draining; their acks are staged and become durable on resume.
    drained: list[bytes] = []
    for _ in range(3):
        entry = queue.get()
        assert entry is not None
        drained.append(queue.content_of(entry).body)
        queue.settle([entry])
    await asyncio.sleep(0.3)
    assert journal.suspended
    disk.full = False
    writer.retry_now()
    for _ in range(500):
        if not journal.suspended:
            break
        await asyncio.sleep(0.01)
    assert not journal.failed and not broker.alarms.blocking
    publish(1000)
    await writer.sync()
    await asyncio.sleep(0)
    assert outcome[b"%06d" % 1000 + bytes(body_size)] == "ack"
    kept = [b for b, state in outcome.items() if state != "refused" and b not in drained]
    await store.stop()
    return kept
