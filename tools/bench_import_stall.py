"""How long a big definitions import keeps other clients waiting: the round trip of confirmed publishes
on another connection while POST /api/definitions imports N queues with a binding each.

Starts its own broker (`python -m ottermq serve` on a temporary data directory, free ports), publishes
with confirms every 5 ms from a thread, posts the import, and prints the import's duration and the
publish round trips seen while it ran (max, p99, median). Usage: python tools/bench_import_stall.py [N]
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pika

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def document(count: int) -> bytes:
    queues = [
        {"name": f"imp.q.{i:06d}", "vhost": "/", "durable": True, "auto_delete": False,
         "arguments": {"x-max-length": 1000}}
        for i in range(count)
    ]  # fmt: skip
    bindings = [
        {"source": "imp.x", "vhost": "/", "destination": f"imp.q.{i:06d}", "destination_type": "queue",
         "routing_key": f"key.{i}", "arguments": {}}
        for i in range(count)
    ]  # fmt: skip
    exchanges = [
        {"name": "imp.x", "vhost": "/", "type": "direct", "durable": True, "auto_delete": False,
         "internal": False, "arguments": {}}
    ]  # fmt: skip
    return json.dumps({"queues": queues, "exchanges": exchanges, "bindings": bindings}, indent=2).encode()


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1].isdigit() else 40_000
    body = document(count)
    with tempfile.TemporaryDirectory() as base:
        http_port = _free_port()
        log = Path(base) / "broker.log"
        cmd = [
            sys.executable, "-m", "ottermq", "serve", "--host", "127.0.0.1", "--port", "0",
            "--http-port", str(http_port), "--prometheus-port", "0", "--data-dir", f"{base}/data",
        ]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if not k.startswith("OTTERMQ_")}
        with log.open("wb") as out:
            process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
        try:
            port = 0
            deadline = time.monotonic() + 20
            while not port and time.monotonic() < deadline:
                text = log.read_text(errors="replace")
                match = re.search(r"listening on amqp://[^\s:/]+:(\d+)", text)
                if match and "management API listening" in text:
                    port = int(match.group(1))
                time.sleep(0.05)
            assert port, log.read_text()
            samples: list[tuple[float, float]] = []  # (sent at, round trip)
            stop = threading.Event()

            def publisher() -> None:
                params = pika.ConnectionParameters("127.0.0.1", port)
                connection = pika.BlockingConnection(params)
                channel = connection.channel()
                channel.confirm_delivery()
                channel.queue_declare("probe", durable=True)
                while not stop.is_set():
                    sent = time.monotonic()
                    channel.basic_publish("", "probe", b"x", pika.BasicProperties(delivery_mode=2))
                    samples.append((sent, time.monotonic() - sent))
                    if len(samples) % 1000 == 0:
                        channel.queue_purge("probe")  # keeps the probe queue small
                    time.sleep(0.005)
                connection.close()

            thread = threading.Thread(target=publisher)
            thread.start()
            time.sleep(1.0)
            conn = http.client.HTTPConnection("127.0.0.1", http_port, timeout=300)
            auth = base64.b64encode(b"guest:guest").decode()
            started = time.monotonic()
            conn.request(
                "POST",
                "/api/definitions",
                body=body,
                headers={"Authorization": f"Basic {auth}", "Content-Type": "application/json"},
            )
            status = conn.getresponse().status
            ended = time.monotonic()
            time.sleep(0.5)
            stop.set()
            thread.join()
            during = sorted(rtt for sent, rtt in samples if started <= sent <= ended)
            # A publish sent just before the import and answered after it is the stall too.
            spanning = [rtt for sent, rtt in samples if sent < started and sent + rtt > started]
            worst = max(during + spanning) if during or spanning else 0.0
            p99 = during[int(len(during) * 0.99)] if during else 0.0
            print(
                f"{count} queues, {len(body) / 2**20:.1f} MiB: HTTP {status} in {ended - started:.2f} s; "
                f"publishes during it: {len(during)}, max round trip {worst * 1000:.0f} ms, "
                f"p99 {p99 * 1000:.0f} ms, median {statistics.median(during) * 1000 if during else 0:.1f} ms"
            )
            if "-v" in sys.argv:
                for sent, rtt in sorted(samples, key=lambda x: -x[1])[:6]:
                    print(f"  sent at +{(sent - started) * 1000:.0f} ms: {rtt * 1000:.0f} ms")
        finally:
            process.terminate()
            process.wait(timeout=30)


if __name__ == "__main__":
    main()
