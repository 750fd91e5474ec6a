"""The server side of `ottermq ctl`: a Unix socket in the data directory, one JSON object per line.

Strategy: management runs inside the broker's own event loop, so a request sees and changes the same
objects as the AMQP connections, with no locking: each request line is handled synchronously between
two socket reads. The socket is created with mode 0600 inside the data directory, so only the broker's
owner (or root) can manage it; that is the whole authorisation, as with rabbitmqctl's Erlang cookie.

Request: `{"verb": "add_user", "args": {"name": "bob", "password": "pw"}}`. Reply:
`{"ok": true, "result": ...}` or `{"ok": false, "kind": "no_user", "error": "User \"bob\" does not exist"}`
(`kind` is `AccessError.kind`, or "usage" for a malformed request, or "internal"). Verbs are the names
of rabbitmqctl's commands; `VERBS` maps each to a handler `(broker, args) -> result`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from ottermq.broker.access import AccessError
from ottermq.broker.broker import VERSION
from ottermq.broker.definitions import DefinitionsError, export_definitions, import_definitions
from ottermq.broker.policies import clear_policy, set_policy
from ottermq.broker.policy_rules import PolicyError
from ottermq.cluster.election import ClusterError
from ottermq.server.rows import binding_infos, connection_info, exchange_info, queue_info

if TYPE_CHECKING:
    from ottermq.broker.broker import Broker
    from ottermq.broker.vhost import VHost
    from ottermq.cluster.service import ClusterService

log: Final = logging.getLogger("ottermq.server")

SOCKET_NAME: Final = "ctl.sock"
# Verbs the cluster service answers (an error on a node without --etcd).
CLUSTER_VERBS: Final = ("cluster_status", "step_down")
# A request line longer than this is refused (a definitions file to import is the longest request).
MAX_REQUEST: Final = 64 * 1024 * 1024
# sockaddr_un.sun_path is 108 bytes on Linux, including the terminating NUL.
_MAX_PATH_BYTES: Final = 107


class UsageError(Exception):
    """A request the broker cannot read (missing argument, unknown verb)."""


Handler = Callable[["Broker", dict[str, Any]], Any]
VERBS: dict[str, Handler] = {}


def verb(name: str) -> Callable[[Handler], Handler]:
    """Register a handler for `name` (other modules may add verbs the same way)."""

    def register(handler: Handler) -> Handler:
        VERBS[name] = handler
        return handler

    return register


def _arg(args: dict[str, Any], name: str, default: str | None = None) -> str:
    value = args.get(name, default)
    if not isinstance(value, str):
        raise UsageError(f"argument '{name}' is required (a string)")
    return value


def _vhost(broker: Broker, args: dict[str, Any]) -> VHost:
    name = _arg(args, "vhost", "/")
    vhost = broker.vhosts.get(name)
    if vhost is None:
        raise AccessError("no_vhost", f"Virtual host '{name}' does not exist")
    return vhost


# -- users ----------------------------------------------------------------------------------------------


def _tags(args: dict[str, Any]) -> list[str]:
    tags = args.get("tags") or []
    if not isinstance(tags, list) or not all(isinstance(tag, str) for tag in tags):
        raise UsageError("argument 'tags' must be a list of strings")
    return tags


@verb("add_user")
def _add_user(broker: Broker, args: dict[str, Any]) -> None:
    tags = _tags(args)
    password_hash = args.get("password_hash")
    if password_hash is not None:
        broker.access.add_user(_arg(args, "name"), tags=tags, password_hash=_arg(args, "password_hash"))
    else:
        broker.access.add_user(_arg(args, "name"), _arg(args, "password"), tags)


@verb("delete_user")
def _delete_user(broker: Broker, args: dict[str, Any]) -> None:
    broker.access.delete_user(_arg(args, "name"))


@verb("change_password")
def _change_password(broker: Broker, args: dict[str, Any]) -> None:
    broker.access.change_password(_arg(args, "name"), _arg(args, "password"))


@verb("clear_password")
def _clear_password(broker: Broker, args: dict[str, Any]) -> None:
    broker.access.change_password(_arg(args, "name"), None)


@verb("set_user_tags")
def _set_user_tags(broker: Broker, args: dict[str, Any]) -> None:
    broker.access.set_user_tags(_arg(args, "name"), _tags(args))


@verb("list_users")
def _list_users(broker: Broker, args: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"user": user.name, "tags": list(user.tags)} for user in broker.access.users.values()]


@verb("authenticate_user")
def _authenticate_user(broker: Broker, args: dict[str, Any]) -> None:
    name = _arg(args, "name")
    if not broker.auth.check_password(name, _arg(args, "password")):
        raise AccessError("invalid", f'failed to authenticate user "{name}": invalid credentials')


# -- vhosts and permissions ----------------------------------------------------------------------------


@verb("add_vhost")
def _add_vhost(broker: Broker, args: dict[str, Any]) -> None:
    broker.add_vhost(_arg(args, "name"))


@verb("delete_vhost")
def _delete_vhost(broker: Broker, args: dict[str, Any]) -> None:
    broker.delete_vhost(_arg(args, "name"))


@verb("list_vhosts")
def _list_vhosts(broker: Broker, args: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"name": name} for name in broker.access.vhosts]


@verb("set_permissions")
def _set_permissions(broker: Broker, args: dict[str, Any]) -> None:
    broker.access.set_permissions(
        _arg(args, "user"),
        _arg(args, "vhost", "/"),
        _arg(args, "configure"),
        _arg(args, "write"),
        _arg(args, "read"),
    )


@verb("clear_permissions")
def _clear_permissions(broker: Broker, args: dict[str, Any]) -> None:
    broker.access.clear_permissions(_arg(args, "user"), _arg(args, "vhost", "/"))


@verb("list_permissions")
def _list_permissions(broker: Broker, args: dict[str, Any]) -> list[dict[str, Any]]:
    vhost = _vhost(broker, args)
    return [
        {"user": user, "configure": p.configure, "write": p.write, "read": p.read}
        for user, p in broker.access.vhost_permissions(vhost.name)
    ]


@verb("list_user_permissions")
def _list_user_permissions(broker: Broker, args: dict[str, Any]) -> list[dict[str, Any]]:
    name = _arg(args, "user")
    if broker.access.user(name) is None:
        raise AccessError("no_user", f'User "{name}" does not exist')
    return [
        {"vhost": vhost, "configure": p.configure, "write": p.write, "read": p.read}
        for vhost, p in broker.access.user_permissions(name)
    ]


# -- vhost limits --------------------------------------------------------------------------------------------


@verb("set_vhost_limits")
def _set_vhost_limits(broker: Broker, args: dict[str, Any]) -> None:
    # The definition arrives as the user typed it, so the broker words every error as rabbitmqctl does.
    definition = _arg(args, "definition")
    try:
        limits = json.loads(definition)
    except ValueError as exc:
        raise AccessError("invalid", f"JSON decoding error: {exc} in {definition!r}") from None
    broker.set_vhost_limits(_arg(args, "vhost", "/"), limits)


@verb("clear_vhost_limits")
def _clear_vhost_limits(broker: Broker, args: dict[str, Any]) -> None:
    broker.clear_vhost_limits(_arg(args, "vhost", "/"))


@verb("list_vhost_limits")
def _list_vhost_limits(broker: Broker, args: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per vhost with limits (every vhost with `global`), else the row of `vhost` if it has any."""
    if args.get("global"):
        return [{"vhost": name, "limits": dict(limits)} for name, limits in broker.vhost_limits.items()]
    vhost = _vhost(broker, args)
    limits = broker.vhost_limits.get(vhost.name)
    return [{"vhost": vhost.name, "limits": dict(limits)}] if limits else []


# -- user limits and topic permissions (rabbitmqctl exits 69 for every refusal of these) -----------------


def _rejected(call: Callable[[], Any]) -> Any:
    """Run `call`, turning its AccessError into kind "rejected" (rabbitmqctl's exit 69), as rabbitmqctl
    refuses a missing user or a bad definition of these verbs."""
    try:
        return call()
    except AccessError as exc:
        raise AccessError("rejected", str(exc)) from None


def _known_user(broker: Broker, args: dict[str, Any]) -> str:
    name = _arg(args, "user")
    if broker.access.user(name) is None:
        raise AccessError("rejected", f'User "{name}" does not exist')
    return name


@verb("set_user_limits")
def _set_user_limits(broker: Broker, args: dict[str, Any]) -> None:
    definition = _arg(args, "definition")
    try:
        limits = json.loads(definition)
    except ValueError:
        raise AccessError("rejected", "JSON decoding error. Reason: badarg") from None
    user = _known_user(broker, args)
    _rejected(lambda: broker.access.set_user_limits(user, limits))


@verb("clear_user_limits")
def _clear_user_limits(broker: Broker, args: dict[str, Any]) -> None:
    user = _known_user(broker, args)
    broker.access.clear_user_limits(user, _arg(args, "limit"))


@verb("list_user_limits")
def _list_user_limits(broker: Broker, args: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per user with limits (with `global`), else the row of `user` (even without limits)."""
    access = broker.access
    if args.get("global"):
        return [{"user": name, "limits": dict(limits)} for name, limits in access.user_limits.items()]
    user = _known_user(broker, args)
    return [{"user": user, "limits": dict(access.limits_of(user))}]


@verb("set_topic_permissions")
def _set_topic_permissions(broker: Broker, args: dict[str, Any]) -> None:
    broker.access.set_topic_permissions(
        _arg(args, "user"),
        _arg(args, "vhost", "/"),
        _arg(args, "exchange"),
        _arg(args, "write"),
        _arg(args, "read"),
    )


@verb("clear_topic_permissions")
def _clear_topic_permissions(broker: Broker, args: dict[str, Any]) -> None:
    exchange = args.get("exchange")
    if exchange is not None and not isinstance(exchange, str):
        raise UsageError("argument 'exchange' must be a string")
    broker.access.clear_topic_permissions(_arg(args, "user"), _arg(args, "vhost", "/"), exchange)


@verb("list_topic_permissions")
def _list_topic_permissions(broker: Broker, args: dict[str, Any]) -> list[dict[str, Any]]:
    name = _arg(args, "vhost", "/")
    if name not in broker.vhosts:
        raise AccessError("vhost_absent", f"Virtual host '{name}' does not exist")
    return broker.access.topic_rows(vhost=name)


@verb("list_user_topic_permissions")
def _list_user_topic_permissions(broker: Broker, args: dict[str, Any]) -> list[dict[str, Any]]:
    return broker.access.topic_rows(user=_known_user(broker, args))


# -- policies and operator policies (ottermq.broker.policies) --------------------------------------------


def _policy_vhost(broker: Broker, args: dict[str, Any]) -> VHost:
    name = _arg(args, "vhost", "/")
    vhost = broker.vhosts.get(name)
    if vhost is None:
        raise AccessError("vhost_absent", f"Virtual host '{name}' does not exist")
    return vhost


@verb("set_policy")
def _set_policy(broker: Broker, args: dict[str, Any]) -> None:
    """set_policy / set_operator_policy (`operator`): the definition arrives as typed (JSON text)."""
    vhost = _policy_vhost(broker, args)
    definition_text = _arg(args, "definition")
    try:
        definition = json.loads(definition_text)
    except ValueError:
        raise AccessError("rejected", "JSON decoding error. Reason: badarg") from None
    priority = args.get("priority", 0)
    try:
        set_policy(
            vhost,
            _arg(args, "name"),
            _arg(args, "pattern"),
            definition,
            priority,
            _arg(args, "apply_to", "all"),
            operator=bool(args.get("operator")),
        )
    except PolicyError as exc:
        raise AccessError("rejected", exc.reason.rstrip("\n")) from None


@verb("clear_policy")
def _clear_policy(broker: Broker, args: dict[str, Any]) -> None:
    if not clear_policy(_policy_vhost(broker, args), _arg(args, "name"), bool(args.get("operator"))):
        raise AccessError("rejected", "Parameter does not exist")


@verb("list_policies")
def _list_policies(broker: Broker, args: dict[str, Any]) -> list[dict[str, Any]]:
    """A vhost's policies (operator policies with `operator`), lowest priority first (as rabbitmqctl)."""
    vhost = _policy_vhost(broker, args)
    return [policy.row() for policy in vhost.policies.listed(bool(args.get("operator")))]


# -- definitions (ottermq.broker.definitions) ----------------------------------------------------------------


@verb("import_definitions")
def _import_definitions(broker: Broker, args: dict[str, Any]) -> dict[str, Any]:
    """The definitions arrive as the file holds them (JSON text): the broker words every error."""
    try:
        document = json.loads(_arg(args, "definitions"))
    except (ValueError, RecursionError):
        raise AccessError("invalid", "Failed to deserialise input (format: JSON)") from None
    try:
        plan = import_definitions(broker, document)
    except DefinitionsError as exc:
        raise AccessError("invalid", exc.reason.rstrip("\n")) from None
    return {"changes": len(plan.changes), "skipped": plan.skipped}


@verb("export_definitions")
def _export_definitions(broker: Broker, args: dict[str, Any]) -> dict[str, Any]:
    return export_definitions(broker)


# -- what is there (the rows come from ottermq.server.rows, shared with the management HTTP API) --------


@verb("list_queues")
def _list_queues(broker: Broker, args: dict[str, Any]) -> list[dict[str, Any]]:
    return [queue_info(queue) for queue in _vhost(broker, args).queues.values()]


@verb("list_exchanges")
def _list_exchanges(broker: Broker, args: dict[str, Any]) -> list[dict[str, Any]]:
    return [exchange_info(exchange) for exchange in _vhost(broker, args).exchanges.values()]


@verb("list_bindings")
def _list_bindings(broker: Broker, args: dict[str, Any]) -> list[dict[str, Any]]:
    return binding_infos(_vhost(broker, args))


@verb("list_connections")
def _list_connections(broker: Broker, args: dict[str, Any]) -> list[dict[str, Any]]:
    return [connection_info(connection) for connection in broker.connections]


_STARTED: Final = time.time()


@verb("status")
def _status(broker: Broker, args: dict[str, Any]) -> dict[str, Any]:
    return {
        "product": "OtterMQ",
        "version": VERSION,
        "pid": os.getpid(),
        "uptime_s": round(time.time() - _STARTED, 1),
        "connections": len(broker.connections),
        "vhosts": len(broker.vhosts),
        "users": len(broker.access.users),
        "queues": sum(len(vhost.queues) for vhost in broker.vhosts.values()),
        "messages": sum(q.ready_count for vhost in broker.vhosts.values() for q in vhost.queues.values()),
        # A full disk suspends the journal (it resumes by itself); failed alone means for good.
        "journal_failed": broker.journal.failed and not broker.journal.suspended,
        "journal_suspended": broker.journal.suspended,
        # Messages dropped since start because their content could not be read back (Queue.unreadable).
        "messages_unreadable": broker.contents.unreadable,
    }


# -- the request loop ------------------------------------------------------------------------------------


def handle_request(broker: Broker, line: bytes) -> dict[str, Any]:
    """One request line -> its reply object (never raises)."""
    try:
        request = json.loads(line)
        if not isinstance(request, dict):
            raise UsageError("a request is a JSON object")
        name = request.get("verb")
        handler = VERBS.get(name) if isinstance(name, str) else None
        if handler is None:
            raise UsageError(f"unknown verb {name!r}")
        args = request.get("args", {})
        if args is None:
            args = {}
        if not isinstance(args, dict):
            raise UsageError("'args' must be an object")
        return {"ok": True, "result": handler(broker, args)}
    except AccessError as exc:
        return {"ok": False, "kind": exc.kind, "error": str(exc)}
    except (UsageError, ValueError) as exc:
        return {"ok": False, "kind": "usage", "error": str(exc)}
    except Exception as exc:
        log.exception("internal error in a control request")
        return {"ok": False, "kind": "internal", "error": f"internal error: {exc}"}


class ControlServer:
    """Serves `ottermq ctl` on a Unix socket for one broker."""

    def __init__(
        self,
        broker: Broker,
        path: Path,
        status: Callable[[], dict[str, Any]] | None = None,
        cluster: ClusterService | None = None,
    ) -> None:
        self.broker = broker
        self.path = path
        # More `status` fields (the durable store's: snapshots, reclamation, scrub), when there is one.
        self.status = status
        # The cluster service (`--etcd`): cluster_status, step_down, and no changes while not the leader.
        self.cluster = cluster
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        """Bind the socket (mode 0600; a stale file is replaced). OSError if it cannot be bound, or if
        another broker answers on it."""
        path = self.path
        if len(os.fsencode(path)) > _MAX_PATH_BYTES:
            raise OSError(f"control socket path {path} is longer than {_MAX_PATH_BYTES} bytes")
        if path.exists() or path.is_symlink():
            if _answers(path):
                raise OSError(f"another broker serves {path}")
            path.unlink()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)  # no window in which the socket is accessible to others
        try:
            sock.bind(str(path))
            os.chmod(path, 0o600)  # and 0600 whatever the umask was meant to be
        except OSError:
            sock.close()
            raise
        finally:
            os.umask(old_umask)
        self._server = await asyncio.start_unix_server(self._serve, sock=sock, limit=MAX_REQUEST)

    async def stop(self) -> None:
        """Stop serving and remove the socket file."""
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    line = await reader.readline()
                except ValueError:  # longer than MAX_REQUEST
                    reply: dict[str, Any] = {"ok": False, "kind": "usage", "error": "request too long"}
                    writer.write(json.dumps(reply).encode() + b"\n")
                    break
                if not line:
                    break
                reply = await self._cluster_request(line) or handle_request(self.broker, line)
                if reply["ok"] and self.status is not None and _verb_of(line) == "status":
                    reply["result"].update(self.status())
                if reply["ok"] and _mutates(line):
                    # Answer once the change is on disk, as rabbitmqctl answers after the commit.
                    if not await wait_durable(self.broker):
                        reply = {"ok": False, "kind": "unavailable", "error": "the journal failed"}
                    log.info("ctl request done", extra={"verb": _verb_of(line), "ok": reply["ok"]})
                writer.write(json.dumps(reply).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def _cluster_request(self, line: bytes) -> dict[str, Any] | None:
        """The reply to a cluster verb, or to a change asked of a node that does not lead; None for the
        rest (handled as on a single node)."""
        name = _verb_of(line)
        cluster = self.cluster
        if name in CLUSTER_VERBS and cluster is None:
            return {"ok": False, "kind": "unavailable", "error": "this node is not in a cluster (no --etcd)"}
        if cluster is None:
            return None
        if name == "cluster_status":
            return {"ok": True, "result": cluster.status()}
        if name == "step_down":
            try:
                return {"ok": True, "result": await cluster.step_down()}
            except ClusterError as exc:
                return {"ok": False, "kind": "unavailable", "error": str(exc)}
        refusal = cluster.refusal()
        if refusal is not None and _mutates(line):
            return {"ok": False, "kind": "unavailable", "error": f"{refusal}: changes are made on the leader"}
        return None


async def wait_durable(broker: Broker) -> bool:
    """Wait until everything journaled so far is durable; False if the journal failed first."""
    journal = broker.journal
    position = journal.next_position - 1
    if position <= journal.durable_position:
        return not journal.failed
    done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

    def settle(result: bool) -> None:
        if not done.done():
            done.set_result(result)

    journal.when_durable(position, lambda: settle(True), lambda: settle(False))
    return await done


def _verb_of(line: bytes) -> str:
    try:
        return str(json.loads(line).get("verb"))
    except Exception:
        return "?"


def _mutates(line: bytes) -> bool:
    name = _verb_of(line)
    return not (
        name.startswith("list_")
        or name in ("status", "authenticate_user", "export_definitions")
        or name in CLUSTER_VERBS
    )


def _answers(path: Path) -> bool:
    """True when something accepts connections on the Unix socket at `path`."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(str(path))
    except OSError:
        return False
    finally:
        probe.close()
    return True
