"""The node-wide connection limit (RabbitMQ's `connection_max`), applied when a socket is accepted.

Strategy: the cheapest refusal is the earliest. Above the limit a new TCP connection is closed right
after accept, before a byte of AMQP is read or a broker `Connection` exists, so a flood of connections
costs the broker almost nothing; as RabbitMQ, the client sees the socket close. The per-vhost limit
(`max-connections`) needs the vhost named in connection.open, so the broker checks it there (530).

The open-file limit caps client sockets too, below the limit itself (as RabbitMQ keeps descriptors for its
files): the log must always be able to open its next segment and the segments it reads messages back from,
so `fd_reserve(limit)` descriptors are kept for everything but AMQP clients.
"""

from __future__ import annotations

import logging
import resource
import time
from typing import Final

log: Final = logging.getLogger("ottermq.server")

# At most one warning per this many seconds while connections are being refused.
_WARN_INTERVAL: Final = 10.0
# Descriptors kept for the log, the management API, the ctl socket...: a tenth of the limit, at least this.
FD_RESERVE_MIN: Final = 32


def fd_reserve(limit: int) -> int:
    """Descriptors kept for everything but AMQP client sockets under an open-file limit of `limit`."""
    return max(FD_RESERVE_MIN, limit // 10)


def socket_limit() -> int:
    """Most AMQP client sockets the current open-file limit leaves room for (0 = no limit)."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 0
    return max(1, soft - fd_reserve(soft))


class ConnectionLimit:
    """Admits accepted sockets while fewer than `connection_max` (0 = no limit) and fewer than the
    open-file limit leaves room for (`sockets`, `socket_limit()` by default) are open."""

    __slots__ = ("_last_warning", "connection_max", "refused", "sockets")

    def __init__(self, connection_max: int = 0, sockets: int | None = None) -> None:
        if connection_max < 0:
            raise ValueError("connection_max must be 0 (no limit) or positive")
        self.connection_max = connection_max
        self.sockets = socket_limit() if sockets is None else sockets
        self.refused = 0
        self._last_warning = 0.0

    def room(self, open_connections: int) -> bool:
        """True if one more connection may open beside `open_connections` (nothing counted or logged)."""
        limit, sockets = self.connection_max, self.sockets
        return (not limit or open_connections < limit) and (not sockets or open_connections < sockets)

    def admit(self, open_connections: int, peer: str) -> bool:
        """True if one more connection may open beside `open_connections`; counts and logs refusals."""
        if self.room(open_connections):
            return True
        limit = self.connection_max
        self.refused += 1
        now = time.monotonic()
        if now - self._last_warning >= _WARN_INTERVAL:
            self._last_warning = now
            if limit and open_connections >= limit:
                what, extra = "node connection limit is reached", {"limit": limit}
            else:
                what, extra = "open-file limit leaves no room for more clients", {"sockets": self.sockets}
            log.warning(
                f"{what}; refusing new connections", extra={"conn": peer, **extra, "refused": self.refused}
            )
        return False


def raise_open_file_limit() -> tuple[int, int]:
    """Raise the soft open-file limit to the hard one (each connection is a descriptor; the usual soft
    limit of 1024 would cap a broker at about a thousand clients). Returns (soft, hard) afterwards."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass  # keep the soft limit; the warning in the log below says what it is
    if soft != resource.RLIM_INFINITY and soft < 4096:
        log.warning("open-file limit is low; it caps the number of connections", extra={"limit": soft})
    return soft, hard
