"""The durable changes of a vhost, as values.

Strategy: every change to durable state is first described by one of these events, appended to the
journal, then applied to the live model by `VHost.apply`, the same code that replays the journal after a
restart. So an event records a decision, never a condition: an auto-deleted exchange is its own
`ExchangeDeleted` event, decided on the live path, not something `apply` infers. Applying the events of a
journal in order therefore rebuilds exactly the durable state that was live.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, get_args

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


# -- access control: users, vhosts and permissions (applied by the Broker, see access.py) -----------------


@dataclass(frozen=True, slots=True)
class UserAdded:
    """A new user; `password_hash` is the salted hash (auth.hash_password), never the password."""

    name: str
    password_hash: str
    tags: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class UserDeleted:
    """A user and all its permissions removed."""

    name: str


@dataclass(frozen=True, slots=True)
class PasswordChanged:
    """A user's password replaced ("" = no password: password logins are refused)."""

    name: str
    password_hash: str


@dataclass(frozen=True, slots=True)
class UserTagsSet:
    """A user's tags replaced."""

    name: str
    tags: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class VHostAdded:
    """A new virtual host (with its predeclared exchanges)."""

    name: str


@dataclass(frozen=True, slots=True)
class VHostDeleted:
    """A virtual host, everything in it and every permission on it removed."""

    name: str


@dataclass(frozen=True, slots=True)
class PermissionsSet:
    """A user's configure/write/read regular expressions on a vhost (replacing any earlier ones)."""

    user: str
    vhost: str
    configure: str
    write: str
    read: str


@dataclass(frozen=True, slots=True)
class PermissionsCleared:
    """A user's permissions on a vhost removed (the user can no longer open it)."""

    user: str
    vhost: str


@dataclass(frozen=True, slots=True)
class TopicPermissionSet:
    """A user's topic permission on one exchange of a vhost: write and read regular expressions the
    routing key of a publish (write) or a binding (read) on that exchange must match when it is a topic
    exchange (rabbitmqctl set_topic_permissions; replaces an earlier one for the same exchange)."""

    user: str
    vhost: str
    exchange: str
    write: str
    read: str


@dataclass(frozen=True, slots=True)
class TopicPermissionCleared:
    """A user's topic permission on one exchange of a vhost removed."""

    user: str
    vhost: str
    exchange: str


@dataclass(frozen=True, slots=True)
class UserLimitsSet:
    """A user's limits replaced as a whole ({} clears them). `limits` maps "max-connections" and
    "max-channels" to integers (negative = no limit, kept so that listing shows what was set);
    rabbitmqctl set_user_limits merges into the current ones before the event is made."""

    user: str
    limits: dict[str, int]


# -- vhost limits (applied by the Broker) -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VHostLimitsSet:
    """A vhost's limits replaced as a whole, as rabbitmqctl set_vhost_limits does ({} clears them).

    `limits` maps a limit name ("max-connections", "max-queues") to an integer; a negative value means no
    limit, as in RabbitMQ, and is kept so that listing shows what was set."""

    vhost: str
    limits: dict[str, int]


# -- node (applied by the Broker) -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClusterNameSet:
    """The cluster's name, as the management API's PUT /api/cluster-name sets it (RabbitMQ keeps it as a
    global runtime parameter, so it survives restarts)."""

    name: str


# -- policies (applied by the vhost's Topology, see policies.py) ------------------------------------------


@dataclass(frozen=True, slots=True)
class PolicySet:
    """A policy (or, with `operator`, an operator policy) of a vhost created or replaced as a whole.

    Validated before it is journaled (policy_rules.py); `priority` is a number as RabbitMQ keeps it (an
    int, or a float when one was given), `apply_to` is "all", "queues" or "exchanges"."""

    vhost: str
    name: str
    pattern: str
    apply_to: str
    definition: dict[str, Any]
    priority: int | float
    operator: bool


@dataclass(frozen=True, slots=True)
class PolicyCleared:
    """A policy (with `operator`, an operator policy) of a vhost removed."""

    vhost: str
    name: str
    operator: bool


AccessEvent = (
    UserAdded
    | UserDeleted
    | PasswordChanged
    | UserTagsSet
    | VHostAdded
    | VHostDeleted
    | PermissionsSet
    | PermissionsCleared
    | TopicPermissionSet
    | TopicPermissionCleared
    | UserLimitsSet
)

# The events `Broker.apply` hands to the access registry rather than to a vhost.
ACCESS_EVENTS: tuple[type, ...] = (
    UserAdded,
    UserDeleted,
    PasswordChanged,
    UserTagsSet,
    VHostAdded,
    VHostDeleted,
    PermissionsSet,
    PermissionsCleared,
    TopicPermissionSet,
    TopicPermissionCleared,
    UserLimitsSet,
)

# -- messages (only persistent messages routed to durable queues are journaled) -------------------------


# The two per-message events are NamedTuples, not frozen dataclasses: equally immutable and slotted, and
# built five times faster (a frozen dataclass sets each field through object.__setattr__).
class MessagePublished(NamedTuple):
    """A persistent message routed to durable queues: one body, the list of durable targets.

    The message id is not a field: it is derived from where the event is logged (see `message_id`), so
    the record never has to name itself.
    """

    vhost: str
    queues: tuple[str, ...]
    exchange: str
    routing_key: str
    properties: bytes
    body: bytes
    # When it was published (ms since the epoch; 0: unknown, a record of an older log), so that its TTL
    # deadline survives a restart.
    published: int = 0


class MessagesRemoved(NamedTuple):
    """Logged messages leaving a queue for good: acked, rejected, dropped, expired, purged..."""

    vhost: str
    queue: str
    ids: tuple[int, ...]
    reason: str


@dataclass(frozen=True, slots=True)
class MessagesDelivered:
    """Logged messages of a queue that counts deliveries (x-delivery-limit, or a quorum queue) handed to a
    consumer that must acknowledge them: if the log ends before they come back or leave, recovery returns
    them (one failed delivery each, as RabbitMQ's quorum queues count a consumer lost with the node)."""

    vhost: str
    queue: str
    ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class MessagesReturned:
    """Delivered logged messages of a queue that counts deliveries came back unacknowledged (nack/reject
    with requeue, their channel closed, recovery after a crash): one failed delivery each."""

    vhost: str
    queue: str
    ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class TxCommitted:
    """A committed transaction: its publishes and removals as one atomic record."""

    events: tuple[Event, ...]


# Removal reasons (MessagesRemoved.reason); the store encodes them as one octet, in this order.
# Why logged messages left (by index in the log: append new reasons at the end). "nacked": a publish the
# publisher was told was not taken (its record may still reach the disk; the removal follows it).
REMOVAL_REASONS: tuple[str, ...] = (
    "ack",
    "reject",
    "drop",
    "expired",
    "dead-lettered",
    "purge",
    "maxlen",
    "nacked",
)

# A message id packs the LSN of the record that holds its publish and the publish's index in that record
# (0 but in a transaction), so ids grow in log order and survive compaction of the segments.
MESSAGE_INDEX_BITS = 20


def message_id(position: int, index: int = 0) -> int:
    """The id of the `index`-th publish of the record logged at `position`."""
    return (position << MESSAGE_INDEX_BITS) | index


MessageEvent = MessagePublished | MessagesRemoved | TxCommitted | MessagesDelivered | MessagesReturned

Event = (
    ExchangeDeclared
    | ExchangeDeleted
    | QueueDeclared
    | QueueDeleted
    | QueuePurged
    | BindingAdded
    | BindingRemoved
    | AccessEvent
    | VHostLimitsSet
    | ClusterNameSet
    | PolicySet
    | PolicyCleared
    | MessageEvent
)

VHostEvent = (
    ExchangeDeclared
    | ExchangeDeleted
    | QueueDeclared
    | QueueDeleted
    | QueuePurged
    | BindingAdded
    | BindingRemoved
    | MessagesRemoved
    | MessagesDelivered
    | MessagesReturned
    | PolicySet
    | PolicyCleared
)

# The events `Broker.apply` hands to the vhost they name (`VHost.apply`), as a tuple for isinstance.
VHOST_EVENTS: tuple[type, ...] = get_args(VHostEvent)
