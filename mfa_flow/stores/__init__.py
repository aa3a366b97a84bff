"""Where the MFA state lives: the store Protocol and the built-in stores."""

from mfa_flow.stores._base import AsyncStore, AsyncTransaction, Entry, Store, Transaction, Write
from mfa_flow.stores.memory import MemoryStore
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
