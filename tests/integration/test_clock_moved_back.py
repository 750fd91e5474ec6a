"""A wall clock set back while the broker was down: the broker says so at start, and serves as before.

Every log record carries the wall-clock time of its append (Memento format version 3). When the newest one
lies more than a minute ahead of the clock at start, deadlines computed from the old clock (message TTLs,
expiries) lie that much further in the future than meant, so recovery warns, naming how far.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from memento.log import Log
from ottermq.broker.events import QueueDeclared
from ottermq.store.codec import RECORD_TYPES, encode
from ottermq.store.store import LOG_DIR
from tests.integration.test_restart import Node, drain_all, publish_confirmed, running_node

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("OTTERMQ_TEST_URL")), reason="needs a broker process of our own"
)

AHEAD_S = 2 * 3600


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    """A broker on a fresh data directory (started), killed at teardown."""
    yield from running_node(tmp_path)


def test_start_after_the_clock_moved_back_is_warned_about(node: Node) -> None:
    conn = node.connect()
    ch = conn.channel()
    ch.confirm_delivery()
    ch.queue_declare("q", durable=True)
    publish_confirmed(ch, "", "q", [b"one", b"two"])
    conn.close()
    node.stop()

    # The last record appended by a clock two hours ahead of the one the broker now starts with.
    def ahead() -> int:
        return time.time_ns() // 1000 + AHEAD_S * 10**6

    with Log.open(node.data_dir / LOG_DIR, registry=RECORD_TYPES, clock=ahead) as log:
        rtype, payload = encode(QueueDeclared("/", "late", True, False, False, {}))
        log.append(rtype, payload)
    node.start()
    said = node.log_text()
    found = re.search(r"recovery: clock moved back by (\d+) s", said)
    assert found is not None, said
    assert AHEAD_S - 120 <= int(found.group(1)) <= AHEAD_S, said
    conn = node.connect()
    ch = conn.channel()
    ch.queue_declare("late", durable=True, passive=True)
    assert [body for body, _ in drain_all(ch, "q")] == [b"one", b"two"]
    conn.close()
