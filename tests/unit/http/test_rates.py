"""Message rates from two samples of the broker's counters, and the global counters in /metrics."""

from __future__ import annotations

import asyncio

import pytest

from ottermq.broker.broker import Broker
from ottermq.http.prometheus import scrape_text
from ottermq.http.service import ManagementService
from ottermq.http.stats import MESSAGE_STATS, MessageRates
from tests.unit.broker.test_channel import consume, declare, deliveries
from tests.unit.broker.test_connection_harness import connected


def test_rates_are_zero_until_there_are_two_samples() -> None:
    broker = Broker()
    client = connected(broker)
    declare(client)
    rates = MessageRates(broker)
    assert set(rates.rates().values()) == {0.0}
    rates.sample(10.0)
    client.publish(1, "", "q", b"a")
    assert set(rates.rates().values()) == {0.0}
    stats = rates.message_stats()
    assert stats["publish"] == 1  # counts are read live; only the rates wait for samples
    assert stats["publish_details"] == {"rate": 0.0}


def test_rate_is_the_difference_per_second_of_the_last_two_samples() -> None:
    broker = Broker()
    client = connected(broker)
    declare(client)
    consume(client, no_ack=True)
    rates = MessageRates(broker)
    rates.sample(100.0)
    for _ in range(10):
        client.publish(1, "", "q", b"a")
    deliveries(client)
    rates.sample(105.0)
    stats = rates.message_stats()
    assert stats["publish"] == 10 and stats["publish_details"] == {"rate": 2.0}
    assert stats["deliver_no_ack_details"] == {"rate": 2.0}
    assert stats["deliver_get_details"] == {"rate": 2.0}
    assert stats["deliver_details"] == {"rate": 0.0}
    assert set(stats) == {name for field, _ in MESSAGE_STATS for name in (field, f"{field}_details")}
    # Only the last two samples count: nothing happened between the second and a third.
    rates.sample(110.0)
    assert rates.message_stats()["publish_details"] == {"rate": 0.0}


def test_metrics_carry_the_global_counters() -> None:
    broker = Broker()
    client = connected(broker)
    declare(client)
    client.publish(1, "", "q", b"a")
    client.publish(1, "", "nowhere", b"b")
    text = scrape_text("", broker, None)
    assert "# TYPE rabbitmq_global_messages_received_total counter\n" in text
    assert 'rabbitmq_global_messages_received_total{protocol="amqp091"} 2\n' in text
    assert 'rabbitmq_global_messages_routed_total{protocol="amqp091"} 1\n' in text
    assert 'rabbitmq_global_messages_unroutable_dropped_total{protocol="amqp091"} 1\n' in text
    assert (
        'rabbitmq_global_messages_delivered_get_manual_ack_total{protocol="amqp091",'
        'queue_type="rabbit_classic_queue"} 0\n'
    ) in text


def test_the_service_samples_while_it_runs_and_stops_sampling() -> None:
    async def run() -> None:
        broker = Broker()
        service = ManagementService("127.0.0.1", 0, sample_interval=0.01)
        await service.start(broker, [])
        try:
            sampler = service._sampler
            assert sampler is not None
            await asyncio.sleep(0.05)
            assert not sampler.done()
        finally:
            await service.stop(1.0)
        assert sampler.cancelled()

    asyncio.run(run())


def test_a_bad_interval_in_the_environment_falls_back_to_5_s(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTTERMQ_STATS_INTERVAL", "fast")
    assert ManagementService("127.0.0.1", 0).sample_interval == 5.0
    monkeypatch.setenv("OTTERMQ_STATS_INTERVAL", "0.25")
    assert ManagementService("127.0.0.1", 0).sample_interval == 0.25
