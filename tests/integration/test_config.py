"""Settings: parsing, range checks, and the precedence flag > environment > config file > default."""

from __future__ import annotations

from pathlib import Path

import pytest

from ottermq.config import ConfigError, Settings, load_settings, read_config_file, settings_as_toml


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "ottermq.toml"
    path.write_text(text)
    return path


def test_defaults_match_rabbitmq() -> None:
    s = load_settings(environ={})
    assert (s.host, s.port, s.http_port, s.data_dir) == ("::", 5672, 15672, Path("./data"))  # IPv6 and IPv4
    assert (s.frame_max, s.channel_max, s.heartbeat) == (131072, 2047, 60)
    assert s.max_message_size == 128 * 1024 * 1024
    assert (s.default_user, s.default_pass, s.loopback_users) == ("guest", "guest", ("guest",))
    assert s.persistence == "memento"


def test_precedence_flag_over_env_over_file_over_default(tmp_path: Path) -> None:
    config = write(tmp_path, 'port = 1111\nheartbeat = 11\nframe_max = 8192\nlog_format = "json"\n')
    env = {"OTTERMQ_PORT": "2222", "OTTERMQ_HEARTBEAT": "22"}
    s = load_settings({"port": "3333", "heartbeat": None}, config, env)
    assert s.port == 3333  # flag
    assert s.heartbeat == 22  # environment beats the file
    assert s.frame_max == 8192  # file beats the default
    assert s.log_format == "json"
    assert s.channel_max == 2047  # default


def test_every_setting_has_an_environment_variable() -> None:
    env = {
        "OTTERMQ_HOST": "127.0.0.1",
        "OTTERMQ_DATA_DIR": "/tmp/otter",
        "OTTERMQ_HTTP_PORT": "0",
        "OTTERMQ_CHANNEL_MAX": "10",
        "OTTERMQ_MAX_MESSAGE_SIZE": "1024",
        "OTTERMQ_DEFAULT_USER": "otter",
        "OTTERMQ_DEFAULT_PASS": "secret",
        "OTTERMQ_LOOPBACK_USERS": "a, b",
        "OTTERMQ_HANDSHAKE_TIMEOUT": "1.5",
        "OTTERMQ_LOG_LEVEL": "DEBUG",
        "OTTERMQ_PERSISTENCE": "memento",
        "OTTERMQ_UNRELATED": "ignored",
    }
    s = load_settings(environ=env)
    assert s.host == "127.0.0.1" and s.data_dir == Path("/tmp/otter") and s.http_port == 0
    assert s.channel_max == 10 and s.max_message_size == 1024
    assert (s.default_user, s.default_pass, s.loopback_users) == ("otter", "secret", ("a", "b"))
    assert s.handshake_timeout == 1.5
    assert s.log_level == "debug"  # normalised
    assert s.persistence == "memento"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"OTTERMQ_PORT": "seventy"}, "OTTERMQ_PORT: expected an integer, got 'seventy'"),
        ({"OTTERMQ_PORT": "70000"}, "OTTERMQ_PORT: 70000 is out of range 0..65535"),
        ({"OTTERMQ_FRAME_MAX": "1024"}, "OTTERMQ_FRAME_MAX: 1024 is out of range 4096..4294967295"),
        ({"OTTERMQ_LOG_FORMAT": "xml"}, "OTTERMQ_LOG_FORMAT: 'xml' is not one of kv, json"),
        ({"OTTERMQ_PERSISTENCE": "disk"}, "'disk' is not one of memory, memento"),
        ({"OTTERMQ_HEARTBEAT": "-1"}, "out of range"),
        ({"OTTERMQ_MAX_MESSAGE_SIZE": str(1 << 30)}, "out of range"),
        ({"OTTERMQ_HANDSHAKE_TIMEOUT": "soon"}, "expected a number"),
        ({"OTTERMQ_SCRUB_RATE": "-1"}, "OTTERMQ_SCRUB_RATE: -1 is out of range"),
        ({"OTTERMQ_SCRUB_INTERVAL": "-0.5"}, "OTTERMQ_SCRUB_INTERVAL: -0.5 is out of range"),
        ({"OTTERMQ_LOG_SEGMENT_SIZE": "32768"}, "OTTERMQ_LOG_SEGMENT_SIZE: 32768 is out of range 65536.."),
    ],
)
def test_bad_environment_values_are_one_line_errors(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(environ=env)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_config_file_errors_name_the_file_and_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"ottermq.toml: heartbeat: expected an integer"):
        read_config_file(write(tmp_path, 'heartbeat = "often"\n'))
    with pytest.raises(ConfigError, match=r"ottermq.toml: colour: unknown setting"):
        read_config_file(write(tmp_path, 'colour = "blue"\n'))
    with pytest.raises(ConfigError, match=r"not valid TOML"):
        read_config_file(write(tmp_path, "port = \n"))
    with pytest.raises(ConfigError, match=r"not found"):
        read_config_file(tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match=r"port: expected an integer"):
        read_config_file(write(tmp_path, "port = true\n"))


def test_config_file_accepts_dashed_keys_and_lists(tmp_path: Path) -> None:
    values = read_config_file(write(tmp_path, 'http-port = 0\nloopback_users = ["a"]\ndata_dir = "d"\n'))
    assert values == {"http_port": 0, "loopback_users": ("a",), "data_dir": Path("d")}


def test_toml_rendering_reads_back_to_the_same_settings(tmp_path: Path) -> None:
    s = Settings(host="::1", data_dir=Path("/var/lib/otter mq"), default_pass='p"w\\', heartbeat=5)
    path = write(tmp_path, settings_as_toml(s))
    assert load_settings(config_file=path, environ={}) == s


def test_http_limits_are_settings(tmp_path: Path) -> None:
    """The management API's limits against slow peers come from the config file and the environment."""
    from ottermq.config import http_limits
    from ottermq.http.server import Limits

    config = write(tmp_path, "http_head_timeout = 2.5\nhttp-max-connections = 32\n")
    settings = load_settings(config_file=config, environ={"OTTERMQ_HTTP_MAX_UNPROVEN": "8"})
    limits = Limits(**http_limits(settings))
    assert (limits.head_timeout, limits.max_connections, limits.max_unproven) == (2.5, 32, 8)
    assert Limits(**http_limits(load_settings(environ={}))) == Limits()
    # RabbitMQ's management.http.max_body_size for definitions imports: 20 MiB unless set.
    assert Limits().max_body_size == 20 * 1024 * 1024
    sized = load_settings(environ={"OTTERMQ_HTTP_MAX_BODY_SIZE": "2097152"})
    assert Limits(**http_limits(sized)).max_body_size == 2097152
    with pytest.raises(ConfigError, match=r"OTTERMQ_HTTP_MAX_BODY_SIZE: 1000 is out of range"):
        load_settings(environ={"OTTERMQ_HTTP_MAX_BODY_SIZE": "1000"})
    with pytest.raises(ConfigError, match=r"OTTERMQ_HTTP_HEAD_TIMEOUT: 0\.0 is out of range"):
        load_settings(environ={"OTTERMQ_HTTP_HEAD_TIMEOUT": "0"})
