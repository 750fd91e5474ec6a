"""The Prometheus text exposition format (version 0.0.4), written by hand, and OtterMQ's own figures.

Strategy: the format is a few lines per metric (`# HELP`, `# TYPE`, then `name{label="v"} value`), and
prometheus_client would cost the broker ~5 MiB of RSS for it, which its 400 MiB budget cannot spare; so
`render` writes it. `collect` reads OtterMQ-only figures (the durable log and its background work, the
journal alarm), prefixed `ottermq_`, at scrape time; RabbitMQ's families and the endpoints serving them
are ottermq.http.prometheus's.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from ottermq.broker.alarms import ALARM_JOURNAL

if TYPE_CHECKING:
    from ottermq.broker.broker import Broker
    from ottermq.store.store import DurableStore

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
_PAGE_SIZE: Final = os.sysconf("SC_PAGE_SIZE")

Labels = dict[str, str]


@dataclass(slots=True)
class Family:
    """One metric: its name, help text, type and samples."""

    name: str
    help: str
    type: str = "gauge"
    samples: list[tuple[Labels, float]] = field(default_factory=list)

    def add(self, value: float, **labels: str) -> Family:
        """Append a sample (chainable)."""
        self.samples.append((labels, value))
        return self


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if value != value:  # NaN, written as Go's and RabbitMQ's exposition writes it
        return "NaN"
    if isinstance(value, int) or float(value).is_integer():
        return str(int(value))
    return repr(float(value))


def render(families: Iterable[Family]) -> str:
    """The exposition text of `families`, each with its HELP and TYPE lines."""
    lines: list[str] = []
    for family in families:
        help_text = family.help.replace("\\", "\\\\").replace("\n", "\\n")
        lines.append(f"# HELP {family.name} {help_text}")
        lines.append(f"# TYPE {family.name} {family.type}")
        for labels, value in family.samples:
            if labels:
                text = ",".join(f'{key}="{_escape(val)}"' for key, val in labels.items())
                lines.append(f"{family.name}{{{text}}} {_number(value)}")
            else:
                lines.append(f"{family.name} {_number(value)}")
    return "\n".join(lines) + "\n"


def resident_memory() -> int:
    """This process's resident set size in bytes, from /proc/self/statm (0 where there is none)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * _PAGE_SIZE
    except (OSError, ValueError, IndexError):
        return 0


def collect(
    broker: Broker, store: DurableStore | None = None, cluster: dict[str, Any] | None = None
) -> list[Family]:
    """OtterMQ's own figures (`ottermq_*`), read now from the broker and the durable store when there is
    one (`cluster`: the cluster service's status on a clustered node); the RabbitMQ families are
    ottermq.http.prometheus's."""
    families = [
        Family("ottermq_alarms_journal", "1 if the durable log cannot be written (publishers blocked)").add(
            ALARM_JOURNAL in broker.alarms.active
        ),
        Family(
            "ottermq_messages_unreadable_total",
            "Messages dropped because their content could not be read back (damaged or foreign record)",
            "counter",
        ).add(broker.contents.unreadable),
    ]
    if store is not None:
        log = store.log
        families += [
            Family("ottermq_log_segments", "Segments of the durable log").add(len(log.segments)),
            Family("ottermq_log_bytes", "Bytes of the durable log's segments on disk").add(
                sum(segment.size for segment in log.segments)
            ),
            Family("ottermq_log_end_lsn", "LSN of the last record appended to the log").add(log.end_lsn),
            Family("ottermq_log_durable_lsn", "Every record up to this LSN is on disk").add(log.durable_lsn),
            Family("ottermq_log_snapshot_lsn", "LSN of the newest snapshot").add(log.snapshot_lsn),
        ]
        families += _store_work(store)
    if cluster is not None:
        families += cluster_families(cluster)
    return families


def cluster_families(status: dict[str, Any]) -> list[Family]:
    """The ottermq_cluster_* metrics from the cluster service's status."""
    families = [
        Family("ottermq_cluster_is_leader", "1 if this node leads the cluster and serves clients").add(
            bool(status.get("is_leader"))
        ),
        Family("ottermq_cluster_term", "The current leader's term (ours while we lead)").add(
            int(status.get("term", 0))
        ),
        Family("ottermq_cluster_members", "Nodes registered in etcd (their lease alive)").add(
            len(status.get("members", []))
        ),
        Family("ottermq_cluster_isr_size", "Nodes in the in-sync set").add(len(status.get("isr", []))),
    ]
    replication = status.get("replication")
    if replication:  # the leader: its followers, by node label
        followers = sorted(replication.get("followers", {}).items())
        lag = Family("ottermq_cluster_follower_lag_records", "Records durable on the leader not yet acked")
        lag_bytes = Family(
            "ottermq_cluster_follower_lag_bytes", "About how many bytes of records are not yet acked"
        )
        age = Family(
            "ottermq_cluster_follower_last_ack_age_seconds", "Seconds since the follower last acknowledged"
        )
        acked = Family("ottermq_cluster_follower_acked_lsn", "The last LSN the follower acknowledged")
        connected = Family("ottermq_cluster_follower_connected", "1 if the follower is connected")
        in_sync = Family("ottermq_cluster_follower_in_sync", "1 if the follower is in the in-sync set")
        for node, row in followers:
            lag.add(int(row.get("lag_records", 0)), node=node)
            lag_bytes.add(int(row.get("lag_bytes", 0)), node=node)
            if row.get("last_ack_age") is not None:
                age.add(float(row["last_ack_age"]), node=node)
            acked.add(int(row.get("acked_lsn", 0)), node=node)
            connected.add(bool(row.get("connected")), node=node)
            in_sync.add(bool(row.get("in_sync")), node=node)
        families += [lag, lag_bytes, age, acked, connected, in_sync]
    return families


def _store_work(store: DurableStore) -> list[Family]:
    """How snapshots, reclamation and the scrub went since the broker started."""
    families: list[Family] = []
    for kind, what, health in (
        ("snapshot", "snapshots", store.snapshot_health),
        ("reclaim", "log space reclamations", store.reclaim_health),
    ):
        families += [
            Family(f"ottermq_{kind}_failures_total", f"Failed {what}", "counter").add(health.failures),
            Family(
                f"ottermq_{kind}_last_success_timestamp_seconds", f"Unix time of the last successful {kind}"
            ).add(health.last_success_time or 0),
            Family(
                f"ottermq_{kind}_last_failure_timestamp_seconds", f"Unix time of the last failed {kind}"
            ).add(health.last_error_time or 0),
        ]
        if health.last_error is not None:
            families.append(
                Family(f"ottermq_{kind}_last_error_info", f"The cause of the last failed {kind} (label)").add(
                    1, error=health.last_error
                )
            )
    scrub = store.scrubber
    families += [
        Family("ottermq_scrub_enabled", "1 if the background scrub of sealed segments runs").add(
            scrub.enabled
        ),
        Family("ottermq_scrub_rate_bytes", "Bytes per second the scrub reads at most").add(scrub.rate),
        Family("ottermq_scrub_bytes_verified_total", "Bytes of sealed segments verified", "counter").add(
            scrub.bytes_verified
        ),
        Family("ottermq_scrub_segments_verified_total", "Sealed segments verified", "counter").add(
            scrub.segments_verified
        ),
        Family("ottermq_scrub_passes_total", "Scrub passes completed", "counter").add(scrub.passes),
        Family(
            "ottermq_scrub_last_pass_completed_timestamp_seconds", "Unix time the last scrub pass completed"
        ).add(scrub.last_pass_completed or 0),
        Family(
            "ottermq_scrub_last_pass_duration_seconds",
            "How long the last scrub pass took (the CPU share limit may make it slower than the rate)",
        ).add(round(scrub.last_pass_seconds, 3)),
        Family(
            "ottermq_scrub_damage_found_total",
            "Damaged spans (or unreadable segments) the scrub found",
            "counter",
        ).add(scrub.damage_found),
        Family("ottermq_scrub_damaged_spans", "Damaged spans found in segments still present").add(
            len(scrub.findings)
        ),
        Family("ottermq_scrub_messages_at_risk", "Held messages whose contents lie in a damaged span").add(
            scrub.messages_at_risk
        ),
    ]
    return families
