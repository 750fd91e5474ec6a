"""Who is asking: HTTP basic auth against the broker's users, and RabbitMQ's management tag rules.

Strategy: a login goes through the same `Authenticator.login` as an AMQP PLAIN login, so the password
cache (a repeat login answers without hashing), the dummy-hash timing and the loopback-only rule for
guest are the broker's own. A login that needs the full PBKDF2 check hands it to the broker's check
scheduler (`Authenticator.submit`, `ottermq.broker.checks`) like an AMQP login, and the request waits for
the answer: the same worker threads, the same fair round-robin over source addresses and the same failure
budget per address, so a client's AMQP and HTTP attempts count together and neither protocol can starve
the other's logins. A check the scheduler refuses unchecked (too many waiting from the address, or in
all) is answered 429 with Retry-After, at once. While it waits the request is marked `waiting`: the HTTP
server may evict its connection to make room, and a request cancelled so (or by a stop) gives its check
up. Tags, as RabbitMQ: management, policymaker, monitoring and administrator may use the API; monitoring
and administrator see every vhost, the others only those they have permissions in; changing users,
vhosts or permissions needs administrator.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import math
from typing import TYPE_CHECKING, Final

from ottermq.broker.auth import Authenticator, AuthFailure, PendingLogin
from ottermq.broker.checks import UNCHECKED_REFUSAL_DELAY
from ottermq.http.interface import HttpError, Request, Response

if TYPE_CHECKING:
    from ottermq.broker.access import User
    from ottermq.broker.broker import Broker

API_TAGS: Final = frozenset({"management", "policymaker", "monitoring", "administrator"})
SEE_ALL_TAGS: Final = frozenset({"monitoring", "administrator"})
ADMINISTRATOR: Final = "administrator"
REALM_HEADER: Final = ("www-authenticate", 'Basic realm="RabbitMQ Management"')

# Seconds a client refused unchecked is asked to wait before trying again: as long as an AMQP client
# refused unchecked waits for its answer.
RETRY_AFTER: Final = math.ceil(UNCHECKED_REFUSAL_DELAY)


class TooManyLogins(HttpError):
    """429: the broker refused the password check unchecked (too many waiting from this address)."""

    def __init__(self) -> None:
        super().__init__(429, "too_many_requests", "too many logins under way from this address")

    def response(self) -> Response:
        """The 429 response, with Retry-After."""
        response = super().response()
        response.headers.append(("retry-after", str(RETRY_AFTER)))
        return response


class Unauthorized(HttpError):
    """401 with the header that makes a browser ask for credentials."""

    def __init__(self, error: str, reason: str) -> None:
        super().__init__(401, error, reason)

    def response(self) -> Response:
        """The 401 response, with WWW-Authenticate."""
        response = super().response()
        response.headers.append(REALM_HEADER)
        return response


def parse_basic(header: str | None) -> tuple[str, str] | None:
    """(user, password) from an `Authorization: Basic ...` value, or None if absent or malformed."""
    if not header:
        return None
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, colon, password = decoded.partition(":")
    return (user, password) if colon else None


async def _full_check(auth: Authenticator, pending: PendingLogin, request: Request | None) -> bool | None:
    """The answer of the broker's scheduled full check of `pending` (None: refused unchecked), with
    `request` marked waiting meanwhile; the check is given up if the request is cancelled (its connection
    evicted or the server stopping) while it waits."""
    answer: asyncio.Future[bool | None] = asyncio.get_running_loop().create_future()

    def done(ok: bool | None) -> None:
        if not answer.done():  # cancelled meanwhile
            answer.set_result(ok)

    ticket = auth.submit(pending, done)
    if request is not None:
        request.waiting = True
    try:
        return await answer
    except asyncio.CancelledError:
        auth.cancel(ticket)
        raise
    finally:
        if request is not None:
            request.waiting = False


async def authenticate(
    broker: Broker, authorization: str | None, peer_host: str, request: Request | None = None
) -> User:
    """The user behind the request's credentials, allowed to use the API; Unauthorized otherwise (or
    TooManyLogins). `request` is marked waiting while its password check waits (see `_full_check`)."""
    credentials = parse_basic(authorization)
    if credentials is None:
        raise Unauthorized("not_authorized", "Login failed")
    username, password = credentials
    response = b"\x00" + username.encode() + b"\x00" + password.encode()
    auth = broker.auth
    try:
        answer = auth.login("PLAIN", response, peer_host)
        if not isinstance(answer, str):
            ok = await _full_check(auth, answer, request)
            if ok is None:
                raise TooManyLogins()
            answer = auth.finish(answer, ok)
    except AuthFailure:
        raise Unauthorized("not_authorized", "Login failed") from None
    user = broker.access.user(answer)
    if user is None:
        raise Unauthorized("not_authorized", "Login failed")
    if not API_TAGS.intersection(user.tags):
        raise Unauthorized("not_authorised", "Not management user")
    return user


def require_admin(user: User) -> None:
    """Unauthorized unless the user is an administrator (RabbitMQ answers 401 here too)."""
    if ADMINISTRATOR not in user.tags:
        raise Unauthorized("not_authorised", "Not administrator user")


def require_monitor(user: User) -> None:
    """Unauthorized unless the user is tagged monitoring or administrator (/api/nodes...), as RabbitMQ."""
    if not SEE_ALL_TAGS.intersection(user.tags):
        raise Unauthorized("not_authorised", "Not monitor user")


def sees_all(user: User) -> bool:
    """True for users who see every vhost (monitoring, administrator)."""
    return bool(SEE_ALL_TAGS.intersection(user.tags))


def visible_vhosts(broker: Broker, user: User) -> list[str]:
    """The vhosts the user may look at, in creation order."""
    if sees_all(user):
        return list(broker.access.vhosts)
    return [name for name in broker.access.vhosts if broker.access.can_open(user.name, name)]


def require_vhost(broker: Broker, user: User, vhost: str) -> None:
    """404 for a vhost that does not exist, 401 for one the user may not see."""
    if vhost not in broker.vhosts:
        raise HttpError(404, "Object Not Found", "Not Found")
    if not sees_all(user) and not broker.access.can_open(user.name, vhost):
        raise Unauthorized("not_authorised", "User not authorised to access virtual host")
