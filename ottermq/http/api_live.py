"""Live objects: /api/connections (list, show, close), /api/channels, /api/consumers.

Strategy: read from the broker's connection set when asked. Monitoring and administrator users see
everything; other users see their own connections only, as in RabbitMQ.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from ottermq.amqp.constants import CONNECTION_FORCED
from ottermq.http.app import Ctx, no_content, not_found, route
from ottermq.http.auth import ADMINISTRATOR, Unauthorized, require_vhost, sees_all
from ottermq.http.fields import channel_detail_fields, channel_fields, connection_fields
from ottermq.http.interface import Response
from ottermq.http.listing import listed, shown
from ottermq.http.stats import channel_name, channel_row, connection_name, connection_row, consumer_rows

if TYPE_CHECKING:
    from ottermq.broker.connection import Connection

# DELETE /api/connections/{name}: the reason a client is told when the request gives none (X-Reason).
DEFAULT_CLOSE_REASON: Final = "Closed via management plugin"
# AMQP carries the reply text as a short string.
_MAX_REPLY_TEXT: Final = 255
_ELLIPSIS: Final = "..."


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
    return listed(ctx, [connection_fields(ctx, c, connection_row(c)) for c in _connections(ctx)], paged=True)


def _named(ctx: Ctx, may_see_all: bool) -> Connection:
    """The connection the path names: 404 when there is none, 401 when it is another user's and the
    user may not see (`may_see_all`: monitoring may read, only administrators close) others'."""
    name = ctx.params["name"]
    connection = next((c for c in ctx.broker.connections if connection_name(c) == name), None)
    if connection is None or connection.vhost is None:
        raise not_found()
    if connection.user != ctx.me.name and not may_see_all:
        raise Unauthorized("not_authorised", "User not authorised to access object")
    return connection


@route("GET", "/api/connections/{name}")
async def show_connection(ctx: Ctx) -> Response:
    """One connection, by name."""
    connection = _named(ctx, sees_all(ctx.me))
    return shown(ctx, connection_fields(ctx, connection, connection_row(connection)))


@route("GET", "/api/connections/{name}/channels")
async def connection_channels(ctx: Ctx) -> Response:
    """The channels of one connection."""
    connection = _named(ctx, sees_all(ctx.me))
    rows = [channel_fields(ctx, ch, channel_row(ch)) for ch in connection.channels.values()]
    return listed(ctx, rows, paged=True)


@route("DELETE", "/api/connections/{name}")
async def close_connection(ctx: Ctx) -> Response:
    """Close a connection as RabbitMQ does: connection.close 320 CONNECTION_FORCED with the X-Reason
    header's text. Users close their own connections; administrators any (monitoring sees others' but
    may not close them, as in RabbitMQ)."""
    connection = _named(ctx, ADMINISTRATOR in ctx.me.tags)
    connection.shutdown(CONNECTION_FORCED, reply_text(ctx.request.headers.get("x-reason")))
    return no_content()


def reply_text(header: str | None) -> str:
    """The connection.close text for an X-Reason header (the server reads headers as latin-1; UTF-8
    text is taken back), cut to what a short string holds (on a character boundary, ending "...")."""
    reason = DEFAULT_CLOSE_REASON
    if header:
        reason = header.encode("latin-1", "replace").decode("utf-8", "replace")
    text = f"CONNECTION_FORCED - {reason}".encode()
    if len(text) <= _MAX_REPLY_TEXT:
        return text.decode()
    # As RabbitMQ: cut to fit with "..." at the end.
    return text[: _MAX_REPLY_TEXT - len(_ELLIPSIS)].decode("utf-8", "ignore") + _ELLIPSIS


@route("GET", "/api/channels")
@route("GET", "/api/vhosts/{vhost}/channels")
async def list_channels(ctx: Ctx) -> Response:
    """Open channels."""
    rows = [channel_fields(ctx, ch, channel_row(ch)) for c in _connections(ctx) for ch in c.channels.values()]
    return listed(ctx, rows, paged=True)


@route("GET", "/api/channels/{name}")
async def show_channel(ctx: Ctx) -> Response:
    """One channel, by name, with its consumers."""
    every = sees_all(ctx.me)
    for connection in ctx.broker.connections:
        for channel in connection.channels.values():
            if channel_name(channel) == ctx.params["name"] and connection.vhost is not None:
                if connection.user != ctx.me.name and not every:
                    raise Unauthorized("not_authorised", "User not authorised to access object")
                return shown(ctx, channel_detail_fields(ctx, channel, channel_row(channel)))
    raise not_found()


@route("GET", "/api/consumers")
@route("GET", "/api/consumers/{vhost}")
async def list_consumers(ctx: Ctx) -> Response:
    """Consumers, with the channel each belongs to."""
    rows = [row for c in _connections(ctx) for ch in c.channels.values() for row in consumer_rows(ch)]
    return listed(ctx, rows, default_sort=())
