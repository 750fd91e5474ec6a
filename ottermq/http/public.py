"""The routes anyone may call (the web UI's files), and the endpoint modules: importing this module
registers every route of the management API (the Prometheus endpoints are `prometheus`'s)."""

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
    prometheus,
)
from ottermq.http.app import Ctx, not_found, route
from ottermq.http.interface import Response
from ottermq.http.ui import INDEX, static_file

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
    prometheus,
)


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
