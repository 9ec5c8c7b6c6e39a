"""Engine faults without touching the real dockerd: a unix-socket forwarder in front of its socket.

    proxy = EngineProxy(tmp_path / "engine.sock", real_engine_socket(), cut_on=b'"stream":"Step ')
    with proxy:
        monkeypatch.setenv("DOCKER_HOST", proxy.url)
        ...                      # envkit talks to the engine through the proxy
        proxy.cut()              # or automatically, when the engine first sends `cut_on`

`cut()` is the engine dying: every open connection is dropped and the socket stops accepting (a
connect then fails with "connection refused", as with a stopped dockerd's stale socket). With
`cut_on`, the proxy cuts the moment those bytes arrive from the engine, before passing them on, so a
test can stop a build exactly after it started, however fast it would otherwise finish.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from pathlib import Path
from types import TracebackType

CHUNK = 65536
# AF_UNIX paths are limited to 107 bytes on Linux.
MAX_SOCKET_PATH = 107


def real_engine_socket() -> str | None:
    """The filesystem path of the engine's unix socket (DOCKER_HOST or the default), None for TCP."""
    host = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    return host.removeprefix("unix://") if host.startswith("unix://") else None


class EngineProxy:
    """A threaded forwarder from a socket at `path` to the engine socket at `target`."""

    def __init__(self, path: Path, target: str, *, cut_on: bytes | None = None) -> None:
        if len(str(path)) > MAX_SOCKET_PATH:
            raise ValueError(f"socket path too long for AF_UNIX: {path}")
        self.path = path
        self.target = target
        self.cut_on = cut_on
        self.was_cut = threading.Event()
        self.connections = 0
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(str(path))
        self._listener.listen(64)
        self._listener.settimeout(0.1)  # lets the accept loop notice a cut
        self._acceptor = threading.Thread(target=self._accept_loop, name="engine-proxy", daemon=True)

    @property
    def url(self) -> str:
        return f"unix://{self.path}"

    def __enter__(self) -> EngineProxy:
        self._acceptor.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.cut()
        self._acceptor.join(timeout=5)

    def cut(self) -> None:
        """The engine dies: drop every connection, accept no new one."""
        with self._lock:
            self.was_cut.set()
            doomed = list(self._open)
            self._open.clear()
        self._listener.close()
        for sock in doomed:
            _close(sock)

    def _accept_loop(self) -> None:
        while not self.was_cut.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # the listener was closed by cut()
            self._forward(client)

    def _forward(self, client: socket.socket) -> None:
        client.settimeout(None)
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            upstream.connect(self.target)
        except OSError:
            _close(client)
            _close(upstream)
            return
        with self._lock:
            if self.was_cut.is_set():
                _close(client)
                _close(upstream)
                return
            self._open |= {client, upstream}
            self.connections += 1
        for source, sink, trigger in ((client, upstream, None), (upstream, client, self.cut_on)):
            threading.Thread(target=self._pump, args=(source, sink, trigger), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, trigger: bytes | None) -> None:
        seen = b""
        try:
            while data := source.recv(CHUNK):
                if trigger is not None:
                    if trigger in seen + data:
                        self.cut()
                        return
                    seen = (seen + data)[-len(trigger) :]
                sink.sendall(data)
            sink.shutdown(socket.SHUT_WR)  # pass the half-close on; the other direction may go on
        except OSError:
            return  # cut, or the peer went away


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
