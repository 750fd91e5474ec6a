"""The Broker: settings, vhosts, users and the live connections of one OtterMQ node.

Strategy: the Broker is the root object the server holds. It owns the vhosts (the domain model), the
authenticator and the journal, and creates one sans-IO `Connection` per accepted socket. It keeps the
set of live connections so a graceful stop can close them all and the management API can list them.
"""

from __future__ import annotations

import platform
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import metadata
from typing import TYPE_CHECKING, Any

from ottermq.amqp.constants import (
    CHANNEL_MAX_DEFAULT,
    CONNECTION_FORCED,
    FRAME_MAX_DEFAULT,
    HEARTBEAT_DEFAULT,
)
from ottermq.broker.auth import Authenticator
from ottermq.broker.connection import Connection
from ottermq.broker.journal import Journal, MemoryJournal
from ottermq.broker.vhost import VHost

if TYPE_CHECKING:
    from ottermq.broker.transport import Transport

PRODUCT = "OtterMQ"


def _version() -> str:
    try:
        return metadata.version("ottermq")
    except metadata.PackageNotFoundError:
        return "0.0.0"


VERSION = _version()


@dataclass(frozen=True, slots=True)
class BrokerSettings:
    """What the protocol layer needs to know; defaults are RabbitMQ's."""

    frame_max: int = FRAME_MAX_DEFAULT
    channel_max: int = CHANNEL_MAX_DEFAULT
    heartbeat: int = HEARTBEAT_DEFAULT
    max_message_size: int = 128 * 1024 * 1024
    default_user: str = "guest"
    default_pass: str = "guest"
    default_vhost: str = "/"
    # Users accepted from loopback addresses only, as RabbitMQ's loopback_users.
    loopback_users: tuple[str, ...] = ("guest",)
    # Seconds from accept to connection.open-ok before the socket is dropped.
    handshake_timeout: float = 10.0
    # Upper bound of the wait for close-ok after the broker sent connection.close (RabbitMQ: 30 s).
    close_timeout: float = 30.0


class Broker:
    """One broker node: vhosts, users, journal and live connections."""

    def __init__(self, settings: BrokerSettings | None = None, journal: Journal | None = None) -> None:
        self.settings = settings or BrokerSettings()
        self.journal: Journal = journal if journal is not None else MemoryJournal()
        self.auth = Authenticator(self.settings.loopback_users)
        self.auth.add_user(self.settings.default_user, self.settings.default_pass)
        self.vhosts: dict[str, VHost] = {}
        self.add_vhost(self.settings.default_vhost)
        self.connections: set[Connection] = set()
        self.server_properties = server_properties()

    def add_vhost(self, name: str) -> VHost:
        """Create a vhost (or return the existing one)."""
        vhost = self.vhosts.get(name)
        if vhost is None:
            vhost = self.vhosts[name] = VHost(name, self.journal)
        return vhost

    def new_connection(self, transport: Transport, peer: tuple[str, int]) -> Connection:
        """A Connection for a freshly accepted socket; it expects the protocol header next."""
        connection = Connection(self, transport, peer)
        self.connections.add(connection)
        return connection

    def connection_closed(self, connection: Connection) -> None:
        """Forget a connection that has ended (called by the connection itself)."""
        self.connections.discard(connection)

    def shutdown(self, reason: str = "shutdown") -> None:
        """Ask every connection to close with 320 CONNECTION_FORCED."""
        text = f"CONNECTION_FORCED - broker forced connection closure with reason '{reason}'"
        for connection in list(self.connections):
            connection.shutdown(CONNECTION_FORCED, text)


def server_properties(capabilities: Iterable[str] | None = None) -> dict[str, Any]:
    """The server-properties table of connection.start, with RabbitMQ's capabilities."""
    names = capabilities if capabilities is not None else CAPABILITIES
    return {
        "product": PRODUCT,
        "version": VERSION,
        "platform": f"Python {platform.python_version()}",
        "copyright": "The OtterMQ authors",
        "information": "Licensed under the MIT license",
        "capabilities": dict.fromkeys(names, True),
    }


CAPABILITIES = (
    "publisher_confirms",
    "exchange_exchange_bindings",
    "basic.nack",
    "consumer_cancel_notify",
    "connection.blocked",
    "consumer_priorities",
    "authentication_failure_close",
    "per_consumer_qos",
)
