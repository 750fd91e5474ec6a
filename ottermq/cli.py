"""The `ottermq` command line: `ottermq serve` and `ottermq version`.

Strategy: options are taken as plain strings and parsed by `ottermq.config`, the same code that reads the
TOML file and the environment, so a bad value reads the same wherever it came from: one line on stderr, exit
code 2, no traceback. This module is also where the pieces meet: settings -> Broker -> server.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Final, NoReturn

import typer

from ottermq import __version__
from ottermq.config import LOG_LEVELS, ConfigError, Settings, http_limits, load_settings, settings_as_toml
from ottermq.ctl import SOCKET_NAME as CTL_SOCKET_NAME
from ottermq.ctl import app as ctl_app

if TYPE_CHECKING:
    import ssl

    from ottermq.broker.broker import Broker
    from ottermq.cluster.leader import ReplicationLeader
    from ottermq.cluster.service import ClusterService
    from ottermq.http.prometheus import PrometheusService
    from ottermq.http.service import ManagementService
    from ottermq.server.monitor import MonitorOptions
    from ottermq.server.tls import TLSOptions
    from ottermq.store.store import DurableStore

log: Final = logging.getLogger("ottermq")

EXIT_USAGE: Final = 2
# The data directory cannot be used (read-only, permissions, a foreign file where the log expects its own,
# too few file descriptors): sysexits' EX_IOERR, as rabbitmqctl uses sysexits.
EXIT_DATA_DIR: Final = 74


class DataDirError(Exception):
    """The data directory cannot be used: one line naming the file, exit EXIT_DATA_DIR."""


def describe_os_error(exc: OSError) -> str:
    """`strerror: file` (both files for a rename), or the error's text when it names no file."""
    names = [name for name in (exc.filename, exc.filename2) if name is not None]
    if exc.strerror and names:
        return f"{exc.strerror}: {' -> '.join(str(name) for name in names)}"
    return exc.strerror or str(exc)


app = typer.Typer(
    help="OtterMQ: a durable, RabbitMQ-compatible AMQP 0.9.1 broker.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(value: bool) -> None:
    if value:
        from ottermq.broker.broker import VERSION  # what the broker announces in connection.start

        typer.echo(f"ottermq {VERSION}")
        raise typer.Exit()


@app.callback()
def _options(
    _version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Print the version and exit"
    ),
) -> None:
    """OtterMQ: a durable, RabbitMQ-compatible AMQP 0.9.1 broker."""


def _usage_error(message: str) -> NoReturn:
    typer.echo(f"ottermq: error: {message}", err=True)
    raise typer.Exit(EXIT_USAGE)


def _prepare_data_dir(path: Path) -> Path:
    """The data directory, created owner-only (0700, as every file in it) when missing."""
    from memento.private import private_dir

    try:
        private_dir(path)
    except NotADirectoryError:
        raise ConfigError(f"data_dir: {path} exists and is not a directory") from None
    except OSError as exc:
        raise DataDirError(f"data_dir: cannot create {path}: {describe_os_error(exc)}") from None
    return path.resolve()


def _warn_if_exposed(path: Path) -> None:
    """Say so when other local users may enter the data directory: the log in it holds message bodies
    and password hashes (directories made by older versions were 0755, their files 0644)."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return
    if mode & 0o077:
        log.warning(
            f"data directory {path} is open to other local users (mode {mode:04o}): they may read message "
            f"bodies and password hashes in it; run `chmod 700 {path}`",
            extra={"path": str(path), "mode": f"{mode:04o}"},
        )


@app.command()
def serve(
    host: str | None = typer.Option(
        None,
        "--host",
        help="Listen address; :: = every interface, IPv6 and IPv4",
        show_default="::",
    ),
    port: str | None = typer.Option(None, "--port", help="AMQP port; 0 = a free one", show_default="5672"),
    data_dir: str | None = typer.Option(None, "--data-dir", help="Data directory", show_default="./data"),
    http_port: str | None = typer.Option(None, "--http-port", help="Management port", show_default="15672"),
    prometheus_port: str | None = typer.Option(
        None, "--prometheus-port", help="Prometheus metrics port; 0 = off", show_default="15692"
    ),
    stream_port: str | None = typer.Option(
        None,
        "--stream-port",
        help="RabbitMQ stream protocol port (RabbitMQ's: 5552); 0 = off",
        show_default="0",
    ),
    config: str | None = typer.Option(
        None,
        "--config",
        envvar="OTTERMQ_CONFIG",
        help="TOML file with settings (keys as in OTTERMQ_<NAME>)",
    ),
    log_level: str | None = typer.Option(None, "--log-level", help="|".join(LOG_LEVELS), show_default="info"),
    log_format: str | None = typer.Option(None, "--log-format", help="kv|json", show_default="kv"),
    check_config: bool = typer.Option(
        False,
        "--check-config",
        help="Print the effective settings as TOML and exit, without serving",
    ),
    load_definitions: str | None = typer.Option(
        None,
        "--load-definitions",
        help="A definitions file (RabbitMQ's export format) or a directory of them, imported at start",
    ),
    salvage: bool = typer.Option(
        False,
        "--salvage",
        help="Start on a log damaged in the middle: keep what is valid up to the damage, quarantine the rest "
        "(messages after it are lost); damaged segments the snapshot covers stay, and only the messages "
        "whose bodies cannot be read there are dropped",
    ),
    dry_run: bool = typer.Option(
        False,
        "--dry-run",
        help="With --salvage: print what salvage would drop ('salvage plan:' lines), change nothing, exit 0",
    ),
    etcd: str | None = typer.Option(
        None, "--etcd", help="Join a cluster: etcd's client URLs, comma-separated (http://host:2379)"
    ),
    node_name: str | None = typer.Option(
        None, "--node-name", help="This node's name in the cluster (unique, stable across restarts)"
    ),
    cluster_port: str | None = typer.Option(
        None, "--cluster-port", help="The replication listener's port", show_default="25672"
    ),
    advertise_host: str | None = typer.Option(
        None, "--advertise-host", help="How other nodes and clients reach this node", show_default="--host"
    ),
    cluster_name: str | None = typer.Option(
        None, "--cluster-name", help="The cluster's etcd key prefix", show_default="ottermq"
    ),
) -> None:
    """Run the broker until SIGTERM or SIGINT.

    Every setting can also come from the --config TOML file or an OTTERMQ_<NAME> environment variable
    (OTTERMQ_PORT, OTTERMQ_HEARTBEAT, OTTERMQ_FRAME_MAX...): a flag beats the environment, which beats the
    file.
    """
    cli_values: dict[str, object | None] = {
        "host": host,
        "port": port,
        "data_dir": data_dir,
        "http_port": http_port,
        "prometheus_port": prometheus_port,
        "stream_port": stream_port,
        "log_level": log_level,
        "log_format": log_format,
        "salvage": True if salvage else None,
        "load_definitions": load_definitions,
        "etcd_endpoints": etcd,
        "node_name": node_name,
        "cluster_port": cluster_port,
        "advertise_host": advertise_host,
        "cluster_name": cluster_name,
    }
    try:
        settings = load_settings(cli_values, Path(config) if config else None)
        if check_config:
            typer.echo(settings_as_toml(settings), nl=False)
            raise typer.Exit(0)
        if dry_run:
            _salvage_dry_run(settings)
        _check_cluster(settings)
        cluster_tls = _cluster_tls(settings)
        data_path = _prepare_data_dir(settings.data_dir)
        from ottermq.server.log import configure_logging

        # Before the log is opened: a salvage says what it will drop before it acts.
        configure_logging(settings.log_level, settings.log_format)
        follow = _static_leader(settings)
        if follow is not None:
            raise typer.Exit(_serve_follower(settings, data_path, follow, cluster_tls))
        if settings.etcd_endpoints:
            raise typer.Exit(_serve_clustered(settings, data_path, config, cluster_tls))
        broker, store = _build_broker(settings, data_path)
        seeded = _seed_access(broker, settings)
        loaded = _load_definitions(broker, settings)
        tls = _tls_options(settings)
        cluster = _cluster_service(settings, store)
    except ConfigError as exc:
        _usage_error(str(exc))
    except DataDirError as exc:
        typer.echo(f"ottermq: error: {exc}", err=True)
        raise typer.Exit(EXIT_DATA_DIR) from None

    from ottermq.server.run import ServeOptions
    from ottermq.server.run import serve as run_server

    log.info(
        f"ottermq {__version__} starting",
        extra={
            "data_dir": str(data_path),
            "persistence": settings.persistence,
            "frame_max": settings.frame_max,
            "channel_max": settings.channel_max,
            "heartbeat": settings.heartbeat,
            "python": sys.version.split()[0],
        },
    )
    _warn_if_exposed(data_path)
    if store is not None:
        store.report_recovery()
        _report_salvage(store)
    if seeded:
        log.info("created from the config file", extra={"entries": ", ".join(seeded)})
    for line in loaded:
        log.info(line)
    # Listens (and logs "management API listening on ...") once the AMQP listener is up.
    http, prometheus = _http_services(settings, data_path, config, store, cluster)
    if http is None:
        log.info("management API disabled (http_port = 0)")
    stream = None
    if settings.stream_port:
        from ottermq.streamproto.server import StreamService

        stream = StreamService(settings.host, settings.stream_port, data_path if store is not None else None)
    replication = _replication_leader(settings, store, cluster_tls)
    options = ServeOptions(
        replication=replication,
        host=settings.host,
        port=settings.port,
        write_buffer_limit=settings.write_buffer_limit,
        shutdown_timeout=settings.shutdown_timeout,
        store=store,
        connection_max=settings.connection_max,
        tls=tls,
        monitor=_monitor_options(settings, data_path),
        control_socket=data_path / CTL_SOCKET_NAME,
        http=http,
        prometheus=prometheus,
        stream=stream,
        cluster=cluster,
    )
    try:
        status = run_server(broker, options)
    except OSError as exc:
        # Start-up work on the data directory (the store's running mark...) that recovery did not catch.
        log.error(f"cannot serve from {data_path}: {describe_os_error(exc)}")
        status = EXIT_DATA_DIR
    if store is not None:
        # Everything is durable and closed: skip the interpreter's teardown, which would free a large
        # backlog object by object (seconds for a million messages) before the process could end.
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    raise typer.Exit(status)


def _check_cluster(settings: Settings) -> None:
    """ConfigError for cluster settings that cannot work (checked before the log is opened)."""
    if not settings.etcd_endpoints:
        return
    if not settings.node_name:
        raise ConfigError("node_name: a clustered node (--etcd) needs --node-name")
    if settings.persistence != "memento":
        raise ConfigError("persistence: a clustered node (--etcd) replicates its log: it needs memento")
    if not settings.cluster_secret:
        raise ConfigError("cluster_secret: a clustered node (--etcd) needs the cluster's shared secret")
    if not settings.cluster_port:
        raise ConfigError("cluster_port: a clustered node (--etcd) needs a fixed --cluster-port, not 0")
    if not settings.port:
        # The port is what the node advertises to clients and the other nodes: it must be known.
        raise ConfigError("port: a clustered node (--etcd) needs a fixed --port, not 0")
    from ottermq.cluster.etcd import parse_endpoint

    for url in settings.etcd_endpoints:
        try:
            parse_endpoint(url)
        except ValueError as exc:
            raise ConfigError(f"etcd_endpoints: {exc}") from None


def _cluster_service(settings: Settings, store: DurableStore | None) -> ClusterService | None:
    """The cluster service when `etcd_endpoints` is set (None: a single node, nothing changes)."""
    if not settings.etcd_endpoints:
        return None
    _check_cluster(settings)
    import socket

    from ottermq.cluster.election import NodeInfo
    from ottermq.cluster.service import ClusterOptions, ClusterService

    host = settings.advertise_host or settings.host
    if host in ("::", "0.0.0.0", "::0"):
        # Every interface is no address to give others: the machine's name is the best guess.
        host = socket.gethostname()
    cluster_port = settings.advertise_cluster_port or settings.cluster_port
    node = NodeInfo(settings.node_name, host, settings.port, settings.http_port, cluster_port)
    options = ClusterOptions(
        etcd_endpoints=settings.etcd_endpoints,
        node=node,
        cluster_name=settings.cluster_name,
        lease_ttl=settings.cluster_lease_ttl,
        secret=settings.cluster_secret,
        min_in_sync=settings.min_in_sync,
    )
    durable = (lambda: store.log.durable_lsn) if store is not None else (lambda: 0)
    # The replication leader keeps the in-sync set (ottermq.server.cluster_node).
    return ClusterService(options, durable, manage_isr=False)


def _http_services(
    settings: Settings,
    data_path: Path,
    config: str | None,
    store: DurableStore | None,
    cluster: ClusterService | None,
) -> tuple[ManagementService | None, PrometheusService | None]:
    """The management API and the Prometheus listener the settings ask for (None: off)."""
    http = None
    if settings.http_port:
        from ottermq.http.service import ManagementService

        http = ManagementService(
            settings.host,
            settings.http_port,
            store,
            sample_interval=settings.collect_statistics_interval / 1000,
            limits=http_limits(settings),
            node={
                "data_dir": str(data_path),
                "disk_free_limit": settings.disk_free_limit,
                "config_files": [str(Path(config).resolve())] if config else [],
            },
            cluster=cluster,
        )
    prometheus = None
    if settings.prometheus_port:
        from ottermq.http.prometheus import PrometheusService

        prometheus = PrometheusService(settings.host, settings.prometheus_port, store, cluster=cluster)
    return http, prometheus


def _serve_clustered(
    settings: Settings,
    data_path: Path,
    config: str | None,
    cluster_tls: tuple[ssl.SSLContext, ssl.SSLContext] | None = None,
) -> int:
    """Run a clustered node (`--etcd`) until SIGTERM or SIGINT: it leads or follows as the election
    decides (ottermq.server.cluster_node); the exit status."""
    import asyncio

    from ottermq.cluster.leader import ReplicationOptions
    from ottermq.server.cluster_node import NodePlan, serve_cluster
    from ottermq.server.limits import raise_open_file_limit
    from ottermq.server.run import ServeOptions, _loop_factory, tune_gc
    from ottermq.server.signals import StopSignals

    cluster = _cluster_service(settings, None)
    assert cluster is not None
    tls = _tls_options(settings)
    recovered = [False]

    def open_store() -> DurableStore:
        broker, store = _build_broker(settings, data_path, follower=True)
        assert store is not None
        broker.standby = True
        if not recovered[0]:  # the start's recovery; later ones (a follower's log cut or replaced) are quiet
            recovered[0] = True
            store.report_recovery()
            _report_salvage(store)
        return store

    def stack_options(store: DurableStore) -> ServeOptions:
        http, prometheus = _http_services(settings, data_path, config, store, cluster)
        return ServeOptions(
            host=settings.host,
            port=settings.port,
            write_buffer_limit=settings.write_buffer_limit,
            shutdown_timeout=settings.shutdown_timeout,
            store=store,
            connection_max=settings.connection_max,
            tls=tls,
            monitor=_monitor_options(settings, data_path),
            http=http,
            prometheus=prometheus,
            cluster=cluster,
        )

    def seed(store: DurableStore) -> None:
        broker = store.broker
        assert broker is not None
        if store.log.end_lsn == 0 and store.log.snapshot_lsn == 0:
            broker.create_defaults()  # the cluster's first leader, on a fresh log
        try:
            seeded = _seed_access(broker, settings)
            loaded = _load_definitions(broker, settings)
        except ConfigError as exc:
            log.error(str(exc))
            return
        if seeded:
            log.info("created from the config file", extra={"entries": ", ".join(seeded)})
        for line in loaded:
            log.info(line)

    plan = NodePlan(
        data_dir=data_path,
        open_store=open_store,
        stack_options=stack_options,
        seed=seed,
        replication=ReplicationOptions(
            host=settings.host,
            port=settings.cluster_port,
            cluster_name=settings.cluster_name,
            secret=settings.cluster_secret,
            ack_timeout=settings.replication_ack_timeout,
            min_in_sync=settings.min_in_sync,
            tls=cluster_tls[0] if cluster_tls is not None else None,
            sender_threads=settings.replication_sender_threads,
        ),
        control_socket=data_path / CTL_SOCKET_NAME,
        follower_tls=cluster_tls[1] if cluster_tls is not None else None,
    )
    log.info(
        f"ottermq {__version__} starting as a cluster node",
        extra={"data_dir": str(data_path), "node": settings.node_name, "python": sys.version.split()[0]},
    )
    _warn_if_exposed(data_path)
    signals = StopSignals()
    signals.install()
    try:
        tune_gc()
        raise_open_file_limit()
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            status = runner.run(serve_cluster(cluster, plan, signals))
    except (ConfigError, DataDirError) as exc:
        log.error(str(exc))
        status = EXIT_DATA_DIR
    finally:
        signals.restore()
    log.info("stopped")
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def _tls_options(settings: Settings) -> TLSOptions | None:
    """The AMQPS listener's options (None when TLS is not configured), checked by building the context."""
    from ottermq.server.tls import TLS_PORT_DEFAULT, TLSConfigError, TLSOptions, server_context

    if not (settings.tls_certfile or settings.tls_keyfile or settings.tls_port):
        return None
    options = TLSOptions(
        port=settings.tls_port or TLS_PORT_DEFAULT,
        certfile=settings.tls_certfile,
        keyfile=settings.tls_keyfile,
        cafile=settings.tls_cafile,
        verify=settings.tls_verify,
        fail_if_no_peer_cert=settings.tls_fail_if_no_peer_cert,
    )
    try:
        server_context(options)
    except TLSConfigError as exc:
        raise ConfigError(str(exc)) from None
    return options


def _message_memory(settings: Settings, data_path: Path, default: int) -> int:
    """Memory for logged messages held (index and the contents kept in memory): at most half of the memory
    high-water mark, as RabbitMQ pages messages out at half of it, so that contents the store would drop
    anyway never raise the memory alarm."""
    from ottermq.server.monitor import memory_limit

    limit = memory_limit(_monitor_options(settings, data_path))
    return max(1, min(default, limit // 2)) if limit > 0 else default


def _monitor_options(settings: Settings, data_path: Path) -> MonitorOptions:
    from ottermq.server.monitor import MonitorOptions

    return MonitorOptions(
        memory_high_watermark=settings.vm_memory_high_watermark,
        memory_limit_bytes=settings.vm_memory_high_watermark_absolute,
        disk_free_limit=settings.disk_free_limit,
        data_dir=data_path,
        max_content_in_flight=settings.max_content_in_flight,
    )


def _node_name(settings: Settings) -> str:
    import socket

    return settings.node_name or socket.gethostname()


def _static_leader(settings: Settings) -> tuple[str, int] | None:
    """The leader this node follows under `cluster_static_leader` (a test-only setting), or None when it
    leads or is not in a cluster."""
    if not settings.cluster_static_leader:
        return None
    from ottermq.cluster.static import parse_static_leader

    try:
        address = parse_static_leader(settings.cluster_static_leader)
    except ValueError as exc:
        raise ConfigError(f"cluster_static_leader: {exc}") from None
    if not settings.cluster_secret:
        raise ConfigError("cluster_secret must be set for replication")
    if settings.persistence != "memento":
        raise ConfigError("replication needs persistence = memento")
    if address is None and not settings.cluster_port:
        raise ConfigError("cluster_static_leader = self needs cluster_port")
    return address


def _cluster_tls(settings: Settings) -> tuple[ssl.SSLContext, ssl.SSLContext] | None:
    """`cluster_tls`: the replication listener's and a follower's SSL contexts, or None (plain TCP)."""
    if not settings.cluster_tls:
        return None
    from ottermq.server.tls import TLSConfigError, cluster_contexts

    try:
        return cluster_contexts(settings.tls_certfile, settings.tls_keyfile, settings.tls_cafile)
    except TLSConfigError as exc:
        raise ConfigError(str(exc)) from None


def _replication_leader(
    settings: Settings, store: DurableStore | None, tls: tuple[ssl.SSLContext, ssl.SSLContext] | None = None
) -> ReplicationLeader | None:
    """The replication leader when this node leads under `cluster_static_leader = self`, else None."""
    if settings.cluster_static_leader != "self" or store is None:
        return None
    from ottermq.cluster.leader import ReplicationLeader, ReplicationOptions
    from ottermq.cluster.static import StaticRole

    options = ReplicationOptions(
        host=settings.host,
        port=settings.cluster_port,
        cluster_name=settings.cluster_name,
        secret=settings.cluster_secret,
        ack_timeout=settings.replication_ack_timeout,
        min_in_sync=settings.min_in_sync,
        tls=tls[0] if tls is not None else None,
        sender_threads=settings.replication_sender_threads,
    )
    return ReplicationLeader(store, StaticRole(_node_name(settings), leader=True), options)


def _serve_follower(
    settings: Settings,
    data_path: Path,
    leader: tuple[str, int],
    tls: tuple[ssl.SSLContext, ssl.SSLContext] | None = None,
) -> int:
    """Follow `leader` into `data_path` until SIGTERM or SIGINT (no AMQP listener: a standby); the exit
    status."""
    import asyncio

    from ottermq.cluster.follower import Follower, FollowerOptions
    from ottermq.server.signals import StopSignals

    def open_store() -> DurableStore:
        _broker, store = _build_broker(settings, data_path, follower=True)
        assert store is not None
        store.report_recovery()
        return store

    options = FollowerOptions(
        leader,
        _node_name(settings),
        settings.cluster_name,
        settings.cluster_secret,
        tls=tls[1] if tls is not None else None,
    )
    follower = Follower(data_path, options, open_store)

    async def main(signals: StopSignals) -> None:
        signals.attach(asyncio.get_running_loop())
        task = asyncio.create_task(follower.run())
        stop = asyncio.create_task(signals.event.wait())
        await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        finally:
            stop.cancel()

    log.info(
        f"ottermq {__version__} following the leader at {leader[0]}:{leader[1]}",
        extra={"node": options.node_name, "data_dir": str(data_path)},
    )
    signals = StopSignals()
    signals.install()
    try:
        with asyncio.Runner() as runner:
            runner.run(main(signals))
    except (ConfigError, DataDirError) as exc:
        log.error(str(exc))
        return EXIT_DATA_DIR
    finally:
        signals.restore()
    log.info("stopped")
    return 0


def _build_broker(
    settings: Settings, data_path: Path, *, follower: bool = False
) -> tuple[Broker, DurableStore | None]:
    """The Broker for these settings, with the chosen persistence backend: `memory`, or `memento` (the
    log in <data_dir>/log, recovered here: a refused recovery is a ConfigError naming segment and LSN)."""
    # Imported here so `--help` and `--check-config` answer without loading the whole broker.
    from ottermq.broker.broker import Broker, BrokerSettings
    from ottermq.broker.journal import MemoryJournal

    broker_settings = BrokerSettings(
        frame_max=settings.frame_max,
        channel_max=settings.channel_max,
        heartbeat=settings.heartbeat,
        max_message_size=settings.max_message_size,
        default_user=settings.default_user,
        default_pass=settings.default_pass,
        loopback_users=settings.loopback_users,
        handshake_timeout=settings.handshake_timeout,
        consumer_timeout=settings.consumer_timeout,
        seed_defaults=not settings.load_definitions,
        clustered=bool(settings.etcd_endpoints or settings.cluster_static_leader),
    )
    if settings.persistence != "memento":
        return Broker(broker_settings, MemoryJournal()), None
    from memento.errors import MementoError, RecoveryRefused
    from ottermq.store.codec import CodecError
    from ottermq.store.store import DurableStore, StoreOptions

    store_options = StoreOptions(
        segment_size=settings.log_segment_size,
        snapshot_bytes=settings.snapshot_log_bytes,
        snapshot_interval=settings.snapshot_interval,
        check_interval=min(1.0, settings.snapshot_interval / 2),
        salvage=settings.salvage,
        scrub_rate=settings.scrub_rate,
        scrub_interval=settings.scrub_interval,
        message_memory=_message_memory(settings, data_path, StoreOptions().message_memory),
        compact=not follower,
    )
    try:
        store = DurableStore.open(data_path, store_options)
    except OSError as exc:
        raise DataDirError(f"cannot open the log in {data_path}: {describe_os_error(exc)}") from None
    except MementoError as exc:
        hint = (
            ""
            if settings.salvage or not isinstance(exc, RecoveryRefused)
            else (
                "; to start anyway, keeping what is valid up to the damage and losing what follows it, run "
                "`ottermq serve --salvage` (or set salvage = true)"
            )
        )
        raise ConfigError(f"cannot open the log in {data_path}: {exc}{hint}") from None
    try:
        broker = store.new_broker(broker_settings)
        store.recover(broker, defaults=not follower)
        if not follower:
            # A follower writes nothing of its own: its store returns them when promoted.
            store.return_unacked()
    except (MementoError, CodecError) as exc:
        store.close()
        raise ConfigError(f"cannot recover the log in {data_path}: {exc}") from None
    except OSError as exc:
        store.close()
        raise DataDirError(f"cannot recover the log in {data_path}: {describe_os_error(exc)}") from None
    return broker, store


def _salvage_dry_run(settings: Settings) -> NoReturn:
    """`serve --salvage --dry-run`: print the salvage plan (stdout), change nothing, exit 0 (2 when the log
    cannot be planned for, 74 when the data directory cannot be read)."""
    if not settings.salvage:
        raise ConfigError("--dry-run plans a salvage: give --salvage too (or salvage = true)")
    if settings.persistence != "memento":
        raise ConfigError("--dry-run: persistence is not memento, there is no log to salvage")
    from memento.errors import MementoError
    from ottermq.store.codec import CodecError
    from ottermq.store.salvage import plan_salvage
    from ottermq.store.store import LOG_DIR, StoreOptions

    data_path = Path(settings.data_dir)
    if not (data_path / LOG_DIR).is_dir():
        typer.echo(f"salvage plan: no log in {data_path}: nothing to salvage")
        raise typer.Exit(0)
    options = StoreOptions(segment_size=settings.log_segment_size, salvage=True)
    try:
        outcome = plan_salvage(data_path, options)
    except OSError as exc:
        raise DataDirError(f"cannot read the log in {data_path}: {describe_os_error(exc)}") from None
    except (MementoError, CodecError) as exc:
        raise ConfigError(f"cannot plan a salvage of the log in {data_path}: {exc}") from None
    for line in outcome.lines():
        typer.echo(line)
    typer.echo("salvage plan: dry run, nothing was changed")
    raise typer.Exit(0)


def _report_salvage(store: DurableStore) -> None:
    """Say loudly, at error level, what a salvaging start dropped: it may include confirmed messages."""
    from memento.recovery import ACCEPTED, REPAIRABLE

    report = store.log.recovery_report
    # Memento notes a skipped damaged snapshot as a "salvage: ..." warning without cutting the log.
    for warning in report.warnings:
        if warning.startswith("salvage:"):
            log.error(warning)
    if not report.salvaged:
        return
    for finding in report.findings:
        if finding.severity not in (REPAIRABLE, ACCEPTED):
            log.error(
                f"salvage: {finding.message}",
                extra={"segment": finding.segment, "offset": finding.offset, "lsn": finding.lsn},
            )
    if report.plan is not None and not report.plan.first_dropped:
        log.error(
            "salvage: the log was damaged where the snapshot covers it; no record was dropped, damaged "
            "segments were kept in place and only messages whose bodies could not be read were dropped",
            extra={"kept_through_lsn": report.end_lsn, "quarantined": ", ".join(report.quarantined) or "-"},
        )
        return
    log.error(
        "salvage: the log was damaged; everything after the damage was dropped, including messages that "
        "may have been confirmed",
        extra={"kept_through_lsn": report.end_lsn, "quarantined": ", ".join(report.quarantined) or "-"},
    )


def _seed_access(broker: Broker, settings: Settings) -> list[str]:
    """Create the config file's [[vhosts]], [[users]] and [[permissions]] that do not exist yet, then set
    its [[vhost_limits]] on vhosts that have no limits (once set, `ottermq ctl` manages them)."""
    from ottermq.broker.access import AccessError, seed

    try:
        seeded = seed(broker.access, settings.users, settings.vhosts, settings.permissions)
        for entry in settings.vhost_limits:
            vhost = entry.get("vhost", "/")
            if vhost not in broker.vhost_limits:
                limits = {key.replace("_", "-"): value for key, value in entry.items() if key != "vhost"}
                broker.set_vhost_limits(vhost, limits)
                seeded.append(f"vhost limits {vhost}")
        return seeded
    except AccessError as exc:
        raise ConfigError(f"config file: {exc}") from None


def _load_definitions(broker: Broker, settings: Settings) -> list[str]:
    """Import the load_definitions file (or every *.json of the directory, by name) after recovery, as
    RabbitMQ does at boot; lines for the log. A file that cannot be read or imported stops the start
    (ConfigError), as it stops RabbitMQ's."""
    if not settings.load_definitions:
        return []
    from ottermq.broker.definitions import DefinitionsError, import_definitions

    path = Path(settings.load_definitions).expanduser()
    files = sorted(path.glob("*.json")) if path.is_dir() else [path]
    lines: list[str] = []
    for file in files:
        try:
            document = json.loads(file.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"load_definitions: cannot read {describe_os_error(exc)}") from None
        except (ValueError, RecursionError):
            raise ConfigError(f"load_definitions: {file} is not JSON") from None
        try:
            plan = import_definitions(broker, document)
        except DefinitionsError as exc:
            raise ConfigError(f"load_definitions: {file}: {exc.reason.rstrip()}") from None
        lines.append(
            f"definitions loaded from {file}: {len(plan.changes)} changes, {len(plan.skipped)} skipped"
        )
    return lines


app.add_typer(ctl_app, name="ctl")


@app.command()
def version() -> None:
    """Print the OtterMQ version."""
    typer.echo(__version__)


def main() -> None:
    """Entry point of the `ottermq` console script."""
    app()
