"""Records of every size read back by position: small and large, in and out of order, written and staged.

Reads that move forward through a segment are served from a window; a record longer than the window (or
starting near its end) must still be read whole. These tests mix sizes from 0 B to several MiB around the
window's and the read-ahead's edges.
"""

from __future__ import annotations

import random
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memento.log import _READ_AHEAD, _WINDOW, Log
from memento.record import HEAD_SIZE, RecordPosition

# Sizes at the edges of the reader's buffers, and a few large ones.
EDGES = sorted(
    {
        0,
        1,
        _READ_AHEAD - HEAD_SIZE - 1,
        _READ_AHEAD - HEAD_SIZE,
        _READ_AHEAD - HEAD_SIZE + 1,
        _WINDOW - HEAD_SIZE - 1,
        _WINDOW - HEAD_SIZE,
        _WINDOW - HEAD_SIZE + 1,
        _WINDOW,
        400_000,
        2 * _WINDOW + 3,
        3 << 20,
    }
)
SEG = 1 << 20


def payload(i: int, size: int) -> bytes:
    return random.Random(i).randbytes(size)


def write_all(log: Log, sizes: list[int]) -> list[RecordPosition]:
    positions = []
    for i, size in enumerate(sizes):
        log.append(1, payload(i, size))
        positions.append(log.last_position)
    return positions


def test_alternating_small_and_large_records_read_forward(tmp_path: Path) -> None:
    """The reported case: 1 KB and 400 KB records alternating, read back in log order after a sync."""
    sizes = [1000 if i % 2 == 0 else 400_000 for i in range(60)]
    with Log.open(tmp_path, segment_size=8 << 20) as log:
        positions = write_all(log, sizes)
        log.sync()
        for i, position in enumerate(positions):
            record = log.read(position)
            assert record.payload == payload(i, sizes[i]), i
            assert record.lsn == i + 1


def test_edge_sizes_in_every_order(tmp_path: Path) -> None:
    sizes = EDGES * 3
    with Log.open(tmp_path, segment_size=SEG) as log:
        positions = write_all(log, sizes)
        log.sync()
        order = list(range(len(sizes)))
        for shuffled in (order, order[::-1], random.Random(7).sample(order, len(order))):
            for i in shuffled:
                assert log.read(positions[i]).payload == payload(i, sizes[i]), (i, sizes[i])
    with Log.open(tmp_path, segment_size=SEG) as log:
        for i in order:
            assert log.read(positions[i]).payload == payload(i, sizes[i])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    sizes=st.lists(st.one_of(st.sampled_from(EDGES), st.integers(0, 600_000)), min_size=1, max_size=12),
    reads=st.lists(st.integers(0, 1000), max_size=30),
    sync_first=st.booleans(),
)
def test_any_sizes_any_read_order(
    tmp_path_factory: object, sizes: list[int], reads: list[int], sync_first: bool
) -> None:
    """Whatever the sizes and the order of reads, staged or written, a read returns the record whole."""
    path = tmp_path_factory.mktemp("log")  # type: ignore[attr-defined]
    with Log.open(path, segment_size=SEG) as log:
        positions = write_all(log, sizes)
        if sync_first:
            log.sync()
        for i in list(range(len(sizes))) + [r % len(sizes) for r in reads]:
            record = log.read(positions[i])
            assert record.payload == payload(i, sizes[i])
            assert record.lsn == i + 1


def test_sixteen_mib_record(tmp_path: Path) -> None:
    with Log.open(tmp_path, segment_size=SEG) as log:
        positions = write_all(log, [10, 16 << 20, 10, 5 << 20])
        log.sync()
        for i, size in enumerate([10, 16 << 20, 10, 5 << 20]):
            assert log.read(positions[i]).payload == payload(i, size)
