"""Snapshots: the projection at some LSN, stored in LMDB so that recovery replays only the log tail.

Strategy: a snapshot is a manifest plus zstd-compressed chunks of the state (1 MiB of input each), each
chunk guarded by a crc32c recorded in the manifest, and the manifest guarded by its own crc32c. A snapshot
is written in ONE LMDB write transaction (default sync), so it is either wholly there or absent; the
previous snapshot is kept in the same transaction as a fallback and older ones are deleted. LMDB already
gives atomicity, so the checksums are there for what it does not give: bit rot and torn media.

Keys (all in the default database; big-endian so that byte order is LSN order):
    b"m" + u64 lsn               -> manifest
    b"c" + u64 lsn + u32 index   -> compressed chunk
    b"i"                         -> id of the log (16 bytes) + crc32c (4), since segment format 3
Manifest: `MANIFEST_HEAD` (magic, version, flags, lsn, raw size, chunk count, chunk input size), then one
`CHUNK_ENTRY` (stored size, raw size, crc32c of the stored bytes) per chunk, then the crc32c of all that.

Opening never creates anything until the first `save`, so a missing store is told apart from an empty
one (`status`), and a read-only store (for `memento inspect`) takes no lock and writes nothing.
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import os
import struct
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import crc32c
import lmdb
import zstandard

from memento.private import PRIVATE_DIR, PRIVATE_FILE, private_dir

SNAPSHOT_MAGIC: Final = b"MSNP"
SNAPSHOT_FORMAT_VERSION: Final = 1
CHUNK_INPUT_SIZE: Final = 1 << 20
# The map reserves address space only, and grows (doubling) when a snapshot does not fit: small, so that a
# broker under an address-space limit (ulimit -v) can open it.
INITIAL_MAP_SIZE: Final = 64 << 20
MANIFEST_HEAD: Final = struct.Struct(">4sHHQQII")
CHUNK_ENTRY: Final = struct.Struct(">III")
CRC: Final = struct.Struct(">I")
LSN_KEY: Final = struct.Struct(">cQ")
CHUNK_KEY: Final = struct.Struct(">cQI")
MANIFEST_PREFIX: Final = b"m"
CHUNK_PREFIX: Final = b"c"
# The id of the log whose snapshots these are (memento.identity): 16 bytes + their crc32c, rewritten by
# every save. Stores written before it have none and are accepted as they are.
LOG_ID_KEY: Final = b"i"
LOG_ID_SIZE: Final = 16

# What the last `load_latest` found, in `SnapshotStore.status`.
STATUS_OK: Final = "ok"  # the newest snapshot verified
STATUS_FALLBACK: Final = "fallback"  # the newest was damaged; an older one was loaded
STATUS_EMPTY: Final = "empty"  # a store with no snapshot in it
STATUS_MISSING: Final = "missing"  # no LMDB environment at the path
STATUS_UNREADABLE: Final = "unreadable"  # the environment exists but LMDB cannot open it
STATUS_DAMAGED: Final = "damaged"  # snapshots exist but none verifies


# LMDB's own file format (libraries/liblmdb/mdb.c: MDB_page, MDB_meta, MDB_db), read before LMDB maps the
# file: LMDB trusts its meta page and maps up to the last page it names, so a file cut shorter than that
# kills the process with SIGBUS at the first read instead of returning an error (see FORMAT.md).
LMDB_MAGIC: Final = 0xBEEFC0DE
LMDB_DATA_VERSION: Final = 1
LMDB_P_META: Final = 0x08
LMDB_NUM_METAS: Final = 2
LMDB_MIN_PAGE: Final = 512
LMDB_MAX_PAGE: Final = 0x10000
_WORD: Final = struct.calcsize("P")  # pgno_t, size_t and pointers: the width of the writing process
_ORDER: Final = "<" if sys.byteorder == "little" else ">"  # LMDB writes native byte order
_PAGE_FLAGS_AT: Final = _WORD + 2  # MDB_page: pgno, u16 pad, u16 flags, u16 lower, u16 upper
_META_AT: Final = _WORD + 8  # PAGEHDRSZ: the meta follows the page header
_DB_SIZE: Final = 8 + 5 * _WORD  # MDB_db: u32 pad (page size in the first), u16 flags, u16 depth, 5 words
_PSIZE_AT: Final = _META_AT + 8 + 2 * _WORD  # mm_dbs[0].md_pad, after magic, version, address, mapsize
_LAST_PG_AT: Final = _PSIZE_AT + 2 * _DB_SIZE  # mm_last_pg, after the two MDB_db
_META_END: Final = _LAST_PG_AT + 2 * _WORD  # and mm_txnid


def check_lmdb_file(data: Path) -> str | None:
    """Why the existing LMDB data file `data` must not be opened (LMDB would crash on it), or None.

    A plausible file holds both meta pages, is a whole number of pages, and each meta page has
    LMDB's magic and version and names a last page that lies inside the file.
    """
    word = "Q" if _WORD == 8 else "I"
    with open(data, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        head = f.read(_META_END)
        if len(head) < _META_END:
            return f"{data}: {size} bytes, too short for an LMDB meta page"
        (psize,) = struct.unpack_from(_ORDER + "I", head, _PSIZE_AT)
        if not LMDB_MIN_PAGE <= psize <= LMDB_MAX_PAGE or psize & (psize - 1):
            return f"{data}: not an LMDB file (page size {psize} in its first meta page)"
        if size < LMDB_NUM_METAS * psize or size % psize:
            return f"{data}: {size} bytes, not a whole number of {psize}-byte pages holding both meta pages"
        f.seek(psize)
        metas = [head, f.read(_META_END)]
    for index, meta in enumerate(metas):
        where = f"{data}: meta page {index}"
        (flags,) = struct.unpack_from(_ORDER + "H", meta, _PAGE_FLAGS_AT)
        magic, version = struct.unpack_from(_ORDER + "II", meta, _META_AT)
        if magic != LMDB_MAGIC or not flags & LMDB_P_META:
            return f"{where}: not an LMDB meta page (magic {magic:#010x}, page flags {flags:#06x})"
        if version != LMDB_DATA_VERSION:
            return f"{where}: unsupported LMDB data version {version}"
        (last_pg,) = struct.unpack_from(_ORDER + word, meta, _LAST_PG_AT)
        if last_pg < LMDB_NUM_METAS - 1 or (last_pg + 1) * psize > size:
            return (
                f"{where}: truncated: {size} bytes, but its last used page {last_pg} "
                f"ends at {(last_pg + 1) * psize}"
            )
    return None


class SnapshotError(Exception):
    """The snapshot store cannot do what was asked (e.g. save into an unreadable environment)."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A verified snapshot: the state bytes as saved at `lsn`."""

    lsn: int
    state: bytes


@dataclass(frozen=True, slots=True)
class ChunkInfo:
    """Where one chunk's bytes should be: its stored (compressed) size, raw size and crc32c."""

    stored_size: int
    raw_size: int
    crc: int


@dataclass(frozen=True, slots=True)
class SnapshotInfo:
    """What a manifest says about one snapshot; `damage` is None when the manifest itself verifies."""

    lsn: int
    version: int
    raw_size: int
    stored_size: int
    chunks: tuple[ChunkInfo, ...]
    damage: str | None = None


def encode_manifest(lsn: int, raw_size: int, chunks: list[ChunkInfo]) -> bytes:
    """Encode a manifest (head, chunk table, trailing crc32c over both)."""
    parts = [
        MANIFEST_HEAD.pack(
            SNAPSHOT_MAGIC, SNAPSHOT_FORMAT_VERSION, 0, lsn, raw_size, len(chunks), CHUNK_INPUT_SIZE
        )
    ]
    parts.extend(CHUNK_ENTRY.pack(c.stored_size, c.raw_size, c.crc) for c in chunks)
    body = b"".join(parts)
    return body + CRC.pack(crc32c.crc32c(body))


def decode_manifest(key_lsn: int, raw: bytes) -> SnapshotInfo:
    """Decode a manifest stored under `key_lsn`; a manifest that fails a check carries `damage`."""

    def damaged(why: str, version: int = 0) -> SnapshotInfo:
        return SnapshotInfo(key_lsn, version, 0, 0, (), f"snapshot {key_lsn}: manifest {why}")

    if len(raw) < MANIFEST_HEAD.size + CRC.size:
        return damaged(f"too short ({len(raw)} bytes)")
    magic, version, _flags, lsn, raw_size, count, _chunk_input = MANIFEST_HEAD.unpack_from(raw)
    if magic != SNAPSHOT_MAGIC:
        return damaged(f"bad magic {magic!r}")
    if version != SNAPSHOT_FORMAT_VERSION:
        return damaged(f"has unsupported format version {version}", version)
    expected = MANIFEST_HEAD.size + count * CHUNK_ENTRY.size + CRC.size
    if len(raw) != expected:
        return damaged(f"size {len(raw)} != {expected} for {count} chunks", version)
    (stored_crc,) = CRC.unpack_from(raw, expected - CRC.size)
    if crc32c.crc32c(raw[: expected - CRC.size]) != stored_crc:
        return damaged("checksum mismatch", version)
    if lsn != key_lsn:
        return damaged(f"names LSN {lsn}", version)
    chunks = tuple(
        ChunkInfo(*CHUNK_ENTRY.unpack_from(raw, MANIFEST_HEAD.size + i * CHUNK_ENTRY.size))
        for i in range(count)
    )
    if sum(c.raw_size for c in chunks) != raw_size:
        return damaged("chunk sizes do not add up", version)
    return SnapshotInfo(lsn, version, raw_size, sum(c.stored_size for c in chunks), chunks)


class SnapshotStore:
    """Snapshots in an LMDB environment at `path` (a directory; the log keeps it at <logdir>/snapshots).

    `readonly=True` opens without a lock and never writes (for inspection). After `load_latest`,
    `status` is one of the STATUS_* values and `fallback_reason` says what was skipped or missing
    (None when the newest snapshot loaded, or when the store is simply empty).
    """

    def __init__(self, path: str | Path, *, readonly: bool = False, level: int = 3) -> None:
        self.path = Path(path)
        self.readonly = readonly
        self.log_id: bytes | None = None  # recorded by every save when set (the Log sets it)
        self.status: str = STATUS_EMPTY
        self.fallback_reason: str | None = None
        self._level = level
        self._env: lmdb.Environment | None = None
        self._open_error: str | None = None
        self._chunk_damage: str | None = None
        if (self.path / "data.mdb").exists():
            self._open(create=False)

    # -- environment -------------------------------------------------------------------------------

    def _open(self, *, create: bool) -> None:
        if self.path.exists() and not self.path.is_dir():
            self._open_error = f"snapshot store {self.path} is not a directory"
            return
        data = self.path / "data.mdb"
        if not create:
            # A file that cannot be read (permissions, I/O error) is not damage: the OSError, naming
            # it, goes to the caller, and salvage is never offered for it.
            try:
                problem = check_lmdb_file(data)
            except OSError as exc:
                if exc.filename is None:  # a read error on the open file: name it
                    raise OSError(exc.errno, exc.strerror or str(exc), str(data)) from exc
                raise
            if problem is not None:
                self._env = None
                self._open_error = f"snapshot store {self.path} is unreadable: {problem}"
                return
        map_size = max(INITIAL_MAP_SIZE, data.stat().st_size * 2 if data.exists() else 0)
        try:
            # LMDB creates data.mdb and lock.mdb with `mode` less x bits and the umask: owner-only, and
            # set again below whatever the umask.
            self._env = lmdb.open(
                str(self.path),
                map_size=map_size,
                subdir=True,
                readonly=self.readonly,
                lock=not self.readonly,
                create=create,
                max_dbs=0,
                readahead=False,
                mode=PRIVATE_DIR,
            )
            self._open_error = None
            if create:
                for name in ("data.mdb", "lock.mdb"):
                    with contextlib.suppress(FileNotFoundError):
                        os.chmod(self.path / name, PRIVATE_FILE)
        except lmdb.MemoryError as exc:
            # Not damage (salvage would not help): the address space is too small for the map.
            raise OSError(
                errno.ENOMEM,
                f"cannot map {map_size} bytes of snapshots ({exc}); is an "
                "address-space limit (ulimit -v) too low?",
                str(self.path),
            ) from None
        except lmdb.ReadonlyError as exc:  # EACCES on data.mdb or lock.mdb: say which
            self._name_unopenable()
            raise PermissionError(
                errno.EACCES, f"{os.strerror(errno.EACCES)} ({exc})", str(self.path)
            ) from None
        except lmdb.DiskError as exc:
            raise OSError(errno.EIO, f"{os.strerror(errno.EIO)} ({exc})", str(self.path)) from None
        except lmdb.Error as exc:
            self._env = None
            self._open_error = f"snapshot store {self.path} is unreadable: {exc}"

    def _name_unopenable(self) -> None:
        """Raise the OSError, naming the file, of the first LMDB file this process may not open as LMDB
        would (read-write unless read-only; lock.mdb is not used read-only)."""
        flags = os.O_RDONLY if self.readonly else os.O_RDWR
        names = ("data.mdb",) if self.readonly else ("data.mdb", "lock.mdb")
        for name in names:
            with contextlib.suppress(FileNotFoundError):
                os.close(os.open(self.path / name, flags | os.O_CLOEXEC))

    @property
    def exists(self) -> bool:
        """True when an LMDB environment is present at the path (readable or not)."""
        return (self.path / "data.mdb").exists()

    def close(self) -> None:
        """Close the environment; the store may not be used afterwards."""
        if self._env is not None:
            self._env.close()
            self._env = None

    def __enter__(self) -> SnapshotStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing -----------------------------------------------------------------------------------

    def save(self, lsn: int, state: bytes) -> None:
        """Store `state` as the snapshot at `lsn`, keep the previous one, delete older ones; one txn."""
        if self.readonly:
            raise SnapshotError(f"snapshot store {self.path} is open read-only")
        if self._env is None:
            if self.exists:
                raise SnapshotError(self._open_error or f"snapshot store {self.path} is unreadable")
            private_dir(self.path)
            self._open(create=True)
            if self._env is None:
                raise SnapshotError(self._open_error or f"cannot create snapshot store {self.path}")
        items, manifest = self._encode(lsn, state)
        while True:
            try:
                self._write(lsn, items, manifest)
                return
            except lmdb.MapFullError:
                # The map only reserves address space; doubling it costs nothing on disk.
                env = self._env
                env.set_mapsize(env.info()["map_size"] * 2)
            except lmdb.Error as exc:
                raise SnapshotError(f"snapshot store {self.path}: cannot save LSN {lsn}: {exc}") from exc

    def _encode(self, lsn: int, state: bytes) -> tuple[list[tuple[bytes, bytes]], bytes]:
        compress = zstandard.ZstdCompressor(level=self._level).compress
        view = memoryview(state)
        items: list[tuple[bytes, bytes]] = []
        chunks: list[ChunkInfo] = []
        for index, start in enumerate(range(0, len(state), CHUNK_INPUT_SIZE)):
            piece = view[start : start + CHUNK_INPUT_SIZE]
            stored = compress(piece)
            chunks.append(ChunkInfo(len(stored), len(piece), crc32c.crc32c(stored)))
            items.append((CHUNK_KEY.pack(CHUNK_PREFIX, lsn, index), stored))
        return items, encode_manifest(lsn, len(state), chunks)

    def _write(self, lsn: int, items: list[tuple[bytes, bytes]], manifest: bytes) -> None:
        assert self._env is not None
        with self._env.begin(write=True) as txn:
            older = [k for k in self._manifest_lsns(txn) if k != lsn]
            if older and max(older) > lsn:
                raise SnapshotError(f"snapshot at LSN {lsn} is older than the stored one at {max(older)}")
            for doomed in sorted(older)[:-1]:
                self._delete(txn, doomed)
            self._delete(txn, lsn)
            for key, value in items:
                txn.put(key, value)
            txn.put(LSN_KEY.pack(MANIFEST_PREFIX, lsn), manifest)
            if self.log_id is not None:
                txn.put(LOG_ID_KEY, self.log_id + CRC.pack(crc32c.crc32c(self.log_id)))

    @staticmethod
    def _delete(txn: lmdb.Transaction, lsn: int) -> None:
        txn.delete(LSN_KEY.pack(MANIFEST_PREFIX, lsn))
        prefix = LSN_KEY.pack(CHUNK_PREFIX, lsn)
        cursor = txn.cursor()
        if cursor.set_range(prefix):
            while bytes(cursor.key()).startswith(prefix):
                if not cursor.delete():
                    break

    @staticmethod
    def _manifest_lsns(txn: lmdb.Transaction) -> list[int]:
        cursor = txn.cursor()
        found: list[int] = []
        if cursor.set_range(MANIFEST_PREFIX):
            for raw in cursor.iternext(keys=True, values=False):
                key = bytes(raw)
                if not key.startswith(MANIFEST_PREFIX) or len(key) != LSN_KEY.size:
                    break
                found.append(LSN_KEY.unpack(key)[1])
        return found

    # -- reading -----------------------------------------------------------------------------------

    def recorded_id(self) -> bytes | str | None:
        """The log id the store records; None when it records none (no store, or one written before
        ids); a sentence naming the store when the recorded id is damaged or cannot be read."""
        if self._env is None:
            return None
        try:
            with self._env.begin() as txn:
                raw = txn.get(LOG_ID_KEY)
        except lmdb.Error as exc:
            return f"snapshot store {self.path}: cannot read its log id: {exc}"
        if raw is None:
            return None
        raw = bytes(raw)
        if len(raw) != LOG_ID_SIZE + CRC.size or CRC.unpack_from(raw, LOG_ID_SIZE)[0] != crc32c.crc32c(
            raw[:LOG_ID_SIZE]
        ):
            return f"snapshot store {self.path}: its log id is damaged"
        return raw[:LOG_ID_SIZE]

    def list(self) -> list[SnapshotInfo]:
        """Every snapshot's manifest, oldest first (manifests only: use `verify` to check chunks)."""
        if self._env is None:
            return []
        with self._env.begin() as txn:
            return [
                decode_manifest(lsn, bytes(txn.get(LSN_KEY.pack(MANIFEST_PREFIX, lsn)) or b""))
                for lsn in self._manifest_lsns(txn)
            ]

    def verify(self, info: SnapshotInfo) -> str | None:
        """Check every chunk of `info` (crc32c, decompression, sizes); the damage found, or None."""
        if info.damage is not None:
            return info.damage
        if self._env is None:
            return self._open_error or f"snapshot store {self.path} is missing"
        self._read_chunks(info, keep=False)
        return self._chunk_damage

    def _read_chunks(self, info: SnapshotInfo, *, keep: bool) -> builtins.list[bytes]:
        """The chunks of `info` (when `keep`); `_chunk_damage` says whether they all verified."""
        assert self._env is not None
        parts: builtins.list[bytes] = []
        try:
            with self._env.begin(buffers=True) as txn:
                for raw in self._chunks(txn, info):
                    if keep:
                        parts.append(raw)
        except lmdb.Error as exc:  # a corrupted B-tree page, an I/O error: damage like any other
            self._chunk_damage = f"snapshot {info.lsn}: unreadable: {exc}"
        return parts

    def _chunks(self, txn: lmdb.Transaction, info: SnapshotInfo) -> Iterator[bytes]:
        """Yield the decompressed chunks of `info`; on damage stop and set `_chunk_damage`."""
        self._chunk_damage = None
        decompress = zstandard.ZstdDecompressor().decompress
        for index, chunk in enumerate(info.chunks):
            stored = txn.get(CHUNK_KEY.pack(CHUNK_PREFIX, info.lsn, index))
            where = f"snapshot {info.lsn}: chunk {index}/{len(info.chunks)}"
            if stored is None:
                self._chunk_damage = f"{where} is missing"
                return
            if len(stored) != chunk.stored_size or crc32c.crc32c(stored) != chunk.crc:
                self._chunk_damage = f"{where} checksum mismatch"
                return
            try:
                raw = decompress(stored, max_output_size=chunk.raw_size)
            except zstandard.ZstdError as exc:
                self._chunk_damage = f"{where} does not decompress: {exc}"
                return
            if len(raw) != chunk.raw_size:
                self._chunk_damage = f"{where} decompresses to {len(raw)} bytes, not {chunk.raw_size}"
                return
            yield raw

    def load(self, info: SnapshotInfo) -> Snapshot | None:
        """Load and verify one snapshot; None (and `_chunk_damage` set) when it does not verify."""
        if info.damage is not None or self._env is None:
            return None
        parts = self._read_chunks(info, keep=True)
        if self._chunk_damage is not None:
            return None
        return Snapshot(info.lsn, b"".join(parts))

    def load_latest(self) -> Snapshot | None:
        """The newest snapshot that verifies, else the previous one; None when there is none.

        Sets `status` and `fallback_reason` (see the class docstring).
        """
        self.fallback_reason = None
        if self._env is None:
            if self.exists or self._open_error is not None:
                self.status = STATUS_UNREADABLE
                self.fallback_reason = self._open_error or f"snapshot store {self.path} is unreadable"
            else:
                self.status = STATUS_MISSING
                self.fallback_reason = f"snapshot store {self.path} is missing"
            return None
        try:
            infos = self.list()
        except lmdb.Error as exc:
            self.status = STATUS_UNREADABLE
            self.fallback_reason = f"snapshot store {self.path} is unreadable: {exc}"
            return None
        skipped: list[str] = []
        for info in reversed(infos):
            snapshot = self.load(info)
            if snapshot is not None:
                self.status = STATUS_FALLBACK if skipped else STATUS_OK
                self.fallback_reason = "; ".join(skipped) or None
                return snapshot
            skipped.append(info.damage or self._chunk_damage or f"snapshot {info.lsn}: damaged")
        self.status = STATUS_DAMAGED if skipped else STATUS_EMPTY
        self.fallback_reason = "; ".join(skipped) or None
        return None
