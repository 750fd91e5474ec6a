"""Policies and operator policies, as RabbitMQ 3.10 applies them: a real broker, pika on the AMQP side,
plain HTTP, `ottermq ctl` and rabbitmqadmin on the management side.

Strategy: each test names its own queues (`unique`) and policies whose patterns match only those, so
tests share the session's broker; a fixture removes the policies a test set. What a policy does is
checked through AMQP (messages that expire, a head that is dropped and dead-lettered, an unroutable
message that reaches an alternate exchange), what it says through the API (`policy`, `operator_policy`,
`effective_policy_definition`). The validation texts are RabbitMQ 3.10.8's, recorded from a real node
(`RABBITMQ_REASONS`). Everything but `ottermq ctl` and the restarts runs against RabbitMQ as well
(OTTERMQ_TEST_URL, OTTERMQ_TEST_HTTP_PORT); RabbitMQ's API shows a queue's policy fields up to 5 s late,
so they are polled.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pika
import pytest
from typer.testing import CliRunner

from ottermq.cli import app
from tests.integration.conftest import BrokerInfo, Resources, unique
from tests.integration.test_http_api import Reply, q, request
from tests.integration.test_restart import Node, running_node

pytestmark = pytest.mark.timeout(60)

# (body, the 400's reason) as RabbitMQ 3.10.8 answers PUT /api/policies/%2F/NAME (recorded).
RABBITMQ_REASONS: list[tuple[dict[str, Any], str]] = [
    (
        {"pattern": "(", "definition": {"message-ttl": 1}},
        'Validation failed\n\npattern should be regular expression but is invalid: {"missing )",1}\n',
    ),
    (
        {"pattern": ")", "definition": {"max-length": 1}},
        "Validation failed\n\npattern should be regular expression but is invalid: "
        '{"unmatched parentheses",\n' + " " * 54 + "0}\n",
    ),
    (
        {"pattern": "*", "definition": {"max-length": 1}},
        'Validation failed\n\npattern should be regular expression but is invalid: {"nothing to repeat",0}\n',
    ),
    (
        {"pattern": "^a", "definition": {"message-ttl": -1}},
        "Validation failed\n\n-1 is not a valid message TTL\n",
    ),
    (
        {"pattern": "^a", "definition": {"message-ttl": "x"}},
        'Validation failed\n\n&lt;&lt;"x"&gt;&gt; is not a valid message TTL\n',
    ),
    ({"pattern": "^a", "definition": {}}, "Validation failed\n\nno policy provided\n"),
    (
        {"pattern": "^a", "definition": {"max-length": 1}, "apply-to": "classic_queues"},
        "Validation failed\n\napply-to 'classic_queues' unrecognised; "
        "should be 'queues', 'exchanges' or 'all'\n",
    ),
    (
        {"pattern": "^a", "definition": {"max-length": 1}, "priority": "x"},
        'Validation failed\n\npriority should be a number, actually was &lt;&lt;"x"&gt;&gt;\n',
    ),
    (
        {"pattern": "^a", "definition": {"max-length": 1}, "priority": None},
        "Validation failed\n\npriority should be a number, actually was null\n",
    ),
    ({"definition": {"max-length": 1}}, "[{key_missing,pattern}]"),
    ({"pattern": "^a"}, "[{key_missing,definition}]"),
    (
        {"pattern": "^a", "definition": {"consumer-timeout": 1000}},
        'Validation failed\n\n[{&lt;&lt;"consumer-timeout"&gt;&gt;,1000}] '
        "are not recognised policy settings\n",
    ),
    (
        {"pattern": "^a", "definition": {"max-priority": 5}},
        'Validation failed\n\n[{&lt;&lt;"max-priority"&gt;&gt;,5}] are not recognised policy settings\n',
    ),
    ({"pattern": "^a", "definition": {"expires": 0}}, "Validation failed\n\n0 is not a valid queue expiry\n"),
    (
        {"pattern": "^a", "definition": {"foo": 1, "max-length": -1}},
        "Validation failed\n\n-1 is not a valid maximum length\n",
    ),
    (
        {"pattern": "^a", "definition": {"foo": 1, "bar": "x"}},
        'Validation failed\n\n[{&lt;&lt;"bar"&gt;&gt;,&lt;&lt;"x"&gt;&gt;},{&lt;&lt;"foo"&gt;&gt;,1}] '
        "are not recognised policy settings\n",
    ),
    (
        {"pattern": "^a", "definition": {"max-length": 1.5}},
        "Validation failed\n\n1.5 is not a valid maximum length\n",
    ),
    (
        {"pattern": "^a", "definition": {"dead-letter-exchange": 5}},
        "Validation failed\n\n5 is not a valid dead letter exchange name\n",
    ),
    (
        {"pattern": "^a", "definition": {"overflow": "x"}},
        'Validation failed\n\n&lt;&lt;"x"&gt;&gt; is not a valid overflow value\n',
    ),
    (
        {"pattern": "^a", "definition": {"ha-mode": "bogus"}},
        'Validation failed\n\n&lt;&lt;"bogus"&gt;&gt; is not a valid ha-mode value\n',
    ),
    (
        {"pattern": 1, "definition": {"max-length": 1}},
        "Validation failed\n\npattern should be a binary but was 1\n",
    ),
    (
        {"pattern": "(", "definition": {"foo": 1}, "priority": "x", "apply-to": "bad"},
        'Validation failed\n\n[{&lt;&lt;"foo"&gt;&gt;,1}] are not recognised policy settings\n'
        "apply-to 'bad' unrecognised; should be 'queues', 'exchanges' or 'all'\n"
        'pattern should be regular expression but is invalid: {"missing )",1}\n'
        'priority should be a number, actually was &lt;&lt;"x"&gt;&gt;\n',
    ),
]


class Policies:
    """Sets policies over HTTP and removes them at teardown."""

    def __init__(self, broker: BrokerInfo) -> None:
        assert broker.http_port is not None, "the management API is not served"
        self.port = broker.http_port
        self.made: set[tuple[str, str]] = set()

    def api(self, method: str, path: str, body: Any = None, **kwargs: Any) -> Reply:
        return request(self.port, method, path, body, **kwargs)

    def set(self, name: str, body: dict[str, Any], operator: bool = False) -> Reply:
        kind = "operator-policies" if operator else "policies"
        reply = self.api("PUT", f"/api/{kind}/%2F/{q(name)}", body)
        if reply.status in (201, 204):
            self.made.add((kind, name))
        return reply

    def clear(self, name: str, operator: bool = False) -> Reply:
        kind = "operator-policies" if operator else "policies"
        self.made.discard((kind, name))
        return self.api("DELETE", f"/api/{kind}/%2F/{q(name)}")

    def queue(self, name: str, timeout: float = 10.0, until: Callable[[Any], bool] | None = None) -> Any:
        """GET the queue, polled until `until(row)` holds (RabbitMQ's stats lag)."""
        deadline = time.monotonic() + timeout
        while True:
            row = self.api("GET", f"/api/queues/%2F/{q(name)}").body
            # RabbitMQ shows a new queue's policy fields once its first stats arrive.
            ready = "policy" in row and (until is None or until(row))
            if ready or time.monotonic() > deadline:
                return row
            time.sleep(0.2)

    def cleanup(self) -> None:
        for kind, name in self.made:
            self.api("DELETE", f"/api/{kind}/%2F/{q(name)}")


@pytest.fixture
def policies(broker: BrokerInfo) -> Iterator[Policies]:
    made = Policies(broker)
    try:
        yield made
    finally:
        made.cleanup()


def exact(name: str) -> str:
    """A pattern matching `name` only."""
    return "^" + re.escape(name) + "$"


def count(channel: Any, queue: str) -> int:
    return int(channel.queue_declare(queue, passive=True).method.message_count)


def settle(channel: Any, queue: str, expected: int, timeout: float = 5.0) -> int:
    """The queue's ready count once it is `expected` (publishes and policy changes are asynchronous)."""
    deadline = time.monotonic() + timeout
    while (found := count(channel, queue)) != expected and time.monotonic() < deadline:
        channel.connection.process_data_events(time_limit=0.05)
    return found


def bodies(channel: Any, queue: str) -> list[bytes]:
    out: list[bytes] = []
    while True:
        method, _props, body = channel.basic_get(queue, auto_ack=True)
        if method is None:
            return out
        out.append(body)


# -- what a policy does to queues and exchanges that exist ----------------------------------------------


def test_message_ttl_policy_applies_to_an_existing_queue_and_goes_with_the_policy(
    channel: Any, policies: Policies, resources: Resources
) -> None:
    queue = resources.queue()
    channel.queue_declare(queue, durable=True)
    name = unique("ttl")
    assert policies.set(name, {"pattern": exact(queue), "definition": {"message-ttl": 100}}).status == 201
    channel.basic_publish("", queue, b"expires")
    assert settle(channel, queue, 0) == 0  # expired at the head (the broker's timer or the get)
    assert policies.clear(name).status == 204
    channel.basic_publish("", queue, b"stays")
    time.sleep(0.3)
    assert bodies(channel, queue) == [b"stays"]


def test_max_length_and_dead_letter_policy_drop_the_head_of_an_existing_queue_at_once(
    channel: Any, policies: Policies, resources: Resources
) -> None:
    queue, dead = resources.queue(), resources.queue()
    channel.queue_declare(queue, durable=True)
    channel.queue_declare(dead, durable=True)
    for i in range(5):
        channel.basic_publish("", queue, b"m%d" % i)
    assert settle(channel, queue, 5) == 5
    definition = {"max-length": 2, "dead-letter-exchange": "", "dead-letter-routing-key": dead}
    name = unique("len")
    assert policies.set(name, {"pattern": exact(queue), "definition": definition}).status == 201
    assert settle(channel, queue, 2) == 2
    assert settle(channel, dead, 3) == 3
    assert bodies(channel, queue) == [b"m3", b"m4"]
    assert bodies(channel, dead) == [b"m0", b"m1", b"m2"]
    row = policies.queue(queue, until=lambda r: r.get("policy") == name)
    assert row["policy"] == name and row["operator_policy"] is None
    assert row["effective_policy_definition"] == dict(sorted(definition.items()))
    assert row["arguments"] == {}  # the policy does not change the declared arguments
    assert policies.clear(name).status == 204
    for i in range(4):
        channel.basic_publish("", queue, b"n%d" % i)
    assert settle(channel, queue, 4) == 4
    row = policies.queue(queue, until=lambda r: r.get("policy") is None)
    assert row["policy"] is None and row["effective_policy_definition"] == {}


def test_queue_arguments_win_over_a_policy_except_lower_limits(
    channel: Any, policies: Policies, resources: Resources
) -> None:
    """Classic queue: x-max-length 2 beats a policy's 5 (the lower value), and a policy's 1 beats it."""
    queue = resources.queue()
    channel.queue_declare(queue, durable=True, arguments={"x-max-length": 2})
    name = unique("args")
    assert policies.set(name, {"pattern": exact(queue), "definition": {"max-length": 5}}).status == 201
    for i in range(4):
        channel.basic_publish("", queue, b"m%d" % i)
    assert settle(channel, queue, 2) == 2
    assert policies.set(name, {"pattern": exact(queue), "definition": {"max-length": 1}}).status == 204
    assert settle(channel, queue, 1) == 1
    assert bodies(channel, queue) == [b"m3"]


def test_highest_priority_policy_applies_alone(
    channel: Any, policies: Policies, resources: Resources
) -> None:
    queue = resources.queue()
    channel.queue_declare(queue, durable=True)
    low, high = unique("low"), unique("high")
    broad = "^" + re.escape(queue)
    assert policies.set(low, {"pattern": broad, "definition": {"max-length": 1}, "priority": 1}).status == 201
    assert (
        policies.set(high, {"pattern": exact(queue), "definition": {"max-length": 3}, "priority": 7}).status
        == 201
    )
    for i in range(5):
        channel.basic_publish("", queue, b"m%d" % i)
    assert settle(channel, queue, 3) == 3  # only the higher one: its definition alone, not merged
    row = policies.queue(queue, until=lambda r: r.get("policy") == high)
    assert row["policy"] == high and row["effective_policy_definition"] == {"max-length": 3}
    assert policies.clear(high).status == 204
    assert settle(channel, queue, 1) == 1  # the lower one takes over at once (and drops the head)


def test_operator_policy_lower_limit_wins(channel: Any, policies: Policies, resources: Resources) -> None:
    queue = resources.queue()
    channel.queue_declare(queue, durable=True)
    pol, op = unique("pol"), unique("op")
    assert (
        policies.set(
            pol, {"pattern": exact(queue), "definition": {"max-length": 4, "message-ttl": 600000}}
        ).status
        == 201
    )
    body = {"pattern": exact(queue), "definition": {"max-length": 2}, "apply-to": "queues"}
    assert policies.set(op, body, operator=True).status == 201
    for i in range(5):
        channel.basic_publish("", queue, b"m%d" % i)
    assert settle(channel, queue, 2) == 2
    row = policies.queue(queue, until=lambda r: r.get("operator_policy") == op)
    assert (row["policy"], row["operator_policy"]) == (pol, op)
    assert row["effective_policy_definition"] == {"max-length": 2, "message-ttl": 600000}
    body["definition"] = {"max-length": 10}
    assert policies.set(op, body, operator=True).status == 204
    for i in range(5):
        channel.basic_publish("", queue, b"n%d" % i)
    assert settle(channel, queue, 4) == 4  # the policy's 4 is lower now
    row = policies.queue(
        queue, until=lambda r: r.get("effective_policy_definition", {}).get("max-length") == 4
    )
    assert row["effective_policy_definition"] == {"max-length": 4, "message-ttl": 600000}
    listed = policies.api("GET", f"/api/operator-policies/%2F/{q(op)}").body
    assert listed == {
        "vhost": "/",
        "name": op,
        "pattern": exact(queue),
        "apply-to": "queues",
        "definition": {"max-length": 10},
        "priority": 0,
    }


def test_a_policy_with_a_key_the_queue_type_leaves_out_does_not_apply(
    channel: Any, policies: Policies, resources: Resources
) -> None:
    """delivery-limit is a quorum queue's: a policy that has it does not apply to a classic queue at all
    (its max-length neither), as rabbit_queue_type:is_policy_applicable decides."""
    queue = resources.queue()
    channel.queue_declare(queue, durable=True)
    name = unique("dl")
    definition = {"delivery-limit": 3, "max-length": 1}
    assert policies.set(name, {"pattern": exact(queue), "definition": definition}).status == 201
    for i in range(3):
        channel.basic_publish("", queue, b"m%d" % i)
    assert settle(channel, queue, 3) == 3
    assert policies.queue(queue)["policy"] is None


def test_alternate_exchange_by_policy(channel: Any, policies: Policies, resources: Resources) -> None:
    exchange, alternate, queue = resources.exchange(), resources.exchange(), resources.queue()
    channel.exchange_declare(exchange, "direct")
    channel.exchange_declare(alternate, "fanout")
    channel.queue_declare(queue)
    channel.queue_bind(queue, alternate)
    name = unique("ae")
    body = {
        "pattern": exact(exchange),
        "definition": {"alternate-exchange": alternate},
        "apply-to": "exchanges",
    }
    assert policies.set(name, body).status == 201
    channel.basic_publish(exchange, "nowhere", b"unroutable")
    assert settle(channel, queue, 1) == 1
    assert policies.api("GET", f"/api/exchanges/%2F/{q(exchange)}").body["policy"] == name
    assert "policy" not in policies.api("GET", f"/api/exchanges/%2F/{q(alternate)}").body
    assert policies.clear(name).status == 204
    channel.basic_publish(exchange, "nowhere", b"dropped")
    time.sleep(0.2)
    assert count(channel, queue) == 1


def test_a_policy_applies_to_queues_declared_later(
    channel: Any, policies: Policies, resources: Resources
) -> None:
    queue = resources.queue()
    name = unique("later")
    body = {"pattern": exact(queue), "definition": {"max-length": 1}, "apply-to": "exchanges"}
    assert policies.set(name, body).status == 201  # exchanges only: not this queue
    body["apply-to"] = "queues"
    assert policies.set(name, body).status == 204
    channel.queue_declare(queue, durable=True)
    for i in range(3):
        channel.basic_publish("", queue, b"m%d" % i)
    assert settle(channel, queue, 1) == 1


# -- the management API -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("body", "reason"), RABBITMQ_REASONS, ids=range(len(RABBITMQ_REASONS)))
def test_refused_policies_are_400_with_rabbitmq_texts(
    policies: Policies, body: dict[str, Any], reason: str
) -> None:
    reply = policies.set(unique("bad"), body)
    assert reply.status == 400
    assert reply.body == {"error": "bad_request", "reason": reason}


def test_refused_operator_policy_is_not_html_escaped(policies: Policies) -> None:
    body = {"pattern": "^a", "definition": {"overflow": "reject-publish"}}
    reply = policies.set(unique("bad"), body, operator=True)
    assert reply.status == 400
    reason = (
        'Validation failed\n\n[{<<"overflow">>,<<"reject-publish">>}] are not recognised policy settings\n'
    )
    assert reply.body == {"error": "bad_request", "reason": reason}


def test_policy_endpoints(policies: Policies) -> None:
    name = unique("shape")
    body = {"pattern": "^nothing\\.matches$", "definition": {"max-length": 1}, "priority": 1.5}
    assert policies.set(name, body).status == 201
    assert policies.set(name, body).status == 204
    row = {
        "vhost": "/",
        "name": name,
        "pattern": "^nothing\\.matches$",
        "apply-to": "all",
        "definition": {"max-length": 1},
        "priority": 1.5,
    }
    assert policies.api("GET", f"/api/policies/%2F/{q(name)}").body == row
    assert row in policies.api("GET", "/api/policies").body
    assert row in policies.api("GET", "/api/policies/%2F").body
    assert row in policies.api("GET", "/api/definitions").body["policies"]
    assert policies.api("GET", "/api/policies/%2F/nope-" + name).status == 404
    missing_vhost = policies.api("PUT", f"/api/policies/no-such-vhost/{q(name)}", body)
    assert (missing_vhost.status, missing_vhost.body) == (
        404,
        {"error": "not_found", "reason": "vhost_not_found"},
    )
    assert policies.api("GET", "/api/policies/no-such-vhost").status == 404
    assert policies.clear(name).status == 204
    assert policies.clear(name).status == 404
    assert row not in policies.api("GET", "/api/policies").body


def test_only_policymakers_change_policies_and_only_administrators_operator_policies(
    broker: BrokerInfo, policies: Policies
) -> None:
    user = unique("u").replace(".", "-")
    for tags in ("management", "policymaker"):
        assert policies.api("PUT", f"/api/users/{user}", {"password": "pw", "tags": tags}).status in (
            201,
            204,
        )
        assert policies.api(
            "PUT", f"/api/permissions/%2F/{user}", {"configure": ".*", "write": ".*", "read": ".*"}
        ).status in (201, 204)
        body = {"pattern": "^none$", "definition": {"max-length": 1}}
        name = unique("perm")
        reply = policies.api("PUT", f"/api/policies/%2F/{name}", body, auth=(user, "pw"))
        if tags == "management":
            assert reply.status == 401
            assert policies.api("GET", "/api/policies", auth=(user, "pw")).status == 200
        else:
            assert reply.status == 201
            policies.made.add(("policies", name))
        assert (
            policies.api("PUT", f"/api/operator-policies/%2F/{name}", body, auth=(user, "pw")).status == 401
        )
    assert policies.api("DELETE", f"/api/users/{user}").status == 204


# -- rabbitmqadmin -----------------------------------------------------------------------------------------


def rabbitmqadmin(broker: BrokerInfo, *argv: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("rabbitmqadmin")
    if binary is None:
        pytest.fail("rabbitmqadmin is not installed: tools/test_deps.sh (run by make test) installs it")
    command = [binary, "-H", "127.0.0.1", "-P", str(broker.http_port), "-u", "guest", "-p", "guest", *argv]
    return subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)


def test_rabbitmqadmin_declares_lists_and_deletes_policies(
    broker: BrokerInfo, channel: Any, policies: Policies, resources: Resources
) -> None:
    queue = resources.queue()
    channel.queue_declare(queue, durable=True)
    name = unique("admin")
    declared = rabbitmqadmin(
        broker,
        "declare",
        "policy",
        f"name={name}",
        f"pattern={exact(queue)}",
        'definition={"max-length": 1}',
        "priority=3",
        "apply-to=queues",
    )
    policies.made.add(("policies", name))
    assert declared.returncode == 0, declared.stderr
    assert "policy declared" in declared.stdout
    for i in range(3):
        channel.basic_publish("", queue, b"m%d" % i)
    assert settle(channel, queue, 1) == 1
    listed = rabbitmqadmin(broker, "-f", "raw_json", "list", "policies")
    assert listed.returncode == 0, listed.stderr
    rows = [row for row in json.loads(listed.stdout) if row["name"] == name]
    assert rows == [
        {
            "vhost": "/",
            "name": name,
            "pattern": exact(queue),
            "apply-to": "queues",
            "definition": {"max-length": 1},
            "priority": 3,
        }
    ]
    table = rabbitmqadmin(broker, "list", "policies")
    assert name in table.stdout and "apply-to" in table.stdout
    op = rabbitmqadmin(
        broker, "declare", "operator_policy", f"name={name}", "pattern=^none$", 'definition={"max-length": 9}'
    )
    policies.made.add(("operator-policies", name))
    assert op.returncode == 0, op.stderr
    assert name in rabbitmqadmin(broker, "list", "operator_policies").stdout
    assert rabbitmqadmin(broker, "delete", "operator_policy", f"name={name}").returncode == 0
    deleted = rabbitmqadmin(broker, "delete", "policy", f"name={name}")
    assert deleted.returncode == 0, deleted.stderr
    assert name not in rabbitmqadmin(broker, "list", "policies").stdout
    for i in range(3):
        channel.basic_publish("", queue, b"n%d" % i)
    assert settle(channel, queue, 4) == 4
    refused = rabbitmqadmin(
        broker, "declare", "policy", f"name={name}", "pattern=(", 'definition={"max-length": 1}'
    )
    assert refused.returncode != 0
    assert "missing )" in refused.stdout + refused.stderr


# -- ottermq ctl and restarts (OtterMQ only) -------------------------------------------------------------


class Ctl:
    """`ottermq ctl --data-dir D ...` in-process."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.runner = CliRunner()

    def __call__(self, *argv: str) -> tuple[int, str, str]:
        result = self.runner.invoke(app, ["ctl", "--data-dir", str(self.data_dir), *argv])
        return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def ctl(broker: BrokerInfo) -> Iterator[Ctl]:
    if broker.external:
        pytest.skip("ottermq ctl manages OtterMQ only")
    assert broker.data_dir is not None
    made = Ctl(broker.data_dir)
    yield made


def test_ctl_policy_verbs(ctl: Ctl, channel: Any, resources: Resources) -> None:
    queue = resources.queue()
    channel.queue_declare(queue, durable=True)
    name = unique("ctl")
    code, out, err = ctl(
        "set_policy", "--priority", "2", "--apply-to", "queues", name, exact(queue), '{"max-length": 1}'
    )
    assert code == 0, err
    assert out.startswith(
        f'Setting policy "{name}" for pattern "{exact(queue)}" to "{{"max-length": 1}}" with priority "2"'
    )
    for i in range(3):
        channel.basic_publish("", queue, b"m%d" % i)
    assert settle(channel, queue, 1) == 1
    code, out, _ = ctl("list_policies")
    assert code == 0
    assert out.splitlines()[1] == "vhost\tname\tpattern\tapply-to\tdefinition\tpriority"
    assert f'/\t{name}\t{exact(queue)}\tqueues\t{{"max-length":1}}\t2' in out.splitlines()
    code, out, err = ctl("set_operator_policy", name, exact(queue), '{"max-length": 0}')
    assert code == 0, err
    assert settle(channel, queue, 0) == 0
    code, out, _ = ctl("list_operator_policies")
    assert f'/\t{name}\t{exact(queue)}\tall\t{{"max-length":0}}\t0' in out.splitlines()
    assert ctl("clear_operator_policy", name)[0] == 0
    assert ctl("clear_policy", name)[0] == 0
    # rabbitmqctl's exit codes: a refused definition 69, no such policy 69, no such vhost 65.
    code, _, err = ctl("set_policy", name, "x", '{"foo": 5}')
    assert code == 69 and "are not recognised policy settings" in err
    code, _, err = ctl("set_policy", name, "(", '{"max-length": 5}')
    assert code == 69 and '{"missing )",1}' in err
    assert ctl("set_policy", name, "x", "{bad")[0] == 69
    assert ctl("clear_policy", name)[0] == 69
    assert ctl("set_policy", "-p", "no-such-vhost", name, "x", '{"max-length": 1}')[0] == 65
    assert ctl("list_policies", "-p", "no-such-vhost")[0] == 65


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    yield from running_node(tmp_path)


@pytest.mark.parametrize("kill", [False, True], ids=["sigterm", "sigkill"])
def test_policies_survive_a_restart(node: Node, kill: bool) -> None:
    ctl = Ctl(node.data_dir)
    assert ctl("set_policy", "len", "^pol\\.", '{"max-length": 2}')[0] == 0
    assert ctl("set_operator_policy", "op", "^pol\\.", '{"max-length": 1}', "--apply-to", "queues")[0] == 0
    assert ctl("set_policy", "gone", "^pol\\.", '{"max-length": 5}', "--priority", "9")[0] == 0
    assert ctl("clear_policy", "gone")[0] == 0
    conn = node.connect()
    ch = conn.channel()
    ch.queue_declare("pol.q", durable=True)
    ch.confirm_delivery()
    for i in range(3):
        ch.basic_publish("", "pol.q", b"m%d" % i, pika.BasicProperties(delivery_mode=2))
    assert count(ch, "pol.q") == 1
    conn.close()
    node.restart(kill=kill)
    code, out, _ = ctl("list_policies")
    assert code == 0 and [line.split("\t")[1] for line in out.splitlines()[2:]] == ["len"]
    code, out, _ = ctl("list_operator_policies")
    assert code == 0 and [line.split("\t")[1] for line in out.splitlines()[2:]] == ["op"]
    conn = node.connect()
    ch = conn.channel()
    assert bodies(ch, "pol.q") == [b"m2"]
    for i in range(3):
        ch.basic_publish("", "pol.q", b"n%d" % i, pika.BasicProperties(delivery_mode=2))
    assert settle(ch, "pol.q", 1) == 1
    conn.close()
    assert ctl("clear_operator_policy", "op")[0] == 0
    node.restart(kill=kill)
    conn = node.connect()
    ch = conn.channel()
    for i in range(3):
        ch.basic_publish("", "pol.q", b"z%d" % i, pika.BasicProperties(delivery_mode=2))
    assert settle(ch, "pol.q", 2) == 2  # the policy's 2 alone now
    conn.close()


def test_quorum_queue_takes_overflow_from_the_policy_and_classic_from_its_argument(
    channel: Any, policies: Policies, resources: Resources
) -> None:
    """rabbit_quorum_queue gives a policy's overflow precedence over x-overflow; a classic queue keeps its
    argument. Both take the lower max-length: 1, so which message is left says which overflow won."""
    arguments = {"x-max-length": 1, "x-overflow": "reject-publish"}
    classic, quorum = resources.queue(), resources.queue()
    channel.queue_declare(classic, durable=True, arguments=arguments)
    channel.queue_declare(quorum, durable=True, arguments={**arguments, "x-queue-type": "quorum"})
    name = unique("qq")
    pattern = f"^({re.escape(classic)}|{re.escape(quorum)})$"
    body = {"pattern": pattern, "definition": {"overflow": "drop-head", "max-length": 5}}
    assert policies.set(name, body).status == 201
    for queue in (classic, quorum):
        for i in range(3):
            channel.basic_publish("", queue, b"m%d" % i)
    assert settle(channel, classic, 1) == 1 and settle(channel, quorum, 1) == 1
    assert bodies(channel, classic) == [b"m0"]  # reject-publish: the first stays
    assert bodies(channel, quorum) == [b"m2"]  # drop-head: the last stays


def test_expires_policy_deletes_an_unused_existing_queue(
    channel: Any, policies: Policies, resources: Resources
) -> None:
    queue, kept = resources.queue(), resources.queue()
    channel.queue_declare(queue, durable=True)
    channel.queue_declare(kept, durable=True)
    name = unique("expires")
    assert policies.set(name, {"pattern": exact(queue), "definition": {"expires": 300}}).status == 201
    # Looked at through the API: a passive declare would count as a use and start x-expires over.
    deadline = time.monotonic() + 10
    while policies.api("GET", f"/api/queues/%2F/{q(queue)}").status != 404:
        assert time.monotonic() < deadline, "the queue was not deleted by the policy's expires"
        time.sleep(0.2)
    assert policies.api("GET", f"/api/queues/%2F/{q(kept)}").status == 200


# -- the merge rules, key by key ---------------------------------------------------------------------------
#
# Each case: the queue type, its x-arguments, a policy's definition, an operator policy's, and what the
# queue then does (a probe's observation). Recorded against RabbitMQ 3.10.8: for a classic queue the lower
# value of a limit, TTL or expiry wins and its own argument wins for dead lettering and overflow; a quorum
# queue takes the lower limit, TTL and delivery limit, the policy's overflow and expiry, and its own
# argument for dead lettering; an operator policy's lower limit wins over the policy's.

MERGE_CASES: list[tuple[str, str, dict[str, Any], dict[str, Any], dict[str, Any], Any]] = [
    # (probe, queue type, arguments, policy, operator policy, observation)
    ("max-length", "classic", {"x-max-length": 3}, {"max-length": 2}, {}, 2),
    ("max-length", "classic", {"x-max-length": 2}, {"max-length": 4}, {}, 2),
    ("max-length", "classic", {}, {"max-length": 4}, {"max-length": 3}, 3),
    ("max-length", "classic", {}, {"max-length": 2}, {"max-length": 3}, 2),
    ("max-length", "classic", {"x-max-length": 1}, {"max-length": 4}, {"max-length": 3}, 1),
    ("max-length", "classic", {}, {"message-ttl": 60000}, {"max-length": 3}, 3),
    ("max-length-bytes", "classic", {"x-max-length-bytes": 30}, {"max-length-bytes": 45}, {}, 3),
    ("max-length-bytes", "classic", {}, {"max-length-bytes": 45}, {"max-length-bytes": 20}, 2),
    ("message-ttl", "classic", {"x-message-ttl": 60000}, {"message-ttl": 50}, {}, "expired"),
    ("message-ttl", "classic", {"x-message-ttl": 50}, {"message-ttl": 60000}, {}, "expired"),
    ("message-ttl", "classic", {}, {"message-ttl": 60000}, {"message-ttl": 50}, "expired"),
    ("message-ttl", "classic", {}, {"message-ttl": 60000}, {"message-ttl": 70000}, "kept"),
    ("expires", "classic", {"x-expires": 60000}, {"expires": 300}, {}, "deleted"),
    ("expires", "classic", {"x-expires": 300}, {"expires": 60000}, {}, "deleted"),
    ("expires", "classic", {}, {"expires": 60000}, {"expires": 300}, "deleted"),
    ("overflow", "classic", {"x-overflow": "reject-publish"}, {"overflow": "drop-head"}, {}, "m0"),
    ("overflow", "classic", {"x-overflow": "drop-head"}, {"overflow": "reject-publish"}, {}, "m2"),
    ("overflow", "classic", {}, {"overflow": "reject-publish"}, {}, "m0"),
    ("dead-letter-exchange", "classic", {"x-dead-letter-exchange": "A"},
     {"dead-letter-exchange": "B"}, {}, "A"),
    ("dead-letter-exchange", "classic", {}, {"dead-letter-exchange": "B"}, {}, "B"),
    ("dead-letter-routing-key", "classic", {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": "A"},
     {"dead-letter-routing-key": "B"}, {}, "A"),
    ("dead-letter-routing-key", "classic", {"x-dead-letter-exchange": ""},
     {"dead-letter-routing-key": "B"}, {}, "B"),
    ("max-length", "quorum", {"x-max-length": 3}, {"max-length": 2}, {}, 2),
    ("max-length", "quorum", {"x-max-length": 2}, {"max-length": 4}, {}, 2),
    ("max-length", "quorum", {}, {"max-length": 4}, {"max-length": 3}, 3),
    ("message-ttl", "quorum", {"x-message-ttl": 60000}, {"message-ttl": 50}, {}, "expired"),
    ("message-ttl", "quorum", {"x-message-ttl": 50}, {"message-ttl": 60000}, {}, "expired"),
    ("expires", "quorum", {"x-expires": 60000}, {"expires": 300}, {}, "deleted"),
    ("expires", "quorum", {"x-expires": 300}, {"expires": 60000}, {}, "kept"),
    ("overflow", "quorum", {"x-overflow": "reject-publish"}, {"overflow": "drop-head"}, {}, "m2"),
    ("dead-letter-exchange", "quorum", {"x-dead-letter-exchange": "A"},
     {"dead-letter-exchange": "B"}, {}, "A"),
    ("delivery-limit", "quorum", {"x-delivery-limit": 10}, {"delivery-limit": 1}, {}, "dropped"),
    ("delivery-limit", "quorum", {"x-delivery-limit": 1}, {"delivery-limit": 10}, {}, "dropped"),
    ("delivery-limit", "quorum", {}, {"delivery-limit": 10}, {"delivery-limit": 1}, "dropped"),
    ("delivery-limit", "quorum", {}, {"delivery-limit": 10}, {"delivery-limit": 20}, "kept"),
]  # fmt: skip


def _merged(policy: dict[str, Any], operator: dict[str, Any]) -> dict[str, Any]:
    """effective_policy_definition as RabbitMQ 3.10 shows it: the operator policy's lower limits win."""
    merged = dict(policy)
    for key, value in operator.items():
        merged[key] = min(value, merged[key]) if key in merged else value
    return dict(sorted(merged.items()))


def _get(channel: Any, queue: str, timeout: float = 5.0) -> Any:
    """basic.get until a message comes; None once the queue has looked empty for a while (a message that
    is dropped, or not yet back after a nack, looks the same for a moment)."""
    deadline, empty = time.monotonic() + timeout, 0
    while time.monotonic() < deadline and empty < 5:
        method, _props, _body = channel.basic_get(queue)
        if method is not None:
            return method
        empty = empty + 1 if count(channel, queue) == 0 else 0
        channel.connection.process_data_events(time_limit=0.05)
    return None


def _probe(
    probe: str, channel: Any, policies: Policies, queue: str, where: dict[str, str], wait: float
) -> Any:
    """What the queue does under its merged settings, as one comparable observation; `wait` bounds the
    wait for something that should not happen (a queue's expiry: RabbitMQ's quorum queues check it on
    their 5 s tick)."""
    if probe in ("max-length", "max-length-bytes"):
        for i in range(6):
            channel.basic_publish("", queue, b"m%d-......" % i)  # 10 bytes each
        time.sleep(0.3)
        return count(channel, queue)
    if probe == "message-ttl":
        channel.basic_publish("", queue, b"m")
        time.sleep(0.5)
        return "expired" if settle(channel, queue, 0, timeout=1.0) == 0 else "kept"
    if probe == "expires":
        # Watched through the API: a passive declare is a use and would start the expiry again.
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if policies.api("GET", f"/api/queues/%2F/{q(queue)}").status == 404:
                return "deleted"
            time.sleep(0.2)
        return "kept"
    if probe == "overflow":
        for i in range(3):
            channel.basic_publish("", queue, b"m%d" % i)
        settle(channel, queue, 1)
        return b",".join(bodies(channel, queue)).decode()
    if probe in ("dead-letter-exchange", "dead-letter-routing-key"):
        channel.basic_publish("", queue, b"dead")
        method = _get(channel, queue)
        assert method is not None
        channel.basic_reject(method.delivery_tag, requeue=False)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            for label, target in where.items():
                if count(channel, target) == 1:
                    return label
            channel.connection.process_data_events(time_limit=0.05)
        return "nowhere"
    assert probe == "delivery-limit"
    channel.basic_publish("", queue, b"m")
    for _ in range(4):  # four deliveries: over a limit of 1, under one of 10
        method = _get(channel, queue)
        if method is None:
            return "dropped"
        channel.basic_nack(method.delivery_tag, requeue=True)
    return "kept" if _get(channel, queue) is not None else "dropped"


def _names(arguments: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    """`arguments` (or a definition) with the placeholder names A and B of dead-letter targets resolved."""
    return {
        key: names.get(value, value) if "dead-letter" in key else value for key, value in arguments.items()
    }


@pytest.mark.parametrize(
    ("probe", "kind", "arguments", "policy", "operator", "observed"),
    MERGE_CASES,
    ids=[f"{c[1]}-{c[0]}-{i}" for i, c in enumerate(MERGE_CASES)],
)
def test_policy_merge_rules_as_rabbitmq(
    broker: BrokerInfo,
    channel: Any,
    policies: Policies,
    resources: Resources,
    probe: str,
    kind: str,
    arguments: dict[str, Any],
    policy: dict[str, Any],
    operator: dict[str, Any],
    observed: Any,
) -> None:
    queue = resources.queue()
    names: dict[str, str] = {}  # the placeholders A and B: dead-letter exchanges, or routing keys
    where: dict[str, str] = {}  # the queue a message dead-lettered to A or B lands in
    for label in ("A", "B") if probe.startswith("dead-letter") else ():
        target = resources.queue()
        channel.queue_declare(target, durable=True)
        where[label] = names[label] = target
        if probe == "dead-letter-exchange":
            names[label] = resources.exchange()
            channel.exchange_declare(names[label], "fanout")
            channel.queue_bind(target, names[label])
    declared = _names(arguments, names)
    if probe == "overflow":
        declared["x-max-length"] = 1  # what overflows: which message stays says which overflow won
    if kind == "quorum":
        declared["x-queue-type"] = "quorum"
    channel.queue_declare(queue, durable=True, arguments=declared)
    definition, op_definition = _names(policy, names), _names(operator, names)
    made = (unique("pol"), unique("op"))
    assert policies.set(made[0], {"pattern": exact(queue), "definition": definition}).status == 201
    if operator:
        body = {"pattern": exact(queue), "definition": op_definition}
        assert policies.set(made[1], body, operator=True).status == 201
    expected = _merged(definition, op_definition)
    if probe != "expires":  # a queue about to expire is looked at by the probe only
        row = policies.queue(queue, until=lambda r: r.get("effective_policy_definition") == expected)
        assert row["policy"] == made[0]
        assert row["operator_policy"] == (made[1] if operator else None)
        assert row["effective_policy_definition"] == expected
    wait = 12.0 if broker.external else 3.0
    assert _probe(probe, channel, policies, queue, where, wait) == observed


def test_queue_mode_applies_to_classic_queues_only_and_is_no_operator_key(
    channel: Any, policies: Policies, resources: Resources
) -> None:
    """queue-mode is accepted (and changes nothing here); a quorum queue leaves it out, so a policy with
    it does not apply to one at all; an operator policy may not set it (RabbitMQ 3.10.8)."""
    classic, quorum = resources.queue(), resources.queue()
    channel.queue_declare(classic, durable=True)
    channel.queue_declare(quorum, durable=True, arguments={"x-queue-type": "quorum"})
    name = unique("mode")
    pattern = f"^({re.escape(classic)}|{re.escape(quorum)})$"
    definition = {"queue-mode": "lazy", "max-length": 3}
    assert policies.set(name, {"pattern": pattern, "definition": definition}).status == 201
    row = policies.queue(classic, until=lambda r: r.get("policy") == name)
    assert row["effective_policy_definition"] == definition
    assert policies.queue(quorum)["policy"] is None
    reply = policies.set(
        unique("op"), {"pattern": pattern, "definition": {"queue-mode": "lazy"}}, operator=True
    )
    assert reply.status == 400
    assert "are not recognised policy settings" in reply.body["reason"]


def test_alternate_exchange_argument_wins_over_the_policys(
    channel: Any, policies: Policies, resources: Resources
) -> None:
    exchange, mine, theirs = resources.exchange(), resources.exchange(), resources.exchange()
    kept, other = resources.queue(), resources.queue()
    channel.exchange_declare(mine, "fanout")
    channel.exchange_declare(theirs, "fanout")
    channel.exchange_declare(exchange, "direct", arguments={"alternate-exchange": mine})
    for queue, source in ((kept, mine), (other, theirs)):
        channel.queue_declare(queue)
        channel.queue_bind(queue, source)
    body = {"pattern": exact(exchange), "definition": {"alternate-exchange": theirs}, "apply-to": "exchanges"}
    assert policies.set(unique("ae"), body).status == 201
    channel.basic_publish(exchange, "nowhere", b"unroutable")
    assert settle(channel, kept, 1) == 1
    assert count(channel, other) == 0
