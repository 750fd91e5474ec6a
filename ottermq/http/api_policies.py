"""The management API's policies and operator policies: /api/policies and /api/operator-policies.

Strategy: RabbitMQ's shapes and rules (rabbit_mgmt_wm_policy*.erl): any management user lists the
policies of the vhosts it may see, a policymaker (or administrator) with access to the vhost reads and
changes one, and only administrators touch operator policies. A refused policy is 400
{"error": "bad_request", "reason": "Validation failed\\n\\n..."} with RabbitMQ's validation lines
(HTML-escaped for policies, as RabbitMQ escapes them, and not for operator policies, as it does not).
The changes go through `ottermq.broker.policies`, journaled like every durable change.
"""

from __future__ import annotations

from typing import Any, Final

from ottermq.broker.exchange import Exchange
from ottermq.broker.policies import Policy, clear_policy, policy_fields, set_policy
from ottermq.broker.policy_rules import PolicyError
from ottermq.broker.queue import Queue
from ottermq.broker.vhost import VHost
from ottermq.http.app import Ctx, no_content, not_found, ok, route
from ottermq.http.auth import ADMINISTRATOR, Unauthorized, require_admin, sees_all, visible_vhosts
from ottermq.http.interface import HttpError, Response

POLICYMAKER: Final = "policymaker"
# The body keys a PUT must carry, in the order RabbitMQ checks them.
_REQUIRED: Final = ("pattern", "definition")


def escape_html_tags(text: str) -> str:
    """rabbit_misc:escape_html_tags."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def queue_policies(vhost: VHost, queue: Queue, row: dict[str, Any]) -> dict[str, Any]:
    """`row` (a queue's) with its `policy`, `operator_policy` and `effective_policy_definition` (None,
    None and {} when none applies, as RabbitMQ shows them)."""
    row.update(policy_fields(vhost.policies, "queue", queue.name, queue.arguments))
    return row


def exchange_policy(vhost: VHost, exchange: Exchange, row: dict[str, Any]) -> dict[str, Any]:
    """`row` (an exchange's) with `policy` when one applies (RabbitMQ leaves the key out otherwise)."""
    if vhost.policies:
        policy, _operator = vhost.policies.match("exchange", exchange.name)
        if policy is not None:
            row["policy"] = policy.name
    return row


def _rows(ctx: Ctx, operator: bool, vhost: str | None) -> list[dict[str, Any]]:
    names = [vhost] if vhost is not None else visible_vhosts(ctx.broker, ctx.me)
    rows: list[dict[str, Any]] = []
    for name in names:
        model = ctx.broker.vhosts.get(name)
        if model is not None:
            rows.extend(policy.row() for policy in model.policies.listed(operator))
    return rows


def _vhost(ctx: Ctx, operator: bool) -> VHost:
    """The vhost of the path: 404 if missing, 401 unless the user may manage its policies."""
    name = ctx.params["vhost"]
    user = ctx.me
    if operator:
        require_admin(user)
    elif ADMINISTRATOR not in user.tags and not (
        POLICYMAKER in user.tags and ctx.broker.access.can_open(user.name, name)
    ):
        raise Unauthorized("not_authorised", "User not authorised to access object")
    vhost = ctx.broker.vhosts.get(name)
    if vhost is None:
        raise not_found()
    return vhost


def _policy(ctx: Ctx, operator: bool) -> tuple[VHost, Policy]:
    vhost = _vhost(ctx, operator)
    policy = vhost.policies.table(operator).get(ctx.params["name"])
    if policy is None:
        raise not_found()
    return vhost, policy


def _list(ctx: Ctx, operator: bool) -> Response:
    if operator:
        require_admin(ctx.me)
    return ok(_rows(ctx, operator, None))


def _list_vhost(ctx: Ctx, operator: bool) -> Response:
    name = ctx.params["vhost"]
    if operator:
        require_admin(ctx.me)
    if name not in ctx.broker.vhosts:
        raise not_found()
    if not sees_all(ctx.me) and not ctx.broker.access.can_open(ctx.me.name, name):
        raise Unauthorized("not_authorised", "User not authorised to access virtual host")
    return ok(_rows(ctx, operator, name))


async def _put(ctx: Ctx, operator: bool) -> Response:
    name = ctx.params["vhost"]
    if operator:
        require_admin(ctx.me)
    if name not in ctx.broker.vhosts:
        raise HttpError(404, "not_found", "vhost_not_found")
    vhost = _vhost(ctx, operator)
    body = ctx.body()
    missing = [key for key in _REQUIRED if key not in body]
    if missing:
        raise HttpError(400, "bad_request", "[" + ",".join(f"{{key_missing,{key}}}" for key in missing) + "]")
    try:
        created = set_policy(
            vhost,
            ctx.params["name"],
            body["pattern"],
            body["definition"],
            body.get("priority", 0),  # absent: 0; null is refused, as RabbitMQ
            body.get("apply-to", "all"),
            operator=operator,
        )
    except PolicyError as exc:
        reason = exc.reason if operator else escape_html_tags(exc.reason)
        raise HttpError(400, "bad_request", reason) from None
    await ctx.durable()
    return no_content(201 if created else 204)


async def _delete(ctx: Ctx, operator: bool) -> Response:
    vhost, policy = _policy(ctx, operator)
    clear_policy(vhost, policy.name, operator)
    await ctx.durable()
    return no_content()


@route("GET", "/api/policies")
async def list_policies(ctx: Ctx) -> Response:
    """The policies of every vhost the user may see, lowest priority first (as RabbitMQ lists them)."""
    return _list(ctx, False)


@route("GET", "/api/policies/{vhost}")
async def list_vhost_policies(ctx: Ctx) -> Response:
    """The policies of one vhost."""
    return _list_vhost(ctx, False)


@route("GET", "/api/policies/{vhost}/{name}")
async def show_policy(ctx: Ctx) -> Response:
    """One policy."""
    return ok(_policy(ctx, False)[1].row())


@route("PUT", "/api/policies/{vhost}/{name}")
async def put_policy(ctx: Ctx) -> Response:
    """Create (201) or replace (204) a policy; it applies at once to what exists."""
    return await _put(ctx, False)


@route("DELETE", "/api/policies/{vhost}/{name}")
async def delete_policy(ctx: Ctx) -> Response:
    """Remove a policy; its effect goes at once."""
    return await _delete(ctx, False)


@route("GET", "/api/operator-policies")
async def list_operator_policies(ctx: Ctx) -> Response:
    """The operator policies of every vhost (administrators only)."""
    return _list(ctx, True)


@route("GET", "/api/operator-policies/{vhost}")
async def list_vhost_operator_policies(ctx: Ctx) -> Response:
    """The operator policies of one vhost."""
    return _list_vhost(ctx, True)


@route("GET", "/api/operator-policies/{vhost}/{name}")
async def show_operator_policy(ctx: Ctx) -> Response:
    """One operator policy."""
    return ok(_policy(ctx, True)[1].row())


@route("PUT", "/api/operator-policies/{vhost}/{name}")
async def put_operator_policy(ctx: Ctx) -> Response:
    """Create (201) or replace (204) an operator policy."""
    return await _put(ctx, True)


@route("DELETE", "/api/operator-policies/{vhost}/{name}")
async def delete_operator_policy(ctx: Ctx) -> Response:
    """Remove an operator policy."""
    return await _delete(ctx, True)
