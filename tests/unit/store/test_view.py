"""durable_view: a broker's durable state as plain data; diff_views: where two such views differ."""

from __future__ import annotations

import datetime
import decimal
import json

from ottermq.amqp.properties import BasicProperties, encode_properties
from ottermq.amqp.table import Long
from ottermq.broker.broker import Broker
from ottermq.broker.message import Message
from ottermq.store.view import diff_views, durable_view, plain

PERSISTENT = encode_properties(BasicProperties(delivery_mode=2))


def test_plain_keeps_the_field_types_json_would_lose() -> None:
    moment = datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
    value = {"b": [Long(3), b"\x01", decimal.Decimal("1.5")], "a": moment, "n": 7, "t": True}
    assert plain(value) == {
        "a": {"timestamp": "2024-01-02T03:04:05+00:00"},
        "b": [{"long": 3}, {"bytes": "01"}, {"decimal": "1.5"}],
        "n": 7,
        "t": True,
    }


def test_the_view_holds_durable_state_only() -> None:
    broker = Broker()
    vhost = broker.vhosts["/"]
    vhost.declare_exchange("durable.x", "topic", durable=True, arguments={"alternate-exchange": "ae"})
    vhost.declare_exchange("transient.x", "fanout")
    vhost.declare_queue("q", durable=True, arguments={"x-message-ttl": 60_000})
    vhost.declare_queue("transient.q")
    vhost.bind_queue("q", "durable.x", "a.#")
    vhost.bind_queue("transient.q", "durable.x", "b.#")
    message = Message("", "q", PERSISTENT, b"body")
    vhost.publish_now(message, [vhost.queues["q"]])
    broker.set_vhost_limits("/", {"max-queues": 5})

    view = durable_view(broker)

    json.dumps(view)  # plain data
    root = view["vhosts"]["/"]
    assert "durable.x" in root["exchanges"] and "transient.x" not in root["exchanges"]
    assert root["exchanges"]["durable.x"]["arguments"] == {"alternate-exchange": "ae"}
    assert set(root["queues"]) == {"q"}
    [(msg_id, size, deadline)] = root["queues"]["q"]["messages"]
    assert msg_id > 0 and msg_id in broker.contents and size == 4 and deadline > 0
    assert [(b["destination"], b["routing_key"]) for b in root["bindings"]] == [("q", "a.#")]
    assert root["limits"] == {"max-queues": 5}
    assert view["users"]["guest"]["tags"] == ["administrator"]
    assert view["permissions"]["guest @ /"] == {"configure": ".*", "write": ".*", "read": ".*"}


def test_diff_names_each_difference_by_path() -> None:
    live = {"q": {"durable": True, "messages": [(1, 4, 0), (2, 4, 0), (3, 4, 9)]}, "x": 1}
    replay = {"q": {"durable": 1, "messages": [(2, 4, 0), (3, 4, 8), (4, 4, 0)]}, "y": 2}
    assert diff_views(live, replay) == [
        "q.durable: live True != replay 1",  # equal to ==, but not the same type
        "q.messages: only in live: [(1, 4, 0)]",
        "q.messages: only in replay: [(4, 4, 0)]",
        "q.messages[id 3]: live (3, 4, 9) != replay (3, 4, 8)",
        "x: only in live: 1",
        "y: only in replay: 2",
    ]
    assert diff_views(live, live) == []


def test_diff_reports_messages_out_of_order() -> None:
    assert diff_views({"m": [(1, 0, 0), (2, 0, 0)]}, {"m": [(2, 0, 0), (1, 0, 0)]}, ("a", "b")) == [
        "m: order differs: a [1, 2], b [2, 1]"
    ]
