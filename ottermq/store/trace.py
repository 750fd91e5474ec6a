"""`memento trace` for OtterMQ: every record that touched one message, in log order, with times and LSNs.

Strategy: a message is found by its AMQP message-id property (`memento trace ID DATA_DIR`) or by the LSN
of the record that logged its publish (`--lsn N`, the log id the broker knows it by). Memento searches the
segments for needles (`memento.trace.records_containing`) and this module decodes only what it hands back:
- the message-id as a publish record holds it (a short string: length octet + UTF-8);
- once a message is found, its id as a REMOVED record lists it (u64, little-endian), and the tags of the
  events that drop messages without a removal record (QueueDeleted, VHostDeleted);
- a message without a message-id: the first bytes of its body, to find a dead-lettered copy.
A dead-lettered copy is a new publish (written before the removal of the original) whose newest x-death
entry names the queue the original leaves; it is traced as a message of its own, linked to its original.
Compaction copies (flag 0x80) carry the original's LSN: they continue the original's story.

The log is complete from its first record on: a message whose publish is still in the log has its whole
history there. One whose publish record was reclaimed (only a compaction copy is left, or `--lsn` names an
LSN before the log's start) is not given an invented history: what the snapshot says (the queues that held
it at the snapshot's LSN) is shown instead, then what the records after it say. The log does not record
deliveries: a message still in a queue is ready or delivered and not acked yet.
"""

from __future__ import annotations

import datetime
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Final

from memento.inspect import Inspection, load_snapshot
from memento.record import FLAG_RELOCATED, Record, original
from memento.trace import TraceLine, record_at, records_containing
from ottermq.amqp.properties import BasicProperties, decode_properties
from ottermq.broker.events import MESSAGE_INDEX_BITS, MessagePublished, message_id
from ottermq.store.codec import (
    PUBLISH_TYPES,
    RECORD_TYPES,
    RT_EVENT,
    RT_REMOVED,
    RT_TX,
    decode_generic,
    decode_publish,
    decode_removed,
    inner_records,
    publish_payload,
)
from ottermq.store.snapshot import decode_snapshot

_ID: Final = struct.Struct("<Q")
# The events that take messages away without a removal record, as their EVENT payload starts.
_DROPPING_EVENTS: Final = ("QueueDeleted", "VHostDeleted")
# One needle for both tags (one search of the log instead of two); other "...Deleted" events are dropped
# after decoding their tag.
_EVENT_NEEDLE: Final = b"Deleted"
BODY_NEEDLE: Final = 64  # bytes of a body searched for when a message has no message-id
_MIN_BODY_NEEDLE: Final = 12  # shorter bodies match too much to be worth a search
NOT_LOGGED: Final = (
    "deliveries are not logged: a message still in a queue is ready, or delivered and not acked yet"
)


def when(micros: int) -> str | None:
    """A wall-clock time in microseconds as text (None for 0: unknown)."""
    if not micros:
        return None
    moment = datetime.datetime.fromtimestamp(micros / 1e6, datetime.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S.") + f"{moment.microsecond // 1000:03d} UTC"


def msg_name(msg_id: int) -> str:
    """A message's log id as people write it: publish LSN, and ':index' inside a transaction."""
    lsn, index = msg_id >> MESSAGE_INDEX_BITS, msg_id & ((1 << MESSAGE_INDEX_BITS) - 1)
    return f"{lsn}:{index}" if index else str(lsn)


@dataclass(slots=True)
class Traced:
    """One message being traced: where it was published and what happened to it since."""

    msg_id: int
    vhost: str
    event: MessagePublished | None  # None: known only from the snapshot
    props: BasicProperties
    found: Record | None  # the record it was found in (the original, or a compaction copy)
    live: dict[str, None]  # queues holding it, in publish order
    reclaimed: bool = False  # its publish record is gone (only a copy, or only the snapshot, is left)
    tx_lsn: int = 0  # published inside a transaction committed at this LSN
    parent: Traced | None = None  # the message this one is a dead-lettered copy of
    death: tuple[str, str] = ("", "")  # (queue, x-death reason) when a dead-lettered copy
    copies: dict[str, Traced] = field(default_factory=dict)  # queue -> dead-lettered copy not removed yet
    lines: list[tuple[int, TraceLine]] = field(default_factory=list)  # (LSN, line)

    @property
    def lsn(self) -> int:
        return self.msg_id >> MESSAGE_INDEX_BITS


def id_needle(value: int) -> bytes:
    """A u64 as a REMOVED record lists it (little-endian), without its trailing zero bytes (a needle
    ending in a zero byte is searched three times slower: zeros are everywhere in a log), but at least
    5 bytes long, so that small values do not match everywhere."""
    raw = _ID.pack(value)
    return raw[: max(5, len(raw.rstrip(b"\x00")))]


def _record_time(record: Record, published_ms: int = 0) -> int:
    """The record's wall-clock time in µs: format version 3's, else the publish time the payload holds."""
    return record.time or published_ms * 1000


def _x_death(props: BasicProperties) -> tuple[str, str, str] | None:
    """(queue, reason, exchange) of the newest x-death entry, or None."""
    deaths = (props.headers or {}).get("x-death")
    if not isinstance(deaths, list) or not deaths or not isinstance(deaths[0], dict):
        return None
    first = deaths[0]
    return str(first.get("queue", "")), str(first.get("reason", "")), str(first.get("exchange", ""))


class MessageTrace:
    """The state of one trace: the needles given to Memento and the messages found so far."""

    def __init__(self, inspection: Inspection, key: str | None, lsn: int | None) -> None:
        self.inspection = inspection
        self.key = key
        self.lsn = lsn
        self.needles: list[bytes] = []
        self.messages: dict[int, Traced] = {}
        self.order: list[Traced] = []
        if key is not None:
            raw = key.encode()
            if len(raw) > 255:
                raise ValueError("an AMQP message-id is at most 255 bytes")
            self.needles.append(bytes((len(raw),)) + raw)

    # -- the scan ----------------------------------------------------------------------------------------

    def run(self) -> None:
        """Find the message and every record after it that touched it or its dead-lettered copies."""
        after = 0
        if self.lsn is not None:
            after = self._seed_from_lsn(self.lsn)
        for record in records_containing(self.inspection, self.needles, RECORD_TYPES, after):
            self._record(record)

    def _seed_from_lsn(self, lsn: int) -> int:
        """Start from the record at `lsn` (or from the snapshot when it is gone); the LSN to scan after."""
        record = record_at(self.inspection, lsn)
        if record is not None:
            self._record(record)
            if not self.messages:
                return self.inspection.end_lsn  # not a publish: nothing to follow
            return lsn
        # Reclaimed: a compaction copy carries the LSN first; else the snapshot knows where it is.
        self.needles.append(id_needle(lsn))
        return 0

    def _record(self, record: Record) -> None:
        origin, payload = original(record)
        copy = bool(record.flags & FLAG_RELOCATED)
        rtype = record.type
        if rtype in PUBLISH_TYPES:
            self._publish(record, rtype, payload, origin, 0, copy, 0)
        elif rtype == RT_REMOVED:
            self._removed(record, payload, 0)
        elif rtype == RT_TX:
            index = 0
            for inner_type, inner in inner_records(payload):
                if inner_type in PUBLISH_TYPES:
                    self._publish(record, inner_type, inner, origin, index, copy, record.lsn)
                    index += 1
                elif inner_type == RT_REMOVED:
                    self._removed(record, inner, record.lsn)
                elif inner_type == RT_EVENT:
                    self._event(record, inner)
        elif rtype == RT_EVENT:
            self._event(record, payload)

    def _publish(
        self,
        record: Record,
        rtype: int,
        payload: bytes | memoryview,
        origin: int,
        index: int,
        copy: bool,
        tx_lsn: int,
    ) -> None:
        if copy and not origin:
            return  # a copy made by format version 1: it does not say whose copy it is
        published, view = publish_payload(rtype, payload)
        event = decode_publish(view, published)
        props = decode_properties(event.properties)
        msg_id = message_id(origin, index)
        known = self.messages.get(msg_id)
        if copy:
            if known is not None:
                known.lines.append((record.lsn, self._copied_line(known, record)))
                return
            if self.lsn is not None and origin != self.lsn:
                return
            if self.key is not None and props.message_id != self.key:
                return
            self._track(msg_id, event, props, record, tx_lsn, reclaimed=True)
            return
        if known is not None:
            return
        parent = self._parent_of(event, props)
        if parent is not None:
            child = self._track(msg_id, event, props, record, tx_lsn)
            queue, reason, _exchange = _x_death(props) or ("", "", "")
            child.parent = parent
            child.death = (queue, reason)
            parent.copies[queue] = child
            return
        wanted = origin == self.lsn if self.lsn is not None else props.message_id == self.key
        if wanted:
            self._track(msg_id, event, props, record, tx_lsn)

    def _parent_of(self, event: MessagePublished, props: BasicProperties) -> Traced | None:
        """The traced message this publish is a dead-lettered copy of, if any (the newest that fits)."""
        death = _x_death(props)
        if death is None:
            return None
        queue = death[0]
        for traced in reversed(self.order):
            if traced.vhost != event.vhost or queue not in traced.live or queue in traced.copies:
                continue
            if traced.props.message_id is not None:
                if props.message_id == traced.props.message_id:
                    return traced
            elif traced.event is not None and traced.event.body == event.body:
                return traced
        return None

    def _track(
        self,
        msg_id: int,
        event: MessagePublished | None,
        props: BasicProperties,
        record: Record | None,
        tx_lsn: int,
        reclaimed: bool = False,
    ) -> Traced:
        live = dict.fromkeys(event.queues) if event is not None else {}
        vhost = event.vhost if event is not None else ""
        traced = Traced(msg_id, vhost, event, props, record, live, reclaimed, tx_lsn)
        self.messages[msg_id] = traced
        self.order.append(traced)
        needles = self.needles
        needles.append(id_needle(msg_id))
        if traced.reclaimed or self.lsn is not None:
            needles.append(id_needle(traced.lsn))  # a compaction copy starts with its original's LSN
        if _EVENT_NEEDLE not in needles:
            needles.append(_EVENT_NEEDLE)
        # What finds its dead-lettered copies: the message-id they keep, else the body they keep.
        if props.message_id is not None:
            raw = props.message_id.encode()
            needle = bytes((len(raw),)) + raw
        elif event is not None and len(event.body) >= _MIN_BODY_NEEDLE:
            needle = event.body[:BODY_NEEDLE]
        else:
            needle = b""
        if needle and needle not in needles:
            needles.append(needle)
        return traced

    def _removed(self, record: Record, payload: bytes | memoryview, tx_lsn: int) -> None:
        removal = decode_removed(payload)
        for msg_id in removal.ids:
            traced = self.messages.get(msg_id)
            if traced is None or traced.vhost != removal.vhost:
                continue
            traced.live.pop(removal.queue, None)
            copy = traced.copies.pop(removal.queue, None)
            traced.lines.append(
                (record.lsn, self._removed_line(traced, record, removal.queue, removal.reason, copy, tx_lsn))
            )
        self._prune()

    def _prune(self) -> None:
        """Once no traced message is queued, stop searching for what only concerned them (in a trace by
        message-id, a later publish with the same id is still looked for): the rest of the log is
        searched for one needle, not four."""
        if not self.order or any(t.live for t in self.order):
            return
        self.needles[:] = self.needles[:1] if self.key is not None else []

    def _event(self, record: Record, payload: bytes | memoryview) -> None:
        name = bytes(payload[1 : 1 + payload[0]]).decode("ascii", "replace")
        if name not in _DROPPING_EVENTS:
            return
        event = decode_generic(payload)
        vhost = event.vhost if name == "QueueDeleted" else event.name
        for traced in self.order:
            if traced.vhost != vhost:
                continue
            dropped = [q for q in traced.live if name == "VHostDeleted" or q == event.name]
            for queue in dropped:
                del traced.live[queue]
                why = "queue deleted" if name == "QueueDeleted" else f"vhost {vhost!r} deleted"
                traced.lines.append((record.lsn, self._removed_line(traced, record, queue, why, None, 0)))
        self._prune()

    # -- lines -------------------------------------------------------------------------------------------

    @staticmethod
    def _where(record: Record) -> dict[str, int]:
        return {"segment": record.position.segment, "offset": record.position.offset}

    def _published_line(self, traced: Traced) -> TraceLine:
        event = traced.event
        record = traced.found
        assert event is not None and record is not None
        micros = _record_time(record, event.published)
        doc: dict[str, Any] = {
            "event": "published",
            "message": msg_name(traced.msg_id),
            "lsn": traced.lsn,
            "time": when(micros),
            "time_us": micros or None,
            "vhost": event.vhost,
            "exchange": event.exchange,
            "routing_key": event.routing_key,
            "queues": list(event.queues),
            "message_id": traced.props.message_id,
            "correlation_id": traced.props.correlation_id,
            "body_bytes": len(event.body),
            "tx_lsn": traced.tx_lsn or None,
        }
        words = [f"published: vhost {event.vhost!r}, exchange {event.exchange!r}, routing key "]
        words.append(f"{event.routing_key!r} -> {_queues(event.queues)}; {len(event.body)} body bytes")
        if traced.props.message_id is not None:
            words.append(f", message-id {traced.props.message_id!r}")
        if traced.tx_lsn:
            words.append(f"; in a transaction committed at LSN {traced.tx_lsn}")
        if traced.reclaimed:
            doc["reclaimed"] = True
            doc["copy_lsn"] = record.lsn
            doc.update(self._where(record))
            words.append(
                f"; its record was reclaimed, a compaction copy at LSN {record.lsn} holds it "
                f"(segment {record.position.segment} offset {record.position.offset})"
            )
        else:
            doc.update(self._where(record))
            words.append(f" (segment {record.position.segment} offset {record.position.offset})")
        if traced.parent is not None:
            queue, reason = traced.death
            doc["dead_letter_of"] = msg_name(traced.parent.msg_id)
            doc["dead_lettered_from"] = queue
            doc["death_reason"] = reason
            words.insert(
                0,
                f"dead-lettered copy of message {msg_name(traced.parent.msg_id)} (from {queue!r}, {reason}) ",
            )
        return _line(traced, traced.lsn, micros, "".join(words)), doc

    def _removed_line(
        self, traced: Traced, record: Record, queue: str, reason: str, copy: Traced | None, tx_lsn: int
    ) -> TraceLine:
        micros = _record_time(record)
        doc: dict[str, Any] = {
            "event": "removed",
            "message": msg_name(traced.msg_id),
            "lsn": record.lsn,
            "time": when(micros),
            "time_us": micros or None,
            "queue": queue,
            "reason": reason,
            "tx_lsn": tx_lsn or None,
            **self._where(record),
        }
        text = f"removed from {queue!r}: {reason}"
        if copy is not None and copy.event is not None:
            doc["dead_lettered_to"] = {
                "exchange": copy.event.exchange,
                "routing_key": copy.event.routing_key,
                "queues": list(copy.event.queues),
                "message": msg_name(copy.msg_id),
            }
            text += (
                f", dead-lettered to exchange {copy.event.exchange!r} -> {_queues(copy.event.queues)} "
                f"as message {msg_name(copy.msg_id)}"
            )
        if tx_lsn:
            text += f" (in a transaction committed at LSN {tx_lsn})"
        return _line(traced, record.lsn, micros, text), doc

    def _copied_line(self, traced: Traced, record: Record) -> TraceLine:
        micros = _record_time(record)
        doc = {
            "event": "copied",
            "message": msg_name(traced.msg_id),
            "lsn": record.lsn,
            "time": when(micros),
            "time_us": micros or None,
            **self._where(record),
        }
        text = (
            f"copied forward by compaction (segment {record.position.segment} offset "
            f"{record.position.offset}); the copy now holds its content"
        )
        return _line(traced, record.lsn, micros, text), doc

    # -- the snapshot -----------------------------------------------------------------------------------

    def _snapshot_view(self) -> tuple[int, dict[int, list[str]]] | None:
        """(snapshot LSN, queues holding each traced message there) when a traced message needs it: its
        publish is covered by the snapshot, or its record was reclaimed; for `--lsn` before the log, the
        snapshot's messages of that record."""
        snapshot_lsn = self.inspection.snapshot_lsn
        wanted = self.lsn is not None and not self.messages
        if not snapshot_lsn or not (wanted or any(t.lsn <= snapshot_lsn for t in self.order)):
            return None
        snapshot = load_snapshot(self.inspection.path)
        if snapshot is None:
            return None
        state = decode_snapshot(snapshot.state)
        held: dict[int, list[str]] = {}
        ids = set(self.messages)
        for index in state.queues:
            if wanted:
                assert self.lsn is not None
                low, high = message_id(self.lsn), message_id(self.lsn + 1)
                found = [i for i in index.ids if low <= i < high]
            else:
                found = [i for i in ids if i in index.ids]
            for msg_id in found:
                held.setdefault(msg_id, []).append(f"{index.vhost}\x00{index.queue}")
        return snapshot.lsn, held

    def finish(self) -> list[TraceLine]:
        """The lines of the trace, after `run`."""
        insp = self.inspection
        first = next((s.base_lsn for s in insp.segments if s.header_problem is None), 1)
        what = f"message-id {self.key!r}" if self.key is not None else f"the message logged at LSN {self.lsn}"
        head = {
            "event": "trace",
            "message_id": self.key,
            "lsn": self.lsn,
            "log": str(insp.path),
            "first_lsn": first,
            "end_lsn": insp.end_lsn,
            "snapshot_lsn": insp.snapshot_lsn or None,
        }
        snap = f", snapshot at LSN {insp.snapshot_lsn}" if insp.snapshot_lsn else ""
        lines: list[TraceLine] = [
            (f"trace of {what} in {insp.path} (LSN {first}..{insp.end_lsn}{snap})", head)
        ]
        view = self._snapshot_view()
        if view is not None and self.lsn is not None and not self.messages:
            self._seed_from_snapshot(view)
        if not self.order:
            why = f"no record in LSN {first}..{insp.end_lsn} is {what}"
            if first > 1:
                why += (
                    f"; records before LSN {first} were reclaimed, so a message that had left every queue "
                    "by then leaves no trace"
                )
            lines.append((why, {"event": "not-found", "first_lsn": first, "end_lsn": insp.end_lsn}))
            return lines
        for traced in self.order:
            lines.extend(self._message_lines(traced, view))
        lines.append((f"({NOT_LOGGED})", {"event": "note", "text": NOT_LOGGED}))
        return lines

    def _seed_from_snapshot(self, view: tuple[int, dict[int, list[str]]]) -> None:
        """`--lsn` before the log's first record: the messages the snapshot still holds from it."""
        for msg_id in sorted(view[1]):
            traced = self._track(msg_id, None, BasicProperties(), None, 0, reclaimed=True)
            for held in view[1][msg_id]:
                vhost, _, queue = held.partition("\x00")
                traced.vhost = vhost
                traced.live[queue] = None
        # Their removals after the snapshot: a second, short scan for their ids.
        for record in records_containing(
            self.inspection, self.needles, {RT_REMOVED, RT_TX, RT_EVENT}, view[0]
        ):
            self._record(record)

    def _message_lines(
        self, traced: Traced, view: tuple[int, dict[int, list[str]]] | None
    ) -> Iterator[TraceLine]:
        name = msg_name(traced.msg_id)
        if traced.event is not None:
            yield self._published_line(traced)
        else:
            yield (
                f"message {name}: published at LSN {traced.lsn}, before the log's first record (reclaimed)",
                {"event": "published", "message": name, "lsn": traced.lsn, "reclaimed": True},
            )
        lines = traced.lines
        if view is not None and (traced.reclaimed or traced.lsn <= view[0]):
            snapshot_lsn, held = view
            queues = [h.partition("\x00")[2] for h in held.get(traced.msg_id, [])]
            doc = {"event": "snapshot", "message": name, "lsn": snapshot_lsn, "queues": queues}
            text = _line(traced, snapshot_lsn, 0, f"snapshot at LSN {snapshot_lsn}: in {_queues(queues)}", "")
            lines = sorted([*lines, (snapshot_lsn, (text, doc))], key=_by_lsn)
            if traced.reclaimed:
                # What the snapshot says replaces what the copy's publish record listed: removals from
                # before the snapshot may be gone with the original's segment.
                removed_after = {
                    line[1]["queue"]
                    for lsn, line in traced.lines
                    if lsn > snapshot_lsn and "queue" in line[1]
                }
                traced.live = {q: None for q in queues if q not in removed_after}
        for _lsn, line in lines:
            yield line
        queues = list(traced.live)
        state = f"now: in {_queues(queues)}" if queues else "now: in no queue"
        yield f"  {state}", {"event": "state", "message": name, "queues": queues}


def _by_lsn(item: tuple[int, TraceLine]) -> int:
    return item[0]


def _queues(names: Any) -> str:
    listed = list(names)
    if not listed:
        return "no queue"
    return ("queue " if len(listed) == 1 else "queues ") + ", ".join(repr(n) for n in listed)


def _line(traced: Traced, lsn: int, micros: int, text: str, unknown: str = "(time not logged)") -> str:
    stamp = when(micros) or unknown
    return f"  LSN {lsn:<10} {stamp:<27} message {msg_name(traced.msg_id)}: {text}"


def trace_message(inspection: Inspection, key: str | None, lsn: int | None) -> list[TraceLine]:
    """Every record that touched the message with AMQP message-id `key`, or logged at `lsn`."""
    trace = MessageTrace(inspection, key, lsn)
    trace.run()
    return trace.finish()
