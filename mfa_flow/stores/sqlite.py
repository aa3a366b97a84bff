"""SQLite stores (docs/concepts.md): one database file that several processes may share.

WAL, ``BEGIN IMMEDIATE`` for every transaction (each one may write), a busy timeout (5 s unless told),
and a schema the library creates and migrates itself. ``SqliteStore`` runs the SQL inline;
``AsyncSqliteStore`` runs the very same operations in a worker thread. A busy database is an exception
like any other store failure: the flow answers ``internal_server_error`` and changes nothing.

Rows hold ``encode(record)`` (codes only as HMACs, tokens only as the SHA-256 in the key), a version from
a counter row that survives deletion, and the record's expiry. An occasional purge drops rows past
their expiry and ``TTL_GRACE``; correctness never depends on it, because the flow checks expiry itself.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractAsyncContextManager, contextmanager
from contextvars import ContextVar, Token
from types import TracebackType
from typing import Final, Self, TypeVar

from mfa_flow.errors import ConfigurationError, StoreFailure
from mfa_flow.stores._base import TTL_GRACE, Entry, Write
from mfa_flow.stores._codec import decode, encode

__all__ = ["AsyncSqliteStore", "SqliteStore"]

T = TypeVar("T")

#: The schema this library writes; ``MIGRATIONS[n]`` takes a database from version n to n + 1.
SCHEMA_VERSION: Final = 2
#: A commit in this many (per store object) also drops the rows past their expiry and grace.
PURGE_EVERY: Final = 1024
_MAX_IDLE: Final = 8  # idle connections kept per store object
_CHUNK: Final = 500  # keys per ``IN (...)`` list, well under SQLite's host-parameter limit


def _create_v1(db: sqlite3.Connection) -> None:
    """Version 0 (an empty database) → 1: records with versions, the meta table, the version counter."""
    db.execute("CREATE TABLE meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL)")
    db.execute("CREATE TABLE records (key TEXT PRIMARY KEY, version INTEGER NOT NULL, value TEXT NOT NULL)"
               " WITHOUT ROWID")
    db.execute("INSERT INTO meta (name, value) VALUES ('schema_version', 1), ('version_counter', 0)")


def _add_expiry(db: sqlite3.Connection) -> None:
    """1 → 2: each record carries its expiry, indexed for the purge."""
    db.execute("ALTER TABLE records ADD COLUMN expires_at REAL")
    db.execute("CREATE INDEX records_expires_at ON records (expires_at)")


MIGRATIONS: Final[tuple[Callable[[sqlite3.Connection], None], ...]] = (_create_v1, _add_expiry)
assert len(MIGRATIONS) == SCHEMA_VERSION

#: The ids of the stores (cores) with a transaction open in this thread or task: nesting one would deadlock.
_OPEN: ContextVar[frozenset[int]] = ContextVar("mfa_flow_sqlite_open", default=frozenset())


def _schema_version(db: sqlite3.Connection) -> int:
    if db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").fetchone() is None:
        return 0
    row = db.execute("SELECT value FROM meta WHERE name = 'schema_version'").fetchone()
    if row is None or not isinstance(row[0], int):
        raise ConfigurationError("path: the database has a meta table but no schema_version; not an mfa_flow store")
    return row[0]


def _chunks(keys: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(keys), _CHUNK):
        yield keys[start:start + _CHUNK]


#: ``UPDATE ... RETURNING`` (SQLite 3.35): the counter moved and read in one statement.
_RETURNING: Final = sqlite3.sqlite_version_info >= (3, 35, 0)


def _in(n: int) -> str:
    return ",".join("?" * n)


class _SqliteCore:
    """One database file: opening and migrating it, a pool of connections, and the transactions on them."""

    def __init__(self, path: str | os.PathLike[str], busy_timeout: float) -> None:
        if not isinstance(path, str | os.PathLike):
            raise ConfigurationError("path: must be a str or os.PathLike naming a file")
        name = os.fspath(path)
        if not isinstance(name, str) or name in ("", ":memory:") or name.startswith("file:"):
            raise ConfigurationError("path: must name a database file, not '', ':memory:' or a 'file:' URI (an "
                                     "in-memory database is private to one connection; use MemoryStore)")
        if isinstance(busy_timeout, bool) or not isinstance(busy_timeout, int | float) \
                or not math.isfinite(busy_timeout) or busy_timeout < 0:
            raise ConfigurationError("busy_timeout: must be a finite number of seconds >= 0")
        self.path = name
        self.busy_timeout = float(busy_timeout)
        self._idle: list[sqlite3.Connection] = []
        self._pool_lock = threading.Lock()
        self._closed = False
        self._pid = os.getpid()
        self._forked: list[sqlite3.Connection] = []  # inherited across fork: never used, never closed
        self._commits = itertools.count(1)
        try:
            db = self._connect()
        except sqlite3.Error as exc:
            raise ConfigurationError(f"path: cannot open the SQLite store {name!r}: {exc}") from exc
        try:
            self._migrate(db)
        except BaseException:
            db.close()
            raise
        self._idle.append(db)

    # --- connections ---------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False)
        try:
            db.execute(f"PRAGMA busy_timeout = {round(self.busy_timeout * 1000)}")
            db.execute("PRAGMA synchronous = NORMAL")
        except BaseException:
            db.close()
            raise
        return db

    def _migrate(self, db: sqlite3.Connection) -> None:
        """WAL, then every migration this database lacks, in one ``BEGIN IMMEDIATE`` transaction."""
        try:
            if str(db.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
                db.execute("PRAGMA journal_mode = WAL")
            db.execute("BEGIN IMMEDIATE")
            try:
                version = _schema_version(db)
                if version > SCHEMA_VERSION:
                    raise ConfigurationError(
                        f"path: {self.path!r} has schema version {version}, newer than this mfa_flow knows "
                        f"({SCHEMA_VERSION}); upgrade mfa_flow")
                for step in MIGRATIONS[version:]:
                    step(db)
                db.execute("UPDATE meta SET value = ? WHERE name = 'schema_version'", (SCHEMA_VERSION,))
                db.execute("COMMIT")
            finally:
                if db.in_transaction:
                    db.execute("ROLLBACK")
        except sqlite3.Error as exc:
            raise ConfigurationError(f"path: cannot open the SQLite store {self.path!r}: {exc}") from exc

    def _acquire(self) -> sqlite3.Connection:
        with self._pool_lock:
            if self._closed:
                raise StoreFailure("internal_server_error", "store: the SQLite store is closed")
            if os.getpid() != self._pid:  # a forked child must not touch its parent's connections
                self._pid = os.getpid()
                self._forked.extend(self._idle)
                self._idle.clear()
            if self._idle:
                return self._idle.pop()
        return self._connect()

    def release(self, db: sqlite3.Connection, *, broken: bool = False) -> None:
        """Back to the pool, rolled back; a connection that cannot roll back is closed instead."""
        if not broken:
            try:
                if db.in_transaction:
                    db.execute("ROLLBACK")
            except sqlite3.Error:
                broken = True
        with self._pool_lock:
            if os.getpid() != self._pid:  # opened before a fork: leave it to the parent
                self._forked.append(db)
                return
            keep = not broken and not self._closed and len(self._idle) < _MAX_IDLE
            if keep:
                self._idle.append(db)
        if not keep:
            db.close()

    def close(self) -> None:
        """Close the idle connections; those in a transaction are closed when it ends."""
        with self._pool_lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for db in idle:
            db.close()

    # --- transactions ----------------------------------------------------------------------------

    def enter(self) -> Token[frozenset[int]]:
        """Mark a transaction open in this thread or task; a nested one is refused rather than deadlocked."""
        current = _OPEN.get()
        if id(self) in current:
            raise RuntimeError("SQLite store: a transaction is already open here; nesting one would deadlock")
        return _OPEN.set(current | {id(self)})

    @staticmethod
    def leave(token: Token[frozenset[int]]) -> None:
        _OPEN.reset(token)

    def open(self, since: float) -> _SqliteTransaction:
        """A pooled connection in ``BEGIN IMMEDIATE``, waiting for the write lock until ``busy_timeout``
        seconds after ``since`` (a ``time.monotonic()``, taken when the call began): a call waits that long in all."""
        db = self._acquire()
        left = self.busy_timeout - (time.monotonic() - since)
        try:
            if left < self.busy_timeout - 0.001:  # part of the wait went on this process's own turn
                db.execute(f"PRAGMA busy_timeout = {max(0, round(left * 1000))}")
                try:
                    db.execute("BEGIN IMMEDIATE")
                finally:
                    db.execute(f"PRAGMA busy_timeout = {round(self.busy_timeout * 1000)}")
            else:
                db.execute("BEGIN IMMEDIATE")
        except BaseException:
            self.release(db)
            raise
        return _SqliteTransaction(self, db)

    def commit(self, db: sqlite3.Connection, seen: Mapping[str, int], writes: Mapping[str, Write],
               now: float, *, recheck: bool) -> dict[str, int] | None:
        """Write and ``COMMIT``; the new versions, or None (nothing applied). Reads made in this ``BEGIN
        IMMEDIATE`` transaction cannot have changed (it holds the write lock since before them): the versions
        are checked again only when ``recheck`` says some were read in an earlier one."""
        upserts = [(key, encode(w.value), None if w.expires_at is None else float(w.expires_at))
                   for key, w in writes.items() if w.value is not None]
        if recheck:
            current = self.versions(db, list(seen))
            if any(current.get(key, 0) != version for key, version in seen.items()):
                return None
        if next(self._commits) % PURGE_EVERY == 0:
            db.execute("DELETE FROM records WHERE expires_at < ?", (now - TTL_GRACE,))
        new = {key: 0 for key, w in writes.items() if w.value is None}
        for chunk in _chunks(list(new)):  # one statement per chunk, not one per key
            db.execute(f"DELETE FROM records WHERE key IN ({_in(len(chunk))})", chunk)  # noqa: S608 - only ? marks
        if upserts:
            top = self._take_versions(db, len(upserts))
            rows = [(key, version, text, expires)
                    for version, (key, text, expires) in enumerate(upserts, start=top - len(upserts) + 1)]
            for start in range(0, len(rows), _CHUNK // 4):
                part = rows[start:start + _CHUNK // 4]
                db.execute("INSERT OR REPLACE INTO records (key, version, value, expires_at) VALUES "  # noqa: S608
                           + ",".join(["(?, ?, ?, ?)"] * len(part)), [field for row in part for field in row])
            new.update((row[0], row[1]) for row in rows)
        db.execute("COMMIT")
        return new

    @staticmethod
    def _take_versions(db: sqlite3.Connection, n: int) -> int:
        """Reserve ``n`` fresh versions from the counter; the highest one."""
        if _RETURNING:
            return int(db.execute("UPDATE meta SET value = value + ? WHERE name = 'version_counter' RETURNING value",
                                  (n,)).fetchone()[0])
        db.execute("UPDATE meta SET value = value + ? WHERE name = 'version_counter'", (n,))
        return int(db.execute("SELECT value FROM meta WHERE name = 'version_counter'").fetchone()[0])

    @staticmethod
    def read(db: sqlite3.Connection, keys: list[str]) -> dict[str, Entry]:
        found: dict[str, Entry] = {}
        for chunk in _chunks(keys):
            query = f"SELECT key, version, value FROM records WHERE key IN ({_in(len(chunk))})"  # noqa: S608 - only ? marks
            for key, version, text in db.execute(query, chunk):
                found[key] = Entry(version, decode(text))
        return found

    @staticmethod
    def versions(db: sqlite3.Connection, keys: list[str]) -> dict[str, int]:
        found: dict[str, int] = {}
        for chunk in _chunks(keys):
            query = f"SELECT key, version FROM records WHERE key IN ({_in(len(chunk))})"  # noqa: S608 - only ? marks
            found.update(db.execute(query, chunk).fetchall())
        return found


class _SqliteTransaction:
    """One transaction on one pooled connection. Every operation holds the transaction's lock, so ending it
    (ROLLBACK, back to the pool) waits for an operation an abandoned asynchronous caller left running."""

    __slots__ = ("_core", "_db", "_ended", "_lock", "_seen", "_stale")

    def __init__(self, core: _SqliteCore, db: sqlite3.Connection) -> None:
        self._core = core
        self._db = db
        self._seen: dict[str, int] = {}
        self._stale = False  # some of _seen was read before the current BEGIN IMMEDIATE (after a commit)
        self._ended = False
        self._lock = threading.Lock()

    def read(self, keys: Iterable[str]) -> dict[str, Entry]:
        wanted = list(dict.fromkeys(keys))
        with self._lock:
            db = self._live()
            try:
                found = self._core.read(db, wanted)
            except BaseException:
                self._abort()
                raise
            for key in wanted:
                self._seen[key] = found[key].version if key in found else 0
            return found

    def commit(self, writes: Mapping[str, Write], now: float) -> bool:
        with self._lock:
            db = self._live()
            try:
                new = self._core.commit(db, self._seen, writes, now, recheck=self._stale)
            except BaseException:
                self._abort()
                raise
            if new is None:
                self._abort()
                return False
            self._seen.update((key, new[key]) for key in self._seen.keys() & new.keys())
            self._stale = bool(self._seen)  # what was read so far now predates the next transaction
            return True

    def end(self) -> None:
        """Roll back whatever was not committed and give the connection back; idempotent."""
        with self._lock:
            if not self._ended:
                self._ended = True
                self._core.release(self._db)

    def _live(self) -> sqlite3.Connection:
        if self._ended:
            raise RuntimeError("SQLite store: the transaction is over")
        if not self._db.in_transaction:  # after a commit (or a lost one), the next operation begins anew
            self._db.execute("BEGIN IMMEDIATE")
        return self._db

    def _abort(self) -> None:
        """Leave the connection usable after a failure: roll back, or drop it if even that fails."""
        try:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
        except sqlite3.Error:
            self._ended = True
            self._core.release(self._db, broken=True)


class _SqliteStoreFront:
    """What both SQLite stores share: the file, the timeout, a repr without secrets, closing."""

    _core: _SqliteCore

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._core.path!r})"

    @property
    def path(self) -> str:
        return self._core.path

    @property
    def busy_timeout(self) -> float:
        return self._core.busy_timeout

    def close(self) -> None:
        self._core.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SqliteStore(_SqliteStoreFront):
    """Records in a SQLite file that several processes may share (WAL, ``BEGIN IMMEDIATE``). Durable.

    Each transaction holds the database's write lock from its start to its end, so a commit never loses
    to another writer; within a process, threads take turns on the store's lock rather than polling
    SQLite's. A transaction that cannot start within ``busy_timeout`` seconds (waiting for this process's
    other transactions and for other processes together) raises ``sqlite3.OperationalError``; the flow
    answers ``internal_server_error`` and changes nothing. Connections are pooled (``close()`` ends them).
    """

    durable = True

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout: float = 5.0) -> None:
        self._core = _SqliteCore(path, busy_timeout)
        self._lock = threading.RLock()  # reentrant so a misuse fails after busy_timeout, never hangs


    @contextmanager
    def transaction(self) -> Iterator[_SqliteTransaction]:
        token = self._core.enter()
        try:
            since = time.monotonic()
            if not self._lock.acquire(timeout=self._core.busy_timeout):
                raise sqlite3.OperationalError("database is locked (this process's other transactions on the "
                                               "store outlasted busy_timeout)")
            try:
                tx = self._core.open(since)
                try:
                    yield tx
                finally:
                    tx.end()
            finally:
                self._lock.release()
        finally:
            self._core.leave(token)



async def _in_thread(fn: Callable[..., T], *args: object) -> T:
    return await asyncio.get_running_loop().run_in_executor(None, fn, *args)


def _end_abandoned(future: asyncio.Future[_SqliteTransaction]) -> None:
    if not future.cancelled() and future.exception() is None:
        future.result().end()


class _AsyncSqliteTransaction:
    """The transaction's operations, awaited; each runs in a worker thread."""

    __slots__ = ("_tx",)

    def __init__(self, tx: _SqliteTransaction) -> None:
        self._tx = tx

    async def read(self, keys: Iterable[str]) -> dict[str, Entry]:
        return await _in_thread(self._tx.read, list(keys))

    async def commit(self, writes: Mapping[str, Write], now: float) -> bool:
        return await _in_thread(self._tx.commit, dict(writes), now)


class _AsyncScope(AbstractAsyncContextManager[_AsyncSqliteTransaction]):
    """``async with store.transaction() as tx``: the loop's turn on the store, then BEGIN IMMEDIATE in a thread."""

    def __init__(self, core: _SqliteCore, turn: asyncio.Lock) -> None:
        self._core = core
        self._turn = turn
        self._tx: _SqliteTransaction | None = None
        self._token: Token[frozenset[int]] | None = None

    async def __aenter__(self) -> _AsyncSqliteTransaction:
        token = self._core.enter()
        try:
            since = time.monotonic()
            try:
                async with asyncio.timeout(self._core.busy_timeout):
                    await self._turn.acquire()
            except TimeoutError:
                raise sqlite3.OperationalError("database is locked (this loop's other transactions on the store "
                                               "outlasted busy_timeout)") from None
            try:
                opening = asyncio.get_running_loop().run_in_executor(None, self._core.open, since)
                try:
                    tx = await asyncio.shield(opening)
                except asyncio.CancelledError:  # the thread still opens it: end it once it has
                    opening.add_done_callback(_end_abandoned)
                    raise
            except BaseException:
                self._turn.release()
                raise
        except BaseException:
            self._core.leave(token)
            raise
        self._tx, self._token = tx, token
        return _AsyncSqliteTransaction(tx)

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        tx, token = self._tx, self._token
        assert tx is not None
        assert token is not None
        try:
            await _in_thread(tx.end)  # cancelled or not, the thread rolls back and frees the connection
        finally:
            self._turn.release()
            self._core.leave(token)


class AsyncSqliteStore(_SqliteStoreFront):
    """``SqliteStore`` for ``AsyncMfaFlow``: the same SQL, run in worker threads so the loop never blocks.

    Within an event loop, transactions on one store take turns (an ``asyncio.Lock``): they would queue on
    SQLite's write lock anyway, and waiting there would tie up the executor's threads. Use one store
    object per database file and process.
    """

    durable = True
    asynchronous = True  # MfaFlow refuses it; AsyncMfaFlow awaits it

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout: float = 5.0) -> None:
        self._core = _SqliteCore(path, busy_timeout)
        self._turns: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = \
            weakref.WeakKeyDictionary()
        self._turns_lock = threading.Lock()


    def transaction(self) -> AbstractAsyncContextManager[_AsyncSqliteTransaction]:
        """An async context manager; call it in a running event loop (``SqliteStore`` is the synchronous twin)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError("AsyncSqliteStore: no running event loop; use AsyncMfaFlow, or SqliteStore with "
                               "MfaFlow") from None
        with self._turns_lock:
            turn = self._turns.get(loop)
            if turn is None:
                turn = self._turns[loop] = asyncio.Lock()
        return _AsyncScope(self._core, turn)

