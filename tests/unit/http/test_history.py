"""`History`: rates between samples and RabbitMQ's `*_details.samples`, with hand-made sample times."""

from __future__ import annotations

import pytest

from ottermq.http.history import MAX_KEPT, History, Window, window

KEY = ("queue", "/", "q")


def test_rate_is_the_last_interval_per_second() -> None:
    history = History(5.0)
    history.sample(1000.0, [(KEY, 1, (0, 7))])
    assert history.rates(KEY) is None  # one sample: no rate yet
    history.sample(1005.0, [(KEY, 1, (50, 7))])
    history.sample(1010.0, [(KEY, 1, (60, 2))])
    assert history.rates(KEY) == (2.0, -1.0)
    assert history.details(KEY, 0, 1010.0, None, history.rates(KEY)) == {"rate": 2.0}


def test_samples_as_rabbitmq_shows_them() -> None:
    """Newest first, at wall-clock multiples of incr, each the value as of the last sample taken at or
    before it, 0 before the object was seen; avg their mean, avg_rate (newest - oldest) / age."""
    history = History(5.0)
    history.sample(1001.0, [(KEY, 1, (3,))])
    history.sample(1006.0, [(KEY, 1, (8,))])
    history.sample(1011.0, [(KEY, 1, (8,))])
    details = history.details(KEY, 0, 1012.5, Window(20, 5), history.rates(KEY))
    assert details["samples"] == [
        {"sample": 8, "timestamp": 1010000},  # the sample of 1011 comes after it: 1006's value
        {"sample": 3, "timestamp": 1005000},
        {"sample": 0, "timestamp": 1000000},
        {"sample": 0, "timestamp": 995000},
        {"sample": 0, "timestamp": 990000},
    ]
    assert details["avg"] == (8 + 3) / 5
    assert details["avg_rate"] == 8 / 20
    assert details["rate"] == 0.0


def test_a_new_object_under_the_same_key_starts_afresh() -> None:
    history = History(5.0)
    history.sample(1000.0, [(KEY, 1, (100,))])
    history.sample(1005.0, [(KEY, 1, (200,))])
    history.sample(1010.0, [(KEY, 2, (1,))])  # deleted and declared again
    assert history.rates(KEY) is None
    history.sample(1015.0, [(KEY, 2, (6,))])
    assert history.rates(KEY) == (1.0,)


def test_objects_absent_from_a_sample_are_forgotten() -> None:
    history = History(5.0)
    history.sample(1000.0, [(KEY, 1, (1,)), (("queue", "/", "gone"), 2, (1,))])
    history.sample(1005.0, [(KEY, 1, (1,))])
    assert set(history.series) == {KEY}
    assert history.details(("queue", "/", "gone"), 0, 1005.0, Window(5, 5), None)["samples"] == [
        {"sample": 0, "timestamp": 1005000},
        {"sample": 0, "timestamp": 1000000},
    ]


def test_idle_objects_share_their_tuple_and_history_is_bounded() -> None:
    history = History(0.01)
    values = (5, 5)
    for i in range(MAX_KEPT + 50):
        history.sample(1000.0 + i * 0.01, [(KEY, 1, (5, 5))])
    series = history.series[KEY]
    assert len(series.values) == MAX_KEPT == len(history.times)
    assert all(v is series.values[0] for v in series.values)
    assert series.values[0] == values
    # Older samples were dropped: before the oldest kept, its value stands (not 0).
    old = history.details(KEY, 0, 1000.0 + (MAX_KEPT + 49) * 0.01, Window(100, 10), None)["samples"]
    assert {s["sample"] for s in old} == {5}


def test_changed_is_the_sample_that_last_changed_the_values() -> None:
    history = History(5.0)
    history.sample(1000.0, [(KEY, 1, (1,))])
    history.sample(1005.0, [(KEY, 1, (2,))])
    history.sample(1010.0, [(KEY, 1, (2,))])
    assert history.changed(KEY) == 1005.0


def test_window_from_the_query() -> None:
    assert window({"msg_rates_age": "60", "msg_rates_incr": "5"}, "msg_rates") == Window(60, 5)
    assert window({"msg_rates_age": "60"}, "msg_rates") is None
    assert window({"msg_rates_age": "x", "msg_rates_incr": "5"}, "msg_rates") is None
    assert window({"msg_rates_age": "60", "msg_rates_incr": "0"}, "msg_rates") is None
    assert window({"lengths_age": "100000", "lengths_incr": "1"}, "lengths") is None  # too many samples


def test_sample_interval_is_a_setting() -> None:
    from ottermq.config import ConfigError, load_settings

    assert load_settings({}, None, {}).collect_statistics_interval == 5000
    lowered = load_settings({}, None, {"OTTERMQ_COLLECT_STATISTICS_INTERVAL": "200"})
    assert lowered.collect_statistics_interval == 200
    with pytest.raises(ConfigError):
        load_settings({}, None, {"OTTERMQ_COLLECT_STATISTICS_INTERVAL": "0"})
