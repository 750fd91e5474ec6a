"""Counts the API and /metrics report, read from the broker's objects when a request comes.

Strategy: nothing here runs on the AMQP path. Ready counts and consumer counts live on the queues;
unacknowledged deliveries live on the channels, so they are gathered by walking the channels once per
request (cost: one step per unacked delivery, paid by the caller of the API, not by publishers). Message
counters are plain ints on the channels (`Broker.message_totals`); `MessageRates` turns two samples of
them, taken by the service every few seconds, into the rates of /api/overview's message_stats.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from ottermq.broker.stream import StreamQueue
from ottermq.server.rows import connection_info, jsonable, queue_info

if TYPE_CHECKING:
    from ottermq.broker.broker import Broker
    from ottermq.broker.channel import Channel
    from ottermq.broker.connection import Connection
    from ottermq.broker.queue import Queue


def unacked_by_queue(broker: Broker) -> Counter[Queue]:
    """Unacknowledged deliveries per queue, over every channel of every connection."""
    counts: Counter[Queue] = Counter()
    for connection in broker.connections:
        for channel in connection.channels.values():
            for delivery in channel.unacked.outstanding():
                counts[delivery[1]] += 1
    return counts


def queue_row(queue: Queue, unacked: int) -> dict[str, Any]:
    """A queue as RabbitMQ's management API shows it."""
    row = queue_info(queue)
    ready = queue.ready_count
    row.update(
        vhost=queue.vhost,
        messages=ready + unacked,
        messages_ready=ready,
        messages_unacknowledged=unacked,
        state="running",
        type=queue.queue_type,
        node=NODE,
    )
    if isinstance(queue, StreamQueue):
        row.update(stream_fields(queue))
    return row


def stream_fields(stream: StreamQueue) -> dict[str, Any]:
    """What a stream's row adds: RabbitMQ 3.10's members, online and readers (one node here), messages
    counting the records (acks remove nothing), and OtterMQ's own: the bytes its log takes
    (stream_bytes: segment headers and records) and its first and last offsets (null when empty)."""
    log = stream.log
    first, end = log.first_offset, log.committed_offset
    return {
        "messages": end - first,
        "messages_unacknowledged": 0,
        "members": [NODE],
        "online": [NODE],
        "consumers": len(stream.consumers()),
        "readers": {NODE: len(stream.consumers())},
        "stream_bytes": log.size_bytes,
        "first_offset": first if end > first else None,
        "last_offset": end - 1 if end > first else None,
    }


@dataclass(frozen=True, slots=True)
class Totals:
    """Broker-wide object and message totals."""

    connections: int
    channels: int
    consumers: int
    queues: int
    exchanges: int
    messages_ready: int
    messages_unacknowledged: int

    @property
    def messages(self) -> int:
        """Ready plus unacknowledged."""
        return self.messages_ready + self.messages_unacknowledged


def totals(broker: Broker, vhosts: list[str] | None = None) -> Totals:
    """Totals over `vhosts` (every vhost when None); connections and channels count every vhost's."""
    names = list(broker.vhosts) if vhosts is None else vhosts
    queues = [q for name in names if (v := broker.vhosts.get(name)) for q in v.queues.values()]
    unacked = unacked_by_queue(broker)
    return Totals(
        connections=len(broker.connections),
        channels=sum(len(c.channels) for c in broker.connections),
        consumers=sum(q.consumer_count for q in queues),
        queues=len(queues),
        exchanges=sum(len(v.exchanges) for name in names if (v := broker.vhosts.get(name))),
        messages_ready=sum(q.ready_count for q in queues),
        messages_unacknowledged=sum(unacked[q] for q in queues),
    )


NODE = "ottermq@localhost"


def connection_row(connection: Connection) -> dict[str, Any]:
    """A connection as RabbitMQ's management API shows it."""
    row = connection_info(connection)
    row.update(
        name=connection_name(connection),
        node=NODE,
        protocol="AMQP 0-9-1",
        type="network",
        frame_max=connection.frame_max,
        channel_max=connection.channel_max,
        timeout=connection.heartbeat,
        client_properties=jsonable(connection.client_properties),
        ssl=False,
    )
    return row


def connection_name(connection: Connection) -> str:
    """RabbitMQ names a connection "peer_host:peer_port -> host:port"; the local side is not kept, so
    the peer alone names it here."""
    return connection.name


def channel_name(channel: Channel) -> str:
    """As RabbitMQ: "<connection name> (<number>)"."""
    return f"{connection_name(channel.connection)} ({channel.number})"


def channel_details(channel: Channel) -> dict[str, Any]:
    """The channel_details object RabbitMQ nests in consumers."""
    connection = channel.connection
    return {
        "name": channel_name(channel),
        "number": channel.number,
        "connection_name": connection_name(connection),
        "peer_host": connection.peer[0],
        "peer_port": connection.peer[1],
        "user": connection.user,
    }


def channel_row(channel: Channel) -> dict[str, Any]:
    """A channel as RabbitMQ's management API shows it."""
    connection = channel.connection
    return {
        "name": channel_name(channel),
        "number": channel.number,
        "node": NODE,
        "user": connection.user,
        "vhost": channel.vhost.name,
        "state": "running" if channel.is_open else "closing",
        "consumer_count": len(channel.consumers),
        "messages_unacknowledged": len(channel.unacked),
        "prefetch_count": channel.qos.consumer_prefetch,
        "confirm": channel.confirms is not None,
        "transactional": channel.tx is not None,
        "connection_details": {
            "name": connection_name(connection),
            "peer_host": connection.peer[0],
            "peer_port": connection.peer[1],
        },
    }


def consumer_rows(channel: Channel) -> list[dict[str, Any]]:
    """The consumers of a channel as RabbitMQ's /api/consumers shows them."""
    details = channel_details(channel)
    return [
        {
            "consumer_tag": consumer.tag,
            "queue": {"name": consumer.queue.name, "vhost": consumer.queue.vhost},
            "channel_details": details,
            "ack_required": not consumer.no_ack,
            "exclusive": consumer.exclusive,
            "prefetch_count": channel.qos.consumer_prefetch,
            "active": consumer.active,
            "activity_status": "up" if consumer.active else "waiting",
            "arguments": jsonable(consumer.arguments),
        }
        for consumer in channel.consumers.values()
    ]


# /api/overview's message_stats fields, each with the Broker.message_totals counter it reports.
MESSAGE_STATS: Final = (
    ("publish", "received"),
    ("confirm", "confirmed"),
    ("deliver_get", "delivered"),
    ("deliver", "delivered_consume_manual_ack"),
    ("deliver_no_ack", "delivered_consume_auto_ack"),
    ("get", "delivered_get_manual_ack"),
    ("get_no_ack", "delivered_get_auto_ack"),
    ("redeliver", "redelivered"),
    ("ack", "acknowledged"),
    ("return_unroutable", "unroutable_returned"),
    ("drop_unroutable", "unroutable_dropped"),
)


class MessageRates:
    """The last two samples of a broker's message counters; rates are their difference per second."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self._previous: tuple[float, dict[str, int]] | None = None
        self._latest: tuple[float, dict[str, int]] | None = None

    def sample(self, now: float) -> None:
        """Take a sample at `now` (monotonic seconds); the oldest of the two kept is dropped."""
        self._previous, self._latest = self._latest, (now, self.broker.message_totals())

    def rates(self) -> dict[str, float]:
        """Messages per second of each counter between the last two samples (0.0 before there are two)."""
        previous, latest = self._previous, self._latest
        if previous is None or latest is None or latest[0] <= previous[0]:
            return dict.fromkeys(latest[1] if latest is not None else self.broker.message_totals(), 0.0)
        seconds = latest[0] - previous[0]
        return {name: (count - previous[1].get(name, 0)) / seconds for name, count in latest[1].items()}

    def message_stats(self) -> dict[str, Any]:
        """RabbitMQ's message_stats object: each count as of now, with `<name>_details: {"rate": r}`."""
        counts = self.broker.message_totals()
        rates = self.rates()
        stats: dict[str, Any] = {}
        for field_name, counter in MESSAGE_STATS:
            stats[field_name] = counts[counter]
            stats[f"{field_name}_details"] = {"rate": rates[counter]}
        return stats
