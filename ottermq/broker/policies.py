"""Policies and operator policies of a vhost: which one applies to a queue or exchange, what it changes, and
how setting or clearing one reaches the queues and exchanges that exist.

Strategy: as in RabbitMQ (rabbit_policy.erl), at most one policy and one operator policy apply to an
object: among those whose apply-to names its kind, whose pattern matches its name (an unanchored regex
search) and whose definition has no key its queue type leaves out (such a policy does not match at all),
the one of highest priority. Their definitions merge key by key, the operator policy's lower value
winning for its numeric limits (`effective_definition`). That merged definition meets the queue's own
x-arguments as the queue type resolves them (rabbit_amqqueue_process / rabbit_quorum_queue): the lower
value for TTLs, expiry and lengths of a classic queue, the argument for dead lettering and overflow. The
result is a set of effective arguments, read by the same `features.parse_features` as declare arguments.

A change of policy is the event `PolicySet` / `PolicyCleared`, applied by `apply_event` live and on
replay: it recomputes every queue's effective arguments and swaps the features of those that changed
(keeping the state that is not the policy's: waiting consumers, delivery counts), and every exchange's
alternate exchange. Applying decides nothing; what a new limit means for the messages already there
(RabbitMQ drops the head at once when max-length shrinks) is done on the live path afterwards
(`enforce`), and reaches the log as ordinary removals. A new message TTL applies to messages enqueued
from then on, as RabbitMQ's classic queues compute an expiry at enqueue.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Final, Literal, cast

from ottermq.broker.access import AccessError
from ottermq.broker.events import PolicyCleared, PolicySet
from ottermq.broker.features import QueueFeatures, parse_features
from ottermq.broker.policy_rules import LOWER_WINS, UNSUPPORTED, check_policy

if TYPE_CHECKING:
    from ottermq.broker.exchange import Exchange
    from ottermq.broker.queue import Queue
    from ottermq.broker.topology import Topology
    from ottermq.broker.vhost import VHost

Kind = Literal["queue", "exchange"]

# How each queue type resolves a key set both by the effective policy and by its x-argument: "min" the
# lower value, "arg" the argument, "policy" the policy. Keys not listed are not read from policies.
_MIN: Final = "min"
_ARG: Final = "arg"
_POLICY: Final = "policy"
RESOLVE: Final[dict[str, dict[str, str]]] = {
    "classic": {
        "expires": _MIN,
        "message-ttl": _MIN,
        "max-length": _MIN,
        "max-length-bytes": _MIN,
        "dead-letter-exchange": _ARG,
        "dead-letter-routing-key": _ARG,
        "overflow": _ARG,
    },
    "quorum": {
        "max-length": _MIN,
        "max-length-bytes": _MIN,
        "delivery-limit": _MIN,
        "message-ttl": _MIN,
        "expires": _POLICY,
        "overflow": _POLICY,
        "dead-letter-exchange": _ARG,
        "dead-letter-routing-key": _ARG,
    },
    "stream": {},
}


@lru_cache(maxsize=1024)
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


@dataclass(frozen=True, slots=True)
class Policy:
    """One policy or operator policy as set."""

    vhost: str
    name: str
    pattern: str
    apply_to: str
    definition: dict[str, Any]
    priority: int | float
    regex: re.Pattern[str] = field(compare=False, repr=False)

    def row(self) -> dict[str, Any]:
        """As the management API and rabbitmqctl list it."""
        return {
            "vhost": self.vhost,
            "name": self.name,
            "pattern": self.pattern,
            "apply-to": self.apply_to,
            "definition": dict(self.definition),
            "priority": self.priority,
        }

    def event(self, operator: bool) -> PolicySet:
        """The event that sets this policy (for snapshots)."""
        return PolicySet(
            self.vhost, self.name, self.pattern, self.apply_to, dict(self.definition), self.priority, operator
        )


def queue_type(arguments: Mapping[str, Any]) -> str:
    """The RabbitMQ queue type a queue declared with `arguments` has (OtterMQ implements one kind of
    queue, but which policies apply depends on the type asked for)."""
    value = arguments.get("x-queue-type")
    return value if value in ("quorum", "stream") else "classic"


class VHostPolicies:
    """The policies and operator policies of one vhost, by name."""

    __slots__ = ("operator", "policies")

    def __init__(self) -> None:
        self.policies: dict[str, Policy] = {}
        self.operator: dict[str, Policy] = {}

    def table(self, operator: bool) -> dict[str, Policy]:
        """The operator policies, or the policies."""
        return self.operator if operator else self.policies

    def listed(self, operator: bool) -> list[Policy]:
        """Lowest priority first, as RabbitMQ lists them (rabbit_policy:sort_by_priority)."""
        return sorted(self.table(operator).values(), key=lambda p: (p.priority, p.name))

    def __bool__(self) -> bool:
        return bool(self.policies or self.operator)

    def match(
        self, kind: Kind, name: str, arguments: Mapping[str, Any] | None = None
    ) -> tuple[Policy | None, Policy | None]:
        """(policy, operator policy) that apply to the queue or exchange `name`."""
        if not self:
            return None, None
        unsupported = UNSUPPORTED[queue_type(arguments or {})] if kind == "queue" else frozenset()
        return (
            _best(self.policies.values(), kind, name, unsupported),
            _best(self.operator.values(), kind, name, unsupported),
        )

    def queue_arguments(self, name: str, arguments: Mapping[str, Any]) -> dict[str, Any] | None:
        """The arguments a queue `name` declared with `arguments` works by under the policies that apply
        to it, or None when none does."""
        policy, operator = self.match("queue", name, arguments)
        definition = effective_definition(policy, operator)
        if not definition:
            return None
        resolve = RESOLVE[queue_type(arguments)]
        effective = dict(arguments)
        for key, how in resolve.items():
            if key not in definition:
                continue
            value = definition[key]
            argument = "x-" + key
            if argument in arguments:
                current = arguments[argument]
                if how == _ARG:
                    continue
                if how == _MIN and isinstance(current, int) and isinstance(value, int):
                    value = min(value, current)
            effective[argument] = value
        return effective

    def alternate(self, exchange: Exchange) -> str | None:
        """The alternate exchange of `exchange`: its own argument, else its policy's."""
        own = exchange.arguments.get("alternate-exchange")
        if isinstance(own, str):
            return own
        if not exchange.name:
            return None  # the default exchange routes by queue name only (RabbitMQ special-cases it too)
        policy, _operator = self.match("exchange", exchange.name)
        value = policy.definition.get("alternate-exchange") if policy is not None else None
        return value if isinstance(value, str) else None

    def events(self) -> list[PolicySet]:
        """Events that set every policy of the vhost again (for snapshots)."""
        return [policy.event(False) for policy in self.policies.values()] + [
            policy.event(True) for policy in self.operator.values()
        ]


def _best(policies: Iterable[Policy], kind: Kind, name: str, unsupported: frozenset[str]) -> Policy | None:
    best: Policy | None = None
    for policy in policies:
        if policy.apply_to != "all" and policy.apply_to != kind + "s":
            continue
        if unsupported and not unsupported.isdisjoint(policy.definition):
            continue
        if policy.regex.search(name) is None:
            continue
        if best is None or (policy.priority, best.name) > (best.priority, policy.name):
            best = policy
    return best


def effective_definition(policy: Policy | None, operator: Policy | None) -> dict[str, Any]:
    """The definitions of a policy and an operator policy merged as RabbitMQ merges them (the lower
    value of a limit both set), keys sorted."""
    if policy is None and operator is None:
        return {}
    mine = policy.definition if policy is not None else {}
    theirs = operator.definition if operator is not None else {}
    merged: dict[str, Any] = {}
    for key in sorted({*mine, *theirs}):
        if key in mine and key in theirs:
            value, other = mine[key], theirs[key]
            merged[key] = min(value, other) if key in LOWER_WINS else other
        else:
            merged[key] = mine[key] if key in mine else theirs[key]
    return merged


def policy_fields(
    policies: VHostPolicies, kind: Kind, name: str, arguments: Mapping[str, Any]
) -> dict[str, Any]:
    """The `policy`, `operator_policy` and `effective_policy_definition` of an object, as the management
    API shows a queue's."""
    policy, operator = policies.match(kind, name, arguments)
    return {
        "policy": policy.name if policy is not None else None,
        "operator_policy": operator.name if operator is not None else None,
        "effective_policy_definition": effective_definition(policy, operator),
    }


# -- applying (live and on replay) -------------------------------------------------------------------------


def _carry(old: QueueFeatures | None, new: QueueFeatures | None) -> QueueFeatures | None:
    """`new` with the state of `old` that a policy does not own: the consumers waiting for single active
    consumer (an argument only) and the delivery counts (kept when a delivery limit stays)."""
    if old is None or new is None:
        return new
    new.single_active = old.single_active
    if old.delivery is not None and new.delivery is not None:
        old.delivery.limit = new.delivery.limit
        new.delivery = old.delivery
    return new


def reconfigure(topology: Topology, queue: Queue) -> bool:
    """Recompute what the policies make of `queue`; True when its effective arguments changed."""
    effective = topology.policies.queue_arguments(queue.name, queue.arguments)
    if effective == queue.policy_arguments:
        return False
    queue.policy_arguments = effective
    # Dead lettering and x-expires act through the vhost's operations (as at declare, topology.py).
    arguments = effective if effective is not None else queue.arguments
    features = parse_features(arguments, cast("VHost", topology))
    queue.replace_features(_carry(queue.features, features))
    return True


def apply_event(topology: Topology, event: PolicySet | PolicyCleared) -> list[Queue]:
    """Apply a policy event to a vhost's model (the one apply path): the queues whose effective
    arguments changed are returned, for the live path to `enforce`."""
    table = topology.policies.table(event.operator)
    if isinstance(event, PolicySet):
        table[event.name] = Policy(
            event.vhost,
            event.name,
            event.pattern,
            event.apply_to,
            dict(event.definition),
            event.priority,
            _regex(event.pattern),
        )
    else:
        table.pop(event.name, None)
    changed = [queue for queue in list(topology.queues.values()) if reconfigure(topology, queue)]
    for exchange in topology.exchanges.values():
        exchange.alternate = topology.policies.alternate(exchange)
    return changed


def enforce(queues: Iterable[Queue]) -> None:
    """Live only, after a policy change: what the new limits mean for the messages already there (head
    expiry, drop-head over a lower max-length), as RabbitMQ does when a queue's policy changes."""
    for queue in queues:
        if not queue.deleted:
            queue.enforce_limits()


# -- the live operations -------------------------------------------------------------------------------------


def set_policy(
    vhost: VHost,
    name: str,
    pattern: Any,
    definition: Any,
    priority: Any = 0,
    apply_to: Any = "all",
    operator: bool = False,
) -> bool:
    """Create or replace a policy (an operator policy with `operator`) of `vhost` through the journal;
    True when it is new. Raises `policy_rules.PolicyError` with RabbitMQ's validation lines."""
    check_policy(pattern, definition, priority, apply_to, operator)
    existed = name in vhost.policies.table(operator)
    event = PolicySet(vhost.name, name, pattern, apply_to, dict(definition), priority, operator)
    _journal(vhost, event)
    enforce(apply_event(vhost, event))
    return not existed


def clear_policy(vhost: VHost, name: str, operator: bool = False) -> bool:
    """Remove a policy (an operator policy with `operator`); False when there was none."""
    if name not in vhost.policies.table(operator):
        return False
    event = PolicyCleared(vhost.name, name, operator)
    _journal(vhost, event)
    enforce(apply_event(vhost, event))
    return True


def _journal(vhost: VHost, event: PolicySet | PolicyCleared) -> None:
    if vhost.journal.failed:
        raise AccessError("unavailable", "the journal has failed: no durable change is accepted")
    vhost.journal.append(event)
