"""What the broker holds in memory, counted as it changes, for the memory alarm.

Strategy: the alarm compares what the broker holds with the high-water mark, not the process's resident
set: CPython and malloc keep freed memory, so an RSS that once passed the mark may never come back under it
and publishers would stay blocked after every queue was drained. What is held is counted where it enters
and where it leaves:

- message contents: the content store (content.py) adds a transient content's body + `MESSAGE_OVERHEAD`
  to `held_bytes` when it is routed and takes them back at its last release (consumed, dropped, purged, its
  queue deleted), so the count is exact at every moment and costs no scan; a transaction's buffered
  publishes are added by the channel until committed or rolled back. Logged contents are the store's
  `resident_bytes`, sampled into `base`.
- content in flight: body frames of messages not yet complete, per connection and in total (`in_flight`),
  counted by each connection's protocol machine as frames arrive and added here by the connection, taken back
  when the message completes or is dropped.
- the rest (the journal's resident contents, the index of logged messages, socket buffers) is sampled by the
  server's resource monitor into `base`.

The monitor samples on a timer; between samples the connection checks `over_estimate()` after every read,
so a flood is stopped within one read of the mark.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

# What a held message costs beyond its body: the Message and its QueueEntry, the body's bytes header.
# Properties are mostly shared between the messages of one publisher and are not counted. Measured: 200k
# messages of 16 bytes held grew the broker's RSS by 275 bytes each.
MESSAGE_OVERHEAD: Final = 256
# Bytes of content in flight a connection may hold across its channels when several messages are in
# progress at once (one message alone is bounded by max_message_size); 0 in the setting means
# max(this, an eighth of the memory limit).
CONTENT_IN_FLIGHT_MIN: Final = 8 * 1024 * 1024
_NEVER: Final = 1 << 62


class MemoryAccount:
    """Bytes the broker holds: published messages, content in flight, and the monitor's sampled rest."""

    __slots__ = (
        "base",
        "check_at",
        "content_limit",
        "held_bytes",
        "in_flight",
        "limit",
        "on_check",
    )

    def __init__(self) -> None:
        # Bytes of published contents held in memory and not logged: the content store adds them when a
        # message is routed and takes them back at its last release; a channel adds a transaction's
        # buffered publishes until the commit routes them or a rollback drops them.
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
        # The monitor's full sample (recount, raise or clear the alarm).
        self.on_check: Callable[[], None] | None = None

    @property
    def used(self) -> int:
        """Bytes counted as held now (`base` as of the last sample)."""
        return self.held_bytes + self.in_flight + self.base

    def over_estimate(self) -> bool:
        """True when the counted bytes may have passed the mark since the last sample (cheap: the
        connection asks after every read)."""
        return self.held_bytes + self.in_flight > self.check_at

    def check(self) -> None:
        """Ask the monitor for a sample now (the count passed `check_at`)."""
        self.check_at = _NEVER  # until the sample sets it again: one sample per crossing
        if self.on_check is not None:
            self.on_check()

    def rearm(self, alarm_on: bool) -> None:
        """After a sample: when to sample again between timer samples. While the alarm is on only the timer
        samples (publishers are paused). Otherwise at the mark, but not before another 1/32 of it came in,
        so a broker holding just under the mark does not recount its queues and connections on every read."""
        if alarm_on or self.limit <= 0:
            self.check_at = _NEVER
            return
        pending = self.held_bytes + self.in_flight
        self.check_at = max(self.limit - self.base, pending + self.limit // 32)
