"""Rows describing queues, exchanges, bindings and connections, as `ottermq ctl list_*` shows them.

The management HTTP API (ottermq.http) builds its rows from these and adds its own fields, so both show
the same names and values; `jsonable` turns AMQP field-table values into what JSON can carry.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ottermq.broker.connection import Connection
    from ottermq.broker.exchange import Exchange
    from ottermq.broker.queue import Queue
    from ottermq.broker.vhost import VHost


def queue_info(queue: Queue) -> dict[str, Any]:
    """One queue as list_queues shows it."""
    return {
        "name": queue.name,
        "messages": queue.ready_count,
        "consumers": queue.consumer_count,
        "durable": queue.durable,
        "auto_delete": queue.auto_delete,
        "exclusive": queue.exclusive_owner is not None,
        "arguments": jsonable(queue.arguments),
    }


def exchange_info(exchange: Exchange) -> dict[str, Any]:
    """One exchange as list_exchanges shows it."""
    return {
        "name": exchange.name,
        "type": exchange.type,
        "durable": exchange.durable,
        "auto_delete": exchange.auto_delete,
        "internal": exchange.internal,
        "arguments": jsonable(exchange.arguments),
    }


def binding_infos(vhost: VHost) -> list[dict[str, Any]]:
    """The bindings of a vhost as list_bindings shows them, the default exchange's implicit ones first
    (as rabbitmqctl lists them)."""
    rows = [
        {
            "source_name": "",
            "source_kind": "exchange",
            "destination_name": name,
            "destination_kind": "queue",
            "routing_key": name,
            "arguments": {},
        }
        for name in vhost.queues
    ]
    rows.extend(
        {
            "source_name": binding.source,
            "source_kind": "exchange",
            "destination_name": binding.destination,
            "destination_kind": binding.destination_kind,
            "routing_key": binding.routing_key,
            "arguments": jsonable(dict(binding.arguments)),
        }
        for binding in vhost.bindings()
    )
    return rows


def connection_info(connection: Connection) -> dict[str, Any]:
    """One connection as list_connections shows it."""
    return {
        "name": connection.name,
        "user": connection.user,
        "vhost": connection.vhost.name if connection.vhost is not None else "",
        "state": connection.state,
        "channels": len(connection.channels),
        "peer_host": connection.peer[0],
        "peer_port": connection.peer[1],
    }


def jsonable(value: Any) -> Any:
    """Field-table values as JSON can carry them (bytes and decimals as text)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)
