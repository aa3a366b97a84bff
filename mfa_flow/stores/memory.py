"""The embedded default store: a dict under one lock. Thread-safe, not durable."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterable, Mapping
from functools import partial
from typing import Self

from mfa_flow.stores._base import TTL_GRACE, Entry, Write

__all__ = ["MemoryStore"]

#: Expiring records are filed by the minute their grace ends; a commit drops the minutes that have passed,
#: so memory is reclaimed in small steps and no call ever pays for a scan of the whole store.
_BUCKET_SECONDS = 60
#: Builds an Entry in C from (version, value): a NamedTuple's own ``__new__`` is a Python function.
_new_entry: Callable[[tuple[int, object]], Entry] = partial(tuple.__new__, Entry)


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
        read = self._read
        out: dict[str, Entry] = {}
        for key in keys:
            item = data.get(key)
            if item is None:
                read[key] = 0
            else:
                read[key] = item[0]
                out[key] = _new_entry(item[:2])
        return out

    def commit(self, writes: Mapping[str, Write], now: float) -> bool:
        store = self._store
        data = store._data
        for key, version in self._read.items():
            item = data.get(key)
            if (item[0] if item is not None else 0) != version:
                return False
        read = self._read
        buckets = store._buckets
        for key, (value, expires_at) in writes.items():
            if value is None:
                data.pop(key, None)
                version = 0
            else:
                version = next(store._versions)
                data[key] = (version, value, expires_at)
                if expires_at is not None:  # filed by the minute its grace ends, for the sweep
                    bucket = int((expires_at + TTL_GRACE) // _BUCKET_SECONDS)
                    filed = buckets.get(bucket)
                    if filed is None:
                        buckets[bucket] = [key]
                    else:
                        filed.append(key)
            if key in read:  # a second commit in this transaction checks against what this one wrote
                read[key] = version
        if now >= store._next_sweep:
            store._sweep(now)
        return True


class MemoryStore:
    """Records and versions in a dict; each transaction holds the store's lock, so a commit never loses."""

    durable = False

    def __init__(self) -> None:
        self._data: dict[str, tuple[int, object, float | None]] = {}
        self._versions = itertools.count(1)
        self._lock = threading.RLock()
        self._buckets: dict[int, list[str]] = {}  # minute its grace ends -> keys written with such an expiry
        self._next_sweep = 0.0

    def __repr__(self) -> str:
        return f"MemoryStore(<{len(self._data)} records>)"

    def __len__(self) -> int:
        return len(self._data)

    def transaction(self) -> _MemoryTransaction:
        return _MemoryTransaction(self)

    def _sweep(self, now: float) -> None:
        """Drop records past their expiry and grace, minute by minute; correctness never depends on it."""
        current = int(now // _BUCKET_SECONDS)
        self._next_sweep = (current + 1) * _BUCKET_SECONDS
        for bucket in [b for b in self._buckets if b < current]:
            for key in self._buckets.pop(bucket):
                item = self._data.get(key)
                # rewritten since with a later expiry (or none): it stays, filed again under its own minute
                if item is not None and item[2] is not None and item[2] + TTL_GRACE < now:
                    del self._data[key]
