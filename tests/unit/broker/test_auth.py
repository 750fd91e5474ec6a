"""PLAIN and AMQPLAIN logins, wrong credentials, and guest's loopback-only rule."""

import pytest

from ottermq.amqp.table import encode_table
from ottermq.broker.auth import Authenticator, AuthFailure, is_loopback, parse_amqplain, parse_plain


def authenticator() -> Authenticator:
    auth = Authenticator()
    auth.add_user("guest", "guest")
    auth.add_user("alice", "s3cret")
    return auth


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
        ("PLAIN", b"garbage"),
        ("AMQPLAIN", b"\xff\xff"),
        ("AMQPLAIN", encode_table({"LOGIN": "guest"})[4:]),
        ("EXTERNAL", b""),
    ],
)
def test_refused(mechanism: str, response: bytes) -> None:
    with pytest.raises(AuthFailure):
        authenticator().authenticate(mechanism, response, "127.0.0.1")


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


def test_user_management() -> None:
    auth = authenticator()
    auth.add_user("alice", "new")
    assert auth.check_password("alice", "new")
    assert not auth.check_password("alice", "s3cret")
    auth.delete_user("alice")
    assert not auth.has_user("alice")
    auth.delete_user("alice")
