"""The access registry: users, vhosts and permissions, their events, replay and RabbitMQ's regex rules."""

from __future__ import annotations

import pytest

from ottermq.broker.access import AccessControl, AccessError, Permission, compile_permission, seed
from ottermq.broker.auth import verify_password
from ottermq.broker.broker import Broker, BrokerSettings
from ottermq.broker.events import (
    ACCESS_EVENTS,
    Event,
    PasswordChanged,
    PermissionsCleared,
    PermissionsSet,
    UserAdded,
    UserDeleted,
    UserTagsSet,
    VHostAdded,
    VHostDeleted,
)
from ottermq.broker.journal import MemoryJournal


class RecordingJournal(MemoryJournal):
    """A memory journal that keeps the events, to replay them."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[Event] = []

    def append(self, event: Event) -> int:
        self.events.append(event)
        return super().append(event)


def registry() -> AccessControl:
    access = AccessControl(RecordingJournal())
    access.add_vhost("/")
    return access


# -- RabbitMQ's regex semantics -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "name", "allowed"),
    [
        (".*", "anything", True),
        (".*", "", True),
        ("", "", True),  # "" means "^$": only the empty name
        ("", "q", False),
        ("^$", "q", False),
        ("q", "my-q-1", True),  # unanchored: a match anywhere, as re:run
        ("^q", "my-q", False),
        ("^q", "q1", True),
        ("q$", "q1", False),
        ("^amq\\.gen-", "amq.gen-abc", True),
        ("^(a|b)$", "b", True),
        ("^(a|b)$", "ab", False),
        ("^user-.*", "user-x", True),
        ("[", "x", None),  # invalid: refused when set
    ],
)
def test_regex_semantics(pattern: str, name: str, allowed: bool | None) -> None:
    if allowed is None:
        with pytest.raises(ValueError, match="is invalid"):
            compile_permission(pattern)
        return
    assert Permission(pattern, pattern, pattern).allows("read", name) is allowed


def test_each_access_has_its_own_regex() -> None:
    permission = Permission("^c", "^w", "^r")
    assert permission.allows("configure", "cq") and not permission.allows("configure", "wq")
    assert permission.allows("write", "wq") and not permission.allows("write", "rq")
    assert permission.allows("read", "rq") and not permission.allows("read", "cq")


# -- management calls -----------------------------------------------------------------------------------


def test_users() -> None:
    access = registry()
    # A password that base64 (the hash's alphabet) cannot contain: the check below cannot pass by chance.
    access.add_user("bob", "p#w!", ["monitoring", "monitoring", " "])
    user = access.user("bob")
    assert user is not None and user.tags == ("monitoring",)
    assert verify_password(user.password_hash, "p#w!") and "p#w!" not in user.password_hash
    access.set_user_tags("bob", ["administrator", "management"])
    access.change_password("bob", "new")
    user = access.user("bob")
    assert user is not None and user.tags == ("administrator", "management")
    assert verify_password(user.password_hash, "new")
    access.change_password("bob", None)
    assert access.users["bob"].password_hash == ""
    access.delete_user("bob")
    assert access.user("bob") is None


@pytest.mark.parametrize(
    ("call", "kind", "message"),
    [
        (lambda a: a.add_user("guest", "x"), "exists", 'User "guest" already exists'),
        (lambda a: a.delete_user("nobody"), "no_user", 'User "nobody" does not exist'),
        (lambda a: a.change_password("nobody", "x"), "no_user", 'User "nobody" does not exist'),
        (lambda a: a.set_user_tags("nobody", []), "no_user", 'User "nobody" does not exist'),
        (lambda a: a.set_permissions("nobody", "/", "", "", ""), "no_user", "User nobody does not exist"),
        (lambda a: a.set_permissions("guest", "v", "", "", ""), "no_vhost", "Virtual host v does not exist"),
        (lambda a: a.set_permissions("guest", "/", "(", "", ""), "invalid", "regular expression '(' is"),
        (lambda a: a.clear_permissions("guest", "v"), "no_vhost", "Virtual host v does not exist"),
        (lambda a: a.delete_vhost("v"), "no_vhost", "Virtual host 'v' does not exist"),
        (lambda a: a.add_vhost(""), "invalid", "vhost name must not be empty"),
        (lambda a: a.add_user("", "x"), "invalid", "user name must not be empty"),
        (lambda a: a.add_user("x", password_hash="md5"), "invalid", "password hash is not of the form"),
    ],
)
def test_errors(call: object, kind: str, message: str) -> None:
    access = registry()
    access.add_user("guest", "guest")
    with pytest.raises(AccessError) as caught:
        call(access)  # type: ignore[operator]
    assert caught.value.kind == kind
    assert str(caught.value).startswith(message)


def test_permissions() -> None:
    access = registry()
    access.add_user("bob", "pw")
    access.add_vhost("v")
    assert not access.can_open("bob", "v")
    access.set_permissions("bob", "v", "", "", "")
    assert access.can_open("bob", "v")  # empty permissions still open the vhost, as RabbitMQ
    assert not access.allowed("bob", "v", "read", "q")
    access.set_permissions("bob", "v", "^c", "^w", "^r")
    assert access.allowed("bob", "v", "read", "rq") and not access.allowed("bob", "/", "read", "rq")
    assert [(vhost, p.read) for vhost, p in access.user_permissions("bob")] == [("v", "^r")]
    assert [(user, p.write) for user, p in access.vhost_permissions("v")] == [("bob", "^w")]
    access.clear_permissions("bob", "v")
    access.clear_permissions("bob", "v")  # nothing to clear is fine
    assert not access.can_open("bob", "v")


def test_deleting_a_user_or_vhost_drops_its_permissions() -> None:
    access = registry()
    access.add_user("bob", "pw")
    access.add_vhost("v")
    access.set_permissions("bob", "v", ".*", ".*", ".*")
    access.set_permissions("bob", "/", ".*", ".*", ".*")
    access.delete_vhost("v")
    assert access.user_permissions("bob") and not access.can_open("bob", "v")
    access.add_vhost("v")
    assert not access.can_open("bob", "v")  # a new vhost of the same name starts without permissions
    access.delete_user("bob")
    access.add_user("bob", "pw")
    assert not access.can_open("bob", "/")


def test_every_change_is_an_event_and_bumps_the_generation() -> None:
    access = registry()
    journal = access.journal
    assert isinstance(journal, RecordingJournal)
    start = access.generation
    access.add_user("bob", "pw", ["t"])
    access.change_password("bob", "x")
    access.set_user_tags("bob", ["u"])
    access.add_vhost("v")
    access.add_vhost("v")  # exists: no event
    access.set_permissions("bob", "v", "a", "b", "c")
    access.clear_permissions("bob", "v")
    access.delete_vhost("v")
    access.delete_user("bob")
    kinds = [type(event) for event in journal.events]
    assert kinds == [
        VHostAdded,
        UserAdded,
        PasswordChanged,
        UserTagsSet,
        VHostAdded,
        PermissionsSet,
        PermissionsCleared,
        VHostDeleted,
        UserDeleted,
    ]
    assert access.generation == start + 8


def test_a_failed_journal_refuses_changes() -> None:
    access = registry()
    access.journal.failed = True  # type: ignore[misc]
    with pytest.raises(AccessError) as caught:
        access.add_user("bob", "pw")
    assert caught.value.kind == "unavailable"
    assert access.user("bob") is None


def test_replaying_the_journal_rebuilds_the_registry() -> None:
    access = registry()
    access.add_user("alice", "pw", ["management"])
    access.add_user("bob", "pw")
    access.add_vhost("v")
    access.set_permissions("alice", "v", "^a", ".*", "")
    access.set_permissions("bob", "v", ".*", ".*", ".*")
    access.delete_user("bob")
    access.change_password("alice", "new")
    journal = access.journal
    assert isinstance(journal, RecordingJournal)
    replayed = AccessControl(MemoryJournal())
    for event in journal.events:
        assert isinstance(event, ACCESS_EVENTS)
        replayed.apply(event)  # type: ignore[arg-type]
    assert replayed.users == access.users
    assert replayed.vhosts == access.vhosts
    assert {k: repr(p) for k, p in replayed.permissions.items()} == {
        k: repr(p) for k, p in access.permissions.items()
    }
    snapshot = AccessControl(MemoryJournal())
    for event in access.durable_events():
        snapshot.apply(event)
    assert snapshot.users == access.users
    assert list(snapshot.vhosts) == list(access.vhosts)
    assert snapshot.permissions.keys() == access.permissions.keys()


def test_seed_creates_only_what_is_absent() -> None:
    access = registry()
    access.add_user("svc", "old")
    created = seed(
        access,
        users=[{"name": "svc", "password": "new"}, {"name": "ops", "password": "pw", "tags": ["monitoring"]}],
        vhosts=[{"name": "app"}, {"name": "/"}],
        permissions=[{"user": "ops", "vhost": "app", "configure": "", "write": ".*", "read": ".*"}],
    )
    assert created == ["vhost app", "user ops", "permissions of ops on app"]
    assert verify_password(access.users["svc"].password_hash, "old")
    assert access.users["ops"].tags == ("monitoring",)
    assert access.allowed("ops", "app", "write", "x")


# -- the broker keeps vhosts and connections in step ------------------------------------------------------


def test_broker_defaults_are_rabbitmqs() -> None:
    broker = Broker()
    guest = broker.access.user("guest")
    assert guest is not None and guest.tags == ("administrator",)
    assert list(broker.vhosts) == ["/"]
    permission = broker.access.permission("guest", "/")
    assert permission is not None
    assert (permission.configure, permission.write, permission.read) == (".*", ".*", ".*")
    empty = Broker(defaults=False)
    assert not empty.vhosts and not empty.access.users


def test_broker_apply_rebuilds_vhosts_and_their_contents() -> None:
    journal = RecordingJournal()
    broker = Broker(BrokerSettings(), journal)
    vhost = broker.add_vhost("v")
    vhost.declare_queue("q", durable=True)
    broker.access.add_user("bob", "pw")
    broker.access.set_permissions("bob", "v", ".*", ".*", ".*")
    replayed = Broker(BrokerSettings(), MemoryJournal(), defaults=False)
    for event in journal.events:
        replayed.apply(event)
    assert list(replayed.vhosts) == ["/", "v"]
    assert "q" in replayed.vhosts["v"].queues
    assert replayed.access.can_open("bob", "v")
    rebuilt = Broker(BrokerSettings(), MemoryJournal(), defaults=False)
    for event in broker.durable_events():
        rebuilt.apply(event)
    assert "q" in rebuilt.vhosts["v"].queues and rebuilt.access.can_open("guest", "/")


def test_deleting_a_vhost_journals_its_entities_first() -> None:
    journal = RecordingJournal()
    broker = Broker(BrokerSettings(), journal)
    vhost = broker.add_vhost("v")
    vhost.declare_exchange("x", "fanout", durable=True)
    vhost.declare_queue("q", durable=True)
    vhost.bind_queue("q", "x")
    journal.events.clear()
    broker.delete_vhost("v")
    names = [type(event).__name__ for event in journal.events]
    assert names == ["QueueDeleted", "ExchangeDeleted", "VHostDeleted"]
    assert "v" not in broker.vhosts and "v" not in broker.access.vhosts
    with pytest.raises(AccessError):
        broker.delete_vhost("v")
