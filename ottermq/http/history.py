"""Samples of per-object counters and gauges over time: the rates and `*_details.samples` of the API.

Strategy: the management service samples every object (queue, exchange, vhost, channel, connection,
node) every `interval` seconds (5 s, RabbitMQ's collect_statistics_interval) into one `History`: per
object a bounded deque of value tuples, aligned with one shared deque of sample times. An object's
values that did not change since its last sample are stored as the same tuple (one pointer per
sample), so 10,000 idle queues cost about 1 KiB each for 605 s of history (RabbitMQ's first retention
tier for `rates_mode basic`; older samples are not kept). An object that is not in a sample is
forgotten; one that comes back under the same key as another object (a queue deleted and declared
again) starts a new series, so a rate never comes from two objects.

What a request sees, as RabbitMQ 3.10 shows it:
- `rate`: (last sample - the one before) / their distance in seconds, 0.0 before there are two.
- with `msg_rates_age=A&msg_rates_incr=I` (lengths_ for a queue's and the overview's lengths, while a
  vhost's follow msg_rates_, as RabbitMQ 3.10; data_rates_ for bytes): `samples`,
  newest first, one per I seconds at wall-clock multiples of I back to A seconds ago (A / I + 1 of
  them), each the value as of the last sample taken at or before its timestamp (0 before the object
  was seen, its oldest kept value when older history was dropped); `avg` is their mean and `avg_rate`
  (newest - oldest) / A.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

# Seconds of samples kept: RabbitMQ's basic retention policy keeps 605 s at 5 s granularity first.
KEEP_SECONDS: Final = 605.0
# At most this many samples per object whatever the interval (a test's 0.1 s interval keeps 200).
MAX_KEPT: Final = 200
# A request may ask for at most this many samples per figure.
MAX_REQUESTED: Final = 1000

Values = tuple[int | float, ...]


@dataclass(slots=True)
class Series:
    """One object's samples: `values[i]` was taken at the History's `times[len(times) - len(values) + i]`."""

    identity: int
    values: deque[Values]
    # Wall-clock seconds of the sample in which the values last changed (the first sample if never).
    changed: float
    # True once older samples were dropped (before the oldest kept, the value is not known to be 0).
    trimmed: bool = False


@dataclass(frozen=True, slots=True)
class Window:
    """The samples a request asks for: `age` seconds back, one per `incr` seconds."""

    age: int
    incr: int


def window(query: Mapping[str, str], prefix: str) -> Window | None:
    """The `<prefix>_age` / `<prefix>_incr` pair of a query (prefix msg_rates, lengths, data_rates),
    or None when it is absent or not two positive integers (then only rates are shown, as RabbitMQ
    shows them without the pair)."""
    age, incr = query.get(f"{prefix}_age", ""), query.get(f"{prefix}_incr", "")
    if not (age.isdigit() and incr.isdigit()):
        return None
    a, i = int(age), int(incr)
    if a <= 0 or i <= 0 or a // i >= MAX_REQUESTED:
        return None
    return Window(a, i)


@dataclass(slots=True)
class History:
    """Samples of every object, taken by `sample` every `interval` seconds."""

    interval: float
    times: deque[float] = field(default_factory=deque)
    series: dict[Hashable, Series] = field(default_factory=dict)
    # The sampler's own bookkeeping between samples (fields.EndedBytes...), by name.
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def kept(self) -> int:
        """How many samples are kept per object."""
        return max(2, min(MAX_KEPT, int(KEEP_SECONDS / self.interval) + 1))

    def sample(self, now: float, rows: Iterable[tuple[Hashable, int, Values]]) -> None:
        """One sample at `now` (wall-clock seconds) of (key, identity, values) rows: identity tells two
        objects under one key apart (id() of the live object). Keys absent from `rows` are forgotten."""
        kept = self.kept
        times = self.times
        times.append(now)
        if len(times) > kept:
            times.popleft()
        old = self.series
        fresh: dict[Hashable, Series] = {}
        for key, identity, values in rows:
            series = old.get(key)
            if series is None or series.identity != identity:
                fresh[key] = Series(identity, deque((values,), maxlen=kept), now)
                continue
            history = series.values
            last = history[-1]
            if last == values:
                values = last  # share the tuple: an idle object costs a pointer per sample
            else:
                series.changed = now
            if len(history) == kept:
                series.trimmed = True
            history.append(values)
            fresh[key] = series
        self.series = fresh

    def rates(self, key: Hashable) -> tuple[float, ...] | None:
        """Per second, each value's change between the last two samples (None: fewer than two)."""
        series = self.series.get(key)
        if series is None or len(series.values) < 2 or len(self.times) < 2:
            return None
        seconds = self.times[-1] - self.times[-2]
        if seconds <= 0:
            return None
        latest, previous = series.values[-1], series.values[-2]
        return tuple((a - b) / seconds for a, b in zip(latest, previous, strict=True))

    def changed(self, key: Hashable) -> float | None:
        """Wall-clock seconds of the sample in which the object's values last changed (None: unknown)."""
        series = self.series.get(key)
        return series.changed if series is not None else None

    def details(
        self, key: Hashable, index: int, now: float, asked: Window | None, rates: tuple[float, ...] | None
    ) -> dict[str, Any]:
        """The `<name>_details` object of value `index` of `key`: {"rate"}, plus samples, avg and
        avg_rate when `asked`. `rates` is `self.rates(key)`, computed once per object by the caller."""
        rate = rates[index] if rates is not None else 0.0
        if asked is None:
            return {"rate": rate}
        samples = self._samples(key, index, now, asked)
        values = [sample["sample"] for sample in samples]
        return {
            "avg": sum(values) / len(values),
            "avg_rate": (values[0] - values[-1]) / asked.age,
            "rate": rate,
            "samples": samples,
        }

    def _samples(self, key: Hashable, index: int, now: float, asked: Window) -> list[dict[str, Any]]:
        step = asked.incr * 1000
        newest = int(now * 1000) // step * step
        count = asked.age // asked.incr + 1
        series = self.series.get(key)
        if series is None:
            return [{"sample": 0, "timestamp": newest - k * step} for k in range(count)]
        values = series.values
        times = list(self.times)[len(self.times) - len(values) :]
        stamps = [int(t * 1000) for t in times]
        out: list[dict[str, Any]] = []
        position = len(stamps) - 1
        # Before the oldest kept sample: its value when older ones were dropped, else 0 (not seen yet).
        before = values[0][index] if series.trimmed else 0
        for k in range(count):
            timestamp = newest - k * step
            while position >= 0 and stamps[position] > timestamp:
                position -= 1
            value = values[position][index] if position >= 0 else before
            out.append({"sample": value, "timestamp": timestamp})
        return out
