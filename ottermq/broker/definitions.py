"""Definitions: the broker's users, vhosts, permissions, limits, policies, exchanges, queues and bindings in
RabbitMQ's export format, exported and imported (POST /api/definitions, `ottermq ctl import_definitions`,
`load_definitions` at boot).

Strategy: an import is checked as a whole before anything changes, then made through the same operations
a client or `ottermq ctl` uses (`AccessControl.add_user`, `Broker.add_vhost`, `set_policy`,
`VHost.declare_queue`...), so every change is an ordinary event, journaled and applied by the one apply
path, and replayed at start-up. `plan` reads the document against the current state and returns the
steps still needed, raising `DefinitionsError` (one readable reason, RabbitMQ's 400) for anything that
would fail; `Plan.run` makes them. What already exists is left as it is or updated as RabbitMQ updates
it: a user's hash and tags and a permission, policy or limit are replaced when they differ, an existing
queue or exchange is kept as declared (RabbitMQ's declare returns the existing one), a binding that
exists is not added twice. So importing the same document again journals nothing, which keeps a
`load_definitions` file from growing the log at every start.

What OtterMQ does not have is accepted and ignored, as the brief of this import asks (RabbitMQ refuses
a parameter of a component its node lacks): global parameters, runtime parameters other than vhost
limits and operator policies, vhost descriptions and tags. A user's `limits` are merged into the ones
it has (as RabbitMQ's import does: `{}` clears nothing); topic permissions replace the user's pattern
pair for that exchange. Following
RabbitMQ 3.10 (checked against a node): queues and exchanges named amq.* and the default exchange are
skipped; bindings whose source or destination does not exist (nor comes with the document) are skipped;
a vhost-scoped import (`vhost=`) reads only parameters, policies, queues, exchanges and bindings and puts
them in that vhost whatever their own `vhost` says; a user without hashing_algorithm has a SHA-256 hash.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable, Generator, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final

from ottermq.amqp.errors import AMQPError
from ottermq.broker import exchange_types
from ottermq.broker.access import AccessError, compile_permission
from ottermq.broker.arguments import check_exchange_arguments, check_queue_arguments, json_arguments
from ottermq.broker.auth import export_hash, import_hash, new_password_hash, verify_password
from ottermq.broker.broker import PRODUCT, VERSION, validate_vhost_limits
from ottermq.broker.exchange import Binding
from ottermq.broker.policies import set_policy
from ottermq.broker.policy_rules import PolicyError, check_policy
from ottermq.broker.topic_permissions import check_pattern
from ottermq.broker.user_limits import validate_user_limits

if TYPE_CHECKING:
    from ottermq.broker.broker import Broker
    from ottermq.broker.vhost import VHost

log: Final = logging.getLogger("ottermq.broker")

# The RabbitMQ release whose format this is (the management API announces the same).
RABBITMQ_VERSION: Final = "3.10.8"
# Runtime-parameter components OtterMQ keeps (others are accepted and ignored).
VHOST_LIMITS: Final = "vhost-limits"
OPERATOR_POLICY: Final = "operator_policy"
_CATEGORIES: Final = (
    "users",
    "vhosts",
    "permissions",
    "topic_permissions",
    "parameters",
    "global_parameters",
    "policies",
    "queues",
    "exchanges",
    "bindings",
)
# The categories a vhost-scoped import reads (rabbit_definitions:apply_defs/4).
_VHOST_CATEGORIES: Final = ("parameters", "policies", "queues", "exchanges", "bindings")
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f]")
_MAX_NAME_BYTES: Final = 255


class DefinitionsError(Exception):
    """A document that cannot be imported; nothing was changed. The message is the 400's reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# -- export -------------------------------------------------------------------------------------------------


def _json_value(value: Any) -> Any:
    """Field-table values as JSON carries them (bytes and decimals as text)."""
    if isinstance(value, dict):
        return {str(k): _json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_value(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, Decimal):
        return float(value)
    return str(value)


def user_definition(
    name: str, password_hash: str, tags: tuple[str, ...], limits: Mapping[str, int] | None = None
) -> dict[str, Any]:
    """A user as RabbitMQ exports it."""
    algorithm, exported = export_hash(password_hash)
    return {
        "name": name,
        "password_hash": exported,
        "hashing_algorithm": algorithm,
        "tags": list(tags),
        "limits": dict(limits or {}),
    }


def _vhost_objects(
    vhost: VHost, limits: Mapping[str, int] | None, scoped: bool
) -> dict[str, list[dict[str, Any]]]:
    """The parameters (operator policies, `limits`), policies, queues, exchanges and bindings of one vhost
    (queues, exchanges and bindings without their `vhost` key in a vhost-scoped export, as RabbitMQ)."""
    where = {} if scoped else {"vhost": vhost.name}
    always = {"vhost": vhost.name}
    parameters: list[dict[str, Any]] = [
        {
            "value": {
                "pattern": p.pattern,
                "definition": dict(p.definition),
                "priority": p.priority,
                "apply-to": p.apply_to,
            },
            **always,
            "component": OPERATOR_POLICY,
            "name": p.name,
        }
        for p in vhost.policies.listed(True)
    ]
    if limits:
        parameters.append({"value": dict(limits), **always, "component": VHOST_LIMITS, "name": "limits"})
    policies = [p.row() for p in vhost.policies.listed(False)]
    shared = {q.name for q in vhost.queues.values() if not q.exclusive}
    own = {x for x in vhost.exchanges if x and not x.startswith("amq.")}
    queues = [
        {
            "name": q.name,
            **where,
            "durable": q.durable,
            "auto_delete": q.auto_delete,
            "arguments": _json_value(q.arguments),
        }
        for q in vhost.queues.values()
        if q.name in shared
    ]
    exchanges = [
        {
            "name": x.name,
            **where,
            "type": x.type,
            "durable": x.durable,
            "auto_delete": x.auto_delete,
            "internal": x.internal,
            "arguments": _json_value(x.arguments),
        }
        for x in vhost.exchanges.values()
        if x.name in own
    ]
    bindings = [
        {
            "source": b.source,
            **where,
            "destination": b.destination,
            "destination_type": b.destination_kind,
            "routing_key": b.routing_key,
            "arguments": _json_value(dict(b.arguments)),
        }
        for b in vhost.bindings()
        if b.source in own and b.destination in (shared if b.destination_kind == "queue" else own)
    ]
    return {
        "parameters": parameters,
        "policies": policies,
        "queues": queues,
        "exchanges": exchanges,
        "bindings": bindings,
    }


def export_definitions(broker: Broker, vhost: str | None = None) -> dict[str, Any]:
    """Everything durable in RabbitMQ's format (GET /api/definitions), or one vhost's objects
    (GET /api/definitions/{vhost}: parameters, policies, queues, exchanges, bindings). KeyError for a
    missing vhost."""
    if vhost is not None:
        objects = _vhost_objects(broker.vhosts[vhost], broker.vhost_limits.get(vhost), scoped=True)
        return {"rabbit_version": RABBITMQ_VERSION, **objects}
    access = broker.access
    merged: dict[str, list[dict[str, Any]]] = {key: [] for key in _VHOST_CATEGORIES}
    for model in broker.vhosts.values():
        for key, rows in _vhost_objects(model, broker.vhost_limits.get(model.name), scoped=False).items():
            merged[key].extend(rows)
    return {
        "rabbit_version": RABBITMQ_VERSION,
        "rabbitmq_version": RABBITMQ_VERSION,
        "product_name": PRODUCT,
        "product_version": VERSION,
        "users": [
            user_definition(u.name, u.password_hash, u.tags, access.limits_of(u.name))
            for u in access.users.values()
        ],
        "vhosts": [{"name": name} for name in access.vhosts],
        "permissions": [
            {"user": user, "vhost": name, "configure": p.configure, "write": p.write, "read": p.read}
            for (user, name), p in access.permissions.items()
        ],
        "topic_permissions": access.topic_rows(),
        "parameters": merged["parameters"],
        "global_parameters": [],
        "policies": merged["policies"],
        "queues": merged["queues"],
        "exchanges": merged["exchanges"],
        "bindings": merged["bindings"],
    }


# -- import: reading the document ----------------------------------------------------------------------------


def _fail(reason: str) -> DefinitionsError:
    return DefinitionsError(reason)


def _items(document: Mapping[str, Any], category: str) -> list[dict[str, Any]]:
    value = document.get(category)
    if value is None:
        return []
    if not isinstance(value, list):
        raise _fail(f"{category} must be a list of objects")
    for item in value:
        if not isinstance(item, dict):
            raise _fail(f"{category} must be a list of objects, found {_shown(item)}")
    return value


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _str(item: Mapping[str, Any], key: str, what: str, default: str | None = None) -> str:
    value = item.get(key, default)
    if not isinstance(value, str):
        raise _fail(f"{what}: {key} must be a string, actually was {_shown(value)}")
    return value


def _name(item: Mapping[str, Any], key: str, what: str, kind: str) -> str:
    value = _str(item, key, what)
    if not value:
        raise _fail(f"{what}: {kind} name must not be empty")
    if len(value.encode("utf-8")) > _MAX_NAME_BYTES:
        raise _fail(f"{what}: {kind} name is longer than {_MAX_NAME_BYTES} bytes")
    if _CONTROL.search(value):
        raise _fail(f"{what}: {kind} name must not contain control characters")
    return value


def _bool(item: Mapping[str, Any], key: str, what: str, default: bool) -> bool:
    value = item.get(key, default)
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    if not isinstance(value, bool):
        raise _fail(f"{what}: {key} must be true or false, actually was {_shown(value)}")
    return value


def _object(item: Mapping[str, Any], key: str, what: str) -> dict[str, Any]:
    value = item.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _fail(f"{what}: {key} must be an object, actually was {_shown(value)}")
    return value


def _tags(value: Any, what: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        tags = [tag.strip() for tag in value.split(",")]
    elif isinstance(value, list) and all(isinstance(tag, str) for tag in value):
        tags = [tag.strip() for tag in value]
    else:
        raise _fail(f"{what}: tags must be a string or a list of strings")
    return tuple(dict.fromkeys(tag for tag in tags if tag))


def _where(name: str) -> str:
    return f"'{name}'"


# -- import: the plan ---------------------------------------------------------------------------------------


Step = Callable[[], None]


@dataclass
class Plan:
    """The changes an import still has to make, in order; `skipped` says what was ignored and why."""

    steps: list[Step] = field(default_factory=list)
    changes: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def add(self, description: str, step: Step) -> None:
        self.changes.append(description)
        self.steps.append(step)

    def run(self) -> None:
        """Make every change (each journaled and applied as it goes)."""
        for step in self.steps:
            step()

    async def run_paced(self) -> None:
        """`run` on the event loop, letting other work in every `SLICE` seconds. A client may change
        what the plan was made against meanwhile (delete a queue a binding is for): a change that then
        fails (an AMQP or access error) is skipped and said in `skipped`, as RabbitMQ's import goes on
        past a binding it cannot add."""
        pace = _Pace()
        for description, step in zip(self.changes, self.steps, strict=True):
            try:
                step()
            except AMQPError as exc:
                self.skipped.append(f"{description} (changed meanwhile: {exc.reply_text})")
            except AccessError as exc:
                if exc.kind == "unavailable":
                    raise  # the journal failed: nothing more can be made durable
                self.skipped.append(f"{description} (changed meanwhile: {exc})")
            await pace.tick()


# How long an import on the event loop runs before it lets other work in (AMQP clients, other requests).
SLICE: Final = 0.01


class _Pace:
    """Yields to the event loop once `SLICE` seconds of work have gone by since the last time."""

    __slots__ = ("since",)

    def __init__(self) -> None:
        self.since = time.monotonic()

    async def tick(self) -> None:
        if time.monotonic() - self.since >= SLICE:
            await asyncio.sleep(0)
            self.since = time.monotonic()


@dataclass
class _Seen:
    """What will exist once the import is done: the current state plus what the document adds."""

    users: set[str]
    vhosts: set[str]
    exchanges: dict[tuple[str, str], str]  # (vhost, name) -> type
    queues: set[tuple[str, str]]


def plan(broker: Broker, document: Any, vhost: str | None = None) -> Plan:
    """The steps that import `document` (a parsed JSON object) into `broker`, all of it (vhost None) or
    into one vhost; `DefinitionsError` when any part would fail, before anything changed."""
    planning = _planning(broker, document, vhost)
    while True:
        try:
            next(planning)
        except StopIteration as done:
            result: Plan = done.value
            return result


def _planning(broker: Broker, document: Any, vhost: str | None) -> Generator[None, None, Plan]:
    """`plan`, pausing (a bare `yield`) once per object of the categories that can be long."""
    if not isinstance(document, dict):
        raise _fail("failed_to_parse_json")
    if vhost is not None and vhost not in broker.vhosts:
        raise _fail(f"Virtual host '{vhost}' does not exist")
    categories = _VHOST_CATEGORIES if vhost is not None else _CATEGORIES
    for category in categories:
        _items(document, category)  # shape first, so no part is half-read
    result = Plan()
    seen = _Seen(
        users=set(broker.access.users),
        vhosts=set(broker.access.vhosts),
        exchanges={(v.name, x.name): x.type for v in broker.vhosts.values() for x in v.exchanges.values()},
        queues={(v.name, q) for v in broker.vhosts.values() for q in v.queues},
    )
    if vhost is None:
        yield from _plan_users(broker, document, result, seen)
        _plan_vhosts(broker, document, result, seen)
        yield from _plan_permissions(broker, document, result, seen)
        _plan_topic_permissions(broker, document, result, seen)
        for item in _items(document, "global_parameters"):
            result.skipped.append(f"global parameter {item.get('name')!r} (not kept)")
    limits = _plan_parameters(broker, document, result, seen, vhost)
    _plan_policies(broker, document, result, seen, vhost)
    yield from _plan_exchanges(broker, document, result, seen, vhost)
    yield from _plan_queues(broker, document, result, seen, vhost, limits)
    yield from _plan_bindings(broker, document, result, seen, vhost)
    return result


def _vhost_of(item: Mapping[str, Any], what: str, seen: _Seen, scoped: str | None) -> str:
    if scoped is not None:
        return scoped
    name = _str(item, "vhost", what)
    if name not in seen.vhosts:
        raise _fail(f"{what}: Virtual host '{name}' does not exist and is not in the definitions")
    return name


def _plan_users(broker: Broker, document: Mapping[str, Any], result: Plan, seen: _Seen) -> Iterator[None]:
    access = broker.access
    for item in _items(document, "users"):
        yield  # a point where an import on the event loop may let other work in
        name = _name(item, "name", "user", "user")
        what = f"user {_where(name)}"
        tags = _tags(item.get("tags"), what)
        existing = access.user(name)
        if "password_hash" in item:
            algorithm = item.get("hashing_algorithm")
            if algorithm is not None and not isinstance(algorithm, str):
                raise _fail(f"{what}: hashing_algorithm must be a string")
            try:
                stored = import_hash(algorithm, _str(item, "password_hash", what))
            except ValueError as exc:
                raise _fail(f"{what}: {exc}") from None
        elif "password" in item:
            password = _str(item, "password", what)
            if existing is not None and password and verify_password(existing.password_hash, password):
                stored = existing.password_hash  # the same password: nothing to change
            else:
                stored = new_password_hash(password) if password else ""
        else:
            stored = ""
        limits = _user_limits(item, what)
        if existing is None:
            result.add(f"user {name}", _add_user(broker, name, stored, tags))
        else:
            if existing.password_hash != stored:
                result.add(f"password of {name}", _set_hash(broker, name, stored))
            if tuple(existing.tags) != tags:
                result.add(f"tags of {name}", _set_tags(broker, name, tags))
        current = access.limits_of(name) if existing is not None else {}
        if {**current, **limits} != current:
            result.add(f"limits of user {name}", _set_user_limits(broker, name, limits))
        seen.users.add(name)


def _user_limits(item: Mapping[str, Any], what: str) -> dict[str, int]:
    try:
        return validate_user_limits(_object(item, "limits", what))
    except ValueError as exc:
        raise _fail(f"{what}: {exc}") from None


def _set_user_limits(broker: Broker, name: str, limits: dict[str, int]) -> Step:
    return lambda: broker.access.set_user_limits(name, limits)


def _add_user(broker: Broker, name: str, stored: str, tags: tuple[str, ...]) -> Step:
    return lambda: broker.access.add_user(name, tags=tags, password_hash=stored)


def _set_hash(broker: Broker, name: str, stored: str) -> Step:
    return lambda: broker.access.set_password_hash(name, stored)


def _set_tags(broker: Broker, name: str, tags: tuple[str, ...]) -> Step:
    return lambda: broker.access.set_user_tags(name, tags)


def _plan_vhosts(broker: Broker, document: Mapping[str, Any], result: Plan, seen: _Seen) -> None:
    for item in _items(document, "vhosts"):
        name = _name(item, "name", "vhost", "vhost")
        if name not in seen.vhosts:
            result.add(f"vhost {name}", _add_vhost(broker, name))
            seen.vhosts.add(name)


def _add_vhost(broker: Broker, name: str) -> Step:
    def step() -> None:
        broker.add_vhost(name)

    return step


def _plan_permissions(
    broker: Broker, document: Mapping[str, Any], result: Plan, seen: _Seen
) -> Iterator[None]:
    for item in _items(document, "permissions"):
        yield  # a point where an import on the event loop may let other work in
        user = _str(item, "user", "permission")
        what = f"permissions of {_where(user)}"
        if user not in seen.users:
            raise _fail(f"{what}: User '{user}' does not exist and is not in the definitions")
        vhost = _vhost_of(item, what, seen, None)
        patterns = tuple(_str(item, key, what) for key in ("configure", "write", "read"))
        for pattern in patterns:
            try:
                compile_permission(pattern)
            except ValueError as exc:
                raise _fail(f"{what} on vhost '{vhost}': {exc}") from None
        current = broker.access.permission(user, vhost)
        if current is None or (current.configure, current.write, current.read) != patterns:
            result.add(f"permissions of {user} on {vhost}", _set_permissions(broker, user, vhost, patterns))


def _set_permissions(broker: Broker, user: str, vhost: str, patterns: tuple[str, ...]) -> Step:
    configure, write, read = patterns
    return lambda: broker.access.set_permissions(user, vhost, configure, write, read)


def _plan_topic_permissions(broker: Broker, document: Mapping[str, Any], result: Plan, seen: _Seen) -> None:
    for item in _items(document, "topic_permissions"):
        user = _str(item, "user", "topic permission")
        what = f"topic permissions of {_where(user)}"
        if user not in seen.users:
            raise _fail(f"{what}: User '{user}' does not exist and is not in the definitions")
        vhost = _vhost_of(item, what, seen, None)
        exchange = _str(item, "exchange", what)
        write, read = (_str(item, key, what) for key in ("write", "read"))
        for pattern in (write, read):
            try:
                check_pattern(pattern)
            except ValueError as exc:
                raise _fail(f"{what} on vhost '{vhost}': {exc}") from None
        current = broker.access.topic_permission(user, vhost, exchange)
        if current is None or (current.write, current.read) != (write, read):
            result.add(
                f"topic permissions of {user} on {exchange} in {vhost}",
                _set_topic_permissions(broker, user, vhost, exchange, write, read),
            )


def _set_topic_permissions(
    broker: Broker, user: str, vhost: str, exchange: str, write: str, read: str
) -> Step:
    return lambda: broker.access.set_topic_permissions(user, vhost, exchange, write, read)


def _plan_parameters(
    broker: Broker, document: Mapping[str, Any], result: Plan, seen: _Seen, scoped: str | None
) -> dict[str, dict[str, int]]:
    """Vhost limits and operator policies; other components are ignored. Returns the limits set."""
    limits: dict[str, dict[str, int]] = {}
    for item in _items(document, "parameters"):
        component = _str(item, "component", "parameter")
        name = _str(item, "name", f"parameter of {component}")
        if component not in (VHOST_LIMITS, OPERATOR_POLICY):
            result.skipped.append(f"parameter {component}/{name} (not supported)")
            continue
        vhost = _vhost_of(item, f"parameter {component}/{name}", seen, scoped)
        value = item.get("value")
        where = f" ({vhost}/{component}/{name})"
        if component == VHOST_LIMITS:
            try:
                checked = validate_vhost_limits(value)
            except AccessError as exc:
                raise _fail(f"{exc}{where}") from None
            limits[vhost] = checked
            if broker.vhost_limits.get(vhost, {}) != checked:
                result.add(f"limits of {vhost}", _set_limits(broker, vhost, checked))
            continue
        if not isinstance(value, dict):
            raise _fail(f"Validation failed\n\nvalue must be an object\n{where}")
        _plan_policy(broker, result, vhost, name, value, True, where)
    return limits


def _set_limits(broker: Broker, vhost: str, limits: dict[str, int]) -> Step:
    return lambda: broker.set_vhost_limits(vhost, limits)


def _plan_policies(
    broker: Broker, document: Mapping[str, Any], result: Plan, seen: _Seen, scoped: str | None
) -> None:
    for item in _items(document, "policies"):
        name = item.get("name")
        if not isinstance(name, str):
            raise _fail(f"policy in virtual host '{item.get('vhost')}' has undefined name")
        vhost = _vhost_of(item, f"policy {_where(name)}", seen, scoped)
        _plan_policy(broker, result, vhost, name, item, False, f" ({vhost}/{name})")


def _plan_policy(
    broker: Broker,
    result: Plan,
    vhost: str,
    name: str,
    value: Mapping[str, Any],
    operator: bool,
    where: str,
) -> None:
    pattern, definition = value.get("pattern"), value.get("definition")
    priority, apply_to = value.get("priority", 0), value.get("apply-to", "all")
    try:
        check_policy(pattern, definition, priority, apply_to, operator)
    except PolicyError as exc:
        # RabbitMQ escapes the text (rabbit_misc:escape_html_tags) in an import's error, for both kinds.
        reason = exc.reason.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        raise _fail(reason + where) from None
    model = broker.vhosts.get(vhost)
    current = model.policies.table(operator).get(name) if model is not None else None
    if current is not None and (current.pattern, current.apply_to, current.definition, current.priority) == (
        pattern,
        apply_to,
        definition,
        priority,
    ):
        return
    kind = "operator policy" if operator else "policy"
    result.add(f"{kind} {name} on {vhost}", _set_policy(broker, vhost, name, value, operator))


def _set_policy(broker: Broker, vhost: str, name: str, value: Mapping[str, Any], operator: bool) -> Step:
    def step() -> None:
        set_policy(
            broker.vhosts[vhost],
            name,
            value.get("pattern"),
            value.get("definition"),
            value.get("priority", 0),
            value.get("apply-to", "all"),
            operator=operator,
        )

    return step


@contextmanager
def _amqp_reason(what: str) -> Iterator[None]:
    """An AMQP error raised inside (a bad argument, an unknown exchange type) as the import's reason."""
    try:
        yield
    except AMQPError as exc:
        text = exc.reply_text
        head, sep, rest = text.partition(" - ")
        raise _fail(f"{what}: {rest if sep and head.isupper() else text}") from None


def _plan_exchanges(
    broker: Broker, document: Mapping[str, Any], result: Plan, seen: _Seen, scoped: str | None
) -> Iterator[None]:
    for item in _items(document, "exchanges"):
        yield  # a point where an import on the event loop may let other work in
        name = _str(item, "name", "exchange")
        what = f"exchange {_where(name)}"
        vhost = _vhost_of(item, what, seen, scoped)
        if not name or name.startswith("amq."):
            result.skipped.append(f"exchange {name or '(default)'!r} in vhost {vhost!r} (reserved)")
            continue
        if len(name.encode("utf-8")) > _MAX_NAME_BYTES:
            raise _fail(f"{what}: name is longer than {_MAX_NAME_BYTES} bytes")
        kind = _str(item, "type", what)
        durable = _bool(item, "durable", what, True)
        auto_delete = _bool(item, "auto_delete", what, False)
        internal = _bool(item, "internal", what, False)
        arguments = _object(item, "arguments", what)
        with _amqp_reason(what):
            exchange_types.lookup(kind).check()
            check_exchange_arguments(f"exchange '{name}' in vhost '{vhost}'", arguments)
        if (vhost, name) in seen.exchanges:
            continue  # an existing exchange is kept as it is (RabbitMQ's declare returns it)
        seen.exchanges[(vhost, name)] = kind
        result.add(
            f"exchange {name} in {vhost}",
            _declare_exchange(broker, vhost, name, kind, durable, auto_delete, internal, arguments),
        )


def _declare_exchange(
    broker: Broker,
    vhost: str,
    name: str,
    kind: str,
    durable: bool,
    auto_delete: bool,
    internal: bool,
    arguments: dict[str, Any],
) -> Step:
    def step() -> None:
        broker.vhosts[vhost].declare_exchange(
            name, kind, durable=durable, auto_delete=auto_delete, internal=internal, arguments=arguments
        )

    return step


def _plan_queues(
    broker: Broker,
    document: Mapping[str, Any],
    result: Plan,
    seen: _Seen,
    scoped: str | None,
    limits: dict[str, dict[str, int]],
) -> Iterator[None]:
    added: dict[str, int] = {}
    for item in _items(document, "queues"):
        yield  # a point where an import on the event loop may let other work in
        name = _str(item, "name", "queue")
        what = f"queue {_where(name)}"
        vhost = _vhost_of(item, what, seen, scoped)
        if name.startswith("amq."):
            result.skipped.append(f"queue {name!r} in vhost {vhost!r} (reserved)")
            continue
        if not name:
            raise _fail(f"{what}: queue name must not be empty")
        if len(name.encode("utf-8")) > _MAX_NAME_BYTES:
            raise _fail(f"{what}: name is longer than {_MAX_NAME_BYTES} bytes")
        durable = _bool(item, "durable", what, True)
        auto_delete = _bool(item, "auto_delete", what, False)
        arguments = _object(item, "arguments", what)
        with _amqp_reason(what):
            check_queue_arguments(f"queue '{name}' in vhost '{vhost}'", arguments)
        if (vhost, name) in seen.queues:
            continue  # an existing queue is kept as it is (RabbitMQ's declare returns it)
        seen.queues.add((vhost, name))
        added[vhost] = added.get(vhost, 0) + 1
        result.add(
            f"queue {name} in {vhost}", _declare_queue(broker, vhost, name, durable, auto_delete, arguments)
        )
    for vhost, count in added.items():
        limit = limits.get(vhost, broker.vhost_limits.get(vhost, {})).get("max-queues", -1)
        model = broker.vhosts.get(vhost)
        present = len(model.queues) if model is not None else 0
        if 0 <= limit < present + count:
            raise _fail(
                f"cannot import {count} queues into vhost '{vhost}': "
                f"its queue limit ({limit}) would be exceeded"
            )


def _declare_queue(
    broker: Broker, vhost: str, name: str, durable: bool, auto_delete: bool, arguments: dict[str, Any]
) -> Step:
    def step() -> None:
        broker.vhosts[vhost].declare_queue(
            name, durable=durable, auto_delete=auto_delete, arguments=arguments
        )

    return step


def _plan_bindings(
    broker: Broker, document: Mapping[str, Any], result: Plan, seen: _Seen, scoped: str | None
) -> Iterator[None]:
    for item in _items(document, "bindings"):
        yield  # a point where an import on the event loop may let other work in
        source = _str(item, "source", "binding")
        destination = _str(item, "destination", "binding")
        what = f"binding from {_where(source)} to {_where(destination)}"
        vhost = _vhost_of(item, what, seen, scoped)
        kind = _str(item, "destination_type", what)
        if kind not in ("queue", "exchange"):
            raise _fail(f"{what}: destination_type must be 'queue' or 'exchange', actually was {kind!r}")
        routing_key = _str(item, "routing_key", what, "")
        # Typed as RabbitMQ's import types them (integers `long`), so the properties key is RabbitMQ's.
        arguments = json_arguments(_object(item, "arguments", what))
        source_type = seen.exchanges.get((vhost, source))
        exists = (
            (vhost, destination) in seen.queues if kind == "queue" else (vhost, destination) in seen.exchanges
        )
        if not source or source_type is None or not exists:
            # RabbitMQ answers 204 and binds nothing (rabbit_binding:add's error is not checked).
            result.skipped.append(f"{what} in vhost {vhost!r} (source or destination missing)")
            continue
        with _amqp_reason(what):
            exchange_types.lookup(source_type).validate_binding(routing_key, arguments)
        model = broker.vhosts.get(vhost)
        if (
            model is not None
            and source in model.exchanges
            and _bound(model, source, destination, kind, routing_key, arguments)
        ):
            continue
        queue = model.queues.get(destination) if model is not None and kind == "queue" else None
        if queue is not None and queue.exclusive:
            # Only its own connection may bind it (405 otherwise); it leaves with that connection anyway.
            result.skipped.append(f"{what} in vhost {vhost!r} (exclusive queue)")
            continue
        result.add(
            f"{what} in {vhost}", _bind(broker, vhost, source, destination, kind, routing_key, arguments)
        )


def _bound(
    vhost: VHost, source: str, destination: str, kind: str, key: str, arguments: dict[str, Any]
) -> bool:
    binding = Binding.of(source, destination, "queue" if kind == "queue" else "exchange", key, arguments)
    return binding in vhost.exchanges[source].bindings


def _bind(
    broker: Broker,
    vhost: str,
    source: str,
    destination: str,
    kind: str,
    routing_key: str,
    arguments: dict[str, Any],
) -> Step:
    def step() -> None:
        model = broker.vhosts[vhost]
        if kind == "queue":
            model.bind_queue(destination, source, routing_key, arguments)
        else:
            model.bind_exchange(destination, source, routing_key, arguments)

    return step


def import_definitions(broker: Broker, document: Any, vhost: str | None = None) -> Plan:
    """Check and import `document`; the plan it made (what changed, what was skipped). Raises
    `DefinitionsError` (nothing changed) for a document that cannot be imported."""
    steps = plan(broker, document, vhost)
    steps.run()
    _log_import(steps, vhost)
    return steps


async def import_definitions_paced(broker: Broker, document: Any, vhost: str | None = None) -> Plan:
    """`import_definitions` on the event loop without holding it: planning and changes let other work
    in every `SLICE` seconds (a 20 MiB document takes seconds). Callers run one at a time (the plan is
    made against the state the previous import left)."""
    planning = _planning(broker, document, vhost)
    pace = _Pace()
    while True:
        try:
            next(planning)
        except StopIteration as done:
            steps: Plan = done.value
            break
        await pace.tick()
    await steps.run_paced()
    _log_import(steps, vhost)
    return steps


def _log_import(steps: Plan, vhost: str | None) -> None:
    for line in steps.skipped:
        log.info(f"definitions import: skipped {line}")
    log.info(
        "definitions imported",
        extra={"vhost": vhost or "*", "changes": len(steps.changes), "skipped": len(steps.skipped)},
    )
