"""Stream queues over AMQP 0.9.1 (x-queue-type: stream), as RabbitMQ 3.10.8 answers (recorded side by side:
these tests pass against it with OTTERMQ_TEST_URL=amqp://guest:guest@127.0.0.1:5682/%2F)."""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import pika
import pytest

from tests.integration.conftest import BrokerInfo, Resources, broker_error, unique, wait_for

STREAM = {"x-queue-type": "stream"}


def _stream(
    channel: Any, resources: Resources, count: int = 0, arguments: dict[str, Any] | None = None
) -> str:
    name = resources.queue()
    channel.queue_declare(name, durable=True, arguments={**STREAM, **(arguments or {})})
    if count:
        channel.confirm_delivery()
        for i in range(count):
            channel.basic_publish("", name, b"m%d" % i)
    return name


def _acking(sink: list[Any], value: Callable[[Any, bytes], Any] = lambda props, body: body) -> Any:
    """A consumer callback that keeps value(props, body) and acks."""

    def on_message(channel: Any, method: Any, props: Any, body: bytes) -> None:
        sink.append(value(props, body))
        channel.basic_ack(method.delivery_tag)

    return on_message


def _consume(
    connection: Any, queue: str, offset: Any = None, want: int = 0, prefetch: int = 10, ack: bool = True
) -> list[tuple[bytes, Any]]:
    channel = connection.channel()
    channel.basic_qos(prefetch_count=prefetch)
    got: list[tuple[bytes, Any]] = []

    def on_message(ch: Any, method: Any, props: Any, body: bytes) -> None:
        got.append((body, props.headers))
        assert not method.redelivered
        if ack:
            ch.basic_ack(method.delivery_tag)

    args = {} if offset is None else {"x-stream-offset": offset}
    tag = channel.basic_consume(queue, on_message, arguments=args)
    if want:
        wait_for(connection, lambda: len(got) >= want, what=f"{want} deliveries")
    connection.process_data_events(time_limit=0.3)  # and nothing more
    channel.basic_cancel(tag)
    channel.close()
    return got


def test_declare_arguments_are_validated(broker: BrokerInfo) -> None:
    name = unique("s")
    resource = f"queue '{name}' in vhost '/'"
    cases: list[tuple[dict[str, Any], str]] = [
        ({"x-max-age": "7d"}, "invalid_max_age"),
        ({"x-max-age": "10x"}, "invalid_max_age"),
        ({"x-max-age": "0s"}, "invalid_max_age"),
        ({"x-max-age": 10}, "{unacceptable_type,signedint}"),
        ({"x-max-length-bytes": -1}, "{value_negative,-1}"),
        ({"x-max-length-bytes": "x"}, '"expected integer, got longstr"'),
        ({"x-stream-max-segment-size-bytes": -5}, "{value_negative,-5}"),
    ]
    for extra, error in cases:
        connection = pika.BlockingConnection(broker.params())
        key = next(iter(extra))
        declare = connection.channel().queue_declare
        arguments = {**STREAM, **extra}
        assert broker_error(partial(declare, name, durable=True, arguments=arguments)) == (
            406,
            f"PRECONDITION_FAILED - invalid arg '{key}' for {resource}: {error}",
        ), extra
        connection.close()


def test_retention_arguments_are_accepted(channel: Any, resources: Resources) -> None:
    for age in ("7D", "12h", "30m", "10s", "1Y", "1M"):
        _stream(channel, resources, 0, {"x-max-age": age})
    _stream(
        channel, resources, 0, {"x-max-length-bytes": 10_000_000, "x-stream-max-segment-size-bytes": 500_000}
    )
    name = _stream(channel, resources, 0, {"x-max-age": "1h"})
    assert broker_error(
        lambda: channel.queue_declare(name, durable=True, arguments={**STREAM, "x-max-age": "2h"})
    ) == (
        406,
        f"PRECONDITION_FAILED - inequivalent arg 'x-max-age' for queue '{name}' in vhost '/': "
        "received '2h' but current is '1h'",
    )


def test_consumers_need_a_prefetch_and_manual_acks(connection: Any, resources: Resources) -> None:
    name = _stream(connection.channel(), resources)
    resource = f"queue '{name}' in vhost '/'"
    channel = connection.channel()
    assert broker_error(lambda: channel.basic_consume(name, lambda *a: None)) == (
        406,
        f"PRECONDITION_FAILED - consumer prefetch count is not set for '{resource}'",
    )
    channel = connection.channel()
    channel.basic_qos(prefetch_count=10, global_qos=True)  # a channel-wide limit is not the consumer's
    assert broker_error(lambda: channel.basic_consume(name, lambda *a: None))[0] == 406
    channel = connection.channel()
    channel.basic_qos(prefetch_count=10)
    consume = channel.basic_consume
    assert broker_error(lambda: consume(name, lambda *a: None, auto_ack=True), pika.exceptions.AMQPError) == (
        540,
        f"NOT_IMPLEMENTED - automatic acknowledgement not supported by stream queues {resource}",
    )


def test_offsets(connection: Any, resources: Resources) -> None:
    name = _stream(connection.channel(), resources, count=5)
    everything = [(b"m%d" % i, {"x-stream-offset": i}) for i in range(5)]
    assert _consume(connection, name, "first", want=5) == everything
    assert _consume(connection, name, 0, want=5) == everything
    assert _consume(connection, name, -1, want=5) == everything
    assert _consume(connection, name, 2, want=3) == everything[2:]
    assert _consume(connection, name, "last", want=1) == everything[4:]
    assert _consume(connection, name, "next") == []
    assert _consume(connection, name) == []
    assert _consume(connection, name, 100) == []
    an_hour_ago = datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=1)
    assert _consume(connection, name, an_hour_ago, want=5) == everything
    for interval in ("10m", "1h", "1D", "7D"):
        assert _consume(connection, name, interval, want=5) == everything
    # Nothing was removed by the acks (RabbitMQ updates the count it reports every few seconds).
    channel = connection.channel()
    deadline = time.monotonic() + 10
    while channel.queue_declare(name, passive=True).method.message_count != 5:
        assert time.monotonic() < deadline
        connection.process_data_events(time_limit=0.5)


def test_next_follows_new_publishes_and_consumers_are_independent(
    connection: Any, resources: Resources
) -> None:
    name = _stream(connection.channel(), resources, count=2)
    reader = connection.channel()
    reader.basic_qos(prefetch_count=5)
    live: list[Any] = []
    replay: list[Any] = []
    reader.basic_consume(name, _acking(live))
    reader.basic_consume(name, _acking(replay), arguments={"x-stream-offset": "first"})
    wait_for(connection, lambda: len(replay) == 2)
    publisher = connection.channel()
    publisher.confirm_delivery()
    for i in range(20):
        publisher.basic_publish("", name, b"n%d" % i)
    wait_for(connection, lambda: len(live) == 20 and len(replay) == 22)
    assert live == [b"n%d" % i for i in range(20)]
    assert replay == [b"m0", b"m1", *live]


def test_prefetch_limits_unacked_deliveries(connection: Any, resources: Resources) -> None:
    name = _stream(connection.channel(), resources, count=10)
    got = _consume(connection, name, "first", want=2, prefetch=2, ack=False)
    assert [body for body, _ in got] == [b"m0", b"m1"]


def test_get_nack_reject_and_purge_are_refused(broker: BrokerInfo, resources: Resources) -> None:
    connection = pika.BlockingConnection(broker.params())
    name = _stream(connection.channel(), resources, count=1)
    resource = f"queue '{name}' in vhost '/'"
    connection.close()

    def fresh() -> Any:
        return pika.BlockingConnection(broker.params()).channel()

    channel = fresh()
    assert broker_error(lambda: channel.basic_get(name), pika.exceptions.AMQPError) == (
        540,
        f"NOT_IMPLEMENTED - basic.get not supported by stream queues {resource}",
    )
    channel = fresh()
    assert broker_error(lambda: channel.queue_purge(name), pika.exceptions.AMQPError) == (
        540,
        f"NOT_IMPLEMENTED - queue.purge not supported by stream queues {resource}",
    )
    for settle in ("nack", "reject"):
        assert _refused_settle(fresh(), name, settle) == (
            540,
            f"NOT_IMPLEMENTED - basic.nack and basic.reject not supported by stream queues {resource}",
        )


def _refused_settle(channel: Any, name: str, settle: str) -> tuple[int, str]:
    channel.basic_qos(prefetch_count=10)
    tags: list[int] = []
    channel.basic_consume(
        name, lambda ch, m, p, b: tags.append(m.delivery_tag), arguments={"x-stream-offset": "first"}
    )
    wait_for(channel.connection, lambda: bool(tags))

    def refuse() -> None:
        if settle == "nack":
            channel.basic_nack(tags[0], requeue=True)
        else:
            channel.basic_reject(tags[0], requeue=False)
        channel.connection.process_data_events(time_limit=1)
        channel.queue_declare(name, passive=True)

    return broker_error(refuse, pika.exceptions.AMQPError)


@pytest.mark.parametrize("size", [0, 1, 4096, 131072, 3 << 20])
def test_message_sizes(connection: Any, resources: Resources, size: int) -> None:
    channel = connection.channel()
    name = _stream(channel, resources)
    body = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    channel.confirm_delivery()
    channel.basic_publish("", name, body, pika.BasicProperties(headers={"a": 1}, content_type="x/y"))
    got: list[Any] = []
    reader = connection.channel()
    reader.basic_qos(prefetch_count=1)
    reader.basic_consume(
        name,
        _acking(got, lambda p, b: (b, p.headers, p.content_type)),
        arguments={"x-stream-offset": "first"},
    )
    wait_for(connection, lambda: bool(got), timeout=10)
    assert got == [(body, {"a": 1, "x-stream-offset": 0}, "x/y")]


def test_deleting_a_stream_and_declaring_it_again_starts_empty(connection: Any, resources: Resources) -> None:
    channel = connection.channel()
    name = _stream(channel, resources, count=3)
    channel.queue_delete(name)
    channel.queue_declare(name, durable=True, arguments=STREAM)
    channel.basic_publish("", name, b"new")
    assert _consume(connection, name, "first", want=1) == [(b"new", {"x-stream-offset": 0})]


def test_timestamp_offsets_skip_older_messages(connection: Any, resources: Resources) -> None:
    channel = connection.channel()
    name = _stream(channel, resources, count=2)
    time.sleep(2.2)
    cut = datetime.datetime.now(datetime.UTC)
    time.sleep(1.1)
    channel.basic_publish("", name, b"late")
    got = _consume(connection, name, cut, want=1)
    assert got == [(b"late", {"x-stream-offset": 2})]


def _read_to(connection: Any, name: str, offset: Any, last: bytes) -> list[tuple[int, bytes]]:
    """(offset, body) of every delivery from `offset` until the body `last`."""
    channel = connection.channel()
    channel.basic_qos(prefetch_count=100)
    got: list[tuple[int, bytes]] = []

    def on_message(ch: Any, method: Any, props: Any, body: bytes) -> None:
        got.append((props.headers["x-stream-offset"], body))
        ch.basic_ack(method.delivery_tag)

    channel.basic_consume(name, on_message, arguments={"x-stream-offset": offset})
    wait_for(connection, lambda: bool(got) and got[-1][1] == last, what=f"body {last!r}")
    channel.close()
    return got


def test_retention_deletes_the_oldest_segments(connection: Any, resources: Resources) -> None:
    # Segments of about 4 KiB, at most 12 KB kept: whole old segments go as new ones are written.
    arguments = {"x-max-length-bytes": 12_000, "x-stream-max-segment-size-bytes": 4096}
    channel = connection.channel()
    name = _stream(channel, resources, 0, arguments)
    reader = connection.channel()
    reader.basic_qos(prefetch_count=1)
    early: list[Any] = []
    # A consumer attached at offset 0 that reads one record and stops acking: retention goes on under it.
    reader.basic_consume(name, lambda *args: early.append(args), arguments={"x-stream-offset": 0})
    channel.confirm_delivery()

    def body(i: int) -> bytes:
        return b"%04d" % i * 25  # 100 B

    for i in range(400):
        channel.basic_publish("", name, body(i))
    wait_for(connection, lambda: len(early) == 1)
    got = _read_to(connection, name, 0, body(399))
    # An offset retention removed reads from the first one kept (as RabbitMQ does), up to the end. (RabbitMQ
    # offsets are not message numbers here: each new segment starts with a tracking chunk that takes one.)
    first = int(got[0][1][:4])
    assert first > 200
    assert [b for _offset, b in got] == [body(i) for i in range(first, 400)]
    offsets = [offset for offset, _body in got]
    assert offsets == sorted(offsets) and offsets[0] >= first
    assert _read_to(connection, name, "first", body(399))[0][0] >= offsets[0]
    # The early consumer goes on (RabbitMQ's reader still holds the deleted segment open and reads on in
    # it; here it goes on from what it read ahead, or from the first record kept).
    ch, method, _props, first_body = early[0]
    assert first_body == body(0)
    ch.basic_ack(method.delivery_tag)
    wait_for(connection, lambda: len(early) == 2)
    assert early[1][2].headers["x-stream-offset"] > 0


@pytest.mark.parametrize("value", ["10x", "0s", "bogus", "-1", True, {"a": 1}])
def test_unknown_offsets_are_refused_as_rabbitmq_does(
    broker: BrokerInfo, resources: Resources, value: Any
) -> None:
    connection = pika.BlockingConnection(broker.params())
    name = _stream(connection.channel(), resources)
    channel = connection.channel()
    channel.basic_qos(prefetch_count=5)

    def consume() -> None:
        channel.basic_consume(name, lambda *a: None, arguments={"x-stream-offset": value})
        connection.process_data_events(time_limit=0.5)

    if isinstance(value, str) and value[0].isdigit():
        # Digits then a unit RabbitMQ does not know, or zero: a 406 naming the argument.
        assert broker_error(consume) == (
            406,
            f"PRECONDITION_FAILED - invalid arg 'x-stream-offset' for queue '{name}' in vhost '/': "
            f'{{invalid_stream_offset_arg,{{longstr,<<"{value}">>}}}}',
        )
        connection.close()
    else:
        # Anything else fails RabbitMQ 3.10's parsing: the connection is closed with 541.
        assert broker_error(consume, pika.exceptions.ConnectionClosedByBroker) == (541, "INTERNAL_ERROR")


def test_the_management_api_shows_a_stream(broker: BrokerInfo, connection: Any, resources: Resources) -> None:
    if broker.external or broker.http_port is None:
        pytest.skip("reads OtterMQ's management API (RabbitMQ 3.10 shows neither bytes nor offsets)")
    import json
    import urllib.request

    retention = {
        "x-max-length-bytes": 10_000_000,
        "x-max-age": "1h",
        "x-stream-max-segment-size-bytes": 100_000,
    }
    channel = connection.channel()
    name = _stream(channel, resources, 3, retention)
    reader = connection.channel()
    reader.basic_qos(prefetch_count=1)
    reader.basic_consume(name, lambda *a: None, arguments={"x-stream-offset": "first"})
    request = urllib.request.Request(f"http://127.0.0.1:{broker.http_port}/api/queues/%2F/{name}")
    request.add_header("Authorization", "Basic Z3Vlc3Q6Z3Vlc3Q=")
    with urllib.request.urlopen(request, timeout=5) as answer:
        row = json.load(answer)
    node = row["node"]
    assert {key: row[key] for key in ("type", "messages", "messages_ready", "messages_unacknowledged")} == {
        "type": "stream",
        "messages": 3,
        "messages_ready": 3,
        "messages_unacknowledged": 0,
    }
    assert (row["members"], row["online"], row["readers"], row["consumers"]) == ([node], [node], {node: 1}, 1)
    assert row["arguments"] == {"x-queue-type": "stream", **retention}
    assert (row["first_offset"], row["last_offset"]) == (0, 2)
    assert 3 * (2 + 28 + 16) < row["stream_bytes"] < 1000  # three small records and the segment's header


def test_a_transaction_publishes_to_a_stream_at_commit(connection: Any, resources: Resources) -> None:
    channel = connection.channel()
    name = _stream(channel, resources)
    channel.tx_select()
    for i in range(3):
        channel.basic_publish("", name, b"t%d" % i)
    assert _consume(connection, name, "first") == []  # nothing before the commit
    channel.tx_commit()  # commit-ok once the stream has the records durable
    assert [body for body, _ in _consume(connection, name, "first", want=3)] == [b"t0", b"t1", b"t2"]
    channel.basic_publish("", name, b"rolled back")
    channel.tx_rollback()
    channel.basic_publish("", name, b"t3")
    channel.tx_commit()
    assert [body for body, _ in _consume(connection, name, "first", want=4)] == [b"t0", b"t1", b"t2", b"t3"]


def test_a_publish_to_streams_and_a_queue_is_confirmed_once_and_reaches_each(
    connection: Any, resources: Resources
) -> None:
    """A publish routed to one stream takes a path of its own; one routed to several streams and a queue
    is confirmed once every part is durable. Each gets the message, with its delivery mode."""
    channel = connection.channel()
    exchange = resources.exchange()
    channel.exchange_declare(exchange, "fanout", durable=True)
    streams = [_stream(channel, resources) for _ in range(2)]
    classic = resources.queue()
    channel.queue_declare(classic, durable=True)
    channel.confirm_delivery()
    channel.basic_publish("", streams[0], b"alone", pika.BasicProperties(delivery_mode=2))
    for queue in [*streams, classic]:
        channel.queue_bind(queue, exchange)
    channel.basic_publish(exchange, "", b"fan0", pika.BasicProperties(delivery_mode=2))
    channel.basic_publish(exchange, "", b"fan1", pika.BasicProperties(delivery_mode=1))
    got = [
        _consume(connection, stream, "first", want=want) for stream, want in zip(streams, (3, 2), strict=True)
    ]
    assert [[(body, headers["x-stream-offset"]) for body, headers in one] for one in got] == [
        [(b"alone", 0), (b"fan0", 1), (b"fan1", 2)],
        [(b"fan0", 0), (b"fan1", 1)],
    ]
    modes: list[tuple[bytes, int]] = []
    reader = connection.channel()
    reader.basic_qos(prefetch_count=10)
    on_message = _acking(modes, lambda props, body: (body, props.delivery_mode))
    reader.basic_consume(streams[1], on_message, arguments={"x-stream-offset": "first"})
    wait_for(connection, lambda: len(modes) >= 2, what="2 deliveries")
    assert modes == [(b"fan0", 2), (b"fan1", 1)]
    assert [channel.basic_get(classic, auto_ack=True)[2] for _ in range(2)] == [b"fan0", b"fan1"]
