"""The traffic behind the Prometheus tests: the same pika calls fed RabbitMQ 3.10 when its scrapes were
recorded (tests/data/rabbitmq_3_10/prometheus/) and feed OtterMQ in the tests, so both have every kind of
series (per queue, channel, connection; every global counter moved).

Run alone it does the traffic against a broker and keeps its connections open (and heartbeating) for
SECONDS, which is how the recordings were made: `python -m tests.integration.prometheus_traffic HOST PORT
SECONDS`.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Any

import pika

# Queues in the default vhost and in OTHER_VHOST (which the caller creates beforehand).
QUEUE_WORK = "prom.work"
QUEUE_AUTO = "prom.auto"
QUEUE_OTHER = "prom.other"
OTHER_VHOST = "prom-other"
PUBLISHED = 10


@dataclass
class Traffic:
    """Connections left open (a consumer on each queue, channels with unacked deliveries)."""

    connections: list[pika.BlockingConnection] = field(default_factory=list)

    def hold(self, seconds: float) -> None:
        """Keep the connections serviced (heartbeats) for `seconds`."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for conn in self.connections:
                conn.process_data_events(time_limit=0.05)

    def close(self) -> None:
        """Close every connection still open."""
        for conn in self.connections:
            if conn.is_open:
                conn.close()


def _connect(host: str, port: int, vhost: str = "/") -> pika.BlockingConnection:
    params = pika.ConnectionParameters(
        host, port, vhost, pika.PlainCredentials("guest", "guest"), socket_timeout=5, stack_timeout=10
    )
    return pika.BlockingConnection(params)


def run(host: str, port: int) -> Traffic:
    """Publish, consume, get, return, drop, redeliver; open and close a connection, channels, a queue."""
    traffic = Traffic()
    # Churn: a connection, a channel and a queue that come and go.
    brief = _connect(host, port)
    extra = brief.channel()
    extra.queue_declare("prom.brief")
    extra.queue_delete("prom.brief")
    extra.close()
    brief.close()

    publisher = _connect(host, port)
    traffic.connections.append(publisher)
    pub: Any = publisher.channel()
    pub.confirm_delivery()
    pub.queue_declare(QUEUE_WORK, durable=True)
    pub.queue_declare(QUEUE_AUTO)
    for i in range(PUBLISHED):
        props = pika.BasicProperties(delivery_mode=2)
        pub.basic_publish("", QUEUE_WORK, b"work %d" % i, props)
        pub.basic_publish("amq.direct", QUEUE_AUTO, b"auto %d" % i)  # unbound: dropped
        pub.basic_publish("", QUEUE_AUTO, b"auto %d" % i)
    try:
        pub.basic_publish("", "prom.nowhere", b"returned", mandatory=True)
    except pika.exceptions.UnroutableError:
        pass
    # Gets: auto ack, manual ack (acked), manual ack rejected back (a redelivery), and an empty one.
    getter: Any = publisher.channel()
    method, _, _ = getter.basic_get(QUEUE_WORK, auto_ack=True)
    assert method is not None
    method, _, _ = getter.basic_get(QUEUE_WORK)
    assert method is not None
    getter.basic_ack(method.delivery_tag)
    method, _, _ = getter.basic_get(QUEUE_WORK)
    assert method is not None
    getter.basic_reject(method.delivery_tag, requeue=True)
    getter.queue_declare("prom.empty", auto_delete=True)
    assert getter.basic_get("prom.empty")[0] is None

    consumer = _connect(host, port)
    traffic.connections.append(consumer)
    manual: Any = consumer.channel()
    manual.basic_qos(prefetch_count=3)
    seen: list[int] = []
    manual.basic_consume(QUEUE_WORK, lambda ch, m, p, b: seen.append(m.delivery_tag))
    auto: Any = consumer.channel()
    got: list[bytes] = []
    auto.basic_consume(QUEUE_AUTO, lambda ch, m, p, b: got.append(b), auto_ack=True)
    while len(seen) < 3 or len(got) < PUBLISHED:
        consumer.process_data_events(time_limit=0.05)
    manual.basic_ack(seen[0])  # a fourth comes: three stay unacked
    consumer.process_data_events(time_limit=0.1)

    other = _connect(host, port, OTHER_VHOST)
    traffic.connections.append(other)
    och: Any = other.channel()
    och.queue_declare(QUEUE_OTHER)
    och.basic_publish("", QUEUE_OTHER, b"other")
    och.basic_publish("", QUEUE_OTHER, b"other")
    return traffic


def main() -> None:
    """Do the traffic against HOST PORT and hold it for SECONDS."""
    host, port, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    traffic = run(host, port)
    print("traffic done", flush=True)
    traffic.hold(seconds)
    traffic.close()


if __name__ == "__main__":
    main()
