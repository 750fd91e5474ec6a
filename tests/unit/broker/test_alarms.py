"""Resource alarms in the sans-IO broker: connection.blocked/unblocked, blocking publishers, vhost limits."""

from __future__ import annotations

import pytest

from ottermq.amqp.constants import NOT_ALLOWED
from ottermq.amqp.methods import (
    BasicConsume,
    BasicConsumeOk,
    BasicDeliver,
    ConnectionBlocked,
    ConnectionClose,
    ConnectionOpen,
    ConnectionStartOk,
    ConnectionTune,
    ConnectionTuneOk,
    ConnectionUnblocked,
    QueueDeclare,
    QueueDeclareOk,
)
from ottermq.broker.alarms import ALARM_DISK, ALARM_MEMORY, Alarms
from ottermq.broker.broker import Broker

from .test_connection_harness import Client, connected


def _declare(client: Client, queue: str) -> None:
    client.method(1, QueueDeclare(queue=queue))
    client.expect(QueueDeclareOk, 1)


def test_alarms_bookkeeping_reports_only_changes_of_the_blocked_state() -> None:
    alarms = Alarms()
    assert not alarms.blocking and alarms.reason == ""
    assert alarms.set(ALARM_MEMORY, True, []) is True
    assert alarms.set(ALARM_MEMORY, True, []) is False
    assert alarms.set(ALARM_DISK, True, []) is False
    assert alarms.active == (ALARM_MEMORY, ALARM_DISK)
    assert alarms.reason == "low on memory"
    assert alarms.set(ALARM_MEMORY, False, []) is False
    assert alarms.reason == "low on disk"
    assert alarms.set(ALARM_DISK, False, []) is True
    assert not alarms.blocking
    with pytest.raises(ValueError, match="unknown resource alarm"):
        alarms.set("cpu", True, [])


def test_blocked_and_unblocked_are_sent_to_clients_with_the_capability() -> None:
    broker = Broker()
    client = connected(broker)
    broker.set_alarm(ALARM_MEMORY, True)
    assert client.expect(ConnectionBlocked, 0).reason == "low on memory"
    broker.set_alarm(ALARM_DISK, True)
    assert client.silent()  # one notification while blocked, whatever the number of alarms
    broker.set_alarm(ALARM_MEMORY, False)
    assert client.silent()
    broker.set_alarm(ALARM_DISK, False)
    client.expect(ConnectionUnblocked, 0)


def test_a_client_without_the_capability_gets_no_notification() -> None:
    broker = Broker()
    client = Client(broker)
    client.start()
    client.method(0, ConnectionStartOk({}, "PLAIN", b"\x00guest\x00guest", "en_US"))
    tune = client.expect(ConnectionTune, 0)
    client.method(0, ConnectionTuneOk(tune.channel_max, tune.frame_max, 0))
    client.method(0, ConnectionOpen("/"))
    client.frames()
    broker.set_alarm(ALARM_DISK, True)
    assert client.silent()
    broker.set_alarm(ALARM_DISK, False)
    assert client.silent()


def test_a_connection_opened_during_an_alarm_is_told_at_once() -> None:
    broker = Broker()
    broker.set_alarm(ALARM_DISK, True)
    client = connected(broker, channel=None)
    assert client.expect(ConnectionBlocked, 0).reason == "low on disk"


def test_a_publisher_stops_being_read_but_keeps_what_it_sent_and_consumers_keep_draining() -> None:
    broker = Broker()
    publisher = connected(broker)
    consumer = connected(broker)
    _declare(publisher, "q")
    consumer.method(1, BasicConsume(queue="q", consumer_tag="c", no_ack=True))
    consumer.expect(BasicConsumeOk, 1)
    broker.set_alarm(ALARM_MEMORY, True)
    publisher.expect(ConnectionBlocked, 0)
    consumer.expect(ConnectionBlocked, 0)
    # A connection that only consumes is not paused.
    assert consumer.transport.reading
    publisher.publish(1, "", "q", b"m1")
    assert not publisher.transport.reading
    # The message the publisher sent before the pause is delivered: nothing is dropped.
    assert consumer.expect(BasicDeliver, 1).delivery_tag == 1
    assert consumer.expect_content()[1] == b"m1"
    broker.set_alarm(ALARM_MEMORY, False)
    publisher.expect(ConnectionUnblocked, 0)
    assert publisher.transport.reading
    publisher.publish(1, "", "q", b"m2")
    assert publisher.transport.reading
    consumer.expect(ConnectionUnblocked, 0)
    consumer.expect(BasicDeliver, 1)
    assert consumer.expect_content()[1] == b"m2"


def test_a_paused_publisher_is_not_dropped_for_missed_heartbeats() -> None:
    broker = Broker()
    client = connected(broker)
    client.conn.heartbeat = 1
    broker.set_alarm(ALARM_MEMORY, True)
    client.publish(1, "", "nowhere", b"x")
    start = 1000.0
    for second in range(10):
        client.conn.tick(start + second)
    assert not client.conn.closed


def test_vhost_max_connections_refuses_with_530_at_connection_open() -> None:
    broker = Broker()
    broker.set_vhost_limit("/", "max-connections", 1)
    first = connected(broker, channel=None)
    second = Client(broker)
    second.start()
    second.login()
    tune = second.expect(ConnectionTune, 0)
    second.method(0, ConnectionTuneOk(tune.channel_max, tune.frame_max, 0))
    second.method(0, ConnectionOpen("/"))
    close = second.expect(ConnectionClose, 0)
    assert close.reply_code == NOT_ALLOWED
    assert close.reply_text == (
        "NOT_ALLOWED - access to vhost '/' refused for user 'guest': connection limit (1) is reached"
    )
    assert (close.class_id, close.method_id) == (10, 40)
    # Once the first one is gone, a new connection fits again.
    first.conn.connection_lost()
    connected(broker, channel=None)
    broker.set_vhost_limit("/", "max-connections", None)
    connected(broker, channel=None)


def test_vhost_limit_zero_refuses_everyone_and_unknown_limits_are_refused() -> None:
    broker = Broker()
    broker.set_vhost_limit("/", "max-connections", 0)
    client = Client(broker)
    client.start()
    client.login()
    tune = client.expect(ConnectionTune, 0)
    client.method(0, ConnectionTuneOk(tune.channel_max, tune.frame_max, 0))
    client.method(0, ConnectionOpen("/"))
    assert client.expect(ConnectionClose, 0).reply_code == NOT_ALLOWED
    with pytest.raises(ValueError):
        broker.set_vhost_limit("/", "max-queues-typo", 1)
