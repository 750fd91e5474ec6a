"""The durable store's content store: logged contents live in the log, the newest few also in memory.

Strategy: a logged content is known by its id and its location in the log (`loc`, see codec.pack_loc);
its bytes are in memory only while resident: just published, or read back for a delivery. Resident
contents form an LRU bounded by `resident_limit` bytes; past it the least recently used are dropped (they
are durable and read back on the next use), so a backlog of millions costs an id, a location and a
reference count each. Reading back checks that the record found there is that message's own publish
(journal.read_content). Transient contents stay in memory, as in the base class.

The locations are node-local facts (compaction moves records, a follower's log lies elsewhere): they are
kept here, not in the queues' records, so `relocate` and `locs` touch one map.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Final

from memento.errors import MementoError
from ottermq.broker.content import Contents, UnknownContent, UnreadableContent
from ottermq.broker.memory import MESSAGE_OVERHEAD, MemoryAccount
from ottermq.broker.message import Message
from ottermq.store.codec import CodecError, unpack_loc

# Contents of logged messages kept in memory at most (then the least recently used are dropped).
RESIDENT_BYTES: Final = 32 * 1024 * 1024
# What a resident content costs beyond its body and properties.
_OVERHEAD: Final = 128

Reader = Callable[[int, int], tuple[str, str, bytes, bytes]]


def _cost(message: Message) -> int:
    return message.body_size + len(message.properties) + _OVERHEAD


class LogContents(Contents):
    """Contents by id; logged ones read back from the log through `reader(msg_id, loc)`."""

    def __init__(
        self, reader: Reader, account: MemoryAccount | None = None, resident_limit: int = RESIDENT_BYTES
    ) -> None:
        super().__init__(account)
        self._reader = reader
        self.resident_limit = resident_limit
        # Every held logged content's location (0 until a transaction's commit sets it).
        self._locs: dict[int, int] = {}
        # Logged contents in memory, least recently used first.
        self._resident: OrderedDict[int, Message] = OrderedDict()
        self.evicted_bytes = 0  # since the store last looked (it then returns freed memory to the system)

    def __len__(self) -> int:
        return len(self._memory) + len(self._locs)

    def __contains__(self, msg_id: int) -> bool:
        return msg_id in self._locs or msg_id in self._memory

    def is_resident(self, msg_id: int) -> bool:
        return msg_id in self._memory or msg_id in self._resident

    def put_logged(self, msg_id: int, message: Message, loc: int, refs: int) -> None:
        self._locs[msg_id] = loc
        if refs != 1:
            self._refs[msg_id] = refs
        self._keep(msg_id, message)

    def add_logged(self, msg_id: int, loc: int, size: int, refs: int) -> None:
        self._locs[msg_id] = loc
        if refs != 1:
            self._refs[msg_id] = refs

    def add_logged_many(self, ids: list[int], locs: list[int]) -> None:
        known = self._locs
        if not known.keys().isdisjoint(ids):
            for msg_id in ids:
                if msg_id in known:
                    self.retain(msg_id)
        known.update(zip(ids, locs, strict=True))

    def set_loc(self, msg_id: int, loc: int) -> None:
        if msg_id in self._locs:
            self._locs[msg_id] = loc

    def release(self, msg_id: int) -> None:
        # The reference counting of Contents.release, repeated rather than called: this runs once per
        # message delivered or settled, and a super() call there cost more than the rest of it.
        refs = self._refs
        if refs:
            count = refs.get(msg_id)
            if count is not None:
                if count > 2:
                    refs[msg_id] = count - 1
                else:
                    del refs[msg_id]
                return
        if msg_id < 0 or self._locs.pop(msg_id, None) is None:
            # Transient (or a logged content held in memory only): the base class's count.
            message = self._memory.pop(msg_id, None)
            if message is not None:
                self.account.held_bytes -= message.body_size + MESSAGE_OVERHEAD
            return
        message = self._resident.pop(msg_id, None)
        if message is not None:
            self.resident_bytes -= _cost(message)
            self.evicted_bytes += _cost(message)

    def get(self, msg_id: int) -> Message:
        if msg_id < 0:  # transient: the base class's map, read here without a super() call
            try:
                return self._memory[msg_id]
            except KeyError:
                raise UnknownContent(f"message {msg_id} is not held by the content store") from None
        message = self._resident.get(msg_id)
        if message is not None:
            self._resident.move_to_end(msg_id)
            return message
        loc = self._locs.get(msg_id)
        if loc is None:
            return super().get(msg_id)
        if not loc:
            raise UnknownContent(f"message {msg_id} has no location in the log yet")
        try:
            exchange, routing_key, properties, body = self._reader(msg_id, loc)
        except (CodecError, MementoError, OSError) as exc:
            segment, offset, index = unpack_loc(loc)
            raise UnreadableContent(
                f"message {msg_id} (segment {segment} offset {offset} index {index}): {exc}"
            ) from exc
        message = Message(exchange, routing_key, properties, body, True)
        self._keep(msg_id, message)
        return message

    def _keep(self, msg_id: int, message: Message) -> None:
        """Hold a logged content in memory, dropping the least recently used past the budget (never one
        whose location is not known yet: it could not be read back)."""
        self._resident[msg_id] = message
        self.resident_bytes += _cost(message)
        if self.resident_bytes > self.resident_limit:
            self.evict()

    def evict(self) -> None:
        """Drop resident contents, least recently used first, until a quarter of the budget is free."""
        resident = self._resident
        locs = self._locs
        target = self.resident_limit * 3 // 4
        skipped: list[tuple[int, Message]] = []
        while self.resident_bytes > target and resident:
            msg_id, message = resident.popitem(last=False)
            if not locs.get(msg_id):
                skipped.append((msg_id, message))
                continue
            cost = _cost(message)
            self.resident_bytes -= cost
            self.evicted_bytes += cost
        for msg_id, message in skipped:
            resident[msg_id] = message

    @property
    def locations(self) -> Mapping[int, int]:
        return self._locs

    def relocate(self, moved: dict[int, int], index_mask: int) -> None:
        locs = self._locs
        for msg_id, loc in locs.items():
            new = moved.get(loc & ~index_mask)
            if new is not None:
                locs[msg_id] = new | (loc & index_mask)
