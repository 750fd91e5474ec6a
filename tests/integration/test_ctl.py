"""`ottermq ctl`: every verb against a running broker, its errors and exit codes, users surviving a
restart (clean or kill -9), and users, vhosts and permissions from the config file.

The verbs run in-process through typer's CliRunner (the same code as the console script, without a
Python start-up per call); the "broker not running" case and the restarts use real processes.
"""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pika
import pytest
from typer.testing import CliRunner

from ottermq.cli import app
from tests.integration.conftest import BrokerInfo, serve_cmd, unique

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[2]
_LISTENING = re.compile(r"listening on amqp://[^\s:/]+:(\d+)")


@pytest.fixture
def ctl(broker: BrokerInfo) -> Iterator[Ctl]:
    if broker.external:
        pytest.skip("ottermq ctl manages OtterMQ only")
    assert broker.data_dir is not None
    runner = Ctl(broker.data_dir)
    try:
        yield runner
    finally:
        for name in runner.vhosts:
            runner("delete_vhost", name)
        for name in runner.users:
            runner("delete_user", name)


class Ctl:
    """Runs `ottermq ctl --data-dir D ...` in-process; remembers users and vhosts it made."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.runner = CliRunner()
        self.users: list[str] = []
        self.vhosts: list[str] = []

    def __call__(self, *argv: str, json_out: bool = False) -> tuple[int, str, str]:
        options = ["ctl", "--data-dir", str(self.data_dir)] + (["--json"] if json_out else [])
        result = self.runner.invoke(app, [*options, *argv])
        if argv[0] == "add_user" and result.exit_code == 0:
            self.users.append(argv[1])
        if argv[0] == "add_vhost" and result.exit_code == 0:
            self.vhosts.append(argv[1])
        return result.exit_code, result.stdout, result.stderr

    def ok(self, *argv: str) -> str:
        code, out, err = self(*argv)
        assert code == 0, err
        return out

    def json(self, *argv: str) -> Any:
        code, out, err = self(*argv, json_out=True)
        assert code == 0, err
        return json.loads(out)


def test_users(ctl: Ctl) -> None:
    user = unique("u")
    assert ctl.ok("add_user", user, "pw", "--tags", "monitoring") == f'Adding user "{user}" ...\n'
    assert {"user": user, "tags": ["monitoring"]} in ctl.json("list_users")
    ctl.ok("set_user_tags", user, "administrator", "management")
    assert f"{user}\t[administrator, management]\n" in ctl.ok("list_users")
    assert ctl.ok("authenticate_user", user, "pw").endswith("Success\n")
    ctl.ok("change_password", user, "new")
    code, _, err = ctl("authenticate_user", user, "pw")
    assert code == 65
    assert err == f'ottermq ctl: error: failed to authenticate user "{user}": invalid credentials\n'
    ctl.ok("authenticate_user", user, "new")
    ctl.ok("clear_password", user)
    assert ctl("authenticate_user", user, "new")[0] == 65
    ctl.ok("delete_user", user)
    ctl.users.remove(user)
    assert all(row["user"] != user for row in ctl.json("list_users"))


def test_user_errors(ctl: Ctl) -> None:
    user = unique("u")
    ctl.ok("add_user", user, "pw")
    assert ctl("add_user", user, "pw")[::2] == (70, f'ottermq ctl: error: User "{user}" already exists\n')
    assert ctl("delete_user", "nobody-here")[::2] == (
        67,
        'ottermq ctl: error: User "nobody-here" does not exist\n',
    )
    assert ctl("change_password", "nobody-here", "x")[0] == 67
    assert ctl("set_user_tags", "nobody-here", "x")[0] == 67
    assert ctl("list_user_permissions", "nobody-here")[0] == 67
    assert ctl("add_user", user)[0] == 2  # typer's usage error: missing PASSWORD
    code, _, err = ctl("add_user", unique("u"), "not-a-hash", "--pre-hashed-password")
    assert code == 65 and "password hash is not of the form" in err


def test_pre_hashed_password(ctl: Ctl, broker: BrokerInfo) -> None:
    from ottermq.broker.auth import hash_password

    user, vhost = unique("u"), unique("vh")
    ctl.ok("add_user", user, hash_password("secret", 1_000), "--pre-hashed-password")
    ctl.ok("add_vhost", vhost)
    ctl.ok("set_permissions", "-p", vhost, user, ".*", ".*", ".*")
    params = broker.params(credentials=pika.PlainCredentials(user, "secret"), virtual_host=vhost)
    pika.BlockingConnection(params).close()


def test_vhosts_and_permissions(ctl: Ctl) -> None:
    user, vhost = unique("u"), unique("vh")
    ctl.ok("add_user", user, "pw")
    assert ctl.ok("add_vhost", vhost) == f'Adding vhost "{vhost}" ...\n'
    ctl.ok("add_vhost", vhost)  # again: nothing happens, as rabbitmqctl
    assert {"name": vhost} in ctl.json("list_vhosts")
    ctl.ok("set_permissions", "-p", vhost, user, "^c", "^w", "^r")
    assert ctl.ok("list_permissions", "-p", vhost) == (
        f'Listing permissions for vhost "{vhost}" ...\nuser\tconfigure\twrite\tread\n{user}\t^c\t^w\t^r\n'
    )
    assert ctl.json("list_user_permissions", user) == [
        {"vhost": vhost, "configure": "^c", "write": "^w", "read": "^r"}
    ]
    ctl.ok("clear_permissions", "-p", vhost, user)
    assert ctl.json("list_user_permissions", user) == []
    ctl.ok("delete_vhost", vhost)
    ctl.vhosts.remove(vhost)
    assert {"name": vhost} not in ctl.json("list_vhosts")


def test_vhost_and_permission_errors(ctl: Ctl) -> None:
    user = unique("u")
    ctl.ok("add_user", user, "pw")
    assert ctl("delete_vhost", "no-such-vhost")[::2] == (
        69,
        "ottermq ctl: error: Virtual host 'no-such-vhost' does not exist\n",
    )
    assert ctl("set_permissions", "-p", "no-such-vhost", user, "a", "b", "c")[::2] == (
        69,
        "ottermq ctl: error: Virtual host no-such-vhost does not exist\n",
    )
    assert ctl("set_permissions", "nobody-here", "a", "b", "c")[::2] == (
        67,
        "ottermq ctl: error: User nobody-here does not exist\n",
    )
    code, _, err = ctl("set_permissions", user, "(", ".*", ".*")
    assert code == 65 and "regular expression '(' is invalid" in err
    assert ctl("list_queues", "-p", "no-such-vhost")[0] == 69
    assert ctl("add_vhost", "")[0] == 65


def test_listing_what_is_there(ctl: Ctl, connection: pika.BlockingConnection) -> None:
    queue, exchange = unique("q"), unique("x")
    ch = connection.channel()
    ch.exchange_declare(exchange, "topic", auto_delete=True)
    ch.queue_declare(queue, exclusive=True)
    ch.queue_bind(queue, exchange, "a.#")
    ch.basic_publish("", queue, b"hello")
    ch.basic_get(queue, auto_ack=False)
    ch.basic_publish("", queue, b"two")
    connection.process_data_events(time_limit=0.1)
    rows = {row["name"]: row for row in ctl.json("list_queues")}
    assert rows[queue]["messages"] == 1 and rows[queue]["exclusive"] is True
    assert f"{queue}\t1\t0\tfalse\n" in ctl.ok("list_queues")
    exchanges = {row["name"]: row["type"] for row in ctl.json("list_exchanges")}
    assert exchanges[exchange] == "topic" and exchanges["amq.fanout"] == "fanout"
    bindings = ctl.json("list_bindings")
    assert {
        "source_name": exchange,
        "source_kind": "exchange",
        "destination_name": queue,
        "destination_kind": "queue",
        "routing_key": "a.#",
        "arguments": {},
    } in bindings
    connections = ctl.json("list_connections")
    assert any(row["user"] == "guest" and row["channels"] >= 1 for row in connections)
    status = ctl.json("status")
    assert status["product"] == "OtterMQ" and status["connections"] >= 1


def test_control_socket_is_private(broker: BrokerInfo) -> None:
    if broker.external:
        pytest.skip("OtterMQ only")
    assert broker.data_dir is not None
    mode = (broker.data_dir / "ctl.sock").stat().st_mode
    assert stat.S_ISSOCK(mode)
    assert stat.S_IMODE(mode) == 0o600


def test_broker_not_running(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ottermq", "ctl", "--data-dir", str(tmp_path), "list_users"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=30,
    )
    assert result.returncode == 69
    assert result.stderr == (
        f"ottermq ctl: error: cannot reach the broker: no control socket at {tmp_path / 'ctl.sock'} "
        "(is ottermq serve running with this --data-dir?)\n"
    )


# -- durability and the config file ----------------------------------------------------------------------


def start_broker(data_dir: Path, *extra: str) -> tuple[subprocess.Popen[bytes], int]:
    log_path = data_dir.parent / f"{data_dir.name}.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTTERMQ_")}
    cmd = serve_cmd(data_dir, *extra)
    with log_path.open("ab") as log:
        process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
    deadline = time.monotonic() + 20
    seen = log_path.stat().st_size if log_path.exists() else 0
    while time.monotonic() < deadline:
        text = log_path.read_text(errors="replace")[seen:]
        match = _LISTENING.search(text)
        if match and "ottermq ctl socket ready" in text:
            return process, int(match.group(1))
        if process.poll() is not None:
            raise AssertionError(f"broker exited: {text[-2000:]}")
        time.sleep(0.05)
    process.kill()
    raise AssertionError("broker did not start")


def stop_broker(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if process.poll() is None:
        process.send_signal(sig)
        process.wait(timeout=15)


def connect(port: int, user: str, password: str, vhost: str) -> pika.BlockingConnection:
    params = pika.ConnectionParameters(
        "127.0.0.1",
        port,
        vhost,
        pika.PlainCredentials(user, password),
        socket_timeout=5,
    )
    return pika.BlockingConnection(params)


@pytest.mark.parametrize("how", ["sigterm", "kill-9"])
def test_users_vhosts_and_permissions_survive_a_restart(tmp_path: Path, how: str) -> None:
    data_dir = tmp_path / "data"
    process, port = start_broker(data_dir)
    try:
        ctl = Ctl(data_dir)
        ctl.ok("add_vhost", "kept")
        ctl.ok("add_vhost", "dropped")
        ctl.ok("add_user", "alice", "pw", "--tags", "management")
        ctl.ok("add_user", "bob", "pw")
        ctl.ok("set_permissions", "-p", "kept", "alice", "^a", ".*", ".*")
        ctl.ok("set_permissions", "-p", "kept", "bob", ".*", ".*", ".*")
        ctl.ok("change_password", "alice", "pw2")
        ctl.ok("delete_user", "bob")
        ctl.ok("delete_vhost", "dropped")
        ctl.ok("delete_user", "guest")
        # kill -9 right after the last answer: ctl answers once the change is durable.
    finally:
        stop_broker(process, signal.SIGKILL if how == "kill-9" else signal.SIGTERM)
    process, port = start_broker(data_dir)
    try:
        ctl = Ctl(data_dir)
        assert ctl.json("list_users") == [{"user": "alice", "tags": ["management"]}]
        assert ctl.json("list_vhosts") == [{"name": "/"}, {"name": "kept"}]
        assert ctl.json("list_user_permissions", "alice") == [
            {"vhost": "kept", "configure": "^a", "write": ".*", "read": ".*"}
        ]
        conn = connect(port, "alice", "pw2", "kept")
        try:
            ch = conn.channel()
            ch.queue_declare("a-queue")
            with pytest.raises(pika.exceptions.ChannelClosedByBroker) as caught:
                conn.channel().queue_declare("b-queue")
            assert caught.value.reply_code == 403
        finally:
            conn.close()
        with pytest.raises(pika.exceptions.ProbableAuthenticationError):
            connect(port, "guest", "guest", "/")
    finally:
        stop_broker(process)


def test_config_file_users_are_created_when_absent(tmp_path: Path) -> None:
    from ottermq.broker.auth import hash_password

    config = tmp_path / "ottermq.toml"
    config.write_text(
        '[[vhosts]]\nname = "app"\n\n'
        '[[users]]\nname = "svc"\npassword = "s3cret"\ntags = ["monitoring"]\n\n'
        f'[[users]]\nname = "hashed"\npassword_hash = "{hash_password("h", 1_000)}"\n\n'
        '[[permissions]]\nuser = "svc"\nvhost = "app"\nconfigure = "^svc"\nwrite = ".*"\nread = ".*"\n\n'
        '[[permissions]]\nuser = "hashed"\nconfigure = ""\nwrite = ""\nread = ".*"\n'
    )
    data_dir = tmp_path / "data"
    process, port = start_broker(data_dir, "--config", str(config))
    try:
        ctl = Ctl(data_dir)
        assert {"user": "svc", "tags": ["monitoring"]} in ctl.json("list_users")
        connect(port, "svc", "s3cret", "app").close()
        connect(port, "hashed", "h", "/").close()
        ctl.ok("set_permissions", "-p", "app", "svc", ".*", ".*", ".*")
        ctl.ok("change_password", "svc", "rotated")
    finally:
        stop_broker(process)
    # Restarted with the same file: what exists is left as ctl changed it.
    process, port = start_broker(data_dir, "--config", str(config))
    try:
        ctl = Ctl(data_dir)
        assert ctl.json("list_user_permissions", "svc") == [
            {"vhost": "app", "configure": ".*", "write": ".*", "read": ".*"}
        ]
        connect(port, "svc", "rotated", "app").close()
    finally:
        stop_broker(process)


def refused_start(tmp_path: Path, config_text: str) -> subprocess.CompletedProcess[str]:
    """`ottermq serve` with this config file, which must refuse to start (exit 2); its outcome."""
    config = tmp_path / "bad.toml"
    config.write_text(config_text)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "ottermq",
            "serve",
            "--port",
            "0",
            "--data-dir",
            str(tmp_path / "d"),
            "--config",
            str(config),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=30,
        env={k: v for k, v in os.environ.items() if not k.startswith("OTTERMQ_")},
    )
    assert result.returncode == 2, result.stderr
    return result


def test_bad_config_entries_stop_the_start(tmp_path: Path) -> None:
    result = refused_start(
        tmp_path, '[[permissions]]\nuser = "ghost"\nconfigure = ""\nwrite = ""\nread = ""\n'
    )
    assert "ottermq: error: config file: User ghost does not exist" in result.stderr


@pytest.mark.parametrize(
    ("line", "kind", "error"),
    [
        (b"not json", "usage", "Expecting value"),
        (b"[1, 2]", "usage", "a request is a JSON object"),
        (b'{"verb": "format_disk"}', "usage", "unknown verb 'format_disk'"),
        (b'{"verb": "add_user", "args": []}', "usage", "'args' must be an object"),
        (b'{"verb": "add_user", "args": {"name": "x"}}', "usage", "argument 'password' is required"),
        (b'{"verb": "set_user_tags", "args": {"name": "guest", "tags": "a"}}', "usage", "list of strings"),
        (b'{"verb": "delete_user", "args": {"name": "nobody"}}', "no_user", 'User "nobody" does not exist'),
    ],
)
def test_malformed_requests_get_a_readable_answer(line: bytes, kind: str, error: str) -> None:
    from ottermq.broker.broker import Broker
    from ottermq.server.control import handle_request

    reply = handle_request(Broker(), line)
    assert reply["ok"] is False and reply["kind"] == kind
    assert error in reply["error"]
