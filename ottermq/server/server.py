"""The AMQP listener: accepts sockets, ticks every connection once a second, and shuts down gracefully.

Strategy: one `asyncio.Server` per listen address set, one `AMQPProtocol` per socket, and a single timer chain
(not a task per connection) that calls `Connection.tick(now)` on every live connection; the broker decides
from `now` whether heartbeats are due or a handshake has taken too long. Shutdown stops accepting, asks every
connection to close with 320 CONNECTION_FORCED, waits up to `shutdown_timeout` for the clients to answer, then
cuts whatever is left.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import time
from typing import TYPE_CHECKING, Any, Final

from ottermq.server.limits import ConnectionLimit
from ottermq.server.listen import dual_stack_socket
from ottermq.server.protocol import AMQPProtocol, CheckRunner

if TYPE_CHECKING:
    from ottermq.broker.broker import Broker
    from ottermq.cluster.proxy import AmqpProxy

log: Final = logging.getLogger("ottermq.server")

TICK_INTERVAL: Final = 1.0


class Server:
    """Serves AMQP for one Broker on the addresses given to `start`."""

    def __init__(
        self,
        broker: Broker,
        *,
        write_buffer_limit: int = 1024 * 1024,
        shutdown_timeout: float = 3.0,
        connection_max: int = 0,
        proxy: AmqpProxy | None = None,
    ) -> None:
        self.broker = broker
        # A clustered node's AMQP proxy: while another node leads, accepted sockets are relayed to it.
        self.proxy = proxy
        if proxy is not None:
            proxy.resume()
        self.write_buffer_limit = write_buffer_limit
        self.shutdown_timeout = shutdown_timeout
        self.connections: set[AMQPProtocol] = set()
        self.limit = ConnectionLimit(connection_max)
        self._listener: asyncio.Server | None = None
        self._tls_listener: asyncio.Server | None = None
        self._ticker: asyncio.TimerHandle | None = None
        self._all_closed: asyncio.Event | None = None
        # Full password checks run on worker threads from now on (fairly scheduled by the broker).
        broker.auth.checks.runner = CheckRunner()

    async def start(self, host: str, port: int) -> list[tuple[str, int]]:
        """Listen on host:port (port 0 = any free port); returns the bound (host, port) pairs.

        Host `::` serves IPv6 and IPv4 (see listen.py). Raises OSError when the address cannot be bound.
        """
        self._listener = await self._listen(host, port)
        self._ticker = asyncio.get_running_loop().call_later(TICK_INTERVAL, self._tick)
        return [self._address(sock) for sock in self._listener.sockets]

    async def start_tls(self, host: str, port: int, context: ssl.SSLContext) -> list[tuple[str, int]]:
        """Also listen for AMQPS on host:port with `context`; returns the bound (host, port) pairs.

        The TLS handshake must finish within the broker's handshake timeout. Raises OSError when the
        address cannot be bound.
        """
        self._tls_listener = await self._listen(
            host, port, ssl=context, ssl_handshake_timeout=self.broker.settings.handshake_timeout
        )
        return [self._address(sock) for sock in self._tls_listener.sockets]

    async def _listen(self, host: str, port: int, **tls: Any) -> asyncio.Server:
        loop = asyncio.get_running_loop()
        sock = dual_stack_socket(host, port)
        if sock is not None:
            try:
                return await loop.create_server(self._new_protocol, sock=sock, backlog=1024, **tls)
            except BaseException:
                sock.close()
                raise
        return await loop.create_server(
            self._new_protocol,
            host=host or None,
            port=port,
            family=socket.AF_UNSPEC,
            reuse_address=True,
            backlog=1024,
            **tls,
        )

    def _new_protocol(self) -> asyncio.BaseProtocol:
        """The protocol of a just-accepted socket: relayed to the leader while another node leads (and the
        connection limit has room), else served here (and refused at once when over the limit)."""
        proxy = self.proxy
        if proxy is not None and self.limit.room(self._open_count()):
            relay = proxy.protocol()
            if relay is not None:
                return relay
        return AMQPProtocol(self)

    def _open_count(self) -> int:
        # A proxied client is a client connection of this node too (connection_max, the open-file limit).
        return len(self.connections) + (len(self.proxy.sessions) if self.proxy is not None else 0)

    def admit(self, proto: AMQPProtocol) -> bool:
        """Whether a just-accepted socket may stay (connection_max); called by the protocol."""
        return self.limit.admit(self._open_count(), proto.name)

    def register(self, proto: AMQPProtocol) -> None:
        """A socket was accepted (called by the protocol)."""
        self.connections.add(proto)

    def unregister(self, proto: AMQPProtocol) -> None:
        """A socket is gone (called by the protocol)."""
        self.connections.discard(proto)
        if not self.connections and self._all_closed is not None:
            self._all_closed.set()

    async def stop(self, reason: str = "shutdown") -> None:
        """Graceful stop: no new sockets, connection.close 320 to all, a short wait, then cut the rest."""
        if self._listener is not None:
            self._listener.close()
        if self._tls_listener is not None:
            self._tls_listener.close()
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None
        self._all_closed = asyncio.Event()
        if self.proxy is not None:
            await self.proxy.stop()
        if self.connections:
            log.info("closing connections", extra={"count": len(self.connections), "reason": reason})
            text = f"CONNECTION_FORCED - broker forced connection closure with reason '{reason}'"
            for proto in list(self.connections):
                proto.close_reason = f"broker {reason}"
                if proto.connection is None or proto.connection.closed:
                    proto.abort(f"broker {reason}")
                    continue
                try:
                    proto.connection.shutdown(320, text)
                except Exception:
                    log.exception("internal error in shutdown", extra={"conn": proto.name})
                    proto.abort(f"broker {reason}")
            if self.connections:
                try:
                    await asyncio.wait_for(self._all_closed.wait(), self.shutdown_timeout)
                except TimeoutError:
                    log.warning(
                        "clients did not answer connection.close in time; cutting them",
                        extra={"count": len(self.connections), "timeout_s": self.shutdown_timeout},
                    )
                    self.abort_all(f"{reason}: no close-ok in time")
                    # abort() reports connection_lost on the next loop turn; let it run.
                    await asyncio.sleep(0)
        if self._listener is not None:
            await self._listener.wait_closed()
        if self._tls_listener is not None:
            await self._tls_listener.wait_closed()

    def abort_all(self, reason: str) -> None:
        """Cut every socket now, without waiting for close-ok (ends a graceful stop early)."""
        for proto in list(self.connections):
            proto.abort(f"broker {reason}")

    def _tick(self) -> None:
        now = time.monotonic()
        for proto in list(self.connections):
            connection = proto.connection
            if connection is None:
                continue
            try:
                connection.tick(now)
            except Exception:
                log.exception("internal error in tick; dropping connection", extra={"conn": proto.name})
                proto.abort("internal error")
        try:
            # Queue timers (TTL, x-expires) and the consumer timeout work on wall-clock time.
            self.broker.tick(time.time())
        except Exception:
            log.exception("internal error in the broker's tick")
        self._ticker = asyncio.get_running_loop().call_later(TICK_INTERVAL, self._tick)

    @staticmethod
    def _address(sock: socket.socket) -> tuple[str, int]:
        name = sock.getsockname()
        return str(name[0]), int(name[1])
