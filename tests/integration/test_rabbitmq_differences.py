"""Where OtterMQ differed from RabbitMQ in ways that broke client libraries' own test suites.

Strategy: a raw socket (pika's frame codec, tests/integration/test_raw.py's client) shows the exact frames
and their order, checked against RabbitMQ 3.10: channel_max bounds how many channels are open, never the
channel numbers (aiormq opens channel 65535); a channel deleting a queue its own consumer reads gets
queue.delete-ok before that consumer's basic.cancel (kombu's suite waits for them in this order); a passive
queue.declare counts as use of the queue, so x-expires starts over.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pika import frame, spec

from tests.integration.conftest import BrokerInfo, unique
from tests.integration.test_raw import PROTOCOL_HEADER, RawClient, expect_connection_close, ottermq_server

CAPABILITIES = {"product": "raw-test", "capabilities": {"consumer_cancel_notify": True}}


def handshake(client: RawClient, channel_max: int | None = None) -> Any:
    """Log in announcing consumer_cancel_notify; tune-ok with `channel_max` (None: the server's)."""
    client.send(PROTOCOL_HEADER)
    client.expect(spec.Connection.Start)
    client.send_method(
        0,
        spec.Connection.StartOk(
            client_properties=CAPABILITIES,
            mechanism="PLAIN",
            response=b"\x00guest\x00guest",
        ),
    )
    tune = client.expect(spec.Connection.Tune)
    client.send_method(
        0,
        spec.Connection.TuneOk(
            channel_max=tune.channel_max if channel_max is None else channel_max,
            frame_max=131072,
            heartbeat=0,
        ),
    )
    client.send_method(0, spec.Connection.Open(virtual_host="/"))
    client.expect(spec.Connection.OpenOk)
    return tune


@pytest.fixture
def raw(broker: BrokerInfo) -> Iterator[RawClient]:
    client = RawClient(broker.port)
    try:
        yield client
    finally:
        client.close()


def methods(client: RawClient, count: int) -> list[tuple[int, Any]]:
    """The next `count` method frames as (channel, method)."""
    got = []
    for _ in range(count):
        received = client.read_frame()
        assert isinstance(received, frame.Method), received
        got.append((received.channel_number, received.method))
    return got


def test_any_channel_number_below_65536_opens_whatever_channel_max(raw: RawClient) -> None:
    tune = handshake(raw)
    assert tune.channel_max == 2047
    for number in (65535, 2048, 1):
        raw.send_method(number, spec.Channel.Open())
        assert raw.expect(spec.Channel.OpenOk) is not None
    queue = unique("chmax")
    raw.send_method(65535, spec.Queue.Declare(queue=queue, exclusive=True))
    assert raw.expect(spec.Queue.DeclareOk).queue == queue


def test_channel_max_limits_how_many_channels_are_open(raw: RawClient) -> None:
    handshake(raw, channel_max=2)
    raw.send_method(65535, spec.Channel.Open())
    raw.expect(spec.Channel.OpenOk)
    raw.send_method(7, spec.Channel.Open())
    raw.expect(spec.Channel.OpenOk)
    raw.send_method(7, spec.Channel.Close(reply_code=200, reply_text="", class_id=0, method_id=0))
    raw.expect(spec.Channel.CloseOk)
    raw.send_method(300, spec.Channel.Open())  # a closed channel frees its place
    raw.expect(spec.Channel.OpenOk)
    raw.send_method(3, spec.Channel.Open())
    close = expect_connection_close(raw, 530)
    assert close.reply_text == (
        "NOT_ALLOWED - number of channels opened (2) has reached the negotiated channel_max (2)"
    )


def test_channel_max_zero_allows_every_channel_number(tmp_path: Path, broker: BrokerInfo) -> None:
    if broker.external:
        pytest.skip("needs a broker configured with channel_max = 0")
    with ottermq_server(tmp_path, env={"OTTERMQ_CHANNEL_MAX": "0"}) as server:
        client = RawClient(server.port)
        try:
            assert handshake(client, channel_max=0).channel_max == 0
            for number in (65535, 40000, 1):
                client.send_method(number, spec.Channel.Open())
                client.expect(spec.Channel.OpenOk)
        finally:
            client.close()


def test_delete_ok_comes_before_the_cancel_of_the_deleting_channels_own_consumer(raw: RawClient) -> None:
    handshake(raw)
    queue = unique("delete-order")
    for number in (1, 2):
        raw.send_method(number, spec.Channel.Open())
        raw.expect(spec.Channel.OpenOk)
    raw.send_method(1, spec.Queue.Declare(queue=queue))
    raw.expect(spec.Queue.DeclareOk)
    raw.send_method(1, spec.Basic.Consume(queue=queue, consumer_tag="own"))
    raw.expect(spec.Basic.ConsumeOk)
    raw.send_method(2, spec.Basic.Consume(queue=queue, consumer_tag="other"))
    raw.expect(spec.Basic.ConsumeOk)

    raw.send_method(1, spec.Queue.Delete(queue=queue))
    got = [(number, type(m), getattr(m, "consumer_tag", None)) for number, m in methods(raw, 3)]
    own = [entry for entry in got if entry[0] == 1]
    assert own == [(1, spec.Queue.DeleteOk, None), (1, spec.Basic.Cancel, "own")]
    # Another channel's consumer is told too (RabbitMQ usually tells it before the delete-ok).
    assert (2, spec.Basic.Cancel, "other") in got

    # The channel is still usable, and the consumer is gone: cancelling it is a no-op.
    raw.send_method(1, spec.Basic.Cancel(consumer_tag="own"))
    assert raw.expect(spec.Basic.CancelOk).consumer_tag == "own"


def test_delete_with_nowait_still_cancels_the_own_consumer(raw: RawClient) -> None:
    handshake(raw)
    queue = unique("delete-nowait")
    raw.send_method(1, spec.Channel.Open())
    raw.expect(spec.Channel.OpenOk)
    raw.send_method(1, spec.Queue.Declare(queue=queue))
    raw.expect(spec.Queue.DeclareOk)
    raw.send_method(1, spec.Basic.Consume(queue=queue, consumer_tag="own"))
    raw.expect(spec.Basic.ConsumeOk)
    raw.send_method(1, spec.Queue.Delete(queue=queue, nowait=True))
    assert raw.expect(spec.Basic.Cancel).consumer_tag == "own"


def test_passive_declare_renews_x_expires(raw: RawClient) -> None:
    handshake(raw)
    queue = unique("expires-passive")
    raw.send_method(1, spec.Channel.Open())
    raw.expect(spec.Channel.OpenOk)
    raw.send_method(1, spec.Queue.Declare(queue=queue, arguments={"x-expires": 2000}))
    raw.expect(spec.Queue.DeclareOk)
    # Every passive declare comes well within 2 s of the previous one: the queue outlives 2 x x-expires.
    start = time.monotonic()
    while time.monotonic() - start < 4.5:
        time.sleep(0.7)
        raw.send_method(1, spec.Queue.Declare(queue=queue, passive=True))
        assert raw.expect(spec.Queue.DeclareOk).queue == queue
    # Left alone (a passive declare would renew it), it expires: RabbitMQ checks the timer it restarted,
    # OtterMQ's once-a-second tick finds it unused for 2 s.
    time.sleep(3.5)
    raw.send_method(1, spec.Queue.Declare(queue=queue, passive=True))
    close = raw.expect(spec.Channel.Close)
    assert close.reply_code == 404
