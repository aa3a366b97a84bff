"""SqliteStore and AsyncSqliteStore (spec §10, the SQLite issue): the store contract, the flow on them,
several flows and processes on one file, busy databases failing closed, and schema migrations.

Every test uses a real database file under tmp_path; nothing of sqlite3 is mocked.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from mfa_flow import AsyncMfaFlow, ConfigurationError, Member, MfaError, MfaFlow, Organization, Policy
from mfa_flow.state import (
    CodePhase,
    CodeState,
    Factor,
    GuardPhase,
    GuardState,
    LoginState,
    MemberState,
    PhoneLink,
    SendWindow,
    SessionState,
    keys,
)
from mfa_flow.stores import AsyncSqliteStore, Entry, SqliteStore, Store, Write
from mfa_flow.stores._base import TTL_GRACE
from mfa_flow.stores._codec import encode
from mfa_flow.stores.sqlite import PURGE_EVERY, SCHEMA_VERSION
from mfa_flow.testing import FakeClock, FakeTransport
from tests.helpers_rules import wrong
from tests.races import C1_LOSER_ERRORS, race
from tests.stores_matrix import any_transaction, ist_and_code, settle

KEY = b"k" * 32
ORG = "organization-test-1"
MEMBER = "member-test-1"
PHONE = "+14155550123"
NOW = 1767225600.0
ROOMY = {"send_limit_per_member": (1000, 600), "send_limit_per_phone": (1000, 600)}
STORES = [SqliteStore, AsyncSqliteStore]

AnyStore = SqliteStore | AsyncSqliteStore


# ------------------------------------------------------------------------------------------------ helpers


@pytest.fixture
def db(tmp_path: Path) -> str:
    return str(tmp_path / "mfa.db")


@pytest.fixture(params=STORES, ids=["sync", "async"])
def store(request: pytest.FixtureRequest, db: str) -> Iterator[AnyStore]:
    opened: AnyStore = request.param(db)
    yield opened
    opened.close()


async def read(store: AnyStore, *names: str) -> dict[str, Entry]:
    async with any_transaction(store) as tx:
        return dict(await settle(tx.read(list(names))))


async def write(store: AnyStore, writes: dict[str, Write], now: float = NOW) -> bool:
    async with any_transaction(store) as tx:
        return bool(await settle(tx.commit(writes, now)))


def connection_of(tx: Any) -> sqlite3.Connection:
    """The connection a transaction runs on (sync: the transaction itself; async: the one it wraps)."""
    inner = getattr(tx, "_tx", tx)
    conn = inner._db
    assert isinstance(conn, sqlite3.Connection)
    return conn


def raw(path: str, timeout: float = 5.0) -> sqlite3.Connection:
    return sqlite3.connect(path, timeout=timeout, isolation_level=None)


def can_write_now(path: str) -> bool:
    """True when nobody holds the database's write lock (BEGIN IMMEDIATE without waiting)."""
    conn = raw(path, timeout=0)
    try:
        conn.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError:
        return False
    else:
        conn.execute("ROLLBACK")
        return True
    finally:
        conn.close()


def rows(path: str) -> list[tuple[str, int, str, float | None]]:
    conn = raw(path)
    try:
        return conn.execute("SELECT key, version, value, expires_at FROM records ORDER BY key").fetchall()
    finally:
        conn.close()


def meta(path: str) -> dict[str, int]:
    conn = raw(path)
    try:
        return dict(conn.execute("SELECT name, value FROM meta").fetchall())
    finally:
        conn.close()


def every_record() -> dict[str, object]:
    factor = Factor("otp", "sms", NOW, PHONE)
    return {
        keys.member(ORG, MEMBER): MemberState(phone=PHONE, phone_verified=True, enrolled=True),
        keys.guard(ORG, MEMBER): GuardState(GuardPhase.LOCKED, 10, NOW + 3600),
        keys.code(ORG, MEMBER): CodeState(CodePhase.SENT, "code-1", bytes(range(32)), "ab" * 32, "login", PHONE,
                                          NOW, NOW + 120, 2),
        keys.login("cd" * 32): LoginState(ORG, MEMBER, NOW + 600, (Factor("magic_link", "email", NOW), factor)),
        keys.session("ef" * 32): SessionState("session-1", ORG, MEMBER, NOW, NOW + 5, NOW + 3600, (factor,)),
        keys.window_member(ORG, MEMBER): SendWindow((NOW, NOW + 1.5)),
        keys.link(ORG, PHONE): PhoneLink(MEMBER),
    }


def setup_directory(flow: MfaFlow | AsyncMfaFlow) -> None:
    flow.directory.put_organization(Organization(ORG, organization_slug="acme", mfa_policy="REQUIRED_FOR_ALL"))
    flow.directory.put_member(Member(MEMBER, ORG, email_address="a@example.com", mfa_phone_number=PHONE,
                                     mfa_phone_number_verified=True))


def make_flow(store: Store, clock: FakeClock, transport: FakeTransport | None = None, *,
              policy: Policy | None = None, secret_key: bytes = KEY) -> MfaFlow:
    flow = MfaFlow(store=store, secret_key=secret_key, clock=clock,
                   transport=transport if transport is not None else FakeTransport(),
                   policy=policy if policy is not None else Policy(**ROOMY))
    setup_directory(flow)
    return flow


def login(flow: MfaFlow, transport: FakeTransport) -> tuple[str, str]:
    """Primary authentication with the automatic send: (IST, code)."""
    return ist_and_code(flow.authenticate_primary(ORG, MEMBER, "email_magic_link"), transport, MEMBER)


def refusal(call: Callable[..., object], *args: object, **kwargs: object) -> MfaError:
    with pytest.raises(MfaError) as info:
        call(*args, **kwargs)
    return info.value


def failure_count(store: AnyStore) -> int:
    entry = asyncio.run(read(store, keys.guard(ORG, MEMBER))).get(keys.guard(ORG, MEMBER))
    if entry is None:
        return 0
    assert isinstance(entry.value, GuardState)
    return entry.value.failures


@contextmanager
def write_lock(path: str) -> Iterator[sqlite3.Connection]:
    """Another connection holding the database's write lock for the duration."""
    conn = raw(path)
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    finally:
        conn.execute("ROLLBACK")
        conn.close()


# ------------------------------------------------------------------------------------------ construction


@pytest.mark.parametrize("cls", STORES)
def test_durable_and_a_store(cls: type[AnyStore], db: str) -> None:
    with cls(db, busy_timeout=1.5) as opened:
        assert cls.durable is True
        assert opened.path == db
        assert opened.busy_timeout == 1.5
        assert repr(opened) == f"{cls.__name__}({db!r})"
    with SqliteStore(db) as sync_store:
        assert isinstance(sync_store, Store)


@pytest.mark.parametrize("cls", STORES)
@pytest.mark.parametrize("bad", [-1, float("nan"), float("inf"), True, "5"])
def test_busy_timeout_is_checked(cls: type[AnyStore], db: str, bad: Any) -> None:
    with pytest.raises(ConfigurationError, match="busy_timeout"):
        cls(db, busy_timeout=bad)


@pytest.mark.parametrize("cls", STORES)
@pytest.mark.parametrize("bad", ["", ":memory:", b"x.db", 3])
def test_path_must_name_a_file(cls: type[AnyStore], bad: Any) -> None:
    with pytest.raises(ConfigurationError, match="path"):
        cls(bad)


def test_unopenable_path_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="cannot open"):
        SqliteStore(tmp_path / "missing-directory" / "mfa.db")
    not_a_database = tmp_path / "junk.db"
    not_a_database.write_bytes(b"this is not a database" * 100)
    with pytest.raises(ConfigurationError, match="cannot open"):
        SqliteStore(not_a_database)


def test_a_fresh_file_gets_the_current_schema_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "fresh.db"
    SqliteStore(path).close()  # os.PathLike is accepted
    assert meta(str(path)) == {"schema_version": SCHEMA_VERSION, "version_counter": 0}
    conn = raw(str(path))
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        columns = [row[1] for row in conn.execute("PRAGMA table_info(records)")]
        assert columns == ["key", "version", "value", "expires_at"]
    finally:
        conn.close()
    SqliteStore(path).close()  # opening again migrates nothing
    assert meta(str(path))["schema_version"] == SCHEMA_VERSION


def test_without_secret_key_a_flow_refuses_the_durable_stores(db: str) -> None:
    with SqliteStore(db) as sync_store, pytest.raises(ConfigurationError, match="secret_key"):
        MfaFlow(store=sync_store, transport=FakeTransport())
    with AsyncSqliteStore(db) as async_store, pytest.raises(ConfigurationError, match="secret_key"):
        AsyncMfaFlow(store=async_store, transport=FakeTransport())


# ------------------------------------------------------------------------------------------ the contract


def test_read_of_absent_keys_is_empty(store: AnyStore) -> None:
    assert asyncio.run(read(store, "member:x:y", "ist:00", "member:x:y")) == {}
    assert asyncio.run(read(store)) == {}


def test_every_record_type_round_trips(store: AnyStore, db: str) -> None:
    records = every_record()
    assert asyncio.run(write(store, {k: Write(v, NOW + 100) for k, v in records.items()})) is True
    got = asyncio.run(read(store, *records, "absent"))
    assert set(got) == set(records)
    for key, value in records.items():
        assert got[key].value == value, key
        assert type(got[key].value) is type(value)
    versions = sorted(entry.version for entry in got.values())
    assert versions == list(range(1, len(records) + 1))  # from the counter row, one each
    assert meta(db)["version_counter"] == len(records)
    assert all(text == encode(records[key]) for key, _, text, _ in rows(db))


def test_rewrite_gets_a_higher_version(store: AnyStore) -> None:
    key = keys.guard(ORG, MEMBER)
    asyncio.run(write(store, {key: Write(GuardState(failures=1))}))
    first = asyncio.run(read(store, key))[key]
    asyncio.run(write(store, {key: Write(GuardState(failures=2))}))
    second = asyncio.run(read(store, key))[key]
    assert second.version > first.version
    assert second.value == GuardState(failures=2)


def test_versions_never_repeat_across_delete_recreate_and_reopen(store: AnyStore, db: str) -> None:
    key = keys.member(ORG, MEMBER)
    seen = []
    for round_ in range(3):
        asyncio.run(write(store, {key: Write(MemberState(pending_phone=str(round_)))}))
        seen.append(asyncio.run(read(store, key))[key].version)
        asyncio.run(write(store, {key: Write(None)}))
        assert asyncio.run(read(store, key)) == {}
    reopened = type(store)(db)
    try:
        asyncio.run(write(reopened, {key: Write(MemberState())}))
        seen.append(asyncio.run(read(reopened, key))[key].version)
    finally:
        reopened.close()
    assert seen == sorted(set(seen))  # strictly increasing: never repeated


def test_read_modify_commit_after_another_commit(store: AnyStore) -> None:
    key = keys.guard(ORG, MEMBER)

    async def bump() -> bool:
        async with any_transaction(store) as tx:
            entry = (await settle(tx.read([key]))).get(key)
            failures = entry.value.failures if entry is not None else 0
            return bool(await settle(tx.commit({key: Write(GuardState(failures=failures + 1))}, NOW)))

    assert asyncio.run(bump()) is True  # A
    assert asyncio.run(bump()) is True  # B reads A's commit and builds on it
    assert asyncio.run(read(store, key))[key].value == GuardState(failures=2)


def test_no_other_connection_writes_between_a_read_and_the_commit(store: AnyStore, db: str) -> None:
    """Why a commit needs no version check of what its own BEGIN IMMEDIATE transaction read: from before the
    read to the commit it holds the write lock, so another connection (another process) cannot change a row
    under it — its write waits and, past its busy timeout, fails; after the commit it goes through."""
    key = keys.guard(ORG, MEMBER)
    asyncio.run(write(store, {key: Write(GuardState(failures=1))}))
    other = raw(db, timeout=0.05)
    outcomes: list[str] = []

    async def read_then_commit() -> bool:
        async with any_transaction(store) as tx:
            await settle(tx.read([key]))
            try:
                other.execute("UPDATE records SET version = version + 1000 WHERE key = ?", (key,))
            except sqlite3.OperationalError as locked:
                outcomes.append(str(locked))
            return bool(await settle(tx.commit({key: Write(GuardState(failures=2))}, NOW)))

    try:
        assert asyncio.run(read_then_commit()) is True
        assert outcomes == ["database is locked"]
        assert asyncio.run(read(store, key))[key].value == GuardState(failures=2)
        other.execute("UPDATE records SET version = version + 1000 WHERE key = ?", (key,))  # now it may
    finally:
        other.close()


def test_commit_refused_when_a_key_read_before_an_earlier_commit_changed(store: AnyStore, db: str) -> None:
    """The version check where it is still needed: a transaction that committed and goes on (a new BEGIN
    IMMEDIATE) still holds versions read before that commit; a row changed in between by another connection
    refuses the next commit, and nothing of it is applied."""
    key, absent, other_key = keys.guard(ORG, MEMBER), keys.code(ORG, MEMBER), keys.member(ORG, MEMBER)
    asyncio.run(write(store, {key: Write(GuardState(failures=1))}))

    async def changed_between(change: str, *args: object) -> bool:
        async with any_transaction(store) as tx:
            await settle(tx.read([key, absent]))
            assert await settle(tx.commit({other_key: Write(MemberState())}, NOW))
            conn = raw(db)  # between the two: the lock is free, another writer gets in
            try:
                conn.execute(change, args)
            finally:
                conn.close()
            return bool(await settle(tx.commit({key: Write(GuardState(failures=9)), other_key: Write(None)},
                                               NOW)))

    assert asyncio.run(changed_between("UPDATE records SET version = version + 1000 WHERE key = ?", key)) is False
    changed = asyncio.run(read(store, key))[key]
    assert changed.value == GuardState(failures=1)  # the refused write did not land
    assert asyncio.run(changed_between("INSERT INTO records (key, version, value) VALUES (?, 999, ?)",
                                       absent, encode(CodeState()))) is False
    after = asyncio.run(read(store, key, absent, other_key))
    assert after[key] == changed
    assert after[absent].version == 999
    assert isinstance(after[other_key].value, MemberState)  # the first commit stands, the refused one did nothing


def test_two_commits_in_one_transaction(store: AnyStore) -> None:
    key = keys.guard(ORG, MEMBER)

    async def twice() -> tuple[bool, bool]:
        async with any_transaction(store) as tx:
            await settle(tx.read([key]))
            first = await settle(tx.commit({key: Write(GuardState(failures=1))}, NOW))
            second = await settle(tx.commit({key: Write(GuardState(failures=2))}, NOW))
            return bool(first), bool(second)

    assert asyncio.run(twice()) == (True, True)
    assert asyncio.run(read(store, key))[key].value == GuardState(failures=2)


def test_deletes(store: AnyStore) -> None:
    records = every_record()
    asyncio.run(write(store, {k: Write(v) for k, v in records.items()}))
    doomed = [keys.code(ORG, MEMBER), keys.link(ORG, PHONE), "never-written"]
    assert asyncio.run(write(store, dict.fromkeys(doomed, Write(None)))) is True
    assert set(asyncio.run(read(store, *records))) == set(records) - set(doomed)


async def insert_without_commit(store: AnyStore, error: Exception | None = None) -> None:
    """A transaction that reads "a", inserts it on the store's own connection, then leaves without a commit
    (raising ``error`` from inside, when given)."""
    async with any_transaction(store) as tx:
        await settle(tx.read(["a"]))
        connection_of(tx).execute("INSERT INTO records (key, version, value) VALUES ('a', 1, ?)",
                                  (encode(PhoneLink("m")),))
        if error is not None:
            raise error


def test_leaving_without_commit_rolls_back(store: AnyStore, db: str) -> None:
    asyncio.run(insert_without_commit(store))
    assert rows(db) == []
    assert can_write_now(db)


def test_a_failure_inside_rolls_back_and_the_store_works_again(store: AnyStore, db: str) -> None:
    async def fail_in_commit() -> None:
        async with any_transaction(store) as tx:
            await settle(tx.commit({"a": Write(PhoneLink("m")), "b": Write(object())}, NOW))

    with pytest.raises(ValueError, match="boom"):
        asyncio.run(insert_without_commit(store, ValueError("boom")))
    with pytest.raises(TypeError, match="not a store record"):
        asyncio.run(fail_in_commit())
    assert rows(db) == []
    assert can_write_now(db)
    assert asyncio.run(write(store, {"a": Write(PhoneLink("m"))})) is True
    assert asyncio.run(read(store, "a"))["a"].value == PhoneLink("m")


def test_an_unreadable_row_fails_closed(store: AnyStore, db: str) -> None:
    conn = raw(db)
    conn.execute("INSERT INTO records (key, version, value) VALUES ('a', 1, '{\"t\": \"nonsense\"}')")
    conn.close()
    with pytest.raises(MfaError) as info:
        asyncio.run(read(store, "a"))
    assert info.value.error_type == "internal_server_error"
    assert can_write_now(db)


def test_a_nested_transaction_is_refused_not_deadlocked(store: AnyStore) -> None:
    async def nest() -> None:
        async with any_transaction(store), any_transaction(store):
            pass

    started = time.monotonic()
    with pytest.raises(RuntimeError, match="already open"):
        asyncio.run(nest())
    assert time.monotonic() - started < 1
    assert asyncio.run(write(store, {"a": Write(PhoneLink("m"))})) is True


def test_closed_store_refuses_and_the_file_stays(store: AnyStore, db: str) -> None:
    asyncio.run(write(store, {"a": Write(PhoneLink("m"))}))
    store.close()
    with pytest.raises(MfaError) as info:
        asyncio.run(read(store, "a"))
    assert info.value.error_type == "internal_server_error"
    with type(store)(db) as reopened:
        assert asyncio.run(read(reopened, "a"))["a"].value == PhoneLink("m")


# ---------------------------------------------------------------------------------------------------- TTL


def test_rows_carry_their_expiry(store: AnyStore, db: str) -> None:
    asyncio.run(write(store, {"a": Write(PhoneLink("m")), "b": Write(SendWindow((NOW,)), NOW + 600)}))
    assert [(key, expires) for key, _, _, expires in rows(db)] == [("a", None), ("b", NOW + 600)]


def test_purge_drops_rows_past_expiry_and_grace_every_so_many_commits(store: AnyStore, db: str) -> None:
    later = NOW + 1000
    asyncio.run(write(store, {  # commit 1
        "expired": Write(SendWindow((NOW,)), later - TTL_GRACE - 1),
        "in-grace": Write(SendWindow((NOW,)), later - TTL_GRACE + 1),
        "live": Write(SendWindow((NOW,)), later + 600),
        "forever": Write(PhoneLink("m")),
    }))

    async def fill(n: int) -> None:
        for i in range(n):
            assert await write(store, {"filler": Write(PhoneLink(str(i)))}, later)

    asyncio.run(fill(PURGE_EVERY - 2))
    assert "expired" in {row[0] for row in rows(db)}  # occasional: not on every commit
    asyncio.run(fill(1))  # commit number PURGE_EVERY
    assert {row[0] for row in rows(db)} == {"in-grace", "live", "forever", "filler"}


# ----------------------------------------------------------------------------------------- the flow on it


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


@pytest.fixture
def transport() -> FakeTransport:
    return FakeTransport()


@pytest.fixture
def sync_store(db: str) -> Iterator[SqliteStore]:
    with SqliteStore(db) as opened:
        yield opened


def test_flow_login_wrong_code_then_right_code(sync_store: SqliteStore, clock: FakeClock,
                                               transport: FakeTransport) -> None:
    flow = make_flow(sync_store, clock, transport)
    ist, code = login(flow, transport)
    assert refusal(flow.authenticate_sms_otp, ORG, MEMBER, wrong(code),
                   intermediate_session_token=ist).error_type == "otp_code_not_found"
    assert failure_count(sync_store) == 1
    result = flow.authenticate_sms_otp(ORG, MEMBER, code, intermediate_session_token=ist)
    assert result.session_token
    assert failure_count(sync_store) == 0
    assert refusal(flow.authenticate_sms_otp, ORG, MEMBER, code,
                   intermediate_session_token=ist).error_type == "intermediate_session_not_found"
    check = flow.authenticate_session(session_token=result.session_token)
    assert check.step_up_required is False
    assert flow.get_member(ORG, MEMBER).mfa_enrolled is True


def test_flow_lock_is_shared_and_survives_a_restart(db: str, sync_store: SqliteStore, clock: FakeClock,
                                                    transport: FakeTransport) -> None:
    policy = Policy(lockout_threshold=3, **ROOMY)
    flow = make_flow(sync_store, clock, transport, policy=policy)
    ist, code = login(flow, transport)
    answers = [refusal(flow.authenticate_sms_otp, ORG, MEMBER, wrong(code, i),
                       intermediate_session_token=ist).error_type for i in range(3)]
    assert answers == ["otp_code_not_found", "otp_code_not_found", "user_lock_limit_reached"]
    assert flow.get_member(ORG, MEMBER).is_locked is True
    sync_store.close()
    with SqliteStore(db) as reopened:  # a restart: a new store object and flow on the same file and key
        again = make_flow(reopened, clock, transport, policy=policy)
        assert again.get_member(ORG, MEMBER).is_locked is True
        assert refusal(again.authenticate_sms_otp, ORG, MEMBER, code,
                       intermediate_session_token=ist).error_type == "user_lock_limit_reached"
        clock.advance(3600.001)
        assert again.get_member(ORG, MEMBER).is_locked is False


def test_flow_step_up(sync_store: SqliteStore, clock: FakeClock, transport: FakeTransport) -> None:
    flow = make_flow(sync_store, clock, transport)
    ist, code = login(flow, transport)
    token = flow.authenticate_sms_otp(ORG, MEMBER, code, intermediate_session_token=ist).session_token
    clock.advance(1800.001)
    check = flow.authenticate_session(session_token=token)
    assert check.step_up_required is True
    assert check.secondary_auth_initiated == "sms_otp"
    assert len(transport.sent) == 2
    assert flow.authenticate_sms_otp(ORG, MEMBER, transport.last_code(MEMBER),
                                     session_token=token).session_token == token
    assert flow.authenticate_session(session_token=token).step_up_required is False


def test_code_verifies_after_a_restart_only_with_the_same_key(db: str, sync_store: SqliteStore, clock: FakeClock,
                                                              transport: FakeTransport) -> None:
    ist, code = login(make_flow(sync_store, clock, transport), transport)
    sync_store.close()
    with SqliteStore(db) as reopened:
        other_key = make_flow(reopened, clock, transport, secret_key=b"x" * 32)
        assert refusal(other_key.authenticate_sms_otp, ORG, MEMBER, code,
                       intermediate_session_token=ist).error_type == "otp_code_not_found"
        same_key = make_flow(reopened, clock, transport)
        assert same_key.authenticate_sms_otp(ORG, MEMBER, code, intermediate_session_token=ist).session_token


def test_expiring_records_carry_their_expiry_and_the_others_none(db: str, sync_store: SqliteStore,
                                                                   clock: FakeClock, transport: FakeTransport) -> None:
    def expiry() -> dict[str, float | None]:
        return {key.split(":", 1)[0]: expires for key, _, _, expires in rows(db)}

    flow = make_flow(sync_store, clock, transport)
    ist, code = login(flow, transport)
    assert expiry() == {"code": NOW + 120, "ist": NOW + 600, "window": NOW + 600}
    refusal(flow.authenticate_sms_otp, ORG, MEMBER, wrong(code), intermediate_session_token=ist)
    assert expiry()["guard"] is None  # an open guard (the failure counter) never expires
    flow.authenticate_sms_otp(ORG, MEMBER, code, intermediate_session_token=ist)
    # the session lives under its token's digest, its id reference and its member's index, each as long as it
    assert expiry() == {"guard": None, "member": None, "window": NOW + 600, "session": NOW + 3600,
                        "sid": NOW + 3600, "sessions": NOW + 3600}


def leaves(value: Any) -> Iterator[Any]:
    if isinstance(value, dict):
        for item in value.values():
            yield from leaves(item)
    elif isinstance(value, list):
        for item in value:
            yield from leaves(item)
    else:
        yield value


def test_no_code_and_no_token_in_clear(db: str, sync_store: SqliteStore, clock: FakeClock,
                                       transport: FakeTransport) -> None:
    flow = make_flow(sync_store, clock, transport)
    ist, first = login(flow, transport)
    flow.send_sms_otp(ORG, MEMBER, intermediate_session_token=ist)  # a live code stays in the store
    live = transport.last_code(MEMBER)
    other_ist, _ = login(flow, transport)
    token = flow.authenticate_sms_otp(ORG, MEMBER, transport.last_code(MEMBER),
                                      intermediate_session_token=other_ist).session_token
    flow.send_sms_otp(ORG, MEMBER, session_token=token)
    codes = {first, live, transport.last_code(MEMBER)}
    stored = rows(db)
    assert any(key.startswith("code:") for key, *_ in stored)
    assert any(key.startswith("ist:") for key, *_ in stored)
    assert any(key.startswith("session:") for key, *_ in stored)
    blobs = b"".join(p.read_bytes() for p in Path(db).parent.iterdir() if p.name.startswith("mfa.db"))
    for secret in (ist, other_ist, token):
        assert secret.encode() not in blobs
        assert all(secret not in key and secret not in text for key, _, text, _ in stored)
    for key, _, text, _ in stored:
        for leaf in leaves(json.loads(text)):
            assert str(leaf) not in codes, (key, leaf)
            assert not (isinstance(leaf, str) and any(code in leaf for code in codes)), (key, leaf)
        assert not any(code in key for code in codes)


def test_an_expired_code_stays_refused_without_its_row_expiry_or_its_row(db: str, sync_store: SqliteStore,
                                                                         clock: FakeClock,
                                                                         transport: FakeTransport) -> None:
    flow = make_flow(sync_store, clock, transport)
    ist, code = login(flow, transport)
    conn = raw(db)
    conn.execute("UPDATE records SET expires_at = NULL")  # as if no TTL had ever been set
    conn.close()
    clock.advance(120)
    assert refusal(flow.authenticate_sms_otp, ORG, MEMBER, code,
                   intermediate_session_token=ist).error_type == "unable_to_auth_otp_code"
    # Put the expiry back and let the purge drop the code row: still refused (absent = no live code).
    conn = raw(db)
    conn.execute("UPDATE records SET expires_at = ? WHERE key = ?", (NOW + 120, keys.code(ORG, MEMBER)))
    conn.close()
    clock.advance(TTL_GRACE + 1)
    with sync_store.transaction() as tx:
        assert tx.commit({"filler": Write(PhoneLink("m"))}, clock.now())
    while keys.code(ORG, MEMBER) in {row[0] for row in rows(db)}:
        with sync_store.transaction() as tx:
            assert tx.commit({"filler": Write(PhoneLink("m"))}, clock.now())
    assert refusal(flow.authenticate_sms_otp, ORG, MEMBER, code,
                   intermediate_session_token=ist).error_type == "unable_to_auth_otp_code"
    assert flow.get_member(ORG, MEMBER).is_locked is False


# --------------------------------------------------------------------------------------- busy: fail closed


def test_busy_database_fails_closed_and_recovers(db: str, clock: FakeClock, transport: FakeTransport) -> None:
    with SqliteStore(db, busy_timeout=0.2) as impatient:
        flow = make_flow(impatient, clock, transport)
        with write_lock(db):
            started = time.monotonic()
            error = refusal(flow.authenticate_primary, ORG, MEMBER, "email_magic_link")
            assert error.error_type == "internal_server_error"
            assert time.monotonic() - started >= 0.2
            assert refusal(flow.get_member, ORG, MEMBER).error_type == "internal_server_error"
        assert transport.sent == []  # nothing was admitted, so nothing was sent
        ist, code = login(flow, transport)
        with write_lock(db):
            assert refusal(flow.authenticate_sms_otp, ORG, MEMBER, code,
                           intermediate_session_token=ist).error_type == "internal_server_error"
        assert flow.authenticate_sms_otp(ORG, MEMBER, code, intermediate_session_token=ist).session_token


def test_busy_database_fails_closed_async(db: str, clock: FakeClock, transport: FakeTransport) -> None:
    async def scenario() -> None:
        with AsyncSqliteStore(db, busy_timeout=0.2) as impatient:
            flow = AsyncMfaFlow(store=impatient, secret_key=KEY, clock=clock, transport=transport)
            setup_directory(flow)
            with write_lock(db), pytest.raises(MfaError) as info:
                await flow.authenticate_primary(ORG, MEMBER, "email_magic_link")
            assert info.value.error_type == "internal_server_error"
            assert transport.sent == []
            assert (await flow.authenticate_primary(ORG, MEMBER, "email_magic_link")).intermediate_session_token

    asyncio.run(scenario())


@pytest.mark.timeout(60)
def test_busy_wait_is_bounded_per_call_not_per_queue(db: str, clock: FakeClock, transport: FakeTransport) -> None:
    """Threads queued behind each other in one process still give up busy_timeout after their call began."""
    with SqliteStore(db, busy_timeout=0.3) as impatient:
        flow = make_flow(impatient, clock, transport)
        with write_lock(db):
            started = time.monotonic()
            outcomes = race(6, lambda _: flow.get_member(ORG, MEMBER))
            elapsed = time.monotonic() - started
        assert tally(outcomes) == ([], Counter({"internal_server_error": 6}), [])
        assert elapsed < 1.2  # not 6 × 0.3 s
        assert flow.get_member(ORG, MEMBER).member_id == MEMBER


def test_async_busy_wait_is_bounded_per_call(db: str, clock: FakeClock, transport: FakeTransport) -> None:
    async def scenario() -> tuple[list[Any], float]:
        with AsyncSqliteStore(db, busy_timeout=0.3) as impatient:
            flow = AsyncMfaFlow(store=impatient, secret_key=KEY, clock=clock, transport=transport)
            setup_directory(flow)
            with write_lock(db):
                started = time.monotonic()
                outcomes = await asyncio.gather(*[flow.get_member(ORG, MEMBER) for _ in range(6)],
                                                return_exceptions=True)
                elapsed = time.monotonic() - started
            assert (await flow.get_member(ORG, MEMBER)).member_id == MEMBER
            return outcomes, elapsed

    outcomes, elapsed = asyncio.run(scenario())
    assert [getattr(o, "error_type", o) for o in outcomes] == ["internal_server_error"] * 6
    assert elapsed < 1.2


# ----------------------------------------------------------------------------- one deployment, many flows


def test_two_flows_on_one_file_are_one_deployment(db: str, clock: FakeClock, transport: FakeTransport) -> None:
    with SqliteStore(db) as first_store, SqliteStore(db) as second_store:
        first, second = make_flow(first_store, clock, transport), make_flow(second_store, clock, transport)
        ist, code = login(first, transport)
        assert refusal(second.authenticate_sms_otp, ORG, MEMBER, wrong(code),
                       intermediate_session_token=ist).error_type == "otp_code_not_found"
        assert failure_count(first_store) == 1
        token = second.authenticate_sms_otp(ORG, MEMBER, code, intermediate_session_token=ist).session_token
        assert first.authenticate_session(session_token=token).member_session.member_id == MEMBER
        assert refusal(first.authenticate_sms_otp, ORG, MEMBER, code,
                       intermediate_session_token=ist).error_type == "intermediate_session_not_found"


def tally(outcomes: list[tuple[str, Any]]) -> tuple[list[str], Counter[str], list[str]]:
    """(session tokens, error types of MfaErrors, reprs of anything else)."""
    tokens = [result.session_token for kind, result in outcomes if kind == "ok"]
    errors: Counter[str] = Counter()
    others = []
    for kind, value in outcomes:
        if kind == "error":
            if isinstance(value, MfaError):
                errors[value.error_type] += 1
            else:
                others.append(repr(value))
    return tokens, errors, others


@pytest.mark.timeout(120)
def test_threads_on_two_store_objects_redeem_a_code_once(db: str, clock: FakeClock,
                                                         transport: FakeTransport) -> None:
    with SqliteStore(db) as first_store, SqliteStore(db) as second_store:
        flows = [make_flow(first_store, clock, transport), make_flow(second_store, clock, transport)]
        ist, code = login(flows[0], transport)
        outcomes = race(32, lambda i: flows[i % 2].authenticate_sms_otp(ORG, MEMBER, code,
                                                                        intermediate_session_token=ist))
        tokens, errors, others = tally(outcomes)
        assert others == []
        assert len(tokens) == 1
        assert sum(errors.values()) == 31
        assert set(errors) <= C1_LOSER_ERRORS, errors
        assert failure_count(first_store) == 0


PROCESSES = 4
THREADS_PER_PROCESS = 8


def redeem_in_process(open_store: Callable[[], Any], now: float, ist: str, code: str, barrier: Any,
                      results: Any) -> None:
    """A process of its own: a flow on ``open_store()`` (the shared file or Redis, the same key), 8 threads
    submitting the same code."""
    try:
        with open_store() as own_store:
            flow = make_flow(own_store, FakeClock(now))
            barrier.wait(60)
            outcomes = race(THREADS_PER_PROCESS, lambda _: flow.authenticate_sms_otp(
                ORG, MEMBER, code, intermediate_session_token=ist))
        tokens, errors, others = tally(outcomes)
        results.put((os.getpid(), tokens, dict(errors), others))
    except BaseException as exc:
        results.put((os.getpid(), [], {}, [repr(exc)]))


def redeem_across_processes(open_store: Callable[[], Any], now: float, ist: str, code: str) -> list[str]:
    """4 spawned processes × 8 threads submit the same correct code: exactly one session; its token."""
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(PROCESSES)
    results = context.Queue()
    processes = [context.Process(target=redeem_in_process, args=(open_store, now, ist, code, barrier, results))
                 for _ in range(PROCESSES)]
    for process in processes:
        process.start()
    try:
        answers = [results.get(timeout=100) for _ in processes]
    finally:
        for process in processes:
            process.join(10)
            if process.is_alive():
                process.kill()
                process.join()
    assert [process.exitcode for process in processes] == [0] * PROCESSES
    assert len({pid for pid, *_ in answers}) == PROCESSES
    assert [other for *_, others in answers for other in others] == []
    tokens = [token for _, found, _, _ in answers for token in found]
    errors: Counter[str] = Counter()
    for _, _, found_errors, _ in answers:
        errors.update(found_errors)
    assert len(tokens) == 1, f"{len(tokens)} sessions from one code"
    assert sum(errors.values()) == PROCESSES * THREADS_PER_PROCESS - 1
    assert set(errors) <= C1_LOSER_ERRORS, errors
    return tokens


@pytest.mark.timeout(120)
def test_c6_processes_sharing_one_sqlite_file_redeem_a_code_once(db: str, sync_store: SqliteStore,
                                                                 clock: FakeClock, transport: FakeTransport) -> None:
    """C6: 4 processes × 8 threads submit the same correct code for one login: exactly one session."""
    flow = make_flow(sync_store, clock, transport)
    ist, code = login(flow, transport)
    tokens = redeem_across_processes(partial(SqliteStore, db), clock.now(), ist, code)
    assert failure_count(sync_store) == 0
    assert flow.authenticate_session(session_token=tokens[0]).member_session.member_id == MEMBER


# ------------------------------------------------------------------------------------------------ migrations


def build_v1(path: str, *, schema_version: int = 1, with_records: bool = True) -> str:
    """A database as schema version 1 left it: records without expires_at, no index."""
    conn = raw(path)
    conn.execute("CREATE TABLE meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL)")
    conn.execute("INSERT INTO meta (name, value) VALUES ('schema_version', ?), ('version_counter', 41)",
                 (schema_version,))
    if with_records:
        conn.execute("CREATE TABLE records (key TEXT PRIMARY KEY, version INTEGER NOT NULL, value TEXT NOT NULL)")
        conn.execute("INSERT INTO records (key, version, value) VALUES (?, 41, ?)",
                     (keys.member(ORG, MEMBER), encode(MemberState(phone=PHONE, phone_verified=True))))
    conn.close()
    return path


def test_migration_from_version_1(db: str) -> None:
    build_v1(db)
    key = keys.member(ORG, MEMBER)
    with SqliteStore(db) as migrated:
        assert meta(db) == {"schema_version": SCHEMA_VERSION, "version_counter": 41}
        assert asyncio.run(read(migrated, key)) == {key: Entry(41, MemberState(phone=PHONE, phone_verified=True))}
        assert asyncio.run(write(migrated, {"b": Write(PhoneLink("m"), NOW + 60)}))
        assert asyncio.run(read(migrated, "b"))["b"].version == 42  # the counter carried over
    conn = raw(db)
    try:
        assert [row[1] for row in conn.execute("PRAGMA table_info(records)")][-1] == "expires_at"
        assert conn.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'records' "
                            "AND sql IS NOT NULL").fetchall() == [("records_expires_at",)]
    finally:
        conn.close()


def test_a_failed_migration_changes_nothing(db: str) -> None:
    build_v1(db)
    conn = raw(db)
    conn.execute("CREATE INDEX records_expires_at ON records (value)")  # the 1 → 2 step will collide with it
    conn.close()
    with pytest.raises(ConfigurationError, match="records_expires_at"):
        SqliteStore(db)
    assert meta(db)["schema_version"] == 1
    conn = raw(db)
    try:
        assert "expires_at" not in [row[1] for row in conn.execute("PRAGMA table_info(records)")]
    finally:
        conn.close()


@pytest.mark.parametrize("cls", STORES)
def test_a_newer_schema_is_refused(cls: type[AnyStore], db: str) -> None:
    build_v1(db, schema_version=99)
    with pytest.raises(ConfigurationError, match="schema version 99"):
        cls(db)
    assert meta(db)["schema_version"] == 99


def test_a_meta_table_without_schema_version_is_refused(db: str) -> None:
    conn = raw(db)
    conn.execute("CREATE TABLE meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL)")
    conn.close()
    with pytest.raises(ConfigurationError, match="schema_version"):
        SqliteStore(db)


# ---------------------------------------------------------------------------------------------------- async


def test_async_flow_login_and_32_concurrent_redemptions(db: str, clock: FakeClock, transport: FakeTransport) -> None:
    async def scenario() -> tuple[list[Any], int]:
        with AsyncSqliteStore(db) as async_store:
            flow = AsyncMfaFlow(store=async_store, secret_key=KEY, clock=clock, transport=transport,
                                policy=Policy(**ROOMY))
            setup_directory(flow)
            first = await flow.authenticate_primary(ORG, MEMBER, "email_magic_link")
            code = transport.last_code(MEMBER)
            with pytest.raises(MfaError) as info:
                await flow.authenticate_sms_otp(ORG, MEMBER, wrong(code),
                                                intermediate_session_token=first.intermediate_session_token)
            assert info.value.error_type == "otp_code_not_found"
            done = await flow.authenticate_sms_otp(ORG, MEMBER, code,
                                                   intermediate_session_token=first.intermediate_session_token)
            assert (await flow.authenticate_session(session_token=done.session_token)).step_up_required is False

            second = await flow.authenticate_primary(ORG, MEMBER, "email_magic_link")
            code = transport.last_code(MEMBER)
            outcomes = await asyncio.gather(*[
                flow.authenticate_sms_otp(ORG, MEMBER, code,
                                          intermediate_session_token=second.intermediate_session_token)
                for _ in range(32)], return_exceptions=True)
            guard = (await read(async_store, keys.guard(ORG, MEMBER))).get(keys.guard(ORG, MEMBER))
            return outcomes, 0 if guard is None else guard.value.failures

    outcomes, failures = asyncio.run(scenario())
    tokens = [o.session_token for o in outcomes if not isinstance(o, BaseException)]
    errors = [o for o in outcomes if isinstance(o, BaseException)]
    assert len(tokens) == 1
    assert all(isinstance(e, MfaError) and e.error_type in C1_LOSER_ERRORS for e in errors), errors
    assert failures == 0


def test_async_cancelled_inside_a_transaction_releases_the_lock(db: str) -> None:
    async def scenario() -> None:
        with AsyncSqliteStore(db) as async_store:
            inside = asyncio.Event()

            async def holder() -> None:
                async with any_transaction(async_store) as tx:
                    await settle(tx.read(["a"]))
                    inside.set()
                    await asyncio.sleep(60)

            task = asyncio.create_task(holder())
            await inside.wait()
            assert not can_write_now(db)
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
            assert can_write_now(db)
            assert await write(async_store, {"a": Write(PhoneLink("m"))})

    asyncio.run(scenario())


def test_async_cancelled_while_waiting_for_the_lock_leaves_nothing_open(db: str) -> None:
    async def scenario() -> None:
        with AsyncSqliteStore(db, busy_timeout=30) as async_store:
            with write_lock(db):
                task = asyncio.create_task(read(async_store, "a"))
                await asyncio.sleep(0.2)  # its BEGIN IMMEDIATE is waiting in a worker thread
                task.cancel()
                with suppress(asyncio.CancelledError):
                    await task
            # The abandoned BEGIN now succeeds in its thread; the store ends that transaction by itself.
            deadline = time.monotonic() + 10
            while not can_write_now(db):
                assert time.monotonic() < deadline, "the abandoned transaction kept the write lock"
                await asyncio.sleep(0.05)
            assert await write(async_store, {"a": Write(PhoneLink("m"))})
            assert (await read(async_store, "a"))["a"].value == PhoneLink("m")

    asyncio.run(scenario())


def test_async_store_needs_a_running_loop(db: str) -> None:
    with AsyncSqliteStore(db) as async_store, pytest.raises(RuntimeError, match="AsyncMfaFlow"):
        async_store.transaction()


def test_async_store_works_across_event_loops(db: str) -> None:
    with AsyncSqliteStore(db) as async_store:
        for i in range(3):  # each asyncio.run is a new loop
            assert asyncio.run(write(async_store, {"a": Write(PhoneLink(str(i)))}))
        assert asyncio.run(read(async_store, "a"))["a"].value == PhoneLink("2")
