"""The Prometheus text rendering, and metrics collected from a broker object (no sockets)."""

from __future__ import annotations

from ottermq.broker.broker import Broker
from ottermq.broker.message import Message
from ottermq.http.metrics import Family, collect, render, resident_memory
from ottermq.http.prometheus import scrape_text


def test_render_writes_help_type_and_escaped_samples() -> None:
    text = render(
        [
            Family("a_total", "Things\nseen", "counter").add(3),
            Family("b", "Per queue").add(1.5, vhost="/", queue='q"1\\').add(2, vhost="v", queue="x\ny"),
        ]
    )
    assert text == (
        "# HELP a_total Things\\nseen\n"
        "# TYPE a_total counter\n"
        "a_total 3\n"
        "# HELP b Per queue\n"
        "# TYPE b gauge\n"
        'b{vhost="/",queue="q\\"1\\\\"} 1.5\n'
        'b{vhost="v",queue="x\\ny"} 2\n'
    )


def test_booleans_render_as_zero_and_one() -> None:
    lines = render([Family("x", "h").add(True), Family("y", "h").add(False)]).splitlines()
    assert lines[2::3] == ["x 1", "y 0"]


def test_scrapes_read_queue_counts_and_alarms() -> None:
    broker = Broker()
    broker.create_defaults()
    vhost = broker.vhosts["/"]
    queue = vhost.declare_queue("q1")
    for _ in range(2):
        vhost.publish_now(Message("", "q1", b"\x00\x00", b"x"), [queue])
    broker.set_alarm("disk", True)
    per_object = scrape_text("per-object", broker, None)
    assert 'rabbitmq_queue_messages_ready{vhost="/",queue="q1"} 2\n' in per_object
    assert 'rabbitmq_queue_messages{vhost="/",queue="q1"} 2\n' in per_object
    text = scrape_text("", broker, None)
    assert "rabbitmq_queue_messages_ready 2\n" in text
    assert "rabbitmq_queues 1\n" in text
    assert "rabbitmq_queues_declared_total 1\nrabbitmq_queues_created_total 1\n" in text.replace(
        "# HELP rabbitmq_queues_created_total Total number of queues created\n"
        "# TYPE rabbitmq_queues_created_total counter\n",
        "",
    )
    assert "rabbitmq_alarms_free_disk_space_watermark 1\n" in text
    assert "rabbitmq_alarms_memory_used_watermark 0\n" in text
    assert "ottermq_alarms_journal 0\n" in text
    assert "ottermq_log_durable_lsn" not in render(collect(broker))  # no durable store


def test_resident_memory_is_read_from_proc() -> None:
    assert resident_memory() > 1_000_000
