"""The management API's object fields and message rates, checked against RabbitMQ 3.10 with real traffic.

Strategy: tests/data/rabbitmq_3_10/fields.json holds what a private RabbitMQ 3.10.8 node answered after
the traffic of tools/record_management_fields.py (pika publishes, gets, a reject, API publish and get, a
consumer). One OtterMQ started for this module with its statistics interval lowered to 0.2 s gets the
same traffic; its answers must carry every key RabbitMQ's carry (recursively through objects and the
first element of lists of objects) except those listed in NOT_GIVEN with the reason, and the same
message counts. Further tests drive pika traffic for rates, `msg_rates_age` samples, API publishes and
gets, node figures and consumer fields.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pika
import pytest

from tests.integration.conftest import BrokerInfo
from tests.integration.test_http_api import _free_port, _wait_http, q, request
from tests.integration.test_raw import ServerProcess, ottermq_server
from tools.record_management_fields import responses, traffic

INTERVAL_MS = 200
INTERVAL = INTERVAL_MS / 1000
RABBIT_NODE = "fields@localhost"
NODE = "ottermq@localhost"
RECORDED: dict[str, Any] = json.loads(
    (Path(__file__).parents[1] / "data" / "rabbitmq_3_10" / "fields.json")
    .read_text()
    .replace(RABBIT_NODE, NODE)
)

ERLANG = "an Erlang process's figure: OtterMQ's objects are not processes"
PAGING = "classic queue paging internals (q1-q4, delta, RAM target, storage version): none here"
CHURN = "connection, channel and queue churn is not counted yet"
NOT_GIVEN: dict[str, dict[str, str]] = {
    "queue": {
        "garbage_collection": ERLANG,
        "reductions": ERLANG,
        "reductions_details": ERLANG,
        **{
            f"backing_queue_status.{name}": PAGING
            for name in (
                "delta",
                "q1",
                "q2",
                "q3",
                "q4",
                "target_ram_count",
                "version",
                "next_seq_id",
                "next_deliver_seq_id",
            )
        },
    },
    "channel": {"garbage_collection": ERLANG, "reductions": ERLANG, "reductions_details": ERLANG},
    "connection": {"garbage_collection": ERLANG, "reductions": ERLANG, "reductions_details": ERLANG},
    "exchange": {},
    "vhost": {},
    "nodes": {
        **{
            f"{name}{suffix}": CHURN
            for name in (
                "channel_closed",
                "channel_created",
                "connection_closed",
                "connection_created",
                "queue_created",
                "queue_declared",
                "queue_deleted",
            )
            for suffix in ("", "_details")
        },
        **{
            f"io_{name}{suffix}": "Erlang file_handle_cache figures (OtterMQ gives the bytes only)"
            for name in (
                "read_avg_time",
                "read_count",
                "reopen_count",
                "seek_avg_time",
                "seek_count",
                "sync_avg_time",
                "sync_count",
                "write_avg_time",
                "write_count",
            )
            for suffix in ("", "_details")
        },
        **{
            f"{name}{suffix}": "no Mnesia, message store or queue index: the log holds all three"
            for name in (
                "mnesia_disk_tx_count",
                "mnesia_ram_tx_count",
                "msg_store_read_count",
                "msg_store_write_count",
                "queue_index_read_count",
                "queue_index_write_count",
            )
            for suffix in ("", "_details")
        },
        "gc_bytes_reclaimed": "Python's collector does not report bytes reclaimed",
        "gc_bytes_reclaimed_details": "Python's collector does not report bytes reclaimed",
        "net_ticktime": "Erlang distribution: OtterMQ does not cluster",
        "metrics_gc_queue_length": "the management database's internals",
        "ra_open_file_metrics": "Ra (quorum queues) internals",
        "contexts[].cowboy_opts": "Cowboy's (RabbitMQ's HTTP server) options",
    },
    "overview": {
        "churn_rates": CHURN,
        "erlang_version": "no Erlang (python_version says the runtime)",
        "erlang_full_version": "no Erlang (python_version says the runtime)",
        "listeners[].socket_opts": "Erlang socket options",
        "release_series_support_status": "RabbitMQ's release series support",
        "message_stats.disk_reads": "message store I/O is not counted",
        "message_stats.disk_reads_details": "message store I/O is not counted",
        "message_stats.disk_writes": "message store I/O is not counted",
        "message_stats.disk_writes_details": "message store I/O is not counted",
    },
}


def pump(conn: pika.BlockingConnection, seconds: float) -> None:
    """Serve the connection's events for `seconds` (process_data_events returns at the first event)."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        conn.process_data_events(min(left, INTERVAL / 4))


def kind_of(key: str) -> str:
    """The NOT_GIVEN entry of a recorded response ("queue/samples" -> "queue", "channels" -> "channel")."""
    base = key.split("/")[0]
    return base if base in NOT_GIVEN else base.removesuffix("s")


def missing_keys(theirs: Any, ours: Any, path: str = "") -> list[str]:
    """Dotted paths of keys in `theirs` absent from `ours`, through objects and the first element of
    lists of objects."""
    missing: list[str] = []
    if isinstance(theirs, list) and theirs and isinstance(theirs[0], dict):
        if isinstance(ours, list) and ours and isinstance(ours[0], dict):
            return missing_keys(theirs[0], ours[0], path)
        return missing
    if not isinstance(theirs, dict) or not isinstance(ours, dict):
        return missing
    for name, value in theirs.items():
        if name not in ours:
            missing.append(path + name)
            continue
        inner = f"{path}{name}[]." if isinstance(value, list) else f"{path}{name}."
        missing.extend(missing_keys(value, ours[name], inner))
    return missing


class Fields:
    """The module's OtterMQ and its answers right after the recorded traffic."""

    def __init__(self, server: ServerProcess, http_port: int, answers: dict[str, Any]) -> None:
        self.server = server
        self.http_port = http_port
        self.answers = answers

    def amqp(self) -> pika.BlockingConnection:
        """A pika connection to the default vhost."""
        credentials = pika.PlainCredentials("guest", "guest")
        params = pika.ConnectionParameters("127.0.0.1", self.server.port, "/", credentials)
        return pika.BlockingConnection(params)

    def get(self, path: str, **kwargs: Any) -> Any:
        reply = request(self.http_port, "GET", path, **kwargs)
        assert reply.status == 200, (path, reply.status, reply.body)
        return reply.body


@pytest.fixture(scope="module")
def fields(tmp_path_factory: pytest.TempPathFactory, broker: BrokerInfo) -> Iterator[Fields]:
    if broker.external:
        pytest.skip("starts its own OtterMQ (the recorded RabbitMQ answers are the reference)")
    http_port = _free_port()
    env = {"OTTERMQ_COLLECT_STATISTICS_INTERVAL": str(INTERVAL_MS)}
    with ottermq_server(tmp_path_factory.mktemp("fields"), "--http-port", str(http_port), env=env) as server:
        _wait_http(server.log_path)
        conn = traffic(server.port, http_port)
        try:
            # A few samples, so that rates, samples and idle_since have something to show.
            pump(conn, 5 * INTERVAL)
            answers = responses(http_port)
            yield Fields(server, http_port, answers)
        finally:
            if conn.is_open:
                conn.close()


@pytest.mark.parametrize("key", sorted(k for k in RECORDED if not k.startswith("_")))
def test_every_rabbitmq_key_is_given_or_listed(fields: Fields, key: str) -> None:
    theirs, ours = RECORDED[key], fields.answers[key]
    assert ours["status"] == theirs["status"] == 200
    absent = missing_keys(theirs["body"], ours["body"])
    not_given = NOT_GIVEN[kind_of(key)]
    assert sorted(set(absent) - set(not_given)) == [], f"{key}: keys RabbitMQ gives and OtterMQ does not"


def all_paths(value: Any, path: str = "") -> set[str]:
    """Every key path of `value` as missing_keys names them."""
    if isinstance(value, list):
        return all_paths(value[0], path) if value and isinstance(value[0], dict) else set()
    if not isinstance(value, dict):
        return set()
    found: set[str] = set()
    for name, inner in value.items():
        found.add(path + name)
        found |= all_paths(inner, f"{path}{name}[]." if isinstance(inner, list) else f"{path}{name}.")
    return found


def test_not_given_lists_only_what_rabbitmq_gives() -> None:
    """Each NOT_GIVEN entry is a key some recorded RabbitMQ answer has (the list does not go stale)."""
    for kind, entries in NOT_GIVEN.items():
        given: set[str] = set()
        for key, theirs in RECORDED.items():
            if not key.startswith("_") and kind_of(key) == kind:
                given |= all_paths(theirs["body"])
        assert set(entries) <= given, (kind, sorted(set(entries) - given))


def details_shapes(value: Any, path: str = "") -> dict[str, frozenset[str]]:
    """The key set of every `<name>_details` object, by path."""
    if isinstance(value, list):
        return details_shapes(value[0], path) if value and isinstance(value[0], dict) else {}
    if not isinstance(value, dict):
        return {}
    found: dict[str, frozenset[str]] = {}
    for name, inner in value.items():
        if name.endswith("_details") and isinstance(inner, dict):
            found[path + name] = frozenset(inner)
        else:
            found.update(details_shapes(inner, f"{path}{name}."))
    return found


@pytest.mark.parametrize("key", sorted(k for k in RECORDED if not k.startswith("_")))
def test_details_carry_samples_exactly_when_rabbitmq_does(fields: Fields, key: str) -> None:
    """`{rate}` or `{rate, samples, avg, avg_rate}`, as the query asked, object by object (a vhost's
    lengths follow msg_rates_age, a queue's lengths_age, as RabbitMQ 3.10)."""
    theirs = details_shapes(RECORDED[key]["body"])
    ours = details_shapes(fields.answers[key]["body"])
    assert {p: ours[p] for p in theirs if p in ours} == {p: theirs[p] for p in theirs if p in ours}


def _counts(body: Any) -> dict[str, int]:
    row = body[0] if isinstance(body, list) else body
    return {k: v for k, v in row.get("message_stats", {}).items() if not k.endswith("_details")}


@pytest.mark.parametrize("key", ["queue", "queue/idle", "exchange", "vhost", "channel", "overview"])
def test_the_same_traffic_gives_rabbitmqs_counts(fields: Fields, key: str) -> None:
    theirs = _counts(RECORDED[key]["body"])
    if key == "overview":
        for name in ("disk_reads", "disk_writes"):
            theirs.pop(name)
    assert _counts(fields.answers[key]["body"]) == theirs


@pytest.mark.parametrize("key", ["queue", "queue/idle"])
def test_queue_figures_as_rabbitmqs(fields: Fields, key: str) -> None:
    names = (
        "messages",
        "messages_ready",
        "messages_unacknowledged",
        "message_bytes",
        "message_bytes_ready",
        "message_bytes_unacknowledged",
        "message_bytes_persistent",
        "messages_persistent",
        "head_message_timestamp",
        "consumers",
        "exclusive_consumer_tag",
        "single_active_consumer_tag",
        "state",
    )
    theirs, ours = RECORDED[key]["body"], fields.answers[key]["body"]
    assert {n: ours[n] for n in names} == {n: theirs[n] for n in names}
    assert ours["memory"] > ours["message_bytes"]
    # Nothing happened to these queues for several samples.
    assert "idle_since" in ours


def test_consumer_details_name_the_consumer(fields: Fields) -> None:
    (detail,) = fields.answers["queue"]["body"]["consumer_details"]
    (theirs,) = RECORDED["queue"]["body"]["consumer_details"]
    assert {k: detail[k] for k in ("consumer_tag", "prefetch_count", "ack_required", "queue", "active")} == {
        k: theirs[k] for k in ("consumer_tag", "prefetch_count", "ack_required", "queue", "active")
    }
    assert detail["channel_details"]["number"] == 2


def test_samples_as_asked(fields: Fields) -> None:
    # The newest sample's timestamp is the last whole second: it shows the traffic once a sample taken
    # after the traffic is older than that second.
    deadline = time.monotonic() + 3
    while True:
        body = fields.get("/api/queues/fields/busy?msg_rates_age=2&msg_rates_incr=1")
        details = body["message_stats"]["publish_details"]
        if details["samples"][0]["sample"] == 11 or time.monotonic() > deadline:
            break
        time.sleep(INTERVAL)
    assert set(details) == {"avg", "avg_rate", "rate", "samples"}
    stamps = [sample["timestamp"] for sample in details["samples"]]
    assert len(stamps) == 3 and stamps[0] % 1000 == 0
    assert stamps == [stamps[0], stamps[0] - 1000, stamps[0] - 2000]
    assert details["samples"][0]["sample"] == 11
    # A queue's lengths get samples with lengths_age/incr.
    assert body["messages_details"] == {"rate": 0.0}
    lengths = fields.get("/api/queues/fields/busy?lengths_age=2&lengths_incr=1")["messages_details"]
    assert len(lengths["samples"]) == 3 and lengths["samples"][0]["sample"] == 10
    assert fields.get("/api/queues/fields/busy")["message_stats"]["publish_details"] == {"rate": 0.0}


def test_rates_become_positive_under_pika_traffic(fields: Fields) -> None:
    """Publishing and consuming for more than two samples makes every object's rates positive."""
    conn = fields.amqp()
    try:
        ch = conn.channel()
        queue = ch.queue_declare("", exclusive=True).method.queue
        ch.basic_consume(queue, lambda c, m, p, b: c.basic_ack(m.delivery_tag))
        deadline = time.monotonic() + 40 * INTERVAL
        seen: dict[str, float] = {}
        while time.monotonic() < deadline:
            for _ in range(20):
                ch.basic_publish("", queue, b"x" * 100)
            conn.process_data_events(INTERVAL / 4)
            row = fields.get(f"/api/queues/%2F/{q(queue)}")
            stats = row.get("message_stats", {})
            seen["queue publish"] = stats.get("publish_details", {}).get("rate", 0.0)
            seen["queue deliver"] = stats.get("deliver_details", {}).get("rate", 0.0)
            seen["queue ack"] = stats.get("ack_details", {}).get("rate", 0.0)
            exchange = fields.get("/api/exchanges/%2F/amq.default").get("message_stats", {})
            seen["exchange publish_in"] = exchange.get("publish_in_details", {}).get("rate", 0.0)
            vhost = fields.get("/api/vhosts/%2F")
            seen["vhost publish"] = vhost["message_stats"]["publish_details"]["rate"]
            seen["vhost recv_oct"] = vhost["recv_oct_details"]["rate"]
            (channel,) = fields.get("/api/vhosts/%2F/channels")
            seen["channel publish"] = channel["message_stats"]["publish_details"]["rate"]
            (connection,) = fields.get("/api/vhosts/%2F/connections")
            seen["connection recv_oct"] = connection["recv_oct_details"]["rate"]
            seen["connection send_oct"] = connection["send_oct_details"]["rate"]
            overview = fields.get("/api/overview")
            seen["overview publish"] = overview["message_stats"]["publish_details"]["rate"]
            if all(rate > 0 for rate in seen.values()):
                break
        assert all(rate > 0 for rate in seen.values()), seen
    finally:
        conn.close()


def test_vhost_bytes_keep_ended_connections(fields: Fields) -> None:
    """A vhost's recv_oct and send_oct count its connections' bytes and do not go back when one ends."""
    fields.get("/api/vhosts/%2F")
    conn = fields.amqp()
    ch = conn.channel()
    for _ in range(20):
        ch.basic_publish("", "nowhere", b"y" * 1000)
    pump(conn, 3 * INTERVAL)  # sampled while open
    before = fields.get("/api/vhosts/%2F")
    assert before["recv_oct"] > 20_000
    conn.close()
    time.sleep(3 * INTERVAL)
    after = fields.get("/api/vhosts/%2F")
    assert after["recv_oct"] >= before["recv_oct"] and after["send_oct"] >= before["send_oct"]


def test_api_publishes_and_gets_are_counted(fields: Fields) -> None:
    port = fields.http_port
    name = "api-counted"
    assert request(port, "PUT", f"/api/queues/%2F/{name}", {"durable": False}).status == 201
    before = fields.get("/api/overview")["message_stats"]
    exchange_before = fields.get("/api/exchanges/%2F/amq.default").get("message_stats", {})
    for i in range(3):
        body = {"properties": {}, "routing_key": name, "payload": f"m{i}", "payload_encoding": "string"}
        assert request(port, "POST", "/api/exchanges/%2F/amq.default/publish", body).body == {"routed": True}
    gets = {"count": 5, "ackmode": "ack_requeue_true", "encoding": "auto"}
    assert len(request(port, "POST", f"/api/queues/%2F/{name}/get", gets).body) == 3
    gets["ackmode"] = "ack_requeue_false"
    assert all(m["redelivered"] for m in request(port, "POST", f"/api/queues/%2F/{name}/get", gets).body)
    stats = _counts(fields.get(f"/api/queues/%2F/{name}"))
    assert stats == {
        "publish": 3,
        "deliver": 0,
        "deliver_no_ack": 0,
        "get": 3,
        "get_no_ack": 3,
        "deliver_get": 6,
        "get_empty": 2,
        "redeliver": 3,
        "ack": 0,
    }
    exchange = fields.get("/api/exchanges/%2F/amq.default")["message_stats"]
    assert exchange["publish_in"] - exchange_before.get("publish_in", 0) == 3
    assert exchange["publish_out"] - exchange_before.get("publish_out", 0) == 3
    after = fields.get("/api/overview")["message_stats"]
    assert after["publish"] - before["publish"] == 3
    assert after["confirm"] - before["confirm"] == 3
    assert after["get"] - before["get"] == 3 and after["get_no_ack"] - before["get_no_ack"] == 3
    assert after["redeliver"] - before["redeliver"] == 3 and after["get_empty"] - before["get_empty"] == 2
    request(port, "DELETE", f"/api/queues/%2F/{name}")


def test_node_figures_are_real(fields: Fields) -> None:
    (node,) = fields.get("/api/nodes")
    assert node["os_pid"] == str(fields.server.proc.pid)
    assert 0 < node["fd_used"] <= node["fd_total"]
    # The process's descriptors as /proc lists them (HTTP connections come and go meanwhile).
    assert abs(node["fd_used"] - len(os.listdir(f"/proc/{fields.server.proc.pid}/fd"))) <= 8
    assert node["mem_used"] > 0 and node["mem_limit"] > 0 and node["mem_held"] >= 0
    assert node["disk_free"] > 0 and node["disk_free_limit"] == 50_000_000
    assert node["mem_alarm"] is False and node["disk_free_alarm"] is False
    assert node["sockets_used"] >= 1 and node["sockets_total"] > node["sockets_used"]
    assert node["proc_used"] >= 1 and node["proc_total"] > node["proc_used"]
    assert node["processors"] >= 1 and node["run_queue"] >= 0 and node["uptime"] > 0
    assert node["rates_mode"] == "basic" and node["partitions"] == []
    assert [int(c["port"]) for c in node["contexts"]] == [fields.http_port]
    assert node["db_dir"].endswith("data")
    assert set(node["mem_used_details"]) == {"rate"}
    # Confirmed persistent publishes were synced to the log: the kernel counted the bytes written.
    assert node["io_write_bytes"] > 0 and node["io_read_bytes"] >= 0


def test_exclusive_and_single_active_consumer_tags(fields: Fields) -> None:
    conn = fields.amqp()
    try:
        ch = conn.channel()
        excl = ch.queue_declare("tags-exclusive").method.queue
        sac = ch.queue_declare("tags-sac", arguments={"x-single-active-consumer": True}).method.queue
        ch.basic_consume(excl, lambda *a: None, exclusive=True, consumer_tag="only-me")
        ch.basic_consume(sac, lambda *a: None, consumer_tag="first")
        ch.basic_consume(sac, lambda *a: None, consumer_tag="second")
        conn.process_data_events(0.1)
        row = fields.get(f"/api/queues/%2F/{excl}")
        assert row["exclusive_consumer_tag"] == "only-me" and row["single_active_consumer_tag"] is None
        assert [c["consumer_tag"] for c in row["consumer_details"]] == ["only-me"]
        row = fields.get(f"/api/queues/%2F/{sac}")
        assert row["single_active_consumer_tag"] == "first" and row["exclusive_consumer_tag"] is None
        assert [c["consumer_tag"] for c in row["consumer_details"]] == ["first", "second"]
        assert row["consumer_utilisation"] == 1.0  # consumers attached and nothing waiting
        ch.queue_delete(excl)
        ch.queue_delete(sac)
    finally:
        conn.close()


def test_columns_without_message_figures_skip_them(fields: Fields) -> None:
    rows = fields.get("/api/queues/fields?columns=name,messages")
    assert rows == [{"name": "busy", "messages": 10}, {"name": "idle", "messages": 9}]


def test_consumer_utilisation_is_the_share_of_samples_the_queue_could_deliver(fields: Fields) -> None:
    conn = fields.amqp()
    try:
        ch = conn.channel()
        name = ch.queue_declare("utilisation").method.queue
        for _ in range(10):
            ch.basic_publish("", name, b"u")
        ch.basic_qos(prefetch_count=1)
        ch.basic_consume(name, lambda *a: None, consumer_tag="slow")  # takes one, never acks
        pump(conn, 4 * INTERVAL)
        assert fields.get(f"/api/queues/%2F/{name}")["consumer_utilisation"] == 0.0
        ch.basic_cancel("slow")
        ch.basic_consume(name, lambda *a: None, auto_ack=True)  # drains the queue and keeps up
        pump(conn, 4 * INTERVAL)
        utilisation = fields.get(f"/api/queues/%2F/{name}")["consumer_utilisation"]
        assert 0.0 < utilisation < 1.0  # a share of the samples: blocked before, able since
        ch.queue_delete(name)
    finally:
        conn.close()
