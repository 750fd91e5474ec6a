"""The node's figures as RabbitMQ's /api/nodes shows them, read from the process, the OS and the broker.

Strategy: read when asked (and every sample interval for the `*_details` rates): memory from /proc
(RSS, as RabbitMQ's `mem_calculation_strategy` rss) and the broker's memory account (`mem_held`: what
the memory alarm compares with `mem_limit`), descriptors from /proc/self/fd and the open-file limit,
disk space from the data directory's file system, threads and context switches from /proc/self/status.
Where RabbitMQ reports an Erlang figure, the closest OS figure of this process stands in, said here:
- `proc_used` / `proc_total`: the process's OS threads / the kernel's threads-max (Erlang processes).
- `run_queue`: threads of this process ready to run or running now (state R in /proc/self/task).
- `gc_num`: Python's garbage collections since start (all generations).
- `sockets_used` / `sockets_total`: AMQP client sockets / what the open-file limit leaves for them.
- `io_read_bytes` / `io_write_bytes`: bytes this process made the kernel read from and write to storage
  (/proc/self/io read_bytes, write_bytes: the log, its read-backs and snapshots; page cache hits are not
  reads), where RabbitMQ counts its file handle cache's.
"""

from __future__ import annotations

import gc
import os
import resource
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from ottermq.broker.alarms import ALARM_DISK, ALARM_JOURNAL, ALARM_MEMORY
from ottermq.broker.auth import EXTERNAL, MECHANISMS
from ottermq.broker.broker import PRODUCT, VERSION
from ottermq.server.limits import socket_limit
from ottermq.server.monitor import free_disk, process_rss

if TYPE_CHECKING:
    from ottermq.http.app import Context, Ctx

_STARTED: Final = time.time()
# The node figures sampled for `<name>_details` (in this order).
NODE_SAMPLED: Final = (
    "mem_used",
    "fd_used",
    "sockets_used",
    "proc_used",
    "disk_free",
    "context_switches",
    "gc_num",
    "io_read_bytes",
    "io_write_bytes",
)
_DESCRIPTIONS: Final = {
    "PLAIN": "SASL PLAIN authentication mechanism",
    "AMQPLAIN": "QPid AMQPLAIN mechanism",
    EXTERNAL: "SASL EXTERNAL authentication mechanism (TLS client certificate)",
}
_EXCHANGE_TYPES: Final = (
    ("direct", "AMQP direct exchange, as per the AMQP specification"),
    ("fanout", "AMQP fanout exchange, as per the AMQP specification"),
    ("headers", "AMQP headers exchange, as per the AMQP specification"),
    ("topic", "AMQP topic exchange, as per the AMQP specification"),
)


def _open_files() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return 0


def _status() -> dict[str, str]:
    """/proc/self/status as name -> value ({} where there is none)."""
    try:
        with open("/proc/self/status") as status:
            return {k: v.strip() for k, _, v in (line.partition(":") for line in status)}
    except OSError:
        return {}


def _int(text: str | None) -> int:
    try:
        return int((text or "0").split()[0])
    except (ValueError, IndexError):
        return 0


def _storage_io() -> tuple[int, int]:
    """(read_bytes, write_bytes) of /proc/self/io ((0, 0) where there is none)."""
    try:
        with open("/proc/self/io") as io:
            fields = {k: v.strip() for k, _, v in (line.partition(":") for line in io)}
    except OSError:
        return (0, 0)
    return (_int(fields.get("read_bytes")), _int(fields.get("write_bytes")))


def _threads_max() -> int:
    try:
        return int(Path("/proc/sys/kernel/threads-max").read_text())
    except (OSError, ValueError):
        return 0


def _runnable_threads() -> int:
    count = 0
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return 0
    for task in tasks:
        try:
            stat = Path(f"/proc/self/task/{task}/stat").read_text()
        except OSError:
            continue
        # The state follows the command name in parentheses (which may itself hold spaces).
        if stat[stat.rfind(")") + 2 : stat.rfind(")") + 3] == "R":
            count += 1
    return count


def _gc_count() -> int:
    return sum(generation["collections"] for generation in gc.get_stats())


def _disk_free(context: Context) -> int:
    data_dir = context.node.get("data_dir")
    if not data_dir:
        return 0
    return free_disk(Path(data_dir)) or 0


def node_sample(context: Context) -> tuple[int, ...]:
    """The NODE_SAMPLED figures now."""
    status = _status()
    switches = _int(status.get("voluntary_ctxt_switches")) + _int(status.get("nonvoluntary_ctxt_switches"))
    return (
        process_rss(),
        _open_files(),
        len(context.broker.connections),
        _int(status.get("Threads")),
        _disk_free(context),
        switches,
        _gc_count(),
        *_storage_io(),
    )


def node_fields(ctx: Ctx, row: dict[str, Any]) -> dict[str, Any]:
    """Add the node's figures to its row (which has name, type, running)."""
    from ottermq.http.fields import _Figures

    context = ctx.context
    broker = ctx.broker
    figures = _Figures(ctx)
    figures.add(row, ("node",), NODE_SAMPLED, node_sample(context), 0, None)
    active = broker.alarms.active
    memory = broker.memory
    fd_total, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    http = [listener for listener in context.listeners if listener["protocol"] == "http"]
    row.update(
        mem_limit=memory.limit,
        mem_held=memory.used,
        mem_alarm=ALARM_MEMORY in active,
        mem_calculation_strategy="rss",
        disk_free_limit=context.node.get("disk_free_limit", 0),
        disk_free_alarm=ALARM_DISK in active or ALARM_JOURNAL in active,
        fd_total=fd_total if fd_total != resource.RLIM_INFINITY else 0,
        sockets_total=socket_limit(),
        proc_total=_threads_max(),
        run_queue=_runnable_threads(),
        processors=len(os.sched_getaffinity(0)),
        os_pid=str(os.getpid()),
        uptime=int((time.time() - _STARTED) * 1000),
        rates_mode="basic",
        partitions=[],
        cluster_links=[],
        being_drained=False,
        applications=[{"name": "ottermq", "description": PRODUCT, "version": VERSION}],
        contexts=[
            {
                "description": f"{PRODUCT} Management",
                "path": "/",
                "ip": listener["ip_address"],
                "port": str(listener["port"]),
            }
            for listener in http
        ],
        auth_mechanisms=[
            {"name": name, "description": _DESCRIPTIONS.get(name, name), "enabled": True}
            for name in (*MECHANISMS, EXTERNAL)
        ],
        exchange_types=[
            {"name": name, "description": text, "enabled": True} for name, text in _EXCHANGE_TYPES
        ],
        enabled_plugins=[],
        config_files=list(context.node.get("config_files", [])),
        log_files=["<stderr>"],
        db_dir=context.node.get("data_dir", ""),
    )
    return row
