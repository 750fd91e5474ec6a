"""Durable changes go through the journal as events, and replaying them rebuilds the durable state."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from ottermq.amqp.errors import AMQPConnectionError
from ottermq.broker.events import (
    BindingAdded,
    BindingRemoved,
    Event,
    ExchangeDeclared,
    ExchangeDeleted,
    QueueDeclared,
    QueueDeleted,
    QueuePurged,
)
from ottermq.broker.journal import Journal, MemoryJournal
from ottermq.broker.vhost import VHost
from tests.unit.broker.domain_fakes import FakeConsumer, publish


class RecordingJournal:
    """Keeps every appended event, as a durable store would."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.durable_position = 0
        self.failed = False
        self.suspended = False
        self.last_loc = 0

    @property
    def next_position(self) -> int:
        return len(self.events) + 1

    def append(self, event: Event) -> int:
        self.events.append(event)
        self.durable_position = len(self.events)
        return len(self.events)

    def when_durable(
        self, position: int, callback: Callable[[], None], failed: Callable[[], None] | None = None
    ) -> None:
        callback()


def durable_state(vhost: VHost) -> dict[str, Any]:
    exchanges = {
        name: (x.type, x.auto_delete, x.internal, x.arguments)
        for name, x in vhost.exchanges.items()
        if x.durable
    }
    queues = {name: (q.auto_delete, q.arguments) for name, q in vhost.queues.items() if q.durable}
    bindings = sorted(
        (b.source, b.destination, b.destination_kind, b.routing_key, repr(sorted(b.arguments.items())))
        for b in vhost.bindings()
        if b.source in exchanges
        and (queues if b.destination_kind == "queue" else exchanges).get(b.destination)
    )
    return {"exchanges": exchanges, "queues": queues, "bindings": bindings}


def test_memory_journal_counts_and_calls_back_at_once() -> None:
    journal: Journal = MemoryJournal()
    event = QueueDeleted("/", "q")
    assert journal.append(event) == 1
    assert journal.append(event) == 2
    assert journal.durable_position == 2
    called: list[int] = []
    journal.when_durable(2, lambda: called.append(2))
    assert called == [2]
    assert not journal.failed


def test_events_are_frozen() -> None:
    event = QueueDeleted("/", "q")
    with pytest.raises(AttributeError):
        event.name = "other"  # type: ignore[misc]


def test_only_durable_changes_are_journaled() -> None:
    journal = RecordingJournal()
    vhost = VHost("/", journal)
    vhost.declare_exchange("tx", "direct")
    vhost.declare_queue("tq")
    vhost.declare_queue("eq", exclusive=True, durable=True, owner=object())
    vhost.bind_queue("tq", "amq.direct", "k")
    vhost.declare_queue("dq", durable=True)
    vhost.bind_queue("dq", "tx", "k")  # transient source: a transient binding
    assert journal.events == [QueueDeclared("/", "dq", True, False, False, {})]


def test_live_path_and_replay_agree() -> None:
    journal = RecordingJournal()
    live = VHost("/", journal)
    live.declare_exchange("logs", "topic", durable=True, arguments={"alternate-exchange": "ae"})
    live.declare_exchange("ae", "fanout", durable=True)
    live.declare_exchange("auto", "fanout", durable=True, auto_delete=True)
    live.declare_exchange("gone", "direct", durable=True)
    live.declare_exchange("transient", "fanout")
    live.declare_queue("q1", durable=True, arguments={"x-max-length": 10})
    live.declare_queue("q2", durable=True, auto_delete=True)
    live.declare_queue("q3", durable=True)
    live.declare_queue("tq")
    live.bind_queue("q1", "logs", "a.#")
    live.bind_queue("q1", "amq.headers", "", {"x-match": "any", "h": 1})
    live.bind_queue("q2", "logs", "*.b")
    live.bind_queue("q3", "auto")
    live.bind_queue("tq", "logs", "#")
    live.bind_exchange("auto", "logs", "x.*")
    live.bind_exchange("transient", "logs", "y")
    live.bind_queue("q3", "gone")
    publish(live, "logs", "a.b")
    live.purge_queue("q1")
    consumer = FakeConsumer("c")
    live.queues["q2"].add_consumer(consumer)
    live.queues["q2"].remove_consumer(consumer)  # auto-delete q2
    live.unbind_queue("q3", "auto")  # auto-delete "auto" (and its binding from logs)
    live.delete_exchange("gone")
    live.unbind_queue("q1", "amq.headers", "", {"h": 1, "x-match": "any"})
    assert "q2" not in live.queues and "auto" not in live.exchanges

    kinds = [type(event) for event in journal.events]
    assert QueuePurged in kinds and QueueDeleted in kinds and ExchangeDeleted in kinds
    assert BindingAdded in kinds and BindingRemoved in kinds and ExchangeDeclared in kinds

    replayed = VHost("/")
    for event in journal.events:
        replayed.apply(event)
    assert durable_state(replayed) == durable_state(live)
    # the replayed model routes like the live one
    assert publish(replayed, "logs", "a.c") == ["q1"]
    assert publish(replayed, "logs", "zzz") == []  # ae has no bindings

    # a snapshot of the durable state, replayed into an empty vhost, gives the same state again
    from_snapshot = VHost("/")
    for event in live.durable_events():
        from_snapshot.apply(event)
    assert durable_state(from_snapshot) == durable_state(live)
    assert durable_state(from_snapshot)["bindings"]  # not trivially empty


def test_a_failed_journal_refuses_durable_changes_only() -> None:
    journal = RecordingJournal()
    vhost = VHost("/", journal)
    journal.failed = True
    with pytest.raises(AMQPConnectionError) as caught:
        vhost.declare_queue("dq", durable=True)
    assert caught.value.reply_code == 541
    assert "dq" not in vhost.queues
    vhost.declare_queue("tq")
    assert journal.events == []
