"""Per-vhost limits: set_vhost_limits / clear_vhost_limits / list_vhost_limits, max-connections (530) and
max-queues (406) enforced, and limits surviving a restart (clean or kill -9).

Against RabbitMQ (OTTERMQ_TEST_URL) the same tests drive `rabbitmqctl`, so the texts and the output of
the verbs are RabbitMQ's; the restart test and the --json output are OtterMQ's own.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pika
import pytest
from typer.testing import CliRunner

from ottermq.cli import app
from tests.integration.conftest import BrokerInfo, broker_error, unique
from tests.integration.test_ctl import connect, refused_start, start_broker, stop_broker

pytestmark = pytest.mark.timeout(90)


class Admin:
    """Runs a management verb on the broker under test: `ottermq ctl` in-process, or `rabbitmqctl` for
    an external RabbitMQ. Returns (exit code, stdout, stderr)."""

    def __init__(self, data_dir: Path | None) -> None:
        self.data_dir = data_dir
        self.runner = CliRunner()

    @property
    def external(self) -> bool:
        return self.data_dir is None

    def __call__(self, *argv: str, json_out: bool = False) -> tuple[int, str, str]:
        if self.data_dir is None:
            done = subprocess.run(["rabbitmqctl", *argv], capture_output=True, text=True, timeout=60)
            return done.returncode, done.stdout, done.stderr
        options = ["ctl", "--data-dir", str(self.data_dir)] + (["--json"] if json_out else [])
        result = self.runner.invoke(app, [*options, *argv])
        return result.exit_code, result.stdout, result.stderr

    def ok(self, *argv: str) -> str:
        code, out, err = self(*argv)
        assert code == 0, err
        return out


@pytest.fixture
def admin(broker: BrokerInfo) -> Admin:
    if broker.external and shutil.which("rabbitmqctl") is None:
        pytest.skip("needs rabbitmqctl to manage the external broker")
    return Admin(broker.data_dir)


@pytest.fixture
def vhost(admin: Admin) -> Iterator[str]:
    """A fresh vhost on which guest has every permission."""
    name = unique("lim")
    admin.ok("add_vhost", name)
    try:
        admin.ok("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
        yield name
    finally:
        admin("delete_vhost", name)


def params(broker: BrokerInfo, vhost: str) -> pika.ConnectionParameters:
    return broker.params(virtual_host=vhost)


def retry(call: Callable[[], Any], timeout: float = 5.0) -> Any:
    """`call()` until it stops raising: a closed connection may take a moment to stop counting."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return call()
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_set_list_and_clear(admin: Admin, vhost: str) -> None:
    definition = '{"max-connections": 10, "max-queues": 5}'
    assert admin.ok("set_vhost_limits", "-p", vhost, definition) == (
        f'Setting vhost limits to "{definition}" for vhost "{vhost}" ...\n'
    )
    assert admin.ok("list_vhost_limits", "-p", vhost) == (
        f'Listing limits for vhost "{vhost}" ...\n{{"max-connections":10,"max-queues":5}}\n'
    )
    lines = admin.ok("list_vhost_limits", "--global").splitlines()
    assert lines[:2] == ["Listing limits for all vhosts ...", "vhost\tlimits"]
    assert f'{vhost}\t{{"max-connections":10,"max-queues":5}}' in lines
    # A new definition replaces the old one as a whole; a negative value is kept (and means no limit).
    admin.ok("set_vhost_limits", "-p", vhost, '{"max-queues": -1}')
    assert admin.ok("list_vhost_limits", "-p", vhost).splitlines()[1:] == ['{"max-queues":-1}']
    assert admin.ok("clear_vhost_limits", "-p", vhost) == f'Clearing vhost "{vhost}" limits ...\n'
    assert admin.ok("list_vhost_limits", "-p", vhost).strip().splitlines()[1:] == []


@pytest.mark.parametrize(
    ("definition", "words", "code"),
    [
        ('{"max-foo": 1}', ["unrecognised terms", "max-foo"], 65),
        ('{"max-queues": "a"}', ["max-queues should be a", "actually was", "a"], 65),
        ('{"max-queues": 1.5}', ["max-queues should be a", "actually was 1.5"], 65),
        ("notjson", ["json decoding error"], 65),
    ],
)
def test_bad_definitions_are_refused(
    admin: Admin, vhost: str, definition: str, words: list[str], code: int
) -> None:
    status, _, err = admin("set_vhost_limits", "-p", vhost, definition)
    # rabbitmqctl exits 69 for these; ottermq ctl says 65 (EX_DATAERR), as for its other bad data.
    assert status == (69 if admin.external else code)
    for word in words:
        assert word in err.lower()
    assert admin.ok("list_vhost_limits", "-p", vhost).strip().splitlines()[1:] == []


def test_a_missing_vhost_is_refused(admin: Admin) -> None:
    status, _, err = admin("set_vhost_limits", "-p", "no-such-vhost-here", '{"max-queues": 1}')
    assert status != 0
    assert "Virtual host 'no-such-vhost-here' does not exist" in err


def test_max_connections_after_set(admin: Admin, vhost: str, broker: BrokerInfo) -> None:
    admin.ok("set_vhost_limits", "-p", vhost, '{"max-connections": 1}')
    first = retry(lambda: pika.BlockingConnection(params(broker, vhost)))
    try:
        with pytest.raises(pika.exceptions.ProbableAccessDeniedError) as caught:
            pika.BlockingConnection(params(broker, vhost))
        assert (
            f"(530) \"NOT_ALLOWED - access to vhost '{vhost}' refused for user 'guest': "
            'connection limit (1) is reached"'
        ) in str(caught.value)
    finally:
        first.close()
    # Once the first is gone a new one fits again.
    retry(lambda: pika.BlockingConnection(params(broker, vhost))).close()
    admin.ok("set_vhost_limits", "-p", vhost, '{"max-connections": 0}')
    with pytest.raises(pika.exceptions.ProbableAccessDeniedError) as caught:
        pika.BlockingConnection(params(broker, vhost))
    assert "connection limit (0) is reached" in str(caught.value)
    admin.ok("clear_vhost_limits", "-p", vhost)
    retry(lambda: pika.BlockingConnection(params(broker, vhost))).close()


def test_max_queues_after_set(admin: Admin, vhost: str, broker: BrokerInfo) -> None:
    admin.ok("set_vhost_limits", "-p", vhost, '{"max-queues": 2}')
    conn = pika.BlockingConnection(params(broker, vhost))
    try:
        ch = conn.channel()
        ch.queue_declare("q1")
        ch.queue_declare("q2", durable=True)
        code, text = broker_error(lambda: conn.channel().queue_declare("q3"))
        assert (code, text) == (
            406,
            f"PRECONDITION_FAILED - cannot declare queue 'q3': queue limit in vhost '{vhost}' (2) is reached",
        )
        code, text = broker_error(lambda: conn.channel().queue_declare("", exclusive=True))
        assert code == 406
        assert re.fullmatch(
            rf"PRECONDITION_FAILED - cannot declare queue 'amq\.gen-[\w-]+': queue limit in vhost "
            rf"'{re.escape(vhost)}' \(2\) is reached",
            text,
        )
        ch = conn.channel()
        ch.queue_declare("q1")  # redeclaring creates nothing
        ch.queue_declare("q2", passive=True, durable=True)
        ch.queue_delete("q1")
        ch.queue_declare("q3")
    finally:
        conn.close()


def test_json_output(admin: Admin, vhost: str) -> None:
    if admin.external:
        pytest.skip("--json is ottermq ctl's")
    admin.ok("set_vhost_limits", "-p", vhost, '{"max-queues": 3}')
    code, out, _ = admin("list_vhost_limits", "-p", vhost, json_out=True)
    assert code == 0
    assert json.loads(out) == [{"vhost": vhost, "limits": {"max-queues": 3}}]
    code, out, _ = admin("list_vhost_limits", "--global", json_out=True)
    assert {"vhost": vhost, "limits": {"max-queues": 3}} in json.loads(out)


@pytest.mark.parametrize("how", ["sigterm", "kill-9"])
def test_limits_survive_a_restart(tmp_path: Path, how: str) -> None:
    data_dir = tmp_path / "data"
    process, port = start_broker(data_dir)
    try:
        admin = Admin(data_dir)
        admin.ok("add_vhost", "limited")
        admin.ok("add_vhost", "gone")
        admin.ok("set_permissions", "-p", "limited", "guest", ".*", ".*", ".*")
        admin.ok("set_vhost_limits", "-p", "limited", '{"max-queues": 1, "max-connections": 1}')
        admin.ok("set_vhost_limits", "-p", "gone", '{"max-queues": 1}')
        admin.ok("set_vhost_limits", '{"max-queues": 0}')
        admin.ok("clear_vhost_limits")
        admin.ok("delete_vhost", "gone")
        # kill -9 right after the last answer: ctl answers once the change is durable.
    finally:
        stop_broker(process, signal.SIGKILL if how == "kill-9" else signal.SIGTERM)
    process, port = start_broker(data_dir)
    try:
        admin = Admin(data_dir)
        code, out, _ = admin("list_vhost_limits", "--global", json_out=True)
        assert code == 0
        assert json.loads(out) == [{"vhost": "limited", "limits": {"max-queues": 1, "max-connections": 1}}]
        conn = connect(port, "guest", "guest", "limited")
        try:
            conn.channel().queue_declare("only")
            assert broker_error(lambda: conn.channel().queue_declare("second"))[0] == 406
            with pytest.raises(pika.exceptions.ProbableAccessDeniedError):
                connect(port, "guest", "guest", "limited")
        finally:
            conn.close()
        admin.ok("add_vhost", "gone")  # created again: without the old limits
        assert admin.ok("list_vhost_limits", "-p", "gone").strip().splitlines()[1:] == []
    finally:
        stop_broker(process)


def test_config_file_limits_are_set_on_vhosts_without_limits(tmp_path: Path) -> None:
    config = tmp_path / "ottermq.toml"
    config.write_text(
        '[[vhosts]]\nname = "app"\n\n'
        '[[vhost_limits]]\nvhost = "app"\nmax_queues = 1\nmax_connections = -1\n\n'
        "[[vhost_limits]]\nmax_connections = 5\n"
    )
    data_dir = tmp_path / "data"
    process, _port = start_broker(data_dir, "--config", str(config))
    try:
        admin = Admin(data_dir)
        code, out, _ = admin("list_vhost_limits", "--global", json_out=True)
        assert code == 0
        assert json.loads(out) == [
            {"vhost": "app", "limits": {"max-queues": 1, "max-connections": -1}},
            {"vhost": "/", "limits": {"max-connections": 5}},
        ]
        admin.ok("set_vhost_limits", "-p", "app", '{"max-queues": 7}')
    finally:
        stop_broker(process)
    # Restarted with the same file: limits that exist are left as ctl changed them.
    process, _port = start_broker(data_dir, "--config", str(config))
    try:
        admin = Admin(data_dir)
        assert admin.ok("list_vhost_limits", "-p", "app").splitlines()[1:] == ['{"max-queues":7}']
    finally:
        stop_broker(process)


def test_config_file_limits_on_a_missing_vhost_stop_the_start(tmp_path: Path) -> None:
    result = refused_start(tmp_path, '[[vhost_limits]]\nvhost = "nope"\nmax_queues = 1\n')
    assert "ottermq: error: config file: Virtual host 'nope' does not exist" in result.stderr
