"""The follower's side of replication: connect to the leader, catch up (bulk sync or from its own end,
after cutting a tail the leader does not have), then append, fsync, acknowledge and apply every record.

Strategy: the follower keeps its durable store open and recovered (a hot standby: its broker is the
leader's projection, built by the same `apply_record` code, record by record as they arrive; promotion
needs no replay). Records are appended exactly as the leader wrote them (`Log.append_replica_wire`: the
frame's own bytes, crc checked); the store's group-commit writer makes them durable, and each of its
batches is acknowledged once durable (one ACK per fsync, however many frames it holds).

A frame from a term lower than the highest this follower has seen is refused (a deposed leader that has
not noticed yet must not write into a follower of the new one). A returning node whose tail the leader
does not have truncates it (`Log.truncate_after`: quarantined, never deleted) with the store closed and
without a snapshot past the cut; when that cannot be done (the cut lies below its snapshot) it asks for a
bulk sync.

A bulk sync writes the leader's snapshot and segments into `<data_dir>/log.sync/` (each file checksummed;
a completed file is recorded in `log.sync/SYNC.json`, so an interrupted sync resumes without copying it
again), installs IDENTITY and MARK (memento.replica.install_copied), then swaps the directory in place of
`<data_dir>/log`: the old log becomes `log.old` until the new one is in place, then goes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import ssl
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar

import crc32c

from memento.log import Log
from memento.replica import install_copied, record_crc
from memento.snapshot import SnapshotStore
from ottermq.cluster import wire
from ottermq.store.codec import RECORD_TYPES, pack_loc
from ottermq.store.replay import apply_replicated

if TYPE_CHECKING:
    from ottermq.store.store import DurableStore

log: Final = logging.getLogger("ottermq.cluster")

LOG_DIR: Final = "log"
SYNC_DIR: Final = "log.sync"
OLD_DIR: Final = "log.old"
SYNC_STATE: Final = "SYNC.json"
RETRY_FIRST: Final = 0.2
RETRY_MAX: Final = 2.0

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class FollowerOptions:
    """Whom to follow and what the cluster shares."""

    leader: tuple[str, int]
    node_name: str
    cluster_name: str
    secret: str
    # `cluster_tls`: the SSL context to connect with (it requires the leader's certificate to be of the
    # cluster's CA and presents this node's).
    tls: ssl.SSLContext | None = None


class Follower:
    """Follows the leader into `data_dir`; `open_store()` opens and recovers `<data_dir>/log` (without
    seeding anything: a follower never writes records of its own) and returns the store, its broker set.
    `run()` until cancelled."""

    def __init__(
        self,
        data_dir: Path,
        options: FollowerOptions,
        open_store: Callable[[], DurableStore],
        *,
        store: DurableStore | None = None,
        on_store: Callable[[DurableStore | None], Awaitable[None]] | None = None,
        keep_store: bool = False,
    ) -> None:
        self.data_dir = data_dir
        self.options = options
        self.open_store = open_store
        # A store already started (a clustered node passes its own from one leader to the next).
        self.store: DurableStore | None = store
        # Told of each store this follower starts (after its start) and of each it stops (None, before
        # its stop): a clustered node serves the management API and refuses clients with its broker.
        self.on_store = on_store
        # Leave the store open when `run` ends (a clustered node promoted to leader serves from it).
        self.keep_store = keep_store
        self.term = _read_term(data_dir)  # the highest leader term seen (kept across restarts)
        self.connected = asyncio.Event()  # set while streaming (tests wait on it)
        self._force_bulk = False
        self._last_refusal = ""

    # -- the loop -----------------------------------------------------------------------------------------

    async def run(self) -> None:
        delay = RETRY_FIRST
        where = f"{self.options.leader[0]}:{self.options.leader[1]}"
        try:
            while True:
                try:
                    await _finish(self._ensure_store())
                    await self._session()
                    delay = RETRY_FIRST
                except wire.Refused as exc:
                    if str(exc) != self._last_refusal:
                        log.error(f"replication: the leader at {where} refused this node: {exc}")
                        self._last_refusal = str(exc)
                    delay = RETRY_MAX
                except ssl.SSLError as exc:
                    # A certificate the other side does not trust (or TLS on one side only): said once.
                    if str(exc) != self._last_refusal:
                        log.error(f"replication: TLS with the leader at {where} failed: {exc}")
                        self._last_refusal = str(exc)
                    delay = RETRY_MAX
                except (OSError, asyncio.IncompleteReadError, wire.ProtocolError, ValueError) as exc:
                    log.warning(f"replication: connection to the leader at {where} ended: {exc}")
                finally:
                    self.connected.clear()
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX)
        finally:
            if not self.keep_store:
                await self.stop_store(snapshot=True)

    async def _ensure_store(self) -> None:
        if self.store is not None:
            return
        log_dir, old = self.data_dir / LOG_DIR, self.data_dir / OLD_DIR
        if not log_dir.exists() and old.exists():
            os.rename(old, log_dir)  # a crash in the middle of installing a bulk sync: the old log stands
        store = await asyncio.to_thread(self.open_store)
        await store.start()
        self.store = store
        if self.on_store is not None:
            await self.on_store(store)

    async def stop_store(self, *, snapshot: bool) -> None:
        store, self.store = self.store, None
        if store is not None:
            if self.on_store is not None:
                await self.on_store(None)
            await store.stop(snapshot=snapshot)

    # -- one connection -----------------------------------------------------------------------------------

    async def _session(self) -> None:
        host, port = self.options.leader
        reader, writer = await asyncio.open_connection(host, port)
        try:
            if self.options.tls is not None:
                await self._start_tls(reader, writer)
            await self._authenticate(reader, writer)
            store = self.store
            assert store is not None and store.journal.writer is not None
            await store.journal.writer.sync()  # nothing of its own should be pending; if so, durable first
            writer.write(wire.json_frame(wire.HELLO, self._hello()))
            kind, decision = await wire.read_json(reader, wire.STREAM, wire.BULK)
            if kind == wire.BULK:
                await self._receive_bulk(reader, decision)
                return
            start = int(decision["from"])
            if start < store.log.durable_lsn and not await _finish(self._truncate(start)):
                return
            self._last_refusal = ""
            self.connected.set()
            await self._stream(reader, writer)
        finally:
            writer.close()

    async def _start_tls(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Wait for the leader's STARTTLS, then the handshake (ssl.SSLError when a certificate is not
        trusted; Refused when the leader does not use TLS)."""
        assert self.options.tls is not None
        kind, _body = await asyncio.wait_for(wire.read_frame(reader), 10)
        if kind != wire.STARTTLS:
            raise wire.Refused("it does not use TLS on replication connections (cluster_tls is off there)")
        await writer.start_tls(self.options.tls, ssl_handshake_timeout=10)

    async def _authenticate(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        options = self.options
        try:
            _kind, challenge = await asyncio.wait_for(wire.read_json(reader, wire.CHALLENGE), 10)
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            if options.tls is None:
                raise
            # With TLS 1.3 a leader that does not trust this node's certificate closes the connection
            # after the handshake, without a word this side can read.
            raise wire.Refused(
                "it closed the TLS connection before its challenge (does it trust this node's "
                "certificate? tls_certfile must be signed by the cluster's tls_cafile)"
            ) from exc
        if challenge.get("cluster") != options.cluster_name:
            raise wire.Refused(
                f"it leads another cluster ({challenge.get('cluster')!r}; this node is of "
                f"{options.cluster_name!r})"
            )
        nonce = wire.new_nonce()
        proof = wire.mac(options.secret, options.cluster_name, "follower", str(challenge.get("nonce", "")))
        writer.write(
            wire.json_frame(
                wire.AUTH,
                {"node": options.node_name, "cluster": options.cluster_name, "mac": proof, "nonce": nonce},
            )
        )
        _kind, welcome = await asyncio.wait_for(wire.read_json(reader, wire.WELCOME), 10)
        if not wire.check_mac(options.secret, options.cluster_name, "leader", nonce, welcome.get("mac")):
            raise wire.Refused("the leader does not know the cluster secret")
        self._see_term(int(welcome.get("term", 0)))

    def _see_term(self, term: int) -> None:
        if term < self.term:
            raise wire.ProtocolError(
                f"refusing a leader of term {term}: term {self.term} was seen (a deposed leader)"
            )
        if term > self.term:
            _write_term(self.data_dir, term)
            self.term = term

    def _hello(self) -> dict[str, Any]:
        store = self.store
        assert store is not None
        memento_log = store.log
        durable = memento_log.durable_lsn
        staged = _read_sync_state(self.data_dir / SYNC_DIR)
        if self._force_bulk:
            self._force_bulk = False
            return {"log_id": "", "durable": durable, "probes": [], "staged": staged}
        segments = memento_log.segments
        first = segments[0].base_lsn if segments else 1
        probes: list[list[int]] = []
        step, lsn = 1, durable
        while lsn >= max(first, 1):
            crc = record_crc(memento_log, lsn)
            if crc is not None:
                probes.append([lsn, crc])
            lsn -= step
            if len(probes) > 2:
                step *= 2
        if first <= 1:
            probes.append([0, 0])
        return {"log_id": memento_log.log_id.hex(), "durable": durable, "probes": probes, "staged": staged}

    async def _truncate(self, lsn: int) -> bool:
        """Cut the log back to `lsn` (store closed, no snapshot past the cut); False when a bulk sync is
        needed instead."""
        store = self.store
        assert store is not None
        end = store.log.durable_lsn
        await self.stop_store(snapshot=False)
        path = self.data_dir / LOG_DIR
        memento_log = await asyncio.to_thread(Log.open, path, registry=RECORD_TYPES)
        try:
            if lsn < memento_log.snapshot_lsn:
                log.warning(
                    f"replication: LSNs {lsn + 1}..{end} are not the leader's, and the snapshot at LSN "
                    f"{memento_log.snapshot_lsn} covers some of them: asking for a bulk sync"
                )
                self._force_bulk = True
                return False
            memento_log.truncate_after(lsn)
        finally:
            memento_log.close()
        log.warning(
            f"replication: dropped LSNs {lsn + 1}..{end}, which the leader does not have (never "
            f"confirmed); they are in {path / 'quarantine'}",
            extra={"lsn": lsn},
        )
        await self._ensure_store()
        return True

    # -- streaming ------------------------------------------------------------------------------------------

    async def _stream(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        store = self.store
        assert store is not None
        group = store.journal.writer
        assert group is not None

        def acknowledge(lsn: int) -> None:
            # Once per batch of this node's group commit: every record up to `lsn` came from the leader
            # (a follower writes none of its own) and is durable.
            if not writer.is_closing():
                writer.write(wire.frame(wire.ACKED, wire.ACK.pack(self.term, lsn)))

        group.on_durable = acknowledge
        try:
            await self._receive(reader, store)
        finally:
            if group.on_durable is acknowledge:
                group.on_durable = None

    async def _receive(self, reader: asyncio.StreamReader, store: DurableStore) -> None:
        memento_log = store.log
        journal = store.journal
        broker = store.broker
        assert broker is not None
        term_size = wire.TERM.size
        append = memento_log.append_replica_frame
        while True:
            kind, body = await wire.read_frame(reader)
            if kind != wire.RECORDS:
                raise wire.ProtocolError(f"unexpected frame {chr(kind)!r} while streaming")
            term = wire.TERM.unpack_from(body)[0]
            if term < self.term:
                log.error(f"replication: refusing records of term {term}: term {self.term} was seen")
                raise wire.ProtocolError(f"records of the stale term {term}")
            self._see_term(term)
            # Staged with one copy, then applied record by record; a record that cannot be staged ends
            # the stream once the ones before it are applied.
            records, error = append(memoryview(body), term_size)
            appended = 0
            for rtype, flags, lsn, payload, segment, offset in records:
                apply_replicated(broker, lsn, rtype, flags, payload, pack_loc(segment, offset))
                appended += len(payload)
            journal.appended_bytes += appended
            if error is not None:
                raise error

    # -- bulk sync ------------------------------------------------------------------------------------------

    async def _receive_bulk(self, reader: asyncio.StreamReader, manifest: dict[str, Any]) -> None:
        staging = self.data_dir / SYNC_DIR
        wal = staging / "wal"
        log_id = bytes.fromhex(str(manifest["log_id"]))
        state = _read_sync_state(staging)
        if state and _read_sync_id(staging) != log_id.hex():
            shutil.rmtree(staging, ignore_errors=True)
            state = {}
        wal.mkdir(parents=True, exist_ok=True)
        _write_sync_state(staging, state, log_id.hex())
        files = {str(entry["name"]): entry for entry in manifest["files"]}
        snapshot = bytearray()
        open_files: dict[str, tuple[int, int]] = {}  # name -> (fd, crc so far)
        copied = 0
        log.info(
            f"replication: bulk sync of {len(files)} segment(s) and the snapshot at LSN "
            f"{manifest['snapshot_lsn']} into {staging}"
        )
        try:
            while True:
                kind, body = await wire.read_frame(reader)
                if kind == wire.FILE:
                    name, offset, data = wire.parse_chunk(body)
                    copied += len(data)
                    if name == "snapshot":
                        if offset != len(snapshot):
                            raise wire.ProtocolError("snapshot chunks out of order")
                        snapshot += data
                        continue
                    if name not in files or "/" in name:
                        raise wire.ProtocolError(f"file {name!r} is not in the manifest")
                    if name not in open_files:
                        path = wal / f"{name}.part"
                        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
                        open_files[name] = (fd, 0)
                    fd, crc = open_files[name]
                    os.pwrite(fd, data, offset)
                    open_files[name] = (fd, crc32c.crc32c(data, crc))
                elif kind == wire.FILE_END:
                    end = json.loads(body)
                    name = str(end["name"])
                    if name == "snapshot":
                        if crc32c.crc32c(bytes(snapshot)) != end["crc"] or len(snapshot) != end["length"]:
                            raise wire.ProtocolError("the snapshot's checksum does not match")
                        continue
                    fd, crc = open_files.pop(name, (-1, 0))
                    if fd < 0:  # an empty file
                        fd = os.open(wal / f"{name}.part", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                    try:
                        if crc != end["crc"]:
                            raise wire.ProtocolError(f"{name}: checksum mismatch")
                        os.ftruncate(fd, max(int(files[name]["size"]), int(end["length"])))
                        os.fdatasync(fd)
                    finally:
                        os.close(fd)
                    os.rename(wal / f"{name}.part", wal / name)
                    state[name] = [int(end["length"]), int(end["crc"])]
                    _write_sync_state(staging, state, log_id.hex())
                elif kind == wire.BULK_DONE:
                    break
                else:
                    raise wire.ProtocolError(f"unexpected frame {chr(kind)!r} during a bulk sync")
        finally:
            for fd, _crc in open_files.values():
                os.close(fd)
        for name in os.listdir(wal):
            if name not in files:
                os.unlink(wal / name)  # a stale copy, or a part of an interrupted one
        for name, entry in files.items():
            if not (wal / name).exists() or (
                entry.get("skip") and state.get(name, [0])[0] != entry["length"]
            ):
                raise wire.ProtocolError(f"{name}: skipped by the leader but not staged here")
        await _finish(self._install_and_swap(staging, log_id, int(manifest["snapshot_lsn"]), bytes(snapshot)))
        log.info(
            f"replication: bulk sync installed ({copied} bytes copied, {len(files)} segment(s), snapshot "
            f"at LSN {manifest['snapshot_lsn']})"
        )

    async def _install_and_swap(
        self, staging: Path, log_id: bytes, snapshot_lsn: int, snapshot: bytes
    ) -> None:
        await asyncio.to_thread(self._install, staging, log_id, snapshot_lsn, snapshot)
        await self.stop_store(snapshot=False)
        self._swap(staging)

    def _install(self, staging: Path, log_id: bytes, snapshot_lsn: int, snapshot: bytes) -> None:
        snapshots = staging / "snapshots"
        shutil.rmtree(snapshots, ignore_errors=True)
        if snapshot_lsn:
            store = SnapshotStore(snapshots)
            store.log_id = log_id
            try:
                store.save(snapshot_lsn, snapshot)
            finally:
                store.close()
        install_copied(staging, log_id)
        (staging / SYNC_STATE).unlink(missing_ok=True)

    def _swap(self, staging: Path) -> None:
        log_dir, old = self.data_dir / LOG_DIR, self.data_dir / OLD_DIR
        shutil.rmtree(old, ignore_errors=True)
        if log_dir.exists():
            os.rename(log_dir, old)
        os.rename(staging, log_dir)
        fd = os.open(self.data_dir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        shutil.rmtree(old, ignore_errors=True)


async def _finish(work: Coroutine[Any, Any, T]) -> T:
    """Run `work` to its end even when the caller is cancelled meanwhile (then cancelled after it): opening,
    cutting or swapping the log must not stop half way, leaving a log open or a directory half swapped."""
    task = asyncio.ensure_future(work)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            await task
        raise


TERM_FILE: Final = "cluster-term"


def _read_term(data_dir: Path) -> int:
    with contextlib.suppress(OSError, ValueError):
        return int((data_dir / TERM_FILE).read_text().strip() or 0)
    return 0


def _write_term(data_dir: Path, term: int) -> None:
    """Remember `term` durably: after a restart a deposed leader's records are still refused."""
    tmp = data_dir / (TERM_FILE + ".tmp")
    tmp.write_text(f"{term}\n")
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, data_dir / TERM_FILE)


def _read_sync_state(staging: Path) -> dict[str, Any]:
    with contextlib.suppress(OSError, ValueError):
        value = json.loads((staging / SYNC_STATE).read_text())
        files = value.get("files", {}) if isinstance(value, dict) else {}
        return files if isinstance(files, dict) else {}
    return {}


def _read_sync_id(staging: Path) -> str:
    with contextlib.suppress(OSError, ValueError):
        value = json.loads((staging / SYNC_STATE).read_text())
        return str(value.get("log_id", "")) if isinstance(value, dict) else ""
    return ""


def _write_sync_state(staging: Path, files: dict[str, Any], log_id: str) -> None:
    tmp = staging / (SYNC_STATE + ".tmp")
    tmp.write_text(json.dumps({"log_id": log_id, "files": files}))
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, staging / SYNC_STATE)
