"""Queues and exchanges: list, declare, delete, purge, publish, get.

Strategy: the same VHost methods an AMQP channel calls (declare_queue, delete_exchange, bind_queue...),
so equivalence checks, reserved names and limits answer as they do over AMQP; `app.Application` turns
their AMQP errors into 400/404. Resource permissions are checked as RabbitMQ's management API checks
them: configure to declare or delete, write to publish or bind into, read to get, purge or bind from.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from ottermq.broker.access import CONFIGURE, READ, WRITE
from ottermq.http.api_limits import check_topic_access
from ottermq.http.api_policies import exchange_policy, queue_policies
from ottermq.http.app import Ctx, check_shortstr, no_content, not_found, ok, route
from ottermq.http.auth import Unauthorized, require_vhost, visible_vhosts
from ottermq.http.fields import exchange_fields, queue_fields, queue_figures
from ottermq.http.interface import HttpError, Response
from ottermq.http.listing import listed, paged_lazily, shown
from ottermq.http.messages import decode_payload, encode_json_properties, get, publish
from ottermq.http.stats import queue_row, unacked_by_queue
from ottermq.server.rows import exchange_info

if TYPE_CHECKING:
    from ottermq.broker.queue import Queue
    from ottermq.broker.vhost import VHost

# The default exchange's name in paths and listings, as RabbitMQ spells it there.
DEFAULT_EXCHANGE_PATH: Final = "amq.default"


def path_vhost(ctx: Ctx) -> VHost:
    name = ctx.params["vhost"]
    require_vhost(ctx.broker, ctx.me, name)
    return ctx.broker.vhosts[name]


def path_queue(ctx: Ctx) -> tuple[VHost, Queue]:
    """The vhost and the queue named in the path; 404 when the queue does not exist."""
    vhost = path_vhost(ctx)
    queue = vhost.queues.get(ctx.params["name"])
    if queue is None:
        raise not_found()
    return vhost, queue


def path_vhosts(ctx: Ctx) -> list[VHost]:
    """The vhost in the path, or every vhost the user may see."""
    if "vhost" in ctx.params:
        return [path_vhost(ctx)]
    vhosts = ctx.broker.vhosts
    return [vhosts[name] for name in visible_vhosts(ctx.broker, ctx.me) if name in vhosts]


def check_access(ctx: Ctx, vhost: VHost, access: str, kind: str, name: str) -> None:
    if not ctx.broker.access.allowed(ctx.me.name, vhost.name, access, name):
        raise Unauthorized(
            "not_authorised",
            f"access to {kind} '{name}' in vhost '{vhost.name}' refused for user '{ctx.me.name}'",
        )


def _bool(body: dict[str, Any], name: str, default: bool) -> bool:
    """A boolean field; "true"/"false" strings too, as rabbitmqadmin sends them."""
    value = body.get(name, default)
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    if not isinstance(value, bool):
        raise HttpError(400, "bad_request", f"{name} must be true or false")
    return value


def _int(body: dict[str, Any], name: str, default: int | None) -> int | None:
    """A non-negative integer field; digit strings too, as rabbitmqadmin sends them."""
    value = body.get(name, default)
    if isinstance(value, str) and value.isdigit():
        return int(value)
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
        raise HttpError(400, "bad_request", f"{name} must be a non-negative integer")
    return value


def arguments_of(body: dict[str, Any]) -> dict[str, Any]:
    value = body.get("arguments") or {}
    if not isinstance(value, dict):
        raise HttpError(400, "bad_request", "arguments must be an object")
    return value


def exchange_name(name: str) -> str:
    return "" if name == DEFAULT_EXCHANGE_PATH else name


# -- queues ------------------------------------------------------------------------------------------------


@route("GET", "/api/queues")
@route("GET", "/api/queues/{vhost}")
async def list_queues(ctx: Ctx) -> Response:
    """Queues with their message and consumer counts."""
    unacked = unacked_by_queue(ctx.broker)
    figures = queue_figures(ctx)
    vhosts = path_vhosts(ctx)
    by_name = {vhost.name: vhost for vhost in vhosts}
    return paged_lazily(
        ctx,
        [q for vhost in vhosts for q in vhost.queues.values()],
        lambda q: queue_policies(by_name[q.vhost], q, queue_row(q, unacked[q])),
        lambda q, row: queue_fields(ctx, q, row, figures),
    )


@route("GET", "/api/queues/{vhost}/{name}")
async def show_queue(ctx: Ctx) -> Response:
    """One queue."""
    vhost, queue = path_queue(ctx)
    row = queue_policies(vhost, queue, queue_row(queue, unacked_by_queue(ctx.broker)[queue]))
    return shown(ctx, queue_fields(ctx, queue, row))


@route("PUT", "/api/queues/{vhost}/{name}")
async def put_queue(ctx: Ctx) -> Response:
    """Declare a queue: 201 created, 204 an equivalent one exists, 400 an inequivalent one does."""
    vhost = path_vhost(ctx)
    name = ctx.params["name"]
    check_shortstr("queue", name)
    body = ctx.body()
    check_access(ctx, vhost, CONFIGURE, "queue", name)
    existed = name in vhost.queues
    vhost.declare_queue(
        name,
        durable=_bool(body, "durable", True),
        auto_delete=_bool(body, "auto_delete", False),
        arguments=arguments_of(body),
    )
    await ctx.durable()
    return no_content(204 if existed else 201)


@route("DELETE", "/api/queues/{vhost}/{name}")
async def delete_queue(ctx: Ctx) -> Response:
    """Delete a queue (?if-empty=true, ?if-unused=true)."""
    vhost, queue = path_queue(ctx)
    name = queue.name
    check_access(ctx, vhost, CONFIGURE, "queue", name)
    vhost.delete_queue(
        name, owner=queue.exclusive_owner, if_unused=ctx.flag("if-unused"), if_empty=ctx.flag("if-empty")
    )
    await ctx.durable()
    return no_content()


@route("DELETE", "/api/queues/{vhost}/{name}/contents")
async def purge_queue(ctx: Ctx) -> Response:
    """Purge a queue's ready messages."""
    vhost, queue = path_queue(ctx)
    name = queue.name
    check_access(ctx, vhost, READ, "queue", name)
    vhost.purge_queue(name, owner=queue.exclusive_owner)
    await ctx.durable()
    return no_content()


@route("POST", "/api/queues/{vhost}/{name}/get")
async def get_messages(ctx: Ctx) -> Response:
    """Get messages ({"count", "ackmode", "encoding", "truncate"}), as the management UI does."""
    vhost, queue = path_queue(ctx)
    name = queue.name
    body = ctx.body()
    check_access(ctx, vhost, READ, "queue", name)
    count, truncate = _int(body, "count", 1), _int(body, "truncate", None)
    if not count:
        raise HttpError(400, "bad_request", "count must be a positive integer")
    ackmode, encoding = str(body.get("ackmode", "")), str(body.get("encoding", "auto"))
    rows = get(queue, count, ackmode, encoding, truncate, vhost, ctx.broker.message_counts)
    await ctx.durable()
    return ok(rows)


# -- exchanges -----------------------------------------------------------------------------------------


def _exchange_row(vhost: VHost, exchange: Any) -> dict[str, Any]:
    row = exchange_info(exchange)
    row["vhost"] = vhost.name
    row["user_who_performed_action"] = ""
    return exchange_policy(vhost, exchange, row)


@route("GET", "/api/exchanges")
@route("GET", "/api/exchanges/{vhost}")
async def list_exchanges(ctx: Ctx) -> Response:
    """Exchanges (the default one named "")."""
    rows = [
        exchange_fields(ctx, x, _exchange_row(vhost, x))
        for vhost in path_vhosts(ctx)
        for x in vhost.exchanges.values()
    ]
    return listed(ctx, rows, paged=True)


@route("GET", "/api/exchanges/{vhost}/{name}")
async def show_exchange(ctx: Ctx) -> Response:
    """One exchange."""
    vhost = path_vhost(ctx)
    exchange = vhost.exchanges.get(exchange_name(ctx.params["name"]))
    if exchange is None:
        raise not_found()
    return shown(ctx, exchange_fields(ctx, exchange, _exchange_row(vhost, exchange)))


@route("PUT", "/api/exchanges/{vhost}/{name}")
async def put_exchange(ctx: Ctx) -> Response:
    """Declare an exchange ({"type", "durable", "auto_delete", "internal", "arguments"})."""
    vhost = path_vhost(ctx)
    name = exchange_name(ctx.params["name"])
    check_shortstr("exchange", name)
    body = ctx.body()
    kind = body.get("type", "direct")  # RabbitMQ declares a direct exchange when the body names no type
    if not isinstance(kind, str):
        raise HttpError(400, "bad_request", "type must be a string (direct, fanout, topic, headers...)")
    check_access(ctx, vhost, CONFIGURE, "exchange", name)
    existed = name in vhost.exchanges
    vhost.declare_exchange(
        name,
        kind,
        durable=_bool(body, "durable", True),
        auto_delete=_bool(body, "auto_delete", False),
        internal=_bool(body, "internal", False),
        arguments=arguments_of(body),
    )
    await ctx.durable()
    return no_content(204 if existed else 201)


@route("DELETE", "/api/exchanges/{vhost}/{name}")
async def delete_exchange(ctx: Ctx) -> Response:
    """Delete an exchange (?if-unused=true)."""
    vhost = path_vhost(ctx)
    name = exchange_name(ctx.params["name"])
    if name not in vhost.exchanges:
        raise not_found()
    check_access(ctx, vhost, CONFIGURE, "exchange", name)
    vhost.delete_exchange(name, if_unused=ctx.flag("if-unused"))
    await ctx.durable()
    return no_content()


@route("POST", "/api/exchanges/{vhost}/{name}/publish")
async def publish_message(ctx: Ctx) -> Response:
    """Publish one message: {"routed": true} when a queue took it."""
    vhost = path_vhost(ctx)
    name = exchange_name(ctx.params["name"])
    body = ctx.body()
    routing_key = body.get("routing_key", "")
    if not isinstance(routing_key, str):
        raise HttpError(400, "bad_request", "routing_key must be a string")
    check_shortstr("routing_key", routing_key)
    properties = encode_json_properties(body.get("properties"))
    payload = decode_payload(body.get("payload", ""), body.get("payload_encoding"))
    if name not in vhost.exchanges:
        # RabbitMQ answers 400 here, quoting the AMQP error.
        raise HttpError(400, "bad_request", f"404 NOT_FOUND - no exchange '{name}' in vhost '{vhost.name}'")
    check_access(ctx, vhost, WRITE, "exchange", name)
    check_topic_access(ctx, vhost, WRITE, name, routing_key, publish=True)
    if ctx.broker.alarms.blocking:
        # Publishers are blocked while an alarm is on; an HTTP publisher is told instead of held.
        raise HttpError(503, "unavailable", f"publishing is blocked: {ctx.broker.alarms.reason}")
    routed = publish(vhost, name, routing_key, properties, payload, ctx.broker.message_counts)
    await ctx.durable()
    return ok({"routed": routed})
