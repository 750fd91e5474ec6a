"""[[users]], [[vhosts]] and [[permissions]] in the config file (and as JSON in the environment)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ottermq.config import ConfigError, load_settings, read_config_file, settings_as_toml

GOOD = """
[[users]]
name = "svc"
password = "s3cret"
tags = ["monitoring", "management"]

[[users]]
name = "ops"
tags = "administrator, policymaker"

[[vhosts]]
name = "app"

[[permissions]]
user = "svc"
vhost = "app"
configure = "^svc"
write = ".*"
read = ".*"
"""


def test_tables_are_read(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(GOOD)
    settings = load_settings(config_file=path, environ={})
    assert settings.users == (
        {"name": "svc", "password": "s3cret", "tags": ["monitoring", "management"]},
        {"name": "ops", "tags": ["administrator", "policymaker"]},
    )
    assert settings.vhosts == ({"name": "app"},)
    assert settings.permissions == (
        {"user": "svc", "vhost": "app", "configure": "^svc", "write": ".*", "read": ".*"},
    )


def test_round_trip_through_check_config(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(GOOD)
    settings = load_settings(config_file=path, environ={})
    again = tmp_path / "again.toml"
    again.write_text(settings_as_toml(settings))
    assert load_settings(config_file=again, environ={}) == settings


def test_environment_takes_json() -> None:
    settings = load_settings(environ={"OTTERMQ_VHOSTS": '[{"name": "a"}, {"name": "b"}]'})
    assert settings.vhosts == ({"name": "a"}, {"name": "b"})
    with pytest.raises(ConfigError, match="OTTERMQ_VHOSTS: expected a JSON list of objects"):
        load_settings(environ={"OTTERMQ_VHOSTS": "a,b"})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[[users]]\npassword = "x"\n', "users: every entry needs 'name'"),
        ('[[users]]\nname = "x"\nrole = "admin"\n', "users: unknown key 'role'"),
        ('[[users]]\nname = "x"\npassword = "a"\npassword_hash = "b"\n', "not both"),
        ('[[users]]\nname = "x"\ntags = [1]\n', "'tags' must be a list of strings"),
        ("[[users]]\nname = 5\n", "'name' must be a string"),
        ('[[permissions]]\nuser = "u"\nconfigure = ".*"\nwrite = ".*"\n', "every entry needs 'read'"),
        ('users = "bob"\n', "users: expected a JSON list of objects"),
    ],
)
def test_bad_entries_are_one_readable_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        read_config_file(path)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)
