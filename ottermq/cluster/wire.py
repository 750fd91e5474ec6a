"""The replication protocol's framing and its authentication.

Strategy: one TCP connection per follower, opened by the follower. Every message is a frame
`u32 length | u8 kind | body` (length counts kind and body). Control messages carry JSON; the two hot
ones are binary: RECORDS (`u64 term` then Memento records in the version-3 layout, each with its own crc,
memento.replica) from leader to follower, and ACK (`u64 term | u64 durable LSN`) back.

With `cluster_tls` the leader first sends STARTTLS (an empty frame), then both sides run the TLS
handshake (each requires the other's certificate to be of the cluster's CA) and everything below runs
inside it.

Authentication is mutual, by HMAC-SHA256 with the shared cluster secret over the other side's random
nonce, the cluster name and the direction: the leader sends CHALLENGE (its nonce and cluster name); the
follower answers AUTH (its node name, cluster name, its MAC over the leader's nonce, its own nonce); the
leader checks both and sends WELCOME (its MAC over the follower's nonce) or REFUSED (why). The secret never
crosses the wire and a recorded exchange cannot be replayed (fresh nonces).

A session then goes: HELLO (follower: log id, durable LSN, probes of its tail, files staged by an
interrupted bulk sync) and the leader's decision: STREAM (from which LSN, after truncating to which) then
RECORDS; or BULK (a manifest), FILE chunks, FILE_END per file, BULK_DONE, after which the follower
installs the copy and connects again.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import struct
from typing import Any, Final

FRAME: Final = struct.Struct("<IB")
TERM: Final = struct.Struct("<Q")
ACK: Final = struct.Struct("<QQ")
CHUNK_HEAD: Final = struct.Struct("<HQ")  # name length, offset; then the name, then the bytes
MAX_FRAME: Final = 1 << 30

CHALLENGE: Final = ord("C")
AUTH: Final = ord("A")
WELCOME: Final = ord("W")
REFUSED: Final = ord("X")
HELLO: Final = ord("H")
STREAM: Final = ord("S")
BULK: Final = ord("B")
WANT: Final = ord("N")
FILE: Final = ord("F")
FILE_END: Final = ord("E")
BULK_DONE: Final = ord("D")
RECORDS: Final = ord("R")
ACKED: Final = ord("K")
STARTTLS: Final = ord("T")  # leader, first, with `cluster_tls`: the TLS handshake follows

NONCE_SIZE: Final = 32


class ProtocolError(Exception):
    """The peer sent something this side does not accept (the message says what)."""


class Refused(ProtocolError):
    """The peer refused this node (wrong secret, another cluster...)."""


def new_nonce() -> str:
    return os.urandom(NONCE_SIZE).hex()


def mac(secret: str, cluster: str, direction: str, nonce: str) -> str:
    """The proof of knowing `secret`: HMAC-SHA256 over the direction ("follower"/"leader"), the cluster
    name and the other side's nonce."""
    message = f"ottermq-replication-1\n{direction}\n{cluster}\n{nonce}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def check_mac(secret: str, cluster: str, direction: str, nonce: str, given: object) -> bool:
    return isinstance(given, str) and hmac.compare_digest(mac(secret, cluster, direction, nonce), given)


def frame(kind: int, body: bytes | bytearray | memoryview = b"") -> bytes:
    return FRAME.pack(len(body) + 1, kind) + bytes(body)


def records_frame(term: int, records: list[bytes]) -> bytes:
    """A RECORDS frame of `records` (each one or more whole records in the version-3 layout, as
    `memento.replica.Cursor` reads them), built with one copy."""
    size = TERM.size + sum(map(len, records))
    return b"".join((FRAME.pack(size + 1, RECORDS), TERM.pack(term), *records))


def last_ack(buffer: bytearray, node: str) -> int | None:
    """The highest LSN acknowledged by the ACK frames complete in `buffer` (removed from it; a partial one
    stays), or None when there is none; ProtocolError on any other frame."""
    at = 0
    lsn: int | None = None
    head = FRAME.size
    while len(buffer) - at >= head:
        length, kind = FRAME.unpack_from(buffer, at)
        if kind != ACKED or length != ACK.size + 1:
            raise ProtocolError(f"unexpected frame {chr(kind)!r} ({length} bytes) from follower {node}")
        end = at + head - 1 + length
        if end > len(buffer):
            break
        acked = ACK.unpack_from(buffer, at + head)[1]
        lsn = acked if lsn is None else max(lsn, acked)
        at = end
    del buffer[:at]
    return lsn


def json_frame(kind: int, value: dict[str, Any]) -> bytes:
    return frame(kind, json.dumps(value, separators=(",", ":")).encode())


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readexactly(FRAME.size)
    length, kind = FRAME.unpack(head)
    if not 1 <= length <= MAX_FRAME:
        raise ProtocolError(f"frame of {length} bytes")
    return kind, await reader.readexactly(length - 1)


async def read_json(reader: asyncio.StreamReader, *kinds: int) -> tuple[int, dict[str, Any]]:
    """The next frame, which must be a JSON one of `kinds` (REFUSED raises Refused)."""
    kind, body = await read_frame(reader)
    if kind == REFUSED and REFUSED not in kinds:
        raise Refused(json.loads(body).get("reason", "refused"))
    if kind == STARTTLS and STARTTLS not in kinds:
        raise Refused("it requires TLS on replication connections (cluster_tls is on there)")
    if kind not in kinds:
        raise ProtocolError(f"unexpected frame {chr(kind)!r}, expected {', '.join(chr(k) for k in kinds)}")
    value = json.loads(body)
    if not isinstance(value, dict):
        raise ProtocolError("malformed frame")
    return kind, value


def chunk_frame(name: str, offset: int, data: bytes | memoryview) -> bytes:
    encoded = name.encode()
    return frame(FILE, CHUNK_HEAD.pack(len(encoded), offset) + encoded + bytes(data))


def parse_chunk(body: bytes) -> tuple[str, int, memoryview]:
    size, offset = CHUNK_HEAD.unpack_from(body)
    start = CHUNK_HEAD.size
    name = body[start : start + size].decode()
    return name, offset, memoryview(body)[start + size :]
