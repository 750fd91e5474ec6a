"""Prefetch windows and basic.qos as RabbitMQ applies it (per_consumer_qos semantics)."""

import pytest

from ottermq.amqp.errors import AMQPConnectionError
from ottermq.broker.qos import ChannelQos, PrefetchWindow


def test_unlimited_window_is_always_open() -> None:
    window = PrefetchWindow()
    for _ in range(1000):
        window.take()
    assert window.is_open()


def test_window_closes_at_limit_and_reopens_on_release() -> None:
    window = PrefetchWindow(2)
    window.take()
    assert window.is_open()
    window.take()
    assert not window.is_open()
    assert window.release() is True
    assert window.is_open()
    assert window.release() is False  # was not full
    assert window.outstanding == 0
    assert window.release(5) is False
    assert window.outstanding == 0


def test_per_consumer_qos_sets_the_default_for_new_consumers_and_lifts_the_shared_limit() -> None:
    qos = ChannelQos()
    qos.apply(0, 5, True)
    assert qos.shared.limit == 5
    qos.apply(0, 10, False)
    assert qos.consumer_prefetch == 10
    assert qos.shared.limit == 0


def test_global_qos_limits_the_channel() -> None:
    qos = ChannelQos()
    qos.apply(0, 3, True)
    assert qos.consumer_prefetch == 0
    for _ in range(3):
        qos.shared.take()
    assert not qos.shared.is_open()
    qos.apply(0, 0, True)
    assert qos.shared.is_open()


def test_prefetch_size_is_not_implemented() -> None:
    with pytest.raises(AMQPConnectionError) as info:
        ChannelQos().apply(1024, 1, False)
    assert info.value.reply_code == 540
    assert info.value.reply_text == "NOT_IMPLEMENTED - prefetch_size!=0 (1024)"
