"""Who is asking: HTTP basic auth against the broker's users, and RabbitMQ's management tag rules.

Strategy: a login goes through the same `Authenticator.login` as an AMQP PLAIN login, so the password
cache (a repeat login answers without hashing), the dummy-hash timing and the loopback-only rule for
guest are the broker's own. A login that needs the full PBKDF2 check runs it on a one-thread pool (never
on the event loop), fairly: each source address has its own queue, and the next check is taken from the
address with the fewest under way, so a flood of bad logins from some addresses delays a first login
from another by about one check, not by the whole flood. An address may have `MAX_CHECKS_PER_SOURCE`
checks waiting or running; a login that needs one more is answered 429 at once, unchecked. Tags, as
RabbitMQ: management, policymaker, monitoring and administrator may use the API; monitoring and
administrator see every vhost, the others only those they have permissions in; changing users, vhosts
or permissions needs administrator.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Final

from ottermq.broker.auth import AuthFailure, PendingLogin
from ottermq.http.server import HttpError, Response

if TYPE_CHECKING:
    from ottermq.broker.access import User
    from ottermq.broker.broker import Broker

API_TAGS: Final = frozenset({"management", "policymaker", "monitoring", "administrator"})
SEE_ALL_TAGS: Final = frozenset({"monitoring", "administrator"})
ADMINISTRATOR: Final = "administrator"
REALM_HEADER: Final = ("www-authenticate", 'Basic realm="RabbitMQ Management"')

# Full password checks one source address may have waiting or running (a browser opens ~6 connections).
MAX_CHECKS_PER_SOURCE: Final = 16

_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ottermq-http-auth")


class TooManyLogins(HttpError):
    """429: the address has too many password checks under way."""

    def __init__(self) -> None:
        super().__init__(429, "too_many_requests", "too many logins under way from this address")

    def response(self) -> Response:
        """The 429 response, with Retry-After."""
        response = super().response()
        response.headers.append(("retry-after", "1"))
        return response


class FairChecks:
    """Full password checks, one at a time on `_pool`, taken from each source address's queue in turn,
    the address with the fewest under way first."""

    def __init__(self) -> None:
        self._queues: dict[str, deque[tuple[PendingLogin, asyncio.Future[bool]]]] = {}
        # Addresses with checks waiting, in the order they are served next.
        self._turns: deque[str] = deque()
        # Checks waiting or running per address.
        self._counts: dict[str, int] = {}
        self._worker: asyncio.Task[None] | None = None

    async def check(self, source: str, pending: PendingLogin) -> bool:
        """`pending.check()` off the event loop, after the checks queued before it by the same address
        and at most one of each other address; TooManyLogins when `source` has too many under way."""
        count = self._counts.get(source, 0)
        if count >= MAX_CHECKS_PER_SOURCE:
            raise TooManyLogins()
        self._counts[source] = count + 1
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        queue = self._queues.get(source)
        if queue is None:
            queue = self._queues[source] = deque()
            self._turns.append(source)
        queue.append((pending, future))
        loop = asyncio.get_running_loop()
        if self._worker is None or self._worker.done() or self._worker.get_loop() is not loop:
            self._worker = loop.create_task(self._work(), name="ottermq-http-auth")
        try:
            return await future
        finally:
            left = self._counts[source] - 1
            if left:
                self._counts[source] = left
            else:
                del self._counts[source]

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while self._turns:
            # The address with the fewest checks under way goes first (the longest waiting of them): a
            # first login is next after the running check, whatever other addresses have queued.
            source = min(self._turns, key=self._counts.__getitem__)
            self._turns.remove(source)
            queue = self._queues[source]
            pending, future = queue.popleft()
            if queue:
                self._turns.append(source)
            else:
                del self._queues[source]
            if future.done():
                continue  # its request is gone (connection closed): no check for nobody
            try:
                ok = await loop.run_in_executor(_pool, pending.check)
            except Exception as exc:  # never expected; the request gets a 500, the queue goes on
                if not future.done():
                    future.set_exception(exc)
                continue
            if not future.done():
                future.set_result(ok)


_checks = FairChecks()


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


async def authenticate(broker: Broker, authorization: str | None, peer_host: str) -> User:
    """The user behind the request's credentials, allowed to use the API; Unauthorized otherwise."""
    credentials = parse_basic(authorization)
    if credentials is None:
        raise Unauthorized("not_authorized", "Login failed")
    username, password = credentials
    response = b"\x00" + username.encode() + b"\x00" + password.encode()
    auth = broker.auth
    try:
        answer = auth.login("PLAIN", response, peer_host)
        if not isinstance(answer, str):
            answer = auth.finish(answer, await _checks.check(peer_host, answer))
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
