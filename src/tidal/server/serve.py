"""``tidal serve``: run the app on uvicorn until SIGTERM or Ctrl-C.

On SIGTERM or SIGINT uvicorn stops accepting connections and lets the requests
in flight finish (an ingest request is answered only once its events are
durable), for up to :data:`DRAIN_TIMEOUT_S`; then the app's lifespan closes the
store (flush and fsync). SIGTERM then ends the process normally (exit 0).
"""

from __future__ import annotations

import signal
import socket
import sys
import threading
from types import FrameType
from typing import TYPE_CHECKING, TextIO

import uvicorn

from tidal.server.app import create_app
from tidal.server.config import LOOPBACK, ServerConfig

if TYPE_CHECKING:
    from tidal.api import Store

__all__ = ["DRAIN_TIMEOUT_S", "serve"]

DRAIN_TIMEOUT_S = 30.0
"""How long a stopping server waits for the requests in flight (streams included)."""
BACKLOG = 2048


def serve(config: ServerConfig, store: Store | None = None, *, out: TextIO | None = None,
          err: TextIO | None = None) -> None:
    """Serve ``store`` (default: open ``config.store``, creating it) until SIGTERM or
    SIGINT; the store is closed when the server stops.

    Prints the URL it listens on to ``out`` (default stdout), and to ``err``
    (default stderr) one line when no tokens are configured: the server is then
    open, so it listens on loopback only (:meth:`ServerConfig.load` sees to it).
    """
    out = out or sys.stdout
    err = err or sys.stderr
    if store is None:
        import tidal

        store = tidal.open(config.store)
    try:
        server = uvicorn.Server(uvicorn.Config(
            create_app(store, config, close_store=True), host=config.host, port=config.port,
            log_level="warning", access_log=False, lifespan="on", server_header=False,
            backlog=BACKLOG, timeout_graceful_shutdown=int(DRAIN_TIMEOUT_S)))
        sock = _listen(config.host, config.port)  # port 0 is resolved before it is shown
    except BaseException:
        store.close()
        raise
    if config.open:
        err.write(f"tidal: no API tokens configured, so listening on loopback only "
                  f"({LOOPBACK}); add [[auth.tokens]] to the config to serve other hosts\n")
        err.flush()
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    where = store.path if store.path is not None else "an in-memory store"
    out.write(f"serving {where} on http://{shown}:{port}; Ctrl-C or SIGTERM stops\n")
    out.flush()
    # uvicorn raises the signal that stopped it again once it is done; a SIGTERM
    # that comes back to this handler ends the process normally.
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _exit_normally) if main else None
    try:
        server.run(sockets=[sock])
    finally:
        if main:
            signal.signal(signal.SIGTERM, previous)
        sock.close()
        store.close()  # (already closed by the app's lifespan, unless it never started)


def _listen(host: str, port: int) -> socket.socket:
    """A socket listening on ``host:port``: connections made as soon as the URL is
    printed wait in its backlog until uvicorn accepts them."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET,
                         socket.SOCK_STREAM, socket.IPPROTO_TCP)  # (asyncio sets TCP_NODELAY
    # on the connections of an IPPROTO_TCP socket only: without it, small answers wait
    # ~40 ms for the client's delayed ACK)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(BACKLOG)
    except OSError as exc:
        sock.close()
        raise OSError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.set_inheritable(True)
    return sock


def _exit_normally(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)
