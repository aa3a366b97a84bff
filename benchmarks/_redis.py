"""A throwaway redis-server on a free loopback port, for the store benchmark and the tests.

No pytest here: ``benchmarks/bench_stores.py`` imports it as ``_redis`` (its own folder is on sys.path) and
``tests/redis_server.py`` as ``benchmarks._redis`` (the repository root is), adding the skip/fail of a test run.
"""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

__all__ = ["RedisServer"]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """A redis-server child process (no persistence, ``noeviction``); ``stop()`` ends it (idempotent).

    Raises RuntimeError when the server does not answer PING within 10 s (five ports tried)."""

    def __init__(self, binary: str, directory: Path) -> None:
        self.process: subprocess.Popen[bytes] | None = None
        for _ in range(5):  # another process may take the port between bind and start: try another one
            self.port = _free_port()
            self.process = subprocess.Popen(  # noqa: S603 - a fixed argument list, the binary from PATH
                [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                 "--maxmemory-policy", "noeviction", "--dir", str(directory)],
                cwd=directory, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            deadline = time.monotonic() + 10.0
            while time.monotonic() < deadline and self.process.poll() is None:
                if _ping(self.port):
                    self.url = f"redis://127.0.0.1:{self.port}/0"
                    return
                time.sleep(0.02)
            self.stop()
        raise RuntimeError("redis-server did not start (no PING answer within 10 s)")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
