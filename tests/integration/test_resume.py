"""A full disk under load, then space returns: the broker blocks publishers, keeps consumers draining, and
resumes by itself.

Strategy: the broker runs in this process over small segments and a `DiskIO` whose preallocation of new
segments fails with ENOSPC while the disk is "full" (tests/integration/test_faults.py's LiveBroker), so a
rollover under load meets the full disk exactly as a real one would. A pika publisher in confirm mode gets
nacks and connection.blocked; a consumer started during the outage receives and acks the backlog; when
space returns connection.unblocked arrives and new publishes are confirmed. After a restart from the same
directory every confirmed message that was not consumed is there, and nothing consumed comes back.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pika
import pika.exceptions
import pytest

from ottermq.server.control import handle_request
from tests.integration.test_faults import QUEUE, LiveBroker, drain
from tests.memento.helpers import FillableDisk

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(bool(os.environ.get("OTTERMQ_TEST_URL")), reason="faults are injected in-process"),
]

SEGMENT = 256 * 1024
PADDING = b"." * 2000
PERSISTENT = pika.BasicProperties(delivery_mode=2)


def params(live: LiveBroker) -> pika.ConnectionParameters:
    # No blocked_connection_timeout: a publisher blocked for the whole outage must stay connected.
    return pika.ConnectionParameters(
        "127.0.0.1", live.port, socket_timeout=5, stack_timeout=10, connection_attempts=1
    )


class Publisher(threading.Thread):
    """Publishes persistent messages with confirms until told to stop; records acks, nacks and the
    connection.blocked / unblocked notifications in the order they came."""

    def __init__(self, live: LiveBroker) -> None:
        super().__init__(daemon=True)
        self.live = live
        self.acked: list[str] = []
        self.nacked: list[str] = []
        self.notices: list[str] = []
        self.error = ""
        self.stop = threading.Event()

    def run(self) -> None:
        conn = pika.BlockingConnection(params(self.live))
        conn.add_on_connection_blocked_callback(lambda *_: self.notices.append("blocked"))
        conn.add_on_connection_unblocked_callback(lambda *_: self.notices.append("unblocked"))
        try:
            ch = conn.channel()
            ch.confirm_delivery()
            seq = 0
            while not self.stop.is_set():
                conn.process_data_events(time_limit=0)  # hands over connection.(un)blocked notices
                msg_id = f"m{seq}"
                seq += 1
                try:
                    ch.basic_publish("", QUEUE, msg_id.encode() + PADDING, PERSISTENT)
                except pika.exceptions.NackError:
                    self.nacked.append(msg_id)
                    continue
                self.acked.append(msg_id)
            conn.close()
        except (pika.exceptions.AMQPError, OSError) as exc:
            self.error = f"{type(exc).__name__} {exc}"


class Consumer(threading.Thread):
    """Consumes with manual acks until told to stop; closes cleanly so every ack sent is processed."""

    def __init__(self, live: LiveBroker) -> None:
        super().__init__(daemon=True)
        self.live = live
        self.consumed: list[str] = []
        self.error = ""
        self.stop = threading.Event()

    def run(self) -> None:
        try:
            conn = pika.BlockingConnection(params(self.live))
            ch = conn.channel()
            ch.basic_qos(prefetch_count=50)

            def on_message(_ch: object, method: pika.spec.Basic.Deliver, _p: object, body: bytes) -> None:
                ch.basic_ack(method.delivery_tag)
                self.consumed.append(body[: -len(PADDING)].decode())

            ch.basic_consume(QUEUE, on_message)
            while not self.stop.is_set():
                conn.process_data_events(time_limit=0.05)
            conn.close()
        except (pika.exceptions.AMQPError, OSError) as exc:
            self.error = f"{type(exc).__name__} {exc}"


def wait_for(check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def status(live: LiveBroker) -> tuple[bool, bool]:
    """(journal_failed, journal_suspended) as `ottermq ctl status` reports them."""
    reply = handle_request(live.broker, b'{"verb": "status"}')
    return reply["result"]["journal_failed"], reply["result"]["journal_suspended"]


def test_a_full_disk_blocks_publishers_and_resumes_when_space_returns(tmp_path: Path) -> None:
    disk = FillableDisk()
    live = LiveBroker(tmp_path / "data", disk, segment_size=SEGMENT)
    journal = live.store.journal
    publisher = Publisher(live)
    consumer = Consumer(live)
    try:
        setup = pika.BlockingConnection(params(live))
        setup.channel().queue_declare(QUEUE, durable=True)
        setup.close()
        publisher.start()
        wait_for(lambda: len(publisher.acked) >= 300 or bool(publisher.error), "300 confirms")
        disk.full = True
        # The next rollovers (a spare may serve one) meet the full disk: nacks, then connection.blocked
        # (which pika hands over only once its blocked publish returns: checked at the end).
        wait_for(lambda: bool(publisher.nacked), "a nack")
        assert journal.suspended and disk.refusals and live.broker.alarms.active == ("journal",)
        assert status(live) == (False, True)  # `ottermq ctl status`: suspended, not failed
        acked_at_block = len(publisher.acked)

        # Consumers keep draining while suspended, and their acks are kept for the log.
        consumer.start()
        wait_for(lambda: len(consumer.consumed) >= 200, "200 deliveries while suspended")
        assert journal.suspended, "resumed on its own while the disk was full"
        assert len(publisher.acked) == acked_at_block, "a publish was confirmed while suspended"
        consumed_while_suspended = len(consumer.consumed)

        disk.full = False  # space returns: the writer's next retry gets through
        wait_for(lambda: len(publisher.acked) >= acked_at_block + 100, "100 confirms after space returned")
        assert not journal.failed and not journal.suspended and not live.broker.alarms.blocking
        assert status(live) == (False, False)
        assert publisher.notices == ["blocked", "unblocked"]
        publisher.stop.set()
        publisher.join(20)
        assert not publisher.is_alive() and not publisher.error, publisher.error
        time.sleep(0.3)  # the consumer takes some of the new ones too
        consumer.stop.set()
        consumer.join(20)
        assert not consumer.is_alive() and not consumer.error, consumer.error
        assert consumed_while_suspended >= 200
    finally:
        publisher.stop.set()
        consumer.stop.set()
        live.close()

    confirmed = set(publisher.acked)
    consumed = set(consumer.consumed)
    published = confirmed | set(publisher.nacked)
    restarted = LiveBroker(tmp_path / "data", segment_size=SEGMENT)
    try:
        recovered = [body[: -len(PADDING)] for body in map(str.encode, drain(restarted))]
    finally:
        restarted.close()
    recovered_ids = {body.decode() for body in recovered}
    missing = confirmed - consumed - recovered_ids
    assert not missing, f"{len(missing)} confirmed messages lost, e.g. {sorted(missing)[:5]}"
    back = recovered_ids & consumed
    assert not back, f"{len(back)} acked messages came back, e.g. {sorted(back)[:5]}"
    assert recovered_ids <= published
    assert len(recovered) == len(recovered_ids), "a message came back twice"
