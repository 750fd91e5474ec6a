"""SIGTERM and SIGINT: a graceful stop from the first moment the server runs, even with a stuck event loop.

Strategy: plain `signal.signal` handlers, installed before anything listens (a signal in the moment after the
AMQP port opens must stop the broker gracefully, not kill it). Python runs such a handler in the main thread
between two bytecodes, also while the event loop is busy in a callback that never returns, where a
`loop.add_signal_handler` callback would never run. The handler hands the signal to the loop
(`call_soon_threadsafe`) and arms `StallGuard`: if the loop then makes no turn for `STOP_STALL_LIMIT` seconds,
the graceful stop cannot happen, and the guard ends the process (exit 1, as after a crash: the log replays
on the next start). A signal before the loop runs is remembered and stops the server as soon as it starts.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any, Final

log: Final = logging.getLogger("ottermq.server")

# After a stop signal, the event loop may stand still this long before the process is ended without a
# graceful stop. A graceful stop keeps the loop turning (the final snapshot runs on a thread).
STOP_STALL_LIMIT: Final = 10.0
# How often the loop proves it still turns while the guard is armed.
_BEAT_INTERVAL: Final = 0.25
STOP_SIGNALS: Final = (signal.SIGTERM, signal.SIGINT)
# Exit status when the guard ends the process (the graceful stop exits 0).
STALLED_EXIT: Final = 1


class StallGuard:
    """Ends the process when the event loop stops turning after a stop signal was received.

    Its thread starts with the loop (`start`), not at the signal: a process short of memory may be unable to
    start a thread just when it must stop.
    """

    __slots__ = ("_armed", "_beat", "_done", "_handle", "_limit", "_loop", "_thread")

    def __init__(self, limit: float = STOP_STALL_LIMIT) -> None:
        self._limit = limit
        self._loop: asyncio.AbstractEventLoop | None = None
        self._beat = time.monotonic()
        self._armed = threading.Event()
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self._handle: asyncio.TimerHandle | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start the (idle) watching thread for `loop`. Raises RuntimeError if no thread can be started."""
        self._loop = loop
        if self._thread is None:
            thread = threading.Thread(target=self._watch, name="ottermq-stop-guard", daemon=True)
            thread.start()
            self._thread = thread

    def arm(self) -> None:
        """From now on the loop must keep turning (called from the signal handler; only once matters)."""
        loop = self._loop
        if loop is None or self._armed.is_set() or self._done.is_set():
            return
        self._beat = time.monotonic()
        self._armed.set()
        loop.call_soon_threadsafe(self._tick)

    def disarm(self) -> None:
        """The stop finished (or the loop ended): stop watching."""
        self._done.set()
        self._armed.set()  # wakes the thread, which then sees _done
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _tick(self) -> None:
        self._beat = time.monotonic()
        if not self._done.is_set() and self._loop is not None:
            self._handle = self._loop.call_later(_BEAT_INTERVAL, self._tick)

    def _watch(self) -> None:
        self._armed.wait()
        while not self._done.wait(_BEAT_INTERVAL):
            stalled = time.monotonic() - self._beat
            if stalled > self._limit:
                # The logging machinery may be what is stuck (or out of memory): one raw line to stderr.
                message = (
                    f"ottermq: the event loop has not turned for {stalled:.0f} s after a stop signal; "
                    "exiting without a graceful stop (the log is replayed at the next start)\n"
                )
                try:
                    os.write(2, message.encode())
                finally:
                    os._exit(STALLED_EXIT)


class StopSignals:
    """SIGTERM/SIGINT handlers for the server's whole life: `install` first, `attach` once the loop runs."""

    __slots__ = ("_event", "_loop", "_previous", "guard", "on_second", "received")

    def __init__(self, guard: StallGuard | None = None) -> None:
        self.guard = guard or StallGuard()
        # Names of the signals received, in order.
        self.received: list[str] = []
        # Called on the loop for every signal after the first (the operator does not want to wait).
        self.on_second: Callable[[str], None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._event: asyncio.Event | None = None
        self._previous: dict[signal.Signals, Any] = {}

    def install(self) -> None:
        """Take SIGTERM and SIGINT over (main thread only); `restore` gives them back."""
        for sig in STOP_SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handler)

    def restore(self) -> None:
        """Put the previous handlers back and stop the guard."""
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous.clear()
        self._loop = None
        self.guard.disarm()

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Deliver signals to `loop` from now on (`event`); a signal that came before is delivered now."""
        self._event = asyncio.Event()
        self._loop = loop
        try:
            self.guard.start(loop)
        except RuntimeError as exc:
            log.warning(f"no guard against a stuck event loop at stop: {exc}")
        if self.received:
            self._event.set()
            self.guard.arm()

    @property
    def event(self) -> asyncio.Event:
        """Set on the loop by the first signal (`attach` first)."""
        assert self._event is not None, "StopSignals.attach was not called"
        return self._event

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        # Runs in the main thread between two bytecodes, possibly inside a loop callback: hand over, and
        # never raise (an exception would surface in whatever code the signal interrupted).
        name = signal.Signals(signum).name
        self.received.append(name)
        loop = self._loop
        if loop is None:
            return  # `attach` delivers it
        try:
            loop.call_soon_threadsafe(self._on_loop, name)
        except Exception:
            pass  # the loop has just closed (the process is ending anyway), or memory is short
        try:
            self.guard.arm()
        except Exception:
            pass

    def _on_loop(self, name: str) -> None:
        event = self._event
        if event is None:
            return
        if event.is_set() and self.on_second is not None:
            self.on_second(name)
        event.set()
