"""The topic matcher: `*` and `#` semantics, empty words, and the router's index and cache."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ottermq.broker.exchanges.topic import CACHE_SIZE, TopicRouter, split_words, topic_match
from ottermq.broker.queue import Queue
from tests.unit.broker.domain_fakes import message

CASES = [
    # pattern, routing key, matches
    ("#", "", True),
    ("#", "a", True),
    ("#", "a.b.c", True),
    ("#", ".", True),
    ("*", "", False),
    ("*", "a", True),
    ("*", "a.b", False),
    ("*", ".", False),
    ("", "", True),
    ("", "a", False),
    ("a", "", False),
    ("a.b", "a.b", True),
    ("a.b", "a.bc", False),
    ("a.b", "a.b.c", False),
    ("a.#.b", "a.b", True),
    ("a.#.b", "a.x.b", True),
    ("a.#.b", "a.x.y.b", True),
    ("a.#.b", "a.b.c", False),
    ("a.#.b", "a", False),
    ("a.#.b", "b.a.b", False),
    ("*.*", "a.b", True),
    ("*.*", "a", False),
    ("*.*", "a.b.c", False),
    ("*.*", ".", True),
    ("*.*", "a.", True),
    ("*.*", "", False),
    ("a..b", "a..b", True),
    ("a..b", "a.b", False),
    ("a.*.b", "a..b", True),
    ("a.*.b", "a.b", False),
    ("a.#", "a", True),
    ("a.#", "a.", True),
    ("a.#", "a.b.c", True),
    ("a.#", "b", False),
    ("#.a", "a", True),
    ("#.a", "b.a", True),
    ("#.a", "a.b", False),
    ("a.*", "a", False),
    ("a.*.#", "a.b", True),
    ("a.*.#", "a.b.c.d", True),
    ("a.*.#", "a", False),
    ("#.#", "", True),
    ("#.#", "a.b", True),
    ("#.*", "", False),
    ("#.*", "a", True),
    ("#.*", "a.b.c", True),
    ("*.#", "a.b.c", True),
    ("*.#", "", False),
    ("#.b.#", "b", True),
    ("#.b.#", "a.b.c", True),
    ("#.b.#", "a.c", False),
    ("a#", "a#", True),
    ("a#", "ab", False),
    ("a*", "ab", False),
    ("*.stock.#", "usd.stock", True),
    ("*.stock.#", "eur.stock.db", True),
    ("*.stock.#", "stock.nasdaq", False),
    ("quick.orange.rabbit", "quick.orange.rabbit", True),
    ("*.orange.*", "quick.orange.fox", True),
    ("*.*.rabbit", "quick.orange.male.rabbit", False),
    ("lazy.#", "lazy.orange.male.rabbit", True),
]


@pytest.mark.parametrize(("pattern", "key", "expected"), CASES)
def test_pattern_table(pattern: str, key: str, expected: bool) -> None:
    assert topic_match(pattern, key) is expected


def test_words_of_keys() -> None:
    assert split_words("") == []
    assert split_words("a..b") == ["a", "", "b"]
    assert split_words(".") == ["", ""]


def queues(*names: str) -> list[Queue]:
    return [Queue(name) for name in names]


def test_router_returns_each_destination_once() -> None:
    q1, q2 = queues("q1", "q2")
    router = TopicRouter()
    router.bind("a.*", {}, q1)
    router.bind("#", {}, q1)
    router.bind("a.b", {}, q2)
    router.bind("a.b", {"other": 1}, q2)  # same key, other arguments: still one destination
    found = router.route("a.b", message("a.b"))
    assert sorted(q.name for q in found) == ["q1", "q2"]


def test_unbind_prunes_and_invalidates_cache() -> None:
    q1, q2 = queues("q1", "q2")
    router = TopicRouter()
    router.bind("a.#", {}, q1)
    router.bind("a.b.c", {}, q2)
    assert set(router.route("a.b.c", message())) == {q1, q2}
    router.unbind("a.b.c", {}, q2)
    assert list(router.route("a.b.c", message())) == [q1]
    router.unbind("a.#", {}, q1)
    assert list(router.route("a.b.c", message())) == []
    router.unbind("a.#", {}, q1)  # unbinding twice is harmless
    router.bind("*.b.*", {}, q2)
    assert list(router.route("a.b.c", message())) == [q2]


def test_same_destination_bound_twice_needs_two_unbinds() -> None:
    (q1,) = queues("q1")
    router = TopicRouter()
    router.bind("a", {}, q1)
    router.bind("a", {"x": 1}, q1)
    router.unbind("a", {}, q1)
    assert list(router.route("a", message())) == [q1]
    router.unbind("a", {"x": 1}, q1)
    assert list(router.route("a", message())) == []


def test_cache_is_bounded() -> None:
    (q1,) = queues("q1")
    router = TopicRouter()
    router.bind("k.*", {}, q1)
    for i in range(CACHE_SIZE + 10):
        assert list(router.route(f"k.{i}", message())) == [q1]
    assert len(router._cache) <= CACHE_SIZE


def reference_match(pattern: list[str], words: list[str]) -> bool:
    """The definition, directly: `#` takes zero or more words, `*` exactly one."""
    if not pattern:
        return not words
    head, rest = pattern[0], pattern[1:]
    if head == "#":
        return reference_match(rest, words) or (bool(words) and reference_match(pattern, words[1:]))
    if not words:
        return False
    return (head == "*" or head == words[0]) and reference_match(rest, words[1:])


_word = st.sampled_from(["a", "b", ""])
_pattern_word = st.sampled_from(["a", "b", "", "*", "#"])


@settings(max_examples=150, deadline=None)
@given(
    patterns=st.lists(st.lists(_pattern_word, max_size=5), min_size=1, max_size=6),
    keys=st.lists(st.lists(_word, max_size=5), min_size=1, max_size=6),
)
def test_router_agrees_with_the_definition(patterns: list[list[str]], keys: list[list[str]]) -> None:
    router = TopicRouter()
    destinations = [Queue(f"q{i}") for i in range(len(patterns))]
    for words, queue in zip(patterns, destinations, strict=True):
        router.bind(".".join(words), {}, queue)
    for words in keys:
        key = ".".join(words)
        key_words = split_words(key)  # [""] joins to "", which has no words
        expected = {
            queue
            for pattern, queue in zip(patterns, destinations, strict=True)
            if reference_match(split_words(".".join(pattern)), key_words)
        }
        found = router.route(key, message(key))
        assert len(found) == len(set(found))
        assert set(found) == expected
