"""The buffer of a transactional channel (tx.select): work held back until tx.commit.

Strategy: publishes and settlements (ack, nack, reject) are appended in arrival order and applied in
that same order on commit, as RabbitMQ does. Settled deliveries leave the channel's unacked set when
the client settles them (a second ack of the same tag is an unknown tag), so a rollback hands them
back to be restored there; rolled-back publishes are simply dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, TypeVar

P = TypeVar("P")
D = TypeVar("D")

PUBLISH = 0
ACK = 1
REJECT_REQUEUE = 2
REJECT_DROP = 3


@dataclass(frozen=True, slots=True)
class TxOp(Generic[P, D]):
    """One buffered operation: a publish (`kind == PUBLISH`) or a settlement of `deliveries`."""

    kind: int
    publish: P | None = None
    deliveries: list[D] = field(default_factory=list)


class TxBuffer(Generic[P, D]):
    """Pending work of one transaction; `P` is a publish, `D` a settled delivery."""

    __slots__ = ("_ops",)

    def __init__(self) -> None:
        self._ops: list[TxOp[P, D]] = []

    def __len__(self) -> int:
        return len(self._ops)

    def publish(self, item: P) -> None:
        """Hold a publish until commit."""
        self._ops.append(TxOp(PUBLISH, item))

    def settle(self, kind: int, deliveries: list[D]) -> None:
        """Hold an `ACK`, `REJECT_REQUEUE` or `REJECT_DROP` of `deliveries` until commit."""
        self._ops.append(TxOp(kind, None, deliveries))

    def pending(self) -> tuple[int, int]:
        """(publishes, settled deliveries) held until commit."""
        publishes = sum(1 for op in self._ops if op.kind == PUBLISH)
        return publishes, sum(len(op.deliveries) for op in self._ops)

    def commit(self) -> list[TxOp[P, D]]:
        """Everything to apply, in arrival order; the buffer starts afresh."""
        ops, self._ops = self._ops, []
        return ops

    def rollback(self) -> list[D]:
        """Drop the publishes; return the settled deliveries (in arrival order) to restore."""
        restored = [d for op in self._ops if op.kind != PUBLISH for d in op.deliveries]
        self._ops = []
        return restored
