"""Single active consumer (x-single-active-consumer): one consumer at a time, failover on cancel."""

from __future__ import annotations

import pika

from tests.integration.conftest import Resources, queue_counts, wait_for


def test_only_the_first_consumer_receives(connection: pika.BlockingConnection, resources: Resources) -> None:
    queue = resources.queue()
    ch = connection.channel()
    ch.queue_declare(queue, arguments={"x-single-active-consumer": True})
    first: list[bytes] = []
    second: list[bytes] = []
    tag = ch.basic_consume(queue, lambda c, m, p, b: first.append(b), auto_ack=True)
    ch.basic_consume(queue, lambda c, m, p, b: second.append(b), auto_ack=True)
    assert queue_counts(ch, queue, (0, 2)) == (0, 2)
    for i in range(4):
        ch.basic_publish("", queue, str(i).encode())
    wait_for(connection, lambda: len(first) == 4, what="four deliveries")
    assert second == []

    # Failover: the active consumer cancels, the waiting one takes over.
    ch.basic_cancel(tag)
    ch.basic_publish("", queue, b"after")
    wait_for(connection, lambda: second == [b"after"], what="the failover delivery")
    assert queue_counts(ch, queue, (0, 1)) == (0, 1)


def test_failover_delivers_what_is_ready(connection: pika.BlockingConnection, resources: Resources) -> None:
    queue = resources.queue()
    active_conn = pika.BlockingConnection(connection._impl.params)
    try:
        active = active_conn.channel()
        active.queue_declare(queue, arguments={"x-single-active-consumer": True})
        active.basic_qos(prefetch_count=1)
        held: list[bytes] = []
        active.basic_consume(queue, lambda c, m, p, b: held.append(b))
        for i in range(3):
            active.basic_publish("", queue, str(i).encode())
        wait_for(active_conn, lambda: len(held) == 1, what="the first delivery")
        ch = connection.channel()
        waiting: list[bytes] = []
        ch.basic_consume(queue, lambda c, m, p, b: waiting.append(b), auto_ack=True)
        connection.process_data_events(time_limit=0.2)
        assert waiting == []
    finally:
        active_conn.close()
    # The unacked message comes back and the new active consumer gets everything (pika cancels the
    # consumer before closing its channel, so the order of "0" against the others is a race).
    wait_for(connection, lambda: len(waiting) == 3, what="three deliveries")
    assert sorted(waiting) == [b"0", b"1", b"2"]


def test_wrong_type_is_refused(connection: pika.BlockingConnection) -> None:
    from tests.integration.conftest import broker_error

    ch = connection.channel()
    name = "test.sac.invalid"
    assert broker_error(lambda: ch.queue_declare(name, arguments={"x-single-active-consumer": "yes"})) == (
        406,
        f"PRECONDITION_FAILED - invalid arg 'x-single-active-consumer' for queue '{name}' in vhost '/': "
        "{unacceptable_type,longstr}",
    )
