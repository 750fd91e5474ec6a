"""The management API of vhost limits, user limits and topic permissions, with RabbitMQ 3.10's shapes,
statuses and 400 reasons: /api/vhost-limits[/{vhost}[/{name}]], /api/user-limits[/{user}[/{name}]],
/api/topic-permissions[/{vhost}/{user}], /api/vhosts/{vhost}/topic-permissions,
/api/users/{user}/topic-permissions, the users' `limits` field and the definitions export.

Every answer here was first recorded from a RabbitMQ 3.10.8 node; the suite passes against RabbitMQ too
(OTTERMQ_TEST_URL, OTTERMQ_TEST_HTTP_PORT). Where RabbitMQ answers 500 (DELETE of a missing vhost's or
user's limit) OtterMQ answers 404, and its validation reasons are worded in JSON rather than as Erlang
terms: those asserts compare the words both share.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.conftest import BrokerInfo, Resources, unique
from tests.integration.test_http_api import q
from tests.integration.test_http_management import request
from tests.integration.test_policies import rabbitmqadmin

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def api(broker: BrokerInfo) -> Any:
    """request() bound to the broker's management port."""
    if broker.http_port is None:
        pytest.fail("the broker does not serve the management API")
    port = broker.http_port

    def call(method: str, path: str, body: Any = None, **kwargs: Any) -> Any:
        return request(port, method, path, body, **kwargs)

    return call


@pytest.fixture
def user(api: Any) -> Iterator[Any]:
    """make(tags, vhost="/" or None for no permissions) -> (name, password); deleted afterwards."""
    made: list[str] = []

    def make(tags: str, vhost: str | None = "/") -> tuple[str, str]:
        name, password = unique("lhm"), uuid.uuid4().hex
        assert api("PUT", f"/api/users/{q(name)}", {"password": password, "tags": tags}).status == 201
        made.append(name)
        if vhost is not None:
            perms = {"configure": ".*", "write": ".*", "read": ".*"}
            assert api("PUT", f"/api/permissions/{q(vhost)}/{q(name)}", perms).status == 201
        return name, password

    yield make
    for name in made:
        api("DELETE", f"/api/users/{q(name)}")


@pytest.fixture
def vhost(api: Any) -> Iterator[str]:
    name = unique("lh")
    assert api("PUT", f"/api/vhosts/{q(name)}").status == 201
    try:
        yield name
    finally:
        api("DELETE", f"/api/vhosts/{q(name)}")


@pytest.fixture
def bob(api: Any) -> Iterator[str]:
    """A user without tags, with permissions on "/"."""
    name = unique("lhu")
    assert api("PUT", f"/api/users/{q(name)}", {"password": uuid.uuid4().hex, "tags": ""}).status == 201
    try:
        yield name
    finally:
        api("DELETE", f"/api/users/{q(name)}")


def error(reply: Any) -> tuple[int, Any, Any]:
    return reply.status, reply.body["error"], reply.body["reason"]


NOT_FOUND = ("Object Not Found", "Not Found")


# -- vhost limits ----------------------------------------------------------------------------------------


def test_vhost_limits(api: Any, vhost: str) -> None:
    path = f"/api/vhost-limits/{q(vhost)}"
    assert api("GET", path).body == []
    assert api("PUT", f"{path}/max-connections", {"value": 3}).status == 204
    assert api("PUT", f"{path}/max-queues", {"value": 4}).status == 204
    row = {"vhost": vhost, "value": {"max-connections": 3, "max-queues": 4}}
    assert api("GET", path).body == [row]
    assert row in api("GET", "/api/vhost-limits").body
    # PUT replaces one limit and keeps the others.
    assert api("PUT", f"{path}/max-queues", {"value": 7}).status == 204
    assert api("GET", path).body == [{"vhost": vhost, "value": {"max-connections": 3, "max-queues": 7}}]
    assert api("DELETE", f"{path}/max-queues").status == 204
    assert api("DELETE", f"{path}/max-queues").status == 204  # absent: still 204
    assert api("GET", path).body == [{"vhost": vhost, "value": {"max-connections": 3}}]
    assert api("DELETE", f"{path}/max-connections").status == 204
    assert api("GET", path).body == []
    # RabbitMQ keeps listing the vhost here with "value": [] (its parameter stays, empty); OtterMQ drops it.
    assert all(not row["value"] for row in api("GET", "/api/vhost-limits").body if row["vhost"] == vhost)


def test_vhost_limit_refusals(api: Any, vhost: str) -> None:
    path = f"/api/vhost-limits/{q(vhost)}"
    status, kind, reason = error(api("PUT", f"{path}/max-queues", {"value": "x"}))
    assert (status, kind) == (400, "bad_request")
    assert reason.startswith("Validation failed\n\nmax-queues should be a")
    assert "actually was" in reason
    status, kind, reason = error(api("PUT", f"{path}/max-queues", {"value": 1.5}))
    assert (status, kind, reason.startswith("Validation failed\n\n"), "actually was 1.5" in reason) == (
        400,
        "bad_request",
        True,
        True,
    )
    status, kind, reason = error(api("PUT", f"{path}/max-channels", {"value": 1}))
    assert (status, kind) == (400, "bad_request")
    assert reason.startswith("Validation failed\n\n")
    assert "nrecognised terms" in reason
    assert "max-channels" in reason
    assert error(api("PUT", f"{path}/max-queues", {})) == (400, "bad_request", "[{key_missing,value}]")
    assert error(api("PUT", f"{path}/max-queues", {"valu": 3})) == (
        400,
        "bad_request",
        "[{key_missing,value}]",
    )
    missing = "/api/vhost-limits/no-such-vhost-here"
    assert error(api("PUT", f"{missing}/max-queues", {"value": 3})) == (404, "not_found", "vhost_not_found")
    assert error(api("GET", missing)) == (404, *NOT_FOUND)
    assert api("GET", f"{path}/max-queues").status == 405
    assert api("PUT", path, {"value": 3}).status == 405
    assert api("GET", path).body == []


def test_who_sees_and_changes_vhost_limits(api: Any, user: Any, vhost: str) -> None:
    assert api("PUT", f"/api/vhost-limits/{q(vhost)}/max-queues", {"value": 5}).status == 204
    row = {"vhost": vhost, "value": {"max-queues": 5}}
    # A management user sees the limits of the vhosts it may use, and nothing of the others.
    outsider = user("management", None)
    assert row not in api("GET", "/api/vhost-limits", auth=outsider).body
    assert error(api("GET", f"/api/vhost-limits/{q(vhost)}", auth=outsider)) == (
        401,
        "not_authorised",
        "User not authorised to access virtual host",
    )
    insider = user("management", vhost)
    assert row in api("GET", "/api/vhost-limits", auth=insider).body
    assert api("GET", f"/api/vhost-limits/{q(vhost)}", auth=insider).body == [row]
    assert row in api("GET", "/api/vhost-limits", auth=user("monitoring", None)).body
    reply = api("PUT", f"/api/vhost-limits/{q(vhost)}/max-queues", {"value": 7}, auth=insider)
    assert error(reply) == (401, "not_authorised", "Not administrator user")


# -- user limits ------------------------------------------------------------------------------------------


def test_user_limits(api: Any, bob: str) -> None:
    path = f"/api/user-limits/{q(bob)}"
    assert api("GET", path).body == []
    assert api("PUT", f"{path}/max-channels", {"value": 4}).status == 204
    assert api("PUT", f"{path}/max-connections", {"value": 2}).status == 204
    row = {"user": bob, "value": {"max-channels": 4, "max-connections": 2}}
    assert api("GET", path).body == [row]
    assert row in api("GET", "/api/user-limits").body
    assert api("GET", f"/api/users/{q(bob)}").body["limits"] == {"max-channels": 4, "max-connections": 2}
    listed = {u["name"]: u["limits"] for u in api("GET", "/api/users").body}
    assert listed[bob] == {"max-channels": 4, "max-connections": 2}
    assert api("DELETE", f"{path}/max-connections").status == 204
    assert api("DELETE", f"{path}/max-connections").status == 204
    assert api("GET", path).body == [{"user": bob, "value": {"max-channels": 4}}]
    assert api("DELETE", f"{path}/max-channels").status == 204
    assert api("GET", path).body == []
    assert api("GET", f"/api/users/{q(bob)}").body["limits"] == {}


def test_user_limit_refusals(api: Any, bob: str) -> None:
    path = f"/api/user-limits/{q(bob)}"
    status, kind, reason = error(api("PUT", f"{path}/max-connections", {"value": "x"}))
    assert (status, kind) == (400, "bad_request")
    assert reason.startswith("max-connections should be a")
    status, kind, reason = error(api("PUT", f"{path}/max-queues", {"value": 2}))
    assert (status, kind) == (400, "bad_request")
    assert reason.startswith("Unrecognised terms")
    assert "max-queues" in reason
    assert "in user-limits" in reason
    assert error(api("PUT", f"{path}/max-connections", {})) == (400, "bad_request", "[{key_missing,value}]")
    reply = api("PUT", "/api/user-limits/no-such-user-here/max-connections", {"value": 2})
    assert error(reply) == (400, "bad_request", ["no_such_user", "no-such-user-here"])
    assert error(api("GET", "/api/user-limits/no-such-user-here")) == (404, *NOT_FOUND)
    assert api("GET", f"{path}/max-channels").status == 405
    assert api("GET", path).body == []


def test_who_sees_and_changes_user_limits(api: Any, user: Any, bob: str) -> None:
    assert api("PUT", f"/api/user-limits/{q(bob)}/max-channels", {"value": 4}).status == 204
    row = {"user": bob, "value": {"max-channels": 4}}
    manager = user("management")
    assert row in api("GET", "/api/user-limits", auth=manager).body
    assert api("GET", f"/api/user-limits/{q(bob)}", auth=manager).body == [row]
    reply = api("PUT", f"/api/user-limits/{q(bob)}/max-channels", {"value": 9}, auth=manager)
    assert error(reply) == (401, "not_authorised", "Not administrator user")


# -- topic permissions ----------------------------------------------------------------------------------


def test_topic_permissions(api: Any, bob: str, vhost: str) -> None:
    path = f"/api/topic-permissions/{q(vhost)}/{q(bob)}"
    assert error(api("GET", path)) == (404, *NOT_FOUND)
    first = {"exchange": "amq.topic", "write": "^c", "read": "^c"}
    assert api("PUT", path, first).status == 201
    assert api("PUT", path, {**first, "write": "^d"}).status == 204
    assert api("PUT", path, {"exchange": "other", "write": "x", "read": "y"}).status == 204
    rows = [
        {"user": bob, "vhost": vhost, "exchange": "amq.topic", "write": "^d", "read": "^c"},
        {"user": bob, "vhost": vhost, "exchange": "other", "write": "x", "read": "y"},
    ]

    def key(row: dict[str, str]) -> str:
        return row["exchange"]

    assert sorted(api("GET", path).body, key=key) == rows
    every = api("GET", "/api/topic-permissions").body
    assert all(row in every for row in rows)
    assert sorted(api("GET", f"/api/vhosts/{q(vhost)}/topic-permissions").body, key=key) == rows
    assert sorted(api("GET", f"/api/users/{q(bob)}/topic-permissions").body, key=key) == rows
    assert api("DELETE", path).status == 204
    assert error(api("GET", path)) == (404, *NOT_FOUND)
    assert error(api("DELETE", path)) == (404, *NOT_FOUND)
    assert api("GET", f"/api/vhosts/{q(vhost)}/topic-permissions").body == []


def test_topic_permission_refusals(api: Any, user: Any, bob: str) -> None:
    path = f"/api/topic-permissions/%2F/{q(bob)}"
    reply = api("PUT", path, {"exchange": "x2", "write": "^d"})
    assert error(reply) == (400, "bad_request", "[{key_missing,read}]")
    reply = api("PUT", path, {"write": "^d", "read": "x"})
    assert error(reply) == (400, "bad_request", "[{key_missing,exchange}]")
    assert api("PUT", path, {"exchange": "x3", "write": "(", "read": "x"}).status == 400
    body = {"exchange": "x3", "write": "a", "read": "x"}
    reply = api("PUT", f"/api/topic-permissions/no-such-vhost-here/{q(bob)}", body)
    assert error(reply) == (400, "bad_request", "vhost_or_user_not_found")
    reply = api("PUT", "/api/topic-permissions/%2F/no-such-user-here", body)
    assert error(reply) == (400, "bad_request", "vhost_or_user_not_found")
    assert error(api("GET", f"/api/topic-permissions/no-such-vhost-here/{q(bob)}")) == (404, *NOT_FOUND)
    assert error(api("GET", "/api/topic-permissions/%2F/no-such-user-here")) == (404, *NOT_FOUND)
    assert error(api("GET", path)) == (404, *NOT_FOUND)
    # Only administrators read or change them.
    manager = user("management")
    for method, where in (
        ("GET", "/api/topic-permissions"),
        ("GET", path),
        ("GET", "/api/vhosts/%2F/topic-permissions"),
        ("PUT", path),
    ):
        reply = api(method, where, body if method == "PUT" else None, auth=manager)
        assert error(reply) == (401, "not_authorised", "Not administrator user"), (method, where)


def test_definitions_export_and_import(api: Any, bob: str, broker: BrokerInfo) -> None:
    assert api("PUT", f"/api/user-limits/{q(bob)}/max-channels", {"value": 4}).status == 204
    topic = {"exchange": "amq.topic", "write": "^a", "read": "^b"}
    assert api("PUT", f"/api/topic-permissions/%2F/{q(bob)}", topic).status == 201
    exported = api("GET", "/api/definitions").body
    (mine,) = [u for u in exported["users"] if u["name"] == bob]
    assert mine["limits"] == {"max-channels": 4}
    assert {"user": bob, "vhost": "/", **topic} in exported["topic_permissions"]
    # Importing merges a user's limits ({} clears nothing) and sets topic permissions.
    mine["limits"] = {"max-connections": 2}
    document = {
        "users": [mine],
        "topic_permissions": [{"user": bob, "vhost": "/", "exchange": "other", "write": "w", "read": "r"}],
    }
    assert api("POST", "/api/definitions", document).status == 204
    assert api("GET", f"/api/user-limits/{q(bob)}").body == [
        {"user": bob, "value": {"max-channels": 4, "max-connections": 2}}
    ]
    rows = api("GET", f"/api/topic-permissions/%2F/{q(bob)}").body
    assert sorted(row["exchange"] for row in rows) == ["amq.topic", "other"]
    mine["limits"] = {}
    assert api("POST", "/api/definitions", {"users": [mine]}).status == 204
    assert len(api("GET", f"/api/user-limits/{q(bob)}").body[0]["value"]) == 2
    bad = {"topic_permissions": [{"user": bob, "vhost": "/", "exchange": "x", "write": "(", "read": "r"}]}
    assert api("POST", "/api/definitions", bad).status == 400
    bad = {
        "topic_permissions": [
            {"user": "no-such-user-here", "vhost": "/", "exchange": "x", "write": "a", "read": "r"}
        ]
    }
    assert error(api("POST", "/api/definitions", bad))[:2] == (400, "bad_request")
    if broker.external:
        return  # RabbitMQ answers 500 for bad user limits in an import; OtterMQ a 400 with the reason
    mine["limits"] = {"max-connections": "x"}
    status, kind, reason = error(api("POST", "/api/definitions", {"users": [mine]}))
    assert (status, kind) == (400, "bad_request")
    assert "max-connections should be an integer" in reason


def test_rabbitmqadmin_declares_lists_and_deletes_vhost_limits(broker: BrokerInfo, vhost: str) -> None:
    declared = rabbitmqadmin(broker, "declare", "vhost_limit", f"vhost={vhost}", "name=max-queues", "value=5")
    assert (declared.returncode, declared.stdout) == (0, "vhost_limit declared\n"), declared.stderr
    listed = rabbitmqadmin(broker, "-f", "raw_json", "list", "vhost_limits")
    assert listed.returncode == 0, listed.stderr
    assert {"vhost": vhost, "value": {"max-queues": 5}} in json.loads(listed.stdout)
    table = rabbitmqadmin(broker, "list", "vhost_limits")
    assert any(vhost in line and '{"max-queues": 5}' in line for line in table.stdout.splitlines())
    deleted = rabbitmqadmin(broker, "delete", "vhost_limit", f"vhost={vhost}", "name=max-queues")
    assert (deleted.returncode, deleted.stdout) == (0, "vhost_limit deleted\n"), deleted.stderr
    listed = rabbitmqadmin(broker, "-f", "raw_json", "list", "vhost_limits")
    assert all(not row["value"] for row in json.loads(listed.stdout) if row["vhost"] == vhost)


def test_api_publishes_and_bindings_are_held_to_topic_permissions(
    api: Any, user: Any, resources: Resources
) -> None:
    name, password = user("management")
    auth = (name, password)
    topic = {"exchange": "amq.topic", "write": "^a\\.", "read": "^b\\."}
    assert api("PUT", f"/api/topic-permissions/%2F/{q(name)}", topic).status == 201
    path = "/api/exchanges/%2F/amq.topic/publish"
    message = {"properties": {}, "payload": "x", "payload_encoding": "string"}
    reply = api("POST", path, {**message, "routing_key": "b.x"}, auth=auth)
    assert error(reply) == (
        400,
        "bad_request",
        f"403 ACCESS_REFUSED - access to topic 'b.x' in exchange 'amq.topic' in vhost '/' "
        f"refused for user '{name}'",
    )
    reply = api("POST", path, {**message, "routing_key": "a.x"}, auth=auth)
    assert (reply.status, reply.body) == (200, {"routed": False})
    queue = resources.queue()
    assert api("PUT", f"/api/queues/%2F/{q(queue)}", {"auto_delete": False}, auth=auth).status == 201
    bindings = f"/api/bindings/%2F/e/amq.topic/q/{q(queue)}"
    reply = api("POST", bindings, {"routing_key": "a.x"}, auth=auth)
    assert error(reply) == (401, "not_authorised", "Access refused.")
    assert api("POST", bindings, {"routing_key": "b.x"}, auth=auth).status == 201
    reply = api("POST", "/api/bindings/%2F/e/amq.topic/e/amq.fanout", {"routing_key": "a.x"}, auth=auth)
    assert error(reply) == (401, "not_authorised", "Access refused.")
    assert api("DELETE", f"{bindings}/b.x", auth=auth).status == 204
