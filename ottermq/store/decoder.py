"""`memento replay --decoder ottermq`: an OtterMQ log shown as exchanges, queues, bindings and messages;
and `memento inspect --records` / `dump` / `verify --decoder ottermq`: one record at a time (`describe`).

Strategy: the decoder rebuilds a real (socket-less) Broker with the same replay code the store uses
(`ottermq.store.replay_view`, made on first use: a record listing never imports the broker), so what it
prints is what the broker would hold at that LSN; message contents are never read. Registered through the
`memento.decoders` entry point, so memento itself never imports OtterMQ: `memento replay DATA_DIR --decoder
ottermq [--to-lsn N]` (memento finds DATA_DIR/log itself).

`describe` decodes a record as strictly as replay does (`codec.decode`) and the properties of each publish
as a delivery would, so a record it refuses is one the broker would fail on; it runs once per record of a
whole log, so it reads only what it shows (no Broker, no event objects beyond the codec's).
"""

from __future__ import annotations

import re
import struct
from typing import TYPE_CHECKING, Any, Final

from memento.inspect_decoders import RecordView
from ottermq.amqp.properties import (
    FLAG_APP_ID,
    FLAG_CLUSTER_ID,
    FLAG_CONTENT_ENCODING,
    FLAG_CONTENT_TYPE,
    FLAG_CORRELATION_ID,
    FLAG_DELIVERY_MODE,
    FLAG_EXPIRATION,
    FLAG_HEADERS,
    FLAG_MESSAGE_ID,
    FLAG_PRIORITY,
    FLAG_REPLY_TO,
    FLAG_TIMESTAMP,
    FLAG_TYPE,
    FLAG_USER_ID,
    decode_properties,
)
from ottermq.amqp.table import decode_table
from ottermq.amqp.wire import DECODE_ERRORS
from ottermq.broker.events import (
    MESSAGE_INDEX_BITS,
    REMOVAL_REASONS,
    MessagePublished,
    MessagesDelivered,
    MessagesRemoved,
    MessagesReturned,
    TxCommitted,
)
from ottermq.store.codec import (
    PUBLISHED_AT,
    RT_EVENT,
    RT_PUBLISH,
    RT_PUBLISH_AT,
    RT_REMOVED,
    RT_TX,
    CodecError,
    decode,
    event_classes,
)

if TYPE_CHECKING:
    from memento.inspect import Inspection
    from memento.trace import TraceLine
    from ottermq.store.holders import Holder, ReadRecord
    from ottermq.store.replay_view import ReplayView


# The names `describe` gives record types (an EVENT record is named after its event class).
_TYPE_NAMES: Final = {RT_PUBLISH: "publish", RT_PUBLISH_AT: "publish", RT_REMOVED: "removed", RT_TX: "tx"}
_INDEX_MASK: Final = (1 << MESSAGE_INDEX_BITS) - 1
_HEADER_KEYS: Final = 16  # a headers summary shows at most this many keys
_TEXT: Final = 64  # ... and cuts strings at this many characters
_SECRET: Final = re.compile(r"password|secret|hash", re.IGNORECASE)


def event_name(class_name: str) -> str:
    """'QueueDeclared' -> 'queue.declared', 'VHostLimitsSet' -> 'vhost.limits.set'."""
    return ".".join(part.lower() for part in re.findall(r"VHost|[A-Z][a-z]*", class_name))


_EVENT_NAMES: Final = {name: event_name(name) for name in event_classes()}


def message_ref(msg_id: int) -> str:
    """A broker message id as 'LSN' (the publish record's LSN) or 'LSN#i' (the i-th publish of a tx)."""
    lsn, index = msg_id >> MESSAGE_INDEX_BITS, msg_id & _INDEX_MASK
    return f"{lsn}#{index}" if index else str(lsn)


def _short(value: Any) -> Any:
    """A header value as a summary shows it: scalars (strings cut), containers by their size."""
    if isinstance(value, str):
        return value if len(value) <= _TEXT else value[:_TEXT] + "..."
    if isinstance(value, bytes | bytearray | memoryview):
        return _escaped(bytes(value[:_TEXT])) + ("..." if len(value) > _TEXT else "")
    if isinstance(value, bool | int | float) or value is None:
        return value
    if isinstance(value, list):
        return f"[{len(value)} items]"
    if isinstance(value, dict):
        return f"{{{len(value)} keys}}"
    return str(value)


def _escaped(raw: bytes) -> str:
    return repr(raw)[2:-1]


def headers_summary(headers: dict[str, Any]) -> dict[str, Any]:
    """At most _HEADER_KEYS headers, values shortened; x-death as 'queue/reason xcount' per entry."""
    summary: dict[str, Any] = {}
    for key, value in headers.items():
        if len(summary) == _HEADER_KEYS:
            summary["..."] = f"{len(headers) - _HEADER_KEYS} more"
            break
        if key == "x-death" and isinstance(value, list):
            summary[key] = [
                f"{d.get('queue')}/{d.get('reason')} x{d.get('count')}" if isinstance(d, dict) else _short(d)
                for d in value[:4]
            ]
        else:
            summary[key] = _short(value)
    return summary


def _jsonable(value: Any) -> Any:
    """An event field as JSON-able data (bytes escaped, tuples as lists, other odd types as text)."""
    if isinstance(value, str | bool | int | float) or value is None:
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        return _escaped(bytes(value))
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return str(value)


def _describe_publish(event: MessagePublished, lsn: int, index: int) -> dict[str, Any]:
    props = decode_properties(event.properties) if event.properties else None
    desc: dict[str, Any] = {
        "type": "publish",
        "vhost": event.vhost,
        "exchange": event.exchange,
        "routing_key": event.routing_key,
        "queues": list(event.queues),
        "ids": [f"{lsn}#{index}" if index else str(lsn)],
        "body_size": len(event.body),
    }
    if event.published:
        desc["time_us"] = event.published * 1000
    if props is not None:
        if props.message_id is not None:
            desc["message_id"] = props.message_id
        if props.correlation_id is not None:
            desc["correlation_id"] = props.correlation_id
        if props.headers:
            desc["headers"] = headers_summary(props.headers)
        if props.expiration is not None:
            desc["expiration"] = props.expiration
        if props.priority is not None:
            desc["priority"] = props.priority
    desc["body"] = event.body
    return desc


def _describe_removed(event: MessagesRemoved) -> dict[str, Any]:
    return {
        "type": "removed",
        "vhost": event.vhost,
        "queue": event.queue,
        "queues": [event.queue],
        "reason": event.reason,
        "count": len(event.ids),
        "ids": [message_ref(i) for i in event.ids],
    }


def _describe_counted(event: MessagesDelivered | MessagesReturned) -> dict[str, Any]:
    """A delivery or return of a queue counting deliveries: named as removals are, so `--queue` and
    `--message-id` find them."""
    return {
        "type": "delivered" if type(event) is MessagesDelivered else "returned",
        "vhost": event.vhost,
        "queue": event.queue,
        "queues": [event.queue],
        "count": len(event.ids),
        "ids": [message_ref(i) for i in event.ids],
    }


def _describe_event(event: Any) -> dict[str, Any]:
    cls = type(event).__name__
    desc: dict[str, Any] = {"type": _EVENT_NAMES.get(cls) or event_name(cls)}
    for key in event.__dataclass_fields__:
        # An exchange's own "type" field would hide the record's type name.
        shown = "exchange_type" if key == "type" else key
        desc[shown] = "(hidden)" if _SECRET.search(key) else _jsonable(getattr(event, key))
    if cls.startswith("Queue"):
        desc["queues"] = [event.name]
    elif cls.startswith("Binding") and event.destination_kind == "queue":
        desc["queues"] = [event.destination]
    return desc


def _describe(event: Any, lsn: int, index: int) -> dict[str, Any]:
    kind = type(event)
    if kind is MessagePublished:
        return _describe_publish(event, lsn, index)
    if kind is MessagesRemoved:
        return _describe_removed(event)
    if kind is MessagesDelivered or kind is MessagesReturned:
        return _describe_counted(event)
    return _describe_event(event)


_REMOVED_HEAD: Final = struct.Struct("<BBBI")
_U16: Final = struct.Struct(">H")
_U32LE: Final = struct.Struct("<I")
_REASONS: Final = REMOVAL_REASONS
_SHORTSTR_FLAGS: Final = (
    (FLAG_CORRELATION_ID, "correlation_id"),
    (FLAG_REPLY_TO, ""),
    (FLAG_EXPIRATION, "expiration"),
    (FLAG_MESSAGE_ID, "message_id"),
)
_TAIL_FLAGS: Final = (FLAG_TYPE, FLAG_USER_ID, FLAG_APP_ID, FLAG_CLUSTER_ID)


# Properties lists that show nothing (delivery mode and timestamp only: what most clients send), by flags,
# with the exact length such a list has; `_properties` checks just that length for them.
_SILENT: Final = {
    flags: 2 + (1 if flags & FLAG_DELIVERY_MODE else 0) + (8 if flags & FLAG_TIMESTAMP else 0)
    for flags in (0, FLAG_DELIVERY_MODE, FLAG_TIMESTAMP, FLAG_DELIVERY_MODE | FLAG_TIMESTAMP)
}


def _properties(raw: bytes, desc: dict[str, Any]) -> None:
    """The properties a description shows, read in place: every field is walked and bounds-checked
    (a malformed list raises), only the shown ones are decoded. The hot path of `describe`, so it
    avoids building a BasicProperties."""
    flags = _U16.unpack_from(raw)[0]
    silent = _SILENT.get(flags)
    if silent is not None and silent <= len(raw):
        return
    off = 2
    word = flags
    while word & 1:  # further flag words carry no basic property
        word = _U16.unpack_from(raw, off)[0]
        off += 2
    if flags & FLAG_CONTENT_TYPE:
        off += 1 + raw[off]
    if flags & FLAG_CONTENT_ENCODING:
        off += 1 + raw[off]
    if flags & FLAG_HEADERS:
        headers, off = decode_table(raw, off)
        if headers:
            desc["headers"] = headers_summary(headers)
    if flags & FLAG_DELIVERY_MODE:
        off += 1
    if flags & FLAG_PRIORITY:
        desc["priority"] = raw[off]
        off += 1
    for flag, name in _SHORTSTR_FLAGS:
        if flags & flag:
            end = off + 1 + raw[off]
            if name:
                desc[name] = raw[off + 1 : end].decode()
            off = end
    if flags & FLAG_TIMESTAMP:
        off += 8
    for flag in _TAIL_FLAGS:
        if flags & flag:
            off += 1 + raw[off]
    if off > len(raw):
        raise CodecError("content properties are truncated")


# Decoded routing parts of publish records by their bytes: a log holds few distinct ones (a stream's vhost,
# exchange, routing key and queues repeat), and decoding them is most of a publish's description. Each is
# kept as the head of a publish's description, shared by every record of that route (`_split_publish`).
_ROUTES: dict[bytes, dict[str, Any]] = {}
_ROUTES_MAX: Final = 4096


def _route(payload: bytes, pos: int) -> tuple[dict[str, Any], int]:
    """The head of the description of the publish at `pos` (type, vhost, exchange, routing key, queues),
    and where its properties start. The head and its queues list are shared between records: copy it,
    never mutate it."""
    vlen, count, xlen, rlen = payload[pos], payload[pos + 1], payload[pos + 2], payload[pos + 3]
    at = pos + 8
    if count == 1:
        end = at + vlen + 1 + payload[at + vlen] + xlen + rlen
    else:
        end = at + vlen
        for _ in range(count):
            end += 1 + payload[end]
        end += xlen + rlen
    if end > len(payload):
        raise CodecError("PUBLISH payload is truncated")
    key = payload[pos:end]  # the properties' length too: one slice, and a few more entries at most
    route = _ROUTES.get(key)
    if route is None:
        vhost = payload[at : at + vlen].decode()
        at += vlen
        queues = []
        for _ in range(count):
            qlen = payload[at]
            queues.append(payload[at + 1 : at + 1 + qlen].decode())
            at += 1 + qlen
        route = {
            "type": "publish",
            "vhost": vhost,
            "exchange": payload[at : at + xlen].decode(),
            "routing_key": payload[at + xlen : end].decode(),
            "queues": queues,
        }
        if len(_ROUTES) >= _ROUTES_MAX:
            _ROUTES.clear()
        _ROUTES[key] = route
    return route, end


def _split_publish(
    payload: bytes, lsn: int, timed: bool, body: bool = True, publish_time: bool = True
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A PUBLISH(_AT) record's description straight from its bytes (what `_describe_publish` shows), as
    its route's shared head and the record's own part (`OtterMQDecoder.describe_split`); without its
    "time_us" when not `publish_time`."""
    pos = 8 if timed else 0
    plen = _U32LE.unpack_from(payload, pos + 4)[0]
    head, pos = _route(payload, pos)
    body_at = pos + plen
    if body_at > len(payload):
        raise CodecError("PUBLISH payload is truncated")
    rest: dict[str, Any] = {"ids": [str(lsn)], "body_size": len(payload) - body_at}
    if timed and publish_time:
        rest["time_us"] = PUBLISHED_AT.unpack_from(payload)[0] * 1000
    if plen:
        # Most lists show nothing (delivery mode, timestamp): known from the flags and length alone.
        silent = _SILENT.get(payload[pos] << 8 | payload[pos + 1]) if plen >= 2 else None
        if silent is None or silent > plen:
            _properties(payload[pos:body_at], rest)
    if body:
        rest["body"] = memoryview(payload)[body_at:]
    return head, rest


# Heads of removal descriptions (type, vhost, queue, queues, reason) by their bytes, as `_ROUTES`.
_REMOVALS: dict[bytes, dict[str, Any]] = {}


def _split_removed(payload: bytes) -> tuple[dict[str, Any], dict[str, Any]]:
    """A REMOVED record's description (see `_split_publish`)."""
    vlen, qlen, reason, count = _REMOVED_HEAD.unpack_from(payload)
    pos = _REMOVED_HEAD.size + vlen + qlen
    if pos + 8 * count != len(payload) or reason >= len(_REASONS):
        raise CodecError("REMOVED payload has a wrong length or reason")
    key = payload[:pos]
    head = _REMOVALS.get(key)
    if head is None:
        at = _REMOVED_HEAD.size
        queue = payload[at + vlen : pos].decode()
        head = {
            "type": "removed",
            "vhost": payload[at : at + vlen].decode(),
            "queue": queue,
            "queues": [queue],
            "reason": _REASONS[reason],
        }
        if len(_REMOVALS) >= _ROUTES_MAX:
            _REMOVALS.clear()
        _REMOVALS[key] = head
    ids = struct.unpack_from(f"<{count}Q", payload, pos)
    return head, {"count": count, "ids": [message_ref(i) for i in ids]}


def split_description(
    rtype: int, payload: bytes, lsn: int, body: bool = True
) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """`describe_record` of the most frequent records (publishes, removals) in two parts: a head shared by
    every record of the same route or queue (never to be changed), and the record's own part; None for
    the other types. The description is the head's items followed by the own part's (without "body"
    when `body` is False: a listing without --payload never shows it)."""
    try:
        if rtype == RT_PUBLISH_AT:
            return _split_publish(payload, lsn, True, body)
        if rtype == RT_REMOVED:
            return _split_removed(payload)
    except DECODE_ERRORS as exc:
        raise CodecError(f"record type {rtype}: {exc}") from None
    return None


def describe_record(rtype: int, payload: bytes, lsn: int) -> dict[str, Any]:
    """What the record of type `rtype` logged at `lsn` means (CodecError, AMQPError when it does not
    decode as replay and delivery would)."""
    split = split_description(rtype, payload, lsn)
    if split is not None:
        desc = split[0].copy()
        desc.update(split[1])
        return desc
    event = decode(rtype, payload)
    if rtype == RT_TX:
        assert isinstance(event, TxCommitted)
        inner = []
        index = 0
        for item in event.events:
            inner.append(_describe(item, lsn, index))
            if type(item) is MessagePublished:
                index += 1
        return {"type": "tx", "count": len(inner), "records": inner}
    desc = _describe(event, lsn, 0)
    if rtype == RT_PUBLISH:
        desc["format"] = "publish without time"
    elif rtype not in _TYPE_NAMES and rtype != RT_EVENT:  # pragma: no cover - decode refuses these
        raise CodecError(f"unknown record type {rtype}")
    return desc


class OtterMQDecoder:
    """A memento replay decoder for OtterMQ data directories: records described here, replay done by a
    `ReplayView` (ottermq.store.replay_view) made on first use."""

    def __init__(self) -> None:
        self._view: ReplayView | None = None

    @property
    def view(self) -> ReplayView:
        """The replay side (imports the broker on first use)."""
        if self._view is None:
            from ottermq.store.replay_view import ReplayView

            self._view = ReplayView()
        return self._view

    @staticmethod
    def trace(inspection: Inspection, key: str | None, lsn: int | None) -> list[TraceLine]:
        """`memento trace MESSAGE_ID DATA_DIR` (memento.trace.Tracer): see ottermq.store.trace."""
        from ottermq.store.trace import trace_message

        return trace_message(inspection, key, lsn)

    def load_snapshot(self, lsn: int, state: bytes) -> None:
        """Start from the snapshot's entities and message indexes."""
        self.view.load_snapshot(lsn, state)

    def apply(self, record: RecordView) -> None:
        """Apply one record (see ReplayView.apply)."""
        self.view.apply(record)

    def describe(self, record: RecordView) -> dict[str, Any]:
        """What one record means: see `describe_record`."""
        return describe_record(record.type, record.payload, record.lsn)

    def describe_split(self, record: RecordView) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """`describe` in a shared head and the record's own part, for the frequent types: see
        `split_description` and memento.inspect_decoders.Describer."""
        rtype = record.type
        try:
            if rtype == RT_PUBLISH_AT:
                # A record's own time (format 3) is the one a listing shows: the publish time is not read.
                return _split_publish(record.payload, record.lsn, True, False, not record.time)
            if rtype == RT_REMOVED:
                return _split_removed(record.payload)
        except DECODE_ERRORS as exc:
            raise CodecError(f"record type {rtype}: {exc}") from None
        return None

    def type_names(self) -> list[str]:
        """Every record type name `describe` gives."""
        return sorted({*_TYPE_NAMES.values(), *_EVENT_NAMES.values()})

    def projection(self) -> dict[str, Any]:
        """Vhosts with their durable exchanges, queues (message counts) and bindings."""
        return self.view.projection()

    def holders(self, read: ReadRecord) -> list[Holder]:
        """After a replay to the end: the messages each durable queue keeps in each segment."""
        return self.view.holders(read)
