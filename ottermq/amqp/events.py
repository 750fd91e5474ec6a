"""What the protocol machine (machine.py) reports of the peer: the events a broker acts on.

Strategy: a method the broker handles is the reader's own `MethodFrame(channel, method)`, passed through
as it is, and the protocol header the reader's `ProtocolHeader()`: no event object is built per method.
A published message, which arrives as three frames or more (method, content header, body frames), is one
`ContentReceived` once it is whole. `NEED_DATA` says every complete frame is handled. Heartbeat frames are
no event: any byte received counts as traffic, which the owner notes per read.
"""

from dataclasses import dataclass
from enum import Enum
from typing import Final

from ottermq.amqp.basic_hot import BasicPublish
from ottermq.amqp.frames import MethodFrame, ProtocolHeader

__all__ = ["NEED_DATA", "ContentReceived", "Event", "MethodFrame", "NeedData", "ProtocolHeader"]


class NeedData(Enum):
    """The type of `NEED_DATA`."""

    NEED_DATA = 0


NEED_DATA: Final = NeedData.NEED_DATA


# Slotted, not frozen (built once per message; a frozen dataclass' __init__ costs ~4x more): never mutate it.
@dataclass(slots=True)
class ContentReceived:
    """A whole published message: its basic.publish, raw properties (as on the wire) and body."""

    channel: int
    method: BasicPublish
    properties: bytes
    body: bytes


Event = MethodFrame | ContentReceived | ProtocolHeader | NeedData
