"""Connection tuning and channels: negotiated limits, server properties, many channels, channel_max, flow."""

from __future__ import annotations

import pika
import pytest

from tests.integration.conftest import BrokerInfo, broker_error, drain, queue_counts, wait_for

CAPABILITIES = [
    "publisher_confirms",
    "exchange_exchange_bindings",
    "basic.nack",
    "consumer_cancel_notify",
    "connection.blocked",
    "authentication_failure_close",
    "per_consumer_qos",
]


def test_negotiated_defaults(connection: pika.BlockingConnection) -> None:
    params = connection._impl.params
    assert (params.channel_max, params.frame_max, params.heartbeat) == (2047, 131072, 60)


def test_server_capabilities(connection: pika.BlockingConnection) -> None:
    capabilities = connection._impl.server_properties["capabilities"]
    for name in CAPABILITIES:
        assert capabilities.get(name) is True, name


def test_many_channels_on_one_connection(connection: pika.BlockingConnection) -> None:
    first = connection.channel()
    queue = first.queue_declare("", exclusive=True).method.queue
    channels = [connection.channel() for _ in range(300)]
    assert len({ch.channel_number for ch in channels}) == 300
    for i, ch in enumerate(channels):
        ch.basic_publish("", queue, str(i).encode())
    # Order across channels is not defined: wait for all, then compare as a set.
    assert queue_counts(first, queue, (300, 0)) == (300, 0)
    assert sorted(int(b) for b in drain(first, queue)) == list(range(300))
    for ch in channels[::2]:
        ch.close()
    assert all(ch.is_open for ch in channels[1::2])
    channels[1].queue_declare(queue, passive=True)


def test_channels_are_independent(connection: pika.BlockingConnection) -> None:
    """Work interleaved on several channels; closing one leaves the others' consumers running."""
    chs = [connection.channel() for _ in range(5)]
    queues = [ch.queue_declare("", exclusive=True).method.queue for ch in chs]
    got: dict[int, list[bytes]] = {i: [] for i in range(5)}
    for i, ch in enumerate(chs):
        ch.basic_consume(queues[i], lambda c, m, p, b, i=i: got[i].append(b), auto_ack=True)
    chs[2].close()
    for i in range(5):
        chs[0].basic_publish("", queues[i], f"to {i}".encode())
    wait_for(connection, lambda: all(got[i] == [f"to {i}".encode()] for i in (0, 1, 3, 4)), what="deliveries")
    assert got[2] == []


def test_channel_max_enforced(broker: BrokerInfo) -> None:
    conn = pika.BlockingConnection(broker.params(channel_max=5))
    try:
        assert conn._impl.params.channel_max == 5
        channels = [conn.channel() for _ in range(5)]
        # pika itself will not exceed the negotiated limit...
        with pytest.raises(pika.exceptions.NoFreeChannels):
            conn.channel()
        # ...so the sixth channel is asked for by number.
        code_text = broker_error(
            lambda: conn.channel(channel_number=6), pika.exceptions.ConnectionClosedByBroker
        )
        assert code_text == (
            530,
            "NOT_ALLOWED - number of channels opened (5) has reached the negotiated channel_max (5)",
        )
        assert all(ch.is_closed for ch in channels)
    finally:
        if conn.is_open:
            conn.close()


def test_channel_max_counts_open_channels(broker: BrokerInfo) -> None:
    conn = pika.BlockingConnection(broker.params(channel_max=3))
    try:
        channels = [conn.channel() for _ in range(3)]
        channels[1].close()
        replacement = conn.channel()
        replacement.queue_declare("", exclusive=True)
        assert conn.is_open
    finally:
        conn.close()


def test_flow_active(connection: pika.BlockingConnection) -> None:
    ch = connection.channel()
    got: list[bool] = []
    ch._impl.flow(True, got.append)
    wait_for(connection, lambda: got == [True], what="channel.flow-ok")


def test_flow_inactive_is_540(connection: pika.BlockingConnection) -> None:
    ch = connection.channel()

    def stop() -> None:
        ch._impl.flow(False, lambda active: None)
        wait_for(connection, lambda: False, timeout=5, what="connection.close")

    assert broker_error(stop, pika.exceptions.ConnectionClosedByBroker) == (
        540,
        "NOT_IMPLEMENTED - active=false",
    )
