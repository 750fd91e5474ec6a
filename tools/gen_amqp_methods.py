"""Generate ``ottermq/amqp/_generated.py``: one frozen dataclass per AMQP 0.9.1 method.

Usage: ``python tools/gen_amqp_methods.py [OUTPUT]`` (default: ottermq/amqp/_generated.py), then
commit the output. The spec table below is the single source: class and method ids, field names
(as clients such as pika name them), wire types and defaults, plus RabbitMQ's extensions
(basic.nack, confirm.*, exchange.bind/unbind, connection.blocked/unblocked/update-secret).

Methods listed in ``HAND_WRITTEN`` run once per message and live in ``ottermq/amqp/basic_hot.py``
instead; they stay in the table so that the table remains the complete protocol.

Strategy for the emitted code: consecutive fixed-size fields (octets, shorts, longs, long-longs and
packed bits) are read and written with one precompiled ``struct.Struct``; strings and tables go
through the shared helpers in ``ottermq.amqp.wire`` / ``ottermq.amqp.table``.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Field: (name, wire type, default as Python source). Types: octet short long longlong bit
# shortstr longstr table timestamp.
Field = tuple[str, str, str]
# Method: (name, id, synchronous, has content, fields).
MethodSpec = tuple[str, int, bool, bool, list[Field]]

ARGS: Field = ("arguments", "table", "{}")
TICKET: Field = ("ticket", "short", "0")
CLOSE_FIELDS: list[Field] = [
    ("reply_code", "short", "0"),
    ("reply_text", "shortstr", '""'),
    ("class_id", "short", "0"),
    ("method_id", "short", "0"),
]

SPEC: list[tuple[str, int, list[MethodSpec]]] = [
    (
        "connection",
        10,
        [
            (
                "start",
                10,
                True,
                False,
                [
                    ("version_major", "octet", "0"),
                    ("version_minor", "octet", "9"),
                    ("server_properties", "table", "{}"),
                    ("mechanisms", "longstr", 'b"PLAIN"'),
                    ("locales", "longstr", 'b"en_US"'),
                ],
            ),
            (
                "start-ok",
                11,
                False,
                False,
                [
                    ("client_properties", "table", "{}"),
                    ("mechanism", "shortstr", '"PLAIN"'),
                    ("response", "longstr", 'b""'),
                    ("locale", "shortstr", '"en_US"'),
                ],
            ),
            ("secure", 20, True, False, [("challenge", "longstr", 'b""')]),
            ("secure-ok", 21, False, False, [("response", "longstr", 'b""')]),
            (
                "tune",
                30,
                True,
                False,
                [
                    ("channel_max", "short", "0"),
                    ("frame_max", "long", "0"),
                    ("heartbeat", "short", "0"),
                ],
            ),
            (
                "tune-ok",
                31,
                False,
                False,
                [
                    ("channel_max", "short", "0"),
                    ("frame_max", "long", "0"),
                    ("heartbeat", "short", "0"),
                ],
            ),
            (
                "open",
                40,
                True,
                False,
                [
                    ("virtual_host", "shortstr", '"/"'),
                    ("capabilities", "shortstr", '""'),
                    ("insist", "bit", "False"),
                ],
            ),
            ("open-ok", 41, False, False, [("known_hosts", "shortstr", '""')]),
            ("close", 50, True, False, CLOSE_FIELDS),
            ("close-ok", 51, False, False, []),
            ("blocked", 60, False, False, [("reason", "shortstr", '""')]),
            ("unblocked", 61, False, False, []),
            (
                "update-secret",
                70,
                True,
                False,
                [
                    ("new_secret", "longstr", 'b""'),
                    ("reason", "shortstr", '""'),
                ],
            ),
            ("update-secret-ok", 71, False, False, []),
        ],
    ),
    (
        "channel",
        20,
        [
            ("open", 10, True, False, [("out_of_band", "shortstr", '""')]),
            ("open-ok", 11, False, False, [("channel_id", "longstr", 'b""')]),
            ("flow", 20, True, False, [("active", "bit", "False")]),
            ("flow-ok", 21, False, False, [("active", "bit", "False")]),
            ("close", 40, True, False, CLOSE_FIELDS),
            ("close-ok", 41, False, False, []),
        ],
    ),
    (
        "access",
        30,
        [
            (
                "request",
                10,
                True,
                False,
                [
                    ("realm", "shortstr", '"/data"'),
                    ("exclusive", "bit", "False"),
                    ("passive", "bit", "True"),
                    ("active", "bit", "True"),
                    ("write", "bit", "True"),
                    ("read", "bit", "True"),
                ],
            ),
            ("request-ok", 11, False, False, [("ticket", "short", "1")]),
        ],
    ),
    (
        "exchange",
        40,
        [
            (
                "declare",
                10,
                True,
                False,
                [
                    TICKET,
                    ("exchange", "shortstr", '""'),
                    ("type", "shortstr", '"direct"'),
                    ("passive", "bit", "False"),
                    ("durable", "bit", "False"),
                    ("auto_delete", "bit", "False"),
                    ("internal", "bit", "False"),
                    ("nowait", "bit", "False"),
                    ARGS,
                ],
            ),
            ("declare-ok", 11, False, False, []),
            (
                "delete",
                20,
                True,
                False,
                [
                    TICKET,
                    ("exchange", "shortstr", '""'),
                    ("if_unused", "bit", "False"),
                    ("nowait", "bit", "False"),
                ],
            ),
            ("delete-ok", 21, False, False, []),
            (
                "bind",
                30,
                True,
                False,
                [
                    TICKET,
                    ("destination", "shortstr", '""'),
                    ("source", "shortstr", '""'),
                    ("routing_key", "shortstr", '""'),
                    ("nowait", "bit", "False"),
                    ARGS,
                ],
            ),
            ("bind-ok", 31, False, False, []),
            (
                "unbind",
                40,
                True,
                False,
                [
                    TICKET,
                    ("destination", "shortstr", '""'),
                    ("source", "shortstr", '""'),
                    ("routing_key", "shortstr", '""'),
                    ("nowait", "bit", "False"),
                    ARGS,
                ],
            ),
            ("unbind-ok", 51, False, False, []),
        ],
    ),
    (
        "queue",
        50,
        [
            (
                "declare",
                10,
                True,
                False,
                [
                    TICKET,
                    ("queue", "shortstr", '""'),
                    ("passive", "bit", "False"),
                    ("durable", "bit", "False"),
                    ("exclusive", "bit", "False"),
                    ("auto_delete", "bit", "False"),
                    ("nowait", "bit", "False"),
                    ARGS,
                ],
            ),
            (
                "declare-ok",
                11,
                False,
                False,
                [
                    ("queue", "shortstr", '""'),
                    ("message_count", "long", "0"),
                    ("consumer_count", "long", "0"),
                ],
            ),
            (
                "bind",
                20,
                True,
                False,
                [
                    TICKET,
                    ("queue", "shortstr", '""'),
                    ("exchange", "shortstr", '""'),
                    ("routing_key", "shortstr", '""'),
                    ("nowait", "bit", "False"),
                    ARGS,
                ],
            ),
            ("bind-ok", 21, False, False, []),
            (
                "purge",
                30,
                True,
                False,
                [
                    TICKET,
                    ("queue", "shortstr", '""'),
                    ("nowait", "bit", "False"),
                ],
            ),
            ("purge-ok", 31, False, False, [("message_count", "long", "0")]),
            (
                "delete",
                40,
                True,
                False,
                [
                    TICKET,
                    ("queue", "shortstr", '""'),
                    ("if_unused", "bit", "False"),
                    ("if_empty", "bit", "False"),
                    ("nowait", "bit", "False"),
                ],
            ),
            ("delete-ok", 41, False, False, [("message_count", "long", "0")]),
            (
                "unbind",
                50,
                True,
                False,
                [
                    TICKET,
                    ("queue", "shortstr", '""'),
                    ("exchange", "shortstr", '""'),
                    ("routing_key", "shortstr", '""'),
                    ARGS,
                ],
            ),
            ("unbind-ok", 51, False, False, []),
        ],
    ),
    (
        "basic",
        60,
        [
            (
                "qos",
                10,
                True,
                False,
                [
                    ("prefetch_size", "long", "0"),
                    ("prefetch_count", "short", "0"),
                    ("global_qos", "bit", "False"),
                ],
            ),
            ("qos-ok", 11, False, False, []),
            (
                "consume",
                20,
                True,
                False,
                [
                    TICKET,
                    ("queue", "shortstr", '""'),
                    ("consumer_tag", "shortstr", '""'),
                    ("no_local", "bit", "False"),
                    ("no_ack", "bit", "False"),
                    ("exclusive", "bit", "False"),
                    ("nowait", "bit", "False"),
                    ARGS,
                ],
            ),
            ("consume-ok", 21, False, False, [("consumer_tag", "shortstr", '""')]),
            (
                "cancel",
                30,
                True,
                False,
                [
                    ("consumer_tag", "shortstr", '""'),
                    ("nowait", "bit", "False"),
                ],
            ),
            ("cancel-ok", 31, False, False, [("consumer_tag", "shortstr", '""')]),
            (
                "publish",
                40,
                False,
                True,
                [
                    TICKET,
                    ("exchange", "shortstr", '""'),
                    ("routing_key", "shortstr", '""'),
                    ("mandatory", "bit", "False"),
                    ("immediate", "bit", "False"),
                ],
            ),
            (
                "return",
                50,
                False,
                True,
                [
                    ("reply_code", "short", "0"),
                    ("reply_text", "shortstr", '""'),
                    ("exchange", "shortstr", '""'),
                    ("routing_key", "shortstr", '""'),
                ],
            ),
            (
                "deliver",
                60,
                False,
                True,
                [
                    ("consumer_tag", "shortstr", '""'),
                    ("delivery_tag", "longlong", "0"),
                    ("redelivered", "bit", "False"),
                    ("exchange", "shortstr", '""'),
                    ("routing_key", "shortstr", '""'),
                ],
            ),
            (
                "get",
                70,
                True,
                False,
                [
                    TICKET,
                    ("queue", "shortstr", '""'),
                    ("no_ack", "bit", "False"),
                ],
            ),
            (
                "get-ok",
                71,
                False,
                True,
                [
                    ("delivery_tag", "longlong", "0"),
                    ("redelivered", "bit", "False"),
                    ("exchange", "shortstr", '""'),
                    ("routing_key", "shortstr", '""'),
                    ("message_count", "long", "0"),
                ],
            ),
            ("get-empty", 72, False, False, [("cluster_id", "shortstr", '""')]),
            (
                "ack",
                80,
                False,
                False,
                [
                    ("delivery_tag", "longlong", "0"),
                    ("multiple", "bit", "False"),
                ],
            ),
            (
                "reject",
                90,
                False,
                False,
                [
                    ("delivery_tag", "longlong", "0"),
                    ("requeue", "bit", "True"),
                ],
            ),
            ("recover-async", 100, False, False, [("requeue", "bit", "False")]),
            ("recover", 110, True, False, [("requeue", "bit", "False")]),
            ("recover-ok", 111, False, False, []),
            (
                "nack",
                120,
                False,
                False,
                [
                    ("delivery_tag", "longlong", "0"),
                    ("multiple", "bit", "False"),
                    ("requeue", "bit", "True"),
                ],
            ),
        ],
    ),
    (
        "confirm",
        85,
        [
            ("select", 10, True, False, [("nowait", "bit", "False")]),
            ("select-ok", 11, False, False, []),
        ],
    ),
    (
        "tx",
        90,
        [
            ("select", 10, True, False, []),
            ("select-ok", 11, False, False, []),
            ("commit", 20, True, False, []),
            ("commit-ok", 21, False, False, []),
            ("rollback", 30, True, False, []),
            ("rollback-ok", 31, False, False, []),
        ],
    ),
]

HAND_WRITTEN = {
    "basic.publish",
    "basic.return",
    "basic.deliver",
    "basic.get-ok",
    "basic.ack",
    "basic.reject",
    "basic.nack",
}

_PY_TYPE = {
    "octet": "int",
    "short": "int",
    "long": "int",
    "longlong": "int",
    "timestamp": "int",
    "bit": "bool",
    "shortstr": "str",
    "longstr": "bytes",
    "table": "dict[str, Any]",
}
_STRUCT_CODE = {"octet": "B", "short": "H", "long": "I", "longlong": "Q", "timestamp": "Q"}
_ENCODE_DOC = "The method payload after class-id and method-id."
_DECODE_DOC = "Decode the method payload (after class-id and method-id)."
_STRUCT_SIZE = {"B": 1, "H": 2, "I": 4, "Q": 8}

HEADER = '''"""AMQP 0.9.1 methods (all but the per-message basic ones): GENERATED, do not edit.

Generated by tools/gen_amqp_methods.py from the spec table in that file; change the table and
rerun the tool. The per-message methods (basic.publish, deliver, get-ok, return, ack, nack,
reject) are hand-written in ottermq/amqp/basic_hot.py.
"""

import struct
from dataclasses import dataclass, field
from typing import Any, Final, Self

from ottermq.amqp.method import Method, malformed
from ottermq.amqp.table import decode_table, encode_table
from ottermq.amqp.wire import DECODE_ERRORS, Buffer, pack_longstr, pack_shortstr, read_longstr, read_shortstr
'''


def class_name(cls: str, method: str) -> str:
    """``queue``, ``declare-ok`` -> ``QueueDeclareOk``."""
    return cls.capitalize() + "".join(p.capitalize() for p in method.split("-"))


def segments(fields: list[Field]) -> list[tuple[str, list[list[Field]]]]:
    """Group fields into ("fixed", [[field...] per struct item]) and ("var", [[field]]) runs.

    Inside a fixed run every struct item is one field, or one octet of up to 8 packed bits.
    """
    out: list[tuple[str, list[list[Field]]]] = []
    for f in fields:
        kind = f[1]
        if kind in ("shortstr", "longstr", "table"):
            out.append(("var", [[f]]))
            continue
        if not out or out[-1][0] != "fixed":
            out.append(("fixed", []))
        items = out[-1][1]
        if kind == "bit" and items and items[-1][0][1] == "bit" and len(items[-1]) < 8:
            items[-1].append(f)
        else:
            items.append([f])
    return out


def struct_format(items: list[list[Field]]) -> str:
    """The struct format of one fixed run."""
    return ">" + "".join("B" if item[0][1] == "bit" else _STRUCT_CODE[item[0][1]] for item in items)


def struct_name(fmt: str) -> str:
    """Module-level name of the precompiled struct for ``fmt``."""
    return "_S_" + fmt[1:]


def emit_dunders(fields: list[Field]) -> list[str]:
    """`__init__` written out and the `_FIELDS` that `Method.__repr__`/`__eq__` use: what `@dataclass`
    would make, without its exec of generated source per class at import (~1 ms a class, ~60 ms of
    every start-up)."""
    lines: list[str] = []
    if fields:
        params = []
        for fname, kind, default in fields:
            if kind == "table":
                params.append(f"{fname}: dict[str, Any] | None = None")
            else:
                params.append(f"{fname}: {_PY_TYPE[kind]} = {default}")
        signature = f"    def __init__(self, {', '.join(params)}) -> None:"
        if len(signature) <= 110:
            lines += ["", signature]
        else:
            lines += ["", "    def __init__("]
            lines.append("        self,")
            lines += [f"        {p}," for p in params]
            lines.append("    ) -> None:")
        for fname, kind, _default in fields:
            if kind == "table":
                lines.append(f"        self.{fname} = {{}} if {fname} is None else {fname}")
            else:
                lines.append(f"        self.{fname} = {fname}")
    names = ", ".join(f'"{f[0]}"' for f in fields) + ("," if len(fields) == 1 else "")
    line = f"    _FIELDS = ({names})"
    if len(line) <= 110:
        lines += ["", line]
    else:
        lines += ["", "    _FIELDS = ("] + [f'        "{f[0]}",' for f in fields] + ["    )"]
    return lines


def emit_method(cls: str, cls_id: int, m: MethodSpec, structs: set[str]) -> list[str]:
    """Source lines of one method class."""
    mname, mid, sync, content, fields = m
    name = class_name(cls, mname)
    lines = [
        "",
        "",
        "@dataclass(init=False, repr=False, eq=False, slots=True)",
        f"class {name}(Method):",
        f'    """{cls}.{mname} ({cls_id}, {mid})."""',
        "",
        f"    CLASS_ID = {cls_id}",
        f"    METHOD_ID = {mid}",
        f"    INDEX = {(cls_id << 16) | mid:#010x}",
        f'    NAME = "{cls}.{mname}"',
        f"    SYNCHRONOUS = {sync}",
        f"    HAS_CONTENT = {content}",
    ]
    if fields:
        lines.append("")
    for fname, kind, default in fields:
        if kind == "table":
            lines.append(f"    {fname}: dict[str, Any] = field(default_factory=dict)")
        else:
            lines.append(f"    {fname}: {_PY_TYPE[kind]} = {default}")
    lines += emit_dunders(fields)
    lines += ["", "    def encode(self) -> bytes:", f'        """{_ENCODE_DOC}"""']
    if not fields:
        lines += ['        return b""', "", "    @classmethod", "    def decode(cls, buf: Buffer) -> Self:"]
        lines += [f'        """{_DECODE_DOC}"""', "        return cls()"]
        return lines
    segs = segments(fields)
    parts: list[str] = []
    for kind, items in segs:
        if kind == "var":
            fname, ftype, _ = items[0][0]
            helper = {"shortstr": "pack_shortstr", "longstr": "pack_longstr", "table": "encode_table"}[ftype]
            parts.append(f"{helper}(self.{fname})")
        else:
            fmt = struct_format(items)
            structs.add(fmt)
            args = []
            for item in items:
                if item[0][1] != "bit":
                    args.append(f"self.{item[0][0]}")
                elif len(item) == 1:
                    args.append(f"1 if self.{item[0][0]} else 0")
                else:
                    terms = [f"({1 << i} if self.{f[0]} else 0)" for i, f in enumerate(item)]
                    args.append("\n                | ".join(terms))
            if any("\n" in a for a in args):
                inner = "".join(f"\n                {a}," for a in args)
                parts.append(f"{struct_name(fmt)}.pack({inner}\n            )")
            else:
                parts.append(f"{struct_name(fmt)}.pack({', '.join(args)})")
    if len(parts) == 1 and "\n" not in parts[0]:
        lines.append(f"        return {parts[0]}")
    else:
        lines.append('        return b"".join((')
        lines += [f"            {p}," for p in parts]
        lines.append("        ))")
    lines += [
        "",
        "    @classmethod",
        "    def decode(cls, buf: Buffer) -> Self:",
        '        """Decode the method payload (after class-id and method-id); 502 when malformed."""',
        "        try:",
    ]
    off = "0"
    bit_vars = 0
    values: dict[str, str] = {}
    for i, (kind, items) in enumerate(segs):
        last = i == len(segs) - 1
        target = "_" if last else "off"
        if kind == "var":
            fname, ftype, _ = items[0][0]
            reader = {"shortstr": "read_shortstr", "longstr": "read_longstr", "table": "decode_table"}[ftype]
            lines.append(f"            v_{fname}, {target} = {reader}(buf, {off})")
            values[fname] = f"v_{fname}"
            off = "off"
        else:
            fmt = struct_format(items)
            names = []
            for item in items:
                if item[0][1] == "bit":
                    var = f"bits{bit_vars}"
                    bit_vars += 1
                    names.append(var)
                    for j, f in enumerate(item):
                        values[f[0]] = f"bool({var} & {1 << j})"
                else:
                    names.append(f"v_{item[0][0]}")
                    values[item[0][0]] = f"v_{item[0][0]}"
            lhs = ", ".join(names) + ("," if len(names) == 1 else "")
            lines.append(f"            {lhs} = {struct_name(fmt)}.unpack_from(buf, {off})")
            size = sum(_STRUCT_SIZE[c] for c in fmt[1:])
            if not last:
                step = f"off = {size}" if off == "0" else f"off += {size}"
                lines.append(f"            {step}")
            off = "off"
    lines += ["        except DECODE_ERRORS as exc:", "            raise malformed(cls, exc) from None"]
    call = ", ".join(values[f[0]] for f in fields)
    if len(call) < 80:
        lines.append(f"        return cls({call})")
    else:
        lines.append("        return cls(")
        lines += [f"            {values[f[0]]}," for f in fields]
        lines.append("        )")
    return lines


def generate() -> str:
    """The whole generated module as source text."""
    structs: set[str] = set()
    body: list[str] = []
    names: list[str] = []
    for cls, cls_id, methods in SPEC:
        for m in methods:
            if f"{cls}.{m[0]}" in HAND_WRITTEN:
                continue
            names.append(class_name(cls, m[0]))
            body += emit_method(cls, cls_id, m, structs)
    out = [HEADER]
    for fmt in sorted(structs):
        out.append(f'{struct_name(fmt)}: Final = struct.Struct("{fmt}")')
    out += body
    out += ["", "", "GENERATED_METHODS: Final[tuple[type[Method], ...]] = ("]
    out += [f"    {n}," for n in names]
    out += [")", ""]
    exported = sorted(["GENERATED_METHODS", *names], key=lambda n: (not n.isupper(), n))
    out.insert(1, "__all__ = [\n" + "".join(f'    "{n}",\n' for n in exported) + "]\n")
    return "\n".join(out)


def main() -> None:
    """Write the generated module (path from argv[1], default ottermq/amqp/_generated.py)."""
    root = Path(__file__).resolve().parent.parent
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else root / "ottermq" / "amqp" / "_generated.py"
    target.write_text(generate())
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
