"""A TCP proxy the tests put between a process and a server (NATS, PostgreSQL) to stall its real connection.

``TcpProxy(port)`` listens on a free port of 127.0.0.1 and pumps every connection to ``port`` both
ways. ``hold_replies_after(marker)``: once a client has sent ``marker`` (say, the first publish of a
stream), nothing more from the server reaches any client: the server receives and stores what the
client sends, the client never hears back (acknowledgements lost in the network). ``holding`` is set
from then on. ``close()`` stops listening and drops every connection; use it as a context manager.
"""

from __future__ import annotations

import socket
import threading
from types import TracebackType


class TcpProxy:
    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.holding = threading.Event()
        self._marker: bytes | None = None
        self._closed = threading.Event()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, name=f"proxy:{self.port}", daemon=True).start()

    def hold_replies_after(self, marker: bytes) -> None:
        self._marker = marker

    def close(self) -> None:
        self._closed.set()
        self.listener.close()
        with self._lock:
            for sock in self._sockets:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()
            self._sockets.clear()

    def __enter__(self) -> TcpProxy:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self.listener.accept()
                server = socket.create_connection(self.target, timeout=5)
            except OSError:
                continue  # closed, or the server is down: the client sees its connection end
            server.settimeout(None)
            with self._lock:
                if self._closed.is_set():
                    client.close()
                    server.close()
                    return
                self._sockets += [client, server]
            threading.Thread(target=self._requests, args=(client, server), daemon=True).start()
            threading.Thread(target=self._replies, args=(server, client), daemon=True).start()

    def _requests(self, source: socket.socket, sink: socket.socket) -> None:
        tail = b""
        while chunk := self._recv(source):
            marker = self._marker
            if marker is not None:
                if marker in tail + chunk:
                    self.holding.set()  # before the server sees it: none of its replies gets through
                tail = (tail + chunk)[-len(marker) :]
            if not self._send(sink, chunk):
                break
        self._drop(source, sink)

    def _replies(self, source: socket.socket, sink: socket.socket) -> None:
        while chunk := self._recv(source):
            if self.holding.is_set():
                self._closed.wait()  # held until the proxy closes
                break
            if not self._send(sink, chunk):
                break
        self._drop(source, sink)

    @staticmethod
    def _recv(sock: socket.socket) -> bytes:
        try:
            return sock.recv(65536)
        except OSError:
            return b""

    @staticmethod
    def _send(sock: socket.socket, data: bytes) -> bool:
        try:
            sock.sendall(data)
            return True
        except OSError:
            return False

    def _drop(self, *socks: socket.socket) -> None:
        for sock in socks:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
