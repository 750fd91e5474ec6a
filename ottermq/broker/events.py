"""The durable changes of a vhost, as values.

Strategy: every change to durable state is first described by one of these events, appended to the
journal, then applied to the live model by `VHost.apply`, the same code that replays the journal after a
restart. So an event records a decision, never a condition: an auto-deleted exchange is its own
`ExchangeDeleted` event, decided on the live path, not something `apply` infers. Applying the events of a
journal in order therefore rebuilds exactly the durable state that was live.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

DestinationKind = Literal["queue", "exchange"]


@dataclass(frozen=True, slots=True)
class ExchangeDeclared:
    """A new exchange."""

    vhost: str
    name: str
    type: str
    durable: bool
    auto_delete: bool
    internal: bool
    arguments: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ExchangeDeleted:
    """An exchange and every binding from or to it removed."""

    vhost: str
    name: str


@dataclass(frozen=True, slots=True)
class QueueDeclared:
    """A new queue (exclusive queues are never durable, so they are never journaled)."""

    vhost: str
    name: str
    durable: bool
    exclusive: bool
    auto_delete: bool
    arguments: dict[str, Any]


@dataclass(frozen=True, slots=True)
class QueueDeleted:
    """A queue, its messages and every binding to it removed."""

    vhost: str
    name: str


@dataclass(frozen=True, slots=True)
class QueuePurged:
    """Every ready message of a queue dropped."""

    vhost: str
    name: str


@dataclass(frozen=True, slots=True)
class BindingAdded:
    """A binding from exchange `source` to a queue or an exchange."""

    vhost: str
    source: str
    destination: str
    destination_kind: DestinationKind
    routing_key: str
    arguments: dict[str, Any]


@dataclass(frozen=True, slots=True)
class BindingRemoved:
    """A binding removed (the binding is named as when it was added)."""

    vhost: str
    source: str
    destination: str
    destination_kind: DestinationKind
    routing_key: str
    arguments: dict[str, Any]


Event = (
    ExchangeDeclared | ExchangeDeleted | QueueDeclared | QueueDeleted | QueuePurged | BindingAdded
    | BindingRemoved
)
