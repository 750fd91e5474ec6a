"""The record codec: every event type round-trips; bad payloads raise CodecError; locs pack and unpack."""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ottermq.broker import events
from ottermq.store import codec
from ottermq.store.codec import (
    RT_EVENT,
    RT_PUBLISH,
    RT_PUBLISH_AT,
    RT_REMOVED,
    RT_TX,
    CodecError,
    decode,
    encode,
    pack_loc,
    record_key,
    register_event,
    unpack_loc,
)

PUBLISH = events.MessagePublished("/", ("q1", "q2"), "amq.topic", "a.b", b"\x80\x00\x02", b"body")
REMOVED = events.MessagesRemoved("/", "q1", (1 << 20, 5 << 20 | 3), "ack")

SAMPLES: list[Any] = [
    events.ExchangeDeclared("/", "x", "topic", True, False, False, {"alternate-exchange": "ae", "n": 5}),
    events.ExchangeDeleted("v", "x"),
    events.QueueDeclared("/", "q", True, False, True, {"x-message-ttl": 1000, "x-dead-letter-exchange": ""}),
    events.QueueDeleted("/", "q"),
    events.QueuePurged("/", "q"),
    events.BindingAdded("/", "x", "q", "queue", "k.#", {"x-match": "all", "d": Decimal("1.5")}),
    events.BindingRemoved("/", "x", "y", "exchange", "", {}),
    PUBLISH,
    REMOVED,
    events.TxCommitted((PUBLISH, REMOVED, PUBLISH._replace(body=b"second"))),
]


def test_every_event_class_of_the_broker_is_encodable() -> None:
    classes = [
        value
        for value in vars(events).values()
        if isinstance(value, type) and dataclasses.is_dataclass(value) and value.__module__ == events.__name__
    ]
    generic = set(codec.event_classes().values())
    for cls in classes:
        assert cls in generic or cls in (events.MessagePublished, events.MessagesRemoved, events.TxCommitted)


@pytest.mark.parametrize("event", SAMPLES, ids=lambda e: type(e).__name__)
def test_round_trip(event: Any) -> None:
    rtype, payload = encode(event)
    assert decode(rtype, payload) == event


def test_hot_events_have_their_own_record_types() -> None:
    assert encode(PUBLISH)[0] == RT_PUBLISH_AT  # RT_PUBLISH: older logs, still read
    assert encode(REMOVED)[0] == RT_REMOVED
    assert encode(events.TxCommitted(()))[0] == RT_TX
    assert encode(SAMPLES[0])[0] == RT_EVENT


def test_access_events_round_trip_generically() -> None:
    for cls in codec.event_classes().values():
        fields: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            text = str(f.type)
            fields[f.name] = (
                ("a", "b")
                if text.startswith("tuple")
                else (
                    {}
                    if text.startswith("dict")
                    else False
                    if text == "bool"
                    else 7
                    if text == "int"
                    else "s"
                )
            )
        try:
            event = cls(**fields)
        except TypeError:
            continue
        assert decode(*encode(event)) == event


def test_a_new_event_class_persists_once_registered() -> None:
    # A name no real event has: registering replaces the class of that name for the whole process.
    @dataclasses.dataclass(frozen=True, slots=True)
    class ShovelDeclaredForTest:
        vhost: str
        name: str
        pattern: str
        definition: dict[str, Any]
        apply_to: tuple[str, ...]

    register_event(ShovelDeclaredForTest)
    event = ShovelDeclaredForTest("/", "p", "^q", {"max-length": 10}, ("queues",))
    assert decode(*encode(event)) == event


@given(
    st.text(max_size=40),
    st.lists(st.text(min_size=1, max_size=60), min_size=1, max_size=5),
    st.text(max_size=60),
    st.binary(max_size=300),
    st.binary(max_size=3000),
)
def test_publish_round_trips_any_names_and_bytes(
    vhost: str, queues: list[str], key: str, props: bytes, body: bytes
) -> None:
    queues = [q.encode()[:255].decode(errors="ignore") or "q" for q in queues]
    vhost = vhost.encode()[:255].decode(errors="ignore")
    key = key.encode()[:255].decode(errors="ignore")
    event = events.MessagePublished(vhost, tuple(queues), "x", key, props, body)
    assert decode(*encode(event)) == event


@pytest.mark.parametrize(
    ("rtype", "payload"),
    [
        (RT_PUBLISH, b"\x05\x01"),
        (RT_REMOVED, b"\x01\x01\x00\x02\x00\x00\x00/q" + b"\x00" * 8),
        (RT_REMOVED, b"\x01\x01\x63\x00\x00\x00\x00/q"),
        (RT_EVENT, b"\x07Unknown\x00\x00\x00\x00"),
        (RT_TX, b"\x01\xff\x00\x00\x00"),
        (99, b""),
    ],
)
def test_bad_payloads_raise_codec_error(rtype: int, payload: bytes) -> None:
    with pytest.raises(CodecError):
        decode(rtype, payload)


def test_unknown_reason_is_refused_on_encode() -> None:
    with pytest.raises(CodecError):
        encode(events.MessagesRemoved("/", "q", (1,), "eaten"))


def test_locs_pack_segment_offset_and_index() -> None:
    loc = pack_loc(70000, (1 << 32) - 1, 5)
    assert unpack_loc(loc) == (70000, (1 << 32) - 1, 5)
    assert record_key(loc) == pack_loc(70000, (1 << 32) - 1)
    assert unpack_loc(pack_loc(1, 64)) == (1, 64, 0)


def test_replay_reads_only_the_targets_of_a_publish() -> None:
    from ottermq.store.codec import decode_publish_targets

    event = decode_publish_targets(encode(PUBLISH)[1], RT_PUBLISH_AT)
    assert (event.vhost, event.queues) == (PUBLISH.vhost, PUBLISH.queues)
    assert event.body == b"" and event.properties == b""


def test_publish_targets_are_the_record_s_own_even_when_names_bytes_repeat_split_otherwise() -> None:
    from ottermq.store.codec import decode_publish_targets

    # vhost "ab" with queue "c", and vhost "ab\x01c" with no queue: the same names bytes ("ab\x01c").
    one = events.MessagePublished("ab", ("c",), "", "k", b"", b"x")
    other = events.MessagePublished("ab\x01c", (), "", "k", b"", b"x")
    for _ in range(2):  # the second time from the cache
        for event in (one, other):
            got = decode_publish_targets(encode(event)[1], RT_PUBLISH_AT)
            assert (got.vhost, got.queues) == (event.vhost, event.queues)


@pytest.mark.parametrize("cut", [1, 3, 6])
def test_publish_targets_cut_short_are_a_codec_error(cut: int) -> None:
    from ottermq.store.codec import decode_publish_targets

    payload = encode(events.MessagePublished("vh", ("queue-1", "queue-2"), "", "k", b"", b""))[1]
    # Keep the publish time and head (16 bytes) and `cut` bytes of the names.
    with pytest.raises(CodecError, match="truncated"):
        decode_publish_targets(payload[: 16 + cut], RT_PUBLISH_AT)


def test_publish_index_is_the_same_from_bytes_and_from_any_view_of_them() -> None:
    """A follower decodes from a read-only view of the frame, replay from bytes, and any caller may hold a
    writable view (which cannot be hashed for the names cache): the same event and body length, for
    records with and without their publish time, first seen and from the cache."""
    from ottermq.store.codec import RT_PUBLISH, decode_publish_index

    event = events.MessagePublished(
        "vh", ("q-1", "q-2", "q-3"), "amq.direct", "key", b"\x10\x00\x02", b"b" * 333, 1_700_000_000_000
    )
    rtype, payload = encode(event)
    assert rtype == RT_PUBLISH_AT
    older = payload[8:]  # a PUBLISH record of an older log: no time
    for _ in range(2):
        for kind, data in ((RT_PUBLISH_AT, payload), (RT_PUBLISH, older)):
            views: list[bytes | memoryview] = [
                data,
                memoryview(data),
                memoryview(bytearray(data)),
                memoryview(b"pad" + data)[3:],
            ]
            for view in views:
                got, size = decode_publish_index(view, kind)
                assert (got.vhost, got.queues, size) == (event.vhost, event.queues, 333)
                if kind == RT_PUBLISH_AT:
                    assert (got.properties, got.published) == (event.properties, event.published)
                else:
                    assert (got.properties, got.published) == (b"", 0)
