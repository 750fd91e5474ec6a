"""The stream clients' own examples against OtterMQ's stream protocol (issue 15, part 2).

rstream's examples (docs/examples of rabbitmq-community/rstream, vendored unchanged under
tests/data/stream_examples/rstream/) run as subprocesses through tests/data/stream_examples/run_example.py,
which points them at this module's broker and lowers their message counts. Those that need what OtterMQ
has not built (sub-entry batching, super streams, single active consumer on a super stream, filtering)
must get a clear error, never a hang, and leave the broker serving. rbfly's examples could not be had
(not in its sdist; GPLv3+ anyway): rbfly_scenarios.py, of our own, does what its documentation shows.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rstream import ConsumerOffsetSpecification, MessageContext, OffsetType

from tests.integration.test_stream_protocol import StreamNode, consumer, publish, read, run

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("OTTERMQ_TEST_URL")), reason="needs a broker of our own with stream_port set"
)

EXAMPLES = Path(__file__).resolve().parents[1] / "data" / "stream_examples"
RUNNER = EXAMPLES / "run_example.py"
TIMEOUT = 30.0


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StreamNode]:
    n = StreamNode(tmp_path_factory.mktemp("stream-examples"))
    n.start()
    try:
        yield n
    finally:
        n.close()


def _env(node: StreamNode) -> dict[str, str]:
    return {**os.environ, "STREAM_HOST": "127.0.0.1", "STREAM_PORT": str(node.stream_port)}


def example(node: StreamNode, name: str, *overrides: str) -> subprocess.CompletedProcess[str]:
    """Run rstream example `name` (its path under docs/examples) to its end."""
    return subprocess.run(
        [sys.executable, "-u", str(RUNNER), str(EXAMPLES / "rstream" / name), *overrides],
        env=_env(node),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        cwd=EXAMPLES,
    )


class Running:
    """An example that runs until SIGINT (the consumers), its stdout read line by line."""

    def __init__(self, node: StreamNode, name: str, *overrides: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-u", str(RUNNER), str(EXAMPLES / "rstream" / name), *overrides],
            env=_env(node),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=EXAMPLES,
        )
        self.lines: list[str] = []

    def wait_lines(self, count: int) -> list[str]:
        """The first `count` lines printed (the process is killed if they do not come in time)."""
        assert self.process.stdout is not None
        deadline = time.monotonic() + TIMEOUT
        while len(self.lines) < count:
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.process.kill()
                _, err = self.process.communicate()
                raise AssertionError(f"{len(self.lines)} of {count} lines; stderr:\n{err}")
            line = self.process.stdout.readline()  # the example prints one line per message
            if line:
                self.lines.append(line.rstrip("\n"))
        return self.lines[:count]

    def interrupt(self) -> tuple[int, str]:
        """Ctrl-C, as its README says: the exit code and what else it printed."""
        self.process.send_signal(signal.SIGINT)
        try:
            out, _ = self.process.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise
        self.lines += out.splitlines()
        return self.process.returncode, out


def offsets(node: StreamNode, stream: str, spec: OffsetType, wait: float = 0.5) -> list[int]:
    """The offsets delivered from `spec` until none came for `wait` seconds (raw: any body)."""

    async def scenario() -> list[int]:
        got: list[int] = []

        async def on_message(message: Any, context: MessageContext) -> None:
            got.append(context.offset)

        c = consumer(node)
        await c.start()
        try:
            await c.subscribe(stream, on_message, offset_specification=ConsumerOffsetSpecification(spec))
            seen = -1
            while seen != len(got):
                seen = len(got)
                await asyncio.sleep(wait)
        finally:
            await c.close()
        return got

    return run(scenario())


def count(node: StreamNode, stream: str) -> int:
    """The messages in `stream` (nothing is deleted here: the last offset + 1)."""
    last = offsets(node, stream, OffsetType.LAST)
    return last[-1] + 1 if last else 0


def assert_serving(node: StreamNode, stream: str) -> None:
    run(publish(node, stream, [b"still", b"here"]))
    got = run(read(node, stream, ConsumerOffsetSpecification(OffsetType.FIRST), 2))
    assert got == [(0, b"still"), (1, b"here")]


# -- what works ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "overrides", "printed", "appended"),
    [
        ("basic_producers/producer_send.py", ["MESSAGES=2000"], r"Sent 2000 messages in", 2000),
        ("basic_producers/producer_send_binary.py", ["MESSAGES=2000"], r"Sent 2000 messages in", 2000),
        ("basic_producers/producer_send_batch.py", ["LOOP=20"], r"Sent 2000 messages in .* per second", 2000),
        ("basic_producers/producer_send_batch_binary.py", ["LOOP=20"], r"Sent 2000 messages in", 2000),
        ("basic_producers/producer_send_wait.py", ["MESSAGES=200"], r"^$", 200),
        (
            "producers_with_confirmations/send_with_confirmation.py",
            ["MESSAGES=10_000"],
            r"Sent 10000 messages in(.|\n)*message id: 10000 is confirmed",
            10_000,
        ),
        (
            "producers_with_confirmations/send_batch_with_confirmation.py",
            ["LOOP=100"],
            r"Sent 10000 messages in(.|\n)*message id: 10000 is confirmed",
            10_000,
        ),
    ],
)
def test_producer_examples(
    node: StreamNode, name: str, overrides: list[str], printed: str, appended: int
) -> None:
    stream = "ex-" + Path(name).stem
    done = example(node, name, *overrides, f'STREAM="{stream}"')
    assert done.returncode == 0, done.stderr
    assert re.search(printed, done.stdout), done.stdout
    assert "not confirmed" not in done.stdout
    assert count(node, stream) == appended


def test_consumer_examples(node: StreamNode) -> None:
    stream = 'STREAM="ex-consume"'
    assert example(node, "basic_producers/producer_send.py", "MESSAGES=50", stream).returncode == 0

    expected = [f"Got message: b'hello: {i}' from stream ex-consume, offset {i}" for i in range(50)]
    for name, first in (("basic_consumer.py", 0), ("basic_consumer_offset_offset.py", 10)):
        running = Running(node, "basic_consumers/" + name, stream)
        assert running.wait_lines(50 - first) == expected[first:]
        code, _ = running.interrupt()
        assert code == 0
        assert running.lines == expected[first:]  # nothing more

    # Without the AMQP decoder a message is its AMQP 1.0 bytes: a data section (0x00 0x53 0x75 0xa0).
    running = Running(node, "basic_consumers/basic_consumer_binary.py", stream)
    lines = running.wait_lines(50)
    assert running.interrupt()[0] == 0
    assert lines[7] == r"Got message: b'\x00Su\xa0\x08hello: 7' from stream ex-consume, offset 7"

    # `next`: only what is published after it subscribed.
    running = Running(node, "basic_consumers/basic_consumer_offset_next.py", stream)
    time.sleep(1.5)  # it prints nothing until a message comes: time to subscribe
    assert example(node, "basic_producers/producer_send.py", "MESSAGES=3", stream).returncode == 0
    assert running.wait_lines(3) == [
        f"Got message: b'hello: {i}' from stream ex-consume offset: {50 + i}" for i in range(3)
    ]
    assert running.interrupt()[0] == 0


def test_deduplication_example(node: StreamNode) -> None:
    # Each publishing id 0..LOOP_1-1 sent LOOP_2 times: one message per id is appended (as the example's
    # comment says); run again with more ids, only the new ones are.
    stream = 'STREAM="ex-dedup"'
    done = example(node, "deduplication/producer_ded.py", "LOOP_1=20", "LOOP_2=50", stream)
    assert done.returncode == 0 and "Sent 20 messages in" in done.stdout, done.stderr
    assert count(node, "ex-dedup") == 20
    done = example(node, "deduplication/producer_ded.py", "LOOP_1=30", "LOOP_2=5", stream)
    assert done.returncode == 0, done.stderr
    assert count(node, "ex-dedup") == 30
    got = run(read(node, "ex-dedup", ConsumerOffsetSpecification(OffsetType.FIRST), 30))
    assert {body for _, body in got} == {b"hello: 0"}  # the first of each id's sends


def test_manual_server_offset_tracking_example(node: StreamNode) -> None:
    # It reads for 5 s, storing its offset every 1000 messages; a second run resumes from the stored one.
    stream = 'STREAM = "ex-track"'
    assert example(node, "basic_producers/producer_send.py", "MESSAGES=2500", stream).returncode == 0
    first = example(node, "manual_server_offset_tracking/consumer.py", stream)
    assert first.returncode == 0, first.stderr
    lines = first.stdout.splitlines()
    assert lines[0] == "ValueError: "  # rstream's OffsetNotFound (19), printed by the example
    assert lines[1] == "Got message: b'hello: 1' from stream ex-track, offset 1"
    assert lines[-2:] == ["Got message: b'hello: 2499' from stream ex-track, offset 2499", "Main done"]
    assert len(lines) == 2 + 2499

    async def stored() -> int:
        c = consumer(node)
        await c.start()
        try:
            return await c.query_offset("ex-track", "subscriber_1")
        finally:
            await c.close()

    assert run(stored()) == 2000  # its 2000th message
    second = example(node, "manual_server_offset_tracking/consumer.py", stream)
    assert second.returncode == 0, second.stderr
    lines = second.stdout.splitlines()
    assert lines[0] == "Got message: b'hello: 2000' from stream ex-track, offset 2000"
    assert len(lines) == 500 + 1


def test_rbfly_scenarios(node: StreamNode) -> None:
    done = subprocess.run(
        [sys.executable, "-u", str(EXAMPLES / "rbfly_scenarios.py"), "ex-rbfly"],
        env=_env(node),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "single: sent 500",
        "batch fast: sent 500",
        "batch limit: sent 500",
        "bytes: sent 500",
        "single again: sent 1",
        "first: read 2001",
        "offset 1500: read 501",
        "timestamp: read 1",
        "reference: resumed after offset 10",
        "done",
    ]
    assert done.stderr == ""


# -- what is not built: a clear error, and the broker goes on -----------------------------------------


def test_sub_entry_batching_example_is_closed_with_a_reason(node: StreamNode) -> None:
    done = example(node, "sub_entry_batch/producer_sub_entry_batch.py", "LOOP=5", 'STREAM="ex-subentry"')
    # The example does not check its sends: it exits 0 and prints its count, but rstream logs the Close.
    assert done.returncode == 0
    assert "Server closed, reason: sub-entry batching is not supported" in done.stderr
    assert 'code=13 reason="sub-entry batching is not supported"' in node.log_text()
    assert offsets(node, "ex-subentry", OffsetType.FIRST) == []  # created, nothing appended
    assert_serving(node, "ex-after-subentry")


def test_super_stream_example_is_refused(node: StreamNode) -> None:
    done = example(node, "super_stream/super_stream_producer.py", "MESSAGES=10")
    assert done.returncode == 1
    # 0x001d: create super stream (RabbitMQ 3.13), an unknown command here: a Close with 13.
    assert "Server closed, reason: unknown command 0x001d" in done.stderr
    assert_serving(node, "ex-after-super")


def test_single_active_consumer_example_is_refused(node: StreamNode) -> None:
    # rstream's example is a super stream consumer: it stops at the partitions query (0x0019). A single
    # active consumer on a plain stream is refused with 17 (test_stream_protocol.py).
    done = example(node, "single_active_consumer/single_active_consumer.py")
    assert done.returncode == 0 and done.stdout == "Finished\n"  # the example catches and logs
    assert "Exception: Server closed, reason: unknown command 0x0019" in done.stderr
    assert_serving(node, "ex-after-sac")


@pytest.mark.parametrize("name", ["filtering/producer_filtering.py", "filtering/consumer_filtering.py"])
def test_filtering_examples_are_refused_by_the_client(node: StreamNode, name: str) -> None:
    # rstream asks exchange_command_versions first; filtering is not among OtterMQ's answers.
    run(publish(node, "ex-filter", [b"x"]))
    done = example(node, name, 'STREAM="ex-filter"')
    assert done.returncode == 1
    assert "ValueError: Filtering is not supported by the broker" in done.stderr
    assert_serving(node, "ex-after-" + Path(name).stem)
