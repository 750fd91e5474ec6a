"""TLS for the AMQPS listener: the server's SSL context and the client certificate's common name.

Strategy: the standard library's `ssl` module does all of TLS; asyncio runs the handshake before the
protocol's `connection_made`, so the AMQP code never sees an unencrypted byte and a peer that fails the
handshake (or never finishes it within the handshake timeout) never reaches the broker. Verification
follows RabbitMQ's `ssl_options`: `verify = none` asks for no certificate; `verify = peer` asks for one
and checks it against the CA file, and `fail_if_no_peer_cert` decides whether a client without one is let
in (it may then still log in with PLAIN, but not with EXTERNAL). The verified certificate's subject common
name becomes the transport's `peer_cert_cn`, which the EXTERNAL mechanism takes as the user name.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Any, Final

VERIFY_NONE: Final = "none"
VERIFY_PEER: Final = "peer"
TLS_PORT_DEFAULT: Final = 5671


class TLSConfigError(Exception):
    """The TLS settings cannot make a working listener; the message is one readable line."""


@dataclass(frozen=True, slots=True)
class TLSOptions:
    """Where the AMQPS listener listens and which certificates it uses (RabbitMQ's ssl_options)."""

    port: int = TLS_PORT_DEFAULT
    certfile: str = ""
    keyfile: str = ""
    cafile: str = ""
    verify: str = VERIFY_NONE
    fail_if_no_peer_cert: bool = False


def server_context(options: TLSOptions) -> ssl.SSLContext:
    """An SSL context for the server side; raises TLSConfigError naming the file or setting at fault."""
    if not options.certfile or not options.keyfile:
        raise TLSConfigError("tls_certfile and tls_keyfile are both required for the TLS listener")
    if options.verify not in (VERIFY_NONE, VERIFY_PEER):
        raise TLSConfigError(f"tls_verify: {options.verify!r} is not one of none, peer")
    if options.verify == VERIFY_PEER and not options.cafile:
        raise TLSConfigError("tls_verify = peer needs tls_cafile (the CA that signs client certificates)")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    # TLS 1.2 and 1.3 only, as RabbitMQ's defaults since 3.8.
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(options.certfile, options.keyfile)
    except FileNotFoundError as exc:
        raise TLSConfigError(f"tls_certfile/tls_keyfile: {exc.filename or exc}: file not found") from None
    except (ssl.SSLError, OSError) as exc:
        raise TLSConfigError(
            f"cannot load tls_certfile {options.certfile} with tls_keyfile {options.keyfile}: {exc}"
        ) from None
    if options.cafile:
        try:
            context.load_verify_locations(cafile=options.cafile)
        except FileNotFoundError:
            raise TLSConfigError(f"tls_cafile: {options.cafile}: file not found") from None
        except (ssl.SSLError, OSError) as exc:
            raise TLSConfigError(f"cannot load tls_cafile {options.cafile}: {exc}") from None
    if options.verify == VERIFY_PEER:
        context.verify_mode = ssl.CERT_REQUIRED if options.fail_if_no_peer_cert else ssl.CERT_OPTIONAL
    else:
        context.verify_mode = ssl.CERT_NONE
    return context


def peer_cert_cn(peercert: Any) -> str | None:
    """The subject common name of a verified peer certificate (`getpeercert()`'s dict), else None.

    `getpeercert()` returns a filled dict only for a certificate that passed verification, so an
    unverified certificate never yields a name.
    """
    if not isinstance(peercert, dict):
        return None
    for rdn in peercert.get("subject", ()):
        for attribute in rdn:
            if len(attribute) == 2 and attribute[0] == "commonName" and isinstance(attribute[1], str):
                return attribute[1]
    return None


def cluster_contexts(certfile: str, keyfile: str, cafile: str) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """The replication connection's SSL contexts (`cluster_tls`): (the leader's listener, a follower's
    connect). The AMQP listener's certificate and key serve both sides and each side requires the other's
    certificate, verified against `cafile` (mutual TLS): only holders of a certificate of the cluster's CA
    may connect or be connected to. Host names are not checked (a node is reached by its advertise host,
    which a node certificate need not name); the cluster secret's handshake then runs inside TLS.
    Raises TLSConfigError naming the setting at fault."""
    if not certfile or not keyfile or not cafile:
        raise TLSConfigError("cluster_tls needs tls_certfile, tls_keyfile and tls_cafile (the cluster's CA)")
    contexts = (ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER), ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT))
    for context in contexts:
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.check_hostname = False
        context.verify_mode = ssl.CERT_REQUIRED
        try:
            context.load_cert_chain(certfile, keyfile)
        except FileNotFoundError as exc:
            raise TLSConfigError(f"tls_certfile/tls_keyfile: {exc.filename or exc}: file not found") from None
        except (ssl.SSLError, OSError) as exc:
            raise TLSConfigError(
                f"cannot load tls_certfile {certfile} with tls_keyfile {keyfile}: {exc}"
            ) from None
        try:
            context.load_verify_locations(cafile=cafile)
        except FileNotFoundError:
            raise TLSConfigError(f"tls_cafile: {cafile}: file not found") from None
        except (ssl.SSLError, OSError) as exc:
            raise TLSConfigError(f"cannot load tls_cafile {cafile}: {exc}") from None
    return contexts
