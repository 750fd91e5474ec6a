"""Refused logins: the same 403 whatever was wrong; a log line names user and peer, never the password."""

from __future__ import annotations

import time

import pika
import pytest

from tests.integration.conftest import BrokerInfo, unique
from tests.integration.test_access_admin import Admin, admin  # noqa: F401 - the fixture

REFUSED = "ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN"


def refusal(broker: BrokerInfo, user: str, password: str) -> str:
    params = broker.params(credentials=pika.PlainCredentials(user, password))
    with pytest.raises(pika.exceptions.ProbableAuthenticationError) as caught:
        pika.BlockingConnection(params)
    return str(caught.value)


def test_wrong_password_and_unknown_user_look_the_same(broker: BrokerInfo, admin: Admin) -> None:  # noqa: F811
    user = admin.add_user(unique("u"), "right")
    wrong_password = refusal(broker, user, "wrong")
    unknown_user = refusal(broker, unique("nobody"), "right")
    assert REFUSED in wrong_password and REFUSED in unknown_user
    assert wrong_password == unknown_user


def test_a_user_without_password_cannot_log_in_with_one(broker: BrokerInfo, admin: Admin) -> None:  # noqa: F811
    if broker.external:
        pytest.skip("clear_password through rabbitmqctl is not wired in Admin")
    user = admin.add_user(unique("u"), "pw")
    admin.set_permissions(user, "/", ".*", ".*", ".*")
    admin.call("clear_password", name=user)
    assert REFUSED in refusal(broker, user, "")
    assert REFUSED in refusal(broker, user, "pw")


def test_refused_login_is_logged_without_the_password(broker: BrokerInfo) -> None:
    if broker.external:
        pytest.skip("reads OtterMQ's log")
    user, password = unique("nobody"), unique("secret-password")
    refusal(broker, user, password)
    deadline = time.monotonic() + 5
    while True:
        log = broker.log_tail(400).splitlines()
        lines = [line for line in log if "login refused" in line and user in line]
        if lines or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert lines, "no 'login refused' line names the user"
    assert "conn=127.0.0.1:" in lines[-1]
    assert password not in broker.log_tail(400)
