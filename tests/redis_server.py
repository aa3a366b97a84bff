"""A pytest plugin: a throwaway redis-server on a free loopback port for the whole session.

``redis_url`` starts ``redis-server`` (the binary on PATH) in a temporary directory with no persistence and
``maxmemory-policy noeviction``, waits until it answers PING, yields ``redis://127.0.0.1:PORT/0`` and stops it.
Without redis-server the Redis tests are skipped, except under CI (``CI=true``), where that is a failure.
``redis_db`` empties the database before each test and yields a raw client (``decode_responses=True``).
``start_redis_server`` starts one more server (for tests that stop a server under a running flow).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

__all__ = ["RedisServer", "redis_db", "redis_url", "start_redis_server"]


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
    """A redis-server child process; ``stop()`` ends it (idempotent)."""

    def __init__(self, directory: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            message = "redis-server is not on PATH (Debian: apt-get install redis-server)"
            if os.environ.get("CI") == "true":
                pytest.fail(f"{message}; under CI the Redis store tests must run", pytrace=False)
            pytest.skip(message)
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
        pytest.fail("redis-server did not start (no PING answer within 10 s)", pytrace=False)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def redis_db(redis_url: str) -> Iterator[Any]:
    """The session server's database 0, emptied before the test; a raw client with str answers."""
    import redis

    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.flushdb()
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def start_redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """``start_redis_server()`` starts another server for this test (stopped at its end)."""
    servers: list[RedisServer] = []

    def start() -> RedisServer:
        servers.append(RedisServer(tmp_path_factory.mktemp("redis-extra")))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()
