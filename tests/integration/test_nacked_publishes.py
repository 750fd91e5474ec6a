"""A nacked publish is never delivered: not while the disk is full, nor once it frees up, nor after a restart.

Strategy: the broker runs in this process over a disk that refuses new segments on demand (test_resume.py's
setting). A raw-socket publisher in confirm mode pipelines persistent (and some transient) messages to a
fanout exchange bound to a durable queue and a non-durable queue that a consumer drains all along, and to a
durable queue nobody reads until the restart. The disk fills up under it: the publishes whose records were
not yet written, and those read while the journal is suspended, are nacked. Space returns, publishing goes
on and is confirmed. Then: no consumer ever received a nacked message, every confirmed one reached every
queue, and after a restart the unread durable queue holds every confirmed persistent message and no nacked
one (a nacked record that reached the disk when it resumed is followed by its removal).
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pika
import pika.exceptions
import pytest
from pika import frame, spec

from tests.integration.test_faults import LiveBroker
from tests.integration.test_raw import RawClient
from tests.integration.test_resume import wait_for
from tests.memento.helpers import FillableDisk

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(bool(os.environ.get("OTTERMQ_TEST_URL")), reason="faults are injected in-process"),
]

SEGMENT = 256 * 1024
PADDING = b"." * 2000
EXCHANGE = "nack.fanout"
LIVE_DURABLE = "nack.live-durable"
LIVE_TRANSIENT = "nack.live-transient"
KEPT = "nack.kept"  # durable, not read until after the restart
BATCH = 40
PERSISTENT = pika.BasicProperties(delivery_mode=2)


class ConfirmPublisher:
    """A raw confirm-mode channel: pipelines batches of publishes, then reads their acks and nacks."""

    def __init__(self, port: int) -> None:
        self.client = RawClient(port, timeout=10)
        self.client.handshake()
        self.client.send_method(1, spec.Channel.Open())
        self.client.expect(spec.Channel.OpenOk)
        self.client.send_method(1, spec.Confirm.Select())
        self.client.expect(spec.Confirm.SelectOk)
        self.sent: dict[int, tuple[str, bool]] = {}  # confirm sequence number -> (message id, persistent)
        self.next_seq = 1
        self.settled_to = 0  # every number up to this one is settled
        self.acked: set[str] = set()
        self.nacked: set[str] = set()
        self.persistent: set[str] = set()

    def publish_batch(self, count: int = BATCH) -> None:
        out = []
        for _ in range(count):
            seq = self.next_seq
            self.next_seq += 1
            msg_id = f"m{seq}"
            persistent = seq % 5 != 0  # every fifth message is transient
            self.sent[seq] = (msg_id, persistent)
            if persistent:
                self.persistent.add(msg_id)
            body = msg_id.encode() + b"|" + PADDING
            out.append(frame.Method(1, spec.Basic.Publish(exchange=EXCHANGE, routing_key="")).marshal())
            out.append(
                frame.Header(
                    1, len(body), spec.BasicProperties(delivery_mode=2 if persistent else 1)
                ).marshal()
            )
            out.append(frame.Body(1, body).marshal())
        self.client.send(b"".join(out))

    def read_confirms(self, timeout: float) -> None:
        """Read acks and nacks until every publish is settled or `timeout` passes with none coming."""
        while self.settled_to < self.next_seq - 1:
            try:
                got = self.client.read_frame(timeout)
            except TimeoutError:
                return
            assert got is not None, "the broker closed the connection"
            assert isinstance(got, frame.Method), got
            method = got.method
            if isinstance(method, spec.Basic.Ack | spec.Basic.Nack):
                last = method.delivery_tag
                first = self.settled_to + 1 if method.multiple else last
                into = self.acked if isinstance(method, spec.Basic.Ack) else self.nacked
                for seq in range(first, last + 1):
                    into.add(self.sent[seq][0])
                self.settled_to = max(self.settled_to, last)

    def close(self) -> None:
        self.client.close()


class Consumer(threading.Thread):
    """Consumes both live queues with manual acks, recording what each received."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.got: dict[str, list[str]] = {LIVE_DURABLE: [], LIVE_TRANSIENT: []}
        self.error = ""
        self.stop = threading.Event()

    def run(self) -> None:
        try:
            conn = pika.BlockingConnection(
                pika.ConnectionParameters(
                    "127.0.0.1", self.port, socket_timeout=5, stack_timeout=10, connection_attempts=1
                )
            )
            ch = conn.channel()
            ch.basic_qos(prefetch_count=100)
            for queue in self.got:

                def on_message(
                    _ch: object, method: spec.Basic.Deliver, _p: object, body: bytes, queue: str = queue
                ) -> None:
                    self.got[queue].append(body.split(b"|")[0].decode())
                    ch.basic_ack(method.delivery_tag)

                ch.basic_consume(queue, on_message)
            while not self.stop.is_set():
                conn.process_data_events(time_limit=0.05)
            conn.close()
        except (pika.exceptions.AMQPError, OSError) as exc:
            self.error = f"{type(exc).__name__} {exc}"


def params(live: LiveBroker) -> pika.ConnectionParameters:
    # No blocked_connection_timeout: a connection blocked by the disk alarm must stay connected.
    return pika.ConnectionParameters(
        "127.0.0.1", live.port, socket_timeout=5, stack_timeout=10, connection_attempts=1
    )


def declare(live: LiveBroker) -> None:
    setup = pika.BlockingConnection(params(live))
    ch = setup.channel()
    ch.exchange_declare(EXCHANGE, "fanout", durable=True)
    for queue, durable in ((LIVE_DURABLE, True), (LIVE_TRANSIENT, False), (KEPT, True)):
        ch.queue_declare(queue, durable=durable)
        ch.queue_bind(queue, EXCHANGE)
    setup.close()


def kept_after_restart(data_dir: Path) -> list[str]:
    """The ids in the unread durable queue once the broker restarted from `data_dir`."""
    restarted = LiveBroker(data_dir, segment_size=SEGMENT)
    try:
        conn = pika.BlockingConnection(restarted.params())
        ch = conn.channel()
        recovered = []
        while True:
            method, _props, body = ch.basic_get(KEPT, auto_ack=True)
            if method is None:
                break
            recovered.append(body.split(b"|")[0].decode())
        conn.close()
    finally:
        restarted.close()
    return recovered


def test_nacked_publishes_are_never_delivered(tmp_path: Path) -> None:
    disk = FillableDisk()
    live = LiveBroker(tmp_path / "data", disk, segment_size=SEGMENT)
    journal = live.store.journal
    consumer = Consumer(live.port)
    publisher: ConfirmPublisher | None = None
    try:
        declare(live)
        consumer.start()
        publisher = ConfirmPublisher(live.port)
        for _ in range(5):
            publisher.publish_batch()
            publisher.read_confirms(10)
        assert len(publisher.acked) == 5 * BATCH and not publisher.nacked

        disk.full = True
        # Rollovers meet the full disk (a spare segment may serve one first): the writes pending then are
        # nacked, and so is what is read while suspended, until the alarm stops the reading.
        for _ in range(30):
            publisher.publish_batch()
            publisher.read_confirms(1.5)
            if publisher.nacked:
                break
        assert publisher.nacked, "the full disk never nacked a publish"
        assert journal.suspended
        publisher.read_confirms(1.0)  # whatever was read meanwhile
        time.sleep(0.5)  # consumers would have had them by now
        nacked_while_full = set(publisher.nacked)
        for queue, got in consumer.got.items():
            delivered = nacked_while_full & set(got)
            assert not delivered, f"{len(delivered)} nacked messages delivered from {queue}"

        disk.full = False  # the writer's next retry gets through; the held-back publishes are read
        wait_for(lambda: not journal.suspended, "the journal to resume")
        for _ in range(3):
            publisher.publish_batch()
        deadline = time.monotonic() + 30
        while publisher.settled_to < publisher.next_seq - 1 and time.monotonic() < deadline:
            publisher.read_confirms(2)
        assert publisher.settled_to == publisher.next_seq - 1, "publishes left unconfirmed"
        acked, nacked = publisher.acked, publisher.nacked
        assert acked and nacked and not acked & nacked

        wait_for(lambda: all(acked <= set(got) for got in consumer.got.values()), "every confirmed message")
        time.sleep(0.3)
        consumer.stop.set()
        consumer.join(20)
        assert not consumer.is_alive() and not consumer.error, consumer.error
        for queue, got in consumer.got.items():
            delivered = nacked & set(got)
            assert not delivered, f"{len(delivered)} nacked delivered from {queue}: {sorted(delivered)[:5]}"
            assert len(got) == len(set(got)), f"a message was delivered twice from {queue}"
    finally:
        consumer.stop.set()
        if publisher is not None:
            publisher.close()
        live.close()

    recovered = kept_after_restart(tmp_path / "data")
    back = nacked & set(recovered)
    assert not back, f"{len(back)} nacked messages came back after the restart, e.g. {sorted(back)[:5]}"
    missing = (acked & publisher.persistent) - set(recovered)
    assert not missing, f"{len(missing)} confirmed persistent messages lost, e.g. {sorted(missing)[:5]}"
    assert set(recovered) <= publisher.persistent


def test_a_commit_that_fails_is_never_delivered(tmp_path: Path) -> None:
    """tx.commit: its publishes reach the queues once its record is durable. A commit pending when the disk
    fills up fails (541), one sent while the journal is suspended too (it used to get commit-ok although
    nothing was logged); neither is delivered nor comes back after a restart."""
    disk = FillableDisk()
    live = LiveBroker(tmp_path / "data", disk, segment_size=SEGMENT)
    journal = live.store.journal
    consumer = Consumer(live.port)
    early = pika.BlockingConnection(params(live))
    committer = pika.BlockingConnection(params(live))
    committed: set[str] = set()
    failed: set[str] = set()
    try:
        declare(live)
        consumer.start()
        early_ch = early.channel()
        early_ch.tx_select()
        early_ids = {f"early-{i}" for i in range(5)}
        for msg_id in sorted(early_ids):  # buffered in the transaction until the commit
            early_ch.basic_publish(EXCHANGE, "", msg_id.encode() + b"|", PERSISTENT)

        ch = committer.channel()
        ch.tx_select()
        disk.full = True
        for commit in range(20):
            ids = [f"c{commit}-{i}" for i in range(60)]
            for msg_id in ids:
                ch.basic_publish(EXCHANGE, "", msg_id.encode() + b"|" + PADDING, PERSISTENT)
            try:
                ch.tx_commit()
            except pika.exceptions.ChannelClosedByBroker as exc:
                assert exc.reply_code == 541, exc
                failed.update(ids)
                break
            committed.update(ids)
        assert failed, "no commit failed on the full disk"
        assert journal.suspended

        # The journal is suspended: a commit now cannot be logged, so it must not be confirmed.
        with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as closed:
            early_ch.tx_commit()
        assert closed.value.reply_code == 541
        failed |= early_ids
        time.sleep(0.5)
        for queue, got in consumer.got.items():
            delivered = failed & set(got)
            assert not delivered, f"{len(delivered)} uncommitted from {queue}: {sorted(delivered)[:5]}"

        disk.full = False
        wait_for(lambda: not journal.suspended, "the journal to resume")
        wait_for(lambda: all(committed <= set(got) for got in consumer.got.values()), "every committed one")
        time.sleep(0.3)
        consumer.stop.set()
        consumer.join(20)
        assert not consumer.is_alive() and not consumer.error, consumer.error
        for queue, got in consumer.got.items():
            delivered = failed & set(got)
            assert not delivered, f"{len(delivered)} uncommitted from {queue}: {sorted(delivered)[:5]}"
    finally:
        consumer.stop.set()
        for conn in (early, committer):
            if conn.is_open:
                conn.close()
        live.close()

    recovered = set(kept_after_restart(tmp_path / "data"))
    back = failed & recovered
    assert not back, f"{len(back)} uncommitted messages came back after the restart, e.g. {sorted(back)[:5]}"
    assert committed <= recovered
