"""A consumer that stops reading cannot make the broker buffer without bound.

Strategy: one queue, two consumers: a raw socket that never reads (small receive window) and a pika consumer
that drains. The publisher sends ~96 MB in paced batches (the queue itself stays small). Without write
backpressure, round-robin would push half of everything into the slow consumer's write buffer; with it,
deliveries to the slow consumer stop once its socket buffer is full and the rest goes to the fast one. We
check both the broker's own accounting (messages held for the slow consumer) and its RSS, sampled from
/proc while the test runs; then the slow consumer closes and its unacked messages come back: none is lost.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pika
import pytest
from pika import spec

from tests.integration.test_raw import RawClient, ServerProcess, ottermq_server

SIZE = 64 * 1024
COUNT = 1536  # 96 MiB
BATCH = 32
# What may legitimately sit between the broker and a reader that stopped: the write buffer's high-water
# mark (1 MiB by default), the kernel's socket buffers (a few MB on loopback) and one batch in flight.
HELD_BOUND = 12 * 1024 * 1024


def rss(pid: int) -> int:
    """Resident set size of process `pid`, in bytes."""
    with open(f"/proc/{pid}/statm", "rb") as f:
        return int(f.read().split()[1]) * 4096


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A broker of its own, so the RSS measured is this test's alone."""
    with ottermq_server(tmp_path) as proc:
        yield proc


@pytest.mark.timeout(60)
def test_a_stalled_consumer_gets_a_bounded_share_and_memory_stays_flat(server: ServerProcess) -> None:
    url = pika.URLParameters(f"amqp://guest:guest@127.0.0.1:{server.port}/%2F")
    queue = "backpressure"
    slow = RawClient(server.port, rcvbuf=64 * 1024)
    slow.handshake()
    slow.send_method(1, spec.Channel.Open())
    slow.expect(spec.Channel.OpenOk)
    slow.send_method(1, spec.Queue.Declare(queue=queue))
    slow.expect(spec.Queue.DeclareOk)
    slow.send_method(1, spec.Basic.Consume(queue=queue, consumer_tag="slow", no_ack=False))
    slow.expect(spec.Basic.ConsumeOk)

    fast_received = 0
    stop = threading.Event()
    ready = threading.Event()
    peak = [0]

    def fast_consumer() -> None:
        nonlocal fast_received
        connection = pika.BlockingConnection(url)
        channel = connection.channel()

        def on_message(*_args: object) -> None:
            nonlocal fast_received
            fast_received += 1

        channel.basic_consume(queue, on_message, auto_ack=True)
        ready.set()
        while not stop.is_set():
            connection.process_data_events(time_limit=0.05)
        connection.close()

    def sample_rss() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], rss(server.proc.pid))
            time.sleep(0.02)

    threads = [threading.Thread(target=fast_consumer), threading.Thread(target=sample_rss)]
    for thread in threads:
        thread.start()
    publisher = pika.BlockingConnection(url)
    try:
        assert ready.wait(10)
        baseline = rss(server.proc.pid)
        channel = publisher.channel()
        body = b"b" * SIZE
        for sent in range(0, COUNT, BATCH):
            for _ in range(BATCH):
                channel.basic_publish("", queue, body)
            # Pace the publisher so the queue itself never holds much: only the consumers' share grows.
            deadline = time.monotonic() + 20
            while channel.queue_declare(queue, passive=True).method.message_count > BATCH:
                assert time.monotonic() < deadline, f"the queue stopped draining after {sent} messages"
                publisher.process_data_events(time_limit=0.01)
        deadline = time.monotonic() + 20
        while channel.queue_declare(queue, passive=True).method.message_count:
            assert time.monotonic() < deadline
            publisher.process_data_events(time_limit=0.02)
        time.sleep(0.3)  # the fast consumer's thread counts what is already on its socket
        held = COUNT - fast_received
        assert held * SIZE <= HELD_BOUND, f"{held} messages ({held * SIZE >> 20} MiB) held for a stalled one"
        growth = peak[0] - baseline
        assert growth < 40 * 1024 * 1024, f"broker RSS grew {growth >> 20} MiB while 96 MiB went through"

        # The stalled consumer goes away: what it was sent and never acked comes back to the fast one.
        slow.close()
        deadline = time.monotonic() + 10
        while fast_received < COUNT:
            assert time.monotonic() < deadline, f"{fast_received} of {COUNT} messages arrived"
            publisher.process_data_events(time_limit=0.05)
        channel.queue_delete(queue)
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)
        slow.close()
        publisher.close()
