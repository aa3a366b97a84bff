"""``mfa-flow serve``: the emulator under uvicorn, on a socket bound before start-up so ``--port 0`` works.

Once the application has started, the first line on stdout is exactly ``Listening on http://HOST:PORT``
(flushed); everything else goes to stderr. SIGINT and SIGTERM stop it gracefully with exit status 0.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import sys
from collections.abc import Iterator
from types import FrameType
from typing import Any, TextIO

import uvicorn

__all__ = ["listening_socket", "serve"]

EXIT_OK, EXIT_FAILED = 0, 1

#: Every uvicorn message on stderr: stdout carries only the "Listening on" line a test harness waits for.
LOG_CONFIG: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "mfa-flow serve: %(levelname)s %(message)s"}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "plain", "stream": "ext://sys.stderr"}},
    "loggers": {
        "uvicorn": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
        "uvicorn.access": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
        "mfa_flow": {"handlers": ["stderr"], "level": "WARNING", "propagate": False},
    },
}


class _Server(uvicorn.Server):
    """uvicorn's server that announces the bound address and exits 0 on SIGINT/SIGTERM (uvicorn re-raises
    the signal after its graceful shutdown, which would end the process by that signal)."""

    def __init__(self, config: uvicorn.Config, url: str, out: TextIO) -> None:
        super().__init__(config)
        self._url = url
        self._out = out

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            self._out.write(f"Listening on {self._url}\n")
            self._out.flush()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        previous = {sig: signal.signal(sig, self._stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _stop(self, _sig: int, _frame: FrameType | None) -> None:
        if self.should_exit:  # asked twice: stop waiting for open connections
            self.force_exit = True
        self.should_exit = True


def listening_socket(host: str, port: int) -> socket.socket:
    """Bound and listening before start-up, so ``--port 0`` can be announced with the port it got."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio turns Nagle's algorithm off only on sockets it knows are TCP, and uvicorn
    # writes headers and body apart, so with Nagle on every answer waits ~40 ms for the client's delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    return sock


def serve(app: Any, *, host: str, port: int, access_log: bool = False, out: TextIO | None = None,
          err: TextIO | None = None) -> int:
    """Serve ``app`` on ``host:port`` until SIGINT or SIGTERM; the exit status."""
    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    try:
        sock = listening_socket(host, port)
    except OSError as exc:
        err.write(f"mfa-flow serve: cannot listen on {host}:{port}: {exc.strerror or exc}\n")
        return EXIT_FAILED
    bound = sock.getsockname()[1]
    url = f"http://[{host}]:{bound}" if sock.family == socket.AF_INET6 else f"http://{host}:{bound}"
    config = uvicorn.Config(app, log_config=LOG_CONFIG, access_log=access_log, lifespan="on",
                            timeout_graceful_shutdown=5)
    server = _Server(config, url, out)
    try:
        server.run(sockets=[sock])
    except SystemExit:  # uvicorn exits when the application's start-up failed; it logged why
        return EXIT_FAILED
    finally:
        sock.close()
    return EXIT_OK if server.started else EXIT_FAILED
