"""GET /api/definitions: the broker's definitions, in RabbitMQ's export format.

Strategy: as RabbitMQ exports them (`rabbitmqadmin export`): users (hashes as RabbitMQ's
hashing_algorithm and base64 pair, so RabbitMQ imports them), vhosts, permissions, operator policies and
vhost limits as parameters, policies, every queue but exclusive ones, every exchange but the default and
amq.* ones, and the bindings between those (`ottermq.broker.definitions`). The import and the vhost
export are in `api_import` (imported here for its routes).
"""

from __future__ import annotations

from ottermq.broker.definitions import export_definitions
from ottermq.http import api_import
from ottermq.http.app import Ctx, ok, route
from ottermq.http.auth import require_admin
from ottermq.http.interface import Response

# Imported for its routes (POST /api/definitions, /api/definitions/{vhost}).
ROUTES = api_import


@route("GET", "/api/definitions")
async def definitions(ctx: Ctx) -> Response:
    """Everything durable, for backup or migration."""
    require_admin(ctx.me)
    return ok(export_definitions(ctx.broker))
