"""A clustered node as `ottermq serve --etcd ...` runs it: the election decides whether its store leads
(serves clients, streams its log to followers) or follows the leader (a hot standby).

Strategy: one `ClusterService` (the etcd election) lives as long as the process; the durable store does
not. A follower's store is closed and opened again whenever its log is cut or replaced (a returning old
leader's unreplicated tail, a bulk sync), and a demoted leader opens its log again as a follower; each
store gets its own serving stack (`run.serve_stack`: AMQP listeners, ctl socket, management API) with
the cluster service gating its clients, so nothing outlives the broker it reads. Promotion keeps the
store: the follower stops, the projection it built record by record starts serving (`store.promote`),
the replication listener opens, and only then does the cluster service admit clients.

Transitions (serialized by one lock):
- elected (`on_elected`, awaited by the election before clients are admitted): stop following (keep the
  store), drop from the in-sync set the members etcd no longer lists (their lease is gone: they cannot
  acknowledge, and would hold the first confirms for the ack timeout), promote, start the
  `ReplicationLeader` (it holds the journal at once on a later `on_lost`: fencing);
- lost (`on_lost`, synchronous): the fencing is done by the service and the replication leader; the
  node then stops the replication leader and the stack, closes the store without a snapshot (a cut of
  what was never replicated may follow) and opens it again as a follower;
- not leading: follow the leader etcd names; follow the new one when it changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from ottermq.cluster.election import ClusterError
from ottermq.cluster.etcd import EtcdError
from ottermq.cluster.follower import Follower, FollowerOptions
from ottermq.cluster.leader import ReplicationLeader, ReplicationOptions
from ottermq.server.control import ControlServer
from ottermq.server.run import ServeOptions, serve_stack
from ottermq.server.signals import StopSignals

if TYPE_CHECKING:
    from ottermq.broker.broker import Broker
    from ottermq.cluster.service import ClusterService
    from ottermq.store.store import DurableStore

log: Final = logging.getLogger("ottermq.cluster")

POLL: Final = 0.05  # how often the node looks at who leads (the election's view is in memory)


@dataclass(frozen=True, slots=True)
class NodePlan:
    """What the CLI gives a clustered node."""

    data_dir: Path
    # Open and recover the store as a standby (no defaults written, compaction off, broker.standby).
    open_store: Callable[[], DurableStore]
    # The serving stack's options for a store (its own management API and Prometheus services).
    stack_options: Callable[[DurableStore], ServeOptions]
    # Once leading, before clients are admitted: the defaults of a fresh log, the config file's users,
    # the definitions file (a follower writes no record of its own).
    seed: Callable[[DurableStore], None]
    replication: ReplicationOptions
    # The `ottermq ctl` socket (<data-dir>/ctl.sock), or None.
    control_socket: Path | None = None
    # `cluster_tls`: the context a follower connects to the leader's replication listener with.
    follower_tls: ssl.SSLContext | None = None


class ClusterNode:
    """Runs the store, the stack and the replication role of one clustered node until a stop signal."""

    def __init__(self, cluster: ClusterService, plan: NodePlan) -> None:
        self.cluster = cluster
        self.plan = plan
        self.store: DurableStore | None = None
        self.leader: ReplicationLeader | None = None
        self.follower: Follower | None = None
        self._following: tuple[str, int] | None = None
        self._follower_task: asyncio.Task[None] | None = None
        self._stack: asyncio.Task[int] | None = None
        self._stack_stop: asyncio.Event | None = None
        self._lock = asyncio.Lock()
        self._demote = False
        # The store serves as the leader's (promoted): losing the leadership means opening it again.
        self._promoted = False
        self._changed = asyncio.Event()
        self._signals: StopSignals | None = None
        # The ctl socket lives as long as the node (its broker follows the store): `ottermq ctl
        # cluster_status` answers while a follower opens its log again.
        self._control: ControlServer | None = None
        self._failed = 0
        cluster.leadership.durable_lsn = self.durable_lsn
        # Registered before the service's own callbacks (cluster.start): ours run before the gate opens.
        cluster.leadership.on_elected(self._elected)
        cluster.leadership.on_lost(self._lost)

    def durable_lsn(self) -> int:
        """What the member key reports (the election ranks candidates by it)."""
        store = self.store
        return store.journal.durable_position if store is not None else 0

    # -- the process -----------------------------------------------------------------------------------

    async def run(self, signals: StopSignals) -> int:
        self._signals = signals
        store = await self._open_store()
        await self._start_control(store)
        await self._start_stack(store)
        await self.cluster.start(self._broker(store))
        stop = asyncio.ensure_future(signals.event.wait())
        try:
            while not signals.event.is_set() and not self._failed:
                async with self._lock:
                    await self._reconcile()
                changed = asyncio.ensure_future(self._changed.wait())
                await asyncio.wait({stop, changed}, timeout=POLL, return_when=asyncio.FIRST_COMPLETED)
                changed.cancel()
                self._changed.clear()
        finally:
            stop.cancel()
            # Leave the election first: a leader is fenced (journal held, clients closed), the lease goes.
            await self.cluster.stop()
            async with self._lock:
                await self._stop_following()
                if self.leader is not None:
                    await self.leader.stop()
                    self.leader = None
                    self.cluster.replication_status = None
                await self._stop_stack()
                if self._control is not None:
                    await self._control.stop()
                last, self.store = self.store, None
                if last is not None:
                    await last.stop()
        return self._failed

    async def _reconcile(self) -> None:
        if self._stack is not None and self._stack.done():
            # The stack could not listen (a port in use), elected or not: a leader nobody can reach must
            # not go on holding the lease. The node ends; leaving the election fences it.
            self._failed = 1
            return
        if self._demote:
            await self._step_back()
        if self.leader is not None or self.cluster.leadership.is_leader():
            return
        leader = self.cluster.leadership.leader()
        if leader is None or leader.name == self.cluster.options.node.name:
            return
        address = (leader.host, leader.cluster_port)
        if address != self._following:
            await self._stop_following()
            self._start_following(address)

    # -- following -------------------------------------------------------------------------------------

    def _start_following(self, address: tuple[str, int]) -> None:
        plan = self.plan
        options = FollowerOptions(
            address,
            self.cluster.options.node.name,
            self.cluster.options.cluster_name,
            self.cluster.options.secret,
            tls=plan.follower_tls,
        )
        self.follower = Follower(
            plan.data_dir,
            options,
            plan.open_store,
            store=self.store,
            on_store=self._store_changed,
            keep_store=True,
        )
        self._following = address
        self._follower_task = asyncio.create_task(self.follower.run(), name="ottermq-follower")
        log.info(f"following the leader at {address[0]}:{address[1]}")

    async def _stop_following(self) -> None:
        """Stop the follower; the store it holds (if any: it may have been cutting its log) stays open."""
        task, follower = self._follower_task, self.follower
        self._follower_task = self.follower = None
        self._following = None
        if task is None or follower is None:
            return
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
        self.store = follower.store

    async def _store_changed(self, store: DurableStore | None) -> None:
        """The follower closed its store (None: stop serving its broker) or opened a new one."""
        if store is None:
            await self._stop_stack()
            self.store = None
            return
        self.store = store
        await self._start_stack(store)

    # -- leading ---------------------------------------------------------------------------------------

    async def _elected(self, term: int) -> None:
        async with self._lock:
            if self._demote:
                await self._step_back()
            await self._stop_following()
            store = self.store
            if store is None:
                store = await self._open_store()
                await self._start_stack(store)
            await self._prune_isr()
            self._promoted = True
            store.promote()
            try:
                self.plan.seed(store)
            except Exception:
                log.exception("seeding the new leader's broker failed")
            if not self.cluster.leadership.is_leader():
                self._demote = True  # lost while promoting
                return
            leader = ReplicationLeader(store, self.cluster.leadership, self.plan.replication)
            try:
                for host, port in await leader.start():
                    log.info(f"replication listening on tcp://{host}:{port}", extra={"term": term})
            except OSError as exc:
                log.error(f"cannot listen for replication: {exc.strerror or exc}; stepping down")
                await leader.stop()
                self._demote = True
                with contextlib.suppress(ClusterError, EtcdError):
                    await self.cluster.leadership.step_down()
                return
            self.leader = leader
            self.cluster.replication_status = leader.status
            log.info(
                "leading: serving clients from the replicated state",
                extra={"term": term, "lsn": store.journal.durable_position},
            )

    async def _prune_isr(self) -> None:
        """Drop the in-sync members that have no member key (their lease expired: the old leader, a dead
        node): they cannot acknowledge, so confirms would wait the ack timeout for them."""
        leadership = self.cluster.leadership
        isr = leadership.isr()
        live = leadership.members()
        me = leadership.node_name
        kept = [node for node in isr if node == me or node in live]
        if kept == isr:
            return
        try:
            await leadership.set_isr(kept)
            gone = sorted(set(isr) - set(kept))
            log.warning(f"in-sync members without a lease dropped: {', '.join(gone)}")
        except (ClusterError, EtcdError) as exc:
            log.warning(f"cannot drop the dead in-sync members: {exc}")

    def _lost(self) -> None:
        """Leadership lost (synchronously, inside the election; the fencing is already done)."""
        if self._promoted:
            self._demote = True
            self._changed.set()

    async def _step_back(self) -> None:
        """From leader to follower: stop replicating and serving, open the log again as a standby."""
        self._demote = self._promoted = False
        leader, self.leader = self.leader, None
        self.cluster.replication_status = None
        if leader is not None:
            await leader.stop()
        await self._stop_stack()
        store, self.store = self.store, None
        if store is not None:
            # No snapshot: what this node wrote that was never replicated may be cut when it follows.
            await store.stop(snapshot=False)
        store = await self._open_store()
        await self._start_stack(store)
        log.warning("no longer the leader: following the next one")

    # -- the store and its stack -----------------------------------------------------------------------

    async def _open_store(self) -> DurableStore:
        store = await asyncio.to_thread(self.plan.open_store)
        await store.start()
        self.store = store
        return store

    @staticmethod
    def _broker(store: DurableStore) -> Broker:
        broker = store.broker
        assert broker is not None
        return broker

    async def _start_control(self, store: DurableStore) -> None:
        path = self.plan.control_socket
        if path is None:
            return

        def status() -> dict[str, Any]:
            return self.store.status() if self.store is not None else {}

        control = ControlServer(self._broker(store), path, status, self.cluster)
        try:
            await control.start()
        except OSError as exc:
            log.error(f"cannot serve ottermq ctl on {path}: {exc.strerror or exc}")
            return
        self._control = control
        log.info("ottermq ctl socket ready", extra={"path": str(path)})

    async def _start_stack(self, store: DurableStore) -> None:
        await self._stop_stack()
        assert self._signals is not None
        broker = self._broker(store)
        self.cluster.attach(broker)
        if self._control is not None:
            self._control.broker = broker
        stop = self._stack_stop = asyncio.Event()
        options = replace(self.plan.stack_options(store), control_socket=None)
        self._stack = asyncio.create_task(
            serve_stack(broker, options, self._signals, stop), name="ottermq-stack"
        )
        # Let it bind before anything else happens (a port in use ends the node).
        await asyncio.sleep(0)

    async def _stop_stack(self) -> None:
        task, stop = self._stack, self._stack_stop
        self._stack = self._stack_stop = None
        if task is None or stop is None:
            return
        stop.set()
        with contextlib.suppress(BaseException):
            status = await task
            if status:
                self._failed = status


async def serve_cluster(cluster: ClusterService, plan: NodePlan, signals: StopSignals) -> int:
    """Run a clustered node until SIGTERM or SIGINT; the exit status."""
    signals.attach(asyncio.get_running_loop())
    return await ClusterNode(cluster, plan).run(signals)
