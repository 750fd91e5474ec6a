"""Disk faults under load, injected through Memento's I/O seam: an fsync that fails with EIO or ENOSPC, a
write that fails with ENOSPC and never recovers (the broker then stops with the disk still full). A full
disk that frees up again is tests/integration/test_resume.py.

Strategy: the broker runs in this process (its event loop in a thread, on a free port) over a store opened
with a `DiskIO` that fails on demand, so the fault lands exactly where a real disk would fail, while pika
publishers with confirms keep publishing. A failed fsync also drops what was written since the last good one,
as Linux may drop the dirty pages of a failed fsync: an ack given for such a record would show up as a loss
after the restart. Then: every confirmed message is still deliverable from the live broker (consumers keep
draining), publishers saw nacks or a closed connection rather than acks, and after a restart on a healthy disk
every confirmed message is there.
"""

from __future__ import annotations

import asyncio
import errno
import os
import threading
import time
from pathlib import Path

import pika
import pika.exceptions
import pytest

from memento.disk import DiskIO
from ottermq.broker.broker import BrokerSettings
from ottermq.server.server import Server
from ottermq.store.store import DurableStore, StoreOptions

pytestmark = [
    pytest.mark.timeout(90),
    pytest.mark.skipif(bool(os.environ.get("OTTERMQ_TEST_URL")), reason="faults are injected in-process"),
]

QUEUE = "faults.q"
PERSISTENT = pika.BasicProperties(delivery_mode=2)
PUBLISHERS = 3
ACKED_BEFORE_FAULT = 300
# How many publishes each publisher tries after the fault before the test calls it a broken promise.
ATTEMPTS_AFTER_FAULT = 500


class FaultyDisk(DiskIO):
    """Plain I/O until `fail(errno, on)`; then every fsync ("fsync") or write ("write") fails with errno."""

    def __init__(self) -> None:
        self.fault: int | None = None
        self.on = ""
        self.failures = 0
        self._unsynced: dict[int, list[tuple[int, int]]] = {}

    def fail(self, code: int, on: str) -> None:
        """From now on, fail `on` ("fsync" or "write") with OSError(code)."""
        self.on = on
        self.fault = code

    def _raise(self) -> None:
        assert self.fault is not None
        self.failures += 1
        raise OSError(self.fault, os.strerror(self.fault))

    def pwrite(self, fd: int, data: bytes | bytearray | memoryview, offset: int) -> None:
        if self.fault is not None and self.on == "write":
            self._raise()
        super().pwrite(fd, data, offset)
        self._unsynced.setdefault(fd, []).append((offset, len(data)))

    def fdatasync(self, fd: int) -> None:
        if self.fault is not None and self.on == "fsync":
            # The kernel may have dropped the dirty pages: what was written since the last good sync is gone.
            for offset, size in self._unsynced.pop(fd, []):
                os.pwrite(fd, bytes(size), offset)
            self._raise()
        super().fdatasync(fd)
        self._unsynced.pop(fd, None)


class LiveBroker:
    """A broker with a durable store, served by this process on a free port (event loop in a thread)."""

    def __init__(self, data_dir: Path, disk: DiskIO | None = None, segment_size: int = 64 << 20) -> None:
        self.store = DurableStore.open(data_dir, StoreOptions(disk=disk, segment_size=segment_size))
        self.broker = self.store.new_broker(BrokerSettings())
        self.store.recover(self.broker)
        self.server = Server(self.broker, shutdown_timeout=1.0)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.port: int = asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)

    async def _start(self) -> int:
        await self.store.start()
        addresses = await self.server.start("127.0.0.1", 0)
        return addresses[0][1]

    async def _stop(self) -> None:
        await self.server.stop("shutdown")
        await self.store.stop()

    def params(self) -> pika.ConnectionParameters:
        return pika.ConnectionParameters(
            "127.0.0.1",
            self.port,
            socket_timeout=5,
            stack_timeout=10,
            blocked_connection_timeout=2,
            connection_attempts=1,
        )

    def close(self) -> None:
        """Graceful stop (snapshot unless the journal failed), then the loop and its thread."""
        try:
            asyncio.run_coroutine_threadsafe(self._stop(), self.loop).result(30)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()


class Publisher(threading.Thread):
    """Publishes persistent messages with confirms until the broker nacks or closes, or `stop` is set."""

    def __init__(self, live: LiveBroker, index: int, fault_set: threading.Event) -> None:
        super().__init__(daemon=True)
        self.live, self.index, self.fault_set = live, index, fault_set
        self.acked: list[str] = []
        self.after_fault = 0  # publishes attempted after the fault was injected
        self.outcome = ""  # why it stopped: nack, closed, or attempts
        self.stop = threading.Event()

    def run(self) -> None:
        conn = pika.BlockingConnection(self.live.params())
        try:
            ch = conn.channel()
            ch.confirm_delivery()
            seq = 0
            while not self.stop.is_set():
                if self.fault_set.is_set():
                    self.after_fault += 1
                    if self.after_fault > ATTEMPTS_AFTER_FAULT:
                        self.outcome = "attempts"
                        return
                msg_id = f"p{self.index}-{seq}"
                seq += 1
                try:
                    ch.basic_publish("", QUEUE, msg_id.encode(), PERSISTENT)
                except pika.exceptions.NackError:
                    self.outcome = "nack"
                    return
                self.acked.append(msg_id)
        except (pika.exceptions.AMQPError, OSError) as exc:
            self.outcome = f"closed: {type(exc).__name__} {exc}"
        finally:
            if conn.is_open:
                try:
                    conn.close()
                except (pika.exceptions.AMQPError, OSError):
                    pass  # already closed by the broker


def drain(live: LiveBroker, timeout: float = 20.0) -> list[str]:
    """Consume every ready message (manual ack, as a consumer would) until the queue stays empty."""
    got: list[str] = []
    conn = pika.BlockingConnection(live.params())
    try:
        ch = conn.channel()
        ch.basic_qos(prefetch_count=200)

        def on_message(_ch: object, method: pika.spec.Basic.Deliver, _p: object, body: bytes) -> None:
            got.append(body.decode())
            ch.basic_ack(method.delivery_tag)

        ch.basic_consume(QUEUE, on_message)
        deadline = time.monotonic() + timeout
        idle_since = time.monotonic()
        seen = 0
        while time.monotonic() < deadline and time.monotonic() - idle_since < 1.0:
            conn.process_data_events(time_limit=0.1)
            if len(got) != seen:
                seen, idle_since = len(got), time.monotonic()
        assert ch.queue_declare(QUEUE, passive=True).method.message_count == 0, "queue not drained"
    finally:
        conn.close()
    return got


@pytest.mark.parametrize(
    ("code", "on"),
    [(errno.EIO, "fsync"), (errno.ENOSPC, "write"), (errno.ENOSPC, "fsync")],
    ids=["fsync-EIO", "write-ENOSPC", "fsync-ENOSPC"],
)
def test_disk_fault_under_load_loses_nothing_confirmed(tmp_path: Path, code: int, on: str) -> None:
    disk = FaultyDisk()
    live = LiveBroker(tmp_path / "data", disk)
    fault_set = threading.Event()
    publishers = [Publisher(live, i, fault_set) for i in range(PUBLISHERS)]
    try:
        setup = pika.BlockingConnection(live.params())
        setup.channel().queue_declare(QUEUE, durable=True)
        setup.close()
        for publisher in publishers:
            publisher.start()
        deadline = time.monotonic() + 20
        while sum(len(p.acked) for p in publishers) < ACKED_BEFORE_FAULT and time.monotonic() < deadline:
            time.sleep(0.01)
        disk.fail(code, on)
        fault_set.set()
        for publisher in publishers:
            publisher.join(20)
        assert not any(p.is_alive() for p in publishers), "a publisher hung after the fault"
        confirmed = {m for p in publishers for m in p.acked}
        outcomes = [p.outcome for p in publishers]
        assert len(confirmed) >= ACKED_BEFORE_FAULT, outcomes
        assert disk.failures, "the fault was never hit"
        # Acks stop: every publisher ends with a nack or a closed connection, never by running out of tries.
        assert all(o == "nack" or o.startswith("closed") for o in outcomes), outcomes

        # The broker stays up and consumers keep draining: every confirmed message is still there.
        drained = drain(live)
        assert confirmed <= set(drained), f"{len(confirmed - set(drained))} confirmed messages missing live"
    finally:
        for publisher in publishers:
            publisher.stop.set()
        live.close()

    # A restart on a healthy disk: the removals of the drain could not be logged, so all comes back; what
    # counts is that no confirmed message is missing.
    restarted = LiveBroker(tmp_path / "data")
    try:
        recovered = drain(restarted)
        missing = confirmed - set(recovered)
        assert not missing, f"{len(missing)} confirmed messages lost, e.g. {sorted(missing)[:5]}"
    finally:
        restarted.close()
