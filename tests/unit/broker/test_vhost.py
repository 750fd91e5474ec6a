"""VHost: exchange and queue declare / delete / bind edge cases, with RabbitMQ's codes and texts."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

from ottermq.amqp.errors import AMQPConnectionError, AMQPError, ChannelError
from ottermq.broker.vhost import VHost
from tests.unit.broker.domain_fakes import FakeConsumer, message, publish

OWNER = object()
OTHER = object()
LOCKED = (
    "RESOURCE_LOCKED - cannot obtain exclusive access to locked queue 'q' in vhost '/'. It could be "
    "originally declared on another connection or the exclusive property value does not match that of "
    "the original declaration."
)


def fails(call: Callable[[], Any], code: int, text: str, kind: type[AMQPError] = ChannelError) -> None:
    with pytest.raises(AMQPError) as caught:
        call()
    assert type(caught.value) is kind
    assert (caught.value.reply_code, caught.value.reply_text) == (code, text)


@pytest.fixture
def vhost() -> VHost:
    return VHost("/")


# -- exchanges ------------------------------------------------------------------------------------------


def test_predeclared_exchanges(vhost: VHost) -> None:
    types = {name: x.type for name, x in vhost.exchanges.items()}
    assert types == {
        "": "direct",
        "amq.direct": "direct",
        "amq.fanout": "fanout",
        "amq.topic": "topic",
        "amq.headers": "headers",
        "amq.match": "headers",
        "amq.rabbitmq.trace": "topic",
    }
    assert all(x.durable for x in vhost.exchanges.values())


def test_declare_and_redeclare_exchange(vhost: VHost) -> None:
    x = vhost.declare_exchange("x", "topic", durable=True)
    assert vhost.declare_exchange("x", "topic", durable=True) is x
    assert vhost.declare_exchange("x", passive=True) is x
    assert vhost.declare_exchange("amq.topic", "topic", durable=True) is vhost.exchanges["amq.topic"]


@pytest.mark.parametrize(
    ("kwargs", "text"),
    [
        (
            {"type": "fanout", "durable": True},
            "inequivalent arg 'type' for exchange 'x' in vhost '/': "
            "received 'fanout' but current is 'direct'",
        ),
        (
            {"type": "direct"},
            "inequivalent arg 'durable' for exchange 'x' in vhost '/': "
            "received 'false' but current is 'true'",
        ),
        (
            {"type": "direct", "durable": True, "auto_delete": True},
            "inequivalent arg 'auto_delete' for "
            "exchange 'x' in vhost '/': received 'true' but current is 'false'",
        ),
        (
            {"type": "direct", "durable": True, "internal": True},
            "inequivalent arg 'internal' for "
            "exchange 'x' in vhost '/': received 'true' but current is 'false'",
        ),
        (
            {"type": "direct", "durable": True, "arguments": {"alternate-exchange": "ae"}},
            "inequivalent arg 'alternate-exchange' for exchange 'x' in vhost '/': "
            "received the value 'ae' of type 'longstr' but current is none",
        ),
    ],
)
def test_inequivalent_exchange_redeclare(vhost: VHost, kwargs: dict[str, Any], text: str) -> None:
    vhost.declare_exchange("x", "direct", durable=True)
    fails(lambda: vhost.declare_exchange("x", **kwargs), 406, "PRECONDITION_FAILED - " + text)


def test_exchange_redeclare_ignores_unknown_arguments(vhost: VHost) -> None:
    vhost.declare_exchange("x", "direct", arguments={"foo": 1})
    vhost.declare_exchange("x", "direct", arguments={"foo": 2})


def test_passive_declare_of_missing_exchange(vhost: VHost) -> None:
    fails(
        lambda: vhost.declare_exchange("nope", passive=True),
        404,
        "NOT_FOUND - no exchange 'nope' in vhost '/'",
    )


def test_reserved_exchange_names(vhost: VHost) -> None:
    fails(
        lambda: vhost.declare_exchange("amq.foo", "direct"),
        403,
        "ACCESS_REFUSED - exchange name 'amq.foo' contains reserved prefix 'amq.*'",
    )
    default = "ACCESS_REFUSED - operation not permitted on the default exchange"
    fails(lambda: vhost.declare_exchange("", "direct"), 403, default)
    fails(lambda: vhost.declare_exchange("", passive=True), 403, default)
    fails(lambda: vhost.delete_exchange(""), 403, default)
    fails(
        lambda: vhost.delete_exchange("amq.direct"),
        403,
        "ACCESS_REFUSED - deletion of system exchange 'amq.direct' in vhost '/' not allowed",
    )


def test_unknown_exchange_type_is_a_connection_error(vhost: VHost) -> None:
    fails(
        lambda: vhost.declare_exchange("x", "nonsense"),
        503,
        "COMMAND_INVALID - unknown exchange type 'nonsense'",
        AMQPConnectionError,
    )
    assert "x" not in vhost.exchanges


def test_alternate_exchange_argument_must_be_a_string(vhost: VHost) -> None:
    fails(
        lambda: vhost.declare_exchange("x", "direct", arguments={"alternate-exchange": 5}),
        406,
        "PRECONDITION_FAILED - invalid type 'signedint' for arg 'alternate-exchange' in exchange 'x' "
        "in vhost '/'",
    )


def test_delete_exchange(vhost: VHost) -> None:
    vhost.delete_exchange("missing")  # fine in RabbitMQ
    vhost.declare_exchange("x", "direct")
    vhost.declare_queue("q")
    vhost.bind_queue("q", "x", "k")
    fails(
        lambda: vhost.delete_exchange("x", if_unused=True),
        406,
        "PRECONDITION_FAILED - exchange 'x' in vhost '/' in use",
    )
    vhost.delete_exchange("x")
    assert "x" not in vhost.exchanges
    assert list(vhost.bindings()) == []


def test_auto_delete_exchange_goes_with_its_last_binding(vhost: VHost) -> None:
    vhost.declare_exchange("x", "direct", auto_delete=True)
    vhost.declare_queue("q1")
    vhost.declare_queue("q2")
    vhost.bind_queue("q1", "x", "a")
    vhost.bind_queue("q2", "x", "a")
    vhost.unbind_queue("q1", "x", "a")
    assert "x" in vhost.exchanges
    vhost.delete_queue("q2")
    assert "x" not in vhost.exchanges


def test_auto_delete_exchange_without_bindings_stays(vhost: VHost) -> None:
    vhost.declare_exchange("x", "direct", auto_delete=True)
    assert "x" in vhost.exchanges


def test_auto_delete_cascades_through_exchange_bindings(vhost: VHost) -> None:
    vhost.declare_exchange("src", "fanout", auto_delete=True)
    vhost.declare_exchange("mid", "fanout", auto_delete=True)
    vhost.declare_queue("q")
    vhost.bind_exchange("mid", "src")
    vhost.bind_queue("q", "mid")
    vhost.delete_queue("q")  # mid loses its binding, then src loses its binding to mid
    assert "mid" not in vhost.exchanges
    assert "src" not in vhost.exchanges


# -- queues ---------------------------------------------------------------------------------------------


def test_declare_queue_and_counts(vhost: VHost) -> None:
    q = vhost.declare_queue("q", durable=True)
    assert (q.name, q.ready_count, q.consumer_count) == ("q", 0, 0)
    publish(vhost, "", "q")
    q.add_consumer(FakeConsumer("c", credit=0))
    again = vhost.declare_queue("q", durable=True)
    assert again is q
    assert (again.ready_count, again.consumer_count) == (1, 1)
    assert vhost.declare_queue("q", passive=True) is q


def test_server_named_queue(vhost: VHost) -> None:
    q = vhost.declare_queue("")
    assert re.fullmatch(r"amq\.gen-[A-Za-z0-9_-]{22}", q.name)
    assert vhost.declare_queue("").name != q.name


def test_passive_declare_of_missing_queue(vhost: VHost) -> None:
    fails(lambda: vhost.declare_queue("q", passive=True), 404, "NOT_FOUND - no queue 'q' in vhost '/'")


def test_reserved_queue_name(vhost: VHost) -> None:
    fails(
        lambda: vhost.declare_queue("amq.x"),
        403,
        "ACCESS_REFUSED - queue name 'amq.x' contains reserved prefix 'amq.*'",
    )


@pytest.mark.parametrize(
    ("first", "second", "text"),
    [
        (
            {"durable": False},
            {"durable": True},
            "inequivalent arg 'durable' for queue 'q' in vhost '/': received 'true' but current is 'false'",
        ),
        (
            {},
            {"auto_delete": True},
            "inequivalent arg 'auto_delete' for queue 'q' in vhost '/': "
            "received 'true' but current is 'false'",
        ),
        (
            {"arguments": {"x-message-ttl": 1000}},
            {"arguments": {"x-message-ttl": 2000}},
            "inequivalent arg 'x-message-ttl' for queue 'q' in vhost '/': "
            "received '2000' but current is '1000'",
        ),
        (
            {},
            {"arguments": {"x-max-length": 5}},
            "inequivalent arg 'x-max-length' for queue 'q' in vhost "
            "'/': received the value '5' of type 'signedint' but current is none",
        ),
        (
            {"arguments": {"x-dead-letter-exchange": "dlx"}},
            {},
            "inequivalent arg 'x-dead-letter-exchange' "
            "for queue 'q' in vhost '/': received none but current is the value 'dlx' of type 'longstr'",
        ),
    ],
)
def test_inequivalent_queue_redeclare(
    vhost: VHost, first: dict[str, Any], second: dict[str, Any], text: str
) -> None:
    vhost.declare_queue("q", **first)
    fails(lambda: vhost.declare_queue("q", **second), 406, "PRECONDITION_FAILED - " + text)


def test_queue_redeclare_ignores_unknown_arguments(vhost: VHost) -> None:
    vhost.declare_queue("q", arguments={"x-whatever": 1})
    vhost.declare_queue("q")


@pytest.mark.parametrize(
    ("arguments", "error"),
    [
        ({"x-message-ttl": -1}, "'x-message-ttl' for queue 'q' in vhost '/': {value_negative,-1}"),
        (
            {"x-message-ttl": "10"},
            "'x-message-ttl' for queue 'q' in vhost '/': \"expected integer, got longstr\"",
        ),
        ({"x-expires": 0}, "'x-expires' for queue 'q' in vhost '/': {value_zero,0}"),
        ({"x-max-length": -2}, "'x-max-length' for queue 'q' in vhost '/': {value_negative,-2}"),
        ({"x-max-priority": 300}, "'x-max-priority' for queue 'q' in vhost '/': {max_value_exceeded,300}"),
        (
            {"x-dead-letter-routing-key": "k"},
            "'x-dead-letter-routing-key' for queue 'q' in vhost '/': routing_key_but_no_dlx_defined",
        ),
        ({"x-overflow": "drop-tail"}, "'x-overflow' for queue 'q' in vhost '/': invalid_overflow"),
    ],
)
def test_invalid_queue_arguments(vhost: VHost, arguments: dict[str, Any], error: str) -> None:
    fails(
        lambda: vhost.declare_queue("q", arguments=arguments),
        406,
        "PRECONDITION_FAILED - invalid arg " + error,
    )
    assert "q" not in vhost.queues


def test_valid_queue_arguments(vhost: VHost) -> None:
    vhost.declare_queue(
        "q",
        arguments={
            "x-message-ttl": 0,
            "x-expires": 1000,
            "x-max-length": 0,
            "x-max-priority": 10,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": "k",
            "x-overflow": "reject-publish",
            "x-single-active-consumer": False,
            "x-queue-mode": "lazy",
        },
    )


def test_exclusive_queue_is_locked_to_its_owner(vhost: VHost) -> None:
    q = vhost.declare_queue("q", exclusive=True, durable=True, owner=OWNER)
    assert q.exclusive and not q.durable  # exclusive queues are never durable
    assert vhost.declare_queue("q", exclusive=True, durable=True, owner=OWNER) is q
    assert vhost.lookup_queue("q", OWNER) is q
    fails(lambda: vhost.declare_queue("q", exclusive=True, owner=OTHER), 405, LOCKED)
    fails(lambda: vhost.declare_queue("q", owner=OWNER), 405, LOCKED)  # exclusive flag must match
    fails(lambda: vhost.declare_queue("q", passive=True, owner=OTHER), 405, LOCKED)
    fails(lambda: vhost.lookup_queue("q", OTHER), 405, LOCKED)
    fails(lambda: vhost.purge_queue("q", OTHER), 405, LOCKED)
    fails(lambda: vhost.delete_queue("q", OTHER), 405, LOCKED)
    fails(lambda: vhost.bind_queue("q", "amq.direct", "k", owner=OTHER), 405, LOCKED)
    vhost.bind_queue("q", "amq.direct", "k", owner=OWNER)
    fails(lambda: vhost.unbind_queue("q", "amq.direct", "k", owner=OTHER), 405, LOCKED)


def test_non_exclusive_queue_redeclared_exclusive_is_locked(vhost: VHost) -> None:
    vhost.declare_queue("q")
    fails(lambda: vhost.declare_queue("q", exclusive=True, owner=OWNER), 405, LOCKED)
    assert vhost.lookup_queue("q", OWNER).name == "q"  # lax check: anyone may use a shared queue


def test_owner_closed_drops_exclusive_queues(vhost: VHost) -> None:
    vhost.declare_queue("mine", exclusive=True, owner=OWNER)
    vhost.declare_queue("theirs", exclusive=True, owner=OTHER)
    vhost.declare_queue("shared")
    vhost.bind_queue("mine", "amq.fanout", owner=OWNER)
    consumer = FakeConsumer("c")
    vhost.queues["mine"].add_consumer(consumer)
    vhost.owner_closed(OWNER)
    assert set(vhost.queues) == {"theirs", "shared"}
    assert list(vhost.bindings()) == []
    assert not consumer.cancelled  # the owner is gone: nobody to tell


def test_delete_queue(vhost: VHost) -> None:
    assert vhost.delete_queue("missing") == 0
    q = vhost.declare_queue("q")
    for body in (b"1", b"2"):
        publish(vhost, "", "q", body)
    fails(
        lambda: vhost.delete_queue("q", if_empty=True),
        406,
        "PRECONDITION_FAILED - queue 'q' in vhost '/' not empty",
    )
    consumer = FakeConsumer("c", credit=0)
    q.add_consumer(consumer)
    fails(
        lambda: vhost.delete_queue("q", if_unused=True),
        406,
        "PRECONDITION_FAILED - queue 'q' in vhost '/' in use",
    )
    assert vhost.delete_queue("q") == 2
    assert consumer.cancelled
    assert q.deleted and "q" not in vhost.queues
    assert list(vhost.route("", "q", message("q"))) == []


def test_delete_if_empty_checked_before_if_unused(vhost: VHost) -> None:
    q = vhost.declare_queue("q")
    publish(vhost, "", "q")
    q.add_consumer(FakeConsumer("c", credit=0))
    fails(
        lambda: vhost.delete_queue("q", if_unused=True, if_empty=True),
        406,
        "PRECONDITION_FAILED - queue 'q' in vhost '/' not empty",
    )


def test_purge_queue(vhost: VHost) -> None:
    vhost.declare_queue("q")
    for _ in range(3):
        publish(vhost, "", "q")
    assert vhost.purge_queue("q") == 3
    assert vhost.queues["q"].ready_count == 0
    fails(lambda: vhost.purge_queue("nope"), 404, "NOT_FOUND - no queue 'nope' in vhost '/'")


# -- bindings -------------------------------------------------------------------------------------------


def test_bind_errors(vhost: VHost) -> None:
    vhost.declare_queue("q")
    default = "ACCESS_REFUSED - operation not permitted on the default exchange"
    fails(lambda: vhost.bind_queue("q", ""), 403, default)
    fails(lambda: vhost.unbind_queue("q", ""), 403, default)
    fails(lambda: vhost.bind_queue("q", "nope"), 404, "NOT_FOUND - no exchange 'nope' in vhost '/'")
    fails(lambda: vhost.bind_queue("nope", "amq.direct"), 404, "NOT_FOUND - no queue 'nope' in vhost '/'")
    # the source is checked first
    fails(lambda: vhost.bind_queue("nope", "nope"), 404, "NOT_FOUND - no exchange 'nope' in vhost '/'")
    fails(
        lambda: vhost.bind_exchange("amq.direct", "nope"), 404, "NOT_FOUND - no exchange 'nope' in vhost '/'"
    )
    fails(
        lambda: vhost.bind_exchange("nope", "amq.direct"), 404, "NOT_FOUND - no exchange 'nope' in vhost '/'"
    )
    fails(lambda: vhost.bind_exchange("", "amq.direct"), 403, default)
    fails(
        lambda: vhost.bind_queue("q", "amq.headers", arguments={"x-match": "one"}),
        406,
        'PRECONDITION_FAILED - Invalid x-match field value <<"one">>; '
        "expected all, any, all-with-x, or any-with-x",
    )


def test_bind_is_idempotent_and_unbind_of_missing_is_fine(vhost: VHost) -> None:
    vhost.declare_queue("q")
    vhost.bind_queue("q", "amq.direct", "k")
    vhost.bind_queue("q", "amq.direct", "k")
    assert len(list(vhost.bindings())) == 1
    vhost.unbind_queue("q", "amq.direct", "other")
    vhost.unbind_queue("nope", "amq.direct", "k")
    vhost.unbind_queue("q", "nope", "k")
    vhost.unbind_exchange("nope", "amq.direct")
    vhost.unbind_queue("q", "amq.direct", "k")
    assert list(vhost.bindings()) == []


def test_binding_arguments_are_part_of_its_identity(vhost: VHost) -> None:
    vhost.declare_queue("q")
    vhost.bind_queue("q", "amq.direct", "k", {"a": 1, "b": 2})
    vhost.bind_queue("q", "amq.direct", "k", {"b": 2, "a": 1})  # same binding
    vhost.bind_queue("q", "amq.direct", "k", {"a": 2})
    assert len(list(vhost.bindings())) == 2
    assert len(vhost.route("amq.direct", "k", message("k"))) == 1
    vhost.unbind_queue("q", "amq.direct", "k", {"b": 2, "a": 1})
    assert len(vhost.route("amq.direct", "k", message("k"))) == 1
    vhost.unbind_queue("q", "amq.direct", "k", {"a": 2})
    assert len(vhost.route("amq.direct", "k", message("k"))) == 0


def test_boolean_and_integer_binding_arguments_differ(vhost: VHost) -> None:
    vhost.declare_queue("q")
    vhost.bind_queue("q", "amq.headers", "", {"a": True})
    vhost.bind_queue("q", "amq.headers", "", {"a": 1})
    assert len(list(vhost.bindings())) == 2


def test_binding_to_internal_exchange_is_allowed(vhost: VHost) -> None:
    vhost.declare_exchange("internal", "fanout", internal=True)
    vhost.declare_queue("q")
    vhost.bind_exchange("internal", "amq.direct", "k")
    vhost.bind_queue("q", "internal")
    assert [q.name for q in vhost.route("amq.direct", "k", message("k"))] == ["q"]


def test_a_clustered_broker_refuses_stream_queues() -> None:
    """Stream records live outside the replicated log: a clustered node refuses the type at declare (406),
    before anything is journaled; classic and quorum queues are declared as usual."""
    from ottermq.broker.broker import Broker, BrokerSettings

    broker = Broker(BrokerSettings(clustered=True))
    vhost = broker.vhosts["/"]
    with pytest.raises(ChannelError) as refused:
        vhost.declare_queue("s", durable=True, arguments={"x-queue-type": "stream"})
    assert refused.value.reply_code == 406
    assert refused.value.reply_text == (
        "PRECONDITION_FAILED - invalid arg 'x-queue-type' for queue 's' in vhost '/': "
        '"stream queues are not supported on a clustered OtterMQ node: their messages are not replicated"'
    )
    assert "s" not in vhost.queues
    vhost.declare_queue("q", durable=True, arguments={"x-queue-type": "quorum"})
    vhost.declare_queue("c", durable=True)
    # A node that is not clustered declares streams as before.
    assert Broker().vhosts["/"].declare_queue("s", durable=True, arguments={"x-queue-type": "stream"})
