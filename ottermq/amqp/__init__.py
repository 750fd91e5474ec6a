"""Sans-IO AMQP 0.9.1 codec: frames, methods, field tables, content properties.

Bytes in, values out (``FrameReader``); values in, bytes out (``encode_*``). No sockets, no
asyncio, nothing else of the project imported.
"""

from ottermq.amqp.constants import FRAME_MAX_DEFAULT, FRAME_MIN_SIZE, PROTOCOL_HEADER
from ottermq.amqp.errors import AMQPConnectionError, AMQPError, BadProtocolHeader, ChannelError
from ottermq.amqp.frames import (
    HEARTBEAT_FRAME,
    BodyFrame,
    Frame,
    FrameReader,
    HeaderFrame,
    HeartbeatFrame,
    MethodFrame,
    ProtocolHeader,
    encode_basic_ack,
    encode_basic_nack,
    encode_content,
    encode_deliver,
    encode_get_ok,
    encode_method_frame,
    encode_return,
)
from ottermq.amqp.method import Method
from ottermq.amqp.methods import METHODS, METHODS_BY_NAME
from ottermq.amqp.properties import (
    EMPTY_PROPERTIES,
    BasicProperties,
    decode_properties,
    encode_properties,
    peek_delivery_mode,
    peek_expiration,
    peek_priority,
)
from ottermq.amqp.table import decode_table, encode_table

__all__ = [
    "EMPTY_PROPERTIES",
    "FRAME_MAX_DEFAULT",
    "FRAME_MIN_SIZE",
    "HEARTBEAT_FRAME",
    "METHODS",
    "METHODS_BY_NAME",
    "PROTOCOL_HEADER",
    "AMQPConnectionError",
    "AMQPError",
    "BadProtocolHeader",
    "BasicProperties",
    "BodyFrame",
    "ChannelError",
    "Frame",
    "FrameReader",
    "HeaderFrame",
    "HeartbeatFrame",
    "Method",
    "MethodFrame",
    "ProtocolHeader",
    "decode_properties",
    "decode_table",
    "encode_basic_ack",
    "encode_basic_nack",
    "encode_content",
    "encode_deliver",
    "encode_get_ok",
    "encode_method_frame",
    "encode_properties",
    "encode_return",
    "encode_table",
    "peek_delivery_mode",
    "peek_expiration",
    "peek_priority",
]
