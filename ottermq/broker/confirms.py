"""Publisher confirms bookkeeping: sequence numbers in, coalesced basic.ack / basic.nack out.

Strategy: every publish on a confirm channel gets the next sequence number (from 1). A number is
settled (ack or nack) once its message is routed and every journal write it needs is durable; these
settlements may arrive out of order (a transient message needs no fsync, a persistent one before it
does). Acks go out in sequence order: `drain` releases the contiguous settled prefix, and each run of
acks in it becomes a single `basic.ack multiple=true` (or a plain ack for a run of one), each run of
nacks a single `basic.nack`. One drain per event-loop turn gives one frame per batch of messages.
`HeldPublishes` keeps the publishes that wait for the journal before they may reach their queues.
"""

from __future__ import annotations

from collections import deque
from typing import Final, Generic, TypeVar

T = TypeVar("T")


class ConfirmTracker:
    """Sequence numbers of one confirm-mode channel."""

    __slots__ = ("_low", "_next", "_settled")

    def __init__(self) -> None:
        self._next = 1  # the number the next publish gets
        self._low = 1  # the oldest number not yet released by `drain`
        self._settled: dict[int, bool] = {}  # settled but not yet released: seq -> ack (True) / nack

    @property
    def unconfirmed(self) -> int:
        """How many published messages await their basic.ack / basic.nack."""
        return self._next - self._low

    def publish(self) -> int:
        """The sequence number of a new publish."""
        seq = self._next
        self._next = seq + 1
        return seq

    def settle(self, seq: int, ack: bool = True) -> None:
        """Record that `seq` may be confirmed (`ack`) or must be nacked."""
        self._settled[seq] = ack

    def settle_range(self, first: int, last: int, ack: bool = True) -> None:
        """`settle` of every number from `first` to `last`."""
        self._settled.update(dict.fromkeys(range(first, last + 1), ack))

    def drain(self) -> list[tuple[int, bool, bool]]:
        """Frames to send now, as (delivery_tag, multiple, ack) in sequence order."""
        settled = self._settled
        if self._low not in settled:
            return []
        out: list[tuple[int, bool, bool]] = []
        seq = self._low
        run_start = seq
        run_ack = settled[seq]
        while True:
            ack = settled.pop(seq, None)
            if ack is None or ack is not run_ack:
                out.append((seq - 1, seq - 1 > run_start, run_ack))
                if ack is None:
                    break
                run_start, run_ack = seq, ack
            seq += 1
        self._low = seq
        return out


_WAITING: Final = 0
_STORED: Final = 1
_FAILED: Final = 2


class Held(Generic[T]):
    """One publish held back until the journal has it."""

    __slots__ = ("item", "state")

    def __init__(self, item: T, state: int) -> None:
        self.item = item
        self.state = state


class HeldPublishes(Generic[T]):
    """The publishes of a confirm channel that wait for the journal before they reach their queues.

    Strategy: a persistent message routed to a durable queue is logged at once but enqueued only when
    its record is durable, so a message that ends in basic.nack (the journal failed or the disk filled
    up before it was written) has never been in a queue nor delivered. Publishes after a held one wait
    behind it even when they need no journal (a transient message), so each queue still receives a
    channel's messages in publish order. `settle` marks a publish stored or failed and returns the
    publishes now released, oldest first, each with whether it was stored.
    """

    __slots__ = ("_held",)

    def __init__(self) -> None:
        self._held: deque[Held[T]] = deque()

    def __len__(self) -> int:
        return len(self._held)

    def hold(self, item: T, stored: bool = False) -> Held[T]:
        """Hold `item` behind the publishes already held; `stored`: it needs no journal write."""
        held = Held(item, _STORED if stored else _WAITING)
        self._held.append(held)
        return held

    def settle(self, held: Held[T], stored: bool) -> list[tuple[T, bool]]:
        """`held` is durable (`stored`) or will never be: what may go to the queues now, in order."""
        held.state = _STORED if stored else _FAILED
        queue = self._held
        released: list[tuple[T, bool]] = []
        while queue and queue[0].state != _WAITING:
            first = queue.popleft()
            released.append((first.item, first.state == _STORED))
        return released
