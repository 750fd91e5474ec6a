"""Resource monitor: the memory the broker holds and the data directory's free disk, sampled twice a second.

Strategy: as RabbitMQ's vm_memory_high_watermark and disk_free_limit, with one difference: memory is what
the broker holds (message contents, content in flight, the index of logged messages, socket buffers; see
`ottermq.broker.memory`), not the process's resident set. CPython and malloc keep most freed memory, so an
RSS once past the mark stayed there after every queue was drained, and publishers were blocked until a
restart; what the broker holds goes down as soon as consumers take the messages, so the alarm clears within
a sample. The limit is either absolute bytes or a fraction of the RAM available to the process (the smaller
of physical memory and a cgroup v2 limit). Besides the timer, every connection asks for a sample as soon as
its reads may have taken the count past the mark (`MemoryAccount.over_estimate`), so a flood is stopped
within one read, whatever its rate. Free disk is `os.statvfs` of the data directory (blocks available to
unprivileged users). Each sample calls `Broker.set_alarm`, which only acts on a change.
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

from ottermq.broker.alarms import ALARM_DISK, ALARM_MEMORY, finish_content
from ottermq.broker.memory import CONTENT_IN_FLIGHT_MIN
from ottermq.store.heap import trim_heap
from ottermq.store.store import INDEX_BYTES

if TYPE_CHECKING:
    from ottermq.broker.broker import Broker
    from ottermq.server.server import Server

log: Final = logging.getLogger("ottermq.server")

_PAGE_SIZE: Final = os.sysconf("SC_PAGE_SIZE")
_CGROUP_MEMORY_MAX: Final = Path("/sys/fs/cgroup/memory.max")
# What an open connection costs beyond its buffers (its objects, the socket's kernel-side state is not ours).
CONNECTION_OVERHEAD: Final = 32 * 1024
# Give freed heap back to the system once what is held fell this much below its last peak (`trim_heap`).
TRIM_AFTER: Final = 32 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class MonitorOptions:
    """Thresholds of the two resource alarms (RabbitMQ's defaults) and the sampling interval."""

    # A fraction of the RAM available to the process; ignored when `memory_limit_bytes` is non-zero.
    memory_high_watermark: float = 0.4
    memory_limit_bytes: int = 0
    # 0 turns the disk alarm off.
    disk_free_limit: int = 50_000_000
    data_dir: Path | None = None
    interval: float = 0.5
    # Bytes of content in flight per connection over several messages at once; 0: an eighth of the memory
    # limit, at least CONTENT_IN_FLIGHT_MIN.
    max_content_in_flight: int = 0


def memory_limit(options: MonitorOptions) -> int:
    """The memory high-water mark in bytes that `options` set (0: no memory alarm)."""
    if options.memory_limit_bytes > 0:
        return options.memory_limit_bytes
    return int(total_memory() * options.memory_high_watermark)


def process_rss() -> int:
    """Resident set size of this process in bytes (0 where /proc is unavailable)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE_SIZE
    except (OSError, ValueError, IndexError):
        return 0


def total_memory() -> int:
    """Bytes of RAM the process may use: physical memory, or the cgroup v2 limit when lower."""
    total = os.sysconf("SC_PHYS_PAGES") * _PAGE_SIZE
    try:
        text = _CGROUP_MEMORY_MAX.read_text().strip()
    except OSError:
        return total
    if text.isdigit():
        total = min(total, int(text))
    return total


def free_disk(path: Path) -> int | None:
    """Bytes available to unprivileged users on the file system holding `path` (None if unreadable)."""
    try:
        stat = os.statvfs(path)
    except OSError:
        return None
    return stat.f_bavail * stat.f_frsize


class ResourceMonitor:
    """Samples memory and disk on the running loop and raises or clears the broker's alarms."""

    def __init__(self, broker: Broker, options: MonitorOptions, server: Server | None = None) -> None:
        self.broker = broker
        self.options = options
        self.server = server
        self.memory_limit = memory_limit(options)
        account = broker.memory
        account.limit = self.memory_limit
        account.content_limit = options.max_content_in_flight or max(
            CONTENT_IN_FLIGHT_MIN, self.memory_limit // 8
        )
        account.on_check = self._check_memory
        broker.data_disk.path = options.data_dir
        broker.data_disk.limit = options.disk_free_limit
        # The last full count of what the broker holds, and the process's RSS (reported, not compared).
        self.used = 0
        self.rss = 0
        self.disk_free: int | None = None
        self._peak = 0
        self._timer: asyncio.TimerHandle | None = None
        self._disk_unreadable_logged = False

    def start(self) -> None:
        """Take a first sample now and then one every `interval` seconds (call inside the running loop)."""
        log.info(
            "resource limits",
            extra={
                "memory_limit": self.memory_limit,
                "disk_free_limit": self.options.disk_free_limit,
                "max_content_in_flight": self.broker.memory.content_limit,
            },
        )
        self._run()

    def stop(self) -> None:
        """Stop sampling; alarms keep their last state."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.broker.memory.on_check = None

    def sample(self) -> None:
        """Count memory and read free disk once and update both alarms."""
        self.rss = process_rss()
        self.sample_memory()
        options = self.options
        if options.disk_free_limit > 0 and options.data_dir is not None:
            self.disk_free = free_disk(options.data_dir)
            if self.disk_free is None:
                if not self._disk_unreadable_logged:
                    self._disk_unreadable_logged = True
                    log.warning("cannot read free disk space", extra={"path": str(options.data_dir)})
                return
            low = self.disk_free < options.disk_free_limit
            if low != (ALARM_DISK in self.broker.alarms.active):
                log.warning(
                    "free disk below the limit" if low else "free disk back above the limit",
                    extra={"free": self.disk_free, "limit": options.disk_free_limit},
                )
            self.broker.set_alarm(ALARM_DISK, low)

    def sample_memory(self) -> None:
        """Count what the broker holds and raise or clear the memory alarm."""
        limit = self.memory_limit
        if limit <= 0:
            return
        broker = self.broker
        account = broker.memory
        alarm_on = ALARM_MEMORY in broker.alarms.active
        account.base = self._base()
        used = self.used = account.used
        over = used > limit
        if over != alarm_on:
            log.warning(
                "memory high-water mark crossed" if over else "memory back under the high-water mark",
                extra={
                    "used": used,
                    "limit": limit,
                    "rss": self.rss,
                    "messages_bytes": account.held_bytes,
                    "in_flight": account.in_flight,
                },
            )
            broker.set_alarm(ALARM_MEMORY, over)
        account.rearm(over)
        if over and account.in_flight and account.in_flight + account.base >= limit:
            self._finish_one_content()
        self._peak = max(self._peak, used)
        if self._peak - used >= TRIM_AFTER or (alarm_on and not over):
            self._peak = used
            trim_heap()

    def _finish_one_content(self) -> None:
        """Content in flight alone keeps the alarm on (a message larger than the mark, or several under way
        on paused connections): draining queues cannot clear it, so let the connection holding the most
        complete its messages, one connection at a time; what it held in flight is then held as messages,
        which consumers can take."""
        paused = []
        for connection in self.broker.connections:
            if connection.content_bytes:
                if not connection.read_paused:
                    return  # one is finishing already
                paused.append(connection)
        if paused:
            finish_content(max(paused, key=lambda connection: connection.content_bytes))

    def _base(self) -> int:
        """Bytes held besides transient contents and content in flight: the logged contents the content
        store keeps in memory and the index of logged messages, and every connection's buffers."""
        broker = self.broker
        logged = sum(q.logged_count for v in broker.vhosts.values() for q in v.queues.values())
        total = broker.contents.resident_bytes + logged * INDEX_BYTES
        for connection in broker.connections:
            total += CONNECTION_OVERHEAD + connection.input_buffered - connection.content_bytes
        if self.server is not None:
            for proto in self.server.connections:
                total += proto.write_buffered
        return total

    def _check_memory(self) -> None:
        """A connection's reads may have taken the count past the mark: sample memory now."""
        try:
            self.sample_memory()
        except Exception:
            log.exception("resource monitor failed to sample memory")

    def _run(self) -> None:
        try:
            self.sample()
        except Exception:
            log.exception("resource monitor failed to sample")
        self._timer = asyncio.get_running_loop().call_later(self.options.interval, self._run)
