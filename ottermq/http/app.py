"""The management application: request -> route -> auth -> handler -> response, and error mapping.

Strategy: handlers register on one `Router` (`route` below) and are `async (Ctx) -> Response`. This
module owns every translation of a failure into RabbitMQ's error body: a bad path or bad JSON is 400,
a missing object 404, an AMQP error the broker raised (inequivalent redeclare, reserved name, in use)
400 with its text, an access error the status RabbitMQ uses. Handlers that change durable state call
`ctx.durable()` so the answer leaves only once the journal has the change on disk, as `ottermq ctl`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from ottermq.amqp.constants import ACCESS_REFUSED, COMMAND_INVALID
from ottermq.amqp.errors import AMQPError
from ottermq.broker.access import AccessError
from ottermq.http.auth import authenticate
from ottermq.http.interface import HttpError, Request, Response, error_response, json_response
from ottermq.http.paths import BadPath, MethodNotAllowed, NotFound, Router, split_target
from ottermq.server.control import UsageError, wait_durable

if TYPE_CHECKING:
    from ottermq.broker.access import User
    from ottermq.broker.broker import Broker
    from ottermq.cluster.service import ClusterService
    from ottermq.http.history import History
    from ottermq.http.stats import MessageRates
    from ottermq.store.store import DurableStore

log: Final = logging.getLogger("ottermq.http")

# "NOT_FOUND - no queue 'x' in vhost '/'" -> "no queue 'x' in vhost '/'"
_CODE_PREFIX_END: Final = " - "
_ACCESS_STATUS: Final = {"exists": 400, "no_user": 404, "no_vhost": 404, "invalid": 400, "unavailable": 503}
# JSON bodies nested deeper than this are refused. Their arguments and headers become AMQP field tables,
# which the decoder reads only up to ottermq.amqp.table.MAX_DEPTH (100) levels: a deeper table accepted
# here would be journaled and then refused when the journal is read back at the next start.
MAX_JSON_DEPTH: Final = 100
# Names and keys AMQP carries as short strings (queue, exchange, routing key) fit in 255 bytes.
MAX_SHORTSTR: Final = 255
# C0 controls and DEL: a NUL cannot travel in a PLAIN login, a newline splits log lines and ctl output.
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(slots=True)
class Context:
    """What every request may need besides itself: the broker and what the node serves."""

    broker: Broker
    # [{"protocol": "amqp", "ip_address": ..., "port": ...}, ...] for /api/overview.
    listeners: list[dict[str, Any]] = field(default_factory=list)
    # The durable store (ottermq.store.DurableStore) when persistence is memento, for /metrics.
    store: DurableStore | None = None
    # The message-rate samples the service takes (stats.MessageRates), for /api/overview's message_stats.
    rates: MessageRates | None = None
    # The cluster service on a clustered node: /api/nodes shows its status; while it does not lead, the
    # API answers reads only (421 for the rest, naming the leader; 503 while no leader is known).
    cluster: ClusterService | None = None
    # Every object's sampled counters and figures (history.History), for their rates and samples.
    history: History | None = None
    # What the node's row says that only the CLI knows (data_dir, disk_free_limit, config_files).
    node: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Ctx:
    """One request being handled."""

    context: Context
    request: Request
    params: dict[str, str]
    query: dict[str, str]
    user: User | None = None

    @property
    def broker(self) -> Broker:
        """The broker."""
        return self.context.broker

    @property
    def me(self) -> User:
        """The authenticated user (routes that are public have none)."""
        assert self.user is not None
        return self.user

    def body(self) -> dict[str, Any]:
        """The request body as a JSON object ({} when empty); 400 otherwise."""
        raw = self.request.body
        if not raw.strip():
            return {}
        try:
            value = json.loads(raw)
        except (ValueError, UnicodeDecodeError, RecursionError):
            # RecursionError: nesting deeper than the interpreter's stack allows (100k "[" parses to it).
            raise HttpError(400, "bad_request", "not_json") from None
        if not isinstance(value, dict):
            raise HttpError(400, "bad_request", "not_json")
        _check_json(value)
        return value

    async def big_body(self) -> dict[str, Any]:
        """`body` for a document that may be large (a definitions import): parsed at once (json.loads
        holds the interpreter: 0.2 s for 13 MiB), then checked letting other work in meanwhile."""
        raw = self.request.body
        if not raw.strip():
            return {}
        try:
            value = json.loads(raw)
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise HttpError(400, "bad_request", "not_json") from None
        if not isinstance(value, dict):
            raise HttpError(400, "bad_request", "not_json")
        for _ in _checking_json(value):
            await asyncio.sleep(0)
        return value

    def flag(self, name: str) -> bool:
        """A boolean query parameter (?if-empty=true)."""
        return self.query.get(name, "").lower() == "true"

    async def durable(self) -> None:
        """Wait until the changes made so far are on disk; 503 if the journal failed."""
        if not await wait_durable(self.broker):
            raise HttpError(503, "unavailable", "the journal failed: the change is not durable")


def _check_json(value: dict[str, Any]) -> None:
    """400 unless `value` nests at most MAX_JSON_DEPTH levels and every string is valid Unicode (JSON's
    "\\ud800" decodes to a lone surrogate, which no UTF-8 encoder takes)."""
    for _ in _checking_json(value):
        pass


def _checking_json(value: dict[str, Any]) -> Iterator[None]:
    """`_check_json`, pausing (a bare `yield`) every 4096 values. Walked with a stack of its own: the
    nesting must not cost the interpreter's."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    walked = 0
    while stack:
        walked += 1
        if not walked & 4095:
            yield
        item, depth = stack.pop()
        if isinstance(item, str):
            if not item.isascii():
                try:
                    item.encode("utf-8")
                except UnicodeEncodeError:
                    raise HttpError(400, "bad_request", "a JSON string is not valid Unicode") from None
            continue
        if not isinstance(item, dict | list):
            continue
        if depth > MAX_JSON_DEPTH:
            raise HttpError(400, "bad_request", f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
        if isinstance(item, dict):
            stack.extend((key, depth) for key in item)
            stack.extend((child, depth + 1) for child in item.values())
        else:
            stack.extend((child, depth + 1) for child in item)


def check_shortstr(kind: str, value: str) -> None:
    """400 for a queue or exchange name or routing key that AMQP cannot carry (over 255 bytes), worded
    as RabbitMQ words it for queues (trailing newline included)."""
    size = len(value.encode("utf-8"))
    if size > MAX_SHORTSTR:
        raise HttpError(400, "bad_request", f"{kind} should be less than 255 bytes, actually was {size}\n")


def check_printable(kind: str, name: str) -> None:
    """400 for a vhost or user name with control characters (NUL, newline...)."""
    if _CONTROL.search(name):
        raise HttpError(400, "bad_request", f"{kind} name must not contain control characters")


Handler = Callable[[Ctx], Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A handler and whether it needs credentials."""

    handler: Handler
    public: bool = False


router: Router[Endpoint] = Router()


def route(method: str, path: str, public: bool = False) -> Callable[[Handler], Handler]:
    """Register `handler` for `method` on `path` ("/api/queues/{vhost}/{name}")."""

    def register(handler: Handler) -> Handler:
        router.add(method, path)(Endpoint(handler, public))
        return handler

    return register


def not_found() -> HttpError:
    """RabbitMQ's 404."""
    return HttpError(404, "Object Not Found", "Not Found")


def amqp_text(error: AMQPError) -> str:
    """An AMQP reply text without its "CODE - " prefix, as the management API words it."""
    text = error.reply_text
    head, sep, rest = text.partition(_CODE_PREFIX_END)
    return rest if sep and head.isupper() else text


class Application:
    """The callable the HTTP server runs for each request."""

    def __init__(self, context: Context) -> None:
        self.context = context

    async def __call__(self, request: Request) -> Response:
        try:
            return await self._handle(request)
        except HttpError as exc:
            response = exc.response()
            if request.headers.get("x-requested-with"):
                # A script's request (the web UI's login form): without the challenge, the browser answers
                # the 401 to the script instead of opening its own basic-auth dialog. Nothing is weaker: the
                # request is refused all the same.
                response.headers = [h for h in response.headers if h[0] != "www-authenticate"]
            return response
        except AccessError as exc:
            return error_response(_ACCESS_STATUS.get(exc.kind, 400), "bad_request", str(exc))
        except (UsageError, ValueError) as exc:
            return error_response(400, "bad_request", str(exc))
        except AMQPError as exc:
            if exc.reply_code == 404:
                return error_response(404, "Object Not Found", "Not Found")
            if exc.reply_code == ACCESS_REFUSED:  # reserved names (amq.*), the default exchange
                return error_response(401, "not_authorised", "Access refused.")
            # COMMAND_INVALID (an unknown exchange type...) is the client's mistake: RabbitMQ answers 400.
            if exc.reply_code >= 500 and exc.reply_code != COMMAND_INVALID:
                return error_response(503, "unavailable", amqp_text(exc))
            return error_response(400, "bad_request", amqp_text(exc))

    async def _handle(self, request: Request) -> Response:
        try:
            segments, query = split_target(request.target)
        except BadPath as exc:
            raise HttpError(400, "bad_request", str(exc)) from None
        try:
            endpoint, params = router.resolve(request.method, segments)
        except NotFound:
            raise not_found() from None
        except MethodNotAllowed as exc:
            response = error_response(405, "method_not_allowed", f"Method Not Allowed; use {exc}")
            response.headers.append(("allow", ", ".join(exc.allowed)))
            return response
        ctx = Ctx(self.context, request, params, query)
        cluster = self.context.cluster
        if cluster is not None and request.method not in ("GET", "HEAD"):
            refused(cluster)
        if not endpoint.public:
            ctx.user = await authenticate(
                self.context.broker, request.headers.get("authorization"), request.peer_host, request
            )
            request.authenticated = True  # the connection has proven itself (see server.Limits)
        return await endpoint.handler(ctx)


def refused(cluster: ClusterService) -> None:
    """A change asked of a node that does not serve: 421 naming the leader's management API when another
    node leads (the change belongs there), 503 while no leader is known (try again shortly)."""
    refusal = cluster.refusal()
    if refusal is None:
        return
    leader = cluster.leadership.leader()
    if cluster.upstream() is None or leader is None:
        raise HttpError(503, "unavailable", f"{refusal}: this node answers reads only")
    host = f"[{leader.host}]" if ":" in leader.host else leader.host
    where = f"http://{host}:{leader.http_port}" if leader.http_port else "the leader (its API is off)"
    raise HttpError(
        421, "not_leader", f"{refusal}: this node is a follower and answers reads only; changes go to {where}"
    )


def ok(value: Any) -> Response:
    """200 with a JSON body."""
    return json_response(200, value)


def no_content(status: int = 204) -> Response:
    """201/204 without a body."""
    return Response(status)
