"""The management HTTP service as the server runs it: the application, its routes, one listener.

Strategy: `ottermq.server.run` gets an object with `start` and `stop`, so the server layer never imports
this package (the CLI builds the service and hands it over). The application's modules (the endpoint
modules register their routes when imported; `public` adds /metrics and the web page) are imported in
`start`, once the AMQP listener is up: their ~60 ms of imports do not delay AMQP clients at start-up.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ottermq.broker.broker import Broker
    from ottermq.http.server import HttpServer
    from ottermq.store.store import DurableStore


class ManagementService:
    """The management API on host:port, for one broker."""

    def __init__(self, host: str, port: int, store: DurableStore | None = None) -> None:
        self.host = host
        self.port = port
        self.store = store
        self._server: HttpServer | None = None

    async def start(self, broker: Broker, amqp: list[tuple[str, int]]) -> list[tuple[str, int]]:
        """Listen; the bound addresses. OSError if the port cannot be bound."""
        import ottermq.http.public  # noqa: F401  (importing it registers every route)
        from ottermq.http.app import Application, Context
        from ottermq.http.server import HttpServer

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
