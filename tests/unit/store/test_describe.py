"""OtterMQ's `describe` of a publish record (what `memento inspect --records --decode` shows): the cached
route head is copied, never shared, and a properties list that shows nothing is still length-checked; the
split form (a shared head and the record's own part) lists exactly as the whole description."""

from __future__ import annotations

import io

import pytest

from memento.record import Record, RecordPosition
from memento.records import Lister, Printer, Selection
from ottermq.amqp.properties import BasicProperties, encode_properties
from ottermq.broker.events import MessagePublished, MessagesRemoved, QueueDeclared
from ottermq.store.codec import CodecError, encode
from ottermq.store.decoder import OtterMQDecoder, describe_record


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


def _listing(split: bool, records: list[Record], *, as_json: bool) -> str:
    decoder = OtterMQDecoder()
    out = io.StringIO()
    printer = Printer(out, as_json=as_json, decode=True, payload=False, batch=True)
    lister = Lister(printer, Selection(), decoder.describe, decoder.describe_split if split else None)
    for record in records:
        lister.feed(record)
    printer.flush()
    return out.getvalue()


def test_split_descriptions_list_exactly_as_whole_ones() -> None:
    props = [
        BasicProperties(delivery_mode=2, timestamp=7),
        BasicProperties(message_id="m-1", correlation_id="c 2", headers={"h": 1, "x": "y"}, priority=3),
        BasicProperties(),
    ]
    events: list[object] = [
        MessagePublished("/", ("q1",), "ex", "rk", encode_properties(p), b"b" * n, 1_000 + n)
        for n, p in enumerate(props)
    ]
    events += [
        MessagePublished("v", ("q1", "q 2"), "", "q1", b"", b"", 0),
        MessagesRemoved("/", "q1", (1 << 16, 2 << 16 | 1), "ack"),
        MessagesRemoved("/", "q1", (), "expired"),
        QueueDeclared("/", "q1", True, False, False, {}),
    ]
    records = []
    for lsn, event in enumerate(events, 1):
        rtype, payload = encode(event)
        when = 1_700_000_000_000_000 + lsn
        records.append(Record(lsn, rtype, 0, payload, RecordPosition(1, 64 * lsn), when))
    decoder = OtterMQDecoder()
    for record in records:
        parts = decoder.describe_split(record)
        if parts is None:
            continue
        head, rest = parts
        # Without the body, and without the publish time: each record here has its own time, which a
        # listing shows instead.
        whole = {k: v for k, v in decoder.describe(record).items() if k not in ("body", "time_us")}
        assert {**head, **rest} == whole
        assert list({**head, **rest}) == list(whole)  # the same order too
        again = decoder.describe_split(record)
        assert again is not None and again[0] is head  # shared: formatted once by the printer
    assert sum(decoder.describe_split(r) is not None for r in records) == 6
    for as_json in (True, False):
        assert _listing(True, records, as_json=as_json) == _listing(False, records, as_json=as_json)
