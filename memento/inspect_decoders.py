"""Decoders for `memento replay`: what turns a stream of records into a projection a human can read.

Strategy: Memento knows nothing of what its records mean, so the application registers a decoder
(`register("ottermq", factory)`, or an entry point in the group `memento.decoders`, or
`--decoder module:callable` on the command line). A decoder receives the snapshot it starts from (when
one is used) and then every record in LSN order, and finally returns its projection as JSON-able data.
The generic decoder, always registered as "generic", counts records by type and notes the LSN range.

A decoder may also describe single records for `memento inspect --records`, `dump` and
`verify --decoder` (see `Describer`): memento then shows what a record means without knowing it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any, Protocol

ENTRY_POINT_GROUP = "memento.decoders"


class RecordView(Protocol):
    """What a decoder may read of a record."""

    @property
    def lsn(self) -> int: ...

    @property
    def type(self) -> int: ...

    @property
    def flags(self) -> int: ...

    @property
    def payload(self) -> bytes: ...

    @property
    def time(self) -> int:
        """When it was appended, in microseconds since the epoch (format 3); 0 when not known."""
        ...


class Decoder(Protocol):
    """Builds a projection from a snapshot (optional) and the records after it."""

    def load_snapshot(self, lsn: int, state: bytes) -> None:
        """Start from the snapshot state saved at `lsn` (called at most once, before any record)."""

    def apply(self, record: RecordView) -> None:
        """Apply one record; records arrive in LSN order."""

    def projection(self) -> dict[str, Any]:
        """The projection built so far, as JSON-able data."""


class Describer(Protocol):
    """The optional per-record side of a decoder (`describe`, and optionally `type_names`).

    `describe(record)` returns what the record means as a flat dict, and raises (any exception) when its
    payload does not decode: `verify --decoder` reports such a record as damage. It is given the record as
    first written: a compaction copy arrives with its origin LSN and without the origin prefix. Keys memento
    itself reads (all optional but "type"):
    - "type": the record type's name ("publish", "queue.declared"...), shown instead of its number;
    - "time_us": a time the payload carries (microseconds since the epoch), used when the record has none;
    - "queues": names the record touches (matched by `--queue`);
    - "message_id": the application's message identifier (matched by `--message-id`);
    - "ids": identifiers of what the record creates or removes: a later record sharing one with a record
      matched by `--message-id` matches too (so a message's removal follows its publish);
    - "records": the descriptions of inner records (a transaction), matched and shown one by one.
    - "body": the record's body (bytes or memoryview), shown only with `--payload`, cut and escaped.
    Every other value is shown as is and must be JSON-able. The caller may change the returned dict (it
    removes what it does not show), so return a new one each time; values may be shared.
    `type_names()` (optional) lists every name `describe` may give as "type", so that `--type NAME`
    can refuse a name that never matches.

    `describe_split(record)` (optional, for speed: a listing formats each distinct head once) returns
    `describe(record)` in two dicts, or None when it does not split this record: a head, the very same
    object for every record it describes alike (a publish's route, a removal's queue; it holds "type"),
    which nobody changes, and the record's own part; the description is the head's items followed by the
    own part's ("body" may be left out: it is used only without --payload; so may "time_us" when the
    record has its own time, which a listing shows instead). It raises as `describe` does.
    """

    def describe(self, record: RecordView) -> dict[str, Any]:
        """What one record means (raises when its payload does not decode)."""


DecoderFactory = Callable[[], Decoder]


class DecoderError(Exception):
    """A decoder name or `module:callable` spec that does not resolve."""


class GenericDecoder:
    """Counts records by type and keeps the LSN range; knows nothing of what payloads mean."""

    __slots__ = ("_bytes", "_counts", "_first", "_last", "_snapshot_lsn", "_snapshot_size")

    def __init__(self) -> None:
        self._counts: dict[int, int] = {}
        self._bytes = 0
        self._first: int | None = None
        self._last: int | None = None
        self._snapshot_lsn: int | None = None
        self._snapshot_size = 0

    def load_snapshot(self, lsn: int, state: bytes) -> None:
        """Note the snapshot; its state is opaque to this decoder."""
        self._snapshot_lsn = lsn
        self._snapshot_size = len(state)

    def apply(self, record: RecordView) -> None:
        """Count the record."""
        self._counts[record.type] = self._counts.get(record.type, 0) + 1
        self._bytes += len(record.payload)
        if self._first is None:
            self._first = record.lsn
        self._last = record.lsn

    def projection(self) -> dict[str, Any]:
        """Records by type, payload bytes, the LSN range replayed and the snapshot started from."""
        return {
            "snapshot_lsn": self._snapshot_lsn,
            "snapshot_bytes": self._snapshot_size,
            "first_lsn": self._first,
            "last_lsn": self._last,
            "records": sum(self._counts.values()),
            "payload_bytes": self._bytes,
            "records_by_type": {str(t): n for t, n in sorted(self._counts.items())},
        }


_registry: dict[str, DecoderFactory] = {"generic": GenericDecoder}


def describer(decoder: object) -> Callable[[RecordView], dict[str, Any]] | None:
    """The decoder's `describe` method, or None when it has none."""
    method = getattr(decoder, "describe", None)
    return method if callable(method) else None


def splitter(decoder: object) -> Callable[[RecordView], tuple[dict[str, Any], dict[str, Any]] | None] | None:
    """The decoder's `describe_split` method, or None when it has none."""
    method = getattr(decoder, "describe_split", None)
    return method if callable(method) else None


def type_names(decoder: object) -> frozenset[str] | None:
    """The record type names the decoder's `describe` may give, or None when it does not say."""
    method = getattr(decoder, "type_names", None)
    return frozenset(method()) if callable(method) else None


def register(name: str, factory: DecoderFactory) -> None:
    """Make `factory` available to `memento replay --decoder NAME`."""
    _registry[name] = factory


def names() -> list[str]:
    """Every decoder name known: registered ones and those of installed entry points."""
    found = set(_registry)
    found.update(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))
    return sorted(found)


def resolve(spec: str) -> DecoderFactory:
    """Find a decoder factory by registered name, entry-point name or `module:callable`."""
    if spec in _registry:
        return _registry[spec]
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == spec:
            factory: DecoderFactory = ep.load()
            return factory
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise DecoderError(f"unknown decoder {spec!r} (known: {', '.join(names())}; or give module:callable)")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise DecoderError(f"decoder {spec!r}: cannot import {module_name}: {exc}") from None
    target: Any = module
    for part in attr.split("."):
        target = getattr(target, part, None)
        if target is None:
            raise DecoderError(f"decoder {spec!r}: {module_name} has no attribute {attr}")
    if not callable(target):
        raise DecoderError(f"decoder {spec!r} is not callable")
    resolved: DecoderFactory = target
    return resolved
