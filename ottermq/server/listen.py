"""Listening sockets: `::` (the default host) serves IPv6 and IPv4 on one dual-stack socket, as RabbitMQ does.

Strategy: asyncio's own `create_server(host="::")` makes an IPv6-only socket, so IPv4 clients of the default
listener would be refused. For `::` the socket is made here, with IPV6_V6ONLY off, and handed to the loop;
where the machine has no IPv6 it falls back to `0.0.0.0`. Every other host (`0.0.0.0`, `127.0.0.1`, `::1`,
a name) is left to asyncio and serves exactly the addresses it names.
"""

from __future__ import annotations

import socket
from typing import Final

# Every interface, both families.
ALL_INTERFACES: Final = "::"


def dual_stack_socket(host: str, port: int) -> socket.socket | None:
    """A bound (not yet listening) socket for every interface when `host` is `::`, else None.

    IPv4 clients reach it as IPv4-mapped addresses (see `plain_address`). Raises OSError when the address
    cannot be bound.
    """
    if host != ALL_INTERFACES:
        return None
    if socket.has_dualstack_ipv6():
        sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        address: tuple[str, int] = ("::", port)
    else:  # no IPv6 on this machine: every IPv4 interface is what "all interfaces" can mean
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        address = ("0.0.0.0", port)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if sock.family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(address)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def plain_address(host: str) -> str:
    """An IPv4-mapped IPv6 address (`::ffff:127.0.0.1`, a v4 client of a dual-stack socket) as plain IPv4."""
    if host.startswith("::ffff:") and "." in host:
        return host[len("::ffff:") :]
    return host
