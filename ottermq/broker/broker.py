"""The Broker: settings, vhosts, users and the live connections of one OtterMQ node.

Strategy: the Broker is the root object the server holds. It owns the vhosts (the domain model), the
access registry (users, vhost names, permissions: access.py), the authenticator and the journal, and
creates one sans-IO `Connection` per accepted socket. Vhosts come and go through access events, so the
VHost objects follow the registry (`_access_applied`) on the live path and on replay alike. It keeps the
set of live connections so a graceful stop can close them all and the management API can list them.
"""

from __future__ import annotations

import json
import platform
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from importlib import metadata
from typing import TYPE_CHECKING, Any, cast

from ottermq.amqp.constants import (
    CHANNEL_MAX_DEFAULT,
    CONNECTION_FORCED,
    FRAME_MAX_DEFAULT,
    HEARTBEAT_DEFAULT,
    NOT_ALLOWED,
)
from ottermq.amqp.errors import AMQPConnectionError
from ottermq.broker.access import AccessControl, AccessError
from ottermq.broker.ack_timeout import AckTimeouts
from ottermq.broker.alarms import Alarms
from ottermq.broker.auth import Authenticator
from ottermq.broker.channel import MESSAGE_COUNTERS
from ottermq.broker.churn import AuthAttempts, Churn, DataDisk
from ottermq.broker.connection import Connection
from ottermq.broker.content import Contents
from ottermq.broker.events import (
    ACCESS_EVENTS,
    VHOST_EVENTS,
    AccessEvent,
    ClusterNameSet,
    Event,
    UserDeleted,
    VHostAdded,
    VHostDeleted,
    VHostEvent,
    VHostLimitsSet,
)
from ottermq.broker.journal import Journal, MemoryJournal
from ottermq.broker.memory import MemoryAccount
from ottermq.broker.queue_expiry import tick_queues
from ottermq.broker.stream import MemoryStreams, StreamStorage
from ottermq.broker.vhost import VHost

if TYPE_CHECKING:
    from ottermq.broker.transport import Transport

PRODUCT = "OtterMQ"


def _version() -> str:
    try:
        return metadata.version("ottermq")
    except metadata.PackageNotFoundError:
        return "0.0.0"


VERSION = _version()

# The per-vhost limits RabbitMQ knows (rabbitmqctl set_vhost_limits).
VHOST_LIMIT_NAMES = ("max-connections", "max-queues")


def validate_vhost_limits(limits: object) -> dict[str, int]:
    """A set_vhost_limits definition checked as RabbitMQ checks it: a JSON object of known limit names
    to integers (negative = no limit). Raises AccessError("invalid", ...) with a readable line."""
    if not isinstance(limits, Mapping):
        shown = json.dumps(limits, default=str)
        raise AccessError("invalid", f"Validation failed: limits must be a JSON object, actually was {shown}")
    unknown = [str(name) for name in limits if name not in VHOST_LIMIT_NAMES]
    if unknown:
        raise AccessError(
            "invalid",
            f"Validation failed: unrecognised terms {', '.join(unknown)} in limits "
            f"(known: {', '.join(VHOST_LIMIT_NAMES)})",
        )
    checked: dict[str, int] = {}
    for name, value in limits.items():
        # bool is an int in Python but not a number to RabbitMQ; the bound keeps it a 64-bit field.
        if isinstance(value, bool) or not isinstance(value, int) or not -(2**63) <= value < 2**63:
            shown = json.dumps(value, default=str)
            message = f"Validation failed: {name} should be an integer, actually was {shown}"
            raise AccessError("invalid", message)
        checked[name] = value
    return checked


@dataclass(frozen=True, slots=True)
class BrokerSettings:
    """What the protocol layer needs to know; defaults are RabbitMQ's."""

    frame_max: int = FRAME_MAX_DEFAULT
    channel_max: int = CHANNEL_MAX_DEFAULT
    heartbeat: int = HEARTBEAT_DEFAULT
    max_message_size: int = 128 * 1024 * 1024
    default_user: str = "guest"
    default_pass: str = "guest"
    default_vhost: str = "/"
    # False: a fresh node gets no default vhost, user and permissions (`create_defaults` does nothing), as
    # RabbitMQ seeds none when definitions are to be loaded at boot (load_definitions).
    seed_defaults: bool = True
    # Users accepted from loopback addresses only, as RabbitMQ's loopback_users.
    loopback_users: tuple[str, ...] = ("guest",)
    # Seconds from accept to connection.open-ok before the socket is dropped.
    handshake_timeout: float = 10.0
    # Upper bound of the wait for close-ok after the broker sent connection.close (RabbitMQ: 30 s).
    close_timeout: float = 30.0
    # Milliseconds a delivery may stay unacknowledged before its channel is closed with 406 (RabbitMQ's
    # consumer_timeout, 30 minutes by default); 0 turns the check off.
    consumer_timeout: int = 1_800_000
    # A replicated node (etcd or a fixed cluster role): stream queues are refused at declare, since their
    # records live in logs of their own that replication does not carry (queue_types.check_replicated).
    clustered: bool = False


class Broker:
    """One broker node: vhosts, users, journal and live connections."""

    def __init__(
        self,
        settings: BrokerSettings | None = None,
        journal: Journal | None = None,
        *,
        defaults: bool = True,
        contents: Contents | None = None,
    ) -> None:
        """`defaults`: create the default vhost, user and permissions now (through the journal). A durable
        store recovering a log passes False, replays, and calls `create_defaults()` only when the log was
        empty, as RabbitMQ creates them only on a fresh node. `contents`: the content store (the durable
        store's, which reads logged contents back; by default one that keeps everything in memory)."""
        self.settings = settings or BrokerSettings()
        self.journal: Journal = journal if journal is not None else MemoryJournal()
        # What the broker holds in memory, for the memory alarm (memory.py); the monitor sets its limit.
        self.memory = MemoryAccount()
        # The one owner of message contents (content.py), shared by every vhost.
        self.contents: Contents = contents if contents is not None else Contents()
        self.contents.account = self.memory
        # Where stream queues keep their records (stream.py); the durable store sets its own.
        self.streams: StreamStorage = MemoryStreams()
        self.connections: set[Connection] = set()
        # Connections, channels and queues opened and closed since start (churn.py); the vhosts share it.
        self.churn = Churn()
        # AMQP logins that succeeded and failed (login.py).
        self.auth_attempts = AuthAttempts()
        # The data directory's disk and its free-space limit, as the resource monitor watches them.
        self.data_disk = DataDisk()
        self.vhosts: dict[str, VHost] = {}
        # Per-vhost limits as set (set_vhost_limits, journaled): {"/": {"max-connections": 10}}.
        self.vhost_limits: dict[str, dict[str, int]] = {}
        # The cluster's name once set (journaled, ClusterNameSet); None: the node's name stands for it.
        self.cluster_name: str | None = None
        # Users, vhost names and permissions; its events create and drop the VHost objects (access_applied).
        self.access = AccessControl(self.journal)
        self.access.on_applied = self._access_applied
        self.auth = Authenticator(self.access, self.settings.loopback_users)
        if defaults:
            self.create_defaults()
        self.server_properties = server_properties()
        # Resource alarms (memory, disk) that block publishers; set by the server's resource monitor.
        self.alarms = Alarms()
        self._ack_timeouts = AckTimeouts()
        # The message counters of channels that have ended (Channel.fold_counts); message_totals adds the
        # open channels' counters to these.
        self.message_counts: dict[str, int] = dict.fromkeys(MESSAGE_COUNTERS, 0)
        # Asked at each connection.open: None admits the client, a text refuses it with 320
        # CONNECTION_FORCED and that text (a cluster node that is not the leader says where the leader is).
        self.admission: Callable[[], str | None] | None = None
        # A replication follower's projection (a hot standby): its timers (message expiry, x-expires) do
        # not run, since it writes no record of its own; the leader's removals arrive as records.
        self.standby = False

    def add_vhost(self, name: str) -> VHost:
        """Create a vhost through the journal (or return the existing one); AccessError for a bad name."""
        self.access.add_vhost(name)
        return self.vhosts[name]

    def delete_vhost(self, name: str) -> None:
        """Close the vhost's connections (320), delete its queues and exchanges, then the vhost itself.

        Each deletion is an event of its own, so the store drops their messages as for any queue.
        Raises AccessError when there is no such vhost.
        """
        vhost = self.vhosts.get(name)
        if vhost is None or name not in self.access.vhosts:
            self.access.delete_vhost(name)  # raises "does not exist"
            return
        text = f"CONNECTION_FORCED - vhost '{name}' is deleted"
        for connection in [c for c in self.connections if c.vhost is vhost]:
            connection.shutdown(CONNECTION_FORCED, text)
        for queue in list(vhost.queues.values()):
            vhost.delete_queue(queue.name, owner=queue.exclusive_owner)
        for exchange in list(vhost.exchanges):
            if exchange and not exchange.startswith("amq."):
                vhost.delete_exchange(exchange)
        self.access.delete_vhost(name)

    def create_defaults(self) -> None:
        """The default vhost, and the default user as administrator with full permissions on it."""
        settings = self.settings
        if not settings.seed_defaults:
            return
        access = self.access
        access.add_vhost(settings.default_vhost)
        if access.user(settings.default_user) is None:
            access.add_user(settings.default_user, settings.default_pass, ("administrator",))
        access.set_permissions(settings.default_user, settings.default_vhost, ".*", ".*", ".*")

    def apply(self, event: Event) -> None:
        """Apply one journaled event (the replay entry point; the live path runs the same code)."""
        if isinstance(event, ACCESS_EVENTS):
            self.access.apply(event)  # type: ignore[arg-type]
        elif type(event) is VHostLimitsSet:
            self._apply_vhost_limits(event)
        elif type(event) is ClusterNameSet:
            self.cluster_name = event.name
        elif isinstance(event, VHOST_EVENTS):
            vhost = self.vhosts.get(cast(VHostEvent, event).vhost)
            if vhost is not None:
                vhost.apply(event)
        else:
            raise TypeError(f"not an event the broker applies: {event!r}")

    def durable_events(self) -> list[Event]:
        """Events that rebuild the durable state of a broker made with `defaults=False` (for snapshots):
        vhosts, users and permissions first, then vhost limits, then each vhost's exchanges, queues and
        bindings."""
        events: list[Event] = list(self.access.durable_events())
        events.extend(VHostLimitsSet(name, dict(limits)) for name, limits in self.vhost_limits.items())
        if self.cluster_name is not None:
            events.append(ClusterNameSet(self.cluster_name))
        for vhost in self.vhosts.values():
            events.extend(vhost.durable_events())
        return events

    def _access_applied(self, event: AccessEvent) -> None:
        """Keep VHost objects and live connections in step with the access registry."""
        if isinstance(event, VHostAdded):
            if event.name not in self.vhosts:
                vhost = self.vhosts[event.name] = VHost(event.name, self.journal, self.contents)
                vhost.churn = self.churn
                vhost.streams = self.streams
                vhost.clustered = self.settings.clustered
        elif isinstance(event, VHostDeleted):
            self.vhosts.pop(event.name, None)
            self.vhost_limits.pop(event.name, None)  # a vhost created again later starts unlimited
        elif isinstance(event, UserDeleted):
            text = f"CONNECTION_FORCED - user '{event.name}' is deleted"
            for connection in [c for c in self.connections if c.user == event.name and c.vhost is not None]:
                connection.shutdown(CONNECTION_FORCED, text)
        # Permissions may have changed: every connection forgets the access decisions it cached.
        for connection in self.connections:
            guard = connection.guard
            if guard is not None:
                guard.reset()

    def new_connection(self, transport: Transport, peer: tuple[str, int]) -> Connection:
        """A Connection for a freshly accepted socket; it expects the protocol header next."""
        connection = Connection(self, transport, peer)
        self.connections.add(connection)
        return connection

    def set_alarm(self, name: str, active: bool) -> bool:
        """Turn resource alarm `name` ("memory" or "disk") on or off; True when publishers became
        blocked or unblocked. Raises ValueError for an unknown name."""
        return self.alarms.set(name, active, self.connections)

    def set_cluster_name(self, name: str) -> None:
        """Name the cluster (the management API's cluster-name), through the journal. Raises AccessError
        "unavailable" when the journal failed."""
        if self.journal.failed:
            raise AccessError("unavailable", "the journal has failed: no durable change is accepted")
        event = ClusterNameSet(name)
        self.journal.append(event)
        self.cluster_name = name

    def set_vhost_limits(self, vhost: str, limits: object) -> None:
        """rabbitmqctl set_vhost_limits: replace the limits of `vhost` as a whole ({} clears them), through
        the journal. Raises AccessError: "invalid" for a bad definition (validate_vhost_limits),
        "no_vhost" for a missing vhost, "unavailable" when the journal failed."""
        checked = validate_vhost_limits(limits)
        if vhost not in self.access.vhosts:
            raise AccessError("no_vhost", f"Virtual host '{vhost}' does not exist")
        if self.journal.failed:
            raise AccessError("unavailable", "the journal has failed: no durable change is accepted")
        event = VHostLimitsSet(vhost, checked)
        self.journal.append(event)
        self._apply_vhost_limits(event)

    def clear_vhost_limits(self, vhost: str) -> None:
        """rabbitmqctl clear_vhost_limits: no limits on `vhost` any more (AccessError as set_vhost_limits)."""
        self.set_vhost_limits(vhost, {})

    def set_vhost_limit(self, vhost: str, name: str, value: int | None) -> None:
        """Set (or with None remove) one limit of `vhost`, keeping the others (negative = no limit, as
        RabbitMQ). Raises ValueError for a name other than VHOST_LIMIT_NAMES."""
        if name not in VHOST_LIMIT_NAMES:
            raise ValueError(f"unknown vhost limit {name!r}")
        limits = dict(self.vhost_limits.get(vhost, {}))
        if value is None:
            limits.pop(name, None)
        else:
            limits[name] = value
        self.set_vhost_limits(vhost, limits)

    def _apply_vhost_limits(self, event: VHostLimitsSet) -> None:
        vhost = self.vhosts.get(event.vhost)
        if vhost is None:
            return  # no such vhost (a valid log never names one): nothing to limit
        if event.limits:
            self.vhost_limits[event.vhost] = dict(event.limits)
        else:
            self.vhost_limits.pop(event.vhost, None)
        vhost.max_queues = event.limits.get("max-queues", -1)

    def check_connection_limit(self, vhost: VHost, user: str) -> None:
        """Raise 530 when `vhost` already holds its max-connections (connection.open checks this)."""
        limit = self.vhost_limits.get(vhost.name, {}).get("max-connections", -1) if self.vhost_limits else -1
        if limit < 0:
            return
        count = sum(1 for connection in self.connections if connection.vhost is vhost)
        if count >= limit:
            raise AMQPConnectionError(
                NOT_ALLOWED,
                f"NOT_ALLOWED - access to vhost '{vhost.name}' refused for user '{user}': "
                f"connection limit ({limit}) is reached",
            )

    def tick(self, now: float) -> None:
        """Broker-wide timers, about once a second (`now`: wall-clock seconds, as time.time()): message
        expiry and x-expires of queues, and the consumer acknowledgement timeout."""
        if self.standby:
            return
        tick_queues(self.vhosts.values(), int(now * 1000))
        self._ack_timeouts.tick(self.connections, now, self.settings.consumer_timeout)

    def message_totals(self) -> dict[str, int]:
        """Message counters since the broker started, keyed as MESSAGE_COUNTERS plus "received" (routed or
        not) and "delivered" (consume and get, either ack mode): the ended channels' counts plus the open
        ones', so no total ever goes back. Costs one step per open channel."""
        totals = dict(self.message_counts)
        for connection in self.connections:
            for channel in connection.channels.values():
                channel.add_counts(totals)
        totals["received"] = totals["routed"] + totals["unroutable_dropped"] + totals["unroutable_returned"]
        totals["delivered"] = (
            totals["delivered_consume_auto_ack"]
            + totals["delivered_consume_manual_ack"]
            + totals["delivered_get_auto_ack"]
            + totals["delivered_get_manual_ack"]
        )
        return totals

    def connection_closed(self, connection: Connection) -> None:
        """Forget a connection that has ended (called by the connection itself)."""
        if connection in self.connections and connection.vhost is not None:
            self.churn.connections_closed += 1  # it was counted opened at connection.open
        self.connections.discard(connection)

    def shutdown(self, reason: str = "shutdown") -> None:
        """Ask every connection to close with 320 CONNECTION_FORCED."""
        text = f"CONNECTION_FORCED - broker forced connection closure with reason '{reason}'"
        for connection in list(self.connections):
            connection.shutdown(CONNECTION_FORCED, text)


def server_properties(capabilities: Iterable[str] | None = None) -> dict[str, Any]:
    """The server-properties table of connection.start, with RabbitMQ's capabilities."""
    names = capabilities if capabilities is not None else CAPABILITIES
    return {
        "product": PRODUCT,
        "version": VERSION,
        "platform": f"Python {platform.python_version()}",
        "copyright": "The OtterMQ authors",
        "information": "Licensed under the MIT license",
        "capabilities": dict.fromkeys(names, True),
    }


CAPABILITIES = (
    "publisher_confirms",
    "exchange_exchange_bindings",
    "basic.nack",
    "consumer_cancel_notify",
    "connection.blocked",
    "consumer_priorities",
    "authentication_failure_close",
    "per_consumer_qos",
)
