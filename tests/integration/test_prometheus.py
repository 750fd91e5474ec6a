"""Prometheus endpoints against RabbitMQ 3.10's: the same traffic (prometheus_traffic.py) fed a private
RabbitMQ 3.10.8 node whose scrapes are recorded in tests/data/rabbitmq_3_10/prometheus/, and feeds an
OtterMQ started here; its scrapes, on the management port and on the Prometheus port, must give every family
RabbitMQ gives that OtterMQ has the concept of, with RabbitMQ's type, help text and label names, and the same
values where the traffic decides them. The families absent here are listed (ABSENT) and in the README.

Strategy: one OtterMQ per module, with the Prometheus port set (the shared broker has it off); the traffic
is held open while the tests scrape. The exposition text is also read by prometheus_client's parser (the
reference client's), so it is valid exposition format.
"""

from __future__ import annotations

import gzip
import http.client
import re
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pika
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration import prometheus_traffic
from tests.integration.conftest import BrokerInfo
from tests.integration.test_http_api import _free_port, request
from tests.integration.test_raw import ServerProcess, ottermq_server

DATA = Path(__file__).resolve().parents[1] / "data" / "rabbitmq_3_10" / "prometheus"
# Every group /metrics/detailed knows (RabbitMQ 3.10's names), as the recording asked for them.
ALL_FAMILIES = (
    "queue_coarse_metrics",
    "queue_consumer_count",
    "queue_metrics",
    "connection_churn_metrics",
    "node_coarse_metrics",
    "node_metrics",
    "node_persister_metrics",
    "ra_metrics",
    "auth_attempt_metrics",
    "auth_attempt_detailed_metrics",
    "channel_metrics",
    "channel_exchange_metrics",
    "channel_process_metrics",
    "channel_queue_metrics",
    "connection_coarse_metrics",
    "connection_metrics",
    "channel_queue_exchange_metrics",
    "vhost_status",
    "exchange_bindings",
    "exchange_names",
)
# (recorded file, path and query): the endpoints compared.
ENDPOINTS = {
    "metrics.txt": "/metrics",
    "per-object.txt": "/metrics/per-object",
    "detailed-no-family.txt": "/metrics/detailed",
    "detailed-all-families.txt": "/metrics/detailed?" + "&".join(f"family={f}" for f in ALL_FAMILIES),
    "detailed-queue-coarse.txt": "/metrics/detailed?family=queue_coarse_metrics&family=queue_consumer_count",
    "detailed-vhost-other.txt": "/metrics/detailed?vhost=prom-other&family=queue_coarse_metrics"
    "&family=queue_consumer_count",
}

# RabbitMQ's families OtterMQ does not give, by why (the README says the same). A family named here must be
# absent from OtterMQ's scrape and present in RabbitMQ's; every other RabbitMQ family must be in OtterMQ's.
_ERLANG = "Erlang VM internals (schedulers, processes, reductions, allocators, mnesia, distribution)"
_CLASSIC_STORE = "classic queues' message store and queue index: OtterMQ has one log (ottermq_log_*)"
_QUEUE_DETAIL = "a queue's disk reads and writes: OtterMQ's are the log's (ottermq_log_*)"
_BY_OBJECT = "counted per channel, not split by exchange or queue: only the aggregated /metrics has them"
ABSENT_PATTERNS: dict[str, str] = {
    r"erlang_.*": _ERLANG,
    r"rabbitmq_(detailed_)?erlang_(processes_used|processes_limit|gc_.*|scheduler_.*|net_ticktime_seconds)": (
        _ERLANG
    ),
    r".*_process_reductions_total": _ERLANG,
    r"rabbitmq_(detailed_)?(io_.*|schema_db_.*|msg_store_.*|queue_index_.*)": _CLASSIC_STORE,
    r"rabbitmq_(detailed_)?raft_.*": "quorum queues (Raft) do not exist in OtterMQ",
    r"rabbitmq_(detailed_)?queue_(disk_reads_total|disk_writes_total)": _QUEUE_DETAIL,
    r"rabbitmq_(detailed_)?connection_pending_packets": "the write buffer is counted in bytes, not packets",
    r"rabbitmq_(detailed_)?queue_messages_published_total": "per channel, queue and exchange counts",
}
# Absent from per-object and detailed only.
ABSENT_PER_OBJECT = (
    r"rabbitmq_(detailed_)?channel_(messages_(published|confirmed|unroutable_returned|unroutable_dropped"
    r"|delivered_ack|delivered|redelivered|acked)_total|get_ack_total|get_total|get_empty_total)"
)


def absent(name: str, per_object: bool) -> str | None:
    """Why RabbitMQ's family `name` is absent from OtterMQ (None: it must be there)."""
    for pattern, why in ABSENT_PATTERNS.items():
        if re.fullmatch(pattern, name):
            return why
    if per_object and re.fullmatch(ABSENT_PER_OBJECT, name):
        return _BY_OBJECT
    return None


@dataclass
class Parsed:
    """One exposition text: each family's type, help, label names and samples."""

    types: dict[str, str]
    helps: dict[str, str]
    labels: dict[str, set[frozenset[str]]]
    samples: dict[str, list[tuple[dict[str, str], float]]]


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse(text: str) -> Parsed:
    """Read an exposition text (families by their TYPE lines; summary samples under their family)."""
    parsed = Parsed({}, {}, {}, {})
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            parsed.types[name] = kind
            parsed.labels.setdefault(name, set())
            parsed.samples.setdefault(name, [])
        elif line.startswith("# HELP "):
            _, _, name, *rest = line.split(" ", 3)
            parsed.helps[name] = rest[0] if rest else ""
        elif line and not line.startswith("#"):
            match = _SAMPLE.match(line)
            assert match is not None, line
            name = match.group(1)
            family = name if name in parsed.types else re.sub(r"_(sum|count|bucket)$", "", name)
            labels = dict(_LABEL.findall(match.group(2) or ""))
            parsed.labels.setdefault(family, set()).add(frozenset(labels))
            parsed.samples.setdefault(family, []).append((labels, float(match.group(3))))
    return parsed


def recorded(name: str) -> Parsed:
    """A recorded RabbitMQ 3.10.8 scrape."""
    return parse((DATA / name).read_text())


@dataclass
class Node:
    """The OtterMQ under test, its ports and the traffic held open on it."""

    server: ServerProcess
    http_port: int
    prometheus_port: int

    def scrape(self, path: str, port: int | None = None) -> str:
        """The text of one endpoint (on the Prometheus port unless told), checked by prometheus_client."""
        reply = request(port or self.prometheus_port, "GET", path, auth=None)
        assert reply.status == 200, reply
        assert reply.headers["content-type"].startswith("text/plain; version=0.0.4")
        text = reply.raw.decode()
        list(text_string_to_metric_families(text))  # raises on anything the reference parser refuses
        return text


def _wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory, broker: BrokerInfo) -> Iterator[Node]:
    """OtterMQ with the Prometheus port on, fed the recording's traffic (held open meanwhile)."""
    if broker.external:
        pytest.skip("starts its own OtterMQ")
    http_port, prometheus_port = _free_port(), _free_port()
    tmp = tmp_path_factory.mktemp("prometheus")
    args = ("--http-port", str(http_port), "--prometheus-port", str(prometheus_port))
    with ottermq_server(tmp, *args) as server:
        _wait_port(http_port)
        _wait_port(prometheus_port)
        vhost = prometheus_traffic.OTHER_VHOST
        assert request(http_port, "PUT", f"/api/vhosts/{vhost}", {}).status == 201
        perms = {"configure": ".*", "write": ".*", "read": ".*"}
        # Granted already to the vhost's creator (as RabbitMQ does): set again, 204.
        assert request(http_port, "PUT", f"/api/permissions/{vhost}/guest", perms).status == 204
        traffic = prometheus_traffic.run("127.0.0.1", server.port)
        try:
            traffic.hold(0.2)
            yield Node(server, http_port, prometheus_port)
        finally:
            traffic.close()


@pytest.mark.parametrize("recording", sorted(ENDPOINTS))
def test_families_types_help_and_labels_are_rabbitmqs(node: Node, recording: str) -> None:
    rabbit = recorded(recording)
    ours = parse(node.scrape(ENDPOINTS[recording]))
    per_object = recording != "metrics.txt"
    for name in rabbit.types:
        why = absent(name, per_object)
        if why is not None:
            assert name not in ours.types, f"{name} is listed absent ({why}) but OtterMQ gives it"
            continue
        assert name in ours.types, f"RabbitMQ's {name} is missing from OtterMQ's {ENDPOINTS[recording]}"
        assert ours.types[name] == rabbit.types[name], name
        assert ours.helps[name] == rabbit.helps[name], name
        if name == "rabbitmq_build_info":
            # RabbitMQ adds product_name and product_version when a product is configured; OtterMQ is one.
            assert {k - {"product_name", "product_version"} for k in ours.labels[name]} == rabbit.labels[name]
        elif rabbit.samples[name] and ours.samples[name]:
            assert ours.labels[name] <= rabbit.labels[name], name
    for name in ours.types:
        if not name.startswith("ottermq_"):
            assert name in rabbit.types, f"OtterMQ's {name} is not RabbitMQ's"


def test_aggregated_values_are_rabbitmqs_for_the_same_traffic(node: Node) -> None:
    """What the traffic decides (churn, depths, consumers, channel counters, totals) equals RabbitMQ's."""
    rabbit = recorded("metrics.txt")
    ours = parse(node.scrape("/metrics"))
    deterministic = [
        name
        for name in rabbit.types
        if re.fullmatch(
            r"rabbitmq_((connections|channels)_(opened|closed)_total|queues_(declared|created|deleted)_total"
            r"|queue_messages(_ready|_unacked)?|queue_consumers|channel_consumers|channel_messages_unacked"
            r"|channel_messages_(unconfirmed|uncommitted)|channel_acks_uncommitted|channel_prefetch"
            r"|channel_messages_(published|confirmed|unroutable_returned|unroutable_dropped|delivered_ack"
            r"|delivered|redelivered|acked)_total|channel_get_(ack_)?total|connection_channels|connections"
            r"|channels|consumers|queues|global_messages_(?!get_empty|dead_lettered).*|global_consumers"
            r"|auth_attempts_(succeeded_|failed_)?total)",
            name,
        )
    ]
    assert len(deterministic) > 40
    for name in deterministic:
        # RabbitMQ's quorum and stream rows (always 0 here) have no OtterMQ counterpart.
        theirs = [(ls, v) for ls, v in rabbit.samples[name] if ls.get("queue_type", CLASSIC) == CLASSIC]
        assert sorted(ours.samples[name], key=str) == sorted(theirs, key=str), name


CLASSIC = "rabbit_classic_queue"


def test_per_object_and_detailed_series_name_the_objects(node: Node) -> None:
    ours = parse(node.scrape("/metrics/per-object"))
    rabbit = recorded("per-object.txt")
    ready, theirs = (
        {(ls["vhost"], ls["queue"]): v for ls, v in parsed.samples["rabbitmq_queue_messages_ready"]}
        for parsed in (ours, rabbit)
    )
    assert ready == theirs
    # Five channels and three connections, as RabbitMQ's; OtterMQ names them as its management API does.
    assert len(ours.samples["rabbitmq_channel_consumers"]) == 5
    assert sorted(v for _, v in ours.samples["rabbitmq_connection_channels"]) == [1, 2, 2]
    channels = {ls["channel"] for ls, _ in ours.samples["rabbitmq_channel_consumers"]}
    listed = {c["name"] for c in request(node.http_port, "GET", "/api/channels").body}
    assert channels == listed
    detailed = parse(node.scrape(ENDPOINTS["detailed-vhost-other.txt"]))
    assert detailed.samples["rabbitmq_detailed_queue_messages_ready"] == [
        ({"vhost": "prom-other", "queue": "prom.other"}, 2.0)
    ]
    everything = parse(node.scrape(ENDPOINTS["detailed-all-families.txt"]))
    their_exchanges = recorded("detailed-all-families.txt").labels["rabbitmq_cluster_exchange_name"]
    assert everything.labels["rabbitmq_cluster_exchange_name"] == their_exchanges
    # Only the groups asked for, then identity; the log's families on request.
    assert set(parse(node.scrape("/metrics/detailed")).types) == {
        "rabbitmq_build_info",
        "rabbitmq_identity_info",
        *TELEMETRY_FAMILIES,
    }
    log_families = parse(node.scrape("/metrics/detailed?family=ottermq_metrics")).types
    assert "ottermq_log_segments" in log_families


def test_identity_names_the_node_and_keeps_its_id(node: Node) -> None:
    ours = parse(node.scrape("/metrics"))
    [(labels, value)] = ours.samples["rabbitmq_identity_info"]
    assert value == 1 and labels["rabbitmq_node"] == "ottermq@localhost"
    assert labels["rabbitmq_cluster"] == request(node.http_port, "GET", "/api/cluster-name").body["name"]
    assert re.fullmatch(r"rabbitmq-cluster-id-[A-Za-z0-9_-]{22}", labels["rabbitmq_cluster_permanent_id"])
    # Node figures are real: descriptors, limits, disk.
    values = {name: samples[0][1] for name, samples in ours.samples.items() if len(samples) == 1}
    assert 0 < values["rabbitmq_process_open_fds"] < values["rabbitmq_process_max_fds"]
    assert (
        values["rabbitmq_resident_memory_limit_bytes"] > values["rabbitmq_process_resident_memory_bytes"] > 0
    )
    assert values["rabbitmq_disk_space_available_bytes"] > 0
    assert values["rabbitmq_disk_space_available_limit_bytes"] == 50_000_000


def test_both_ports_serve_the_same_families_and_only_them(node: Node) -> None:
    for path in ("/metrics", "/metrics/per-object", ENDPOINTS["detailed-all-families.txt"]):
        own = parse(node.scrape(path)).types
        management = parse(node.scrape(path, node.http_port)).types
        assert own == management, path
    assert request(node.prometheus_port, "GET", "/api/overview").status == 404
    assert request(node.prometheus_port, "POST", "/metrics", {}).status == 405
    assert "Prometheus metrics listening on http://127.0.0.1:" in node.server.log()


def test_scrapes_are_gzipped_when_asked_and_counted(node: Node) -> None:
    for _ in range(2):
        conn = http.client.HTTPConnection("127.0.0.1", node.prometheus_port, timeout=10)
        try:
            conn.request("GET", "/metrics/per-object", headers={"Accept-Encoding": "gzip"})
            response = conn.getresponse()
            assert response.status == 200 and response.getheader("content-encoding") == "gzip"
            text = gzip.decompress(response.read()).decode()
        finally:
            conn.close()
    samples = parse(text).samples["telemetry_scrape_encoded_size_bytes"]
    gzipped = [v for labels, v in samples if labels == {**TELEMETRY_LABELS, "encoding": "gzip"}]
    assert len(gzipped) == 2 and gzipped[0] >= 1  # count and sum of the scrapes before this one


TELEMETRY_FAMILIES = (
    "telemetry_scrape_duration_seconds",
    "telemetry_scrape_size_bytes",
    "telemetry_scrape_encoded_size_bytes",
)
TELEMETRY_LABELS = {"registry": "per-object", "content_type": "text/plain; version=0.0.4"}


def test_prometheus_port_zero_turns_the_listener_off(tmp_path: Path, broker: BrokerInfo) -> None:
    if broker.external:
        pytest.skip("starts its own OtterMQ")
    port = _free_port()
    with ottermq_server(tmp_path, "--prometheus-port", "0", "--http-port", str(port)) as server:
        _wait_port(port)
        assert "Prometheus metrics listening" not in server.log()
        # And a refused login is counted, as RabbitMQ's auth_attempt_metrics.
        wrong = pika.ConnectionParameters(
            "127.0.0.1", server.port, credentials=pika.PlainCredentials("guest", "wrong")
        )
        with pytest.raises(pika.exceptions.ProbableAuthenticationError):
            pika.BlockingConnection(wrong)
        pika.BlockingConnection(
            pika.ConnectionParameters(
                "127.0.0.1", server.port, credentials=pika.PlainCredentials("guest", "guest")
            )
        ).close()
        reply = request(port, "GET", "/metrics", auth=None)
        assert reply.status == 200
        samples = parse(reply.raw.decode()).samples
        counts = {
            name: samples[f"rabbitmq_auth_attempts{name}_total"] for name in ("", "_succeeded", "_failed")
        }
        assert counts == {
            name: [({"protocol": "amqp091"}, value)]
            for name, value in (("", 2), ("_succeeded", 1), ("_failed", 1))
        }


# Per-queue figures the traffic decides (sizes, residency: RabbitMQ keeps these small messages in memory).
QUEUE_FIGURES = (
    "rabbitmq_queue_messages_bytes",
    "rabbitmq_queue_messages_ready_bytes",
    "rabbitmq_queue_messages_unacked_bytes",
    "rabbitmq_queue_messages_ram",
    "rabbitmq_queue_messages_ram_bytes",
    "rabbitmq_queue_messages_ready_ram",
    "rabbitmq_queue_messages_unacked_ram",
    "rabbitmq_queue_messages_persistent",
    "rabbitmq_queue_messages_persistent_bytes",
    "rabbitmq_queue_messages_paged_out",
    "rabbitmq_queue_messages_paged_out_bytes",
    "rabbitmq_queue_consumers",
)


def test_per_queue_sizes_are_rabbitmqs_for_the_same_traffic(node: Node) -> None:
    ours, rabbit = parse(node.scrape("/metrics/per-object")), recorded("per-object.txt")
    for name in QUEUE_FIGURES:
        mine, theirs = (
            {(ls["vhost"], ls["queue"]): v for ls, v in parsed.samples[name]} for parsed in (ours, rabbit)
        )
        assert mine == theirs, name
    # Memory is OtterMQ's estimate; a queue holding messages weighs more than an empty one.
    memory = {ls["queue"]: v for ls, v in ours.samples["rabbitmq_queue_process_memory_bytes"]}
    assert memory["prom.work"] > memory["prom.empty"] > 0
    # No timestamp property on the traffic's messages: NaN, as RabbitMQ writes it.
    heads = [v for _, v in ours.samples["rabbitmq_queue_head_message_timestamp"]]
    assert heads and all(v != v for v in heads)
    aggregated = parse(node.scrape("/metrics"))
    for name in QUEUE_FIGURES:
        assert aggregated.samples[name] == recorded("metrics.txt").samples[name], name


def _dead_letter_traffic(port: int) -> None:
    """Messages leaving queues with and without a dead-letter exchange, by each classic-queue reason.
    RabbitMQ 3.10.8 counted this traffic as DEAD_LETTERED (a private node, checked by hand)."""
    connection = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", port))
    try:
        ch = connection.channel()
        ch.exchange_declare("dl.x", "fanout")
        ch.queue_declare("dl.sink")
        ch.queue_bind("dl.sink", "dl.x")
        dlx = {"x-dead-letter-exchange": "dl.x"}
        for name, arguments in (
            ("dl.plain", {}),
            ("dl.dlx", dlx),
            ("dl.max", {"x-max-length": 1}),
            ("dl.maxdlx", {"x-max-length": 1, **dlx}),
            ("dl.ttl", {"x-message-ttl": 1}),
            ("dl.ttldlx", {"x-message-ttl": 1, **dlx}),
        ):
            ch.queue_declare(name, arguments=arguments)
        for name in ("dl.plain", "dl.dlx"):
            for _ in range(3):
                ch.basic_publish("", name, b"abc")
            for _ in range(3):
                method, _, _ = ch.basic_get(name)
                assert method is not None
                ch.basic_reject(method.delivery_tag, requeue=False)
        for name in ("dl.max", "dl.maxdlx"):
            for _ in range(4):
                ch.basic_publish("", name, b"abc")
        for name in ("dl.ttl", "dl.ttldlx"):
            for _ in range(5):
                ch.basic_publish("", name, b"abc")
        time.sleep(0.05)
        for name in ("dl.ttl", "dl.ttldlx"):
            assert ch.basic_get(name)[0] is None  # expired at the head
        assert ch.queue_declare("dl.sink", passive=True).method.message_count == 11
    finally:
        connection.close()


DEAD_LETTERED = {
    (reason, strategy): count
    for reason, count in (("expired", 5), ("maxlen", 3), ("rejected", 3))
    for strategy in ("at_most_once", "disabled")
}


def _dead_lettered(text: str) -> dict[tuple[str, str], float]:
    found: dict[tuple[str, str], float] = {}
    for name, samples in parse(text).samples.items():
        match = re.fullmatch(r"rabbitmq_global_messages_dead_lettered_(\w+)_total", name)
        if match is None:
            continue
        for labels, value in samples:
            assert labels["queue_type"] == CLASSIC, labels
            found[(match.group(1), labels["dead_letter_strategy"])] = value
    return found


def test_dead_lettered_messages_are_counted_by_reason_as_rabbitmqs(node: Node) -> None:
    before = _dead_lettered(node.scrape("/metrics"))
    assert set(before) == {*DEAD_LETTERED, ("delivery_limit", "at_most_once"), ("delivery_limit", "disabled")}
    _dead_letter_traffic(node.server.port)
    after = _dead_lettered(node.scrape("/metrics/per-object"))
    assert {key: after[key] - before[key] for key in after if after[key] != before[key]} == DEAD_LETTERED
