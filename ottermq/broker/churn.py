"""Node-wide churn counters (RabbitMQ's connection_churn_metrics): connections, channels and queues that
came and went since the broker started, for Prometheus' `rabbitmq_*_opened_total` and the like; login
attempts (auth_attempt_metrics).

Strategy: plain ints bumped where the event happens (a connection opens its vhost, a channel opens or is
released, a queue is declared, created or deleted by a client or the API), never on replay: recovering a
log re-creates queues without counting them, as a restarted RabbitMQ node starts its counters at zero.
"""

from __future__ import annotations

from pathlib import Path


class Churn:
    """How many connections, channels and queues opened, closed, were declared, created and deleted."""

    __slots__ = (
        "channels_closed",
        "channels_opened",
        "connections_closed",
        "connections_opened",
        "queues_created",
        "queues_declared",
        "queues_deleted",
    )

    def __init__(self) -> None:
        # Connections count from connection.open (when they appear in the listings) to their end.
        self.connections_opened = 0
        self.connections_closed = 0
        self.channels_opened = 0
        self.channels_closed = 0
        # Every successful non-passive queue.declare (new or not), the ones that made a queue, deletions
        # of any cause (client, API, auto-delete, exclusive owner gone, x-expires, vhost deleted).
        self.queues_declared = 0
        self.queues_created = 0
        self.queues_deleted = 0


class AuthAttempts:
    """AMQP logins that succeeded and failed (RabbitMQ's auth_attempt_metrics; sources are not tracked,
    as RabbitMQ's default `track_auth_attempt_source = false`)."""

    __slots__ = ("failed", "succeeded")

    def __init__(self) -> None:
        self.succeeded = 0
        self.failed = 0


class DataDisk:
    """Where the node keeps its data and the free-space limit the disk alarm uses (set by the server's
    resource monitor; `path` None when nothing watches a disk)."""

    __slots__ = ("limit", "path")

    def __init__(self) -> None:
        self.path: Path | None = None
        self.limit = 0
