"""The web page anyone may call, and the endpoint modules: importing this module registers every route of
the management API (the Prometheus endpoints are `prometheus`'s)."""

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
    prometheus,
)
from ottermq.http.app import Ctx, route
from ottermq.http.interface import Response
from ottermq.http.ui import PAGE

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
    prometheus,
)


@route("GET", "/", public=True)
async def page(ctx: Ctx) -> Response:
    """The web page; it asks the API (with the browser's basic auth) for everything it shows."""
    return Response(200, PAGE, "text/html; charset=utf-8")
