"""Per-vhost limits: validation as rabbitmqctl's, max-queues at queue.declare, and durability (the
journaled VHostLimitsSet replays and survives a snapshot through Broker.durable_events)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ottermq.amqp.constants import PRECONDITION_FAILED
from ottermq.amqp.errors import ChannelError
from ottermq.broker.access import AccessError
from ottermq.broker.broker import Broker, validate_vhost_limits
from ottermq.broker.events import Event, VHostLimitsSet
from ottermq.broker.journal import MemoryJournal
from ottermq.config import ConfigError, load_settings
from ottermq.store import codec


class RecordingJournal(MemoryJournal):
    """A memory journal that keeps the events, to replay them."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[Event] = []

    def append(self, event: Event) -> int:
        self.events.append(event)
        return super().append(event)


def rebuilt(events: list[Event]) -> Broker:
    broker = Broker(defaults=False)
    for event in events:
        broker.apply(event)
    return broker


@pytest.mark.parametrize(
    ("definition", "error"),
    [
        ({"max-foo": 1}, "Validation failed: unrecognised terms max-foo in limits"),
        ({"max-queues": "a"}, 'Validation failed: max-queues should be an integer, actually was "a"'),
        ({"max-queues": 1.5}, "Validation failed: max-queues should be an integer, actually was 1.5"),
        ({"max-connections": True}, "max-connections should be an integer, actually was true"),
        ({"max-queues": 2**63}, "max-queues should be an integer"),
        ([1], "Validation failed: limits must be a JSON object, actually was [1]"),
    ],
)
def test_bad_definitions_are_refused_with_a_readable_line(definition: Any, error: str) -> None:
    with pytest.raises(AccessError) as caught:
        validate_vhost_limits(definition)
    assert caught.value.kind == "invalid"
    assert error in str(caught.value)
    broker = Broker()
    with pytest.raises(AccessError):
        broker.set_vhost_limits("/", definition)
    assert broker.vhost_limits == {}


def test_set_replaces_the_whole_definition_and_clear_removes_it() -> None:
    broker = Broker()
    broker.set_vhost_limits("/", {"max-connections": 10, "max-queues": 5})
    assert broker.vhost_limits == {"/": {"max-connections": 10, "max-queues": 5}}
    assert broker.vhosts["/"].max_queues == 5
    broker.set_vhost_limits("/", {"max-queues": -1})  # kept as set: negative means no limit
    assert broker.vhost_limits == {"/": {"max-queues": -1}}
    assert broker.vhosts["/"].max_queues == -1
    broker.clear_vhost_limits("/")
    assert broker.vhost_limits == {}
    with pytest.raises(AccessError) as caught:
        broker.set_vhost_limits("nowhere", {"max-queues": 1})
    assert (caught.value.kind, str(caught.value)) == ("no_vhost", "Virtual host 'nowhere' does not exist")
    with pytest.raises(AccessError) as caught:
        broker.clear_vhost_limits("nowhere")
    assert caught.value.kind == "no_vhost"


def test_max_queues_refuses_new_queues_only() -> None:
    broker = Broker()
    vhost = broker.vhosts["/"]
    vhost.declare_queue("q1")
    broker.set_vhost_limits("/", {"max-queues": 1})
    vhost.declare_queue("q1")  # a redeclare creates nothing
    vhost.declare_queue("q1", passive=True)
    for name in ("q2", ""):
        with pytest.raises(ChannelError) as caught:
            vhost.declare_queue(name, exclusive=True, owner=object())
        assert caught.value.reply_code == PRECONDITION_FAILED
        assert caught.value.reply_text.startswith("PRECONDITION_FAILED - cannot declare queue '")
        assert caught.value.reply_text.endswith("': queue limit in vhost '/' (1) is reached")
    assert list(vhost.queues) == ["q1"]
    vhost.delete_queue("q1")
    vhost.declare_queue("q2")
    broker.set_vhost_limit("/", "max-queues", 0)
    with pytest.raises(ChannelError) as caught:
        vhost.declare_queue("q3")
    assert caught.value.reply_text == (
        "PRECONDITION_FAILED - cannot declare queue 'q3': queue limit in vhost '/' (0) is reached"
    )
    broker.set_vhost_limit("/", "max-queues", None)
    vhost.declare_queue("q3")


def test_limits_replay_from_the_journal_and_from_a_snapshot() -> None:
    journal = RecordingJournal()
    broker = Broker(journal=journal)
    broker.add_vhost("a")
    broker.add_vhost("b")
    broker.add_vhost("gone")
    broker.set_vhost_limits("a", {"max-connections": 3, "max-queues": 2})
    broker.set_vhost_limits("b", {"max-queues": 9})
    broker.set_vhost_limits("b", {"max-connections": 0})
    broker.set_vhost_limits("gone", {"max-queues": 1})
    broker.delete_vhost("gone")
    broker.set_vhost_limits("/", {"max-queues": 4})
    broker.clear_vhost_limits("/")
    expected = {"a": {"max-connections": 3, "max-queues": 2}, "b": {"max-connections": 0}}
    assert broker.vhost_limits == expected
    assert VHostLimitsSet("a", {"max-connections": 3, "max-queues": 2}) in journal.events
    # Through the store's record encoding, as the log and the snapshot hold them.
    decoded = [codec.decode(*codec.encode(event)) for event in journal.events]
    for events in (decoded, broker.durable_events()):
        replayed = rebuilt(events)
        assert replayed.vhost_limits == expected
        assert {name: v.max_queues for name, v in replayed.vhosts.items()} == {"/": -1, "a": 2, "b": -1}
    broker.add_vhost("gone")
    assert "gone" not in broker.vhost_limits  # a vhost created again starts without limits


def test_a_failed_journal_refuses_the_change() -> None:
    broker = Broker()
    broker.journal.failed = True  # type: ignore[misc]
    with pytest.raises(AccessError) as caught:
        broker.set_vhost_limits("/", {"max-queues": 1})
    assert caught.value.kind == "unavailable"
    assert broker.vhost_limits == {}


def test_config_file_form_is_checked(tmp_path: Path) -> None:
    config = tmp_path / "ottermq.toml"
    config.write_text(
        '[[vhost_limits]]\nvhost = "v"\nmax_queues = 3\n\n[[vhost_limits]]\nmax_connections = -1\n'
    )
    settings = load_settings(config_file=config, environ={})
    assert settings.vhost_limits == ({"vhost": "v", "max_queues": 3}, {"max_connections": -1})
    assert load_settings(environ={"OTTERMQ_VHOST_LIMITS": '[{"max_queues": 1}]'}).vhost_limits == (
        {"max_queues": 1},
    )
    for body, error in [
        ('[[vhost_limits]]\nmax_queues = "3"\n', "'max_queues' must be an integer"),
        ("[[vhost_limits]]\nmax_queue = 3\n", "unknown key 'max_queue'"),
    ]:
        config.write_text(body)
        with pytest.raises(ConfigError) as caught:
            load_settings(config_file=config, environ={})
        assert error in str(caught.value)
