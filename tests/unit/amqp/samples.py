"""Sample values for every method field, derived from the generator's spec table.

Each field gets a value that differs from its default and exercises its full wire width, so that a
field encoded at the wrong width, in the wrong order or with the wrong bit shows up.
"""

from typing import Any

import pika.spec

from ottermq.amqp.method import Method
from ottermq.amqp.methods import METHODS_BY_NAME
from tools.gen_amqp_methods import SPEC

TABLE_SAMPLE: dict[str, Any] = {
    "product": "ottermq",
    "n": 7,
    "big": 2**40,
    "flag": True,
    "nested": {"a": [1, "two", None], "b": b"\x00\xff"},
}

_BY_TYPE: dict[str, Any] = {
    "octet": 201,
    "short": 65001,
    "long": 4_000_000_001,
    "longlong": 2**63 + 5,
    "shortstr": "ünïcødé-",
    "longstr": b"\x00\xffbinary\x01",
}


def all_specs() -> list[tuple[str, list[tuple[str, str, str]]]]:
    """(method name, fields) for every method of the spec table."""
    return [(f"{cls}.{m[0]}", m[4]) for cls, _cid, methods in SPEC for m in methods]


def sample_kwargs(fields: list[tuple[str, str, str]], flip: int = 0) -> dict[str, Any]:
    """Non-default values for ``fields``; ``flip`` varies the bit pattern."""
    kwargs: dict[str, Any] = {}
    for i, (name, kind, _default) in enumerate(fields):
        if kind == "bit":
            # Alternate so that neighbouring bits differ; flip=1 gives the complement.
            kwargs[name] = bool((i + flip) % 2)
        elif kind == "table":
            kwargs[name] = TABLE_SAMPLE
        elif kind == "shortstr":
            kwargs[name] = _BY_TYPE[kind] + name
        elif kind == "longstr":
            kwargs[name] = _BY_TYPE[kind] + name.encode()
        else:
            kwargs[name] = _BY_TYPE[kind] - i
    return kwargs


def ours(name: str) -> type[Method]:
    """Our method class by AMQP name."""
    return METHODS_BY_NAME[name]


def pika_class(name: str) -> Any:
    """pika.spec's class for an AMQP method name ("queue.declare-ok" -> Queue.DeclareOk)."""
    cls, method = name.split(".")
    return getattr(getattr(pika.spec, cls.capitalize()), "".join(p.capitalize() for p in method.split("-")))
