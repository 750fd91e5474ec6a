"""RabbitMQ's Grafana "RabbitMQ-Overview" dashboard (grafana.com 10991) against OtterMQ: every PromQL query
of its panels returns at least one series.

Strategy: the dashboard's JSON (as RabbitMQ 3.10.8 ships it, tests/data/rabbitmq_3_10/prometheus/) gives
the queries; Grafana's variables are filled as its own variable queries would fill them
(`$rabbitmq_cluster` from rabbitmq_identity_info's label, `$namespace` empty: the label a Kubernetes
scrape adds and a plain one does not, and PromQL's `namespace=""` matches its absence). Two scrapes of
the Prometheus port, 15 s apart in the store's clock (Prometheus' scrape interval in RabbitMQ's setup),
with traffic between them, stand in for Prometheus' database; tests/promql.py evaluates the queries.
The same queries run on RabbitMQ's two recorded scrapes first, so the evaluator is checked on the real
thing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pika
import pytest

from tests import promql
from tests.integration.test_prometheus import DATA, Node, node  # noqa: F401  (the module's broker)

DASHBOARD = DATA / "RabbitMQ-Overview.json"
SCRAPE_INTERVAL = 15.0


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) of every panel target of the dashboard."""
    found: list[tuple[str, str]] = []

    def walk(panel: dict[str, Any]) -> None:
        for target in panel.get("targets", []):
            if target.get("expr"):
                found.append((panel.get("title") or "(untitled)", target["expr"]))
        for child in panel.get("panels", []):
            walk(child)

    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        walk(panel)
    return found


def _fill(expression: str, store: promql.Store) -> str:
    """Grafana's variables as its variable queries (label_values of rabbitmq_identity_info) fill them."""
    identity = promql.evaluate("rabbitmq_identity_info", store)
    assert isinstance(identity, dict) and identity, "no rabbitmq_identity_info"
    cluster = dict(next(iter(identity)))["rabbitmq_cluster"]
    return expression.replace("$rabbitmq_cluster", cluster).replace("$namespace", "")


def _check_every_query(store: promql.Store) -> None:
    queries = dashboard_queries()
    assert len(queries) == 41
    empty = []
    for title, expression in queries:
        value = promql.evaluate(_fill(expression, store), store)
        if not (isinstance(value, dict) and value):
            empty.append(title)
    assert not empty, f"panels without a series: {empty}"


TARGET = {"instance": "rabbitmq:15692", "job": "rabbitmq-server"}


def test_the_evaluator_finds_every_panel_in_rabbitmqs_own_scrapes() -> None:
    store = promql.Store()
    store.add(1000.0, (DATA / "metrics.txt").read_text(), TARGET)
    store.add(1000.0 + SCRAPE_INTERVAL, (DATA / "metrics-later.txt").read_text(), TARGET)
    _check_every_query(store)


def _more_traffic(port: int) -> None:
    conn = pika.BlockingConnection(
        pika.ConnectionParameters("127.0.0.1", port, credentials=pika.PlainCredentials("guest", "guest"))
    )
    try:
        ch: Any = conn.channel()
        ch.confirm_delivery()
        ch.queue_declare("prom.more", auto_delete=True)
        for _ in range(5):
            ch.basic_publish("", "prom.more", b"more")
        ch.basic_get("prom.more", auto_ack=True)
    finally:
        conn.close()


@pytest.fixture
def scrapes(node: Node) -> Iterator[promql.Store]:  # noqa: F811  (the fixture imported above)
    store = promql.Store()
    target = {"instance": f"127.0.0.1:{node.prometheus_port}", "job": "rabbitmq-server"}
    store.add(2000.0, node.scrape("/metrics"), target)
    _more_traffic(node.server.port)
    store.add(2000.0 + SCRAPE_INTERVAL, node.scrape("/metrics"), target)
    yield store


def test_every_panel_of_the_overview_dashboard_has_a_series(scrapes: promql.Store) -> None:
    _check_every_query(scrapes)
    # And a few of them say what the traffic did.
    received = promql.evaluate(
        "sum(rate(rabbitmq_global_messages_received_total[60s]) * on(instance) "
        'group_left(rabbitmq_cluster, rabbitmq_node) rabbitmq_identity_info{namespace=""}) by(rabbitmq_node)',
        scrapes,
    )
    assert received == {frozenset({("rabbitmq_node", "ottermq@localhost")}): 5 / SCRAPE_INTERVAL}
    connections = promql.evaluate("sum(rabbitmq_connections)", scrapes)
    assert connections == {frozenset(): 3.0}


def test_without_identity_info_the_dashboard_is_empty(node: Node) -> None:  # noqa: F811
    """What the issue saw before: every panel joins on rabbitmq_identity_info, so without it none shows."""
    store = promql.Store()
    target = {"instance": f"127.0.0.1:{node.prometheus_port}", "job": "rabbitmq-server"}
    text = "\n".join(line for line in node.scrape("/metrics").splitlines() if "identity_info" not in line)
    store.add(3000.0, text, target)
    store.add(3000.0 + SCRAPE_INTERVAL, text, target)
    for _, expression in dashboard_queries():
        filled = expression.replace("$rabbitmq_cluster", "ottermq@localhost").replace("$namespace", "")
        assert promql.evaluate(filled, store) == {}


def test_the_dashboard_is_rabbitmqs_3_10_8() -> None:
    document = json.loads(DASHBOARD.read_text())
    assert document["title"] == "RabbitMQ-Overview"
    assert (Path(DATA) / "README.md").read_text().count("v3.10.8") >= 1
