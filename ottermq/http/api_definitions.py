"""GET /api/definitions: the broker's definitions, in RabbitMQ's export format.

Strategy: as RabbitMQ exports them (`rabbitmqadmin export`): users, vhosts, permissions, every queue but
exclusive ones, every exchange but the default and amq.* ones, and the bindings between those. Import
(POST) is not served: password hashes are OtterMQ's own format, so a RabbitMQ export could not be loaded
faithfully anyway.
"""

from __future__ import annotations

from typing import Any

from ottermq.broker.broker import PRODUCT, VERSION
from ottermq.http.api_admin import MANAGEMENT_VERSION, user_row
from ottermq.http.api_bindings import binding_rows
from ottermq.http.app import Ctx, ok, route
from ottermq.http.auth import require_admin
from ottermq.http.interface import Response
from ottermq.server.rows import jsonable


@route("GET", "/api/definitions")
async def definitions(ctx: Ctx) -> Response:
    """Everything durable, for backup or migration."""
    require_admin(ctx.me)
    broker = ctx.broker
    queues: list[dict[str, Any]] = []
    exchanges: list[dict[str, Any]] = []
    bindings: list[dict[str, Any]] = []
    for vhost in broker.vhosts.values():
        shared_queues = {q.name for q in vhost.queues.values() if not q.exclusive}
        queues.extend(
            {
                "name": q.name,
                "vhost": vhost.name,
                "durable": q.durable,
                "auto_delete": q.auto_delete,
                "arguments": jsonable(q.arguments),
            }
            for q in vhost.queues.values()
            if q.name in shared_queues
        )
        own_exchanges = {x for x in vhost.exchanges if x and not x.startswith("amq.")}
        exchanges.extend(
            {
                "name": x.name,
                "vhost": vhost.name,
                "type": x.type,
                "durable": x.durable,
                "auto_delete": x.auto_delete,
                "internal": x.internal,
                "arguments": jsonable(x.arguments),
            }
            for x in vhost.exchanges.values()
            if x.name in own_exchanges
        )
        for row in binding_rows(vhost):
            targets = shared_queues if row["destination_type"] == "queue" else own_exchanges
            if row["source"] in own_exchanges and row["destination"] in targets:
                bindings.append(
                    {
                        key: row[key]
                        for key in (
                            "source",
                            "vhost",
                            "destination",
                            "destination_type",
                            "routing_key",
                            "arguments",
                        )
                    }
                )
    return ok(
        {
            "rabbit_version": MANAGEMENT_VERSION,
            "rabbitmq_version": MANAGEMENT_VERSION,
            "product_name": PRODUCT,
            "product_version": VERSION,
            "users": [user_row(user) for user in broker.access.users.values()],
            "vhosts": [
                {"name": name, "description": "", "tags": [], "metadata": {}} for name in broker.access.vhosts
            ],
            "permissions": [
                {"user": user, "vhost": vhost, "configure": p.configure, "write": p.write, "read": p.read}
                for (user, vhost), p in broker.access.permissions.items()
            ],
            "topic_permissions": [],
            "parameters": [],
            "global_parameters": [],
            "policies": [p.row() for vhost in broker.vhosts.values() for p in vhost.policies.listed(False)],
            "queues": queues,
            "exchanges": exchanges,
            "bindings": bindings,
        }
    )
