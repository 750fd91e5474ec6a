"""Publish runs: consecutive publishes of one channel to one stream, in one read, skip routing after the
first (channel_publish.PublishRun) and have their confirms registered as one range. Every publish of a run
must still be confirmed once, in order, land at its own offset with its own properties, and stop going to
the stream the moment a method handled in between (on any channel) changes where it routes.

Strategy: the raw client of test_raw.py sends each scenario as one write, well under the 32 KiB the
server hands over at a time, so the publishes, and any method between them, are handled in one batch as
a run; confirms and returns are read off the wire; the stream is then read back with pika from `first`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pika
import pytest
from pika import frame, spec

from tests.integration.conftest import unique, wait_for
from tests.integration.test_raw import RawClient, ServerProcess, opened, ottermq_server

STREAM = {"x-queue-type": "stream"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with ottermq_server(tmp_path_factory.mktemp("runs")) as proc:
        yield proc


@pytest.fixture
def client(server: ServerProcess) -> Iterator[RawClient]:
    c = opened(server.port, 1, 2)
    c.send_method(1, spec.Confirm.Select())
    c.expect(spec.Confirm.SelectOk)
    try:
        yield c
    finally:
        c.close()


def publish(
    channel: int, exchange: str, routing_key: str, body: bytes, content_type: str | None = None, **props: Any
) -> bytes:
    """The frames of one mandatory, persistent publish."""
    properties = spec.BasicProperties(delivery_mode=2, content_type=content_type, **props)
    return b"".join(
        (
            frame.Method(
                channel, spec.Basic.Publish(exchange=exchange, routing_key=routing_key, mandatory=True)
            ).marshal(),
            frame.Header(channel, len(body), properties).marshal(),
            frame.Body(channel, body).marshal(),
        )
    )


def declare(client: RawClient, name: str, arguments: dict[str, Any] | None = None) -> None:
    client.send_method(2, spec.Queue.Declare(queue=name, durable=True, arguments=arguments))
    client.expect(spec.Queue.DeclareOk)


def confirmed_tags(client: RawClient, count: int) -> tuple[list[int], list[Any]]:
    """Every delivery tag acked, one by one in order, until `count`; and the other frames read meanwhile."""
    tags: list[int] = []
    others: list[Any] = []
    while not tags or tags[-1] < count:
        got = client.read_frame()
        assert got is not None, "the server closed the connection"
        if isinstance(got, frame.Method) and isinstance(got.method, spec.Basic.Ack):
            last = tags[-1] if tags else 0
            tag = got.method.delivery_tag
            assert tag > last, f"ack {tag} after {last}"
            assert got.method.multiple or tag == last + 1, f"single ack {tag} after {last}"
            tags.extend(range(last + 1, tag + 1))
        else:
            assert not (isinstance(got, frame.Method) and isinstance(got.method, spec.Basic.Nack)), got
            others.append(got)
    return tags, others


def read_stream(port: int, name: str, count: int) -> list[tuple[int, bytes, Any]]:
    """(offset, body, content type) of the stream's first `count` records."""
    connection = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", port))
    try:
        channel = connection.channel()
        channel.basic_qos(prefetch_count=500)
        got: list[tuple[int, bytes, Any]] = []

        def on_message(ch: Any, method: Any, props: Any, body: bytes) -> None:
            got.append((props.headers["x-stream-offset"], body, props.content_type))
            ch.basic_ack(method.delivery_tag)

        channel.basic_consume(name, on_message, arguments={"x-stream-offset": "first"})
        wait_for(connection, lambda: len(got) >= count, what=f"{count} records")
        connection.process_data_events(time_limit=0.3)  # and nothing more
        return got
    finally:
        connection.close()


def queue_count(port: int, name: str) -> int:
    connection = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", port))
    try:
        return int(connection.channel().queue_declare(name, passive=True).method.message_count)
    finally:
        connection.close()


def test_runs_broken_by_other_targets_and_properties_are_confirmed_once_each_in_order(
    server: ServerProcess, client: RawClient
) -> None:
    stream, queue = unique("run-s"), unique("run-q")
    declare(client, stream, STREAM)
    declare(client, queue)
    # Runs of the same properties, other properties, a classic queue between (its confirm numbers fall
    # inside the stream's runs), and back: one write of 42 publishes.
    plan: list[tuple[str, str | None]] = []
    plan += [(stream, "a")] * 10 + [(queue, None)] * 2 + [(stream, "a")] * 5 + [(stream, None)] * 2
    plan += [(stream, "b")] * 6 + [(queue, None)] + [(stream, "b")] * 3 + [(stream, "a")] * 13
    data = b"".join(publish(1, "", target, b"b%d" % i, kind) for i, (target, kind) in enumerate(plan))
    assert len(data) < 16 * 1024
    client.send(data)
    tags, others = confirmed_tags(client, len(plan))
    assert tags == list(range(1, len(plan) + 1))
    assert others == []  # nothing returned
    expected = [(b"b%d" % i, kind) for i, (target, kind) in enumerate(plan) if target == stream]
    got = read_stream(server.port, stream, len(expected))
    assert [offset for offset, _, _ in got] == list(range(len(expected)))
    assert [(body, kind) for _, body, kind in got] == expected
    assert queue_count(server.port, queue) == 3


@pytest.mark.parametrize("kind", ["stream", "classic"])
@pytest.mark.parametrize("change", ["unbind", "delete"])
def test_a_method_between_publishes_ends_the_run(
    server: ServerProcess, client: RawClient, change: str, kind: str
) -> None:
    """A run caches where its publishes go: an unbind or a delete handled in the same read (on the other
    channel) must send the next publishes where the topology now says (nowhere: they are returned)."""
    stream, exchange = unique("run-s"), unique("run-x")
    declare(client, stream, STREAM if kind == "stream" else None)
    client.send_method(2, spec.Exchange.Declare(exchange=exchange, type="direct"))
    client.expect(spec.Exchange.DeclareOk)
    client.send_method(2, spec.Queue.Bind(queue=stream, exchange=exchange, routing_key="k"))
    client.expect(spec.Queue.BindOk)
    before = b"".join(publish(1, exchange, "k", b"in%d" % i) for i in range(8))
    if change == "unbind":
        method = spec.Queue.Unbind(queue=stream, exchange=exchange, routing_key="k")
    else:
        method = spec.Queue.Delete(queue=stream)
    after = b"".join(publish(1, exchange, "k", b"out%d" % i) for i in range(6))
    client.send(before + frame.Method(2, method).marshal() + after)
    tags, others = confirmed_tags(client, 14)
    assert tags == list(range(1, 15))
    returned = [
        f.method for f in others if isinstance(f, frame.Method) and isinstance(f.method, spec.Basic.Return)
    ]
    assert [r.reply_code for r in returned] == [312] * 6
    bodies = [f.fragment for f in others if isinstance(f, frame.Body)]
    assert bodies == [b"out%d" % i for i in range(6)]
    if change == "unbind" and kind == "stream":
        got = read_stream(server.port, stream, 8)
        assert [body for _, body, _ in got] == [b"in%d" % i for i in range(8)]
    elif change == "unbind":
        assert queue_count(server.port, stream) == 8


def get_all(port: int, name: str, count: int) -> list[tuple[bytes, Any]]:
    """(body, properties) of `count` messages taken from a classic queue."""
    connection = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", port))
    try:
        channel = connection.channel()
        got: list[tuple[bytes, Any]] = []
        for _ in range(count):
            method, props, body = channel.basic_get(name, auto_ack=True)
            assert method is not None, f"{len(got)} of {count}"
            got.append((body, props))
        assert channel.basic_get(name, auto_ack=True)[0] is None
        return got
    finally:
        connection.close()


def test_a_classic_run_keeps_each_publishes_properties_and_reads_those_that_route(
    server: ServerProcess, client: RawClient
) -> None:
    """In a run to a classic queue each message keeps its own properties (a message id each); one with a
    CC header in the middle is routed by it (to a second queue too), and the run goes on after it."""
    queue, other = unique("run-q"), unique("run-cc")
    declare(client, queue)
    declare(client, other)
    data = b"".join(publish(1, "", queue, b"m%d" % i, message_id=f"id{i}") for i in range(10))
    data += publish(1, "", queue, b"cc", headers={"CC": [other]})
    data += b"".join(publish(1, "", queue, b"m%d" % i, message_id=f"id{i}") for i in range(10, 20))
    client.send(data)
    tags, others = confirmed_tags(client, 21)
    assert tags == list(range(1, 22)) and others == []
    got = get_all(server.port, queue, 21)
    assert [body for body, _ in got] == [b"m%d" % i for i in range(10)] + [b"cc"] + [
        b"m%d" % i for i in range(10, 20)
    ]
    assert [props.message_id for body, props in got if body != b"cc"] == [f"id{i}" for i in range(20)]
    assert [body for body, _ in get_all(server.port, other, 1)] == [b"cc"]


@pytest.mark.parametrize("kind", ["stream", "classic"])
def test_a_user_id_not_the_users_in_a_run_is_refused(
    server: ServerProcess, client: RawClient, kind: str
) -> None:
    """A publish's user-id is checked whatever came before it on the channel."""
    name = unique("run-u")
    declare(client, name, STREAM if kind == "stream" else None)
    data = b"".join(publish(1, "", name, b"m%d" % i) for i in range(5))
    data += publish(1, "", name, b"bad", user_id="mallory")
    client.send(data)
    others: list[Any] = []  # (acks of the first five may or may not come before the close)
    while not any(isinstance(f, frame.Method) and isinstance(f.method, spec.Channel.Close) for f in others):
        got = client.read_frame()
        assert got is not None, "the server closed the connection"
        others.append(got)
    closes = [
        f.method for f in others if isinstance(f, frame.Method) and isinstance(f.method, spec.Channel.Close)
    ]
    assert [(c.reply_code, c.reply_text) for c in closes] == [
        (406, "PRECONDITION_FAILED - user_id property set to 'mallory' but authenticated user was 'guest'")
    ]
