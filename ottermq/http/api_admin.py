"""Node, vhost, user and permission endpoints: /api/overview, whoami, aliveness-test,
/api/vhosts, /api/users, /api/permissions.

Strategy: every change goes through the `ottermq ctl` verbs (ottermq.server.control.VERBS), so the HTTP
API and the ctl socket validate and word errors the same way, then waits for the journal (`ctx.durable`).
"""

from __future__ import annotations

import platform
from typing import TYPE_CHECKING, Any, Final

from ottermq.broker.auth import export_hash, import_hash
from ottermq.broker.broker import PRODUCT, VERSION
from ottermq.http.api_health import cluster_name
from ottermq.http.app import Ctx, check_printable, no_content, not_found, ok, route
from ottermq.http.auth import require_admin, require_vhost, sees_all, visible_vhosts
from ottermq.http.fields import overview_fields, vhost_fields
from ottermq.http.interface import HttpError, Response, json_response
from ottermq.http.listing import listed, shown
from ottermq.http.messages import get, publish
from ottermq.http.stats import NODE, totals, unacked_by_queue
from ottermq.server.control import VERBS

if TYPE_CHECKING:
    from ottermq.broker.access import User

# The management API version clients check (rabbitmqadmin, dashboards): the RabbitMQ release we follow.
MANAGEMENT_VERSION: Final = "3.10.8"
ALIVENESS_QUEUE: Final = "aliveness-test"


def ctl(ctx: Ctx, verb: str, **args: Any) -> Any:
    """Run one `ottermq ctl` verb on the broker."""
    return VERBS[verb](ctx.broker, args)


# -- node ------------------------------------------------------------------------------------------------


@route("GET", "/api/overview")
async def overview(ctx: Ctx) -> Response:
    """Versions, object and message totals, listeners."""
    broker = ctx.broker
    every = sees_all(ctx.me)
    total = totals(broker, None if every else visible_vhosts(broker, ctx.me))
    object_totals = {
        "connections": total.connections,
        "channels": total.channels,
        "exchanges": total.exchanges,
        "queues": total.queues,
        "consumers": total.consumers,
    }
    if not every:
        # As RabbitMQ: a user who is not monitoring sees its own connections and channels, no consumers.
        own = [c for c in broker.connections if c.user == ctx.me.name and c.vhost is not None]
        object_totals.update(connections=len(own), channels=sum(len(c.channels) for c in own))
        del object_totals["consumers"]
    rates = ctx.context.rates
    body = {
        "management_version": MANAGEMENT_VERSION,
        "rabbitmq_version": MANAGEMENT_VERSION,
        "product_name": PRODUCT,
        "product_version": VERSION,
        "rates_mode": "basic",
        "python_version": platform.python_version(),
        "node": NODE,
        "cluster_name": cluster_name(broker),
        "exchange_types": [
            {"name": name, "description": "", "enabled": True}
            for name in ("direct", "fanout", "headers", "topic")
        ],
        "object_totals": object_totals,
        "queue_totals": {
            "messages": total.messages,
            "messages_ready": total.messages_ready,
            "messages_unacknowledged": total.messages_unacknowledged,
        },
        # Counted broker-wide only: users who see only some vhosts get none, not other vhosts' traffic.
        "message_stats": rates.message_stats() if rates is not None and sees_all(ctx.me) else {},
        "listeners": [{"node": NODE, **listener} for listener in ctx.context.listeners],
        "contexts": [],
        "alarms": list(broker.alarms.active),
    }
    return shown(ctx, overview_fields(ctx, body, sees_all(ctx.me)))


@route("GET", "/api/whoami")
async def whoami(ctx: Ctx) -> Response:
    """The authenticated user and its tags."""
    return ok({"name": ctx.me.name, "tags": list(ctx.me.tags)})


@route("GET", "/api/aliveness-test/{vhost}")
async def aliveness_test(ctx: Ctx) -> Response:
    """Declare the aliveness-test queue, publish a message to it and get it back, as RabbitMQ."""
    name = ctx.params["vhost"]
    require_vhost(ctx.broker, ctx.me, name)
    vhost = ctx.broker.vhosts[name]
    queue = vhost.declare_queue(ALIVENESS_QUEUE)
    counts = ctx.broker.message_counts
    publish(vhost, "", ALIVENESS_QUEUE, b"\x00\x00", b"test_message", counts)
    got = get(queue, 1, "ack_requeue_false", "auto", None, vhost, counts)
    if not got or got[0]["payload"] != "test_message":
        return json_response(503, {"status": "failed", "reason": "the test message did not come back"})
    return ok({"status": "ok"})


# -- vhosts ------------------------------------------------------------------------------------------------


def vhost_row(ctx: Ctx, name: str, unacked: Any) -> dict[str, Any]:
    """A vhost with its message totals."""
    vhost = ctx.broker.vhosts[name]
    ready = sum(q.ready_count for q in vhost.queues.values())
    pending = sum(unacked[q] for q in vhost.queues.values())
    row = {
        "name": name,
        "description": "",
        "tags": [],
        "metadata": {"description": "", "tags": []},
        "default_queue_type": "classic",
        "tracing": False,
        "cluster_state": {NODE: "running"},
        "messages": ready + pending,
        "messages_ready": ready,
        "messages_unacknowledged": pending,
    }
    return vhost_fields(ctx, name, row)


@route("GET", "/api/vhosts")
async def list_vhosts(ctx: Ctx) -> Response:
    """The vhosts the user may see."""
    unacked = unacked_by_queue(ctx.broker)
    return listed(
        ctx,
        [
            vhost_row(ctx, name, unacked)
            for name in visible_vhosts(ctx.broker, ctx.me)
            if name in ctx.broker.vhosts
        ],
        paged=True,
    )


@route("GET", "/api/vhosts/{vhost}")
async def show_vhost(ctx: Ctx) -> Response:
    """One vhost."""
    name = ctx.params["vhost"]
    require_vhost(ctx.broker, ctx.me, name)
    return shown(ctx, vhost_row(ctx, name, unacked_by_queue(ctx.broker)))


@route("PUT", "/api/vhosts/{vhost}")
async def put_vhost(ctx: Ctx) -> Response:
    """Create a vhost (201), or leave an existing one as it is (204)."""
    require_admin(ctx.me)
    ctx.body()  # description, tags...: validated as JSON, not kept
    name = ctx.params["vhost"]
    check_printable("vhost", name)
    existed = name in ctx.broker.vhosts
    ctl(ctx, "add_vhost", name=name)
    if not existed:
        # As RabbitMQ's (rabbit_mgmt_wm_vhost:maybe_grant_full_permissions): the creator may use it at once.
        everything = {"configure": ".*", "write": ".*", "read": ".*"}
        ctl(ctx, "set_permissions", user=ctx.me.name, vhost=name, **everything)
    await ctx.durable()
    return no_content(204 if existed else 201)


@route("DELETE", "/api/vhosts/{vhost}")
async def delete_vhost(ctx: Ctx) -> Response:
    """Delete a vhost with everything in it."""
    require_admin(ctx.me)
    name = ctx.params["vhost"]
    if name not in ctx.broker.vhosts:
        raise not_found()
    ctl(ctx, "delete_vhost", name=name)
    await ctx.durable()
    return no_content()


@route("GET", "/api/vhosts/{vhost}/permissions")
async def vhost_permissions(ctx: Ctx) -> Response:
    """Every user's permissions on one vhost."""
    require_admin(ctx.me)
    name = ctx.params["vhost"]
    if name not in ctx.broker.vhosts:
        raise not_found()
    return ok([{"vhost": name, **row} for row in ctl(ctx, "list_permissions", vhost=name)])


# -- users -----------------------------------------------------------------------------------------------


def user_row(user: User, limits: dict[str, int] | None = None) -> dict[str, Any]:
    """A user as RabbitMQ shows it (the hash as RabbitMQ's hashing_algorithm and base64 pair)."""
    algorithm, password_hash = export_hash(user.password_hash)
    return {
        "name": user.name,
        "password_hash": password_hash,
        "hashing_algorithm": algorithm,
        "tags": list(user.tags),
        "limits": dict(limits or {}),
    }


def _user(ctx: Ctx) -> User:
    user = ctx.broker.access.user(ctx.params["user"])
    if user is None:
        raise not_found()
    return user


@route("GET", "/api/users")
async def list_users(ctx: Ctx) -> Response:
    """Every user."""
    require_admin(ctx.me)
    access = ctx.broker.access
    return listed(ctx, [user_row(user, access.limits_of(user.name)) for user in access.users.values()])


@route("GET", "/api/users/{user}")
async def show_user(ctx: Ctx) -> Response:
    """One user."""
    require_admin(ctx.me)
    user = _user(ctx)
    return ok(user_row(user, ctx.broker.access.limits_of(user.name)))


def _tags(value: Any) -> list[str]:
    """Tags as RabbitMQ takes them: "a,b" or ["a", "b"]."""
    if value is None:
        return []
    if isinstance(value, str):
        return [tag.strip() for tag in value.split(",") if tag.strip()]
    if isinstance(value, list) and all(isinstance(tag, str) for tag in value):
        return value
    raise HttpError(400, "bad_request", "tags must be a string or a list of strings")


@route("PUT", "/api/users/{user}")
async def put_user(ctx: Ctx) -> Response:
    """Create a user (201) or change its password and tags (204)."""
    require_admin(ctx.me)
    body = ctx.body()
    name = ctx.params["user"]
    check_printable("user", name)
    tags = _tags(body.get("tags"))
    password, password_hash = body.get("password"), body.get("password_hash")
    if password is not None and not isinstance(password, str):
        raise HttpError(400, "bad_request", "password must be a string")
    if password_hash is not None and not isinstance(password_hash, str):
        raise HttpError(400, "bad_request", "password_hash must be a string")
    if password_hash is not None:
        algorithm = body.get("hashing_algorithm")
        if algorithm is not None and not isinstance(algorithm, str):
            raise HttpError(400, "bad_request", "hashing_algorithm must be a string")
        try:
            password_hash = import_hash(algorithm, password_hash)
        except ValueError as exc:
            raise HttpError(400, "bad_request", str(exc)) from None
    existing = ctx.broker.access.user(name)
    if existing is None:
        if password_hash is not None:
            ctl(ctx, "add_user", name=name, password_hash=password_hash, tags=tags)
        else:
            # No password: the user exists but password logins are refused, as in RabbitMQ.
            ctl(ctx, "add_user", name=name, password=password or "", tags=tags)
        await ctx.durable()
        return no_content(201)
    if password_hash is not None:
        if password_hash != existing.password_hash:
            ctx.broker.access.set_password_hash(name, password_hash)
    elif password is not None:
        ctl(ctx, "change_password", name=name, password=password)
    ctl(ctx, "set_user_tags", name=name, tags=tags)
    await ctx.durable()
    return no_content()


@route("DELETE", "/api/users/{user}")
async def delete_user(ctx: Ctx) -> Response:
    """Delete a user and its permissions."""
    require_admin(ctx.me)
    ctl(ctx, "delete_user", name=_user(ctx).name)
    await ctx.durable()
    return no_content()


@route("GET", "/api/users/{user}/permissions")
async def user_permissions(ctx: Ctx) -> Response:
    """One user's permissions on every vhost."""
    require_admin(ctx.me)
    name = _user(ctx).name
    return ok([{"user": name, **row} for row in ctl(ctx, "list_user_permissions", user=name)])


# -- permissions -------------------------------------------------------------------------------------------


@route("GET", "/api/permissions")
async def list_permissions(ctx: Ctx) -> Response:
    """Every permission of every user."""
    require_admin(ctx.me)
    return listed(
        ctx,
        [
            {"user": user, "vhost": vhost, "configure": p.configure, "write": p.write, "read": p.read}
            for (user, vhost), p in ctx.broker.access.permissions.items()
        ],
        default_sort=("vhost", "user"),
    )


def _permission_target(ctx: Ctx) -> tuple[str, str]:
    vhost, user = ctx.params["vhost"], ctx.params["user"]
    if vhost not in ctx.broker.vhosts or ctx.broker.access.user(user) is None:
        raise not_found()
    return vhost, user


@route("GET", "/api/permissions/{vhost}/{user}")
async def show_permission(ctx: Ctx) -> Response:
    """One user's permissions on one vhost."""
    require_admin(ctx.me)
    vhost, user = _permission_target(ctx)
    p = ctx.broker.access.permission(user, vhost)
    if p is None:
        raise not_found()
    return ok({"user": user, "vhost": vhost, "configure": p.configure, "write": p.write, "read": p.read})


@route("PUT", "/api/permissions/{vhost}/{user}")
async def put_permission(ctx: Ctx) -> Response:
    """Set a user's configure/write/read regexes on a vhost (201 new, 204 replaced)."""
    require_admin(ctx.me)
    body = ctx.body()
    vhost, user = _permission_target(ctx)
    patterns = {key: body.get(key) for key in ("configure", "write", "read")}
    for key, value in patterns.items():
        if not isinstance(value, str):
            raise HttpError(400, "bad_request", f"{key} must be a string (a regular expression)")
    existed = ctx.broker.access.permission(user, vhost) is not None
    ctl(ctx, "set_permissions", user=user, vhost=vhost, **patterns)
    await ctx.durable()
    return no_content(204 if existed else 201)


@route("DELETE", "/api/permissions/{vhost}/{user}")
async def delete_permission(ctx: Ctx) -> Response:
    """Remove a user's permissions on a vhost."""
    require_admin(ctx.me)
    vhost, user = _permission_target(ctx)
    if ctx.broker.access.permission(user, vhost) is None:
        raise not_found()
    ctl(ctx, "clear_permissions", user=user, vhost=vhost)
    await ctx.durable()
    return no_content()
