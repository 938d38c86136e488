"""A TCP proxy that a test controls: put it between the app and its database, then ``cut()`` it to simulate
an outage (every open connection is closed; new ones are refused or black-holed) and ``restore()`` it.

The real server is never touched: only the connections that go through this proxy are affected.
"""

from __future__ import annotations

import socket
import struct
import threading

REFUSE = "refuse"
BLACKHOLE = "blackhole"


class TcpProxy:
    """Forward ``127.0.0.1:<port>`` to ``target_host:target_port``, one pair of threads per connection."""

    def __init__(self, target_host: str, target_port: int, listen_host: str = "127.0.0.1"):
        self.target = (target_host, target_port)
        self.listen_host = listen_host
        self.port: int | None = None
        self.mode: str | None = None  # None: forwarding; REFUSE or BLACKHOLE while cut
        self.accepted = 0
        self.refused = 0
        self._listener: socket.socket | None = None
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()  # both ends of every forwarded connection
        self._held: list[socket.socket] = []  # black-holed connections: accepted, never answered
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()

    # -- control --------------------------------------------------------------------------------

    def start(self) -> int:
        """Listen on a free port; return it."""
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.listen_host, 0))
        listener.listen(128)
        listener.settimeout(0.1)
        self._listener = listener
        self.port = listener.getsockname()[1]
        self._spawn(self._accept_loop)
        return self.port

    def cut(self, mode: str = REFUSE) -> None:
        """The database "goes away": close every open connection; from now on new connections are refused
        (accepted and reset at once) or black-holed (accepted and never answered)."""
        assert mode in (REFUSE, BLACKHOLE), mode
        with self._lock:
            self.mode = mode
            doomed = list(self._open)
            self._open.clear()
        for sock in doomed:
            _abort(sock)

    def restore(self) -> None:
        """The database is back: new connections are forwarded again (black-holed ones are dropped)."""
        with self._lock:
            self.mode = None
            held, self._held = self._held, []
        for sock in held:
            _abort(sock)

    def stop(self) -> None:
        self._stopping.set()
        self.restore()
        self.cut()
        if self._listener is not None:
            self._listener.close()
        for thread in self._threads:
            thread.join(timeout=5)

    def __enter__(self) -> TcpProxy:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- the proxy ------------------------------------------------------------------------------

    def _spawn(self, target, *args) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True, name="tcp-proxy")
        thread.start()
        self._threads = [t for t in self._threads if t.is_alive()] + [thread]

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            with self._lock:
                mode = self.mode
                if mode == BLACKHOLE:
                    self._held.append(client)
                    self.refused += 1
                    continue
            if mode == REFUSE:
                self.refused += 1
                _abort(client)
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                _abort(client)
                continue
            with self._lock:
                if self.mode is not None:  # cut while we were connecting
                    self.refused += 1
                    _abort(client)
                    _abort(upstream)
                    continue
                self.accepted += 1
                self._open.update((client, upstream))
            self._spawn(self._pump, client, upstream)
            self._spawn(self._pump, upstream, client)

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                sink.sendall(data)
        except OSError:
            pass
        with self._lock:
            self._open.discard(source)
            self._open.discard(sink)
        _abort(source)
        _abort(sink)


def _abort(sock: socket.socket) -> None:
    """Close ``sock`` with a reset (no lingering FIN handshake), ignoring a socket that is already closed."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
