"""Benchmark the publish path in process: pre-encoded basic.publish + header + body frames fed to a broker
`Connection` (not a test).

Strategy: no socket and no event loop, so what is measured is frame parsing, the protocol machine and the
channel's routing: the part of a publish a connection's code decides. The frames are cut into the reads the
server hands over (32 KiB), and the best of several rounds of CPU time is reported, because the machines this
runs on are shared. Compare two trees by running it from each, in turn, a few times.

    .venv/bin/python -m tools.bench_publish_frames [--messages 200000] [--size 100] [--rounds 5]
"""

from __future__ import annotations

import gc
import time

import typer

from ottermq.amqp.frames import encode_content, encode_method_frame
from ottermq.amqp.methods import BasicPublish, QueueDeclare, QueueDeclareOk
from ottermq.amqp.properties import BasicProperties, encode_properties
from tests.unit.broker.test_connection_harness import connected

READ_SIZE = 32 * 1024  # the server's TURN_BYTES


def one_round(messages: int, size: int, queue: str) -> float:
    """CPU seconds to publish `messages` bodies of `size` bytes to `queue` ("" : unroutable, dropped)."""
    client = connected()
    if queue:
        client.method(1, QueueDeclare(queue=queue))
        client.expect(QueueDeclareOk, 1)
    properties = encode_properties(BasicProperties(delivery_mode=1))
    message = encode_method_frame(1, BasicPublish(0, "", queue or "nowhere", False, False)) + encode_content(
        1, 60, properties, b"x" * size, client.frame_max
    )
    stream = message * messages
    reads = [stream[start : start + READ_SIZE] for start in range(0, len(stream), READ_SIZE)]
    feed = client.conn.data_received
    gc.collect()
    start = time.process_time()
    for data in reads:
        feed(data)
    elapsed = time.process_time() - start
    assert not client.conn.closed, client.conn.close_reason
    if queue:
        assert client.broker.vhosts["/"].queues[queue].ready_count == messages
    return elapsed


def main(messages: int = 200_000, size: int = 100, rounds: int = 5) -> None:
    """Print the best and median CPU time per scenario."""
    for label, queue in (("unroutable", ""), ("to a queue", "q")):
        times = sorted(one_round(messages, size, queue) for _ in range(rounds))
        best, median = times[0], times[len(times) // 2]
        print(f"{label}: best {best:.3f}s median {median:.3f}s ({messages / best / 1000:.0f}k msg/s best)")


if __name__ == "__main__":
    typer.run(main)
