"""Query strings of GET replies, as RabbitMQ's management API reads them: `columns`, `sort`, `sort_reverse`,
and on the paged lists (queues, exchanges, vhosts, connections, channels) `page`, `page_size`, `name` and
`use_regex`.

Strategy: handlers build their full rows, then `listed` (lists) or `shown` (one object) shape the reply
as rabbit_mgmt_util does (checked against RabbitMQ 3.10):
- Lists are sorted by `sort` (a dotted path into the row) and then by vhost and name, in Erlang's term
  order (numbers < atoms < maps < lists < strings; a missing key counts as 0); `sort=` (empty) keeps the
  broker's own order; `sort_reverse=true` reverses the whole sorted list.
- `page` asks for RabbitMQ's envelope {filtered_count, item_count, items, page, page_count, page_size,
  total_count}; `page_size` defaults to 100 and may be 1..500. `name` filters (case-insensitive substring,
  or a case-insensitive regular expression with `use_regex=true`) only when a page is asked for, as in
  RabbitMQ. The 400s are RabbitMQ's: "invalid_pagination_parameters" for numbers out of bounds,
  "bad_request" "Pagination parameters are invalid" for what is not a number (or a bad regex), and
  "page_out_of_range" past the last page.
- `columns=a,b.c` keeps only those keys of each row (nested ones by dotted path; items of lists alike).
  An object left with no key is sent as [], as RabbitMQ sends an empty Erlang proplist. RabbitMQ keeps
  some nested objects whole (those it holds as maps, e.g. /api/overview's object_totals); here a dotted
  column always selects inside.
Sorting happens on the whole rows, before `columns` drops keys.

A page of a long list (10,000 queues) need not build every full row: `paged_lazily` sorts and filters
rows that hold only what the sort and the name filter read (vhost and name, or the object's cheap
"base" row when the sort names one of its keys), and builds full rows for the page's items only. Its
contract with the caller: the full row is the base row with keys added (never changed), so sorting on a
key of the base row orders as sorting full rows would; a sort on any other key builds every full row.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, TypeVar

from ottermq.http.app import ok
from ottermq.http.interface import HttpError, Response

if TYPE_CHECKING:
    from ottermq.http.app import Ctx

T = TypeVar("T")

DEFAULT_PAGE_SIZE: Final = 100
MAX_PAGE_SIZE: Final = 500
DEFAULT_SORT: Final = ("vhost", "name")
# Erlang's integer syntax as list_to_integer/1 takes it.
_INTEGER: Final = re.compile(r"[+-]?[0-9]+")
# Ranks of Erlang's term order, as RabbitMQ compares JSON-ish values when it sorts.
_NUMBER, _ATOM, _MAP, _LIST, _BINARY = range(5)


@dataclass(frozen=True, slots=True)
class Page:
    """A page asked for, and the name filter that goes with it."""

    number: int
    size: int
    name: str | None
    use_regex: bool


def _integer(ctx: Ctx, key: str) -> int | None:
    raw = ctx.query.get(key)
    if raw is None:
        return None
    if not _INTEGER.fullmatch(raw):
        raise HttpError(400, "bad_request", "Pagination parameters are invalid")
    return int(raw)


def page_of(ctx: Ctx) -> Page | None:
    """The page the query asks for (None: the whole list); RabbitMQ's 400s for bad values."""
    number, size = _integer(ctx, "page"), _integer(ctx, "page_size")
    if number is None:
        return None
    name, use_regex = ctx.query.get("name"), ctx.query.get("use_regex") == "true"
    if size is None and number > 0:
        return Page(number, DEFAULT_PAGE_SIZE, name, use_regex)
    if size is not None and number > 0 and 0 < size <= MAX_PAGE_SIZE:
        return Page(number, size, name, use_regex)
    shown = "undefined" if size is None else str(size)
    raise HttpError(
        400,
        "invalid_pagination_parameters",
        f"Invalid pagination parameters: page number {number}, page size {shown}",
    )


def _term(value: Any) -> tuple[Any, ...]:
    """A sort key that orders JSON values as Erlang orders the terms RabbitMQ holds for them. Strings
    compare as Python's str: by code point, which is the order of their UTF-8 bytes (RabbitMQ's)."""
    if type(value) is str:  # the common case first: names
        return (_BINARY, value)
    if isinstance(value, bool):
        return (_ATOM, "true" if value else "false")
    if value is None:
        return (_ATOM, "null")
    if isinstance(value, int | float):
        return (_NUMBER, value)
    if isinstance(value, str):
        return (_BINARY, str(value))
    if isinstance(value, dict):
        items = sorted((str(k), _term(v)) for k, v in value.items())
        return (_MAP, len(items), tuple(items))
    if isinstance(value, list | tuple):
        return (_LIST, tuple(_term(v) for v in value))
    return (_BINARY, str(value))


def _dotted(row: Any, path: str) -> Any:
    """The value at a dotted path ("message_stats.publish"); 0 when absent, as RabbitMQ sorts it."""
    value = row
    for key in path.split("."):
        if not isinstance(value, dict) or key not in value:
            return 0
        value = value[key]
    return value


def _getter(path: str) -> Callable[[dict[str, Any]], Any]:
    """The reader of a dotted path in a row (`_dotted`; a top-level key read directly)."""
    if "." in path:
        return lambda row: _dotted(row, path)
    return lambda row: row.get(path, 0)


def _sort_keys(ctx: Ctx, default: tuple[str, ...]) -> tuple[str, ...]:
    """The dotted paths the query sorts by (`sort`, then `default`); () for `sort=`, no sorting."""
    asked = ctx.query.get("sort")
    if asked == "":
        return ()
    if asked is None:
        return default
    return (asked, *(key for key in default if key != asked))


def _ordered(
    ctx: Ctx, items: list[T], row_of: Callable[[T], dict[str, Any]], keys: tuple[str, ...]
) -> list[T]:
    """`items` ordered by their rows' values at `keys`, reversed with `sort_reverse=true`."""
    if keys:
        getters = [_getter(key) for key in keys]
        items = sorted(items, key=lambda item: tuple(_term(get(row_of(item))) for get in getters))
    if ctx.query.get("sort_reverse") == "true":
        items = items[::-1]
    return items


def sort_rows(ctx: Ctx, rows: list[dict[str, Any]], default: tuple[str, ...]) -> list[dict[str, Any]]:
    """`rows` sorted as the query asks (`sort`, then `default`), reversed with `sort_reverse=true`."""
    return _ordered(ctx, rows, lambda row: row, _sort_keys(ctx, default))


def _matches(page: Page) -> Any:
    name = page.name
    if not name:
        return None
    if page.use_regex:
        try:
            pattern = re.compile(name, re.IGNORECASE)
        except re.error:
            raise HttpError(400, "bad_request", "Pagination parameters are invalid") from None
        return lambda value: pattern.search(value) is not None
    lowered = name.lower()
    return lambda value: lowered in value.lower()


def _paged(
    rows: list[Any], page: Page, row_of: Callable[[Any], dict[str, Any]] = lambda row: row
) -> dict[str, Any]:
    match = _matches(page)
    filtered = rows
    if match is not None:
        filtered = [
            item for item in rows if isinstance(name := row_of(item).get("name"), str) and match(name)
        ]
    start = (page.number - 1) * page.size
    if start > len(filtered):
        raise HttpError(
            400,
            "page_out_of_range",
            f"Page out of range, page: {page.number} page size: {page.size}, len: {len(filtered)}",
        )
    items = filtered[start : start + page.size]
    return {
        "filtered_count": len(filtered),
        "item_count": len(items),
        "items": items,
        "page": page.number,
        "page_count": -(-len(filtered) // page.size),
        "page_size": page.size,
        "total_count": len(rows),
    }


def columns_of(ctx: Ctx) -> list[list[str]] | None:
    """The `columns` asked for, each as its dotted path's parts (None: every key)."""
    raw = ctx.query.get("columns")
    if raw is None:
        return None
    return [[part for part in column.split(".") if part] for column in raw.split(",") if column]


def select(value: Any, columns: list[list[str]] | None) -> Any:
    """`value` with only the keys `columns` name (objects inside lists alike)."""
    if columns is None:
        return value
    if isinstance(value, list):
        return [select(item, columns) for item in value]
    if not isinstance(value, dict):
        return value
    kept: dict[str, Any] = {}
    for key, item in value.items():
        wanted = [column for column in columns if column and column[0] == key]
        if not wanted:
            continue
        whole = any(len(column) == 1 for column in wanted)
        kept[key] = item if whole else select(item, [column[1:] for column in wanted])
    # An Erlang proplist with nothing left is [], and RabbitMQ sends it so.
    return kept if kept else []


def listed(
    ctx: Ctx, rows: list[dict[str, Any]], paged: bool = False, default_sort: tuple[str, ...] = DEFAULT_SORT
) -> Response:
    """A list reply shaped by the query: sorted, paged (when `paged` and a page is asked), columns."""
    page = page_of(ctx) if paged else None
    rows = sort_rows(ctx, rows, default_sort)
    columns = columns_of(ctx)
    if page is None:
        return ok(select(rows, columns))
    envelope = _paged(rows, page)
    envelope["items"] = select(envelope["items"], columns)
    return ok(envelope)


def paged_lazily(
    ctx: Ctx,
    objects: list[T],
    base: Callable[[T], dict[str, Any]],
    full: Callable[[T, dict[str, Any]], dict[str, Any]],
    default_sort: tuple[str, ...] = DEFAULT_SORT,
) -> Response:
    """`listed(ctx, [full(o, base(o)) for o in objects], paged=True)`, building full rows only for the
    page asked for when the sort reads the base rows alone (module docstring). Objects have `name` and
    `vhost` attributes."""
    page = page_of(ctx)
    if page is None:
        return listed(ctx, [full(o, base(o)) for o in objects], default_sort=default_sort)
    keys = _sort_keys(ctx, default_sort)
    heads = {key.split(".", 1)[0] for key in keys}
    # Each object's row by its index: its vhost and name only ("named"), its base row, or its full row.
    rows: dict[int, dict[str, Any]] = {}
    stage = "named" if heads <= {"vhost", "name"} else "base"
    if stage == "named":
        for i, obj in enumerate(objects):
            rows[i] = {"vhost": getattr(obj, "vhost"), "name": getattr(obj, "name")}  # noqa: B009
    else:
        present: set[str] = set()
        for i, obj in enumerate(objects):
            rows[i] = row = base(obj)
            present.update(row)
        if not heads <= present:  # a figure is sorted on: every full row is needed
            rows = {i: full(obj, rows[i]) for i, obj in enumerate(objects)}
            stage = "full"
    order = _ordered(ctx, list(range(len(objects))), rows.__getitem__, keys)
    envelope = _paged(order, page, rows.__getitem__)
    items = []
    for i in envelope["items"]:
        row = rows[i]
        if stage == "named":
            row = full(objects[i], base(objects[i]))
        elif stage == "base":
            row = full(objects[i], row)
        items.append(row)
    envelope["items"] = select(items, columns_of(ctx))
    return ok(envelope)


def shown(ctx: Ctx, row: dict[str, Any]) -> Response:
    """One object's reply, with only the `columns` asked for."""
    return ok(select(row, columns_of(ctx)))
