"""The server process under hostile conditions: stop signals at any moment, failures inside a connection, IPv6
and a flooding publisher.

Each test starts its own `ottermq serve` (the session broker must not be disturbed) and talks to it with raw
sockets or pika.
"""

from __future__ import annotations

import os
import resource
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pika
import pika.exceptions
import pytest
from pika import frame, spec

from tests.integration.conftest import _free_port, get_message, serve_cmd
from tests.integration.test_raw import PROTOCOL_HEADER, RawClient, raw_frame

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("OTTERMQ_TEST_URL")), reason="needs a broker process of its own"
)

ROOT = Path(__file__).resolve().parents[2]


def _clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTTERMQ_")}
    env.update(extra or {})
    return env


def _accepts(host: str, port: int, timeout: float = 0.2) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect((host, port))
        except OSError:
            return False
        return True


# -- stop signals --------------------------------------------------------------------------------------------


def test_sigterm_as_soon_as_the_port_opens_is_a_graceful_stop(tmp_path: Path) -> None:
    port = _free_port()
    data_dir = tmp_path / "data"
    log_path = tmp_path / "ottermq.log"
    cmd = serve_cmd(data_dir, port=port, http_port=_free_port())
    with log_path.open("wb") as out:
        process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env=_clean_env())
    try:
        deadline = time.monotonic() + 20
        # Dial in a tight loop so the signal lands right after listen(), while the rest still starts up.
        while not _accepts("127.0.0.1", port, timeout=0.05):
            assert process.poll() is None, log_path.read_text(errors="replace")
            assert time.monotonic() < deadline, "the broker never listened"
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    log = log_path.read_text(errors="replace")
    assert code == 0, log
    assert "shutting down" in log and "stopped" in log, log
    # The final snapshot was taken: the store's running mark is gone.
    assert not (data_dir / "ottermq-running").exists(), log


# -- an unexpected exception inside a connection -------------------------------------------------------------

# The broker's own command line, with one fault injected at the frame reader: joining received chunks into a
# frame raises MemoryError when the chunks carry MARKER, as it does when the process runs out of memory.
MARKER = b"OTTERMQ-TEST-MEMORY-ERROR"
FAULTY_BROKER = f"""
import sys
from ottermq.amqp.frames import FrameReader

_fill = FrameReader._fill


def failing_fill(self, need):
    if any({MARKER!r} in chunk for chunk in self._more):
        raise MemoryError
    return _fill(self, need)


FrameReader._fill = failing_fill
from ottermq.cli import main

sys.argv = ["ottermq", *sys.argv[1:]]
main()
"""


def _start_broker(
    tmp_path: Path, *args: str, program: str | None = None, host: str = "127.0.0.1", http: bool = False
) -> tuple[subprocess.Popen[bytes], int, int]:
    """`ottermq serve` on `host` (or the given `program` with the same command line); its AMQP port and its
    HTTP port (0 without `http`)."""
    log_path = tmp_path / "ottermq.log"
    launcher = ["-c", program] if program is not None else ["-m", "ottermq"]
    for _attempt in range(3):
        # Ports chosen here may be taken by someone else before the broker binds them: then try others.
        port, http_port = _free_port(), _free_port() if http else 0
        cmd = [
            sys.executable,
            *launcher,
            "serve",
            "--host",
            host,
            "--port",
            str(port),
            "--http-port",
            str(http_port),
            "--data-dir",
            str(tmp_path / "data"),
            *args,
        ]
        with log_path.open("wb") as out:
            process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env=_clean_env())
        deadline = time.monotonic() + 20
        wanted = "management API listening on" if http else "listening on"
        while True:
            log = log_path.read_text(errors="replace")
            if wanted in log:
                return process, port, http_port
            if process.poll() is not None or "cannot serve" in log or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        process.kill()
        process.wait()
        if "Address already in use" not in log:
            break
    raise AssertionError(f"the broker did not start:\n{log_path.read_text(errors='replace')}")


def _stop_within(process: subprocess.Popen[bytes], seconds: float) -> int | None:
    """SIGTERM; the exit status, or None (and a SIGKILL) when the process is still there after `seconds`."""
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        return None


def test_an_exception_in_the_frame_reader_drops_that_connection_once(tmp_path: Path) -> None:
    process, port, _ = _start_broker(tmp_path, program=FAULTY_BROKER)
    try:
        victim = RawClient(port)
        victim.handshake()
        # A frame in two reads, so that the reader joins chunks: the second one carries the marker.
        frame = raw_frame(3, 1, MARKER * 4)
        victim.send(frame[:3])
        time.sleep(0.2)
        victim.send(frame[3:])
        assert victim.read_until_closed(timeout=5) == b""  # cut, without a close handshake
        victim.close()
        # Another client is served as usual.
        other = RawClient(port)
        other.handshake()
        other.send_method(1, spec.Channel.Open())
        other.expect(spec.Channel.OpenOk)
        other.close()
        time.sleep(0.5)  # a loop that retried the bytes would by now have logged thousands of tracebacks
        code = _stop_within(process, 5)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    log = (tmp_path / "ottermq.log").read_text(errors="replace")
    assert code == 0, log[-3000:]
    assert log.count("MemoryError") == 1, log[-3000:]
    assert log.count("internal error; dropping the connection") == 1, log[-3000:]
    assert 'reason="internal error"' in log


def _address_space(pid: int) -> int:
    """The process's virtual memory size (VmSize) in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmSize")


@pytest.mark.skipif(not hasattr(resource, "prlimit"), reason="needs prlimit (Linux)")
def test_a_broker_out_of_address_space_drops_the_connection_then_serves_and_stops(tmp_path: Path) -> None:
    process, port, _ = _start_broker(tmp_path)
    try:
        # A login first, so the password-check threads exist before memory runs short.
        warm = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", port, socket_timeout=5))
        warm.close()
        # From now on the broker cannot grow by more than 48 MiB: a 100 MB message cannot fit.
        limit = _address_space(process.pid) + 48 * 1024 * 1024
        resource.prlimit(process.pid, resource.RLIMIT_AS, (limit, resource.RLIM_INFINITY))
        publisher = pika.BlockingConnection(
            pika.ConnectionParameters("127.0.0.1", port, socket_timeout=10, blocked_connection_timeout=10)
        )
        channel = publisher.channel()
        channel.confirm_delivery()
        queue = channel.queue_declare("", exclusive=True).method.queue
        with pytest.raises(pika.exceptions.AMQPError):
            channel.basic_publish("", queue, b"x" * (100 * 1000 * 1000))
            publisher.process_data_events(time_limit=5)  # the close (or reset) arrives
        assert not publisher.is_open
        # Another client is served: connect, declare, publish and get a small message.
        other = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", port, socket_timeout=5))
        ch = other.channel()
        small = ch.queue_declare("", exclusive=True).method.queue
        ch.basic_publish("", small, b"small")
        assert get_message(ch, small)[2] == b"small"
        other.close()
        code = _stop_within(process, 5)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    log = (tmp_path / "ottermq.log").read_text(errors="replace")
    assert code == 0, log[-3000:]
    assert log.count("Traceback") <= 5, log[-3000:]


# -- IPv6 ----------------------------------------------------------------------------------------------------


def _ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


needs_ipv6 = pytest.mark.skipif(not _ipv6_loopback(), reason="this machine has no IPv6 loopback")


def test_the_default_host_is_every_interface_of_both_families() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ottermq", "serve", "--check-config"],
        cwd=ROOT,
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert 'host = "::"' in result.stdout


def _login(host: str, port: int) -> None:
    """Connect as guest, declare a queue, close: the whole way a client goes."""
    conn = pika.BlockingConnection(pika.ConnectionParameters(host, port, socket_timeout=5))
    try:
        conn.channel().queue_declare("", exclusive=True)
    finally:
        conn.close()


def _http_ok(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        try:
            sock.connect((host, port))
        except OSError:
            return False
        sock.sendall(b"GET /api/health/checks/alarms HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        return sock.recv(64).startswith(b"HTTP/1.1 ")


@needs_ipv6
@pytest.mark.parametrize(
    ("host", "ipv4", "ipv6"),
    [("::", True, True), ("127.0.0.1", True, False), ("::1", False, True)],
    ids=["all", "ipv4-loopback", "ipv6-loopback"],
)
def test_listen_addresses_serve_the_families_they_name(
    tmp_path: Path, host: str, ipv4: bool, ipv6: bool
) -> None:
    process, port, http_port = _start_broker(tmp_path, host=host, http=True)
    try:
        for client_host, served in (("127.0.0.1", ipv4), ("::1", ipv6)):
            assert _accepts(client_host, port) is served, client_host
            if served:
                _login(client_host, port)  # guest is a loopback user: an IPv4-mapped peer is loopback too
            assert _http_ok(client_host, http_port) is served, client_host
        assert _stop_within(process, 10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    log = (tmp_path / "ottermq.log").read_text(errors="replace")
    if ipv4:
        # An IPv4 client of a dual-stack socket is named by its plain IPv4 address.
        assert "conn=127.0.0.1:" in log and "::ffff:" not in log, log


# -- a new client while publishers flood the broker ----------------------------------------------------------

# A publisher with confirms that never lets up: persistent 1 KiB messages, as fast as the broker confirms them
# (up to 5,000 outstanding), into a queue of its own capped at 1,000 messages. argv: port seconds queue.
FLOODER = """
import socket, struct, sys, time
from pika import frame, spec

port, seconds, queue = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
sock = socket.create_connection(("127.0.0.1", port))
sock.settimeout(10)
buf = b""


def expect(kind):
    global buf
    while True:
        used, got = frame.decode_frame(buf) if buf else (0, None)
        if got is None:
            chunk = sock.recv(65536)
            if not chunk:
                raise SystemExit("closed")
            buf += chunk
            continue
        buf = buf[used:]
        if isinstance(got, frame.Method) and isinstance(got.method, kind):
            return got.method


def send(channel, method):
    sock.sendall(frame.Method(channel, method).marshal())


sock.sendall(b"AMQP\\x00\\x00\\x09\\x01")
expect(spec.Connection.Start)
send(0, spec.Connection.StartOk(client_properties={}, mechanism="PLAIN", response=b"\\x00guest\\x00guest"))
tune = expect(spec.Connection.Tune)
send(0, spec.Connection.TuneOk(channel_max=tune.channel_max, frame_max=131072, heartbeat=0))
send(0, spec.Connection.Open(virtual_host="/"))
expect(spec.Connection.OpenOk)
send(1, spec.Channel.Open())
expect(spec.Channel.OpenOk)
send(1, spec.Queue.Declare(queue=queue, durable=True, arguments={"x-max-length": 1000}))
expect(spec.Queue.DeclareOk)
send(1, spec.Confirm.Select())
expect(spec.Confirm.SelectOk)
one = (frame.Method(1, spec.Basic.Publish(exchange="", routing_key=queue)).marshal()
       + frame.Header(1, 1024, spec.BasicProperties(delivery_mode=2)).marshal()
       + frame.Body(1, b"x" * 1024).marshal())
batch, per_batch = one * 200, 200
sent = confirmed = 0
print("ready", flush=True)
end = time.monotonic() + seconds
while time.monotonic() < end:
    if sent - confirmed < 5000:
        sock.sendall(batch)
        sent += per_batch
        continue
    buf += sock.recv(1 << 20)
    while len(buf) >= 7:
        kind, _, size = struct.unpack_from(">BHI", buf)
        if len(buf) < size + 8:
            break
        if kind == 1 and struct.unpack_from(">HH", buf, 7) == (60, 80):  # basic.ack
            tag = struct.unpack_from(">Q", buf, 11)[0]
            confirmed = max(confirmed, tag) if buf[19] & 1 else confirmed + 1
        buf = buf[size + 8:]
print(f"confirmed {confirmed}", flush=True)
"""
FLOODERS = 3


def _connect_and_declare(port: int) -> float:
    """Seconds from dialing to queue.declare-ok for a new client."""
    started = time.monotonic()
    conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", port, socket_timeout=10))
    try:
        conn.channel().queue_declare("", exclusive=True)
        return time.monotonic() - started
    finally:
        conn.close()


def test_a_new_client_is_served_promptly_while_publishers_flood_the_broker(tmp_path: Path) -> None:
    process, port, _ = _start_broker(tmp_path)
    flooders = [
        subprocess.Popen(
            [sys.executable, "-c", FLOODER, str(port), "5", f"flood{i}"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        for i in range(FLOODERS)
    ]
    try:
        for flooder in flooders:
            assert flooder.stdout is not None and flooder.stdout.readline().strip() == "ready"
        time.sleep(0.5)  # the flood is under way
        times: list[float] = []
        end = time.monotonic() + 3
        while time.monotonic() < end:
            times.append(_connect_and_declare(port))
            time.sleep(0.05)
        confirmed = [flooder.communicate(timeout=30)[0].strip() for flooder in flooders]
    finally:
        for flooder in flooders:
            if flooder.poll() is None:
                flooder.kill()
                flooder.wait()
        _stop_within(process, 10)
    times.sort()
    median = times[len(times) // 2]
    summary = f"{len(times)} clients: median {median:.3f} s, worst {times[-1]:.3f} s; flooders: {confirmed}"
    # Measured on a loaded 2-core machine. Before each connection's work per loop turn was bounded: median
    # 0.28-0.47 s, worst 0.45-0.63 s. After: median 0.025 s, worst 0.04-0.06 s (idle: 0.004 s).
    assert median < 0.15, summary
    assert times[-1] < 1.0, summary


def test_a_pipelined_burst_is_handled_whole_and_in_order(tmp_path: Path) -> None:
    # Login, declare, 400 publishes with confirms and a passive declare in one write of ~450 KiB: the
    # broker reads it in big reads and hands them over in slices, with reading paused during the password
    # check. Everything must be handled once, in order.
    process, port, _ = _start_broker(tmp_path)
    count = 400
    try:
        client = RawClient(port)
        queue = "burst"
        frames = [
            PROTOCOL_HEADER,
            frame.Method(
                0,
                spec.Connection.StartOk(
                    client_properties={}, mechanism="PLAIN", response=b"\x00guest\x00guest"
                ),
            ).marshal(),
            frame.Method(0, spec.Connection.TuneOk(channel_max=10, frame_max=131072, heartbeat=0)).marshal(),
            frame.Method(0, spec.Connection.Open(virtual_host="/")).marshal(),
            frame.Method(1, spec.Channel.Open()).marshal(),
            frame.Method(1, spec.Queue.Declare(queue=queue)).marshal(),
            frame.Method(1, spec.Confirm.Select()).marshal(),
        ]
        for i in range(count):
            body = str(i).encode().ljust(1100, b".")
            frames += [
                frame.Method(1, spec.Basic.Publish(exchange="", routing_key=queue)).marshal(),
                frame.Header(1, len(body), spec.BasicProperties()).marshal(),
                frame.Body(1, body).marshal(),
            ]
        frames.append(frame.Method(1, spec.Queue.Declare(queue=queue, passive=True)).marshal())
        client.send(b"".join(frames))
        acked = 0
        counted = None
        while acked < count or counted is None:  # confirms may come after the passive declare's answer
            got = client.read_frame(timeout=10)
            assert isinstance(got, frame.Method), got
            if isinstance(got.method, spec.Basic.Ack):
                acked = got.method.delivery_tag if got.method.multiple else acked + 1
            elif isinstance(got.method, spec.Queue.DeclareOk) and got.method.message_count:
                counted = got.method.message_count
        assert (acked, counted) == (count, count)
        client.send(frame.Method(1, spec.Basic.Get(queue=queue, no_ack=True)).marshal())
        client.expect(spec.Basic.GetOk)
        client.read_frame()  # the content header
        assert client.read_frame().fragment.startswith(b"0.")  # the first one published is the first out
        client.close()
    finally:
        _stop_within(process, 10)
