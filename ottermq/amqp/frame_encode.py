"""Frame encoders: method frames, content (header + body frames) and whole messages.

Strategy: the per-message encoders (deliver, get-ok, return, ack, nack) build the method frame,
the content header frame and the body frame(s) as one ``bytes`` object with a single join, from
precompiled structs, so a delivery costs one allocation for the wire bytes. Properties are the raw
bytes the publisher sent; they are never re-encoded. Bodies larger than ``frame_max - 8`` are split
into several body frames; ``frame_max`` 0 means no limit.
"""

import struct
from typing import Final

from ottermq.amqp.constants import FRAME_HEARTBEAT
from ottermq.amqp.method import Method

HEARTBEAT_FRAME: Final = bytes((FRAME_HEARTBEAT, 0, 0, 0, 0, 0, 0, 0xCE))

_END: Final = b"\xce"
# Short-string length prefixes, prebuilt: indexing is cheaper than bytes((n,)).
_LEN: Final = tuple(bytes((n,)) for n in range(256))
# Method frame head: type, channel, size, class-id, method-id.
_METHOD_HEAD: Final = struct.Struct(">BHIHH")
# The same followed by the length of the first short string.
_METHOD_HEAD_STR: Final = struct.Struct(">BHIHHB")
# End of a method frame, then a content header frame up to its properties:
# end, type, channel, size, class-id, weight, body-size.
_HEADER_AFTER_METHOD: Final = struct.Struct(">BBHIHHQ")
# End of the previous frame, then a body frame head: end, type, channel, size.
_BODY_AFTER: Final = struct.Struct(">BBHI")
# delivery-tag, redelivered, length of the exchange name.
_TAG_BIT_LEN: Final = struct.Struct(">QBB")
# reply-code, length of the reply text.
_CODE_LEN: Final = struct.Struct(">HB")
_ACK: Final = struct.Struct(">BHIHHQBB")
_U32: Final = struct.Struct(">I")

_pack_method_head = _METHOD_HEAD_STR.pack
_pack_header = _HEADER_AFTER_METHOD.pack
_pack_body = _BODY_AFTER.pack
_pack_tag = _TAG_BIT_LEN.pack


def _too_long(*values: bytes) -> ValueError:
    longest = max(len(v) for v in values)
    if longest > 255:
        return ValueError(f"short string too long ({longest} > 255 octets)")
    return ValueError("numeric field out of range")


def encode_method_frame(channel: int, method: Method) -> bytes:
    """One method frame."""
    payload = method.encode()
    return _METHOD_HEAD.pack(1, channel, 4 + len(payload), method.CLASS_ID, method.METHOD_ID) + payload + _END


def _content_tail(
    parts: list[bytes], channel: int, class_id: int, properties: bytes, body: bytes, frame_max: int
) -> None:
    """Append the end of the previous method frame, the header frame and the body frames."""
    size = len(body)
    parts.append(_pack_header(0xCE, 2, channel, 12 + len(properties), class_id, 0, size))
    parts.append(properties)
    if not size:
        parts.append(_END)
        return
    chunk = frame_max - 8 if frame_max else size
    if size <= chunk:
        parts.append(_pack_body(0xCE, 3, channel, size))
        parts.append(body)
    else:
        view = memoryview(body)
        for start in range(0, size, chunk):
            piece = view[start : start + chunk]
            parts.append(_pack_body(0xCE, 3, channel, len(piece)))
            parts.append(piece)  # type: ignore[arg-type]  # join accepts any buffer
    parts.append(_END)


def encode_content(channel: int, class_id: int, properties: bytes, body: bytes, frame_max: int) -> bytes:
    """A content header frame followed by body frames (split at ``frame_max - 8``)."""
    parts: list[bytes] = []
    _content_tail(parts, channel, class_id, properties, body, frame_max)
    # The parts start with the end octet of a preceding method frame: drop it.
    return b"".join(parts)[1:]


def encode_deliver(
    channel: int,
    consumer_tag: str,
    delivery_tag: int,
    redelivered: bool,
    exchange: str,
    routing_key: str,
    properties: bytes,
    body: bytes,
    frame_max: int,
) -> bytes:
    """basic.deliver + content header + body frames, as one bytes object."""
    ctag = consumer_tag.encode()
    ex = exchange.encode()
    rk = routing_key.encode()
    try:
        rk_len = _LEN[len(rk)]
        head = _pack_method_head(1, channel, 16 + len(ctag) + len(ex) + len(rk), 60, 60, len(ctag))
        tag = _pack_tag(delivery_tag, 1 if redelivered else 0, len(ex))
    except (IndexError, struct.error):
        raise _too_long(ctag, ex, rk) from None
    size = len(body)
    if size and (not frame_max or size <= frame_max - 8):
        # The common case, one body frame: no helper call, one join.
        return b"".join(
            (
                head,
                ctag,
                tag,
                ex,
                rk_len,
                rk,
                _pack_header(0xCE, 2, channel, 12 + len(properties), 60, 0, size),
                properties,
                _pack_body(0xCE, 3, channel, size),
                body,
                _END,
            )
        )
    parts = [head, ctag, tag, ex, rk_len, rk]
    _content_tail(parts, channel, 60, properties, body, frame_max)
    return b"".join(parts)


def encode_get_ok(
    channel: int,
    delivery_tag: int,
    redelivered: bool,
    exchange: str,
    routing_key: str,
    message_count: int,
    properties: bytes,
    body: bytes,
    frame_max: int,
) -> bytes:
    """basic.get-ok + content header + body frames, as one bytes object."""
    ex = exchange.encode()
    rk = routing_key.encode()
    try:
        parts = [
            _METHOD_HEAD.pack(1, channel, 19 + len(ex) + len(rk), 60, 71),
            _pack_tag(delivery_tag, 1 if redelivered else 0, len(ex)),
            ex,
            _LEN[len(rk)],
            rk,
            _U32.pack(message_count),
        ]
    except (IndexError, struct.error):
        raise _too_long(ex, rk) from None
    _content_tail(parts, channel, 60, properties, body, frame_max)
    return b"".join(parts)


def encode_return(
    channel: int,
    reply_code: int,
    reply_text: str,
    exchange: str,
    routing_key: str,
    properties: bytes,
    body: bytes,
    frame_max: int,
) -> bytes:
    """basic.return + content header + body frames, as one bytes object."""
    text = reply_text.encode()
    ex = exchange.encode()
    rk = routing_key.encode()
    try:
        parts = [
            _METHOD_HEAD.pack(1, channel, 9 + len(text) + len(ex) + len(rk), 60, 50),
            _CODE_LEN.pack(reply_code, len(text)),
            text,
            _LEN[len(ex)],
            ex,
            _LEN[len(rk)],
            rk,
        ]
    except (IndexError, struct.error):
        raise _too_long(text, ex, rk) from None
    _content_tail(parts, channel, 60, properties, body, frame_max)
    return b"".join(parts)


def encode_basic_ack(channel: int, tag: int, multiple: bool) -> bytes:
    """A whole basic.ack frame (publisher confirms)."""
    return _ACK.pack(1, channel, 13, 60, 80, tag, 1 if multiple else 0, 0xCE)


def encode_basic_nack(channel: int, tag: int, multiple: bool, requeue: bool) -> bytes:
    """A whole basic.nack frame (publisher confirms: the broker could not take the message)."""
    return _ACK.pack(1, channel, 13, 60, 120, tag, (1 if multiple else 0) | (2 if requeue else 0), 0xCE)
