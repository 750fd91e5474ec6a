"""Bindings: list (all, per vhost, per exchange/queue pair, per source or destination), bind, unbind.

Strategy: rows come from the ctl's `binding_infos` renamed to the management API's fields. A binding is
named in paths by its properties key, as RabbitMQ: the routing key form-encoded ("~" when empty), and
when it has arguments, "~" and a hash of them, so two bindings differing only in arguments have different
paths.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, quote_plus

from ottermq.broker.access import READ, WRITE
from ottermq.broker.arguments import json_arguments
from ottermq.http.api_entities import arguments_of, check_access, exchange_name, path_vhost, path_vhosts
from ottermq.http.api_limits import check_topic_access
from ottermq.http.app import Ctx, check_shortstr, no_content, not_found, ok, route
from ottermq.http.interface import HttpError, Response
from ottermq.http.listing import listed
from ottermq.http.phash2 import args_hash
from ottermq.server.rows import binding_infos

if TYPE_CHECKING:
    from ottermq.broker.vhost import VHost


def properties_key(routing_key: str, arguments: Mapping[str, Any]) -> str:
    """The name of a binding in paths, as rabbit_mgmt_format:pack_binding_props makes it: "~" for no
    routing key and no arguments; else the routing key form-encoded (quote_plus: "#" -> "%23", " " -> "+")
    with "~" as "%7E", then, when there are arguments, "~" and RabbitMQ's hash of them (phash2.py):
    `arguments` as the broker holds them (their AMQP types decide the hash)."""
    if not routing_key and not arguments:
        return "~"
    key = quote_plus(routing_key, safe="").replace("~", "%7E")
    if not arguments:
        return key
    return f"{key}~{args_hash(arguments)}"


def binding_rows(vhost: VHost) -> list[dict[str, Any]]:
    """The vhost's bindings with the management API's field names."""
    rows = binding_infos(vhost)
    # The default exchange's implicit bindings (no arguments) come first, then vhost.bindings() in order.
    explicit: list[Mapping[str, Any]] = [binding.arguments for binding in vhost.bindings()]
    none: Mapping[str, Any] = {}
    held = [none] * (len(rows) - len(explicit)) + explicit
    for row, arguments in zip(rows, held, strict=True):
        row["source"] = row.pop("source_name")
        row.pop("source_kind")
        row["destination"] = row.pop("destination_name")
        row["destination_type"] = row.pop("destination_kind")
        row["vhost"] = vhost.name
        row["properties_key"] = properties_key(row["routing_key"], arguments)
    return rows


def _between(ctx: Ctx, vhost: VHost, kind: str) -> tuple[str, str]:
    """(source, destination) of a /e/{exchange}/q|e/{destination} path; 404 unless both exist."""
    source = exchange_name(ctx.params["exchange"])
    destination = ctx.params["destination"]
    if kind == "exchange":
        destination = exchange_name(destination)
    found = vhost.exchanges if kind == "exchange" else vhost.queues
    if source not in vhost.exchanges or destination not in found:
        raise not_found()
    return source, destination


def _matching(ctx: Ctx, kind: str) -> tuple[VHost, list[dict[str, Any]]]:
    vhost = path_vhost(ctx)
    source, destination = _between(ctx, vhost, kind)
    return vhost, [
        row
        for row in binding_rows(vhost)
        if row["source"] == source and row["destination"] == destination and row["destination_type"] == kind
    ]


@route("GET", "/api/bindings")
@route("GET", "/api/bindings/{vhost}")
async def list_bindings(ctx: Ctx) -> Response:
    """Bindings (the default exchange's implicit ones first)."""
    return listed(ctx, [row for vhost in path_vhosts(ctx) for row in binding_rows(vhost)], default_sort=())


@route("GET", "/api/queues/{vhost}/{name}/bindings")
async def queue_bindings(ctx: Ctx) -> Response:
    """Bindings to one queue."""
    vhost, name = path_vhost(ctx), ctx.params["name"]
    if name not in vhost.queues:
        raise not_found()
    return ok(
        [
            row
            for row in binding_rows(vhost)
            if row["destination"] == name and row["destination_type"] == "queue"
        ]
    )


@route("GET", "/api/exchanges/{vhost}/{name}/bindings/{side}")
async def exchange_bindings(ctx: Ctx) -> Response:
    """Bindings from (side "source") or to (side "destination") one exchange."""
    vhost, name, side = path_vhost(ctx), exchange_name(ctx.params["name"]), ctx.params["side"]
    if name not in vhost.exchanges or side not in ("source", "destination"):
        raise not_found()
    rows = binding_rows(vhost)
    if side == "source":
        return ok([row for row in rows if row["source"] == name])
    return ok([row for row in rows if row["destination"] == name and row["destination_type"] == "exchange"])


def _register(kind: str, letter: str) -> None:
    """The routes of one destination kind: /api/bindings/{vhost}/e/{exchange}/<letter>/{destination}."""
    pair = f"/api/bindings/{{vhost}}/e/{{exchange}}/{letter}/{{destination}}"

    @route("GET", pair)
    async def list_pair(ctx: Ctx) -> Response:
        """Bindings between one exchange and one destination."""
        return ok(_matching(ctx, kind)[1])

    @route("POST", pair)
    async def bind(ctx: Ctx) -> Response:
        """Bind ({"routing_key", "arguments"}); 201 with the new binding's Location."""
        vhost = path_vhost(ctx)
        body = ctx.body()
        routing_key = body.get("routing_key", "")
        if not isinstance(routing_key, str):
            raise HttpError(400, "bad_request", "routing_key must be a string")
        check_shortstr("routing_key", routing_key)
        arguments = json_arguments(arguments_of(body))
        source, destination = _between(ctx, vhost, kind)
        check_access(ctx, vhost, WRITE, kind, destination)
        check_access(ctx, vhost, READ, "exchange", source)
        check_topic_access(ctx, vhost, READ, source, routing_key)
        if kind == "queue":
            owner = vhost.queues[destination].exclusive_owner
            vhost.bind_queue(destination, source, routing_key, arguments, owner=owner)
        else:
            vhost.bind_exchange(destination, source, routing_key, arguments)
        await ctx.durable()
        response = no_content(201)
        # As RabbitMQ: relative to the pair's path, "<destination>/<properties key>".
        key = properties_key(routing_key, arguments)
        response.headers.append(("location", f"{quote(destination, safe='')}/{quote(key, safe='')}"))
        return response

    @route("GET", pair + "/{props}")
    async def show(ctx: Ctx) -> Response:
        """One binding, by properties key."""
        for row in _matching(ctx, kind)[1]:
            if row["properties_key"] == ctx.params["props"]:
                return ok(row)
        raise not_found()

    @route("DELETE", pair + "/{props}")
    async def unbind(ctx: Ctx) -> Response:
        """Remove one binding, by properties key."""
        vhost, rows = _matching(ctx, kind)
        row = next((r for r in rows if r["properties_key"] == ctx.params["props"]), None)
        if row is None or row["source"] == "":
            raise not_found()
        check_access(ctx, vhost, WRITE, kind, row["destination"])
        check_access(ctx, vhost, READ, "exchange", row["source"])
        check_topic_access(ctx, vhost, READ, row["source"], row["routing_key"])
        binding = next(
            b
            for b in vhost.bindings()
            if b.source == row["source"]
            and b.destination == row["destination"]
            and b.destination_kind == kind
            and b.routing_key == row["routing_key"]
            and properties_key(b.routing_key, b.arguments) == row["properties_key"]
        )
        if kind == "queue":
            owner = vhost.queues[row["destination"]].exclusive_owner
            vhost.unbind_queue(
                row["destination"], row["source"], row["routing_key"], binding.arguments, owner=owner
            )
        else:
            vhost.unbind_exchange(row["destination"], row["source"], row["routing_key"], binding.arguments)
        await ctx.durable()
        return no_content()


_register("queue", "q")
_register("exchange", "e")
