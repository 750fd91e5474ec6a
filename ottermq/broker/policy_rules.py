"""What a policy may say, as RabbitMQ 3.10 checks it, and how it is printed back in its error texts.

Strategy: RabbitMQ validates a policy (rabbit_policy.erl) with one validator per definition key
(rabbit_policies.erl, rabbit_mirror_queue_misc.erl, rabbit_queue_location_validator.erl) and reports
every failing part of the policy at once, one line each, in the order definition, apply-to, pattern,
priority; values are printed with Erlang's `~p` (a JSON string is `<<"x">>`). `check_policy` reproduces
those texts, so a tool that shows RabbitMQ's messages shows the same ones here. Pure: no broker state.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any, Final

APPLY_TO: Final = ("all", "exchanges", "queues")
# Keys an operator policy may set (rabbit_policies' operator_policy_validator registrations).
OPERATOR_KEYS: Final = frozenset(
    {
        "expires",
        "message-ttl",
        "max-length",
        "max-length-bytes",
        "max-in-memory-length",
        "max-in-memory-bytes",
        "delivery-limit",
    }
)
# Where a policy and an operator policy both set one of these, the lower value applies.
LOWER_WINS: Final = OPERATOR_KEYS
# Keys of a definition that keep a policy off a queue of a type that does not support them
# (each queue type's `unsupported_policies` capability in 3.10): such a policy does not match it at all.
UNSUPPORTED: Final[dict[str, frozenset[str]]] = {
    "classic": frozenset(
        {
            "max-age",
            "stream-max-segment-size-bytes",
            "queue-leader-locator",
            "initial-cluster-size",
            "delivery-limit",
            "dead-letter-strategy",
        }
    ),
    "quorum": frozenset(
        {
            "max-priority",
            "queue-mode",
            "single-active-consumer",
            "ha-mode",
            "ha-params",
            "ha-sync-mode",
            "ha-promote-on-shutdown",
            "ha-promote-on-failure",
            "queue-master-locator",
            "max-age",
            "stream-max-segment-size-bytes",
            "initial-cluster-size",
        }
    ),
    "stream": frozenset(
        {
            "expires",
            "message-ttl",
            "dead-letter-exchange",
            "dead-letter-routing-key",
            "max-length",
            "max-in-memory-length",
            "max-in-memory-bytes",
            "max-priority",
            "overflow",
            "queue-mode",
            "single-active-consumer",
            "delivery-limit",
            "ha-mode",
            "ha-params",
            "ha-sync-mode",
            "ha-promote-on-shutdown",
            "ha-promote-on-failure",
            "queue-master-locator",
            "dead-letter-strategy",
        }
    ),
}
_INT64: Final = 2**63
MAX_STREAM_SEGMENT: Final = 3_000_000_000
_MAX_AGE: Final = re.compile(r"\d+[YMDhms]\Z")
# Before the regex error term; Erlang's ~p breaks a tuple that does not fit in the line's 80 columns after
# its first element, and aligns the second under the first.
_REGEX_PREFIX: Final = "pattern should be regular expression but is invalid: "


class PolicyError(Exception):
    """A policy RabbitMQ would refuse: `lines` are its validation messages, in RabbitMQ's order."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines

    @property
    def reason(self) -> str:
        """The management API's reason text ("Validation failed\\n\\n<lines>\\n")."""
        return "Validation failed\n\n" + "".join(line + "\n" for line in self.lines)


def erl(value: Any) -> str:
    """A JSON value printed as Erlang's ~p prints the term RabbitMQ decodes it to."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, str):
        return "<<" + json.dumps(value, ensure_ascii=False) + ">>"
    if isinstance(value, float):
        return repr(value).replace("e+", "e")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list):
        return "[" + ",".join(erl(item) for item in value) + "]"
    if isinstance(value, Mapping):
        return "#{" + ",".join(f"{erl(k)} => {erl(v)}" for k, v in value.items()) + "}"
    return str(value)


def _is_int(value: Any, minimum: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and minimum <= value < _INT64


def _int_key(minimum: int, text: str) -> Callable[[Any], str | None]:
    return lambda value: None if _is_int(value, minimum) else f"{erl(value)} {text}"


def _str_key(text: str) -> Callable[[Any], str | None]:
    return lambda value: None if isinstance(value, str) else f"{erl(value)} {text}"


def _one_of(allowed: tuple[Any, ...], text: str) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        ok = any(value == a and type(value) is type(a) for a in allowed)
        return None if ok else f"{erl(value)} {text}"

    return check


def _max_age(value: Any) -> str | None:
    ok = isinstance(value, str) and _MAX_AGE.match(value) is not None
    return None if ok else f"{erl(value)} is not a valid max age"


def _segment(value: Any) -> str | None:
    ok = _is_int(value, 0) and value <= MAX_STREAM_SEGMENT
    return None if ok else f"{erl(value)} is not a valid segment size"


# rabbit_policies:validate_policy0/2, key by key.
VALUE_CHECKS: Final[dict[str, Callable[[Any], str | None]]] = {
    "alternate-exchange": _str_key("is not a valid alternate exchange name"),
    "dead-letter-exchange": _str_key("is not a valid dead letter exchange name"),
    "dead-letter-routing-key": _str_key("is not a valid dead letter routing key"),
    "dead-letter-strategy": _one_of(("at-most-once", "at-least-once"), "is not a valid dead letter strategy"),
    "message-ttl": _int_key(0, "is not a valid message TTL"),
    "expires": _int_key(1, "is not a valid queue expiry"),
    "max-length": _int_key(0, "is not a valid maximum length"),
    "max-length-bytes": _int_key(0, "is not a valid maximum length in bytes"),
    "max-in-memory-length": _int_key(0, "is not a valid maximum memory in bytes"),
    "max-in-memory-bytes": _int_key(0, "is not a valid maximum memory in bytes"),
    "queue-mode": _one_of(("default", "lazy"), "is not a valid queue-mode value"),
    "queue-version": _one_of((1, 2), "is not a valid queue-version value"),
    "overflow": _one_of(
        ("drop-head", "reject-publish", "reject-publish-dlx"), "is not a valid overflow value"
    ),
    "delivery-limit": _int_key(0, "is not a valid delivery limit"),
    "max-age": _max_age,
    "stream-max-segment-size-bytes": _segment,
    "queue-leader-locator": _one_of(
        ("client-local", "balanced", "random", "least-leaders"), "is not a valid queue leader locator value"
    ),
    "initial-cluster-size": _int_key(0, "is not a valid cluster size"),
}
_HA_KEYS: Final = (
    "ha-mode",
    "ha-params",
    "ha-sync-mode",
    "ha-sync-batch-size",
    "ha-promote-on-shutdown",
    "ha-promote-on-failure",
)


_NONE: Final[Any] = object()


def _ha_params(mode: str, params: Any) -> str | None:
    shown = "none" if params is _NONE else erl(params)
    if mode == "all":
        return None if params is _NONE else 'ha-mode="all" does not take parameters'
    if mode == "exactly":
        return None if _is_int(params, 1) else f'ha-mode="exactly" takes an integer, {shown} given'
    ok = isinstance(params, list) and all(isinstance(node, str) for node in params)
    return None if ok else f'ha-mode="nodes" takes a list of strings, {shown} given'


def _check_ha(definition: Mapping[str, Any]) -> str | None:
    """rabbit_mirror_queue_misc:validate_policy (classic mirroring: accepted, and ignored here)."""
    values = {key: definition.get(key, _NONE) for key in _HA_KEYS}
    if all(value is _NONE for value in values.values()):
        return None
    mode = values["ha-mode"]
    if mode is _NONE:
        return "ha-mode must be specified to specify ha-params, ha-sync-mode or ha-promote-on-shutdown"
    if mode not in ("all", "exactly", "nodes") or not isinstance(mode, str):
        return f"{erl(mode)} is not a valid ha-mode value"
    error = _ha_params(mode, values["ha-params"])
    if error is not None:
        return error
    sync = values["ha-sync-mode"]
    if sync is not _NONE and sync not in ("automatic", "manual"):
        return f'ha-sync-mode must be "manual" or "automatic", got {erl(sync)}'
    batch = values["ha-sync-batch-size"]
    if batch is not _NONE and not _is_int(batch, 1):
        return f"ha-sync-batch-size takes an integer greater than 0, {erl(batch)} given"
    for key in ("ha-promote-on-shutdown", "ha-promote-on-failure"):
        value = values[key]
        if value is not _NONE and value not in ("always", "when-synced"):
            return f'{key} must be "always" or "when-synced", got {erl(value)}'
    return None


def _check_locator(value: Any) -> str | None:
    if value in ("min-masters", "client-local", "random") and isinstance(value, str):
        return None
    return f"{erl(value)} invalid queue-master-locator value"


def check_definition(definition: Any, operator: bool) -> str | None:
    """The first error RabbitMQ finds in a policy's definition, or None."""
    if not isinstance(definition, Mapping):
        return f"definition must be a dictionary: {erl(definition)}"
    if not definition:
        return "no policy provided"
    keys = sorted(definition)  # the order of an Erlang map decoded from JSON
    allowed = OPERATOR_KEYS if operator else None
    for key in keys:
        check = VALUE_CHECKS.get(key)
        if check is not None and (allowed is None or key in allowed):
            error = check(definition[key])
            if error is not None:
                return error
    if not operator:
        error = _check_ha(definition)
        if error is not None:
            return error
        if "queue-master-locator" in definition:
            error = _check_locator(definition["queue-master-locator"])
            if error is not None:
                return error
    known = set(OPERATOR_KEYS) if operator else {*VALUE_CHECKS, *_HA_KEYS, "queue-master-locator"}
    unknown = [key for key in keys if key not in known]
    if unknown:
        terms = ",".join(f"{{{erl(key)},{erl(definition[key])}}}" for key in unknown)
        return f"[{terms}] are not recognised policy settings"
    return None


def _regex_error(pattern: str, error: re.error) -> tuple[str, int]:
    """Python's complaint about `pattern` as PCRE words it (re:compile's {Message, Offset})."""
    message, position = error.msg, error.pos if error.pos is not None else 0
    if message.startswith("missing ), unterminated subpattern"):
        return "missing )", len(pattern)
    if message.startswith("unbalanced parenthesis"):
        return "unmatched parentheses", position
    if message.startswith("unterminated character set"):
        return "missing terminating ] for character class", len(pattern)
    if message.startswith(("nothing to repeat", "multiple repeat")):
        return "nothing to repeat", position
    if message.startswith("min repeat greater than max repeat"):
        end = pattern.find("}", position)
        return "numbers out of order in {} quantifier", end if end >= 0 else position
    if message.startswith("bad character range"):
        return "range out of order in character class", position + 2
    return message, position


def _regex_line(pattern: str, error: re.error) -> str:
    message, position = _regex_error(pattern, error)
    first = json.dumps(message, ensure_ascii=False)
    term = f"{{{first},{position}}}"
    if len(_REGEX_PREFIX) + len(term) >= 80:
        term = f"{{{first},\n{' ' * (len(_REGEX_PREFIX) + 1)}{position}}}"
    return _REGEX_PREFIX + term


def compile_pattern(pattern: str) -> re.Pattern[str]:
    """A policy pattern as a Python regex (re.error when it is not one)."""
    return re.compile(pattern)


def check_policy(pattern: Any, definition: Any, priority: Any, apply_to: Any, operator: bool) -> None:
    """Raise PolicyError with every line RabbitMQ's validation would report for this policy."""
    lines: list[str] = []
    error = check_definition(definition, operator)
    if error is not None:
        lines.append(error)
    if apply_to not in APPLY_TO or not isinstance(apply_to, str):
        shown = "null" if apply_to is None else apply_to if isinstance(apply_to, str) else erl(apply_to)
        lines.append(f"apply-to '{shown}' unrecognised; should be 'queues', 'exchanges' or 'all'")
    if not isinstance(pattern, str):
        lines.append(f"pattern should be a binary but was {erl(pattern)}")
    else:
        try:
            compile_pattern(pattern)
        except re.error as exc:
            lines.append(_regex_line(pattern, exc))
    # A 64-bit bound (RabbitMQ takes any integer): the log keeps it as a 64-bit field.
    number = isinstance(priority, (int, float)) and not isinstance(priority, bool)
    if not number or not -_INT64 <= priority < _INT64:
        lines.append(f"priority should be a number, actually was {erl(priority)}")
    if lines:
        raise PolicyError(lines)
