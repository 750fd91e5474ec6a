"""What the broker holds in memory, counted as it changes, for the memory alarm.

Strategy: the alarm compares what the broker holds with the high-water mark, not the process's resident
set: CPython and malloc keep freed memory, so an RSS that once passed the mark may never come back under it
and publishers would stay blocked after every queue was drained. What is held is counted where it enters:

- message contents: every published message is counted (body + `MESSAGE_OVERHEAD`) when it is complete
  (`track`), and kept on a deque; `sweep` lets go of those nothing else refers to any more (consumed,
  dropped, purged: `sys.getrefcount`, as the durable journal does for its resident contents), and of logged
  ones, which the journal counts itself. Between sweeps `held_bytes` is an upper bound.
- content in flight: body frames of messages not yet complete, per connection and in total (`in_flight`),
  added by the channels as frames arrive and taken back when the message completes or is dropped.
- the rest (the journal's resident contents, the index of logged messages, socket buffers) is sampled by the
  server's resource monitor into `base`.

The monitor samples on a timer; between samples the connection checks `over_estimate()` after every read,
so a flood is stopped within one read of the mark: the estimate only ever errs high, and `check` (the
monitor's full sample, which sweeps first) then decides for sure.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from sys import getrefcount
from typing import Final

from ottermq.broker.message import Message, StoredMessage

# What a held message costs beyond its body: the Message and its QueueEntry, the body's bytes header, the
# deque slots. Properties are mostly shared between the messages of one publisher and are not counted.
MESSAGE_OVERHEAD: Final = 256
# getrefcount of a message just taken off the deque when nothing else holds it: the local name and
# getrefcount's own argument.
_GONE: Final = 2
# Bytes of content in flight a connection may hold across its channels when several messages are in
# progress at once (one message alone is bounded by max_message_size); 0 in `content_limit` means
# max(this, an eighth of the memory limit).
CONTENT_IN_FLIGHT_MIN: Final = 8 * 1024 * 1024
_NEVER: Final = 1 << 62


class MemoryAccount:
    """Bytes the broker holds: tracked messages, content in flight, and the monitor's sampled rest."""

    __slots__ = ("_held", "base", "check_at", "content_limit", "held_bytes", "in_flight", "limit", "on_check")

    def __init__(self) -> None:
        self._held: deque[Message] = deque()
        # Upper bound of the bytes of tracked messages (exact right after a full sweep).
        self.held_bytes = 0
        # Bytes of incomplete contents received, over all connections.
        self.in_flight = 0
        # Sampled by the monitor: journal contents, index, buffers, connections.
        self.base = 0
        # The memory high-water mark in bytes (0: no memory alarm, nothing is checked).
        self.limit = 0
        # Per connection: content in flight over several messages at once (see CONTENT_IN_FLIGHT_MIN).
        self.content_limit = CONTENT_IN_FLIGHT_MIN
        # held_bytes + in_flight above this asks for a sample (see `over_estimate`).
        self.check_at = _NEVER
        # The monitor's full sample (sweep, recount, raise or clear the alarm).
        self.on_check: Callable[[], None] | None = None

    @property
    def used(self) -> int:
        """Bytes counted as held now (an upper bound until the next full sweep)."""
        return self.held_bytes + self.in_flight + self.base

    @property
    def messages(self) -> int:
        """Messages tracked (some may be gone since the last sweep)."""
        return len(self._held)

    def track(self, message: Message) -> None:
        """A published message is complete: count it until nothing holds it any more."""
        self._held.append(message)
        self.held_bytes += message.body_size + MESSAGE_OVERHEAD

    def over_estimate(self) -> bool:
        """True when the counted bytes may have passed the mark since the last sample (cheap: the
        connection asks after every read)."""
        return self.held_bytes + self.in_flight > self.check_at

    def check(self) -> None:
        """Ask the monitor for a full sample now (the estimate passed `check_at`)."""
        self.check_at = _NEVER  # until the sample sets it again: one sample per crossing
        if self.on_check is not None:
            self.on_check()

    def rearm(self, alarm_on: bool) -> None:
        """After a full sample: when to sample again between timer samples. While the alarm is on only the
        timer samples (publishers are paused; consumers' acks must not cost a sweep each). Otherwise at
        the mark, but not before another 1/32 of it came in, so a broker holding just under the mark is
        not swept on every read."""
        if alarm_on or self.limit <= 0:
            self.check_at = _NEVER
            return
        pending = self.held_bytes + self.in_flight
        self.check_at = max(self.limit - self.base, pending + self.limit // 32)

    def sweep(self, limit: int = 0) -> int:
        """Let go of tracked messages nothing holds any more and of logged ones (the journal counts those),
        looking at up to `limit` of them, oldest first (0: all); returns the bytes let go."""
        held = self._held
        append = held.append
        popleft = held.popleft
        freed = 0
        count = len(held) if limit <= 0 else min(limit, len(held))
        for _ in range(count):
            message = popleft()
            if getrefcount(message) > _GONE and message.__class__ is not StoredMessage:
                append(message)
            else:
                freed += message.body_size + MESSAGE_OVERHEAD
        self.held_bytes = self.held_bytes - freed if held else 0
        return freed
