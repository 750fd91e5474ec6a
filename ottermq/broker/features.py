"""A queue's optional features, chosen once from its declare arguments: one small part per feature.

Strategy: `parse_features` reads the arguments once (at declare, live or replayed) into a
`QueueFeatures` whose parts are None unless the arguments ask for them; a queue declared without any
has no `QueueFeatures` at all (`Queue.features is None`), so a plain queue's hot path checks one
attribute. Each part lives in a file named for what it does:

- x-message-ttl: `message_ttl` (ms), turned into entry deadlines (ttl.py);
- x-expires: `expiry`, a `queue_expiry.QueueExpiry`;
- x-max-length, x-max-length-bytes, x-overflow: `limit`, a `length_limit.LengthLimit`;
- x-dead-letter-exchange, x-dead-letter-routing-key: `dead_letter`, a `deadletter.DeadLetterTarget`;
- x-max-priority: `max_priority`, which picks the ready container (priority.py);
- x-single-active-consumer: `single_active`, the waiting line (single_active.py);
- x-delivery-limit: `delivery`, the failed-delivery counts (delivery_limit.py).

Arguments are validated before (arguments.py): here a value of the wrong type is simply not a feature.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any

from ottermq.broker.deadletter import DeadLetterTarget
from ottermq.broker.delivery_limit import DeliveryCounts
from ottermq.broker.length_limit import DROP_HEAD, LengthLimit
from ottermq.broker.message import QueueEntry
from ottermq.broker.priority import PriorityReady
from ottermq.broker.queue_expiry import QueueExpiry
from ottermq.broker.ready import Ready
from ottermq.broker.single_active import WaitingConsumers

if TYPE_CHECKING:
    from ottermq.broker.vhost import VHost


def _int_arg(arguments: dict[str, Any], key: str) -> int | None:
    value = arguments.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class QueueFeatures:
    """The feature parts of one queue; None for each feature it was not declared with."""

    __slots__ = ("dead_letter", "delivery", "expiry", "limit", "max_priority", "message_ttl", "single_active")

    def __init__(
        self,
        message_ttl: int | None = None,
        expiry: QueueExpiry | None = None,
        limit: LengthLimit | None = None,
        dead_letter: DeadLetterTarget | None = None,
        max_priority: int | None = None,
        single_active: WaitingConsumers | None = None,
        delivery: DeliveryCounts | None = None,
    ) -> None:
        self.message_ttl = message_ttl
        self.expiry = expiry
        self.limit = limit
        self.dead_letter = dead_letter
        self.max_priority = max_priority
        self.single_active = single_active
        self.delivery = delivery

    def used(self) -> None:
        """The queue was used (redeclared, consumed from, read with basic.get): x-expires starts over."""
        if self.expiry is not None:
            self.expiry.used()

    def new_ready(self) -> Ready:
        """The container for the queue's ready entries: per priority with x-max-priority, counting bytes
        with x-max-length-bytes."""
        ready: Ready = PriorityReady(self.max_priority) if self.max_priority else deque[QueueEntry]()
        return self.limit.wrap(ready) if self.limit is not None else ready

    def parts(self) -> list[str]:
        """The names of the parts the queue has (for views and tests)."""
        return [name for name in self.__slots__ if getattr(self, name) is not None]


def parse_features(arguments: dict[str, Any], vhost: VHost | None) -> QueueFeatures | None:
    """The features a queue declared with `arguments` has, or None when it has none. Dead lettering needs
    the `vhost` to publish to (a queue made without one, in a test, dead-letters nothing)."""
    if not arguments:
        return None
    quorum = arguments.get("x-queue-type") == "quorum"
    expires = _int_arg(arguments, "x-expires")
    max_length = _int_arg(arguments, "x-max-length")
    max_bytes = _int_arg(arguments, "x-max-length-bytes")
    overflow = arguments.get("x-overflow")
    dlx = arguments.get("x-dead-letter-exchange")
    dlrk = arguments.get("x-dead-letter-routing-key")
    limit = _int_arg(arguments, "x-delivery-limit")
    features = QueueFeatures(
        message_ttl=_int_arg(arguments, "x-message-ttl"),
        expiry=QueueExpiry(expires) if expires is not None else None,
        limit=(
            LengthLimit(max_length, max_bytes, overflow if isinstance(overflow, str) else DROP_HEAD)
            if max_length is not None or max_bytes is not None
            else None
        ),
        dead_letter=(
            DeadLetterTarget(vhost, dlx, dlrk if isinstance(dlrk, str) else None)
            if isinstance(dlx, str) and vhost is not None
            else None
        ),
        max_priority=_int_arg(arguments, "x-max-priority") or None,
        single_active=WaitingConsumers() if arguments.get("x-single-active-consumer") is True else None,
        delivery=(
            DeliveryCounts(limit if limit is not None and limit >= 0 else None, always=quorum)
            if quorum or (limit is not None and limit >= 0)
            else None
        ),
    )
    return features if features.parts() else None
