"""OtterMQ settings: one frozen record, read from defaults, a TOML file, the environment and the command line.

Strategy: every setting is a field of `Settings`, and the field's declared type drives parsing, so a new
setting is one line here and is at once a TOML key and an `OTTERMQ_<NAME>` environment variable. Sources are
layered in increasing precedence (default < config file < environment < command line); each value is parsed
and range-checked as it is read, and any problem becomes a one-line `ConfigError` naming the source, which the
CLI prints without a traceback.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

ENV_PREFIX: Final = "OTTERMQ_"
LOG_LEVELS: Final = ("debug", "info", "warning", "error", "critical")
LOG_FORMATS: Final = ("kv", "json")
PERSISTENCE_BACKENDS: Final = ("memory", "memento")
TLS_VERIFY_MODES: Final = ("none", "peer")
# RabbitMQ refuses max_message_size above 512 MiB; its default is 128 MiB.
MAX_MESSAGE_SIZE_LIMIT: Final = 512 * 1024 * 1024
# Cluster and node names: they are parts of etcd keys.
_NAME: Final = re.compile(r"[A-Za-z0-9._-]{1,64}")


class ConfigError(Exception):
    """A setting that cannot be used; the message is one readable line."""


@dataclass(frozen=True, slots=True)
class Settings:
    """Every OtterMQ setting with its default (RabbitMQ's where RabbitMQ has one)."""

    # "::" is every interface, IPv6 and IPv4 (one dual-stack socket); "0.0.0.0" only IPv4.
    host: str = "::"
    port: int = 5672
    data_dir: Path = Path("./data")
    http_port: int = 15672
    # Prometheus' /metrics, /metrics/per-object and /metrics/detailed on a port of their own (RabbitMQ's
    # prometheus.tcp.port); they are on the management port too. 0 turns this listener off.
    prometheus_port: int = 15692
    # RabbitMQ's stream protocol (its rabbitmq_stream plugin; RabbitMQ's port is 5552). Off (0) by default,
    # as RabbitMQ's plugin is until enabled (ottermq/streamproto, docs/streams.md).
    stream_port: int = 0
    frame_max: int = 131072
    channel_max: int = 2047
    heartbeat: int = 60
    max_message_size: int = 128 * 1024 * 1024
    default_user: str = "guest"
    default_pass: str = "guest"
    # Users accepted from loopback addresses only, as RabbitMQ's loopback_users.
    loopback_users: tuple[str, ...] = ("guest",)
    # Seconds a client has from TCP accept to connection.open before it is dropped (RabbitMQ: 10 s).
    handshake_timeout: float = 10.0
    # Milliseconds a delivery may stay unacknowledged before its channel is closed (RabbitMQ's
    # consumer_timeout: 30 minutes); 0 turns the check off.
    consumer_timeout: int = 1_800_000
    # Seconds SIGTERM waits for clients to answer connection.close before the sockets are cut.
    shutdown_timeout: float = 3.0
    # Bytes queued in a socket's write buffer before deliveries to that connection pause.
    write_buffer_limit: int = 1024 * 1024
    log_level: str = "info"
    log_format: str = "kv"
    persistence: str = "memento"
    # The durable store (persistence = memento; the log lives in <data_dir>/log): segment file size, and a
    # snapshot after this many bytes appended or seconds elapsed (a clean stop always snapshots).
    log_segment_size: int = 64 * 1024 * 1024
    snapshot_log_bytes: int = 128 * 1024 * 1024
    snapshot_interval: float = 300.0
    # Start on a log damaged in the middle (a bit flip, a lost segment) instead of refusing: keep what is
    # valid up to the first damage, move the rest to <data_dir>/log/quarantine/ and say so loudly. Confirmed
    # messages after the damage are lost, so this is an operator's explicit choice, never a default.
    salvage: bool = False
    # The background scrub: sealed log segments are read again and verified (checksums, LSNs, seals) at
    # most scrub_rate bytes per second, a pass every scrub_interval seconds; damage is reported (log, ctl
    # status, /metrics) before a consumer meets it. 0 in either turns the scrub off.
    scrub_rate: int = 8 * 1024 * 1024
    scrub_interval: float = 3600.0
    # Most client connections at once (0 = no limit); above it a new TCP connection is closed at accept.
    connection_max: int = 0
    # Memory alarm: a fraction of RAM (RabbitMQ's vm_memory_high_watermark), or bytes when the absolute
    # setting is non-zero. Publishers are blocked (connection.blocked) while what the broker holds (message
    # contents, content in flight, index, buffers) is above it; it clears as soon as consumers take it back
    # under. Logged contents kept in memory are capped at half of it (the rest is read back from the log).
    vm_memory_high_watermark: float = 0.4
    vm_memory_high_watermark_absolute: int = 0
    # Bytes of content a connection may have in flight over several messages at once (interleaved over its
    # channels; one message alone is bounded by max_message_size); past it the channel whose frame crossed
    # it is closed with 406. 0: an eighth of the memory high-water mark, at least 8 MiB.
    max_content_in_flight: int = 0
    # The management API's limits against slow and idle peers (seconds; counts): the request head within
    # http_head_timeout, its body within http_body_timeout (408 after), a response taken within
    # http_send_timeout, a kept-alive connection idle at most http_idle_timeout; at most
    # http_max_connections open, of which http_max_unproven not yet authenticated.
    http_head_timeout: float = 10.0
    http_body_timeout: float = 30.0
    http_send_timeout: float = 30.0
    http_idle_timeout: float = 30.0
    http_max_connections: int = 256
    http_max_unproven: int = 64
    # Largest definitions document POST /api/definitions accepts (RabbitMQ's management.http.max_body_size,
    # 20 MiB: ~200,000 queues); 413 beyond it. Every other request body is capped at 1 MiB.
    http_max_body_size: int = 20 * 1024 * 1024
    # Milliseconds between the management API's samples of message counters and object figures, from
    # which its rates are computed (RabbitMQ's collect_statistics_interval; tests lower it).
    collect_statistics_interval: int = 5000
    # Disk alarm: publishers are blocked while the data directory's file system has less free space.
    disk_free_limit: int = 50_000_000
    # AMQPS listener, off unless tls_port, tls_certfile and tls_keyfile are set (RabbitMQ's port: 5671).
    tls_port: int = 0
    tls_certfile: str = ""
    tls_keyfile: str = ""
    tls_cafile: str = ""
    # "peer": ask for a client certificate and check it against tls_cafile; "none": do not ask.
    tls_verify: str = "none"
    tls_fail_if_no_peer_cert: bool = False
    # Created at start when absent (TOML arrays of tables [[users]], [[vhosts]], [[permissions]]); see
    # ACCESS_KEYS for the keys of each. Never changed once they exist: `ottermq ctl` manages them then.
    users: tuple[dict[str, Any], ...] = ()
    vhosts: tuple[dict[str, Any], ...] = ()
    permissions: tuple[dict[str, Any], ...] = ()
    # [[vhost_limits]] (vhost="/", max_connections, max_queues): set at start on a vhost without limits.
    vhost_limits: tuple[dict[str, Any], ...] = ()
    # A definitions file (RabbitMQ's export format) or a directory of them (*.json), imported at every
    # start after recovery, as RabbitMQ's load_definitions: what exists is left or updated as an import
    # does, so an unchanged file changes nothing. A fresh node then gets no default user and vhost.
    load_definitions: str = ""
    # Clustering (replication and failover), off unless etcd_endpoints is set: etcd's client URLs
    # (http://host:port), this node's unique name (stable across restarts), the replication listener's
    # port, how the other nodes and clients reach this node (default: host), the etcd key prefix, the TTL
    # in seconds of the lease a leader holds (it stops leading before the lease can expire), the secret
    # every node of the cluster shares, and the fewest in-sync nodes (the leader included) below which
    # publishes are refused.
    etcd_endpoints: tuple[str, ...] = ()
    node_name: str = ""
    cluster_port: int = 25672
    advertise_host: str = ""
    # The replication port the other nodes are told to connect to (0: cluster_port), for a port forwarded
    # or proxied in between (NAT, a container's published port; the partition tests put a proxy there).
    advertise_cluster_port: int = 0
    cluster_name: str = "ottermq"
    cluster_lease_ttl: float = 5.0
    cluster_secret: str = ""
    min_in_sync: int = 1
    # How long (seconds) a follower in the in-sync set may take to acknowledge before it is dropped from it
    # (docs/replication.md).
    replication_ack_timeout: float = 2.0
    # Send each follower its records from a thread of its own instead of the event loop (plain TCP only;
    # docs/replication.md, "Sender threads"): less work on the leader's event loop at moderate load, but
    # slower at full load on a 2-core machine (the threads contend for the GIL), so off by default.
    replication_sender_threads: bool = False
    # TLS on the replication connections (docs/replication.md): the leader's listener and each follower's
    # connection use tls_certfile/tls_keyfile and require the other side's certificate to be signed by
    # tls_cafile (all three are needed). Every node of a cluster must agree.
    cluster_tls: bool = False
    # FOR TESTS ONLY: a fixed role instead of an etcd election. "self": this node leads (and listens on
    # cluster_port); "HOST:PORT": this node follows the leader whose replication listener is there.
    cluster_static_leader: str = ""


FIELDS: Final[dict[str, dataclasses.Field[Any]]] = {f.name: f for f in dataclasses.fields(Settings)}


def _parse_int(value: object) -> int:
    if isinstance(value, bool):
        raise ValueError("expected an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value.strip().replace("_", ""), 0)
        except ValueError:
            pass
    raise ValueError(f"expected an integer, got {value!r}")


def _parse_float(value: object) -> float:
    if isinstance(value, bool):
        raise ValueError("expected a number")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            pass
    raise ValueError(f"expected a number, got {value!r}")


def _parse_bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0", "yes", "no"):
        return value.strip().lower() in ("true", "1", "yes")
    raise ValueError(f"expected true or false, got {value!r}")


def _parse_str(value: object) -> str:
    if isinstance(value, str):
        return value
    raise ValueError(f"expected a string, got {value!r}")


def _parse_str_tuple(value: object) -> tuple[str, ...]:
    # The environment and the command line give a comma-separated string; TOML gives a list.
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise ValueError(f"expected a list of strings, got {value!r}")


def _parse_path(value: object) -> Path:
    if isinstance(value, Path):
        return value
    if isinstance(value, str) and value:
        return Path(value).expanduser()
    raise ValueError(f"expected a path, got {value!r}")


# [[users]], [[vhosts]] and [[permissions]]: (required keys, optional keys) of each table.
ACCESS_KEYS: Final = {
    "users": (("name",), ("password", "password_hash", "tags")),
    "vhosts": (("name",), ()),
    "permissions": (("user", "configure", "write", "read"), ("vhost",)),
    "vhost_limits": ((), ("vhost", "max_connections", "max_queues")),
}
# The keys of those tables whose values are integers (every other one is a string).
_INT_KEYS: Final = ("max_connections", "max_queues")


def _parse_tables(value: object) -> tuple[dict[str, Any], ...]:
    # TOML gives a list of tables; the environment gives the same as a JSON string.
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise ValueError("expected a JSON list of objects") from None
    if isinstance(value, list | tuple) and all(isinstance(v, dict) for v in value):
        return tuple(dict(v) for v in value)
    raise ValueError(f"expected a list of tables, got {value!r}")


def _check_access_entry(name: str, entry: dict[str, Any]) -> dict[str, Any]:
    required, optional = ACCESS_KEYS[name]
    unknown = sorted(set(entry) - set(required) - set(optional))
    if unknown:
        raise ValueError(f"unknown key {unknown[0]!r} (known: {', '.join((*required, *optional))})")
    for key in required:
        if key not in entry:
            raise ValueError(f"every entry needs {key!r}")
    checked = dict(entry)
    tags = checked.get("tags")
    if isinstance(tags, str):
        checked["tags"] = [tag.strip() for tag in tags.split(",") if tag.strip()]
    elif tags is not None and not (isinstance(tags, list) and all(isinstance(t, str) for t in tags)):
        raise ValueError("'tags' must be a list of strings")
    for key, item in checked.items():
        if key in _INT_KEYS:
            if isinstance(item, bool) or not isinstance(item, int):
                raise ValueError(f"{key!r} must be an integer (negative = no limit)")
        elif key != "tags" and not isinstance(item, str):
            raise ValueError(f"{key!r} must be a string")
    if name == "users" and "password" in checked and "password_hash" in checked:
        raise ValueError("give 'password' or 'password_hash', not both")
    return checked


# Field annotations are strings (postponed evaluation), so the parser is chosen by the annotation's text.
_PARSERS: Final = {
    "str": _parse_str,
    "bool": _parse_bool,
    "int": _parse_int,
    "float": _parse_float,
    "Path": _parse_path,
    "tuple[str, ...]": _parse_str_tuple,
    "tuple[dict[str, Any], ...]": _parse_tables,
}


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> str:
    lowered = value.lower()
    if lowered not in allowed:
        raise ValueError(f"{value!r} is not one of {', '.join(allowed)}")
    return lowered


def _in_range(value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        raise ValueError(f"{value} is out of range {low}..{high}")


def _check(name: str, value: Any) -> Any:
    """Range and choice checks; returns the (possibly normalised) value or raises ValueError."""
    if name in ("port", "http_port", "prometheus_port", "stream_port"):
        _in_range(value, 0, 65535)
    elif name == "frame_max":
        _in_range(value, 4096, 2**32 - 1)
    elif name in ("channel_max", "heartbeat"):
        _in_range(value, 0, 65535)
    elif name == "max_message_size":
        _in_range(value, 1, MAX_MESSAGE_SIZE_LIMIT)
    elif name == "write_buffer_limit":
        _in_range(value, 4096, 2**31)
    elif name in ("http_head_timeout", "http_body_timeout", "http_send_timeout", "http_idle_timeout"):
        _in_range(value, 0.01, 86400)
    elif name in ("http_max_connections", "http_max_unproven"):
        _in_range(value, 1, 1 << 20)
    elif name == "http_max_body_size":
        _in_range(value, 1 << 20, 1 << 30)
    elif name == "collect_statistics_interval":
        _in_range(value, 10, 86_400_000)
    elif name in ("handshake_timeout", "shutdown_timeout"):
        _in_range(value, 0.01, 86400)
    elif name in (
        "connection_max",
        "vm_memory_high_watermark_absolute",
        "disk_free_limit",
        "max_content_in_flight",
    ):
        _in_range(value, 0, 2**63)
    elif name == "vm_memory_high_watermark":
        _in_range(value, 0.0, 1.0)
    elif name in ("tls_port", "cluster_port", "advertise_cluster_port"):
        _in_range(value, 0, 65535)
    elif name == "replication_ack_timeout":
        _in_range(value, 0.01, 3600)
    elif name == "min_in_sync":
        _in_range(value, 1, 64)
    elif name == "tls_verify":
        return _choice(name, value, TLS_VERIFY_MODES)
    elif name in ACCESS_KEYS:
        return tuple(_check_access_entry(name, entry) for entry in value)
    elif name == "log_level":
        return _choice(name, value, LOG_LEVELS)
    elif name == "log_format":
        return _choice(name, value, LOG_FORMATS)
    elif name == "persistence":
        return _choice(name, value, PERSISTENCE_BACKENDS)
    elif name == "log_segment_size":
        # 64 KiB at least: small segments serve tests and the committed recovery fixtures (a few segments
        # of a real broker's log in a few hundred KiB); Memento itself accepts 4 KiB.
        _in_range(value, 1 << 16, 1 << 32)
    elif name == "snapshot_log_bytes":
        _in_range(value, 1, 2**63)
    elif name == "snapshot_interval":
        _in_range(value, 0.1, 86400 * 365)
    elif name == "scrub_rate":
        _in_range(value, 0, 2**63)
    elif name == "scrub_interval":
        _in_range(value, 0.0, 86400 * 365)
    elif name in ("host", "default_user") and not value:
        raise ValueError("must not be empty")
    elif name == "cluster_port":
        _in_range(value, 0, 65535)
    elif name == "cluster_lease_ttl":
        # etcd grants whole seconds and refuses less than about 2 s (1.5 election timeouts).
        _in_range(value, 2, 3600)
    elif name == "min_in_sync":
        _in_range(value, 1, 1000)
    elif (
        name in ("cluster_name", "node_name")
        and (value or name == "cluster_name")
        and not _NAME.fullmatch(value)
    ):
        raise ValueError(f"{value!r}: use letters, digits, '.', '_' and '-' only (it is part of etcd keys)")
    return value


def parse_value(name: str, raw: object, where: str) -> Any:
    """Parse and check one setting; `where` names its source in error messages. Raises ConfigError."""
    field = FIELDS.get(name)
    if field is None:
        raise ConfigError(f"{where}: unknown setting")
    parser = _PARSERS[str(field.type)]
    try:
        return _check(name, parser(raw))
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def read_config_file(path: Path) -> dict[str, Any]:
    """The settings in a TOML file (top-level keys; `-` and `_` both accepted), parsed and checked."""
    source = str(path)
    try:
        with path.open("rb") as f:
            document = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file {source} not found") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {source}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {source} is not valid TOML: {exc}") from None
    found: dict[str, Any] = {}
    for key, raw in document.items():
        name = key.replace("-", "_")
        found[name] = parse_value(name, raw, f"config file {source}: {key}")
    return found


def read_environment(environ: Mapping[str, str]) -> dict[str, Any]:
    """The settings given as OTTERMQ_<NAME> variables; variables with other names are left alone."""
    found: dict[str, Any] = {}
    for key, raw in environ.items():
        if not key.startswith(ENV_PREFIX):
            continue
        name = key[len(ENV_PREFIX) :].lower()
        if name in FIELDS:
            found[name] = parse_value(name, raw, f"environment variable {key}")
    return found


def load_settings(
    cli: Mapping[str, object | None] | None = None,
    config_file: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Settings from every source: command line > environment > config file > default.

    `cli` maps setting names to values given on the command line (None = not given). `environ` defaults to
    `os.environ`. Raises ConfigError with a one-line message on any bad value.
    """
    values: dict[str, Any] = {}
    if config_file is not None:
        values.update(read_config_file(config_file))
    values.update(read_environment(os.environ if environ is None else environ))
    for name, raw in (cli or {}).items():
        if raw is not None:
            values[name] = parse_value(name, raw, f"--{name.replace('_', '-')}")
    return Settings(**values)


def settings_as_toml(settings: Settings) -> str:
    """The settings as a TOML document that `read_config_file` reads back to the same values."""
    lines = []
    tables: list[str] = []
    for name in FIELDS:
        value = getattr(settings, name)
        if name in ACCESS_KEYS:
            # Arrays of tables must follow every plain key in TOML.
            for entry in value:
                tables.append(f"\n[[{name}]]\n")
                tables.extend(f"{key} = {json.dumps(item)}\n" for key, item in entry.items())
            continue
        if isinstance(value, Path):
            value = str(value)
        if isinstance(value, tuple):
            text = "[" + ", ".join(json.dumps(v) for v in value) + "]"
        elif isinstance(value, str):
            text = json.dumps(value)
        elif isinstance(value, bool):
            text = "true" if value else "false"
        else:
            text = repr(value)
        lines.append(f"{name} = {text}\n")
    return "".join(lines + tables)


def http_limits(settings: Settings) -> dict[str, Any]:
    """The management API's limits (`ottermq.http.server.Limits` fields) from the settings `http_<field>`."""
    return {
        name.removeprefix("http_"): getattr(settings, name)
        for name in FIELDS
        if name.startswith("http_") and name != "http_port"
    }
