"""What the replication stream needs to know about cluster membership and leadership.

The election (ottermq.cluster.election) implements this; the replication code depends only on this protocol.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol


class ClusterRole(Protocol):
    node_name: str

    def is_leader(self) -> bool: ...

    def term(self) -> int: ...

    def leader_address(self) -> tuple[str, int] | None:
        """The current leader's advertise host and cluster port, or None while there is no leader."""
        ...

    async def set_isr(self, members: list[str]) -> None: ...

    def isr(self) -> list[str]: ...

    def on_elected(self, cb: Callable[[int], Awaitable[None]]) -> None: ...

    def on_lost(self, cb: Callable[[], None]) -> None: ...
