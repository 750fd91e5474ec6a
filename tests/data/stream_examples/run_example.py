"""Run one of the vendored client examples unchanged against a broker of the test's choosing.

    python run_example.py EXAMPLE.py [NAME=VALUE ...]

The examples hard-code `localhost` and RabbitMQ's port 5552 and publish up to millions of messages. Instead
of editing them this runner (1) makes rstream's Producer, Consumer, SuperStreamProducer and
SuperStreamConsumer connect to $STREAM_HOST:$STREAM_PORT whatever host and port the example passes, and
(2) replaces the value of each module-level constant `NAME = ...` given on the command line (message
counts), then runs the example's source as `__main__`.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any

import rstream

HOST = os.environ.get("STREAM_HOST", "127.0.0.1")
PORT = int(os.environ.get("STREAM_PORT", "5552"))


def _redirected(cls: type) -> type:
    """A subclass of `cls` whose connections go to HOST:PORT."""

    def __init__(self: Any, host: str = HOST, port: int = PORT, *args: Any, **kwargs: Any) -> None:
        cls.__init__(self, HOST, PORT, *args, **kwargs)  # type: ignore[misc]

    return type(cls.__name__, (cls,), {"__init__": __init__})


def main(argv: list[str]) -> None:
    path = Path(argv[0])
    source = path.read_text()
    for override in argv[1:]:
        name, value = (part.strip() for part in override.split("=", 1))
        source, count = re.subn(rf"^{name} = .*$", f"{name} = {value}", source, count=1, flags=re.M)
        if count != 1:
            raise SystemExit(f"{path.name} has no constant {name}")
    for name in ("Producer", "Consumer", "SuperStreamProducer", "SuperStreamConsumer"):
        setattr(rstream, name, _redirected(getattr(rstream, name)))
    sys.argv = [str(path)]
    exec(compile(source, str(path), "exec"), {"__name__": "__main__", "__file__": str(path)})


if __name__ == "__main__":
    main(sys.argv[1:])
