"""The `ottermq` command line."""

from __future__ import annotations

import typer

app = typer.Typer(help="OtterMQ: a durable, RabbitMQ-compatible AMQP 0.9.1 broker.", no_args_is_help=True)


@app.command()
def version() -> None:
    """Print the OtterMQ version."""
    from ottermq import __version__

    typer.echo(__version__)


def main() -> None:
    app()
