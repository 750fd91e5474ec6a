"""What the broker counts as held in memory (memory.py), and how a connection acts on it: content in flight
counted and bounded, a check asked for as soon as reads may pass the mark, reading stopped at once for a
message under way when the alarm goes on."""

from __future__ import annotations

import struct

from ottermq.amqp.constants import PRECONDITION_FAILED
from ottermq.amqp.frames import encode_method_frame
from ottermq.amqp.methods import (
    BasicPublish,
    ChannelClose,
    ConnectionBlocked,
    QueueDeclare,
    QueueDeclareOk,
    QueuePurge,
    TxCommit,
    TxRollback,
    TxSelect,
)
from ottermq.broker.alarms import ALARM_MEMORY
from ottermq.broker.broker import Broker
from ottermq.broker.content import Contents
from ottermq.broker.memory import MESSAGE_OVERHEAD, MemoryAccount
from ottermq.broker.message import Message
from ottermq.store.contents import LogContents

from .test_connection_harness import Client, connected


def _message(account: MemoryAccount, size: int) -> Message:
    """A published message, counted as the content store counts a routed one."""
    message = Message("", "q", b"\x00\x00", b"x" * size)
    account.held_bytes += size + MESSAGE_OVERHEAD
    return message


def _start(client: Client, channel: int, size: int) -> bytes:
    """basic.publish and a content header announcing `size` bytes of body."""
    return encode_method_frame(channel, BasicPublish(0, "", "q", False, False)) + client.content(
        channel, b"", body_size=size
    )


def _body(channel: int, payload: bytes) -> bytes:
    return struct.pack(">BHI", 3, channel, len(payload)) + payload + b"\xce"


def test_transient_contents_count_until_their_last_release() -> None:
    account = MemoryAccount()
    contents = Contents(account)
    ids = [contents.put(Message("", "q", b"\x00\x00", b"x" * 1000), 1) for _ in range(3)]
    fanned = contents.put(Message("", "q", b"\x00\x00", b"x" * 5000), 2)  # routed to two queues
    assert account.held_bytes == 3 * (1000 + MESSAGE_OVERHEAD) + 5000 + MESSAGE_OVERHEAD
    contents.release(ids[0])
    assert account.held_bytes == 2 * (1000 + MESSAGE_OVERHEAD) + 5000 + MESSAGE_OVERHEAD
    contents.release(fanned)  # one queue still holds it
    assert account.held_bytes == 2 * (1000 + MESSAGE_OVERHEAD) + 5000 + MESSAGE_OVERHEAD
    contents.release(fanned)
    for msg_id in ids[1:]:
        contents.release(msg_id)
    assert account.held_bytes == 0 and len(contents) == 0
    # Each account counts its own contents.
    other = MemoryAccount()
    msg_id = Contents(other).put(Message("", "q", b"\x00\x00", b"x" * 10), 1)
    assert account.held_bytes == 0 and other.held_bytes == 10 + MESSAGE_OVERHEAD and msg_id < 0


def test_logged_contents_are_left_to_the_store() -> None:
    account = MemoryAccount()

    def reader(msg_id: int, loc: int) -> tuple[str, str, bytes, bytes]:
        raise AssertionError("not read")

    contents = LogContents(reader, account)
    contents.put_logged(1 << 20, Message("", "q", b"\x00\x00", b"x" * 100), 77, 1)
    assert account.held_bytes == 0 and contents.resident_bytes > 100
    contents.release(1 << 20)
    assert contents.resident_bytes == 0 and len(contents) == 0


def test_a_transaction_counts_its_buffered_publishes_until_commit_or_rollback() -> None:
    broker = Broker()
    account = broker.memory
    client = connected(broker)
    client.method(1, TxSelect())
    client.method(1, QueueDeclare(0, "q", False, False, False, False, False, {}))
    client.publish(1, "", "q", b"x" * 3000)
    assert account.held_bytes == 3000 + MESSAGE_OVERHEAD
    client.method(1, TxRollback())
    assert account.held_bytes == 0
    client.publish(1, "", "q", b"x" * 2000)
    client.method(1, TxCommit())
    assert account.held_bytes == 2000 + MESSAGE_OVERHEAD  # routed: the content store counts it now
    client.method(1, QueuePurge(0, "q", False))
    assert account.held_bytes == 0


def test_a_check_is_asked_for_once_per_crossing_and_never_while_the_alarm_is_on() -> None:
    account = MemoryAccount()
    checks: list[int] = []
    account.on_check = lambda: checks.append(account.held_bytes)
    kept = [_message(account, 10)]
    assert not account.over_estimate()  # no limit: nothing is checked
    account.limit = 32_000
    account.base = 1000
    account.rearm(False)
    kept += [_message(account, 10_000) for _ in range(3)]
    assert account.over_estimate()
    account.check()
    assert len(checks) == 1 and not account.over_estimate()
    # Just under the mark (the sample found less besides): the next check waits for another 1/32 of it.
    account.base = 500
    account.rearm(False)
    assert account.held_bytes + account.base < account.limit
    assert account.check_at == account.held_bytes + 1000
    account.rearm(True)
    kept.append(_message(account, 100_000))
    assert not account.over_estimate()


def test_a_read_that_may_pass_the_mark_asks_for_a_check_at_once() -> None:
    broker = Broker()
    account = broker.memory
    checks: list[int] = []
    account.on_check = lambda: checks.append(account.used)
    account.limit = 100_000
    account.rearm(False)
    client = connected(broker)
    client.method(1, QueueDeclare(queue="q"))
    client.expect(QueueDeclareOk, 1)
    client.publish(1, "", "nowhere", b"x" * 200_000)  # dropped at once: nothing is held
    assert not checks and broker.memory.held_bytes == 0
    client.publish(1, "", "q", b"x" * 1000)
    assert not checks
    client.publish(1, "", "q", b"x" * 100_000)
    assert len(checks) == 1 and checks[0] >= 101_000


def test_content_in_flight_is_counted_and_released_when_the_message_completes() -> None:
    broker = Broker()
    client = connected(broker)
    client.method(1, QueueDeclare(queue="q"))
    client.expect(QueueDeclareOk, 1)
    client.send(_start(client, 1, 20_000) + _body(1, b"y" * 12_000))
    assert client.conn.content_bytes == broker.memory.in_flight == 12_000
    client.send(_body(1, b"y" * 8000))
    assert client.conn.content_bytes == 0 and broker.memory.in_flight == 0
    assert broker.memory.held_bytes == 20_000 + MESSAGE_OVERHEAD
    # A connection that goes away mid-message gives its bytes back too.
    client.send(_start(client, 1, 20_000) + _body(1, b"y" * 12_000))
    assert broker.memory.in_flight == 12_000
    client.conn.connection_lost()
    assert broker.memory.in_flight == 0


def test_several_messages_in_flight_on_one_connection_are_bounded() -> None:
    broker = Broker()
    broker.memory.content_limit = 10_000
    client = connected(broker)
    client.open_channel(2)
    # One message alone may pass the bound (max_message_size bounds it)...
    client.send(_start(client, 1, 30_000) + _body(1, b"a" * 16_000))
    assert client.conn.content_bytes == 16_000
    # ...but a second one under way on another channel is refused once the total passes it.
    client.send(_start(client, 2, 30_000) + _body(2, b"b" * 4000))
    close = client.expect(ChannelClose, 2)
    assert close.reply_code == PRECONDITION_FAILED
    assert close.reply_text == (
        "PRECONDITION_FAILED - 20000 bytes of messages in progress on this connection is more than the "
        "limit 10000"
    )
    assert client.conn.content_bytes == broker.memory.in_flight == 16_000
    # The first one goes on and completes; the refused channel's later frames are dropped.
    client.send(_body(2, b"b" * 4000) + _body(1, b"a" * 14_000))
    assert client.conn.content_bytes == 0 and broker.memory.in_flight == 0 and not client.conn.closed


def test_a_message_under_way_stops_being_read_when_the_alarm_goes_on() -> None:
    broker = Broker()
    publisher = connected(broker)
    idle = connected(broker)
    publisher.send(_start(publisher, 1, 20_000) + _body(1, b"z" * 5000))
    broker.set_alarm(ALARM_MEMORY, True)
    publisher.expect(ConnectionBlocked, 0)
    # Not at its next content header: now.
    assert not publisher.transport.reading
    assert idle.transport.reading
    broker.set_alarm(ALARM_MEMORY, False)
    assert publisher.transport.reading


def test_a_client_without_channels_is_not_paused() -> None:
    broker = Broker()
    client = Client(broker)
    client.handshake()
    broker.set_alarm(ALARM_MEMORY, True)
    assert client.transport.reading


def test_a_message_larger_than_the_mark_is_let_complete_instead_of_holding_the_alarm_for_ever() -> None:
    from ottermq.server.monitor import CONNECTION_OVERHEAD, MonitorOptions, ResourceMonitor

    broker = Broker()
    limit = 2 * CONNECTION_OVERHEAD + 100_000
    monitor = ResourceMonitor(broker, MonitorOptions(memory_limit_bytes=limit, disk_free_limit=0))
    big = connected(broker)
    small = connected(broker)
    big.method(1, QueueDeclare(queue="q"))
    big.expect(QueueDeclareOk, 1)
    monitor.sample()
    assert not broker.alarms.blocking
    # A small message under way on one connection, then a large one on another passes the mark.
    small.send(_start(small, 1, 50_000) + _body(1, b"s" * 10_000))
    big.send(_start(big, 1, 300_000) + _body(1, b"b" * 120_000))
    assert broker.alarms.blocking
    # Only content in flight holds the alarm on: the connection holding the most may complete its message.
    assert big.transport.reading and not small.transport.reading
    big.send(_body(1, b"b" * 90_000) + _body(1, b"b" * 90_000))
    assert broker.memory.in_flight == 10_000
    monitor.sample()
    # Now it is a message in a queue: the alarm stays on until a consumer takes it, and the other one waits.
    assert broker.alarms.blocking and not small.transport.reading
    big.send(_start(big, 1, 10))
    assert not big.transport.reading
    broker.vhosts["/"].queues["q"].purge()
    monitor.sample()
    assert not broker.alarms.blocking and small.transport.reading and big.transport.reading
