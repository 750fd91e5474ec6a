"""Limits, each answered as RabbitMQ answers it: connection_max, channel_max, frame_max, message size, names.

Strategy: a broker per module with small limits (max message size 64 KiB) and raw sockets that state the
bytes; the reply codes and texts were checked against RabbitMQ 3.10 with the same frames. The connection
limit gets a broker of its own, since it constrains every other test.
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import pika
import pytest
from pika import frame, spec

from ottermq.broker.broker import BrokerSettings
from ottermq.config import Settings
from tests.integration.test_raw import RawClient, ServerProcess, ottermq_server, raw_frame

MAX_MESSAGE = 64 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A broker with a 64 KiB message size limit."""
    env = {"OTTERMQ_MAX_MESSAGE_SIZE": str(MAX_MESSAGE), "OTTERMQ_HANDSHAKE_TIMEOUT": "2"}
    with ottermq_server(tmp_path_factory.mktemp("limits"), env=env) as proc:
        yield proc


def connection_close(client: RawClient) -> spec.Connection.Close:
    """The connection.close the server sends next (after which it closes the socket on our close-ok)."""
    got = client.read_frame()
    assert isinstance(got, frame.Method) and isinstance(got.method, spec.Connection.Close), got
    try:
        client.send_method(0, spec.Connection.CloseOk())
    except (BrokenPipeError, ConnectionResetError):
        return got.method  # after a frame error the server does not wait for close-ok
    client.read_until_closed()
    close: spec.Connection.Close = got.method
    return close


def opened(port: int, **handshake: int) -> RawClient:
    """A raw client past the handshake with channel 1 open."""
    client = RawClient(port)
    client.handshake(**handshake)
    client.send_method(1, spec.Channel.Open())
    client.expect(spec.Channel.OpenOk)
    return client


def refused_at_accept(port: int) -> bool:
    """True when the server closes a new socket without sending anything, even after our header."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        try:
            sock.sendall(b"AMQP\x00\x00\x09\x01")
            return sock.recv(64) == b""
        except (ConnectionResetError, BrokenPipeError):
            return True


def test_handshake_timeout_defaults_to_ten_seconds() -> None:
    assert Settings().handshake_timeout == 10.0
    assert BrokerSettings().handshake_timeout == 10.0


def test_connection_max_refuses_the_tcp_connection_until_one_closes(tmp_path: Path) -> None:
    with ottermq_server(tmp_path, env={"OTTERMQ_CONNECTION_MAX": "2"}) as proc:
        first, second = RawClient(proc.port), RawClient(proc.port)
        try:
            first.handshake()
            second.handshake()
            assert refused_at_accept(proc.port)
            first.close()
            deadline = time.monotonic() + 5
            while refused_at_accept(proc.port):
                assert time.monotonic() < deadline, "a slot never came free"
                time.sleep(0.05)
            third = RawClient(proc.port)
            third.handshake()
            third.close()
        finally:
            first.close()
            second.close()
        assert "node connection limit is reached" in proc.log()


def test_channel_max_is_enforced_with_rabbitmqs_530(server: ServerProcess) -> None:
    client = RawClient(server.port)
    try:
        client.handshake(channel_max=3)
        for number in (1, 2, 3):
            client.send_method(number, spec.Channel.Open())
            client.expect(spec.Channel.OpenOk)
        client.send_method(4, spec.Channel.Open())
        close = connection_close(client)
        assert close.reply_code == 530
        assert close.reply_text == (
            "NOT_ALLOWED - number of channels opened (3) has reached the negotiated channel_max (3)"
        )
    finally:
        client.close()


def test_tune_ok_above_the_servers_frame_max_is_refused(server: ServerProcess) -> None:
    client = RawClient(server.port)
    try:
        client.send(b"AMQP\x00\x00\x09\x01")
        client.expect(spec.Connection.Start)
        client.send_method(
            0,
            spec.Connection.StartOk(
                client_properties={},
                mechanism="PLAIN",
                response=b"\x00guest\x00guest",
            ),
        )
        tune = client.expect(spec.Connection.Tune)
        too_big = spec.Connection.TuneOk(channel_max=0, frame_max=tune.frame_max + 1, heartbeat=0)
        client.send_method(0, too_big)
        close = connection_close(client)
        assert close.reply_code == 530
        assert "negotiated frame_max" in close.reply_text
    finally:
        client.close()


def test_content_header_larger_than_frame_max_is_a_frame_error(server: ServerProcess) -> None:
    client = opened(server.port, frame_max=4096)
    try:
        client.send_method(1, spec.Basic.Publish(exchange="", routing_key="x"))
        header = frame.Header(1, 1, spec.BasicProperties(headers={"k": "v" * 5000})).marshal()
        client.send(header[:2048])
        assert connection_close(client).reply_code == 501
    finally:
        client.close()


def test_content_header_of_almost_frame_max_is_accepted(server: ServerProcess) -> None:
    client = opened(server.port, frame_max=131072)
    try:
        client.send_method(1, spec.Queue.Declare(queue="", exclusive=True))
        queue = client.expect(spec.Queue.DeclareOk).queue
        headers = {f"h{i}": "v" * 1000 for i in range(125)}  # ~126 KB of properties
        client.send_method(1, spec.Basic.Publish(exchange="", routing_key=queue))
        client.send(frame.Header(1, 2, spec.BasicProperties(headers=headers)).marshal())
        client.send(frame.Body(1, b"ok").marshal())
        client.send_method(1, spec.Basic.Get(queue=queue, no_ack=True))
        client.expect(spec.Basic.GetOk)
        header = client.read_frame()
        assert isinstance(header, frame.Header) and header.properties.headers == headers
    finally:
        client.close()


def test_message_larger_than_max_message_size_is_refused_with_406(server: ServerProcess) -> None:
    connection = pika.BlockingConnection(
        pika.URLParameters(f"amqp://guest:guest@127.0.0.1:{server.port}/%2F")
    )
    try:
        channel = connection.channel()
        channel.basic_publish("", "nowhere", b"x" * MAX_MESSAGE)  # exactly the limit is fine
        channel.basic_publish("", "nowhere", b"x" * (MAX_MESSAGE + 1))
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as caught:
            channel.queue_declare("", exclusive=True)
        assert caught.value.reply_code == 406
        assert caught.value.reply_text == (
            f"PRECONDITION_FAILED - message size {MAX_MESSAGE + 1} is larger than configured max size "
            f"{MAX_MESSAGE}"
        )
        connection.channel().queue_declare("", exclusive=True)  # the connection lives on
    finally:
        connection.close()


def test_names_of_255_octets_are_accepted(server: ServerProcess) -> None:
    client = opened(server.port)
    try:
        name = "q" * 255
        client.send_method(1, spec.Queue.Declare(queue=name, exclusive=True))
        assert client.expect(spec.Queue.DeclareOk).queue == name
        client.send_method(1, spec.Exchange.Declare(exchange="x" * 255, type="fanout", auto_delete=True))
        client.expect(spec.Exchange.DeclareOk)
    finally:
        client.close()


def test_a_short_string_longer_than_its_frame_is_a_clean_close(server: ServerProcess) -> None:
    client = opened(server.port)
    try:
        # queue.declare whose queue name claims 200 octets in a frame that holds 3.
        client.send(raw_frame(1, 1, struct.pack(">HHH", 50, 10, 0) + bytes([200]) + b"abc"))
        assert connection_close(client).reply_code in (501, 502)
    finally:
        client.close()


def test_a_field_table_near_frame_max_is_accepted_and_one_over_it_is_a_frame_error(
    server: ServerProcess,
) -> None:
    client = opened(server.port, frame_max=131072)
    try:
        arguments = {f"arg{i}": "v" * 1000 for i in range(120)}  # ~122 KB of arguments
        client.send_method(1, spec.Queue.Declare(queue="", exclusive=True, arguments=arguments))
        client.expect(spec.Queue.DeclareOk)
        arguments = {f"arg{i}": "v" * 1000 for i in range(140)}  # over 128 KiB
        declare = frame.Method(1, spec.Queue.Declare(queue="", exclusive=True, arguments=arguments)).marshal()
        client.send(declare[:4096])  # the frame header says it all; the rest would race the server's close
        close = connection_close(client)
        assert close.reply_code == 501
    finally:
        client.close()
