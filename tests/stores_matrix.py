"""The store matrix: one world (flow, store, fake clock and transport) per store kind and orchestrator.

A helper module imported by tests/test_store_*.py (not a conftest). ``Matrix`` builds, per test,
``matrix.make_flow(kind, orchestrator="sync" | "async", **policy)`` → a ``World``: a fresh, empty store of
``kind`` — ``"memory"`` (``MemoryStore``, which serves both orchestrators), ``"sqlite"`` (a fresh file under
``tmp_path``; ``SqliteStore`` / ``AsyncSqliteStore``) or ``"redis"`` (the session ``redis-server`` of
``tests/redis_server.py``, database emptied with FLUSHDB once per test, a key prefix of its own per store;
``RedisStore`` / ``AsyncRedisStore``) — with an organization with MFA REQUIRED_FOR_ALL, two members with
verified phones and one without a phone, a ``FakeClock`` and a ``FakeTransport`` that checks, at every
delivery, that the code being delivered was committed to the store before (spec §10: admission is committed
before the transport is called).

``World.api`` is the adapter that lets a scenario be written once: its methods call ``MfaFlow`` directly, or
run ``AsyncMfaFlow``'s coroutine to completion on the world's own event loop (one loop per world, so the
asyncio Redis client and the SQLite executor threads stay on one loop).

Every store the flow sees is wrapped in a ``RecordingStore`` (right above the real store) that logs each
applied commit with what its transaction had read: tests use the log to check compare-and-set histories
and that a failed call applied nothing.
"""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable, Iterator, Mapping
from contextlib import AbstractAsyncContextManager, AbstractContextManager, asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, TypeVar

import pytest

from mfa_flow import (
    AsyncMfaFlow,
    AuthenticateResult,
    Event,
    Member,
    MfaFlow,
    Organization,
    Policy,
    PrimaryAuthResult,
    SendResult,
    SessionCheck,
)
from mfa_flow.crypto import Keyring
from mfa_flow.state import CodePhase, CodeState, GuardState, keys
from mfa_flow.stores import Entry, MemoryStore, Write
from mfa_flow.testing import FakeClock, FakeTransport
from mfa_flow.transports import SmsMessage
from tests.races import error_type

__all__ = [
    "MEMBER",
    "MEMBER_2",
    "NEW_PHONE",
    "NEW_PHONE_2",
    "ORCHESTRATORS",
    "ORG",
    "PHONE",
    "PHONELESS",
    "PHONE_2",
    "SECRET_KEY",
    "STORE_KINDS",
    "Api",
    "Commit",
    "Matrix",
    "RecordingStore",
    "StoreWrapper",
    "World",
    "any_transaction",
    "error_type",
    "ist_and_code",
    "matrix_fixture",
    "settle",
]

T = TypeVar("T")
Kind = Literal["memory", "sqlite", "redis"]
Orchestrator = Literal["sync", "async"]

STORE_KINDS: Final[tuple[Kind, ...]] = ("memory", "sqlite", "redis")
ORCHESTRATORS: Final[tuple[Orchestrator, ...]] = ("sync", "async")
#: A fixed test key (the durable stores need one; ≥ 32 bytes).
SECRET_KEY: Final = b"mfa-flow-store-matrix-test-key-0123456789"

ORG: Final = "organization-test-1"
MEMBER: Final = "member-test-1"  # verified linked phone PHONE
MEMBER_2: Final = "member-test-2"  # verified linked phone PHONE_2
PHONELESS: Final = "member-test-nophone"  # no phone, no TOTP: no active MFA factor
PHONE: Final = "+14155550123"
PHONE_2: Final = "+14155550124"
NEW_PHONE: Final = "+14155550130"  # linked to nobody
NEW_PHONE_2: Final = "+14155550131"


def ist_and_code(result: PrimaryAuthResult, transport: FakeTransport, member_id: str) -> tuple[str, str]:
    """A primary authentication that required MFA and sent the code automatically: (IST, the code sent)."""
    assert result.mfa_required is not None
    assert result.mfa_required.secondary_auth_initiated == "sms_otp"
    return result.intermediate_session_token, transport.last_code(member_id)


# ------------------------------------------------------------------------ one transaction on either store


async def settle(value: Any) -> Any:
    """``value``, awaited when it is awaitable: one call site for a sync and an async store's answers."""
    return await value if isinstance(value, Awaitable) else value


@asynccontextmanager
async def any_transaction(store: Any) -> AsyncIterator[Any]:
    """One transaction on a sync or an async store, driven the way AsyncMfaFlow drives stores."""
    scope = store.transaction()
    if isinstance(scope, AbstractAsyncContextManager):
        async with scope as tx:
            yield tx
    else:
        with scope as tx:
            yield tx


# ------------------------------------------------------------------------------------- the commit log


@dataclass(frozen=True)
class Commit:
    """One applied commit: what its transaction had read (None = absent) and what it wrote."""

    reads: dict[str, Entry | None]
    writes: dict[str, Write]


class _RecordingTx:
    def __init__(self, tx: Any, log: list[Commit]) -> None:
        self._tx = tx
        self._log = log
        self._reads: dict[str, Entry | None] = {}

    def _seen(self, wanted: list[str], got: Mapping[str, Entry]) -> None:
        for key in wanted:
            self._reads.setdefault(key, got.get(key))

    def read(self, keys: Iterable[str]) -> dict[str, Entry]:
        wanted = list(keys)
        got: dict[str, Entry] = self._tx.read(wanted)
        self._seen(wanted, got)
        return got

    def _logged(self, applied: object, writes: Mapping[str, Write]) -> bool:
        if applied:
            self._log.append(Commit(dict(self._reads), dict(writes)))
        return bool(applied)

    def commit(self, writes: Mapping[str, Write], now: float) -> bool:
        return self._logged(self._tx.commit(writes, now), writes)


class _AsyncRecordingTx(_RecordingTx):
    async def read(self, keys: Iterable[str]) -> dict[str, Entry]:  # type: ignore[override]
        wanted = list(keys)
        got: dict[str, Entry] = await self._tx.read(wanted)
        self._seen(wanted, got)
        return got

    async def commit(self, writes: Mapping[str, Write], now: float) -> bool:  # type: ignore[override]
        return self._logged(await self._tx.commit(writes, now), writes)


class StoreWrapper:
    """A store above ``inner`` (sync or async alike): ``transaction()`` hands the inner transaction scope to
    ``_sync_scope`` or ``_async_scope``, which a subclass defines to wrap what it yields."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.durable = bool(getattr(inner, "durable", True))

    def transaction(self) -> Any:
        scope = self.inner.transaction()
        if isinstance(scope, AbstractAsyncContextManager):
            return self._async_scope(scope)
        return self._sync_scope(scope)

    def _sync_scope(self, scope: AbstractContextManager[Any]) -> Any:
        raise NotImplementedError

    def _async_scope(self, scope: AbstractAsyncContextManager[Any]) -> Any:
        raise NotImplementedError


class RecordingStore(StoreWrapper):
    """A transparent wrapper that logs every applied commit (sync and async stores alike)."""

    def __init__(self, inner: Any) -> None:
        super().__init__(inner)
        self.log: list[Commit] = []

    def __repr__(self) -> str:
        return f"RecordingStore({self.inner!r})"

    @contextmanager
    def _sync_scope(self, scope: AbstractContextManager[Any]) -> Iterator[_RecordingTx]:
        with scope as tx:
            yield _RecordingTx(tx, self.log)

    @asynccontextmanager
    async def _async_scope(self, scope: AbstractAsyncContextManager[Any]) -> Any:
        async with scope as tx:
            yield _AsyncRecordingTx(tx, self.log)


# ------------------------------------------------------------------------------ the checking transport


class CheckingTransport(FakeTransport):
    """A FakeTransport that, at each delivery, checks that the code was committed to the store before.

    ``committed()`` lists every CodeState the store ever applied (from the commit log); a delivered message
    whose code matches none of them was sent without a persisted pending record: it goes to ``unpersisted``.
    """

    def __init__(self, keyring: Keyring, committed: Callable[[], Iterable[CodeState]]) -> None:
        super().__init__()
        self._keyring = keyring
        self._committed = committed
        self.unpersisted: list[SmsMessage] = []
        self.attempts: list[SmsMessage] = []  # every delivery attempt, rejected ones included

    def deliver(self, message: SmsMessage) -> None:
        self.attempts.append(message)
        if not any(self._keyring.verify(c.code_id, message.code, c.digest) for c in self._committed()):
            self.unpersisted.append(message)
        super().deliver(message)


# ------------------------------------------------------------------------------------------ the adapter


class Api:
    """The public methods of the flow as plain calls, whichever orchestrator runs underneath."""

    def __init__(self, flow: MfaFlow | AsyncMfaFlow, run: Callable[[Awaitable[Any]], Any] | None) -> None:
        self._flow = flow
        self._run = run

    def _call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        answer = getattr(self._flow, name)(*args, **kwargs)
        if self._run is not None:
            return self._run(answer)
        return answer

    def authenticate_primary(self, *args: Any, **kwargs: Any) -> PrimaryAuthResult:
        return self._call("authenticate_primary", *args, **kwargs)  # type: ignore[no-any-return]

    def send_sms_otp(self, *args: Any, **kwargs: Any) -> SendResult:
        return self._call("send_sms_otp", *args, **kwargs)  # type: ignore[no-any-return]

    def authenticate_sms_otp(self, *args: Any, **kwargs: Any) -> AuthenticateResult:
        return self._call("authenticate_sms_otp", *args, **kwargs)  # type: ignore[no-any-return]

    def authenticate_session(self, **kwargs: Any) -> SessionCheck:
        return self._call("authenticate_session", **kwargs)  # type: ignore[no-any-return]

    def record_mfa_factor(self, *args: Any, **kwargs: Any) -> AuthenticateResult:
        return self._call("record_mfa_factor", *args, **kwargs)  # type: ignore[no-any-return]

    def delete_mfa_phone_number(self, *args: Any, **kwargs: Any) -> Member:
        return self._call("delete_mfa_phone_number", *args, **kwargs)  # type: ignore[no-any-return]

    def get_member(self, *args: Any, **kwargs: Any) -> Member:
        return self._call("get_member", *args, **kwargs)  # type: ignore[no-any-return]

    def get_organization(self, *args: Any, **kwargs: Any) -> Organization:
        return self._call("get_organization", *args, **kwargs)  # type: ignore[no-any-return]


# -------------------------------------------------------------------------------------------- a world


@dataclass
class World:
    """A flow on one store kind and one orchestrator, with everything a test inspects."""

    kind: Kind
    orchestrator: Orchestrator
    flow: MfaFlow | AsyncMfaFlow
    api: Api
    clock: FakeClock
    transport: CheckingTransport
    events: list[Event]
    store: Any  # the real store (no wrapper)
    recorder: RecordingStore
    view: Any  # a synchronous store over the same data, for reading outside the flow
    secret_key: bytes
    snapshot_of: Callable[[], dict[str, int]]
    loop: asyncio.AbstractEventLoop | None = None
    closers: list[Callable[[], None]] = field(default_factory=list)

    # --- reading the store outside the flow -------------------------------------------------------

    def read(self, key: str) -> Entry | None:
        with self.view.transaction() as tx:
            return tx.read([key]).get(key)  # type: ignore[no-any-return]

    def failures(self, member_id: str = MEMBER) -> int:
        """The member's failure counter as stored (0 when the guard record was never written)."""
        entry = self.read(keys.guard(ORG, member_id))
        if entry is None:
            return 0
        assert isinstance(entry.value, GuardState)
        return entry.value.failures

    def live_code(self, member_id: str = MEMBER) -> CodeState | None:
        """The member's pending code record when it is live (sent, not expired), else None."""
        entry = self.read(keys.code(ORG, member_id))
        if entry is None:
            return None
        assert isinstance(entry.value, CodeState)
        code = entry.value
        return code if code.state is CodePhase.SENT and self.clock.now() < code.expires_at else None

    def snapshot(self) -> dict[str, int]:
        """Every record key with its version (what changed between two snapshots was written)."""
        return self.snapshot_of()

    # --- the usual steps ----------------------------------------------------------------------------

    def login(self, member_id: str = MEMBER) -> tuple[str, str]:
        """Primary authentication with the automatic send: (IST, code)."""
        return ist_and_code(self.api.authenticate_primary(ORG, member_id, "email_magic_link"), self.transport,
                            member_id)

    def session(self, member_id: str = MEMBER) -> str:
        """A fresh session after login and the right code."""
        ist, code = self.login(member_id)
        return self.api.authenticate_sms_otp(ORG, member_id, code, intermediate_session_token=ist).session_token

    def close(self) -> None:
        for closer in reversed(self.closers):
            closer()
        self.closers.clear()


# ------------------------------------------------------------------------------------------- the matrix


_worlds = itertools.count(1)


class Matrix:
    """Per-test factory of worlds, each on a fresh store; ``close()`` (the fixture's teardown) releases them all."""

    def __init__(self, request: pytest.FixtureRequest, tmp_path: Path) -> None:
        self._request = request
        self._tmp = tmp_path
        self._closers: list[Callable[[], None]] = []
        self._worlds: list[World] = []
        self._flushed = False

    # --- stores ----------------------------------------------------------------------------------

    def redis_url(self) -> str:
        return str(self._request.getfixturevalue("redis_url"))

    def _flush_redis(self) -> None:
        import redis

        client = redis.Redis.from_url(self.redis_url())
        try:
            client.flushdb()
        finally:
            client.close()

    def _store(self, kind: Kind, *, asynchronous: bool, redis_client: Callable[[Any], Any] | None = None,
               ) -> tuple[Any, Any, Callable[[], dict[str, int]]]:
        """(store, a sync view over the same data, a snapshot function)."""
        n = next(_worlds)
        if kind == "memory":
            memory = MemoryStore()
            return memory, memory, lambda: {k: v[0] for k, v in list(memory._data.items())}
        if kind == "sqlite":
            from mfa_flow.stores.sqlite import AsyncSqliteStore, SqliteStore

            path = self._tmp / f"store-{n}.sqlite3"
            sync_store = SqliteStore(path)
            self._closers.append(sync_store.close)
            store: Any = sync_store
            if asynchronous:
                store = AsyncSqliteStore(path)
                self._closers.append(store.close)
            return store, sync_store, partial_sqlite_snapshot(path)
        if kind == "redis":
            from mfa_flow.stores.redis import AsyncRedisStore, RedisStore

            url = self.redis_url()
            if not self._flushed:  # once per test; each store then has its own key prefix
                self._flush_redis()
                self._flushed = True
            prefix = f"mfa_flow:matrix-{n}:"
            sync_redis = RedisStore(url, prefix=prefix)
            self._closers.append(sync_redis.close)
            if redis_client is not None:  # the flow's store talks to Redis through the test's client
                import redis
                import redis.asyncio

                if asynchronous:
                    store = AsyncRedisStore(redis_client(redis.asyncio.Redis.from_url(url)), prefix=prefix)
                else:
                    client = redis_client(redis.Redis.from_url(url))
                    self._closers.append(client.close)
                    store = RedisStore(client, prefix=prefix)
            else:
                store = AsyncRedisStore(url, prefix=prefix) if asynchronous else sync_redis
            return store, sync_redis, partial_redis_snapshot(sync_redis.client, prefix)
        raise ValueError(f"unknown store kind {kind!r}")

    # --- worlds ----------------------------------------------------------------------------------

    def make_flow(
        self,
        kind: Kind,
        orchestrator: Orchestrator = "sync",
        *,
        wrap: Callable[[Any], Any] | None = None,
        inner_wrap: Callable[[Any], Any] | None = None,
        redis_client: Callable[[Any], Any] | None = None,
        before_send: Iterable[Callable[..., None]] = (),
        **policy: Any,
    ) -> World:
        """A world on ``kind`` driven by ``orchestrator``; every other keyword goes to ``Policy``.

        The flow runs on ``wrap(RecordingStore(inner_wrap(store)))``: ``wrap`` puts a test wrapper above the
        commit log (it sees what the flow asks), ``inner_wrap`` one below it (the log sees what the flow asked).
        ``redis_client(client)`` (Redis only) wraps the redis-py client the flow's store talks through.
        """
        asynchronous = orchestrator == "async"
        store, view, snapshot = self._store(kind, asynchronous=asynchronous, redis_client=redis_client)
        recorder = RecordingStore(inner_wrap(store) if inner_wrap is not None else store)
        flow_store = wrap(recorder) if wrap is not None else recorder
        keyring = Keyring(SECRET_KEY)
        clock = FakeClock()
        events: list[Event] = []
        transport = CheckingTransport(keyring, lambda: [
            w.value for c in list(recorder.log) for w in c.writes.values() if isinstance(w.value, CodeState)])
        loop: asyncio.AbstractEventLoop | None = None
        run: Callable[[Awaitable[Any]], Any] | None = None
        flow: MfaFlow | AsyncMfaFlow
        kwargs: dict[str, Any] = {"clock": clock, "transport": transport, "events": [events.append],
                                  "store": flow_store, "secret_key": SECRET_KEY, "policy": Policy(**policy),
                                  "before_send": tuple(before_send)}
        if asynchronous:
            loop = asyncio.new_event_loop()
            running = loop

            def run(awaitable: Awaitable[Any]) -> Any:
                assert asyncio.iscoroutine(awaitable)
                return running.run_until_complete(awaitable)

            flow = AsyncMfaFlow(**kwargs)
        else:
            flow = MfaFlow(**kwargs)
        world = World(kind, orchestrator, flow, Api(flow, run), clock, transport, events, store, recorder, view,
                      SECRET_KEY, snapshot, loop)
        if loop is not None:
            world.closers.append(partial_loop_close(loop, store))
        self._worlds.append(world)
        flow.directory.put_organization(Organization(ORG, organization_slug="acme", mfa_policy="REQUIRED_FOR_ALL"))
        for member_id, phone in ((MEMBER, PHONE), (MEMBER_2, PHONE_2)):
            flow.directory.put_member(Member(member_id, ORG, email_address=f"{member_id}@example.com",
                                             mfa_phone_number=phone, mfa_phone_number_verified=True))
        flow.directory.put_member(Member(PHONELESS, ORG, email_address=f"{PHONELESS}@example.com"))
        return world

    def close(self) -> None:
        """Release every world and store; then check that no world delivered an uncommitted code."""
        worlds = list(self._worlds)
        for world in reversed(worlds):
            world.close()
        for closer in reversed(self._closers):
            closer()
        self._worlds.clear()
        self._closers.clear()
        for world in worlds:
            assert not world.transport.unpersisted, (
                f"{world.kind}/{world.orchestrator}: {len(world.transport.unpersisted)} message(s) delivered "
                "without a committed pending code")


@pytest.fixture(name="matrix")
def matrix_fixture(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Matrix]:
    """The ``matrix`` fixture: the test's ``Matrix``, closed (and checked) at its end. A test module imports
    ``matrix_fixture`` to use it (the module is a helper, not a conftest or a registered plugin)."""
    built = Matrix(request, tmp_path)
    yield built
    built.close()


def partial_sqlite_snapshot(path: Path) -> Callable[[], dict[str, int]]:
    def snapshot() -> dict[str, int]:
        db = sqlite3.connect(path)
        try:
            return {str(k): int(v) for k, v in db.execute("SELECT key, version FROM records")}
        finally:
            db.close()

    return snapshot


def partial_redis_snapshot(client: Any, prefix: str) -> Callable[[], dict[str, int]]:
    def snapshot() -> dict[str, int]:
        out: dict[str, int] = {}
        for name in client.scan_iter(match=prefix + "*", count=1000):
            text = name.decode() if isinstance(name, bytes) else str(name)
            key = text[len(prefix):]
            if key == "version" or key.startswith("commit:"):  # the counter and commit receipts: no records
                continue
            raw = client.get(name)
            if raw is None:
                continue
            body = raw.decode() if isinstance(raw, bytes) else str(raw)
            out[key] = int(body.partition("|")[0])
        return out

    return snapshot


def partial_loop_close(loop: asyncio.AbstractEventLoop, store: Any) -> Callable[[], None]:
    def close() -> None:
        aclose: Callable[[], Coroutine[Any, Any, None]] | None = getattr(store, "aclose", None)
        if aclose is not None:
            loop.run_until_complete(aclose())
            client = getattr(store, "client", None)
            if client is not None and not getattr(store, "_owned", True):  # a test's client: ours to close
                loop.run_until_complete(client.aclose())
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()

    return close
