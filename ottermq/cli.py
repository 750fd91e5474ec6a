"""The `ottermq` command line: `ottermq serve` and `ottermq version`.

Strategy: options are taken as plain strings and parsed by `ottermq.config`, the same code that reads the
TOML file and the environment, so a bad value reads the same wherever it came from: one line on stderr, exit
code 2, no traceback. This module is also where the pieces meet: settings -> Broker -> server.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Final, NoReturn

import typer

from ottermq import __version__
from ottermq.config import LOG_LEVELS, ConfigError, Settings, load_settings, settings_as_toml

if TYPE_CHECKING:
    from ottermq.broker.broker import Broker

log: Final = logging.getLogger("ottermq")

EXIT_USAGE: Final = 2

app = typer.Typer(
    help="OtterMQ: a durable, RabbitMQ-compatible AMQP 0.9.1 broker.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _usage_error(message: str) -> NoReturn:
    typer.echo(f"ottermq: error: {message}", err=True)
    raise typer.Exit(EXIT_USAGE)


def _prepare_data_dir(path: Path) -> Path:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise ConfigError(f"data_dir: {path} exists and is not a directory") from None
    except OSError as exc:
        raise ConfigError(f"data_dir: cannot create {path}: {exc.strerror or exc}") from None
    return path.resolve()


def _check_persistence(settings: Settings) -> None:
    if settings.persistence == "memento":
        # The durable backend arrives with the store layer; refuse rather than silently run in memory.
        raise ConfigError("persistence: 'memento' is not available in this version yet; use 'memory'")


@app.command()
def serve(
    host: str | None = typer.Option(None, "--host", help="AMQP listen address", show_default="0.0.0.0"),
    port: str | None = typer.Option(None, "--port", help="AMQP port; 0 = a free one", show_default="5672"),
    data_dir: str | None = typer.Option(None, "--data-dir", help="Data directory", show_default="./data"),
    http_port: str | None = typer.Option(None, "--http-port", help="Management port", show_default="15672"),
    config: str | None = typer.Option(
        None, "--config", envvar="OTTERMQ_CONFIG", help="TOML file with settings (keys as in OTTERMQ_<NAME>)",
    ),
    log_level: str | None = typer.Option(None, "--log-level", help="|".join(LOG_LEVELS), show_default="info"),
    log_format: str | None = typer.Option(None, "--log-format", help="kv|json", show_default="kv"),
    check_config: bool = typer.Option(
        False, "--check-config", help="Print the effective settings as TOML and exit, without serving",
    ),
) -> None:
    """Run the broker until SIGTERM or SIGINT.

    Every setting can also come from the --config TOML file or an OTTERMQ_<NAME> environment variable
    (OTTERMQ_PORT, OTTERMQ_HEARTBEAT, OTTERMQ_FRAME_MAX...): a flag beats the environment, which beats the
    file.
    """
    cli_values: dict[str, object | None] = {
        "host": host, "port": port, "data_dir": data_dir, "http_port": http_port,
        "log_level": log_level, "log_format": log_format,
    }
    try:
        settings = load_settings(cli_values, Path(config) if config else None)
        if check_config:
            typer.echo(settings_as_toml(settings), nl=False)
            raise typer.Exit(0)
        _check_persistence(settings)
        data_path = _prepare_data_dir(settings.data_dir)
        broker = _build_broker(settings)
    except ConfigError as exc:
        _usage_error(str(exc))

    from ottermq.server.log import configure_logging
    from ottermq.server.run import ServeOptions
    from ottermq.server.run import serve as run_server

    configure_logging(settings.log_level, settings.log_format)
    log.info(
        f"ottermq {__version__} starting",
        extra={
            "data_dir": str(data_path), "persistence": settings.persistence, "frame_max": settings.frame_max,
            "channel_max": settings.channel_max, "heartbeat": settings.heartbeat,
            "python": sys.version.split()[0],
        },
    )
    log.info("management HTTP API is not served yet", extra={"http_port": settings.http_port})
    options = ServeOptions(
        host=settings.host,
        port=settings.port,
        write_buffer_limit=settings.write_buffer_limit,
        shutdown_timeout=settings.shutdown_timeout,
    )
    raise typer.Exit(run_server(broker, options))


def _build_broker(settings: Settings) -> Broker:
    """The Broker for these settings, with the chosen persistence backend (only `memory` so far)."""
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
    )
    return Broker(broker_settings, MemoryJournal())


@app.command()
def version() -> None:
    """Print the OtterMQ version."""
    typer.echo(__version__)


def main() -> None:
    """Entry point of the `ottermq` console script."""
    app()
