"""The figures of queues, exchanges, vhosts, channels and connections beyond their identity: message_stats
with rates, message sizes, memory, consumer details, idle_since, byte counts; and the sampling behind them.

Strategy: counters live on the broker's objects (`object_stats.QueueStats` / `ExchangeStats`, the
channels' `n_*`, the vhosts' folded `message_counts`, the transport's byte counts) and are read when a
request comes, so counts are exact; rates and `*_details.samples` come from the `history.History` the
management service fills every sample interval (`sample_broker`). Figures that cost a walk over a
queue's messages (message_bytes*, messages_persistent/ram/paged_out, head_message_timestamp) are only
computed when the request's `columns` asks for them or has none. The endpoint modules call the
`*_fields(ctx, obj, row)` functions on the rows they already build; each returns the row.

Where RabbitMQ's figure has no OtterMQ equivalent it is left out (tests/integration/test_http_fields.py
lists them with the reason). Figures that are estimates say so here:
- queue `memory`: `QUEUE_BASE_BYTES` plus `ENTRY_BYTES` per message held (ready or unacknowledged: the
  entry object and its slot), plus the bodies the content store keeps in memory for it (shared bodies
  counted in every queue holding them, as RabbitMQ counts a message in each queue process).
- `consumer_utilisation` / `consumer_capacity`: RabbitMQ measures the share of time the queue could
  deliver at once to its consumers. Here: the share of the last UTILISATION_SAMPLES samples taken while
  consumers were attached in which it could (nothing waiting, or a consumer with prefetch credit), so
  its resolution is the sample interval; before such a sample, the same test made at request time
  (1.0 or 0.0); 0 without consumers.
- `idle_since`: the time of the sample after which the object's counters and lengths stopped changing
  (absent while they change), so its resolution is the sample interval.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Hashable, Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

from ottermq.broker.channel import MESSAGE_COUNTERS
from ottermq.broker.exchange import Exchange
from ottermq.broker.message import QueueEntry
from ottermq.broker.object_stats import EXCHANGE_COUNTERS
from ottermq.http.history import History, Values, Window, window
from ottermq.http.stats import channel_details, unacked_by_queue

if TYPE_CHECKING:
    from ottermq.broker.broker import Broker
    from ottermq.broker.channel import Channel
    from ottermq.broker.connection import Connection
    from ottermq.broker.queue import Queue
    from ottermq.http.app import Context, Ctx

# A queue's own structures (object, dicts, deque, consumer groups), about what sys.getsizeof sees.
QUEUE_BASE_BYTES: Final = 2048
# One message held by a queue: its QueueEntry (slotted) and the pointer that holds it.
ENTRY_BYTES: Final = sys.getsizeof(QueueEntry(0, 0)) + 8

# consumer_utilisation covers this many samples (a minute at the default 5 s interval).
UTILISATION_SAMPLES: Final = 12
# Queues and exchanges sampled between two turns of the event loop.
SAMPLE_CHUNK: Final = 1000
# A queue's and a vhost's or channel's message_stats fields (RabbitMQ 3.10's).
QUEUE_STATS: Final = (
    "publish",
    "deliver",
    "deliver_no_ack",
    "get",
    "get_no_ack",
    "deliver_get",
    "get_empty",
    "redeliver",
    "ack",
)
LENGTHS: Final = ("messages", "messages_ready", "messages_unacknowledged")
CHANNEL_STATS: Final = (
    "publish",
    "confirm",
    "deliver",
    "deliver_no_ack",
    "get",
    "get_no_ack",
    "deliver_get",
    "get_empty",
    "redeliver",
    "ack",
    "return_unroutable",
    "drop_unroutable",
)
BYTES: Final = ("recv_oct", "send_oct")
# Figures that cost a walk over a queue's messages: computed only when `columns` asks for them.
_WALK_FIELDS: Final = (
    "message_bytes",
    "message_bytes_ready",
    "message_bytes_unacknowledged",
    "message_bytes_persistent",
    "message_bytes_ram",
    "message_bytes_paged_out",
    "messages_persistent",
    "messages_ram",
    "messages_ready_ram",
    "messages_unacknowledged_ram",
    "messages_paged_out",
    "head_message_timestamp",
    "memory",
)


def channel_counts(counts: dict[str, int]) -> Values:
    """CHANNEL_STATS values from channel.MESSAGE_COUNTERS counts (absent = 0)."""
    get = counts.get
    routed, dropped, returned = get("routed", 0), get("unroutable_dropped", 0), get("unroutable_returned", 0)
    deliver, deliver_no_ack = get("delivered_consume_manual_ack", 0), get("delivered_consume_auto_ack", 0)
    got, got_no_ack = get("delivered_get_manual_ack", 0), get("delivered_get_auto_ack", 0)
    return (
        routed + dropped + returned,
        get("confirmed", 0),
        deliver,
        deliver_no_ack,
        got,
        got_no_ack,
        deliver + deliver_no_ack + got + got_no_ack,
        get("get_empty", 0),
        get("redelivered", 0),
        get("acknowledged", 0),
        returned,
        dropped,
    )


def _open_counts(channel: Channel) -> dict[str, int]:
    counts = dict.fromkeys(MESSAGE_COUNTERS, 0)
    channel.add_counts(counts)
    return counts


def _vhost_counts(broker: Broker, name: str) -> dict[str, int]:
    """The vhost's message counters: its ended channels' and API publishes' (folded), plus its open
    channels'."""
    vhost = broker.vhosts[name]
    counts = dict.fromkeys(MESSAGE_COUNTERS, 0)
    for counter, count in vhost.message_counts.items():
        counts[counter] = counts.get(counter, 0) + count
    for connection in broker.connections:
        if connection.vhost is vhost:
            for channel in connection.channels.values():
                channel.add_counts(counts)
    return counts


def _queue_counts(queue: Queue) -> Values:
    s = queue.stats
    return (
        s.publish,
        s.deliver,
        s.deliver_no_ack,
        s.get,
        s.get_no_ack,
        s.deliver + s.deliver_no_ack + s.get + s.get_no_ack,
        s.get_empty,
        s.redeliver,
        s.ack,
    )


def _bytes(connection: Connection) -> tuple[int, int]:
    transport = connection.transport
    return (getattr(transport, "recv_oct", 0), getattr(transport, "send_oct", 0))


# -- sampling ------------------------------------------------------------------------------------------


class EndedBytes(dict[str, tuple[int, int]]):
    """Bytes received and sent by a vhost's connections that have ended, as of the last sample that saw
    them (the sampler folds them in, so a vhost's recv_oct and send_oct never go back; what an ended
    connection moved after that sample is not counted)."""

    def __init__(self) -> None:
        super().__init__()
        # The connections of the last sample: (id, name) -> (vhost, received, sent).
        self.live: dict[tuple[int, str], tuple[str, int, int]] = {}

    def fold(self, previous: dict[tuple[int, str], tuple[str, int, int]]) -> None:
        """Add the connections of `previous` that are not live any more."""
        for key, (vhost, received, sent) in previous.items():
            if key not in self.live:
                r, s = self.get(vhost, (0, 0))
                self[vhost] = (r + received, s + sent)


def _ended_bytes(history: History) -> EndedBytes:
    ended = history.state.get("ended_bytes")
    if not isinstance(ended, EndedBytes):
        ended = history.state["ended_bytes"] = EndedBytes()
    return ended


async def sample_broker(context: Context, now: float) -> None:
    """Sample every object into `context.history` at `now` (wall-clock seconds). Queues and exchanges
    are read in chunks of SAMPLE_CHUNK with a turn of the event loop between them, so 10,000 queues
    never hold AMQP clients up for the whole walk (their figures are then a few ms apart)."""
    from ottermq.http.node_info import NODE_SAMPLED, node_sample

    history = context.history
    assert history is not None
    broker = context.broker
    unacked = unacked_by_queue(broker)
    rows: list[tuple[Hashable, int, Values]] = []
    lengths: dict[str, list[int]] = {}
    entities: list[tuple[str, Queue | Exchange]] = []
    for name, vhost in list(broker.vhosts.items()):
        entities.extend((name, queue) for queue in vhost.queues.values())
        entities.extend((name, exchange) for exchange in vhost.exchanges.values())
    for done, (name, entity) in enumerate(entities, 1):
        totals = lengths.setdefault(name, [0, 0])
        if isinstance(entity, Exchange):
            rows.append((("exchange", name, entity.name), id(entity), entity.stats.values()))
        else:
            ready, pending = entity.ready_count, unacked[entity]
            totals[0] += ready
            totals[1] += pending
            values = (*_queue_counts(entity), ready + pending, ready, pending, *_deliverable(entity, ready))
            rows.append((("queue", name, entity.name), id(entity), values))
        if not done % SAMPLE_CHUNK:
            await asyncio.sleep(0)
    ended = _ended_bytes(history)
    vhost_bytes: dict[str, list[int]] = {name: list(ended.get(name, (0, 0))) for name in broker.vhosts}
    seen = ended.live
    ended.live = {}
    for connection in broker.connections:
        if connection.vhost is None:
            continue
        received, sent = _bytes(connection)
        ended.live[(id(connection), connection.name)] = (connection.vhost.name, received, sent)
        totals = vhost_bytes.setdefault(connection.vhost.name, [0, 0])
        totals[0] += received
        totals[1] += sent
        rows.append((("connection", id(connection)), id(connection), (received, sent)))
        for channel in connection.channels.values():
            rows.append((("channel", id(channel)), id(channel), channel_counts(_open_counts(channel))))
    ended.fold(seen)
    for name, vhost in broker.vhosts.items():
        ready, pending = lengths.get(name, (0, 0))
        received, sent = vhost_bytes.get(name, (0, 0))
        counts = channel_counts(_vhost_counts(broker, name))
        rows.append((("vhost", name), id(vhost), (*counts, ready + pending, ready, pending, received, sent)))
    counts = channel_counts(broker.message_totals())
    ready = sum(ready for ready, _ in lengths.values())  # vhosts deleted meanwhile too: it is a sample
    pending = sum(pending for _, pending in lengths.values())
    rows.append((("overview",), 0, (*counts, ready + pending, ready, pending)))
    node = node_sample(context)
    assert len(node) == len(NODE_SAMPLED)
    rows.append((("node",), 0, node))
    history.sample(now, rows)


# -- rendering -----------------------------------------------------------------------------------------


class _Figures:
    """What one request needs to render details: the history, now, and the windows its query asks."""

    def __init__(self, ctx: Ctx) -> None:
        self.history = ctx.context.history or History(5.0)
        self.now = _now()
        query = ctx.query
        self.msg_rates = window(query, "msg_rates")
        self.lengths = window(query, "lengths")
        self.data_rates = window(query, "data_rates")
        columns = query.get("columns", "")
        wanted = {column.split(".", 1)[0] for column in columns.split(",")} if columns else None
        self.walk = wanted is None or any(name in wanted for name in _WALK_FIELDS)
        # The top-level fields the answer needs (None: all): `columns` and the `sort` key.
        sort = query.get("sort", "")
        self.wanted = None if wanted is None else wanted | {sort.split(".", 1)[0]} - {""}
        self._broker = ctx.broker
        self._unacked: dict[Queue, list[QueueEntry]] | None = None

    def unacked(self, queue: Queue) -> list[QueueEntry]:
        """The queue's delivered, unacknowledged entries (all queues' gathered once per request)."""
        if self._unacked is None:
            self._unacked = unacked_entries(self._broker)
        return self._unacked.get(queue, [])

    def add(
        self,
        row: dict[str, Any],
        key: Hashable,
        names: Iterable[str],
        values: Values,
        offset: int,
        asked: Window | None,
    ) -> None:
        """`row[name]` and `row[name + "_details"]` for `names`, whose sampled values start at `offset`
        in the object's series."""
        rates = self.history.rates(key)
        for i, name in enumerate(names):
            row[name] = values[i]
            row[f"{name}_details"] = self.history.details(key, offset + i, self.now, asked, rates)


def unacked_entries(broker: Broker) -> dict[Queue, list[QueueEntry]]:
    """Every queue's delivered, unacknowledged entries (one walk over the channels)."""
    by_queue: dict[Queue, list[QueueEntry]] = {}
    for connection in broker.connections:
        for channel in connection.channels.values():
            for delivery in channel.unacked.outstanding():
                by_queue.setdefault(delivery[1], []).append(delivery[2])
    return by_queue


def _now() -> float:
    import time

    return time.time()


def _iso(seconds: float) -> str:
    """RabbitMQ's idle_since format: 2026-12-07T07:20:05.003+00:00."""
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds")


def _idle_since(history: History, key: Hashable) -> str | None:
    changed = history.changed(key)
    if changed is None or not history.times or changed >= history.times[-1]:
        return None
    return _iso(changed)


def message_stats(figures: _Figures, key: Hashable, names: tuple[str, ...], values: Values) -> dict[str, Any]:
    stats: dict[str, Any] = {}
    figures.add(stats, key, names, values, 0, figures.msg_rates)
    return stats


def queue_fields(
    ctx: Ctx, queue: Queue, row: dict[str, Any], figures: _Figures | None = None
) -> dict[str, Any]:
    """Add a queue's figures to its row (which has messages, messages_ready, messages_unacknowledged);
    nothing when the request's columns and sort need only what the row has."""
    figures = figures or _Figures(ctx)
    if figures.wanted is not None and figures.wanted <= row.keys():
        return row
    key = ("queue", queue.vhost, queue.name)
    counts = _queue_counts(queue)
    if any(counts):
        row["message_stats"] = message_stats(figures, key, QUEUE_STATS, counts)
    lengths = (row["messages"], row["messages_ready"], row["messages_unacknowledged"])
    figures.add(row, key, LENGTHS, lengths, len(QUEUE_STATS), figures.lengths)
    consumers = queue.consumers()
    row["consumer_details"] = [_consumer_detail(consumer) for consumer in consumers]
    row["exclusive_consumer_tag"] = next((c.tag for c in consumers if c.exclusive), None)
    features = queue.features
    single = features is not None and features.single_active is not None
    row["single_active_consumer_tag"] = consumers[0].tag if single and consumers else None
    capacity = consumer_capacity(figures.history, queue)
    row["consumer_utilisation"] = capacity
    row["consumer_capacity"] = capacity
    idle = _idle_since(figures.history, key)
    if idle is not None:
        row["idle_since"] = idle
    row["recoverable_slaves"] = None
    # Per-channel detail of a queue's traffic: RabbitMQ keeps it only with rates_mode detailed.
    row["deliveries"] = []
    row["incoming"] = []
    row["backing_queue_status"] = _backing_queue_status(figures, key, row)
    if figures.walk:
        row.update(message_figures(queue, figures.unacked(queue)))
    return row


def queue_figures(ctx: Ctx) -> _Figures:
    """One `_Figures` to share over the rows of a list."""
    return _Figures(ctx)


def _consumer_detail(consumer: Any) -> dict[str, Any]:
    channel = consumer.channel
    details = channel_details(channel)
    details["node"] = _node_name()
    queue = consumer.queue
    return {
        "consumer_tag": consumer.tag,
        "queue": {"name": queue.name, "vhost": queue.vhost},
        "channel_details": details,
        "ack_required": not consumer.no_ack,
        "exclusive": consumer.exclusive,
        "prefetch_count": channel.qos.consumer_prefetch,
        "active": consumer.active,
        "activity_status": "up" if consumer.active else "waiting",
        "arguments": _jsonable(consumer.arguments),
    }


def _jsonable(value: Any) -> Any:
    from ottermq.server.rows import jsonable

    return jsonable(value)


def _node_name() -> str:
    from ottermq.http.stats import NODE

    return NODE


def _deliverable(queue: Queue, ready: int) -> tuple[int, int]:
    """(consumers attached, the queue could deliver at once now): 1 or 0 each, sampled for
    consumer_utilisation."""
    if not queue.consumer_count:
        return (0, 0)
    if not ready:
        return (1, 1)
    return (1, int(any(getattr(c, "active", True) and c.has_credit() for c in queue.consumers())))


def consumer_capacity(history: History | None, queue: Queue) -> float:
    """The queue's consumer_capacity (module docstring); the test made now when nothing was sampled."""
    if not queue.consumer_count:
        return 0
    key = ("queue", queue.vhost, queue.name)
    series = history.series.get(key) if history is not None else None
    if series is not None:
        recent = list(series.values)[-UTILISATION_SAMPLES:]
        with_consumers = [values[-1] for values in recent if values[-2]]
        if with_consumers:
            return sum(with_consumers) / len(with_consumers)
    return float(_deliverable(queue, queue.ready_count)[1])


def _backing_queue_status(figures: _Figures, key: Hashable, row: dict[str, Any]) -> dict[str, Any]:
    """The parts of RabbitMQ's classic backing queue status that mean something here: the mode, the
    ready length, and the average rates in and out (RabbitMQ's are smoothed; these are the last
    interval's)."""
    rates = figures.history.rates(key)
    publish, deliver_get, ack = (0.0, 0.0, 0.0)
    if rates is not None:
        publish, deliver_get, ack = rates[0], rates[5], rates[8]
    return {
        "mode": "default",
        "len": row["messages_ready"],
        "avg_ingress_rate": publish,
        "avg_egress_rate": deliver_get,
        "avg_ack_ingress_rate": deliver_get if row["messages_unacknowledged"] else 0.0,
        "avg_ack_egress_rate": ack,
    }


def message_figures(queue: Queue, delivered: list[QueueEntry]) -> dict[str, Any]:
    """Sizes and residency of the queue's messages, ready and unacknowledged (a walk over them)."""
    contents = queue.contents
    resident = contents.is_resident
    ready_bytes = ready_ram = ready_ram_bytes = persistent = persistent_bytes = 0
    head: QueueEntry | None = None
    for entry in queue.ready_entries():
        if head is None:
            head = entry
        size = entry.size
        ready_bytes += size
        if entry.msg_id > 0:
            persistent += 1
            persistent_bytes += size
        if resident(entry.msg_id):
            ready_ram += 1
            ready_ram_bytes += size
    unacked_bytes = unacked_ram = unacked_ram_bytes = 0
    unacked = len(delivered)
    for entry in delivered:
        unacked_bytes += entry.size
        if entry.msg_id > 0:
            persistent += 1
            persistent_bytes += entry.size
        if resident(entry.msg_id):
            unacked_ram += 1
            unacked_ram_bytes += entry.size
    total = queue.ready_count + unacked
    ram = ready_ram + unacked_ram
    ram_bytes = ready_ram_bytes + unacked_ram_bytes
    return {
        "message_bytes": ready_bytes + unacked_bytes,
        "message_bytes_ready": ready_bytes,
        "message_bytes_unacknowledged": unacked_bytes,
        "message_bytes_persistent": persistent_bytes,
        "message_bytes_ram": ram_bytes,
        "message_bytes_paged_out": ready_bytes + unacked_bytes - ram_bytes,
        "messages_persistent": persistent,
        "messages_ram": ram,
        "messages_ready_ram": ready_ram,
        "messages_unacknowledged_ram": unacked_ram,
        "messages_paged_out": total - ram,
        "head_message_timestamp": _head_timestamp(queue, head),
        "memory": QUEUE_BASE_BYTES + ENTRY_BYTES * total + ram_bytes,
    }


def _head_timestamp(queue: Queue, head: QueueEntry | None) -> int | None:
    """The timestamp property of the first ready message, read only when its content is in memory
    (a request never reads the log for it); None otherwise or without one."""
    if head is None or not queue.contents.is_resident(head.msg_id):
        return None
    try:
        timestamp: int | None = queue.contents.get(head.msg_id).props.timestamp
    except Exception:  # a content that cannot be decoded has no timestamp to show
        return None
    return timestamp


def exchange_fields(ctx: Ctx, exchange: Exchange, row: dict[str, Any]) -> dict[str, Any]:
    """Add an exchange's message_stats (once it had traffic, as RabbitMQ) and the bindings lists
    RabbitMQ's single-exchange view carries (empty, as RabbitMQ 3.10 sends them)."""
    values = exchange.stats.values()
    if any(values):
        figures = _Figures(ctx)
        key = ("exchange", exchange.vhost, exchange.name)
        row["message_stats"] = message_stats(figures, key, EXCHANGE_COUNTERS, values)
    row.setdefault("incoming", [])
    row.setdefault("outgoing", [])
    return row


def vhost_fields(ctx: Ctx, name: str, row: dict[str, Any]) -> dict[str, Any]:
    """Add a vhost's message_stats, lengths' details and its connections' byte counts (open ones, and
    ended ones as of the last sample that saw them: EndedBytes)."""
    broker = ctx.broker
    figures = _Figures(ctx)
    key = ("vhost", name)
    counts = channel_counts(_vhost_counts(broker, name))
    row["message_stats"] = message_stats(figures, key, CHANNEL_STATS, counts)
    lengths = (row["messages"], row["messages_ready"], row["messages_unacknowledged"])
    # As RabbitMQ 3.10: a vhost's lengths take msg_rates_age/incr, not lengths_age/incr.
    figures.add(row, key, LENGTHS, lengths, len(CHANNEL_STATS), figures.msg_rates)
    received, sent = _ended_bytes(figures.history).get(name, (0, 0))
    for connection in broker.connections:
        if connection.vhost is not None and connection.vhost.name == name:
            r, s = _bytes(connection)
            received += r
            sent += s
    figures.add(row, key, BYTES, (received, sent), len(CHANNEL_STATS) + len(LENGTHS), figures.data_rates)
    return row


def channel_fields(ctx: Ctx, channel: Channel, row: dict[str, Any]) -> dict[str, Any]:
    """Add a channel's message_stats and the counts RabbitMQ shows beside them."""
    figures = _Figures(ctx)
    key = ("channel", id(channel))
    row["message_stats"] = message_stats(figures, key, CHANNEL_STATS, channel_counts(_open_counts(channel)))
    row["user_who_performed_action"] = channel.connection.user
    row["global_prefetch_count"] = channel.qos.shared.limit
    publishes, settled = channel.tx.pending() if channel.tx is not None else (0, 0)
    row["messages_uncommitted"] = publishes
    row["acks_uncommitted"] = settled
    row["messages_unconfirmed"] = channel.confirms.unconfirmed if channel.confirms is not None else 0
    row["pending_raft_commands"] = 0
    idle = _idle_since(figures.history, key)
    if idle is not None:
        row["idle_since"] = idle
    return row


def channel_detail_fields(ctx: Ctx, channel: Channel, row: dict[str, Any]) -> dict[str, Any]:
    """One channel's view: its fields plus its consumers, as RabbitMQ's /api/channels/{name}."""
    channel_fields(ctx, channel, row)
    row["consumer_details"] = [_consumer_detail(consumer) for consumer in channel.consumers.values()]
    # Per-queue and per-exchange detail of a channel's traffic: rates_mode detailed only, as RabbitMQ.
    row["deliveries"] = []
    row["publishes"] = []
    return row


def connection_fields(ctx: Ctx, connection: Connection, row: dict[str, Any]) -> dict[str, Any]:
    """Add a connection's byte counts with rates, and the fields RabbitMQ shows for a plain TCP one."""
    figures = _Figures(ctx)
    key = ("connection", id(connection))
    transport = connection.transport
    figures.add(row, key, BYTES, _bytes(connection), 0, figures.data_rates)
    row["recv_cnt"] = getattr(transport, "recv_cnt", 0)
    row["send_cnt"] = getattr(transport, "send_cnt", 0)
    row["send_pend"] = getattr(transport, "write_buffered", 0)
    row["connected_at"] = getattr(transport, "connected_at", None)
    local = getattr(transport, "local", ("", 0))
    row["host"], row["port"] = local[0], local[1]
    row["auth_mechanism"] = connection.auth_mechanism
    row["user_who_performed_action"] = connection.user
    # Plain TCP: RabbitMQ sends these empty then (AMQPS connections are not told apart here yet).
    for name in (*_PEER_CERT, "ssl_cipher", "ssl_hash", "ssl_key_exchange", "ssl_protocol"):
        row.setdefault(name, "")
    return row


_PEER_CERT: Final = ("peer_cert_issuer", "peer_cert_subject", "peer_cert_validity")
# RabbitMQ's retention policies (seconds of samples kept per tier); only the first basic tier is kept here.
SAMPLE_RETENTION: Final = {"global": [600, 3600, 28800, 86400], "basic": [600, 3600], "detailed": [600]}


def overview_fields(ctx: Ctx, body: dict[str, Any], sees_all: bool) -> dict[str, Any]:
    """Add to /api/overview: message_stats with samples when asked, the queue totals' details (for
    users who see every vhost: the samples are broker-wide) and the statistics settings."""
    figures = _Figures(ctx)
    key = ("overview",)
    if sees_all:
        counts = channel_counts(ctx.broker.message_totals())
        body["message_stats"] = message_stats(figures, key, CHANNEL_STATS, counts)
        totals = body["queue_totals"]
        lengths = (totals["messages"], totals["messages_ready"], totals["messages_unacknowledged"])
        figures.add(totals, key, LENGTHS, lengths, len(CHANNEL_STATS), figures.lengths)
    body.update(
        disable_stats=False,
        enable_queue_totals=False,
        statistics_db_event_queue=0,
        sample_retention_policies=SAMPLE_RETENTION,
    )
    return body
