"""The base of every AMQP method value.

A method knows its ids, its name, whether it expects a reply (``SYNCHRONOUS``) and whether content
(header + body frames) follows it (``HAS_CONTENT``). ``encode`` returns the payload after
class-id/method-id; ``decode`` parses that payload and raises only ``AMQPConnectionError`` (502).
"""

from typing import ClassVar, Self

from ottermq.amqp.errors import AMQPConnectionError
from ottermq.amqp.wire import Buffer, syntax_error


class Method:
    """Base class of the method dataclasses (generated and hand-written)."""

    __slots__ = ()

    CLASS_ID: ClassVar[int]
    METHOD_ID: ClassVar[int]
    INDEX: ClassVar[int]  # (CLASS_ID << 16) | METHOD_ID, the key of METHODS
    NAME: ClassVar[str]
    SYNCHRONOUS: ClassVar[bool]
    HAS_CONTENT: ClassVar[bool]

    def encode(self) -> bytes:
        """The method payload after class-id and method-id."""
        raise NotImplementedError

    @classmethod
    def decode(cls, buf: Buffer) -> Self:
        """Decode the method payload (after class-id and method-id)."""
        raise NotImplementedError


def malformed(cls: type[Method], exc: BaseException) -> AMQPConnectionError:
    """The 502 error for a method whose fields cannot be decoded (the caller raises it)."""
    return syntax_error(f"cannot decode {cls.NAME} ({type(exc).__name__})", cls.CLASS_ID, cls.METHOD_ID)
