"""Records one by one, as an incident tool reads them: `memento inspect --records`, `memento dump`,
`memento verify --decoder`.

Strategy: a record goes from the reader to the output alone: it is described (by the decoder's optional
`describe`, see memento.inspect_decoders.Describer), matched against the filters, written as one line
(text, or one JSON object per line) and dropped, so memory stays flat however long the log is. The only
state kept across records is what a filter needs: the identifiers of messages matched by --message-id
(so that their removals match too) and a count of records that cannot be placed in time.

Time of a record: its own `time` (format version 3), else a time its payload carries (the decoder's
"time_us": OtterMQ's publish time), else none. A record without a time is shown without one, and
--since/--until do not place it: it is left out and counted, and the count and LSN range are printed on
stderr at the end (never dropped silently).

Following a live log (`Tail`): after the last record read, the tail segment is read again from that
offset every poll, without the LOCK and without modifying anything. A record is taken only when its
length, crc and LSN are right: a batch the broker is still writing fails its crc and is read at the next
poll. A seal moves on to the next segment once it exists (a rollover renames it into place complete).
"""

from __future__ import annotations

import json
import os
import re
import struct
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, TextIO

import crc32c
import orjson

from memento.errors import CorruptRecord
from memento.inspect import _RANK, WAL_DIR, Inspection, iter_records
from memento.inspect_decoders import RecordView
from memento.record import (
    FLAG_RELOCATED,
    FRAME,
    LEGACY_FRAME,
    TYPE_NONE,
    TYPE_SEAL,
    Frame,
    Record,
    RecordPosition,
    frame_of,
    original,
)
from memento.recovery import ACCEPTED, CLEAN, REFUSED, Finding
from memento.segment import HEADER_SIZE, MAGIC, SegmentHeader, decode_header, parse_name

ENGINE_TYPE_NAMES: Final = {TYPE_SEAL: "seal"}
PREVIEW: Final = 64  # bytes of a body shown by --payload
TEXT_LIST: Final = 8  # items of a list shown in text output (JSON shows them all)
BATCH: Final = 1024  # records written to the output at once (not when following a live log)
MAX_FINDINGS: Final = 100  # undecodable records named one by one by verify --decoder
_UNITS: Final = {"ms": 1_000, "s": 1_000_000, "m": 60_000_000, "h": 3_600_000_000, "d": 86_400_000_000}
_RELATIVE: Final = re.compile(r"(now)?-?(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_LEN: Final = struct.Struct("<I")


FRAMES: Final = (FRAME, LEGACY_FRAME)  # every layout a headerless file may hold, the newest first

Describe = Callable[[RecordView], dict[str, Any]]
Split = Callable[[RecordView], tuple[dict[str, Any], dict[str, Any]] | None]


class BadSelection(ValueError):
    """A filter value that does not parse (the message says which and why)."""


# -- time -----------------------------------------------------------------------------------------------


class IsoClock:
    """Microseconds since the epoch as ISO 8601 UTC with milliseconds; the formatted second and the last
    millisecond are cached, since consecutive records mostly share them."""

    __slots__ = ("_last", "_ms", "_prefix", "_quoted", "_quoted_ms", "_second")

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""
        self._ms = -1
        self._last = ""
        self._quoted_ms = -1
        self._quoted = ""

    def quoted(self, us: int) -> str:
        """The time as a JSON string (cached as the text is)."""
        ms = us // 1000
        if ms != self._quoted_ms:
            self._quoted = f'"{self(us)}"'
            self._quoted_ms = ms
        return self._quoted

    def __call__(self, us: int) -> str:
        ms = us // 1000
        if ms == self._ms:
            return self._last
        second, rest = divmod(ms, 1000)
        if second != self._second:
            self._second = second
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        self._ms = ms
        self._last = f"{self._prefix}.{rest:03d}Z"
        return self._last


def parse_when(text: str, *, now_us: int, last_us: Callable[[], int | None]) -> int:
    """A --since/--until value as microseconds since the epoch.

    ISO 8601 (UTC unless it carries an offset), or relative: '10s', '5m', '2h', '1d', '250ms' before the
    time of the log's last timed record (`last_us`), or 'now-10s' before the wall clock."""
    match = _RELATIVE.fullmatch(text.strip())
    if match is not None:
        delta = int(float(match.group(2)) * _UNITS[match.group(3)])
        if match.group(1):
            return now_us - delta
        base = last_us()
        if base is None:
            raise BadSelection(
                f"{text!r}: no record of the log has a time to count back from (use 'now-{text}')"
            )
        return base - delta
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise BadSelection(
            f"{text!r}: expected an ISO 8601 time (2026-12-07T06:17:00Z) or a duration (10s, 5m, now-1h)"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return (when - _EPOCH) // _ONE_US


_ONE_US: Final = datetime(1970, 1, 1, 0, 0, 0, 1, tzinfo=UTC) - _EPOCH


# -- describing and selecting ----------------------------------------------------------------------------


def described(describe: Describe, record: Record) -> dict[str, Any]:
    """The decoder's description of `record` as first written, or {"error": ...} when it does not decode."""
    view = record
    if record.flags & FLAG_RELOCATED:
        origin, payload = original(record)
        view = record._replace(lsn=origin or record.lsn, payload=payload)
    try:
        return describe(view)
    except Exception as exc:  # any failure to decode is the record's, not the tool's
        return {"error": f"{type(exc).__name__}: {exc}"}


def _parts(desc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """A description and the descriptions of its inner records."""
    yield desc
    inner = desc.get("records")
    if isinstance(inner, list):
        for item in inner:
            if isinstance(item, dict):
                yield from _parts(item)


@dataclass(slots=True)
class Selection:
    """The filters of `inspect --records` and `dump`; records must pass all that are set."""

    from_lsn: int = 0
    to_lsn: int | None = None
    since_us: int | None = None
    until_us: int | None = None
    type_codes: frozenset[int] = frozenset()
    type_names: frozenset[str] = frozenset()
    queues: frozenset[str] = frozenset()
    message_ids: frozenset[str] = frozenset()
    tracked: set[str] = field(default_factory=set)  # ids of records matched by --message-id
    untimed: int = 0  # records left out by --since/--until because they have no time
    untimed_first: int = 0
    untimed_last: int = 0

    @property
    def needs_description(self) -> bool:
        """Whether a filter reads what the decoder says of a record."""
        return bool(self.type_names or self.queues or self.message_ids)

    @property
    def by_time(self) -> bool:
        """Whether --since or --until is set."""
        return self.since_us is not None or self.until_us is not None

    def matches(self, record: Record, desc: dict[str, Any] | None, time_us: int) -> bool:
        """Whether the record passes; the --message-id check runs first since it follows a message from
        its publish to its removals whatever the other filters say."""
        if self.message_ids and not self._touches_message(desc):
            return False
        if self.type_codes or self.type_names:
            name = desc.get("type") if desc is not None else None
            if record.type not in self.type_codes and name not in self.type_names:
                return False
        if self.queues and not self._touches_queue(desc):
            return False
        if self.since_us is not None or self.until_us is not None:
            if not time_us:
                if not self.untimed:
                    self.untimed_first = record.lsn
                self.untimed += 1
                self.untimed_last = record.lsn
                return False
            if self.since_us is not None and time_us < self.since_us:
                return False
            if self.until_us is not None and time_us > self.until_us:
                return False
        return True

    def _touches_queue(self, desc: dict[str, Any] | None) -> bool:
        if desc is None:
            return False
        return any(q in self.queues for part in _parts(desc) for q in part.get("queues") or ())

    def _touches_message(self, desc: dict[str, Any] | None) -> bool:
        if desc is None:
            return False
        hit = False
        for part in _parts(desc):
            ids = part.get("ids") or ()
            if part.get("message_id") in self.message_ids:
                self.tracked.update(ids)
                hit = True
            elif ids and not self.tracked.isdisjoint(ids):
                hit = True
        return hit

    def untimed_note(self) -> str | None:
        """The stderr line saying which records --since/--until could not place, if any."""
        if not self.untimed:
            return None
        return (
            f"{self.untimed} records (LSN {self.untimed_first}..{self.untimed_last}) match the other filters "
            "but have no time: --since/--until cannot place them, so they are not shown "
            "(select them with --from-lsn/--to-lsn)"
        )


# -- output ----------------------------------------------------------------------------------------------


def escaped(raw: bytes | bytearray | memoryview, limit: int = PREVIEW) -> str:
    """The first `limit` bytes as printable ASCII with Python escapes, '...' when cut."""
    head = bytes(raw[:limit])
    return repr(head)[2:-1] + ("..." if len(raw) > limit else "")


# JSON for listings. The standard library's encoder (built once: json.dumps would build it on every call)
# spends about 1.8 us on a record's small own part; orjson about 0.2 us, a quarter of a listing's time per
# record. orjson is used only where its output is the standard encoder's: it writes non-ASCII as UTF-8
# (listings are ASCII: such documents go to the standard encoder), and it refuses keys that are not str and
# integers beyond 64 bits (the standard encoder takes them). Datetimes and dataclasses go to `default`
# (str) in both. Floats differ in form only (orjson writes 1e-7 for 1e-07), except that JSON has no NaN or
# infinity: orjson writes null where the standard encoder wrote the invalid NaN/Infinity.
_std_json_encode: Callable[[Any], str] = json.JSONEncoder(
    separators=(",", ":"), check_circular=False, default=str
).encode
_ORJSON_OPTIONS: Final = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
_orjson_dumps = orjson.dumps


def _json_encode(doc: Any) -> str:
    try:
        out = _orjson_dumps(doc, default=str, option=_ORJSON_OPTIONS)
    except TypeError:  # orjson.JSONEncodeError: a key that is not str, an int beyond 64 bits
        return _std_json_encode(doc)
    if out.isascii():
        return out.decode("ascii")
    return _std_json_encode(doc)


_NEEDS_QUOTES: Final = re.compile(r'[\s="{},]').search
_NO_TIME: Final = f"{'-':<24}"
_NOT_SHOWN: Final = frozenset(("type", "time_us", "body"))
_HEAD_KEYS: Final = frozenset(("lsn", "time", "type", "type_code", "segment", "offset", "size"))


def _json_line(doc: dict[str, Any]) -> str:
    return _json_encode(doc)


_NAMES: dict[str, str] = {}


def _json_name(name: str) -> str:
    """A type name as a JSON string (cached: a log has few)."""
    found = _NAMES.get(name)
    if found is None:
        found = _NAMES[name] = json.dumps(name)
    return found


_TEXTS: dict[str, str] = {}  # strings as text shows them: a log repeats the same names over and over


def _text(value: Any) -> str:
    kind = type(value)
    if kind is str:
        if value.isalnum():  # ids, numbers, names: nothing to quote, and too many distinct ones to cache
            return value  # type: ignore[no-any-return]
        shown = _TEXTS.get(value)
        if shown is None:
            shown = value if value and not _NEEDS_QUOTES(value) else json.dumps(value)
            if len(_TEXTS) > 4096:
                _TEXTS.clear()
            _TEXTS[value] = shown
        return shown
    if kind is bool:
        return "true" if value else "false"
    if kind is list:
        if len(value) == 1:
            return _text(value[0])
        shown = ",".join(_text(v) for v in value[:TEXT_LIST])
        return shown + (f",...(+{len(value) - TEXT_LIST})" if len(value) > TEXT_LIST else "")
    if kind is dict:
        return "{" + ",".join(f"{k}={_text(v)}" for k, v in value.items()) + "}"
    return str(value)


class Printer:
    """Writes records one per line: text, or JSON objects (JSON lines)."""

    def __init__(
        self,
        out: TextIO,
        *,
        as_json: bool,
        decode: bool,
        payload: bool,
        flush_each: bool = False,
        batch: bool = False,
    ) -> None:
        self.out = out
        self.as_json = as_json
        self.decode = decode
        self.payload = payload
        self.flush_each = flush_each
        self.iso = IsoClock()
        self.written = 0
        self._batch: list[str] = []
        self._batch_size = BATCH if batch and not flush_each else 1
        # id(head) -> the shared heads of split descriptions, formatted (see `_head`)
        self._heads: dict[int, tuple[dict[str, Any], str, str, str, str]] = {}

    def _emit(self, text: str) -> None:
        """Write one record's text: at once (flushed when following a live log), or with `batch` in
        batches that `flush` completes (one write per BATCH records costs a fraction of one per record)."""
        self.written += 1
        if self._batch_size == 1:
            self.out.write(text)
            if self.flush_each:
                self.out.flush()
            return
        batch = self._batch
        batch.append(text)
        if len(batch) >= self._batch_size:
            self.out.write("".join(batch))
            batch.clear()

    def flush(self) -> None:
        """Write what is batched and flush the output (a listing calls it when it ends, however it ends)."""
        if self._batch:
            text = "".join(self._batch)
            self._batch.clear()
            self.out.write(text)
        self.out.flush()

    def _shown(self, desc: dict[str, Any], doc: dict[str, Any]) -> None:
        """Merge what a description shows into `doc` (its "type" is already there)."""
        doc.update(desc)
        doc["type"] = desc.get("type") or doc.get("type")
        doc.pop("time_us", None)
        body = doc.pop("body", None)
        if body is not None and self.payload:
            doc["body"] = escaped(body)
        inner = doc.get("records")
        if type(inner) is list:
            doc["records"] = [self._inner(item) for item in inner if type(item) is dict]

    def _inner(self, desc: dict[str, Any]) -> dict[str, Any]:
        item: dict[str, Any] = {"type": None}
        self._shown(desc, item)
        return item

    def _format_head(self, head: dict[str, Any]) -> tuple[dict[str, Any], str, str, str, str]:
        """A shared description head formatted once: (head, its JSON members after a comma, its text
        fields, the JSON type name member with the type code's key, the type name padded for text)."""
        if len(self._heads) >= 4096:
            self._heads.clear()
        shown = {k: v for k, v in head.items() if k not in _NOT_SHOWN}
        members = _json_encode(shown)[1:-1]
        fields = " ".join([f"{k}={_text(v)}" for k, v in shown.items() if v is not None])
        name = str(head.get("type"))
        json_type = f',"type":{_json_name(name)},"type_code":'
        cached = (head, "," + members if members else "", fields, json_type, f"{name:<18}")
        self._heads[id(head)] = cached
        return cached

    def write_split(self, record: Record, head: dict[str, Any], rest: dict[str, Any], time_us: int) -> None:
        """Write one record with --decode from a split description (`Describer.describe_split`): what
        `write` writes for head + rest, the head formatted once for all the records sharing it. Only for
        a record without flags and without --payload, whose head names its type. The hot path of a
        listing: `_emit` is inlined."""
        cached = self._heads.get(id(head))
        if cached is None or cached[0] is not head:
            cached = self._format_head(head)
        _head, members, fields, json_type, text_name = cached
        lsn, rtype, _flags, payload, position, _when = record
        if self.as_json:
            rest.pop("time_us", None)
            rest.pop("body", None)
            tail = _json_encode(rest)
            text = (
                f'{{"lsn":{lsn}{json_type}{rtype},"time":{self.iso.quoted(time_us) if time_us else "null"},'
                f'"segment":{position[0]},"offset":{position[1]},"size":{len(payload)}{members}'
                f"{',' + tail[1:] if len(tail) > 2 else '}'}\n"
            )
        else:
            parts = [fields] if fields else []
            for k, v in rest.items():
                if v is None or k in _NOT_SHOWN:
                    continue
                kind = type(v)
                if kind is int:
                    parts.append(f"{k}={v}")
                elif kind is list and len(v) == 1 and type(v[0]) is str:
                    parts.append(f"{k}={_text(v[0])}")  # a publish's or a removal's one id
                else:
                    parts.append(f"{k}={_text(v)}")
            own = " ".join(parts)
            # As write's line, without format specs (a third of this line's time): a time is always 24
            # characters wide, and rjust pads the LSN as :>9 does.
            text = (
                f"{str(lsn).rjust(9)}  {self.iso(time_us) if time_us else _NO_TIME}  {text_name}"
                f"  {position[0]}:{position[1]}  {len(payload)} B  {own}\n"
            )
        if self._batch_size == 1:
            self._emit(text)
            return
        self.written += 1
        batch = self._batch
        batch.append(text)
        if len(batch) >= self._batch_size:
            self.out.write("".join(batch))
            batch.clear()

    def write(self, record: Record, desc: dict[str, Any] | None, time_us: int) -> None:
        """Write one record (`desc` None: no decoder; `time_us` 0: no time). `desc` may be changed."""
        rtype = record.type
        position = record.position
        name = ENGINE_TYPE_NAMES.get(rtype) or (desc.get("type") if desc is not None else None)
        simple = (
            self.decode
            and desc is not None
            and not record.flags
            and not self.payload
            and "error" not in desc
            and "records" not in desc
        )
        if simple and not self.as_json:
            assert desc is not None
            fields = " ".join(
                [f"{k}={_text(v)}" for k, v in desc.items() if v is not None and k not in _NOT_SHOWN]
            )
            self._emit(
                f"{record.lsn:>9}  {self.iso(time_us) if time_us else '-':<24}  {name or str(rtype):<18}"
                f"  {position.segment}:{position.offset}  {len(record.payload)} B  {fields}\n"
            )
            return
        if simple:
            assert desc is not None
            # The common case, serialised without building a merged dict: the record's own fields as
            # text, then the description encoded as it is.
            desc.pop("type", None)
            desc.pop("time_us", None)
            desc.pop("body", None)
            tail = _json_encode(desc)
            when = f'"{self.iso(time_us)}"' if time_us else "null"
            self._emit(
                f'{{"lsn":{record.lsn},"type":{_json_name(name or str(rtype))},"type_code":{rtype},'
                f'"time":{when},"segment":{position.segment},"offset":{position.offset},'
                f'"size":{len(record.payload)}{"," + tail[1:] if len(tail) > 2 else "}"}\n'
            )
            return
        doc: dict[str, Any] = {
            "lsn": record.lsn,
            "type": name or str(rtype),
            "type_code": rtype,
            "time": self.iso(time_us) if time_us else None,
            "segment": position.segment,
            "offset": position.offset,
            "size": len(record.payload),
        }
        flags = record.flags
        if flags:
            doc["flags"] = flags
            if flags & FLAG_RELOCATED:
                doc["origin_lsn"] = original(record)[0] or None
        if desc is not None:
            if "error" in desc:
                doc["error"] = desc["error"]
            elif self.decode:
                self._shown(desc, doc)
        if self.payload and (desc is None or not self.decode or "error" in desc):
            doc["payload"] = escaped(original(record)[1])
        self._emit(_json_line(doc) + "\n" if self.as_json else self._line(doc))

    def _line(self, doc: dict[str, Any]) -> str:
        head = (
            f"{doc['lsn']:>9}  {doc['time'] or '-':<24}  {doc['type']:<18}"
            f"  {doc['segment']}:{doc['offset']}  {doc['size']} B"
        )
        rest = []
        inner: list[dict[str, Any]] = []
        for key, value in doc.items():
            if value is None or key in _HEAD_KEYS:
                continue
            if key == "records" and type(value) is list:
                inner = value
                continue
            rest.append(f"{key}={_text(value)}")
        text = head + "  " + " ".join(rest) + "\n" if rest else head + "\n"
        for item in inner:
            fields = " ".join(
                f"{k}={_text(v)}" for k, v in item.items() if k not in ("type", "records") and v is not None
            )
            text += f"{'':>11}- {item.get('type')}  {fields}\n"
        return text


class Lister:
    """Describe, select and print records one at a time."""

    def __init__(
        self, printer: Printer, selection: Selection, describe: Describe | None, split: Split | None = None
    ) -> None:
        self.printer = printer
        self.selection = selection
        self.describe = describe
        self.last_lsn = 0
        active = (
            selection.type_codes
            or selection.type_names
            or selection.queues
            or selection.message_ids
            or selection.by_time
        )
        self._matches = selection.matches if active else None
        # Split descriptions when they are only printed: no filter reads them, and no --payload.
        usable = printer.decode and not printer.payload and not selection.needs_description
        self._split = split if usable and describe is not None else None

    def feed(self, record: Record) -> None:
        """Handle one record."""
        self.last_lsn = record.lsn
        split = self._split
        if split is not None and not record.flags:
            try:
                parts = split(record)
            except Exception:  # not decodable: described (as an error) below
                parts = None
            if parts is not None:
                head, rest = parts
                time_us = record.time or rest.get("time_us") or 0
                matches = self._matches
                if matches is None or matches(record, None, time_us):
                    self.printer.write_split(record, head, rest, time_us)
                return
        desc = None
        describe = self.describe
        if describe is not None:
            if record.flags & FLAG_RELOCATED:
                desc = described(describe, record)
            else:
                try:
                    desc = describe(record)
                except Exception as exc:  # any failure to decode is the record's, not the tool's
                    desc = {"error": f"{type(exc).__name__}: {exc}"}
        time_us = record.time
        if not time_us and desc is not None:
            time_us = desc.get("time_us") or 0
        matches = self._matches
        if matches is None or matches(record, desc, time_us):
            self.printer.write(record, desc, time_us)


def last_time(insp: Inspection, describe: Describe | None) -> int | None:
    """The newest time among the records of the last segment that has a timed record (for relative
    --since/--until), or None when no record has one."""
    for scan in reversed(insp.scans):
        if scan.header is None or (scan.scanned and not scan.count) or scan.base_lsn > insp.end_lsn:
            continue
        newest = 0
        try:
            for record in iter_records(insp, scan.base_lsn - 1):
                if record.position.segment != scan.seq:
                    break
                stamp = record.time
                if not stamp and describe is not None:
                    stamp = described(describe, record).get("time_us") or 0
                newest = max(newest, stamp)
        except CorruptRecord:
            pass  # the times read before the damage count; the listing reports the damage
        if newest:
            return newest
    return None


# -- verify --decoder -----------------------------------------------------------------------------------


def undecodable(
    insp: Inspection, describe: Describe, progress: Callable[[str], None] | None = None
) -> list[Finding]:
    """A finding for each record up to the log's end whose crc is right but whose payload the decoder
    cannot decode (the first MAX_FINDINGS by name, then one finding counting the rest)."""
    names = {scan.seq: scan.name for scan in insp.scans}
    found: list[Finding] = []
    more = 0
    for record in iter_records(insp, 0, None, progress=progress):
        desc = described(describe, record)
        if "error" not in desc:
            continue
        if len(found) == MAX_FINDINGS:
            more += 1
            continue
        seg = names.get(record.position.segment, str(record.position.segment))
        found.append(
            Finding(
                "undecodable",
                REFUSED,
                seg,
                record.position.offset,
                record.lsn,
                f"{seg} offset {record.position.offset} LSN {record.lsn} (type {record.type}): "
                f"valid checksum but the payload does not decode: {desc['error']}",
            )
        )
    if more:
        found.append(Finding("undecodable", REFUSED, "", -1, -1, f"and {more} more undecodable records"))
    return found


def add_findings(insp: Inspection, findings: list[Finding]) -> None:
    """Add findings to an inspection and raise its status to match."""
    insp.findings.extend(findings)
    insp.status = max(
        (f.severity for f in insp.findings if f.severity != ACCEPTED), key=_RANK.__getitem__, default=CLEAN
    )


# -- reading raw bytes: a segment or quarantine file, the live tail --------------------------------------


@dataclass(slots=True)
class Stop:
    """Where parsing stopped and why ('end of data' when it reached zeros or the end of the file)."""

    offset: int
    reason: str
    clean: bool


def parse(
    data: bytes, start: int, seq: int, expected_lsn: int | None, base_offset: int, frame: Frame | None
) -> tuple[list[Record], Stop]:
    """Every valid record of data[start:], checked as recovery does (length, crc, LSN following the
    previous one; the first one's LSN is `expected_lsn` when given), and where the bytes stop parsing.
    Positions are reported as base_offset + the offset in `data`. `frame` None (bytes without their
    segment header): every layout is tried and the one that reads the most records wins (a wrong layout
    fails the first record's crc)."""
    best: tuple[list[Record], Stop] | None = None
    for candidate in (frame,) if frame is not None else FRAMES:
        stop: list[Stop] = []
        records = list(records_from(data, start, seq, expected_lsn, base_offset, stop, candidate))
        if best is None or len(records) > len(best[0]):
            best = records, stop[0]
    assert best is not None
    return best


def records_from(
    data: bytes,
    start: int,
    seq: int,
    expected: int | None,
    base_offset: int,
    stop: list[Stop],
    frame: Frame,
) -> Iterator[Record]:
    """The valid records of data[start:] one by one (see `parse`); at their end `stop` gets where and why."""
    view = memoryview(data)
    crc = crc32c.crc32c
    unpack = frame.unpack
    head_size = frame.head_size
    min_len = frame.min_len
    size = len(data)
    pos = start
    try:
        while True:
            if pos + 4 > size:
                cut = any(data[pos:])
                why = "record header cut by the end of the file" if cut else "end of file"
                stop.append(Stop(base_offset + pos, why, not cut))
                return
            (length,) = _LEN.unpack_from(data, pos)
            if length == 0:
                stop.append(Stop(base_offset + pos, "end of data (zeros)", True))
                return
            if pos + head_size > size:
                stop.append(Stop(base_offset + pos, "record header cut by the end of the file", False))
                return
            _len, stored, rtype, flags, _res, lsn, when = unpack(data, pos)
            end = pos + 8 + length
            reason: str | None = None
            if length < min_len:
                reason = f"record length {length} is too small"
            elif end > size:
                reason = f"record length {length} runs past the end of the file"
            elif crc(view[pos + 8 : end]) != stored:
                reason = "record checksum mismatch"
            elif expected is not None and lsn != expected:
                reason = f"record has LSN {lsn} where {expected} was expected"
            elif rtype == TYPE_NONE:
                reason = "record of type 0"
            if reason is not None:
                stop.append(Stop(base_offset + pos, reason, False))
                return
            if rtype == TYPE_SEAL:
                stop.append(Stop(base_offset + pos, f"seal (the next segment starts at LSN {lsn})", True))
                return
            position = RecordPosition(seq, base_offset + pos)
            yield Record(lsn, rtype, flags, data[pos + head_size : end], position, when)
            expected = lsn + 1
            pos = end
    finally:
        view.release()


@dataclass(frozen=True, slots=True)
class FileInfo:
    """What `dump` knows of a file before its records: a segment header, or a quarantine file's origin."""

    seq: int
    start: int  # offset in the file of the first record
    base_offset: int  # offset in the original segment of the file's byte 0
    expected_lsn: int | None
    header: SegmentHeader | None
    note: str
    frame: Frame | None = None  # None: not known (no header), every layout is tried


_QUARANTINED_TAIL: Final = re.compile(r"^(.+\.wal)\.(\d+)\.[0-9TZ]+\.bin$")
_QUARANTINED_WHOLE: Final = re.compile(r"^(.+\.wal)\.[0-9TZ]+$")


def file_info(path: Path, data: bytes) -> FileInfo:
    """How to read `path`: a segment (header first, also one moved whole to quarantine) or quarantined
    bytes cut from a segment (no header: records from offset 0, positions in the original segment)."""
    name = path.name
    if data[: len(MAGIC)] == MAGIC:
        header = decode_header(data)
        origin = _QUARANTINED_WHOLE.match(name)
        parsed = parse_name(origin.group(1) if origin else name)
        if isinstance(header, str):
            seq = parsed[0] if parsed else 0
            base = parsed[1] if parsed else None
            return FileInfo(seq, HEADER_SIZE, 0, base, None, f"segment header is damaged: {header}")
        note = f"segment seq {header.seq}, base LSN {header.base_lsn}, version {header.version}"
        frame = frame_of(header.version)
        return FileInfo(header.seq, HEADER_SIZE, 0, header.base_lsn, header, note, frame)
    tail = _QUARANTINED_TAIL.match(name)
    if tail is not None:
        parsed = parse_name(tail.group(1))
        offset = int(tail.group(2))
        seq = parsed[0] if parsed else 0
        note = f"quarantined bytes of {tail.group(1)} from offset {offset} (no header)"
        return FileInfo(seq, 0, offset, None, None, note)
    return FileInfo(0, 0, 0, None, None, "no segment header: records read from offset 0")


class Tail:
    """Reads records appended to a live log after a known position (see the module docstring)."""

    CHUNK: Final = 1 << 20
    STUCK_AFTER: Final = 5.0  # seconds the same bytes may fail to parse before a warning

    def __init__(
        self, wal: Path, seq: int, offset: int, next_lsn: int | None, warn: Callable[[str], None]
    ) -> None:
        self.wal = wal
        self.seq = seq
        self.offset = offset
        self.next_lsn = next_lsn
        self.warn = warn
        self._fd = -1
        self._name = ""
        self._frame = LEGACY_FRAME
        self._stuck_since = 0.0
        self._warned = False

    def close(self) -> None:
        """Close the segment file held open."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def _open(self) -> bool:
        for name in os.listdir(self.wal):
            parsed = parse_name(name)
            if parsed is not None and parsed[0] == self.seq:
                try:
                    fd = os.open(self.wal / name, os.O_RDONLY)
                except FileNotFoundError:
                    return False
                header = decode_header(os.pread(fd, HEADER_SIZE, 0))
                if isinstance(header, str):  # a segment is renamed into place whole: this is damage
                    os.close(fd)
                    self._note_stuck(Stop(0, f"segment header: {header}", False))
                    return False
                self._fd, self._name, self._frame = fd, name, frame_of(header.version)
                if self.next_lsn is None:
                    self.next_lsn = header.base_lsn
                return True
        return False

    def poll(self, limit: int = 10_000) -> list[Record]:
        """Records appended since the last poll (at most about `limit`), in order."""
        out: list[Record] = []
        while len(out) < limit:
            if self._fd < 0 and not self._open():
                return out
            data = os.pread(self._fd, self.CHUNK, self.offset)
            stop: list[Stop] = []
            records = list(records_from(data, 0, self.seq, self.next_lsn, self.offset, stop, self._frame))
            end = stop[0]
            if records:
                last = records[-1]
                self.offset = last.position.offset + self._frame.head_size + len(last.payload)
                self.next_lsn = last.lsn + 1
                out.extend(records)
                self._stuck_since = 0.0
            if end.reason.startswith("seal"):
                self.close()
                self.seq += 1
                self.offset = HEADER_SIZE
                continue
            if end.clean or len(data) < self.CHUNK:
                if not end.clean and not records:
                    self._note_stuck(end)
                return out
            if records:
                continue  # the chunk ended inside a record: read on from it
            (length,) = _LEN.unpack_from(data, 0)
            if 8 + length <= self.CHUNK:  # a damaged record, or one still being written
                self._note_stuck(end)
                return out
            # A record larger than a chunk: read it whole.
            data = os.pread(self._fd, 8 + length, self.offset)
            big = list(records_from(data, 0, self.seq, self.next_lsn, self.offset, [], self._frame))
            if not big:
                self._note_stuck(end)
                return out
            out.extend(big)
            self.offset += 8 + length
            self.next_lsn = big[0].lsn + 1
        return out

    def _note_stuck(self, end: Stop) -> None:
        now = time.monotonic()
        if not self._stuck_since:
            self._stuck_since = now
        elif not self._warned and now - self._stuck_since > self.STUCK_AFTER:
            self._warned = True
            self.warn(
                f"{self._name} offset {end.offset}: waiting for LSN {self.next_lsn} for "
                f"{self.STUCK_AFTER:.0f} s: {end.reason} (a write in progress, or damage)"
            )


def tail_start(insp: Inspection) -> tuple[int, int, int] | None:
    """(segment seq, offset, next LSN) where following the log continues after `iter_records` ends; None
    when the log has no segment yet (the first one is awaited)."""
    scans = [s for s in insp.scans if s.header is not None and s.scanned]
    if not scans:
        return None
    last = scans[-1]
    if last.sealed:
        return last.seq + 1, HEADER_SIZE, last.seal_lsn
    return last.seq, last.data_end, last.last_lsn + 1


def write_stderr(message: str) -> None:
    """One `memento: ...` line on stderr."""
    print(f"memento: {message}", file=sys.stderr, flush=True)


__all__ = [
    "WAL_DIR",
    "BadSelection",
    "Lister",
    "Printer",
    "Selection",
    "Tail",
    "file_info",
    "last_time",
    "parse",
    "parse_when",
    "tail_start",
    "undecodable",
]
