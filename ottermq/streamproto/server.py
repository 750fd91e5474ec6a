"""The stream-protocol listener (setting `stream_port`; RabbitMQ's port is 5552): sockets in, sessions
out, a one-second tick for heartbeats, and a clean stop.

Strategy: thin, as the AMQP server: the asyncio Protocol moves bytes between its socket and one
`StreamSession` and applies backpressure (above the buffer's high-water mark sessions stop delivering
until `resume_writing`). `StreamService` has the shape of the server's other listeners (start with the
broker once AMQP listens, stop before the store closes) so the command line wires it like them.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING, Final, cast

from ottermq.streamproto import codec
from ottermq.streamproto.session import StreamSession
from ottermq.streamproto.tracking import Tracking

if TYPE_CHECKING:
    from ottermq.broker.broker import Broker

log: Final = logging.getLogger("ottermq.streamproto")

WRITE_BUFFER_LIMIT: Final = 4 << 20
TRACKING_FILE: Final = "stream_tracking.json"


def _plain(host: str) -> str:
    return host[len("::ffff:") :] if host.startswith("::ffff:") and "." in host else host


class StreamProtocol(asyncio.Protocol):
    """One client socket of the stream protocol."""

    def __init__(self, service: StreamService) -> None:
        self.service = service
        self.transport: asyncio.Transport | None = None
        self.session: StreamSession | None = None
        self.writable = True

    # -- the session's Link ------------------------------------------------------------------------------

    def write(self, parts: list[bytes]) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.writelines(parts)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def is_writable(self) -> bool:
        return self.writable

    # -- socket events -----------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not subclasses of asyncio.Transport, but they implement it.
        transport = cast(asyncio.Transport, transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        transport.set_write_buffer_limits(high=WRITE_BUFFER_LIMIT)
        peer = transport.get_extra_info("peername") or ("", 0)
        local = transport.get_extra_info("sockname") or ("", 0)
        advertised = (self.service.advertised_host or _plain(str(local[0])), int(local[1]))
        self.session = StreamSession(
            self.service.broker,
            self,
            self.service.tracking,
            (_plain(str(peer[0])), int(peer[1])),
            advertised,
        )
        self.service.sessions.add(self)

    def data_received(self, data: bytes) -> None:
        if self.session is not None:
            self.session.feed(data)

    def pause_writing(self) -> None:
        self.writable = False

    def resume_writing(self) -> None:
        self.writable = True
        if self.session is not None:
            self.session.writable()

    def connection_lost(self, exc: Exception | None) -> None:
        self.service.sessions.discard(self)
        if self.session is not None:
            self.session.lost()


class StreamService:
    """Serves the stream protocol for one broker on host:port; tracking kept in `data_dir` (or memory)."""

    def __init__(self, host: str, port: int, data_dir: Path | None, advertised_host: str = "") -> None:
        self.host = host
        self.port = port
        self.data_dir = data_dir
        self.advertised_host = advertised_host
        self.sessions: set[StreamProtocol] = set()
        self.tracking = Tracking(None)
        self._broker: Broker | None = None
        self._listener: asyncio.Server | None = None
        self._ticker: asyncio.TimerHandle | None = None

    @property
    def broker(self) -> Broker:
        assert self._broker is not None
        return self._broker

    async def start(
        self, broker: Broker, amqp: list[tuple[str, int]], amqps: list[tuple[str, int]] | None = None
    ) -> list[tuple[str, int]]:
        """Listen (OSError if it cannot); the bound addresses."""
        self._broker = broker
        self.tracking = Tracking(self.data_dir / TRACKING_FILE if self.data_dir is not None else None)
        loop = asyncio.get_running_loop()
        host = None if self.host in ("", "::") else self.host
        self._listener = await loop.create_server(
            lambda: StreamProtocol(self), host=host, port=self.port, reuse_address=True, backlog=1024
        )
        self._ticker = loop.call_later(1.0, self._tick)
        return [(str(s.getsockname()[0]), int(s.getsockname()[1])) for s in self._listener.sockets]

    def _tick(self) -> None:
        now = time.monotonic()
        for proto in list(self.sessions):
            if proto.session is not None:
                try:
                    proto.session.tick(now)
                except Exception:
                    log.exception("internal error in a stream connection's tick")
                    proto.close()
        self._ticker = asyncio.get_running_loop().call_later(1.0, self._tick)

    async def stop(self, timeout: float) -> None:
        """Stop listening, close every connection (a Close first), save the tracking."""
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None
        if self._listener is not None:
            self._listener.close()
        for proto in list(self.sessions):
            if proto.session is not None:
                proto.session.fail(codec.OK, "broker shutdown", wait=False)
        self.tracking.save()
        if self._listener is not None:
            try:
                await asyncio.wait_for(self._listener.wait_closed(), timeout)
            except TimeoutError:
                pass
