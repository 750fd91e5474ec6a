"""The `memento` command line: inspect, replay and verify a log directory."""

from __future__ import annotations

import typer

app = typer.Typer(help="Memento: inspect, replay and verify a write-ahead log.", no_args_is_help=True)


@app.command()
def version() -> None:
    """Print the Memento version."""
    from memento import __version__

    typer.echo(__version__)


def main() -> None:
    app()
