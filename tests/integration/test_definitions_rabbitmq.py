"""Definitions round trip with a real RabbitMQ 3.10 node that this test starts and stops itself.

Strategy: OtterMQ's export is imported into RabbitMQ with `rabbitmqctl import_definitions` (a user made
in OtterMQ logs in to RabbitMQ over AMQP with its password, a policy applies to an imported queue, an
imported binding routes), and RabbitMQ's export (`rabbitmqctl export_definitions`) into a fresh OtterMQ
(a user made in RabbitMQ logs in). The node runs on free ports with a node name, Mnesia and log
directories of its own (no plugins: nothing else is listened on), so it never meets another node on the
machine; it is stopped at the end whatever happens. The Debian `rabbitmq-server` package is needed
(tools/test_deps.sh installs it): without it the test fails, it is not skipped.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pika
import pytest

from tests.integration import test_definitions
from tests.integration.conftest import _free_port
from tests.integration.test_definitions import can_log_in

pytestmark = pytest.mark.timeout(120)

nodes = test_definitions.nodes  # the fixture: OtterMQ nodes of the test's own


@dataclass
class RabbitNode:
    name: str
    port: int
    env: dict[str, str]
    base: Path  # its files; readable by the node's user

    def ctl(self, *argv: str, check: bool = True) -> str | None:
        """rabbitmqctl's output (None for a failure when not `check`ed)."""
        result = subprocess.run(
            ["rabbitmqctl", "-n", self.name, *argv],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if result.returncode != 0:
            assert not check, (argv, result.stdout, result.stderr)
            return None
        return result.stdout

    def amqp(self, user: str, password: str, vhost: str) -> pika.BlockingConnection:
        credentials = pika.PlainCredentials(user, password)
        params = pika.ConnectionParameters("127.0.0.1", self.port, vhost, credentials, connection_attempts=1)
        return pika.BlockingConnection(params)


@pytest.fixture
def rabbitmq() -> Iterator[RabbitNode]:
    """A RabbitMQ node of this test's own, stopped (and its files removed) at teardown."""
    if shutil.which("rabbitmq-server") is None or shutil.which("rabbitmqctl") is None:
        pytest.fail("rabbitmq-server is not installed: run tools/test_deps.sh as root (apt-get)")
    # Not under pytest's tmp_path: that is private to the test's user, and Debian's wrapper runs the
    # node as the rabbitmq user, which must own its files.
    base = Path(tempfile.mkdtemp(prefix="ottermq-rabbitmq-"))
    (base / "enabled_plugins").write_text("[].\n")
    if os.getuid() == 0:
        owner = pwd.getpwnam("rabbitmq")
        for path in (base, base / "enabled_plugins"):
            os.chown(path, owner.pw_uid, owner.pw_gid)
    port = _free_port()
    name = f"ottermq-test-{uuid.uuid4().hex[:8]}@localhost"
    env = {
        **os.environ,
        "RABBITMQ_NODENAME": name,
        "RABBITMQ_NODE_PORT": str(port),
        "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
        "RABBITMQ_DIST_PORT": str(_free_port()),
        "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
        "RABBITMQ_LOG_BASE": str(base / "log"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
        "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq"),
    }
    node = RabbitNode(name, port, env, base)
    subprocess.run(["rabbitmq-server", "-detached"], env=env, cwd=base, check=True, timeout=60)
    try:
        # Polled: `await_startup` fails at once while the node is not registered yet, and then checks
        # only every 10 s.
        deadline = time.monotonic() + 60
        while node.ctl("status", check=False) is None:
            assert time.monotonic() < deadline, f"RabbitMQ did not start: see {base / 'log'}"
            time.sleep(0.5)
        yield node
    finally:
        node.ctl("stop", check=False)
        shutil.rmtree(base, ignore_errors=True)


def test_definitions_round_trip_with_rabbitmq(nodes: Any, rabbitmq: RabbitNode) -> None:
    otter = nodes("otter")
    assert otter.api("PUT", "/api/vhosts/app").status == 201
    assert otter.api("PUT", "/api/users/dora", {"password": "dora-pä55", "tags": "management"}).status == 201
    permissions = {"configure": "^dora\\.", "write": ".*", "read": ".*"}
    assert otter.api("PUT", "/api/permissions/app/dora", permissions).status == 201
    assert otter.api("PUT", "/api/exchanges/app/in", {"type": "direct", "durable": True}).status == 201
    assert otter.api("PUT", "/api/queues/app/dora.q", {"durable": True}).status == 201
    binding = {"routing_key": "k", "arguments": {"x-n": 1}}
    assert otter.api("POST", "/api/bindings/app/e/in/q/dora.q", binding).status == 201
    policy = {"pattern": "^dora\\.", "definition": {"max-length": 2}, "apply-to": "queues"}
    assert otter.api("PUT", "/api/policies/app/cap", policy).status == 201
    exported = otter.api("GET", "/api/definitions").body
    path = rabbitmq.base / "ottermq.json"
    path.write_text(json.dumps(exported))
    os.chmod(path, 0o644)  # the node's user reads it

    rabbitmq.ctl("import_definitions", str(path))
    connection = rabbitmq.amqp("dora", "dora-pä55", "app")
    channel = connection.channel()
    channel.confirm_delivery()
    for i in range(4):
        channel.basic_publish("in", "k", b"m%d" % i)
    # The policy's max-length 2 applies to the imported queue (drop-head): two are left.
    deadline = time.monotonic() + 10
    while (left := channel.queue_declare("dora.q", passive=True).method.message_count) != 2:
        assert time.monotonic() < deadline, left
        time.sleep(0.1)
    connection.close()
    rows = json.loads(rabbitmq.ctl("list_queues", "-p", "app", "name", "policy", "--formatter", "json") or "")
    assert {"name": "dora.q", "policy": "cap"} in rows
    with pytest.raises(pika.exceptions.ProbableAuthenticationError):
        rabbitmq.amqp("dora", "wrong", "app")

    # And back: RabbitMQ's export, with a user made there, into a fresh OtterMQ.
    rabbitmq.ctl("add_user", "erin", "erin-secret")
    rabbitmq.ctl("set_permissions", "-p", "app", "erin", ".*", ".*", ".*")
    exported_back = json.loads(rabbitmq.ctl("export_definitions", "-", "--format", "json") or "")
    fresh = nodes("fresh")
    reply = fresh.api("POST", "/api/definitions", exported_back)
    assert reply.status == 204, reply
    assert can_log_in(fresh, "erin", "erin-secret", "app")
    assert can_log_in(fresh, "dora", "dora-pä55", "app")
    assert not can_log_in(fresh, "erin", "wrong", "app")
    assert fresh.api("GET", "/api/queues/app/dora.q").body["policy"] == "cap"
    keys = [row["properties_key"] for row in fresh.api("GET", "/api/bindings/app/e/in/q/dora.q").body]
    assert keys == [row["properties_key"] for row in otter.api("GET", "/api/bindings/app/e/in/q/dora.q").body]
