"""Health checks and the small node endpoints tools probe: /api/health/checks/*, /api/healthchecks/node,
/api/auth, /api/extensions, /api/cluster-name, /api/feature-flags.

Strategy: the bodies and statuses are RabbitMQ 3.10's, recorded from a real node (tests/data/rabbitmq_3_10):
a check that passes is 200 {"status": "ok", ...}, one that fails 503 {"status": "failed", "reason": ...}
with the check's own extra keys, so Kubernetes probes and scripts written for RabbitMQ read them alike.
OtterMQ is one node: the quorum and mirror checks always pass ("single node cluster"), the cluster-wide and
local alarm checks read the same alarms, and every vhost is up while the node runs. Any management user may
call them (as RabbitMQ); /api/auth needs no login (the UI asks it before one). The cluster name is
journaled (`Broker.set_cluster_name`), as RabbitMQ keeps it across restarts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from ottermq.broker.alarms import ALARM_DISK, ALARM_JOURNAL, ALARM_MEMORY
from ottermq.http.app import Ctx, no_content, not_found, ok, route
from ottermq.http.auth import require_admin
from ottermq.http.interface import HttpError, Response, json_response
from ottermq.http.stats import NODE

if TYPE_CHECKING:
    from collections.abc import Iterable

    from ottermq.broker.broker import Broker

# The alarm names RabbitMQ's health checks report ("disk space" for the disk alarm); the journal's own
# alarm (its disk is full) is a disk alarm to an operator.
_RESOURCE: Final = {ALARM_MEMORY: "memory", ALARM_DISK: "disk space", ALARM_JOURNAL: "disk space"}
# The names RabbitMQ's /api/healthchecks/node prints inside its Erlang terms.
_RESOURCE_TERM: Final = {ALARM_MEMORY: "memory", ALARM_DISK: "disk", ALARM_JOURNAL: "disk"}

# rabbit_mgmt_wm_health_check_protocol_listener:normalize_protocol, for the protocols OtterMQ may serve.
_PROTOCOL_ALIASES: Final = {
    "amqp091": "amqp",
    "amqp0.9.1": "amqp",
    "amqp0-9-1": "amqp",
    "amqp0_9_1": "amqp",
    "amqp10": "amqp",
    "amqp1.0": "amqp",
    "amqp1-0": "amqp",
    "amqp1_0": "amqp",
    "amqps": "amqp/ssl",
    "http1": "http",
    "http1.1": "http",
    "http_api": "http",
    "management": "http",
    "management_ui": "http",
    "ui": "http",
    "cli": "clustering",
    "distribution": "clustering",
}

# RabbitMQ 3.10's feature flags whose behaviour OtterMQ has, as /api/feature-flags lists them.
FEATURE_FLAGS: Final = (
    {
        "name": "drop_unroutable_metric",
        "desc": "Count unroutable publishes to be dropped in stats",
        "doc_url": "",
        "state": "enabled",
        "stability": "stable",
        "provided_by": "rabbitmq_management_agent",
    },
    {
        "name": "implicit_default_bindings",
        "desc": "Default bindings are now implicit, instead of being stored in the database",
        "doc_url": "",
        "state": "enabled",
        "stability": "stable",
        "provided_by": "rabbit",
    },
)


def cluster_name(broker: Broker) -> str:
    """The name PUT /api/cluster-name set (journaled), else the node's name (as RabbitMQ's default)."""
    return broker.cluster_name if broker.cluster_name is not None else NODE


def _failed(reason: str, **extra: Any) -> Response:
    return json_response(503, {"status": "failed", "reason": reason, **extra})


# -- /api/health/checks ------------------------------------------------------------------------------------


def _alarms(ctx: Ctx, reason: str) -> Response:
    active = ctx.broker.alarms.active
    if not active:
        return ok({"status": "ok"})
    resources = list(dict.fromkeys(_RESOURCE.get(name, name) for name in active))
    return _failed(reason, alarms=[{"node": NODE, "resource": resource} for resource in resources])


@route("GET", "/api/health/checks/alarms")
async def health_alarms(ctx: Ctx) -> Response:
    """200 {"status": "ok"}, or 503 with the alarms in effect (memory, disk or the journal's disk)."""
    return _alarms(ctx, "There are alarms in effect in the cluster")


@route("GET", "/api/health/checks/local-alarms")
async def health_local_alarms(ctx: Ctx) -> Response:
    """The same alarms: this node is the whole cluster."""
    return _alarms(ctx, "There are alarms in effect on the node")


@route("GET", "/api/health/checks/virtual-hosts")
async def health_virtual_hosts(ctx: Ctx) -> Response:
    """Every vhost runs while the node does (no vhost is ever down on its own here)."""
    return ok({"status": "ok"})


def _listeners(ctx: Ctx) -> Iterable[dict[str, Any]]:
    return ctx.context.listeners


@route("GET", "/api/health/checks/port-listener/{port}")
async def health_port_listener(ctx: Ctx) -> Response:
    """200 when something of the node listens on the port; 503 with the ports it does listen on."""
    raw = ctx.params["port"]
    try:
        port = int(raw)
    except ValueError:
        raise HttpError(400, "bad_request", "Invalid port") from None
    ports = [listener["port"] for listener in _listeners(ctx)]
    if port in ports:
        return ok({"status": "ok", "port": port})
    return _failed("No active listener", missing=port, ports=ports)


@route("GET", "/api/health/checks/protocol-listener/{protocol}")
async def health_protocol_listener(ctx: Ctx) -> Response:
    """200 when the node listens for the protocol (RabbitMQ's aliases: amqp091, management...)."""
    asked = ctx.params["protocol"].lower()
    protocol = _PROTOCOL_ALIASES.get(asked, asked)
    protocols = [listener["protocol"] for listener in _listeners(ctx)]
    if protocol in protocols:
        return ok({"status": "ok", "protocol": protocol})
    return _failed("No active listener", missing=protocol, protocols=protocols)


@route("GET", "/api/health/checks/node-is-quorum-critical")
async def health_quorum_critical(ctx: Ctx) -> Response:
    """Never critical: there is no other node whose quorum this one holds."""
    return ok({"status": "ok", "reason": "single node cluster"})


@route("GET", "/api/health/checks/node-is-mirror-sync-critical")
async def health_mirror_sync_critical(ctx: Ctx) -> Response:
    """Never critical: there are no mirrors."""
    return ok({"status": "ok", "reason": "single node cluster"})


@route("GET", "/api/healthchecks/node")
@route("GET", "/api/healthchecks/node/{node}")
async def healthchecks_node(ctx: Ctx) -> Response:
    """The older node check: 503 while a resource alarm is on, worded as RabbitMQ prints its alarms."""
    if ctx.params.get("node", NODE) != NODE:
        raise not_found()
    active = ctx.broker.alarms.active
    if not active:
        return ok({"status": "ok"})
    names = dict.fromkeys(_RESOURCE_TERM.get(name, name) for name in active)
    terms = ",".join(f"{{resource_limit,{name},{NODE}}}" for name in names)
    return json_response(503, {"status": "failed", "reason": f"resource alarm(s) in effect:[{terms}]"})


# -- node facts --------------------------------------------------------------------------------------------


@route("GET", "/api/auth", public=True)
async def auth_settings(ctx: Ctx) -> Response:
    """How to log in: basic auth only (no OAuth 2 / UAA), as a RabbitMQ without OAuth answers."""
    return ok({"enable_uaa": False, "uaa_client_id": "", "uaa_location": ""})


@route("GET", "/api/extensions")
async def extensions(ctx: Ctx) -> Response:
    """The web UI's plug-in scripts: none."""
    return ok([])


@route("GET", "/api/cluster-name")
async def show_cluster_name(ctx: Ctx) -> Response:
    """{"name": ...}."""
    return ok({"name": cluster_name(ctx.broker)})


@route("PUT", "/api/cluster-name")
async def put_cluster_name(ctx: Ctx) -> Response:
    """Rename the cluster (administrators); 204."""
    require_admin(ctx.me)
    body = ctx.body()
    if "name" not in body:
        raise HttpError(400, "bad_request", "[{key_missing,name}]")
    name = body["name"]
    if not isinstance(name, str):
        raise HttpError(400, "bad_request", "name must be a string")
    ctx.broker.set_cluster_name(name)
    await ctx.durable()
    return no_content()


@route("GET", "/api/feature-flags")
async def feature_flags(ctx: Ctx) -> Response:
    """The feature flags (administrators), as RabbitMQ lists them."""
    require_admin(ctx.me)
    return ok([dict(flag) for flag in FEATURE_FLAGS])
