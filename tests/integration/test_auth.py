"""Authentication: PLAIN and AMQPLAIN, wrong passwords and unknown users, as RabbitMQ refuses them."""

from __future__ import annotations

from typing import Any

import pika
import pika.credentials
import pytest
from pika import data

from tests.integration.conftest import BrokerInfo


class AMQPlainCredentials(pika.credentials.PlainCredentials):  # type: ignore[misc]
    """pika speaks only PLAIN and EXTERNAL; AMQPLAIN's response is a field table without its length prefix."""

    TYPE = "AMQPLAIN"
    offered: list[bytes] = []  # the mechanisms of the last connection.start seen, for assertions

    def response_for(self, start: Any) -> tuple[str | None, bytes | None]:
        """Answer connection.start with AMQPLAIN when the broker offers it."""
        mechanisms = start.mechanisms if isinstance(start.mechanisms, bytes) else start.mechanisms.encode()
        AMQPlainCredentials.offered = mechanisms.split()
        if b"AMQPLAIN" not in AMQPlainCredentials.offered:
            return None, None
        pieces: list[bytes] = []
        data.encode_table(pieces, {"LOGIN": self.username, "PASSWORD": self.password})
        return "AMQPLAIN", b"".join(pieces)[4:]


def _refused(mechanism: str) -> str:
    return (
        f"(403) 'ACCESS_REFUSED - Login was refused using authentication mechanism {mechanism}. "
        "For details see the broker logfile.'"
    )


def test_amqplain_login(broker: BrokerInfo) -> None:
    conn = pika.BlockingConnection(broker.params(credentials=AMQPlainCredentials("guest", "guest")))
    try:
        assert {b"PLAIN", b"AMQPLAIN"} <= set(AMQPlainCredentials.offered)
        conn.channel().queue_declare("", exclusive=True)
    finally:
        conn.close()


@pytest.mark.parametrize(
    "credentials,mechanism",
    [
        (pika.PlainCredentials("guest", "nope"), "PLAIN"),
        (pika.PlainCredentials("nobody", "guest"), "PLAIN"),
        (AMQPlainCredentials("guest", "nope"), "AMQPLAIN"),
    ],
    ids=["plain-password", "plain-user", "amqplain-password"],
)
def test_refused_login_is_403(broker: BrokerInfo, credentials: Any, mechanism: str) -> None:
    with pytest.raises(pika.exceptions.ProbableAuthenticationError) as caught:
        pika.BlockingConnection(broker.params(credentials=credentials))
    assert _refused(mechanism) in str(caught.value)


def test_update_secret(connection: pika.BlockingConnection) -> None:
    """connection.update-secret (a RabbitMQ extension) is answered with update-secret-ok."""
    connection.update_secret("guest", "rotation")
    assert connection.is_open
    connection.channel().queue_declare("", exclusive=True)
