"""A pytest plugin: a throwaway redis-server on a free loopback port for the whole session.

``redis_url`` starts ``redis-server`` (the binary on PATH) in a temporary directory with no persistence and
``maxmemory-policy noeviction``, waits until it answers PING, yields ``redis://127.0.0.1:PORT/0`` and stops it.
Without redis-server the Redis tests are skipped, except under CI (``CI=true``), where that is a failure.
``redis_db`` empties the database before each test and yields a raw client (``decode_responses=True``).
``start_redis_server`` starts one more server (for tests that stop a server under a running flow).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from benchmarks._redis import RedisServer as _RedisServer
from tests.helpers_process import unavailable

__all__ = ["RedisServer", "redis_db", "redis_url", "start_redis_server"]


class RedisServer(_RedisServer):
    """A redis-server child process; ``stop()`` ends it (idempotent). Skips the test without the binary
    (fails under CI), fails it when the server does not start."""

    def __init__(self, directory: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            unavailable("redis-server is not on PATH (Debian: apt-get install redis-server)", "the Redis store tests")
        try:
            super().__init__(binary, directory)
        except RuntimeError as exc:
            pytest.fail(str(exc), pytrace=False)


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
