"""The connection's states and the rules of its channel-0 methods: which one each state reads, and the
bounds of tune-ok.

Strategy: pure functions of a state and a method, used by the protocol machine (machine.py). Codes and
texts are RabbitMQ's: 504 CHANNEL_ERROR for a method the state does not expect, 530 NOT_ALLOWED for a
tune-ok out of the server's bounds.
"""

from typing import Final

from ottermq.amqp.constants import CHANNEL_ERROR, FRAME_MIN_SIZE, NOT_ALLOWED
from ottermq.amqp.errors import AMQPConnectionError
from ottermq.amqp.method import Method
from ottermq.amqp.methods import (
    ConnectionClose,
    ConnectionCloseOk,
    ConnectionOpen,
    ConnectionSecureOk,
    ConnectionStartOk,
    ConnectionTuneOk,
    ConnectionUpdateSecret,
)

__all__ = [
    "CLOSED",
    "CLOSING",
    "OPENING",
    "RUNNING",
    "STARTING",
    "STATE_NAMES",
    "TUNING",
    "WAITING_HEADER",
    "negotiate",
    "reads",
]

# Connection states, in handshake order (so `state < RUNNING` means "still in the handshake"):
# connection.start sent, tune sent, tune-ok taken, open-ok sent, our connection.close sent, all over.
WAITING_HEADER: Final = 0
STARTING: Final = 1
TUNING: Final = 2
OPENING: Final = 3
RUNNING: Final = 4
CLOSING: Final = 5
CLOSED: Final = 6
STATE_NAMES: Final = ("header", "starting", "tuning", "opening", "running", "closing", "closed")

# The one channel-0 method each state reads besides connection.close.
_EXPECTED: Final[dict[int, type[Method]]] = {
    STARTING: ConnectionStartOk,
    TUNING: ConnectionTuneOk,
    OPENING: ConnectionOpen,
    RUNNING: ConnectionUpdateSecret,
}
_CLASS_CONNECTION: Final = 10
_METHOD_TUNE: Final = 30


def reads(state: int, method: Method) -> bool:
    """Whether the broker gets this channel-0 method in `state`; False: dropped (after our close, only close
    and close-ok are read). Raises 504 for a method the state does not expect."""
    kind = type(method)
    if state == CLOSING:
        return kind is ConnectionClose or kind is ConnectionCloseOk
    if kind is ConnectionClose or kind is _EXPECTED.get(state):
        return True
    # Neither PLAIN nor AMQPLAIN nor EXTERNAL sends a challenge, so no secure-ok is expected.
    name = "securing" if kind is ConnectionSecureOk and state == STARTING else STATE_NAMES[state]
    raise AMQPConnectionError(
        CHANNEL_ERROR,
        f"CHANNEL_ERROR - unexpected method in connection state {name}",
        method.CLASS_ID,
        method.METHOD_ID,
    )


def negotiate(offered_channel_max: int, offered_frame_max: int, answer: ConnectionTuneOk) -> tuple[int, int]:
    """The (channel_max, frame_max) in force after the client's tune-ok (0: no limit); 530 out of bounds."""
    _check("frame_max", answer.frame_max, FRAME_MIN_SIZE, offered_frame_max)
    _check("channel_max", answer.channel_max, 1, offered_channel_max)
    return answer.channel_max or offered_channel_max, answer.frame_max or offered_frame_max or 0


def _check(field: str, client: int, minimum: int, server: int) -> None:
    """RabbitMQ's tune-ok checks: not below the minimum, not above (or unlimited past) the server's."""
    if client != 0 and client < minimum:
        raise AMQPConnectionError(
            NOT_ALLOWED,
            f"NOT_ALLOWED - negotiated {field} = {client} "
            f"is lower than the minimum allowed value ({minimum})",
            _CLASS_CONNECTION,
            _METHOD_TUNE,
        )
    if server != 0 and (client == 0 or client > server):
        detail = " (no limit)" if field == "channel_max" and client == 0 else ""
        raise AMQPConnectionError(
            NOT_ALLOWED,
            f"NOT_ALLOWED - negotiated {field} = {client}{detail} "
            f"is higher than the maximum allowed value ({server})",
            _CLASS_CONNECTION,
            _METHOD_TUNE,
        )
