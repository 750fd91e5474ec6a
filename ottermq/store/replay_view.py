"""The replay side of `memento replay --decoder ottermq` (ottermq.store.decoder.OtterMQDecoder): a real
(socket-less) Broker rebuilt with the same replay code the store uses (`ottermq.store.replay`), so what it
prints is what the broker would hold at that LSN; message contents are never read. Kept apart from the
record descriptions so that a record listing does not import the broker."""

from __future__ import annotations

from typing import Any

from memento.inspect_decoders import RecordView
from memento.record import FLAG_RELOCATED
from ottermq.broker.apply import apply_record
from ottermq.broker.broker import Broker
from ottermq.broker.journal import MemoryJournal
from ottermq.store.codec import decode
from ottermq.store.contents import LogContents
from ottermq.store.holders import (
    Holder,
    ReadRecord,
    follow_copies,
    note_copy,
    queue_holders,
    queue_stats,
    record_loc,
)
from ottermq.store.replay import ReplayError, load_queues
from ottermq.store.snapshot import decode_snapshot


def _no_content(msg_id: int, loc: int) -> tuple[str, str, bytes, bytes]:
    """The decoder never delivers, so contents are never read."""
    raise LookupError("the replay decoder does not read message contents")


class ReplayView:
    """A snapshot and the records after it, applied to a Broker; the projection memento prints."""

    def __init__(self) -> None:
        self.broker = Broker(journal=MemoryJournal(), defaults=False, contents=LogContents(_no_content))
        self._snapshot_lsn: int | None = None
        self._last_lsn = 0
        self._records = 0
        self._copies: dict[int, int] = {}  # origin LSN -> loc of its newest compaction copy

    def load_snapshot(self, lsn: int, state: bytes) -> None:
        """Start from the snapshot's entities and message indexes."""
        snapshot = decode_snapshot(state)
        for event in snapshot.events:
            self.broker.apply(event)
        load_queues(self.broker, snapshot.queues)
        self._snapshot_lsn = lsn
        self._last_lsn = lsn

    def apply(self, record: RecordView) -> None:
        """Apply one record (copies made by compaction are already in the state: skipped)."""
        self._records += 1
        self._last_lsn = record.lsn
        loc = record_loc(record)  # where it lies, for `holders`
        if record.flags & FLAG_RELOCATED:
            note_copy(self._copies, record, loc)
            return
        try:
            apply_record(self.broker, decode(record.type, record.payload), record.lsn, loc)
        except Exception as exc:  # a record that passed its checksum but cannot be decoded or applied
            raise ReplayError(
                f"record LSN {record.lsn} (type {record.type}) cannot be applied: {type(exc).__name__}: {exc}"
            ) from exc

    def projection(self) -> dict[str, Any]:
        """Vhosts with their durable exchanges, queues (message counts) and bindings."""
        vhosts: dict[str, Any] = {}
        for name, vhost in sorted(self.broker.vhosts.items()):
            vhosts[name] = {
                "exchanges": {
                    ex.name: {
                        "type": ex.type,
                        "durable": ex.durable,
                        "auto_delete": ex.auto_delete,
                        "internal": ex.internal,
                        "arguments": ex.arguments,
                    }
                    for ex in sorted(vhost.exchanges.values(), key=lambda e: e.name)
                    if ex.name and not ex.name.startswith("amq.")
                },
                "queues": {
                    queue.name: {
                        "durable": queue.durable,
                        "auto_delete": queue.auto_delete,
                        "arguments": queue.arguments,
                        "messages": queue.logged_count,
                        **queue_stats(self.broker, name, queue.name),
                    }
                    for queue in sorted(vhost.queues.values(), key=lambda q: q.name)
                },
                "bindings": [
                    {
                        "source": b.source,
                        "destination": b.destination,
                        "destination_kind": b.destination_kind,
                        "routing_key": b.routing_key,
                        "arguments": dict(b.arguments),
                    }
                    for b in vhost.bindings()
                ],
            }
        return {
            "snapshot_lsn": self._snapshot_lsn,
            "last_lsn": self._last_lsn,
            "records_replayed": self._records,
            "vhosts": vhosts,
            "users": sorted(self.broker.access.users),
            "messages": sum(q["messages"] for v in vhosts.values() for q in v["queues"].values()),
        }

    def holders(self, read: ReadRecord) -> list[Holder]:
        """After a replay to the end: the messages each durable queue keeps in each segment
        (`memento.pins.HoldsSegments`)."""
        follow_copies(self.broker, self._copies)
        return queue_holders(self.broker, read)
