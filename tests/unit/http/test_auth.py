"""Basic-auth header parsing and the tag rules, without a socket."""

from __future__ import annotations

import asyncio
import base64

import pytest

from ottermq.broker.broker import Broker
from ottermq.http.auth import Unauthorized, authenticate, parse_basic, visible_vhosts


def basic(text: bytes) -> str:
    return "Basic " + base64.b64encode(text).decode()


def test_parse_basic() -> None:
    assert parse_basic(basic(b"guest:gu:est")) == ("guest", "gu:est")
    assert parse_basic(basic(b"u:")) == ("u", "")
    for bad in (None, "", "Bearer x", "Basic !!!", basic(b"no-colon"), basic(b"\xff:\xfe")):
        assert parse_basic(bad) is None


def test_authenticate_applies_tags_and_loopback() -> None:
    broker = Broker()
    broker.access.add_user("plain", "pw")
    broker.access.add_user("mon", "pw", ("monitoring",))

    def login(header: str, host: str = "127.0.0.1") -> str:
        return asyncio.run(authenticate(broker, header, host)).name

    assert login(basic(b"guest:guest")) == "guest"
    assert login(basic(b"mon:pw")) == "mon"
    for header, host in ((basic(b"plain:pw"), "127.0.0.1"), (basic(b"guest:guest"), "10.1.2.3"),
                         (basic(b"guest:nope"), "127.0.0.1"), ("", "127.0.0.1")):
        with pytest.raises(Unauthorized) as refused:
            login(header, host)
        assert refused.value.status == 401
        assert ("www-authenticate", 'Basic realm="RabbitMQ Management"') in refused.value.response().headers
    mon = broker.access.user("mon")
    assert mon is not None and visible_vhosts(broker, mon) == ["/"]
