"""The routes anyone may call (/metrics and the web UI's files), and the endpoint modules: importing this
module registers every route of the management API."""

from __future__ import annotations

from ottermq.http import (
    api_admin,
    api_bindings,
    api_definitions,
    api_entities,
    api_health,
    api_live,
    api_nodes,
    api_policies,
)
from ottermq.http.app import Ctx, not_found, route
from ottermq.http.interface import Response
from ottermq.http.metrics import CONTENT_TYPE, collect, render
from ottermq.http.ui import INDEX, static_file

# Imported for their routes.
ENDPOINT_MODULES = (
    api_admin,
    api_bindings,
    api_definitions,
    api_entities,
    api_health,
    api_live,
    api_nodes,
    api_policies,
)


@route("GET", "/metrics", public=True)
async def metrics(ctx: Ctx) -> Response:
    """Prometheus scrape endpoint (no authentication, as RabbitMQ's prometheus plugin)."""
    cluster = ctx.context.cluster
    body = render(collect(ctx.broker, ctx.context.store, cluster.status() if cluster else None)).encode()
    return Response(200, body, CONTENT_TYPE)


@route("GET", "/", public=True)
async def page(ctx: Ctx) -> Response:
    """The web UI's page; its modules ask the API (with the credentials of its login form) for the rest."""
    response = static_file(INDEX)
    assert response is not None  # shipped with the package
    return response


@route("GET", "/ui/{file}", public=True)
async def ui_file(ctx: Ctx) -> Response:
    """One of the web UI's modules or its stylesheet (public, as the page: they hold no data)."""
    response = static_file(ctx.params["file"])
    if response is None:
        raise not_found()
    return response
