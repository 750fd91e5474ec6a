"""Definitions import and export in RabbitMQ's format: POST/GET /api/definitions[/{vhost}], `ottermq ctl
import_definitions / export_definitions`, rabbitmqadmin's import/export and `load_definitions` at boot.

Strategy: each test runs its own broker on a fresh data directory (an import changes users and vhosts,
which the session's broker shares with every other test), with the management API on a free port. The
RabbitMQ side is a real RabbitMQ 3.10.8 export (tests/data/rabbitmq-3.10-definitions.json, recorded from
a node with users alice / "alice-secret", bob / "bob-pässword", carol without a usable password, guest,
a vhost "shop" with permissions, a topic permission, policies, an operator policy, vhost limits, a
quorum queue, internal and headers exchanges and exchange-to-exchange bindings): its users must log in
here over AMQP (PLAIN) and HTTP basic auth with RabbitMQ's SHA-256 hashes. Durability is checked by
SIGKILL and restart: nothing but the log carries the imported objects.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pika
import pytest
from typer.testing import CliRunner

from ottermq.cli import app
from tests.integration.conftest import _LISTENING, STARTUP_TIMEOUT, _free_port, serve_cmd
from tests.integration.test_http_api import Reply, request

pytestmark = pytest.mark.timeout(90)

ROOT = Path(__file__).resolve().parents[2]
RABBITMQ_EXPORT = ROOT / "tests" / "data" / "rabbitmq-3.10-definitions.json"
USERS = {"alice": "alice-secret", "bob": "bob-pässword", "guest": "guest"}
_HTTP_LINE = "management API listening on http://"


class Node:
    """An OtterMQ process on its own data directory, with the management API."""

    def __init__(self, base: Path, *extra: str) -> None:
        self.base = base
        self.data_dir = base / "data"
        self.extra = list(extra)
        self.http_port = _free_port()
        self.port = 0
        self.runs = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = base / "ottermq-0.log"

    def start(self, expect_exit: bool = False) -> int | None:
        """Start and wait for the API (or, with `expect_exit`, for the exit status)."""
        self.runs += 1
        self.log_path = self.base / f"ottermq-{self.runs}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("OTTERMQ_")}
        cmd = serve_cmd(self.data_dir, *self.extra, http_port=self.http_port)
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            text = self.log()
            code = self.process.poll()
            if code is not None:
                if expect_exit:
                    self.process = None
                    return code
                raise AssertionError(f"broker exited with {code}:\n{text}")
            match = _LISTENING.search(text)
            if match and _HTTP_LINE in text:
                assert not expect_exit, f"the broker started although it should not:\n{text}"
                self.port = int(match.group(1))
                return None
            time.sleep(0.05)
        raise AssertionError(f"broker did not start:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, kill: bool = False) -> None:
        process = self.process
        assert process is not None
        if kill:
            process.kill()
        else:
            process.send_signal(signal.SIGTERM)
        process.wait(timeout=20)
        self.process = None

    def restart(self, kill: bool = False) -> None:
        self.stop(kill)
        self.start()

    def api(self, method: str, path: str, body: Any = None, **kwargs: Any) -> Reply:
        return request(self.http_port, method, path, body, **kwargs)

    def amqp(self, user: str, password: str, vhost: str = "/") -> pika.BlockingConnection:
        params = pika.ConnectionParameters(
            "127.0.0.1",
            self.port,
            vhost,
            pika.PlainCredentials(user, password),
            socket_timeout=5,
            blocked_connection_timeout=10,
            connection_attempts=1,
        )
        return pika.BlockingConnection(params)

    def ctl(self, *argv: str, stdin: str | None = None) -> tuple[int, str, str]:
        result = CliRunner().invoke(app, ["ctl", "--data-dir", str(self.data_dir), *argv], input=stdin)
        return result.exit_code, result.stdout, result.stderr

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[Any]:
    """make(name, *serve_flags, start=True) -> a Node; all killed afterwards."""
    made: list[Node] = []

    def make(name: str, *extra: str, start: bool = True) -> Node:
        node = Node(tmp_path / name, *extra)
        node.base.mkdir(parents=True)
        made.append(node)
        if start:
            node.start()
        return node

    yield make
    for node in made:
        node.close()


def rabbitmq_export() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(RABBITMQ_EXPORT.read_text())
    return document


def objects(document: dict[str, Any], category: str) -> list[str]:
    """The rows of a category as sorted canonical JSON (order is not part of the format)."""
    return sorted(json.dumps(row, sort_keys=True) for row in document.get(category, []))


def can_log_in(node: Node, user: str, password: str, vhost: str = "/") -> bool:
    try:
        node.amqp(user, password, vhost).close()
    except (pika.exceptions.ProbableAuthenticationError, pika.exceptions.ProbableAccessDeniedError):
        return False
    return True


def check_rabbitmq_objects(node: Node) -> None:
    """What the recorded RabbitMQ export holds is in `node`, as RabbitMQ had it."""
    recorded = rabbitmq_export()
    exported = node.api("GET", "/api/definitions").body
    for category in ("queues", "exchanges", "bindings", "policies", "parameters"):
        assert objects(exported, category) == objects(recorded, category), category
    for row in recorded["permissions"]:
        assert row in exported["permissions"]
    assert {"shop", "/"} <= {row["name"] for row in exported["vhosts"]}
    # The recorded hashes are kept as RabbitMQ made them (an export of the import gives them back).
    hashes = {row["name"]: (row["hashing_algorithm"], row["password_hash"]) for row in exported["users"]}
    for row in recorded["users"]:
        assert hashes[row["name"]] == (row["hashing_algorithm"], row["password_hash"])
    # The policy applies to the existing queue at once; the operator policy's lower max-length wins.
    queue = node.api("GET", "/api/queues/shop/orders.new").body
    assert queue["policy"] == "ttl" and queue["operator_policy"] == "cap"
    assert queue["effective_policy_definition"] == {"max-length": 1000, "message-ttl": 60000}


def test_a_rabbitmq_export_imports_and_its_users_log_in(nodes: Any) -> None:
    node = nodes("a")
    reply = node.api("POST", "/api/definitions", raw=RABBITMQ_EXPORT.read_bytes())
    assert reply.status == 204, reply
    check_rabbitmq_objects(node)
    # RabbitMQ's SHA-256 hashes verify: AMQP PLAIN and HTTP basic auth, with a non-ASCII password too.
    assert node.api("GET", "/api/whoami", auth=("alice", "alice-secret")).body["name"] == "alice"
    assert node.api("GET", "/api/whoami", auth=("alice", "wrong")).status == 401
    assert can_log_in(node, "bob", USERS["bob"], "shop")
    assert can_log_in(node, "alice", USERS["alice"], "shop")
    assert not can_log_in(node, "bob", "bob-password", "shop")
    assert not can_log_in(node, "carol", "")
    # Bob's permissions on shop came along: he may configure bob.* only.
    connection = node.amqp("bob", USERS["bob"], "shop")
    channel = connection.channel()
    channel.queue_declare("bob.q", exclusive=True)
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as refused:
        channel.queue_declare("orders.bob", durable=True)
    assert refused.value.reply_code == 403
    connection.close()
    # The topic exchange routes by the imported bindings (to the quorum queue and the classic one), and
    # the exchange-to-exchange binding to the internal exchange.
    connection = node.amqp("alice", USERS["alice"], "shop")
    channel = connection.channel()
    channel.confirm_delivery()
    channel.basic_publish("events", "orders.new.2", b"y", pika.BasicProperties(delivery_mode=2))
    assert channel.queue_declare("orders.all", passive=True).method.message_count == 1
    assert channel.queue_declare("orders.new", passive=True).method.message_count == 1
    connection.close()

    node.restart(kill=True)  # SIGKILL: only the log carries the import
    check_rabbitmq_objects(node)
    assert can_log_in(node, "bob", USERS["bob"], "shop")
    assert node.api("GET", "/api/whoami", auth=("alice", "alice-secret")).status == 200


def test_importing_again_changes_nothing_and_updates_what_differs(nodes: Any) -> None:
    node = nodes("a")
    text = RABBITMQ_EXPORT.read_text()
    code, out, err = node.ctl("--json", "import_definitions", "-", stdin=text)
    assert code == 0, err
    assert json.loads(out)["changes"] > 20
    code, out, _ = node.ctl("--json", "import_definitions", "-", stdin=text)
    assert code == 0 and json.loads(out)["changes"] == 0  # nothing journaled the second time
    # As RabbitMQ: a user's password and tags and a policy are replaced; an existing queue is kept.
    document = {
        "users": [{"name": "alice", "password": "new-secret", "tags": "monitoring"}],
        "policies": [
            {"vhost": "shop", "name": "ttl", "pattern": "^orders\\.", "definition": {"max-length": 7}}
        ],
        "queues": [{"name": "lost", "vhost": "shop", "durable": False, "auto_delete": True}],
    }
    assert node.api("POST", "/api/definitions", document).status == 204
    assert node.api("GET", "/api/whoami", auth=("alice", "new-secret")).body["tags"] == ["monitoring"]
    assert node.api("GET", "/api/whoami", auth=("alice", "alice-secret")).status == 401
    policy = node.api("GET", "/api/policies/shop/ttl").body
    assert policy["definition"] == {"max-length": 7} and policy["apply-to"] == "all"
    assert node.api("GET", "/api/queues/shop/lost").body["durable"] is True


def test_an_ottermq_export_imports_into_a_fresh_node(nodes: Any) -> None:
    first = nodes("first")
    assert first.api("PUT", "/api/vhosts/app").status == 201
    assert first.api("PUT", "/api/users/dora", {"password": "dora-pw", "tags": "management"}).status == 201
    permission = {"configure": "^dora\\.", "write": ".*", "read": ".*"}
    assert first.api("PUT", "/api/permissions/app/dora", permission).status == 201
    full = {"configure": ".*", "write": ".*", "read": ".*"}
    # The vhost's creator has them already (as RabbitMQ grants them): set again, 204.
    assert first.api("PUT", "/api/permissions/app/guest", full).status == 204
    assert (
        first.ctl(
            "add_user",
            "legacy",
            "pbkdf2-sha256$1000$" + "A" * 11 + "=$" + "A" * 43 + "=",
            "--pre-hashed-password",
        )[0]
        == 0
    )
    assert first.ctl("set_vhost_limits", "-p", "app", '{"max-queues": 10}')[0] == 0
    assert first.ctl("set_operator_policy", "-p", "app", "op", ".*", '{"expires": 60000}')[0] == 0
    assert first.api("PUT", "/api/exchanges/app/in", {"type": "direct", "durable": True}).status == 201
    assert first.api("PUT", "/api/exchanges/app/out", {"type": "fanout", "durable": True}).status == 201
    queue = {"durable": True, "arguments": {"x-max-length": 3, "x-dead-letter-exchange": "out"}}
    assert first.api("PUT", "/api/queues/app/dora.q", queue).status == 201
    binding = {"routing_key": "k", "arguments": {"x-any": 1}}
    assert first.api("POST", "/api/bindings/app/e/in/q/dora.q", binding).status == 201
    assert first.api("POST", "/api/bindings/app/e/in/e/out", {"routing_key": "r"}).status == 201
    policy = {"pattern": "^dora", "definition": {"message-ttl": 5000}, "apply-to": "queues"}
    assert first.api("PUT", "/api/policies/app/p", policy).status == 201
    exported = first.api("GET", "/api/definitions").body
    dora = next(row for row in exported["users"] if row["name"] == "dora")
    assert dora["hashing_algorithm"] == "rabbit_password_hashing_sha256"
    legacy = next(row for row in exported["users"] if row["name"] == "legacy")
    assert legacy["hashing_algorithm"] == "ottermq_pbkdf2_sha256"
    vhost_export = first.api("GET", "/api/definitions/app").body
    assert set(vhost_export) == {
        "rabbit_version",
        "parameters",
        "policies",
        "queues",
        "exchanges",
        "bindings",
    }
    assert all("vhost" not in row for row in vhost_export["queues"])

    second = nodes("second")
    assert second.api("POST", "/api/definitions", exported).status == 204
    again = second.api("GET", "/api/definitions").body
    for category in (
        "users",
        "vhosts",
        "permissions",
        "parameters",
        "policies",
        "queues",
        "exchanges",
        "bindings",
    ):
        assert objects(again, category) == objects(exported, category), category
    assert can_log_in(second, "dora", "dora-pw", "app")
    # A vhost-scoped export imports into another vhost of a third node.
    third = nodes("third")
    assert third.api("PUT", "/api/vhosts/elsewhere").status == 201
    assert third.api("POST", "/api/definitions/elsewhere", vhost_export).status == 204
    copied = third.api("GET", "/api/definitions/elsewhere").body
    for category in ("queues", "exchanges", "bindings"):
        assert objects(copied, category) == objects(vhost_export, category)
    assert [row["vhost"] for row in copied["policies"] + copied["parameters"]] == ["elsewhere"] * 3


BAD_DOCUMENTS: list[tuple[bytes, str]] = [
    (b"nope", "failed_to_parse_json"),
    (b"[1]", "failed_to_parse_json"),
    (json.dumps({"queues": {"a": 1}}).encode(), "queues must be a list of objects"),
    (
        json.dumps(
            {
                "users": [{"name": "mallory", "password": "pw", "tags": ""}],
                "vhosts": [{"name": "half"}],
                "policies": [{"vhost": "/", "name": "p", "pattern": "(", "definition": {"message-ttl": 1}}],
            }
        ).encode(),
        'Validation failed\n\npattern should be regular expression but is invalid: {"missing )",1}\n (//p)',
    ),
    (
        json.dumps(
            {
                "vhosts": [{"name": "half"}],
                "queues": [{"name": "q", "vhost": "half", "arguments": {"x-max-priority": "x"}}],
            }
        ).encode(),
        "invalid arg 'x-max-priority'",
    ),
    (
        json.dumps({"exchanges": [{"name": "x", "vhost": "/", "type": "nosuch"}]}).encode(),
        "unknown exchange type 'nosuch'",
    ),
    (
        json.dumps({"queues": [{"name": "q", "vhost": "nosuch"}]}).encode(),
        "Virtual host 'nosuch' does not exist",
    ),
    (
        json.dumps(
            {"permissions": [{"user": "nosuch", "vhost": "/", "configure": "", "write": "", "read": ""}]}
        ).encode(),
        "User 'nosuch' does not exist",
    ),
    (
        json.dumps(
            {"users": [{"name": "mallory", "password_hash": "AAAA", "hashing_algorithm": "bcrypt"}]}
        ).encode(),
        "hashing_algorithm 'bcrypt' is not supported",
    ),
    (
        json.dumps(
            {
                "users": [
                    {
                        "name": "mallory",
                        "password_hash": "!!",
                        "hashing_algorithm": "rabbit_password_hashing_sha256",
                    }
                ]
            }
        ).encode(),
        "not valid base64",
    ),
    (
        json.dumps(
            {
                "parameters": [
                    {
                        "vhost": "/",
                        "component": "vhost-limits",
                        "name": "limits",
                        "value": {"max-queues": "x"},
                    }
                ]
            }
        ).encode(),
        "max-queues should be an integer",
    ),
]


def test_a_bad_document_is_refused_whole_with_rabbitmqs_400(nodes: Any) -> None:
    node = nodes("a")
    before = node.api("GET", "/api/definitions").body
    for raw, reason in BAD_DOCUMENTS:
        reply = node.api("POST", "/api/definitions", raw=raw)
        assert reply.status == 400, (raw, reply)
        assert reply.body["error"] == "bad_request"
        assert reason in reply.body["reason"], (raw, reply.body)
    assert node.api("GET", "/api/definitions").body == before  # nothing of the valid parts either
    assert node.api("POST", "/api/definitions/nosuch", raw=b"{}").status == 404
    assert node.api("GET", "/api/definitions/nosuch").status == 404
    assert node.api("PUT", "/api/users/watcher", {"password": "pw", "tags": "monitoring"}).status == 201
    refused = node.api("POST", "/api/definitions", raw=b"{}", auth=("watcher", "pw"))
    assert refused.status == 401
    # What OtterMQ lacks is accepted and ignored (topic permissions, global and other parameters).
    ignored = {
        "topic_permissions": [{"user": "guest", "vhost": "/", "exchange": "x", "write": ".*", "read": ".*"}],
        "global_parameters": [{"name": "cluster_name", "value": "c"}],
        "parameters": [
            {"vhost": "/", "component": "federation-upstream", "name": "up", "value": {"uri": "amqp://"}}
        ],
        "bindings": [
            {
                "source": "nosuch",
                "vhost": "/",
                "destination": "q",
                "destination_type": "queue",
                "routing_key": "k",
            }
        ],
        "queues": [{"name": "amq.reserved", "vhost": "/", "durable": True}],
    }
    assert node.api("POST", "/api/definitions", ignored).status == 204
    after = node.api("GET", "/api/definitions").body
    assert after["queues"] == before["queues"] and after["bindings"] == before["bindings"]


def _big_document(queues: int) -> bytes:
    """A RabbitMQ-shaped export (indented, as the UI's download) with `queues` queues and a binding each."""
    document = {
        "rabbit_version": "3.10.8",
        "vhosts": [{"name": "/"}],
        "exchanges": [
            {
                "name": "dlx",
                "vhost": "/",
                "type": "topic",
                "durable": True,
                "auto_delete": False,
                "arguments": {},
            }
        ],
        "queues": [
            {
                "name": f"orders.region-{i:06d}.inbound",
                "vhost": "/",
                "durable": True,
                "auto_delete": False,
                "arguments": {"x-message-ttl": 60000, "x-dead-letter-exchange": "dlx"},
            }
            for i in range(queues)
        ],
        "bindings": [
            {
                "source": "dlx",
                "vhost": "/",
                "destination": f"orders.region-{i:06d}.inbound",
                "destination_type": "queue",
                "routing_key": f"orders.{i}.#",
                "arguments": {},
            }
            for i in range(queues)
        ],
    }
    return json.dumps(document, indent=2).encode()


def test_definitions_beyond_a_mebibyte_import_and_the_limit_is_a_413(nodes: Any, tmp_path: Path) -> None:
    """RabbitMQ takes definitions files of many MiB over HTTP (its later max_body_size: 20 MiB); other
    request bodies stay capped at 1 MiB."""
    config = tmp_path / "ottermq.toml"
    config.write_text("http_max_body_size = 3145728\n")
    node = nodes("a", "--config", str(config))
    big = _big_document(5000)
    assert 2 * 1024 * 1024 < len(big) < 3 * 1024 * 1024
    reply = node.api("POST", "/api/definitions", raw=big)
    assert reply.status == 204, reply
    listed = node.api("GET", "/api/queues?page=1&page_size=1&columns=name").body
    assert listed["total_count"] == 5000
    assert node.api("POST", "/api/definitions/%2F", raw=big).status == 204  # again: nothing changes
    too_big = _big_document(8000)
    assert len(too_big) > 3 * 1024 * 1024
    refused = node.api("POST", "/api/definitions", raw=too_big)
    assert refused.status == 413 and refused.body == {
        "error": "bad_request",
        "reason": "request body larger than 3145728 bytes",
    }
    publish = {
        "properties": {},
        "routing_key": "q",
        "payload": "x" * (1024 * 1024 + 1),
        "payload_encoding": "string",
    }
    assert node.api("POST", "/api/exchanges/%2F/amq.default/publish", publish).status == 413


def test_ctl_import_and_export_definitions(nodes: Any, tmp_path: Path) -> None:
    node = nodes("a")
    code, out, err = node.ctl("import_definitions", str(RABBITMQ_EXPORT))
    assert code == 0, err
    assert out.splitlines()[0] == f'Importing definitions in JSON from a file at "{RABBITMQ_EXPORT}" ...'
    target = tmp_path / "export.json"
    code, out, _ = node.ctl("export_definitions", str(target))
    assert code == 0 and out.startswith("Exporting definitions in JSON to a file at")
    written = json.loads(target.read_text())
    code, out, _ = node.ctl("export_definitions", "-")
    assert code == 0 and json.loads(out) == written  # "-": the JSON alone on stdout
    assert objects(written, "queues") == objects(rabbitmq_export(), "queues")
    bad = tmp_path / "bad.json"
    bad.write_text('{"queues": [{"name": "q", "vhost": "nosuch"}]}')
    code, _, err = node.ctl("import_definitions", str(bad))
    assert code == 65 and "Virtual host 'nosuch' does not exist" in err
    bad.write_text("nope")
    code, _, err = node.ctl("import_definitions", str(bad))
    assert code == 65 and "Failed to deserialise input" in err
    assert node.ctl("import_definitions", str(tmp_path / "missing.json"))[0] == 65
    # Over 1 MiB (the limit of other request bodies): HTTP takes it (up to http_max_body_size), and so does
    # the control socket, which has no limit.
    big = {
        "queues": [
            {"name": f"big.{i}", "vhost": "/", "arguments": {"x-note": "n" * 4096}} for i in range(300)
        ]
    }
    assert node.api("POST", "/api/definitions", big).status == 204
    assert node.api("DELETE", "/api/queues/%2F/big.299").status == 204
    code, _, err = node.ctl("import_definitions", "-", stdin=json.dumps(big))
    assert code == 0, err
    assert node.api("GET", "/api/queues/%2F/big.299").status == 200


def test_load_definitions_at_boot(nodes: Any, tmp_path: Path) -> None:
    definitions = tmp_path / "definitions.json"
    document = rabbitmq_export()
    document["users"] = [row for row in document["users"] if row["name"] != "guest"]
    document["permissions"] = [row for row in document["permissions"] if row["user"] != "guest"]
    definitions.write_text(json.dumps(document))
    node = nodes("a", "--load-definitions", str(definitions), start=False)
    node.start()
    # As RabbitMQ: a fresh node that loads definitions gets no default user.
    assert node.api("GET", "/api/whoami", auth=("guest", "guest")).status == 401
    assert node.api("GET", "/api/whoami", auth=("alice", "alice-secret")).status == 200
    assert can_log_in(node, "bob", USERS["bob"], "shop")
    assert "definitions loaded from" in node.log()
    node.restart(kill=True)
    assert "0 changes" in node.log()  # loaded again at each start: nothing to change
    assert node.api("GET", "/api/queues/shop/orders.new", auth=("alice", "alice-secret")).status == 200
    # A change made since stays unless the file says otherwise (the file's objects are updated).
    assert (
        node.api(
            "PUT",
            "/api/users/alice",
            {"password": "changed", "tags": "administrator"},
            auth=("alice", "alice-secret"),
        ).status
        == 204
    )
    node.restart()
    assert node.api("GET", "/api/whoami", auth=("alice", "alice-secret")).status == 200
    definitions.write_text('{"queues": [{"name": "q", "vhost": "nosuch"}]}')
    node.stop()
    assert node.start(expect_exit=True) == 2
    assert "load_definitions" in node.log() and "nosuch" in node.log()


def test_rabbitmqadmin_export_and_import(nodes: Any, tmp_path: Path) -> None:
    binary = shutil.which("rabbitmqadmin")
    if binary is None:
        pytest.fail("rabbitmqadmin is not installed: tools/test_deps.sh (run by make test) installs it")
    node = nodes("a")

    def admin(*argv: str) -> subprocess.CompletedProcess[str]:
        command = [binary, "-H", "127.0.0.1", "-P", str(node.http_port), "-u", "guest", "-p", "guest", *argv]
        return subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)

    imported = admin("import", str(RABBITMQ_EXPORT))
    assert imported.returncode == 0, imported.stderr
    check_rabbitmq_objects(node)
    target = tmp_path / "admin-export.json"
    assert admin("export", str(target)).returncode == 0
    assert objects(json.loads(target.read_text()), "bindings") == objects(rabbitmq_export(), "bindings")
    scoped = tmp_path / "shop.json"
    assert admin("-V", "shop", "export", str(scoped)).returncode == 0
    assert "vhost" not in json.loads(scoped.read_text())["queues"][0]
    assert node.api("PUT", f"/api/vhosts/{quote('copy')}").status == 201
    assert admin("-V", "copy", "import", str(scoped)).returncode == 0
    assert node.api("GET", "/api/queues/copy/orders.all").status == 200


def test_imported_bindings_have_rabbitmqs_properties_keys(nodes: Any) -> None:
    # RabbitMQ 3.10 types a JSON integer in imported binding arguments as `long` (rabbit_misc
    # to_amqp_table), as its HTTP API does; the keys below are what a 3.10.8 node listed for this import.
    node = nodes("a")
    arguments = {
        "k1": {"a": 1},
        "k2": {
            "z": 5,
            "a": -7,
            "b": 1.5,
            "c": "s",
            "d": True,
            "e": [1, "x", 2.5],
            "f": {"y": 2, "b": "q"},
            "x-match": "any",
        },
        "k3": {"big": 10000000000},
    }
    document = {
        "queues": [{"name": "bq", "vhost": "/", "durable": True, "auto_delete": False, "arguments": {}}],
        "exchanges": [
            {
                "name": "bx",
                "vhost": "/",
                "type": "topic",
                "durable": True,
                "auto_delete": False,
                "internal": False,
            }
        ],
        "bindings": [
            {
                "source": "bx",
                "vhost": "/",
                "destination": "bq",
                "destination_type": "queue",
                "routing_key": key,
                "arguments": args,
            }
            for key, args in arguments.items()
        ],
    }
    expected = ["k1~Ajat_Q", "k2~M2i83A", "k3~QMYoLA"]

    def keys() -> list[str]:
        rows = node.api("GET", "/api/bindings/%2F/e/bx/q/bq").body
        return sorted(row["properties_key"] for row in rows)

    assert node.api("POST", "/api/definitions", document).status == 204
    assert keys() == expected
    # The same bindings made over HTTP have the same keys, so importing again adds nothing.
    assert node.api("POST", "/api/definitions", document).status == 204
    assert keys() == expected
    node.restart(kill=True)  # the log keeps the integers' type
    assert keys() == expected
    assert node.api("DELETE", f"/api/bindings/%2F/e/bx/q/bq/{expected[1]}").status == 204
    assert keys() == [expected[0], expected[2]]


def test_a_big_import_lets_other_clients_be_served(nodes: Any) -> None:
    # 15,000 queues with a binding each take seconds to import; publishes with confirms on another
    # connection go on meanwhile (before the import yielded to the event loop, the first one waited for
    # the whole import).
    node = nodes("a")
    count = 20_000
    document = {
        "exchanges": [{"name": "big.x", "vhost": "/", "type": "direct", "durable": True}],
        "queues": [{"name": f"big.q.{i}", "vhost": "/", "durable": True} for i in range(count)],
        "bindings": [
            {"source": "big.x", "vhost": "/", "destination": f"big.q.{i}", "destination_type": "queue",
             "routing_key": f"k.{i}"}
            for i in range(count)
        ],
    }  # fmt: skip
    raw = json.dumps(document, indent=2).encode()
    confirmed: list[float] = []  # when each publish's confirm came
    stop = threading.Event()
    connection = node.amqp("guest", "guest")
    channel = connection.channel()
    channel.confirm_delivery()
    channel.queue_declare("probe", durable=True)

    def publish() -> None:
        while not stop.is_set():
            channel.basic_publish("", "probe", b"x", pika.BasicProperties(delivery_mode=2))
            confirmed.append(time.monotonic())
            time.sleep(0.005)

    thread = threading.Thread(target=publish)
    thread.start()
    try:
        started = time.monotonic()
        reply = node.api("POST", "/api/definitions", raw=raw)
        ended = time.monotonic()
    finally:
        stop.set()
        thread.join(timeout=20)
    connection.close()
    assert reply.status == 204, reply
    assert node.api("GET", "/api/queues/%2F/big.q.19999").status == 200
    # Parsing the document holds the loop for a moment; after that, confirms keep coming while the
    # import runs (the middle half of it, well away from its start and end). Each confirm waits for an
    # fsync behind the import's own records: about one per 70 ms here, so a few are what to expect in
    # half a second; an import holding the loop lets none through.
    window = (started + (ended - started) / 4, ended - (ended - started) / 4)
    during = [at for at in confirmed if window[0] <= at <= window[1]]
    assert ended - started > 1.0, "the import was too quick to tell"
    assert len(during) >= 3, (len(during), ended - started)
