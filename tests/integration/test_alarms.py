"""Memory and disk alarms end to end: connection.blocked, publishers paused, consumers draining, nothing lost.

Strategy: real brokers with thresholds tests can cross. The memory test sets an absolute high-water mark
(bytes the broker holds), fills a queue with 512 KiB messages until connection.blocked arrives, checks that
a publisher's later frames are not read while consumers drain every message, and that draining clears the
alarm (test_memory_alarm.py has the rest). The disk test sets a free-disk limit above any real free space,
so the alarm is on from the first sample.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pika
import pytest
from pika import frame, spec

from tests.integration.test_raw import RawClient, ServerProcess, ottermq_server

BODY = b"m" * (512 * 1024)
# The queue has to hold about this much before the alarm.
MEMORY_LIMIT = 160 * 1024 * 1024


def _url(proc: ServerProcess) -> pika.URLParameters:
    params = pika.URLParameters(f"amqp://guest:guest@127.0.0.1:{proc.port}/%2F")
    params.blocked_connection_timeout = 60
    params.socket_timeout = 10
    return params


class Notified:
    """Records connection.blocked / unblocked notifications of one pika connection."""

    def __init__(self, connection: pika.BlockingConnection) -> None:
        self.blocked: list[str] = []
        self.unblocked = 0
        connection.add_on_connection_blocked_callback(self._on_blocked)
        connection.add_on_connection_unblocked_callback(self._on_unblocked)

    def _on_blocked(self, _connection: Any, method_frame: Any) -> None:
        self.blocked.append(method_frame.method.reason)

    def _on_unblocked(self, _connection: Any, _frame: Any) -> None:
        self.unblocked += 1


def _wait(connection: pika.BlockingConnection, predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        connection.process_data_events(time_limit=0.05)


def _raw_publish(client: RawClient, queue: str, body: bytes) -> None:
    client.send(
        frame.Method(1, spec.Basic.Publish(exchange="", routing_key=queue)).marshal()
        + frame.Header(1, len(body), spec.BasicProperties()).marshal()
        + frame.Body(1, body).marshal()
    )


def _raw_channel(port: int) -> RawClient:
    """A raw client that announces the connection.blocked capability, with channel 1 open."""
    client = RawClient(port)
    client.send(b"AMQP\x00\x00\x09\x01")
    client.expect(spec.Connection.Start)
    client.send_method(
        0,
        spec.Connection.StartOk(
            client_properties={"capabilities": {"connection.blocked": True}},
            mechanism="PLAIN",
            response=b"\x00guest\x00guest",
        ),
    )
    tune = client.expect(spec.Connection.Tune)
    client.send_method(0, spec.Connection.TuneOk(tune.channel_max, tune.frame_max, 0))
    client.send_method(0, spec.Connection.Open(virtual_host="/"))
    client.expect(spec.Connection.OpenOk)
    client.send_method(1, spec.Channel.Open())
    return client


@pytest.fixture
def memory_broker(tmp_path: Path) -> Iterator[ServerProcess]:
    """A broker whose memory alarm goes on at MEMORY_LIMIT bytes of RSS."""
    env = {"OTTERMQ_VM_MEMORY_HIGH_WATERMARK_ABSOLUTE": str(MEMORY_LIMIT)}
    with ottermq_server(tmp_path, env=env) as proc:
        yield proc


@pytest.mark.timeout(60)
def test_memory_alarm_blocks_publishers_until_consumers_drain(memory_broker: ServerProcess) -> None:
    publisher = pika.BlockingConnection(_url(memory_broker))
    consumer = pika.BlockingConnection(_url(memory_broker))
    raw = _raw_channel(memory_broker.port)
    raw.expect(spec.Channel.OpenOk)
    try:
        pub_seen, con_seen = Notified(publisher), Notified(consumer)
        pub = publisher.channel()
        queue = pub.queue_declare("", exclusive=False, auto_delete=False).method.queue
        published = 0
        while not pub_seen.blocked:
            assert published < 600, "no connection.blocked after 300 MB"
            pub.basic_publish("", queue, BODY)
            published += 1
            publisher.process_data_events(time_limit=0 if published % 20 else 0.3)
        assert pub_seen.blocked == ["low on memory"]
        _wait(consumer, lambda: bool(con_seen.blocked), 5, "the consumer's connection.blocked")

        # A publisher is read no further once it publishes during the alarm.
        raw.expect(spec.Connection.Blocked)
        _raw_publish(raw, queue, b"raw")
        raw.send_method(1, spec.Queue.Declare(queue=queue, passive=True))
        with pytest.raises(TimeoutError):
            raw.read_frame(timeout=1.5)

        # Consumers keep draining; the first sample after the queue is back under the mark clears the
        # alarm, the paused publishers are read again, and every message arrives.
        channel = consumer.channel()
        received: list[bytes] = []

        def drain() -> None:
            while True:
                method, _, body = channel.basic_get(queue, auto_ack=True)
                if method is None:
                    return
                received.append(body)

        deadline = time.monotonic() + 20
        while pub_seen.unblocked == 0:
            assert time.monotonic() < deadline, "the alarm never cleared"
            drain()
            publisher.process_data_events(time_limit=0.05)
        raw.expect(spec.Connection.Unblocked, timeout=5)
        raw.expect(spec.Queue.DeclareOk, timeout=5)
        pub.basic_publish("", queue, b"after")
        deadline = time.monotonic() + 10
        while len(received) < published + 2:
            assert time.monotonic() < deadline, f"{len(received)} of {published + 2} messages arrived"
            drain()
            consumer.process_data_events(time_limit=0.05)
        assert received.count(BODY) == published
        assert sorted(body for body in received if body != BODY) == [b"after", b"raw"]
        channel.queue_delete(queue)
    finally:
        raw.close()
        publisher.close()
        consumer.close()
    assert "resource alarm set" in memory_broker.log()
    assert "resource alarm cleared" in memory_broker.log()


def test_disk_alarm_blocks_publishing_but_not_consuming(tmp_path: Path) -> None:
    with ottermq_server(tmp_path, env={"OTTERMQ_DISK_FREE_LIMIT": str(10**18)}) as proc:
        consumer = pika.BlockingConnection(_url(proc))
        raw = _raw_channel(proc.port)
        try:
            # Told at once after connection.open-ok (before pika could register a callback).
            assert raw.expect(spec.Connection.Blocked).reason == "low on disk"
            raw.expect(spec.Channel.OpenOk)
            channel = consumer.channel()
            queue = channel.queue_declare("", exclusive=True).method.queue
            # The consuming connection is served as usual.
            channel.basic_consume(queue, lambda *args: None, auto_ack=True)
            assert channel.basic_get(queue)[0] is None
            # The raw client's publish is taken, then nothing more is read from it.
            _raw_publish(raw, queue, b"x")
            raw.send_method(1, spec.Basic.Qos(prefetch_count=1))
            with pytest.raises(TimeoutError):
                raw.read_frame(timeout=1.5)
            channel.queue_declare(queue, passive=True)
        finally:
            raw.close()
            consumer.close()
