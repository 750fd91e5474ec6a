"""Headers exchange matching (all / any / all-with-x / any-with-x, void values) and binding validation."""

from __future__ import annotations

from typing import Any

import pytest

from ottermq.amqp.errors import ChannelError
from ottermq.broker.exchanges.headers import TYPE, HeadersRouter, headers_match
from ottermq.broker.queue import Queue
from tests.unit.broker.domain_fakes import message

CASES: list[tuple[dict[str, Any], dict[str, Any] | None, bool]] = [
    # binding arguments, message headers, matches
    ({"x-match": "all", "a": 1, "b": "x"}, {"a": 1, "b": "x"}, True),
    ({"x-match": "all", "a": 1, "b": "x"}, {"a": 1, "b": "x", "c": 3}, True),
    ({"x-match": "all", "a": 1, "b": "x"}, {"a": 1}, False),
    ({"x-match": "all", "a": 1, "b": "x"}, {"a": 2, "b": "x"}, False),
    ({"a": 1}, {"a": 1}, True),  # x-match defaults to all
    ({"a": 1}, None, False),
    ({"x-match": "all"}, None, True),  # nothing to match: all matches everything
    ({"x-match": "any"}, {"a": 1}, False),  # nothing to match: any matches nothing
    ({"x-match": "any", "a": 1, "b": 2}, {"b": 2}, True),
    ({"x-match": "any", "a": 1, "b": 2}, {"a": 2, "b": 3}, False),
    ({"x-match": "any", "a": 1}, None, False),
    # keys starting with x- are ignored by all / any
    ({"x-match": "all", "x-k": "v", "a": 1}, {"a": 1}, True),
    ({"x-match": "any", "x-k": "v"}, {"x-k": "v"}, False),
    # ... and matched by the -with-x modes (x-match itself never is)
    ({"x-match": "all-with-x", "x-k": "v", "a": 1}, {"a": 1}, False),
    ({"x-match": "all-with-x", "x-k": "v", "a": 1}, {"a": 1, "x-k": "v"}, True),
    ({"x-match": "any-with-x", "x-k": "v"}, {"x-k": "v"}, True),
    ({"x-match": "any-with-x", "x-k": "v"}, {"x-k": "w"}, False),
    # a void binding value matches on presence alone
    ({"x-match": "all", "a": None}, {"a": "anything"}, True),
    ({"x-match": "all", "a": None}, {"b": 1}, False),
    ({"x-match": "any", "a": None, "b": 5}, {"a": 0}, True),
    # values compare as RabbitMQ compares terms
    ({"a": 1}, {"a": 1.0}, True),
    ({"a": 1}, {"a": True}, False),
    ({"a": True}, {"a": True}, True),
    ({"a": "v"}, {"a": b"v"}, True),
    ({"a": {"n": [1, 2]}}, {"a": {"n": [1, 2]}}, True),
]


@pytest.mark.parametrize(("arguments", "headers", "expected"), CASES)
def test_match_table(arguments: dict[str, Any], headers: dict[str, Any] | None, expected: bool) -> None:
    assert headers_match(arguments, headers) is expected


def test_router_matches_message_headers_and_dedupes() -> None:
    q1, q2 = Queue("q1"), Queue("q2")
    router = HeadersRouter()
    router.bind("", {"x-match": "any", "a": 1, "b": 2}, q1)
    router.bind("", {"a": 1}, q1)
    router.bind("", {"x-match": "all", "b": 2}, q2)
    assert list(router.route("", message(headers={"a": 1}))) == [q1]
    assert set(router.route("", message(headers={"a": 1, "b": 2}))) == {q1, q2}
    assert list(router.route("", message())) == []
    router.unbind("", {"b": 2, "x-match": "any", "a": 1}, q1)  # argument order does not matter
    router.unbind("", {"a": 1}, q1)
    assert list(router.route("", message(headers={"a": 1, "b": 2}))) == [q2]


def test_invalid_x_match_value() -> None:
    with pytest.raises(ChannelError) as caught:
        TYPE.validate_binding("", {"x-match": "some"})
    assert caught.value.reply_code == 406
    assert caught.value.reply_text == (
        'PRECONDITION_FAILED - Invalid x-match field value <<"some">>; '
        "expected all, any, all-with-x, or any-with-x"
    )


def test_invalid_x_match_type() -> None:
    with pytest.raises(ChannelError) as caught:
        TYPE.validate_binding("", {"x-match": 1})
    assert caught.value.reply_text == (
        "PRECONDITION_FAILED - Invalid x-match field type signedint (value 1); expected longstr"
    )


@pytest.mark.parametrize("mode", ["all", "any", "all-with-x", "any-with-x"])
def test_valid_modes(mode: str) -> None:
    TYPE.validate_binding("", {"x-match": mode})
