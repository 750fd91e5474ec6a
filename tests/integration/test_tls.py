"""The AMQPS listener: pika over TLS against a broker with certificates made for this test run.

Strategy: a throwaway CA, a server certificate for 127.0.0.1 and client certificates are generated with the
`cryptography` package into the test's temporary directory; one broker per module serves plain AMQP and
AMQPS (verify = peer, client certificate optional), a second one insists on a client certificate.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pika
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.integration.test_http_api import request
from tests.integration.test_raw import ROOT, ServerProcess, ottermq_server


@dataclass
class Certificates:
    """Paths of the PEM files one test run uses."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    stranger_cert: Path
    stranger_key: Path


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> Path:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return path


def _issue(
    subject_cn: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name | None = None,
    issuer_key: ec.EllipticCurvePrivateKey | None = None,
    ca: bool = False,
    server: bool = False,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject_cn)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer or subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        )
    return builder.sign(issuer_key or key, hashes.SHA256())


def make_certificates(directory: Path) -> Certificates:
    """A CA, a server certificate for 127.0.0.1, a client certificate (CN guest) signed by the CA, and a
    self-signed client certificate the broker must not trust."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = _key()
    ca_cert = _issue("OtterMQ test CA", ca_key, ca=True)
    server_key, client_key, stranger_key = _key(), _key(), _key()
    server_cert = _issue("127.0.0.1", server_key, ca_cert.subject, ca_key, server=True)
    client_cert = _issue("guest", client_key, ca_cert.subject, ca_key)
    stranger_cert = _issue("guest", stranger_key)

    def pem(cert: x509.Certificate, name: str) -> Path:
        path = directory / name
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return path

    return Certificates(
        ca=pem(ca_cert, "ca.pem"),
        server_cert=pem(server_cert, "server.pem"),
        server_key=_write_key(server_key, directory / "server.key"),
        client_cert=pem(client_cert, "client.pem"),
        client_key=_write_key(client_key, directory / "client.key"),
        stranger_cert=pem(stranger_cert, "stranger.pem"),
        stranger_key=_write_key(stranger_key, directory / "stranger.key"),
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class TLSBroker:
    process: ServerProcess
    tls_port: int
    certs: Certificates
    http_port: int


def _tls_env(certs: Certificates, port: int, fail_if_no_peer_cert: bool) -> dict[str, str]:
    return {
        "OTTERMQ_TLS_PORT": str(port),
        "OTTERMQ_TLS_CERTFILE": str(certs.server_cert),
        "OTTERMQ_TLS_KEYFILE": str(certs.server_key),
        "OTTERMQ_TLS_CAFILE": str(certs.ca),
        "OTTERMQ_TLS_VERIFY": "peer",
        "OTTERMQ_TLS_FAIL_IF_NO_PEER_CERT": "true" if fail_if_no_peer_cert else "false",
        "OTTERMQ_HANDSHAKE_TIMEOUT": "2",
    }


def _start(tmp: Path, certs: Certificates, fail_if_no_peer_cert: bool) -> Iterator[TLSBroker]:
    port, http_port = _free_port(), _free_port()
    env = _tls_env(certs, port, fail_if_no_peer_cert)
    with ottermq_server(tmp, "--http-port", str(http_port), env=env) as process:
        deadline = time.monotonic() + 10
        while f"management API listening on http://127.0.0.1:{http_port}" not in process.log():
            assert time.monotonic() < deadline, process.log()
            time.sleep(0.05)
        yield TLSBroker(process, port, certs, http_port)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    """This module's throwaway CA and certificates."""
    return make_certificates(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory: pytest.TempPathFactory, certs: Certificates) -> Iterator[TLSBroker]:
    """A broker with AMQPS, verify = peer, client certificates optional."""
    yield from _start(tmp_path_factory.mktemp("tls"), certs, fail_if_no_peer_cert=False)


@pytest.fixture(scope="module")
def strict_broker(tmp_path_factory: pytest.TempPathFactory, certs: Certificates) -> Iterator[TLSBroker]:
    """A broker with AMQPS that refuses clients without a certificate signed by its CA."""
    yield from _start(tmp_path_factory.mktemp("tls-strict"), certs, fail_if_no_peer_cert=True)


def client_context(certs: Certificates, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    """A client context that trusts the test CA and presents `cert` when given."""
    context = ssl.create_default_context(cafile=str(certs.ca))
    if cert is not None:
        context.load_cert_chain(str(cert), str(key))
    return context


def tls_params(
    broker: TLSBroker, context: ssl.SSLContext, credentials: pika.credentials.PlainCredentials | None = None
) -> pika.ConnectionParameters:
    """pika parameters for AMQPS to `broker`."""
    return pika.ConnectionParameters(
        host="127.0.0.1",
        port=broker.tls_port,
        ssl_options=pika.SSLOptions(context, "127.0.0.1"),
        credentials=credentials or pika.PlainCredentials("guest", "guest"),
        socket_timeout=5,
        stack_timeout=10,
        blocked_connection_timeout=10,
    )


def _round_trip(connection: pika.BlockingConnection) -> None:
    channel = connection.channel()
    queue = channel.queue_declare("", exclusive=True).method.queue
    channel.basic_publish("", queue, b"over tls")
    deadline = time.monotonic() + 5
    while True:
        method, _, body = channel.basic_get(queue, auto_ack=True)
        if method is not None:
            assert body == b"over tls"
            return
        assert time.monotonic() < deadline
        connection.process_data_events(time_limit=0.02)


def test_plain_login_over_tls_publishes_and_gets(tls_broker: TLSBroker) -> None:
    connection = pika.BlockingConnection(tls_params(tls_broker, client_context(tls_broker.certs)))
    try:
        _round_trip(connection)
    finally:
        connection.close()


def test_plain_amqp_still_served_beside_tls(tls_broker: TLSBroker) -> None:
    url = f"amqp://guest:guest@127.0.0.1:{tls_broker.process.port}/%2F"
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        _round_trip(connection)
    finally:
        connection.close()


def test_client_certificate_login_with_external(tls_broker: TLSBroker) -> None:
    certs = tls_broker.certs
    params = tls_params(tls_broker, client_context(certs, certs.client_cert, certs.client_key))
    params.credentials = pika.credentials.ExternalCredentials()
    connection = pika.BlockingConnection(params)
    try:
        _round_trip(connection)
    finally:
        connection.close()


def test_external_without_a_certificate_is_refused(tls_broker: TLSBroker) -> None:
    params = tls_params(tls_broker, client_context(tls_broker.certs))
    params.credentials = pika.credentials.ExternalCredentials()
    # Without a certificate the broker does not offer EXTERNAL; pika gives up before logging in.
    with pytest.raises(pika.exceptions.AMQPConnectionError):
        pika.BlockingConnection(params)


def test_a_plain_text_client_on_the_tls_port_is_dropped(tls_broker: TLSBroker) -> None:
    with socket.create_connection(("127.0.0.1", tls_broker.tls_port), timeout=5) as sock:
        sock.sendall(b"AMQP\x00\x00\x09\x01")
        try:
            assert sock.recv(4096)[:4] != b"AMQP"  # at most a TLS alert, never AMQP in clear
        except ConnectionResetError:
            pass


def test_strict_listener_refuses_a_client_without_certificate(strict_broker: TLSBroker) -> None:
    with pytest.raises(pika.exceptions.AMQPConnectionError):
        pika.BlockingConnection(tls_params(strict_broker, client_context(strict_broker.certs)))


def test_strict_listener_refuses_an_untrusted_certificate(strict_broker: TLSBroker) -> None:
    certs = strict_broker.certs
    context = client_context(certs, certs.stranger_cert, certs.stranger_key)
    with pytest.raises(pika.exceptions.AMQPConnectionError):
        pika.BlockingConnection(tls_params(strict_broker, context))


def test_strict_listener_accepts_a_signed_certificate(strict_broker: TLSBroker) -> None:
    certs = strict_broker.certs
    context = client_context(certs, certs.client_cert, certs.client_key)
    connection = pika.BlockingConnection(tls_params(strict_broker, context))
    try:
        _round_trip(connection)
    finally:
        connection.close()


def test_tls_handshake_that_never_starts_is_dropped(strict_broker: TLSBroker) -> None:
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", strict_broker.tls_port), timeout=10) as sock:
        try:
            assert sock.recv(1) == b""
        except ConnectionResetError:
            pass
    assert time.monotonic() - started < 8


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"OTTERMQ_TLS_PORT": "5999"}, "tls_certfile and tls_keyfile are both required"),
        (
            {"OTTERMQ_TLS_CERTFILE": "/nonexistent.pem", "OTTERMQ_TLS_KEYFILE": "/nonexistent.key"},
            "file not found",
        ),
        ({"OTTERMQ_TLS_VERIFY": "sometimes"}, "is not one of none, peer"),
    ],
)
def test_bad_tls_settings_exit_2_with_one_line(env: dict[str, str], message: str, tmp_path: Path) -> None:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("OTTERMQ_")}
    full_env.update(env)
    result = subprocess.run(
        [sys.executable, "-m", "ottermq", "serve", "--port", "0", "--data-dir", str(tmp_path / "data")],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=ROOT,
        timeout=30,
    )
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert result.stderr.count("\n") == 1


def test_health_checks_and_overview_name_the_tls_listener(tls_broker: TLSBroker) -> None:
    """As RabbitMQ's: port-listener knows the AMQPS port, protocol-listener `amqps` (its `amqp/ssl`)."""
    http_port = tls_broker.http_port
    reply = request(http_port, "GET", f"/api/health/checks/port-listener/{tls_broker.tls_port}")
    assert (reply.status, reply.body) == (200, {"status": "ok", "port": tls_broker.tls_port})
    for name in ("amqps", "amqp/ssl"):
        reply = request(http_port, "GET", f"/api/health/checks/protocol-listener/{quote(name, safe='')}")
        assert (reply.status, reply.body) == (200, {"status": "ok", "protocol": "amqp/ssl"}), name
    listeners = request(http_port, "GET", "/api/overview").body["listeners"]
    assert {(lst["protocol"], lst["port"]) for lst in listeners} >= {
        ("amqp", tls_broker.process.port),
        ("amqp/ssl", tls_broker.tls_port),
    }
