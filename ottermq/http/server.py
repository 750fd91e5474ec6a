"""The HTTP/1.1 transport of the management API: h11 over asyncio streams.

Strategy: h11 is sans-IO (bytes in, events out), so this module only moves bytes between a socket and
an `h11.Connection`, collects one request at a time (body capped at `MAX_BODY`), hands it to the
application callable and writes the response it returns. aiohttp would do the same at +17 MiB of RSS,
which the broker's memory budget cannot pay. Anything the peer gets wrong (not HTTP, a bad header, an
oversize body, a silent socket) ends that one HTTP connection with a 4xx or a close; the AMQP side
never notices. Keep-alive is supported; each connection is one task.

Slow peers (slowloris) are held to deadlines (`Limits`): the request head must be whole within
`head_timeout` of the connection's start (or of its first byte on a kept-alive connection), the body
within `body_timeout` of the head, a response must be taken within `send_timeout`, and a kept-alive
connection may wait `idle_timeout` for its next request. Capacity is kept for real clients: a
connection is "proven" once it has sent a request that authenticated; at most `max_unproven`
connections that are not proven may be reading a request at once, and a new connection beyond that
(or beyond `max_connections`) evicts the oldest of them instead of being refused. So dribbling sockets
push each other out, never a request that is whole or a client that has logged in. A request whose
login waits for a password check (the application sets `Request.waiting`) is not yet being answered
either: when `max_connections` are open, the oldest such unproven connection is evicted next (its check
given up), so a flood of failing logins cannot fill the API while it waits for the hashing workers. A
connection opened in the last FRESH_SECONDS goes last among the unproven: its request, sent already, may
just not have been read yet.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

import h11

from ottermq.http.interface import App, Request, Response, error_response
from ottermq.server.listen import dual_stack_socket, plain_address

log: Final = logging.getLogger("ottermq.http")

# Request bodies above this are refused with 413 (a definition or a published payload never needs more).
MAX_BODY: Final = 1024 * 1024
# Header block limit (h11's own default is 16 KiB).
MAX_HEADERS: Final = 64 * 1024
READ_SIZE: Final = 65536
# After refusing a request: how long and how much of the rest of it to read before closing.
LINGER_SECONDS: Final = 1.0
LINGER_BYTES: Final = 8 * MAX_BODY

REASONS: Final = {
    200: "OK",
    201: "Created",
    204: "No Content",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    413: "Payload Too Large",
    421: "Misdirected Request",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


@dataclass(frozen=True, slots=True)
class Limits:
    """How long and how many: what keeps slow or idle peers from holding the API (seconds, counts)."""

    # The whole request head, from the connection's start or the next request's first byte (as
    # Apache's and nginx's default header timeouts).
    head_timeout: float = 10.0
    # The whole body, from the end of the head (MAX_BODY in 30 s is ~35 KB/s: any real link).
    body_timeout: float = 30.0
    # A kept-alive connection waiting for its next request.
    idle_timeout: float = 30.0
    # Writing one response to a peer that does not read it.
    send_timeout: float = 30.0
    # Open connections (management needs few); beyond it, the oldest evictable one makes room, else 503.
    max_connections: int = 256
    # Connections not yet proven (no authenticated request) that are reading a request; beyond it the
    # oldest of them is closed to make room, so they never fill `max_connections`.
    max_unproven: int = 64
    # Bodies of definitions imports (POST /api/definitions[/{vhost}]), which RabbitMQ lets grow to 20 MiB;
    # every other body is capped at MAX_BODY. 413 beyond.
    max_body_size: int = 20 * 1024 * 1024


# What a connection is doing: waiting for a next request, reading one, or having one handled.
_IDLE: Final = "idle"
_READING: Final = "reading"
_WORKING: Final = "working"


# A connection opened this recently (seconds) may not have been read yet: its request is most likely in
# the socket's buffer. It is evicted only after the unproven connections that had their chance and the
# logins waiting for a check, so that under a flood a real client's new connection is not closed before
# the server has read the request it sent.
FRESH_SECONDS: Final = 0.5


@dataclass(slots=True, eq=False)
class _Conn:
    task: asyncio.Task[None]
    # When it was accepted (the event loop's clock).
    opened: float
    state: str = _READING
    proven: bool = False
    # The request being answered (state _WORKING).
    request: Request | None = None


class HttpServer:
    """Serves one application on a TCP port until `stop`."""

    def __init__(self, app: App, limits: Limits | None = None) -> None:
        self.app = app
        self.limits = limits or Limits()
        self._server: asyncio.AbstractServer | None = None
        # Open connections in the order they came (the first is the oldest, evicted first).
        self._conns: dict[asyncio.Task[None], _Conn] = {}
        self.evicted = 0

    async def start(self, host: str, port: int) -> list[tuple[str, int]]:
        """Listen on host:port (0 = a free port); the bound addresses. OSError if it cannot listen."""
        sock = dual_stack_socket(host, port)  # "::" serves IPv4 too, as the AMQP listener
        if sock is not None:
            self._server = await asyncio.start_server(self._accepted, sock=sock, limit=READ_SIZE)
        else:
            self._server = await asyncio.start_server(self._accepted, host, port, limit=READ_SIZE)
        return [sock.getsockname()[:2] for sock in self._server.sockets]

    async def stop(self, timeout: float = 1.0) -> None:
        """Stop listening and end open connections (requests in flight get `timeout` to finish)."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for conn in self._conns.values():
            if conn.state != _WORKING:
                conn.task.cancel()
        tasks = list(self._conns)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=timeout)
            for task in pending:
                task.cancel()
            with contextlib.suppress(Exception):
                await asyncio.gather(*pending, return_exceptions=True)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), timeout)

    def _evict_oldest(self, proven: bool, waiting: bool = False, fresh: bool = False) -> bool:
        """Close the oldest connection that may make room: one not proven that is not being answered
        and is older than FRESH_SECONDS (`fresh`: of any age; `waiting`: one whose request waits for a
        password check), or (`proven`) a proven one idle between requests. False when there is none."""
        now = asyncio.get_running_loop().time()
        for conn in self._conns.values():
            if conn.proven != proven:
                continue
            if proven:
                if conn.state != _IDLE:
                    continue
            elif waiting:
                if conn.state != _WORKING or conn.request is None or not conn.request.waiting:
                    continue
            elif conn.state == _WORKING or (not fresh and now - conn.opened < FRESH_SECONDS):
                continue
            del self._conns[conn.task]
            conn.task.cancel()
            self.evicted += 1
            return True
        return False

    def _make_room(self) -> bool:
        """Room for one more connection, evicting if needed; False when every slot is in real use."""
        limits = self.limits
        unproven = sum(1 for c in self._conns.values() if not c.proven and c.state != _WORKING)
        if unproven >= limits.max_unproven and not self._evict_oldest(proven=False):
            self._evict_oldest(proven=False, fresh=True)
        if len(self._conns) >= limits.max_connections:
            return (
                self._evict_oldest(proven=False)
                or self._evict_oldest(proven=False, waiting=True)
                or self._evict_oldest(proven=False, fresh=True)
                or self._evict_oldest(proven=True)
            )
        return True

    async def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        if self._server is None or not self._make_room():
            writer.write(_BUSY)
            writer.close()
            return
        conn = _Conn(task, asyncio.get_running_loop().time())
        self._conns[task] = conn
        try:
            await self._serve(reader, writer, conn)
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass  # a cancel comes from `stop` or an eviction: the connection ends like any other
        except Exception:
            log.exception("internal error in an HTTP connection")
        finally:
            if self._conns.get(task) is conn:
                del self._conns[task]
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, state: _Conn) -> None:
        peer = writer.get_extra_info("peername")
        # As the AMQP listener names its peers: an IPv4 client of the dual-stack socket by its IPv4 address.
        peer_host = plain_address(str(peer[0])) if isinstance(peer, tuple) else ""
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEADERS)
        loop = asyncio.get_running_loop()
        # The first request's head is due `head_timeout` after the connection opened.
        head_due: float | None = loop.time() + self.limits.head_timeout
        while True:
            try:
                request = await self._read_request(conn, reader, writer, peer_host, state, head_due)
            except _Refused as refused:
                # A broken or oversize request: answer if h11 still lets us, then close.
                await self._send(conn, writer, refused.response, close=True)
                await _linger(reader)
                return
            except _TooSlow:
                # Part of a request came, not the rest in time: say so (the peer may not read it) and close.
                writer.write(_TIMEOUT)
                return
            if request is None:
                return
            state.state = _WORKING
            state.request = request
            try:
                response = await self.app(request)
            except Exception:
                log.exception("internal error in an HTTP request", extra={"target": request.target.decode()})
                response = error_response(500, "internal_error", "internal error")
            state.request = None
            state.proven = state.proven or request.authenticated
            if request.method == "HEAD":
                response = Response(response.status, b"", response.content_type, response.headers)
            await self._send(conn, writer, response, close=False)
            if conn.our_state is h11.MUST_CLOSE or conn.their_state is not h11.DONE:
                return
            conn.start_next_cycle()
            state.state = _IDLE
            head_due = None

    async def _read_request(
        self,
        conn: h11.Connection,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        peer_host: str,
        state: _Conn,
        head_due: float | None,
    ) -> Request | None:
        """The next whole request, or None when the peer closed or stayed idle between requests;
        `_TooSlow` when a request started but did not arrive in time. `head_due`: when the head must be
        whole (None: from the first byte of the request on)."""
        limits = self.limits
        loop = asyncio.get_running_loop()
        if head_due is None and conn.trailing_data[0]:
            head_due = loop.time() + limits.head_timeout  # a pipelined request is already under way
        if head_due is not None:
            state.state = _READING
        # When the current wait ends: the head's or body's deadline, or the idle timeout before a request.
        due = head_due if head_due is not None else loop.time() + limits.idle_timeout
        head: h11.Request | None = None
        body = bytearray()
        max_body = MAX_BODY
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                raise _Refused(error_response(exc.error_status_hint, "bad_request", str(exc))) from None
            if event is h11.NEED_DATA:
                if conn.they_are_waiting_for_100_continue:
                    # curl and others hold a large body back until told to go on.
                    writer.write(conn.send(h11.InformationalResponse(status_code=100, headers=[])) or b"")
                try:
                    data = await asyncio.wait_for(reader.read(READ_SIZE), max(0.0, due - loop.time()))
                except TimeoutError:
                    if state.state == _IDLE:
                        return None
                    raise _TooSlow() from None
                if not data and head is None and conn.their_state is h11.IDLE:
                    return None
                if data and state.state == _IDLE:
                    state.state = _READING
                    due = loop.time() + limits.head_timeout
                conn.receive_data(data)
                continue
            if isinstance(event, h11.Request):
                head = event
                max_body = limits.max_body_size if _is_import(event) else MAX_BODY
                length = _content_length(event.headers)
                if length is not None and length > max_body:
                    raise _Refused(_too_large(max_body))
                due = loop.time() + limits.body_timeout
            elif isinstance(event, h11.Data):
                body += event.data
                if len(body) > max_body:
                    raise _Refused(_too_large(max_body))
            elif isinstance(event, h11.EndOfMessage):
                assert head is not None
                headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in head.headers}
                return Request(
                    head.method.decode("ascii", "replace").upper(),
                    bytes(head.target),
                    headers,
                    bytes(body),
                    peer_host,
                )
            elif isinstance(event, h11.ConnectionClosed):
                return None

    async def _send(
        self, conn: h11.Connection, writer: asyncio.StreamWriter, response: Response, close: bool
    ) -> None:
        if conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        headers = [
            ("content-type", response.content_type),
            ("content-length", str(len(response.body))),
            ("cache-control", "no-cache"),
            *response.headers,
        ]
        if close:
            headers.append(("connection", "close"))
        try:
            data = conn.send(
                h11.Response(
                    status_code=response.status,
                    headers=headers,
                    reason=REASONS.get(response.status, "").encode(),
                )
            )
            data = (data or b"") + (conn.send(h11.Data(data=response.body)) or b"") if response.body else data
            data = (data or b"") + (conn.send(h11.EndOfMessage()) or b"")
        except h11.LocalProtocolError:
            return
        writer.write(data)
        # A peer that does not read its answer holds the connection no longer than this.
        await asyncio.wait_for(writer.drain(), self.limits.send_timeout)


class _TooSlow(Exception):
    """A request began but its head or body did not arrive before its deadline."""


class _Refused(Exception):
    def __init__(self, response: Response) -> None:
        super().__init__(response.status)
        self.response = response


async def _linger(reader: asyncio.StreamReader) -> None:
    """Read (and drop) what the peer is still sending, briefly, before closing: closing a socket with
    unread data resets it, and the peer would lose the answer it has not read yet."""
    deadline = asyncio.get_running_loop().time() + LINGER_SECONDS
    drained = 0
    with contextlib.suppress(TimeoutError, ConnectionError):
        while drained < LINGER_BYTES:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                return
            chunk = await asyncio.wait_for(reader.read(READ_SIZE), left)
            if not chunk:
                return
            drained += len(chunk)


_BUSY_BODY: Final = b'{"error":"unavailable","reason":"too many HTTP connections"}'
_BUSY: Final = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nconnection: close\r\n"
    b"content-length: %d\r\n\r\n%s" % (len(_BUSY_BODY), _BUSY_BODY)
)


_TIMEOUT_BODY: Final = b'{"error":"request_timeout","reason":"the request did not arrive in time"}'
_TIMEOUT: Final = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
    b"content-length: %d\r\n\r\n%s" % (len(_TIMEOUT_BODY), _TIMEOUT_BODY)
)


def _too_large(limit: int) -> Response:
    return error_response(413, "bad_request", f"request body larger than {limit} bytes")


def _is_import(head: h11.Request) -> bool:
    """A definitions import (POST /api/definitions or /api/definitions/{vhost}), whose body may be large."""
    path = head.target.split(b"?", 1)[0]
    return head.method == b"POST" and (path == b"/api/definitions" or path.startswith(b"/api/definitions/"))


def _content_length(headers: Iterable[tuple[bytes, bytes]]) -> int | None:
    for name, value in headers:
        if name == b"content-length":
            with contextlib.suppress(ValueError):
                return int(value)
    return None
