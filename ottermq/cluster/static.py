"""A fixed cluster role, for tests and for the `cluster_static_leader` setting (tests only): no election,
the leader is known in advance and its term never changes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable


class StaticRole:
    """A `ClusterRole` whose leadership is decided by configuration. The in-sync set lives in memory."""

    def __init__(
        self, node_name: str, *, leader: bool, leader_address: tuple[str, int] | None = None, term: int = 1
    ) -> None:
        self.node_name = node_name
        self._leader = leader
        self._address = leader_address
        self._term = term
        self._isr: list[str] = [node_name] if leader else []
        self._lost: list[Callable[[], None]] = []

    def is_leader(self) -> bool:
        return self._leader

    def term(self) -> int:
        return self._term

    def leader_address(self) -> tuple[str, int] | None:
        return self._address

    async def set_isr(self, members: list[str]) -> None:
        self._isr = list(members)

    def isr(self) -> list[str]:
        return list(self._isr)

    def on_elected(self, cb: Callable[[int], Awaitable[None]]) -> None:
        pass  # never elected: the role is fixed

    def on_lost(self, cb: Callable[[], None]) -> None:
        self._lost.append(cb)

    def lose(self) -> None:
        """Lose the leadership (tests: what a lapsed lease does)."""
        self._leader = False
        for cb in self._lost:
            cb()


def parse_static_leader(value: str) -> tuple[str, int] | None:
    """`cluster_static_leader`: None for "self" (this node leads), else (host, port) of the leader's
    replication listener; ValueError for anything else."""
    if value == "self":
        return None
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected 'self' or HOST:PORT, got {value!r}")
    return host.strip("[]"), int(port)
