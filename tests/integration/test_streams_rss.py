"""A consumer far behind streams from disk: the broker's RSS stays flat while an AMQP 0.9.1 consumer and a
stream-protocol subscriber read a 256 MB stream from `first` at the same time (issue 15 asks this of a
5 GB stream: `tools/bench_stream.py --rss 5`; the reading is the same, only the scale differs here)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.test_stream_protocol import StreamNode
from tools.bench_stream import Broker, fill_stream, read_both

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("OTTERMQ_TEST_URL")), reason="needs a broker of our own with stream_port set"
)

STREAM_BYTES = 256 << 20
SIZE = 4096
# What reading may add, whatever the stream's size: the read-ahead of each reader (about 1 MiB), socket
# buffers, the interpreter's own growth. The whole stream would be 256 MB.
GROWTH_MB = 100


@pytest.fixture
def node(tmp_path: Path) -> Iterator[StreamNode]:
    n = StreamNode(tmp_path)
    n.start()
    try:
        yield n
    finally:
        n.stop()


def test_rss_stays_flat_while_both_protocols_read_a_large_stream_from_first(node: StreamNode) -> None:
    assert node.process is not None
    broker = Broker("OtterMQ", node.port, node.stream_port, node.process.pid)
    messages = fill_stream(node.stream_port, "rss", STREAM_BYTES, SIZE)
    curve, _amqp_rate, _stream_rate = read_both(broker, "rss", messages)
    summary = curve.summary()
    assert summary["peak_mb"] - summary["start_mb"] < GROWTH_MB, summary
