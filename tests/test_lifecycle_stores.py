"""The lifecycle on every store (the lifecycle issue): revocation, the session list and unlock on MemoryStore,
SQLite and Redis, sync and async (tests/stores_matrix.py); a session revoked by one process refused by another
sharing the SQLite file or the Redis database; and the store round trips of a login, a revoke and a revoke-all.
"""

from __future__ import annotations

import multiprocessing
import os
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from mfa_flow import AuthenticateResult, MfaError, MfaFlow, Policy
from mfa_flow.stores import Entry, MemoryStore, RedisStore, SqliteStore, Write
from mfa_flow.testing import FakeClock, FakeTransport
from tests.helpers_rules import wrong
from tests.stores_matrix import (
    MEMBER,
    MEMBER_2,
    ORCHESTRATORS,
    ORG,
    STORE_KINDS,
    Matrix,
    StoreWrapper,
    matrix_fixture,  # noqa: F401 - the ``matrix`` fixture
)
from tests.test_bench_stores import PER_CALL
from tests.test_lifecycle import (
    ROOMY,
    assert_revoked,
    call,
    lock,
    sid,
    signed_in,
    step_up_code,
    wrongs_until_locked,
)
from tests.test_redis_store import CountingRedis
from tests.test_sqlite_store import login, make_flow

PREFIX = "lifecycle:"
SESSION_RECORDS = ("session:", "sid:", "sessions:")


# ------------------------------------------------------------------------------------------ on every store


@pytest.mark.parametrize("orchestrator", ORCHESTRATORS)
@pytest.mark.parametrize("kind", STORE_KINDS)
def test_revoke_list_and_unlock_hold_on_every_store(matrix: Matrix, kind: Any, orchestrator: Any) -> None:
    w = matrix.make_flow(kind, orchestrator, lockout_threshold=3, **ROOMY)
    first = signed_in(w)
    w.clock.advance(10)
    second = signed_in(w)
    other = signed_in(w, MEMBER_2)
    assert [s.member_session_id for s in call(w, "list_member_sessions", ORG, MEMBER)] == [sid(second), sid(first)]

    step_up_code(w, first)
    assert w.live_code() is not None
    call(w, "revoke_session", session_token=first.session_token)
    assert w.live_code() is None  # the step-up code bound to it died in the same commit
    assert_revoked(w, first.session_token)
    call(w, "revoke_session", member_session_id=sid(second))
    assert_revoked(w, second.session_token)
    assert call(w, "list_member_sessions", ORG, MEMBER) == []
    assert call(w, "authenticate_session", session_token=other.session_token).member_session.member_id == MEMBER_2
    call(w, "revoke_session", member_id=MEMBER_2)
    assert_revoked(w, other.session_token, MEMBER_2)
    assert [e.data["member_session_id"] for e in w.events if e.name == "session.revoked"] == [
        sid(first), sid(second), sid(other)]
    assert [key for key in w.snapshot() if key.startswith(SESSION_RECORDS)] == []  # nothing of them is left

    lock(w)
    member = call(w, "unlock_member", ORG, MEMBER)
    assert (member.is_locked, member.lock_expires_at) == (False, None)
    assert w.failures() == 0
    assert wrongs_until_locked(w) == ["otp_code_not_found", "otp_code_not_found", "user_lock_limit_reached"]


# ------------------------------------------------------------------------------------------ across processes


def revoke_in_process(open_store: Callable[[], Any], now: float, revoked_there: str, to_revoke: str,
                      results: Any) -> None:
    """Another process on the same SQLite file or Redis: what it sees of a session revoked here, then it
    revokes one by its member_session_id."""
    try:
        with open_store() as own_store:
            flow = make_flow(own_store, FakeClock(now))
            try:
                flow.authenticate_session(session_token=revoked_there)
                seen = "ok"
            except MfaError as refusal:
                seen = refusal.error_type
            flow.revoke_session(member_session_id=to_revoke)
            listed = [s.member_session_id for s in flow.list_member_sessions(ORG, MEMBER)]
        results.put((os.getpid(), seen, listed))
    except BaseException as exc:
        results.put((os.getpid(), repr(exc), []))


@pytest.fixture(params=["sqlite", "redis"])
def shared_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], Any]]:
    """How a process opens the shared store: the SQLite file, or the Redis database (emptied) with one prefix."""
    if request.param == "sqlite":
        yield partial(SqliteStore, str(tmp_path / "shared.db"))
    else:
        request.getfixturevalue("redis_db")
        yield partial(RedisStore, request.getfixturevalue("redis_url"), prefix=PREFIX)


def session_of(flow: MfaFlow, transport: FakeTransport) -> AuthenticateResult:
    ist, code = login(flow, transport)
    return flow.authenticate_sms_otp(ORG, MEMBER, code, intermediate_session_token=ist)


@pytest.mark.timeout(120)
def test_a_session_revoked_by_one_process_is_refused_by_another(shared_store: Callable[[], Any]) -> None:
    clock, transport = FakeClock(), FakeTransport()
    with shared_store() as store:
        flow = make_flow(store, clock, transport)
        first, second, third = (session_of(flow, transport) for _ in range(3))
        flow.revoke_session(session_token=first.session_token)
        context = multiprocessing.get_context("spawn")
        results = context.Queue()
        process = context.Process(target=revoke_in_process,
                                  args=(shared_store, clock.now(), first.session_token, sid(second), results))
        process.start()
        try:
            pid, seen, listed = results.get(timeout=100)
        finally:
            process.join(10)
            if process.is_alive():
                process.kill()
                process.join()
        assert process.exitcode == 0
        assert pid != os.getpid()
        assert (seen, listed) == ("session_not_found", [sid(third)])
        with pytest.raises(MfaError) as caught:
            flow.authenticate_session(session_token=second.session_token)
        assert caught.value.error_type == "session_not_found"
        assert flow.authenticate_session(session_token=third.session_token).step_up_required is False
        assert [s.member_session_id for s in flow.list_member_sessions(ORG, MEMBER)] == [sid(third)]


# --------------------------------------------------------------------------------------------- round trips


class _CountingTx:
    def __init__(self, tx: Any, trips: Counter[str]) -> None:
        self._tx = tx
        self._trips = trips

    def read(self, names: list[str]) -> dict[str, Entry]:
        self._trips["reads"] += 1
        return self._tx.read(names)  # type: ignore[no-any-return]

    def commit(self, writes: dict[str, Write], now: float) -> bool:
        self._trips["commits"] += 1
        return bool(self._tx.commit(writes, now))


class CountingStore(StoreWrapper):
    """Counts transactions, reads and commits; a store round trip is one read or one commit."""

    def __init__(self, inner: Any) -> None:
        super().__init__(inner)
        self.trips: Counter[str] = Counter()

    @contextmanager
    def _sync_scope(self, scope: Any) -> Iterator[_CountingTx]:
        with scope as tx:
            self.trips["transactions"] += 1
            yield _CountingTx(tx, self.trips)


@pytest.fixture(params=STORE_KINDS)
def counted(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Any, Callable[[], Counter[str]]]]:
    """(a real store, what its backend did so far: Redis commands, or SQL statements by their first word)."""
    kind = str(request.param)
    if kind == "memory":
        yield MemoryStore(), Counter
    elif kind == "sqlite":
        statements: Counter[str] = Counter()
        with SqliteStore(tmp_path / "trips.db") as sqlite_store:
            for db in sqlite_store._core._idle:  # one thread: the one pooled connection, traced
                db.set_trace_callback(lambda sql: statements.update([sql.split(None, 1)[0].upper()]))
            yield sqlite_store, lambda: Counter(statements)
    else:
        request.getfixturevalue("redis_db")
        client = CountingRedis.from_url(request.getfixturevalue("redis_url"))
        try:
            yield RedisStore(client, prefix=PREFIX), lambda: Counter(client.commands)
        finally:
            client.close()


#: Store round trips (transactions, reads, commits) of each lifecycle call; a login's are tests/test_bench_stores.py's.
LIFECYCLE_TRIPS = {
    "revoke by session_token": (1, 2, 1),  # the session; then its member's index and code, the session again
    "revoke by member_session_id": (1, 3, 1),  # its reference first
    "revoke all, 1 session": (1, 2, 1),  # the index; then what it names
    "revoke all, 3 sessions": (1, 2, 1),
    "list_member_sessions": (1, 2, 0),
    "unlock_member": (1, 1, 1),
}


def test_round_trips_of_a_login_a_revoke_and_a_revoke_all(counted: tuple[Any, Callable[[], Counter[str]]]) -> None:
    """A login costs what it did before sessions were indexed; a revoke-all reads the member's index, never
    scans: its reads are the same for 1 and 3 sessions (the figures are printed with -s)."""
    inner, backend = counted
    store = CountingStore(inner)
    clock, transport = FakeClock(), FakeTransport()
    flow = make_flow(store, clock, transport, policy=Policy(lockout_threshold=1, **ROOMY))  # type: ignore[arg-type]
    trips: dict[str, tuple[int, int, int]] = {}
    commands: dict[str, Counter[str]] = {}

    def measure(name: str, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        before, seen = Counter(store.trips), backend()
        result = method(*args, **kwargs)
        diff = store.trips - before
        trips[name] = (diff["transactions"], diff["reads"], diff["commits"])
        commands[name] = backend() - seen
        return result

    session_of(flow, transport)  # warm: the Redis script is cached, the SQLite schema read
    flow.revoke_session(member_id=MEMBER)

    ist = measure("authenticate_primary", flow.authenticate_primary, ORG, MEMBER, "email_magic_link"
                  ).intermediate_session_token
    one = measure("authenticate_sms_otp", flow.authenticate_sms_otp, ORG, MEMBER, transport.last_code(MEMBER),
                  intermediate_session_token=ist)
    measure("revoke by session_token", flow.revoke_session, session_token=one.session_token)
    measure("revoke by member_session_id", flow.revoke_session, member_session_id=sid(session_of(flow, transport)))
    session_of(flow, transport)
    measure("revoke all, 1 session", flow.revoke_session, member_id=MEMBER)
    for _ in range(3):
        session_of(flow, transport)
    listed = measure("list_member_sessions", flow.list_member_sessions, ORG, MEMBER)
    assert len(listed) == 3
    measure("revoke all, 3 sessions", flow.revoke_session, member_id=MEMBER)
    ist = flow.authenticate_primary(ORG, MEMBER, "email_magic_link").intermediate_session_token
    with pytest.raises(MfaError):  # a threshold of 1: locked
        flow.authenticate_sms_otp(ORG, MEMBER, wrong(transport.last_code(MEMBER)), intermediate_session_token=ist)
    assert measure("unlock_member", flow.unlock_member, ORG, MEMBER).is_locked is False
    print(f"\n{inner!r}: (transactions, reads, commits) and backend per call")
    for name, counts in trips.items():
        print(f"  {name:28} {counts}  {dict(sorted(commands[name].items()))}")

    assert {name: trips[name] for name in ("authenticate_primary", "authenticate_sms_otp")} == {
        name: PER_CALL[name] for name in ("authenticate_primary", "authenticate_sms_otp")}
    assert {name: count for name, count in trips.items() if name in LIFECYCLE_TRIPS} == LIFECYCLE_TRIPS
    if isinstance(inner, RedisStore):  # one command per round trip (tests/test_redis_store.py pins the login's)
        assert {name: dict(c) for name, c in commands.items()} == {
            name: {"MGET": reads, "EVALSHA": commits} if commits else {"MGET": reads}
            for name, (_, reads, commits) in trips.items()}
    if isinstance(inner, SqliteStore):  # one SELECT per read; a commit's deletes and upserts one statement each,
        for name, (_, reads, commits) in trips.items():  # no versions check (BEGIN IMMEDIATE held the lock)
            assert commands[name]["SELECT"] == reads, name
            assert commands[name]["DELETE"] <= commits, name
            assert commands[name]["INSERT"] == commands[name]["UPDATE"] <= commits, name  # UPDATE ... RETURNING
        assert {name: dict(commands[name]) for name in ("authenticate_primary", "authenticate_sms_otp")} == {
            "authenticate_primary": {"BEGIN": 1, "SELECT": 1, "UPDATE": 1, "INSERT": 1, "COMMIT": 1},
            "authenticate_sms_otp": {"BEGIN": 1, "SELECT": 1, "DELETE": 1, "UPDATE": 1, "INSERT": 1, "COMMIT": 1}}
        # three sessions end in the statements one does: each more session is more keys, not more statements
        assert commands["revoke all, 1 session"] == commands["revoke all, 3 sessions"]
