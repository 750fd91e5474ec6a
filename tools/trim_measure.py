#!/usr/bin/env python3
"""Measure what malloc_trim gives back (ottermq/store/heap.py).

Starts the broker twice with the trim and twice without it. Each time it queues 100 MB of 4 KiB
transient messages, deletes the queue, and prints the RSS 4 s later.

Usage: .venv/bin/python tools/trim_measure.py
"""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pika

MESSAGES = 25_600
BODY = b"x" * 4096


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _rss_mb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS"):
            return int(line.split()[1]) // 1024
    return -1


def _connect(port: int) -> pika.BlockingConnection:
    for _ in range(100):
        try:
            return pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", port))
        except pika.exceptions.AMQPConnectionError:
            time.sleep(0.2)
    raise SystemExit("the broker did not start")


def measure(trim: bool) -> None:
    """One broker run: RSS when idle, with the queue full, and 4 s after deleting it."""
    port, http_port, data_dir = _free_port(), _free_port(), tempfile.mkdtemp()
    argv = ["ottermq", "serve", "--host", "127.0.0.1", "--port", str(port)]
    argv += ["--http-port", str(http_port), "--data-dir", data_dir]
    code = "\n".join(
        [
            "import sys, ottermq.store.heap as heap",
            "" if trim else "heap._malloc_trim = None",
            "from ottermq.cli import app",
            f"sys.argv = {argv!r}",
            "app()",
        ]
    )
    broker = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        connection = _connect(port)
        time.sleep(2)
        idle = _rss_mb(broker.pid)
        channel = connection.channel()
        channel.queue_declare("q")
        for _ in range(MESSAGES):
            channel.basic_publish("", "q", BODY)
        channel.queue_declare("q", passive=True)  # a round trip: every publish was taken
        time.sleep(1)
        peak = _rss_mb(broker.pid)
        channel.queue_delete("q")
        time.sleep(4)
        after = _rss_mb(broker.pid)
        connection.close()
    finally:
        broker.terminate()
        broker.wait()
    print(f"trim={trim}: idle {idle} MB, full {peak} MB, 4 s after the delete {after} MB")


if __name__ == "__main__":
    for trim in (False, True, False, True):
        measure(trim)
