"""The boundary between the sans-IO broker and the socket code in `ottermq.server`.

Strategy: the broker never touches a socket or an event loop. The server hands it bytes
(`Connection.data_received`) and gives it one `Transport` per connection; the broker answers by
writing bytes back and asks for timers through `call_later`. Tests implement this protocol with a
few lines that collect the written bytes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol


class Cancellable(Protocol):
    """A scheduled callback that can be called off (an `asyncio.TimerHandle` is one)."""

    def cancel(self) -> None:
        """Prevent the callback from running; harmless if it already ran."""


class Transport(Protocol):
    """What the broker needs from the server for one client connection."""

    def write(self, data: bytes) -> None:
        """Queue `data` for the peer; the server flushes once per event-loop turn."""

    def close(self) -> None:
        """Flush what was written, then close the socket."""

    @property
    def is_writable(self) -> bool:
        """False while the socket's write buffer is over its high-water mark."""

    def pause_reading(self) -> None:
        """Stop reading from the socket (a publisher blocked by a resource alarm); idempotent."""

    def resume_reading(self) -> None:
        """Read from the socket again after `pause_reading`; idempotent."""

    @property
    def peer_cert_cn(self) -> str | None:
        """The subject CN of the peer's verified TLS client certificate (None: no TLS or no certificate);
        with one, connection.start offers the EXTERNAL mechanism and the CN is the user name."""

    def call_later(self, delay: float, callback: Callable[[], None]) -> Cancellable:
        """Run `callback` after `delay` seconds on the event loop."""
