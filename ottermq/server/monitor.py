"""Resource monitor: samples the process's memory and the data directory's free disk about once a second.

Strategy: as RabbitMQ's vm_memory_high_watermark and disk_free_limit. Memory is the process's resident set
read from /proc/self/statm (one small read, no dependency), compared with a limit that is either absolute
bytes or a fraction of the RAM available to the process (the smaller of physical memory and a cgroup v2
limit). Free disk is `os.statvfs` of the data directory (blocks available to unprivileged users). Each
sample calls `Broker.set_alarm`, which only acts on a change, so clearing is as immediate as setting.
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

from ottermq.broker.alarms import ALARM_DISK, ALARM_MEMORY

if TYPE_CHECKING:
    from ottermq.broker.broker import Broker

log: Final = logging.getLogger("ottermq.server")

_PAGE_SIZE: Final = os.sysconf("SC_PAGE_SIZE")
_CGROUP_MEMORY_MAX: Final = Path("/sys/fs/cgroup/memory.max")


@dataclass(frozen=True, slots=True)
class MonitorOptions:
    """Thresholds of the two resource alarms (RabbitMQ's defaults) and the sampling interval."""

    # A fraction of the RAM available to the process; ignored when `memory_limit_bytes` is non-zero.
    memory_high_watermark: float = 0.4
    memory_limit_bytes: int = 0
    # 0 turns the disk alarm off.
    disk_free_limit: int = 50_000_000
    data_dir: Path | None = None
    interval: float = 1.0


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

    def __init__(self, broker: Broker, options: MonitorOptions) -> None:
        self.broker = broker
        self.options = options
        if options.memory_limit_bytes > 0:
            self.memory_limit = options.memory_limit_bytes
        else:
            self.memory_limit = int(total_memory() * options.memory_high_watermark)
        self.rss = 0
        self.disk_free: int | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._disk_unreadable_logged = False

    def start(self) -> None:
        """Take a first sample now and then one every `interval` seconds (call inside the running loop)."""
        log.info(
            "resource limits",
            extra={"memory_limit": self.memory_limit, "disk_free_limit": self.options.disk_free_limit},
        )
        self._run()

    def stop(self) -> None:
        """Stop sampling; alarms keep their last state."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def sample(self) -> None:
        """Read memory and free disk once and update both alarms."""
        self.rss = process_rss()
        if self.memory_limit > 0 and self.rss:
            over = self.rss > self.memory_limit
            if over != (ALARM_MEMORY in self.broker.alarms.active):
                log.warning(
                    "memory high-water mark crossed" if over else "memory back under the high-water mark",
                    extra={"rss": self.rss, "limit": self.memory_limit},
                )
            self.broker.set_alarm(ALARM_MEMORY, over)
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

    def _run(self) -> None:
        try:
            self.sample()
        except Exception:
            log.exception("resource monitor failed to sample")
        self._timer = asyncio.get_running_loop().call_later(self.options.interval, self._run)
