"""Users, virtual hosts and permissions: the access-control registry of a broker, as RabbitMQ keeps it.

Strategy: the registry is pure bookkeeping with the same validate -> journal -> apply shape as a vhost.
A management call (`add_user`, `set_permissions`...) checks its arguments against the current state and
raises `AccessError` (with a kind the CLI turns into an exit code), describes the change as an event
(`events.py`), appends it to the journal and applies it with `apply`, the code that also replays the
journal. The broker subscribes (`on_applied`) to create and drop `VHost` objects and to close the
connections a deleted vhost or user leaves behind; the registry itself knows nothing of connections.

Permissions are three regular expressions per (user, vhost), matched as RabbitMQ matches them: an
unanchored search (`re:run`), so ".*" allows everything, "^amq\\.gen" a prefix, and the empty string
stands for "^$" (only the empty name, i.e. in practice nothing). They are compiled once, when set.
Topic permissions (topic_permissions.py: per user, vhost and exchange, routing-key patterns for topic
exchanges) and user limits (user_limits.py) live here too: they belong to a user and leave with it.
`generation` grows with every change, so per-channel caches of decisions know when to forget them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from ottermq.broker.auth import new_password_hash, normalize_hash
from ottermq.broker.events import (
    AccessEvent,
    PasswordChanged,
    PermissionsCleared,
    PermissionsSet,
    TopicPermissionCleared,
    TopicPermissionSet,
    UserAdded,
    UserDeleted,
    UserLimitsSet,
    UserTagsSet,
    VHostAdded,
    VHostDeleted,
)
from ottermq.broker.journal import Journal
from ottermq.broker.topic_permissions import TopicPermission, check_pattern
from ottermq.broker.user_limits import validate_user_limits

# The tags RabbitMQ knows; others are accepted and kept (plugins use their own), as RabbitMQ does.
KNOWN_TAGS: Final = ("administrator", "monitoring", "management", "policymaker", "impersonator")

Access = Literal["configure", "write", "read"]
CONFIGURE: Final = "configure"
WRITE: Final = "write"
READ: Final = "read"

# What went wrong in a management call; `ottermq ctl` maps these to rabbitmqctl's exit codes.
# "rejected": the broker's validation refused what was sent (rabbitmqctl exits 69 for a policy);
# "vhost_absent": a named vhost does not exist where rabbitmqctl exits 65 for it (policies).
ErrorKind = Literal["exists", "no_user", "no_vhost", "invalid", "unavailable", "rejected", "vhost_absent"]


class AccessError(Exception):
    """A management request that cannot be done; the message is one readable line."""

    def __init__(self, kind: ErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind: ErrorKind = kind


@dataclass(frozen=True, slots=True)
class User:
    """A user: name, salted password hash ("" = no password login) and tags."""

    name: str
    password_hash: str
    tags: tuple[str, ...]


def compile_permission(pattern: str) -> re.Pattern[str]:
    """The compiled form of a permission regex (RabbitMQ reads "" as "^$"); ValueError if invalid."""
    try:
        return re.compile(pattern or "^$")
    except re.error as exc:
        raise ValueError(f"regular expression '{pattern}' is invalid: {exc}") from None


class Permission:
    """A user's configure, write and read regexes on one vhost, compiled."""

    __slots__ = ("_patterns", "configure", "read", "write")

    def __init__(self, configure: str, write: str, read: str) -> None:
        self.configure = configure
        self.write = write
        self.read = read
        self._patterns: dict[str, re.Pattern[str]] = {
            CONFIGURE: compile_permission(configure),
            WRITE: compile_permission(write),
            READ: compile_permission(read),
        }

    def __repr__(self) -> str:
        return f"Permission({self.configure!r}, {self.write!r}, {self.read!r})"

    def allows(self, access: str, name: str) -> bool:
        """True when `name` matches the regex of `access` ("configure", "write" or "read")."""
        return self._patterns[access].search(name) is not None


class AccessControl:
    """Users, the set of vhost names and per-vhost permissions, changed through the journal."""

    __slots__ = (
        "generation",
        "journal",
        "on_applied",
        "permissions",
        "topic_permissions",
        "user_limits",
        "users",
        "vhosts",
    )

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self.users: dict[str, User] = {}
        # Vhost names in creation order (the broker holds the VHost objects).
        self.vhosts: dict[str, None] = {}
        self.permissions: dict[tuple[str, str], Permission] = {}
        # (user, vhost) -> exchange -> topic permission, in the order set.
        self.topic_permissions: dict[tuple[str, str], dict[str, TopicPermission]] = {}
        # user -> limits as set ({"max-connections": 10}); users without limits have no entry.
        self.user_limits: dict[str, dict[str, int]] = {}
        self.generation = 0
        self.on_applied: Callable[[AccessEvent], None] | None = None

    # -- queries ----------------------------------------------------------------------------------------

    def user(self, name: str) -> User | None:
        """The user called `name`, if any."""
        return self.users.get(name)

    def permission(self, user: str, vhost: str) -> Permission | None:
        """The user's permissions on the vhost (None: the user may not open it)."""
        return self.permissions.get((user, vhost))

    def can_open(self, user: str, vhost: str) -> bool:
        """True when the user has permissions on the vhost (any, even empty ones), as RabbitMQ."""
        return (user, vhost) in self.permissions

    def allowed(self, user: str, vhost: str, access: str, name: str) -> bool:
        """True when the user may `access` the resource called `name` in the vhost."""
        permission = self.permissions.get((user, vhost))
        return permission is not None and permission.allows(access, name)

    def topic_permission(self, user: str, vhost: str, exchange: str) -> TopicPermission | None:
        """The user's topic permission on an exchange of the vhost (None: routing keys are not checked)."""
        table = self.topic_permissions.get((user, vhost))
        return table.get(exchange) if table else None

    def topic_rows(self, user: str | None = None, vhost: str | None = None) -> list[dict[str, str]]:
        """Topic permissions as RabbitMQ lists them (user, vhost, exchange, write, read), of one user
        and/or one vhost or all."""
        return [
            {"user": name, "vhost": where, "exchange": exchange, "write": p.write, "read": p.read}
            for (name, where), table in self.topic_permissions.items()
            if (user is None or name == user) and (vhost is None or where == vhost)
            for exchange, p in table.items()
        ]

    def limits_of(self, user: str) -> dict[str, int]:
        """The user's limits as set ({} for none)."""
        return self.user_limits.get(user, {})

    def vhost_permissions(self, vhost: str) -> list[tuple[str, Permission]]:
        """(user, permission) for every user with permissions on the vhost."""
        return [(user, p) for (user, name), p in self.permissions.items() if name == vhost]

    def user_permissions(self, user: str) -> list[tuple[str, Permission]]:
        """(vhost, permission) for every vhost the user has permissions on."""
        return [(vhost, p) for (name, vhost), p in self.permissions.items() if name == user]

    # -- management: validate -> journal -> apply -------------------------------------------------------

    def add_user(
        self,
        name: str,
        password: str | None = None,
        tags: Iterable[str] = (),
        *,
        password_hash: str | None = None,
    ) -> None:
        """Create a user with a password (hashed here) or a ready hash; AccessError if it exists."""
        _check_name("user", name)
        if name in self.users:
            raise AccessError("exists", f'User "{name}" already exists')
        if password_hash is not None:
            stored = _stored_hash(password_hash)
        else:
            stored = new_password_hash(password) if password else ""
        self._commit(UserAdded(name, stored, _tags(tags)))

    def delete_user(self, name: str) -> None:
        """Remove a user and its permissions; AccessError if there is no such user."""
        self._require_user(name, quoted=True)
        self._commit(UserDeleted(name))

    def change_password(self, name: str, password: str | None) -> None:
        """Replace a user's password (None or "" clears it: password logins are then refused)."""
        self._require_user(name, quoted=True)
        self._commit(PasswordChanged(name, new_password_hash(password) if password else ""))

    def set_password_hash(self, name: str, password_hash: str) -> None:
        """Replace a user's stored hash with a ready one (a definitions import; "" clears it)."""
        self._require_user(name, quoted=True)
        stored = _stored_hash(password_hash) if password_hash else ""
        self._commit(PasswordChanged(name, stored))

    def set_user_tags(self, name: str, tags: Iterable[str]) -> None:
        """Replace a user's tags."""
        self._require_user(name, quoted=True)
        self._commit(UserTagsSet(name, _tags(tags)))

    def add_vhost(self, name: str) -> bool:
        """Create a vhost; an existing one is left as it is (False), as rabbitmqctl add_vhost does."""
        _check_name("vhost", name)
        if name in self.vhosts:
            return False
        self._commit(VHostAdded(name))
        return True

    def delete_vhost(self, name: str) -> None:
        """Remove a vhost (the broker drops its queues and exchanges and closes its connections first)."""
        if name not in self.vhosts:
            raise AccessError("no_vhost", f"Virtual host '{name}' does not exist")
        self._commit(VHostDeleted(name))

    def set_permissions(self, user: str, vhost: str, configure: str, write: str, read: str) -> None:
        """Give a user configure/write/read regexes on a vhost (replacing earlier ones)."""
        self._require_user(user)
        self._require_vhost(vhost)
        for pattern in (configure, write, read):
            try:
                compile_permission(pattern)
            except ValueError as exc:
                raise AccessError("invalid", str(exc)) from None
        self._commit(PermissionsSet(user, vhost, configure, write, read))

    def clear_permissions(self, user: str, vhost: str) -> None:
        """Remove a user's permissions on a vhost (nothing to clear is fine)."""
        self._require_user(user)
        self._require_vhost(vhost)
        if (user, vhost) in self.permissions:
            self._commit(PermissionsCleared(user, vhost))

    def set_topic_permissions(self, user: str, vhost: str, exchange: str, write: str, read: str) -> None:
        """Give a user write/read routing-key patterns on an exchange of a vhost (replacing earlier ones
        for that exchange); the exchange need not exist, as in RabbitMQ."""
        self._require_user(user)
        self._require_vhost(vhost)
        for pattern in (write, read):
            try:
                check_pattern(pattern)
            except ValueError as exc:
                raise AccessError("rejected", str(exc)) from None
        self._commit(TopicPermissionSet(user, vhost, exchange, write, read))

    def clear_topic_permissions(self, user: str, vhost: str, exchange: str | None = None) -> None:
        """Remove a user's topic permission on one exchange of a vhost, or (None) all of them there;
        nothing to clear is fine."""
        self._require_user(user)
        self._require_vhost(vhost)
        table = self.topic_permissions.get((user, vhost), {})
        for name in [name for name in table if exchange is None or name == exchange]:
            self._commit(TopicPermissionCleared(user, vhost, name))

    def set_user_limits(self, user: str, limits: object) -> None:
        """rabbitmqctl set_user_limits: merge `limits` (a JSON object) into the user's limits. Raises
        AccessError "invalid" for a bad definition, "no_user" for a missing user."""
        try:
            checked = validate_user_limits(limits)
        except ValueError as exc:
            raise AccessError("invalid", str(exc)) from None
        self._require_user(user, quoted=True)
        merged = {**self.limits_of(user), **checked}
        if merged != self.limits_of(user):
            self._commit(UserLimitsSet(user, merged))

    def clear_user_limits(self, user: str, name: str) -> None:
        """rabbitmqctl clear_user_limits: remove one limit (or with "all" every one) of a user; an unknown
        or absent limit is nothing to clear, as in RabbitMQ."""
        self._require_user(user, quoted=True)
        current = self.limits_of(user)
        kept = {} if name == "all" else {key: value for key, value in current.items() if key != name}
        if kept != current:
            self._commit(UserLimitsSet(user, kept))

    def _require_user(self, name: str, quoted: bool = False) -> None:
        if name not in self.users:
            shown = f'"{name}"' if quoted else name
            raise AccessError("no_user", f"User {shown} does not exist")

    def _require_vhost(self, name: str) -> None:
        if name not in self.vhosts:
            raise AccessError("no_vhost", f"Virtual host {name} does not exist")

    def _commit(self, event: AccessEvent) -> None:
        if self.journal.failed:
            raise AccessError("unavailable", "the journal has failed: no durable change is accepted")
        self.journal.append(event)
        self.apply(event)

    # -- apply: the one place each event changes the registry (also the replay path) -------------------

    def apply(self, event: AccessEvent) -> None:
        """Apply one access event (live or replayed), then tell the broker."""
        if isinstance(event, UserAdded):
            self.users[event.name] = User(event.name, event.password_hash, tuple(event.tags))
        elif isinstance(event, UserDeleted):
            self.users.pop(event.name, None)
            for key in [key for key in self.permissions if key[0] == event.name]:
                del self.permissions[key]
            for key in [key for key in self.topic_permissions if key[0] == event.name]:
                del self.topic_permissions[key]
            self.user_limits.pop(event.name, None)
        elif isinstance(event, PasswordChanged):
            user = self.users.get(event.name)
            if user is not None:
                self.users[event.name] = User(user.name, event.password_hash, user.tags)
        elif isinstance(event, UserTagsSet):
            user = self.users.get(event.name)
            if user is not None:
                self.users[event.name] = User(user.name, user.password_hash, tuple(event.tags))
        elif isinstance(event, VHostAdded):
            self.vhosts[event.name] = None
        elif isinstance(event, VHostDeleted):
            self.vhosts.pop(event.name, None)
            for key in [key for key in self.permissions if key[1] == event.name]:
                del self.permissions[key]
            for key in [key for key in self.topic_permissions if key[1] == event.name]:
                del self.topic_permissions[key]
        elif isinstance(event, PermissionsSet):
            if event.user in self.users and event.vhost in self.vhosts:
                self.permissions[(event.user, event.vhost)] = Permission(
                    event.configure, event.write, event.read
                )
        elif isinstance(event, PermissionsCleared):
            self.permissions.pop((event.user, event.vhost), None)
        else:
            self._apply_extra(event)
        self.generation += 1
        if self.on_applied is not None:
            self.on_applied(event)

    def _apply_extra(self, event: TopicPermissionSet | TopicPermissionCleared | UserLimitsSet) -> None:
        """Topic permissions and user limits (for a user and vhost that exist, as permissions)."""
        if isinstance(event, UserLimitsSet):
            if event.limits and event.user in self.users:
                self.user_limits[event.user] = dict(event.limits)
            else:
                self.user_limits.pop(event.user, None)
            return
        key = (event.user, event.vhost)
        if isinstance(event, TopicPermissionSet):
            if event.user in self.users and event.vhost in self.vhosts:
                table = self.topic_permissions.setdefault(key, {})
                table[event.exchange] = TopicPermission(event.write, event.read)
            return
        held = self.topic_permissions.get(key)
        if held is not None:
            held.pop(event.exchange, None)
            if not held:
                del self.topic_permissions[key]

    def durable_events(self) -> list[AccessEvent]:
        """Events that rebuild the registry from an empty one (for snapshots): vhosts, users, permissions,
        topic permissions, user limits."""
        events: list[AccessEvent] = [VHostAdded(name) for name in self.vhosts]
        events.extend(UserAdded(u.name, u.password_hash, u.tags) for u in self.users.values())
        events.extend(
            PermissionsSet(user, vhost, p.configure, p.write, p.read)
            for (user, vhost), p in self.permissions.items()
        )
        events.extend(
            TopicPermissionSet(user, vhost, exchange, p.write, p.read)
            for (user, vhost), table in self.topic_permissions.items()
            for exchange, p in table.items()
        )
        events.extend(UserLimitsSet(user, dict(limits)) for user, limits in self.user_limits.items())
        return events


def _check_name(kind: str, name: str) -> None:
    if not name:
        raise AccessError("invalid", f"{kind} name must not be empty")
    if len(name.encode("utf-8")) > 255:
        raise AccessError("invalid", f"{kind} name is longer than 255 bytes")


def _stored_hash(password_hash: str) -> str:
    try:
        return normalize_hash(password_hash)
    except ValueError as exc:
        raise AccessError("invalid", str(exc)) from None


def _tags(tags: Iterable[str]) -> tuple[str, ...]:
    """Tags without blanks and duplicates, in the order given."""
    return tuple(dict.fromkeys(tag.strip() for tag in tags if tag.strip()))


def seed(
    access: AccessControl,
    users: Iterable[Mapping[str, Any]],
    vhosts: Iterable[Mapping[str, Any]],
    permissions: Iterable[Mapping[str, Any]],
) -> list[str]:
    """Create the vhosts, users and permissions of the config file that do not exist yet (existing ones
    are left as `ottermq ctl` made them). Returns what was created, for the log; AccessError on bad
    entries (an unknown user or vhost in a permission, a malformed hash, an invalid regex)."""
    created: list[str] = []
    for entry in vhosts:
        if access.add_vhost(str(entry["name"])):
            created.append(f"vhost {entry['name']}")
    for entry in users:
        name = str(entry["name"])
        if access.user(name) is None:
            access.add_user(
                name, entry.get("password"), entry.get("tags") or (), password_hash=entry.get("password_hash")
            )
            created.append(f"user {name}")
    for entry in permissions:
        user, vhost = str(entry["user"]), str(entry.get("vhost", "/"))
        if access.permission(user, vhost) is None:
            access.set_permissions(user, vhost, entry["configure"], entry["write"], entry["read"])
            created.append(f"permissions of {user} on {vhost}")
    return created
