"""Run a Server until SIGTERM or SIGINT, on uvloop when it is installed.

Strategy: the process entry point owns the event loop; the CLI hands it a ready Broker and the listen address,
and gets back an exit status. Signals only set an event, so shutdown runs as ordinary loop code.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol

from ottermq.server.control import ControlServer
from ottermq.server.limits import raise_open_file_limit
from ottermq.server.monitor import MonitorOptions, ResourceMonitor
from ottermq.server.server import Server
from ottermq.server.signals import StopSignals
from ottermq.server.tls import TLSConfigError, TLSOptions, server_context

if TYPE_CHECKING:
    from ottermq.broker.broker import Broker
    from ottermq.cluster.service import ClusterService

log: Final = logging.getLogger("ottermq.server")


@dataclass(frozen=True, slots=True)
class ServeOptions:
    """What the server needs beyond the broker: where to listen and how to treat sockets."""

    host: str = "::"
    port: int = 5672
    write_buffer_limit: int = 1024 * 1024
    shutdown_timeout: float = 3.0
    # Most open client connections (0 = no limit).
    connection_max: int = 0
    # The AMQPS listener (on `host`), or None for none.
    tls: TLSOptions | None = None
    # Memory and disk alarms, or None to run without the resource monitor.
    monitor: MonitorOptions | None = None
    # The durable store (ottermq.store.DurableStore), or None with in-memory persistence.
    store: StoreService | None = None
    # The Unix socket `ottermq ctl` talks to (<data-dir>/ctl.sock), or None for none.
    control_socket: Path | None = None
    # The management HTTP API (ottermq.http.service.ManagementService), or None for none.
    http: HttpService | None = None
    # The Prometheus endpoints on their own port (ottermq.http.prometheus.PrometheusService), or None.
    prometheus: HttpService | None = None
    # RabbitMQ's stream protocol listener (ottermq.streamproto.server.StreamService), or None.
    stream: HttpService | None = None
    # Cluster membership and election (`--etcd`), or None for a single node.
    cluster: ClusterService | None = None
    # Replication to followers (ottermq.cluster.leader.ReplicationLeader), or None without a cluster.
    replication: ReplicationService | None = None


class ReplicationService(Protocol):
    """What the server needs of a replication leader: start once the store runs, stop before it stops."""

    async def start(self) -> list[tuple[str, int]]:
        """Listen for followers (OSError if it cannot); the bound addresses."""
        ...

    async def stop(self) -> None:
        """Close the followers' connections."""
        ...

    def status(self) -> dict[str, Any]:
        """Term, in-sync set, each follower's acknowledged LSN and lag (JSON-able)."""
        ...


class HttpService(Protocol):
    """What the server needs of the management API: start once AMQP listens, stop before the clients."""

    host: str
    port: int

    async def start(
        self, broker: Broker, amqp: list[tuple[str, int]], amqps: list[tuple[str, int]] | None = None
    ) -> list[tuple[str, int]]:
        """Listen (OSError if it cannot); the bound addresses. `amqp` is where AMQP listens, `amqps` where
        AMQP over TLS does."""
        ...

    async def stop(self, timeout: float) -> None:
        """Stop listening; requests in flight get `timeout` seconds."""
        ...


class StoreService(Protocol):
    """What the server needs of a durable store: start inside the loop, stop after the last client."""

    async def start(self) -> None:
        """Start group commit and background snapshots (before clients are accepted)."""
        ...

    async def stop(self) -> None:
        """Snapshot and close (after every connection has ended)."""
        ...

    def status(self) -> dict[str, Any]:
        """Fields for `ottermq ctl status` (JSON-able)."""
        ...


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


# Collector thresholds for a broker: gen0 every 50k net allocations instead of 700. Messages are acyclic and
# freed by reference counting, so frequent young collections only rescan queued messages; with the default
# thresholds an S1 run (16 B, autoack) spent ~10% of its time in the collector, with full collections of
# 0.2 s once a backlog formed. Cycles (connections, channels) are still collected, in gen1 and gen2.
GC_THRESHOLDS: Final = (50_000, 50, 10)


def tune_gc() -> None:
    """Freeze what start-up allocated (never rescanned) and raise the collector's thresholds."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def format_address(host: str, port: int, scheme: str = "amqp") -> str:
    """amqp://host:port, with IPv6 hosts in brackets."""
    shown = f"[{host}]" if ":" in host else host
    return f"{scheme}://{shown}:{port}"


async def serve_async(broker: Broker, options: ServeOptions, signals: StopSignals | None = None) -> int:
    """Listen, serve until SIGTERM/SIGINT, stop gracefully; the exit status (0 clean, 1 cannot listen).

    `signals` were installed (and attached to this loop) by the caller, before anything listens; without
    them, they are installed here, for the time of this call.
    """
    own_signals = signals is None
    if signals is None:
        signals = StopSignals()
        signals.install()
        signals.attach(asyncio.get_running_loop())
    try:
        return await _serve(broker, options, signals)
    finally:
        if own_signals:
            signals.restore()


def _server(broker: Broker, options: ServeOptions, signals: StopSignals) -> Server:
    """The AMQP server of `broker`; a second stop signal aborts its sockets."""
    server = Server(
        broker,
        write_buffer_limit=options.write_buffer_limit,
        shutdown_timeout=options.shutdown_timeout,
        connection_max=options.connection_max,
        proxy=options.cluster.proxy if options.cluster is not None else None,
    )

    def second_signal(name: str) -> None:
        # A second signal while waiting for close-oks: the operator does not want to wait.
        log.warning("second signal; closing sockets now", extra={"signal": name})
        server.abort_all("shutdown")

    signals.on_second = second_signal
    return server


async def _serve(broker: Broker, options: ServeOptions, signals: StopSignals) -> int:
    server = _server(broker, options, signals)
    if options.cluster is not None:
        # Before any listener accepts: until elected, connection.open is refused.
        await options.cluster.start(broker)
    try:
        return await _serve_clients(broker, options, signals, server)
    finally:
        if options.cluster is not None:
            await options.cluster.stop()


async def serve_stack(
    broker: Broker, options: ServeOptions, signals: StopSignals, stop: asyncio.Event
) -> int:
    """Serve `broker` (listeners, ctl socket, management API, monitor) until `stop` is set, then stop
    them; the exit status (1: cannot listen). The store and the cluster service are the caller's: a
    clustered node (ottermq.server.cluster_node) runs one of these per store it opens."""
    server = _server(broker, options, signals)
    return await _serve_clients(broker, options, signals, server, stop)


async def _serve_clients(
    broker: Broker,
    options: ServeOptions,
    signals: StopSignals,
    server: Server,
    stop: asyncio.Event | None = None,
) -> int:
    if stop is None:
        stop = signals.event
    try:
        addresses = await server.start(options.host, options.port)
    except OSError as exc:
        log.error(
            f"cannot listen on {format_address(options.host, options.port)}: {exc.strerror or exc}",
            extra={"host": options.host, "port": options.port},
        )
        return 1
    loop = asyncio.get_running_loop()
    loop_name = type(loop).__module__.split(".")[0]
    for host, port in addresses:
        fields = {"host": host, "port": port, "loop": loop_name}
        log.info(f"listening on {format_address(host, port)}", extra=fields)
    tls_addresses: list[tuple[str, int]] = []
    if options.tls is not None:
        where = format_address(options.host, options.tls.port, "amqps")
        try:
            context = server_context(options.tls)
            tls_addresses = await server.start_tls(options.host, options.tls.port, context)
        except (OSError, TLSConfigError) as exc:
            detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            log.error(f"cannot listen on {where}: {detail}")
            await server.stop("startup failed")
            return 1
        for host, port in tls_addresses:
            fields = {"host": host, "port": port}
            log.info(f"listening on {format_address(host, port, 'amqps')}", extra=fields)
    monitor = ResourceMonitor(broker, options.monitor, server) if options.monitor is not None else None
    if monitor is not None:
        monitor.start()
    control = await _start_control(
        broker, options.control_socket, options.store, options.cluster, options.replication
    )
    http = await _start_http(broker, options.http, addresses, tls_addresses)
    prometheus = await _start_http(broker, options.prometheus, addresses, tls_addresses, "Prometheus metrics")
    stream = await _start_http(
        broker, options.stream, addresses, tls_addresses, "stream protocol", "rabbitmq-stream"
    )
    try:
        await stop.wait()
        if stop is signals.event or signals.event.is_set():
            log.info("shutting down", extra={"signal": signals.received[0] if signals.received else "none"})
        if prometheus is not None:
            await prometheus.stop(0.1)  # a scrape is cheap and may be lost
            prometheus = None
        if stream is not None:
            await stream.stop(0.5)
            stream = None
        if http is not None:
            # First, so no request sees the broker half stopped; a short share of the shutdown timeout.
            await http.stop(min(1.0, options.shutdown_timeout / 2))
            http = None
        await server.stop("shutdown")
    finally:
        if stream is not None:
            await stream.stop(0.1)
        if prometheus is not None:
            await prometheus.stop(0.1)
        if http is not None:
            await http.stop(0.1)
        if control is not None:
            await control.stop()
        if monitor is not None:
            monitor.stop()
    if stop is signals.event or signals.event.is_set():
        log.info("stopped")
    return 0


async def _start_control(
    broker: Broker,
    path: Path | None,
    store: StoreService | None,
    cluster: ClusterService | None = None,
    replication: ReplicationService | None = None,
) -> ControlServer | None:
    """The `ottermq ctl` endpoint; without it the broker still serves AMQP (the error is logged)."""
    if path is None:
        return None
    status = store.status if store is not None else None
    if store is not None and replication is not None:

        def status() -> dict[str, Any]:
            return {**store.status(), "replication": replication.status()}

    control = ControlServer(broker, path, status, cluster)
    try:
        await control.start()
    except OSError as exc:
        log.error(f"cannot serve ottermq ctl on {path}: {exc.strerror or exc}")
        return None
    log.info("ottermq ctl socket ready", extra={"path": str(path)})
    return control


async def _start_http(
    broker: Broker,
    http: HttpService | None,
    amqp: list[tuple[str, int]],
    amqps: list[tuple[str, int]],
    what: str = "management API",
    scheme: str = "http",
) -> HttpService | None:
    """The management API (or the Prometheus port: `what`); without it the broker still serves AMQP (the
    error is logged)."""
    if http is None:
        return None
    where = format_address(http.host, http.port, scheme)
    try:
        addresses = await http.start(broker, amqp, amqps)
    except OSError as exc:
        log.error(f"cannot serve the {what} on {where}: {exc.strerror or exc}")
        return None
    for host, port in addresses:
        log.info(
            f"{what} listening on {format_address(host, port, scheme)}",
            extra={"host": host, "port": port},
        )
    return http


def serve(broker: Broker, options: ServeOptions) -> int:
    """Run the server in a fresh event loop (uvloop when available) until a signal; the exit status."""
    # First of all: from now on SIGTERM and SIGINT mean a graceful stop, whenever they come.
    signals = StopSignals()
    signals.install()
    try:
        factory = _loop_factory()
        tune_gc()
        raise_open_file_limit()
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(_serve_with_store(broker, options, signals))
    finally:
        signals.restore()


async def _serve_with_store(broker: Broker, options: ServeOptions, signals: StopSignals) -> int:
    """`serve_async` between the store's start and its stop (snapshot on a clean stop)."""
    signals.attach(asyncio.get_running_loop())
    store = options.store
    if store is None:
        return await serve_async(broker, options, signals)
    await store.start()
    replication = options.replication
    try:
        if replication is not None:
            try:
                for host, port in await replication.start():
                    log.info(f"replication listening on {format_address(host, port, 'tcp')}")
            except OSError as exc:
                log.error(f"cannot listen for replication: {exc.strerror or exc}")
                return 1
        return await serve_async(broker, options, signals)
    finally:
        if replication is not None:
            await replication.stop()
        await store.stop()
