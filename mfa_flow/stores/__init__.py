"""Where the MFA state lives: the store Protocol and the built-in stores.

The SQLite and Redis stores load on first use (``from mfa_flow.stores import SqliteStore`` works as ever):
they pull in sqlite3, asyncio and the codec, which a flow on the memory store never needs.
"""

import typing

from mfa_flow import _lazy
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

__getattr__, __dir__ = _lazy.lazy_exports(__name__, {
    "SqliteStore": f"{__name__}.sqlite", "AsyncSqliteStore": f"{__name__}.sqlite",
    "RedisStore": f"{__name__}.redis", "AsyncRedisStore": f"{__name__}.redis",
    "EvictionPolicyWarning": f"{__name__}.redis",
})
