"""GET /api/nodes and /api/nodes/{name}: this node's health figures, as monitoring scripts read them.

Strategy: one node (OtterMQ does not cluster). Figures come from /proc and the broker when asked:
resident memory, open file descriptors, connections, alarms, uptime.
"""

from __future__ import annotations

import os
import time
from typing import Any, Final

from ottermq.broker.alarms import ALARM_DISK, ALARM_JOURNAL, ALARM_MEMORY
from ottermq.http.app import Ctx, not_found, route
from ottermq.http.auth import require_monitor
from ottermq.http.interface import Response
from ottermq.http.listing import listed, shown
from ottermq.http.metrics import resident_memory
from ottermq.http.stats import NODE

_STARTED: Final = time.time()


def _open_files() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return 0


def node_row(ctx: Ctx) -> dict[str, Any]:
    """The node as RabbitMQ's /api/nodes shows it (the fields monitoring scripts use)."""
    active = ctx.broker.alarms.active
    return {
        "name": NODE,
        "type": "disc",
        "running": True,
        "mem_used": resident_memory(),
        "mem_alarm": ALARM_MEMORY in active,
        "disk_free_alarm": ALARM_DISK in active or ALARM_JOURNAL in active,
        "fd_used": _open_files(),
        "sockets_used": len(ctx.broker.connections),
        "proc_used": 1,
        "uptime": int((time.time() - _STARTED) * 1000),
        "partitions": [],
        **({"cluster": ctx.context.cluster.status()} if ctx.context.cluster is not None else {}),
    }


@route("GET", "/api/nodes")
async def list_nodes(ctx: Ctx) -> Response:
    """The one node (monitoring and administrator users)."""
    require_monitor(ctx.me)
    return listed(ctx, [node_row(ctx)])


@route("GET", "/api/nodes/{name}")
async def show_node(ctx: Ctx) -> Response:
    """The node, by name."""
    require_monitor(ctx.me)
    if ctx.params["name"] != NODE:
        raise not_found()
    return shown(ctx, node_row(ctx))
