"""User limits and topic permissions in the broker: validation, the registry's events (live, replayed,
and rebuilt from `durable_events` as a snapshot does), the guard's routing-key checks with variable
expansion, and the definitions round trip."""

from __future__ import annotations

from typing import Any

import pytest

from ottermq.amqp.errors import ChannelError
from ottermq.broker.access import AccessError
from ottermq.broker.broker import Broker
from ottermq.broker.definitions import export_definitions, import_definitions, plan
from ottermq.broker.events import TopicPermissionCleared, TopicPermissionSet, UserLimitsSet
from ottermq.broker.exchange import Exchange
from ottermq.broker.permissions import Guard
from ottermq.broker.topic_permissions import expand
from ottermq.broker.user_limits import validate_user_limits
from ottermq.store.view import durable_view
from tests.unit.broker.test_access import RecordingJournal


def broker() -> tuple[Broker, RecordingJournal]:
    journal = RecordingJournal()
    model = Broker(journal=journal)
    model.access.add_user("bob", "pw")
    model.add_vhost("v2")
    return model, journal


def replayed(journal: RecordingJournal) -> Broker:
    model = Broker(defaults=False)
    for event in journal.events:
        model.apply(event)
    return model


def rebuilt(model: Broker) -> Broker:
    copy = Broker(defaults=False)
    for event in model.durable_events():
        copy.apply(event)
    return copy


# -- user limits ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ({"max-connections": "x"}, 'max-connections should be an integer, actually was "x"'),
        ({"max-channels": 1.5}, "max-channels should be an integer, actually was 1.5"),
        ({"max-channels": True}, "max-channels should be an integer, actually was true"),
        ({"max-queues": 1}, "Unrecognised terms max-queues in user-limits"),
        ([1], "Unrecognised terms [1] in user-limits"),
    ],
)
def test_bad_user_limits(value: Any, words: str) -> None:
    with pytest.raises(ValueError, match=words.replace("[", r"\[").replace("]", r"\]")):
        validate_user_limits(value)


def test_user_limits_merge_clear_and_leave_with_the_user() -> None:
    model, journal = broker()
    access = model.access
    access.set_user_limits("bob", {"max-connections": 3})
    access.set_user_limits("bob", {"max-channels": 4, "max-connections": 5})
    assert access.limits_of("bob") == {"max-connections": 5, "max-channels": 4}
    count = len(journal.events)
    access.set_user_limits("bob", {"max-channels": 4})  # nothing changes: nothing journaled
    access.clear_user_limits("bob", "max-queues")
    assert len(journal.events) == count
    access.clear_user_limits("bob", "max-connections")
    assert journal.events[-1] == UserLimitsSet("bob", {"max-channels": 4})
    assert durable_view(replayed(journal)) == durable_view(model) == durable_view(rebuilt(model))
    access.clear_user_limits("bob", "all")
    assert access.user_limits == {}
    access.set_user_limits("bob", {"max-channels": 1})
    access.delete_user("bob")
    access.add_user("bob", "pw")
    assert access.limits_of("bob") == {}
    with pytest.raises(AccessError) as caught:
        access.set_user_limits("nobody", {"max-channels": 1})
    assert caught.value.kind == "no_user"
    with pytest.raises(AccessError) as caught:
        access.set_user_limits("bob", {"max-channels": "x"})
    assert caught.value.kind == "invalid"
    assert durable_view(replayed(journal)) == durable_view(model)


# -- topic permissions ----------------------------------------------------------------------------------


def test_topic_permissions_events_replay_and_snapshot() -> None:
    model, journal = broker()
    access = model.access
    access.set_topic_permissions("bob", "/", "amq.topic", "^a", "^b")
    access.set_topic_permissions("bob", "/", "other", "x", "y")
    access.set_topic_permissions("bob", "v2", "amq.topic", "", ".*")
    access.clear_topic_permissions("bob", "/", "other")
    assert journal.events[-1] == TopicPermissionCleared("bob", "/", "other")
    count = len(journal.events)
    access.clear_topic_permissions("bob", "/", "missing")
    assert len(journal.events) == count
    assert access.topic_rows(user="bob") == [
        {"user": "bob", "vhost": "/", "exchange": "amq.topic", "write": "^a", "read": "^b"},
        {"user": "bob", "vhost": "v2", "exchange": "amq.topic", "write": "", "read": ".*"},
    ]
    assert durable_view(replayed(journal)) == durable_view(model) == durable_view(rebuilt(model))
    model.delete_vhost("v2")
    assert access.topic_rows(vhost="v2") == []
    access.delete_user("bob")
    assert access.topic_permissions == {}
    assert durable_view(replayed(journal)) == durable_view(model)


def test_topic_permission_refusals() -> None:
    model, _ = broker()
    access = model.access
    for args, kind in (
        (("nobody", "/", "x", "a", "b"), "no_user"),
        (("bob", "nope", "x", "a", "b"), "no_vhost"),
        (("bob", "/", "x", "(", "b"), "rejected"),
    ):
        with pytest.raises(AccessError) as caught:
            access.set_topic_permissions(*args)
        assert caught.value.kind == kind
    # An event for a user or vhost that is gone (a log never has one) changes nothing.
    access.apply(TopicPermissionSet("nobody", "/", "x", "a", "b"))
    assert access.topic_permissions == {}


def test_expansion_is_a_plain_replacement() -> None:
    assert expand("^{username}\\.{vhost}\\.", "bob", "/") == "^bob\\./\\."
    assert expand("", "bob", "/") == "^$"
    assert expand("{client_id}", "bob", "/") == "{client_id}"


def guard_for(model: Broker, user: str = "bob", vhost: str = "/") -> Guard:
    model.access.set_permissions(user, vhost, ".*", ".*", ".*")
    return Guard(model.access, user, vhost)


def test_guard_checks_topic_exchanges_only() -> None:
    model, _ = broker()
    guard = guard_for(model)
    topic = model.vhosts["/"].exchanges["amq.topic"]
    direct = model.vhosts["/"].exchanges["amq.direct"]
    guard.check_publish("amq.topic")
    assert "amq.topic" in guard.writable  # no topic permission: cached, never asked again
    model.access.set_topic_permissions("bob", "/", "amq.topic", "^{username}\\.", "^{vhost}$")
    model.access.set_topic_permissions("bob", "/", "amq.direct", "^a", "^a")
    guard.reset()  # as the broker does on every access change
    guard.check_publish("amq.topic")
    assert "amq.topic" not in guard.writable  # each publish there has its key checked
    guard.check_topic("write", topic, "bob.x")
    with pytest.raises(ChannelError) as caught:
        guard.check_topic("write", topic, "alice.x")
    assert caught.value.reply_code == 403
    assert caught.value.reply_text == (
        "ACCESS_REFUSED - access to topic 'alice.x' in exchange 'amq.topic' in vhost '/' "
        "refused for user 'bob'"
    )
    guard.check_topic("read", topic, "/")
    with pytest.raises(ChannelError):
        guard.check_topic("read", topic, "bob.x")
    guard.check_topic("write", direct, "zzz")  # a direct exchange: not checked
    exchanges: dict[str, Exchange] = model.vhosts["/"].exchanges
    guard.check_binding_topic(exchanges, "missing", "zzz")  # a missing source: the bind's own 404
    with pytest.raises(ChannelError):
        guard.check_binding_topic(exchanges, "amq.topic", "zzz")


def test_a_user_name_with_regex_syntax_cannot_break_the_check() -> None:
    model, _ = broker()
    model.access.add_user("a(b", "pw")
    guard = guard_for(model, "a(b")
    model.access.set_topic_permissions("a(b", "/", "amq.topic", "^{username}", ".*")
    with pytest.raises(ChannelError):
        guard.check_topic("write", model.vhosts["/"].exchanges["amq.topic"], "a(b")


# -- definitions ----------------------------------------------------------------------------------------


def test_definitions_round_trip() -> None:
    model, _ = broker()
    model.access.set_user_limits("bob", {"max-connections": 2, "max-channels": -1})
    model.access.set_topic_permissions("bob", "v2", "amq.topic", "^{username}", "")
    exported = export_definitions(model)
    (bob,) = [user for user in exported["users"] if user["name"] == "bob"]
    assert bob["limits"] == {"max-connections": 2, "max-channels": -1}
    assert exported["topic_permissions"] == [
        {"user": "bob", "vhost": "v2", "exchange": "amq.topic", "write": "^{username}", "read": ""}
    ]
    fresh = Broker(defaults=False)
    import_definitions(fresh, exported)
    assert export_definitions(fresh) == exported
    assert plan(fresh, exported).changes == []  # a second import changes nothing
    # An import merges limits ({} clears nothing) and refuses bad ones before changing anything.
    bob["limits"] = {}
    assert plan(fresh, {"users": [bob]}).changes == []
    bob["limits"] = {"max-channels": "x"}
    with pytest.raises(Exception, match="max-channels should be an integer"):
        plan(fresh, {"users": [bob]})
    bad = {"topic_permissions": [{"user": "bob", "vhost": "v2", "exchange": "x", "write": "(", "read": ""}]}
    with pytest.raises(Exception, match="regular expression"):
        plan(fresh, bad)
