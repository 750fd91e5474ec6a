"""OtterMQ's `describe` of a publish record (what `memento inspect --records --decode` shows): the cached
route head is copied, never shared, and a properties list that shows nothing is still length-checked."""

from __future__ import annotations

import pytest

from ottermq.amqp.properties import BasicProperties, encode_properties
from ottermq.broker.events import MessagePublished
from ottermq.store.codec import CodecError, encode
from ottermq.store.decoder import describe_record


def _publish(properties: bytes) -> tuple[int, bytes]:
    return encode(MessagePublished("/", ("q1",), "ex", "rk", properties, b"body", 1_000))


def test_descriptions_of_one_route_are_separate_dicts() -> None:
    rtype, payload = _publish(encode_properties(BasicProperties(delivery_mode=2, timestamp=7)))
    first = describe_record(rtype, payload, 10)
    first.pop("type")  # what the printer does with a description
    second = describe_record(rtype, payload, 11)
    assert second["type"] == "publish" and second["ids"] == ["11"]
    assert {k: v for k, v in second.items() if k != "body"} == {
        "type": "publish",
        "vhost": "/",
        "exchange": "ex",
        "routing_key": "rk",
        "queues": ["q1"],
        "ids": ["11"],
        "body_size": 4,
        "time_us": 1_000_000,
    }


def test_shown_properties_are_read_and_a_truncated_silent_list_is_refused() -> None:
    rtype, payload = _publish(encode_properties(BasicProperties(delivery_mode=2, message_id="m-1")))
    assert describe_record(rtype, payload, 3)["message_id"] == "m-1"
    rtype, payload = _publish(b"\x10\x40\x02")  # delivery mode and timestamp flagged, no timestamp
    with pytest.raises(CodecError, match="truncated"):
        describe_record(rtype, payload, 4)
