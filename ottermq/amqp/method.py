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
    # The field names in wire order; the generated methods set it, and the two methods below use it
    # (the hand-written ones get theirs from @dataclass).
    _FIELDS: ClassVar[tuple[str, ...]] = ()

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._FIELDS)
        return f"{type(self).__name__}({shown})"

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return all(getattr(self, name) == getattr(other, name) for name in self._FIELDS)

    __hash__ = None  # type: ignore[assignment]  # mutable values, like a dataclass without frozen

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
