"""Content assembly: a channel's phase and the publish it is putting together (basic.publish, its header,
its body frames), and what the protocol machine does off its hot path with content frames.

Strategy: the machine's `next_event` handles the common message inline (method, header, a one-frame body:
no call per frame); it hands over to the functions here a content frame where none is expected
(`stray_content`), a header of another class, too large or with no body (`odd_header`), and every body
frame of a body that spans several (`body_part`). They take the machine, whose public fields they read and
set: `state`, `header_seen`, `max_body_size`, and the bytes of incomplete bodies (`content_bytes`, bounded
per connection by `content_limit`; `drop` forgets a channel's).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from ottermq.amqp.basic_hot import BasicPublish
from ottermq.amqp.constants import CLASS_BASIC, FRAME_ERROR, PRECONDITION_FAILED, UNEXPECTED_FRAME
from ottermq.amqp.errors import AMQPConnectionError, ChannelError
from ottermq.amqp.events import ContentReceived
from ottermq.amqp.frames import HeaderFrame
from ottermq.amqp.handshake import CLOSING, RUNNING

if TYPE_CHECKING:
    from ottermq.amqp.machine import ConnectionMachine

# A channel's phase: idle (a method may come), a publish's header or body expected, or closing.
PHASE_IDLE: Final = 0
PHASE_HEADER: Final = 1
PHASE_BODY: Final = 2
PHASE_CLOSING: Final = 3

PUBLISH_IDS: Final = (BasicPublish.CLASS_ID, BasicPublish.METHOD_ID)
EXPECTED_HEADER: Final = (
    "UNEXPECTED_FRAME - expected content header for class 60, got non content header frame instead"
)
EXPECTED_BODY: Final = "UNEXPECTED_FRAME - expected content body, got non content body frame instead"
EXPECTED_METHOD: Final = "UNEXPECTED_FRAME - expected method frame, got non method frame instead"


class ChannelState:
    """The protocol state of one channel in use: its phase and the publish being assembled."""

    __slots__ = ("held", "method", "parts", "phase", "properties", "remaining")

    def __init__(self) -> None:
        self.phase = PHASE_IDLE
        self.method: BasicPublish | None = None
        self.properties = b""
        self.remaining = 0
        # Body frames received so far when a body spans several (None while it has one frame at most).
        self.parts: list[bytes] | None = None
        # Their bytes, counted in the machine's content_bytes until the message completes or is dropped.
        self.held = 0


def stray_content(
    machine: ConnectionMachine, number: int, channel: ChannelState | None, frame_phase: int
) -> None:
    """A header or body frame where none is expected: refused, or dropped where only close is read."""
    if channel is None:
        if machine.state == CLOSING:
            return
        if number == 0 or machine.state != RUNNING:
            name = "content header" if frame_phase == PHASE_HEADER else "content body"
            raise AMQPConnectionError(
                UNEXPECTED_FRAME, f"UNEXPECTED_FRAME - {name} on channel {number}", *PUBLISH_IDS
            )
        raise AMQPConnectionError(UNEXPECTED_FRAME, EXPECTED_METHOD, *PUBLISH_IDS)
    phase = channel.phase
    if phase == PHASE_CLOSING:
        if frame_phase == PHASE_HEADER:
            machine.header_seen = True
        return
    if phase == PHASE_IDLE:
        text = EXPECTED_METHOD
    else:
        text = EXPECTED_HEADER if phase == PHASE_HEADER else EXPECTED_BODY
    raise AMQPConnectionError(UNEXPECTED_FRAME, text, *PUBLISH_IDS)


def odd_header(
    machine: ConnectionMachine, number: int, channel: ChannelState, frame: HeaderFrame
) -> ContentReceived | None:
    """A content header of another class, too large, or with no body (the message is complete)."""
    if frame.class_id != CLASS_BASIC:
        raise AMQPConnectionError(
            UNEXPECTED_FRAME,
            "UNEXPECTED_FRAME - expected content header for class 60, "
            f"got one for class {frame.class_id} instead",
            *PUBLISH_IDS,
        )
    channel.phase = PHASE_IDLE
    body_size = frame.body_size
    if body_size > machine.max_body_size:
        raise ChannelError(
            PRECONDITION_FAILED,
            f"PRECONDITION_FAILED - message size {body_size} "
            f"is larger than configured max size {machine.max_body_size}",
            *PUBLISH_IDS,
            channel=number,
        )
    machine.header_seen = True
    return ContentReceived(number, channel.method, frame.properties, b"")  # type: ignore[arg-type]


def body_part(
    machine: ConnectionMachine, number: int, channel: ChannelState, payload: bytes, remaining: int
) -> ContentReceived | None:
    """A body frame that does not complete a one-frame body: held, the last of several, or too large."""
    parts = channel.parts
    if remaining > 0:
        if parts is None:
            channel.parts = [payload]
        else:
            parts.append(payload)
        channel.remaining = remaining
        _hold(machine, number, channel, len(payload))
        return None
    if remaining < 0:
        raise AMQPConnectionError(
            FRAME_ERROR,
            f"FRAME_ERROR - content body exceeds the declared size by {-remaining} octets",
            *PUBLISH_IDS,
        )
    assert parts is not None
    parts.append(payload)
    channel.phase = PHASE_IDLE
    drop(machine, channel)
    return ContentReceived(number, channel.method, channel.properties, b"".join(parts))  # type: ignore[arg-type]


def _hold(machine: ConnectionMachine, number: int, channel: ChannelState, size: int) -> None:
    """Count `size` more bytes of an incomplete body. One message alone is bounded by max_body_size;
    several at once on this connection by `content_limit`, past which this channel's message is
    refused (406) and its bytes dropped."""
    channel.held += size
    total = machine.content_bytes = machine.content_bytes + size
    if total > machine.content_limit and total > channel.held:
        channel.phase = PHASE_IDLE
        drop(machine, channel)
        raise ChannelError(
            PRECONDITION_FAILED,
            f"PRECONDITION_FAILED - {total} bytes of messages in progress on this connection "
            f"is more than the limit {machine.content_limit}",
            *PUBLISH_IDS,
            channel=number,
        )


def drop(machine: ConnectionMachine, channel: ChannelState) -> None:
    """Forget the channel's incomplete body."""
    channel.parts = None
    if channel.held:
        machine.content_bytes -= channel.held
        channel.held = 0
