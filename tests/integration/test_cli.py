"""The `ottermq` command line as users run it: a real subprocess, its exit status and what it prints."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def ottermq(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run `python -m ottermq ARGS` with a clean OTTERMQ_* environment plus `env`."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("OTTERMQ_")}
    full_env.update(env or {})
    full_env["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-m", "ottermq", *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=ROOT,
        timeout=30,
    )


def effective(*args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    result = ottermq("serve", "--check-config", *args, env=env)
    assert result.returncode == 0, result.stderr
    return tomllib.loads(result.stdout)


def test_help_lists_the_serve_options() -> None:
    result = ottermq("serve", "--help")
    assert result.returncode == 0
    options = ("--host", "--port", "--data-dir", "--http-port", "--config", "--log-level", "--log-format")
    for option in options:
        assert option in result.stdout
    top = ottermq("--help")
    assert top.returncode == 0 and "serve" in top.stdout


def test_version() -> None:
    from ottermq import __version__

    result = ottermq("version")
    assert result.returncode == 0 and result.stdout.strip() == __version__


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--port", "abc"], {}, "ottermq: error: --port: expected an integer, got 'abc'"),
        (["--port", "65536"], {}, "ottermq: error: --port: 65536 is out of range 0..65535"),
        (["--http-port", "-5"], {}, "ottermq: error: --http-port: -5 is out of range 0..65535"),
        (["--log-format", "xml"], {}, "ottermq: error: --log-format: 'xml' is not one of kv, json"),
        ([], {"OTTERMQ_FRAME_MAX": "10"}, "environment variable OTTERMQ_FRAME_MAX: 10 is out of range"),
        (["--config", "/nonexistent/ottermq.toml"], {}, "config file /nonexistent/ottermq.toml not found"),
        ([], {"OTTERMQ_SNAPSHOT_INTERVAL": "0"}, "environment variable OTTERMQ_SNAPSHOT_INTERVAL: 0"),
    ],
)
def test_bad_values_exit_2_with_one_readable_line(args: list[str], env: dict[str, str], message: str) -> None:
    result = ottermq("serve", *args, env=env)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_data_dir_that_is_a_file_is_refused(tmp_path: Path) -> None:
    occupied = tmp_path / "file"
    occupied.write_text("")
    result = ottermq("serve", "--port", "0", "--data-dir", str(occupied))
    assert result.returncode == 2
    assert "exists and is not a directory" in result.stderr


def test_flag_beats_environment_beats_config_file(tmp_path: Path) -> None:
    config = tmp_path / "ottermq.toml"
    config.write_text('http_port = 1111\nheartbeat = 11\nframe_max = 8192\nhost = "127.0.0.1"\n')
    env = {"OTTERMQ_HTTP_PORT": "2222", "OTTERMQ_HEARTBEAT": "22"}
    s = effective("--config", str(config), "--http-port", "3333", env=env)
    assert (s["http_port"], s["heartbeat"], s["frame_max"], s["host"]) == (3333, 22, 8192, "127.0.0.1")
    assert s["port"] == 5672 and s["channel_max"] == 2047


def test_config_file_from_environment(tmp_path: Path) -> None:
    config = tmp_path / "ottermq.toml"
    config.write_text("channel_max = 99\n")
    assert effective(env={"OTTERMQ_CONFIG": str(config)})["channel_max"] == 99


def test_defaults() -> None:
    s = effective()
    assert (s["host"], s["port"], s["data_dir"], s["http_port"]) == ("::", 5672, "data", 15672)
    assert s["persistence"] == "memento" and s["log_format"] == "kv"
