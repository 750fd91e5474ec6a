"""Vhost limits, user limits and topic permissions: /api/vhost-limits, /api/user-limits,
/api/topic-permissions, /api/vhosts/{vhost}/topic-permissions, /api/users/{user}/topic-permissions.

Strategy: RabbitMQ 3.10's shapes, rules and answers (recorded against a 3.10.8 node, see
tests/integration/test_limits_http.py): limits are listed as {"vhost"|"user": name, "value": {limit: n}}
rows; any management user reads the vhost limits of the vhosts it may see and every user's limits; only
administrators change limits and read or change topic permissions. PUT .../{name} takes {"value": n} and
sets that one limit (204, new or not); DELETE removes it (204 when absent too). A missing body key is
RabbitMQ's 400 "[{key_missing,K}]". Where RabbitMQ answers 500 (DELETE of a missing vhost's or user's
limit, a non-string pattern) this answers 404 or 400. The changes go through the broker's journaled
operations (`Broker.set_vhost_limit`, `AccessControl.set_user_limits`, `set_topic_permissions`).
Publishes and bindings made through the API are held to topic permissions as RabbitMQ holds them (its
API works through a channel): `check_topic_access`.
"""

from __future__ import annotations

from typing import Any, Final

from ottermq.amqp.errors import ChannelError
from ottermq.broker.access import AccessError
from ottermq.broker.broker import VHOST_LIMIT_NAMES
from ottermq.broker.permissions import Guard
from ottermq.broker.vhost import VHost
from ottermq.http.app import Ctx, no_content, not_found, route
from ottermq.http.auth import require_admin, require_vhost, visible_vhosts
from ottermq.http.interface import HttpError, Response, json_response
from ottermq.http.listing import listed

# The keys a topic permission PUT must carry, in the order RabbitMQ reports a missing one.
_TOPIC_KEYS: Final = ("exchange", "write", "read")
_VALIDATION_PREFIX: Final = "Validation failed: "


def _key_missing(key: str) -> HttpError:
    return HttpError(400, "bad_request", f"[{{key_missing,{key}}}]")


def _value(ctx: Ctx) -> Any:
    body = ctx.body()
    if "value" not in body:
        raise _key_missing("value")
    return body["value"]


# -- vhost limits ----------------------------------------------------------------------------------------


def _vhost_rows(ctx: Ctx, names: list[str]) -> list[dict[str, Any]]:
    limits = ctx.broker.vhost_limits
    return [{"vhost": name, "value": dict(limits[name])} for name in names if limits.get(name)]


@route("GET", "/api/vhost-limits")
async def list_vhost_limits(ctx: Ctx) -> Response:
    """The limits of every vhost the user may see that has some."""
    return listed(ctx, _vhost_rows(ctx, visible_vhosts(ctx.broker, ctx.me)), default_sort=("vhost",))


@route("GET", "/api/vhost-limits/{vhost}")
async def show_vhost_limits(ctx: Ctx) -> Response:
    """One vhost's limits ([] when it has none)."""
    name = ctx.params["vhost"]
    require_vhost(ctx.broker, ctx.me, name)
    return listed(ctx, _vhost_rows(ctx, [name]), default_sort=("vhost",))


def _limit_vhost(ctx: Ctx) -> str:
    require_admin(ctx.me)
    name = ctx.params["vhost"]
    if name not in ctx.broker.vhosts:
        raise HttpError(404, "not_found", "vhost_not_found")
    return name


@route("PUT", "/api/vhost-limits/{vhost}/{name}")
async def put_vhost_limit(ctx: Ctx) -> Response:
    """Set one limit of a vhost (max-connections or max-queues), keeping the others."""
    vhost = _limit_vhost(ctx)
    name, value = ctx.params["name"], _value(ctx)
    limits = {**ctx.broker.vhost_limits.get(vhost, {}), name: value}
    try:
        ctx.broker.set_vhost_limits(vhost, limits)
    except AccessError as exc:
        text = str(exc)
        if text.startswith(_VALIDATION_PREFIX):
            # RabbitMQ's layout of a refused runtime parameter.
            text = f"Validation failed\n\n{text[len(_VALIDATION_PREFIX) :]}\n"
        raise HttpError(400, "bad_request", text) from None
    await ctx.durable()
    return no_content()


@route("DELETE", "/api/vhost-limits/{vhost}/{name}")
async def delete_vhost_limit(ctx: Ctx) -> Response:
    """Remove one limit of a vhost (nothing to remove is fine, as RabbitMQ)."""
    vhost = _limit_vhost(ctx)
    name = ctx.params["name"]
    if name in ctx.broker.vhost_limits.get(vhost, {}) and name in VHOST_LIMIT_NAMES:
        ctx.broker.set_vhost_limit(vhost, name, None)
        await ctx.durable()
    return no_content()


# -- user limits -----------------------------------------------------------------------------------------


def _user_rows(ctx: Ctx, names: list[str]) -> list[dict[str, Any]]:
    access = ctx.broker.access
    return [{"user": name, "value": dict(access.limits_of(name))} for name in names if access.limits_of(name)]


@route("GET", "/api/user-limits")
async def list_user_limits(ctx: Ctx) -> Response:
    """Every user's limits (RabbitMQ shows them to any management user)."""
    return listed(ctx, _user_rows(ctx, list(ctx.broker.access.user_limits)), default_sort=("user",))


@route("GET", "/api/user-limits/{user}")
async def show_user_limits(ctx: Ctx) -> Response:
    """One user's limits ([] when it has none)."""
    name = ctx.params["user"]
    if ctx.broker.access.user(name) is None:
        raise not_found()
    return listed(ctx, _user_rows(ctx, [name]), default_sort=("user",))


@route("PUT", "/api/user-limits/{user}/{name}")
async def put_user_limit(ctx: Ctx) -> Response:
    """Set one limit of a user (max-connections or max-channels), keeping the others."""
    require_admin(ctx.me)
    user, name = ctx.params["user"], ctx.params["name"]
    value = _value(ctx)
    if ctx.broker.access.user(user) is None:
        # RabbitMQ's reason here is its Erlang tuple {no_such_user, Name}, sent as a list.
        return json_response(400, {"error": "bad_request", "reason": ["no_such_user", user]})
    try:
        ctx.broker.access.set_user_limits(user, {name: value})
    except AccessError as exc:
        raise HttpError(400, "bad_request", str(exc)) from None
    await ctx.durable()
    return no_content()


@route("DELETE", "/api/user-limits/{user}/{name}")
async def delete_user_limit(ctx: Ctx) -> Response:
    """Remove one limit of a user (nothing to remove is fine, as RabbitMQ)."""
    require_admin(ctx.me)
    user = ctx.params["user"]
    if ctx.broker.access.user(user) is None:
        raise not_found()
    name = ctx.params["name"]
    if name != "all":  # "all" is ctl's word for every limit, not a limit's name
        ctx.broker.access.clear_user_limits(user, name)
        await ctx.durable()
    return no_content()


# -- topic permissions -----------------------------------------------------------------------------------


def check_topic_access(
    ctx: Ctx, vhost: VHost, access: str, exchange: str, routing_key: str, publish: bool = False
) -> None:
    """The API user's topic permission on `exchange` ("write" for a publish, "read" for a binding from
    it), as RabbitMQ's channel checks it: a refused binding is 401 "Access refused." (the API's mapping of
    a 403), a refused publish 400 with the AMQP error quoted, as RabbitMQ answers them."""
    model = vhost.exchanges.get(exchange)
    if model is None or not ctx.broker.access.topic_permissions:
        return
    try:
        Guard(ctx.broker.access, ctx.me.name, vhost.name).check_topic(access, model, routing_key)
    except ChannelError as exc:
        if publish:
            raise HttpError(400, "bad_request", f"{exc.reply_code} {exc.reply_text}") from None
        raise


@route("GET", "/api/topic-permissions")
async def list_topic_permissions(ctx: Ctx) -> Response:
    """Every topic permission of every user."""
    require_admin(ctx.me)
    return listed(ctx, ctx.broker.access.topic_rows(), default_sort=("vhost", "user"))


def _topic_target(ctx: Ctx) -> tuple[str, str]:
    require_admin(ctx.me)
    vhost, user = ctx.params["vhost"], ctx.params["user"]
    if vhost not in ctx.broker.vhosts or ctx.broker.access.user(user) is None:
        raise not_found()
    return vhost, user


@route("GET", "/api/topic-permissions/{vhost}/{user}")
async def show_topic_permissions(ctx: Ctx) -> Response:
    """One user's topic permissions on one vhost (404 when it has none)."""
    vhost, user = _topic_target(ctx)
    rows = ctx.broker.access.topic_rows(user=user, vhost=vhost)
    if not rows:
        raise not_found()
    return listed(ctx, rows, default_sort=("vhost", "user"))


@route("PUT", "/api/topic-permissions/{vhost}/{user}")
async def put_topic_permissions(ctx: Ctx) -> Response:
    """Set a user's write/read patterns on one exchange of a vhost (201 when the user had no topic
    permission on the vhost, else 204, as RabbitMQ)."""
    require_admin(ctx.me)
    body = ctx.body()
    for key in _TOPIC_KEYS:
        if key not in body:
            raise _key_missing(key)
    exchange, write, read = (body[key] for key in _TOPIC_KEYS)
    for key, value in zip(_TOPIC_KEYS, (exchange, write, read), strict=True):
        if not isinstance(value, str):
            raise HttpError(400, "bad_request", f"{key} must be a string")
    vhost, user = ctx.params["vhost"], ctx.params["user"]
    access = ctx.broker.access
    if vhost not in ctx.broker.vhosts or access.user(user) is None:
        raise HttpError(400, "bad_request", "vhost_or_user_not_found")
    existed = bool(access.topic_rows(user=user, vhost=vhost))
    try:
        access.set_topic_permissions(user, vhost, exchange, write, read)
    except AccessError as exc:
        raise HttpError(400, "bad_request", str(exc)) from None
    await ctx.durable()
    return no_content(204 if existed else 201)


@route("DELETE", "/api/topic-permissions/{vhost}/{user}")
async def delete_topic_permissions(ctx: Ctx) -> Response:
    """Remove a user's topic permissions on a vhost (404 when it has none)."""
    vhost, user = _topic_target(ctx)
    if not ctx.broker.access.topic_rows(user=user, vhost=vhost):
        raise not_found()
    ctx.broker.access.clear_topic_permissions(user, vhost)
    await ctx.durable()
    return no_content()


@route("GET", "/api/vhosts/{vhost}/topic-permissions")
async def vhost_topic_permissions(ctx: Ctx) -> Response:
    """Every user's topic permissions on one vhost."""
    require_admin(ctx.me)
    name = ctx.params["vhost"]
    if name not in ctx.broker.vhosts:
        raise not_found()
    return listed(ctx, ctx.broker.access.topic_rows(vhost=name), default_sort=("vhost", "user"))


@route("GET", "/api/users/{user}/topic-permissions")
async def user_topic_permissions(ctx: Ctx) -> Response:
    """One user's topic permissions on every vhost."""
    require_admin(ctx.me)
    name = ctx.params["user"]
    if ctx.broker.access.user(name) is None:
        raise not_found()
    return listed(ctx, ctx.broker.access.topic_rows(user=name), default_sort=("vhost", "user"))
