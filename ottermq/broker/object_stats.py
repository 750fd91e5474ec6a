"""Per-object message counters: a queue's and an exchange's, as RabbitMQ's management API reports them.

Strategy: one small slotted object per queue and exchange holding plain ints, bumped in place where the
event happens (one attribute step and an add each); nothing is sampled or kept here. The management API
(ottermq.http.history) samples them every few seconds for rates. They never go back while the object
lives, and go with it. Names are RabbitMQ's message_stats fields.
"""

from __future__ import annotations

from typing import Final

QUEUE_COUNTERS: Final = (
    "publish",
    "deliver",
    "deliver_no_ack",
    "get",
    "get_no_ack",
    "get_empty",
    "redeliver",
    "ack",
)
EXCHANGE_COUNTERS: Final = ("publish_in", "publish_out")


class QueueStats:
    """A queue's counters: messages that entered it (`publish`: every accepted enqueue, whoever
    published it), deliveries to consumers and gets by ack mode, empty gets, redeliveries, acks."""

    __slots__ = QUEUE_COUNTERS

    def __init__(self) -> None:
        self.publish = 0
        self.deliver = 0
        self.deliver_no_ack = 0
        self.get = 0
        self.get_no_ack = 0
        self.get_empty = 0
        self.redeliver = 0
        self.ack = 0

    def values(self) -> tuple[int, ...]:
        """The counters in QUEUE_COUNTERS order."""
        return (
            self.publish,
            self.deliver,
            self.deliver_no_ack,
            self.get,
            self.get_no_ack,
            self.get_empty,
            self.redeliver,
            self.ack,
        )


class ExchangeStats:
    """An exchange's counters: messages published to it (`publish_in`, routed or not) and the copies it
    routed to queues (`publish_out`: one per queue reached, as RabbitMQ counts them)."""

    __slots__ = EXCHANGE_COUNTERS

    def __init__(self) -> None:
        self.publish_in = 0
        self.publish_out = 0

    def values(self) -> tuple[int, ...]:
        """The counters in EXCHANGE_COUNTERS order."""
        return (self.publish_in, self.publish_out)
