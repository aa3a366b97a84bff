"""The embedded default store: a dict under one lock. Thread-safe, not durable."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterable, Mapping
from typing import Self

from mfa_flow.stores._base import TTL_GRACE, Entry, Write

__all__ = ["MemoryStore"]

_SWEEP_EVERY = 4096


class _MemoryTransaction:
    """Holds the store's lock from ``__enter__`` to ``__exit__``: a commit in it never loses."""

    __slots__ = ("_read", "_store")

    def __init__(self, store: MemoryStore) -> None:
        self._store = store
        self._read: dict[str, int] = {}

    def __enter__(self) -> Self:
        self._store._lock.acquire()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._store._lock.release()

    def read(self, keys: Iterable[str]) -> dict[str, Entry]:
        data = self._store._data
        out: dict[str, Entry] = {}
        for key in keys:
            item = data.get(key)
            if item is None:
                self._read[key] = 0
            else:
                self._read[key] = item[0]
                out[key] = Entry(item[0], item[1])
        return out

    def commit(self, writes: Mapping[str, Write], now: float) -> bool:
        store = self._store
        data = store._data
        for key, version in self._read.items():
            item = data.get(key)
            if (item[0] if item is not None else 0) != version:
                return False
        read = self._read
        for key, write in writes.items():
            if write.value is None:
                data.pop(key, None)
                version = 0
            else:
                version = next(store._versions)
                data[key] = (version, write.value, write.expires_at)
            if key in read:  # a second commit in this transaction checks against what this one wrote
                read[key] = version
        store._commits += 1
        if store._commits % _SWEEP_EVERY == 0:
            store._sweep(now)
        return True


class MemoryStore:
    """Records and versions in a dict; each transaction holds the store's lock, so a commit never loses."""

    durable = False

    def __init__(self) -> None:
        self._data: dict[str, tuple[int, object, float | None]] = {}
        self._versions = itertools.count(1)
        self._lock = threading.RLock()
        self._commits = 0

    def __repr__(self) -> str:
        return f"MemoryStore(<{len(self._data)} records>)"

    def __len__(self) -> int:
        return len(self._data)

    def transaction(self) -> _MemoryTransaction:
        return _MemoryTransaction(self)

    def _sweep(self, now: float) -> None:
        """Drop records past their expiry and grace; correctness never depends on it."""
        dead = [k for k, (_, _, exp) in self._data.items() if exp is not None and exp + TTL_GRACE < now]
        for key in dead:
            del self._data[key]
