"""SASL mechanisms PLAIN and AMQPLAIN against the broker's user list.

Strategy: `Authenticator.authenticate` turns a start-ok's mechanism and response into a user name or
raises `AuthFailure` carrying the detailed reason for the log. The connection turns that into the
deliberately vague 403 RabbitMQ sends, so a client never learns whether the user exists. Passwords
are kept as salted SHA-256 digests, compared in constant time. Users in `loopback_users` (guest by
default) may only log in from a loopback address, as RabbitMQ's `loopback_users` setting.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import struct
from collections.abc import Iterable

from ottermq.amqp.table import decode_table

MECHANISMS = ("PLAIN", "AMQPLAIN")

_LENGTH = struct.Struct(">I")


class AuthFailure(Exception):
    """Credentials were refused; the message says why (for the log only, never for the client)."""


def parse_plain(response: bytes) -> tuple[str, str]:
    """Split a PLAIN response `[authzid] NUL authcid NUL passwd` into (user, password)."""
    parts = response.split(b"\x00")
    if len(parts) != 3:
        raise AuthFailure("malformed PLAIN response")
    return parts[1].decode("utf-8", "replace"), parts[2].decode("utf-8", "replace")


def parse_amqplain(response: bytes) -> tuple[str, str]:
    """Read LOGIN and PASSWORD from an AMQPLAIN response (a field table without its length prefix)."""
    try:
        table, _ = decode_table(_LENGTH.pack(len(response)) + response, 0)
    except Exception as exc:  # any decoding failure is a refused login, not a crash
        raise AuthFailure(f"malformed AMQPLAIN response: {exc}") from exc
    login, password = table.get("LOGIN"), table.get("PASSWORD")
    if isinstance(login, bytes):
        login = login.decode("utf-8", "replace")
    if isinstance(password, bytes):
        password = password.decode("utf-8", "replace")
    if not isinstance(login, str) or not isinstance(password, str):
        raise AuthFailure("AMQPLAIN response lacks LOGIN or PASSWORD")
    return login, password


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and IPv4-mapped loopback addresses (and "localhost")."""
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


class Authenticator:
    """The user list and the login check."""

    __slots__ = ("_users", "loopback_users")

    def __init__(self, loopback_users: Iterable[str] = ("guest",)) -> None:
        self._users: dict[str, tuple[bytes, bytes]] = {}
        self.loopback_users = frozenset(loopback_users)

    def add_user(self, username: str, password: str) -> None:
        """Create the user or replace its password."""
        salt = os.urandom(16)
        self._users[username] = (salt, _digest(salt, password))

    def delete_user(self, username: str) -> None:
        """Remove the user; unknown names are ignored."""
        self._users.pop(username, None)

    def has_user(self, username: str) -> bool:
        """True when the user exists."""
        return username in self._users

    def check_password(self, username: str, password: str) -> bool:
        """True when the user exists and the password matches."""
        stored = self._users.get(username)
        if stored is None:
            return False
        salt, digest = stored
        return hmac.compare_digest(digest, _digest(salt, password))

    def authenticate(self, mechanism: str, response: bytes, peer_host: str) -> str:
        """The authenticated user name, or `AuthFailure` naming the reason."""
        if mechanism == "PLAIN":
            username, password = parse_plain(response)
        elif mechanism == "AMQPLAIN":
            username, password = parse_amqplain(response)
        else:
            raise AuthFailure(f"unsupported mechanism {mechanism!r}")
        if not self.check_password(username, password):
            raise AuthFailure(f"user '{username}' - invalid credentials")
        if username in self.loopback_users and not is_loopback(peer_host):
            raise AuthFailure(f"user '{username}' can only connect via localhost")
        return username


def _digest(salt: bytes, password: str) -> bytes:
    return hashlib.sha256(salt + password.encode("utf-8")).digest()
