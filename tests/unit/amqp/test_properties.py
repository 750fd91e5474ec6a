"""Content properties: raw round trips, against pika, and the cheap peeks."""

import dataclasses
from typing import Any

import pika.spec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ottermq.amqp.constants import SYNTAX_ERROR
from ottermq.amqp.errors import AMQPConnectionError
from ottermq.amqp.properties import (
    EMPTY_PROPERTIES,
    BasicProperties,
    decode_properties,
    encode_properties,
    peek_delivery_mode,
    peek_expiration,
    peek_priority,
)

FULL: dict[str, Any] = {
    "content_type": "application/json",
    "content_encoding": "gzip",
    "headers": {"x-death": [{"count": 1, "queue": "q"}], "a": "b"},
    "delivery_mode": 2,
    "priority": 9,
    "correlation_id": "corr",
    "reply_to": "amq.rabbitmq.reply-to",
    "expiration": "60000",
    "message_id": "m-1",
    "timestamp": 1_700_000_000,
    "type": "t",
    "user_id": "guest",
    "app_id": "app",
    "cluster_id": "c",
}
NAMES = [f.name for f in dataclasses.fields(BasicProperties)]


def _pika_raw(**kwargs: Any) -> bytes:
    return b"".join(pika.spec.BasicProperties(**kwargs).encode())


def test_names_match_pika() -> None:
    assert list(FULL) == NAMES
    assert list(vars(pika.spec.BasicProperties())) == NAMES


def test_empty() -> None:
    assert encode_properties(BasicProperties()) == EMPTY_PROPERTIES
    assert decode_properties(EMPTY_PROPERTIES) == BasicProperties()
    assert peek_delivery_mode(EMPTY_PROPERTIES) == 0
    assert peek_priority(EMPTY_PROPERTIES) is None
    assert peek_expiration(EMPTY_PROPERTIES) is None


def test_full_round_trip_and_pika_both_ways() -> None:
    props = BasicProperties(**FULL)
    raw = encode_properties(props)
    assert raw == _pika_raw(**FULL)
    assert decode_properties(raw) == props
    assert decode_properties(memoryview(raw)) == props
    theirs = pika.spec.BasicProperties()
    theirs.decode(raw)
    assert {n: getattr(theirs, n) for n in NAMES} == FULL


@pytest.mark.parametrize("name", NAMES)
def test_each_property_alone(name: str) -> None:
    raw = _pika_raw(**{name: FULL[name]})
    props = decode_properties(raw)
    assert getattr(props, name) == FULL[name]
    assert encode_properties(props) == raw
    assert peek_delivery_mode(raw) == (2 if name == "delivery_mode" else 0)
    assert peek_priority(raw) == (9 if name == "priority" else None)
    assert peek_expiration(raw) == ("60000" if name == "expiration" else None)


shortstr = st.text(max_size=20).filter(lambda s: len(s.encode()) <= 255)
props_strategy = st.builds(
    BasicProperties,
    content_type=st.none() | shortstr,
    content_encoding=st.none() | shortstr,
    headers=st.none() | st.dictionaries(shortstr, st.integers(-(2**63), 2**63 - 1) | shortstr, max_size=3),
    delivery_mode=st.none() | st.integers(0, 255),
    priority=st.none() | st.integers(0, 255),
    correlation_id=st.none() | shortstr,
    reply_to=st.none() | shortstr,
    expiration=st.none() | shortstr,
    message_id=st.none() | shortstr,
    timestamp=st.none() | st.integers(0, 2**64 - 1),
    type=st.none() | shortstr,
    user_id=st.none() | shortstr,
    app_id=st.none() | shortstr,
    cluster_id=st.none() | shortstr,
)


@settings(max_examples=80, deadline=None)
@given(props_strategy)
def test_peeks_agree_with_full_decode(props: BasicProperties) -> None:
    raw = encode_properties(props)
    assert decode_properties(raw) == props
    assert peek_delivery_mode(raw) == (props.delivery_mode or 0)
    assert peek_priority(raw) == props.priority
    assert peek_expiration(raw) == props.expiration


def test_extra_flag_words_are_skipped() -> None:
    # Continuation bit set, then an empty second flag word: the list starts after both words.
    raw = b"\x18\x01\x00\x00\x02\x07"
    assert peek_delivery_mode(raw) == 2
    assert peek_priority(raw) == 7
    assert decode_properties(raw) == BasicProperties(delivery_mode=2, priority=7)


def _assert_syntax_error(fn: Any, raw: bytes) -> None:
    with pytest.raises(AMQPConnectionError) as info:
        fn(raw)
    assert info.value.reply_code == SYNTAX_ERROR


def test_truncated_properties_are_syntax_errors() -> None:
    raw = encode_properties(BasicProperties(**FULL))
    for cut in range(len(raw)):
        _assert_syntax_error(decode_properties, raw[:cut])
    _assert_syntax_error(peek_delivery_mode, b"")
    _assert_syntax_error(peek_delivery_mode, b"\x30\x00")  # headers flagged, list missing
    _assert_syntax_error(peek_priority, b"\x08\x00")
    _assert_syntax_error(peek_expiration, b"\x01\x00\x05ab")
    _assert_syntax_error(peek_expiration, b"\x01\x00\x02\xff\xfe")  # invalid UTF-8
    _assert_syntax_error(decode_properties, b"\x80\x00\x02\xff\xfe")


def test_encoding_rejects_long_short_strings() -> None:
    with pytest.raises(ValueError):
        encode_properties(BasicProperties(message_id="x" * 256))
