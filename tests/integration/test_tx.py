"""Transactions (tx.select / commit / rollback) for publishes and acks.

Checks read the queue with basic.get on the transactional channel itself: the broker has handled the channel's
earlier publishes before it answers, so "not there yet" is a real observation, not a race.
"""

from __future__ import annotations

from typing import Any

import pika

from tests.integration.conftest import broker_error, drain, queue_counts


def _tx_channel(connection: pika.BlockingConnection) -> tuple[Any, str]:
    ch = connection.channel()
    queue = ch.queue_declare("", exclusive=True).method.queue
    ch.tx_select()
    return ch, queue


def test_commit_publishes(connection: pika.BlockingConnection) -> None:
    ch, queue = _tx_channel(connection)
    for i in range(3):
        ch.basic_publish("", queue, str(i).encode())
    assert drain(ch, queue) == []
    ch.tx_commit()
    assert drain(ch, queue) == [b"0", b"1", b"2"]


def test_rollback_discards_publishes(connection: pika.BlockingConnection) -> None:
    ch, queue = _tx_channel(connection)
    ch.basic_publish("", queue, b"discarded")
    ch.tx_rollback()
    ch.tx_commit()  # nothing left to commit
    assert drain(ch, queue) == []


def test_transaction_restarts_after_commit(connection: pika.BlockingConnection) -> None:
    ch, queue = _tx_channel(connection)
    ch.basic_publish("", queue, b"first")
    ch.tx_commit()
    ch.basic_publish("", queue, b"second")
    ch.tx_rollback()
    ch.basic_publish("", queue, b"third")
    ch.tx_commit()
    assert drain(ch, queue) == [b"first", b"third"]


def test_close_discards_uncommitted(connection: pika.BlockingConnection) -> None:
    ch, queue = _tx_channel(connection)
    ch.basic_publish("", queue, b"never")
    ch.close()
    assert drain(connection.channel(), queue) == []


def test_acks_in_transaction(connection: pika.BlockingConnection) -> None:
    ch = connection.channel()
    queue = ch.queue_declare("", exclusive=True).method.queue
    for i in range(3):
        ch.basic_publish("", queue, str(i).encode())
    ch.tx_select()
    tags = [ch.basic_get(queue)[0].delivery_tag for _ in range(3)]
    ch.basic_ack(tags[0])
    ch.tx_rollback()
    # The rolled-back ack never happened: the message is still unacked and can be acked again.
    ch.basic_ack(tags[0])
    ch.basic_ack(tags[1])
    ch.tx_commit()
    ch.close()
    # Only the uncommitted third delivery comes back.
    ch = connection.channel()
    assert queue_counts(ch, queue, (1, 0)) == (1, 0)
    method, _, body = ch.basic_get(queue, auto_ack=True)
    assert (body, method.redelivered) == (b"2", True)


def test_uncommitted_ack_is_requeued_on_close(connection: pika.BlockingConnection) -> None:
    ch = connection.channel()
    queue = ch.queue_declare("", exclusive=True).method.queue
    ch.basic_publish("", queue, b"x")
    ch.tx_select()
    tag = ch.basic_get(queue)[0].delivery_tag
    ch.basic_ack(tag)
    ch.close()
    assert queue_counts(connection.channel(), queue, (1, 0)) == (1, 0)


def test_reject_in_transaction(connection: pika.BlockingConnection) -> None:
    ch = connection.channel()
    queue = ch.queue_declare("", exclusive=True).method.queue
    ch.basic_publish("", queue, b"x")
    ch.tx_select()
    tag = ch.basic_get(queue)[0].delivery_tag
    ch.basic_reject(tag, requeue=True)
    assert drain(ch, queue) == []
    ch.tx_commit()
    method, _, body = ch.basic_get(queue, auto_ack=True)
    assert (body, method.redelivered) == (b"x", True)


def test_publish_and_ack_commit_together(connection: pika.BlockingConnection) -> None:
    """The consume-transform-publish pattern: one commit settles the input and releases the output."""
    ch = connection.channel()
    src = ch.queue_declare("", exclusive=True).method.queue
    dst = ch.queue_declare("", exclusive=True).method.queue
    ch.basic_publish("", src, b"in")
    ch.tx_select()
    tag = ch.basic_get(src)[0].delivery_tag
    ch.basic_publish("", dst, b"out")
    ch.basic_ack(tag)
    ch.tx_commit()
    ch.close()
    ch = connection.channel()
    assert drain(ch, src) == []
    assert drain(ch, dst) == [b"out"]


def test_select_twice_is_fine(connection: pika.BlockingConnection) -> None:
    ch, queue = _tx_channel(connection)
    ch.tx_select()
    ch.basic_publish("", queue, b"x")
    ch.tx_commit()
    assert drain(ch, queue) == [b"x"]


def test_commit_without_select_is_406(connection: pika.BlockingConnection) -> None:
    ch = connection.channel()
    assert broker_error(ch.tx_commit) == (406, "PRECONDITION_FAILED - channel is not transactional")
    assert connection.is_open


def test_rollback_without_select_is_406(connection: pika.BlockingConnection) -> None:
    ch = connection.channel()
    assert broker_error(ch.tx_rollback) == (406, "PRECONDITION_FAILED - channel is not transactional")
    assert connection.is_open
