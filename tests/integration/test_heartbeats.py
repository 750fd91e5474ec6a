"""Heartbeats through a client: negotiated interval, and both peers send them while the connection idles."""

from __future__ import annotations

import pika

from tests.integration.conftest import BrokerInfo, wait_for


def test_heartbeats_flow_both_ways(broker: BrokerInfo) -> None:
    conn = pika.BlockingConnection(broker.params(heartbeat=1))
    try:
        assert conn._impl.params.heartbeat == 1
        checker = conn._impl._heartbeat_checker
        # An idle connection: only heartbeats cross it. The broker must send some and must not drop us
        # although we send nothing but heartbeats.
        wait_for(conn, lambda: checker._heartbeat_frames_received >= 1, timeout=6, what="broker heartbeats")
        assert checker._heartbeat_frames_sent >= 1
        assert conn.is_open
        conn.channel().queue_declare("", exclusive=True)
    finally:
        if conn.is_open:
            conn.close()


def test_heartbeat_disabled_by_client(broker: BrokerInfo) -> None:
    conn = pika.BlockingConnection(broker.params(heartbeat=0))
    try:
        assert conn._impl.params.heartbeat == 0
        assert conn._impl._heartbeat_checker is None
        conn.channel().queue_declare("", exclusive=True)
    finally:
        conn.close()
