"""The background scrub: sealed segments verified at a bounded rate, damage reported before a reader meets it.

Strategy: a record damaged on disk after it was written (a bad sector, a stray write) is otherwise found
only when a consumer reaches the message, or when reclamation reads it, maybe months later. The scrub reads
every sealed segment again, pass after pass (`scrub_interval` seconds from the start of one pass to the
next), checking what recovery checks (memento.scrub.verify_sealed: header, each record's length, crc and
LSN, the seal). The reading runs in a worker thread, one segment at a time, in chunks of 32 KiB; after
each chunk the thread sleeps as long as needed to stay under `scrub_rate` bytes per second over the pass
and under CPU_SHARE of one core (walking small records costs CPU, under the GIL the event loop needs), so
the scrub neither stalls the event loop nor competes with the log's own I/O. Segments are listed on the
loop at the start of each one; a segment deleted by reclamation meanwhile is skipped.

A damaged span is reported once (per segment and offset, as long as the broker runs): an error line names
the segment, the offset, the LSN and the reason, and the messages whose contents lie in the span, by queue
(the content store knows each held message's location). Nothing is dropped: a message in a damaged span
is dropped, as before, when a reader reaches it (Queue.unreadable). The counters and the current findings
are in `ctl status` (`scrub_*`) and `/metrics` (`ottermq_scrub_*`).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Mapping, Set
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from memento.log import Log
from memento.scrub import SegmentCheck, verify_sealed
from ottermq.store.codec import unpack_loc
from ottermq.store.health import describe, iso_time

if TYPE_CHECKING:
    from ottermq.broker.broker import Broker

log: Final = logging.getLogger("ottermq.store")

_MiB: Final = 1024 * 1024
DEFAULT_RATE: Final = 8 * _MiB
DEFAULT_INTERVAL: Final = 3600.0
# Queue names and message ids named in one error line at most (the count is always complete).
NAMED_IDS: Final = 10
# The worker thread walks records in Python, holding the GIL the event loop needs: with small records that
# costs more CPU than the bytes suggest (8 MiB/s of 60-byte records is ~140k records/s, half a core). So it
# also sleeps in proportion to the CPU time it used, keeping to this share of one core whatever the rate.
CPU_SHARE: Final = 0.2
# Bytes read (and verified) between two pauses: small, so the thread never holds the GIL for long at once.
CHUNK: Final = 32 * 1024


class _Stopped(Exception):
    """Raised in the worker thread when the scrub stops in the middle of a segment."""


@dataclass(slots=True)
class Finding:
    """One damaged span of a sealed segment, and the held messages whose contents lie in it."""

    segment: str
    seq: int
    offset: int  # -1: the whole segment (it could not be read)
    end: int
    lsn: int
    reason: str
    found: float
    # (vhost, queue) -> ids of its messages in the span
    messages: dict[tuple[str, str], list[int]] = field(default_factory=dict)

    def status(self) -> dict[str, Any]:
        """The finding as `ctl status` shows it."""
        return {
            "segment": self.segment,
            "offset": self.offset,
            "end": self.end,
            "lsn": self.lsn,
            "reason": self.reason,
            "found": iso_time(self.found),
            "messages": sum(len(ids) for ids in self.messages.values()),
            "queues": [
                {"vhost": vhost, "queue": queue, "messages": len(ids), "ids": ids[:NAMED_IDS]}
                for (vhost, queue), ids in sorted(self.messages.items())
            ],
        }


def locate(locations: dict[int, int], spans: dict[int, list[Finding]]) -> dict[int, Finding]:
    """Message id -> the finding whose span holds its content, for every location in `spans`' segments
    (a plain function over a copy of the locations: it runs in a worker thread)."""
    found: dict[int, Finding] = {}
    for msg_id, loc in locations.items():
        if loc:
            seq, offset, _index = unpack_loc(loc)
            for finding in spans.get(seq, ()):
                if finding.offset <= offset < finding.end:
                    found[msg_id] = finding
                    break
    return found


class Scrubber:
    """Verifies the sealed segments of `log` in the background; `start()` in the loop, `await stop()`."""

    def __init__(
        self,
        log: Log,
        locations: Mapping[int, int],
        *,
        rate: int = DEFAULT_RATE,
        interval: float = DEFAULT_INTERVAL,
        registry: Set[int] | None = None,
    ) -> None:
        self.log = log
        self.locations = locations
        self.rate = rate
        self.interval = interval
        self.registry = registry
        self.broker: Broker | None = None  # set by the store once recovered (queues named in reports)
        self.bytes_verified = 0
        self.segments_verified = 0
        self.passes = 0
        self.damage_found = 0
        self.errors = 0  # segments that could not be read at all (permission, I/O error)
        self.last_pass_completed: float | None = None
        self.last_pass_seconds = 0.0
        self.findings: dict[tuple[str, int], Finding] = {}
        self._stop = threading.Event()
        self._task: asyncio.Task[None] | None = None
        self._pass_started = 0.0
        self._pass_bytes = 0
        self._thread = threading.local()  # the worker thread's CPU time at its last pause

    @property
    def enabled(self) -> bool:
        """False when `scrub_rate` or `scrub_interval` is 0."""
        return self.rate > 0 and self.interval > 0

    def start(self) -> None:
        """Start the pass loop (inside the event loop); nothing when disabled."""
        if self.enabled and self._task is None:
            self._stop.clear()
            self._task = asyncio.create_task(self._run(), name="ottermq-scrub")

    async def stop(self) -> None:
        """Stop at once (the worker thread notices within one chunk)."""
        self._stop.set()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass

    async def _run(self) -> None:
        while True:
            started = time.monotonic()
            try:
                await self.scrub_pass()
            except _Stopped:
                return
            except Exception:
                # A bug, not damage (which is reported, not raised): keep the broker serving.
                log.exception("scrub pass failed; the next one runs as planned")
            await asyncio.sleep(max(0.0, started + self.interval - time.monotonic()))

    def sealed(self) -> list[tuple[str, int, int]]:
        """(path, seq, next segment's base LSN) of each segment whose seal is durable, oldest first."""
        segments = self.log.segments
        durable = self.log.durable_lsn
        return [
            (segments[i].path, segments[i].seq, segments[i + 1].base_lsn)
            for i in range(len(segments) - 1)
            if segments[i + 1].base_lsn <= durable
        ]

    async def scrub_pass(self) -> None:
        """Verify every sealed segment once, at most `rate` bytes per second over the pass."""
        self._pass_started = time.monotonic()
        self._pass_bytes = 0
        present: set[str] = set()
        done = 0
        while True:
            # Listed again before each segment: reclamation deletes and compaction adds meanwhile.
            todo = [item for item in self.sealed() if item[0] not in present]
            if not todo:
                break
            path, seq, next_lsn = todo[0]
            present.add(path)
            try:
                check = await asyncio.to_thread(self._verify, path, next_lsn)
            except FileNotFoundError as exc:
                if any(item[0] == path for item in self.sealed()):
                    self._unreadable(path, seq, exc)  # gone, but the log still counts on it
                continue  # else reclaimed while we were about to read it
            except OSError as exc:
                self._unreadable(path, seq, exc)
                continue
            self.bytes_verified += check.bytes_read
            self.segments_verified += 1
            done += 1
            new = [
                Finding(check.name, seq, span.offset, span.end, span.lsn, span.reason, time.time())
                for span in check.damage
                if (check.name, span.offset) not in self.findings
            ]
            if new:
                await self._attribute(new)
                for finding in new:
                    self._report(finding)
        names = {path.rsplit("/", 1)[-1] for path, _seq, _next in self.sealed()}
        for key in [key for key in self.findings if key[0] not in names]:
            del self.findings[key]  # the segment was reclaimed: its damage went with it
        if self.findings:
            await self._attribute(list(self.findings.values()))  # messages leave: counted again
        self.passes += 1
        self.last_pass_completed = time.time()
        self.last_pass_seconds = time.monotonic() - self._pass_started
        (log.info if done else log.debug)(
            "scrub pass completed",
            extra={
                "segments": done,
                "bytes": self._pass_bytes,
                "seconds": round(self.last_pass_seconds, 3),
                "damaged_spans": len(self.findings),
            },
        )

    def _verify(self, path: str, next_lsn: int) -> SegmentCheck:
        """In a worker thread: one segment, paced."""
        self._thread.cpu = time.thread_time()
        return verify_sealed(path, next_lsn=next_lsn, registry=self.registry, pace=self._pace, chunk=CHUNK)

    def _pace(self, count: int) -> None:
        """In the worker thread, after each chunk: sleep until the pass is back under `rate`, and for as
        long as keeps the thread's CPU time under CPU_SHARE."""
        if self._stop.is_set():
            raise _Stopped
        self._pass_bytes += count
        ahead = self._pass_bytes / self.rate - (time.monotonic() - self._pass_started)
        cpu = time.thread_time()
        used, self._thread.cpu = cpu - self._thread.cpu, cpu
        pause = max(ahead, used * (1 / CPU_SHARE - 1))
        if pause > 0 and self._stop.wait(pause):
            raise _Stopped

    def _unreadable(self, path: str, seq: int, exc: OSError) -> None:
        name = path.rsplit("/", 1)[-1]
        key = (name, -1)
        self.errors += 1
        if key not in self.findings:
            self.damage_found += 1
            self.findings[key] = Finding(name, seq, -1, -1, -1, f"cannot read: {describe(exc)}", time.time())
            log.error(f"scrub cannot read sealed segment {name}: {describe(exc)}", extra={"segment": name})

    async def _attribute(self, findings: list[Finding]) -> None:
        """Set each finding's `messages`: the held messages whose contents lie in its span, by queue. The
        locations are copied on the loop (one C-level copy) and searched in a worker thread; only the
        few ids found are looked up in the queues, on the loop."""
        spans: dict[int, list[Finding]] = {}
        for finding in findings:
            finding.messages = {}
            if finding.offset >= 0:
                spans.setdefault(finding.seq, []).append(finding)
        if not spans:
            return
        found = await asyncio.to_thread(locate, dict(self.locations), spans)
        broker = self.broker
        if not found or broker is None:
            return
        ids = sorted(found)
        for vhost in broker.vhosts.values():
            for queue in vhost.queues.values():
                for msg_id in ids:
                    if queue.holds_logged(msg_id):
                        found[msg_id].messages.setdefault((vhost.name, queue.name), []).append(msg_id)

    def _report(self, finding: Finding) -> None:
        """Count and log a new finding (once per segment and offset)."""
        self.damage_found += 1
        self.findings[(finding.segment, finding.offset)] = finding
        name = finding.segment
        count = sum(len(ids) for ids in finding.messages.values())
        named = "; ".join(
            f"queue '{queue}' in vhost '{vhost}': {len(ids)} (ids {', '.join(map(str, ids[:NAMED_IDS]))}"
            f"{', ...' if len(ids) > NAMED_IDS else ''})"
            for (vhost, queue), ids in sorted(finding.messages.items())[:NAMED_IDS]
        )
        held = f"{count} held message(s) lie in it: {named}" if count else "no held message lies in it"
        log.error(
            f"scrub found damage in sealed segment {name} at offset {finding.offset} (LSN {finding.lsn}): "
            f"{finding.reason}; bytes {finding.offset}..{finding.end}; {held}",
            extra={"segment": name, "offset": finding.offset, "lsn": finding.lsn, "messages": count},
        )

    @property
    def messages_at_risk(self) -> int:
        """Held messages whose contents lie in a damaged span (as of the finding or the last pass)."""
        return sum(len(ids) for finding in self.findings.values() for ids in finding.messages.values())

    def status(self) -> dict[str, Any]:
        """The `ctl status` fields."""
        return {
            "scrub_enabled": self.enabled,
            "scrub_rate": self.rate,
            "scrub_bytes_verified": self.bytes_verified,
            "scrub_segments_verified": self.segments_verified,
            "scrub_passes": self.passes,
            "scrub_last_pass_completed": iso_time(self.last_pass_completed),
            "scrub_last_pass_seconds": round(self.last_pass_seconds, 3),
            "scrub_damage_found": self.damage_found,
            "scrub_damage": [finding.status() for finding in self.findings.values()],
        }
