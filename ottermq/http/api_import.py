"""Definitions import and the vhost export: POST /api/definitions, POST /api/definitions/{vhost} and
GET /api/definitions/{vhost}.

Strategy: the document is read and checked whole by `ottermq.broker.definitions` before anything
changes; a document that cannot be imported is RabbitMQ's 400 {"error": "bad_request", "reason": ...}
and leaves the broker as it was. The changes are the ordinary journaled operations, so the answer (204,
as RabbitMQ's) leaves once they are durable. Administrators only, as in RabbitMQ. A big document takes
seconds: the check and the changes let the event loop serve other clients every few milliseconds
(`import_definitions_paced`), and imports run one at a time, each planned against what the previous
one left.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import TYPE_CHECKING, Final

from ottermq.broker.definitions import DefinitionsError, export_definitions, import_definitions_paced
from ottermq.http.app import Ctx, no_content, ok, route
from ottermq.http.auth import require_admin
from ottermq.http.interface import HttpError, Response

if TYPE_CHECKING:
    from ottermq.broker.broker import Broker

# One import at a time per broker.
_IMPORTING: Final[weakref.WeakKeyDictionary[Broker, asyncio.Lock]] = weakref.WeakKeyDictionary()


async def _document(ctx: Ctx) -> object:
    """The JSON body; 400 "failed_to_parse_json" (RabbitMQ's reason) unless it is a JSON object."""
    try:
        value = await ctx.big_body()
    except HttpError:
        raise HttpError(400, "bad_request", "failed_to_parse_json") from None
    return value


async def _import(ctx: Ctx, vhost: str | None) -> Response:
    require_admin(ctx.me)
    if vhost is not None and vhost not in ctx.broker.vhosts:
        raise HttpError(404, "not_found", "vhost_not_found")
    document = await _document(ctx)
    lock = _IMPORTING.setdefault(ctx.broker, asyncio.Lock())
    async with lock:
        try:
            await import_definitions_paced(ctx.broker, document, vhost)
        except DefinitionsError as exc:
            raise HttpError(400, "bad_request", exc.reason) from None
    await ctx.durable()
    return no_content()


@route("POST", "/api/definitions")
async def import_all(ctx: Ctx) -> Response:
    """Import users, vhosts, permissions, parameters, policies, exchanges, queues and bindings."""
    return await _import(ctx, None)


@route("POST", "/api/definitions/{vhost}")
async def import_vhost(ctx: Ctx) -> Response:
    """Import one vhost's parameters, policies, exchanges, queues and bindings."""
    return await _import(ctx, ctx.params["vhost"])


@route("GET", "/api/definitions/{vhost}")
async def export_vhost(ctx: Ctx) -> Response:
    """One vhost's definitions (RabbitMQ's shape: no users, vhosts or permissions)."""
    require_admin(ctx.me)
    name = ctx.params["vhost"]
    if name not in ctx.broker.vhosts:
        raise HttpError(404, "not_found", "vhost_not_found")
    return ok(export_definitions(ctx.broker, name))
