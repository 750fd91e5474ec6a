"""A small PromQL evaluator over scraped exposition text, for the Grafana dashboard test.

Strategy: no PyPI library evaluates PromQL offline (the ones there are HTTP clients of a Prometheus server
or query builders; Prometheus' own engine is Go), so this covers the subset RabbitMQ's dashboards use:
selectors with label matchers (= != =~ !~), `rate`/`irate` over a range, `sum`/`count`/`min`/`max`/`avg`
with `by (...)` before or after the argument, binary arithmetic (+ - * /) and comparisons (== != > < >= <=,
filtering) between vectors and scalars, one-to-one matching and `on (...)` / `ignoring (...)` with
`group_left (...)` / `group_right (...)`, parentheses, numbers. Semantics follow Prometheus' documentation;
`rate` is (last - first) / (their time apart) over the samples in the range (no extrapolation, counter
resets are added back), which only changes values, never which series exist. The data are a list of
scrapes (time, text), each sample given the target labels a Prometheus scrape adds (`instance`, `job`).
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field

Labels = frozenset[tuple[str, str]]
NAME = "__name__"

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+\S+)?$")
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?')


def _unescape(value: str) -> str:
    return value.replace("\\n", "\n").replace('\\"', '"').replace("\\\\", "\\")


def parse_samples(text: str, target: dict[str, str]) -> dict[Labels, float]:
    """Every sample of an exposition text, keyed by its labels with `__name__` and the target labels."""
    samples: dict[Labels, float] = {}
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        if match is None:
            raise ValueError(f"not a sample line: {line!r}")
        labels = dict(target)
        labels[NAME] = match.group(1)
        pos, body = 0, match.group(3) or ""
        while pos < len(body):
            label = _LABEL.match(body, pos)
            if label is None:
                raise ValueError(f"bad labels in {line!r}")
            labels[label.group(1)] = _unescape(label.group(2))
            pos = label.end()
        samples[frozenset(labels.items())] = float(match.group(4))
    return samples


@dataclass
class Store:
    """Scrapes in time order: (unix time, samples)."""

    scrapes: list[tuple[float, dict[Labels, float]]] = field(default_factory=list)

    def add(self, when: float, text: str, target: dict[str, str]) -> None:
        """Record one scrape of `target` at `when`."""
        self.scrapes.append((when, parse_samples(text, target)))

    @property
    def now(self) -> float:
        """Evaluation time: the last scrape's."""
        return self.scrapes[-1][0]


Vector = dict[Labels, float]
Value = Vector | float


# -- tokens ------------------------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""\s*(?:
      (?P<number>\d+(?:\.\d+)?(?:e[+-]?\d+)?)(?![a-zA-Z_])
    | (?P<duration>\[\s*\d+[smhdw]\s*\])
    | (?P<string>"(?:[^"\\]|\\.)*")
    | (?P<op>=~|!~|==|!=|>=|<=|[-+*/(){},=<>])
    | (?P<ident>[a-zA-Z_:][a-zA-Z0-9_:]*)
    )""",
    re.VERBOSE,
)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
AGGREGATIONS = {"sum", "count", "min", "max", "avg"}
_COMPARISONS = {"==", "!=", ">", "<", ">=", "<="}


def tokenize(text: str) -> list[tuple[str, str]]:
    """(kind, text) tokens of an expression."""
    tokens: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        if not text[pos:].strip():
            break
        match = _TOKEN.match(text, pos)
        if match is None:
            raise SyntaxError(f"cannot read {text[pos : pos + 20]!r}")
        kind = match.lastgroup
        assert kind is not None
        tokens.append((kind, match.group(kind)))
        pos = match.end()
    return tokens


# -- parser: builds closures over the store ----------------------------------------------------------------

Node = Callable[[Store], Value]


@dataclass
class Matching:
    """How a binary operation pairs its sides."""

    on: list[str] | None = None
    ignoring: list[str] | None = None
    group: str = ""  # "left" / "right" / ""
    include: list[str] = field(default_factory=list)


class Parser:
    """Recursive descent over the tokens, lowest precedence first."""

    def __init__(self, text: str) -> None:
        self.tokens = tokenize(text)
        self.pos = 0

    def peek(self, offset: int = 0) -> tuple[str, str]:
        index = self.pos + offset
        return self.tokens[index] if index < len(self.tokens) else ("end", "")

    def take(self, expected: str | None = None) -> str:
        _, text = self.peek()
        if expected is not None and text != expected:
            raise SyntaxError(f"expected {expected!r}, got {text!r}")
        self.pos += 1
        return text

    def parse(self) -> Node:
        node = self.comparison()
        if self.peek()[0] != "end":
            raise SyntaxError(f"unexpected {self.peek()[1]!r}")
        return node

    def comparison(self) -> Node:
        left = self.additive()
        while self.peek()[1] in _COMPARISONS:
            op = self.take()
            matching = self.matching()
            right = self.additive()
            left = _binary(op, left, right, matching)
        return left

    def additive(self) -> Node:
        left = self.multiplicative()
        while self.peek()[1] in ("+", "-"):
            op = self.take()
            matching = self.matching()
            right = self.multiplicative()
            left = _binary(op, left, right, matching)
        return left

    def multiplicative(self) -> Node:
        left = self.primary()
        while self.peek()[1] in ("*", "/"):
            op = self.take()
            matching = self.matching()
            right = self.primary()
            left = _binary(op, left, right, matching)
        return left

    def label_list(self) -> list[str]:
        self.take("(")
        names: list[str] = []
        while self.peek()[1] != ")":
            names.append(self.take())
            if self.peek()[1] == ",":
                self.take()
        self.take(")")
        return names

    def matching(self) -> Matching:
        matching = Matching()
        word = self.peek()[1]
        if word in ("on", "ignoring"):
            self.take()
            names = self.label_list()
            if word == "on":
                matching.on = names
            else:
                matching.ignoring = names
        word = self.peek()[1]
        if word in ("group_left", "group_right"):
            self.take()
            matching.group = word.removeprefix("group_")
            if self.peek()[1] == "(":
                matching.include = self.label_list()
        return matching

    def primary(self) -> Node:
        kind, text = self.peek()
        if text == "(":
            self.take()
            node = self.comparison()
            self.take(")")
            return node
        if text == "-":
            self.take()
            inner = self.primary()
            return _binary("*", lambda store: -1.0, inner, Matching())
        if kind == "number":
            self.take()
            number = float(text)
            return lambda store: number
        if kind == "ident" and text in AGGREGATIONS:
            return self.aggregation()
        if kind == "ident" and text in ("rate", "irate"):
            self.take()
            self.take("(")
            name, matchers = self.selector()
            duration = self.take()
            seconds = _UNITS[duration.strip("[] ")[-1]] * int(duration.strip("[] ")[:-1])
            self.take(")")
            return _range_function(text, name, matchers, seconds)
        if kind == "ident":
            name, matchers = self.selector()
            return lambda store: _select(store, name, matchers, store.now)
        raise SyntaxError(f"unexpected {text!r}")

    def selector(self) -> tuple[str, list[tuple[str, str, str]]]:
        name = self.take()
        matchers: list[tuple[str, str, str]] = []
        if self.peek()[1] == "{":
            self.take()
            while self.peek()[1] != "}":
                label = self.take()
                op = self.take()
                value = self.take()
                matchers.append((label, op, _unescape(value[1:-1])))
                if self.peek()[1] == ",":
                    self.take()
            self.take("}")
        return name, matchers

    def aggregation(self) -> Node:
        op = self.take()
        by: list[str] | None = None
        if self.peek()[1] in ("by", "without"):
            if self.take() == "without":
                raise SyntaxError("without() is not in this subset")
            by = self.label_list()
        self.take("(")
        inner = self.comparison()
        self.take(")")
        if self.peek()[1] == "by":
            self.take()
            by = self.label_list()
        return _aggregate(op, inner, by or [])


def _matches(labels: dict[str, str], matchers: list[tuple[str, str, str]]) -> bool:
    for label, op, value in matchers:
        have = labels.get(label, "")
        if op == "=" and have != value:
            return False
        if op == "!=" and have == value:
            return False
        if op == "=~" and not re.fullmatch(value, have):
            return False
        if op == "!~" and re.fullmatch(value, have):
            return False
    return True


def _select(store: Store, name: str, matchers: list[tuple[str, str, str]], at: float) -> Vector:
    """The instant vector at the last scrape at or before `at` (within Prometheus' 5-minute lookback)."""
    for when, samples in reversed(store.scrapes):
        if when <= at:
            if at - when > 300:
                return {}
            return {
                labels: value
                for labels, value in samples.items()
                if dict(labels).get(NAME) == name and _matches(dict(labels), matchers)
            }
    return {}


def _range_function(function: str, name: str, matchers: list[tuple[str, str, str]], seconds: float) -> Node:
    def evaluate(store: Store) -> Value:
        now = store.now
        points: dict[Labels, list[tuple[float, float]]] = {}
        for when, samples in store.scrapes:
            if now - seconds < when <= now:
                for labels, value in samples.items():
                    if dict(labels).get(NAME) == name and _matches(dict(labels), matchers):
                        points.setdefault(labels, []).append((when, value))
        result: Vector = {}
        for labels, series in points.items():
            if len(series) < 2:
                continue  # Prometheus needs two points in the range
            if function == "irate":
                series = series[-2:]
            increase = 0.0
            for (_, before), (_, after) in itertools.pairwise(series):
                increase += after - before if after >= before else after  # a reset starts from 0
            result[_without_name(labels)] = increase / (series[-1][0] - series[0][0])
        return result

    return evaluate


def _without_name(labels: Labels) -> Labels:
    return frozenset(item for item in labels if item[0] != NAME)


def _arith(op: str, a: float, b: float) -> float:
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    if b == 0:
        return math.nan if a == 0 else math.copysign(math.inf, a)
    return a / b


def _compare(op: str, a: float, b: float) -> bool:
    return {
        "==": a == b,
        "!=": a != b,
        ">": a > b,
        "<": a < b,
        ">=": a >= b,
        "<=": a <= b,
    }[op]


def _key(labels: Labels, matching: Matching) -> Labels:
    if matching.on is not None:
        return frozenset(item for item in labels if item[0] in matching.on)
    ignored = set(matching.ignoring or ()) | {NAME}
    return frozenset(item for item in labels if item[0] not in ignored)


def _binary(op: str, left: Node, right: Node, matching: Matching) -> Node:
    def evaluate(store: Store) -> Value:
        a, b = left(store), right(store)
        if isinstance(a, float) and isinstance(b, float):
            return float(_compare(op, a, b)) if op in _COMPARISONS else _arith(op, a, b)
        if isinstance(a, float) or isinstance(b, float):
            vector, scalar, scalar_left = (b, a, True) if isinstance(a, float) else (a, b, False)
            assert isinstance(vector, dict) and isinstance(scalar, float)
            result: Vector = {}
            for labels, value in vector.items():
                x, y = (scalar, value) if scalar_left else (value, scalar)
                if op in _COMPARISONS:
                    if _compare(op, x, y):
                        result[labels] = value
                else:
                    result[_without_name(labels)] = _arith(op, x, y)
            return result
        return _vector_match(op, a, b, matching)

    return evaluate


def _vector_match(op: str, a: Vector, b: Vector, matching: Matching) -> Vector:
    many, one, flipped = (b, a, True) if matching.group == "right" else (a, b, False)
    ones: dict[Labels, tuple[Labels, float]] = {}
    for labels, value in one.items():
        key = _key(labels, matching)
        if key in ones:
            raise ValueError("many-to-many matching: the 'one' side has duplicate series")
        ones[key] = (labels, value)
    result: Vector = {}
    seen: set[Labels] = set()
    for labels, value in many.items():
        key = _key(labels, matching)
        if key not in ones:
            continue
        if not matching.group:
            if key in seen:
                raise ValueError("many-to-many matching without group_left/group_right")
            seen.add(key)
        other_labels, other = ones[key]
        x, y = (other, value) if flipped else (value, other)
        if op in _COMPARISONS:
            if not _compare(op, x, y):
                continue
            out = dict(labels)
        else:
            out = dict(_without_name(labels)) if matching.group else dict(_key(labels, matching))
            if matching.group:
                extra = dict(other_labels)
                for name in matching.include:
                    if name in extra:
                        out[name] = extra[name]
                    else:
                        out.pop(name, None)
            value = _arith(op, x, y)
        result[frozenset(out.items())] = value
    return result


def _aggregate(op: str, inner: Node, by: list[str]) -> Node:
    def evaluate(store: Store) -> Value:
        vector = inner(store)
        if isinstance(vector, float):
            raise ValueError(f"{op} of a scalar")
        groups: dict[Labels, list[float]] = {}
        for labels, value in vector.items():
            key = frozenset(item for item in labels if item[0] in by)
            groups.setdefault(key, []).append(value)
        reduce: dict[str, Callable[[list[float]], float]] = {
            "sum": sum,
            "count": lambda values: float(len(values)),
            "min": min,
            "max": max,
            "avg": lambda values: sum(values) / len(values),
        }
        return {key: reduce[op](values) for key, values in groups.items()}

    return evaluate


def evaluate(expression: str, store: Store) -> Value:
    """The value of `expression` at the store's last scrape."""
    return Parser(expression).parse()(store)
