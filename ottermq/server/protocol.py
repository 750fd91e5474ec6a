"""The per-connection asyncio Protocol: it moves bytes between one socket and one broker `Connection`.

Strategy: stay thin. Everything AMQP happens in the sans-IO `Connection`; this class implements the broker's
`Transport` (write, close, is_writable, call_later) and forwards socket events. Writes are batched: while the
connection is handling received bytes, its writes pile up and leave in one `transport.write` when it returns;
a write from anywhere else (a delivery caused by another connection's publish, a timer) schedules one flush
with `loop.call_soon`, so every write made in the same event-loop turn still leaves in a single system call.
Backpressure: the socket's write buffer has a high-water mark; above it `is_writable` turns False and the
broker holds deliveries back until `resume_writing`. Fairness: a connection is handed at most TURN_BYTES per
loop turn; a bigger read (the loop reads up to 256 KiB) is handed over in slices, one per turn, with reading
paused until the last one, so a flooding publisher delays a new client's handshake step or a consumer's ack
by about one slice of work per busy connection, not by whole reads.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Final, cast

from ottermq.broker.checks import CHECK_WORKERS
from ottermq.server.listen import plain_address
from ottermq.server.tls import peer_cert_cn

if TYPE_CHECKING:
    from ottermq.broker.broker import Broker
    from ottermq.broker.connection import Connection
    from ottermq.server.server import Server

log: Final = logging.getLogger("ottermq.server")

# Most received bytes handed to a Connection in one loop turn: a bigger read is handed over in slices, one
# per turn, and a read of this size or more yields the socket to the others for one turn (data_received).
TURN_BYTES: Final = 32 * 1024
# Worker threads for the PBKDF2 password checks: the broker's check scheduler runs at most
# `CHECK_WORKERS` at a time and keeps the waiting ones in its own fair queues, not in this pool's.
_check_pool = ThreadPoolExecutor(max_workers=CHECK_WORKERS, thread_name_prefix="ottermq-check")


class CheckRunner:
    """The broker's password-check runner (`CheckScheduler.runner`): work on the worker threads, the
    answer and timers on the running event loop."""

    def run(self, work: Callable[[], bool], finished: Callable[[bool], None]) -> None:
        """`work` on a worker thread, then always `finished(result)` on the loop, False if `work` raised."""

        def done(future: asyncio.Future[bool]) -> None:
            finished(not future.cancelled() and future.exception() is None and future.result() is True)

        asyncio.get_running_loop().run_in_executor(_check_pool, work).add_done_callback(done)

    def call_later(self, delay: float, callback: Callable[[], None]) -> asyncio.TimerHandle:
        """Run `callback` after `delay` seconds on the loop."""
        return asyncio.get_running_loop().call_later(delay, callback)


class AMQPProtocol(asyncio.Protocol):
    """One client connection's socket, implementing the broker's `Transport` protocol."""

    __slots__ = (
        "_chunks",
        "_closing",
        "_flush_pending",
        "_loop",
        "_read_blocked",
        "_receiving",
        "_rest",
        "_rest_pos",
        "_server",
        "_transport",
        "close_reason",
        "connected_at",
        "connection",
        "is_writable",
        "local",
        "name",
        "peer",
        "peer_cert_cn",
        "recv_cnt",
        "recv_oct",
        "send_cnt",
        "send_oct",
    )

    def __init__(self, server: Server) -> None:
        self._server = server
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._chunks: list[bytes] = []
        self._closing = False
        self._flush_pending = False
        self._receiving = False
        # Reading stopped by the broker (a publisher blocked by a resource alarm), not for fairness.
        self._read_blocked = False
        # The part of a big read not yet handed to the Connection (one slice per loop turn), from _rest_pos.
        self._rest: bytes | None = None
        self._rest_pos = 0
        self.peer: tuple[str, int] = ("", 0)
        # Subject CN of the client's verified TLS certificate (the EXTERNAL mechanism's user name).
        self.peer_cert_cn: str | None = None
        # The connection's id in every log line, the broker's included: the client's address and port.
        self.name = "?"
        self.connection: Connection | None = None
        self.is_writable = True
        # Why the socket ended, for the "connection closed" log line; set by whoever ends it first.
        self.close_reason = ""
        # For the management API: when it was accepted (ms since the epoch), the local address, and the
        # bytes and socket reads/writes each way (RabbitMQ's recv_oct, recv_cnt, send_oct, send_cnt).
        self.connected_at = int(time.time() * 1000)
        self.local: tuple[str, int] = ("", 0)
        self.recv_oct = self.recv_cnt = self.send_oct = self.send_cnt = 0

    # -- socket events -------------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Accepted: tune the socket and attach a broker Connection."""
        # uvloop's transports are not subclasses of asyncio.Transport, but they implement it.
        transport = cast(asyncio.Transport, transport)
        self._transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            # Frames are batched per loop turn already; Nagle would only add latency to each batch.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        transport.set_write_buffer_limits(high=self._server.write_buffer_limit)
        peername = transport.get_extra_info("peername")
        if isinstance(peername, tuple) and len(peername) >= 2:
            self.peer = (plain_address(str(peername[0])), int(peername[1]))
        self.name = f"{self.peer[0]}:{self.peer[1]}"
        sockname = transport.get_extra_info("sockname")
        if isinstance(sockname, tuple) and len(sockname) >= 2:
            self.local = (plain_address(str(sockname[0])), int(sockname[1]))
        if not self._server.admit(self):
            # Over connection_max: close before any AMQP is read; no broker Connection is made.
            self._closing = True
            self.close_reason = "node connection limit is reached"
            transport.close()
            return
        if transport.get_extra_info("ssl_object") is not None:
            self.peer_cert_cn = peer_cert_cn(transport.get_extra_info("peercert"))
        broker: Broker = self._server.broker
        self.connection = broker.new_connection(self, self.peer)
        self._server.register(self)
        log.info("connection opened", extra={"conn": self.name})

    def data_received(self, data: bytes) -> None:
        """Hand the bytes to the Connection, at most TURN_BYTES per loop turn; see `_feed`."""
        if self.connection is None or self._closing:
            return
        self.recv_oct += len(data)
        self.recv_cnt += 1
        if len(data) <= TURN_BYTES:
            self._feed(data)
            if len(data) == TURN_BYTES:
                # A full slice's worth: the peer has likely more queued. uvloop would keep reading this
                # socket (up to 32 reads per wake-up), so a flooding publisher could starve every other
                # connection. Yield: read again on the next loop turn, after everyone else.
                self._yield_then(self._resume_reading)
            return
        # A big read (up to 256 KiB): one slice per loop turn, so that the others (a new client's
        # handshake, consumers and their acks) wait for one slice, not for the whole read. Reading stays
        # paused until the last slice is handed over.
        self._rest = data
        self._rest_pos = 0
        self._transport.pause_reading()  # type: ignore[union-attr]
        self._next_slice()

    def _next_slice(self) -> None:
        data = self._rest
        if data is None or self._closing or self._read_blocked:
            return  # resume_reading continues a rest held back by the broker
        start = self._rest_pos
        end = start + TURN_BYTES
        if end >= len(data):
            self._rest = None
            end = len(data)
        else:
            self._rest_pos = end
        self._feed(data[start:end])
        self._yield_then(self._next_slice if self._rest is not None else self._resume_reading)

    def _yield_then(self, callback: Callable[[], None]) -> None:
        if not self._closing:
            self._transport.pause_reading()  # type: ignore[union-attr]
            self._loop.call_soon(callback)

    def _feed(self, data: bytes) -> None:
        """Hand the bytes to the Connection, then send everything it wrote in response as one write."""
        connection = self.connection
        if connection is None or self._closing:
            return
        self._receiving = True
        try:
            connection.data_received(data)
        except Exception:
            self._internal_error()
            return
        finally:
            self._receiving = False
        if self._chunks:
            self._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        """The socket is gone: tell the Connection (it requeues unacked messages) and forget this socket."""
        self._closing = True
        self._chunks.clear()
        self._rest = None
        self.is_writable = False
        if not self.close_reason:
            self.close_reason = f"socket error: {exc}" if exc is not None else "client closed the socket"
        connection = self.connection
        if connection is not None:
            try:
                connection.connection_lost()
            except Exception:
                log.exception("internal error in connection_lost", extra={"conn": self.name})
        self._server.unregister(self)
        if connection is not None:  # a socket refused at accept is not logged once per attempt
            log.info("connection closed", extra={"conn": self.name, "reason": self.close_reason})

    def pause_writing(self) -> None:
        """The socket's write buffer passed its high-water mark: hold deliveries back."""
        self.is_writable = False

    def resume_writing(self) -> None:
        """The write buffer drained: deliveries may continue."""
        self.is_writable = True
        connection = self.connection
        if connection is not None and not self._closing:
            try:
                connection.resume_writing()
            except Exception:
                self._internal_error()

    # -- the broker's Transport ----------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        """Queue bytes for the socket; they leave with everything else written in this event-loop turn."""
        if self._closing:
            return
        self._chunks.append(data)
        if not self._receiving and not self._flush_pending:
            self._flush_pending = True
            self._loop.call_soon(self._flush)

    def close(self) -> None:
        """Send what is queued, then close the socket (the Connection calls this after close/close-ok)."""
        if self._closing:
            return
        self._flush()
        self._closing = True
        self.is_writable = False
        if not self.close_reason:
            self.close_reason = self._describe_broker_close()
        if self._transport is not None:
            self._transport.close()

    def pause_reading(self) -> None:
        """Stop reading the socket until `resume_reading` (a publisher blocked by a resource alarm)."""
        self._read_blocked = True
        if self._transport is not None and not self._closing:
            self._transport.pause_reading()

    def resume_reading(self) -> None:
        """Read the socket again after `pause_reading` (first the rest of a big read, if one is held)."""
        self._read_blocked = False
        if self._rest is not None:
            self._loop.call_soon(self._next_slice)
        else:
            self._resume_reading()

    @property
    def write_buffered(self) -> int:
        """Bytes written and not yet taken by the socket (the memory alarm counts them)."""
        transport = self._transport
        pending = sum(map(len, self._chunks))
        if transport is None or self._closing:
            return pending
        return pending + transport.get_write_buffer_size()

    def call_later(self, delay: float, callback: Callable[[], None]) -> asyncio.TimerHandle:
        """Run `callback` after `delay` seconds; the handle's `cancel()` stops it."""
        return self._loop.call_later(delay, callback)

    # -- server side ---------------------------------------------------------------------------------------

    def abort(self, reason: str) -> None:
        """Cut the socket at once, dropping anything unsent (shutdown timeout, internal error)."""
        if not self.close_reason:
            self.close_reason = reason
        self._closing = True
        self._chunks.clear()
        if self._transport is not None:
            self._transport.abort()

    def _internal_error(self) -> None:
        """An unexpected exception (a bug, a MemoryError) while handling this socket's input or output costs
        this client its connection for good, never the server. The socket is cut first (logging may fail as
        well when memory is short); connection_lost then releases the broker's side."""
        self.abort("internal error")
        try:
            log.exception("internal error; dropping the connection", extra={"conn": self.name})
        except Exception:
            pass  # nothing left to report with; the connection is gone either way

    def _resume_reading(self) -> None:
        transport = self._transport
        if (
            transport is not None
            and not self._closing
            and not self._read_blocked
            and self._rest is None
            and not transport.is_closing()
        ):
            transport.resume_reading()

    def _flush(self) -> None:
        self._flush_pending = False
        chunks = self._chunks
        if not chunks or self._transport is None:
            return
        try:
            data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
            chunks.clear()
            self._transport.write(data)
            self.send_oct += len(data)
            self.send_cnt += 1
        except Exception:
            # Bytes lost on the way out would desynchronise the peer: the connection cannot go on.
            self._internal_error()

    def _describe_broker_close(self) -> str:
        connection = self.connection
        reason = connection.close_reason if connection is not None else ""
        return reason or "closed by the broker"
