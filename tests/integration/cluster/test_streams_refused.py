"""Stream queues keep their records in logs of their own, which replication does not carry: a clustered
node refuses to declare one (406, the channel closes, nothing is created), on the leader and through a
follower's proxy alike, so that no confirmed stream message can be lost with the leader."""

from __future__ import annotations

import pika
import pytest

from tests.integration.cluster.conftest import Cluster, Node, wait_until

pytestmark = pytest.mark.timeout(90)

REFUSAL = (
    "PRECONDITION_FAILED - invalid arg 'x-queue-type' for queue 's' in vhost '/': "
    '"stream queues are not supported on a clustered OtterMQ node: their messages are not replicated"'
)


def amqp(node: Node) -> pika.BlockingConnection:
    params = pika.URLParameters(f"amqp://guest:guest@127.0.0.1:{node.port}/")
    params.socket_timeout = 5
    params.stack_timeout = 10
    return pika.BlockingConnection(params)


def test_a_clustered_node_refuses_stream_queues(cluster: Cluster) -> None:
    leader = cluster.start("a")
    assert cluster.leader() is leader
    follower = cluster.start("b")
    wait_until(lambda: "b" in ((leader.status() or {}).get("isr") or []), 30, "b to be in sync")
    for node in (leader, follower):  # the follower relays the client to the leader
        connection = amqp(node)
        channel = connection.channel()
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as refused:
            channel.queue_declare("s", durable=True, arguments={"x-queue-type": "stream"})
        assert (refused.value.reply_code, refused.value.reply_text) == (406, REFUSAL)
        # The connection goes on: other queue types are declared as usual.
        channel = connection.channel()
        channel.queue_declare("q", durable=True, arguments={"x-queue-type": "quorum"})
        connection.close()
    assert [q["name"] for q in leader.ctl("list_queues")] == ["q"]
