"""Per-user limits, as RabbitMQ 3.10 has them (rabbitmqctl set_user_limits, rabbit_reader).

Strategy: a user may have `max-connections` (open AMQP connections of that user on the node, whatever
their vhost) and `max-channels` (open channels over all of them). The registry keeps them
(`AccessControl.user_limits`, journaled as `UserLimitsSet`, dropped with the user); the checks here count
the live connections when one more would be opened, and only for a user that has the limit, so nothing
is added to a connection or channel of a user without limits. A negative value means no limit.

Where RabbitMQ refuses (checked against 3.10.8): connection.open answers 530 "NOT_ALLOWED - connection
refused for user 'u': user connection limit (N) is reached" after the vhost's own connection limit and
before the vhost permission check; channel.open answers 530 (a connection error, class and method 0)
"NOT_ALLOWED - number of channels opened for user 'u' has reached the maximum allowed user limit of (N)".
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Final

from ottermq.amqp.constants import NOT_ALLOWED
from ottermq.amqp.errors import AMQPConnectionError

if TYPE_CHECKING:
    from ottermq.broker.connection import Connection

MAX_CONNECTIONS: Final = "max-connections"
MAX_CHANNELS: Final = "max-channels"
USER_LIMIT_NAMES: Final = (MAX_CONNECTIONS, MAX_CHANNELS)


def validate_user_limits(limits: object) -> dict[str, int]:
    """A set_user_limits definition checked as RabbitMQ checks it: a JSON object of known limit names to
    integers. Raises ValueError with a readable line (RabbitMQ's words, JSON for its Erlang terms)."""
    if not isinstance(limits, Mapping):
        raise ValueError(f"Unrecognised terms {json.dumps(limits, default=str)} in user-limits")
    unknown = [str(name) for name in limits if name not in USER_LIMIT_NAMES]
    if unknown:
        raise ValueError(
            f"Unrecognised terms {', '.join(unknown)} in user-limits (known: {', '.join(USER_LIMIT_NAMES)})"
        )
    checked: dict[str, int] = {}
    for name, value in limits.items():
        # bool is an int in Python but not a number to RabbitMQ; the bound keeps it a 64-bit field.
        if isinstance(value, bool) or not isinstance(value, int) or not -(2**63) <= value < 2**63:
            shown = json.dumps(value, default=str)
            raise ValueError(f"{name} should be an integer, actually was {shown}")
        checked[str(name)] = value
    return checked


def check_connections(connections: Iterable[Connection], user: str, limits: Mapping[str, int]) -> None:
    """connection.open: 530 when `user` already has its max-connections open (`limits`: the user's)."""
    limit = limits.get(MAX_CONNECTIONS, -1)
    if limit < 0:
        return
    count = sum(1 for connection in connections if connection.user == user and connection.vhost is not None)
    if count >= limit:
        raise AMQPConnectionError(
            NOT_ALLOWED,
            f"NOT_ALLOWED - connection refused for user '{user}': user connection limit ({limit}) is reached",
        )


def channel_refusal(connections: Iterable[Connection], user: str, limits: Mapping[str, int]) -> str | None:
    """channel.open: the 530 text when `user` already has its max-channels open, else None."""
    limit = limits.get(MAX_CHANNELS, -1)
    if limit < 0:
        return None
    count = sum(len(connection.channels) for connection in connections if connection.user == user)
    if count < limit:
        return None
    return (
        f"NOT_ALLOWED - number of channels opened for user '{user}' has reached the maximum allowed user "
        f"limit of ({limit})"
    )
