"""tools/streamread, the Go client the stream benchmark reads with, against the real broker: it reads a stream
from `first` and from an offset in the middle, checks the x-stream-offset headers, and fails clearly when the
stream runs dry. Go and Debian's amqp091-go are needed (tools/test_deps.sh installs them): without them the
tests fail, they are not skipped. The first build on a machine compiles the standard library (about a minute);
later ones take seconds, hence the longer timeout."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pika
import pytest

from tests.integration.conftest import BrokerInfo, Resources, unique

ROOT = Path(__file__).resolve().parents[2]
MESSAGES = 20_000
BODY = b"x" * 100

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def streamread(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """streamread built for this run (go's build cache makes a rebuild cheap)."""
    if shutil.which("go") is None:
        pytest.fail("go is not installed: run tools/test_deps.sh as root (apt-get)")
    binary = tmp_path_factory.mktemp("streamread") / "streamread"
    built = subprocess.run(
        [str(ROOT / "tools" / "streamread" / "build.sh")],
        env={**os.environ, "STREAMREAD_BIN": str(binary)},
        capture_output=True,
        text=True,
        timeout=170,
    )
    assert built.returncode == 0, built.stderr
    return binary


@pytest.fixture(scope="module")
def stream(broker: BrokerInfo) -> Iterator[str]:
    """A stream of MESSAGES messages; deleted at the end. Only the last is published in confirm mode (one
    confirm at a time takes pika ten times longer): a channel's publishes are stored in order, so its
    confirm means all the others are in the stream too."""
    name = unique("streamread")
    connection = pika.BlockingConnection(broker.params())
    channel = connection.channel()
    channel.queue_declare(name, durable=True, arguments={"x-queue-type": "stream"})
    for _ in range(MESSAGES - 1):
        channel.basic_publish("", name, BODY)
    channel.confirm_delivery()
    channel.basic_publish("", name, BODY)
    connection.close()
    yield name
    connection = pika.BlockingConnection(broker.params())
    connection.channel().queue_delete(name)
    connection.close()


def run(binary: Path, broker: BrokerInfo, queue: str, *args: str) -> tuple[int, dict[str, Any], str]:
    cmd = [str(binary), "--uri", broker.url, "--queue", queue, *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    lines = proc.stdout.splitlines()
    assert len(lines) == 1, (proc.stdout, proc.stderr)
    return proc.returncode, json.loads(lines[0]), proc.stderr


def test_reads_the_whole_stream_from_first(streamread: Path, broker: BrokerInfo, stream: str) -> None:
    code, result, stderr = run(streamread, broker, stream, "--offset", "first", "--count", str(MESSAGES))
    assert code == 0, stderr
    assert result["consumed"] == MESSAGES
    assert (result["first_offset"], result["last_offset"]) == (0, MESSAGES - 1)
    assert (result["gaps"], result["missing_headers"]) == (0, 0)
    assert result["bytes"] == MESSAGES * len(BODY)
    assert result["seconds"] > 0 and result["per_s"] > 0
    assert "error" not in result


def test_reads_from_an_offset_in_the_middle(streamread: Path, broker: BrokerInfo, stream: str) -> None:
    start = 12_345
    count = MESSAGES - start
    # Odd prefetch and ack sizes: the final ack falls between two multiples.
    code, result, stderr = run(
        streamread, broker, stream, "--offset", str(start), "--count", str(count), "--prefetch", "333",
        "--ack-every", "100",
    )  # fmt: skip
    assert code == 0, stderr
    assert result["consumed"] == count
    assert (result["first_offset"], result["last_offset"]) == (start, MESSAGES - 1)
    assert result["gaps"] == 0


def test_a_stream_that_runs_dry_fails_after_idle(streamread: Path, broker: BrokerInfo, stream: str) -> None:
    code, result, stderr = run(
        streamread, broker, stream, "--offset", str(MESSAGES - 10), "--count", "11", "--idle", "1"
    )
    assert code == 1
    assert result["consumed"] == 10 and result["last_offset"] == MESSAGES - 1
    assert "no delivery for 1.0 s after 10 of 11 deliveries" in result["error"]
    assert "no delivery" in stderr


def test_a_consume_the_broker_refuses_is_reported(
    streamread: Path, broker: BrokerInfo, resources: Resources
) -> None:
    code, result, stderr = run(streamread, broker, resources.queue(), "--count", "1")
    assert code == 1
    assert "basic.consume" in result["error"] and "404" in result["error"], stderr
