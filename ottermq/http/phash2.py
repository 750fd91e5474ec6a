"""Erlang's `erlang:phash2/2` for the terms RabbitMQ holds binding arguments as, so a binding's
`properties_key` is RabbitMQ's: `~` and the base64url of `<<(erlang:phash2(Args, 1 bsl 32)):32>>`
(rabbit_mgmt_format:args_hash).

Strategy: phash2 is ERTS's `make_hash2` (erl_term_hashing.c), a portable hash documented as stable across
releases: Bob Jenkins' 96-bit mix over the term's structure, walked depth first. Only the term types a
field table holds are hashed here: lists, tuples, binaries, atoms, integers and floats. A field table is
RabbitMQ's list of `{Name, Type, Value}` tuples, sorted by name at the top level (rabbit_misc
sort_field_table, as RabbitMQ stores binding arguments); arrays are lists of `{Type, Value}`. Checked
against `erl` for every type (tests/unit/http/test_phash2.py holds the values it printed).
"""

from __future__ import annotations

import base64
import datetime
import decimal
import struct
from collections.abc import Mapping
from typing import Any, Final

from ottermq.amqp.table import Long

_MASK: Final = 0xFFFFFFFF
_HCONST: Final = 0x9E3779B9
_HCONST_2: Final = 0x3C6EF372
_HCONST_3: Final = 0xDAA66D2B
_HCONST_4: Final = 0x78DDE6E4
_HCONST_9: Final = 0x8FF34781
_HCONST_10: Final = 0x2E2AC13A
_HCONST_11: Final = 0xCC623AF3
_HCONST_12: Final = 0x6A99B4AC
_HCONST_13: Final = 0x08D12E65
# ERTS's type code of [] (NIL_DEF).
_NIL_DEF: Final = 2
# A 64-bit node's small integers: signed 60 bits; beyond, bignums.
_SMALL_BITS: Final = 59


class Atom(str):
    """An Erlang atom (a str of its name)."""

    __slots__ = ()


def _hash2(first: int, second: int, const: int, hash_: int) -> int:
    """ERTS's UINT32_HASH_2: two words mixed into the running hash."""
    return _mix3((const + first) & _MASK, (const + second) & _MASK, hash_)[2]


def _block_hash(data: bytes, initval: int) -> int:
    a = b = _HCONST
    c = initval
    whole = len(data) - len(data) % 12
    for i in range(0, whole, 12):
        x, y, z = struct.unpack_from("<III", data, i)
        a = (a + x) & _MASK
        b = (b + y) & _MASK
        c = (c + z) & _MASK
        a, b, c = _mix3(a, b, c)
    tail = data[whole:] + bytes(12 - len(data) + whole)
    x, y, z = struct.unpack("<III", tail)
    # the final block's c leaves its low byte to the length
    c = (c + len(data) + (z << 8)) & _MASK
    a = (a + x) & _MASK
    b = (b + y) & _MASK
    return _mix3(a, b, c)[2]


def _mix3(a: int, b: int, c: int) -> tuple[int, int, int]:
    """Jenkins' 96-bit mix of three 32-bit words."""
    a = (a - b - c) & _MASK
    a ^= c >> 13
    b = (b - c - a) & _MASK
    b ^= (a << 8) & _MASK
    c = (c - a - b) & _MASK
    c ^= b >> 13
    a = (a - b - c) & _MASK
    a ^= c >> 12
    b = (b - c - a) & _MASK
    b ^= (a << 16) & _MASK
    c = (c - a - b) & _MASK
    c ^= b >> 5
    a = (a - b - c) & _MASK
    a ^= c >> 3
    b = (b - c - a) & _MASK
    b ^= (a << 10) & _MASK
    c = (c - a - b) & _MASK
    c ^= b >> 15
    return a, b, c


def _atom_hash(name: str) -> int:
    """ERTS's atom hash: hashpjw over the name's latin-1 characters."""
    h = 0
    for char in name:
        h = ((h << 4) + ord(char)) & _MASK
        g = h & 0xF0000000
        if g:
            h ^= g >> 24
            h ^= g
    return h


def _integer(value: int, hash_: int) -> int:
    if -(1 << 27) <= value < 1 << 27:
        if value < 0:
            hash_ = _hash2(-value, 0, _HCONST, hash_)
        return _hash2(value & _MASK, 0, _HCONST, hash_)
    const = _HCONST_10 if value < 0 else _HCONST_11
    magnitude = -value if value < 0 else value
    if magnitude < 1 << _SMALL_BITS or value == -(1 << _SMALL_BITS):
        return _hash2(magnitude & _MASK, (magnitude >> 32) & _MASK, const, hash_)
    while True:  # a bignum: its 64-bit digits, low first
        hash_ = _hash2(magnitude & _MASK, (magnitude >> 32) & _MASK, const, hash_)
        magnitude >>= 64
        if not magnitude:
            return hash_


def phash2(term: Any) -> int:
    """erlang:phash2(Term, 1 bsl 32) for lists, tuples, bytes (binaries), Atoms, ints and floats."""
    if isinstance(term, Atom):
        return _atom_hash(term)
    hash_ = 0
    stack: list[Any] = []
    while True:
        if isinstance(term, list):
            shift = count = 0
            while term and type(term[0]) is int and 0 <= term[0] <= 255:  # a string's bytes, 4 at a time
                shift = ((shift << 8) + term[0]) & _MASK
                if count == 3:
                    hash_ = _hash2(shift, 0, _HCONST_4, hash_)
                    shift = count = 0
                else:
                    count += 1
                term = term[1:]
            if count:
                hash_ = _hash2(shift, 0, _HCONST_4, hash_)
            if term:
                stack.append(term[1:])
                term = term[0]
                continue
            hash_ = _hash2(_NIL_DEF, 0, _HCONST_2, hash_)  # the list's end, []
            term = None
        elif isinstance(term, tuple):
            hash_ = _hash2(len(term), 0, _HCONST_9, hash_)
            if term:
                stack.extend(reversed(term[1:]))
                term = term[0]
            else:
                term = None
        elif isinstance(term, Atom):
            atom = _atom_hash(term)
            hash_ = atom if hash_ == 0 else _hash2(atom, 0, _HCONST_3, hash_)
            term = None
        elif isinstance(term, bool):
            raise TypeError("booleans are atoms: Atom('true') or Atom('false')")
        elif isinstance(term, int):
            hash_ = _integer(term, hash_)
            term = None
        elif isinstance(term, bytes):
            const = (_HCONST_13 + hash_) & _MASK
            hash_ = _block_hash(term, const) if term else const
            term = None
        elif isinstance(term, float):
            bits = struct.unpack("<Q", struct.pack("<d", term + 0.0))[0]  # -0.0 hashes as 0.0
            hash_ = _hash2(bits >> 32, bits & _MASK, _HCONST_12, hash_)
            term = None
        else:
            raise TypeError(f"no Erlang term for {type(term).__name__}")
        if term is None:
            if not stack:
                return hash_
            term = stack.pop()


# -- RabbitMQ's field tables -------------------------------------------------------------------------------

_INT32: Final = (-(1 << 31), (1 << 31) - 1)


def _typed(value: Any) -> tuple[Atom, Any]:
    """{Type, Value} of one field-table value, as rabbit_binary_parser decodes it."""
    if isinstance(value, bool):
        return Atom("bool"), Atom("true" if value else "false")
    if isinstance(value, Long):
        return Atom("long"), int(value)
    if isinstance(value, int):
        # The types a small integer came in ('b', 's', 'u'...) are not kept: 'I' is what clients send.
        return (Atom("signedint") if _INT32[0] <= value <= _INT32[1] else Atom("long")), value
    if isinstance(value, str):
        return Atom("longstr"), value.encode("utf-8")
    if isinstance(value, bytes):
        return Atom("binary"), value
    if isinstance(value, float):
        return Atom("double"), value
    if value is None:
        return Atom("void"), Atom("undefined")
    if isinstance(value, Mapping):
        return Atom("table"), _table(value)
    if isinstance(value, list | tuple):
        return Atom("array"), [_typed(item) for item in value]
    if isinstance(value, datetime.datetime):
        return Atom("timestamp"), int(value.timestamp())
    if isinstance(value, decimal.Decimal):
        sign, digits, exponent = value.as_tuple()
        unscaled = int("".join(map(str, digits)) or "0") * (-1 if sign else 1)
        return Atom("decimal"), (-int(exponent), unscaled)
    return Atom("longstr"), str(value).encode("utf-8")


def _table(table: Mapping[str, Any]) -> list[tuple[bytes, Atom, Any]]:
    return [(str(name).encode("utf-8"), *_typed(value)) for name, value in table.items()]


def args_hash(arguments: Mapping[str, Any]) -> str:
    """rabbit_mgmt_format:args_hash: the base64url (unpadded) of the 32-bit phash2 of the arguments as
    RabbitMQ stores them (the top level sorted by name)."""
    term = sorted(_table(arguments), key=lambda entry: entry[0])
    digest = phash2(term).to_bytes(4, "big")
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")
