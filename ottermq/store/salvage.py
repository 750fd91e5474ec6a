"""Salvage as the broker sees it: which held messages lose their body, what is dropped, said beforehand.

Strategy: Memento decides what happens to the log (memento.salvage: records dropped, damaged segments
kept in place, where bodies may be unreadable). The broker adds what only it knows: which messages its
queues hold in those places. `find_lost` checks each such message by reading its record back (the check
a delivery makes), so a readable message in a damaged segment survives and an unreadable one is dropped
at start, counted per queue, instead of being found by a consumer.

`plan_salvage` runs the whole salvage without changing anything (Memento's dry run, a replay into a
scratch broker): it is what `ottermq serve --salvage --dry-run` prints, and what a real salvage logs
before acting. A record the broker cannot decode or apply (`ReplayError`) found by that replay becomes a
`BadRecord` cut, exactly as physical damage would: the real salvage then cuts there.

Every line starts with "salvage plan:" (what will be done) or "salvage:" (what was done), so that
`grep salvage` finds them all.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final

from memento.errors import MementoError
from memento.log import Log
from memento.recovery import BadRecord
from memento.salvage import PLAN_PREFIX, SalvagePlan, dropped_records
from ottermq.broker.message import QueueEntry
from ottermq.store.codec import PUBLISH_TYPES, RECORD_TYPES, CodecError, decode_publish_index, unpack_loc
from ottermq.store.replay import ReplayError, replay_log

if TYPE_CHECKING:
    from ottermq.broker.broker import Broker
    from ottermq.store.store import StoreOptions

log: Final = logging.getLogger("ottermq.store")

QueueKey = tuple[str, str]  # (vhost, queue)
Reader = Callable[[int, int], object]


@dataclass(slots=True)
class SalvageOutcome:
    """What a salvage does: Memento's plan, the record it cuts at (if any), and per queue the held
    messages whose bodies are lost and the messages published in dropped records."""

    plan: SalvagePlan
    bad_record: BadRecord | None = None
    lost: dict[QueueKey, int] = field(default_factory=dict)
    published: dict[QueueKey, int] = field(default_factory=dict)

    def lines(self) -> list[str]:
        """The plan, one greppable line each."""
        lines = self.plan.lines()
        for (vhost, queue), count in sorted(self.lost.items()):
            lines.append(
                f"{PLAN_PREFIX} drop {count} messages from queue '{queue}' in vhost '{vhost}': their bodies "
                "lie in damaged or dropped parts of the log"
            )
        for (vhost, queue), count in sorted(self.published.items()):
            lines.append(
                f"{PLAN_PREFIX} {count} messages published to queue '{queue}' in vhost '{vhost}' are in the "
                "dropped records (they will not be recovered)"
            )
        if not self.lost and self.plan.damaged:
            lines.append(f"{PLAN_PREFIX} every message held in the damaged segments is readable")
        return lines


def find_lost(broker: Broker, memento_log: Log, reader: Reader) -> dict[QueueKey, list[QueueEntry]]:
    """The logged messages of `broker`'s durable queues whose bodies cannot be read, by queue: those in a
    segment the log no longer has (or that holds no record yet), past a cut, and those in a damaged part
    (`recovery_report.damaged`) whose record does not read back as their own. Empty (and nothing read)
    unless recovery reported damage or salvaged."""
    report = memento_log.recovery_report
    plan = report.plan
    damaged = report.damaged
    if not damaged and not report.salvaged:
        return {}
    end = memento_log.end_lsn
    present = {s.seq for s in memento_log.segments if s.base_lsn <= end}
    cut = plan.cut_at if plan is not None else None
    locations = broker.contents.locations
    readable: dict[int, bool] = {}  # by message id: a message held by several queues is read once
    lost: dict[QueueKey, list[QueueEntry]] = {}
    for vhost in broker.vhosts.values():
        for queue in vhost.queues.values():
            if not queue.durable or not queue.logged_count:
                continue
            for entry in queue.logged_entries():
                loc = locations.get(entry.msg_id)
                if not loc:
                    continue
                seq, offset, _index = unpack_loc(loc)
                if seq not in present or (cut is not None and seq == cut[0] and offset >= cut[1]):
                    ok = False
                elif seq in damaged and offset >= damaged[seq]:
                    known = readable.get(entry.msg_id)
                    if known is None:
                        known = readable[entry.msg_id] = _reads(reader, entry.msg_id, loc)
                    ok = known
                else:
                    continue
                if not ok:
                    lost.setdefault((vhost.name, queue.name), []).append(entry)
    return lost


def _reads(reader: Reader, msg_id: int, loc: int) -> bool:
    try:
        reader(msg_id, loc)
    except (CodecError, MementoError, OSError):
        return False
    return True


def drop_lost(lost: dict[QueueKey, list[QueueEntry]], broker: Broker) -> list[str]:
    """Drop the lost messages from their queues (logged removals, reason "drop"); one line per queue."""
    lines = []
    for (vhost_name, queue_name), entries in sorted(lost.items()):
        queue = broker.vhosts[vhost_name].queues[queue_name]
        broker.contents.unreadable += len(entries)
        queue.settle(entries, "drop")
        lines.append(
            f"salvage: dropped {len(entries)} messages from queue '{queue_name}' in vhost '{vhost_name}': "
            "their bodies lay in damaged or dropped parts of the log"
        )
    return lines


def published_in_dropped(memento_log: Log, plan: SalvagePlan) -> dict[QueueKey, int]:
    """Per queue, the publishes in the records the plan drops that can still be read."""
    counts: Counter[QueueKey] = Counter()
    for record in dropped_records(memento_log.wal_dir, plan):
        if record.type in PUBLISH_TYPES:
            try:
                event, _size = decode_publish_index(record.payload, record.type)
            except Exception:  # best effort: a record that passed its crc may still not decode
                continue
            for queue in event.queues:
                counts[(event.vhost, queue)] += 1
    return dict(counts)


def plan_salvage(data_dir: Path, options: StoreOptions) -> SalvageOutcome:
    """What `serve --salvage` would do to the log in `data_dir`, found without changing anything."""
    from ottermq.store.store import LOG_DIR, DurableStore

    bad: BadRecord | None = None
    while True:
        memento_log = Log.open(
            Path(data_dir) / LOG_DIR,
            segment_size=options.segment_size,
            registry=RECORD_TYPES,
            salvage=True,
            dry_run=True,
            bad_record=bad,
        )
        try:
            store = DurableStore(memento_log, options)
            broker = store.new_broker()
            try:
                replay_log(broker, memento_log)
            except ReplayError as exc:
                if bad is not None or exc.segment < 0:
                    raise
                bad = BadRecord(exc.segment, exc.offset, exc.lsn, exc.reason)
                continue  # plan again with the cut at that record
            plan = memento_log.recovery_report.plan
            assert plan is not None  # a salvage always plans
            lost = find_lost(broker, memento_log, store.journal.read_content)
            return SalvageOutcome(
                plan,
                bad,
                {key: len(entries) for key, entries in lost.items()},
                published_in_dropped(memento_log, plan),
            )
        finally:
            memento_log.close()
