"""SnapshotStore: round trips, fallback to the previous snapshot on damage, missing and unreadable stores."""

from __future__ import annotations

import os
import struct
import time
from pathlib import Path

import lmdb
import pytest

from memento.snapshot import (
    CHUNK_INPUT_SIZE,
    CHUNK_KEY,
    CHUNK_PREFIX,
    LSN_KEY,
    MANIFEST_PREFIX,
    STATUS_DAMAGED,
    STATUS_EMPTY,
    STATUS_FALLBACK,
    STATUS_MISSING,
    STATUS_OK,
    STATUS_UNREADABLE,
    SnapshotError,
    SnapshotStore,
)


def corrupt(path: Path, key: bytes, offset: int = 0) -> None:
    """Flip one byte of the value under `key`, bypassing the store (as bit rot would)."""
    env = lmdb.open(str(path), subdir=True)
    with env.begin(write=True) as txn:
        value = bytearray(txn.get(key) or b"")
        value[offset] ^= 0x40
        txn.put(key, bytes(value))
    env.close()


def test_round_trip(tmp_path: Path) -> None:
    state = os.urandom(1000) * 3000  # several chunks, compressible
    with SnapshotStore(tmp_path / "snap") as store:
        store.save(42, state)
        loaded = store.load_latest()
        assert loaded is not None and loaded.lsn == 42 and loaded.state == state
        assert store.status == STATUS_OK and store.fallback_reason is None
        (info,) = store.list()
        assert info.lsn == 42 and info.raw_size == len(state) and info.damage is None
        assert len(info.chunks) == -(-len(state) // CHUNK_INPUT_SIZE)
        assert store.verify(info) is None
    with SnapshotStore(tmp_path / "snap", readonly=True) as again:
        loaded = again.load_latest()
        assert loaded is not None and loaded.state == state


def test_empty_state_round_trips(tmp_path: Path) -> None:
    with SnapshotStore(tmp_path) as store:
        store.save(7, b"")
        loaded = store.load_latest()
        assert loaded is not None and loaded.lsn == 7 and loaded.state == b""


def test_keeps_previous_and_deletes_older(tmp_path: Path) -> None:
    with SnapshotStore(tmp_path) as store:
        for lsn in (10, 20, 30, 40):
            store.save(lsn, f"state at {lsn}".encode() * 100)
        assert [i.lsn for i in store.list()] == [30, 40]
        store.save(40, b"replaced")
        assert [i.lsn for i in store.list()] == [30, 40]
        loaded = store.load_latest()
        assert loaded is not None and loaded.state == b"replaced"
        with pytest.raises(SnapshotError, match="older"):
            store.save(5, b"x")
        env = store._env
        assert env is not None
        with env.begin() as txn:  # no orphaned chunks of the deleted snapshots
            lsns = {LSN_KEY.unpack(bytes(k)[:9])[1] for k, _ in txn.cursor()}
        assert lsns == {30, 40}


def test_million_entry_state_is_fast(tmp_path: Path) -> None:
    # About what a projection of 1M small entries weighs: 1M x (id, queue, offset) tuples.
    entry = struct.Struct(">QIQ")
    state = b"".join(entry.pack(i, i % 17, i * 1024) for i in range(1_000_000))
    with SnapshotStore(tmp_path) as store:
        started = time.perf_counter()
        store.save(1_000_000, state)
        saved = time.perf_counter()
        loaded = store.load_latest()
        done = time.perf_counter()
    assert loaded is not None and loaded.state == state
    assert saved - started < 3.0 and done - saved < 2.0


def test_bad_newest_chunk_falls_back(tmp_path: Path) -> None:
    with SnapshotStore(tmp_path) as store:
        store.save(100, b"old" * 1000)
        store.save(200, b"new" * 1000)
    corrupt(tmp_path, CHUNK_KEY.pack(CHUNK_PREFIX, 200, 0), offset=5)
    with SnapshotStore(tmp_path) as store:
        loaded = store.load_latest()
        assert loaded is not None and loaded.lsn == 100 and loaded.state == b"old" * 1000
        assert store.status == STATUS_FALLBACK
        assert store.fallback_reason is not None and "snapshot 200: chunk 0/1 checksum mismatch" in (
            store.fallback_reason
        )
        assert store.verify(store.list()[-1]) is not None


def test_bad_newest_manifest_falls_back(tmp_path: Path) -> None:
    with SnapshotStore(tmp_path) as store:
        store.save(100, b"old")
        store.save(200, b"new")
    corrupt(tmp_path, LSN_KEY.pack(MANIFEST_PREFIX, 200), offset=20)
    with SnapshotStore(tmp_path) as store:
        loaded = store.load_latest()
        assert loaded is not None and loaded.lsn == 100
        assert store.fallback_reason is not None and "manifest checksum mismatch" in store.fallback_reason


def test_all_damaged_gives_none(tmp_path: Path) -> None:
    with SnapshotStore(tmp_path) as store:
        store.save(100, b"only")
    corrupt(tmp_path, CHUNK_KEY.pack(CHUNK_PREFIX, 100, 0))
    with SnapshotStore(tmp_path) as store:
        assert store.load_latest() is None
        assert store.status == STATUS_DAMAGED and store.fallback_reason


def test_missing_env_gives_none_and_creates_nothing(tmp_path: Path) -> None:
    path = tmp_path / "snapshots"
    with SnapshotStore(path) as store:
        assert not store.exists
        assert store.load_latest() is None
        assert store.status == STATUS_MISSING
        assert store.fallback_reason is not None and "missing" in store.fallback_reason
        assert store.list() == []
    assert not path.exists()
    with SnapshotStore(path) as store:  # the first save creates it
        store.save(1, b"x")
        assert store.load_latest() is not None


def test_empty_env_is_not_missing(tmp_path: Path) -> None:
    lmdb.open(str(tmp_path)).close()
    with SnapshotStore(tmp_path) as store:
        assert store.load_latest() is None
        assert store.status == STATUS_EMPTY and store.fallback_reason is None


def test_unreadable_env_gives_none(tmp_path: Path) -> None:
    (tmp_path / "data.mdb").write_bytes(b"not an lmdb file at all" * 300)
    with SnapshotStore(tmp_path) as store:
        assert store.load_latest() is None
        assert store.status == STATUS_UNREADABLE
        with pytest.raises(SnapshotError):
            store.save(1, b"x")


def test_readonly_store_writes_nothing(tmp_path: Path) -> None:
    with SnapshotStore(tmp_path) as store:
        store.save(3, b"abc")
    (tmp_path / "lock.mdb").unlink()
    before = {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    with SnapshotStore(tmp_path, readonly=True) as store:
        assert store.load_latest() is not None
        with pytest.raises(SnapshotError, match="read-only"):
            store.save(4, b"x")
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()} == before


def test_grows_map_when_full(tmp_path: Path) -> None:
    with SnapshotStore(tmp_path) as store:
        store.save(1, b"seed")
        env = store._env
        assert env is not None
        env.set_mapsize(1 << 20)
        state = os.urandom(3 << 20)  # incompressible: does not fit in 1 MiB
        store.save(2, state)
        loaded = store.load_latest()
        assert loaded is not None and loaded.state == state
        assert env.info()["map_size"] > 3 << 20
