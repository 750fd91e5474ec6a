"""A TCP relay on 127.0.0.1 that a test can cut and heal, to make network partitions between processes.

Strategy: one accepting thread, two pumping threads per relayed connection. `cut()` turns the relay into a
black hole, as a dead link or a dropping firewall looks from either end: bytes already in flight and new
ones are read and dropped, new connections are accepted and held without reaching the target, nothing is
closed (the ends find out by their own timeouts). `heal()` closes every connection that lived through the
cut (their byte streams have holes) and relays new ones again. Every loop wakes at least every 0.1 s.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading


class _Link:
    """One relayed connection: the client's socket and, unless accepted during a cut, the target's."""

    def __init__(self, client: socket.socket, upstream: socket.socket | None) -> None:
        self.client = client
        self.upstream = upstream
        self.tainted = upstream is None  # lived through a cut: closed at heal
        self.closed = threading.Event()

    def close(self) -> None:
        self.closed.set()
        for sock in (self.client, self.upstream):
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.close()


class TcpProxy:
    """Relays 127.0.0.1:`port` to 127.0.0.1:`target`; `cut()` and `heal()` from the test."""

    def __init__(self, target: int, port: int = 0) -> None:
        self.target = target
        self._listener = socket.create_server(("127.0.0.1", port))
        self._listener.settimeout(0.1)
        self.port: int = self._listener.getsockname()[1]
        self._cut = threading.Event()
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self._links: list[_Link] = []
        self._accepter = threading.Thread(target=self._accept, name="tcp-proxy", daemon=True)
        self._accepter.start()

    @property
    def is_cut(self) -> bool:
        return self._cut.is_set()

    def cut(self) -> None:
        with self._lock:
            self._cut.set()
            for link in self._links:
                link.tainted = True

    def heal(self) -> None:
        with self._lock:
            self._cut.clear()
            tainted = [link for link in self._links if link.tainted]
            self._links = [link for link in self._links if not link.tainted]
        for link in tainted:
            link.close()

    def close(self) -> None:
        self._stopped.set()
        self._accepter.join(5)
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            links, self._links = self._links, []
        for link in links:
            link.close()

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            upstream = None
            if not self._cut.is_set():
                try:
                    upstream = socket.create_connection(("127.0.0.1", self.target), timeout=2)
                except OSError:
                    client.close()  # the target is down: as it would look without the relay
                    continue
                upstream.settimeout(None)
            client.settimeout(None)
            link = _Link(client, upstream)
            with self._lock:
                self._links.append(link)
            threading.Thread(target=self._pump, args=(link, client, upstream), daemon=True).start()
            if upstream is not None:
                threading.Thread(target=self._pump, args=(link, upstream, client), daemon=True).start()

    def _pump(self, link: _Link, source: socket.socket, sink: socket.socket | None) -> None:
        try:
            while not link.closed.is_set() and not self._stopped.is_set():
                readable, _, _ = select.select([source], [], [], 0.1)
                if not readable:
                    continue
                data = source.recv(65536)
                if not data:
                    break
                if self._cut.is_set() or link.tainted or sink is None:
                    continue  # the black hole
                sink.sendall(data)
        except (OSError, ValueError):
            pass
        # One side ended (not during a cut: a black hole keeps quiet): end the other as well.
        if not (self._cut.is_set() or link.tainted):
            link.close()
