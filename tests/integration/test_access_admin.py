"""Creating users, vhosts and permissions for the access tests, on OtterMQ or on RabbitMQ.

Strategy: the access tests run unchanged against both brokers (OTTERMQ_TEST_URL), so the management
calls they need go through `Admin`: `ottermq ctl`'s request function on the broker's control socket for
OtterMQ, `rabbitmqctl` for RabbitMQ. Everything an Admin creates is deleted after the test.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from typing import Any

import pika
import pytest

from ottermq.ctl import SOCKET_NAME, request
from tests.integration.conftest import BrokerInfo, unique


class Admin:
    """Management calls on the broker under test; records what it creates for cleanup."""

    def __init__(self, broker: BrokerInfo) -> None:
        self.broker = broker
        self.users: list[str] = []
        self.vhosts: list[str] = []

    def call(self, verb: str, **args: Any) -> Any:
        """One management call (ctl verb names; rabbitmqctl's positional arguments in RabbitMQ's order)."""
        if self.broker.data_dir is not None:
            return request(self.broker.data_dir / SOCKET_NAME, verb, args)
        argv = ["rabbitmqctl", "-q", verb]
        if "vhost" in args and verb != "add_vhost":
            argv += ["-p", args["vhost"]]
        for key in ("name", "user", "password", "configure", "write", "read"):
            if key in args:
                argv.append(args[key])
        argv += list(args.get("tags", []))
        subprocess.run(argv, check=True, capture_output=True, timeout=60)
        return None

    def add_user(self, name: str, password: str, tags: tuple[str, ...] = ()) -> str:
        self.call("add_user", name=name, password=password)
        if tags:
            self.call("set_user_tags", name=name, tags=list(tags))
        self.users.append(name)
        return name

    def add_vhost(self, name: str) -> str:
        self.call("add_vhost", name=name)
        self.vhosts.append(name)
        return name

    def set_permissions(self, user: str, vhost: str, configure: str, write: str, read: str) -> None:
        self.call("set_permissions", user=user, vhost=vhost, configure=configure, write=write, read=read)

    def clear_permissions(self, user: str, vhost: str) -> None:
        self.call("clear_permissions", user=user, vhost=vhost)

    def delete_vhost(self, name: str) -> None:
        self.call("delete_vhost", name=name)
        self.vhosts.remove(name)

    def delete_user(self, name: str) -> None:
        self.call("delete_user", name=name)
        self.users.remove(name)

    def cleanup(self) -> None:
        for verb, names in (("delete_vhost", self.vhosts), ("delete_user", self.users)):
            for name in names:
                try:
                    self.call(verb, name=name)
                except Exception:
                    pass  # already gone
        self.users.clear()
        self.vhosts.clear()

    def connect(self, user: str, password: str, vhost: str) -> pika.BlockingConnection:
        """A connection as `user` to `vhost`."""
        params = self.broker.params(credentials=pika.PlainCredentials(user, password), virtual_host=vhost)
        return pika.BlockingConnection(params)


@pytest.fixture
def admin(broker: BrokerInfo) -> Iterator[Admin]:
    """Management of the broker under test; what it creates is deleted afterwards."""
    manager = Admin(broker)
    try:
        yield manager
    finally:
        manager.cleanup()


def test_admin_creates_a_user_that_can_log_in(admin: Admin) -> None:
    vhost = admin.add_vhost(unique("vh"))
    user = admin.add_user(unique("u"), "pw")
    admin.set_permissions(user, vhost, ".*", ".*", ".*")
    conn = admin.connect(user, "pw", vhost)
    try:
        conn.channel().queue_declare("", exclusive=True)
    finally:
        conn.close()
