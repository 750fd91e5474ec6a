"""The management HTTP service as the server runs it: the application, its routes, one listener.

Strategy: `ottermq.server.run` gets an object with `start` and `stop`, so the server layer never imports
this package (the CLI builds the service and hands it over). The application's modules (the endpoint
modules register their routes when imported; `public` adds /metrics and the web page) are imported in
`start`, once the AMQP listener is up: their ~60 ms of imports do not delay AMQP clients at start-up.
While it runs, a task samples the broker's message counters every `sample_interval` seconds for the
message rates of /api/overview, and every object's counters and figures into a `history.History` for
the rates and samples of queues, exchanges, vhosts, channels, connections and the node (5 s as
RabbitMQ; the CLI passes the setting collect_statistics_interval; without it OTTERMQ_STATS_INTERVAL).
`node` holds what the node's row says that only the CLI knows (data_dir, disk_free_limit, config_files).
The transport's limits against slow and idle peers (`server.Limits`) are the settings `http_head_timeout`,
`http_body_timeout`, `http_idle_timeout`, `http_send_timeout`, `http_max_connections`, `http_max_unproven`,
`http_max_body_size` (`ottermq.config.http_limits` names them by field).
Logins share the broker's password-check scheduler with AMQP (`http/auth.py`): the AMQP server installs its
worker threads, and `start` installs the same kind when it runs alone (tests), never hashing on the loop.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from ottermq.broker.broker import Broker
    from ottermq.cluster.service import ClusterService
    from ottermq.http.app import Context
    from ottermq.http.server import HttpServer
    from ottermq.store.store import DurableStore

log: Final = logging.getLogger("ottermq.http")

# Seconds between samples of the message counters, as RabbitMQ's collect_statistics_interval (5000 ms).
DEFAULT_SAMPLE_INTERVAL: Final = 5.0


def _positive_from_env(name: str, default: float) -> float:
    """A positive number from the environment variable `name`, else `default` (with a warning when set
    to something else)."""
    raw = os.environ.get(name, "")
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if not value > 0:  # also false for NaN
        log.warning("%s=%r is not a positive number: using %s", name, raw, default)
        return default
    return value


def _interval_from_env() -> float:
    return _positive_from_env("OTTERMQ_STATS_INTERVAL", DEFAULT_SAMPLE_INTERVAL)


class ManagementService:
    """The management API on host:port, for one broker."""

    def __init__(
        self,
        host: str,
        port: int,
        store: DurableStore | None = None,
        sample_interval: float | None = None,
        limits: Mapping[str, Any] | None = None,
        cluster: ClusterService | None = None,
        node: Mapping[str, Any] | None = None,
    ) -> None:
        self.host = host
        self.cluster = cluster
        # `server.Limits` fields by name (`ottermq.config.http_limits`); the defaults where absent.
        self.limits = dict(limits or {})
        self.port = port
        self.store = store
        self.sample_interval = sample_interval if sample_interval is not None else _interval_from_env()
        self.node = dict(node or {})
        self._server: HttpServer | None = None
        self._sampler: asyncio.Task[None] | None = None

    async def start(
        self, broker: Broker, amqp: list[tuple[str, int]], amqps: list[tuple[str, int]] | None = None
    ) -> list[tuple[str, int]]:
        """Listen; the bound addresses. OSError if the port cannot be bound. `amqp` and `amqps` (TLS) are
        where AMQP listens: the listeners /api/overview and the health checks name."""
        import ottermq.http.public  # noqa: F401  (importing it registers every route)
        from ottermq.http.app import Application, Context
        from ottermq.http.history import History
        from ottermq.http.server import HttpServer, Limits
        from ottermq.http.stats import MessageRates
        from ottermq.server.protocol import CheckRunner

        if broker.auth.checks.runner is None:
            # Served without the AMQP server (which installs it): logins still hash off the event loop.
            broker.auth.checks.runner = CheckRunner()
        listeners: list[dict[str, Any]] = [
            {"protocol": "amqp", "ip_address": host, "port": port} for host, port in amqp
        ]
        # RabbitMQ's name for its TLS listener's protocol.
        listeners += [
            {"protocol": "amqp/ssl", "ip_address": host, "port": port} for host, port in amqps or ()
        ]
        rates = MessageRates(broker)
        context = Context(
            broker,
            listeners,
            self.store,
            rates,
            cluster=self.cluster,
            history=History(self.sample_interval),
            node=self.node,
        )
        server = HttpServer(Application(context), Limits(**self.limits))
        addresses = await server.start(self.host, self.port)
        listeners.extend({"protocol": "http", "ip_address": host, "port": port} for host, port in addresses)
        self._server = server
        self._sampler = asyncio.get_running_loop().create_task(self._sample(context), name="ottermq-stats")
        return addresses

    async def _sample(self, context: Context) -> None:
        """Sample the message counters and every object every `sample_interval` seconds until cancelled."""
        from ottermq.http.fields import sample_broker

        assert context.rates is not None and context.history is not None
        while True:
            context.rates.sample(time.monotonic())
            try:
                await sample_broker(context, time.time())
            except Exception:
                # A bug here must not end the sampling of the overview's rates.
                log.exception("sampling the broker's objects failed")
            await asyncio.sleep(self.sample_interval)

    async def stop(self, timeout: float) -> None:
        """Stop listening; requests in flight get `timeout` seconds."""
        sampler, self._sampler = self._sampler, None
        if sampler is not None:
            sampler.cancel()
            await asyncio.wait((sampler,))  # unlike `await sampler`, does not re-raise its cancellation
        if self._server is not None:
            await self._server.stop(timeout)
            self._server = None
