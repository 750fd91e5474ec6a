"""Messages as the broker holds them, and their place in a queue.

Strategy: a message keeps its content-header properties as the raw bytes the publisher sent; they are
forwarded untouched to every consumer. Only what routing or queue features need is decoded, lazily and
once (`props`, `headers`). One `Message` is shared by every queue it was routed to; each queue wraps it in
its own `QueueEntry`, the only per-queue allocation on the hot path.
"""

from __future__ import annotations

from typing import Any

from ottermq.amqp.properties import BasicProperties, decode_properties, peek_delivery_mode

_UNDECODED: Any = object()


class Message:
    """A published message: where it was published, its raw properties and its body."""

    __slots__ = ("_props", "body", "exchange", "persistent", "properties", "routing_key")

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


class QueueEntry:
    """One message in one queue: `seq` orders it within the queue, `redelivered` is reported on delivery."""

    __slots__ = ("message", "redelivered", "seq")

    def __init__(self, message: Message, seq: int, redelivered: bool = False) -> None:
        self.message = message
        self.seq = seq
        self.redelivered = redelivered

    def __repr__(self) -> str:
        return f"QueueEntry(seq={self.seq}, redelivered={self.redelivered}, {self.message!r})"
