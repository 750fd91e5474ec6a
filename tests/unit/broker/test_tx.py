"""TxBuffer: order of buffered work on commit, what a rollback restores."""

from ottermq.broker.tx import ACK, PUBLISH, REJECT_DROP, REJECT_REQUEUE, TxBuffer


def test_commit_returns_work_in_arrival_order_and_empties() -> None:
    buffer: TxBuffer[str, int] = TxBuffer()
    buffer.publish("a")
    buffer.settle(ACK, [1, 2])
    buffer.publish("b")
    buffer.settle(REJECT_REQUEUE, [3])
    ops = buffer.commit()
    assert [(op.kind, op.publish, op.deliveries) for op in ops] == [
        (PUBLISH, "a", []),
        (ACK, None, [1, 2]),
        (PUBLISH, "b", []),
        (REJECT_REQUEUE, None, [3]),
    ]
    assert len(buffer) == 0
    assert buffer.commit() == []


def test_rollback_drops_publishes_and_returns_settled_deliveries() -> None:
    buffer: TxBuffer[str, int] = TxBuffer()
    buffer.publish("a")
    buffer.settle(ACK, [1])
    buffer.settle(REJECT_DROP, [2, 3])
    assert buffer.rollback() == [1, 2, 3]
    assert len(buffer) == 0
