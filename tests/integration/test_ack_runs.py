"""Ack runs: a consumer's basic.ack frames that arrive back to back on one channel are taken from the read
buffer together (ConnectionMachine.take_acks) and settled together (Channel.on_acks). Each must do what
it does alone: single and multiple acks settle exactly their deliveries, an unknown tag closes the channel
with 406 at that ack and the acks after it do nothing, a run ends at a frame of another channel or method.
What a run settled is in the log (the journal gathers a turn's removals into one record per queue) and
stays settled after a restart, the acks after a bad tag included in nothing.

Strategy: the raw client of test_raw.py consumes and then sends every ack of a scenario in one write, so
the server takes them as one run; what stayed unacked is counted after the channel is closed (its
deliveries are requeued) with a passive declare through pika.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pika
import pytest
from pika import frame, spec

from memento.log import Log
from ottermq.store.codec import RT_REMOVED, decode_removed
from tests.integration.conftest import unique
from tests.integration.test_raw import RawClient, ServerProcess, opened, ottermq_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with ottermq_server(tmp_path_factory.mktemp("acks")) as proc:
        yield proc


@pytest.fixture
def client(server: ServerProcess) -> Iterator[RawClient]:
    c = opened(server.port, 1, 2)
    try:
        yield c
    finally:
        c.close()


def fill(server: ServerProcess, queue: str, count: int) -> None:
    """Declare `queue` and put `count` persistent messages in it (confirmed)."""
    with pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", server.port)) as conn:
        channel = conn.channel()
        channel.queue_declare(queue, durable=True)
        channel.confirm_delivery()
        for i in range(count):
            channel.basic_publish("", queue, f"m{i}".encode(), pika.BasicProperties(delivery_mode=2))


def ready(server: ServerProcess, queue: str) -> int:
    with pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", server.port)) as conn:
        count: int = conn.channel().queue_declare(queue, passive=True).method.message_count
        return count


def consume(client: RawClient, channel: int, queue: str, count: int) -> list[int]:
    """Start a manual-ack consumer on `channel` and read its first `count` deliveries' tags."""
    client.send_method(channel, spec.Basic.Consume(queue=queue, no_ack=False))
    tags: list[int] = []
    bodies = 0
    started = False
    while not started or bodies < count:
        got = client.read_frame()
        assert got is not None, "the server closed the connection"
        if isinstance(got, frame.Method) and isinstance(got.method, spec.Basic.ConsumeOk):
            started = True
        elif isinstance(got, frame.Method) and isinstance(got.method, spec.Basic.Deliver):
            assert got.channel_number == channel
            tags.append(got.method.delivery_tag)
        elif isinstance(got, frame.Body):
            bodies += 1
    return tags


def until(client: RawClient, method_type: type) -> frame.Method:
    """Read frames until a method of `method_type` arrives; it."""
    while True:
        got = client.read_frame()
        assert got is not None, "the server closed the connection"
        if isinstance(got, frame.Method) and isinstance(got.method, method_type):
            return got


def eventually(check: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def acks(channel: int, *tags: int | tuple[int, bool]) -> bytes:
    """The frames of basic.ack for each tag (a (tag, True) pair: multiple), back to back."""
    out = []
    for tag in tags:
        number, multiple = tag if isinstance(tag, tuple) else (tag, False)
        out.append(frame.Method(channel, spec.Basic.Ack(delivery_tag=number, multiple=multiple)).marshal())
    return b"".join(out)


def close_channel(client: RawClient, channel: int) -> None:
    client.send_method(channel, spec.Channel.Close(200, "done", class_id=0, method_id=0))
    until(client, spec.Channel.CloseOk)


def test_a_run_of_single_and_multiple_acks_settles_exactly_their_deliveries(
    server: ServerProcess, client: RawClient
) -> None:
    queue = unique("ack-run")
    fill(server, queue, 30)
    assert consume(client, 1, queue, 30) == list(range(1, 31))
    # 1-3 one by one, 4-10 as one multiple, 12 and 15 alone, then a multiple up to 14 (11, 13, 14), 20.
    client.send(acks(1, 1, 2, 3, (10, True), 12, 15, (14, True), 20))
    close_channel(client, 1)  # what is left unacked goes back to the queue
    # Settled: 1-15 and 20; back in the queue: 16-19 and 21-30.
    assert eventually(lambda: ready(server, queue) == 14), ready(server, queue)


def test_an_unknown_tag_in_a_run_closes_the_channel_there_and_the_acks_after_it_do_nothing(
    server: ServerProcess, client: RawClient
) -> None:
    queue = unique("ack-run-bad")
    fill(server, queue, 10)
    assert consume(client, 1, queue, 10) == list(range(1, 11))
    client.send(acks(1, 1, 2, 3, 4, 99, 5, 6, (7, True)))
    closed = until(client, spec.Channel.Close)
    assert closed.channel_number == 1
    assert closed.method.reply_code == 406, closed.method
    assert "99" in closed.method.reply_text
    client.send_method(1, spec.Channel.CloseOk())
    # 1-4 were settled before the bad one; 5-10 went back when the channel closed.
    assert eventually(lambda: ready(server, queue) == 6)
    # The connection and its other channel go on.
    client.send_method(2, spec.Basic.Qos(prefetch_count=1))
    client.expect(spec.Basic.QosOk)


def test_a_run_ends_at_another_channel_s_ack_and_each_channel_settles_its_own(
    server: ServerProcess, client: RawClient
) -> None:
    first, second = unique("ack-run-a"), unique("ack-run-b")
    fill(server, first, 6)
    fill(server, second, 6)
    assert consume(client, 1, first, 6) == list(range(1, 7))
    assert consume(client, 2, second, 6) == list(range(1, 7))
    # Interleaved: channel 1 acks 1-3, channel 2 acks 1-2, channel 1 acks 4 and 5, channel 2 acks 6 (only).
    client.send(acks(1, 1, 2, 3) + acks(2, 1, 2) + acks(1, 4, 5) + acks(2, 6))
    close_channel(client, 1)
    close_channel(client, 2)
    assert eventually(lambda: ready(server, first) == 1)  # 6
    assert eventually(lambda: ready(server, second) == 3)  # 3, 4, 5


def _removals(data_dir: Path) -> list[list[int]]:
    """The message ids of each removal record in a stopped broker's log, in log order."""
    log = Log.open(data_dir / "log")
    try:
        return [list(decode_removed(r.payload).ids) for r in log.replay(0) if r.type == RT_REMOVED]
    finally:
        log.close()


def test_a_run_is_one_removal_record_and_stays_settled_after_a_restart(tmp_path: Path) -> None:
    queue = unique("ack-run-log")
    with ottermq_server(tmp_path) as server:
        fill(server, queue, 12)
        c = opened(server.port, 1)
        try:
            assert consume(c, 1, queue, 12) == list(range(1, 13))
            c.send(acks(1, 1, 2, 3, 4, 5, 6, 7, 8))  # the first ack, then a run of seven
            c.send_method(1, spec.Basic.Qos(prefetch_count=0))
            c.expect(spec.Basic.QosOk)  # the acks before it are handled
            c.send(acks(1, 9, 10, 99, 11))  # 9 and 10 settled, 406 at 99, 11 not handled
            closed = until(c, spec.Channel.Close)
            assert closed.method.reply_code == 406
            c.send_method(1, spec.Channel.CloseOk())
        finally:
            c.close()
        assert eventually(lambda: ready(server, queue) == 2)  # 11 and 12, requeued
    removals = _removals(tmp_path / "data")
    assert [len(ids) for ids in removals] == [8, 2]
    with ottermq_server(tmp_path) as server:
        assert ready(server, queue) == 2
        with pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", server.port)) as conn:
            channel = conn.channel()
            bodies = [channel.basic_get(queue, auto_ack=True)[2] for _ in range(2)]
        assert bodies == [b"m10", b"m11"]


@pytest.mark.parametrize("end", ["commit", "rollback"])
def test_a_run_in_a_transaction_waits_for_the_commit(
    server: ServerProcess, client: RawClient, end: str
) -> None:
    queue = unique("ack-run-tx")
    fill(server, queue, 8)
    client.send_method(1, spec.Tx.Select())
    client.expect(spec.Tx.SelectOk)
    assert consume(client, 1, queue, 8) == list(range(1, 9))
    client.send(acks(1, 1, 2, 3, (5, True), 7))
    if end == "commit":
        client.send_method(1, spec.Tx.Commit())
        until(client, spec.Tx.CommitOk)
    else:
        client.send_method(1, spec.Tx.Rollback())
        until(client, spec.Tx.RollbackOk)
    close_channel(client, 1)
    # Committed: 1-5 and 7 settled, 6 and 8 back. Rolled back: the acks are forgotten, all eight back.
    assert eventually(lambda: ready(server, queue) == (2 if end == "commit" else 8)), ready(server, queue)
