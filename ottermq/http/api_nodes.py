"""GET /api/nodes and /api/nodes/{name}: this node's health figures, as monitoring scripts read them.

Strategy: one node (OtterMQ does not cluster). Figures come from /proc, the OS and the broker when
asked (node_info.py).
"""

from __future__ import annotations

from typing import Any

from ottermq.http.app import Ctx, not_found, route
from ottermq.http.auth import require_monitor
from ottermq.http.interface import Response
from ottermq.http.listing import listed, shown
from ottermq.http.node_info import node_fields
from ottermq.http.stats import NODE


def node_row(ctx: Ctx) -> dict[str, Any]:
    """The node as RabbitMQ's /api/nodes shows it (figures: node_info.py)."""
    row = node_fields(ctx, {"name": NODE, "type": "disc", "running": True})
    if ctx.context.cluster is not None:
        row["cluster"] = ctx.context.cluster.status()
    return row


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
