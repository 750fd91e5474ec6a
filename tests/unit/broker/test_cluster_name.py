"""The cluster name (PUT /api/cluster-name): journaled, replayed, kept in snapshots."""

from __future__ import annotations

import pytest

from ottermq.broker.access import AccessError
from ottermq.broker.broker import Broker
from ottermq.broker.events import ClusterNameSet
from ottermq.store import codec
from tests.unit.broker.test_vhost_limits import RecordingJournal, rebuilt


def test_the_cluster_name_replays_and_survives_a_snapshot() -> None:
    journal = RecordingJournal()
    broker = Broker(journal=journal)
    assert broker.cluster_name is None
    assert not any(isinstance(event, ClusterNameSet) for event in broker.durable_events())
    broker.set_cluster_name("first")
    broker.set_cluster_name("prod-1")
    assert broker.cluster_name == "prod-1"
    # Through the store's record encoding, as the log and the snapshot hold them.
    decoded = [codec.decode(*codec.encode(event)) for event in journal.events]
    for events in (decoded, broker.durable_events()):
        assert rebuilt(events).cluster_name == "prod-1"


def test_a_failed_journal_refuses_the_name() -> None:
    broker = Broker()
    broker.journal.failed = True  # type: ignore[misc]
    with pytest.raises(AccessError) as caught:
        broker.set_cluster_name("x")
    assert caught.value.kind == "unavailable"
    assert broker.cluster_name is None
