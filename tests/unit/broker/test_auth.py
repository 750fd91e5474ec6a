"""PLAIN, AMQPLAIN and EXTERNAL logins, wrong credentials, guest's loopback-only rule, password hashes."""

import pytest

from ottermq.amqp.table import encode_table
from ottermq.broker.access import AccessControl
from ottermq.broker.auth import (
    Authenticator,
    AuthFailure,
    check_hash_format,
    hash_password,
    is_loopback,
    parse_amqplain,
    parse_plain,
    verify_password,
)
from ottermq.broker.journal import MemoryJournal

FAST = 1_000  # iterations for hashes made only to test the format


def authenticator() -> Authenticator:
    access = AccessControl(MemoryJournal())
    access.add_user("guest", "guest")
    access.add_user("alice", "s3cret")
    access.add_user("nopass")
    return Authenticator(access)


def amqplain(login: str, password: str) -> bytes:
    return encode_table({"LOGIN": login, "PASSWORD": password})[4:]  # the response has no length prefix


def test_plain_login() -> None:
    assert authenticator().authenticate("PLAIN", b"\x00guest\x00guest", "127.0.0.1") == "guest"
    assert parse_plain(b"authz\x00bob\x00pw") == ("bob", "pw")


def test_amqplain_login() -> None:
    assert authenticator().authenticate("AMQPLAIN", amqplain("alice", "s3cret"), "10.1.2.3") == "alice"
    assert parse_amqplain(amqplain("a", "b")) == ("a", "b")


@pytest.mark.parametrize(
    ("mechanism", "response"),
    [
        ("PLAIN", b"\x00guest\x00wrong"),
        ("PLAIN", b"\x00nobody\x00guest"),
        ("PLAIN", b"\x00nopass\x00"),
        ("PLAIN", b"garbage"),
        ("AMQPLAIN", b"\xff\xff"),
        ("AMQPLAIN", encode_table({"LOGIN": "guest"})[4:]),
        ("EXTERNAL", b""),
    ],
)
def test_refused(mechanism: str, response: bytes) -> None:
    with pytest.raises(AuthFailure):
        authenticator().authenticate(mechanism, response, "127.0.0.1")


def test_refusal_reason_never_holds_the_password() -> None:
    with pytest.raises(AuthFailure) as caught:
        authenticator().authenticate("PLAIN", b"\x00alice\x00hunter2", "10.0.0.1")
    assert "hunter2" not in str(caught.value)
    assert "alice" in str(caught.value)


def test_guest_only_from_loopback() -> None:
    auth = authenticator()
    with pytest.raises(AuthFailure, match="localhost"):
        auth.authenticate("PLAIN", b"\x00guest\x00guest", "192.168.1.9")
    assert auth.authenticate("PLAIN", b"\x00guest\x00guest", "::1") == "guest"
    assert auth.authenticate("PLAIN", b"\x00alice\x00s3cret", "192.168.1.9") == "alice"


def test_loopback_addresses() -> None:
    assert is_loopback("127.0.0.1")
    assert is_loopback("127.9.9.9")
    assert is_loopback("::1")
    assert is_loopback("::ffff:127.0.0.1")
    assert is_loopback("localhost")
    assert not is_loopback("10.0.0.1")
    assert not is_loopback("example.com")


def test_external_only_with_a_certificate() -> None:
    auth = authenticator()
    assert auth.mechanisms(None) == ("PLAIN", "AMQPLAIN")
    assert auth.mechanisms("alice") == ("PLAIN", "AMQPLAIN", "EXTERNAL")
    assert auth.authenticate("EXTERNAL", b"", "10.0.0.1", peer_cert_cn="alice") == "alice"
    with pytest.raises(AuthFailure, match="no such user"):
        auth.authenticate("EXTERNAL", b"", "10.0.0.1", peer_cert_cn="mallory")
    with pytest.raises(AuthFailure, match="localhost"):
        auth.authenticate("EXTERNAL", b"", "10.0.0.1", peer_cert_cn="guest")


def test_password_change_is_seen_by_the_cache() -> None:
    auth = authenticator()
    assert auth.check_password("alice", "s3cret")
    assert auth.check_password("alice", "s3cret")  # from the cache
    auth.access.change_password("alice", "new")
    assert not auth.check_password("alice", "s3cret")
    assert auth.check_password("alice", "new")
    assert not auth.check_password("alice", "NEW")
    auth.access.delete_user("alice")
    assert not auth.check_password("alice", "new")


def test_hash_is_salted_and_self_describing() -> None:
    # A password with characters base64 never uses, so finding it in the stored text cannot be chance (a
    # random salt or digest contains "pw" about once in 60 hashes).
    password = "p w!"
    first, second = hash_password(password, FAST), hash_password(password, FAST)
    assert first != second  # a fresh salt each time
    assert first.startswith("pbkdf2-sha256$1000$")
    assert password not in first
    assert verify_password(first, password) and verify_password(second, password)
    assert not verify_password(first, "p W!")
    assert not verify_password("", "")
    assert not verify_password("garbage", "pw")
    check_hash_format(first)


def test_hash_matches_pbkdf2_sha256() -> None:
    import base64
    import hashlib

    stored = hash_password("pässword", 2_000, salt=b"0123456789abcdef")
    expected = hashlib.pbkdf2_hmac("sha256", "pässword".encode(), b"0123456789abcdef", 2_000)
    assert stored == f"pbkdf2-sha256$2000${base64.b64encode(b'0123456789abcdef').decode()}$" + (
        base64.b64encode(expected).decode()
    )


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "plain",
        "md5$1000$AAAAAAAAAAA=$AAAA",
        "pbkdf2-sha256$x$AAAAAAAAAAA=$" + "A" * 44,
        "pbkdf2-sha256$10$AAAAAAAAAAA=$" + "A" * 43 + "=",
        "pbkdf2-sha256$1000$!!$" + "A" * 43 + "=",
        "pbkdf2-sha256$1000$AAAAAAAAAAA=$AAAA",
    ],
)
def test_bad_hash_formats(bad: str) -> None:
    with pytest.raises(ValueError):
        check_hash_format(bad)
