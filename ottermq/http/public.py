"""The two routes anyone may call (/metrics and the web page), and the endpoint modules: importing this
module registers every route of the management API."""

from __future__ import annotations

from ottermq.http import (
    api_admin,
    api_bindings,
    api_definitions,
    api_entities,
    api_health,
    api_limits,
    api_live,
    api_nodes,
    api_policies,
)
from ottermq.http.app import Ctx, route
from ottermq.http.interface import Response
from ottermq.http.metrics import CONTENT_TYPE, collect, render
from ottermq.http.ui import PAGE

# Imported for their routes.
ENDPOINT_MODULES = (
    api_admin,
    api_bindings,
    api_definitions,
    api_entities,
    api_health,
    api_limits,
    api_live,
    api_nodes,
    api_policies,
)


@route("GET", "/metrics", public=True)
async def metrics(ctx: Ctx) -> Response:
    """Prometheus scrape endpoint (no authentication, as RabbitMQ's prometheus plugin)."""
    body = render(collect(ctx.broker, ctx.context.store)).encode()
    return Response(200, body, CONTENT_TYPE)


@route("GET", "/", public=True)
async def page(ctx: Ctx) -> Response:
    """The web page; it asks the API (with the browser's basic auth) for everything it shows."""
    return Response(200, PAGE, "text/html; charset=utf-8")
