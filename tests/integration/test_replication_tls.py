"""Replication over TLS (`cluster_tls`) between real broker processes in fixed roles: a follower with a
certificate of the cluster's CA streams and joins the in-sync set; one with a certificate of another CA is
refused at the handshake with a log line on both sides; a plain-TCP peer is refused; the cluster secret is
still checked inside TLS."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.conftest import _free_port
from tests.integration.test_replication import ROOT, Node, follower, leader, nodes, publish
from tests.integration.test_tls import Certificates, make_certificates

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(bool(os.environ.get("OTTERMQ_TEST_URL")), reason="starts its own brokers"),
]

__all__ = ["nodes"]  # the fixture, imported for the tests below


def tls(certs: Certificates, *, cert: Path | None = None, key: Path | None = None) -> dict[str, str]:
    """Settings for a node with `cluster_tls` (the AMQPS listener these settings also open gets a free
    port: the default 5671 would be shared by every node on the machine)."""
    return {
        "cluster_tls": "true",
        "tls_certfile": str(cert or certs.server_cert),
        "tls_keyfile": str(key or certs.server_key),
        "tls_cafile": str(certs.ca),
        "tls_port": str(_free_port()),
    }


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    """Certificates of another CA (another cluster's)."""
    return make_certificates(tmp_path_factory.mktemp("other-ca"))


def test_a_follower_replicates_over_tls(tmp_path: Path, nodes: list[Node], certs: Certificates) -> None:
    a = leader(tmp_path, nodes, **tls(certs))
    with a.connect() as conn:
        conn.channel().queue_declare("q", durable=True)
    publish(a, "q", [b"before"])
    b = follower(tmp_path, nodes, a, **tls(certs))
    a.wait_log(r"follower b joined the in-sync set")
    publish(a, "q", [f"m{i}".encode() * 100 for i in range(200)])  # confirmed: durable on b too
    # The listener speaks only TLS: it says STARTTLS, and a peer that answers with something else than
    # a TLS handshake is refused, with a log line.
    with socket.create_connection(("127.0.0.1", a.cluster_port), timeout=5) as plain:
        assert plain.recv(5) == b"\x01\x00\x00\x00T"
        plain.sendall(b"\x00" * 64)
        with contextlib.suppress(OSError):
            while plain.recv(4096):
                pass
    a.wait_log(r"replication: refused a connection from 127\.0\.0\.1:\d+: TLS handshake failed")
    assert "TLS with the leader" not in b.text()
    assert "follower b" in a.text() and "dropped from the in-sync set" not in a.text()


def test_a_follower_with_a_certificate_of_another_ca_is_refused(
    tmp_path: Path, nodes: list[Node], certs: Certificates, other_ca: Certificates
) -> None:
    a = leader(tmp_path, nodes, **tls(certs))
    # b trusts the cluster's CA, but its own certificate is another CA's.
    b = follower(tmp_path, nodes, a, **tls(certs, cert=other_ca.server_cert, key=other_ca.server_key))
    a.wait_log(r"replication: refused a connection from [\d.:]+: TLS handshake failed: .*CERTIFICATE")
    # TLS 1.3: the follower's handshake is over when the leader checks its certificate, so the follower
    # only sees the connection close (an alert, when one arrives, is reported as a TLS failure).
    refused = r"refused this node: it closed the TLS connection|TLS with the leader at [\d.:]+ failed"
    b.wait_log(refused)
    time.sleep(2.5)  # a retry or two
    assert len(re.findall(refused, b.text())) == 1  # said once, not at every retry
    assert "joined the in-sync set" not in a.text()


def test_a_leader_with_a_certificate_of_another_ca_is_refused(
    tmp_path: Path, nodes: list[Node], certs: Certificates, other_ca: Certificates
) -> None:
    a = leader(tmp_path, nodes, **tls(other_ca))
    b = follower(tmp_path, nodes, a, **tls(certs))
    b.wait_log(r"replication: TLS with the leader at 127\.0\.0\.1:\d+ failed: .*certificate verify failed")
    a.wait_log(r"replication: refused a connection from 127\.0\.0\.1:\d+: TLS handshake failed")
    assert "joined the in-sync set" not in a.text()


def test_the_cluster_secret_is_still_checked_over_tls(
    tmp_path: Path, nodes: list[Node], certs: Certificates
) -> None:
    a = leader(tmp_path, nodes, **tls(certs))
    b = follower(tmp_path, nodes, a, cluster_secret="wrong", **tls(certs))
    b.wait_log(r"replication: the leader at 127\.0\.0\.1:\d+ refused this node: .*wrong cluster secret")
    a.wait_log(r"replication: refused node b from 127\.0\.0\.1:\d+: wrong cluster secret")
    assert "joined the in-sync set" not in a.text()


def test_cluster_tls_without_the_ca_exits_2_with_one_line(tmp_path: Path, certs: Certificates) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTTERMQ_")}
    env.update(
        OTTERMQ_CLUSTER_TLS="true",
        OTTERMQ_TLS_CERTFILE=str(certs.server_cert),
        OTTERMQ_TLS_KEYFILE=str(certs.server_key),
        OTTERMQ_CLUSTER_STATIC_LEADER="self",
        OTTERMQ_CLUSTER_SECRET="s",
    )
    result = subprocess.run(
        [sys.executable, "-m", "ottermq", "serve", "--port", "0", "--data-dir", str(tmp_path / "data")],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=30,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "cluster_tls needs tls_certfile, tls_keyfile and tls_cafile" in result.stderr
    assert result.stderr.count("\n") == 1
