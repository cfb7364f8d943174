"""The coordinators' console (or any ASGI app) under uvicorn on a free 127.0.0.1 port, in a
daemon thread, for tests and benchmarks that talk to it over real HTTP."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

START_TIMEOUT = 30.0


def loopback_listener() -> socket.socket:
    """A listening TCP socket on a free 127.0.0.1 port, made with ``IPPROTO_TCP`` explicitly:
    asyncio sets ``TCP_NODELAY`` only on connections of such sockets. ``socket.create_server``
    makes sockets of protocol 0, whose keep-alive responses each wait ~40 ms for a delayed ACK
    (Nagle's algorithm holds the body back behind the unacknowledged headers)."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
    except OSError:
        listener.close()
        raise
    return listener


@contextmanager
def serve_console(app: Any, listener: socket.socket | None = None) -> Iterator[str]:
    """``app`` served on ``listener`` (default: :func:`loopback_listener`) once it accepts
    connections; its base URL. The server stops and the listener closes on exit."""
    bound = listener if listener is not None else loopback_listener()
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [bound]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the console did not start")
            time.sleep(0.02)
        yield f"http://127.0.0.1:{bound.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        bound.close()
