"""Policies in the broker model: validation texts, matching, merging, and what applying one changes."""

from __future__ import annotations

from typing import Any

import pytest

from ottermq.broker.broker import Broker
from ottermq.broker.events import PolicyCleared, PolicySet
from ottermq.broker.message import Message
from ottermq.broker.policies import clear_policy, effective_definition, policy_fields, set_policy
from ottermq.broker.policy_rules import PolicyError, check_policy, erl
from ottermq.broker.vhost import VHost
from ottermq.store.codec import decode, encode

PROPS = b"\x00\x00"


def vhost() -> VHost:
    return Broker().vhosts["/"]


def fill(v: VHost, queue: str, n: int) -> None:
    target = v.queues[queue]
    for i in range(n):
        v.publish_now(Message("", queue, PROPS, b"m%d" % i), [target])


def lines(
    pattern: Any, definition: Any, priority: Any = 0, apply_to: Any = "all", op: bool = False
) -> list[str]:
    with pytest.raises(PolicyError) as caught:
        check_policy(pattern, definition, priority, apply_to, op)
    return caught.value.lines


def test_erlang_terms() -> None:
    assert erl("x") == '<<"x">>'
    assert erl([1, "a"]) == '[1,<<"a">>]'
    assert (erl(None), erl(True), erl(1.5)) == ("null", "true", "1.5")


def test_every_failing_part_is_reported_in_rabbitmq_order() -> None:
    assert lines("(", {"foo": 1}, "x", "bad") == [
        '[{<<"foo">>,1}] are not recognised policy settings',
        "apply-to 'bad' unrecognised; should be 'queues', 'exchanges' or 'all'",
        'pattern should be regular expression but is invalid: {"missing )",1}',
        'priority should be a number, actually was <<"x">>',
    ]


def test_regex_errors_worded_as_pcre() -> None:
    assert lines("ab(c", {"max-length": 1}) == [
        'pattern should be regular expression but is invalid: {"missing )",4}'
    ]
    assert lines("a**", {"max-length": 1}) == [
        'pattern should be regular expression but is invalid: {"nothing to repeat",2}'
    ]
    # ~p breaks a term that does not fit in 80 columns, aligning the second element under the first.
    assert lines("[z-a]", {"max-length": 1}) == [
        'pattern should be regular expression but is invalid: {"range out of order in character class",\n'
        + " " * 54
        + "3}"
    ]


def test_values_and_keys() -> None:
    assert lines("a", {"max-length": -1, "message-ttl": -1}) == ["-1 is not a valid maximum length"]
    assert lines("a", {"expires": 0}) == ["0 is not a valid queue expiry"]
    assert lines("a", {"max-priority": 5}) == ['[{<<"max-priority">>,5}] are not recognised policy settings']
    assert lines("a", {"ha-params": 2}) == [
        "ha-mode must be specified to specify ha-params, ha-sync-mode or ha-promote-on-shutdown"
    ]
    check_policy("a", {"ha-mode": "exactly", "ha-params": 2, "queue-mode": "lazy"}, 0, "all", False)
    # Operator policies take the limits only.
    assert lines("a", {"overflow": "drop-head"}, op=True) == [
        '[{<<"overflow">>,<<"drop-head">>}] are not recognised policy settings'
    ]
    check_policy("a", {"max-length": 3, "delivery-limit": 2}, 0, "queues", True)


def test_merge_keeps_the_lower_limit_and_the_policys_other_keys() -> None:
    v = vhost()
    set_policy(v, "p", "^q$", {"max-length": 5, "message-ttl": 100, "dead-letter-exchange": "d"})
    set_policy(v, "o", "^q$", {"max-length": 3, "message-ttl": 1000}, operator=True)
    p, o = v.policies.match("queue", "q")
    assert effective_definition(p, o) == {"dead-letter-exchange": "d", "max-length": 3, "message-ttl": 100}


def test_highest_priority_wins_and_apply_to_and_queue_type_filter() -> None:
    v = vhost()
    set_policy(v, "low", "q", {"max-length": 1}, 1)
    set_policy(v, "high", "^q", {"max-length": 2}, 5, "exchanges")
    assert policy_fields(v.policies, "queue", "q1", {})["policy"] == "low"
    assert policy_fields(v.policies, "exchange", "q1", {})["policy"] == "high"
    set_policy(v, "dl", "q", {"delivery-limit": 2}, 9)
    assert policy_fields(v.policies, "queue", "q1", {})["policy"] == "low"  # not for classic queues
    assert policy_fields(v.policies, "queue", "q1", {"x-queue-type": "quorum"})["policy"] == "dl"
    assert [p.name for p in v.policies.listed(False)] == ["low", "high", "dl"]


def test_a_lower_limit_drops_the_head_and_removing_it_restores_the_arguments() -> None:
    v = vhost()
    v.declare_queue("q", arguments={"x-max-length": 4})
    fill(v, "q", 6)
    queue = v.queues["q"]
    assert queue.ready_count == 4
    assert set_policy(v, "p", "^q$", {"max-length": 2, "max-length-bytes": 1000})
    assert queue.ready_count == 2
    assert queue.policy_arguments == {"x-max-length": 2, "x-max-length-bytes": 1000}
    assert queue.features is not None and queue.features.limit is not None
    assert queue.features.limit.ready_bytes == 4  # the ready entries are counted in the new container
    assert clear_policy(v, "p")
    assert queue.policy_arguments is None and queue.features is not None
    assert queue.features.limit is not None and queue.features.limit.max_length == 4
    assert not clear_policy(v, "p")


def test_a_policy_on_a_plain_queue_and_its_removal() -> None:
    v = vhost()
    v.declare_queue("q")
    queue = v.queues["q"]
    assert queue.plain
    set_policy(v, "p", "^q$", {"message-ttl": 60000})
    assert not queue.plain and queue.features is not None and queue.features.message_ttl == 60000
    fill(v, "q", 1)
    clear_policy(v, "p")
    assert queue.features is None and queue.ready_count == 1


def test_alternate_exchange_argument_wins_over_the_policy() -> None:
    v = vhost()
    v.declare_exchange("own", "direct", arguments={"alternate-exchange": "mine"})
    v.declare_exchange("bare", "direct")
    set_policy(v, "ae", ".*", {"alternate-exchange": "theirs"}, apply_to="exchanges")
    assert (v.exchanges["own"].alternate, v.exchanges["bare"].alternate) == ("mine", "theirs")
    # The default exchange shows the policy but routes by queue name alone (checked against RabbitMQ 3.10).
    assert v.exchanges[""].alternate is None
    assert policy_fields(v.policies, "exchange", "", {})["policy"] == "ae"
    clear_policy(v, "ae")
    assert v.exchanges["bare"].alternate is None


def test_events_round_trip_through_the_codec_and_rebuild_the_policies() -> None:
    v = vhost()
    set_policy(v, "p", "^q", {"max-length": 2, "ha-mode": "nodes", "ha-params": ["a", "b"]}, 1.5, "queues")
    set_policy(v, "o", "^q", {"expires": 1000}, operator=True)
    events = v.policies.events()
    for event in [*events, PolicyCleared("/", "p", False)]:
        assert decode(*encode(event)) == event
    rebuilt = vhost()
    for event in events:
        rebuilt.apply(event)
    assert [p.row() for p in rebuilt.policies.listed(False)] == [p.row() for p in v.policies.listed(False)]
    assert isinstance(events[0], PolicySet) and events[0].priority == 1.5
