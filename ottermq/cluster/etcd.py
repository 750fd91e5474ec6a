"""A small async etcd v3 client: the calls leader election and the in-sync set need, no more.

Strategy: etcd's v3 JSON gateway (`POST /v3/kv/range`, `/v3/kv/put`, `/v3/kv/txn`, `/v3/lease/grant`,
`/v3/lease/keepalive`, `/v3/lease/revoke`, `/v3/watch`; part of every etcd since 3.4) over HTTP/1.1 with h11,
which the broker already depends on. The maintained Python clients (aetcd, etcd3aio) speak gRPC through
grpcio and protobuf: a large compiled dependency (and its protobuf pin, which is what left python-etcd3
unusable) for seven calls, on an event loop (uvloop) grpc.aio does not integrate with. Keys and values are
bytes (base64 in the gateway's JSON); int64 fields arrive as JSON strings.

Unary calls take an idle keep-alive connection from a small pool (or open one), so a slow call never delays
the lease keep-alive behind it. Every call has a deadline; a connection that fails or times out is dropped
and the call moves to the next endpoint (`EtcdUnavailable` when none answered in time). A call that timed
out may still have been applied by etcd: callers re-read what they wrote (the election does).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

import h11

# Idle connections kept per client (the election uses at most three calls at once).
_POOL_SIZE: Final = 4
_READ_SIZE: Final = 65536


class EtcdError(Exception):
    """etcd answered with an error (bad request, unknown lease...)."""

    def __init__(self, message: str, code: int = 0) -> None:
        super().__init__(message)
        self.code = code


class EtcdUnavailable(EtcdError):
    """No endpoint answered within the deadline."""


@dataclass(frozen=True, slots=True)
class KeyValue:
    """One key as etcd stores it."""

    key: bytes
    value: bytes
    create_revision: int
    mod_revision: int
    version: int
    lease: int


@dataclass(frozen=True, slots=True)
class TxnResult:
    """What a transaction did: which branch ran, its responses (the gateway's JSON), the store revision."""

    succeeded: bool
    responses: list[dict[str, Any]]
    revision: int


@dataclass(frozen=True, slots=True)
class WatchEvent:
    """A change of a watched key: "PUT" or "DELETE"."""

    type: str
    kv: KeyValue


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def prefix_end(prefix: bytes) -> bytes:
    """The range end that makes a range cover every key starting with `prefix` (etcd's rule)."""
    end = bytearray(prefix)
    for i in range(len(end) - 1, -1, -1):
        if end[i] < 0xFF:
            end[i] += 1
            return bytes(end[: i + 1])
    return b"\x00"


def _kv(raw: dict[str, Any]) -> KeyValue:
    return KeyValue(
        key=base64.b64decode(raw.get("key", "")),
        value=base64.b64decode(raw.get("value", "")),
        create_revision=int(raw.get("create_revision", 0)),
        mod_revision=int(raw.get("mod_revision", 0)),
        version=int(raw.get("version", 0)),
        lease=int(raw.get("lease", 0)),
    )


def kvs_of(response: dict[str, Any]) -> list[KeyValue]:
    """The keys of a range response (also of a txn's `response_range`)."""
    return [_kv(item) for item in response.get("kvs", [])]


# -- transaction parts (the gateway's JSON for Compare and RequestOp) -------------------------------------


def compare_create(key: bytes, revision: int) -> dict[str, Any]:
    """The key's create revision equals `revision` (0: the key does not exist)."""
    return {"key": _b64(key), "result": "EQUAL", "target": "CREATE", "create_revision": str(revision)}


def compare_mod(key: bytes, revision: int) -> dict[str, Any]:
    """The key's last modification revision equals `revision` (0: the key does not exist)."""
    return {"key": _b64(key), "result": "EQUAL", "target": "MOD", "mod_revision": str(revision)}


def op_put(key: bytes, value: bytes, lease: int = 0) -> dict[str, Any]:
    """Put `value` at `key`, attached to `lease` (0: none)."""
    request: dict[str, Any] = {"key": _b64(key), "value": _b64(value)}
    if lease:
        request["lease"] = str(lease)
    return {"request_put": request}


def op_range(key: bytes) -> dict[str, Any]:
    """Read `key`."""
    return {"request_range": {"key": _b64(key)}}


# -- the HTTP transport ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Endpoint:
    host: str
    port: int

    @property
    def authority(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_endpoint(url: str) -> Endpoint:
    """`http://host:port` (port 2379 when absent); ValueError otherwise (TLS to etcd is not supported yet)."""
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if parts.scheme != "http":
        raise ValueError(f"etcd endpoint {url!r}: only http:// is supported")
    if not parts.hostname:
        raise ValueError(f"etcd endpoint {url!r} names no host")
    return Endpoint(parts.hostname, parts.port or 2379)


class _Connection:
    """One HTTP/1.1 connection to an etcd endpoint."""

    def __init__(
        self, endpoint: Endpoint, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.endpoint = endpoint
        self.reader = reader
        self.writer = writer
        self.http = h11.Connection(h11.CLIENT)

    @classmethod
    async def open(cls, endpoint: Endpoint) -> _Connection:
        reader, writer = await asyncio.open_connection(endpoint.host, endpoint.port)
        return cls(endpoint, reader, writer)

    async def send(self, path: str, body: bytes) -> None:
        headers = [
            ("Host", self.endpoint.authority),
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
        ]
        data = self.http.send(h11.Request(method="POST", target=path, headers=headers))
        data = (data or b"") + (self.http.send(h11.Data(data=body)) or b"")
        data += self.http.send(h11.EndOfMessage()) or b""
        self.writer.write(data)
        await self.writer.drain()

    async def next_event(self) -> Any:
        while True:
            event = self.http.next_event()
            if event is not h11.NEED_DATA:
                return event
            # b"" at the end of the stream: h11 then reports ConnectionClosed, or raises on a cut answer.
            self.http.receive_data(await self.reader.read(_READ_SIZE))

    async def response_head(self) -> int:
        event = await self.next_event()
        if not isinstance(event, h11.Response):
            raise ConnectionError(f"unexpected answer from etcd: {event!r}")
        return int(event.status_code)

    async def body(self) -> bytes:
        parts: list[bytes] = []
        while True:
            event = await self.next_event()
            if isinstance(event, h11.Data):
                parts.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                return b"".join(parts)
            elif isinstance(event, h11.ConnectionClosed):
                raise ConnectionError("etcd closed the connection mid-answer")

    def reusable(self) -> bool:
        if self.http.our_state is h11.DONE and self.http.their_state is h11.DONE:
            self.http.start_next_cycle()
            return True
        return False

    def close(self) -> None:
        self.writer.close()


def _answer(status: int, body: bytes) -> dict[str, Any]:
    try:
        document = json.loads(body) if body else {}
    except ValueError:
        raise EtcdError(f"etcd answered {status} with a body that is not JSON") from None
    if not isinstance(document, dict):
        raise EtcdError(f"etcd answered {status} with unexpected JSON")
    if status != 200 or "error" in document:
        message = document.get("message") or document.get("error") or f"HTTP {status}"
        raise EtcdError(f"etcd: {message}", int(document.get("code", 0) or 0))
    return document


class EtcdClient:
    """Calls to an etcd cluster through any of its `endpoints` (`http://host:port` URLs)."""

    def __init__(self, endpoints: Sequence[str], timeout: float = 2.0) -> None:
        if not endpoints:
            raise ValueError("no etcd endpoint")
        self.endpoints = [parse_endpoint(url) for url in endpoints]
        self.timeout = timeout
        self._current = 0
        self._idle: list[_Connection] = []
        self._closed = False

    async def close(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()

    async def _call(self, path: str, request: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
        """POST `request` to `path` on the current endpoint, moving to the next one on failure, within
        `timeout` seconds in all (the client's default when None)."""
        body = json.dumps(request).encode()
        deadline = asyncio.get_running_loop().time() + (timeout if timeout is not None else self.timeout)
        last: Exception | None = None
        for _ in range(len(self.endpoints)):
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                break
            endpoint = self.endpoints[self._current]
            try:
                async with asyncio.timeout(remaining):
                    return await self._call_on(endpoint, path, body)
            except EtcdError:
                raise
            except (OSError, TimeoutError, h11.ProtocolError, ConnectionError) as exc:
                last = exc
                self._current = (self._current + 1) % len(self.endpoints)
        detail = f"{type(last).__name__}: {last}" if last is not None else "no time left"
        raise EtcdUnavailable(f"etcd unreachable ({detail})")

    async def _call_on(self, endpoint: Endpoint, path: str, body: bytes) -> dict[str, Any]:
        connection = None
        while self._idle:
            candidate = self._idle.pop()
            if candidate.endpoint == endpoint and not candidate.reader.at_eof():
                connection = candidate
                break
            candidate.close()
        if connection is not None:
            try:
                return await self._exchange(connection, path, body)
            except (OSError, h11.ProtocolError, ConnectionError) as exc:
                if getattr(exc, "answered", False):
                    raise
                # A kept-alive connection etcd closed meanwhile (a restart): once more on a new one.
        return await self._exchange(await _Connection.open(endpoint), path, body)

    async def _exchange(self, connection: _Connection, path: str, body: bytes) -> dict[str, Any]:
        """One request and its answer on `connection` (kept for reuse when it allows). An error raised
        once the answer has begun carries `answered = True`: the request reached etcd."""
        keep = False
        try:
            await connection.send(path, body)
            status = await connection.response_head()
            try:
                payload = await connection.body()
            except (OSError, h11.ProtocolError, ConnectionError) as exc:
                exc.answered = True  # type: ignore[union-attr]
                raise
            keep = connection.reusable() and not self._closed and len(self._idle) < _POOL_SIZE
        finally:
            if keep:
                self._idle.append(connection)
            else:
                connection.close()
        return _answer(status, payload)

    # -- kv ---------------------------------------------------------------------------------------------

    async def range(self, key: bytes, *, prefix: bool = False) -> tuple[list[KeyValue], int]:
        """The key (or every key under the prefix) and the store's revision."""
        request: dict[str, Any] = {"key": _b64(key)}
        if prefix:
            request["range_end"] = _b64(prefix_end(key))
        answer = await self._call("/v3/kv/range", request)
        return kvs_of(answer), int(answer.get("header", {}).get("revision", 0))

    async def put(self, key: bytes, value: bytes, lease: int = 0) -> int:
        """Store `value`; the new revision."""
        answer = await self._call("/v3/kv/put", op_put(key, value, lease)["request_put"])
        return int(answer.get("header", {}).get("revision", 0))

    async def delete(self, key: bytes) -> None:
        await self._call("/v3/kv/deleterange", {"key": _b64(key)})

    async def txn(
        self,
        compare: list[dict[str, Any]],
        success: list[dict[str, Any]],
        failure: list[dict[str, Any]] | None = None,
    ) -> TxnResult:
        """If every comparison holds run `success`, else `failure`, atomically."""
        request = {"compare": compare, "success": success, "failure": failure or []}
        answer = await self._call("/v3/kv/txn", request)
        return TxnResult(
            succeeded=bool(answer.get("succeeded", False)),
            responses=list(answer.get("responses", [])),
            revision=int(answer.get("header", {}).get("revision", 0)),
        )

    # -- leases -----------------------------------------------------------------------------------------

    async def lease_grant(self, ttl: int) -> tuple[int, int]:
        """A new lease: its id and the TTL etcd granted (it may raise a TTL below its minimum)."""
        answer = await self._call("/v3/lease/grant", {"TTL": str(ttl), "ID": "0"})
        return int(answer["ID"]), int(answer.get("TTL", ttl))

    async def lease_keepalive(self, lease: int, timeout: float | None = None) -> int:
        """Refresh the lease; its TTL from now, or 0 when it no longer exists (expired or revoked)."""
        answer = await self._call("/v3/lease/keepalive", {"ID": str(lease)}, timeout)
        return int(answer.get("result", {}).get("TTL", 0))

    async def lease_revoke(self, lease: int, timeout: float | None = None) -> None:
        """End the lease now: every key attached to it is deleted. An unknown lease is not an error."""
        try:
            await self._call("/v3/lease/revoke", {"ID": str(lease)}, timeout)
        except EtcdUnavailable:
            raise
        except EtcdError as exc:
            if "not found" not in str(exc):
                raise

    # -- watch ------------------------------------------------------------------------------------------

    async def watch(self, key: bytes, start_revision: int = 0) -> AsyncIterator[list[WatchEvent]]:
        """The changes of `key` from `start_revision` on (0: from now), a list per etcd answer, until
        the connection ends (ConnectionError) or the caller stops iterating. Uses a connection of its own."""
        endpoint = self.endpoints[self._current]
        try:
            async with asyncio.timeout(self.timeout):
                connection = await _Connection.open(endpoint)
        except (OSError, TimeoutError) as exc:
            self._current = (self._current + 1) % len(self.endpoints)
            raise EtcdUnavailable(f"etcd unreachable ({type(exc).__name__}: {exc})") from None
        try:
            create: dict[str, Any] = {"key": _b64(key)}
            if start_revision:
                create["start_revision"] = str(start_revision)
            await connection.send("/v3/watch", json.dumps({"create_request": create}).encode())
            status = await connection.response_head()
            if status != 200:
                _answer(status, await connection.body())
            pending = b""
            while True:
                event = await connection.next_event()
                if isinstance(event, h11.Data):
                    pending += bytes(event.data)
                    *lines, pending = pending.split(b"\n")
                    for line in lines:
                        if line.strip():
                            events = _watch_events(json.loads(line))
                            if events is not None:
                                yield events
                elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                    raise ConnectionError("etcd ended the watch")
        finally:
            with contextlib.suppress(Exception):
                connection.close()


def _watch_events(message: dict[str, Any]) -> list[WatchEvent] | None:
    """The events of one watch answer; None for answers that carry none (created, progress)."""
    if "error" in message:
        raise EtcdError(f"etcd watch: {message['error'].get('message', message['error'])}")
    result = message.get("result", {})
    if result.get("canceled"):
        raise ConnectionError(f"etcd cancelled the watch: {result.get('cancel_reason', '')}")
    raw = result.get("events")
    if not raw:
        return None
    return [WatchEvent(item.get("type", "PUT"), _kv(item.get("kv", {}))) for item in raw]
