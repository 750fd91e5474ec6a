"""Live brokers over a real log for the store tests, without an event loop.

A broker made here writes through a real MementoJournal (staged appends; a test flushes them with
`log.sync()`) and owns its contents in a LogContents reading back from that log: what `ottermq serve`
builds, minus the store's background task.
"""

from __future__ import annotations

from memento.log import Log
from memento.record import Record, RecordPosition
from ottermq.broker.broker import Broker
from ottermq.store.contents import RESIDENT_BYTES, LogContents
from ottermq.store.journal import MementoJournal
from ottermq.store.snapshot import QueueIndex, index_of


class CountingLog:
    """Counts `Log.read` calls on one open log (the only way a content comes back from disk)."""

    def __init__(self, log: Log) -> None:
        self.reads = 0
        read = log.read

        def counted(position: RecordPosition) -> Record:
            self.reads += 1
            return read(position)

        log.read = counted  # type: ignore[method-assign]


def live_broker(log: Log, resident_limit: int = RESIDENT_BYTES) -> Broker:
    """A broker with the default vhost, journaling to `log`, keeping at most `resident_limit` bytes of
    logged contents in memory."""
    journal = MementoJournal(log)
    return Broker(journal=journal, contents=LogContents(journal.read_content, resident_limit=resident_limit))


def log_contents(broker: Broker) -> LogContents:
    """The broker's content store (one made by `live_broker` or `DurableStore.new_broker`)."""
    contents = broker.contents
    assert isinstance(contents, LogContents)
    return contents


def snapshot_indexes(broker: Broker) -> list[QueueIndex]:
    """The queue indexes a snapshot of `broker` holds, as the store makes them."""
    locations = broker.contents.locations
    return [
        index_of(vhost.name, queue.name, queue.logged_entries(), locations)
        for vhost in broker.vhosts.values()
        for queue in vhost.queues.values()
        if queue.durable and queue.logged_count
    ]
