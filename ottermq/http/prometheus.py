"""Prometheus at RabbitMQ 3.10's breadth: /metrics, /metrics/per-object and /metrics/detailed, served on the
management port and on a port of their own (`prometheus_port`, RabbitMQ's 15692; `PrometheusService`).

Strategy: RabbitMQ's rabbitmq_prometheus plugin reads its figures from tables grouped as
"metric families groups" (connection_churn_metrics, queue_coarse_metrics, channel_metrics...); its three
endpoints differ only in how they read them: `/metrics` sums each group's objects into one sample per
family (the aggregated view its dashboards use; node-wide figures such as churn are one row anyway),
`/metrics/per-object` gives one sample per queue, channel or connection, and `/metrics/detailed` gives
per-object samples of the groups named by `family=` (prefix `rabbitmq_detailed_`, or `rabbitmq_cluster_`
for vhost_status, exchange_bindings, exchange_names), restricted to the vhosts named by `vhost=`.
`GROUPS` below is that table of groups with RabbitMQ's names, types and help texts, limited to the
figures OtterMQ has (README: what is absent and why); each group has a reader that yields (labels,
values) rows. Everything is read from the broker at scrape time; nothing is added to the AMQP path but
the churn and login counters (ottermq.broker.churn). Identity and build info close every endpoint, as
RabbitMQ's, so the Grafana dashboards' `* on(instance) group_left(...) rabbitmq_identity_info` joins find
them. Channels and connections are labelled `channel="<name>"` (RabbitMQ labels both with the Erlang pid
under that key; the management API's names stand in for pids here).
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import math
import os
import platform
import resource
import secrets
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from ottermq.broker.alarms import ALARM_DISK, ALARM_MEMORY
from ottermq.broker.broker import VERSION
from ottermq.broker.deadletter import AT_MOST_ONCE, DELIVERY_LIMIT, DISABLED, EXPIRED, MAXLEN, REJECTED
from ottermq.http.api_admin import MANAGEMENT_VERSION
from ottermq.http.api_health import cluster_name
from ottermq.http.app import Ctx, route
from ottermq.http.fields import consumer_capacity, message_figures, unacked_entries
from ottermq.http.interface import Request, Response
from ottermq.http.metrics import CONTENT_TYPE, Family, collect, render, resident_memory
from ottermq.http.paths import BadPath, split_target
from ottermq.http.stats import NODE, channel_name, connection_name, unacked_by_queue
from ottermq.server.limits import socket_limit
from ottermq.server.monitor import free_disk

if TYPE_CHECKING:
    from ottermq.broker.broker import Broker
    from ottermq.broker.channel import Channel
    from ottermq.broker.connection import Connection
    from ottermq.broker.queue import Queue
    from ottermq.cluster.service import ClusterService
    from ottermq.http.history import History
    from ottermq.http.server import HttpServer
    from ottermq.store.store import DurableStore

PREFIX: Final = "rabbitmq_"
DETAILED_PREFIX: Final = "rabbitmq_detailed_"
CLUSTER_PREFIX: Final = "rabbitmq_cluster_"
# The group `family=` names for OtterMQ's own log figures (`ottermq_*`) in /metrics/detailed.
OTTERMQ_GROUP: Final = "ottermq_metrics"
_STARTED: Final = time.time()
# Messages walked by a scrape's queue figures between two turns of the event loop.
WALK_CHUNK: Final = 50_000
# Per process when there is no log to name the node (memory persistence): a restart is a new cluster.
_EPHEMERAL_ID: Final = secrets.token_bytes(16)

Labels = dict[str, str]
Row = tuple[Labels, tuple[float, ...]]


@dataclass(frozen=True, slots=True)
class Spec:
    """One family of a group: its name without prefix, type and help, as RabbitMQ's collector has them."""

    name: str
    type: str
    help: str


@dataclass(frozen=True, slots=True)
class Scrape:
    """What one scrape reads: the broker, its store, the vhosts `vhost=` kept (None: all), and the cluster
    service's status on a clustered node."""

    broker: Broker
    store: DurableStore | None
    vhosts: frozenset[str] | None
    cluster: dict[str, Any] | None = None
    # The management service's samples (consumer_capacity over time), None on the Prometheus port.
    history: History | None = None
    # Each queue's message figures (walk_queues), when a group needs them.
    queue_figures: dict[Queue, dict[str, Any]] | None = None

    def queues(self) -> Iterator[Queue]:
        """Every queue of the vhosts in view."""
        for vhost in self.broker.vhosts.values():
            if self.vhosts is None or vhost.name in self.vhosts:
                yield from vhost.queues.values()

    def connections(self) -> list[Connection]:
        """Open connections (those past connection.open)."""
        return [c for c in self.broker.connections if c.vhost is not None]

    def channels(self) -> list[Channel]:
        """Open channels of open connections."""
        return [ch for c in self.connections() for ch in c.channels.values()]


# -- the groups' readers: rows of (labels, values in the group's Spec order) -------------------------------


def _churn(scrape: Scrape, per_object: bool) -> Iterable[Row]:
    churn = scrape.broker.churn
    yield (
        {},
        (
            churn.connections_opened,
            churn.connections_closed,
            churn.channels_opened,
            churn.channels_closed,
            churn.queues_declared,
            churn.queues_created,
            churn.queues_deleted,
        ),
    )


def open_fds() -> int:
    """Descriptors this process has open (0 where /proc is absent)."""
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return 0


def _disk_free(broker: Broker) -> int:
    path = broker.data_disk.path
    free = free_disk(path) if path is not None else None
    return free or 0


def _auth_attempts(scrape: Scrape, per_object: bool) -> Iterable[Row]:
    attempts = scrape.broker.auth_attempts
    total = attempts.succeeded + attempts.failed
    yield {"protocol": PROTOCOL}, (total, attempts.succeeded, attempts.failed)


def _no_rows(scrape: Scrape, per_object: bool) -> Iterable[Row]:
    return ()


def _node_coarse(scrape: Scrape, per_object: bool) -> Iterable[Row]:
    broker = scrape.broker
    yield {}, (open_fds(), len(broker.connections), resident_memory(), _disk_free(broker))


def _node(scrape: Scrape, per_object: bool) -> Iterable[Row]:
    broker = scrape.broker
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    max_fds = soft if soft != resource.RLIM_INFINITY else 0
    uptime = round(time.time() - _STARTED, 3)
    yield {}, (max_fds, socket_limit(), broker.memory.limit, broker.data_disk.limit, uptime)


def _queue_labels(queue: Queue) -> Labels:
    return {"vhost": queue.vhost, "queue": queue.name}


def _queue_coarse(scrape: Scrape, per_object: bool) -> Iterable[Row]:
    unacked = unacked_by_queue(scrape.broker)
    for queue in scrape.queues():
        ready, waiting = queue.ready_count, unacked[queue]
        yield _queue_labels(queue), (ready, waiting, ready + waiting)


def _queue_consumers(scrape: Scrape, per_object: bool) -> Iterable[Row]:
    for queue in scrape.queues():
        yield _queue_labels(queue), (queue.consumer_count,)


def _queue_details(scrape: Scrape, per_object: bool) -> Iterable[Row]:
    figures = scrape.queue_figures or {}
    history = scrape.history
    for queue in scrape.queues():
        found = figures.get(queue)
        if found is None:  # declared since the walk: no message yet worth a second walk
            found = message_figures(queue, [])
        capacity = consumer_capacity(history, queue)
        head = found["head_message_timestamp"]
        yield (
            _queue_labels(queue),
            (
                queue.consumer_count,
                capacity,
                capacity,
                found["memory"],
                found["messages_ram"],
                found["message_bytes_ram"],
                found["messages_ready_ram"],
                found["messages_unacknowledged_ram"],
                found["messages_persistent"],
                found["message_bytes_persistent"],
                found["message_bytes"],
                found["message_bytes_ready"],
                found["message_bytes_unacknowledged"],
                found["messages_paged_out"],
                found["message_bytes_paged_out"],
                head if head is not None else math.nan,
            ),
        )


async def walk_queues(broker: Broker, vhosts: frozenset[str] | None) -> dict[Queue, dict[str, Any]]:
    """Every queue's message figures (fields.message_figures: a walk over its messages), with a turn of
    the event loop after each WALK_CHUNK messages walked, so a deep backlog does not hold clients up for
    the whole scrape."""
    delivered = unacked_entries(broker)
    found: dict[Queue, dict[str, Any]] = {}
    walked = 0
    queues = [
        queue
        for vhost in list(broker.vhosts.values())
        if vhosts is None or vhost.name in vhosts
        for queue in vhost.queues.values()
    ]
    for queue in queues:
        if queue.deleted:
            continue
        held = delivered.get(queue, [])
        # Delivered entries may have been settled during a turn given away: read them fresh then.
        found[queue] = message_figures(queue, held)
        walked += queue.ready_count + len(held) + 1
        if walked >= WALK_CHUNK:
            walked = 0
            await asyncio.sleep(0)
            delivered = unacked_entries(broker)
    return found


def _tx_pending(channel: Channel) -> tuple[int, int]:
    """(publishes, acknowledgements) held by the channel's open transaction."""
    tx = channel.tx
    if tx is None:
        return 0, 0
    pending: Callable[[], tuple[int, int]] | None = getattr(tx, "pending", None)
    return pending() if pending is not None else (len(tx), 0)


def _channel(scrape: Scrape, per_object: bool) -> Iterable[Row]:
    for channel in scrape.channels():
        confirms = channel.confirms
        uncommitted, acks = _tx_pending(channel)
        yield (
            {"channel": channel_name(channel)},
            (
                len(channel.consumers),
                len(channel.unacked),
                confirms.unconfirmed if confirms is not None else 0,
                uncommitted,
                acks,
                channel.qos.consumer_prefetch,
                channel.qos.shared.limit,
            ),
        )


def _channel_exchange(scrape: Scrape, per_object: bool) -> Iterable[Row]:
    # Counted per channel, not per channel and exchange: only the aggregated view (see _PER_OBJECT).
    for channel in scrape.channels():
        dropped, returned = channel.n_unroutable_dropped, channel.n_unroutable_returned
        published = channel.n_routed + dropped + returned
        yield {}, (published, channel.n_confirmed, returned, dropped)


def _channel_queue(scrape: Scrape, per_object: bool) -> Iterable[Row]:
    # Counted per channel, not per channel and queue: only the aggregated view (see _PER_OBJECT).
    for channel in scrape.channels():
        yield (
            {},
            (
                channel.n_delivered_get_manual_ack,
                channel.n_delivered_get_auto_ack,
                channel.n_delivered_consume_manual_ack,
                channel.n_delivered_consume_auto_ack,
                channel.n_redelivered,
                channel.n_acknowledged,
                getattr(channel, "n_get_empty", 0),
            ),
        )


def _transport_counts(connection: Connection) -> tuple[int, int, int, int]:
    """(bytes in, bytes out, reads, writes) of the connection's socket, where the server counts them."""
    transport = connection.transport
    return (
        getattr(transport, "recv_oct", 0),
        getattr(transport, "send_oct", 0),
        getattr(transport, "recv_cnt", 0),
        getattr(transport, "send_cnt", 0),
    )


def _connection_coarse(scrape: Scrape, per_object: bool) -> Iterable[Row]:
    for connection in scrape.connections():
        received, sent, _, _ = _transport_counts(connection)
        yield {"channel": connection_name(connection)}, (received, sent)


def _connection(scrape: Scrape, per_object: bool) -> Iterable[Row]:
    for connection in scrape.connections():
        _, _, reads, writes = _transport_counts(connection)
        yield {"channel": connection_name(connection)}, (reads, writes, len(connection.channels))


def _vhost_status(scrape: Scrape, per_object: bool) -> Iterable[Row]:
    for name in scrape.broker.vhosts:
        yield {"vhost": name}, (1,)


def _exchanges(scrape: Scrape, per_object: bool) -> Iterable[Row]:
    for vhost in scrape.broker.vhosts.values():
        for exchange in vhost.exchanges.values():
            if exchange.name and not exchange.internal:  # as RabbitMQ: no default, no internal ones
                labels = {"vhost": vhost.name, "exchange": exchange.name, "type": exchange.type}
                yield labels, (len(exchange.bindings),)


@dataclass(frozen=True, slots=True)
class Group:
    """A RabbitMQ metric-families group: its families and the reader of their rows."""

    specs: tuple[Spec, ...]
    read: Callable[[Scrape, bool], Iterable[Row]]
    # False: one global row whatever the view (churn, node). True: rows per object, summed in /metrics.
    per_object: bool = True
    # False for groups counted per channel only, which RabbitMQ splits by exchange or queue: they are in
    # the aggregated /metrics only (their per-object labels cannot be given).
    has_objects: bool = True
    # Families (Spec names) that the aggregated view gives without a sample, as RabbitMQ's.
    unsummed: frozenset[str] = frozenset()


def _specs(*rows: tuple[str, str, str]) -> tuple[Spec, ...]:
    return tuple(Spec(*row) for row in rows)


GROUPS: Final[dict[str, Group]] = {
    "connection_churn_metrics": Group(
        _specs(
            ("connections_opened_total", "counter", "Total number of connections opened"),
            ("connections_closed_total", "counter", "Total number of connections closed or terminated"),
            ("channels_opened_total", "counter", "Total number of channels opened"),
            ("channels_closed_total", "counter", "Total number of channels closed"),
            ("queues_declared_total", "counter", "Total number of queues declared"),
            ("queues_created_total", "counter", "Total number of queues created"),
            ("queues_deleted_total", "counter", "Total number of queues deleted"),
        ),
        _churn,
        per_object=False,
    ),
    "node_coarse_metrics": Group(
        _specs(
            ("process_open_fds", "gauge", "Open file descriptors"),
            ("process_open_tcp_sockets", "gauge", "Open TCP sockets"),
            ("process_resident_memory_bytes", "gauge", "Memory used in bytes"),
            ("disk_space_available_bytes", "gauge", "Disk space available in bytes"),
        ),
        _node_coarse,
        per_object=False,
    ),
    "node_metrics": Group(
        _specs(
            ("process_max_fds", "gauge", "Open file descriptors limit"),
            ("process_max_tcp_sockets", "gauge", "Open TCP sockets limit"),
            ("resident_memory_limit_bytes", "gauge", "Memory high watermark in bytes"),
            ("disk_space_available_limit_bytes", "gauge", "Free disk space low watermark in bytes"),
            ("erlang_uptime_seconds", "gauge", "Node uptime"),
        ),
        _node,
        per_object=False,
    ),
    "auth_attempt_metrics": Group(
        _specs(
            ("auth_attempts_total", "counter", "Total number of authorization attempts"),
            (
                "auth_attempts_succeeded_total",
                "counter",
                "Total number of successful authentication attempts",
            ),
            ("auth_attempts_failed_total", "counter", "Total number of failed authentication attempts"),
        ),
        _auth_attempts,
        per_object=False,
    ),
    # By source address and user: not tracked (RabbitMQ's default), so the families have no samples.
    "auth_attempt_detailed_metrics": Group(
        _specs(
            (
                "auth_attempts_detailed_total",
                "counter",
                "Total number of authorization attempts with source info",
            ),
            (
                "auth_attempts_detailed_succeeded_total",
                "counter",
                "Total number of successful authorization attempts with source info",
            ),
            (
                "auth_attempts_detailed_failed_total",
                "counter",
                "Total number of failed authorization attempts with source info",
            ),
        ),
        _no_rows,
    ),
    "queue_coarse_metrics": Group(
        _specs(
            ("queue_messages_ready", "gauge", "Messages ready to be delivered to consumers"),
            ("queue_messages_unacked", "gauge", "Messages delivered to consumers but not yet acknowledged"),
            ("queue_messages", "gauge", "Sum of ready and unacknowledged messages - total queue depth"),
        ),
        _queue_coarse,
    ),
    "queue_consumer_count": Group(
        _specs(("queue_consumers", "gauge", "Consumers on a queue")), _queue_consumers
    ),
    "queue_metrics": Group(
        _specs(
            ("queue_consumers", "gauge", "Consumers on a queue"),
            ("queue_consumer_capacity", "gauge", "Consumer capacity"),
            ("queue_consumer_utilisation", "gauge", "Same as consumer capacity"),
            ("queue_process_memory_bytes", "gauge", "Memory in bytes used by the Erlang queue process"),
            ("queue_messages_ram", "gauge", "Ready and unacknowledged messages stored in memory"),
            (
                "queue_messages_ram_bytes",
                "gauge",
                "Size of ready and unacknowledged messages stored in memory",
            ),
            ("queue_messages_ready_ram", "gauge", "Ready messages stored in memory"),
            ("queue_messages_unacked_ram", "gauge", "Unacknowledged messages stored in memory"),
            ("queue_messages_persistent", "gauge", "Persistent messages"),
            ("queue_messages_persistent_bytes", "gauge", "Size in bytes of persistent messages"),
            ("queue_messages_bytes", "gauge", "Size in bytes of ready and unacknowledged messages"),
            ("queue_messages_ready_bytes", "gauge", "Size in bytes of ready messages"),
            ("queue_messages_unacked_bytes", "gauge", "Size in bytes of all unacknowledged messages"),
            ("queue_messages_paged_out", "gauge", "Messages paged out to disk"),
            ("queue_messages_paged_out_bytes", "gauge", "Size in bytes of messages paged out to disk"),
            (
                "queue_head_message_timestamp",
                "gauge",
                "Timestamp of the first message in the queue, if any",
            ),
        ),
        _queue_details,
        # RabbitMQ 3.10's /metrics gives these families without a sample.
        unsummed=frozenset(
            {"queue_consumer_capacity", "queue_messages_persistent_bytes", "queue_head_message_timestamp"}
        ),
    ),
    "channel_metrics": Group(
        _specs(
            ("channel_consumers", "gauge", "Consumers on a channel"),
            ("channel_messages_unacked", "gauge", "Delivered but not yet acknowledged messages"),
            ("channel_messages_unconfirmed", "gauge", "Published but not yet confirmed messages"),
            (
                "channel_messages_uncommitted",
                "gauge",
                "Messages received in a transaction but not yet committed",
            ),
            (
                "channel_acks_uncommitted",
                "gauge",
                "Message acknowledgements in a transaction not yet committed",
            ),
            ("consumer_prefetch", "gauge", "Limit of unacknowledged messages for each consumer"),
            (
                "channel_prefetch",
                "gauge",
                "Total limit of unacknowledged messages for all consumers on a channel",
            ),
        ),
        _channel,
    ),
    "channel_exchange_metrics": Group(
        _specs(
            (
                "channel_messages_published_total",
                "counter",
                "Total number of messages published into an exchange on a channel",
            ),
            (
                "channel_messages_confirmed_total",
                "counter",
                "Total number of messages published into an exchange and confirmed on the channel",
            ),
            (
                "channel_messages_unroutable_returned_total",
                "counter",
                "Total number of messages published as mandatory into an exchange and returned to the "
                "publisher as unroutable",
            ),
            (
                "channel_messages_unroutable_dropped_total",
                "counter",
                "Total number of messages published as non-mandatory into an exchange and dropped as "
                "unroutable",
            ),
        ),
        _channel_exchange,
        has_objects=False,
    ),
    "channel_queue_metrics": Group(
        _specs(
            (
                "channel_get_ack_total",
                "counter",
                "Total number of messages fetched with basic.get in manual acknowledgement mode",
            ),
            (
                "channel_get_total",
                "counter",
                "Total number of messages fetched with basic.get in automatic acknowledgement mode",
            ),
            (
                "channel_messages_delivered_ack_total",
                "counter",
                "Total number of messages delivered to consumers in manual acknowledgement mode",
            ),
            (
                "channel_messages_delivered_total",
                "counter",
                "Total number of messages delivered to consumers in automatic acknowledgement mode",
            ),
            (
                "channel_messages_redelivered_total",
                "counter",
                "Total number of messages redelivered to consumers",
            ),
            ("channel_messages_acked_total", "counter", "Total number of messages acknowledged by consumers"),
            (
                "channel_get_empty_total",
                "counter",
                "Total number of times basic.get operations fetched no message",
            ),
        ),
        _channel_queue,
        has_objects=False,
    ),
    "connection_coarse_metrics": Group(
        _specs(
            ("connection_incoming_bytes_total", "counter", "Total number of bytes received on a connection"),
            ("connection_outgoing_bytes_total", "counter", "Total number of bytes sent on a connection"),
        ),
        _connection_coarse,
    ),
    "connection_metrics": Group(
        _specs(
            (
                "connection_incoming_packets_total",
                "counter",
                "Total number of packets received on a connection",
            ),
            ("connection_outgoing_packets_total", "counter", "Total number of packets sent on a connection"),
            ("connection_channels", "gauge", "Channels on a connection"),
        ),
        _connection,
    ),
}

# Only in /metrics/detailed, prefixed rabbitmq_cluster_.
CLUSTER_GROUPS: Final[dict[str, Group]] = {
    "vhost_status": Group(
        _specs(("vhost_status", "gauge", "Whether a given vhost is running")), _vhost_status
    ),
    "exchange_bindings": Group(
        _specs(
            (
                "exchange_bindings",
                "gauge",
                "Number of bindings for an exchange. This value is cluster-wide.",
            ),
        ),
        _exchanges,
    ),
    "exchange_names": Group(
        _specs(
            (
                "exchange_name",
                "gauge",
                "Enumerates exchanges without any additional info. This value is cluster-wide. A cheaper "
                "alternative to `exchange_bindings`",
            ),
        ),
        lambda scrape, per_object: ((labels, (1,)) for labels, _ in _exchanges(scrape, per_object)),
    ),
}

# RabbitMQ's rabbit_global_counters (prometheus_rabbitmq_global_metrics_collector): name, help, and
# whether RabbitMQ splits it by queue type (OtterMQ's queues are all classic ones).
GLOBAL_COUNTERS: Final = (
    ("acknowledged", "Total number of messages acknowledged by consumers", True),
    ("confirmed", "Total number of messages confirmed to publishers", False),
    (
        "delivered_consume_auto_ack",
        "Total number of messages delivered to consumers using basic.consume with automatic acknowledgment",
        True,
    ),
    (
        "delivered_consume_manual_ack",
        "Total number of messages delivered to consumers using basic.consume with manual acknowledgment",
        True,
    ),
    (
        "delivered_get_auto_ack",
        "Total number of messages delivered to consumers using basic.get with automatic acknowledgment",
        True,
    ),
    (
        "delivered_get_manual_ack",
        "Total number of messages delivered to consumers using basic.get with manual acknowledgment",
        True,
    ),
    ("delivered", "Total number of messages delivered to consumers", True),
    ("get_empty", "Total number of times basic.get operations fetched no message", True),
    (
        "received_confirm",
        "Total number of messages received from publishers expecting confirmations",
        False,
    ),
    ("received", "Total number of messages received from publishers", False),
    ("redelivered", "Total number of messages redelivered to consumers", True),
    ("routed", "Total number of messages routed to queues or streams", False),
    (
        "unroutable_dropped",
        "Total number of messages published as non-mandatory into an exchange and dropped as unroutable",
        False,
    ),
    (
        "unroutable_returned",
        "Total number of messages published as mandatory into an exchange and returned to the publisher as "
        "unroutable",
        False,
    ),
)
CLASSIC_QUEUE: Final = "rabbit_classic_queue"
PROTOCOL: Final = "amqp091"


def _families(prefix: str, group: Group, rows: list[Row], per_object: bool) -> list[Family]:
    families = [Family(prefix + spec.name, spec.help, spec.type) for spec in group.specs]
    if (per_object and group.per_object) or not group.per_object:  # node-wide rows keep their labels
        for labels, values in rows:
            for family, value in zip(families, values, strict=True):
                family.add(value, **labels)
        return families
    sums = [0.0] * len(group.specs)
    for _, values in rows:
        sums = [total + value for total, value in zip(sums, values, strict=True)]
    for spec, family, value in zip(group.specs, families, sums, strict=True):
        if spec.name not in group.unsummed:
            family.add(value)
    return families


def group_families(
    scrape: Scrape, groups: dict[str, Group], names: Iterable[str], prefix: str, per_object: bool
) -> list[Family]:
    """The families of the groups `names` (in `groups`' order), per object or summed."""
    wanted = set(names)
    families: list[Family] = []
    for name, group in groups.items():
        if name not in wanted:
            continue
        if name == "queue_consumer_count" and "queue_metrics" in wanted:
            continue  # the same family twice otherwise (RabbitMQ skips it likewise)
        if name == "auth_attempt_detailed_metrics" and not per_object:
            continue  # the aggregated view gives auth_attempt_metrics only, as RabbitMQ's
        if per_object and not group.has_objects:
            continue
        families += _families(prefix, group, list(group.read(scrape, per_object)), per_object)
    return families


def permanent_id(store: DurableStore | None) -> str:
    """RabbitMQ's rabbitmq_cluster_permanent_id: from the log's id, kept for the life of the data."""
    raw = store.log.log_id if store is not None else _EPHEMERAL_ID
    return "rabbitmq-cluster-id-" + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def identity(scrape: Scrape) -> list[Family]:
    """rabbitmq_build_info and rabbitmq_identity_info, which every endpoint ends with."""
    build = Family("rabbitmq_build_info", "RabbitMQ & Erlang/OTP version info", "untyped").add(
        1,
        product_name="OtterMQ",
        product_version=VERSION,
        rabbitmq_version=MANAGEMENT_VERSION,
        prometheus_plugin_version=VERSION,
        prometheus_client_version=VERSION,
        # The runtime's version under Erlang's name: Python here.
        erlang_version=platform.python_version(),
    )
    node = Family("rabbitmq_identity_info", "RabbitMQ node & cluster identity info", "untyped").add(
        1,
        rabbitmq_node=NODE,
        rabbitmq_cluster=cluster_name(scrape.broker),
        rabbitmq_cluster_permanent_id=permanent_id(scrape.store),
    )
    return [build, node]


def totals(scrape: Scrape) -> list[Family]:
    """RabbitMQ's TOTALS: objects open now."""
    connections = scrape.connections()
    channels = [ch for c in connections for ch in c.channels.values()]
    queues = [q for v in scrape.broker.vhosts.values() for q in v.queues.values()]
    return [
        Family("rabbitmq_connections", "Connections currently open").add(len(connections)),
        Family("rabbitmq_channels", "Channels currently open").add(len(channels)),
        Family("rabbitmq_consumers", "Consumers currently connected").add(
            sum(len(ch.consumers) for ch in channels)
        ),
        Family("rabbitmq_queues", "Queues available").add(len(queues)),
    ]


def global_counters(scrape: Scrape) -> list[Family]:
    """The global counters, publishers and consumers (rabbit_global_counters)."""
    broker = scrape.broker
    counts = broker.message_totals()
    counts.setdefault("get_empty", 0)
    # Confirm-mode publishes: every one is confirmed (acked or nacked) by the time it is counted.
    counts["received_confirm"] = counts["confirmed"]
    families: list[Family] = []
    channels = scrape.channels()
    families.append(
        Family("rabbitmq_global_consumers", "Current number of consumers").add(
            sum(len(ch.consumers) for ch in channels), protocol=PROTOCOL
        )
    )
    for name, text, by_queue_type in GLOBAL_COUNTERS:
        family = Family(f"rabbitmq_global_messages_{name}_total", text, "counter")
        if by_queue_type:
            family.add(counts[name], protocol=PROTOCOL, queue_type=CLASSIC_QUEUE)
        else:
            family.add(counts[name], protocol=PROTOCOL)
        families.append(family)
        if name == "confirmed":  # RabbitMQ's order: the dead-letter counters follow
            families += dead_lettered(scrape)
    publishers = sum(1 for ch in channels if ch.n_routed + ch.n_unroutable_dropped + ch.n_unroutable_returned)
    families.append(
        Family("rabbitmq_global_publishers", "Current number of publishers").add(
            publishers, protocol=PROTOCOL
        )
    )
    return families


# RabbitMQ's dead-letter counters (rabbit_global_counters), by reason: the family's reason, its help, and
# the strategies a classic queue has samples for (none: the family is quorum queues' only, and OtterMQ
# gives it without samples; delivery_limit is OtterMQ's on classic queues, RabbitMQ's on quorum ones).
DEAD_LETTER_COUNTERS: Final = (
    ("confirmed", "Total number of messages dead-lettered and confirmed by target queues", ()),
    (
        DELIVERY_LIMIT,
        "Total number of messages dead-lettered due to delivery-limit exceeded",
        (AT_MOST_ONCE, DISABLED),
    ),
    (EXPIRED, "Total number of messages dead-lettered due to message TTL exceeded", (AT_MOST_ONCE, DISABLED)),
    (
        MAXLEN,
        "Total number of messages dead-lettered due to overflow drop-head or reject-publish-dlx",
        (AT_MOST_ONCE, DISABLED),
    ),
    (
        REJECTED,
        "Total number of messages dead-lettered due to basic.reject or basic.nack",
        (AT_MOST_ONCE, DISABLED),
    ),
)


def dead_lettered(scrape: Scrape) -> list[Family]:
    """rabbitmq_global_messages_dead_lettered_*_total, labelled by queue type and strategy as RabbitMQ's."""
    counts = scrape.broker.contents.dead_lettered
    families: list[Family] = []
    for reason, text, strategies in DEAD_LETTER_COUNTERS:
        family = Family(f"rabbitmq_global_messages_dead_lettered_{reason}_total", text, "counter")
        for strategy in strategies:
            family.add(counts.get(reason, strategy), queue_type=CLASSIC_QUEUE, dead_letter_strategy=strategy)
        families.append(family)
    return families


def alarms_and_process(scrape: Scrape) -> list[Family]:
    """The alarms and the process start time (only /metrics has them, as RabbitMQ's default registry)."""
    active = scrape.broker.alarms.active
    return [
        Family(
            "rabbitmq_alarms_file_descriptor_limit",
            "is 1 if file descriptor limit alarm is in effect",
            "untyped",
        ).add(0),
        Family(
            "rabbitmq_alarms_free_disk_space_watermark",
            "is 1 if free disk space watermark alarm is in effect",
            "untyped",
        ).add(ALARM_DISK in active),
        Family(
            "rabbitmq_alarms_memory_used_watermark",
            "is 1 if VM memory watermark alarm is in effect",
            "untyped",
        ).add(ALARM_MEMORY in active),
        Family("process_start_time_seconds", "Start time of the process since unix epoch in seconds.").add(
            int(_STARTED)
        ),
    ]


def ottermq_families(scrape: Scrape) -> list[Family]:
    """OtterMQ's own figures (`ottermq_*`: the durable log, its background work, the journal alarm)."""
    families = collect(scrape.broker, scrape.store, scrape.cluster)
    return [family for family in families if family.name.startswith("ottermq_")]


def _query_list(query: dict[str, list[str]], name: str) -> list[str] | None:
    values = query.get(name)
    return values if values else None


def detailed_vhosts(broker: Broker, query: dict[str, list[str]]) -> frozenset[str] | None:
    """The vhosts /metrics/detailed reads (None: all). As RabbitMQ: names of vhosts that do not exist
    are dropped (all dropped: no queue matches)."""
    vhosts = _query_list(query, "vhost")
    return frozenset(v for v in vhosts if v in broker.vhosts) if vhosts else None


def needs_walk(view: str, query: dict[str, list[str]]) -> bool:
    """True when the view gives the queue_metrics group (whose figures walk the queues' messages)."""
    return view != "detailed" or "queue_metrics" in (_query_list(query, "family") or [])


def scrape_text(
    view: str,
    broker: Broker,
    store: DurableStore | None,
    query: dict[str, list[str]] | None = None,
    cluster: dict[str, Any] | None = None,
    history: History | None = None,
    queue_figures: dict[Queue, dict[str, Any]] | None = None,
) -> str:
    """The exposition text of one endpoint: view "" (/metrics), "per-object" or "detailed"; `query` holds
    the detailed endpoint's `family` and `vhost` parameters (repeatable, as RabbitMQ's); `queue_figures`
    what `walk_queues` found, when `needs_walk` says the view needs it."""
    query = query or {}
    if view == "detailed":
        kept = detailed_vhosts(broker, query)
        scrape = Scrape(broker, store, kept, cluster, history, queue_figures)
        wanted = _query_list(query, "family") or []
        families = group_families(scrape, GROUPS, wanted, DETAILED_PREFIX, per_object=True)
        families += group_families(scrape, CLUSTER_GROUPS, wanted, CLUSTER_PREFIX, per_object=True)
        if OTTERMQ_GROUP in wanted:
            families += ottermq_families(scrape)
        return render(families + identity(scrape))
    scrape = Scrape(broker, store, None, cluster, history, queue_figures)
    per_object = view == "per-object"
    families = group_families(scrape, GROUPS, GROUPS, PREFIX, per_object)
    families += totals(scrape) + identity(scrape) + global_counters(scrape)
    if not per_object:
        families += alarms_and_process(scrape)
    return render(families + ottermq_families(scrape))


# RabbitMQ's registry behind each view, by which its scrape telemetry is labelled.
_REGISTRIES: Final = {"": "default", "per-object": "per-object", "detailed": "detailed"}
# The scrape telemetry summaries: (name, help, by encoding).
_TELEMETRY: Final = (
    ("telemetry_scrape_duration_seconds", "Scrape duration", False),
    ("telemetry_scrape_size_bytes", "Scrape size, not encoded", False),
    ("telemetry_scrape_encoded_size_bytes", "Scrape size, encoded", True),
)


class Telemetry:
    """Count and sum of each endpoint's scrape durations and sizes (RabbitMQ's telemetry_scrape_*
    summaries; per process, as a node's registries): a scrape reports the scrapes before it."""

    def __init__(self) -> None:
        # (summary, registry, encoding) -> [count, sum]
        self.observed: dict[tuple[str, str, str], list[float]] = {}

    def observe(self, summary: str, registry: str, value: float, encoding: str = "") -> None:
        """Add one observation."""
        entry = self.observed.setdefault((summary, registry, encoding), [0, 0.0])
        entry[0] += 1
        entry[1] += value

    def text(self, registry: str) -> str:
        """The three summaries of `registry` in exposition format (count and sum samples, no quantiles)."""
        lines: list[str] = []
        for name, text, by_encoding in _TELEMETRY:
            lines += [f"# TYPE {name} summary", f"# HELP {name} {text}"]
            for (summary, where, encoding), (count, total) in self.observed.items():
                if summary != name or where != registry:
                    continue
                labels = f'registry="{registry}",content_type="{CONTENT_TYPE_LABEL}"'
                if by_encoding:
                    labels += f',encoding="{encoding}"'
                lines.append(f"{name}_count{{{labels}}} {int(count)}")
                lines.append(f"{name}_sum{{{labels}}} {total!r}")
        return "\n".join(lines) + "\n"


# The content type as RabbitMQ's telemetry labels it (without the charset parameter).
CONTENT_TYPE_LABEL: Final = "text/plain; version=0.0.4"
TELEMETRY: Final = Telemetry()


def _multi_query(raw: bytes) -> dict[str, list[str]]:
    """Every value of each query parameter (`family` repeats), percent-decoded."""
    from urllib.parse import parse_qs

    try:
        return parse_qs(raw.decode("utf-8", "strict"), keep_blank_values=False)
    except UnicodeDecodeError:
        return {}


async def _answer(
    view: str,
    request: Request,
    broker: Broker,
    store: DurableStore | None,
    cluster: ClusterService | None = None,
    history: History | None = None,
) -> Response:
    """One scrape: the text, gzipped when the scraper accepts it (Prometheus does), with its telemetry."""
    started = time.perf_counter()
    _, _, raw_query = request.target.partition(b"?")
    query = _multi_query(raw_query)
    registry = _REGISTRIES[view]
    figures = None
    if needs_walk(view, query):
        figures = await walk_queues(broker, detailed_vhosts(broker, query) if view == "detailed" else None)
    status = cluster.status() if cluster is not None else None
    text = scrape_text(view, broker, store, query, status, history, figures) + TELEMETRY.text(registry)
    body = text.encode()
    TELEMETRY.observe("telemetry_scrape_duration_seconds", registry, time.perf_counter() - started)
    TELEMETRY.observe("telemetry_scrape_size_bytes", registry, len(body))
    headers: list[tuple[str, str]] = []
    encoding = "identity"
    if "gzip" in request.headers.get("accept-encoding", ""):
        body = gzip.compress(body, compresslevel=1)  # fast: a scrape is sent once, every 15 s or so
        encoding = "gzip"
        headers.append(("content-encoding", "gzip"))
    TELEMETRY.observe("telemetry_scrape_encoded_size_bytes", registry, len(body), encoding)
    return Response(200, body, CONTENT_TYPE, headers)


@route("GET", "/metrics", public=True)
async def metrics(ctx: Ctx) -> Response:
    """Aggregated metrics (no authentication, as RabbitMQ's plugin)."""
    return await _answer(
        "", ctx.request, ctx.broker, ctx.context.store, ctx.context.cluster, ctx.context.history
    )


@route("GET", "/metrics/per-object", public=True)
async def per_object(ctx: Ctx) -> Response:
    """One sample per queue, channel, connection."""
    return await _answer(
        "per-object", ctx.request, ctx.broker, ctx.context.store, ctx.context.cluster, ctx.context.history
    )


@route("GET", "/metrics/detailed", public=True)
async def detailed(ctx: Ctx) -> Response:
    """The groups `family=` names, per object, for the vhosts `vhost=` names."""
    return await _answer(
        "detailed", ctx.request, ctx.broker, ctx.context.store, ctx.context.cluster, ctx.context.history
    )


_VIEWS: Final = {
    ("metrics",): "",
    ("metrics", "per-object"): "per-object",
    ("metrics", "detailed"): "detailed",
}


class PrometheusApp:
    """The application of the Prometheus port: the three endpoints, nothing of the management API."""

    def __init__(
        self, broker: Broker, store: DurableStore | None, cluster: ClusterService | None = None
    ) -> None:
        self.broker = broker
        self.store = store
        self.cluster = cluster

    async def __call__(self, request: Request) -> Response:
        try:
            segments, _ = split_target(request.target)
        except BadPath:
            return Response(400, b"Bad Request", "text/plain")
        view = _VIEWS.get(tuple(segments))
        if view is None:
            return Response(404, b"Not Found", "text/plain")
        if request.method not in ("GET", "HEAD"):
            return Response(405, b"", "text/plain", [("allow", "GET, HEAD")])
        return await _answer(view, request, self.broker, self.store, self.cluster)


class PrometheusService:
    """The Prometheus endpoints on a port of their own (RabbitMQ's prometheus.tcp.port, 15692); the
    server starts it once AMQP listens, as the management API."""

    def __init__(
        self, host: str, port: int, store: DurableStore | None = None, cluster: ClusterService | None = None
    ) -> None:
        self.host = host
        self.port = port
        self.store = store
        self.cluster = cluster
        self._server: HttpServer | None = None

    async def start(
        self, broker: Broker, amqp: list[tuple[str, int]], amqps: list[tuple[str, int]] | None = None
    ) -> list[tuple[str, int]]:
        """Listen; the bound addresses. OSError if the port cannot be bound."""
        from ottermq.http.server import HttpServer

        server = HttpServer(PrometheusApp(broker, self.store, self.cluster))
        addresses = await server.start(self.host, self.port)
        self._server = server
        return addresses

    async def stop(self, timeout: float) -> None:
        """Stop listening; scrapes in flight get `timeout` seconds."""
        if self._server is not None:
            await self._server.stop(timeout)
            self._server = None
