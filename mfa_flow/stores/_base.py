"""The store contract (docs/concepts.md): versioned records, one atomic compare-and-set per public call."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from typing import NamedTuple, Protocol, runtime_checkable

__all__ = ["AsyncStore", "AsyncTransaction", "Entry", "Store", "Transaction", "Write"]

#: Seconds an expired record is kept past its expiry before a store may drop it (its TTL grace).
TTL_GRACE = 60.0


class Entry(NamedTuple):
    """A record as read: ``version`` never repeats, also across delete and re-create."""

    version: int
    value: object


class Write(NamedTuple):
    """``value`` None deletes; ``expires_at`` (UNIX seconds) lets the store drop the record later."""

    value: object | None
    expires_at: float | None = None


@runtime_checkable
class Transaction(Protocol):
    def read(self, keys: Iterable[str]) -> dict[str, Entry]:
        """The current entries of ``keys``; absent keys are missing from the answer."""
        ...

    def commit(self, writes: Mapping[str, Write], now: float) -> bool:
        """Apply every write at once iff no key read in this transaction changed since; else False.

        Keys written but never read are written blind: the flow does that only for records
        under a fresh random token.
        """
        ...


@runtime_checkable
class Store(Protocol):
    #: False only for stores that lose their state with the process (then a random key is allowed).
    durable: bool

    def transaction(self) -> AbstractContextManager[Transaction]:
        """A scope for one read-decide-commit pass; stores that can, lock for its duration."""
        ...


@runtime_checkable
class AsyncTransaction(Protocol):
    async def read(self, keys: Iterable[str]) -> dict[str, Entry]: ...

    async def commit(self, writes: Mapping[str, Write], now: float) -> bool: ...


@runtime_checkable
class AsyncStore(Protocol):
    """A store for AsyncMfaFlow: the same contract, awaited. ``asynchronous = True`` tells MfaFlow
    to refuse it at construction rather than fail on the first call."""

    durable: bool
    asynchronous: bool

    def transaction(self) -> AbstractAsyncContextManager[AsyncTransaction]: ...
