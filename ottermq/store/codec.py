"""The bytes of OtterMQ's log records: events in, (record type, payload) out, and back.

Strategy: the two events written per message (publish, removal) are packed by hand with `struct`, since
they are on the hot path; a committed transaction is a list of inner records; every other event (entities,
users, vhosts, permissions, and whatever event class is added to `ottermq.broker.events` later) goes
through one generic encoding: its class name as a stable type tag, then its fields as an AMQP field table.
So a new event dataclass persists with no change here, as long as its fields are table-encodable (str, int,
bool, float, bytes, dict, tuple/list, None) and its class name never changes.

Record types (memento user types):
- 1 PUBLISH: `<BBBBI` vhost, queue count, exchange, routing key lengths (octets, short strings) and
  properties length; then vhost, each queue as `u8 len + name`, exchange, routing key, properties, body.
- 2 REMOVED: `<BBBI` vhost and queue lengths, reason index (events.REMOVAL_REASONS), id count; then vhost,
  queue, ids as little-endian u64.
- 3 TX: inner records, each `<BI` (type, length) + payload; PUBLISH(_AT), REMOVED or EVENT.
- 4 EVENT: `u8 len + class name`, then the fields as a field table (tuples become arrays).
- 5 PUBLISH_AT: `<Q` publish time (ms since the epoch), then a PUBLISH payload. What the broker writes
  now: the publish time lets a TTL deadline survive a restart. Type 1 is still read (publish time 0,
  unknown) so older logs replay as before.
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Iterable
from typing import Any, Final

from ottermq.amqp.table import decode_table, encode_table
from ottermq.broker import events as events_module
from ottermq.broker.events import (
    REMOVAL_REASONS,
    Event,
    MessagePublished,
    MessagesRemoved,
    TxCommitted,
)

RT_PUBLISH: Final = 1
RT_REMOVED: Final = 2
RT_TX: Final = 3
RT_EVENT: Final = 4
RT_PUBLISH_AT: Final = 5
RECORD_TYPES: Final = frozenset((RT_PUBLISH, RT_REMOVED, RT_TX, RT_EVENT, RT_PUBLISH_AT))
PUBLISH_TYPES: Final = frozenset((RT_PUBLISH, RT_PUBLISH_AT))

_PUBLISH_HEAD: Final = struct.Struct("<BBBBI")
PUBLISHED_AT: Final = struct.Struct("<Q")
_PUBLISH_AT_HEAD: Final = struct.Struct("<QBBBBI")  # PUBLISHED_AT, then _PUBLISH_HEAD
_REMOVED_HEAD: Final = struct.Struct("<BBBI")
_INNER_HEAD: Final = struct.Struct("<BI")
_REASON_CODES: Final = {reason: code for code, reason in enumerate(REMOVAL_REASONS)}


class CodecError(ValueError):
    """A payload that does not decode (names the record type and the problem)."""


# -- the registry of generically encoded event classes --------------------------------------------------

_EVENT_CLASSES: dict[str, type[Any]] = {}
_TUPLE_FIELDS: dict[type[Any], frozenset[str]] = {}


def register_event(cls: type[Any]) -> type[Any]:
    """Make an event dataclass persistable under its class name (the stable type tag)."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    _EVENT_CLASSES[cls.__name__] = cls
    # Annotations are strings (postponed evaluation): tuples are recognised by their text.
    _TUPLE_FIELDS[cls] = frozenset(
        f.name for f in dataclasses.fields(cls) if str(f.type).startswith(("tuple", "Tuple"))
    )
    return cls


def _register_module_events() -> None:
    for value in vars(events_module).values():
        if (
            isinstance(value, type)
            and dataclasses.is_dataclass(value)
            and value.__module__ == events_module.__name__
            and value not in (MessagePublished, MessagesRemoved, TxCommitted)
        ):
            register_event(value)


_register_module_events()


def event_classes() -> dict[str, type[Any]]:
    """The generically encoded event classes by tag (for tests and tools)."""
    return dict(_EVENT_CLASSES)


# -- encoding -------------------------------------------------------------------------------------------


def publish_prefix(
    vhost: str, queues: tuple[str, ...], exchange: str, routing_key: str, properties_size: int
) -> bytes:
    """Everything of a PUBLISH payload before the properties: the same for every message of a stream,
    so the journal caches it."""
    raw_vhost = vhost.encode()
    raw_exchange = exchange.encode()
    raw_key = routing_key.encode()
    parts = [
        _PUBLISH_HEAD.pack(len(raw_vhost), len(queues), len(raw_exchange), len(raw_key), properties_size),
        raw_vhost,
    ]
    for name in queues:
        raw = name.encode()
        parts.append(bytes((len(raw),)))
        parts.append(raw)
    parts.append(raw_exchange)
    parts.append(raw_key)
    return b"".join(parts)


def encode_publish(event: MessagePublished) -> bytes:
    """The PUBLISH_AT payload of a message event."""
    prefix = publish_prefix(
        event.vhost, event.queues, event.exchange, event.routing_key, len(event.properties)
    )
    return b"".join((PUBLISHED_AT.pack(event.published), prefix, event.properties, event.body))


def encode_removed(event: MessagesRemoved) -> bytes:
    """The REMOVED payload of a removal event."""
    vhost = event.vhost.encode()
    queue = event.queue.encode()
    ids = event.ids
    reason = _REASON_CODES.get(event.reason)
    if reason is None:
        raise CodecError(f"unknown removal reason {event.reason!r}")
    return b"".join(
        (
            _REMOVED_HEAD.pack(len(vhost), len(queue), reason, len(ids)),
            vhost,
            queue,
            struct.pack(f"<{len(ids)}Q", *ids),
        )
    )


def encode_generic(event: Any) -> bytes:
    """The EVENT payload of any registered event dataclass."""
    cls = type(event)
    name = cls.__name__
    if _EVENT_CLASSES.get(name) is not cls:
        raise CodecError(f"event class {name} is not registered (see register_event)")
    fields: dict[str, Any] = {}
    for f in dataclasses.fields(event):
        value = getattr(event, f.name)
        fields[f.name] = list(value) if isinstance(value, tuple) else value
    tag = name.encode()
    return bytes((len(tag),)) + tag + encode_table(fields)


def encode_tx(event: TxCommitted) -> bytes:
    """The TX payload: each inner event as a typed, length-prefixed record."""
    parts: list[bytes] = []
    for inner in event.events:
        rtype, payload = encode(inner)
        if rtype == RT_TX:
            raise CodecError("a transaction cannot nest another")
        parts.append(_INNER_HEAD.pack(rtype, len(payload)))
        parts.append(payload)
    return b"".join(parts)


def encode(event: Event | Any) -> tuple[int, bytes]:
    """(record type, payload) of any event (registered event classes of other modules too)."""
    cls = type(event)
    if cls is MessagePublished:
        return RT_PUBLISH_AT, encode_publish(event)  # type: ignore[arg-type]
    if cls is MessagesRemoved:
        return RT_REMOVED, encode_removed(event)  # type: ignore[arg-type]
    if cls is TxCommitted:
        return RT_TX, encode_tx(event)  # type: ignore[arg-type]
    return RT_EVENT, encode_generic(event)


# -- decoding -------------------------------------------------------------------------------------------


def decode_publish(payload: bytes | memoryview, published: int = 0) -> MessagePublished:
    """A PUBLISH payload (without the PUBLISH_AT time: that is `published`) back as its event."""
    view = memoryview(payload)
    vlen, count, xlen, rlen, plen = _PUBLISH_HEAD.unpack_from(view)
    pos = _PUBLISH_HEAD.size
    vhost = str(view[pos : pos + vlen], "utf-8")
    pos += vlen
    queues = []
    for _ in range(count):
        qlen = view[pos]
        queues.append(str(view[pos + 1 : pos + 1 + qlen], "utf-8"))
        pos += 1 + qlen
    exchange = str(view[pos : pos + xlen], "utf-8")
    pos += xlen
    routing_key = str(view[pos : pos + rlen], "utf-8")
    pos += rlen
    properties = bytes(view[pos : pos + plen])
    pos += plen
    if pos > len(view):
        raise CodecError("PUBLISH payload is truncated")
    return MessagePublished(
        vhost, tuple(queues), exchange, routing_key, properties, bytes(view[pos:]), published
    )


def publish_payload(rtype: int, payload: bytes | memoryview) -> tuple[int, memoryview]:
    """(publish time, PUBLISH payload) of a PUBLISH or PUBLISH_AT record (time 0: not logged)."""
    view = memoryview(payload)
    if rtype == RT_PUBLISH_AT:
        return PUBLISHED_AT.unpack_from(view)[0], view[PUBLISHED_AT.size :]
    return 0, view


def decode_publish_targets(payload: bytes | memoryview, rtype: int = RT_PUBLISH) -> MessagePublished:
    """A publish record's vhost, queues, publish time and (for PUBLISH_AT) properties only (exchange,
    routing key and body left empty): all that replay needs, since contents are read back on delivery;
    the properties give the message's own TTL."""
    return decode_publish_index(payload, rtype)[0]


def decode_publish_index(
    payload: bytes | memoryview, rtype: int = RT_PUBLISH
) -> tuple[MessagePublished, int]:
    """`decode_publish_targets` and the length of the body it leaves out (for x-max-length-bytes)."""
    # Offsets into the record's payload as it is (a follower's and a replay's per-record path): the time
    # and the head in one unpack, no slice of the payload but the names' bytes.
    if rtype == RT_PUBLISH_AT:
        published, vlen, count, xlen, rlen, plen = _PUBLISH_AT_HEAD.unpack_from(payload)
        names = _PUBLISH_AT_HEAD.size
    else:
        vlen, count, xlen, rlen, plen = _PUBLISH_HEAD.unpack_from(payload)
        published = 0
        names = _PUBLISH_HEAD.size
    pos = names + vlen
    end = len(payload)
    for _ in range(count):
        if pos >= end:
            break  # cut short: _decode_targets names what is wrong
        pos += 1 + payload[pos]
    # The vhost and queue names, as bytes: a replica or a replay meets the same few again and again. The
    # same bytes split otherwise (another vhost length or queue count) are other names. A read-only view
    # is looked up as it is (it hashes as its bytes); a writable one cannot be hashed.
    key = payload[names:pos]
    try:
        known = _TARGETS.get(key)
    except ValueError:
        key = bytes(key)
        known = _TARGETS.get(key)
    if known is not None and known[0] == vlen and known[1] == count:
        targets = known[2]
    else:
        key = bytes(key)
        targets = _decode_targets(key, vlen, count)
        if len(_TARGETS) >= _TARGETS_KEPT:
            _TARGETS.clear()
        _TARGETS[key] = (vlen, count, targets)
    start = pos + xlen + rlen
    properties = bytes(payload[start : start + plen]) if published else b""
    event = MessagePublished(targets[0], targets[1], "", "", properties, b"", published)
    return event, end - start - plen


# Decoded (vhost length, queue count, (vhost, queues)) by the names' bytes in a publish payload; cleared
# when full (a cache, no more).
_TARGETS: dict[bytes | memoryview, tuple[int, int, tuple[str, tuple[str, ...]]]] = {}  # keys: bytes
_TARGETS_KEPT: Final = 4096


def _decode_targets(head: bytes, vlen: int, count: int) -> tuple[str, tuple[str, ...]]:
    """The vhost and queue names of a publish; raises on names that are not UTF-8 or are cut short."""
    vhost = head[:vlen].decode()  # first, as replay always did: names bytes that are not UTF-8 say so
    if vlen > len(head):
        raise CodecError("PUBLISH payload is truncated")
    pos = vlen
    queues = []
    for _ in range(count):
        if pos >= len(head) or pos + 1 + head[pos] > len(head):
            raise CodecError("PUBLISH payload is truncated")
        qlen = head[pos]
        queues.append(head[pos + 1 : pos + 1 + qlen].decode())
        pos += 1 + qlen
    return vhost, tuple(queues)


def decode_content(payload: bytes | memoryview, rtype: int = RT_PUBLISH) -> tuple[str, str, bytes, bytes]:
    """(exchange, routing_key, properties, body) of a publish record's payload: what a delivery needs."""
    event = decode_publish(publish_payload(rtype, payload)[1])
    return event.exchange, event.routing_key, event.properties, event.body


def decode_removed(payload: bytes | memoryview) -> MessagesRemoved:
    """A REMOVED payload back as its event."""
    view = memoryview(payload)
    vlen, qlen, reason, count = _REMOVED_HEAD.unpack_from(view)
    pos = _REMOVED_HEAD.size
    vhost = str(view[pos : pos + vlen], "utf-8")
    pos += vlen
    queue = str(view[pos : pos + qlen], "utf-8")
    pos += qlen
    if pos + 8 * count != len(view) or reason >= len(REMOVAL_REASONS):
        raise CodecError("REMOVED payload has a wrong length or reason")
    ids = struct.unpack_from(f"<{count}Q", view, pos)
    return MessagesRemoved(vhost, queue, ids, REMOVAL_REASONS[reason])


def decode_generic(payload: bytes | memoryview) -> Any:
    """An EVENT payload back as its event (CodecError for an unknown tag)."""
    view = memoryview(payload)
    tlen = view[0]
    name = str(view[1 : 1 + tlen], "ascii")
    cls = _EVENT_CLASSES.get(name)
    if cls is None:
        raise CodecError(f"unknown event type {name!r}")
    fields, _end = decode_table(view, 1 + tlen)
    for key in _TUPLE_FIELDS[cls]:
        value = fields.get(key)
        if isinstance(value, list):
            fields[key] = tuple(value)
    try:
        return cls(**fields)
    except TypeError as exc:
        raise CodecError(f"event {name}: {exc}") from None


def inner_records(payload: bytes | memoryview) -> Iterable[tuple[int, memoryview]]:
    """The (type, payload) records inside a TX payload."""
    view = memoryview(payload)
    pos = 0
    end = len(view)
    while pos < end:
        rtype, length = _INNER_HEAD.unpack_from(view, pos)
        pos += _INNER_HEAD.size
        if pos + length > end:
            raise CodecError("TX payload is truncated")
        yield rtype, view[pos : pos + length]
        pos += length


def decode_tx(payload: bytes | memoryview) -> TxCommitted:
    """A TX payload back as its event."""
    return TxCommitted(tuple(decode(rtype, inner) for rtype, inner in inner_records(payload)))


def decode(rtype: int, payload: bytes | memoryview) -> Any:
    """The event a record holds (CodecError for an unknown type or a payload that does not decode)."""
    try:
        if rtype == RT_PUBLISH_AT:
            published, view = publish_payload(rtype, payload)
            return decode_publish(view, published)
        if rtype == RT_PUBLISH:
            return decode_publish(payload)
        if rtype == RT_REMOVED:
            return decode_removed(payload)
        if rtype == RT_TX:
            return decode_tx(payload)
        if rtype == RT_EVENT:
            return decode_generic(payload)
    except (struct.error, IndexError, UnicodeDecodeError) as exc:
        raise CodecError(f"record type {rtype}: {exc}") from None
    raise CodecError(f"unknown record type {rtype}")


# -- where a message lies ---------------------------------------------------------------------------------

# loc packs (segment, offset, index in the record): the broker treats it as opaque.
OFFSET_SHIFT: Final = 20
SEGMENT_SHIFT: Final = 52
INDEX_MASK: Final = (1 << OFFSET_SHIFT) - 1
OFFSET_MASK: Final = (1 << (SEGMENT_SHIFT - OFFSET_SHIFT)) - 1


def pack_loc(segment: int, offset: int, index: int = 0) -> int:
    """The loc of the `index`-th publish of the record at (segment, offset)."""
    return (segment << SEGMENT_SHIFT) | (offset << OFFSET_SHIFT) | index


def unpack_loc(loc: int) -> tuple[int, int, int]:
    """(segment, offset, index) of a loc."""
    return loc >> SEGMENT_SHIFT, (loc >> OFFSET_SHIFT) & OFFSET_MASK, loc & INDEX_MASK


def record_key(loc: int) -> int:
    """The loc of the record itself (index 0): what the log's space reclamation asks about."""
    return loc & ~INDEX_MASK
