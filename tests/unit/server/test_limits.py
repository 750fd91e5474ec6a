"""The connection limits applied at accept: connection_max, and the room the open-file limit leaves."""

from __future__ import annotations

import resource

from ottermq.server.limits import FD_RESERVE_MIN, ConnectionLimit, fd_reserve, socket_limit


def test_the_open_file_limit_keeps_descriptors_for_the_log() -> None:
    assert fd_reserve(64) == FD_RESERVE_MIN
    assert fd_reserve(100_000) == 10_000
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert socket_limit() == (0 if soft == resource.RLIM_INFINITY else max(1, soft - fd_reserve(soft)))


def test_sockets_beyond_the_room_left_are_refused() -> None:
    limit = ConnectionLimit(0, sockets=32)
    assert limit.admit(31, "peer")
    assert not limit.admit(32, "peer")
    assert limit.refused == 1


def test_the_lower_of_both_limits_applies() -> None:
    assert not ConnectionLimit(10, sockets=32).admit(10, "peer")
    assert not ConnectionLimit(100, sockets=32).admit(32, "peer")
    assert ConnectionLimit(0, sockets=0).admit(10_000, "peer")
