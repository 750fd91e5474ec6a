"""The RabbitMQ tutorials 1-6, end to end, with pika's BlockingConnection.

Each test follows its tutorial's shape (same exchange types, bindings and flags) with unique names, and drives
producer and consumer from one thread by pumping the connections' I/O with a time limit.
"""

from __future__ import annotations

import uuid
from typing import Any

import pika

from tests.integration.conftest import BrokerInfo, Resources, unique, wait_for


def test_hello_world(connection: pika.BlockingConnection, channel: Any, resources: Resources) -> None:
    queue = resources.queue(unique("hello"))
    channel.queue_declare(queue=queue)
    channel.basic_publish(exchange="", routing_key=queue, body=b"Hello World!")

    received: list[bytes] = []
    channel.basic_consume(
        queue=queue, on_message_callback=lambda ch, m, p, b: received.append(b), auto_ack=True
    )
    wait_for(connection, lambda: len(received) == 1, what="hello world")
    assert received == [b"Hello World!"]


def test_work_queues_fair_dispatch(broker: BrokerInfo, resources: Resources) -> None:
    """Durable queue, persistent messages, prefetch 1 and manual acks: a busy worker gets no more work."""
    queue = resources.queue(unique("task_queue"))
    producer = pika.BlockingConnection(broker.params())
    worker = pika.BlockingConnection(broker.params())
    try:
        pch = producer.channel()
        pch.queue_declare(queue=queue, durable=True)
        slow, fast = worker.channel(), worker.channel()
        for ch in (slow, fast):
            ch.basic_qos(prefetch_count=1)

        slow_got: list[tuple[int, bytes]] = []
        fast_got: list[bytes] = []

        def on_slow(ch: Any, method: Any, props: Any, body: bytes) -> None:
            slow_got.append((method.delivery_tag, body))  # holds it: the "long task"

        def on_fast(ch: Any, method: Any, props: Any, body: bytes) -> None:
            fast_got.append(body)
            ch.basic_ack(delivery_tag=method.delivery_tag)

        slow.basic_consume(queue=queue, on_message_callback=on_slow)
        # The first task reaches the slow worker before the fast one subscribes.
        pch.basic_publish(
            "", queue, b"task-0", pika.BasicProperties(delivery_mode=pika.DeliveryMode.Persistent)
        )
        wait_for(worker, lambda: len(slow_got) == 1, what="first task")
        fast.basic_consume(queue=queue, on_message_callback=on_fast)
        for i in range(1, 10):
            pch.basic_publish(
                "",
                queue,
                f"task-{i}".encode(),
                pika.BasicProperties(delivery_mode=pika.DeliveryMode.Persistent),
            )
        wait_for(worker, lambda: len(fast_got) == 9, what="fast worker to finish")
        assert [b for _, b in slow_got] == [b"task-0"]
        assert fast_got == [f"task-{i}".encode() for i in range(1, 10)]

        slow.basic_ack(delivery_tag=slow_got[0][0])
        declare_ok = pch.queue_declare(queue=queue, durable=True, passive=True)
        assert declare_ok.method.message_count == 0
    finally:
        producer.close()
        worker.close()


def test_publish_subscribe_fanout(connection: pika.BlockingConnection, resources: Resources) -> None:
    exchange = resources.exchange(unique("logs"))
    ch = connection.channel()
    ch.exchange_declare(exchange=exchange, exchange_type="fanout")
    got: dict[str, list[bytes]] = {}
    for _ in range(2):
        result = ch.queue_declare(queue="", exclusive=True)
        name = result.method.queue
        assert name.startswith("amq.gen-")
        ch.queue_bind(exchange=exchange, queue=name)
        got[name] = []
        ch.basic_consume(
            queue=name,
            auto_ack=True,
            on_message_callback=lambda c, m, p, b, n=name: got[n].append(b),
        )
    for i in range(3):
        ch.basic_publish(exchange=exchange, routing_key="", body=f"log {i}".encode())
    wait_for(connection, lambda: all(len(v) == 3 for v in got.values()), what="both subscribers")
    for bodies in got.values():
        assert bodies == [b"log 0", b"log 1", b"log 2"]


def test_routing_direct(connection: pika.BlockingConnection, resources: Resources) -> None:
    exchange = resources.exchange(unique("direct_logs"))
    ch = connection.channel()
    ch.exchange_declare(exchange=exchange, exchange_type="direct")
    errors_q = ch.queue_declare(queue="", exclusive=True).method.queue
    all_q = ch.queue_declare(queue="", exclusive=True).method.queue
    ch.queue_bind(exchange=exchange, queue=errors_q, routing_key="error")
    for severity in ("info", "warning", "error"):
        ch.queue_bind(exchange=exchange, queue=all_q, routing_key=severity)

    got: dict[str, list[tuple[str, bytes]]] = {errors_q: [], all_q: []}
    for q in (errors_q, all_q):
        ch.basic_consume(
            queue=q,
            auto_ack=True,
            on_message_callback=lambda c, m, p, b, q=q: got[q].append((m.routing_key, b)),
        )
    for severity in ("info", "warning", "error", "debug"):
        ch.basic_publish(exchange=exchange, routing_key=severity, body=f"a {severity}".encode())
    wait_for(connection, lambda: len(got[all_q]) == 3 and len(got[errors_q]) == 1, what="routed logs")
    assert got[errors_q] == [("error", b"a error")]
    assert got[all_q] == [("info", b"a info"), ("warning", b"a warning"), ("error", b"a error")]


# The tutorial's examples: routing key -> which of Q1 (*.orange.*) and Q2 (*.*.rabbit, lazy.#) receive it.
TOPIC_CASES: list[tuple[str, bool, bool]] = [
    ("quick.orange.rabbit", True, True),
    ("lazy.orange.elephant", True, True),
    ("quick.orange.fox", True, False),
    ("lazy.brown.fox", False, True),
    ("lazy.pink.rabbit", False, True),  # matches two Q2 bindings, delivered once
    ("quick.brown.fox", False, False),
    ("orange", False, False),
    ("quick.orange.male.rabbit", False, False),
    ("lazy.orange.male.rabbit", False, True),
]


def test_topics(connection: pika.BlockingConnection, resources: Resources) -> None:
    exchange = resources.exchange(unique("topic_logs"))
    ch = connection.channel()
    ch.exchange_declare(exchange=exchange, exchange_type="topic")
    q1 = ch.queue_declare(queue="", exclusive=True).method.queue
    q2 = ch.queue_declare(queue="", exclusive=True).method.queue
    ch.queue_bind(exchange=exchange, queue=q1, routing_key="*.orange.*")
    ch.queue_bind(exchange=exchange, queue=q2, routing_key="*.*.rabbit")
    ch.queue_bind(exchange=exchange, queue=q2, routing_key="lazy.#")
    got: dict[str, list[str]] = {q1: [], q2: []}
    for q in (q1, q2):
        ch.basic_consume(
            queue=q, auto_ack=True, on_message_callback=lambda c, m, p, b, q=q: got[q].append(m.routing_key)
        )
    for key, _, _ in TOPIC_CASES:
        ch.basic_publish(exchange=exchange, routing_key=key, body=key.encode())
    want1 = [k for k, in1, _ in TOPIC_CASES if in1]
    want2 = [k for k, _, in2 in TOPIC_CASES if in2]
    wait_for(
        connection, lambda: len(got[q1]) >= len(want1) and len(got[q2]) >= len(want2), what="topic routing"
    )
    # A final marker proves nothing else is on its way.
    ch.basic_publish(exchange=exchange, routing_key="lazy.orange.end", body=b"end")
    wait_for(connection, lambda: got[q1][-1:] == ["lazy.orange.end"] and got[q2][-1:] == ["lazy.orange.end"])
    assert got[q1] == [*want1, "lazy.orange.end"]
    assert got[q2] == [*want2, "lazy.orange.end"]


def test_rpc(broker: BrokerInfo, resources: Resources) -> None:
    """An RPC server on one connection, a client with an exclusive callback queue on another."""
    rpc_queue = resources.queue(unique("rpc_queue"))
    server = pika.BlockingConnection(broker.params())
    client = pika.BlockingConnection(broker.params())
    try:
        sch = server.channel()
        sch.queue_declare(queue=rpc_queue)
        sch.basic_qos(prefetch_count=1)

        def fib(n: int) -> int:
            a, b = 0, 1
            for _ in range(n):
                a, b = b, a + b
            return a

        def on_request(ch: Any, method: Any, props: Any, body: bytes) -> None:
            response = str(fib(int(body)))
            ch.basic_publish(
                exchange="",
                routing_key=props.reply_to,
                properties=pika.BasicProperties(correlation_id=props.correlation_id),
                body=response.encode(),
            )
            ch.basic_ack(delivery_tag=method.delivery_tag)

        sch.basic_consume(queue=rpc_queue, on_message_callback=on_request)

        cch = client.channel()
        callback_queue = cch.queue_declare(queue="", exclusive=True).method.queue
        responses: dict[str, bytes] = {}

        def on_response(ch: Any, method: Any, props: Any, body: bytes) -> None:
            responses[props.correlation_id] = body

        cch.basic_consume(queue=callback_queue, on_message_callback=on_response, auto_ack=True)

        calls = {str(uuid.uuid4()): n for n in (0, 1, 10, 30)}
        for corr_id, n in calls.items():
            cch.basic_publish(
                exchange="",
                routing_key=rpc_queue,
                properties=pika.BasicProperties(reply_to=callback_queue, correlation_id=corr_id),
                body=str(n).encode(),
            )

        def done() -> bool:
            server.process_data_events(time_limit=0)
            return len(responses) == len(calls)

        wait_for(client, done, what="rpc responses")
        assert responses == {corr_id: str(fib(n)).encode() for corr_id, n in calls.items()}
    finally:
        client.close()
        server.close()
