"""Where the MFA state lives: the store Protocol and the built-in stores.

The SQLite and Redis stores load on first use (``from mfa_flow.stores import SqliteStore`` works as ever):
they pull in sqlite3, asyncio and the codec, which a flow on the memory store never needs.
"""

import importlib
import typing

from mfa_flow.stores._base import AsyncStore, AsyncTransaction, Entry, Store, Transaction, Write
from mfa_flow.stores.memory import MemoryStore

if typing.TYPE_CHECKING:
    from mfa_flow.stores.redis import AsyncRedisStore, EvictionPolicyWarning, RedisStore
    from mfa_flow.stores.sqlite import AsyncSqliteStore, SqliteStore

__all__ = [
    "AsyncRedisStore",
    "AsyncSqliteStore",
    "AsyncStore",
    "AsyncTransaction",
    "Entry",
    "EvictionPolicyWarning",
    "MemoryStore",
    "RedisStore",
    "SqliteStore",
    "Store",
    "Transaction",
    "Write",
]

_LAZY = {
    "SqliteStore": "sqlite", "AsyncSqliteStore": "sqlite",
    "RedisStore": "redis", "AsyncRedisStore": "redis", "EvictionPolicyWarning": "redis",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # once: later lookups are plain globals
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
