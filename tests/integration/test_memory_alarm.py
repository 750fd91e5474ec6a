"""The memory alarm counts what the broker holds: it clears once the load is gone, a flood cannot run far past
it, and content already under way stops with it.

Strategy: a real broker per test with a small absolute high-water mark. Publishers flood it until
connection.blocked; the test then drains, purges or deletes the queue and expects connection.unblocked
within seconds (an alarm on the process's RSS never cleared: CPython and malloc keep freed memory). The
flood test pushes pre-encoded publishes down a raw socket as fast as the broker reads and compares the
broker's peak RSS (VmHWM) with the mark. The in-flight tests send body frames of large messages over many
channels: they must stop at once when the alarm goes on, complete when it clears, and what one connection
holds in flight over several messages at once is bounded (406 for the channel that passes the bound).
"""

from __future__ import annotations

import re
import threading
import time
from contextlib import AbstractContextManager
from pathlib import Path

import pika
import pytest
from pika import frame, spec

from tests.integration.test_alarms import Notified, _raw_channel, _url, _wait
from tests.integration.test_raw import RawClient, ServerProcess, ottermq_server

MiB = 1024 * 1024


def _memory_broker(tmp_path: Path, limit: int, **settings: int) -> AbstractContextManager[ServerProcess]:
    env = {"OTTERMQ_VM_MEMORY_HIGH_WATERMARK_ABSOLUTE": str(limit)}
    env.update({f"OTTERMQ_{name.upper()}": str(value) for name, value in settings.items()})
    return ottermq_server(tmp_path, env=env)


def _status(proc: ServerProcess, field: str) -> int:
    """A memory figure (VmRSS, VmHWM) of the broker process, in bytes."""
    text = Path(f"/proc/{proc.proc.pid}/status").read_text()
    match = re.search(rf"^{field}:\s+(\d+) kB", text, re.MULTILINE)
    assert match is not None
    return int(match.group(1)) * 1024


def _publish_frames(channel: int, queue: str, body: bytes) -> bytes:
    return (
        frame.Method(channel, spec.Basic.Publish(exchange="", routing_key=queue)).marshal()
        + frame.Header(channel, len(body), spec.BasicProperties()).marshal()
        + frame.Body(channel, body).marshal()
    )


def _flood_until_blocked(connection: pika.BlockingConnection, queue: str, body: bytes, most: int) -> int:
    seen = Notified(connection)
    channel = connection.channel()
    published = 0
    while not seen.blocked:
        assert published < most, f"no connection.blocked after {published} messages"
        channel.basic_publish("", queue, body)
        published += 1
        # A moment for connection.blocked to arrive: once the alarm is on the broker stops reading this
        # connection at once, and publishing on past a socket buffer's worth would block this loop in
        # pika's write until its blocked_connection_timeout (seen on a loaded machine).
        connection.process_data_events(time_limit=0.005)
    return published


@pytest.mark.timeout(90)
@pytest.mark.parametrize("how", ["delete", "purge", "consume"])
def test_alarm_clears_once_the_load_is_gone(tmp_path: Path, how: str) -> None:
    limit = 64 * MiB
    with _memory_broker(tmp_path, limit) as proc:
        publisher = pika.BlockingConnection(_url(proc))
        other = pika.BlockingConnection(_url(proc))
        try:
            channel = other.channel()
            queue = channel.queue_declare("", exclusive=False, auto_delete=False).method.queue
            # Small bodies: their memory stays with malloc when freed, so the RSS does not come back down.
            published = _flood_until_blocked(publisher, queue, b"s" * 16384, most=20_000)
            assert published * 16384 > limit // 4
            seen = Notified(publisher)
            started = time.monotonic()
            if how == "delete":
                channel.queue_delete(queue)
            elif how == "purge":
                channel.queue_purge(queue)
            else:
                got = 0
                while channel.basic_get(queue, auto_ack=True)[0] is not None:
                    got += 1
            _wait(publisher, lambda: seen.unblocked > 0, 10, "connection.unblocked")
            cleared_in = time.monotonic() - started
            assert cleared_in < 10
            if how == "consume":
                # The paused publisher is read again: its last publishes arrive after the unblock.
                while channel.basic_get(queue, auto_ack=True)[0] is not None:
                    got += 1
                assert got <= published
        finally:
            publisher.close()
            other.close()
        assert "memory back under the high-water mark" in proc.log()


@pytest.mark.timeout(60)
def test_a_flood_stops_near_the_mark(tmp_path: Path) -> None:
    limit = 64 * MiB
    with _memory_broker(tmp_path, limit) as proc:
        idle = _status(proc, "VmRSS")
        raw = _raw_channel(proc.port)
        raw.expect(spec.Channel.OpenOk)
        setup = pika.BlockingConnection(_url(proc))
        try:
            queue = setup.channel().queue_declare("", exclusive=False, auto_delete=False).method.queue
            batch = _publish_frames(1, queue, b"f" * (64 * 1024)) * 64  # 4 MiB per sendall
            failures: list[BaseException] = []

            def flood() -> None:
                # Far more than the mark: the broker stops reading, and sendall then times out.
                raw.sock.settimeout(3)
                try:
                    for _ in range(100):
                        raw.sock.sendall(batch)
                except TimeoutError:
                    return
                except BaseException as exc:  # pragma: no cover - reported below
                    failures.append(exc)

            sender = threading.Thread(target=flood, daemon=True)
            sender.start()
            sender.join(30)
            assert not sender.is_alive() and not failures
            assert "memory high-water mark crossed" in proc.log(), "the flood was not stopped by the alarm"
            peak = _status(proc, "VmHWM") - idle
            assert peak < 2 * limit, f"RSS rose {peak // MiB} MiB over idle against a {limit // MiB} MiB mark"
            used = int(re.search(r"memory high-water mark crossed.*?used=(\d+)", proc.log()).group(1))  # type: ignore[union-attr]
            assert used < limit * 5 // 4
        finally:
            raw.close()
            setup.close()


def _open_channels(raw: RawClient, count: int, first: int = 2) -> list[int]:
    numbers = list(range(first, first + count))
    for number in numbers:
        raw.send_method(number, spec.Channel.Open())
    for _ in numbers:
        raw.expect(spec.Channel.OpenOk)
    return numbers


def _start_contents(raw: RawClient, channels: list[int], queue: str, size: int) -> None:
    for number in channels:
        raw.send(
            frame.Method(number, spec.Basic.Publish(exchange="", routing_key=queue)).marshal()
            + frame.Header(number, size, spec.BasicProperties()).marshal()
        )


class _Sender:
    """Sends `data` down `raw`'s connection from a thread, through a duplicate of its socket: the duplicate's
    timeout is its own, so the test's reads (which set the socket's timeout) cannot cut the send short."""

    def __init__(self, raw: RawClient, data: bytes, timeout: float = 60.0) -> None:
        self._sock = raw.sock.dup()
        self._sock.settimeout(timeout)
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._send, args=(data,), daemon=True)
        self._thread.start()

    def _send(self, data: bytes) -> None:
        try:
            self._sock.sendall(data)
        except BaseException as exc:  # reported by join
            self._failure = exc

    def join(self, timeout: float = 30.0) -> None:
        """Wait until everything is sent; raise what the send raised."""
        self._thread.join(timeout)
        self._sock.close()
        assert not self._thread.is_alive(), "the broker did not read the rest of the data"
        if self._failure is not None:
            raise self._failure


def _bodies(channels: list[int], chunk: bytes, rounds: int) -> bytes:
    """`rounds` body frames of `chunk` on every channel, interleaved round-robin."""
    return b"".join(frame.Body(number, chunk).marshal() for _ in range(rounds) for number in channels)


def _ready(channel: pika.adapters.blocking_connection.BlockingChannel, queue: str) -> int:
    return int(channel.queue_declare(queue, passive=True).method.message_count)


@pytest.mark.timeout(90)
def test_body_frames_under_way_stop_with_the_alarm_and_complete_after(tmp_path: Path) -> None:
    with _memory_broker(tmp_path, 64 * MiB) as proc:
        raw = _raw_channel(proc.port)
        raw.expect(spec.Channel.OpenOk)
        publisher = pika.BlockingConnection(_url(proc))
        consumer = pika.BlockingConnection(_url(proc))
        try:
            channel = consumer.channel()
            target = channel.queue_declare("", exclusive=False, auto_delete=False).method.queue
            filler = channel.queue_declare("", exclusive=False, auto_delete=False).method.queue
            # Four large messages under way on four channels: half of each body sent.
            chunk = b"b" * (64 * 1024)
            numbers = _open_channels(raw, 4)
            _start_contents(raw, numbers, target, 32 * len(chunk))
            raw.send(_bodies(numbers, chunk, 16))
            raw.send_method(1, spec.Basic.Qos(prefetch_count=1))
            raw.expect(spec.Basic.QosOk)  # the frames before it are handled
            # Another publisher fills the broker up to the mark.
            _flood_until_blocked(publisher, filler, b"f" * (256 * 1024), most=1000)
            raw.expect(spec.Connection.Blocked)
            # The rest of the bodies is not read while the alarm is on. 4 MiB can fill the socket buffers of
            # a connection that is not read, so a thread sends them and finishes once reading resumes.
            rest = _Sender(raw, _bodies(numbers, chunk, 16))
            time.sleep(1.5)
            assert _ready(channel, target) == 0
            # Draining clears the alarm; reading resumes and the four messages complete.
            seen = Notified(publisher)
            while channel.basic_get(filler, auto_ack=True)[0] is not None:
                pass
            _wait(publisher, lambda: seen.unblocked > 0, 10, "connection.unblocked")
            raw.expect(spec.Connection.Unblocked)
            rest.join()
            deadline = time.monotonic() + 10
            while _ready(channel, target) < 4:
                assert time.monotonic() < deadline, "the messages under way did not complete"
                time.sleep(0.05)
            bodies = [channel.basic_get(target, auto_ack=True)[2] for _ in range(4)]
            assert bodies == [chunk * 32] * 4
        finally:
            raw.close()
            publisher.close()
            consumer.close()


@pytest.mark.timeout(90)
def test_content_in_flight_per_connection_is_bounded(tmp_path: Path) -> None:
    limit = 64 * MiB
    with _memory_broker(tmp_path, limit, max_content_in_flight=8 * MiB) as proc:
        idle = _status(proc, "VmRSS")
        raw = _raw_channel(proc.port)
        raw.expect(spec.Channel.OpenOk)
        other = pika.BlockingConnection(_url(proc))
        try:
            channel = other.channel()
            queue = channel.queue_declare("", exclusive=False, auto_delete=False).method.queue
            light = channel.queue_declare("", exclusive=True).method.queue
            # 32 messages of 6 MiB started at once on 32 channels (192 MiB), bodies interleaved.
            chunk = b"i" * (64 * 1024)
            numbers = _open_channels(raw, 32)
            _start_contents(raw, numbers, queue, 96 * len(chunk))
            closed: list[int] = []
            for _ in range(6):
                raw.send(_bodies(numbers, chunk, 16))
                # Meanwhile other clients are served.
                channel.basic_publish("", light, b"small")
                assert channel.basic_get(light, auto_ack=True)[2] == b"small"
            # The channels that took the connection past 8 MiB in flight were closed with 406.
            while True:
                try:
                    got = raw.read_frame(timeout=2)
                except TimeoutError:
                    break
                assert isinstance(got, frame.Method), got
                if isinstance(got.method, spec.Connection.Close):
                    pytest.fail(f"connection closed: {got.method}")
                if isinstance(got.method, spec.Channel.Close):
                    assert got.method.reply_code == 406, got.method
                    assert "in progress on this connection" in got.method.reply_text
                    closed.append(got.channel_number)
                    raw.send_method(got.channel_number, spec.Channel.CloseOk())
            assert closed, "no channel was refused"
            completed = len(numbers) - len(closed)
            assert completed >= 1
            deadline = time.monotonic() + 10
            while _ready(channel, queue) < completed:
                assert time.monotonic() < deadline, f"{_ready(channel, queue)} of {completed} messages"
                time.sleep(0.05)
            assert _ready(channel, queue) == completed
            peak = _status(proc, "VmHWM") - idle
            assert peak < 2 * limit, f"RSS rose {peak // MiB} MiB over idle against a {limit // MiB} MiB mark"
            # The connection is still served.
            raw.send_method(40, spec.Channel.Open())
            raw.expect(spec.Channel.OpenOk)
        finally:
            raw.close()
            other.close()
