"""The durable state of a broker as plain data, to compare a live broker with one rebuilt from its log.

Strategy: the design promises that the live path and replay build the same state; `durable_view` makes
that checkable. It reads only what a log records: per vhost the durable exchanges, the durable queues
with their logged messages (id, body size, deadline) in queue order (and the arguments policies give
them), the bindings between durable ends, the vhost's limits and its policies; and the access
registry's users (with their limits), permissions and topic permissions, and the delivery state of a
queue counting deliveries (each message's failed-delivery count and whether it is out to a consumer:
logged since issue 13). Everything a restart forgets on purpose is left out (consumers, unacked and
redelivered marks, ready versus delivered, message locations in the log, which compaction moves). The
result is made of dicts, lists, strings, numbers and tuples only, sorted where the broker's order
carries no meaning, so two views compare with `==` and serialize with `json.dumps`; `diff_views` says
where two of them differ.
"""

from __future__ import annotations

import datetime
import decimal
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ottermq.amqp.table import Long

if TYPE_CHECKING:
    from ottermq.broker.broker import Broker
    from ottermq.broker.vhost import VHost


def durable_view(broker: Broker) -> dict[str, Any]:
    """The durable state of `broker`: {"vhosts": {name: ...}, "users": {...}, "permissions": {...}}."""
    access = broker.access
    return {
        "vhosts": {
            name: _vhost_view(vhost, broker.vhost_limits.get(name, {}))
            for name, vhost in sorted(broker.vhosts.items())
        },
        "users": {
            name: {
                "password_hash": user.password_hash,
                "tags": list(user.tags),
                "limits": dict(sorted(access.limits_of(name).items())),
            }
            for name, user in sorted(access.users.items())
        },
        "permissions": {
            f"{user} @ {vhost}": {
                "configure": permission.configure,
                "write": permission.write,
                "read": permission.read,
            }
            for (user, vhost), permission in sorted(access.permissions.items())
        },
        "topic_permissions": {
            f"{row['user']} @ {row['vhost']} @ {row['exchange']}": {
                "write": row["write"],
                "read": row["read"],
            }
            for row in sorted(
                access.topic_rows(), key=lambda row: (row["user"], row["vhost"], row["exchange"])
            )
        },
    }


def _vhost_view(vhost: VHost, limits: Mapping[str, int]) -> dict[str, Any]:
    exchanges = {
        name: {
            "type": exchange.type,
            "durable": exchange.durable,
            "auto_delete": exchange.auto_delete,
            "internal": exchange.internal,
            "arguments": plain(exchange.arguments),
        }
        for name, exchange in sorted(vhost.exchanges.items())
        if exchange.durable
    }
    queues = {
        name: {
            "durable": queue.durable,
            "exclusive": queue.exclusive,
            "auto_delete": queue.auto_delete,
            "arguments": plain(queue.arguments),
            # Tuples: the one shape here that JSON turns into something else (a list), kept because a
            # message reads best as one (msg_id, size, deadline) triple.
            "messages": [(entry.msg_id, entry.size, entry.deadline) for entry in queue.logged_entries()],
            # A queue counting deliveries: (msg_id, failed deliveries, out to a consumer) of each message
            # with a count or out (only where there is one).
            **({"delivery": queue.delivery_state()} if queue.delivery_state() else {}),
            # What the policies made of its arguments (only where one applies).
            **({"policy_arguments": plain(queue.policy_arguments)} if queue.policy_arguments else {}),
        }
        for name, queue in sorted(vhost.queues.items())
        if queue.durable
    }
    durable_ends = {("exchange", name) for name in exchanges} | {("queue", name) for name in queues}
    bindings = sorted(
        (
            {
                "source": binding.source,
                "destination_kind": binding.destination_kind,
                "destination": binding.destination,
                "routing_key": binding.routing_key,
                "arguments": plain(binding.arguments),
            }
            for binding in vhost.bindings()
            if ("exchange", binding.source) in durable_ends
            and (binding.destination_kind, binding.destination) in durable_ends
        ),
        key=lambda binding: json.dumps(binding, sort_keys=True),
    )
    view: dict[str, Any] = {
        "exchanges": exchanges,
        "queues": queues,
        "bindings": bindings,
        "limits": dict(sorted(limits.items())),
    }
    if vhost.policies:
        view["policies"] = {p.name: plain(p.row()) for p in vhost.policies.listed(False)}
        view["operator_policies"] = {p.name: plain(p.row()) for p in vhost.policies.listed(True)}
    return view


def plain(value: Any) -> Any:
    """An AMQP field value (arguments, headers) as JSON-able data that keeps its field type where JSON
    would lose it: a 64-bit `Long` (RabbitMQ's x-death counts) is {"long": n}, a byte array
    {"bytes": hex}, a decimal {"decimal": text}, a timestamp {"timestamp": ISO text}."""
    if isinstance(value, Mapping):
        return {str(key): plain(item) for key, item in sorted(value.items())}
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    if isinstance(value, Long):
        return {"long": int(value)}
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"bytes": bytes(value).hex()}
    if isinstance(value, decimal.Decimal):
        return {"decimal": str(value)}
    if isinstance(value, datetime.datetime):
        return {"timestamp": value.isoformat()}
    return value


def diff_views(
    left: Any, right: Any, names: tuple[str, str] = ("live", "replay"), path: str = ""
) -> list[str]:
    """Where two views differ, one line per difference, named by its path ("vhosts./.queues.q.messages[3]"):
    a key only one side has, a list of messages longer on one side, or two different values."""
    first, second = names
    if isinstance(left, dict) and isinstance(right, dict):
        lines: list[str] = []
        for key in sorted(set(left) | set(right), key=str):
            where = f"{path}.{key}" if path else str(key)
            if key not in right:
                lines.append(f"{where}: only in {first}: {left[key]!r}")
            elif key not in left:
                lines.append(f"{where}: only in {second}: {right[key]!r}")
            else:
                lines.extend(diff_views(left[key], right[key], names, where))
        return lines
    if isinstance(left, list) and isinstance(right, list) and left != right:
        if all(isinstance(item, tuple) and item for item in (*left, *right)):
            return _diff_messages(left, right, names, path)
        lines = [
            line
            for index, (one, other) in enumerate(zip(left, right, strict=False))
            for line in diff_views(one, other, names, f"{path}[{index}]")
        ]
        if len(left) != len(right):
            longer, name = (left, first) if len(left) > len(right) else (right, second)
            extra = longer[min(len(left), len(right)) :]
            lines.append(f"{path}: {len(extra)} more in {name}: {extra!r}")
        return lines
    if left != right or type(left) is not type(right):
        return [f"{path}: {first} {left!r} != {second} {right!r}"]
    return []


def _diff_messages(
    left: list[tuple[Any, ...]], right: list[tuple[Any, ...]], names: tuple[str, str], path: str
) -> list[str]:
    """Two lists of messages compared by id (their first field): one missing message is one line, not a
    difference at every later index."""
    first, second = names
    mine = {item[0]: item for item in left}
    theirs = {item[0]: item for item in right}
    lines: list[str] = []
    only_left = [item for item in left if item[0] not in theirs]
    only_right = [item for item in right if item[0] not in mine]
    if only_left:
        lines.append(f"{path}: only in {first}: {only_left!r}")
    if only_right:
        lines.append(f"{path}: only in {second}: {only_right!r}")
    lines.extend(
        f"{path}[id {key}]: {first} {item!r} != {second} {theirs[key]!r}"
        for key, item in mine.items()
        if key in theirs and theirs[key] != item
    )
    common_left = [item[0] for item in left if item[0] in theirs]
    common_right = [item[0] for item in right if item[0] in mine]
    if common_left != common_right:
        lines.append(f"{path}: order differs: {first} {common_left!r}, {second} {common_right!r}")
    return lines
