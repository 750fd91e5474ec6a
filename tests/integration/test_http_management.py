"""The management API's operator endpoints, checked against RabbitMQ 3.10's recorded answers.

Strategy: tests/data/rabbitmq_3_10/management.json holds what a real RabbitMQ 3.10.8 answered to the same
requests (see its "_about"). Each test makes the same objects on the broker under test (in a vhost of its
own, so listings are deterministic), asks the same thing and compares: bodies exactly where they name
nothing node-specific, else their shape (same keys and JSON types, recursively). Covered: connection close
(plain HTTP and rabbitmqadmin, seen from the AMQP client), health checks, /api/auth, /api/extensions,
/api/cluster-name, /api/feature-flags, the query strings of lists (columns, sort, sort_reverse,
page/page_size with RabbitMQ's envelope and 400s, name/use_regex), the 400 for an unknown exchange type,
binding properties keys, and what a user tagged only `management` may read. The suite passes against
RabbitMQ itself too (OTTERMQ_TEST_URL, OTTERMQ_TEST_HTTP_PORT).
"""

from __future__ import annotations

import base64
import http.client
import json
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pika
import pytest

from tests.integration.conftest import BrokerInfo, unique
from tests.integration.test_http_api import Reply, _free_port, _wait_http, ottermq_only, q
from tests.integration.test_raw import ottermq_server

RECORDED: dict[str, Any] = json.loads(
    (Path(__file__).parents[1] / "data" / "rabbitmq_3_10" / "management.json").read_text()
)
LISTING_QUEUES = (
    "alpha",
    "beta",
    "gamma",
    "Delta",
    "epsilon",
    "orders.1",
    "orders.2",
    "orders.10",
    "zeta",
    "apple",
)


def request(
    port: int,
    method: str,
    path: str,
    body: Any = None,
    auth: tuple[str, str] | None = ("guest", "guest"),
    headers: dict[str, str] | None = None,
) -> Reply:
    """One request on a fresh connection, `body` as JSON, with extra `headers`."""
    sent = dict(headers or {})
    if auth is not None:
        sent["Authorization"] = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
    data = json.dumps(body).encode() if body is not None else None
    if data is not None:
        sent["Content-Type"] = "application/json"
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=data, headers=sent)
        response = conn.getresponse()
        return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
    finally:
        conn.close()


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
    """make(tags, vhost="/" or None for no permissions) -> (name, password); deleted afterwards."""
    made: list[str] = []

    def make(tags: str, vhost: str | None = "/") -> tuple[str, str]:
        name, password = unique("u"), uuid.uuid4().hex
        assert api("PUT", f"/api/users/{q(name)}", {"password": password, "tags": tags}).status == 201
        made.append(name)
        if vhost is not None:
            perms = {"configure": ".*", "write": ".*", "read": ".*"}
            assert api("PUT", f"/api/permissions/{q(vhost)}/{q(name)}", perms).status == 201
        return name, password

    yield make
    for name in made:
        api("DELETE", f"/api/users/{q(name)}")


def until(predicate: Any, timeout: float, what: str) -> None:
    """Poll `predicate` (RabbitMQ's listings lag by up to 5 s) until it holds; fail after `timeout` s."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s: {what}")
        time.sleep(0.1)


def recorded(key: str) -> tuple[int, Any]:
    entry = RECORDED[key]
    return entry["status"], entry["body"]


def shape(value: Any) -> Any:
    """Keys and JSON types, recursively (list items: the shape of the first)."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    if isinstance(value, bool) or value is None:
        return type(value).__name__
    if isinstance(value, int | float):
        return "number"
    return type(value).__name__


def same_as_recorded(reply: Any, key: str, exact: bool = True) -> None:
    status, body = recorded(key)
    assert reply.status == status, (key, reply)
    if exact:
        assert (reply.body or None) == body, key
    else:
        assert shape(reply.body) == shape(body), key


# -- connection close ------------------------------------------------------------------------------------


def _connection_name(api: Any, broker: BrokerInfo, user: str, vhost: str = "/") -> str:
    """The management name of `user`'s one connection (RabbitMQ lists connections up to 5 s late)."""
    found: list[str] = []

    def listed() -> bool:
        found[:] = [
            c["name"]
            for c in api("GET", "/api/connections").body
            if c["user"] == user and c["vhost"] == vhost
        ]
        return len(found) == 1

    until(listed, 10 if broker.external else 5, f"{user}'s connection is never listed")
    return found[0]


def _closed_with(connection: pika.BlockingConnection) -> tuple[int, str]:
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as closed:
        for _ in range(50):
            connection.process_data_events(time_limit=0.1)
    return closed.value.reply_code, closed.value.reply_text


@pytest.fixture
def user_connection(broker: BrokerInfo, api: Any, user: Any) -> Iterator[Any]:
    """open(tags, vhost="/") -> (credentials, pika connection) of a new user; closed afterwards."""
    opened: list[pika.BlockingConnection] = []

    def open_as(tags: str, vhost: str = "/") -> tuple[tuple[str, str], pika.BlockingConnection]:
        name, password = user(tags, vhost)
        credentials = pika.PlainCredentials(name, password)
        params = broker.params(credentials=credentials, virtual_host=vhost)
        connection = pika.BlockingConnection(params)
        connection.channel()
        opened.append(connection)
        return (name, password), connection

    yield open_as
    for connection in opened:
        if connection.is_open:
            try:
                connection.close()
            except pika.exceptions.AMQPError:
                pass  # closed by the broker meanwhile (what a test did)


def test_delete_connection_closes_it_with_the_reason_header(
    api: Any, broker: BrokerInfo, user_connection: Any
) -> None:
    (name, _), connection = user_connection("management")
    conn_name = _connection_name(api, broker, name)
    reply = api("DELETE", f"/api/connections/{q(conn_name)}", headers={"X-Reason": "maintenance window"})
    assert reply.status == 204
    assert _closed_with(connection) == tuple(RECORDED["connection/delete/amqp"])


@pytest.mark.parametrize(
    ("reason", "told"),
    [
        # The header travels as bytes: UTF-8 text reaches the client as sent.
        ("café".encode().decode("latin-1"), "CONNECTION_FORCED - café"),
        # A reply text is a short string: RabbitMQ cuts it to 255 bytes ending with "...".
        ("x" * 300, ("CONNECTION_FORCED - " + "x" * 300)[:252] + "..."),
    ],
)
def test_delete_connection_reason_text_as_rabbitmq(
    api: Any, broker: BrokerInfo, user_connection: Any, reason: str, told: str
) -> None:
    (name, _), connection = user_connection("")
    conn_name = _connection_name(api, broker, name)
    assert api("DELETE", f"/api/connections/{q(conn_name)}", headers={"X-Reason": reason}).status == 204
    assert _closed_with(connection) == (320, told)


def test_delete_connection_default_reason_and_404(api: Any, broker: BrokerInfo, user_connection: Any) -> None:
    (name, _), connection = user_connection("")
    conn_name = _connection_name(api, broker, name)
    assert api("DELETE", f"/api/connections/{q(conn_name)}").status == 204
    assert _closed_with(connection) == tuple(RECORDED["connection/delete-default-reason/amqp"])
    gone = api("DELETE", f"/api/connections/{q('127.0.0.1:1 -> 127.0.0.1:1')}")
    same_as_recorded(gone, "connection/delete-missing")


def test_users_close_only_their_own_connections(api: Any, broker: BrokerInfo, user_connection: Any) -> None:
    (owner, _), connection = user_connection("")
    monitor, _ = user_connection("monitoring")
    manager, _ = user_connection("management")
    conn_name = _connection_name(api, broker, owner)
    for who in (manager, monitor):
        refused = api("DELETE", f"/api/connections/{q(conn_name)}", auth=who)
        same_as_recorded(refused, "connection/delete-not-own")
    assert connection.is_open
    # Reading another user's connection: monitoring may, a management user may not (401, not 404).
    path = f"/api/connections/{q(conn_name)}"
    assert api("GET", path, auth=monitor).body["user"] == owner
    same_as_recorded(api("GET", path, auth=manager), "connection/delete-not-own")
    same_as_recorded(api("GET", path + "/channels", auth=manager), "connection/delete-not-own")
    until(lambda: len(api("GET", path + "/channels").body) == 1, 10, "the connection's channel is listed")
    mine = _connection_name(api, broker, manager[0])
    assert api("DELETE", f"/api/connections/{q(mine)}", auth=manager).status == 204


def test_rabbitmqadmin_close_connection(api: Any, broker: BrokerInfo, user_connection: Any) -> None:
    (name, _), connection = user_connection("")
    conn_name = _connection_name(api, broker, name)
    closed = rabbitmqadmin(broker, "close", "connection", f"name={conn_name}")
    assert closed.returncode == 0, closed.stderr
    assert "connection closed" in closed.stdout
    assert _closed_with(connection) == (320, "CONNECTION_FORCED - Closed via management plugin")


def rabbitmqadmin(broker: BrokerInfo, *argv: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("rabbitmqadmin")
    if binary is None:
        pytest.fail("rabbitmqadmin is not installed: tools/test_deps.sh (run by make test) installs it")
    command = [binary, "-H", "127.0.0.1", "-P", str(broker.http_port), "-u", "guest", "-p", "guest", *argv]
    return subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)


# -- health checks --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "check",
    [
        "virtual-hosts",
        "node-is-quorum-critical",
        "node-is-mirror-sync-critical",
        "alarms",
        "local-alarms",
        "protocol-listener/amqp091",
        "protocol-listener/http",
    ],
)
def test_health_checks_that_pass(api: Any, check: str) -> None:
    same_as_recorded(api("GET", f"/api/health/checks/{check}"), f"health/{check}")


def test_health_check_port_listener(api: Any, broker: BrokerInfo) -> None:
    reply = api("GET", f"/api/health/checks/port-listener/{broker.port}")
    assert (reply.status, reply.body) == (200, {"status": "ok", "port": broker.port})
    assert api("GET", f"/api/health/checks/port-listener/{broker.http_port}").status == 200
    unused = _free_port()
    missing = api("GET", f"/api/health/checks/port-listener/{unused}")
    same_as_recorded(missing, "health/port-listener/5999", exact=False)
    assert missing.body["missing"] == unused and broker.port in missing.body["ports"]
    same_as_recorded(api("GET", "/api/health/checks/port-listener/abc"), "health/port-listener/abc")


def test_health_check_protocol_listener_missing(api: Any) -> None:
    reply = api("GET", "/api/health/checks/protocol-listener/mqtt")
    same_as_recorded(reply, "health/protocol-listener/mqtt", exact=False)
    assert reply.body["missing"] == "mqtt" and {"amqp", "http"} <= set(reply.body["protocols"])


def test_healthchecks_node(api: Any) -> None:
    same_as_recorded(api("GET", "/api/healthchecks/node"), "healthchecks/node")


def test_health_checks_need_a_management_user(api: Any, user: Any) -> None:
    assert api("GET", "/api/health/checks/virtual-hosts", auth=None).status == 401
    assert api("GET", "/api/health/checks/alarms", auth=user("management")).status == 200


def test_alarm_health_checks_fail_as_rabbitmq(tmp_path: Path, broker: BrokerInfo) -> None:
    ottermq_only(broker)  # the recorded RabbitMQ answers were made with its disk alarm on
    port = _free_port()
    with ottermq_server(
        tmp_path, "--http-port", str(port), env={"OTTERMQ_DISK_FREE_LIMIT": str(10**18)}
    ) as server:
        _wait_http(server.log_path)
        deadline = time.monotonic() + 10
        while (reply := request(port, "GET", "/api/health/checks/alarms")).status == 200:
            assert time.monotonic() < deadline, "the disk alarm never showed"
            time.sleep(0.1)
        node = reply.body["alarms"][0]["node"]

        def as_recorded(key: str) -> Any:
            text = json.dumps(recorded(key)[1]).replace("mgmt@localhost", node)
            return json.loads(text)

        assert (reply.status, reply.body) == (503, as_recorded("health/alarms/failed"))
        local = request(port, "GET", "/api/health/checks/local-alarms")
        assert (local.status, local.body) == (503, as_recorded("health/local-alarms/failed"))
        old = request(port, "GET", "/api/healthchecks/node")
        assert (old.status, old.body) == (503, as_recorded("healthchecks/node/failed"))


# -- node facts ---------------------------------------------------------------------------------------------


def test_auth_needs_no_login(api: Any) -> None:
    same_as_recorded(api("GET", "/api/auth", auth=None), "auth")


def test_extensions(api: Any) -> None:
    reply = api("GET", "/api/extensions")
    assert reply.status == 200 and isinstance(reply.body, list)
    assert all(set(item) == {"javascript"} for item in reply.body)


def test_cluster_name_get_and_put(api: Any, user: Any) -> None:
    before = api("GET", "/api/cluster-name")
    same_as_recorded(before, "cluster-name", exact=False)
    try:
        same_as_recorded(api("PUT", "/api/cluster-name", {"name": "renamed"}), "cluster-name/put")
        same_as_recorded(api("GET", "/api/cluster-name"), "cluster-name/after-put")
        assert api("GET", "/api/overview").body["cluster_name"] == "renamed"
        same_as_recorded(api("PUT", "/api/cluster-name", {}), "cluster-name/put-missing")
        refused = api("PUT", "/api/cluster-name", {"name": "x"}, auth=user("management"))
        same_as_recorded(refused, "cluster-name/put-not-admin")
    finally:
        api("PUT", "/api/cluster-name", before.body)


def test_cluster_name_survives_a_restart(tmp_path: Path, broker: BrokerInfo) -> None:
    ottermq_only(broker)
    port = _free_port()
    with ottermq_server(tmp_path, "--http-port", str(port)) as server:
        _wait_http(server.log_path)
        assert request(port, "PUT", "/api/cluster-name", {"name": "kept"}).status == 204
    with ottermq_server(tmp_path, "--http-port", str(port)) as server:
        _wait_http(server.log_path)
        assert request(port, "GET", "/api/cluster-name").body == {"name": "kept"}


def test_feature_flags(api: Any, user: Any) -> None:
    reply = api("GET", "/api/feature-flags")
    same_as_recorded(reply, "feature-flags", exact=False)
    by_name = {flag["name"]: flag for flag in recorded("feature-flags")[1]}
    for flag in reply.body:  # each flag listed is RabbitMQ's, word for word
        assert flag == by_name[flag["name"]]
    same_as_recorded(api("GET", "/api/feature-flags", auth=user("management")), "feature-flags/not-admin")


# -- listings ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def listing_vhost(broker: BrokerInfo) -> Iterator[str]:
    """A vhost holding the recorded listing's queues (2 messages in beta, 1 in gamma)."""
    assert broker.http_port is not None
    port = broker.http_port
    vhost = unique("listing")
    assert request(port, "PUT", f"/api/vhosts/{q(vhost)}", {}).status == 201
    perms = {"configure": ".*", "write": ".*", "read": ".*"}
    request(port, "PUT", f"/api/permissions/{q(vhost)}/guest", perms)
    for name in LISTING_QUEUES:
        assert request(port, "PUT", f"/api/queues/{q(vhost)}/{q(name)}", {"durable": True}).status == 201
    for key in ("beta", "beta", "gamma"):
        body: dict[str, Any] = {
            "routing_key": key,
            "payload": "x",
            "payload_encoding": "string",
            "properties": {},
        }
        assert request(port, "POST", f"/api/exchanges/{q(vhost)}/amq.default/publish", body).body["routed"]

    def counted() -> bool:
        rows = request(port, "GET", f"/api/queues/{q(vhost)}?columns=name,messages").body
        return sum(row.get("messages", 0) for row in rows) == 3

    until(counted, 15, "the queue counts never showed the messages")
    yield vhost
    request(port, "DELETE", f"/api/vhosts/{q(vhost)}")


LISTING_QUERIES = [
    key.removeprefix("queues?")
    for key in RECORDED
    if key.startswith("queues?") and "columns=name,vhost" not in key
]


@pytest.mark.parametrize("query", LISTING_QUERIES)
def test_queue_listing_query_strings(api: Any, listing_vhost: str, query: str) -> None:
    same_as_recorded(api("GET", f"/api/queues/{q(listing_vhost)}?{query}"), f"queues?{query}")


def test_columns_of_one_queue(api: Any, listing_vhost: str) -> None:
    reply = api("GET", f"/api/queues/{q(listing_vhost)}/beta?columns=name,durable,message_stats.publish")
    status, body = recorded("queue?columns")
    assert reply.status == status
    # OtterMQ keeps no per-queue message_stats yet: the other columns must match.
    assert {k: v for k, v in reply.body.items() if k != "message_stats"} == {
        k: v for k, v in body.items() if k != "message_stats"
    }


def test_vhost_and_exchange_pages(api: Any, listing_vhost: str) -> None:
    vhosts = api("GET", "/api/vhosts?page=1&page_size=1&columns=name")
    same_as_recorded(vhosts, "vhosts?page", exact=False)
    assert vhosts.body["item_count"] == 1 and vhosts.body["page_count"] == vhosts.body["total_count"]
    exchanges = api("GET", f"/api/exchanges/{q(listing_vhost)}?page=1&page_size=2&columns=name,type")
    same_as_recorded(exchanges, "exchanges?page", exact=False)
    assert exchanges.body["items"] == recorded("exchanges?page")[1]["items"]  # "" first, then amq.direct
    assert exchanges.body["total_count"] >= 6


def test_connection_and_channel_pages(api: Any, broker: BrokerInfo, user_connection: Any) -> None:
    (name, _), _ = user_connection("")
    _connection_name(api, broker, name)
    reply = api("GET", "/api/connections?page=1&page_size=1&columns=user")
    same_as_recorded(reply, "connections?page", exact=False)
    assert reply.body["item_count"] == 1 and reply.body["total_count"] >= 1
    channels = api("GET", "/api/channels?page=1&page_size=500&columns=name")
    assert channels.status == 200 and channels.body["total_count"] >= 1
    assert api("GET", "/api/channels?page=0").status == 400


def test_lists_that_are_not_paged_still_take_columns_and_sort(api: Any) -> None:
    users = api("GET", "/api/users?page=1&columns=name&sort=name&sort_reverse=true")
    assert users.status == 200 and isinstance(users.body, list)
    names = [row["name"] for row in users.body]
    assert all(set(row) == {"name"} for row in users.body)
    assert names == sorted(names, key=lambda name: name.encode(), reverse=True)


# -- defects ----------------------------------------------------------------------------------------------


def test_unknown_exchange_type_is_400(api: Any) -> None:
    reply = api("PUT", f"/api/exchanges/%2F/{q(unique('x'))}", {"type": "nosuch"})
    same_as_recorded(reply, "exchange/unknown-type")


def test_exchange_type_empty_is_400_and_absent_is_direct(api: Any) -> None:
    empty = api("PUT", f"/api/exchanges/%2F/{q(unique('x'))}", {"type": ""})
    assert (empty.status, empty.body) == (400, {"error": "bad_request", "reason": "invalid exchange type ''"})
    name = unique("x")
    assert api("PUT", f"/api/exchanges/%2F/{q(name)}", {"durable": False}).status == 201
    assert api("GET", f"/api/exchanges/%2F/{q(name)}?columns=type").body == {"type": "direct"}
    api("DELETE", f"/api/exchanges/%2F/{q(name)}")


def test_unknown_exchange_type_through_rabbitmqadmin(broker: BrokerInfo) -> None:
    declared = rabbitmqadmin(broker, "declare", "exchange", f"name={unique('x')}", "type=nosuch")
    assert declared.returncode != 0
    assert "unknown exchange type 'nosuch'" in declared.stderr + declared.stdout
    assert "Traceback" not in declared.stderr


def test_properties_key_encoding(api: Any, listing_vhost: str) -> None:
    vhost = q(listing_vhost)
    exchange = unique("tx")
    assert api("PUT", f"/api/exchanges/{vhost}/{exchange}", {"type": "topic", "durable": False}).status == 201
    expected = {
        row["routing_key"]: row["properties_key"]
        for row in recorded("bindings?properties_key")[1]
        # The recording's other binding with arguments (empty routing key) had arguments not recorded.
        if row["properties_key"] != "~OfANRw"
    }
    arguments = {"k": {"x-a": 1}}  # the recording's "k~ZKgNZg"
    pair = f"/api/bindings/{vhost}/e/{exchange}/q/alpha"
    for routing_key in expected:
        created = api("POST", pair, {"routing_key": routing_key, "arguments": arguments.get(routing_key, {})})
        assert created.status == 201
    rows = api("GET", pair + "?columns=routing_key,properties_key").body
    assert {row["routing_key"]: row["properties_key"] for row in rows} == expected
    # The key names the binding in paths, as rabbitmqadmin and the UI use it.
    hashed = q(expected["#"])
    assert api("GET", f"{pair}/{hashed}").body["routing_key"] == "#"
    assert api("DELETE", f"{pair}/{hashed}").status == 204
    assert api("DELETE", f"{pair}/k~ZKgNZg").status == 204
    with_arguments = api("POST", pair, {"routing_key": "k", "arguments": {"x-a": 1}})
    assert with_arguments.headers["location"].rsplit("/", 1)[1] == "k~ZKgNZg"
    api("DELETE", f"/api/exchanges/{vhost}/{exchange}")


# Bindings of amq.headers to one queue and the properties_key RabbitMQ 3.10.8 gave each (a private node):
# through the API (integers are `long` there) and through AMQP with pika (which sends 1 as a signed
# 32-bit 'I', 3000000000 as 'l'); the arguments' types are part of the hash.
HTTP_KEYS = {
    "h1": ({"k": "v"}, "h1~8IXMRA"),
    "h2": ({"x-match": "all", "a": "1"}, "h2~CHJYCA"),
    "h3": ({"k": 1}, "h3~DJ-ruQ"),
    "h4": ({"k": True}, "h4~NXOA7w"),
}
AMQP_KEYS = {
    "r": ({"x-match": "any", "b": 1, "a": "s"}, "r~foKFJg"),
    "r2": ({"k": "v"}, "r2~8IXMRA"),
    "r3": ({"k": 1}, "r3~OSXQ1A"),
    "r4": ({"k": 3000000000}, "r4~X0rMOA"),
    "r5": ({"l": [1, "x"], "m": {"n": True}}, "r5~6KgGrA"),
}


def test_properties_keys_with_arguments_are_rabbitmqs(api: Any, broker: BrokerInfo) -> None:
    queue = unique("pk")
    connection = pika.BlockingConnection(pika.ConnectionParameters(broker.host, broker.port))
    try:
        channel = connection.channel()
        channel.queue_declare(queue, auto_delete=True)
        for routing_key, (arguments, _) in AMQP_KEYS.items():
            channel.queue_bind(queue, "amq.headers", routing_key, arguments=arguments)
        pair = f"/api/bindings/%2F/e/amq.headers/q/{queue}"
        for routing_key, (arguments, key) in HTTP_KEYS.items():
            created = api("POST", pair, {"routing_key": routing_key, "arguments": arguments})
            assert created.headers["location"] == f"{queue}/{q(key)}"
        rows = api("GET", pair + "?columns=routing_key,properties_key").body
        expected = {rk: key for rk, (_, key) in (AMQP_KEYS | HTTP_KEYS).items()}
        assert {row["routing_key"]: row["properties_key"] for row in rows} == expected
        for key in expected.values():  # each names its binding, as rabbitmqadmin and the UI use it
            assert api("DELETE", f"{pair}/{q(key)}").status == 204
        assert api("GET", pair).body == []
    finally:
        connection.close()


def test_management_user_cannot_read_nodes(api: Any, user: Any) -> None:
    same_as_recorded(api("GET", "/api/nodes", auth=user("management")), "nodes/management-user")
    assert api("GET", "/api/nodes", auth=user("policymaker")).status == 401
    monitor = api("GET", "/api/nodes?columns=name,running", auth=user("monitoring"))
    same_as_recorded(monitor, "nodes/monitoring-user", exact=False)


def test_management_user_overview_counts_only_what_it_sees(
    api: Any, broker: BrokerInfo, user_connection: Any, listing_vhost: str
) -> None:
    # Permissions on the listing vhost only: its 10 queues and 3 messages, not those of "/".
    (name, password), _ = user_connection("management", listing_vhost)
    _connection_name(api, broker, name, listing_vhost)
    other, _ = user_connection("")  # someone else's connection, which it must not count
    _connection_name(api, broker, other[0])
    reply = api("GET", "/api/overview?columns=object_totals,queue_totals", auth=(name, password))
    assert reply.status == 200
    # RabbitMQ leaves "consumers" out for such a user; queue_totals' *_details (rates) are not compared.
    expected = recorded("overview/management-user")[1]
    assert shape(reply.body["object_totals"]) == shape(expected["object_totals"])
    totals = reply.body["object_totals"]
    assert (totals["connections"], totals["channels"], totals["queues"]) == (1, 1, 10)
    assert reply.body["queue_totals"]["messages"] == 3
    admin = api("GET", "/api/overview?columns=object_totals,queue_totals").body
    assert shape(admin["object_totals"]) == shape(recorded("overview/administrator")[1]["object_totals"])
    assert admin["object_totals"]["connections"] >= 2


def test_a_vhost_made_over_http_grants_its_creator_everything(api: Any) -> None:
    """As RabbitMQ 3.10 (maybe_grant_full_permissions): the creator can use the new vhost at once, and a
    PUT of an existing vhost grants nothing."""
    vhost = unique("granted")
    assert api("PUT", f"/api/vhosts/{vhost}", {}).status == 201
    try:
        granted = api("GET", f"/api/permissions/{vhost}/guest").body
        assert granted == {"user": "guest", "vhost": vhost, "configure": ".*", "write": ".*", "read": ".*"}
        assert api("PUT", f"/api/queues/{vhost}/q", {"durable": False}).status == 201
        assert api("DELETE", f"/api/permissions/{vhost}/guest").status == 204
        assert api("PUT", f"/api/vhosts/{vhost}", {}).status == 204
        assert api("GET", f"/api/permissions/{vhost}/guest").status == 404
    finally:
        api("DELETE", f"/api/vhosts/{vhost}")
