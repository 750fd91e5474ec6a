"""`ottermq ctl`: manage a running broker with rabbitmqctl's verbs, over its control socket.

Strategy: a thin client. Each verb turns its command-line arguments into one JSON request, sends it to
`<data-dir>/ctl.sock` (served by `ottermq.server.control` inside the broker), and prints the reply as
rabbitmqctl does: an informational line ("Adding user "bob" ..."), then the result (tab-separated
tables for list_* verbs), or JSON with `--json`. Errors are one line on stderr and an exit status
from sysexits.h, as rabbitmqctl's: 64 usage, 65 bad data, 67 no such user, 69 broker or vhost
unavailable, 70 already exists / internal error.
"""

from __future__ import annotations

import json
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, NoReturn

import typer

SOCKET_NAME: Final = "ctl.sock"
TIMEOUT: Final = 60.0

EXIT_USAGE: Final = 64
EXIT_DATAERR: Final = 65
EXIT_NOUSER: Final = 67
EXIT_UNAVAILABLE: Final = 69
EXIT_SOFTWARE: Final = 70

EXIT_CODES: Final = {
    "usage": EXIT_USAGE,
    "invalid": EXIT_DATAERR,
    "no_user": EXIT_NOUSER,
    "no_vhost": EXIT_UNAVAILABLE,
    "unavailable": EXIT_UNAVAILABLE,
    "exists": EXIT_SOFTWARE,
    "rejected": EXIT_UNAVAILABLE,
    "vhost_absent": EXIT_DATAERR,
    "internal": EXIT_SOFTWARE,
}


class CtlError(Exception):
    """A failed request: the message for stderr and the exit status."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def request(socket_path: Path, verb: str, args: dict[str, Any], timeout: float = TIMEOUT) -> Any:
    """Send one request to the broker and return its result; CtlError on any failure."""
    payload = json.dumps({"verb": verb, "args": args}).encode() + b"\n"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        try:
            sock.connect(str(socket_path))
        except (FileNotFoundError, ConnectionRefusedError):
            raise CtlError(
                f"cannot reach the broker: no control socket at {socket_path} (is ottermq serve running "
                "with this --data-dir?)",
                EXIT_UNAVAILABLE,
            ) from None
        except OSError as exc:
            message = f"cannot reach the broker at {socket_path}: {exc.strerror or exc}"
            raise CtlError(message, EXIT_UNAVAILABLE) from None
        sock.sendall(payload)
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except TimeoutError:
        raise CtlError(f"the broker did not answer within {timeout:g} s", EXIT_UNAVAILABLE) from None
    except OSError as exc:
        message = f"lost the broker's control connection: {exc.strerror or exc}"
        raise CtlError(message, EXIT_UNAVAILABLE) from None
    finally:
        sock.close()
    try:
        reply = json.loads(data)
    except ValueError:
        message = "the broker closed the control connection without an answer"
        raise CtlError(message, EXIT_UNAVAILABLE) from None
    if not reply.get("ok"):
        kind = str(reply.get("kind", "internal"))
        raise CtlError(str(reply.get("error", "unknown error")), EXIT_CODES.get(kind, EXIT_SOFTWARE))
    return reply.get("result")


# -- the command line ------------------------------------------------------------------------------------


@dataclass
class Options:
    """The group options every verb sees."""

    socket_path: Path
    json: bool
    quiet: bool


app = typer.Typer(
    help="Manage a running OtterMQ broker (rabbitmqctl's verbs) through its control socket.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def main(
    ctx: typer.Context,
    data_dir: str = typer.Option(
        "./data", "--data-dir", envvar="OTTERMQ_DATA_DIR", help="The broker's data directory"
    ),
    socket_path: str | None = typer.Option(
        None, "--socket", help="The control socket (default: <data-dir>/ctl.sock)"
    ),
    as_json: bool = typer.Option(False, "--json", help="Print results as JSON"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No informational messages"),
) -> None:
    """Options for every verb: where the broker is, and how to print."""
    path = Path(socket_path) if socket_path else Path(data_dir).expanduser() / SOCKET_NAME
    ctx.obj = Options(path, as_json, quiet)


def _fail(message: str, status: int) -> NoReturn:
    typer.echo(f"ottermq ctl: error: {message}", err=True)
    raise typer.Exit(status)


def _run(ctx: typer.Context, verb: str, args: dict[str, Any], info: str) -> Any:
    options: Options = ctx.obj
    if not options.quiet and not options.json:
        typer.echo(info)
    try:
        result = request(options.socket_path, verb, args)
    except CtlError as exc:
        _fail(str(exc), exc.status)
    if options.json:
        typer.echo(json.dumps(result if result is not None else {"ok": True}, indent=None))
    return result


def _table(ctx: typer.Context, rows: list[dict[str, Any]], columns: list[str]) -> None:
    options: Options = ctx.obj
    if options.json:
        return
    if not options.quiet:
        typer.echo("\t".join(columns))
    for row in rows:
        typer.echo("\t".join(_cell(row.get(column)) for column in columns))


def _cell(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(str(v) for v in value) + "]"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, dict):
        return json.dumps(value) if value else "[]"
    return "" if value is None else str(value)


_VHOST = typer.Option("/", "-p", "--vhost", help="The virtual host")


@app.command("add_user")
def add_user(
    ctx: typer.Context,
    username: str,
    password: str = typer.Argument(..., help="The password (or its hash with --pre-hashed-password)"),
    pre_hashed: bool = typer.Option(
        False,
        "--pre-hashed-password",
        help="PASSWORD is a hash: RabbitMQ's base64 (salt + SHA-256), or pbkdf2-sha256$<iter>$<salt>$<hash>",
    ),
    tags: str = typer.Option("", "--tags", help="Comma-separated tags"),
) -> None:
    """Create a user."""
    args: dict[str, Any] = {"name": username, "tags": [t for t in tags.split(",") if t.strip()]}
    args["password_hash" if pre_hashed else "password"] = password
    _run(ctx, "add_user", args, f'Adding user "{username}" ...')


@app.command("delete_user")
def delete_user(ctx: typer.Context, username: str) -> None:
    """Delete a user (its connections are closed)."""
    _run(ctx, "delete_user", {"name": username}, f'Deleting user "{username}" ...')


@app.command("change_password")
def change_password(ctx: typer.Context, username: str, new_password: str) -> None:
    """Set a user's password."""
    _run(
        ctx,
        "change_password",
        {"name": username, "password": new_password},
        f'Changing password for user "{username}" ...',
    )


@app.command("clear_password")
def clear_password(ctx: typer.Context, username: str) -> None:
    """Remove a user's password: it can then log in only by EXTERNAL."""
    _run(ctx, "clear_password", {"name": username}, f'Clearing password for user "{username}" ...')


@app.command("set_user_tags")
def set_user_tags(ctx: typer.Context, username: str, tags: list[str] | None = typer.Argument(None)) -> None:
    """Replace a user's tags (administrator, monitoring, management, policymaker...)."""
    tag_list = list(tags or [])
    _run(
        ctx,
        "set_user_tags",
        {"name": username, "tags": tag_list},
        f'Setting tags for user "{username}" to [{", ".join(tag_list)}] ...',
    )


@app.command("list_users")
def list_users(ctx: typer.Context) -> None:
    """List users and their tags."""
    rows = _run(ctx, "list_users", {}, "Listing users ...")
    _table(ctx, rows, ["user", "tags"])


@app.command("authenticate_user")
def authenticate_user(ctx: typer.Context, username: str, password: str) -> None:
    """Check a user's password."""
    _run(
        ctx,
        "authenticate_user",
        {"name": username, "password": password},
        f'Authenticating user "{username}" ...',
    )
    options: Options = ctx.obj
    if not options.json:
        typer.echo("Success")


@app.command("add_vhost")
def add_vhost(ctx: typer.Context, vhost: str) -> None:
    """Create a virtual host."""
    _run(ctx, "add_vhost", {"name": vhost}, f'Adding vhost "{vhost}" ...')


@app.command("delete_vhost")
def delete_vhost(ctx: typer.Context, vhost: str) -> None:
    """Delete a virtual host with everything in it (its connections are closed)."""
    _run(ctx, "delete_vhost", {"name": vhost}, f'Deleting vhost "{vhost}" ...')


@app.command("list_vhosts")
def list_vhosts(ctx: typer.Context) -> None:
    """List virtual hosts."""
    rows = _run(ctx, "list_vhosts", {}, "Listing vhosts ...")
    _table(ctx, rows, ["name"])


@app.command("set_permissions")
def set_permissions(
    ctx: typer.Context,
    user: str,
    conf: str,
    write: str,
    read: str,
    vhost: str = _VHOST,
) -> None:
    """Set a user's configure, write and read regexes on a vhost."""
    _run(
        ctx,
        "set_permissions",
        {"user": user, "vhost": vhost, "configure": conf, "write": write, "read": read},
        f'Setting permissions for user "{user}" in vhost "{vhost}" ...',
    )


@app.command("clear_permissions")
def clear_permissions(ctx: typer.Context, user: str, vhost: str = _VHOST) -> None:
    """Remove a user's permissions on a vhost."""
    _run(
        ctx,
        "clear_permissions",
        {"user": user, "vhost": vhost},
        f'Clearing permissions for user "{user}" in vhost "{vhost}" ...',
    )


@app.command("list_permissions")
def list_permissions(ctx: typer.Context, vhost: str = _VHOST) -> None:
    """List the permissions on a vhost."""
    rows = _run(ctx, "list_permissions", {"vhost": vhost}, f'Listing permissions for vhost "{vhost}" ...')
    _table(ctx, rows, ["user", "configure", "write", "read"])


@app.command("list_user_permissions")
def list_user_permissions(ctx: typer.Context, user: str) -> None:
    """List a user's permissions on every vhost."""
    rows = _run(ctx, "list_user_permissions", {"user": user}, f'Listing permissions for user "{user}" ...')
    _table(ctx, rows, ["vhost", "configure", "write", "read"])


@app.command("set_vhost_limits")
def set_vhost_limits(
    ctx: typer.Context,
    definition: str = typer.Argument(
        ..., help='A JSON object, e.g. \'{"max-connections": 10, "max-queues": 5}\' (negative = no limit)'
    ),
    vhost: str = _VHOST,
) -> None:
    """Replace a vhost's limits (max-connections, max-queues)."""
    _run(
        ctx,
        "set_vhost_limits",
        {"vhost": vhost, "definition": definition},
        f'Setting vhost limits to "{definition}" for vhost "{vhost}" ...',
    )


@app.command("clear_vhost_limits")
def clear_vhost_limits(ctx: typer.Context, vhost: str = _VHOST) -> None:
    """Remove every limit of a vhost."""
    _run(ctx, "clear_vhost_limits", {"vhost": vhost}, f'Clearing vhost "{vhost}" limits ...')


@app.command("list_vhost_limits")
def list_vhost_limits(
    ctx: typer.Context,
    vhost: str = _VHOST,
    all_vhosts: bool = typer.Option(False, "--global", help="List the limits of every vhost"),
) -> None:
    """Show a vhost's limits as JSON (with --global: every vhost that has limits)."""
    info = "Listing limits for all vhosts ..." if all_vhosts else f'Listing limits for vhost "{vhost}" ...'
    rows = _run(ctx, "list_vhost_limits", {"vhost": vhost, "global": all_vhosts}, info)
    options: Options = ctx.obj
    if options.json:
        return
    if all_vhosts:
        _table(ctx, [{**row, "limits": _compact(row["limits"])} for row in rows], ["vhost", "limits"])
    else:
        for row in rows:
            typer.echo(_compact(row["limits"]))


def _compact(limits: dict[str, Any], sort_keys: bool = False) -> str:
    """Limits as rabbitmqctl prints them: JSON without spaces."""
    return json.dumps(limits, separators=(",", ":"), sort_keys=sort_keys)


# -- user limits (rabbitmqctl's syntax) -------------------------------------------------------------------


@app.command("set_user_limits")
def set_user_limits(
    ctx: typer.Context,
    username: str,
    definition: str = typer.Argument(
        ..., help='A JSON object, e.g. \'{"max-connections": 10, "max-channels": 20}\' (negative = no limit)'
    ),
) -> None:
    """Set limits of a user (max-connections, max-channels), merged into the ones it has."""
    _run(
        ctx,
        "set_user_limits",
        {"user": username, "definition": definition},
        f'Setting user limits to "{definition}" for user "{username}" ...',
    )


@app.command("clear_user_limits")
def clear_user_limits(
    ctx: typer.Context,
    username: str,
    limit: str = typer.Argument(..., help="max-connections, max-channels, or all"),
) -> None:
    """Remove one limit of a user, or all of them."""
    info = (
        f'Clearing all limits for user "{username}" ...'
        if limit == "all"
        else f'Clearing "{limit}" limit for user "{username}" ...'
    )
    _run(ctx, "clear_user_limits", {"user": username, "limit": limit}, info)


@app.command("list_user_limits")
def list_user_limits(
    ctx: typer.Context,
    user: str = typer.Option("guest", "--user", help="The user (rabbitmqctl's default: guest)"),
    all_users: bool = typer.Option(False, "--global", help="List the limits of every user that has some"),
) -> None:
    """Show a user's limits as JSON (with --global: every user that has limits)."""
    info = "Listing limits for all users ..." if all_users else f'Listing limits for user "{user}" ...'
    rows = _run(ctx, "list_user_limits", {"user": user, "global": all_users}, info)
    options: Options = ctx.obj
    if options.json:
        return
    if all_users:
        _table(ctx, [{**row, "limits": _compact(row["limits"], True)} for row in rows], ["user", "limits"])
    else:
        for row in rows:
            typer.echo(_compact(row["limits"], True))


# -- topic permissions (rabbitmqctl's syntax) -------------------------------------------------------------


@app.command("set_topic_permissions")
def set_topic_permissions(
    ctx: typer.Context,
    username: str,
    exchange: str = typer.Argument(..., help="The topic exchange the permissions are for"),
    write: str = typer.Argument(..., help="Routing keys a publish may use (regex; {username}, {vhost})"),
    read: str = typer.Argument(..., help="Routing keys a binding may use (regex; {username}, {vhost})"),
    vhost: str = _VHOST,
) -> None:
    """Set a user's topic permissions for an exchange."""
    _run(
        ctx,
        "set_topic_permissions",
        {"user": username, "vhost": vhost, "exchange": exchange, "write": write, "read": read},
        f'Setting topic permissions on "{exchange}" for user "{username}" in vhost "{vhost}" ...',
    )


@app.command("clear_topic_permissions")
def clear_topic_permissions(
    ctx: typer.Context,
    username: str,
    exchange: str | None = typer.Argument(None, help="Only this exchange's (default: all of the vhost)"),
    vhost: str = _VHOST,
) -> None:
    """Remove a user's topic permissions on a vhost, or on one exchange of it."""
    on = f' on "{exchange}"' if exchange is not None else ""
    _run(
        ctx,
        "clear_topic_permissions",
        {"user": username, "vhost": vhost, "exchange": exchange},
        f'Clearing topic permissions{on} for user "{username}" in vhost "{vhost}" ...',
    )


@app.command("list_topic_permissions")
def list_topic_permissions(ctx: typer.Context, vhost: str = _VHOST) -> None:
    """List the topic permissions on a vhost."""
    info = f'Listing topic permissions for vhost "{vhost}" ...'
    rows = _run(ctx, "list_topic_permissions", {"vhost": vhost}, info)
    _table(ctx, rows, ["user", "exchange", "write", "read"])


@app.command("list_user_topic_permissions")
def list_user_topic_permissions(ctx: typer.Context, username: str) -> None:
    """List a user's topic permissions on every vhost (rows without a header line, as rabbitmqctl)."""
    info = f'Listing topic permissions for user "{username}" ...'
    rows = _run(ctx, "list_user_topic_permissions", {"user": username}, info)
    options: Options = ctx.obj
    if not options.json:
        for row in rows:
            typer.echo("\t".join(row[column] for column in ("vhost", "exchange", "write", "read")))


# -- policies and operator policies (rabbitmqctl's syntax) ------------------------------------------------

_PRIORITY = typer.Option(
    0, "--priority", help="Priority: the highest of the policies matching an object applies"
)
_APPLY_TO = typer.Option("all", "--apply-to", help="What the policy applies to: queues, exchanges or all")


def _set_policy(
    ctx: typer.Context,
    operator: bool,
    name: str,
    pattern: str,
    definition: str,
    priority: int,
    apply_to: str,
    vhost: str,
) -> None:
    kind = "operator policy override" if operator else "policy"
    _run(
        ctx,
        "set_policy",
        {
            "vhost": vhost,
            "name": name,
            "pattern": pattern,
            "definition": definition,
            "priority": priority,
            "apply_to": apply_to,
            "operator": operator,
        },
        f'Setting {kind} "{name}" for pattern "{pattern}" to "{definition}" with priority "{priority}" '
        f'for vhost "{vhost}" ...',
    )


def _list_policies(ctx: typer.Context, operator: bool, vhost: str) -> None:
    kind = "operator policy overrides" if operator else "policies"
    rows = _run(
        ctx,
        "list_policies",
        {"vhost": vhost, "operator": operator},
        f'Listing {kind} for vhost "{vhost}" ...',
    )
    _table(
        ctx,
        [{**row, "definition": _compact(row["definition"])} for row in rows],
        ["vhost", "name", "pattern", "apply-to", "definition", "priority"],
    )


@app.command("set_policy")
def set_policy(
    ctx: typer.Context,
    name: str,
    pattern: str = typer.Argument(..., help="A regular expression the names of queues/exchanges must match"),
    definition: str = typer.Argument(..., help="A JSON object, e.g. '{\"max-length\": 1000}'"),
    priority: int = _PRIORITY,
    apply_to: str = _APPLY_TO,
    vhost: str = _VHOST,
) -> None:
    """Set (create or replace) a policy."""
    _set_policy(ctx, False, name, pattern, definition, priority, apply_to, vhost)


@app.command("clear_policy")
def clear_policy(ctx: typer.Context, name: str, vhost: str = _VHOST) -> None:
    """Remove a policy."""
    _run(
        ctx,
        "clear_policy",
        {"vhost": vhost, "name": name},
        f'Clearing policy "{name}" on vhost "{vhost}" ...',
    )


@app.command("list_policies")
def list_policies(ctx: typer.Context, vhost: str = _VHOST) -> None:
    """List a vhost's policies, lowest priority first."""
    _list_policies(ctx, False, vhost)


@app.command("set_operator_policy")
def set_operator_policy(
    ctx: typer.Context,
    name: str,
    pattern: str = typer.Argument(..., help="A regular expression the names of queues/exchanges must match"),
    definition: str = typer.Argument(..., help="A JSON object of limits, e.g. '{\"max-length\": 1000}'"),
    priority: int = _PRIORITY,
    apply_to: str = _APPLY_TO,
    vhost: str = _VHOST,
) -> None:
    """Set an operator policy (limits that override policies where they are lower)."""
    _set_policy(ctx, True, name, pattern, definition, priority, apply_to, vhost)


@app.command("clear_operator_policy")
def clear_operator_policy(ctx: typer.Context, name: str, vhost: str = _VHOST) -> None:
    """Remove an operator policy."""
    _run(
        ctx,
        "clear_policy",
        {"vhost": vhost, "name": name, "operator": True},
        f'Clearing operator policy "{name}" on vhost "{vhost}" ...',
    )


@app.command("list_operator_policies")
def list_operator_policies(ctx: typer.Context, vhost: str = _VHOST) -> None:
    """List a vhost's operator policies, lowest priority first."""
    _list_policies(ctx, True, vhost)


# -- definitions (rabbitmqctl's syntax; "-" is standard input or output) ---------------------------------


@app.command("import_definitions")
def import_definitions(
    ctx: typer.Context,
    path: str = typer.Argument(..., help='A JSON file in RabbitMQ\'s export format, or "-" for stdin'),
) -> None:
    """Import users, vhosts, permissions, policies, queues, exchanges and bindings from a definitions file."""
    if path == "-":
        info = "Importing definitions in JSON from standard input ..."
        text = sys.stdin.read()
    else:
        info = f'Importing definitions in JSON from a file at "{path}" ...'
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            _fail(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}", EXIT_DATAERR)
    _run(ctx, "import_definitions", {"definitions": text}, info)
    options: Options = ctx.obj
    if not options.quiet and not options.json:
        typer.echo("Successfully imported definitions.")


@app.command("export_definitions")
def export_definitions(
    ctx: typer.Context,
    path: str = typer.Argument(..., help='Where to write the JSON, or "-" for stdout'),
) -> None:
    """Export the broker's definitions in RabbitMQ's format (importable into RabbitMQ and OtterMQ)."""
    options: Options = ctx.obj
    quiet = options.quiet or path == "-"  # "-": only the JSON on stdout, as rabbitmqctl
    info = f'Exporting definitions in JSON to a file at "{path}" ...'
    try:
        result = request(options.socket_path, "export_definitions", {})
    except CtlError as exc:
        _fail(str(exc), exc.status)
    text = json.dumps(result, separators=(",", ":"))
    if path == "-":
        typer.echo(text)
        return
    if not quiet:
        typer.echo(info)
    try:
        Path(path).write_text(text + "\n", encoding="utf-8")
    except OSError as exc:
        _fail(f"cannot write {path}: {exc.strerror or exc}", EXIT_DATAERR)


@app.command("list_queues")
def list_queues(ctx: typer.Context, vhost: str = _VHOST) -> None:
    """List the queues of a vhost with their ready and consumer counts."""
    rows = _run(ctx, "list_queues", {"vhost": vhost}, f"Listing queues for vhost {vhost} ...")
    _table(ctx, rows, ["name", "messages", "consumers", "durable"])


@app.command("list_exchanges")
def list_exchanges(ctx: typer.Context, vhost: str = _VHOST) -> None:
    """List the exchanges of a vhost."""
    rows = _run(ctx, "list_exchanges", {"vhost": vhost}, f"Listing exchanges for vhost {vhost} ...")
    _table(ctx, rows, ["name", "type"])


@app.command("list_bindings")
def list_bindings(ctx: typer.Context, vhost: str = _VHOST) -> None:
    """List the bindings of a vhost."""
    rows = _run(ctx, "list_bindings", {"vhost": vhost}, f"Listing bindings for vhost {vhost}...")
    _table(
        ctx,
        rows,
        [
            "source_name",
            "source_kind",
            "destination_name",
            "destination_kind",
            "routing_key",
            "arguments",
        ],
    )


@app.command("list_connections")
def list_connections(ctx: typer.Context) -> None:
    """List client connections."""
    rows = _run(ctx, "list_connections", {}, "Listing connections ...")
    _table(ctx, rows, ["name", "user", "vhost", "state", "channels"])


@app.command("status")
def status(ctx: typer.Context) -> None:
    """The broker's status: version, pid, uptime and counts."""
    result = _run(ctx, "status", {}, "Status of OtterMQ ...")
    options: Options = ctx.obj
    if not options.json:
        for key, value in result.items():
            # Lists and objects (the scrub's findings) as JSON, never as Python's repr.
            shown = json.dumps(value) if isinstance(value, list | dict) or value is None else value
            typer.echo(f"{key}: {shown}")


@app.command("cluster_status")
def cluster_status(ctx: typer.Context) -> None:
    """The cluster as this node sees it: leader, term, members (durable LSN, last seen) and the ISR; on the
    leader, each follower's lag (records, bytes) and the age of its last acknowledgement."""
    result = _run(ctx, "cluster_status", {}, "Cluster status of OtterMQ ...")
    options: Options = ctx.obj
    if options.json:
        return
    leader = result.get("leader")
    shown = f"{leader['name']} ({leader['host']}:{leader['amqp_port']})" if leader else "none"
    typer.echo(f"cluster: {result.get('cluster_name')}")
    typer.echo(f"node: {result.get('node')}")
    typer.echo(f"leader: {shown}")
    typer.echo(f"term: {result.get('term')}")
    typer.echo(f"is_leader: {_cell(result.get('is_leader'))}")
    typer.echo(f"isr: {_cell(result.get('isr', []))}")
    typer.echo(f"etcd_reachable: {_cell(result.get('etcd_reachable'))}")
    typer.echo("")
    _table(
        ctx, result.get("members", []), ["name", "host", "amqp_port", "durable_lsn", "last_seen_s", "leader"]
    )
    replication = result.get("replication")
    if replication:
        # The leader's view of each follower: lag behind what is durable here, and when it last acked.
        typer.echo("")
        typer.echo(f"durable_lsn: {replication.get('durable_lsn')}")
        rows = [{"follower": name, **row} for name, row in sorted(replication.get("followers", {}).items())]
        _table(
            ctx,
            rows,
            ["follower", "connected", "in_sync", "acked_lsn", "lag_records", "lag_bytes", "last_ack_age"],
        )


@app.command("step_down")
def step_down(ctx: typer.Context) -> None:
    """Hand the leadership over to another in-sync node (for a rolling upgrade)."""
    _run(ctx, "step_down", {}, "Stepping down as the cluster's leader ...")
