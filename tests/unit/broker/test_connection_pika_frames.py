"""The handshake and a publish/get round trip with frames built and parsed by pika, not by our codec.

Strategy: our own codec builds the frames of the other tests; here pika's marshal/decode_frame speak
for a real client, so a mistake shared by our encoder and decoder cannot hide.
"""

from __future__ import annotations

from typing import Any

import pika.frame
import pika.spec

from ottermq.broker.broker import Broker

from .test_connection_harness import CollectingTransport


def read_frames(transport: CollectingTransport) -> list[Any]:
    data = bytes(transport.out)
    transport.out.clear()
    frames = []
    while data:
        consumed, frame = pika.frame.decode_frame(data)
        assert frame is not None, data
        frames.append(frame)
        data = data[consumed:]
    return frames


def method(channel: int, spec_method: Any) -> bytes:
    return bytes(pika.frame.Method(channel, spec_method).marshal())


def test_pika_handshake_publish_and_get() -> None:
    broker = Broker()
    transport = CollectingTransport()
    conn = broker.new_connection(transport, ("127.0.0.1", 5555))
    conn.data_received(b"AMQP\x00\x00\x09\x01")
    (start,) = read_frames(transport)
    assert isinstance(start.method, pika.spec.Connection.Start)
    assert (
        start.method.server_properties["product"] == b"OtterMQ"
        or start.method.server_properties["product"] == "OtterMQ"
    )
    conn.data_received(
        method(
            0,
            pika.spec.Connection.StartOk(
                client_properties={"capabilities": {"consumer_cancel_notify": True}},
                mechanism="PLAIN",
                response=b"\x00guest\x00guest",
            ),
        )
    )
    (tune,) = read_frames(transport)
    assert isinstance(tune.method, pika.spec.Connection.Tune)
    conn.data_received(
        method(0, pika.spec.Connection.TuneOk(tune.method.channel_max, tune.method.frame_max, 0))
        + method(0, pika.spec.Connection.Open("/"))
        + method(1, pika.spec.Channel.Open())
        + method(1, pika.spec.Queue.Declare(queue="pq"))
    )
    kinds = [type(frame.method) for frame in read_frames(transport)]
    assert kinds == [pika.spec.Connection.OpenOk, pika.spec.Channel.OpenOk, pika.spec.Queue.DeclareOk]
    props = pika.spec.BasicProperties(content_type="text/plain", delivery_mode=2, headers={"k": "v"})
    conn.data_received(
        method(1, pika.spec.Basic.Publish(exchange="", routing_key="pq"))
        + bytes(pika.frame.Header(1, 5, props).marshal())
        + bytes(pika.frame.Body(1, b"hello").marshal())
        + method(1, pika.spec.Basic.Get(queue="pq", no_ack=True))
    )
    get_ok, header, body = read_frames(transport)
    assert isinstance(get_ok.method, pika.spec.Basic.GetOk)
    assert (get_ok.method.delivery_tag, get_ok.method.routing_key, get_ok.method.message_count) == (
        1,
        "pq",
        0,
    )
    assert header.properties.content_type == "text/plain"
    assert header.properties.delivery_mode == 2
    assert header.properties.headers == {"k": "v"}
    assert body.fragment == b"hello"
    conn.data_received(method(0, pika.spec.Connection.Close(200, "bye", 0, 0)))
    (close_ok,) = read_frames(transport)
    assert isinstance(close_ok.method, pika.spec.Connection.CloseOk)
    assert conn.closed
