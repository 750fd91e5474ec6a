"""Messages as the broker holds them, and their place in a queue.

Strategy: a message keeps its content-header properties as the raw bytes the publisher sent; they are
forwarded untouched to every consumer. Only what routing or queue features need is decoded, lazily and
once (`props`, `headers`). One `Message` is shared by every queue it was routed to, owned by the content
store under one id; each queue holds its own `QueueEntry` naming that id, the only per-queue allocation on
the hot path.
"""

from __future__ import annotations

from typing import Any

from ottermq.amqp.properties import BasicProperties, decode_properties, peek_delivery_mode, peek_priority

_UNDECODED: Any = object()

# One int object per distinct body size, shared by every message of that size: Python caches only the
# ints up to 256, and a million held messages of 1 KiB would otherwise carry a million 32-byte ints.
_SIZES: dict[int, int] = {}


def _share_size(size: int) -> int:
    if len(_SIZES) < 65536:
        _SIZES[size] = size
    return size


def share_size(size: int) -> int:
    """The shared int object for `size` (see _SIZES)."""
    return _SIZES.get(size) or _share_size(size)


class Message:
    """A published message's content: where it was published, its raw properties and its body.

    A plain value: who holds it and for how long is the content store's business (content.py); queues
    hold `QueueEntry` records that name it by id."""

    __slots__ = (
        "_props",
        "body",
        "body_size",
        "exchange",
        "persistent",
        "properties",
        "routing_key",
    )

    def __init__(
        self,
        exchange: str,
        routing_key: str,
        properties: bytes,
        body: bytes,
        persistent: bool | None = None,
    ) -> None:
        """`properties` are the raw property bytes of the content header; `persistent` is read from them
        (delivery_mode 2) unless the caller already knows it."""
        self.exchange = exchange
        self.routing_key = routing_key
        self.properties = properties
        self.body = body
        size = len(body)
        self.body_size = _SIZES.get(size) or _share_size(size)
        self.persistent = peek_delivery_mode(properties) == 2 if persistent is None else persistent
        self._props: BasicProperties = _UNDECODED

    @property
    def props(self) -> BasicProperties:
        """The decoded properties (decoded on first use; 502 if the bytes are malformed)."""
        props = self._props
        if props is _UNDECODED:
            props = self._props = decode_properties(self.properties)
        return props

    @property
    def headers(self) -> dict[str, Any] | None:
        """The `headers` property (a field table), or None when absent."""
        return self.props.headers

    def __repr__(self) -> str:
        return f"Message({self.exchange!r}, {self.routing_key!r}, {len(self.body)} bytes)"


def message_priority(properties: bytes) -> int:
    """The `priority` property of raw properties (0 when absent), uncapped: priority.py caps it."""
    priority = peek_priority(properties)
    return 0 if priority is None else priority


class QueueEntry:
    """One message in one queue, the queue's record of it: the message's id in the content store (> 0:
    logged, its publish's id in the log; < 0: transient), its body size and priority (so that limits and
    priority queues never need the content), `seq` ordering it in the queue, its absolute `deadline` and
    whether it is `redelivered`."""

    __slots__ = ("deadline", "msg_id", "priority", "redelivered", "seq", "size")

    def __init__(
        self,
        msg_id: int,
        size: int,
        priority: int = 0,
        deadline: int = 0,
        seq: int = 0,
        redelivered: bool = False,
    ) -> None:
        self.msg_id = msg_id
        # -1: not known yet (restored from an older snapshot; learnt from the content when needed). A
        # message's body_size is a shared int already (see `share_size` for other sources).
        self.size = size
        # The message's priority property (0: none; -1: not known yet, as for `size`).
        self.priority = priority
        # When the entry expires (ms since the epoch; 0 = never), absolute so that a replay restores it:
        # the earlier of publish time + the `expiration` property and publish time + x-message-ttl.
        self.deadline = deadline
        self.seq = seq
        self.redelivered = redelivered

    def __repr__(self) -> str:
        return f"QueueEntry(id={self.msg_id}, seq={self.seq}, size={self.size})"
