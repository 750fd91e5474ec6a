"""The leader's side of replication: a listener followers connect to, the stream of durable records to
each, their acknowledgements, the in-sync set, and what confirms wait for.

Strategy: a follower connects to `cluster_port` and authenticates (ottermq.cluster.wire). From its HELLO
the leader decides where it starts: the follower's durable LSN when its log is this log (same id) and the
record there is the leader's own (same crc), else the highest of its probes that matches (the follower
truncates to it: a returning old leader drops what was never replicated), else a bulk sync (the newest
snapshot and every segment, each file checksummed; files the follower already staged are skipped).
While streaming, each batch the leader's group commit takes to write wakes the senders
(`AsyncWriter.on_taken`), which send it (and whatever was appended since) at once, while the leader syncs
it (memento.replica.Cursor.read_live: from the staged and in-flight batches in memory, or from the segment
files for older records), with the leader's term, in frames of about 1 MiB: one frame per follower per
group commit however many event-loop turns appended its records, and the follower, which acknowledges once
per batch of its own group commit, about one ACK back. A follower may so hold records the leader never
made durable; they were never confirmed.

Confirms: the journal confirms a position once it is durable here and at or below `replica_lsn`, the
smallest LSN acknowledged by the followers in the in-sync set (`ClusterRole.isr()`); every
acknowledgement moves it. A follower of the set that has not acknowledged everything durable here, or has
not been connected, for `replication_ack_timeout` is removed from the set (`await role.set_isr(...)`)
first, and only then is `replica_lsn` computed without it: confirms never go on without a member that is
still in the set. A
follower joins the set in two steps: once it has acknowledged what was durable when its stream started,
confirms start waiting for it too; once it has what was confirmed before that, the set takes it (an
in-sync member may be elected, so it must hold every confirmed record). With fewer
nodes in the set than `min_in_sync`, the journal is held (publishes nacked) and publishers are blocked.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import os
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

import crc32c

from memento.replica import Behind, Cursor, record_crc
from memento.replica import _offset_of as offset_of
from ottermq.broker.alarms import ALARM_CLUSTER
from ottermq.cluster import wire
from ottermq.store.journal import NO_REPLICA_LIMIT

if TYPE_CHECKING:
    from ottermq.cluster.interface import ClusterRole
    from ottermq.store.store import DurableStore

log: Final = logging.getLogger("ottermq.cluster")

BATCH_BYTES: Final = 1 << 20  # records per RECORDS frame, about
# Bytes waiting in a follower's connection above which the sender task takes over again (and waits for
# them to drain) instead of the group commit's `on_taken` writing more.
SEND_BUFFERED: Final = 1 << 20
FILE_CHUNK: Final = 1 << 20  # bytes per FILE frame of a bulk sync
# How long a sender thread's send waits for room in the socket before it looks again whether to stop.
SEND_POLL: Final = 0.2
ACK_READ: Final = 1 << 16  # bytes of acknowledgements read at a time
AUTH_TIMEOUT: Final = 10.0
VOLUME_SAMPLES: Final = 4096  # group commits remembered for the followers' lag in bytes


@dataclass(frozen=True, slots=True)
class ReplicationOptions:
    """Where the replication listener listens and what the cluster shares."""

    host: str
    port: int
    cluster_name: str
    secret: str
    ack_timeout: float = 2.0
    min_in_sync: int = 1
    # `cluster_tls`: the listener's SSL context (it requires a follower certificate of the cluster's CA).
    tls: ssl.SSLContext | None = None
    # `replication_sender_threads`: without TLS, a `Sender` thread per follower sends the records.
    sender_threads: bool = False


@dataclass(slots=True)
class Link:
    """One connected follower, as the leader streams to it."""

    node: str
    address: str
    start_lsn: int
    join_at: int  # joins the in-sync set once it has acknowledged this LSN
    acked: int = 0
    last_ack: float = field(default_factory=time.monotonic)
    frames: int = 0  # RECORDS frames sent, and the records in them (for the status)
    records: int = 0
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    session: asyncio.Task[None] | None = None
    # With TLS, while the sender task waits for records (caught up, its connection's buffer drained):
    # the writer's `on_taken` then sends the new batch itself, without waking the sender task.
    cursor: Cursor | None = None
    writer: asyncio.StreamWriter | None = None
    # Without TLS: the thread that sends this follower its records.
    sender: Sender | None = None


class Sender:
    """Sends one follower its records from a thread of its own, over the connection's socket (plain TCP).

    The leader's group commit wakes it from the writer thread when it takes a batch
    (`AsyncWriter.on_taken_thread`), so the event loop does nothing per group commit for the follower
    but read its acknowledgements (the loop keeps reading the connection). The thread reads what was
    appended (`Cursor.read_live`, under the log's lock while it copies from memory) and sends it as one
    RECORDS frame with plain blocking-style sends: a slow follower holds up its own thread only, never the
    writer thread or another follower. `fence` shuts the connection's sending side: from then on the
    kernel sends no byte more, even of a frame the thread is in the middle of."""

    def __init__(
        self, leader: ReplicationLeader, link: Link, sock: socket.socket, cursor: Cursor, term: int
    ) -> None:
        self._leader = leader
        self._link = link
        self._sock = sock
        self._cursor = cursor
        self._term = term
        self._wake = threading.Event()
        self._stopping = False
        self._sock_lock = threading.Lock()  # closing vs. fence's shutdown: never a reused descriptor
        self._loop = asyncio.get_running_loop()
        self.done: asyncio.Future[None] = self._loop.create_future()
        # Set by the thread before it shuts the connection itself (a resync), or with its error: read
        # by the session when its reads end, before `done` may have been reported.
        self.ended = False
        self.error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._main, name=f"ottermq-replication-{link.node}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()
        self._wake.set()  # whatever is there already (the follower's start) goes out now

    def wake(self) -> None:
        """Records were appended (any thread): send them."""
        self._wake.set()

    def stop(self) -> None:
        """Stop after the frame in progress (its send gives up within SEND_POLL)."""
        self._stopping = True
        self._wake.set()

    def fence(self) -> None:
        """Leadership is lost: no byte more goes to the follower from now on, whatever the thread does."""
        self.stop()
        with self._sock_lock:
            if self._sock.fileno() >= 0:
                with contextlib.suppress(OSError):
                    self._sock.shutdown(socket.SHUT_WR)

    def _main(self) -> None:
        try:
            self._run()
        except _Stopped:
            pass
        except Behind as exc:
            log.warning(f"follower {self._link.node} fell behind the log's start ({exc}); it resyncs")
            self._end(None)
        except BaseException as exc:  # its send failed (the follower left), a corrupt record...
            self._end(exc)
        finally:
            self._cursor.close()
            with self._sock_lock:
                self._sock.close()  # a duplicate: the loop's transport keeps the connection open
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
                self._loop.call_soon_threadsafe(self._finished)

    def _end(self, error: BaseException | None) -> None:
        """The stream ends here: closing the connection is how the session learns of it."""
        self.error = error
        self.ended = True
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)

    def _finished(self) -> None:
        if not self.done.done():
            self.done.set_result(None)

    def _run(self) -> None:
        leader, link, cursor = self._leader, self._link, self._cursor
        memento_log = leader.store.log
        wake = self._wake
        while True:
            wake.wait()
            wake.clear()  # before reading: what is appended from now on wakes it again
            while True:
                if self._stopping or leader._fenced:
                    raise _Stopped
                if cursor.next_lsn > memento_log.end_lsn:
                    break
                before = cursor.next_lsn
                # Appended records go out while the leader syncs them itself: a confirm waits for both,
                # so its latency is the slower of the two, not their sum.
                batch = cursor.read_live(BATCH_BYTES)
                if not batch:
                    break
                self._send(wire.records_frame(self._term, batch))
                link.frames += 1
                link.records += cursor.next_lsn - before

    def _send(self, frame: bytes) -> None:
        view = memoryview(frame)
        sock = self._sock
        while view:
            if self._stopping:
                raise _Stopped
            try:
                sent = sock.send(view)
            except TimeoutError:
                continue  # no room within SEND_POLL: look whether to stop, then wait again
            view = view[sent:]


class _Stopped(Exception):
    """A sender thread was told to stop."""


class ReplicationLeader:
    """Streams `store`'s log to followers and holds confirms for the in-sync set; `start`, `stop`."""

    def __init__(self, store: DurableStore, role: ClusterRole, options: ReplicationOptions) -> None:
        self.store = store
        self.role = role
        self.options = options
        self.links: dict[str, Link] = {}
        self.acked: dict[str, int] = {}  # the last LSN each follower acknowledged (also after it left)
        self._behind_since: dict[str, float] = {}
        self._server: asyncio.Server | None = None
        self._watch: asyncio.Task[None] | None = None
        self._sessions: set[asyncio.Task[None]] = set()  # connections, and in-sync set changes
        self._held = False
        self._isr_busy = False
        # Followers about to join the set: node -> the confirmed LSN it must reach first.
        self._joining: dict[str, int] = {}
        self._fenced = False  # leadership lost: the journal stays held
        self._stopped = False
        # (LSN, bytes appended to the log so far) at each group commit, for the followers' lag in bytes.
        self._volume: deque[tuple[int, int]] = deque(maxlen=VOLUME_SAMPLES)
        self.addresses: list[tuple[str, int]] = []
        # The sender threads, for the writer thread to wake (replaced whole, never changed in place: the
        # writer thread iterates it).
        self._senders: tuple[Sender, ...] = ()
        self._term = 0  # this leadership's term, put in every RECORDS frame

    @property
    def _threaded(self) -> bool:
        """Followers get their records from sender threads (plain TCP, when asked for)."""
        return self.options.sender_threads and self.options.tls is None

    @property
    def durable_lsn(self) -> int:
        writer = self.store.journal.writer
        return writer.durable_lsn if writer is not None else self.store.log.durable_lsn

    async def start(self) -> list[tuple[str, int]]:
        """Listen (after the store started); the bound addresses."""
        writer = self.store.journal.writer
        assert writer is not None, "start the store first"
        self._term = self.role.term()
        writer.on_durable = self._durable
        if self._threaded:
            writer.on_taken_thread = self._taken_thread
        else:
            writer.on_taken = self._taken  # the followers are sent to from the event loop
        self.role.on_lost(self._lost)
        self._server = await asyncio.start_server(self._accept, self.options.host, self.options.port)
        self.addresses = [sock.getsockname()[:2] for sock in self._server.sockets]
        self._update()
        self._check_min()
        self._watch = asyncio.create_task(self._watch_isr(), name="ottermq-replication-isr")
        return self.addresses

    async def stop(self) -> None:
        self._stopped = True
        if self._server is not None:
            self._server.close()
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        for task in list(self._sessions):
            task.cancel()
        if self._sessions:
            await asyncio.wait(self._sessions, timeout=2)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
        writer = self.store.journal.writer
        if writer is not None:
            writer.on_durable = None
            writer.on_taken = None
            writer.on_taken_thread = None

    def status(self) -> dict[str, Any]:
        """The leader's view of its followers (for ctl and the management API): each connected follower,
        and each member of the in-sync set that is not connected (`connected` false, its last ack)."""
        durable = self.durable_lsn
        now = time.monotonic()
        followers: dict[str, dict[str, Any]] = {}
        for node, link in self.links.items():
            followers[node] = {
                "connected": True,
                "address": link.address,
                "in_sync": node in self.role.isr(),
                "acked_lsn": link.acked,
                "lag_records": max(0, durable - link.acked),
                "lag_bytes": self._lag_bytes(link.acked, durable),
                "last_ack_age": round(now - link.last_ack, 3),
                "frames_sent": link.frames,
                "records_sent": link.records,
            }
        for node in self._followers_in_sync():
            if node not in followers:
                acked = self.acked.get(node, 0)
                followers[node] = {
                    "connected": False,
                    "address": "",
                    "in_sync": True,
                    "acked_lsn": acked,
                    "lag_records": max(0, durable - acked),
                    "lag_bytes": self._lag_bytes(acked, durable),
                    "last_ack_age": None,
                }
        return {
            "term": self.role.term(),
            "isr": self.role.isr(),
            "durable_lsn": durable,
            "min_in_sync": self.options.min_in_sync,
            "group_commits": writer.batches if (writer := self.store.journal.writer) is not None else 0,
            "followers": followers,
        }

    def _lag_bytes(self, acked: int, durable: int) -> int:
        """About how many bytes of records (payloads) lie between `acked` and `durable`, from the samples
        taken at each group commit; 0 when caught up."""
        if acked >= durable or not self._volume:
            return 0
        samples = self._volume
        at = bisect.bisect_right(samples, (acked, 1 << 62))
        # The volume at `acked` is that of the last sample at or below it (or the oldest one kept).
        base = samples[at - 1][1] if at > 0 else samples[0][1]
        return max(0, samples[-1][1] - base)

    # -- confirms and the in-sync set -----------------------------------------------------------------

    def _lost(self) -> None:
        """Leadership is lost (another node may be elected now): confirm nothing more, at once (fencing);
        pending confirms are nacked and durable work is refused."""
        if self._stopped:
            return  # a leader of an earlier term (its callback stays registered with the role)
        log.error("leadership lost: nothing further is confirmed here")
        self._fenced = True
        for link in self.links.values():
            if link.sender is not None:
                link.sender.fence()  # before anything else: no frame leaves from here on
        self.store.journal.hold("this node is no longer the leader")
        if self._watch is not None:
            self._watch.cancel()
        for task in list(self._sessions):
            task.cancel()

    def _durable(self, lsn: int) -> None:
        self._volume.append((lsn, self.store.journal.appended_bytes))

    def _taken_thread(self, _last_lsn: int) -> None:
        # In the writer thread, once per group commit: the sender threads send the batch while it is
        # being written and synced here, in one frame each; nothing of it on the event loop.
        if self._fenced or self._stopped:
            return
        for sender in self._senders:
            sender.wake()

    def _taken(self, _last_lsn: int) -> None:
        # Once per group commit, however many turns appended its records: they go to each follower now,
        # while the batch is being written and synced here, in one frame. A sender that waits for records
        # gets them written from here (no task switch; the batch is still in memory, so no file read); a
        # busy one (a frame of its own in progress, or a connection to drain) is woken to go on.
        if self._fenced or self._stopped:
            return  # no longer the leader: its sessions are being cancelled, nothing more is sent
        # Followers that stand at the same LSN get the same frame: read and built once.
        shared: tuple[int, Cursor, bytes] | None = None
        for link in self.links.values():
            if link.sender is not None:
                continue  # woken from the writer thread
            cursor, writer = link.cursor, link.writer
            if cursor is None or writer is None:
                link.wake.set()
                continue
            try:
                if shared is not None and cursor.next_lsn == shared[0] and not writer.is_closing():
                    cursor.follow(shared[1])
                    self._sent(link, writer, shared[2], cursor.next_lsn - shared[0])
                else:
                    before = cursor.next_lsn
                    frame = self._push(link, cursor, writer)
                    if frame is not None:
                        shared = (before, cursor, frame)
            except Exception:  # Behind, a corrupt record...: the sender meets it again and handles it
                link.wake.set()
                continue
            if (
                cursor.next_lsn <= self.store.log.end_lsn
                or writer.transport.get_write_buffer_size() > SEND_BUFFERED
            ):
                link.wake.set()

    def _push(self, link: Link, cursor: Cursor, writer: asyncio.StreamWriter) -> bytes | None:
        """Write the next records (up to about BATCH_BYTES) to the follower as one frame, returned; None
        when there were none."""
        if writer.is_closing():
            return None
        # Appended records go out while the leader syncs them itself: a confirm waits for both, so its
        # latency is the slower of the two, not their sum.
        before = cursor.next_lsn
        batch = cursor.read_live(BATCH_BYTES)
        if not batch:
            return None
        frame = wire.records_frame(self._term, batch)
        self._sent(link, writer, frame, cursor.next_lsn - before)
        return frame

    @staticmethod
    def _sent(link: Link, writer: asyncio.StreamWriter, frame: bytes, records: int) -> None:
        writer.write(frame)
        link.frames += 1
        link.records += records

    def _followers_in_sync(self) -> list[str]:
        me = self.role.node_name
        return [node for node in self.role.isr() if node != me]

    def _update(self) -> None:
        """Tell the journal up to where every in-sync (or joining) follower has acknowledged."""
        members = [*self._followers_in_sync(), *self._joining]
        limit = min((self.acked.get(node, 0) for node in members), default=NO_REPLICA_LIMIT)
        self.store.journal.replicated(limit)

    def _acknowledged(self, link: Link, lsn: int) -> None:
        node = link.node
        link.acked = lsn
        link.last_ack = time.monotonic()
        self.acked[node] = lsn
        if lsn >= self.durable_lsn:
            self._behind_since.pop(node, None)
        if node in self.role.isr():
            self._update()
            return
        if node not in self._joining and lsn >= link.join_at:
            # Joining: from now on confirms wait for this follower too, so once it has what was confirmed
            # before this moment it has everything confirmed, and only then does the set take it (an
            # in-sync member may be elected: it must hold every confirmed record).
            journal = self.store.journal
            self._joining[node] = min(self.durable_lsn, journal.replica_lsn)
            self._behind_since.pop(node, None)
        if node in self._joining:
            self._update()
            self._maybe_join(node)

    def _maybe_join(self, node: str) -> None:
        if self._isr_busy or node not in self._joining or self.acked.get(node, 0) < self._joining[node]:
            return
        self._isr_busy = True
        task = asyncio.create_task(self._join(node))
        self._sessions.add(task)
        task.add_done_callback(self._sessions.discard)

    async def _join(self, node: str) -> None:
        try:
            members = self.role.isr()
            if node not in members:
                await self.role.set_isr([*members, node])
                log.info(
                    f"follower {node} joined the in-sync set",
                    extra={"node": node, "acked_lsn": self.acked.get(node, 0)},
                )
            self._joining.pop(node, None)
            self._update()
            self._check_min()
        finally:
            self._isr_busy = False

    def _left(self, node: str) -> None:
        """A follower's connection ended: a joining one stops holding confirms (the set never took it)."""
        if self._joining.pop(node, None) is not None:
            self._update()

    async def _watch_isr(self) -> None:
        interval = min(0.1, self.options.ack_timeout / 4)
        while True:
            await asyncio.sleep(interval)
            try:
                await self._drop_laggards()
                for node in list(self._joining):
                    self._maybe_join(node)
            except Exception as exc:  # an ISR write that failed (etcd down): tried again next time
                log.error(f"updating the in-sync set failed: {exc}")

    async def _drop_laggards(self) -> None:
        durable = self.durable_lsn
        now = time.monotonic()
        drop = []
        for node in [*self._followers_in_sync(), *self._joining]:
            acked = self.acked.get(node, 0)
            # A member that is not connected cannot acknowledge what comes next: it leaves the set after
            # the same deadline even when nothing is being written.
            if acked >= durable and node in self.links:
                self._behind_since.pop(node, None)
                continue
            since = self._behind_since.setdefault(node, now)
            if now - since >= self.options.ack_timeout:
                drop.append(node)
        for node in [node for node in drop if node in self._joining]:
            del self._joining[node]  # never in the set: it stops holding confirms at once
            drop.remove(node)
            self._update()
        if drop and not self._isr_busy:
            self._isr_busy = True
            try:
                # The set is changed first (in etcd with an election): only then may confirms go on
                # without these members.
                await self.role.set_isr([node for node in self.role.isr() if node not in drop])
            finally:
                self._isr_busy = False
            for node in drop:
                self._behind_since.pop(node, None)
                why = f"no acknowledgement of LSN {durable}" if node in self.links else "not connected"
                log.warning(
                    f"follower {node} dropped from the in-sync set: {why} within "
                    f"{self.options.ack_timeout} s",
                    extra={"node": node, "acked_lsn": self.acked.get(node, 0), "lsn": durable},
                )
            self._update()
        self._check_min()

    def _check_min(self) -> None:
        if self._fenced:
            return  # held for good: no longer the leader
        members = set(self.role.isr()) | {self.role.node_name}
        short = len(members) < self.options.min_in_sync
        if short == self._held:
            return
        self._held = short
        broker = self.store.broker
        if short:
            why = f"{len(members)} node(s) in sync, min_in_sync is {self.options.min_in_sync}"
            log.error(f"publishes are refused and publishers blocked: {why}")
            self.store.journal.hold(why)
        else:
            log.warning("enough nodes are in sync again: publishes accepted")
            self.store.journal.hold(None)
        if broker is not None:
            broker.set_alarm(ALARM_CLUSTER, short)

    # -- sessions ---------------------------------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._sessions.add(task)
        peer = writer.get_extra_info("peername")
        address = f"{peer[0]}:{peer[1]}" if peer else "?"
        try:
            if self._fenced or self._stopped:
                return  # no longer the leader: nothing is sent to anyone
            if self.options.tls is not None and not await self._start_tls(writer, address):
                return
            await self._session(reader, writer, address)
        except (ConnectionError, asyncio.IncompleteReadError, OSError) as exc:
            log.info(f"replication connection from {address} ended: {exc or type(exc).__name__}")
        except wire.ProtocolError as exc:
            log.error(f"replication connection from {address} refused: {exc}")
        except asyncio.CancelledError:
            pass
        finally:
            self._sessions.discard(task)
            writer.close()

    async def _start_tls(self, writer: asyncio.StreamWriter, address: str) -> bool:
        """STARTTLS, then the TLS handshake: here rather than in the listener so that a refused peer (no
        certificate, one of another CA, no TLS at all) is logged; False once refused.

        The leader speaks first (STARTTLS) and the follower starts its handshake only then: a ClientHello
        sent at connect could be read into the plain stream before `start_tls` (uvloop reads a new
        socket at once), and the handshake would wait for it forever."""
        assert self.options.tls is not None
        writer.write(wire.frame(wire.STARTTLS))
        try:
            # No suspension between the write and start_tls pausing the socket's reading.
            await writer.start_tls(self.options.tls, ssl_handshake_timeout=AUTH_TIMEOUT)
        except (ssl.SSLError, OSError, TimeoutError) as exc:
            log.error(f"replication: refused a connection from {address}: TLS handshake failed: {exc}")
            writer.transport.abort()
            return False
        return True

    async def _authenticate(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, address: str
    ) -> str | None:
        """The follower's node name once it proved it knows the secret; None once refused (logged)."""
        options = self.options
        nonce = wire.new_nonce()
        writer.write(
            wire.json_frame(
                wire.CHALLENGE,
                {"cluster": options.cluster_name, "nonce": nonce, "node": self.role.node_name},
            )
        )
        _kind, auth = await asyncio.wait_for(wire.read_json(reader, wire.AUTH), AUTH_TIMEOUT)
        node = str(auth.get("node", ""))
        cluster = auth.get("cluster")
        reason = None
        if cluster != options.cluster_name:
            reason = f"another cluster ({cluster!r}; this is {options.cluster_name!r})"
        elif not wire.check_mac(options.secret, options.cluster_name, "follower", nonce, auth.get("mac")):
            reason = "wrong cluster secret"
        elif not node or node == self.role.node_name:
            reason = f"node name {node!r} is empty or this leader's own"
        if reason is not None:
            log.error(f"replication: refused node {node or '?'} from {address}: {reason}")
            writer.write(wire.json_frame(wire.REFUSED, {"reason": reason}))
            await writer.drain()
            return None
        proof = wire.mac(options.secret, options.cluster_name, "leader", str(auth.get("nonce", "")))
        writer.write(wire.json_frame(wire.WELCOME, {"mac": proof, "term": self.role.term()}))
        return node

    async def _session(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, address: str
    ) -> None:
        node = await self._authenticate(reader, writer, address)
        if node is None:
            return
        _kind, hello = await asyncio.wait_for(wire.read_json(reader, wire.HELLO), AUTH_TIMEOUT)
        start = self._stream_start(hello)
        if start is None:
            log.info(
                f"follower {node} ({address}) gets a bulk sync",
                extra={"node": node, "follower_lsn": hello.get("durable", 0)},
            )
            await self._bulk_sync(reader, writer, hello)
            return
        old = self.links.get(node)
        if old is not None and old.session is not None:
            # The node connected again: its previous connection is dead (a partition, a restart the
            # leader has not noticed yet). The new one replaces it.
            log.info(f"follower {node} connected again from {address}: its previous connection is closed")
            old.session.cancel()
            await asyncio.wait({old.session}, timeout=5)
        if node in self.links:
            raise wire.ProtocolError(f"node {node} is already connected")
        durable = int(hello.get("durable", 0))
        writer.write(wire.json_frame(wire.STREAM, {"from": start, "truncate": start < durable}))
        log.info(
            f"follower {node} ({address}) streams from LSN {start}",
            extra={"node": node, "lsn": start, "follower_lsn": durable},
        )
        link = Link(
            node, address, start, join_at=self.durable_lsn, acked=start, session=asyncio.current_task()
        )
        self.links[node] = link
        self.acked[node] = start
        self._acknowledged(link, start)  # caught up already when the leader is idle: it joins now
        if self._threaded:
            await self._stream_from_thread(link, reader, writer)
            return
        # A frame or two in flight must not pause the connection (the default pauses it at 64 KiB, and a
        # paused sender is not there when the next group commit is taken): the sender waits for it to
        # drain above SEND_BUFFERED only.
        writer.transport.set_write_buffer_limits(high=SEND_BUFFERED)
        sender = asyncio.create_task(self._send(link, writer))
        try:
            await self._read_acks(link, reader, lambda: _ended(sender))
        finally:
            sender.cancel()
            with contextlib.suppress(BaseException):
                await sender
            del self.links[link.node]
            self._left(link.node)

    async def _stream_from_thread(
        self, link: Link, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Plain TCP: a `Sender` thread sends the records over a duplicate of the socket, the loop reads
        the acknowledgements from the connection as before."""
        for _ in range(500):  # what the transport holds (STREAM) goes out before the thread's frames
            if writer.transport.get_write_buffer_size() == 0:
                break
            await asyncio.sleep(0.01)
        else:
            raise ConnectionError(f"follower {link.node} does not read its STREAM answer")
        raw = writer.get_extra_info("socket")
        sock = socket.socket(fileno=os.dup(raw.fileno()))
        sock.settimeout(SEND_POLL)  # the description is non-blocking already (the loop's): unchanged
        sender = Sender(self, link, sock, Cursor(self.store.log, link.start_lsn), self._term)
        link.sender = sender
        self._senders = (*self._senders, sender)
        try:
            sender.start()
            await self._read_acks(link, reader, lambda: _thread_ended(sender))
        finally:
            sender.stop()
            self._senders = tuple(other for other in self._senders if other is not sender)
            await asyncio.wait({sender.done}, timeout=5)
            del self.links[link.node]
            self._left(link.node)

    def _stream_start(self, hello: dict[str, Any]) -> int | None:
        """Where the follower's stream starts, or None for a bulk sync."""
        memento_log = self.store.log
        if hello.get("log_id") != memento_log.log_id.hex():
            return None
        durable = self.durable_lsn
        segments = memento_log.segments
        first = segments[0].base_lsn if segments else durable + 1
        probes = sorted(((int(lsn), int(crc)) for lsn, crc in hello.get("probes", [])), reverse=True)
        for lsn, crc in probes:
            if lsn > durable:
                continue
            if lsn < first - 1:
                return None  # what follows it is no longer in this log
            if (lsn == 0 and first <= 1) or (lsn >= first and record_crc(memento_log, lsn) == crc):
                return lsn
        return None

    async def _send(self, link: Link, writer: asyncio.StreamWriter) -> None:
        memento_log = self.store.log
        cursor = Cursor(memento_log, link.start_lsn)
        try:
            await self._stream(link, writer, cursor)
        except asyncio.CancelledError:
            raise
        except BaseException:
            # The session reads acks until the connection ends: closing it is how it learns of this.
            writer.close()
            raise
        finally:
            cursor.close()

    async def _stream(self, link: Link, writer: asyncio.StreamWriter, cursor: Cursor) -> None:
        memento_log = self.store.log
        while True:
            pushed = False
            if cursor.next_lsn <= memento_log.end_lsn:
                try:
                    pushed = self._push(link, cursor, writer) is not None
                except Behind as exc:
                    log.warning(f"follower {link.node} fell behind the log's start ({exc}); it resyncs")
                    writer.close()
                    return
            # Also what `_taken` wrote: woken for a full buffer, the sender waits here until it drains.
            await writer.drain()
            if pushed:
                continue
            link.wake.clear()
            link.cursor, link.writer = cursor, writer
            try:
                await link.wake.wait()
            finally:
                link.cursor = link.writer = None

    async def _read_acks(self, link: Link, reader: asyncio.StreamReader, ended: Callable[[], bool]) -> None:
        """Take the follower's acknowledgements until the connection ends (the sender closes it when it
        stops): whatever arrived is read at once and only its highest LSN counts (an ACK covers every
        record up to its LSN), so a burst of ACKs costs one read and one update. `ended()` tells, when
        the connection ends, whether the sender ended it (raising its error if it failed)."""
        buffer = bytearray()
        while True:
            data = await reader.read(ACK_READ)
            if not data:
                if ended():
                    return  # the sender ended the stream (a resync)
                raise ConnectionError(f"follower {link.node} closed the connection")
            buffer += data
            lsn = wire.last_ack(buffer, link.node)
            if lsn is not None:
                self._acknowledged(link, lsn)

    # -- bulk sync --------------------------------------------------------------------------------------

    async def _bulk_sync(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, hello: dict[str, Any]
    ) -> None:
        memento_log = self.store.log
        snapshot = await asyncio.to_thread(memento_log.snapshots.load_latest)
        durable = self.durable_lsn
        segments = [seg for seg in memento_log._segments if seg.base_lsn <= durable]
        staged = hello.get("staged", {})
        files: list[dict[str, Any]] = []
        for i, seg in enumerate(segments):
            if i + 1 < len(segments):
                length = os.path.getsize(seg.path)
            else:  # the tail: up to the end of the last durable record (what follows may be in flight)
                length = await asyncio.to_thread(offset_of, seg, durable + 1)
            files.append({"name": seg.name, "size": seg.size, "length": length, "path": seg.path})
        for entry in files:
            have = staged.get(entry["name"])
            # A file staged by an interrupted sync is skipped when it is the same bytes.
            entry["skip"] = (
                isinstance(have, list)
                and have[0] == entry["length"]
                and await asyncio.to_thread(_crc_of, str(entry["path"]), int(entry["length"])) == have[1]
            )
        manifest = {
            "log_id": memento_log.log_id.hex(),
            "term": self.role.term(),
            "snapshot_lsn": snapshot.lsn if snapshot is not None else 0,
            "files": [{k: v for k, v in entry.items() if k != "path"} for entry in files],
        }
        writer.write(wire.json_frame(wire.BULK, manifest))
        if snapshot is not None:
            await _send_bytes(writer, "snapshot", snapshot.state)
        for entry in files:
            if not entry["skip"]:
                await _send_file(writer, str(entry["name"]), str(entry["path"]), int(entry["length"]))
        writer.write(wire.json_frame(wire.BULK_DONE, {"durable": durable}))
        await writer.drain()
        # The follower installs the copy and connects again; wait for it to close.
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            await reader.read()


def _ended(sender: asyncio.Task[None]) -> bool:
    if sender.done() and not sender.cancelled():
        sender.result()  # its error, if it failed
        return True
    return False


def _thread_ended(sender: Sender) -> bool:
    if sender.error is not None:
        raise sender.error
    return sender.ended


def _crc_of(path: str, length: int) -> int:
    crc = 0
    with open(path, "rb") as f:
        left = length
        while left > 0:
            data = f.read(min(left, FILE_CHUNK))
            if not data:
                break
            crc = crc32c.crc32c(data, crc)
            left -= len(data)
    return crc


async def _send_bytes(writer: asyncio.StreamWriter, name: str, data: bytes) -> None:
    for offset in range(0, len(data), FILE_CHUNK):
        writer.write(wire.chunk_frame(name, offset, memoryview(data)[offset : offset + FILE_CHUNK]))
        await writer.drain()
    writer.write(
        wire.json_frame(wire.FILE_END, {"name": name, "length": len(data), "crc": crc32c.crc32c(data)})
    )


async def _send_file(writer: asyncio.StreamWriter, name: str, path: str, length: int) -> None:
    crc = 0
    with open(path, "rb") as f:
        offset = 0
        while offset < length:
            data = os.pread(f.fileno(), min(FILE_CHUNK, length - offset), offset)
            if not data:
                raise OSError(f"{path} is shorter than {length} bytes")
            crc = crc32c.crc32c(data, crc)
            writer.write(wire.chunk_frame(name, offset, data))
            await writer.drain()
            offset += len(data)
    writer.write(wire.json_frame(wire.FILE_END, {"name": name, "length": length, "crc": crc}))
