"""Definitions import and export as pure broker operations (an in-memory broker and journal), and the
password hash formats they carry.

Strategy: the recorded RabbitMQ 3.10.8 export (tests/data) is the main input; the journal is read to see
that an import is made of ordinary events (one apply path) and that a refused or repeated import
journals nothing. A broker rebuilt from the journal's events equals the live one.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from ottermq.broker.auth import (
    Authenticator,
    export_hash,
    hash_password,
    import_hash,
    new_password_hash,
    verify_password,
)
from ottermq.broker.broker import Broker
from ottermq.broker.checks import CheckScheduler
from ottermq.broker.definitions import DefinitionsError, export_definitions, import_definitions, plan
from ottermq.broker.events import PasswordChanged, PolicySet, QueueDeclared, UserAdded
from ottermq.broker.journal import MemoryJournal

DATA = Path(__file__).resolve().parents[2] / "data"
RABBITMQ_EXPORT = DATA / "rabbitmq-3.10-definitions.json"
# GET /api/definitions/shop of the same RabbitMQ node (vhost keys only on parameters and policies).
RABBITMQ_VHOST_EXPORT = DATA / "rabbitmq-3.10-definitions-shop.json"


class RecordingJournal(MemoryJournal):
    """A memory journal that keeps what was appended."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[Any] = []

    def append(self, event: Any) -> int:
        self.events.append(event)
        return super().append(event)


def recorded() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(RABBITMQ_EXPORT.read_text())
    return document


def broker() -> tuple[Broker, RecordingJournal]:
    journal = RecordingJournal()
    return Broker(journal=journal), journal


def salted(digest: str, password: str, salt: bytes = b"\x01\x02\x03\x04") -> str:
    return base64.b64encode(salt + hashlib.new(digest, salt + password.encode()).digest()).decode()


# -- hashes ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("digest", ["sha256", "sha512", "md5"])
def test_rabbitmq_hashes_verify(digest: str) -> None:
    stored = import_hash(f"rabbit_password_hashing_{digest}", salted(digest, "pässword"))
    assert verify_password(stored, "pässword")
    assert not verify_password(stored, "password")
    assert export_hash(stored) == (f"rabbit_password_hashing_{digest}", salted(digest, "pässword"))


def test_a_hash_recorded_from_rabbitmq_verifies() -> None:
    alice = next(row for row in recorded()["users"] if row["name"] == "alice")
    stored = import_hash(alice["hashing_algorithm"], alice["password_hash"])
    assert verify_password(stored, "alice-secret")


def test_new_passwords_get_rabbitmqs_sha256_and_old_pbkdf2_hashes_still_verify() -> None:
    stored = new_password_hash("pw")
    algorithm, encoded = export_hash(stored)
    raw = base64.b64decode(encoded)
    assert algorithm == "rabbit_password_hashing_sha256"
    assert raw[4:] == hashlib.sha256(raw[:4] + b"pw").digest()
    legacy = hash_password("old", 1_000)
    assert verify_password(legacy, "old")
    assert import_hash(*export_hash(legacy)) == legacy  # an export of it imports back
    assert import_hash("ottermq_pbkdf2_sha256", legacy) == legacy  # as earlier exports wrote it


def test_no_algorithm_is_sha256_and_unknown_ones_are_refused() -> None:
    assert verify_password(import_hash(None, salted("sha256", "x")), "x")
    assert import_hash("rabbit_password_hashing_sha256", "") == ""
    for algorithm, value in (("bcrypt", "AAAA"), ("rabbit_password_hashing_sha256", "!!")):
        with pytest.raises(ValueError):
            import_hash(algorithm, value)


def test_an_empty_password_never_matches() -> None:
    assert not verify_password(import_hash(None, salted("sha256", "")), "")


class InlineRunner:
    """Runs each check at once (no threads); timers are not needed here."""

    def run(self, work: Any, finished: Any) -> None:
        finished(work())

    def call_later(self, delay: float, callback: Any) -> Any:
        raise AssertionError("no timer expected")


def test_a_cheap_failed_check_costs_the_budget_of_a_pbkdf2_one() -> None:
    checks = CheckScheduler(clock=lambda: 100.0, min_failure_charge=0.03)
    checks.runner = InlineRunner()
    answers: list[bool | None] = []
    checks.submit("1.2.3.4", "u", b"k", lambda: False, answers.append)
    assert answers == [False]
    assert checks.budget("1.2.3.4") == pytest.approx(checks.failure_burst - 0.03)
    assert Authenticator(Broker().access).checks.min_failure_charge == pytest.approx(0.03)


# -- import ---------------------------------------------------------------------------------------------


def test_the_recorded_export_imports_through_events() -> None:
    model, journal = broker()
    before = len(journal.events)
    steps = import_definitions(model, recorded())
    events = journal.events[before:]
    assert len(events) == len(steps.changes)
    assert {type(e) for e in events} >= {UserAdded, QueueDeclared, PolicySet}
    assert model.auth.check_password("bob", "bob-pässword")
    assert model.vhost_limits["shop"] == {"max-connections": 100, "max-queues": 50}
    assert set(model.vhosts["shop"].policies.operator) == {"cap"}
    # The recorded topic permission is kept now (it was skipped before OtterMQ had them).
    assert model.access.topic_rows(user="bob") == [
        {"user": "bob", "vhost": "shop", "exchange": "events", "write": "^orders\\.", "read": ".*"}
    ]
    # Replaying the journal gives the same broker (the one apply path).
    replayed = Broker(defaults=False)
    for event in journal.events:
        replayed.apply(event)
    assert export_definitions(replayed) == export_definitions(model)


def test_importing_the_same_document_again_journals_nothing() -> None:
    model, journal = broker()
    import_definitions(model, recorded())
    count = len(journal.events)
    assert plan(model, recorded()).changes == []
    import_definitions(model, recorded())
    assert len(journal.events) == count
    # A plain password that matches the stored hash changes nothing either.
    document = {"users": [{"name": "alice", "password": "alice-secret", "tags": ["administrator"]}]}
    assert plan(model, document).changes == []
    document["users"][0]["password"] = "other"
    assert plan(model, document).changes == ["password of alice"]
    import_definitions(model, document)
    assert isinstance(journal.events[-1], PasswordChanged)


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        ([], "failed_to_parse_json"),
        ({"users": "x"}, "users must be a list of objects"),
        ({"users": [1]}, "users must be a list of objects"),
        ({"users": [{"name": ""}]}, "user name must not be empty"),
        ({"vhosts": [{"name": "a\nb"}]}, "control characters"),
        ({"queues": [{"name": "q", "vhost": "/", "durable": "maybe"}]}, "durable must be true or false"),
        ({"queues": [{"name": "q", "vhost": "/", "arguments": []}]}, "arguments must be an object"),
        ({"queues": [{"name": "q" * 256, "vhost": "/"}]}, "longer than 255 bytes"),
        (
            {"policies": [{"vhost": "/", "pattern": "x", "definition": {"max-length": 1}}]},
            "has undefined name",
        ),
        (
            {
                "policies": [
                    {"vhost": "/", "name": "p", "pattern": "x", "definition": {"consumer-timeout": 1}}
                ]
            },
            '&lt;&lt;"consumer-timeout"&gt;&gt;',
        ),
        (
            {
                "parameters": [
                    {
                        "vhost": "/",
                        "component": "operator_policy",
                        "name": "o",
                        "value": {"pattern": "x", "definition": {"alternate-exchange": "y"}},
                    }
                ]
            },
            "are not recognised policy settings\n (//operator_policy/o)",
        ),
        (
            {
                "bindings": [
                    {
                        "source": "amq.headers",
                        "vhost": "/",
                        "destination": "amq.direct",
                        "destination_type": "exchange",
                        "arguments": {"x-match": "some"},
                    }
                ]
            },
            "x-match",
        ),
        (
            {
                "bindings": [
                    {"source": "amq.direct", "vhost": "/", "destination": "q", "destination_type": "stream"}
                ]
            },
            "destination_type must be",
        ),
    ],
)
def test_a_bad_document_changes_nothing(document: Any, reason: str) -> None:
    model, journal = broker()
    count = len(journal.events)
    with pytest.raises(DefinitionsError) as caught:
        import_definitions(
            model,
            {"users": [{"name": "early", "password": "pw"}], "vhosts": [{"name": "v"}]} | document
            if isinstance(document, dict)
            else document,
        )
    assert reason in caught.value.reason
    assert len(journal.events) == count
    assert model.access.user("early") is None and "v" not in model.vhosts


def test_queue_limit_counts_the_new_queues_and_the_limits_the_document_sets() -> None:
    model, _ = broker()
    document = {
        "parameters": [
            {"vhost": "/", "component": "vhost-limits", "name": "limits", "value": {"max-queues": 1}}
        ],
        "queues": [{"name": "a", "vhost": "/"}, {"name": "b", "vhost": "/"}],
    }
    with pytest.raises(DefinitionsError) as caught:
        import_definitions(model, document)
    assert "queue limit (1)" in caught.value.reason
    assert "/" not in model.vhost_limits


def test_a_vhost_scoped_import_reads_only_its_categories_into_that_vhost() -> None:
    model, _ = broker()
    model.add_vhost("elsewhere")
    document = recorded()
    steps = import_definitions(model, document, vhost="elsewhere")
    assert model.access.user("alice") is None and "shop" not in model.vhosts
    assert set(model.vhosts["elsewhere"].queues) == {"orders.new", "orders.all", "lost", "plain"}
    assert steps.changes
    exported = export_definitions(model, "elsewhere")
    assert all(
        "vhost" not in row for category in ("queues", "exchanges", "bindings") for row in exported[category]
    )
    with pytest.raises(DefinitionsError):
        import_definitions(model, {}, vhost="nosuch")


def test_reserved_names_and_dangling_bindings_are_skipped_as_rabbitmq_skips_them() -> None:
    model, journal = broker()
    count = len(journal.events)
    document = {
        "queues": [{"name": "amq.q", "vhost": "/"}],
        "exchanges": [
            {"name": "amq.x", "vhost": "/", "type": "direct"},
            {"name": "", "vhost": "/", "type": "direct"},
        ],
        "bindings": [
            {"source": "amq.direct", "vhost": "/", "destination": "missing", "destination_type": "queue"},
            {"source": "", "vhost": "/", "destination": "missing", "destination_type": "queue"},
        ],
    }
    steps = import_definitions(model, document)
    assert steps.changes == [] and len(steps.skipped) == 5
    assert len(journal.events) == count


def test_an_existing_queue_is_kept_as_declared() -> None:
    model, _ = broker()
    model.vhosts["/"].declare_queue("kept", durable=True, arguments={"x-max-length": 1})
    document = {"queues": [{"name": "kept", "vhost": "/", "durable": False, "arguments": {}}]}
    assert plan(model, document).changes == []
    assert model.vhosts["/"].queues["kept"].arguments == {"x-max-length": 1}


def test_export_has_operator_policies_and_limits_as_rabbitmqs_parameters() -> None:
    model, _ = broker()
    import_definitions(model, recorded())
    exported = export_definitions(model)
    key = lambda row: json.dumps(row, sort_keys=True)  # noqa: E731
    assert sorted(map(key, exported["parameters"])) == sorted(map(key, recorded()["parameters"]))
    assert exported["vhosts"] == [{"name": "/"}, {"name": "shop"}]


def test_the_vhost_export_has_rabbitmqs_shape() -> None:
    model, _ = broker()
    import_definitions(model, recorded())
    exported = export_definitions(model, "shop")
    theirs = json.loads(RABBITMQ_VHOST_EXPORT.read_text())
    assert list(exported) == list(theirs)
    for category in ("parameters", "policies", "queues", "exchanges", "bindings"):
        key = lambda row: json.dumps(row, sort_keys=True)  # noqa: E731
        assert sorted(map(key, exported[category])) == sorted(map(key, theirs[category])), category


def test_a_binding_to_an_exclusive_queue_is_skipped() -> None:
    model, _ = broker()
    owner = object()
    model.vhosts["/"].declare_queue("mine", exclusive=True, owner=owner)
    document = {
        "bindings": [
            {"source": "amq.direct", "vhost": "/", "destination": "mine", "destination_type": "queue"}
        ]
    }
    steps = import_definitions(model, document)
    assert steps.changes == [] and "exclusive" in steps.skipped[0]
