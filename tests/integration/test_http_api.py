"""The management HTTP API end to end: a real broker, real HTTP requests, pika on the AMQP side.

Strategy: every request goes over a fresh stdlib HTTP connection to the port the broker logged. What
AMQP does is checked through the API (counts, connections, metrics) and what the API does is checked
through AMQP (a queue it declares takes pika's publishes). Tests that need their own broker (an alarm
on, a non-loopback address) start one with `ottermq_server`.
"""

from __future__ import annotations

import base64
import http.client
import json
import random
import re
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pika
import pytest

from tests.integration.conftest import BrokerInfo, Resources, get_message, unique, wait_for
from tests.integration.test_raw import ottermq_server

_HTTP_LINE = re.compile(r"management API listening on http://[^\s/]+:(\d+)")
_LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*"'
_SAMPLE = re.compile(rf"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{{(?:{_LABEL},?)*\}})? (\S+)$")


class Reply:
    """One HTTP response: status, headers and the body (JSON-decoded when it is JSON)."""

    def __init__(self, status: int, headers: dict[str, str], raw: bytes) -> None:
        self.status = status
        self.headers = headers
        self.raw = raw
        self.body: Any = json.loads(raw) if raw and "json" in headers.get("content-type", "") else raw

    def __repr__(self) -> str:
        return f"Reply({self.status}, {self.raw[:200]!r})"


def request(
    port: int,
    method: str,
    path: str,
    body: Any = None,
    auth: tuple[str, str] | None = ("guest", "guest"),
    raw: bytes | None = None,
    host: str = "127.0.0.1",
) -> Reply:
    """One request on a fresh connection; `body` is sent as JSON, `raw` as is."""
    headers = {}
    if auth is not None:
        headers["Authorization"] = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    if data is not None:
        headers["Content-Type"] = "application/json"
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        conn.request(method, path, body=data, headers=headers)
        response = conn.getresponse()
        return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
    finally:
        conn.close()


def q(name: str) -> str:
    """A path segment, percent-encoded as RabbitMQ expects ("/" -> "%2F")."""
    return quote(name, safe="")


@pytest.fixture
def api(broker: BrokerInfo) -> Any:
    """request() bound to the broker's management port."""
    if broker.http_port is None:
        pytest.fail("the broker does not serve the management API")
    port = broker.http_port

    def call(method: str, path: str, body: Any = None, **kwargs: Any) -> Reply:
        return request(port, method, path, body, **kwargs)

    return call


@pytest.fixture
def user(api: Any) -> Iterator[Any]:
    """make(tags, vhost_permissions=True) -> (name, password): users deleted afterwards."""
    made: list[str] = []

    def make(tags: str, permissions: bool = True) -> tuple[str, str]:
        name, password = unique("u"), uuid.uuid4().hex
        assert api("PUT", f"/api/users/{q(name)}", {"password": password, "tags": tags}).status == 201
        if permissions:
            perms = {"configure": ".*", "write": ".*", "read": ".*"}
            assert api("PUT", f"/api/permissions/%2F/{q(name)}", perms).status == 201
        made.append(name)
        return name, password

    yield make
    for name in made:
        api("DELETE", f"/api/users/{q(name)}")


def ottermq_only(broker: BrokerInfo) -> None:
    if broker.external:
        pytest.skip("OtterMQ-specific")


# -- node ----------------------------------------------------------------------------------------------


def test_overview_counts_what_amqp_did(
    api: Any, broker: BrokerInfo, channel: Any, resources: Resources
) -> None:
    queue = resources.queue()
    channel.queue_declare(queue)
    for body in (b"a", b"b", b"c"):
        channel.basic_publish("", queue, body)
    channel.basic_consume(queue, lambda *a: None, auto_ack=False)
    channel.connection.process_data_events(time_limit=0.3)
    overview = api("GET", "/api/overview").body
    assert overview["product_name"] in ("OtterMQ", "RabbitMQ")
    for key in ("management_version", "rabbitmq_version", "product_version", "node", "listeners"):
        assert key in overview
    assert {"connections", "channels", "exchanges", "queues", "consumers"} <= set(overview["object_totals"])
    if not broker.external:  # RabbitMQ's statistics lag by up to 5 s
        assert overview["object_totals"]["connections"] >= 1
        assert overview["object_totals"]["consumers"] >= 1
    assert any(listener["protocol"] == "amqp" for listener in overview["listeners"])
    if not broker.external:
        totals = overview["queue_totals"]
        assert totals["messages_unacknowledged"] >= 3
        assert totals["messages"] == totals["messages_ready"] + totals["messages_unacknowledged"]


def test_nodes(api: Any, broker: BrokerInfo) -> None:
    nodes = api("GET", "/api/nodes").body
    assert len(nodes) == 1 and nodes[0]["running"] is True
    assert nodes[0]["mem_used"] > 0 and nodes[0]["mem_alarm"] is False
    assert api("GET", "/api/nodes/" + q(nodes[0]["name"])).body["name"] == nodes[0]["name"]
    if not broker.external:  # RabbitMQ 3.10 answers 500 here
        assert api("GET", "/api/nodes/nobody@nowhere").status == 404


def test_whoami_and_health(api: Any) -> None:
    assert api("GET", "/api/whoami").body == {"name": "guest", "tags": ["administrator"]}
    assert api("GET", "/api/health/checks/alarms").body == {"status": "ok"}
    assert api("GET", "/api/health/checks/local-alarms").body == {"status": "ok"}


def test_aliveness_test(api: Any) -> None:
    reply = api("GET", "/api/aliveness-test/%2F")
    assert (reply.status, reply.body) == (200, {"status": "ok"})
    assert api("GET", "/api/aliveness-test/no-such-vhost").status == 404


# -- auth -------------------------------------------------------------------------------------------------


def test_no_or_bad_credentials_get_401_with_the_realm(api: Any) -> None:
    for auth in (None, ("guest", "wrong"), ("nobody-" + uuid.uuid4().hex, "x")):
        reply = api("GET", "/api/overview", auth=auth)
        assert reply.status == 401
        assert reply.headers["www-authenticate"] == 'Basic realm="RabbitMQ Management"'
    garbled = api("GET", "/api/overview", auth=None, raw=None)
    assert garbled.status == 401


def test_tag_rules(api: Any, user: Any) -> None:
    plain = user("")
    assert api("GET", "/api/overview", auth=plain).body == {
        "error": "not_authorised",
        "reason": "Not management user",
    }
    manager = user("management")
    assert api("GET", "/api/overview", auth=manager).status == 200
    reply = api("GET", "/api/users", auth=manager)
    assert (reply.status, reply.body["reason"]) == (401, "Not administrator user")
    assert api("PUT", "/api/vhosts/" + q(unique("v")), {}, auth=manager).status == 401
    # A management user sees only the vhosts it has permissions in.
    stranger = user("management", permissions=False)
    assert api("GET", "/api/vhosts", auth=stranger).body == []
    assert api("GET", "/api/queues/%2F", auth=stranger).status == 401
    assert [v["name"] for v in api("GET", "/api/vhosts", auth=manager).body] == ["/"]
    # Resource operations follow the user's permission regexes, as over AMQP.
    narrow = user("management", permissions=False)
    perms = {"configure": "^mine-", "write": "^mine-", "read": "^mine-"}
    assert api("PUT", f"/api/permissions/%2F/{q(narrow[0])}", perms).status == 201
    mine, other = "mine-" + uuid.uuid4().hex, unique("q")
    assert api("PUT", f"/api/queues/%2F/{q(mine)}", {"durable": False}, auth=narrow).status == 201
    refused = api("PUT", f"/api/queues/%2F/{q(other)}", {"durable": False}, auth=narrow)
    assert refused.status == 401 and "refused" in refused.body["reason"]
    assert api("DELETE", f"/api/queues/%2F/{q(mine)}", auth=narrow).status == 204
    monitor = user("monitoring", permissions=False)
    assert "/" in [v["name"] for v in api("GET", "/api/vhosts", auth=monitor).body]


def test_guest_is_refused_from_a_non_loopback_address(tmp_path: Path, broker: BrokerInfo) -> None:
    ottermq_only(broker)
    address = _non_loopback_address()
    if address is None:
        pytest.skip("this machine has no non-loopback address")
    port = _free_port()
    with ottermq_server(tmp_path, "--host", "0.0.0.0", "--http-port", str(port)) as server:
        _wait_http(server.log_path)
        assert request(port, "GET", "/api/whoami").status == 200
        reply = request(port, "GET", "/api/whoami", host=address)
        assert reply.status == 401


# -- errors -------------------------------------------------------------------------------------------------


def test_errors_as_rabbitmq_sends_them(api: Any) -> None:
    not_found = {"error": "Object Not Found", "reason": "Not Found"}
    assert api("GET", "/api/queues/no-such-vhost").body == not_found
    assert api("GET", "/api/queues/%2F/" + q(unique("missing"))).body == not_found
    assert api("GET", "/api/no-such-thing").status == 404
    assert api("DELETE", "/api/queues/%2F/" + q(unique("missing"))).status == 404
    bad = api("PUT", "/api/queues/%2F/" + q(unique("q")), raw=b"{not json")
    assert (bad.status, bad.body) == (400, {"error": "bad_request", "reason": "not_json"})
    assert api("PATCH", "/api/queues").status == 405
    assert api("POST", "/api/overview").status == 405
    assert api("GET", "/api/queues/%ZZ").status == 400
    # OtterMQ: the path is not UTF-8; RabbitMQ: no such vhost.
    assert api("GET", "/api/queues/%FF%FE").status in (400, 404)


def test_oversize_body_is_refused(api: Any, broker: BrokerInfo) -> None:
    ottermq_only(broker)
    reply = api("PUT", "/api/queues/%2F/" + q(unique("q")), raw=b"{" + b" " * (1024 * 1024 + 10) + b"}")
    assert reply.status == 413


# -- vhosts, users, permissions ------------------------------------------------------------------------------


def test_vhost_user_permission_lifecycle(api: Any, broker: BrokerInfo) -> None:
    vhost, name, password = unique("v"), unique("u"), "pw-" + uuid.uuid4().hex
    assert api("PUT", f"/api/vhosts/{q(vhost)}", {}).status == 201
    try:
        assert api("PUT", f"/api/vhosts/{q(vhost)}", {}).status == 204
        assert api("GET", f"/api/vhosts/{q(vhost)}").body["name"] == vhost
        assert api("PUT", f"/api/users/{q(name)}", {"password": password, "tags": "management"}).status == 201
        assert api("GET", f"/api/users/{q(name)}").body["tags"] == ["management"]
        perms = {"configure": ".*", "write": ".*", "read": ".*"}
        assert api("PUT", f"/api/permissions/{q(vhost)}/{q(name)}", perms).status == 201
        assert {"user": name, "vhost": vhost, **perms} in api("GET", "/api/permissions").body
        params = pika.URLParameters(f"amqp://{name}:{password}@127.0.0.1:{broker.port}/{q(vhost)}")
        conn = pika.BlockingConnection(params)
        conn.close()
        assert api("DELETE", f"/api/permissions/{q(vhost)}/{q(name)}").status == 204
        assert api("GET", f"/api/permissions/{q(vhost)}/{q(name)}").status == 404
        assert api("PUT", f"/api/users/{q(name)}", {"tags": ["administrator"]}).status == 204
        assert api("GET", f"/api/users/{q(name)}").body["tags"] == ["administrator"]
        # A user without a password exists but cannot log in with one.
        nopass = unique("u")
        assert api("PUT", f"/api/users/{q(nopass)}", {"tags": ""}).status == 201
        assert api("GET", "/api/whoami", auth=(nopass, "")).status == 401
        assert api("DELETE", f"/api/users/{q(nopass)}").status == 204
    finally:
        assert api("DELETE", f"/api/users/{q(name)}").status == 204
        assert api("DELETE", f"/api/vhosts/{q(vhost)}").status == 204
    assert api("GET", f"/api/vhosts/{q(vhost)}").status == 404
    assert api("GET", f"/api/users/{q(name)}").status == 404
    assert api("DELETE", f"/api/vhosts/{q(vhost)}").status == 404


# -- queues -------------------------------------------------------------------------------------------------


def test_put_queue_is_used_over_amqp(
    api: Any, broker: BrokerInfo, channel: Any, resources: Resources
) -> None:
    queue = resources.queue()
    path = f"/api/queues/%2F/{q(queue)}"
    assert api("PUT", path, {"durable": True, "auto_delete": False, "arguments": {}}).status == 201
    assert api("PUT", path, {"durable": True, "arguments": {}}).status == 204
    refused = api("PUT", path, {"durable": False})
    assert refused.status == 400 and "inequivalent arg 'durable'" in refused.body["reason"]
    channel.queue_declare(queue, durable=True, passive=True)
    for body in (b"1", b"2"):
        channel.basic_publish("", queue, body, pika.BasicProperties(delivery_mode=2))
    method, _, body = get_message(channel, queue)
    assert body == b"1"  # left unacked

    def counted() -> bool:
        row = api("GET", path).body
        return bool(row.get("messages_ready") == 1 and row.get("messages_unacknowledged") == 1)

    wait_for(channel.connection, counted, what="queue counts")
    row = api("GET", path).body
    assert (row["name"], row["vhost"], row["durable"], row["auto_delete"], row["exclusive"]) == (
        queue,
        "/",
        True,
        False,
        False,
    )
    assert row["messages"] == 2
    if not broker.external:  # RabbitMQ adds these with its statistics
        assert (row["consumers"], row["state"], row["type"]) == (0, "running", "classic")
    assert any(r["name"] == queue for r in api("GET", "/api/queues").body)
    assert any(r["name"] == queue for r in api("GET", "/api/queues/%2F").body)
    channel.basic_ack(method.delivery_tag)
    assert api("DELETE", path + "?if-empty=true").status == 400
    assert api("DELETE", path + "/contents").status == 204
    assert channel.queue_declare(queue, passive=True).method.message_count == 0
    assert api("DELETE", path + "?if-empty=true").status == 204
    assert api("GET", path).status == 404


def test_get_messages(api: Any, channel: Any, resources: Resources) -> None:
    queue = resources.queue()
    channel.queue_declare(queue)
    channel.basic_publish("", queue, b"hello", pika.BasicProperties(content_type="text/plain"))
    channel.basic_publish("", queue, b"\xff\xfe")
    path = f"/api/queues/%2F/{q(queue)}/get"
    wait_for(channel.connection, lambda: api("GET", f"/api/queues/%2F/{q(queue)}").body.get("messages") == 2)
    peek = api("POST", path, {"count": 5, "ackmode": "ack_requeue_true", "encoding": "auto"}).body
    assert [m["payload"] for m in peek] == ["hello", base64.b64encode(b"\xff\xfe").decode()]
    assert [m["payload_encoding"] for m in peek] == ["string", "base64"]
    assert peek[0]["properties"]["content_type"] == "text/plain"
    taken = api("POST", path, {"count": 1, "ackmode": "ack_requeue_false", "encoding": "auto"}).body
    assert taken[0]["payload"] == "hello" and taken[0]["redelivered"] is True
    assert channel.queue_declare(queue, passive=True).method.message_count == 1
    assert api("POST", path, {"count": 1, "ackmode": "nonsense"}).status == 400


def test_get_reject_requeue_false_dead_letters(api: Any, channel: Any, resources: Resources) -> None:
    # RabbitMQ 3.10 gets with a manual ack and rejects without requeue: the queue's dead-letter exchange
    # takes the message, with reason "rejected" (checked on a 3.10.8 node).
    source, dead, dlx = resources.queue(), resources.queue(), resources.exchange()
    channel.exchange_declare(dlx, "fanout")
    channel.queue_declare(dead)
    channel.queue_bind(dead, dlx)
    channel.queue_declare(source, arguments={"x-dead-letter-exchange": dlx})
    channel.basic_publish("", source, b"hello")
    wait_for(channel.connection, lambda: api("GET", f"/api/queues/%2F/{q(source)}").body.get("messages") == 1)
    path = f"/api/queues/%2F/{q(source)}/get"
    taken = api("POST", path, {"count": 1, "ackmode": "reject_requeue_false", "encoding": "auto"}).body
    assert [m["payload"] for m in taken] == ["hello"]
    assert channel.queue_declare(source, passive=True).method.message_count == 0
    method, properties, body = get_message(channel, dead)
    assert body == b"hello"
    death = properties.headers["x-death"][0]
    assert (death["queue"], death["reason"], death["count"]) == (source, "rejected", 1)
    channel.basic_ack(method.delivery_tag)


# -- exchanges, bindings, publish -------------------------------------------------------------------------


def test_exchange_binding_and_publish(api: Any, channel: Any, resources: Resources) -> None:
    exchange, queue = resources.exchange(), resources.queue()
    assert api("PUT", f"/api/exchanges/%2F/{q(exchange)}", {"type": "topic", "durable": False}).status == 201
    assert api("GET", f"/api/exchanges/%2F/{q(exchange)}").body["type"] == "topic"
    assert api("PUT", f"/api/exchanges/%2F/{q(exchange)}", {"type": "direct", "durable": False}).status == 400
    assert api("PUT", f"/api/exchanges/%2F/{q(exchange)}", {"durable": False}).status == 400
    channel.queue_declare(queue)
    bind = api("POST", f"/api/bindings/%2F/e/{q(exchange)}/q/{q(queue)}", {"routing_key": "a.*"})
    assert bind.status == 201
    rows = api("GET", f"/api/bindings/%2F/e/{q(exchange)}/q/{q(queue)}").body
    assert [(r["source"], r["destination"], r["routing_key"]) for r in rows] == [(exchange, queue, "a.*")]
    assert any(r["source"] == exchange for r in api("GET", "/api/bindings/%2F").body)
    publish = f"/api/exchanges/%2F/{q(exchange)}/publish"
    message = {
        "properties": {"headers": {"k": "v"}},
        "routing_key": "a.b",
        "payload": "hi",
        "payload_encoding": "string",
    }
    assert api("POST", publish, message).body == {"routed": True}
    assert api("POST", publish, {**message, "routing_key": "b"}).body == {"routed": False}
    _, props, body = get_message(channel, queue, auto_ack=True)
    assert (body, props.headers) == (b"hi", {"k": "v"})
    default = api(
        "POST",
        "/api/exchanges/%2F/amq.default/publish",
        {"properties": {}, "routing_key": queue, "payload": "aGk=", "payload_encoding": "base64"},
    )
    assert default.body == {"routed": True}
    assert get_message(channel, queue, auto_ack=True)[2] == b"hi"
    missing = api("POST", f"/api/exchanges/%2F/{q(unique('x'))}/publish", message)
    assert missing.status == 400 and "404 NOT_FOUND - no exchange" in missing.body["reason"]  # as RabbitMQ
    assert api("DELETE", f"/api/exchanges/%2F/{q(exchange)}?if-unused=true").status == 400
    assert api("DELETE", f"/api/exchanges/%2F/{q(exchange)}").status == 204
    assert api("GET", f"/api/exchanges/%2F/{q(exchange)}").status == 404
    assert api("DELETE", "/api/exchanges/%2F/amq.direct").body == {
        "error": "not_authorised",
        "reason": "Access refused.",
    }


def test_binding_by_properties_key_and_listings(api: Any, channel: Any, resources: Resources) -> None:
    exchange, queue = resources.exchange(), resources.queue()
    assert api("PUT", f"/api/exchanges/%2F/{q(exchange)}", {"type": "direct", "durable": False}).status == 201
    channel.queue_declare(queue)
    pair = f"/api/bindings/%2F/e/{q(exchange)}/q/{q(queue)}"
    made = api("POST", pair, {"routing_key": "k1"})
    assert made.status == 201 and made.headers["location"].endswith("/k1")
    assert api("POST", pair, {"routing_key": "k2", "arguments": {"x": 1}}).status == 201
    keys = {r["routing_key"]: r["properties_key"] for r in api("GET", pair).body}
    assert keys["k1"] == "k1" and keys["k2"].startswith("k2~")
    assert api("GET", f"{pair}/k1").body["routing_key"] == "k1"
    assert {r["routing_key"] for r in api("GET", f"/api/queues/%2F/{q(queue)}/bindings").body} == {
        queue,
        "k1",
        "k2",
    }
    assert len(api("GET", f"/api/exchanges/%2F/{q(exchange)}/bindings/source").body) == 2
    assert api("DELETE", f"{pair}/{q(keys['k2'])}").status == 204
    assert api("DELETE", f"{pair}/k1").status == 204
    assert api("GET", pair).body == []
    assert api("DELETE", f"{pair}/k1").status == 404
    channel.basic_publish(exchange, "k1", b"x")
    assert channel.queue_declare(queue, passive=True).method.message_count == 0


def test_string_booleans_as_rabbitmqadmin_sends_them(api: Any, resources: Resources) -> None:
    queue = resources.queue()
    body = {"durable": "false", "auto_delete": "false", "arguments": {}}
    assert api("PUT", f"/api/queues/%2F/{q(queue)}", body).status == 201
    assert api("GET", f"/api/queues/%2F/{q(queue)}").body["durable"] is False
    assert api("PUT", f"/api/queues/%2F/{q(resources.queue())}", {"durable": "maybe"}).status == 400


def test_definitions_export(api: Any, resources: Resources) -> None:
    durable, transient = resources.queue(), resources.queue()
    assert api("PUT", f"/api/queues/%2F/{q(durable)}", {"durable": True}).status == 201
    assert api("PUT", f"/api/queues/%2F/{q(transient)}", {"durable": False}).status == 201
    exported = api("GET", "/api/definitions").body
    names = {row["name"] for row in exported["queues"]}
    assert {durable, transient} <= names
    assert any(user["name"] == "guest" for user in exported["users"])
    assert "/" in [vhost["name"] for vhost in exported["vhosts"]]


def test_api_changes_survive_a_restart(tmp_path: Path, broker: BrokerInfo) -> None:
    ottermq_only(broker)
    port = _free_port()
    name = unique("q")
    with ottermq_server(tmp_path, "--http-port", str(port)) as server:
        _wait_http(server.log_path)
        assert request(port, "PUT", f"/api/queues/%2F/{q(name)}", {"durable": True}).status == 201
        message = {"routing_key": name, "payload": "kept", "properties": {"delivery_mode": 2}}
        publish = request(port, "POST", "/api/exchanges/%2F/amq.default/publish", message)
        assert publish.body == {"routed": True}
        alice = {"password": "pw", "tags": "monitoring"}
        assert request(port, "PUT", "/api/users/alice", alice).status == 201
        server.proc.kill()  # no snapshot: what the API answered for must be in the log already
        server.proc.wait(5)
    with ottermq_server(tmp_path, "--http-port", str(port)) as server:
        _wait_http(server.log_path)
        assert request(port, "GET", f"/api/queues/%2F/{q(name)}").body["messages"] == 1
        assert request(port, "GET", "/api/whoami", auth=("alice", "pw")).body["tags"] == ["monitoring"]


def test_connections_channels_consumers(api: Any, broker: BrokerInfo, resources: Resources) -> None:
    queue = resources.queue()
    conn = pika.BlockingConnection(broker.params())
    try:
        ch = conn.channel()
        ch.queue_declare(queue)
        tag = ch.basic_consume(queue, lambda *a: None)
        conn.process_data_events(time_limit=0.2)

        def visible() -> bool:
            return any(c["consumer_tag"] == tag for c in api("GET", "/api/consumers").body)

        wait_for(conn, visible, what="the consumer in /api/consumers")
        consumer = next(c for c in api("GET", "/api/consumers").body if c["consumer_tag"] == tag)
        assert consumer["queue"] == {"name": queue, "vhost": "/"}
        assert consumer["ack_required"] is True
        if broker.external:
            return  # RabbitMQ fills channel details in with its statistics, up to 5 s later
        name = consumer["channel_details"]["connection_name"]
        connection = next(c for c in api("GET", "/api/connections").body if c["name"] == name)
        assert (connection["user"], connection["vhost"]) == ("guest", "/")
        assert connection["channels"] == 1
        channels = [c for c in api("GET", "/api/channels").body if c["connection_details"]["name"] == name]
        assert [c["consumer_count"] for c in channels] == [1]
    finally:
        conn.close()


# -- /metrics -----------------------------------------------------------------------------------------------


def parse_metrics(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of an exposition text; fails on a line that is neither a sample nor HELP/TYPE."""
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for line in text.splitlines():
        if line.startswith("# HELP ") or line.startswith("# TYPE "):
            continue
        match = _SAMPLE.match(line)
        assert match is not None, f"not a sample: {line!r}"
        labels = frozenset(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', match.group(2) or ""))
        samples[(match.group(1), labels)] = float(match.group(3))
    return samples


def test_metrics_match_what_amqp_did(
    api: Any, broker: BrokerInfo, channel: Any, resources: Resources
) -> None:
    ottermq_only(broker)
    queue = resources.queue()
    channel.queue_declare(queue)
    for _ in range(3):
        channel.basic_publish("", queue, b"m")
    get_message(channel, queue)  # one unacked
    reply = api("GET", "/metrics", auth=None)
    assert reply.status == 200 and reply.headers["content-type"].startswith("text/plain")
    samples = parse_metrics(reply.raw.decode())
    # Per queue on /metrics/per-object (as RabbitMQ's: /metrics sums them).
    samples.update(parse_metrics(api("GET", "/metrics/per-object", auth=None).raw.decode()))
    labels = frozenset({("vhost", "/"), ("queue", queue)})
    assert samples[("rabbitmq_queue_messages_ready", labels)] == 2
    assert samples[("rabbitmq_queue_messages_unacked", labels)] == 1
    assert samples[("rabbitmq_queue_messages", labels)] == 3
    assert samples[("rabbitmq_queue_consumers", labels)] == 0
    for name in ("rabbitmq_connections", "rabbitmq_channels", "rabbitmq_queues"):
        assert samples[(name, frozenset())] >= 1
    assert samples[("rabbitmq_alarms_memory_used_watermark", frozenset())] == 0
    assert samples[("rabbitmq_process_resident_memory_bytes", frozenset())] > 10_000_000
    assert samples[("ottermq_log_durable_lsn", frozenset())] >= 1


def test_health_checks_fail_while_an_alarm_is_on(tmp_path: Path, broker: BrokerInfo) -> None:
    ottermq_only(broker)
    port = _free_port()
    env = {"OTTERMQ_DISK_FREE_LIMIT": str(10**18)}
    with ottermq_server(tmp_path, "--http-port", str(port), env=env) as server:
        _wait_http(server.log_path)
        deadline = time.monotonic() + 10
        while (reply := request(port, "GET", "/api/health/checks/alarms")).status == 200:
            assert time.monotonic() < deadline, "the disk alarm never showed"
            time.sleep(0.1)
        assert reply.status == 503
        assert reply.body["status"] == "failed" and reply.body["alarms"][0]["resource"] == "disk space"
        assert request(port, "GET", "/api/health/checks/local-alarms").status == 503
        metrics = parse_metrics(request(port, "GET", "/metrics", auth=None).raw.decode())
        assert metrics[("rabbitmq_alarms_free_disk_space_watermark", frozenset())] == 1
        publish = {"routing_key": "x", "payload": "p", "properties": {}}
        assert request(port, "POST", "/api/exchanges/%2F/amq.default/publish", publish).status == 503


# -- hostile input ------------------------------------------------------------------------------------------


def test_garbage_on_the_http_port_leaves_amqp_working(
    api: Any, broker: BrokerInfo, channel: Any, resources: Resources
) -> None:
    ottermq_only(broker)
    assert broker.http_port is not None
    rng = random.Random(7)
    payloads = [bytes(rng.randrange(256) for _ in range(rng.randrange(1, 3000))) for _ in range(30)]
    payloads += [
        b"GET / HTTP/1.1\r\n" + b"X: " + b"a" * 200_000 + b"\r\n\r\n",
        b"GET /api/overview HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
        b"\r\n\r\n\r\n",
        b"GET /\x00 HTTP/1.1\r\n\r\n",
    ]
    for payload in payloads:
        with socket.create_connection(("127.0.0.1", broker.http_port), timeout=5) as sock:
            try:
                sock.sendall(payload)
                sock.shutdown(socket.SHUT_WR)
                while sock.recv(65536):
                    pass
            except OSError:
                pass  # the broker may close first; what matters is that it keeps serving
    queue = resources.queue()
    channel.queue_declare(queue)
    channel.basic_publish("", queue, b"still here")
    assert get_message(channel, queue, auto_ack=True)[2] == b"still here"
    assert api("GET", "/api/overview").status == 200


def test_keep_alive_serves_several_requests(broker: BrokerInfo) -> None:
    ottermq_only(broker)
    assert broker.http_port is not None
    conn = http.client.HTTPConnection("127.0.0.1", broker.http_port, timeout=5)
    auth = {"Authorization": "Basic " + base64.b64encode(b"guest:guest").decode()}
    try:
        for _ in range(3):
            conn.request("GET", "/api/whoami", headers=auth)
            response = conn.getresponse()
            assert response.status == 200 and json.loads(response.read())["name"] == "guest"
    finally:
        conn.close()


def test_web_page_is_served(broker: BrokerInfo) -> None:
    ottermq_only(broker)
    assert broker.http_port is not None
    reply = request(broker.http_port, "GET", "/", auth=None)
    assert reply.status == 200 and b'src="/ui/app.js"' in reply.raw
    assert reply.headers["content-type"].startswith("text/html")
    assert "frame-ancestors 'none'" in reply.headers["content-security-policy"]
    module = request(broker.http_port, "GET", "/ui/app.js", auth=None)
    assert module.status == 200 and module.headers["content-type"].startswith("text/javascript")
    style = request(broker.http_port, "GET", "/ui/app.css", auth=None)
    assert style.headers["content-type"].startswith("text/css")
    # Only the UI's own files: nothing else of the package or the disk.
    for path in ("/ui/nope.js", "/ui/..%2Fui.py", "/ui/%2E%2E%2F%2E%2E%2Fconfig.py", "/ui/ui.py"):
        assert request(broker.http_port, "GET", path, auth=None).status == 404, path


def test_a_scripts_401_has_no_basic_auth_challenge(broker: BrokerInfo) -> None:
    """The web UI's requests carry X-Requested-With: their 401 leaves out WWW-Authenticate, so the browser
    does not open its own login dialog over the UI's form; other clients still get the challenge."""
    ottermq_only(broker)
    assert broker.http_port is not None
    conn = http.client.HTTPConnection("127.0.0.1", broker.http_port, timeout=10)
    try:
        conn.request("GET", "/api/whoami", headers={"X-Requested-With": "XMLHttpRequest"})
        response = conn.getresponse()
        response.read()
        assert response.status == 401 and response.getheader("www-authenticate") is None
    finally:
        conn.close()
    plain = request(broker.http_port, "GET", "/api/whoami", auth=None)
    assert plain.status == 401 and plain.headers["www-authenticate"].startswith("Basic")


# -- helpers ----------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_http(log_path: Path) -> None:
    deadline = time.monotonic() + 10
    while not _HTTP_LINE.search(log_path.read_text(errors="replace")):
        assert time.monotonic() < deadline, "the management API did not start"
        time.sleep(0.05)


def _non_loopback_address() -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("10.255.255.255", 1))
            address: str = probe.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") else address
