"""Declare arguments: validation, equivalence on redeclare, and RabbitMQ's way of printing them.

Strategy: RabbitMQ compares only the arguments it knows (per entity kind) when an entity is declared again,
and words its 406s with AMQP field-type names ("received the value '5' of type 'signedint' but current is
none"). Python values lose the wire type, so the type name is inferred from the value the way our table
encoder would write it back.
"""

from __future__ import annotations

import datetime
import decimal
from collections.abc import Callable, Mapping
from typing import Any, Final

from ottermq.amqp.constants import PRECONDITION_FAILED
from ottermq.amqp.errors import ChannelError
from ottermq.amqp.table import Long

INT32_MIN: Final = -(2**31)
INT32_MAX: Final = 2**31 - 1
MAX_EXPIRY: Final = 4294967295  # the largest TTL / expiry RabbitMQ accepts (ms)
MAX_PRIORITY: Final = 255

# Arguments compared on redeclare (the rest may differ freely, as in RabbitMQ).
EXCHANGE_EQUIVALENCE_KEYS: Final = ("alternate-exchange",)
QUEUE_EQUIVALENCE_KEYS: Final = (
    "x-expires",
    "x-message-ttl",
    "x-dead-letter-exchange",
    "x-dead-letter-routing-key",
    "x-dead-letter-strategy",
    "x-max-length",
    "x-max-length-bytes",
    "x-max-in-memory-length",
    "x-max-in-memory-bytes",
    "x-max-priority",
    "x-overflow",
    "x-queue-mode",
    "x-single-active-consumer",
    "x-queue-type",
    "x-max-age",
    "x-stream-max-segment-size-bytes",
)


def type_name(value: Any) -> str:
    """The AMQP field-type name RabbitMQ would report for `value`."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "signedint" if INT32_MIN <= value <= INT32_MAX else "long"
    if isinstance(value, str):
        return "longstr"
    if isinstance(value, bytes):
        return "binary"
    if isinstance(value, float):
        return "double"
    if isinstance(value, decimal.Decimal):
        return "decimal"
    if isinstance(value, datetime.datetime):
        return "timestamp"
    if isinstance(value, dict):
        return "table"
    if isinstance(value, list):
        return "array"
    return "void"


def json_arguments(value: Any) -> Any:
    """Arguments given as JSON typed as RabbitMQ 3.10 types them (rabbit_misc:to_amqp_table, used by the
    management API and the definitions import alike): integers are `long` whatever their size, objects
    are tables with their keys sorted. The types decide a binding's properties key (RabbitMQ's hash)."""
    if isinstance(value, bool) or value is None or isinstance(value, str | float):
        return value
    if isinstance(value, int):
        return Long(value)
    if isinstance(value, dict):
        return {key: json_arguments(value[key]) for key in sorted(value, key=lambda k: str(k).encode())}
    if isinstance(value, list):
        return [json_arguments(item) for item in value]
    return value


def type_class(value: Any) -> str:
    """Like `type_name`, but all integer types compare as one class (as RabbitMQ's equivalence does)."""
    name = type_name(value)
    return "int" if name in ("signedint", "long") else name


def erl(value: Any) -> str:
    """`value` printed as RabbitMQ prints a term in its error texts."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, bytes):
        return value.decode("latin-1")
    if value is None:
        return "undefined"
    return str(value)


def _erl_term(value: Any) -> str:
    """`value` as an Erlang term inside a tuple (binaries in <<"...">>)."""
    if isinstance(value, str):
        return f'<<"{value}">>'
    return erl(value)


def _described(value: Any, present: bool, with_type: bool) -> str:
    if not present:
        return "none"
    if with_type:
        return f"the value '{erl(value)}' of type '{type_name(value)}'"
    return f"'{erl(value)}'"


def inequivalent(field: str, resource: str, received: str, current: str) -> ChannelError:
    """The 406 for a redeclare that differs from the entity in `field`."""
    return ChannelError(
        PRECONDITION_FAILED,
        f"PRECONDITION_FAILED - inequivalent arg '{field}' for {resource}: "
        f"received {received} but current is {current}",
    )


def assert_field_equivalent(field: str, resource: str, current: Any, requested: Any) -> None:
    """406 unless a declare field (durable, auto_delete...) is the same as the entity's."""
    if current != requested:
        raise inequivalent(field, resource, f"'{erl(requested)}'", f"'{erl(current)}'")


def assert_arguments_equivalent(
    keys: tuple[str, ...], resource: str, current: Mapping[str, Any], requested: Mapping[str, Any]
) -> None:
    """406 when one of `keys` differs (presence, type class or value) between the two argument tables."""
    for key in keys:
        has_current = key in current
        has_requested = key in requested
        if not has_current and not has_requested:
            continue
        old = current.get(key)
        new = requested.get(key)
        if has_current and has_requested:
            if type_class(old) == type_class(new) and old == new:
                continue
            raise inequivalent(key, resource, f"'{erl(new)}'", f"'{erl(old)}'")
        raise inequivalent(
            key, resource, _described(new, has_requested, True), _described(old, has_current, True)
        )


# -- queue argument validation ----------------------------------------------------------------------------

Check = Callable[[Any, Mapping[str, Any]], str | None]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _unacceptable(value: Any) -> str:
    return f"{{unacceptable_type,{type_name(value)}}}"


def _not_integer(value: Any) -> str:
    # RabbitMQ's integer arguments word a wrong type this way (quotes included).
    return f'"expected integer, got {type_name(value)}"'


def _expiry(value: Any, allow_zero: bool) -> str | None:
    if not _is_int(value):
        return _not_integer(value)
    if value == 0 and not allow_zero:
        return "{value_zero,0}"
    if value < 0:
        return f"{{value_negative,{value}}}"
    if value > MAX_EXPIRY:
        return f"{{value_too_large,{value},{MAX_EXPIRY}}}"
    return None


def _non_negative(value: Any, _args: Mapping[str, Any]) -> str | None:
    if not _is_int(value):
        return _not_integer(value)
    return f"{{value_negative,{value}}}" if value < 0 else None


def _max_priority(value: Any, args: Mapping[str, Any]) -> str | None:
    error = _non_negative(value, args)
    if error is None and value > MAX_PRIORITY:
        return f"{{max_value_exceeded,{value}}}"
    return error


def _string(value: Any, _args: Mapping[str, Any]) -> str | None:
    return None if isinstance(value, str) else _unacceptable(value)


def _dead_letter_routing_key(value: Any, args: Mapping[str, Any]) -> str | None:
    if not isinstance(value, str):
        return _unacceptable(value)
    return None if "x-dead-letter-exchange" in args else "routing_key_but_no_dlx_defined"


def _one_of(*allowed: str) -> Check:
    def check(value: Any, _args: Mapping[str, Any]) -> str | None:
        if not isinstance(value, str):
            return _unacceptable(value)
        return None if value in allowed else f"{{invalid_value,{_erl_term(value)}}}"

    return check


def _overflow(value: Any, _args: Mapping[str, Any]) -> str | None:
    if not isinstance(value, str):
        return _unacceptable(value)
    return None if value in ("drop-head", "reject-publish", "reject-publish-dlx") else "invalid_overflow"


def _queue_mode(value: Any, _args: Mapping[str, Any]) -> str | None:
    if not isinstance(value, str):
        return _unacceptable(value)
    return None if value in ("default", "lazy") else f"\"unsupported queue mode '{value}'\""


def _boolean(value: Any, _args: Mapping[str, Any]) -> str | None:
    return None if isinstance(value, bool) else _unacceptable(value)


# x-max-age: a positive whole number and one unit (Years, Months, Days, hours, minutes, seconds).
MAX_AGE_UNITS: Final = {"Y": 365 * 86400, "M": 30 * 86400, "D": 86400, "h": 3600, "m": 60, "s": 1}


def max_age_seconds(value: str) -> int | None:
    """The seconds an x-max-age string ("7D", "12h"...) stands for, or None when it is not one (RabbitMQ
    refuses "7d", "0s", "10x"; "s" and "-1s" make it fail with 541, here they are refused as invalid)."""
    if len(value) < 2 or not value[:-1].isdigit() or not value[:-1].isascii():
        return None
    unit = MAX_AGE_UNITS.get(value[-1])
    if unit is None or int(value[:-1]) <= 0:
        return None
    return int(value[:-1]) * unit


def _max_age(value: Any, _args: Mapping[str, Any]) -> str | None:
    if not isinstance(value, str):
        return _unacceptable(value)
    return None if max_age_seconds(value) is not None else "invalid_max_age"


QUEUE_ARGUMENT_CHECKS: Final[dict[str, Check]] = {
    "x-expires": lambda value, _args: _expiry(value, allow_zero=False),
    "x-message-ttl": lambda value, _args: _expiry(value, allow_zero=True),
    "x-dead-letter-exchange": _string,
    "x-dead-letter-routing-key": _dead_letter_routing_key,
    "x-max-length": _non_negative,
    "x-max-length-bytes": _non_negative,
    "x-max-priority": _max_priority,
    "x-delivery-limit": _non_negative,
    "x-overflow": _overflow,
    "x-queue-mode": _queue_mode,
    "x-single-active-consumer": _boolean,
    "x-max-age": _max_age,
    "x-stream-max-segment-size-bytes": _non_negative,
}


def check_queue_arguments(resource: str, arguments: Mapping[str, Any]) -> None:
    """406 for the first known queue argument with a wrong type or value, worded as RabbitMQ words it."""
    dlx = arguments.get("x-dead-letter-exchange")
    if dlx is not None and not isinstance(dlx, str):
        raise ChannelError(
            PRECONDITION_FAILED,
            f"PRECONDITION_FAILED - invalid type '{type_name(dlx)}' for arg 'x-dead-letter-exchange' "
            f"in {resource}",
        )
    for key, check in QUEUE_ARGUMENT_CHECKS.items():
        if key in arguments:
            error = check(arguments[key], arguments)
            if error is not None:
                raise ChannelError(
                    PRECONDITION_FAILED, f"PRECONDITION_FAILED - invalid arg '{key}' for {resource}: {error}"
                )


def check_exchange_arguments(resource: str, arguments: Mapping[str, Any]) -> None:
    """406 when alternate-exchange is not a string."""
    alternate = arguments.get("alternate-exchange")
    if alternate is not None and not isinstance(alternate, str):
        raise ChannelError(
            PRECONDITION_FAILED,
            f"PRECONDITION_FAILED - invalid type '{type_name(alternate)}' for arg 'alternate-exchange' "
            f"in {resource}",
        )


def freeze(value: Any) -> Any:
    """A hashable, order-insensitive stand-in for a field value (tables compare as sorted items)."""
    if isinstance(value, dict):
        return tuple(sorted((key, freeze(item)) for key, item in value.items()))
    if isinstance(value, list):
        return tuple(freeze(item) for item in value)
    # Keep bool apart from int: True and 1 are different binding arguments.
    if isinstance(value, bool):
        return ("bool", value)
    return value
