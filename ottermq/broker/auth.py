"""Authentication: password hashing and the SASL mechanisms PLAIN, AMQPLAIN and EXTERNAL.

Strategy: `Authenticator.authenticate` turns a start-ok's mechanism and response into a user name or
raises `AuthFailure` carrying the detailed reason for the log. The connection turns that into the
deliberately vague 403 RabbitMQ sends, so a client never learns whether the user exists. Users live in
the access registry (`access.py`); this module only reads them.

Stored hashes are self-describing strings, compared in constant time. New passwords are hashed as
RabbitMQ hashes them (`rabbit_password_hashing_sha256`: base64 of a 4-byte random salt and SHA-256(salt +
password)), stored as `rabbit-sha256$<base64>`, so that an export of the definitions imports into
RabbitMQ with its users able to log in; hashes RabbitMQ made with its md5 and sha512 modules are kept as
`rabbit-md5$...` / `rabbit-sha512$...`. Hashes of earlier OtterMQ versions, PBKDF2-HMAC-SHA256 with a
16-byte salt (`pbkdf2-sha256$<iterations>$<salt>$<hash>`), still verify. `export_hash` / `import_hash`
translate between the stored form and RabbitMQ's (hashing_algorithm, password_hash) pair. A PBKDF2 check
costs tens of milliseconds on purpose, which a broker cannot pay on every connection of a busy client; so
a successful check is remembered as a keyed BLAKE2b digest of the password (the key is random per process
and never stored), and later logins with the same password and the same stored hash compare that digest
instead. Any other password gets the full check, as does an unknown user (against a dummy hash): a
refusal takes the same path and time whether the user exists or was seen before, so timing does not tell
the names. The full check must not run on the event loop (a flood of failed logins would stall every
client), so `login` answers at once only when no PBKDF2 is needed and otherwise returns a `PendingLogin`:
`submit(pending, done)` queues its `check()` fairly among source addresses (`checks.py`: bounded, round-
robin, identical credentials share a check), `done(ok)` follows on the loop and `finish(pending, ok)`
completes the login (AMQP connections and the management API's basic auth alike).
Users in `loopback_users` (guest by default) may only log in from a loopback address, as RabbitMQ's
`loopback_users`, whatever the mechanism. EXTERNAL (the subject CN of a verified TLS client
certificate) is offered only to connections that have one; the user must exist, no password is asked.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import ipaddress
import os
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from ottermq.amqp.table import decode_table
from ottermq.broker.checks import MIN_FAILURE_CHARGE, CheckScheduler, Ticket, source_of

if TYPE_CHECKING:
    from ottermq.broker.access import AccessControl

MECHANISMS: Final = ("PLAIN", "AMQPLAIN")
EXTERNAL: Final = "EXTERNAL"

HASH_SCHEME: Final = "pbkdf2-sha256"
# About 30 ms per check here: costly for an offline guesser, affordable once per user and process.
HASH_ITERATIONS: Final = 100_000
_SALT_BYTES: Final = 16
_MIN_ITERATIONS: Final = 1_000

# RabbitMQ's hashing modules (rabbit_password_hashing_<digest>) and how they are stored here.
RABBIT_ALGORITHM_PREFIX: Final = "rabbit_password_hashing_"
RABBIT_PREFIX: Final = "rabbit-"
RABBIT_DIGESTS: Final = ("sha256", "sha512", "md5")
RABBIT_DEFAULT: Final = "sha256"
_RABBIT_SALT_BYTES: Final = 4
# The name exports give PBKDF2 hashes of earlier OtterMQ versions.
OTTERMQ_ALGORITHM: Final = "ottermq_pbkdf2_sha256"

_LENGTH = struct.Struct(">I")


class AuthFailure(Exception):
    """Credentials were refused; the message says why (for the log only, never for the client)."""


# -- password hashes ------------------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def hash_password(password: str, iterations: int = HASH_ITERATIONS, salt: bytes | None = None) -> str:
    """The stored form of a password: `pbkdf2-sha256$<iterations>$<salt b64>$<hash b64>`."""
    salt = os.urandom(_SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
    return f"{HASH_SCHEME}${iterations}${_b64(salt)}${_b64(digest)}"


def _parse_hash(stored: str) -> tuple[int, bytes, bytes]:
    parts = stored.split("$")
    if len(parts) != 4 or parts[0] != HASH_SCHEME:
        raise ValueError(f"password hash is not of the form {HASH_SCHEME}$<iterations>$<salt>$<hash>")
    try:
        iterations = int(parts[1])
        salt = base64.b64decode(parts[2], validate=True)
        digest = base64.b64decode(parts[3], validate=True)
    except ValueError:
        raise ValueError("password hash has a bad iteration count or base64 field") from None
    if iterations < _MIN_ITERATIONS or len(salt) < 8 or len(digest) != 32:
        raise ValueError(
            f"password hash needs >= {_MIN_ITERATIONS} iterations, >= 8 salt bytes and a 32-byte digest"
        )
    return iterations, salt, digest


def rabbit_hash(password: str, digest: str = RABBIT_DEFAULT, salt: bytes | None = None) -> str:
    """The stored form of a password hashed as RabbitMQ's `rabbit_password_hashing_<digest>` hashes it:
    `rabbit-<digest>$<base64 of salt + digest(salt + password)>` (4-byte random salt)."""
    salt = os.urandom(_RABBIT_SALT_BYTES) if salt is None else salt
    hashed = hashlib.new(digest, salt + password.encode("utf-8")).digest()
    return f"{RABBIT_PREFIX}{digest}${_b64(salt + hashed)}"


def new_password_hash(password: str) -> str:
    """How a new password is stored: RabbitMQ's default (SHA-256), so exports work in RabbitMQ."""
    return rabbit_hash(password)


def _parse_rabbit(stored: str) -> tuple[str, bytes]:
    """(digest name, salt + hash) of a `rabbit-<digest>$<base64>` hash; ValueError otherwise."""
    scheme, sep, encoded = stored.partition("$")
    digest = scheme[len(RABBIT_PREFIX) :]
    if not sep or not scheme.startswith(RABBIT_PREFIX) or digest not in RABBIT_DIGESTS:
        raise ValueError(f"password hash is not of the form {RABBIT_PREFIX}<sha256|sha512|md5>$<base64>")
    try:
        return digest, base64.b64decode(encoded, validate=True)
    except ValueError:
        raise ValueError("password hash is not valid base64") from None


def check_hash_format(stored: str) -> None:
    """ValueError (one readable line) unless `stored` is a hash `hash_password` or `rabbit_hash` could
    have made (a RabbitMQ hash is taken as RabbitMQ takes it: any base64)."""
    if stored.startswith(RABBIT_PREFIX):
        _parse_rabbit(stored)
    else:
        _parse_hash(stored)


def normalize_hash(value: str) -> str:
    """A hash as given to `add_user --pre-hashed-password`, the config file or the API: a stored form
    (`rabbit-...$`, `pbkdf2-sha256$...`) as it is, else RabbitMQ's bare base64 (SHA-256, as rabbitmqctl
    takes it); ValueError when it is neither."""
    if value.startswith((RABBIT_PREFIX, HASH_SCHEME + "$")):
        check_hash_format(value)
        return value
    try:
        return import_hash(None, value)
    except ValueError:
        raise ValueError(
            "password hash is not of the form <base64 of salt + SHA-256> (RabbitMQ's) or "
            f"{HASH_SCHEME}$<iterations>$<salt>$<hash>"
        ) from None


def verify_password(stored: str, password: str) -> bool:
    """True when `password` matches the stored hash ("" or a malformed hash matches nothing; an empty
    password matches nothing either, as RabbitMQ refuses empty passwords whatever the hash)."""
    if not password:
        return False
    if stored.startswith(RABBIT_PREFIX):
        try:
            digest, raw = _parse_rabbit(stored)
        except ValueError:
            return False
        salt, expected = raw[:_RABBIT_SALT_BYTES], raw[_RABBIT_SALT_BYTES:]
        if len(salt) < _RABBIT_SALT_BYTES or not expected:
            return False
        candidate = hashlib.new(digest, salt + password.encode("utf-8")).digest()
        return hmac.compare_digest(candidate, expected)
    try:
        iterations, salt, digest_bytes = _parse_hash(stored)
    except ValueError:
        return False
    candidate = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
    return hmac.compare_digest(candidate, digest_bytes)


def export_hash(stored: str) -> tuple[str, str]:
    """(hashing_algorithm, password_hash) as RabbitMQ's definitions carry a user's hash. A PBKDF2 hash of
    an earlier version goes as `ottermq_pbkdf2_sha256` with the stored text in base64: RabbitMQ imports
    it (it takes any algorithm name) though the user cannot log in there; OtterMQ takes it back."""
    if not stored:
        return RABBIT_ALGORITHM_PREFIX + RABBIT_DEFAULT, ""
    if stored.startswith(RABBIT_PREFIX):
        scheme, _, encoded = stored.partition("$")
        return RABBIT_ALGORITHM_PREFIX + scheme[len(RABBIT_PREFIX) :], encoded
    return OTTERMQ_ALGORITHM, _b64(stored.encode("utf-8"))


def import_hash(algorithm: str | None, password_hash: str) -> str:
    """The stored form of a hash given as RabbitMQ's definitions and API give it (no algorithm: SHA-256,
    RabbitMQ's default); ValueError (one readable line) for what cannot be verified here."""
    if not password_hash:
        return ""
    algorithm = algorithm or RABBIT_ALGORITHM_PREFIX + RABBIT_DEFAULT
    if algorithm == OTTERMQ_ALGORITHM:
        if password_hash.startswith(HASH_SCHEME + "$"):  # as exports of earlier versions wrote it
            stored = password_hash
        else:
            try:
                stored = base64.b64decode(password_hash, validate=True).decode("utf-8")
            except ValueError:
                raise ValueError(f"password_hash of {OTTERMQ_ALGORITHM} is not base64") from None
        check_hash_format(stored)
        return stored
    digest = algorithm[len(RABBIT_ALGORITHM_PREFIX) :]
    if not algorithm.startswith(RABBIT_ALGORITHM_PREFIX) or digest not in RABBIT_DIGESTS:
        raise ValueError(
            f"hashing_algorithm {algorithm!r} is not supported (rabbit_password_hashing_sha256, "
            f"rabbit_password_hashing_sha512, rabbit_password_hashing_md5, {OTTERMQ_ALGORITHM})"
        )
    stored = f"{RABBIT_PREFIX}{digest}${password_hash}"
    check_hash_format(stored)
    return stored


# Checked when the user is unknown or has no password, so a refusal costs the same either way: a hash
# of the scheme new passwords get (users with PBKDF2 hashes of earlier versions take longer to refuse).
@functools.cache
def _dummy_hash() -> str:
    return rabbit_hash("", salt=b"\x00" * _RABBIT_SALT_BYTES)


# -- SASL responses -------------------------------------------------------------------------------------


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


# -- the login check ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PendingLogin:
    """A login that needs the full password check: `check()` off the event loop, then
    `Authenticator.finish(pending, ok)` on it."""

    username: str
    password: str
    # The hash checked against: the user's when it was looked up, or the dummy one (unknown user, no
    # password), whose check is made only to cost the same and always fails.
    stored: str
    known: bool
    peer_host: str

    def check(self) -> bool:
        """The full PBKDF2 check: pure (reads only this object), so safe on any thread."""
        return verify_password(self.stored, self.password) and self.known


class Authenticator:
    """The login check against the access registry's users."""

    __slots__ = ("_cache_key", "_verified", "access", "checks", "loopback_users")

    def __init__(self, access: AccessControl, loopback_users: Iterable[str] = ("guest",)) -> None:
        self.access = access
        self.loopback_users = frozenset(loopback_users)
        self._cache_key = os.urandom(32)
        # user -> (stored hash it was verified against, keyed digest of the password that matched)
        self._verified: dict[str, tuple[str, bytes]] = {}
        # Where full checks wait for a worker; the server sets its `runner` (without one they run inline).
        self.checks = CheckScheduler(min_failure_charge=MIN_FAILURE_CHARGE)

    def mechanisms(self, peer_cert_cn: str | None = None) -> tuple[str, ...]:
        """The mechanisms to offer: EXTERNAL only with a verified client certificate."""
        return (*MECHANISMS, EXTERNAL) if peer_cert_cn is not None else MECHANISMS

    def _keyed(self, password: str) -> bytes:
        return hashlib.blake2b(password.encode("utf-8"), key=self._cache_key, digest_size=32).digest()

    def _check_key(self, pending: PendingLogin) -> bytes:
        """Names a check by its credentials and stored hash (keyed, so no password is kept in the clear)."""
        digest = hashlib.blake2b(key=self._cache_key, digest_size=32, person=b"ottermq-check")
        for part in (pending.username, pending.password, pending.stored):
            data = part.encode("utf-8", "surrogatepass")
            digest.update(_LENGTH.pack(len(data)) + data)
        return digest.digest()

    def _password_check(self, username: str, password: str, peer_host: str = "") -> PendingLogin | None:
        """None when the cache vouches for the password (verified before, against the same hash), else
        the full check still to make. A password the cache does not know gets the full check even when
        it must be wrong: refusing it at once would tell that the user exists."""
        user = self.access.users.get(username)
        if user is None or not user.password_hash:
            self._verified.pop(username, None)  # deleted users leave nothing behind
            return PendingLogin(username, password, _dummy_hash(), False, peer_host)
        stored = user.password_hash
        seen = self._verified.get(username)
        if seen is not None and seen[0] == stored and hmac.compare_digest(seen[1], self._keyed(password)):
            return None
        return PendingLogin(username, password, stored, True, peer_host)

    def _checked(self, pending: PendingLogin, ok: bool) -> bool:
        """Remember a successful full check, unless the user's password changed while it ran."""
        if not ok:
            return False
        user = self.access.users.get(pending.username)
        if user is None or user.password_hash != pending.stored:
            return False
        self._verified[pending.username] = (pending.stored, self._keyed(pending.password))
        return True

    def check_password(self, username: str, password: str) -> bool:
        """True when the user exists, has a password, and it matches (the full check runs right here:
        for callers off the AMQP path; connections use `login`)."""
        pending = self._password_check(username, password)
        if pending is None:
            return True
        return self._checked(pending, pending.check())

    def login(
        self, mechanism: str, response: bytes, peer_host: str, peer_cert_cn: str | None = None
    ) -> str | PendingLogin:
        """The authenticated user name when no full password check is needed, else the `PendingLogin`
        to check off the event loop and pass to `finish`; `AuthFailure` naming the reason."""
        if mechanism == "PLAIN" or mechanism == "AMQPLAIN":
            username, password = parse_plain(response) if mechanism == "PLAIN" else parse_amqplain(response)
            pending = self._password_check(username, password, peer_host)
            if pending is not None:
                return pending
        elif mechanism == EXTERNAL and peer_cert_cn is not None:
            username = peer_cert_cn
            if username not in self.access.users:
                raise AuthFailure(f"user '{username}' (certificate subject CN) - no such user")
        else:
            raise AuthFailure(f"unsupported mechanism {mechanism!r}")
        return self._allowed_from(username, peer_host)

    def submit(self, pending: PendingLogin, done: Callable[[bool | None], None]) -> Ticket:
        """Queue `pending.check()` fairly among source addresses; `done(ok)` follows on the event loop
        (at once when no runner is set), with ok None when the check was refused unchecked because too
        many wait (pass it to `finish` as it is). `cancel(ticket)` if the answer is no longer wanted."""
        return self.checks.submit(
            source_of(pending.peer_host), pending.username, self._check_key(pending), pending.check, done
        )

    def cancel(self, ticket: Ticket) -> None:
        """Give up on a submitted check (the client left); harmless once answered."""
        self.checks.cancel(ticket)

    def finish(self, pending: PendingLogin, ok: bool | None) -> str:
        """Complete a login once `pending.check()` answered `ok` (None: refused unchecked, see `submit`):
        the user name, or `AuthFailure`."""
        if ok is None:
            raise AuthFailure(
                f"user '{pending.username}' - refused unchecked: too many password checks waiting "
                f"from {source_of(pending.peer_host)}"
            )
        if not self._checked(pending, ok):
            raise AuthFailure(f"user '{pending.username}' - invalid credentials")
        return self._allowed_from(pending.username, pending.peer_host)

    def _allowed_from(self, username: str, peer_host: str) -> str:
        if username in self.loopback_users and not is_loopback(peer_host):
            raise AuthFailure(f"user '{username}' can only connect via localhost")
        return username

    def authenticate(
        self, mechanism: str, response: bytes, peer_host: str, peer_cert_cn: str | None = None
    ) -> str:
        """`login` and, when needed, the full check right here: the user name or `AuthFailure`."""
        answer = self.login(mechanism, response, peer_host, peer_cert_cn)
        if isinstance(answer, str):
            return answer
        return self.finish(answer, answer.check())
