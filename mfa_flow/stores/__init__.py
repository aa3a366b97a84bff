"""Where the MFA state lives: the store Protocol and the built-in stores."""

from mfa_flow.stores._base import Entry, Store, Transaction, Write
from mfa_flow.stores.memory import MemoryStore

__all__ = ["Entry", "MemoryStore", "Store", "Transaction", "Write"]
