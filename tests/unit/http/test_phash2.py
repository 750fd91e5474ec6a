"""erlang:phash2 as RabbitMQ's properties_key needs it: values printed by Erlang/OTP 25's
`erlang:phash2(T, 1 bsl 32)` for the same terms."""

from __future__ import annotations

from typing import Any

import pytest

from ottermq.amqp.table import Long
from ottermq.broker.arguments import json_arguments
from ottermq.http.phash2 import Atom, args_hash, phash2

ERLANG: list[tuple[Any, int]] = [
    ([], 3468870702),
    (b"", 147926629),
    (b"k", 1590930917),
    (0, 3175731469),
    (-1, 1117813597),
    (255, 715823293),
    (2**27 - 1, 4273352567),
    (2**27, 2562491755),
    (-(2**27) - 1, 1418916782),
    (2**59 - 1, 1638133000),
    (2**59, 2442888721),
    (-(2**59) - 1, 2855034599),
    (2**64 + 5, 3215545257),
    (1.5, 2023646235),
    (-0.0, 423528920),
    (1.0e300, 387524106),
    (Atom("true"), 506293),
    (Atom("undefined"), 180132084),
    ((), 221703996),
    ((1, b"abcdefghijklmnopq", [97, 98, 99, 300, 5]), 2370742491),
    ([[], ([],)], 365405324),
    ([(b"k", Atom("longstr"), b"v")], 4035300420),
]


@pytest.mark.parametrize(("term", "value"), ERLANG)
def test_phash2_is_erlangs(term: Any, value: int) -> None:
    assert phash2(term) == value


def test_args_hash_sorts_the_top_level_and_types_json_integers_as_long() -> None:
    assert args_hash({"x-match": "any", "b": 1, "a": "s"}) == "foKFJg"  # pika's 1 is a signed 32-bit 'I'
    assert args_hash({"k": Long(1)}) == args_hash(json_arguments({"k": 1})) == "DJ-ruQ"
    assert args_hash({"k": 1}) == "OSXQ1A"
    assert json_arguments({"b": {"z": 1, "a": [2]}, "a": None}) == {
        "a": None,
        "b": {"a": [Long(2)], "z": Long(1)},
    }
