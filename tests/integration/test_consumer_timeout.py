"""The consumer delivery acknowledgement timeout (consumer_timeout): the channel is closed with 406.

A broker of its own with a one-second timeout (the suite's broker keeps RabbitMQ's 30 minutes)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pika
import pytest

from tests.integration.conftest import _LISTENING, _ROOT, BrokerInfo, _stop, get_message, unique


@pytest.fixture(scope="module")
def short_timeout_broker(
    tmp_path_factory: pytest.TempPathFactory, broker: BrokerInfo
) -> Iterator[BrokerInfo]:
    if broker.external:
        pytest.skip("needs a broker started with a short consumer_timeout")
    base = tmp_path_factory.mktemp("ottermq-timeout")
    log_path = base / "ottermq.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTTERMQ_")}
    env["OTTERMQ_CONSUMER_TIMEOUT"] = "1000"
    cmd = [
        sys.executable,
        "-m",
        "ottermq",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--http-port",
        "0",
        "--prometheus-port",
        "0",
    ]
    cmd += ["--data-dir", str(base / "data")]
    with log_path.open("ab") as log:
        process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=_ROOT, env=env)
    try:
        port = _wait_port(log_path, process)
        yield BrokerInfo(
            "127.0.0.1", port, f"amqp://guest:guest@127.0.0.1:{port}/%2F", base, process, log_path
        )
    finally:
        _stop(process)


def _wait_port(log_path: Path, process: subprocess.Popen[bytes]) -> int:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        match = _LISTENING.search(log_path.read_text(errors="replace"))
        if match is not None:
            return int(match.group(1))
        if process.poll() is not None:
            break
        time.sleep(0.05)
    raise RuntimeError(log_path.read_text(errors="replace")[-2000:])


def test_unacked_delivery_times_out(short_timeout_broker: BrokerInfo) -> None:
    conn = pika.BlockingConnection(short_timeout_broker.params())
    try:
        ch = conn.channel()
        queue = unique("q")
        ch.queue_declare(queue)
        ch.basic_publish("", queue, b"m")
        get_message(ch, queue)
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as caught:
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                time.sleep(0.1)
                ch.basic_qos(prefetch_count=0)  # a synchronous call surfaces the close
        assert (caught.value.reply_code, caught.value.reply_text) == (
            406,
            "PRECONDITION_FAILED - delivery acknowledgement on channel 1 timed out. Timeout value used: "
            "1000 ms. This timeout value can be configured, see consumers doc guide to learn more",
        )
        # The message went back to the queue.
        other = conn.channel()
        method, _, body = get_message(other, queue, auto_ack=True)
        assert body == b"m" and method.redelivered
    finally:
        if conn.is_open:
            conn.close()


def test_acked_in_time_is_fine(short_timeout_broker: BrokerInfo) -> None:
    conn = pika.BlockingConnection(short_timeout_broker.params())
    try:
        ch = conn.channel()
        queue = unique("q")
        ch.queue_declare(queue)
        for _ in range(3):
            ch.basic_publish("", queue, b"m")
            method, _, _ = get_message(ch, queue)
            conn.process_data_events(time_limit=0.6)
            ch.basic_ack(method.delivery_tag)
        conn.process_data_events(time_limit=1.5)
        assert ch.is_open
    finally:
        conn.close()
