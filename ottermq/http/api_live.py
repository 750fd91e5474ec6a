"""Live objects: /api/connections, /api/channels, /api/consumers.

Strategy: read from the broker's connection set when asked. Monitoring and administrator users see
everything; other users see their own connections only, as in RabbitMQ.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ottermq.http.app import Ctx, not_found, ok, route
from ottermq.http.auth import require_vhost, sees_all
from ottermq.http.interface import Response
from ottermq.http.stats import channel_row, connection_name, connection_row, consumer_rows

if TYPE_CHECKING:
    from ottermq.broker.connection import Connection


def _connections(ctx: Ctx) -> list[Connection]:
    every = sees_all(ctx.me)
    vhost = ctx.params.get("vhost")
    if vhost is not None:
        require_vhost(ctx.broker, ctx.me, vhost)
    return [
        c
        for c in ctx.broker.connections
        if (every or c.user == ctx.me.name)
        and c.vhost is not None
        and (vhost is None or c.vhost.name == vhost)
    ]


@route("GET", "/api/connections")
@route("GET", "/api/vhosts/{vhost}/connections")
async def list_connections(ctx: Ctx) -> Response:
    """Open client connections."""
    return ok([connection_row(c) for c in _connections(ctx)])


@route("GET", "/api/connections/{name}")
async def show_connection(ctx: Ctx) -> Response:
    """One connection, by name."""
    for connection in _connections(ctx):
        if connection_name(connection) == ctx.params["name"]:
            return ok(connection_row(connection))
    raise not_found()


@route("GET", "/api/channels")
@route("GET", "/api/vhosts/{vhost}/channels")
async def list_channels(ctx: Ctx) -> Response:
    """Open channels."""
    return ok([channel_row(ch) for c in _connections(ctx) for ch in c.channels.values()])


@route("GET", "/api/consumers")
@route("GET", "/api/consumers/{vhost}")
async def list_consumers(ctx: Ctx) -> Response:
    """Consumers, with the channel each belongs to."""
    return ok([row for c in _connections(ctx) for ch in c.channels.values() for row in consumer_rows(ch)])
