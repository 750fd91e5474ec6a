"""Connection handshake, lifecycle, heartbeats and connection-level errors, driven with plain bytes."""

from __future__ import annotations

import struct
import time

import pytest

from ottermq.amqp.constants import PROTOCOL_HEADER
from ottermq.amqp.frames import HeartbeatFrame
from ottermq.amqp.methods import (
    BasicDeliver,
    ChannelClose,
    ChannelCloseOk,
    ChannelOpen,
    ChannelOpenOk,
    ConnectionClose,
    ConnectionCloseOk,
    ConnectionOpen,
    ConnectionStartOk,
    ConnectionTune,
    ConnectionTuneOk,
    QueueDeclare,
    QueueDeclareOk,
    TxSelect,
)
from ottermq.amqp.table import encode_table
from ottermq.broker import channel as channel_module
from ottermq.broker.broker import Broker, BrokerSettings

from .test_connection_harness import CLIENT_CAPABILITIES, Client, connected


def expect_close(client: Client, code: int, text: str | None = None) -> ConnectionClose:
    close = client.expect(ConnectionClose, 0)
    assert close.reply_code == code, close
    if text is not None:
        assert close.reply_text == text
    return close


def test_connection_start_announces_the_server() -> None:
    client = Client()
    start = client.start()
    assert (start.version_major, start.version_minor) == (0, 9)
    props = start.server_properties
    assert props["product"] == "OtterMQ"
    assert props["version"] and props["platform"]
    capabilities = props["capabilities"]
    for name in (
        "publisher_confirms",
        "exchange_exchange_bindings",
        "basic.nack",
        "consumer_cancel_notify",
        "connection.blocked",
        "authentication_failure_close",
        "per_consumer_qos",
    ):
        assert capabilities[name] is True
    assert start.mechanisms == b"PLAIN AMQPLAIN"
    assert start.locales == b"en_US"


def test_tune_offers_the_settings() -> None:
    client = Client(settings=BrokerSettings(channel_max=100, frame_max=8192, heartbeat=30))
    client.start()
    client.login()
    tune = client.expect(ConnectionTune, 0)
    assert (tune.channel_max, tune.frame_max, tune.heartbeat) == (100, 8192, 30)


def test_default_tune_is_rabbitmqs() -> None:
    client = Client()
    client.start()
    client.login()
    tune = client.expect(ConnectionTune, 0)
    assert (tune.channel_max, tune.frame_max, tune.heartbeat) == (2047, 131072, 60)


def test_full_handshake_and_client_close() -> None:
    client = connected(channel=None)
    assert client.conn in client.broker.connections
    client.method(0, ConnectionClose(200, "bye", 0, 0))
    client.expect(ConnectionCloseOk, 0)
    assert client.conn.closed
    assert client.conn not in client.broker.connections
    # The client closes the socket first (as with RabbitMQ); the broker only closes it after a linger.
    assert not client.transport.closed
    assert [timer.delay for timer in client.transport.timers] == [5.0]
    client.transport.run_timers()
    assert client.transport.closed


def test_amqplain_login() -> None:
    client = Client()
    client.start()
    client.login(encode_table({"LOGIN": "guest", "PASSWORD": "guest"})[4:], "AMQPLAIN")
    client.expect(ConnectionTune, 0)


def test_bad_protocol_header_gets_ours_and_a_close() -> None:
    client = Client()
    client.send(b"AMQP\x00\x00\x09\x02")
    assert bytes(client.transport.out) == PROTOCOL_HEADER
    assert client.transport.closed
    assert client.conn not in client.broker.connections


def test_http_request_is_refused() -> None:
    client = Client()
    client.send(b"GET / HTTP/1.1\r\n")
    assert bytes(client.transport.out) == PROTOCOL_HEADER
    assert client.transport.closed


@pytest.mark.parametrize(
    ("response", "peer"),
    [
        (b"\x00guest\x00wrong", "127.0.0.1"),
        (b"\x00nobody\x00x", "127.0.0.1"),
        (b"\x00guest\x00guest", "10.1.1.1"),
    ],
)
def test_refused_login_is_403_then_closed(response: bytes, peer: str) -> None:
    client = Client(peer=(peer, 1234))
    client.start()
    client.login(response)
    expect_close(
        client,
        403,
        "ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN. "
        "For details see the broker logfile.",
    )
    assert client.transport.closed


def test_refused_login_without_the_capability_just_closes() -> None:
    client = Client()
    client.start()
    client.method(0, ConnectionStartOk({}, "PLAIN", b"\x00guest\x00bad", "en_US"))
    assert client.silent()
    assert client.transport.closed


def test_unknown_mechanism() -> None:
    client = Client()
    client.start()
    client.method(0, ConnectionStartOk({"capabilities": CLIENT_CAPABILITIES}, "EXTERNAL", b"", "en_US"))
    expect_close(client, 503, "COMMAND_INVALID - unknown authentication mechanism 'EXTERNAL'")
    assert client.transport.closed


@pytest.mark.parametrize(
    ("channel_max", "frame_max", "text"),
    [
        (
            2047,
            1000,
            "NOT_ALLOWED - negotiated frame_max = 1000 is lower than the minimum allowed value (4096)",
        ),
        (
            2047,
            200000,
            "NOT_ALLOWED - negotiated frame_max = 200000 is higher than the maximum allowed value (131072)",
        ),
        (2047, 0, "NOT_ALLOWED - negotiated frame_max = 0 is higher than the maximum allowed value (131072)"),
        (
            0,
            131072,
            "NOT_ALLOWED - negotiated channel_max = 0 (no limit) "
            "is higher than the maximum allowed value (2047)",
        ),
        (
            3000,
            131072,
            "NOT_ALLOWED - negotiated channel_max = 3000 is higher than the maximum allowed value (2047)",
        ),
    ],
)
def test_tune_ok_out_of_bounds(channel_max: int, frame_max: int, text: str) -> None:
    client = Client()
    client.start()
    client.login()
    client.expect(ConnectionTune, 0)
    client.method(0, ConnectionTuneOk(channel_max, frame_max, 0))
    close = expect_close(client, 530, text)
    assert (close.class_id, close.method_id) == (10, 30)
    assert not client.transport.closed
    client.method(0, ConnectionCloseOk())
    assert client.transport.closed


def test_smaller_frame_max_is_accepted_and_enforced() -> None:
    client = Client()
    client.start()
    client.login()
    client.expect(ConnectionTune, 0)
    client.method(0, ConnectionTuneOk(10, 4096, 0))
    client.method(0, ConnectionOpen("/"))
    client.frames()
    assert client.conn.frame_max == 4096
    assert client.conn.channel_max == 10
    # channel_max counts open channels; any channel number may be used (as RabbitMQ).
    client.open_channel(11)
    assert 11 in client.conn.channels


def test_frames_above_the_negotiated_frame_max_are_refused() -> None:
    client = Client()
    client.start()
    client.login()
    client.expect(ConnectionTune, 0)
    client.method(0, ConnectionTuneOk(10, 4096, 0))
    client.method(0, ConnectionOpen("/"))
    client.frames()
    client.open_channel(1)
    client.send(b"\x03\x00\x01" + (5000).to_bytes(4, "big") + b"x" * 5000 + b"\xce")
    expect_close(client, 501)
    assert client.transport.closed


def test_oversized_frame_is_a_frame_error() -> None:
    client = connected()
    client.send(struct.pack(">BHI", 1, 1, 200000) + b"\x00" * 16)
    expect_close(client, 501)
    assert client.transport.closed


def test_unknown_vhost() -> None:
    client = Client()
    client.start()
    client.login()
    client.expect(ConnectionTune, 0)
    client.method(0, ConnectionTuneOk(2047, 131072, 0))
    client.method(0, ConnectionOpen("nope"))
    close = expect_close(client, 530, "NOT_ALLOWED - vhost nope not found")
    assert (close.class_id, close.method_id) == (10, 40)
    assert not client.transport.closed
    client.method(0, ConnectionCloseOk())
    assert client.transport.closed


def test_frame_on_unopened_channel() -> None:
    client = connected(channel=None)
    client.method(3, QueueDeclare(queue="q"))
    expect_close(client, 504, "CHANNEL_ERROR - expected 'channel.open'")


def test_channel_numbers_above_channel_max_are_fine() -> None:
    client = connected(channel=None)
    client.open_channel(3000)
    client.open_channel(65535)
    assert set(client.conn.channels) == {3000, 65535}


def test_second_channel_open() -> None:
    client = connected()
    client.method(1, ChannelOpen())
    close = expect_close(client, 504, "CHANNEL_ERROR - second 'channel.open' seen")
    assert (close.class_id, close.method_id) == (20, 10)


def test_channel_count_is_limited_by_channel_max() -> None:
    client = Client()
    client.start()
    client.login()
    client.expect(ConnectionTune, 0)
    client.method(0, ConnectionTuneOk(5, 131072, 0))
    client.method(0, ConnectionOpen("/"))
    client.frames()
    for number in range(1, 6):
        client.open_channel(number)
    client.method(5, ChannelClose(200, "", 0, 0))
    client.expect(ChannelCloseOk, 5)
    client.open_channel(5)
    client.method(6, ChannelOpen())
    expect_close(
        client, 530, "NOT_ALLOWED - number of channels opened (5) has reached the negotiated channel_max (5)"
    )


def test_channel_number_reusable_after_close() -> None:
    client = connected()
    client.method(1, ChannelClose(200, "", 0, 0))
    client.expect(ChannelCloseOk, 1)
    client.method(1, ChannelOpen())
    client.expect(ChannelOpenOk, 1)


def test_many_channels() -> None:
    client = connected(channel=None)
    for number in range(1, 51):
        client.open_channel(number)
    assert len(client.conn.channels) == 50


def test_unknown_method_is_540() -> None:
    client = connected()
    client.send(struct.pack(">BHIHH", 1, 1, 4, 60, 999) + b"\xce")
    close = expect_close(client, 540)
    assert (close.class_id, close.method_id) == (60, 999)


def test_server_only_method_from_client_is_503() -> None:
    client = connected()
    client.method(1, BasicDeliver("ctag", 1, False, "", "rk"))
    close = expect_close(client, 503, "COMMAND_INVALID - unimplemented method")
    assert (close.class_id, close.method_id) == (60, 60)


def test_after_close_only_close_and_close_ok_count() -> None:
    client = connected()
    client.method(1, BasicDeliver("ctag", 1, False, "", "rk"))
    expect_close(client, 503)
    client.method(1, QueueDeclare(queue="q"))
    client.method(2, ChannelOpen())
    assert client.silent()
    client.method(0, ConnectionClose(200, "", 0, 0))
    client.expect(ConnectionCloseOk, 0)
    client.method(0, ConnectionCloseOk())
    assert client.transport.closed


def test_connection_method_in_wrong_state() -> None:
    client = connected(channel=None)
    client.method(0, ConnectionTuneOk(2047, 131072, 0))
    expect_close(client, 504, "CHANNEL_ERROR - unexpected method in connection state running")


def test_internal_error_closes_with_541(monkeypatch: pytest.MonkeyPatch) -> None:
    def explode(channel: object, method: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setitem(channel_module._HANDLERS, TxSelect, explode)
    client = connected()
    client.method(1, TxSelect())
    close = expect_close(client, 541)
    assert (close.class_id, close.method_id) == (90, 10)


def test_shutdown_sends_320_and_waits_for_close_ok() -> None:
    client = connected()
    client.conn.shutdown()
    expect_close(client, 320, "CONNECTION_FORCED - broker forced connection closure with reason 'shutdown'")
    assert not client.transport.closed
    client.method(0, ConnectionCloseOk())
    assert client.transport.closed


def test_shutdown_gives_up_after_the_close_timeout() -> None:
    broker = Broker(BrokerSettings(close_timeout=5.0))
    client = connected(broker)
    client.conn.shutdown()
    client.conn.tick(time.monotonic() + 1)
    assert not client.transport.closed
    client.conn.tick(time.monotonic() + 6)
    assert client.transport.closed


def test_broker_shutdown_closes_every_connection() -> None:
    broker = Broker()
    clients = [connected(broker) for _ in range(3)]
    broker.shutdown()
    for client in clients:
        expect_close(client, 320)


def test_handshake_timeout() -> None:
    client = Client()
    client.start()
    client.conn.tick(time.monotonic() + 5)
    assert not client.transport.closed
    client.conn.tick(time.monotonic() + 11)
    assert client.transport.closed
    assert client.conn.closed


def test_heartbeats_are_sent_when_idle() -> None:
    client = Client()
    client.handshake(heartbeat=10)
    client.frames()
    now = time.monotonic()
    client.conn.tick(now)
    client.conn.tick(now + 3)
    assert client.silent()
    client.conn.tick(now + 5)
    assert [type(f) for f in client.frames()] == [HeartbeatFrame]


def test_silent_peer_is_dropped_after_two_intervals() -> None:
    client = Client()
    client.handshake(heartbeat=10)
    now = time.monotonic()
    client.conn.tick(now)
    client.conn.tick(now + 15)
    client.send(b"\x08\x00\x00\x00\x00\x00\x00\xce")  # a heartbeat from the client
    client.conn.tick(now + 16)
    client.conn.tick(now + 25)
    assert not client.transport.closed
    client.conn.tick(now + 36)
    assert client.transport.closed
    assert client.conn.close_reason.startswith("missed heartbeats")


def test_heartbeat_zero_disables() -> None:
    client = Client()
    client.handshake(heartbeat=0)
    client.frames()
    now = time.monotonic()
    client.conn.tick(now)
    client.conn.tick(now + 1000)
    assert client.silent()
    assert not client.transport.closed


def test_connection_lost_ends_everything() -> None:
    client = connected()
    client.method(1, QueueDeclare(queue="", exclusive=True))
    name = client.expect(QueueDeclareOk, 1).queue
    vhost = client.broker.vhosts["/"]
    assert name in vhost.queues
    client.conn.connection_lost()
    assert client.conn.closed
    assert name not in vhost.queues
    assert client.conn not in client.broker.connections


def test_content_on_channel_zero_is_unexpected() -> None:
    client = connected()
    client.send(client.content(0, b"x"))
    expect_close(client, 505)


def test_any_frame_counts_as_traffic() -> None:
    client = Client()
    client.handshake(heartbeat=10)
    client.open_channel(1)
    now = time.monotonic()
    client.conn.tick(now)
    for second in range(5, 60, 5):
        client.method(1, QueueDeclare(queue="q"))
        client.conn.tick(now + second)
    assert not client.transport.closed


def test_content_on_an_unopened_channel_is_unexpected() -> None:
    client = connected()
    client.send(client.content(5, b"x"))
    expect_close(client, 505, "UNEXPECTED_FRAME - expected method frame, got non method frame instead")
