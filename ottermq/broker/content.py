"""The content store: the one owner of message bodies, by message id, with explicit reference counts.

Strategy: queues never hold a message's content, only `QueueEntry` records naming it by id; whoever needs
the content (a delivery, basic.get, dead lettering) asks the store with `get(id)`. The store counts the
references as RabbitMQ's message store does: a publish is added with one reference per queue entry made
for it (at routing, or when a replayed publish joins its queues), and each entry gives its reference back
when it leaves its queue for good (ack, reject, expiry, length limit, purge, queue deletion, a nacked
publish). At zero the content is dropped, so "is this message still alive?" is a question with an exact,
explicit answer, never a guess about the interpreter.

Ids: a logged message's id is its publish's id in the log (> 0, `events.message_id`); a transient one gets
the next negative number. This class keeps every content in memory, which is all a broker without a log
can do; the durable store's `LogContents` (store/contents.py) keeps only the newest logged contents in
memory and reads the others back from the log by their location.

Memory: transient contents are counted in the broker's `MemoryAccount.held_bytes` from `put` to their
last release (the memory alarm reads it); logged ones in `resident_bytes` while held in memory.
"""

from __future__ import annotations

from collections.abc import Mapping

from ottermq.broker.deadletter import DeadLettered
from ottermq.broker.memory import MESSAGE_OVERHEAD, MemoryAccount
from ottermq.broker.message import Message


class UnreadableContent(Exception):
    """A content that cannot be served: not held, or its record in the log is damaged or not its own.
    The text names the message and, for a logged one, where it lies."""


class UnknownContent(UnreadableContent, LookupError):
    """A content asked for by an id the store does not hold (released already, or never added)."""


class Contents:
    """Message contents by id, each with its reference count; everything in memory."""

    def __init__(self, account: MemoryAccount | None = None) -> None:
        self.account = account if account is not None else MemoryAccount()
        # Contents held in memory by id: every transient one; logged ones as the subclass decides.
        self._memory: dict[int, Message] = {}
        # Reference counts above one (a content without an entry here has exactly one): at a million
        # held messages routed to one queue each, the map stays empty.
        self._refs: dict[int, int] = {}
        self._last_transient = 0
        # Bytes of logged contents held in memory (the subclass evicts them past its budget).
        self.resident_bytes = 0
        # Messages dropped because their content could not be read (Queue.unreadable), since start.
        self.unreadable = 0
        # Messages dead-lettered or dropped for it, by reason (Queue._dead_letter, Queue.settle): the
        # node-wide object every queue reaches.
        self.dead_lettered = DeadLettered()

    def __len__(self) -> int:
        """How many contents are held."""
        return len(self._memory)

    def __contains__(self, msg_id: int) -> bool:
        return msg_id in self._memory

    def is_resident(self, msg_id: int) -> bool:
        """True when the content is held in memory (a get needs no read from the log)."""
        return msg_id in self._memory

    def refs(self, msg_id: int) -> int:
        """The reference count of `msg_id` (0: not held)."""
        if msg_id not in self:
            return 0
        return self._refs.get(msg_id, 1)

    # -- adding ---------------------------------------------------------------------------------------

    def put(self, message: Message, refs: int) -> int:
        """Add a transient content with `refs` references; its new (negative) id."""
        self._last_transient = msg_id = self._last_transient - 1
        self._memory[msg_id] = message
        if refs != 1:
            self._refs[msg_id] = refs
        self.account.held_bytes += message.body_size + MESSAGE_OVERHEAD
        return msg_id

    def put_logged(self, msg_id: int, message: Message, loc: int, refs: int) -> None:
        """Add a logged content that is in memory (just published), lying at `loc` in the log (0: not
        known yet, see `set_loc`)."""
        self._memory[msg_id] = message
        if refs != 1:
            self._refs[msg_id] = refs
        self.account.held_bytes += message.body_size + MESSAGE_OVERHEAD

    def add_logged(self, msg_id: int, loc: int, size: int, refs: int) -> None:
        """Add a logged content that stays in the log (a replayed publish or a snapshot's index)."""
        raise UnknownContent(f"message {msg_id}: this content store cannot read contents back from a log")

    def add_logged_many(self, ids: list[int], locs: list[int]) -> None:
        """`add_logged` in bulk, one reference each (a snapshot's index of one queue; an id already held,
        from another queue's index, gains a reference)."""
        raise UnknownContent("this content store cannot read contents back from a log")

    def set_loc(self, msg_id: int, loc: int) -> None:
        """Where a logged content lies, once known (a transaction's publishes learn it at commit)."""

    # -- references -----------------------------------------------------------------------------------

    def retain(self, msg_id: int, count: int = 1) -> None:
        """`count` more references to a held content."""
        if count:
            self._refs[msg_id] = self._refs.get(msg_id, 1) + count

    def release(self, msg_id: int) -> None:
        """One reference less; at zero the content is dropped. Id 0 (an entry whose reference its queue
        already gave back, see `Queue.drop`) is ignored."""
        refs = self._refs
        if refs:
            count = refs.get(msg_id)
            if count is not None:
                if count > 2:
                    refs[msg_id] = count - 1
                else:
                    del refs[msg_id]
                return
        message = self._memory.pop(msg_id, None)
        if message is not None:
            self.account.held_bytes -= message.body_size + MESSAGE_OVERHEAD

    # -- reading --------------------------------------------------------------------------------------

    def get(self, msg_id: int) -> Message:
        """The content of `msg_id` (UnknownContent when it is not held)."""
        try:
            return self._memory[msg_id]
        except KeyError:
            raise UnknownContent(f"message {msg_id} is not held by the content store") from None

    # -- log locations (none here) ----------------------------------------------------------------------

    @property
    def locations(self) -> Mapping[int, int]:
        """Where each held logged content lies in the log, by id (what keeps their records alive)."""
        return {}

    def relocate(self, moved: dict[int, int], index_mask: int) -> None:
        """Compaction moved records: `moved` maps old record locations (index bits clear) to new ones."""
