"""The list query strings (columns, sort, sort_reverse, page/page_size, name/use_regex) on plain rows."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ottermq.broker.broker import Broker
from ottermq.http.app import Context, Ctx
from ottermq.http.interface import HttpError, Request
from ottermq.http.listing import listed, paged_lazily, select, shown


def ctx(**query: str) -> Ctx:
    return Ctx(Context(Broker()), Request("GET", b"/", {}, b"", "127.0.0.1"), {}, dict(query))


def reply(rows: list[dict[str, Any]], paged: bool = True, **query: str) -> Any:
    return json.loads(listed(ctx(**query), rows, paged=paged).body)


ROWS = [
    {"vhost": "/", "name": "b", "messages": 2, "durable": True, "stats": {"publish": 5, "ack": 1}},
    {"vhost": "/", "name": "a", "messages": 0, "durable": False},
    {"vhost": "/", "name": "C", "messages": 7, "durable": True, "stats": {"publish": 1, "ack": 0}},
]


def names(rows: list[dict[str, Any]]) -> list[str]:
    return [row["name"] for row in rows]


def test_sorted_by_vhost_and_name_bytewise_by_default() -> None:
    assert names(reply(ROWS)) == ["C", "a", "b"]
    assert names(reply(ROWS, sort="")) == ["b", "a", "C"]  # sort= keeps the broker's order


def test_sort_by_a_dotted_key_missing_counts_as_zero_then_reverse() -> None:
    assert names(reply(ROWS, sort="stats.publish")) == ["a", "C", "b"]
    assert names(reply(ROWS, sort="messages", sort_reverse="true")) == ["C", "b", "a"]
    assert names(reply(ROWS, sort="messages", sort_reverse="TRUE")) == ["a", "b", "C"]


def test_erlang_term_order_numbers_atoms_strings() -> None:
    rows: list[dict[str, Any]] = [
        {"name": "s", "v": "x"},
        {"name": "t", "v": True},
        {"name": "n", "v": 3},
        {"name": "m", "v": None},
    ]
    assert names(reply(rows, sort="v")) == ["n", "m", "t", "s"]


def test_columns_top_level_nested_and_empty() -> None:
    assert reply(ROWS[:1], columns="name,stats.publish,nope") == [{"name": "b", "stats": {"publish": 5}}]
    assert reply(ROWS[:1], columns="stats,stats.ack") == [{"stats": {"publish": 5, "ack": 1}}]
    assert reply(ROWS[:2], columns="") == [[], []]
    assert select([{"a": [{"b": 1, "c": 2}]}], [["a", "b"]]) == [{"a": [{"b": 1}]}]
    assert json.loads(shown(ctx(columns="name"), ROWS[0]).body) == {"name": "b"}


def test_page_envelope() -> None:
    body = reply(ROWS, page="2", page_size="2", columns="name")
    assert body == {
        "filtered_count": 3,
        "item_count": 1,
        "items": [{"name": "b"}],
        "page": 2,
        "page_count": 2,
        "page_size": 2,
        "total_count": 3,
    }
    assert reply(ROWS, page="1")["page_size"] == 100
    # One page past the end is empty; further is out of range.
    assert reply(ROWS, page="4", page_size="1")["items"] == []
    assert reply([], page="1")["page_count"] == 0


def test_name_filter_only_with_a_page() -> None:
    assert names(reply(ROWS, name="c")) == ["C", "a", "b"]
    assert names(reply(ROWS, page="1", name="c")["items"]) == ["C"]
    assert names(reply(ROWS, page="1", name="^[ab]$", use_regex="true")["items"]) == ["a", "b"]
    assert reply(ROWS, page="1", name="^[ab]$")["filtered_count"] == 0


def test_lists_that_are_not_paged_ignore_page() -> None:
    assert isinstance(reply(ROWS, paged=False, page="1"), list)


@pytest.mark.parametrize(
    ("query", "error", "reason"),
    [
        ({"page": "0"}, "invalid_pagination_parameters", "page number 0, page size undefined"),
        ({"page": "1", "page_size": "501"}, "invalid_pagination_parameters", "page number 1, page size 501"),
        ({"page": "1", "page_size": "0"}, "invalid_pagination_parameters", "page number 1, page size 0"),
        ({"page": "x"}, "bad_request", "Pagination parameters are invalid"),
        ({"page": "1", "page_size": "1.5"}, "bad_request", "Pagination parameters are invalid"),
        ({"page": "1", "name": "(", "use_regex": "true"}, "bad_request", "Pagination parameters are invalid"),
        (
            {"page": "5", "page_size": "1"},
            "page_out_of_range",
            "Page out of range, page: 5 page size: 1, len: 3",
        ),
    ],
)
def test_bad_pages_are_rabbitmqs_400s(query: dict[str, str], error: str, reason: str) -> None:
    with pytest.raises(HttpError) as refused:
        listed(ctx(**query), ROWS, paged=True)
    assert (refused.value.status, refused.value.error) == (400, error)
    assert refused.value.reason.endswith(reason)


class Obj:
    """An object listed lazily: vhost, name, and a figure only its full row has."""

    def __init__(self, vhost: str, name: str, messages: int, rate: int) -> None:
        self.vhost, self.name, self.messages, self.rate = vhost, name, messages, rate


OBJECTS = [
    Obj("/" if i % 3 else "v", f"q{(i * 7919) % 1000:03d}-é" * (i % 2 + 1), i % 5, -i) for i in range(250)
]


def lazily(**query: str) -> tuple[Any, Any, int]:
    """(paged_lazily's reply, listed's reply on full rows, full rows paged_lazily built)."""
    built = 0

    def base(obj: Obj) -> dict[str, Any]:
        return {"vhost": obj.vhost, "name": obj.name, "messages": obj.messages}

    def full(obj: Obj, row: dict[str, Any]) -> dict[str, Any]:
        nonlocal built
        built += 1
        row["stats"] = {"rate": obj.rate}
        return row

    lazy = json.loads(paged_lazily(ctx(**query), OBJECTS, base, full).body)
    made = built
    whole = json.loads(listed(ctx(**query), [full(o, base(o)) for o in OBJECTS], paged=True).body)
    return lazy, whole, made


@pytest.mark.parametrize(
    "query",
    [
        {"page": "2", "page_size": "30"},
        {"page": "1", "page_size": "50", "sort": "name", "sort_reverse": "true"},
        {"page": "3", "page_size": "20", "sort": "messages"},
        {"page": "1", "page_size": "10", "name": "Q00", "columns": "name,stats.rate"},
        {"page": "2", "page_size": "10", "name": "q0.*-é$", "use_regex": "true", "sort": "vhost"},
        {"page": "1", "page_size": "25", "sort": ""},
    ],
)
def test_a_lazy_page_is_the_page_of_the_full_rows_built_for_its_items_only(query: dict[str, str]) -> None:
    lazy, whole, built = lazily(**query)
    assert lazy == whole
    assert built == lazy["item_count"] <= int(query["page_size"])


def test_a_lazy_page_sorted_on_a_figure_builds_every_row_and_unpaged_lists_are_whole() -> None:
    lazy, whole, built = lazily(page="2", page_size="40", sort="stats.rate")
    assert lazy == whole and built == len(OBJECTS)
    lazy, whole, built = lazily(sort="messages")
    assert lazy == whole and built == len(OBJECTS)


def test_strings_sort_by_code_point_which_is_rabbitmqs_utf8_byte_order() -> None:
    words = ["z", "é", "\uffff", "\U0001f600", "A", "", "ab", "a\u0300"]
    rows = [{"vhost": "/", "name": word} for word in words]
    assert names(reply(rows)) == sorted(words, key=lambda word: word.encode("utf-8"))
