"""Channel behaviour: publish, get, consume, acks, qos, recover, flow, cancel, errors (plain bytes in)."""

from __future__ import annotations

import re
from typing import Any

from ottermq.amqp.frames import BodyFrame, HeaderFrame, encode_method_frame
from ottermq.amqp.methods import (
    BasicAck,
    BasicCancel,
    BasicCancelOk,
    BasicConsume,
    BasicConsumeOk,
    BasicDeliver,
    BasicGet,
    BasicGetEmpty,
    BasicGetOk,
    BasicNack,
    BasicPublish,
    BasicQos,
    BasicQosOk,
    BasicRecover,
    BasicRecoverAsync,
    BasicRecoverOk,
    BasicReject,
    BasicReturn,
    ChannelClose,
    ChannelCloseOk,
    ChannelFlow,
    ChannelFlowOk,
    ConnectionClose,
    QueueDeclare,
    QueueDeclareOk,
    QueueDelete,
    QueueDeleteOk,
)
from ottermq.amqp.properties import BasicProperties, decode_properties, encode_properties
from ottermq.broker.broker import Broker, BrokerSettings
from tests.unit.broker.domain_fakes import content

from .test_connection_harness import Client, connected


def declare(client: Client, name: str = "q", channel: int = 1, **kwargs: Any) -> str:
    client.method(channel, QueueDeclare(queue=name, **kwargs))
    return client.expect(QueueDeclareOk, channel).queue


def consume(client: Client, queue: str = "q", channel: int = 1, tag: str = "", **kwargs: Any) -> str:
    client.method(channel, BasicConsume(queue=queue, consumer_tag=tag, **kwargs))
    return client.expect(BasicConsumeOk, channel).consumer_tag


def deliveries(client: Client) -> list[tuple[BasicDeliver, bytes]]:
    """Every basic.deliver written so far, with its body."""
    out: list[tuple[BasicDeliver, bytes]] = []
    frames = client.frames()
    i = 0
    while i < len(frames):
        frame = frames[i]
        method = getattr(frame, "method", None)
        assert isinstance(method, BasicDeliver), frame
        header = frames[i + 1]
        assert isinstance(header, HeaderFrame)
        body = b""
        i += 2
        while len(body) < header.body_size:
            assert isinstance(frames[i], BodyFrame)
            body += frames[i].payload
            i += 1
        out.append((method, body))
    return out


def expect_channel_close(
    client: Client, code: int, text: str | None = None, channel: int = 1
) -> ChannelClose:
    close = client.expect(ChannelClose, channel)
    assert close.reply_code == code, close
    if text is not None:
        assert close.reply_text == text
    return close


def test_publish_and_get() -> None:
    client = connected()
    declare(client)
    client.publish(1, "", "q", b"one")
    client.publish(1, "", "q", b"two")
    client.method(1, BasicGet(queue="q", no_ack=True))
    get_ok = client.expect(BasicGetOk, 1)
    assert (get_ok.delivery_tag, get_ok.redelivered, get_ok.routing_key, get_ok.message_count) == (
        1,
        False,
        "q",
        1,
    )
    assert client.expect_content()[1] == b"one"
    client.method(1, BasicGet(queue="q", no_ack=True))
    assert client.expect(BasicGetOk, 1).message_count == 0
    assert client.expect_content()[1] == b"two"
    client.method(1, BasicGet(queue="q", no_ack=True))
    client.expect(BasicGetEmpty, 1)


def test_empty_body_and_multi_frame_body() -> None:
    broker = Broker()
    client = Client(broker)
    client.start()
    client.login()
    from ottermq.amqp.methods import ConnectionOpen, ConnectionOpenOk, ConnectionTune, ConnectionTuneOk

    client.expect(ConnectionTune, 0)
    client.method(0, ConnectionTuneOk(2047, 4096, 0))
    client.frame_max = 4096
    client.method(0, ConnectionOpen("/"))
    client.expect(ConnectionOpenOk, 0)
    client.open_channel(1)
    declare(client)
    big = bytes(range(256)) * 40  # 10240 bytes: three body frames at frame_max 4096
    client.publish(1, "", "q", b"")
    client.publish(1, "", "q", big)
    consume(client, no_ack=True)
    got = deliveries(client)
    assert [body for _, body in got] == [b"", big]


def test_properties_pass_through_untouched() -> None:
    from ottermq.amqp.properties import BasicProperties, decode_properties

    client = connected()
    declare(client)
    props = BasicProperties(content_type="text/plain", headers={"a": 1}, delivery_mode=2, message_id="m1")
    client.publish(1, "", "q", b"x", properties=props)
    client.method(1, BasicGet(queue="q", no_ack=True))
    client.expect(BasicGetOk, 1)
    raw, _ = client.expect_content()
    assert decode_properties(raw) == props


def test_server_generated_consumer_tag_and_deliveries() -> None:
    client = connected()
    declare(client)
    tag = consume(client)
    assert re.fullmatch(r"amq\.ctag-[A-Za-z0-9_-]{22}", tag)
    for body in (b"a", b"b", b"c"):
        client.publish(1, "", "q", body)
    got = deliveries(client)
    assert [(d.consumer_tag, d.delivery_tag, d.redelivered, body) for d, body in got] == [
        (tag, 1, False, b"a"),
        (tag, 2, False, b"b"),
        (tag, 3, False, b"c"),
    ]


def test_queued_messages_follow_consume_ok() -> None:
    client = connected()
    declare(client)
    client.publish(1, "", "q", b"early")
    client.method(1, BasicConsume(queue="q", consumer_tag="c1"))
    client.expect(BasicConsumeOk, 1)
    assert [body for _, body in deliveries(client)] == [b"early"]


def test_duplicate_consumer_tag_is_530() -> None:
    client = connected()
    declare(client)
    consume(client, tag="dup")
    client.method(1, BasicConsume(queue="q", consumer_tag="dup"))
    close = client.expect(ConnectionClose, 0)
    assert (close.reply_code, close.reply_text) == (530, "NOT_ALLOWED - attempt to reuse consumer tag 'dup'")
    assert (close.class_id, close.method_id) == (60, 20)


def test_consume_missing_queue_is_404() -> None:
    client = connected()
    client.method(1, BasicConsume(queue="nope"))
    close = expect_channel_close(client, 404, "NOT_FOUND - no queue 'nope' in vhost '/'")
    assert (close.class_id, close.method_id) == (60, 20)


def test_exclusive_consumer_locks_the_queue() -> None:
    client = connected()
    declare(client)
    consume(client, exclusive=True)
    client.open_channel(2)
    client.method(2, BasicConsume(queue="q"))
    expect_channel_close(client, 403, "ACCESS_REFUSED - queue 'q' in vhost '/' in exclusive use", channel=2)


def test_cancel_stops_deliveries_and_unknown_tags_are_fine() -> None:
    client = connected()
    declare(client)
    tag = consume(client, no_ack=True)
    client.method(1, BasicCancel(tag))
    assert client.expect(BasicCancelOk, 1).consumer_tag == tag
    client.publish(1, "", "q", b"x")
    assert client.silent()
    client.method(1, BasicCancel("unknown"))
    assert client.expect(BasicCancelOk, 1).consumer_tag == "unknown"
    client.method(1, BasicCancel("unknown", nowait=True))
    assert client.silent()


def test_ack_single_and_unknown_tag() -> None:
    client = connected()
    declare(client)
    consume(client)
    client.publish(1, "", "q", b"a")
    deliveries(client)
    client.method(1, BasicAck(1, False))
    assert client.silent()
    client.method(1, BasicAck(7, False))
    close = expect_channel_close(client, 406, "PRECONDITION_FAILED - unknown delivery tag 7")
    assert (close.class_id, close.method_id) == (60, 80)
    # The channel now ignores everything but close-ok.
    client.publish(1, "", "q", b"ignored")
    assert client.silent()
    client.method(1, ChannelCloseOk())
    assert 1 not in client.conn.channels


def test_double_ack_is_unknown_tag() -> None:
    client = connected()
    declare(client)
    consume(client)
    client.publish(1, "", "q", b"a")
    deliveries(client)
    client.method(1, BasicAck(1, False))
    client.method(1, BasicAck(1, False))
    expect_channel_close(client, 406, "PRECONDITION_FAILED - unknown delivery tag 1")


def test_ack_multiple_and_all() -> None:
    client = connected()
    declare(client)
    consume(client)
    for i in range(5):
        client.publish(1, "", "q", b"%d" % i)
    deliveries(client)
    client.method(1, BasicAck(3, True))
    assert client.conn.channels[1].unacked.tags() == [4, 5]
    client.method(1, BasicAck(0, True))
    assert client.conn.channels[1].unacked.tags() == []


def test_nack_requeue_redelivers_in_order_and_reject_drops() -> None:
    client = connected()
    declare(client)
    for body in (b"a", b"b", b"c"):
        client.publish(1, "", "q", body)
    client.method(1, BasicQos(0, 3, False))
    client.expect(BasicQosOk, 1)
    consume(client)
    assert [b for _, b in deliveries(client)] == [b"a", b"b", b"c"]
    client.method(1, BasicNack(2, True, True))  # a and b back
    got = deliveries(client)
    assert [(d.delivery_tag, d.redelivered, b) for d, b in got] == [(4, True, b"a"), (5, True, b"b")]
    client.method(1, BasicReject(3, False))  # c dropped
    client.method(1, BasicAck(0, True))
    assert client.silent()
    assert client.broker.vhosts["/"].queues["q"].ready_count == 0


def test_per_consumer_prefetch() -> None:
    client = connected()
    declare(client)
    client.method(1, BasicQos(0, 2, False))
    client.expect(BasicQosOk, 1)
    consume(client)
    for i in range(5):
        client.publish(1, "", "q", b"%d" % i)
    assert [d.delivery_tag for d, _ in deliveries(client)] == [1, 2]
    client.method(1, BasicAck(1, False))
    assert [d.delivery_tag for d, _ in deliveries(client)] == [3]
    client.method(1, BasicAck(3, True))
    assert [d.delivery_tag for d, _ in deliveries(client)] == [4, 5]


def test_prefetch_applies_to_consumers_created_afterwards() -> None:
    client = connected()
    declare(client, "q1")
    declare(client, "q2")
    consume(client, "q1")
    client.method(1, BasicQos(0, 1, False))
    client.expect(BasicQosOk, 1)
    consume(client, "q2")
    for _ in range(3):
        client.publish(1, "", "q1", b"x")
        client.publish(1, "", "q2", b"y")
    got = [b for _, b in deliveries(client)]
    assert got.count(b"x") == 3
    assert got.count(b"y") == 1


def test_global_prefetch_is_shared_by_the_channel() -> None:
    client = connected()
    declare(client, "q1")
    declare(client, "q2")
    client.method(1, BasicQos(0, 3, True))
    client.expect(BasicQosOk, 1)
    consume(client, "q1")
    consume(client, "q2")
    for _ in range(3):
        client.publish(1, "", "q1", b"x")
        client.publish(1, "", "q2", b"y")
    assert len(deliveries(client)) == 3
    client.method(1, BasicAck(0, True))
    assert len(deliveries(client)) == 3


def test_no_ack_consumers_ignore_prefetch() -> None:
    client = connected()
    declare(client)
    client.method(1, BasicQos(0, 1, False))
    client.expect(BasicQosOk, 1)
    consume(client, no_ack=True)
    for _ in range(4):
        client.publish(1, "", "q", b"x")
    assert len(deliveries(client)) == 4
    assert len(client.conn.channels[1].unacked) == 0


def test_prefetch_size_is_540() -> None:
    client = connected()
    client.method(1, BasicQos(1000, 0, False))
    close = client.expect(ConnectionClose, 0)
    assert (close.reply_code, close.reply_text) == (540, "NOT_IMPLEMENTED - prefetch_size!=0 (1000)")


def test_recover_requeues_everything_unacked() -> None:
    client = connected()
    declare(client)
    consume(client)
    client.publish(1, "", "q", b"a")
    client.publish(1, "", "q", b"b")
    deliveries(client)
    client.method(1, BasicRecover(True))
    frames = client.frames()
    assert isinstance(frames[-1].method, BasicRecoverOk)
    client.pending = frames[:-1]
    got = deliveries(client)
    assert [(d.delivery_tag, d.redelivered, b) for d, b in got] == [(3, True, b"a"), (4, True, b"b")]
    client.method(1, BasicRecoverAsync(True))
    assert [d.delivery_tag for d, _ in deliveries(client)] == [5, 6]


def test_recover_without_requeue_is_not_implemented() -> None:
    client = connected()
    client.method(1, BasicRecover(False))
    close = client.expect(ConnectionClose, 0)
    assert (close.reply_code, close.reply_text) == (540, "NOT_IMPLEMENTED - requeue=false")


def test_closing_a_channel_requeues_its_unacked_messages() -> None:
    client = connected()
    declare(client)
    consume(client)
    client.publish(1, "", "q", b"a")
    client.publish(1, "", "q", b"b")
    deliveries(client)
    client.method(1, BasicAck(2, False))
    client.method(1, ChannelClose(200, "", 0, 0))
    client.expect(ChannelCloseOk, 1)
    client.open_channel(2)
    client.method(2, BasicGet(queue="q"))
    get_ok = client.expect(BasicGetOk, 2)
    assert (get_ok.delivery_tag, get_ok.redelivered) == (1, True)
    assert client.expect_content()[1] == b"a"


def test_lost_connection_requeues_to_other_consumers() -> None:
    broker = Broker()
    first = connected(broker)
    second = connected(broker)
    declare(first)
    consume(first)
    first.publish(1, "", "q", b"a")
    assert len(deliveries(first)) == 1
    consume(second)
    first.conn.connection_lost()
    got = deliveries(second)
    assert [(d.redelivered, b) for d, b in got] == [(True, b"a")]


def test_flow_active_is_acknowledged_and_inactive_is_not_implemented() -> None:
    client = connected()
    client.method(1, ChannelFlow(True))
    assert client.expect(ChannelFlowOk, 1).active is True
    client.method(1, ChannelFlow(False))
    close = client.expect(ConnectionClose, 0)
    assert (close.reply_code, close.reply_text) == (540, "NOT_IMPLEMENTED - active=false")
    assert (close.class_id, close.method_id) == (20, 20)


def test_backpressure_holds_deliveries_until_resume() -> None:
    client = connected()
    declare(client)
    consume(client, no_ack=True)
    client.transport.is_writable = False
    client.publish(1, "", "q", b"held")
    assert client.silent()
    client.transport.is_writable = True
    client.conn.resume_writing()
    assert [b for _, b in deliveries(client)] == [b"held"]


def test_queue_deletion_cancels_consumers_that_asked() -> None:
    broker = Broker()
    client = connected(broker)
    declare(client)
    tag = consume(client)
    other = connected(broker)
    other.method(1, QueueDelete(queue="q"))
    other.expect(QueueDeleteOk, 1)
    cancel = client.expect(BasicCancel, 1)
    assert cancel.consumer_tag == tag
    assert not client.conn.channels[1].consumers


def test_repeated_publish_details_are_shared_not_copied() -> None:
    """Messages published with the same exchange, routing key and properties as the previous one share
    those objects (a held backlog keeps one copy); a change is taken as sent."""
    client = connected()
    declare(client)
    persistent = BasicProperties(delivery_mode=2, content_type="text/plain")
    for body in (b"a", b"b", b"c"):
        client.publish(1, "", "q", body, properties=persistent)
    client.publish(1, "", "q", b"d", properties=BasicProperties(delivery_mode=1))
    client.publish(1, "amq.direct", "q", b"e")
    queue = client.broker.vhosts["/"].queues["q"]
    messages = [content(queue, entry) for entry in queue._ready]
    a, b, c, d = messages
    assert a.properties is b.properties is c.properties
    assert a.routing_key is b.routing_key is c.routing_key
    assert d.properties == encode_properties(BasicProperties(delivery_mode=1)) != a.properties
    assert [m.body for m in messages] == [b"a", b"b", b"c", b"d"]
    assert decode_properties(c.properties).content_type == "text/plain"


def test_publish_to_missing_exchange_is_404() -> None:
    client = connected()
    client.publish(1, "nope", "rk", b"x")
    close = expect_channel_close(client, 404, "NOT_FOUND - no exchange 'nope' in vhost '/'")
    assert (close.class_id, close.method_id) == (60, 40)


def test_mandatory_unroutable_is_returned() -> None:
    client = connected()
    client.publish(1, "amq.direct", "nowhere", b"lost", mandatory=True)
    ret = client.expect(BasicReturn, 1)
    assert (ret.reply_code, ret.reply_text, ret.exchange, ret.routing_key) == (
        312,
        "NO_ROUTE",
        "amq.direct",
        "nowhere",
    )
    assert client.expect_content()[1] == b"lost"
    client.publish(1, "amq.direct", "nowhere", b"lost")
    assert client.silent()


def test_immediate_is_not_implemented() -> None:
    client = connected()
    client.send(encode_method_frame(1, BasicPublish(0, "", "q", False, True)) + client.content(1, b"x"))
    close = client.expect(ConnectionClose, 0)
    assert (close.reply_code, close.reply_text, close.class_id, close.method_id) == (
        540,
        "NOT_IMPLEMENTED - immediate=true",
        60,
        40,
    )


def test_message_over_the_max_size_is_406_and_its_body_ignored() -> None:
    client = connected(Broker(BrokerSettings(max_message_size=100)))
    declare(client)
    client.send(encode_method_frame(1, BasicPublish(0, "", "q")) + client.content(1, b"x" * 101))
    close = expect_channel_close(
        client, 406, "PRECONDITION_FAILED - message size 101 is larger than configured max size 100"
    )
    assert (close.class_id, close.method_id) == (60, 40)
    assert client.silent()
    assert client.conn.state == "running"


def test_default_max_size_text() -> None:
    client = connected()
    client.send(
        encode_method_frame(1, BasicPublish(0, "", "q")) + client.content(1, b"", body_size=134217729)[:22]
    )
    expect_channel_close(
        client,
        406,
        "PRECONDITION_FAILED - message size 134217729 is larger than configured max size 134217728",
    )


def test_method_between_publish_and_header_is_505() -> None:
    client = connected()
    client.send(
        encode_method_frame(1, BasicPublish(0, "", "q")) + encode_method_frame(1, BasicQos(0, 1, False))
    )
    close = client.expect(ConnectionClose, 0)
    assert close.reply_code == 505
    assert close.reply_text == (
        "UNEXPECTED_FRAME - expected content header for class 60, got non content header frame instead"
    )


def test_body_without_publish_is_505() -> None:
    client = connected()
    client.send(client.content(1, b"stray"))
    close = client.expect(ConnectionClose, 0)
    assert close.reply_code == 505


def test_header_of_another_class_is_505() -> None:
    client = connected()
    content = bytearray(client.content(1, b"x"))
    content[7:9] = (50).to_bytes(2, "big")
    client.send(encode_method_frame(1, BasicPublish(0, "", "q")) + bytes(content))
    close = client.expect(ConnectionClose, 0)
    assert close.reply_code == 505
    assert "got one for class 50" in close.reply_text


def test_body_longer_than_declared_is_a_frame_error() -> None:
    client = connected()
    client.send(encode_method_frame(1, BasicPublish(0, "", "q")) + client.content(1, b"123456", body_size=3))
    close = client.expect(ConnectionClose, 0)
    assert close.reply_code == 501


def test_queue_name_shortcut_uses_the_last_declared_queue() -> None:
    client = connected()
    name = declare(client, "")
    assert name.startswith("amq.gen-")
    client.publish(1, "", name, b"x")
    client.method(1, BasicGet(queue="", no_ack=True))
    client.expect(BasicGetOk, 1)
    client.expect_content()
    client.open_channel(2)
    client.method(2, BasicGet(queue=""))
    expect_channel_close(client, 404, "NOT_FOUND - no previously declared queue", channel=2)


def test_basic_get_ack_and_requeue_on_close() -> None:
    client = connected()
    declare(client)
    client.publish(1, "", "q", b"x")
    client.method(1, BasicGet(queue="q"))
    assert client.expect(BasicGetOk, 1).delivery_tag == 1
    client.expect_content()
    assert client.conn.channels[1].unacked.tags() == [1]
    client.method(1, BasicAck(1, False))
    assert client.conn.channels[1].unacked.tags() == []


def test_user_id_must_be_the_authenticated_user() -> None:
    from ottermq.amqp.properties import BasicProperties

    client = connected()
    declare(client)
    client.publish(1, "", "q", b"x", properties=BasicProperties(user_id="guest"))
    assert client.silent()
    client.publish(1, "", "q", b"x", properties=BasicProperties(user_id="mallory"))
    expect_channel_close(
        client,
        406,
        "PRECONDITION_FAILED - user_id property set to 'mallory' but authenticated user was 'guest'",
    )
    assert client.broker.vhosts["/"].queues["q"].ready_count == 1


def test_no_cancel_notification_without_the_capability() -> None:
    from ottermq.amqp.methods import (
        ConnectionOpen,
        ConnectionOpenOk,
        ConnectionStartOk,
        ConnectionTune,
        ConnectionTuneOk,
    )

    broker = Broker()
    client = Client(broker)
    client.start()
    client.method(0, ConnectionStartOk({}, "PLAIN", b"\x00guest\x00guest", "en_US"))
    client.expect(ConnectionTune, 0)
    client.method(0, ConnectionTuneOk(2047, 131072, 0))
    client.method(0, ConnectionOpen("/"))
    client.expect(ConnectionOpenOk, 0)
    client.open_channel(1)
    declare(client)
    consume(client)
    other = connected(broker)
    other.method(1, QueueDelete(queue="q"))
    other.expect(QueueDeleteOk, 1)
    assert client.silent()
    assert not client.conn.channels[1].consumers


def test_auto_delete_queue_goes_with_its_last_consumer() -> None:
    client = connected()
    declare(client, "auto", auto_delete=True)
    tag = consume(client, "auto")
    client.method(1, BasicCancel(tag))
    client.expect(BasicCancelOk, 1)
    assert "auto" not in client.broker.vhosts["/"].queues


def test_exclusive_queue_is_locked_to_its_connection() -> None:
    broker = Broker()
    owner = connected(broker)
    declare(owner, "mine", exclusive=True)
    other = connected(broker)
    other.method(1, BasicGet(queue="mine"))
    close = expect_channel_close(other, 405)
    assert close.reply_text.startswith(
        "RESOURCE_LOCKED - cannot obtain exclusive access to locked queue 'mine'"
    )
    owner.method(0, ConnectionClose(200, "", 0, 0))
    assert "mine" not in broker.vhosts["/"].queues
