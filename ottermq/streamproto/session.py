"""One stream-protocol connection: the handshake (peer properties, SASL PLAIN, tune, open), then the
commands on streams of its vhost, with the broker's users, permissions and stream queues.

Strategy: sans-IO as the AMQP `Connection` is: `feed(bytes)` handles whole frames, `tick(now)` keeps
heartbeats and the handshake deadline, and everything goes out through the `Link` the socket layer gives.
Streams are the broker's `StreamQueue`s: `create` declares one through `VHost.declare_queue` with
`x-queue-type: stream` exactly as `queue.declare` does (same checks, same journaled event), so a stream is
one thing whichever protocol wrote or reads it. Bad input never raises out of `feed`: a request gets its
response code, and a frame that cannot be read (or comes before its time) closes the connection with a
Close carrying the protocol's code.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, Final, Protocol

from ottermq.amqp.amqp10 import AMQP10
from ottermq.amqp.errors import AMQPError
from ottermq.broker.arguments import max_age_seconds
from ottermq.broker.auth import AuthFailure, PendingLogin
from ottermq.broker.broker import VERSION
from ottermq.broker.stream import StreamFailed, StreamQueue, now_ms
from ottermq.streamproto import codec
from ottermq.streamproto.codec import FrameError, Reader
from ottermq.streamproto.subscription import Subscription
from ottermq.streamproto.tracking import Tracking

if TYPE_CHECKING:
    from ottermq.broker.broker import Broker
    from ottermq.broker.vhost import VHost

log: Final = logging.getLogger("ottermq.streamproto")

FRAME_MAX: Final = 8 << 20
HEARTBEAT: Final = 60
MAX_REFERENCE: Final = 256
# Seconds the client has to answer the server's Close before the socket is closed anyway.
CLOSE_TIMEOUT: Final = 3.0
_MECHANISMS: Final = ("PLAIN", "AMQPLAIN")
PRODUCT: Final = {"product": "OtterMQ", "platform": "Python", "copyright": "OtterMQ contributors"}
# Arguments of `create` and the queue arguments they become (integers parsed, the rest as given).
_ARGUMENTS: Final = {
    "max-length-bytes": ("x-max-length-bytes", int),
    "max-age": ("x-max-age", str),
    "stream-max-segment-size-bytes": ("x-stream-max-segment-size-bytes", int),
    "initial-cluster-size": ("x-initial-cluster-size", int),
    "queue-leader-locator": ("x-queue-leader-locator", str),
}


class Link(Protocol):
    """What the session needs of its socket."""

    def write(self, parts: list[bytes]) -> None:
        """Send bytes (parts of one or more frames, in order)."""
        ...

    def close(self) -> None:
        """Close once what was written has left."""
        ...

    def is_writable(self) -> bool:
        """False while the socket's buffer is over its high-water mark."""
        ...


@dataclass(slots=True)
class Publisher:
    id: int
    reference: str
    queue: StreamQueue


class StreamSession:
    """The state of one stream-protocol connection."""

    def __init__(
        self,
        broker: Broker,
        link: Link,
        tracking: Tracking,
        peer: tuple[str, int],
        advertised: tuple[str, int],
    ) -> None:
        self.broker = broker
        self.link = link
        self.tracking = tracking
        self.peer = peer
        self.advertised = advertised
        self.name = f"{peer[0]}:{peer[1]}"
        self.splitter = codec.FrameSplitter(FRAME_MAX)
        self.state = "peer"  # peer, sasl, tune, open, opened, closed
        self.user = ""
        self.mechanism = ""
        self.vhost: VHost | None = None
        self.frame_max = FRAME_MAX
        self.heartbeat = 0
        self.opened_at = time.monotonic()
        self.last_received = self.last_sent = self.opened_at
        self.publishers: dict[int, Publisher] = {}
        self.subscriptions: dict[int, Subscription] = {}
        self.client_properties: dict[str, str] = {}
        self._waiting: list[memoryview] | None = None  # frames received during a password check
        self.closing_since: float | None = None  # when the server's Close was sent
        self._handlers: dict[int, Callable[[Reader, int], None]] = {
            codec.DECLARE_PUBLISHER: self._declare_publisher,
            codec.PUBLISH: self._publish,
            codec.QUERY_PUBLISHER_SEQUENCE: self._query_publisher_sequence,
            codec.DELETE_PUBLISHER: self._delete_publisher,
            codec.SUBSCRIBE: self._subscribe,
            codec.CREDIT: self._credit,
            codec.STORE_OFFSET: self._store_offset,
            codec.QUERY_OFFSET: self._query_offset,
            codec.UNSUBSCRIBE: self._unsubscribe,
            codec.CREATE: self._create,
            codec.DELETE: self._delete,
            codec.METADATA: self._metadata,
        }

    # -- bytes in and out ----------------------------------------------------------------------------------

    def send(self, data: bytes | list[bytes]) -> None:
        if self.state == "closed":
            return
        self.link.write(data if isinstance(data, list) else [data])
        self.last_sent = time.monotonic()

    def feed(self, data: bytes) -> None:
        """Bytes from the socket."""
        if self.state == "closed":
            if self.closing_since is not None:
                self._await_close_response(data)
            return
        self.last_received = time.monotonic()
        try:
            frames = self.splitter.feed(data)
        except FrameError as exc:
            self.fail(exc.code, str(exc), wait=False)  # what follows cannot be cut into frames
            return
        self._handle(frames)

    def _await_close_response(self, data: bytes) -> None:
        try:
            frames = self.splitter.feed(data)
        except FrameError:
            frames = []
            self.link.close()
        for frame in frames:
            if len(frame) >= 2 and frame[0] == 0x80 and frame[1] == codec.CLOSE:
                self.closing_since = None
                self.link.close()
                return

    def _handle(self, frames: list[memoryview]) -> None:
        for index, data in enumerate(frames):
            if self._waiting is not None:
                self._waiting.extend(frames[index:])
                return
            if self.state == "closed":
                return
            try:
                self._frame(data)
            except FrameError as exc:
                self.fail(exc.code, str(exc))
            except Exception:
                log.exception("internal error; closing the stream connection", extra={"conn": self.name})
                self.fail(codec.INTERNAL_ERROR, "internal error")

    def _frame(self, data: memoryview) -> None:
        reader = Reader(data)
        key = reader.u16()
        version = reader.u16()
        state = self.state
        if key == codec.HEARTBEAT:
            return
        if key == codec.CLOSE | codec.RESPONSE:
            self._closed_by_peer()
            return
        if key == codec.CLOSE:
            correlation = reader.u32()
            reader.u16()
            reader.string()
            self.send(codec.response(codec.CLOSE, correlation, codec.OK))
            self._closed_by_peer()
            return
        if state == "opened":
            handler = self._handlers.get(key)
            if handler is None:
                if key == codec.EXCHANGE_COMMAND_VERSIONS:
                    self._exchange_versions(reader)
                    return
                raise FrameError(codec.UNKNOWN_FRAME, f"unknown command 0x{key:04x}")
            handler(reader, version)
            return
        expected = {
            "peer": codec.PEER_PROPERTIES,
            "sasl": codec.SASL_HANDSHAKE,
            "auth": codec.SASL_AUTHENTICATE,
            "tune": codec.TUNE,
            "open": codec.OPEN,
        }.get(state)
        if key == codec.SASL_HANDSHAKE and state in ("sasl", "auth"):
            expected = key  # a client may ask for the mechanisms again
        if key != expected:
            raise FrameError(codec.UNKNOWN_FRAME, f"command 0x{key:04x} not expected before open")
        if key == codec.PEER_PROPERTIES:
            self._peer_properties(reader)
        elif key == codec.SASL_HANDSHAKE:
            correlation = reader.u32()
            mechanisms = [m for m in self.broker.auth.mechanisms() if m in _MECHANISMS]
            body = len(mechanisms).to_bytes(4, "big")
            body += b"".join(codec.string(m) for m in mechanisms)
            self.send(codec.response(codec.SASL_HANDSHAKE, correlation, codec.OK, body))
            self.state = "auth"
        elif key == codec.SASL_AUTHENTICATE:
            self._authenticate(reader)
        elif key == codec.TUNE:
            frame_max = reader.u32()
            heartbeat = reader.u32()
            self.frame_max = min(frame_max, FRAME_MAX) if frame_max else FRAME_MAX
            self.splitter.frame_max = self.frame_max
            self.heartbeat = min(heartbeat, HEARTBEAT) if heartbeat else 0
            self.state = "open"
        else:
            self._open(reader)

    # -- handshake -----------------------------------------------------------------------------------------

    def _peer_properties(self, reader: Reader) -> None:
        correlation = reader.u32()
        self.client_properties = reader.properties()
        answer = {**PRODUCT, "version": VERSION}
        self.send(codec.response(codec.PEER_PROPERTIES, correlation, codec.OK, codec.properties(answer)))
        self.state = "sasl"

    def _authenticate(self, reader: Reader) -> None:
        correlation = reader.u32()
        mechanism = reader.string()
        response = bytes(reader.bytes())
        auth = self.broker.auth
        if mechanism not in _MECHANISMS:
            self.send(
                codec.response(codec.SASL_AUTHENTICATE, correlation, codec.SASL_MECHANISM_NOT_SUPPORTED)
            )
            self.fail(codec.SASL_MECHANISM_NOT_SUPPORTED, f"mechanism {mechanism!r} not supported", False)
            return
        self.mechanism = mechanism
        try:
            answer = auth.login(mechanism, response, self.peer[0])
        except AuthFailure as exc:
            self._refused(correlation, exc)
            return
        if isinstance(answer, str):
            self._logged_in(correlation, answer)
            return
        if auth.checks.runner is None:
            self._checked(correlation, answer, answer.check())
            return
        self._waiting = []
        auth.submit(answer, partial(self._checked, correlation, answer))

    def _checked(self, correlation: int, pending: PendingLogin, ok: bool | None) -> None:
        waiting = self._waiting
        self._waiting = None
        if self.state == "closed":
            return
        try:
            user = self.broker.auth.finish(pending, ok)
        except AuthFailure as exc:
            self._refused(correlation, exc)
            return
        self._logged_in(correlation, user)
        if waiting:
            self._handle(waiting)

    def _refused(self, correlation: int, exc: AuthFailure) -> None:
        self.broker.auth_attempts.failed += 1
        log.warning("stream login refused", extra={"conn": self.name, "reason": str(exc)})
        code = codec.AUTHENTICATION_FAILURE
        if "via localhost" in str(exc):
            code = codec.SASL_AUTHENTICATION_FAILURE_LOOPBACK
        self.send(codec.response(codec.SASL_AUTHENTICATE, correlation, code))
        self.fail(code, "authentication failure", False)

    def _logged_in(self, correlation: int, user: str) -> None:
        self.broker.auth_attempts.succeeded += 1
        self.user = user
        self.send(codec.response(codec.SASL_AUTHENTICATE, correlation, codec.OK))
        self.send(codec.tune(FRAME_MAX, HEARTBEAT))
        self.state = "tune"

    def _open(self, reader: Reader) -> None:
        correlation = reader.u32()
        name = reader.string()
        vhost = self.broker.vhosts.get(name)
        if vhost is None or not self.broker.access.can_open(self.user, name):
            self.send(codec.response(codec.OPEN, correlation, codec.VIRTUAL_HOST_ACCESS_FAILURE))
            self.fail(codec.VIRTUAL_HOST_ACCESS_FAILURE, f"no access to vhost {name!r}", False)
            return
        self.vhost = vhost
        host, port = self.advertised
        answer = {"advertised_host": host, "advertised_port": str(port)}
        self.send(codec.response(codec.OPEN, correlation, codec.OK, codec.properties(answer)))
        self.state = "opened"
        log.info("stream connection opened", extra={"conn": self.name, "user": self.user, "vhost": name})

    # -- streams -------------------------------------------------------------------------------------------

    def _vhost(self) -> VHost:
        assert self.vhost is not None
        return self.vhost

    def _stream(self, name: str) -> StreamQueue | None:
        queue = self._vhost().queues.get(name)
        return queue if isinstance(queue, StreamQueue) and not queue.deleted else None

    def _allowed(self, access: str, name: str) -> bool:
        return self.broker.access.allowed(self.user, self._vhost().name, access, name)

    def _create(self, reader: Reader, _version: int) -> None:
        correlation = reader.u32()
        name = reader.string()
        given = reader.properties()
        code = self._create_stream(name, given)
        if code != codec.OK:
            self.send(codec.response(codec.CREATE, correlation, code))
            return
        journal = self.broker.journal
        position = journal.next_position - 1
        reply = partial(self.send, codec.response(codec.CREATE, correlation, codec.OK))
        failed = partial(self.send, codec.response(codec.CREATE, correlation, codec.INTERNAL_ERROR))
        journal.when_durable(position, reply, failed)

    def _create_stream(self, name: str, given: dict[str, str]) -> int:
        vhost = self._vhost()
        if not name or name.startswith("amq.") or len(name.encode()) > 255:
            return codec.PRECONDITION_FAILED
        if not self._allowed("configure", name):
            return codec.ACCESS_REFUSED
        existing = vhost.queues.get(name)
        if existing is not None:
            return (
                codec.STREAM_ALREADY_EXISTS
                if isinstance(existing, StreamQueue)
                else codec.PRECONDITION_FAILED
            )
        arguments: dict[str, Any] = {"x-queue-type": "stream"}
        for key, value in given.items():
            known = _ARGUMENTS.get(key)
            if known is None:
                continue
            argument, kind = known
            try:
                arguments[argument] = kind(value)
            except ValueError:
                return codec.PRECONDITION_FAILED
            if argument == "x-max-age" and max_age_seconds(value) is None:
                return codec.PRECONDITION_FAILED
        try:
            vhost.declare_queue(name, durable=True, arguments=arguments)
        except AMQPError as exc:
            log.info("stream create refused", extra={"conn": self.name, "stream": name, "reason": str(exc)})
            return codec.ACCESS_REFUSED if exc.reply_code == 403 else codec.PRECONDITION_FAILED
        return codec.OK

    def _delete(self, reader: Reader, _version: int) -> None:
        correlation = reader.u32()
        name = reader.string()
        queue = self._stream(name)
        if queue is None:
            self.send(codec.response(codec.DELETE, correlation, codec.STREAM_DOES_NOT_EXIST))
            return
        if not self._allowed("configure", name):
            self.send(codec.response(codec.DELETE, correlation, codec.ACCESS_REFUSED))
            return
        self._vhost().delete_queue(name)
        self.tracking.forget(self._vhost().name, name)
        self.send(codec.response(codec.DELETE, correlation, codec.OK))

    def _metadata(self, reader: Reader, _version: int) -> None:
        correlation = reader.u32()
        names = reader.strings()
        host, port = self.advertised
        rows = [
            (name, codec.OK, 0)
            if self._stream(name) is not None
            else (name, codec.STREAM_DOES_NOT_EXIST, 0xFFFF)
            for name in names
        ]
        self.send(codec.metadata_response(correlation, [(0, host, port)], rows))

    def _exchange_versions(self, reader: Reader) -> None:
        correlation = reader.u32()
        for _ in range(reader.count(6)):
            reader.u16()
            reader.u16()
            reader.u16()
        keys = sorted([*self._handlers, codec.PEER_PROPERTIES, codec.SASL_HANDSHAKE, codec.SASL_AUTHENTICATE,
                       codec.TUNE, codec.OPEN, codec.CLOSE, codec.HEARTBEAT, codec.DELIVER,
                       codec.PUBLISH_CONFIRM, codec.PUBLISH_ERROR, codec.METADATA_UPDATE])  # fmt: skip
        body = len(keys).to_bytes(4, "big") + b"".join(
            codec.u16(k) + codec.u16(1) + codec.u16(1) for k in keys
        )
        self.send(codec.response(codec.EXCHANGE_COMMAND_VERSIONS, correlation, codec.OK, body))

    # -- publishing ----------------------------------------------------------------------------------------

    def _declare_publisher(self, reader: Reader, _version: int) -> None:
        correlation = reader.u32()
        publisher_id = reader.u8()
        reference = reader.string()
        name = reader.string()
        queue = self._stream(name)
        if queue is None:
            code = codec.STREAM_DOES_NOT_EXIST
        elif not self._allowed("write", name):
            code = codec.ACCESS_REFUSED
        elif (
            publisher_id in self.publishers
            or len(reference) > MAX_REFERENCE
            or self._reference_taken(reference, queue)
        ):
            code = codec.PRECONDITION_FAILED
        else:
            self.publishers[publisher_id] = Publisher(publisher_id, reference, queue)
            code = codec.OK
        self.send(codec.response(codec.DECLARE_PUBLISHER, correlation, code))

    def _reference_taken(self, reference: str, queue: StreamQueue) -> bool:
        """Another publisher of this connection already publishes to `queue` as `reference`."""
        return bool(reference) and any(
            p.reference == reference and p.queue is queue for p in self.publishers.values()
        )

    def _delete_publisher(self, reader: Reader, _version: int) -> None:
        correlation = reader.u32()
        publisher_id = reader.u8()
        code = (
            codec.OK
            if self.publishers.pop(publisher_id, None) is not None
            else codec.PUBLISHER_DOES_NOT_EXIST
        )
        self.send(codec.response(codec.DELETE_PUBLISHER, correlation, code))

    def _query_publisher_sequence(self, reader: Reader, _version: int) -> None:
        correlation = reader.u32()
        reference = reader.string()
        name = reader.string()
        if self._stream(name) is None:
            self.send(
                codec.response(
                    codec.QUERY_PUBLISHER_SEQUENCE, correlation, codec.STREAM_DOES_NOT_EXIST, codec.u64(0)
                )
            )
            return
        sequence = self.tracking.sequence(self._vhost().name, name, reference) if reference else 0
        self.send(codec.response(codec.QUERY_PUBLISHER_SEQUENCE, correlation, codec.OK, codec.u64(sequence)))

    def _publish(self, reader: Reader, version: int) -> None:
        publisher_id = reader.u8()
        count = reader.count(12)
        publisher = self.publishers.get(publisher_id)
        if publisher is None or publisher.queue.deleted:
            code = codec.PUBLISHER_DOES_NOT_EXIST if publisher is None else codec.STREAM_DOES_NOT_EXIST
            errors = []
            for _ in range(count):
                errors.append((reader.u64(), code))
                if version >= 2:
                    reader.string()
                reader.bytes()
            self.send(codec.publish_error(publisher_id, errors))
            return
        queue = publisher.queue
        vhost = self._vhost().name
        reference = publisher.reference
        last = self.tracking.sequence(vhost, queue.name, reference, default=-1) if reference else -1
        confirmed: list[int] = []  # duplicates: confirmed at once, as RabbitMQ does
        appended: list[int] = []
        refused: list[tuple[int, int]] = []
        offset = -1
        stamp = now_ms()
        log_ = queue.log
        for _ in range(count):
            if version >= 2:
                publishing_id = reader.u64()
                reader.string()  # a filter value: no filtering here
                data = bytes(reader.bytes())
            else:
                publishing_id, data = reader.message()
            if reference and publishing_id <= last:
                confirmed.append(publishing_id)
                continue
            try:
                offset = log_.append("", queue.name, AMQP10, data, stamp)
            except StreamFailed:
                # The stream's log refuses appends (it failed, or a full disk suspends it): this message
                # is refused, the connection stays (as a nack on AMQP 0.9.1).
                refused.append((publishing_id, codec.INTERNAL_ERROR))
                continue
            appended.append(publishing_id)
            if reference:
                last = publishing_id
        if appended:
            queue.stats.publish += len(appended)
            if reference:
                self.tracking.set_sequence(vhost, queue.name, reference, last)
            log_.when_durable(offset, partial(self._durable, publisher_id, appended))
        if confirmed:
            self.send(codec.publish_confirm(publisher_id, confirmed))
        if refused:
            self.send(codec.publish_error(publisher_id, refused))

    def _durable(self, publisher_id: int, ids: list[int], ok: bool) -> None:
        if ok:
            self.send(codec.publish_confirm(publisher_id, ids))
        else:
            self.send(codec.publish_error(publisher_id, [(i, codec.INTERNAL_ERROR) for i in ids]))

    # -- consuming -----------------------------------------------------------------------------------------

    def _subscribe(self, reader: Reader, _version: int) -> None:
        correlation = reader.u32()
        subscription_id = reader.u8()
        name = reader.string()
        kind = reader.u16()
        value = reader.u64() if kind in (codec.OFFSET_OFFSET, codec.OFFSET_TIMESTAMP) else 0
        credit = reader.u16()
        # Filters are ignored (a hint: clients filter again, and ours advertise no filtering); single
        # active consumer is refused, as ignoring it would deliver every message to every member.
        single_active = reader.properties().get("single-active-consumer", "false").lower() == "true"
        queue = self._stream(name)
        code = codec.OK
        if subscription_id in self.subscriptions:
            code = codec.SUBSCRIPTION_ID_ALREADY_EXISTS
        elif single_active:
            code = codec.PRECONDITION_FAILED
        elif queue is None:
            code = codec.STREAM_DOES_NOT_EXIST
        elif not self._allowed("read", name):
            code = codec.ACCESS_REFUSED
        elif kind not in range(codec.OFFSET_FIRST, codec.OFFSET_TIMESTAMP + 1):
            code = codec.PRECONDITION_FAILED
        if code != codec.OK or queue is None:
            self.send(codec.response(codec.SUBSCRIBE, correlation, code))
            return
        log_ = queue.log
        first, end = log_.first_offset, log_.committed_offset
        if kind == codec.OFFSET_FIRST:
            start = first
        elif kind == codec.OFFSET_LAST:
            start = max(first, end - 1)  # the last chunk: a chunk is laid out at delivery, so one record
        elif kind == codec.OFFSET_NEXT:
            start = end
        elif kind == codec.OFFSET_OFFSET:
            start = min(max(value, first), end)
        else:
            stamp = value - (1 << 64) if value >= 1 << 63 else value
            start = max(first, log_.offset_at(stamp))
        subscription = Subscription(
            subscription_id, queue, start, credit, self.frame_max, self.send, self.link.is_writable
        )
        self.subscriptions[subscription_id] = subscription
        queue.readers.append(partial(self._stream_event, subscription))
        self.send(codec.response(codec.SUBSCRIBE, correlation, codec.OK))
        subscription.pump()

    def _stream_event(self, subscription: Subscription, gone: bool) -> None:
        if self.state == "closed":
            return
        if not gone:
            subscription.pump()
            return
        self.subscriptions.pop(subscription.id, None)
        for publisher_id in [p.id for p in self.publishers.values() if p.queue is subscription.queue]:
            del self.publishers[publisher_id]
        self.send(codec.metadata_update(codec.STREAM_NOT_AVAILABLE, subscription.stream))

    def _credit(self, reader: Reader, _version: int) -> None:
        subscription_id = reader.u8()
        credit = reader.u16()
        subscription = self.subscriptions.get(subscription_id)
        if subscription is None:
            self.send(codec.credit_response(codec.SUBSCRIPTION_ID_DOES_NOT_EXIST, subscription_id))
            return
        subscription.credit = min(subscription.credit + credit, 0xFFFF)
        subscription.pump()

    def _unsubscribe(self, reader: Reader, _version: int) -> None:
        correlation = reader.u32()
        subscription_id = reader.u8()
        subscription = self.subscriptions.pop(subscription_id, None)
        if subscription is None:
            self.send(codec.response(codec.UNSUBSCRIBE, correlation, codec.SUBSCRIPTION_ID_DOES_NOT_EXIST))
            return
        self._detach(subscription)
        self.send(codec.response(codec.UNSUBSCRIBE, correlation, codec.OK))

    def _detach(self, subscription: Subscription) -> None:
        readers = subscription.queue.readers
        for reader in list(readers):
            if isinstance(reader, partial) and reader.args and reader.args[0] is subscription:
                readers.remove(reader)

    def _store_offset(self, reader: Reader, _version: int) -> None:
        reference = reader.string()
        name = reader.string()
        offset = reader.u64()
        known = reference and len(reference) <= MAX_REFERENCE and self._stream(name) is not None
        if known and self._allowed("read", name):
            self.tracking.store_offset(self._vhost().name, name, reference, offset)

    def _query_offset(self, reader: Reader, _version: int) -> None:
        correlation = reader.u32()
        reference = reader.string()
        name = reader.string()
        if self._stream(name) is None:
            self.send(
                codec.response(codec.QUERY_OFFSET, correlation, codec.STREAM_DOES_NOT_EXIST, codec.u64(0))
            )
            return
        offset = self.tracking.offset(self._vhost().name, name, reference)
        if offset is None:
            self.send(codec.response(codec.QUERY_OFFSET, correlation, codec.NO_OFFSET, codec.u64(0)))
            return
        self.send(codec.response(codec.QUERY_OFFSET, correlation, codec.OK, codec.u64(offset)))

    # -- timers and closing --------------------------------------------------------------------------------

    def writable(self) -> None:
        """The socket's buffer drained: deliveries go on."""
        for subscription in list(self.subscriptions.values()):
            subscription.pump()

    def tick(self, now: float) -> None:
        """Once a second: the handshake deadline, heartbeats sent and expected, the close's deadline."""
        if self.state == "closed":
            if self.closing_since is not None and now - self.closing_since > CLOSE_TIMEOUT:
                self.closing_since = None
                self.link.close()
            return
        if self.state != "opened":
            if now - self.opened_at > self.broker.settings.handshake_timeout:
                self.fail(codec.INTERNAL_ERROR, "handshake timeout", False)
            return
        beat = self.heartbeat
        if not beat:
            return
        if now - self.last_received > 2 * beat:
            log.warning("stream client missed heartbeats", extra={"conn": self.name})
            self.fail(codec.INTERNAL_ERROR, "missed heartbeats", False)
            return
        if now - self.last_sent >= beat:
            self.send(codec.heartbeat())

    def fail(self, code: int, reason: str, tell: bool = True, wait: bool = True) -> None:
        """Close the connection for `reason`. With `tell`, a Close with `code` goes first and, with `wait`
        (the client's frames can still be read), the socket stays open until the client answers it or
        `CLOSE_TIMEOUT` passes, as RabbitMQ does."""
        if self.state == "closed":
            return
        log.info("closing stream connection", extra={"conn": self.name, "code": code, "reason": reason})
        if tell:
            self.send(codec.close(1, code, reason))
        self._end()
        if tell and wait:
            self.closing_since = time.monotonic()
        else:
            self.link.close()

    def _closed_by_peer(self) -> None:
        self._end()
        self.link.close()

    def _end(self) -> None:
        self.state = "closed"
        for subscription in self.subscriptions.values():
            self._detach(subscription)
        self.subscriptions.clear()
        self.publishers.clear()

    def lost(self) -> None:
        """The socket is gone."""
        if self.state != "closed":
            self._end()
