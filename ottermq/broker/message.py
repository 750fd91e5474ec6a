"""Messages as the broker holds them, and their place in a queue.

Strategy: a message keeps its content-header properties as the raw bytes the publisher sent; they are
forwarded untouched to every consumer. Only what routing or queue features need is decoded, lazily and
once (`props`, `headers`). One `Message` is shared by every queue it was routed to; each queue wraps it in
its own `QueueEntry`, the only per-queue allocation on the hot path.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from ottermq.amqp.properties import BasicProperties, decode_properties, peek_delivery_mode

_UNDECODED: Any = object()

# One int object per distinct body size, shared by every message of that size: Python caches only the
# ints up to 256, and a million held messages of 1 KiB would otherwise carry a million 32-byte ints.
_SIZES: dict[int, int] = {}


def _share_size(size: int) -> int:
    if len(_SIZES) < 65536:
        _SIZES[size] = size
    return size


class Message:
    """A published message: where it was published, its raw properties and its body."""

    __slots__ = (
        "_props",
        "_source",
        "body",
        "body_size",
        "exchange",
        "loc",
        "msg_id",
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
        # len(body), kept apart so that counting bytes (x-max-length-bytes) never loads an evicted body.
        size = len(body)
        self.body_size = _SIZES.get(size) or _share_size(size)
        self.persistent = peek_delivery_mode(properties) == 2 if persistent is None else persistent
        self._props: BasicProperties = _UNDECODED
        # Set by the journal when the message is logged: its id (0: not logged) and where its publish record
        # lies (opaque to the broker; the store reads the content back from there).
        self.msg_id = 0
        self.loc = 0
        # Where the content can be read back from once logged (then the message is a StoredMessage).
        self._source: ContentSource | None = None

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

    def untrack(self) -> None:
        """Stop counting this message in the broker's memory account (memory.py); a plain one is not."""

    def __repr__(self) -> str:
        return f"Message({self.exchange!r}, {self.routing_key!r}, {len(self.body)} bytes)"


@runtime_checkable
class ContentSource(Protocol):
    """Where a logged message's content can be read back from (the durable store)."""

    def read_content(self, msg_id: int, loc: int) -> tuple[str, str, bytes, bytes]:
        """(exchange, routing_key, properties, body) of message `msg_id`, whose publish is at `loc`; raises
        when what lies there is not that message's."""
        ...

    def loaded(self, message: StoredMessage) -> None:
        """`message` holds its content in memory now (the source may `evict` it later, to bound RAM)."""
        ...


# The slot descriptors of Message's content attributes: StoredMessage shadows them with properties and
# stores through them.
_SLOTS: dict[str, Any] = {
    name: vars(Message)[name] for name in ("exchange", "routing_key", "properties", "body")
}
_get_exchange: Callable[[Message], str] = _SLOTS["exchange"].__get__
_get_routing_key: Callable[[Message], str] = _SLOTS["routing_key"].__get__
_get_properties: Callable[[Message], bytes] = _SLOTS["properties"].__get__
_del_body: Callable[[Message], None] = _SLOTS["body"].__delete__
_set_exchange: Callable[[Message, str], None] = _SLOTS["exchange"].__set__
_set_routing_key: Callable[[Message, str], None] = _SLOTS["routing_key"].__set__
_set_properties: Callable[[Message, bytes], None] = _SLOTS["properties"].__set__
_set_body: Callable[[Message, bytes], None] = _SLOTS["body"].__set__
_DELETE_REST: tuple[Callable[[Message], None], ...] = tuple(
    _SLOTS[name].__delete__ for name in ("exchange", "routing_key", "properties")
)
_get_body: Callable[[Message], bytes] = _SLOTS["body"].__get__


class StoredMessage(Message):
    """A logged message whose content stays in the log: loaded on first use, dropped again by `evict`.

    Only its id and location are held, so a recovered backlog costs a few dozen bytes per message until
    it is delivered. The content attributes read through to the `ContentSource` when not loaded.
    """

    # No slots of its own: a logged Message becomes a StoredMessage in place (`stored`), which Python
    # allows only between classes of the same layout.
    __slots__ = ()

    _source: ContentSource

    def __init__(self, msg_id: int, loc: int, source: ContentSource, body_size: int = -1) -> None:
        """`body_size` comes from the log or the snapshot; -1 (unknown: an older snapshot) is filled in
        on the first load."""
        # Message.__init__ is skipped on purpose: the content is not here yet.
        self.msg_id = msg_id
        self.loc = loc
        self.body_size = _SIZES.get(body_size) or _share_size(body_size)
        self._source = source
        self.persistent = True
        self._props = _UNDECODED

    def _load(self) -> None:
        source = self._source
        exchange, routing_key, properties, body = source.read_content(self.msg_id, self.loc)
        _set_exchange(self, exchange)
        _set_routing_key(self, routing_key)
        _set_properties(self, properties)
        _set_body(self, body)
        if self.body_size < 0:
            self.body_size = len(body)
        source.loaded(self)

    @staticmethod
    def stored(message: Message, source: ContentSource) -> StoredMessage:
        """Turn a just-logged message (content in memory) into a StoredMessage in place, so its content
        can be dropped under memory pressure and read back from the log; the source is told it is loaded."""
        message.untrack()  # the source counts it from now on
        message._source = source
        message.__class__ = StoredMessage
        assert isinstance(message, StoredMessage)
        source.loaded(message)
        return message

    @property
    def exchange(self) -> str:
        try:
            return _get_exchange(self)
        except AttributeError:
            self._load()
            return _get_exchange(self)

    @exchange.setter
    def exchange(self, value: str) -> None:
        _SLOTS["exchange"].__set__(self, value)

    @property
    def routing_key(self) -> str:
        try:
            return _get_routing_key(self)
        except AttributeError:
            self._load()
            return _get_routing_key(self)

    @routing_key.setter
    def routing_key(self, value: str) -> None:
        _SLOTS["routing_key"].__set__(self, value)

    @property
    def properties(self) -> bytes:
        try:
            return _get_properties(self)
        except AttributeError:
            self._load()
            return _get_properties(self)

    @properties.setter
    def properties(self, value: bytes) -> None:
        _SLOTS["properties"].__set__(self, value)

    @property
    def body(self) -> bytes:
        try:
            return _get_body(self)
        except AttributeError:
            self._load()
            return _get_body(self)

    @body.setter
    def body(self, value: bytes) -> None:
        _SLOTS["body"].__set__(self, value)

    @property
    def loaded(self) -> bool:
        """True while the content is in memory."""
        try:
            _get_body(self)
        except AttributeError:
            return False
        return True

    def evict(self) -> None:
        """Forget the content (it is durable in the log and read back on the next use)."""
        try:
            _del_body(self)
        except AttributeError:
            return  # not loaded (the content attributes are loaded and set together)
        for delete in _DELETE_REST:
            try:
                delete(self)
            except AttributeError:
                pass
        self._props = _UNDECODED

    def __repr__(self) -> str:
        return f"StoredMessage(id={self.msg_id}, loaded={self.loaded})"


class QueueEntry:
    """One message in one queue: `seq` orders it within the queue, `redelivered` is reported on delivery."""

    __slots__ = ("deadline", "message", "msg_id", "redelivered", "seq", "size")

    def __init__(self, message: Message, seq: int, redelivered: bool = False) -> None:
        self.message = message
        # The message's log id (0: not logged) and body size, read without touching the message.
        self.msg_id = message.msg_id
        self.size = message.body_size
        self.seq = seq
        self.redelivered = redelivered
        # When the entry expires (ms since the epoch; 0 = never), absolute so that a replay can restore it:
        # the earlier of publish time + the `expiration` property and enqueue time + x-message-ttl (ttl.py).
        self.deadline = 0

    def __repr__(self) -> str:
        return f"QueueEntry(seq={self.seq}, redelivered={self.redelivered}, {self.message!r})"
