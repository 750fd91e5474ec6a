"""Queue types (x-queue-type): classic, quorum and stream, checked at declare as RabbitMQ 3.10 checks them.

Strategy: the type is read once from the declare arguments (`queue_type`); nothing is downgraded. A type
RabbitMQ does not know is refused with its 406; each type refuses the arguments it does not support (the
lists are RabbitMQ 3.10's, recorded side by side against it, in the order it reports them); quorum and
stream queues must be durable, not exclusive and not auto-delete, and cannot be server-named. Classic
queues keep OtterMQ's x-delivery-limit (RabbitMQ 3.10 refuses it there: docs/streams.md). Quorum queues
count every return of a delivered message and carry x-delivery-count on each delivery (features.py); a
stream is a log read from offsets (stream.py).

Order of the checks, as RabbitMQ's: the type, the arguments the type does not support, the arguments'
values (arguments.py), then the properties (auto-delete, exclusive, durable), then the server-named name.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from ottermq.amqp.constants import PRECONDITION_FAILED
from ottermq.amqp.errors import ChannelError
from ottermq.broker.arguments import type_name

CLASSIC: Final = "classic"
QUORUM: Final = "quorum"
STREAM: Final = "stream"
QUEUE_TYPES: Final = (CLASSIC, QUORUM, STREAM)
# Why a clustered node refuses streams (check_replicated).
STREAMS_NOT_REPLICATED: Final = (
    "stream queues are not supported on a clustered OtterMQ node: their messages are not replicated"
)

# RabbitMQ's module names, as its error texts print the type.
MODULES: Final = {
    CLASSIC: "rabbit_classic_queue",
    QUORUM: "rabbit_quorum_queue",
    STREAM: "rabbit_stream_queue",
}

# Arguments each type refuses (of those RabbitMQ 3.10 knows), in the order RabbitMQ reports the first.
UNSUPPORTED: Final[dict[str, tuple[str, ...]]] = {
    CLASSIC: ("x-max-age", "x-stream-max-segment-size-bytes"),
    QUORUM: (
        "x-max-priority",
        "x-queue-mode",
        "x-queue-master-locator",
        "x-queue-version",
        "x-initial-cluster-size",
        "x-max-age",
        "x-stream-max-segment-size-bytes",
    ),
    STREAM: (
        "x-max-priority",
        "x-max-length",
        "x-message-ttl",
        "x-expires",
        "x-dead-letter-exchange",
        "x-dead-letter-routing-key",
        "x-dead-letter-strategy",
        "x-single-active-consumer",
        "x-overflow",
        "x-delivery-limit",
        "x-queue-mode",
        "x-max-in-memory-length",
        "x-max-in-memory-bytes",
        "x-queue-master-locator",
        "x-queue-version",
    ),
}


def queue_type(arguments: Mapping[str, Any]) -> str:
    """The type a queue with these (validated) arguments has."""
    value = arguments.get("x-queue-type")
    return value if value in (QUORUM, STREAM) else CLASSIC


def check_type(resource: str, arguments: Mapping[str, Any]) -> str:
    """The declared type; 406 for a type that is not a string or not one RabbitMQ knows, and for an
    argument the type does not support."""
    value = arguments.get("x-queue-type", CLASSIC)
    if not isinstance(value, str):
        raise _invalid_arg("x-queue-type", resource, f"{{unacceptable_type,{type_name(value)}}}")
    if value not in QUEUE_TYPES:
        raise _invalid_arg("x-queue-type", resource, f"\"unsupported queue type '{value}'\"")
    for key in UNSUPPORTED[value]:
        if key in arguments:
            raise ChannelError(
                PRECONDITION_FAILED,
                f"PRECONDITION_FAILED - invalid arg '{key}' for {resource} of queue type {MODULES[value]}",
            )
    return value


def check_replicated(kind: str, resource: str) -> None:
    """406 for a stream on a clustered node: its records live in a log of its own (store/streams.py) that
    replication does not carry, so a confirmed stream message would be lost with the leader. Refused as
    an invalid x-queue-type, as RabbitMQ refuses a type it cannot serve (docs/replication.md)."""
    if kind == STREAM:
        raise _invalid_arg("x-queue-type", resource, f'"{STREAMS_NOT_REPLICATED}"')


def check_properties(
    kind: str, resource: str, durable: bool, exclusive: bool, auto_delete: bool, server_named: bool
) -> None:
    """406 when a quorum queue or a stream is declared auto-delete, exclusive, non-durable or unnamed."""
    if kind == CLASSIC:
        return
    for bad, name in (
        (auto_delete, "auto-delete"),
        (exclusive, "exclusive-owner"),
        (not durable, "non-durable"),
    ):
        if bad:
            raise ChannelError(
                PRECONDITION_FAILED, f"PRECONDITION_FAILED - invalid property '{name}' for {resource}"
            )
    if server_named:
        raise ChannelError(
            PRECONDITION_FAILED,
            f"PRECONDITION_FAILED - Cannot declare a server-named queue for type {MODULES[kind]}",
        )


def _invalid_arg(key: str, resource: str, error: str) -> ChannelError:
    return ChannelError(
        PRECONDITION_FAILED, f"PRECONDITION_FAILED - invalid arg '{key}' for {resource}: {error}"
    )
