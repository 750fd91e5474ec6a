"""Delivery counts survive a restart (issue 13), as RabbitMQ 3.10's quorum queues keep them.

Checked against RabbitMQ 3.10 (a quorum queue with x-delivery-limit 3, one message nacked with requeue
twice, then the node SIGKILLed and started again): a message that was ready at the crash comes back with
x-delivery-count 2; one that was delivered and unacknowledged at the crash comes back with 3 (its
consumer was lost with the node: a failed delivery), and one more return is over the limit. OtterMQ logs
returns and deliveries of such queues (MessagesReturned, MessagesDelivered) and returns what was out when
the log ended before it serves again.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import get_message
from tests.integration.test_restart import PERSISTENT, Node, barrier, node  # noqa: F401

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("OTTERMQ_TEST_URL")), reason="restarts need a broker process of our own"
)

MEMENTO = str(Path(sys.executable).with_name("memento"))
QUORUM = {"x-queue-type": "quorum", "x-delivery-limit": 3}


def delivery_count(properties: Any) -> Any:
    return (properties.headers or {}).get("x-delivery-count")


def nack_twice(ch: Any, queue: str) -> None:
    for expected in (0, 1):
        method, properties, _ = get_message(ch, queue)
        assert delivery_count(properties) == expected
        ch.basic_nack(method.delivery_tag, requeue=True)


def records(data_dir: Path) -> list[dict[str, Any]]:
    """The log's records, decoded (`memento inspect --records --decode --json`)."""
    done = subprocess.run(
        [MEMENTO, "inspect", str(data_dir), "--records", "--decode", "--json"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode in (0, 1), done.stderr
    return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


@pytest.mark.parametrize("kill", [True, False], ids=["sigkill", "graceful"])
def test_delivery_counts_survive_a_restart_and_the_limit_holds(node: Node, kill: bool) -> None:  # noqa: F811
    conn = node.connect()
    ch = conn.channel()
    ch.confirm_delivery()
    for queue in ("dc.ready", "dc.held"):
        ch.queue_declare(queue, durable=True, arguments=QUORUM)
        ch.basic_publish("", queue, queue.encode(), PERSISTENT)
        nack_twice(ch, queue)
    ch.queue_declare("dc.classic", durable=True)
    ch.basic_publish("", "dc.classic", b"classic", PERSISTENT)
    method, _, _ = get_message(ch, "dc.classic")
    ch.basic_nack(method.delivery_tag, requeue=True)
    # dc.held's third delivery stays unacknowledged when the broker goes.
    holder = conn.channel()
    _, properties, _ = get_message(holder, "dc.held")
    assert delivery_count(properties) == 2
    barrier(ch)
    if kill:
        node.kill()
    else:
        node.stop()
    logged = records(node.data_dir)
    kinds = [(record.get("type"), record.get("queue")) for record in logged]
    assert ("returned", "dc.ready") in kinds and ("delivered", "dc.held") in kinds
    # A classic queue without a limit logs no delivery nor return.
    assert not [kind for kind in kinds if kind[1] == "dc.classic" and kind[0] in ("delivered", "returned")]
    node.start()
    conn = node.connect()
    ch = conn.channel()
    # Ready at the crash: its two returns are kept.
    method, properties, body = get_message(ch, "dc.ready")
    assert body == b"dc.ready" and method.redelivered
    assert delivery_count(properties) == 2
    ch.basic_nack(method.delivery_tag, requeue=True)
    method, properties, _ = get_message(ch, "dc.ready")
    assert delivery_count(properties) == 3
    # Out at the crash (or at the stop): one failed delivery more.
    method, properties, body = get_message(ch, "dc.held")
    assert body == b"dc.held" and method.redelivered
    assert delivery_count(properties) == 3
    ch.basic_nack(method.delivery_tag, requeue=True)  # the fourth return: over the limit, dropped
    assert ch.basic_get("dc.held")[0] is None
    assert ch.queue_declare("dc.held", durable=True, arguments=QUORUM).method.message_count == 0
    conn.close()
