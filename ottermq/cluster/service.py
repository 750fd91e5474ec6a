"""A clustered node as `ottermq serve` runs it: the election, and what leading or following means for clients.

Strategy: the CLI builds a `ClusterService` from the settings and hands it to the server, which starts it
before its listeners accept anyone and stops it after the last client. While another node leads, AMQP
clients accepted here are relayed to it (`proxy`, ottermq.cluster.proxy; `upstream()` says where); while
no leader is known (and until this node serves) the broker refuses them at connection.open with 320
CONNECTION_FORCED "not the leader; ...". The management API answers read-only and `ottermq ctl` refuses
changes on any node that does not serve. Losing leadership closes every client connection
at once (fencing), synchronously inside the election's `on_lost`: no confirm can leave after that.

Callbacks registered on `leadership` before `start` run before the gate opens (on_elected) and before the
gate closes (on_lost): the replication layer registers its own first.

Until the replication stream owns the in-sync set, there is nothing to replicate and every live member is
trivially in sync: with `manage_isr` (the default) the leader keeps the ISR equal to the live members, so
any of them may take over. The replication layer turns it off and calls `set_isr` itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from ottermq.amqp.constants import CONNECTION_FORCED
from ottermq.cluster.election import ClusterError, Leadership, NodeInfo
from ottermq.cluster.etcd import EtcdClient, EtcdError
from ottermq.cluster.proxy import AmqpProxy, Upstream

if TYPE_CHECKING:
    from ottermq.broker.broker import Broker

log: Final = logging.getLogger("ottermq.cluster")


@dataclass(frozen=True, slots=True)
class ClusterOptions:
    """The cluster settings (`ottermq.config.Settings` names: etcd_endpoints, node_name, ...)."""

    etcd_endpoints: tuple[str, ...]
    node: NodeInfo
    cluster_name: str = "ottermq"
    lease_ttl: float = 5.0
    secret: str = ""
    min_in_sync: int = 1


class ClusterService:
    """The election of one node and its effect on clients."""

    def __init__(
        self, options: ClusterOptions, durable_lsn: Callable[[], int] = lambda: 0, *, manage_isr: bool = True
    ) -> None:
        self.options = options
        self.manage_isr = manage_isr
        self._isr_task: asyncio.Task[None] | None = None
        # A call to etcd gets a third of the lease's TTL: a keep-alive must fail well before the lease can.
        self.client = EtcdClient(options.etcd_endpoints, timeout=max(0.5, options.lease_ttl / 3))
        self.leadership = Leadership(
            self.client,
            options.node,
            cluster_name=options.cluster_name,
            lease_ttl=options.lease_ttl,
            durable_lsn=durable_lsn,
        )
        self.broker: Broker | None = None
        # The replication leader's status while this node leads (ottermq.server.cluster_node sets it):
        # each follower's lag and last acknowledgement, in `status()`.
        self.replication_status: Callable[[], dict[str, Any]] | None = None
        # True between the end of the on_elected callbacks and the first on_lost: clients are served.
        self.serving = False
        # Relays AMQP clients accepted here to the leader while another node leads (the server asks it).
        self.proxy = AmqpProxy(self.upstream)

    def attach(self, broker: Broker) -> None:
        """Gate `broker`'s clients (a clustered node's broker changes when a follower opens its log
        again)."""
        self.broker = broker
        broker.admission = self.refusal

    async def start(self, broker: Broker) -> None:
        """Refuse clients, then join the election (in the background)."""
        self.attach(broker)
        self.leadership.on_elected(self._serve)
        self.leadership.on_lost(self._fence)
        await self.leadership.start()
        if self.manage_isr:
            self._isr_task = asyncio.get_running_loop().create_task(self._keep_isr(), name="ottermq-isr")
        log.info(
            "joining the cluster",
            extra={
                "cluster": self.options.cluster_name,
                "node": self.options.node.name,
                "etcd": ",".join(self.options.etcd_endpoints),
            },
        )

    async def stop(self) -> None:
        """Leave the election (the lease is revoked, so another node takes over at once)."""
        if self._isr_task is not None:
            self._isr_task.cancel()
            with contextlib.suppress(BaseException):
                await self._isr_task
        await self.leadership.stop()

    async def _keep_isr(self) -> None:
        """While leading: the ISR = the live members (see the module's note)."""
        leadership = self.leadership
        while True:
            await asyncio.sleep(leadership.member_interval)
            if not leadership.is_leader():
                continue
            live = sorted({*leadership.members(), leadership.node_name})
            if live != sorted(leadership.isr()):
                try:
                    await leadership.set_isr(live)
                except (ClusterError, EtcdError) as exc:
                    log.warning(f"cannot update the in-sync set: {exc}")

    def refusal(self) -> str | None:
        """Why a client is refused now (None: this node serves)."""
        if self.serving and self.leadership.is_leader():
            return None
        leader = self.leadership.leader()
        if leader is None or leader.name == self.options.node.name:
            return "not the leader; no leader is elected yet"
        host = f"[{leader.host}]" if ":" in leader.host else leader.host
        return f"not the leader; leader is {host}:{leader.amqp_port}"

    def upstream(self) -> Upstream | None:
        """Where an AMQP client accepted here is relayed: the leader's AMQP address while another node
        leads; None while this node leads (or is being elected) or no leader is known."""
        if self.leadership.is_leader():
            return None
        leader = self.leadership.leader()
        if leader is None or leader.name == self.options.node.name:
            return None
        return Upstream(leader.host, leader.amqp_port, leader.term)

    async def _serve(self, term: int) -> None:
        self.serving = True
        log.info("serving clients as the leader", extra={"node": self.options.node.name, "term": term})

    def _fence(self) -> None:
        """Lost the lease: close every client connection now, before anything else can run."""
        self.serving = False
        broker = self.broker
        if broker is None:
            return
        text = f"CONNECTION_FORCED - {self.refusal()}"
        connections = list(broker.connections)
        for connection in connections:
            connection.shutdown(CONNECTION_FORCED, text)
            # Flush the close and end the socket: nothing written after this (a confirm) reaches the client.
            connection.transport.close()
        log.warning("stopped serving clients: leadership lost", extra={"connections": len(connections)})

    async def step_down(self) -> dict[str, Any]:
        """Hand leadership over (ctl step_down); ClusterError when this node does not lead, or when no
        other node is in sync to take over (with replication: nothing would then hold every confirmed
        message)."""
        leadership = self.leadership
        term = leadership.term()
        if not leadership.is_leader():
            raise ClusterError("not the leader")
        if self.replication_status is not None:
            others = [node for node in leadership.isr() if node != self.options.node.name]
            if not others:
                raise ClusterError("no other node is in the in-sync set to take over")
            await self._let_followers_catch_up(others)
        await leadership.step_down()
        return {"node": self.options.node.name, "term": term, "stepped_down": True}

    async def _let_followers_catch_up(self, nodes: list[str], timeout: float = 2.0) -> None:
        """Wait (a bounded time) until the in-sync followers hold everything durable here, so that the
        next leader has the records of publishes still waiting for their confirm (otherwise they would be
        cut from this log and published again by their clients)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.replication_status is not None:
            followers = self.replication_status().get("followers", {})
            if all(followers.get(node, {}).get("lag_records", 1) == 0 for node in nodes):
                return
            await asyncio.sleep(0.02)

    def status(self) -> dict[str, Any]:
        status = self.leadership.status()
        status["serving"] = self.serving and self.leadership.is_leader()
        status["min_in_sync"] = self.options.min_in_sync
        replication = self.replication_status
        if replication is not None and status["is_leader"]:
            status["replication"] = replication()
        status["proxy"] = self.proxy.status()
        return status


__all__ = ["ClusterError", "ClusterOptions", "ClusterService"]
