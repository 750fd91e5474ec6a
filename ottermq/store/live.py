"""The set of log records that still hold a live message, as a sorted packed array.

Strategy: space reclamation asks "is the record at (segment, offset) live?" once per record of every
covered segment, and a start-up after a clean stop asks it about the whole backlog. A `set` of a million
record keys costs ~100 MiB of int objects and hash table for the second it is needed (and glibc keeps
much of it afterwards); a sorted `array('Q')` costs 8 bytes a key. Reclamation walks the segments oldest
first and each segment's records in order, so lookups come in ascending order: a cursor that only moves
forward answers each in O(1), with a binary search for anything out of order.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections.abc import Iterable
from itertools import pairwise

from ottermq.store.codec import OFFSET_SHIFT


class LiveRecords:
    """An immutable set of record keys (`codec.record_key`) with fast ascending-order membership tests.

    Keys are held without their (zero) index bits, so they fit 64 bits for any segment number < 2**32.
    """

    __slots__ = ("_cursor", "_keys")

    def __init__(self, keys: Iterable[int]) -> None:
        packed = array("Q", (key >> OFFSET_SHIFT for key in keys))
        if any(a > b for a, b in pairwise(packed)):
            packed = array("Q", sorted(packed))
        self._keys = packed
        self._cursor = 0

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, int):
            return False
        key >>= OFFSET_SHIFT
        keys = self._keys
        size = len(keys)
        cursor = self._cursor
        # Invariant: every key before the cursor is below the last key asked about.
        if cursor > 0 and keys[cursor - 1] >= key:
            # Out of order: search the whole array.
            cursor = bisect_left(keys, key)
        else:
            # In order: skip the keys of records that reclamation did not ask about.
            while cursor < size and keys[cursor] < key:
                cursor += 1
        self._cursor = cursor
        return cursor < size and keys[cursor] == key
