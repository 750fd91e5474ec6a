"""The management HTTP service as the server runs it: the application, its routes, one listener.

Strategy: importing the endpoint modules registers their routes; this module adds the two public ones
(/metrics and the web page) and gives `ottermq.server.run` an object with `start` and `stop`, so the
server layer never imports this package (the CLI builds the service and hands it over).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ottermq.http import api_admin, api_bindings, api_definitions, api_entities, api_live, api_nodes
from ottermq.http.app import Application, Context, Ctx, route
from ottermq.http.metrics import CONTENT_TYPE, collect, render
from ottermq.http.server import HttpServer, Response
from ottermq.http.ui import PAGE

if TYPE_CHECKING:
    from ottermq.broker.broker import Broker
    from ottermq.store.store import DurableStore

# Imported for their routes.
ENDPOINT_MODULES = (api_admin, api_bindings, api_definitions, api_entities, api_live, api_nodes)


@route("GET", "/metrics", public=True)
async def metrics(ctx: Ctx) -> Response:
    """Prometheus scrape endpoint (no authentication, as RabbitMQ's prometheus plugin)."""
    body = render(collect(ctx.broker, ctx.context.store)).encode()
    return Response(200, body, CONTENT_TYPE)


@route("GET", "/", public=True)
async def page(ctx: Ctx) -> Response:
    """The web page; it asks the API (with the browser's basic auth) for everything it shows."""
    return Response(200, PAGE, "text/html; charset=utf-8")


class ManagementService:
    """The management API on host:port, for one broker."""

    def __init__(self, host: str, port: int, store: DurableStore | None = None) -> None:
        self.host = host
        self.port = port
        self.store = store
        self._server: HttpServer | None = None

    async def start(self, broker: Broker, amqp: list[tuple[str, int]]) -> list[tuple[str, int]]:
        """Listen; the bound addresses. OSError if the port cannot be bound."""
        listeners: list[dict[str, Any]] = [
            {"protocol": "amqp", "ip_address": host, "port": port} for host, port in amqp
        ]
        context = Context(broker, listeners, self.store)
        server = HttpServer(Application(context))
        addresses = await server.start(self.host, self.port)
        listeners.extend({"protocol": "http", "ip_address": host, "port": port} for host, port in addresses)
        self._server = server
        return addresses

    async def stop(self, timeout: float) -> None:
        """Stop listening; requests in flight get `timeout` seconds."""
        if self._server is not None:
            await self._server.stop(timeout)
            self._server = None
