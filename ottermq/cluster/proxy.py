"""A follower's AMQP proxy: a client that connects to a follower is relayed, byte for byte, to the leader.

Strategy: clients may be configured with every node's address (as with LavinMQ); a follower answers them
by opening a TCP connection to the leader's AMQP listener and copying bytes both ways, without reading
AMQP. The server asks `protocol()` for every socket it accepts: while this node does not lead and a
leader is known it gets a stream protocol relaying to that leader, else None (the server then handles the
socket itself: the leader serves it, a node without a leader refuses it at connection.open with 320 as a
client retrying expects). A TLS listener's handshake ends on the follower; the hop to the leader is plain
TCP (the cluster's own network).

Each direction reads at most `buffer` bytes ahead (the stream reader stops reading the socket above
that) and waits for the other socket's write buffer to drain below `buffer` before reading again, so a
slow reader on either side slows its writer down to its pace and memory stays bounded per connection.
When either side ends (EOF, a reset, an error), both are closed; what one side sent before it closed is
still delivered to the other (close flushes), and a side that will not take it within `CLOSE_GRACE` is
aborted, so no socket outlives its session for long. While sessions are open, a watcher compares each
session's leader with the current one every `check_interval` seconds: a session to a leader that is no
longer the leader (a failover, a step-down, this node elected) is closed, and its client reconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

log: Final = logging.getLogger("ottermq.cluster")

BUFFER: Final = 256 * 1024  # bytes each direction holds at most (about) per connection
READ_CHUNK: Final = 64 * 1024
CONNECT_TIMEOUT: Final = 5.0
CHECK_INTERVAL: Final = 0.2
CLOSE_GRACE: Final = 5.0  # seconds a closed socket may take to flush what it holds before it is aborted


@dataclass(frozen=True, slots=True)
class Upstream:
    """Where the leader serves AMQP, and in which term it was seen leading (a new term is a new leader,
    even at the same address)."""

    host: str
    port: int
    term: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


@dataclass(slots=True)
class Session:
    """One proxied client connection."""

    peer: str
    upstream: Upstream
    task: asyncio.Task[None]
    started: float


class AmqpProxy:
    """Relays accepted client sockets to `upstream()` (None: do not proxy). `protocol()` per accepted
    socket; `stop()` closes every proxied connection."""

    def __init__(
        self,
        upstream: Callable[[], Upstream | None],
        *,
        buffer: int = BUFFER,
        connect_timeout: float = CONNECT_TIMEOUT,
        check_interval: float = CHECK_INTERVAL,
    ) -> None:
        self.upstream = upstream
        self.buffer = buffer
        self.connect_timeout = connect_timeout
        self.check_interval = check_interval
        self.sessions: dict[asyncio.Task[None], Session] = {}
        self.opened = 0  # proxied connections since start (status)
        self.failed = 0  # of which the leader could not be reached
        self._watcher: asyncio.Task[None] | None = None
        self._stopped = False

    def protocol(self) -> asyncio.BaseProtocol | None:
        """A protocol relaying the socket being accepted to the leader, or None when this node should
        handle it itself (it leads, or no leader is known)."""
        if self._stopped:
            return None
        target = self.upstream()
        if target is None:
            return None
        reader = asyncio.StreamReader(limit=self.buffer)
        return asyncio.StreamReaderProtocol(reader, functools.partial(self._relay, target))

    def status(self) -> dict[str, Any]:
        target = self.upstream()
        return {
            "upstream": str(target) if target is not None else None,
            "connections": len(self.sessions),
            "opened": self.opened,
            "failed": self.failed,
        }

    def close_all(self, reason: str) -> None:
        """Close every proxied connection (their clients reconnect)."""
        if self.sessions:
            log.info("closing proxied connections", extra={"count": len(self.sessions), "reason": reason})
        for task in list(self.sessions):
            task.cancel()

    def resume(self) -> None:
        """Relay again after `stop` (a clustered node's server is made anew when its store changes)."""
        self._stopped = False

    async def stop(self) -> None:
        """No more proxying; every proxied connection is closed."""
        self._stopped = True
        tasks = list(self.sessions)
        self.close_all("shutdown")
        if tasks:
            await asyncio.wait(tasks, timeout=CLOSE_GRACE)
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher

    # -- one connection ---------------------------------------------------------------------------------

    async def _relay(
        self, target: Upstream, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        peer = _peer(client_writer)
        self.sessions[task] = Session(peer, target, task, time.monotonic())
        self.opened += 1
        self._watch()
        leader_writer: asyncio.StreamWriter | None = None
        try:
            _tune(client_writer, self.buffer)
            try:
                leader_reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(target.host, target.port, limit=self.buffer),
                    self.connect_timeout,
                )
                leader_writer = writer
            except (OSError, TimeoutError) as exc:
                # The client sees its socket close, as when the leader dies, and tries again.
                self.failed += 1
                log.warning(
                    f"cannot proxy a client to the leader at {target}: {exc or type(exc).__name__}",
                    extra={"conn": peer},
                )
                return
            _tune(writer, self.buffer)
            log.info(f"connection proxied to the leader at {target}", extra={"conn": peer})
            await _pump_both(client_reader, client_writer, leader_reader, writer)
        except asyncio.CancelledError:
            pass  # closed by the watcher or by stop: both sides are closed below
        finally:
            del self.sessions[task]
            if leader_writer is not None:
                _close(leader_writer)
            _close(client_writer)

    # -- the leader changes ------------------------------------------------------------------------------

    def _watch(self) -> None:
        if self._watcher is None or self._watcher.done():
            self._watcher = asyncio.get_running_loop().create_task(self._check(), name="ottermq-proxy-watch")

    async def _check(self) -> None:
        """While sessions are open: close those whose leader no longer leads."""
        while self.sessions:
            await asyncio.sleep(self.check_interval)
            current = self.upstream()
            stale = [s for s in self.sessions.values() if s.upstream != current]
            if stale:
                now = f"the leader is now {current}" if current is not None else "no leader is known"
                old = stale[0].upstream
                log.info(f"closing {len(stale)} proxied connection(s) to the leader at {old}: {now}")
                for session in stale:
                    session.task.cancel()


async def _pump_both(
    client_reader: asyncio.StreamReader,
    client_writer: asyncio.StreamWriter,
    leader_reader: asyncio.StreamReader,
    leader_writer: asyncio.StreamWriter,
) -> None:
    """Copy both ways until either side ends."""
    up = asyncio.ensure_future(_pump(client_reader, leader_writer))
    down = asyncio.ensure_future(_pump(leader_reader, client_writer))
    try:
        await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for pump in (up, down):
            pump.cancel()
        for pump in (up, down):
            # A reset socket is how a session often ends: nothing to report.
            with contextlib.suppress(BaseException):
                await pump


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while True:
        data = await reader.read(READ_CHUNK)
        if not data:
            return
        writer.write(data)
        # Back-pressure: above the high-water mark, stop reading until the other side takes the bytes.
        await writer.drain()


def _tune(writer: asyncio.StreamWriter, buffer: int) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        # AMQP is request/response at handshake and confirm time: Nagle would add a delay at each hop.
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    writer.transport.set_write_buffer_limits(high=buffer)


def _close(writer: asyncio.StreamWriter) -> None:
    """Close (what is buffered is still sent), and abort if the peer has not taken it in CLOSE_GRACE."""
    transport = writer.transport
    if transport.is_closing():
        if transport.get_write_buffer_size() == 0:
            return
    else:
        transport.close()
    if transport.get_write_buffer_size():
        asyncio.get_running_loop().call_later(CLOSE_GRACE, transport.abort)


def _peer(writer: asyncio.StreamWriter) -> str:
    peer = writer.get_extra_info("peername")
    if isinstance(peer, tuple) and len(peer) >= 2:
        host = str(peer[0])
        if host.startswith("::ffff:") and "." in host:
            host = host[len("::ffff:") :]
        return f"{host}:{peer[1]}"
    return "?"
