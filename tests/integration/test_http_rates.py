"""Message counters in /metrics and message rates in /api/overview, against a real broker fed by pika.

Strategy: each test starts its own broker (`ottermq_server`) so counters start at zero and the sampling
interval can be lowered through the setting collect_statistics_interval (0.5 s instead of 5 s): the
rates show up after two samples without a long sleep.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pika
import pytest

from tests.integration.conftest import BrokerInfo
from tests.integration.test_http_api import _free_port, _wait_http, parse_metrics, request
from tests.integration.test_raw import ottermq_server

INTERVAL = 0.5
CLASSIC = "rabbit_classic_queue"
N = 50


def _counter(port: int, name: str) -> float:
    samples = parse_metrics(request(port, "GET", "/metrics", auth=None).raw.decode())
    # RabbitMQ splits delivery counters by queue type (OtterMQ's queues are classic ones).
    labels = {("protocol", "amqp091")}
    plain = samples.get((f"rabbitmq_global_messages_{name}_total", frozenset(labels)))
    if plain is not None:
        return plain
    return samples[(f"rabbitmq_global_messages_{name}_total", frozenset({*labels, ("queue_type", CLASSIC)}))]


def _traffic(amqp_port: int) -> None:
    """N + 1 confirmed publishes and two unroutable ones (dropped, returned); a consumer gets N and acks
    them with one multiple ack; the last message is got, rejected with requeue and got again (auto-ack),
    a redelivery."""
    credentials = pika.PlainCredentials("guest", "guest")
    conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", amqp_port, credentials=credentials))
    try:
        ch = conn.channel()
        ch.confirm_delivery()
        ch.queue_declare("rates")
        ch.queue_declare("again")
        for i in range(N):
            ch.basic_publish("", "rates", b"%d" % i)
        ch.basic_publish("", "again", b"again")
        ch.basic_publish("", "nowhere", b"dropped")
        with pytest.raises(pika.exceptions.UnroutableError):
            ch.basic_publish("", "nowhere", b"returned", mandatory=True)
        for got, (method, _, _) in enumerate(ch.consume("rates", inactivity_timeout=5), 1):
            assert method is not None
            if got == N:
                ch.basic_ack(method.delivery_tag, multiple=True)
                break
        ch.cancel()
        method, _, _ = ch.basic_get("again")
        assert method is not None
        ch.basic_reject(method.delivery_tag, requeue=True)
        method, _, _ = ch.basic_get("again", auto_ack=True)
        assert method is not None and method.redelivered
    finally:
        conn.close()


def _ottermq(broker: BrokerInfo) -> None:
    if broker.external:
        pytest.skip("starts its own OtterMQ")


def test_metrics_count_what_pika_did(tmp_path: Path, broker: BrokerInfo) -> None:
    _ottermq(broker)
    http_port = _free_port()
    with ottermq_server(tmp_path, "--http-port", str(http_port)) as server:
        _wait_http(server.log_path)
        _traffic(server.port)
        # Counts are final once the connection is closed (the channel's counts fold into the broker's).
        expected = {
            "received": N + 3,
            "routed": N + 1,
            "unroutable_dropped": 1,
            "unroutable_returned": 1,
            "confirmed": N + 3,
            "delivered": N + 2,
            "delivered_consume_manual_ack": N,
            "delivered_consume_auto_ack": 0,
            "delivered_get_auto_ack": 1,
            "delivered_get_manual_ack": 1,
            "redelivered": 1,
            "acknowledged": N,
        }
        assert {name: _counter(http_port, name) for name in expected} == expected


def _rates_seen(port: int, names: tuple[str, ...], positive: bool = True) -> dict[str, Any]:
    """Poll /api/overview until every rate in `names` is > 0 (or, with positive=False, == 0); its
    message_stats. A rate covers the last sampling interval and is shown for the next one, so polling
    every quarter interval right after the traffic sees the interval that holds its last message."""
    deadline = time.monotonic() + 20 * INTERVAL
    while True:
        stats: dict[str, Any] = request(port, "GET", "/api/overview").body["message_stats"]
        rates = [stats[f"{name}_details"]["rate"] for name in names]
        if all((rate > 0) if positive else (rate == 0) for rate in rates):
            return stats
        assert time.monotonic() < deadline, f"rates of {names}: {rates}"
        time.sleep(INTERVAL / 4)


def test_overview_rates_become_positive_after_two_samples(tmp_path: Path, broker: BrokerInfo) -> None:
    _ottermq(broker)
    http_port = _free_port()
    env = {"OTTERMQ_COLLECT_STATISTICS_INTERVAL": str(int(INTERVAL * 1000))}
    with ottermq_server(tmp_path, "--http-port", str(http_port), env=env) as server:
        _wait_http(server.log_path)
        overview = request(http_port, "GET", "/api/overview").body
        assert overview["rates_mode"] == "basic"
        assert overview["message_stats"]["publish_details"] == {"rate": 0.0}
        conn = pika.BlockingConnection(
            pika.ConnectionParameters(
                "127.0.0.1", server.port, credentials=pika.PlainCredentials("guest", "guest")
            )
        )
        try:
            ch = conn.channel()
            ch.confirm_delivery()
            ch.queue_declare("rates")
            for i in range(N):
                ch.basic_publish("", "rates", b"%d" % i)
            stats = _rates_seen(http_port, ("publish", "confirm"))
            assert stats["publish"] == N and stats["confirm"] == N
            for _ in range(N - 1):
                method, _, _ = ch.basic_get("rates")
                assert method is not None
                ch.basic_ack(method.delivery_tag)
            ch.basic_get("rates", auto_ack=True)
            stats = _rates_seen(http_port, ("get", "ack", "deliver_get", "get_no_ack"))
            assert stats["get"] == N - 1 and stats["ack"] == N - 1 and stats["get_no_ack"] == 1
            assert stats["deliver_get"] == N
        finally:
            conn.close()
        # No traffic: after the next two samples every rate is back to zero.
        stats = _rates_seen(http_port, ("publish", "confirm", "get", "ack", "deliver_get"), positive=False)
        assert stats["publish"] == N
        # The counters are broker-wide: a user who sees only its own vhosts gets none of them.
        user = {"password": "pw", "tags": "management"}
        assert request(http_port, "PUT", "/api/users/watcher", user).status == 201
        perms = {"configure": ".*", "write": ".*", "read": ".*"}
        assert request(http_port, "PUT", "/api/permissions/%2F/watcher", perms).status == 201
        assert request(http_port, "GET", "/api/overview", auth=("watcher", "pw")).body["message_stats"] == {}
