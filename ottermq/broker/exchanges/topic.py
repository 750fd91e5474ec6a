"""The topic exchange type: binding keys are dot-separated word patterns with `*` and `#` wildcards.

Strategy: binding keys are stored in a trie of words; `*` is a child matching exactly one word and `#` a
child matching zero or more. Words are what `str.split(".")` yields, so empty words are words ("a..b" has
three, the middle one empty) and the empty routing key has none (it matches "#" and "", not "*").
Matching walks the trie once per message; since publishers reuse a small set of routing keys, results are
cached per routing key and the cache is dropped whenever a binding changes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, cast

if TYPE_CHECKING:
    from ottermq.broker.exchange_types import Destination, Router
    from ottermq.broker.message import Message

CACHE_SIZE: Final = 4096  # routing keys remembered per exchange; the cache is cleared when full


def split_words(key: str) -> list[str]:
    """The words of a routing or binding key; the empty key has no words."""
    return key.split(".") if key else []


class _Node:
    """A trie node: children by word (including "*" and "#") and the destinations of keys ending here."""

    __slots__ = ("children", "destinations")

    def __init__(self) -> None:
        self.children: dict[str, _Node] = {}
        self.destinations: dict[Destination, int] = {}


def _collect(node: _Node, words: list[str], i: int, out: dict[Destination, None]) -> None:
    """Add to `out` every destination whose pattern, continued from `node`, matches words[i:]."""
    children = node.children
    hash_node = children.get("#")
    if hash_node is not None:
        # "#" swallows zero or more words: try every split point.
        for j in range(i, len(words) + 1):
            _collect(hash_node, words, j, out)
    if i == len(words):
        for destination in node.destinations:
            out[destination] = None
        return
    child = children.get(words[i])
    if child is not None:
        _collect(child, words, i + 1, out)
    star = children.get("*")
    if star is not None:
        _collect(star, words, i + 1, out)


def topic_match(pattern: str, routing_key: str) -> bool:
    """Whether one binding key matches one routing key (a convenience over a one-binding trie)."""
    router = TopicRouter()
    # The trie only hashes destinations and never reads the message, so stand-ins do.
    router.bind(pattern, {}, cast("Destination", object()))
    return bool(router.route(routing_key, cast("Message", None)))


class TopicRouter:
    """Bindings of one topic exchange."""

    __slots__ = ("_cache", "_root")

    def __init__(self) -> None:
        self._root = _Node()
        self._cache: dict[str, tuple[Destination, ...]] = {}

    def bind(self, routing_key: str, arguments: Mapping[str, Any], destination: Destination) -> None:
        """Add a binding with pattern `routing_key`."""
        node = self._root
        for word in split_words(routing_key):
            child = node.children.get(word)
            if child is None:
                child = node.children[word] = _Node()
            node = child
        node.destinations[destination] = node.destinations.get(destination, 0) + 1
        self._cache.clear()

    def unbind(self, routing_key: str, arguments: Mapping[str, Any], destination: Destination) -> None:
        """Remove a binding, pruning trie branches left empty."""
        path: list[tuple[_Node, str]] = []
        node = self._root
        for word in split_words(routing_key):
            child = node.children.get(word)
            if child is None:
                return
            path.append((node, word))
            node = child
        count = node.destinations.get(destination)
        if count is None:
            return
        if count > 1:
            node.destinations[destination] = count - 1
            return
        del node.destinations[destination]
        for parent, word in reversed(path):
            if node.children or node.destinations:
                break
            del parent.children[word]
            node = parent
        self._cache.clear()

    def route(self, routing_key: str, message: Message) -> Sequence[Destination]:
        """The destinations whose pattern matches `routing_key`."""
        cache = self._cache
        found = cache.get(routing_key)
        if found is None:
            out: dict[Destination, None] = {}
            _collect(self._root, split_words(routing_key), 0, out)
            found = tuple(out)
            if len(cache) >= CACHE_SIZE:
                cache.clear()
            cache[routing_key] = found
        return found


class TopicType:
    """The "topic" exchange type."""

    __slots__ = ()
    name: Final = "topic"

    def check(self) -> None:
        """Topic exchanges are always available."""

    def new_router(self) -> Router:
        """An empty topic router."""
        return TopicRouter()

    def validate_binding(self, routing_key: str, arguments: Mapping[str, Any]) -> None:
        """Any pattern is acceptable (RabbitMQ does not validate them either)."""


TYPE: Final = TopicType()
