"""Leader election, membership and the in-sync set (ISR) of an OtterMQ cluster, kept in etcd.

Keys (under `/<cluster_name>/`):
- `leader`: JSON {name, host, amqp_port, http_port, cluster_port, term}, attached to the leader's lease;
- `term`: the last term handed out (a decimal integer, no lease): bumped in the transaction that creates
  `leader`, so every leader's term is higher than any before it;
- `isr`: JSON list of node names that may become leader, written by the leader only, by a transaction on
  the key's mod revision that also checks the leader key is still its own; created as [first leader];
- `members/<node>`: JSON {name, host, ports, durable_lsn, updated (Unix time)}, on the node's lease,
  rewritten every `member_interval` seconds.

Each node holds one lease (TTL `lease_ttl`) for its member key and, when it leads, the leader key. The
campaign is one transaction: `leader` absent, `term` and `isr` unchanged since read -> put `leader` (on the
lease), put `term` + 1, create `isr` = [me] when absent. A node outside an existing ISR never campaigns.

Fencing: the leader refreshes its lease every TTL/3 and keeps a local deadline = the send time of the last
answered keep-alive + the TTL etcd gave (etcd cannot expire the lease before it). Any failed keep-alive, a
keep-alive saying the lease is gone, or the deadline (less a margin) passing ends leadership at once: the
`on_lost` callbacks run first, synchronously, before anything else, then the node starts a new lease and
may campaign again. So a node stops acting as leader before etcd can let another take its place.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any, Final

from ottermq.cluster.etcd import (
    EtcdClient,
    EtcdError,
    EtcdUnavailable,
    KeyValue,
    compare_create,
    compare_mod,
    op_put,
)

log: Final = logging.getLogger("ottermq.cluster")

# How much sooner than the lease's earliest possible expiry a leader steps down by itself.
FENCE_MARGIN_FRACTION: Final = 0.2
# Extra wait per better-placed ISR member (higher durable LSN) before campaigning, so that the most
# up-to-date follower normally wins.
RANK_DELAY: Final = 0.15


class ClusterError(Exception):
    """A cluster operation that cannot be done (not the leader, the ISR changed under us...)."""


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """How other nodes and clients reach a node."""

    name: str
    host: str
    amqp_port: int
    http_port: int
    cluster_port: int


@dataclass(frozen=True, slots=True)
class LeaderInfo:
    """The value of the leader key."""

    name: str
    host: str
    amqp_port: int
    http_port: int
    cluster_port: int
    term: int


@dataclass(frozen=True, slots=True)
class MemberInfo:
    """A member key: a node alive in the cluster (its lease holds) and what it last reported."""

    name: str
    host: str
    amqp_port: int
    http_port: int
    cluster_port: int
    durable_lsn: int
    updated: float


def _leader_of(kv: KeyValue | None) -> LeaderInfo | None:
    if kv is None:
        return None
    try:
        raw = json.loads(kv.value)
        return LeaderInfo(
            str(raw["name"]),
            str(raw["host"]),
            int(raw["amqp_port"]),
            int(raw["http_port"]),
            int(raw["cluster_port"]),
            int(raw["term"]),
        )
    except (ValueError, KeyError, TypeError):
        log.warning("unreadable leader key in etcd", extra={"value": kv.value[:200].decode(errors="replace")})
        return None


def _member_of(kv: KeyValue) -> MemberInfo | None:
    try:
        raw = json.loads(kv.value)
        return MemberInfo(
            str(raw["name"]),
            str(raw["host"]),
            int(raw["amqp_port"]),
            int(raw["http_port"]),
            int(raw["cluster_port"]),
            int(raw.get("durable_lsn", 0)),
            float(raw.get("updated", 0.0)),
        )
    except (ValueError, KeyError, TypeError):
        return None


def _isr_of(kv: KeyValue | None) -> list[str] | None:
    if kv is None:
        return None
    try:
        value = json.loads(kv.value)
    except ValueError:
        return None
    return [str(name) for name in value] if isinstance(value, list) else None


@dataclass(slots=True)
class View:
    """What a node last read of the cluster's keys (one range over the prefix)."""

    revision: int = 0
    leader_kv: KeyValue | None = None
    leader: LeaderInfo | None = None
    term_kv: KeyValue | None = None
    isr_kv: KeyValue | None = None
    isr: list[str] | None = None
    members: dict[str, MemberInfo] | None = None

    @property
    def term(self) -> int:
        if self.term_kv is None:
            return 0
        try:
            return int(self.term_kv.value)
        except ValueError:
            return 0


class Leadership:
    """This node's part in the election (implements `ottermq.cluster.interface.ClusterRole`).

    `durable_lsn()` is what the member key reports (the replication layer's durable position).
    """

    def __init__(
        self,
        client: EtcdClient,
        me: NodeInfo,
        *,
        cluster_name: str = "ottermq",
        lease_ttl: float = 5.0,
        durable_lsn: Callable[[], int] = lambda: 0,
        member_interval: float = 1.0,
    ) -> None:
        self.client = client
        self.me = me
        self.node_name = me.name
        self.cluster_name = cluster_name
        self.lease_ttl = max(1, round(lease_ttl))
        self.durable_lsn = durable_lsn
        self.member_interval = member_interval
        prefix = f"/{cluster_name}/"
        self.prefix = prefix.encode()
        self.leader_key = f"{prefix}leader".encode()
        self.term_key = f"{prefix}term".encode()
        self.isr_key = f"{prefix}isr".encode()
        self.members_prefix = f"{prefix}members/".encode()
        self.member_key = f"{prefix}members/{me.name}".encode()
        self.view = View()
        self._leading = False
        self._term = 0
        # The leader key's create revision while we lead: set_isr checks the key is still ours by it.
        self._leader_revision = 0
        self._lease = 0
        self._lease_lost: asyncio.Event | None = None
        self._changed: asyncio.Event | None = None
        self._fence: asyncio.TimerHandle | None = None
        self._elected: list[Callable[[int], Awaitable[None]]] = []
        self._lost: list[Callable[[], None]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._hold_off_until = 0.0
        self._last_member_put = 0.0
        self._etcd_ok = False
        self._stopping = False

    # -- ClusterRole -------------------------------------------------------------------------------------

    def is_leader(self) -> bool:
        return self._leading

    def term(self) -> int:
        """Our term while we lead; otherwise the current leader's (0 when none is known)."""
        if self._leading:
            return self._term
        return self.view.leader.term if self.view.leader is not None else 0

    def leader(self) -> LeaderInfo | None:
        """The leader as last seen (ourselves while we lead)."""
        if self._leading:
            me = self.me
            return LeaderInfo(me.name, me.host, me.amqp_port, me.http_port, me.cluster_port, self._term)
        return self.view.leader

    def leader_address(self) -> tuple[str, int] | None:
        leader = self.leader()
        return (leader.host, leader.cluster_port) if leader is not None else None

    def isr(self) -> list[str]:
        return list(self.view.isr or [])

    def members(self) -> dict[str, MemberInfo]:
        return dict(self.view.members or {})

    def on_elected(self, cb: Callable[[int], Awaitable[None]]) -> None:
        self._elected.append(cb)

    def on_lost(self, cb: Callable[[], None]) -> None:
        self._lost.append(cb)

    async def set_isr(self, members: list[str]) -> None:
        """Replace the ISR (leader only; it must name this node). ClusterError when not leading or when
        etcd refused the write because the leader key is no longer ours."""
        if not self._leading:
            raise ClusterError("not the leader")
        if self.node_name not in members:
            raise ClusterError("the ISR must include the leader")
        wanted = sorted(set(members))
        for _ in range(3):
            isr_revision = self.view.isr_kv.mod_revision if self.view.isr_kv is not None else 0
            result = await self.client.txn(
                [
                    compare_create(self.leader_key, self._leader_revision),
                    compare_mod(self.isr_key, isr_revision),
                ],
                [op_put(self.isr_key, json.dumps(wanted).encode())],
            )
            if result.succeeded:
                await self._refresh()
                log.info("in-sync set changed", extra={"isr": ",".join(wanted)})
                return
            await self._refresh()
            if not self._leading or self._leader_key_lost():
                raise ClusterError("not the leader any more")
        raise ClusterError("the in-sync set kept changing")

    # -- life cycle --------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Join: take a lease, register, follow or campaign, in the background until `stop`."""
        self._changed = asyncio.Event()
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._run(), name="ottermq-election"),
            loop.create_task(self._watch(), name="ottermq-election-watch"),
        ]

    async def stop(self) -> None:
        """Leave: stop leading (on_lost), revoke the lease so another node takes over at once."""
        self._stopping = True
        self._lose("shutdown")
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(BaseException):
                await task
        self._tasks = []
        if self._lease:
            with contextlib.suppress(EtcdError):
                await self.client.lease_revoke(self._lease, timeout=1.0)
            self._lease = 0
        await self.client.close()

    async def step_down(self) -> None:
        """Hand leadership over: stop leading (on_lost), revoke the lease (the leader and member keys go),
        and hold off campaigning until another node leads or two TTLs have passed."""
        if not self._leading:
            raise ClusterError("not the leader")
        lease = self._lease
        self._hold_off_until = time.monotonic() + 2 * self.lease_ttl
        self._lose("step down")
        with contextlib.suppress(EtcdUnavailable):
            await self.client.lease_revoke(lease)

    # -- status ------------------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """What `ottermq ctl cluster_status` and /api/nodes show."""
        now = time.time()
        leader = self.leader()
        members = sorted(self.members().values(), key=lambda m: m.name)
        return {
            "cluster_name": self.cluster_name,
            "node": self.node_name,
            "is_leader": self._leading,
            "term": self.term(),
            "leader": asdict(leader) if leader is not None else None,
            "etcd_reachable": self._etcd_ok,
            "isr": self.isr(),
            "members": [
                {
                    "name": m.name,
                    "host": m.host,
                    "amqp_port": m.amqp_port,
                    "http_port": m.http_port,
                    "cluster_port": m.cluster_port,
                    "durable_lsn": m.durable_lsn,
                    "last_seen_s": round(max(0.0, now - m.updated), 1),
                    "leader": leader is not None and m.name == leader.name,
                }
                for m in members
            ],
        }

    # -- the election loop -------------------------------------------------------------------------------

    async def _run(self) -> None:
        while not self._stopping:
            try:
                await self._session()
            except asyncio.CancelledError:
                raise
            except EtcdError as exc:
                self._etcd_ok = False
                log.warning(f"etcd: {exc}; retrying", extra={"node": self.node_name})
            except Exception:
                log.exception("internal error in the election; retrying")
            self._lose("etcd session ended")
            self._lease = 0
            await asyncio.sleep(0.5)

    async def _session(self) -> None:
        """One lease: register, then observe and campaign until the lease is lost."""
        lease, ttl = await self.client.lease_grant(self.lease_ttl)
        self._etcd_ok = True
        self._lease = lease
        lost = self._lease_lost = asyncio.Event()
        log.info("etcd lease granted", extra={"node": self.node_name, "lease": f"{lease:x}", "ttl": ttl})
        keepalive = asyncio.get_running_loop().create_task(self._keepalive(lease, lost), name="ottermq-lease")
        ended = "etcd session ended"
        try:
            await self._put_member()
            while not lost.is_set():
                await self._refresh()
                if time.monotonic() - self._last_member_put >= self.member_interval:
                    await self._put_member()
                if (
                    not self._leading
                    and self.view.leader_kv is not None
                    and self.view.leader_kv.lease == lease
                ):
                    # Our campaign's answer was lost (a timeout) but etcd applied it: we lead.
                    await self._become_leader(self.view.leader_kv, _leader_of(self.view.leader_kv))
                elif self._may_campaign():
                    await self._campaign(lease)
                await self._wait_change(lost)
        except BaseException as exc:
            ended = f"etcd session ended: {type(exc).__name__}: {exc}"
            raise
        finally:
            # First of all (before the fence timer goes with the keep-alive task): a node whose session
            # ended, whatever the cause, leads no more.
            self._lose(ended)
            keepalive.cancel()
            with contextlib.suppress(BaseException):
                await keepalive
            if self._lease == lease:
                # A lease we no longer keep alive: revoke it (best effort) so its keys go now.
                with contextlib.suppress(EtcdError):
                    await self.client.lease_revoke(lease, timeout=0.5)

    async def _wait_change(self, lost: asyncio.Event) -> None:
        """Until the leader key changes, the lease is lost, or it is time to refresh."""
        assert self._changed is not None
        changed = self._changed
        timeout = min(self.member_interval, self.lease_ttl / 4)
        waiters = [asyncio.ensure_future(changed.wait()), asyncio.ensure_future(lost.wait())]
        try:
            await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
        changed.clear()

    async def _refresh(self) -> None:
        """Read every key of the cluster into `view`."""
        kvs, revision = await self.client.range(self.prefix, prefix=True)
        self._etcd_ok = True
        view = View(revision=revision, members={})
        for kv in kvs:
            if kv.key == self.leader_key:
                view.leader_kv = kv
                view.leader = _leader_of(kv)
            elif kv.key == self.term_key:
                view.term_kv = kv
            elif kv.key == self.isr_key:
                view.isr_kv = kv
                view.isr = _isr_of(kv)
            elif kv.key.startswith(self.members_prefix):
                member = _member_of(kv)
                if member is not None:
                    assert view.members is not None
                    view.members[member.name] = member
        self.view = view
        if self._leading and self._leader_key_lost():
            self._lose("the leader key is gone or another node's")
        if view.leader is not None and view.leader.name != self.node_name:
            self._hold_off_until = 0.0

    def _leader_key_lost(self) -> bool:
        kv = self.view.leader_kv
        return kv is None or kv.create_revision != self._leader_revision

    async def _put_member(self) -> None:
        me = self.me
        value = {**asdict(me), "durable_lsn": self.durable_lsn(), "updated": time.time()}
        await self.client.put(self.member_key, json.dumps(value).encode(), self._lease)
        self._last_member_put = time.monotonic()

    def _may_campaign(self) -> bool:
        view = self.view
        if self._leading or view.leader_kv is not None or self._stopping:
            return False
        if time.monotonic() < self._hold_off_until:
            return False
        return view.isr is None or self.node_name in view.isr

    def _rank(self) -> int:
        """How many live ISR members report a higher durable LSN than ours (ties: the smaller name)."""
        members = self.view.members or {}
        isr = set(self.view.isr or [])
        mine = (self.durable_lsn(), self.node_name)
        return sum(
            1
            for m in members.values()
            if m.name in isr and m.name != self.node_name and (m.durable_lsn, mine[1]) > (mine[0], m.name)
        )

    async def _campaign(self, lease: int) -> None:
        rank = self._rank()
        if rank:
            await asyncio.sleep(rank * RANK_DELAY)
            await self._refresh()
            if not self._may_campaign():
                return
        view = self.view
        term = view.term + 1
        me = self.me
        value = LeaderInfo(me.name, me.host, me.amqp_port, me.http_port, me.cluster_port, term)
        success = [
            op_put(self.leader_key, json.dumps(asdict(value)).encode(), lease),
            op_put(self.term_key, str(term).encode()),
        ]
        if view.isr_kv is None:
            success.append(op_put(self.isr_key, json.dumps([me.name]).encode()))
        compare = [
            compare_create(self.leader_key, 0),
            compare_mod(self.term_key, view.term_kv.mod_revision if view.term_kv is not None else 0),
            compare_mod(self.isr_key, view.isr_kv.mod_revision if view.isr_kv is not None else 0),
        ]
        result = await self.client.txn(compare, success)
        if not result.succeeded:
            return
        # The transaction's revision is the leader key's create revision.
        kv = KeyValue(self.leader_key, b"", result.revision, result.revision, 1, lease)
        await self._become_leader(kv, value)

    async def _become_leader(self, kv: KeyValue, value: LeaderInfo | None) -> None:
        if value is None or self._lease_lost is None or self._lease_lost.is_set():
            return
        # The keys as they are now (the ISR this transaction may have created), before anyone can see this
        # node lead: is_leader() never comes with a stale ISR.
        await self._refresh()
        if self._lease_lost is None or self._lease_lost.is_set():
            return
        self._leading = True
        self._term = value.term
        self._leader_revision = kv.create_revision
        log.info("elected leader", extra={"node": self.node_name, "term": value.term})
        for callback in list(self._elected):
            if not self._leading:
                break
            try:
                await callback(value.term)
            except Exception:
                log.exception("error in an on_elected callback")

    def _lose(self, reason: str) -> None:
        """Stop leading now: the on_lost callbacks first, synchronously, then the rest."""
        if not self._leading:
            return
        self._leading = False
        for callback in list(self._lost):
            try:
                callback()
            except Exception:
                log.exception("error in an on_lost callback")
        if self._lease_lost is not None:
            self._lease_lost.set()
        log.warning("leadership lost", extra={"node": self.node_name, "term": self._term, "reason": reason})

    # -- the lease ---------------------------------------------------------------------------------------

    async def _keepalive(self, lease: int, lost: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        interval = self.lease_ttl / 3
        margin = self.lease_ttl * FENCE_MARGIN_FRACTION
        self._arm_fence(loop.time() + self.lease_ttl - margin, lost)
        try:
            while not lost.is_set():
                sent = loop.time()
                try:
                    ttl = await self.client.lease_keepalive(lease, timeout=interval)
                except EtcdError as exc:
                    self._etcd_ok = False
                    self._lease_failed(f"keep-alive failed: {exc}", lost)
                    return
                if ttl <= 0:
                    self._lease_failed("the lease expired", lost)
                    return
                self._arm_fence(sent + ttl - margin, lost)
                await asyncio.sleep(max(0.0, sent + interval - loop.time()))
        finally:
            if self._fence is not None:
                self._fence.cancel()
                self._fence = None

    def _arm_fence(self, when: float, lost: asyncio.Event) -> None:
        if self._fence is not None:
            self._fence.cancel()
        self._fence = asyncio.get_running_loop().call_at(
            when, self._lease_failed, "no keep-alive answer in time", lost
        )

    def _lease_failed(self, reason: str, lost: asyncio.Event) -> None:
        self._lose(reason)
        if not lost.is_set():
            log.warning("etcd lease lost", extra={"node": self.node_name, "reason": reason})
            lost.set()

    async def _watch(self) -> None:
        """Wake the election loop whenever the leader key changes (a deleted key: campaign now)."""
        while not self._stopping:
            try:
                start = self.view.revision + 1 if self.view.revision else 0
                async for _events in self.client.watch(self.leader_key, start):
                    if self._changed is not None:
                        self._changed.set()
            except asyncio.CancelledError:
                raise
            except (EtcdError, ConnectionError, OSError, ValueError):
                pass
            await asyncio.sleep(0.5)
