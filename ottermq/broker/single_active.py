"""Single active consumer (x-single-active-consumer): one consumer receives, the others wait in line.

Strategy: the queue's dispatch machinery only ever sees the active consumer; the others wait here in
subscription order. When the active one goes away (basic.cancel, channel or connection closed) the
longest-waiting consumer takes over and receives what is ready, as RabbitMQ's classic queues do. The
waiting consumers still count in the queue's consumer count (queue.declare-ok reports them all).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ottermq.broker.consumer import Consumer


class WaitingConsumers:
    """Consumers of a single-active-consumer queue that are not the active one, oldest first."""

    __slots__ = ("_line",)

    def __init__(self) -> None:
        self._line: list[Consumer] = []

    def __len__(self) -> int:
        return len(self._line)

    def park(self, consumer: Consumer) -> None:
        """A new consumer while another one is active: it waits."""
        self._line.append(consumer)

    def leave(self, consumer: Consumer) -> bool:
        """Remove a waiting consumer (by identity); False when it was not waiting."""
        for index, member in enumerate(self._line):
            if member is consumer:
                del self._line[index]
                return True
        return False

    def next(self) -> Consumer | None:
        """The consumer whose turn has come (taken out of the line), or None."""
        return self._line.pop(0) if self._line else None

    def members(self) -> list[Consumer]:
        """The waiting consumers, oldest first."""
        return list(self._line)

    def take_all(self) -> list[Consumer]:
        """Every waiting consumer; the line is left empty."""
        line = self._line
        self._line = []
        return line
