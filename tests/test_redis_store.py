"""RedisStore and AsyncRedisStore (spec §10) against a real redis-server started by ``tests.redis_server``.

Contract tests run on both stores; then round trips per public call, the eviction-policy check, the
store without redis-py, the flow end to end, two flows as one deployment, the C1/C2 races, and failing
closed when the connection drops mid-call.
"""

from __future__ import annotations

import asyncio
import textwrap
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, cast

import pytest
import redis
import redis.asyncio
from redis.backoff import NoBackoff
from redis.retry import Retry

from mfa_flow import AsyncMfaFlow, ConfigurationError, Event, Member, MfaError, MfaFlow, Organization, Policy
from mfa_flow.state import (
    CodePhase,
    CodeState,
    Factor,
    GuardPhase,
    GuardState,
    LoginPhase,
    LoginState,
    MemberState,
    PhoneLink,
    SendWindow,
    SessionPhase,
    SessionState,
    keys,
)
from mfa_flow.stores import AsyncRedisStore, Entry, EvictionPolicyWarning, RedisStore, Store, Write
from mfa_flow.stores._base import TTL_GRACE
from mfa_flow.testing import FakeClock, FakeTransport
from mfa_flow.transports import SmsMessage
from tests.helpers_process import python_env, run_python
from tests.helpers_rules import wrong
from tests.races import C1_LOSER_ERRORS, Outcome, error_types, race, successes, wrong_codes
from tests.stores_matrix import any_transaction, settle

ORG = "organization-redis-1"
MEMBER = "member-redis-1"
PHONE = "+14155550123"
PREFIX = "mfa_flow:"
KEY = b"k" * 32
NOW = 1767225600.0
THREADS = 32
C1_REPETITIONS = 50
C2_REPETITIONS = 10
ROOMY = {"send_limit_per_member": (1000, 600), "send_limit_per_phone": (1000, 600)}

RECORDS: dict[str, object] = {
    "member:o:m": MemberState(phone=PHONE, phone_verified=True, pending_phone="", enrolled=True,
                              default_mfa_method="sms_otp"),
    "guard:o:m": GuardState(GuardPhase.LOCKED, 10, NOW + 3600),
    "code:o:m": CodeState(CodePhase.SENT, "cid", bytes(range(32)), "ab" * 32, "login", PHONE, NOW, NOW + 120, 2),
    "ist:" + "1" * 64: LoginState("o", "m", NOW + 600, (Factor("email", "email_magic_link", NOW),),
                                  LoginPhase.ISSUED),
    "session:" + "2" * 64: SessionState("sid", "o", "m", NOW, NOW, NOW + 3600,
                                        (Factor("email", "email_magic_link", NOW),
                                         Factor("otp", "sms", NOW, PHONE)), SessionPhase.STEP_UP_REQUIRED),
    "window:member:o:m": SendWindow((NOW - 5, NOW)),
    "link:o:" + PHONE: PhoneLink("m"),
}


# ------------------------------------------------------------------------------------------------ harness


async def read(store: Any, names: Iterable[str]) -> dict[str, Entry]:
    async with any_transaction(store) as tx:
        return cast("dict[str, Entry]", await settle(tx.read(list(names))))


async def write(store: Any, writes: Mapping[str, Write], now: float = NOW) -> None:
    async with any_transaction(store) as tx:
        assert await settle(tx.commit(writes, now)) is True


def make_store(kind: str, url_or_client: Any, **kwargs: Any) -> Any:
    return (RedisStore if kind == "sync" else AsyncRedisStore)(url_or_client, **kwargs)


async def close(store: Any) -> None:
    if isinstance(store, AsyncRedisStore):
        await store.aclose()
    else:
        store.close()


def run_on(kind: str, url: str, body: Callable[[Any], Awaitable[Any]], **kwargs: Any) -> Any:
    """``body(store)`` in an event loop, on a fresh store of ``kind`` built from ``url``."""

    async def main() -> Any:
        store = make_store(kind, url, **kwargs)
        try:
            return await body(store)
        finally:
            await close(store)

    return asyncio.run(main())


@pytest.fixture(params=["sync", "async"])
def kind(request: pytest.FixtureRequest) -> str:
    return cast("str", request.param)


class CountingRedis(redis.Redis):
    """A redis-py client that records every command it sends (one command = one round trip here).

    ``before`` (name -> callable) runs just before a command of that name is sent.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.commands: list[str] = []
        self.before: dict[str, Callable[[], None]] = {}

    def execute_command(self, *args: Any, **options: Any) -> Any:
        name = str(args[0]).upper()
        self.commands.append(name)
        hook = self.before.get(name)
        if hook is not None:
            hook()
        return super().execute_command(*args, **options)

    def pipeline(self, *args: Any, **kwargs: Any) -> Any:
        self.commands.append("PIPELINE")  # each pipeline is one more round trip; the store uses none
        return super().pipeline(*args, **kwargs)


class AsyncCountingRedis(redis.asyncio.Redis):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.commands: list[str] = []

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        self.commands.append(str(args[0]).upper())
        return await super().execute_command(*args, **options)

    def pipeline(self, *args: Any, **kwargs: Any) -> Any:
        self.commands.append("PIPELINE")
        return super().pipeline(*args, **kwargs)


class MarkingTransport(FakeTransport):
    """Records how many commands the client had sent when each message was handed to the gateway."""

    def __init__(self, client: CountingRedis | AsyncCountingRedis) -> None:
        super().__init__()
        self.client = client
        self.marks: list[int] = []

    def deliver(self, message: SmsMessage) -> None:
        self.marks.append(len(self.client.commands))
        super().deliver(message)


def setup_directory(flow: MfaFlow | AsyncMfaFlow, member: str = MEMBER) -> None:
    flow.directory.put_organization(Organization(ORG, organization_slug="acme", mfa_policy="REQUIRED_FOR_ALL"))
    flow.directory.put_member(Member(member, ORG, email_address=f"{member}@example.com",
                                     mfa_phone_number=PHONE, mfa_phone_number_verified=True))


def make_flow(store: Store, *, clock: FakeClock | None = None, transport: FakeTransport | None = None,
              events: list[Event] | None = None, **policy: Any) -> MfaFlow:
    flow = MfaFlow(store=store, secret_key=KEY, clock=clock or FakeClock(), transport=transport or FakeTransport(),
                   events=[events.append] if events is not None else (), policy=Policy(**policy))
    setup_directory(flow)
    return flow


def error_type(call: Callable[..., Any], *args: Any, **kwargs: Any) -> str:
    with pytest.raises(MfaError) as info:
        call(*args, **kwargs)
    return info.value.error_type


def guard_failures(store: RedisStore, member: str = MEMBER) -> int:
    key = keys.guard(ORG, member)
    with store.transaction() as tx:
        entry = tx.read([key]).get(key)
    return 0 if entry is None else cast("GuardState", entry.value).failures


# ------------------------------------------------------------------------------------------ the contract


def test_absent_keys_read_as_missing(redis_url: str, redis_db: Any, kind: str) -> None:
    async def body(store: Any) -> None:
        assert await read(store, ["member:o:m", "code:o:m"]) == {}
        assert await read(store, []) == {}

    run_on(kind, redis_url, body)
    assert redis_db.keys("*") == []


def test_every_record_type_round_trips(redis_url: str, redis_db: Any, kind: str) -> None:
    async def body(store: Any) -> dict[str, Entry]:
        await write(store, {k: Write(v, NOW + 600 if k.startswith(("code", "ist")) else None)
                            for k, v in RECORDS.items()})
        return await read(store, RECORDS)

    got = run_on(kind, redis_url, body)
    assert {k: e.value for k, e in got.items()} == RECORDS
    assert len({e.version for e in got.values()}) == len(RECORDS)
    assert all(e.version > 0 for e in got.values())
    raw = redis_db.get(PREFIX + "guard:o:m")
    version, _, body_text = raw.partition("|")
    assert int(version) == got["guard:o:m"].version
    assert body_text.startswith('{"t":"guard"')
    assert "cid" in redis_db.get(PREFIX + "code:o:m")  # the digest is stored as hex, never a code in clear


def test_commit_loses_when_a_read_key_changed(redis_url: str, redis_db: Any, kind: str) -> None:
    async def body(store: Any) -> None:
        await write(store, {"guard:o:m": Write(GuardState(failures=1))})
        async with any_transaction(store) as tx:
            seen = await settle(tx.read(["guard:o:m", "code:o:m"]))
            assert seen["guard:o:m"].value == GuardState(failures=1)
            async with any_transaction(store) as other:  # another process commits in between
                await settle(other.read(["guard:o:m"]))
                assert await settle(other.commit({"guard:o:m": Write(GuardState(failures=7))}, NOW))
            lost = await settle(tx.commit({"guard:o:m": Write(GuardState(failures=2)),
                                           "member:o:m": Write(MemberState(enrolled=True))}, NOW))
            assert lost is False
        after = await read(store, ["guard:o:m", "member:o:m"])
        assert after["guard:o:m"].value == GuardState(failures=7)
        assert "member:o:m" not in after  # nothing of the losing commit was written

    run_on(kind, redis_url, body)


def test_commit_loses_when_a_raw_client_changes_a_key(redis_url: str, redis_db: Any, kind: str) -> None:
    """An absent key read must still be absent; a present one must keep its version."""

    async def body(store: Any) -> None:
        await write(store, {"guard:o:m": Write(GuardState(failures=1))})
        async with any_transaction(store) as tx:
            await settle(tx.read(["guard:o:m"]))
            redis_db.set(PREFIX + "guard:o:m", "999|" + redis_db.get(PREFIX + "guard:o:m").partition("|")[2])
            assert await settle(tx.commit({"guard:o:m": Write(None), "x:1": Write(PhoneLink("m"))}, NOW)) is False
        async with any_transaction(store) as tx:
            assert await settle(tx.read(["code:o:m"])) == {}
            redis_db.set(PREFIX + "code:o:m", "1000|" + '{"t":"link","member_id":"z"}')
            assert await settle(tx.commit({"code:o:m": Write(None), "x:1": Write(PhoneLink("m"))}, NOW)) is False
        assert redis_db.exists(PREFIX + "guard:o:m", PREFIX + "code:o:m") == 2
        assert not redis_db.exists(PREFIX + "x:1")

    run_on(kind, redis_url, body)


def test_versions_never_repeat_across_delete_and_recreate(redis_url: str, redis_db: Any, kind: str) -> None:
    async def body(store: Any) -> None:
        await write(store, {"code:o:m": Write(PhoneLink("a"))})
        first = (await read(store, ["code:o:m"]))["code:o:m"].version
        async with any_transaction(store) as stale:
            assert (await settle(stale.read(["code:o:m"])))["code:o:m"].version == first
            await write(store, {"code:o:m": Write(None)})
            assert await read(store, ["code:o:m"]) == {}
            await write(store, {"code:o:m": Write(PhoneLink("a"))})  # the same value again (ABA)
            again = (await read(store, ["code:o:m"]))["code:o:m"].version
            assert again > first
            assert await settle(stale.commit({"code:o:m": Write(PhoneLink("b"))}, NOW)) is False
        assert (await read(store, ["code:o:m"]))["code:o:m"].value == PhoneLink("a")

    run_on(kind, redis_url, body)


def test_a_commit_then_another_in_the_same_transaction(redis_url: str, redis_db: Any, kind: str) -> None:
    """After a successful commit the transaction knows the versions it wrote (like MemoryStore)."""

    async def body(store: Any) -> None:
        async with any_transaction(store) as tx:
            await settle(tx.read(["guard:o:m"]))
            assert await settle(tx.commit({"guard:o:m": Write(GuardState(failures=1))}, NOW))
            assert await settle(tx.commit({"guard:o:m": Write(GuardState(failures=2))}, NOW))
        assert (await read(store, ["guard:o:m"]))["guard:o:m"].value == GuardState(failures=2)

    run_on(kind, redis_url, body)


def test_ttls_are_expiry_minus_now_plus_grace(redis_url: str, redis_db: Any, kind: str) -> None:
    async def body(store: Any) -> None:
        await write(store, {"code:o:m": Write(PhoneLink("a"), NOW + 120), "ist:x": Write(PhoneLink("a"), NOW + 600.5),
                            "member:o:m": Write(MemberState(enrolled=True))}, NOW)
        assert 0 <= (120 + TTL_GRACE) * 1000 - redis_db.pttl(PREFIX + "code:o:m") < 5000
        assert 0 <= (600.5 + TTL_GRACE) * 1000 - redis_db.pttl(PREFIX + "ist:x") < 5000
        assert redis_db.pttl(PREFIX + "member:o:m") == -1  # no expiry: no TTL
        await write(store, {"code:o:m": Write(PhoneLink("b"))}, NOW)  # rewritten without expiry: TTL dropped
        assert redis_db.pttl(PREFIX + "code:o:m") == -1
        await write(store, {"code:o:m": Write(PhoneLink("c"), NOW + 10)}, NOW + 5)
        assert 0 <= (5 + TTL_GRACE) * 1000 - redis_db.pttl(PREFIX + "code:o:m") < 5000
        assert redis_db.pttl(PREFIX + "version") == -1  # the version counter never expires

    run_on(kind, redis_url, body)


def test_prefixes_keep_deployments_apart(redis_url: str, redis_db: Any, kind: str) -> None:
    async def body(store: Any) -> None:
        other = make_store(kind, redis_url, prefix="other:")
        try:
            await write(store, {"code:o:m": Write(PhoneLink("a"))})
            assert await read(other, ["code:o:m"]) == {}
        finally:
            await close(other)

    run_on(kind, redis_url, body)
    receipts = [k for k in redis_db.keys("*") if k.startswith(PREFIX + "commit:")]
    assert len(receipts) == 1
    assert 0 < redis_db.pttl(receipts[0]) <= 60_000  # a short-lived commit receipt
    assert sorted(set(redis_db.keys("*")) - set(receipts)) == [PREFIX + "code:o:m", PREFIX + "version"]


@pytest.mark.parametrize("raw", ["not-a-record", "12|{not json", "x|{}", '5|{"t":"nope"}', "|{}"])
def test_an_unreadable_record_is_a_store_failure(redis_url: str, redis_db: Any, kind: str, raw: str) -> None:
    redis_db.set(PREFIX + "code:o:m", raw)

    async def body(store: Any) -> None:
        with pytest.raises(MfaError) as info:
            await read(store, ["code:o:m"])
        assert info.value.error_type == "internal_server_error"

    run_on(kind, redis_url, body)


def test_a_key_of_the_wrong_type_fails_the_commit_closed(redis_url: str, redis_db: Any, kind: str) -> None:
    redis_db.hset(PREFIX + "code:o:m", "a", "b")

    async def body(store: Any) -> None:
        async with any_transaction(store) as tx:
            assert await settle(tx.read(["code:o:m"])) == {}  # MGET answers nil for a non-string key
            with pytest.raises(MfaError) as info:
                await settle(tx.commit({"code:o:m": Write(PhoneLink("a"))}, NOW))
        assert info.value.error_type == "internal_server_error"

    run_on(kind, redis_url, body)
    assert redis_db.type(PREFIX + "code:o:m") == "hash"


def test_the_commit_survives_a_script_flush(redis_url: str, redis_db: Any) -> None:
    client = CountingRedis.from_url(redis_url)
    store = RedisStore(client)
    try:
        redis_db.script_flush()
        client.commands.clear()
        with store.transaction() as tx:
            tx.read(["code:o:m"])
            assert tx.commit({"code:o:m": Write(PhoneLink("a"))}, NOW)
        assert client.commands == ["MGET", "EVALSHA", "EVAL"]  # NOSCRIPT: one more round trip, cached again
        client.commands.clear()
        with store.transaction() as tx:
            tx.read(["code:o:m"])
            assert tx.commit({"code:o:m": Write(PhoneLink("b"))}, NOW)
        assert client.commands == ["MGET", "EVALSHA"]
    finally:
        client.close()


def test_construction_refusals(redis_url: str, redis_db: Any) -> None:
    with pytest.raises(ConfigurationError, match="url_or_client"):
        RedisStore("http://example.com/")
    with pytest.raises(ConfigurationError, match="url_or_client"):
        RedisStore(42)
    with pytest.raises(ConfigurationError, match="prefix"):
        RedisStore(redis_url, prefix=b"x")  # type: ignore[arg-type]
    aio = redis.asyncio.Redis.from_url(redis_url)
    with pytest.raises(ConfigurationError, match="AsyncRedisStore"):
        RedisStore(aio)
    asyncio.run(aio.aclose())
    sync = redis.Redis.from_url(redis_url)
    with pytest.raises(ConfigurationError, match="use RedisStore"):
        AsyncRedisStore(sync)
    sync.close()
    with pytest.raises(ConfigurationError, match="secret_key"):
        MfaFlow(store=RedisStore(redis_url))
    assert RedisStore.durable is True
    assert AsyncRedisStore.durable is True


def test_repr_shows_no_url_or_password(redis_url: str, redis_db: Any) -> None:
    port = redis_url.rsplit(":", 1)[1]
    with RedisStore(redis_url, prefix="app:") as store:
        assert repr(store) == "RedisStore(prefix='app:')"
        assert port not in repr(store)


# ------------------------------------------------------------------------------------------- round trips


def login_round_trips(flow: MfaFlow, client: CountingRedis, transport: MarkingTransport) -> dict[str, list[str]]:
    """Commands sent by each public call of a full login (primary with automatic send, then authenticate)."""
    calls: dict[str, list[str]] = {}
    client.commands.clear()
    primary = flow.authenticate_primary(ORG, MEMBER, "password")
    assert primary.mfa_required is not None
    assert primary.mfa_required.secondary_auth_initiated == "sms_otp"
    calls["authenticate_primary"] = list(client.commands)
    assert transport.marks[-1] == len(client.commands)  # nothing was sent to Redis after the transport
    client.commands.clear()
    done = flow.authenticate_sms_otp(ORG, MEMBER, transport.last_code(MEMBER),
                                     intermediate_session_token=primary.intermediate_session_token)
    calls["authenticate_sms_otp"] = list(client.commands)
    client.commands.clear()
    flow.authenticate_session(session_token=done.session_token)
    calls["authenticate_session"] = list(client.commands)
    client.commands.clear()
    flow.send_sms_otp(ORG, MEMBER, session_token=done.session_token)
    calls["send_sms_otp"] = list(client.commands)
    assert transport.marks[-1] == len(client.commands)
    client.commands.clear()
    flow.get_member(ORG, MEMBER)
    calls["get_member"] = list(client.commands)
    return calls


def assert_few(calls: Mapping[str, list[str]]) -> None:
    for call, commands in calls.items():
        counts = Counter(commands)
        assert set(counts) <= {"MGET", "EVALSHA"}, (call, commands)
        assert counts["MGET"] <= 2, (call, commands)
        assert counts["EVALSHA"] <= 1, (call, commands)
        assert commands[-1:] != ["MGET"] or "EVALSHA" not in commands, (call, commands)


def test_round_trips_per_public_call(redis_url: str, redis_db: Any) -> None:
    client = CountingRedis.from_url(redis_url)
    transport = MarkingTransport(client)
    try:
        flow = make_flow(RedisStore(client), transport=transport, **ROOMY)
        login_round_trips(flow, client, transport)  # warm: the script is cached after the first commit
        calls = login_round_trips(flow, client, transport)
        assert_few(calls)
        # the windows a send counts in are read up front with the member's records: one MGET, one commit
        assert calls["authenticate_primary"] == ["MGET", "EVALSHA"]
        assert calls["authenticate_sms_otp"] == ["MGET", "EVALSHA"]
        assert calls["send_sms_otp"] == ["MGET", "EVALSHA"]
        # a session used just now cannot owe a step-up: only its own record is read
        assert calls["authenticate_session"] == ["MGET", "EVALSHA"]
        assert calls["get_member"] == ["MGET"]
        print("\nRedis round trips per public call:",
              {call: dict(Counter(c)) for call, c in calls.items()})
    finally:
        client.close()


def test_after_the_transport_only_a_rejected_delivery_writes(redis_url: str, redis_db: Any) -> None:
    client = CountingRedis.from_url(redis_url)
    transport = MarkingTransport(client)
    try:
        flow = make_flow(RedisStore(client), transport=transport)
        login_round_trips(flow, client, transport)
        for outcome, writes_after in (("unknown", []), ("rejected", ["MGET", "EVALSHA"])):
            transport.fail_next(outcome)
            client.commands.clear()
            primary = flow.authenticate_primary(ORG, MEMBER, "password")
            assert primary.mfa_required is not None
            assert primary.mfa_required.secondary_auth_initiated is None  # the automatic send failed
            # an unknown outcome writes nothing afterwards; a rejected one undoes in its own read and commit
            assert client.commands[transport.marks[-1]:] == writes_after, outcome
    finally:
        client.close()


def test_round_trips_async(redis_url: str, redis_db: Any) -> None:
    async def main() -> dict[str, list[str]]:
        client = AsyncCountingRedis.from_url(redis_url)
        transport = MarkingTransport(client)
        store = AsyncRedisStore(client)
        await store.check()
        flow = AsyncMfaFlow(store=store, secret_key=KEY, clock=FakeClock(), transport=transport,
                            policy=Policy(**ROOMY))
        setup_directory(flow)
        calls: dict[str, list[str]] = {}
        try:
            for _ in range(2):
                client.commands.clear()
                primary = await flow.authenticate_primary(ORG, MEMBER, "password")
                calls["authenticate_primary"] = list(client.commands)
                assert transport.marks[-1] == len(client.commands)
                client.commands.clear()
                await flow.authenticate_sms_otp(ORG, MEMBER, transport.last_code(MEMBER),
                                                intermediate_session_token=primary.intermediate_session_token)
                calls["authenticate_sms_otp"] = list(client.commands)
        finally:
            await client.aclose()
        return calls

    calls = asyncio.run(main())
    assert_few(calls)
    assert calls == {"authenticate_primary": ["MGET", "EVALSHA"], "authenticate_sms_otp": ["MGET", "EVALSHA"]}


# ------------------------------------------------------------------------------------- eviction policy


@pytest.fixture
def evicting(redis_db: Any) -> Any:
    """The session server switched to allkeys-lru for one test, noeviction again afterwards."""
    redis_db.config_set("maxmemory-policy", "allkeys-lru")
    try:
        yield redis_db
    finally:
        redis_db.config_set("maxmemory-policy", "noeviction")


def test_an_evicting_server_warns(redis_url: str, evicting: Any) -> None:
    with pytest.warns(EvictionPolicyWarning, match="allkeys-lru") as caught:
        store = RedisStore(redis_url)
    assert caught[0].filename == __file__  # the warning points at the caller's constructor call
    store.close()
    with pytest.raises(ConfigurationError, match="noeviction") as info:
        RedisStore(redis_url, require_noeviction=True)
    assert info.value.error_type == "invalid_argument"


def test_an_evicting_server_warns_async(redis_url: str, evicting: Any) -> None:
    async def main() -> None:
        store = AsyncRedisStore(redis_url)
        with pytest.warns(EvictionPolicyWarning, match="allkeys-lru"):
            await store.check()
        await store.aclose()
        strict = AsyncRedisStore(redis_url, require_noeviction=True)  # no I/O in the constructor
        with pytest.raises(ConfigurationError, match="noeviction"):
            await strict.check()
        flow = AsyncMfaFlow(store=strict, secret_key=KEY, clock=FakeClock(), transport=FakeTransport())
        setup_directory(flow)
        with pytest.raises(ConfigurationError):  # not checked yet: the first transaction checks (and refuses)
            await flow.authenticate_primary(ORG, MEMBER, "password")
        await strict.aclose()
        lazy = AsyncRedisStore(redis_url)
        with pytest.warns(EvictionPolicyWarning):
            await read(lazy, ["code:o:m"])
        await read(lazy, ["code:o:m"])  # checked once
        await lazy.aclose()

    asyncio.run(main())


def test_noeviction_is_quiet(redis_url: str, redis_db: Any) -> None:
    assert redis_db.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
    RedisStore(redis_url, require_noeviction=True).close()  # filterwarnings=error: any warning fails


class NoConfigRedis(redis.Redis):
    def config_get(self, *args: Any, **kwargs: Any) -> Any:
        raise redis.exceptions.ResponseError("unknown command 'CONFIG'")


class AsyncNoConfigRedis(redis.asyncio.Redis):
    async def config_get(self, *args: Any, **kwargs: Any) -> Any:
        raise redis.exceptions.NoPermissionError("this user has no permissions to run the 'config|get' command")


def test_config_not_permitted_warns_and_goes_on(redis_url: str, redis_db: Any) -> None:
    client = NoConfigRedis.from_url(redis_url)
    with pytest.warns(EvictionPolicyWarning, match="could not read"):
        store = RedisStore(client, require_noeviction=True)
    flow = make_flow(store)
    assert flow.authenticate_primary(ORG, MEMBER, "password").intermediate_session_token
    client.close()

    async def main() -> None:
        aclient = AsyncNoConfigRedis.from_url(redis_url)
        store = AsyncRedisStore(aclient)
        with pytest.warns(EvictionPolicyWarning, match="NoPermissionError"):
            await store.check()
        await aclient.aclose()

    asyncio.run(main())


def test_config_refused_by_an_acl_warns_and_goes_on(redis_url: str, redis_db: Any) -> None:
    redis_db.acl_setuser("mfa-app", enabled=True, passwords=["+app-password"], keys=["*"],
                         commands=["+@all", "-config"])
    try:
        url = redis_url.replace("redis://", "redis://mfa-app:app-password@")
        with pytest.warns(EvictionPolicyWarning, match="NoPermissionError"):
            store = RedisStore(url)
        with store:
            assert "app-password" not in repr(store)
            flow = make_flow(store)
            assert flow.authenticate_primary(ORG, MEMBER, "password").intermediate_session_token
    finally:
        redis_db.acl_deluser("mfa-app")


def test_an_unreachable_server_at_construction_is_a_store_failure(start_redis_server: Any) -> None:
    server = start_redis_server()
    server.stop()
    client = redis.Redis.from_url(server.url, retry=Retry(NoBackoff(), 0), socket_connect_timeout=1)
    with pytest.raises(MfaError) as info:
        RedisStore(client)
    assert info.value.error_type == "internal_server_error"
    assert "127.0.0.1" not in str(info.value)


# ---------------------------------------------------------------------------------------- without redis-py


def test_without_redis_py(tmp_path: Path) -> None:
    """``import mfa_flow.stores`` works; building either store names the extra to install."""
    blocker = tmp_path / "sitecustomize.py"
    blocker.write_text(textwrap.dedent("""
        import sys

        class _NoRedis:
            def find_spec(self, name, path=None, target=None):
                if name == "redis" or name.startswith("redis."):
                    raise ModuleNotFoundError(f"No module named {name!r}", name=name)
                return None

        sys.meta_path.insert(0, _NoRedis())
    """))
    script = textwrap.dedent("""
        import sys
        import mfa_flow
        import mfa_flow.stores
        from mfa_flow.stores import AsyncRedisStore, EvictionPolicyWarning, RedisStore
        assert not any(m == "redis" or m.startswith("redis.") for m in sys.modules)
        for cls in (RedisStore, AsyncRedisStore):
            try:
                cls("redis://127.0.0.1:1/0")
            except mfa_flow.ConfigurationError as exc:
                print(cls.__name__, exc.error_type, exc.error_message)
            else:
                raise SystemExit("no ConfigurationError")
    """)
    done = run_python("-c", script, env=python_env(tmp_path), timeout=60)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 2
    for line, name in zip(lines, ["RedisStore", "AsyncRedisStore"], strict=True):
        assert line.startswith(f"{name} invalid_argument ")
        assert "pip install mfa_flow[redis]" in line


# ------------------------------------------------------------------------------------------ end to end


def test_mfa_flow_end_to_end(redis_url: str, redis_db: Any) -> None:
    clock, transport, events = FakeClock(), FakeTransport(), []
    with RedisStore(redis_url) as store:
        flow = make_flow(store, clock=clock, transport=transport, events=events)
        primary = flow.authenticate_primary(ORG, MEMBER, "password")
        ist = primary.intermediate_session_token
        assert error_type(flow.authenticate_sms_otp, ORG, MEMBER, wrong(transport.last_code()),
                          intermediate_session_token=ist) == "otp_code_not_found"
        assert guard_failures(store) == 1
        done = flow.authenticate_sms_otp(ORG, MEMBER, transport.last_code(), intermediate_session_token=ist)
        assert done.session_token
        assert done.member_session is not None
        assert guard_failures(store) == 0
        again = error_type(flow.authenticate_sms_otp, ORG, MEMBER, transport.last_code(),
                           intermediate_session_token=ist)
        assert again in {"unable_to_auth_otp_code", "intermediate_session_not_found"}
        # the store holds no code and no token in clear
        dump = " ".join(redis_db.get(k) for k in redis_db.keys("*"))
        assert transport.last_code() not in dump
        assert done.session_token not in dump
        assert ist not in dump
        # inactivity step-up
        clock.advance(1801)
        check = flow.authenticate_session(session_token=done.session_token)
        assert check.step_up_required
        assert check.secondary_auth_initiated == "sms_otp"
        flow.authenticate_sms_otp(ORG, MEMBER, transport.last_code(), session_token=done.session_token)
        assert not flow.authenticate_session(session_token=done.session_token).step_up_required
        # a rejected delivery removes the code it wrote
        transport.fail_next("rejected")
        assert error_type(flow.send_sms_otp, ORG, MEMBER, session_token=done.session_token) == \
            "downstream_carrier_error"
        assert error_type(flow.authenticate_sms_otp, ORG, MEMBER, transport.last_code(),
                          session_token=done.session_token) == "unable_to_auth_otp_code"
        # TTL-bearing keys: code, IST and session carry a TTL; the member overlay does not
        assert redis_db.pttl(PREFIX + keys.member(ORG, MEMBER)) == -1
        assert any(name.startswith("session.created") for name in (e.name for e in events))


def test_async_mfa_flow_end_to_end(redis_url: str, redis_db: Any) -> None:
    async def main() -> None:
        transport = FakeTransport()
        async with AsyncRedisStore(redis_url) as store:
            await store.check()
            flow = AsyncMfaFlow(store=store, secret_key=KEY, clock=FakeClock(), transport=transport)
            setup_directory(flow)
            primary = await flow.authenticate_primary(ORG, MEMBER, "password")
            with pytest.raises(MfaError, match="otp_code_not_found"):
                await flow.authenticate_sms_otp(ORG, MEMBER, wrong(transport.last_code()),
                                                intermediate_session_token=primary.intermediate_session_token)
            done = await flow.authenticate_sms_otp(ORG, MEMBER, transport.last_code(),
                                                   intermediate_session_token=primary.intermediate_session_token)
            assert done.session_token
            check = await flow.authenticate_session(session_token=done.session_token)
            assert not check.step_up_required

    asyncio.run(main())


def test_removing_a_code_ttl_does_not_revive_it(redis_url: str, redis_db: Any) -> None:
    clock, transport = FakeClock(), FakeTransport()
    with RedisStore(redis_url) as store:
        flow = make_flow(store, clock=clock, transport=transport)
        primary = flow.authenticate_primary(ORG, MEMBER, "password")
        code_key = PREFIX + keys.code(ORG, MEMBER)
        assert redis_db.pttl(code_key) > 0
        assert redis_db.persist(code_key)
        clock.advance(121)  # past otp_ttl (120 s)
        assert error_type(flow.authenticate_sms_otp, ORG, MEMBER, transport.last_code(),
                          intermediate_session_token=primary.intermediate_session_token) == "unable_to_auth_otp_code"
        # an IST whose TTL was removed does not come back either
        ist_keys = redis_db.keys(PREFIX + "ist:*")
        assert ist_keys
        assert all(redis_db.persist(k) for k in ist_keys)
        clock.advance(600)
        assert error_type(flow.send_sms_otp, ORG, MEMBER,
                          intermediate_session_token=primary.intermediate_session_token) == \
            "intermediate_session_not_found"


def test_two_flows_on_one_redis_are_one_deployment(redis_url: str, redis_db: Any) -> None:
    clock, transport = FakeClock(), FakeTransport()
    with RedisStore(redis_url) as store_a, RedisStore(redis_url) as store_b:
        a = make_flow(store_a, clock=clock, transport=transport)
        b = make_flow(store_b, clock=clock, transport=transport)
        primary = a.authenticate_primary(ORG, MEMBER, "password")
        done = b.authenticate_sms_otp(ORG, MEMBER, transport.last_code(),
                                      intermediate_session_token=primary.intermediate_session_token)
        assert a.authenticate_session(session_token=done.session_token).member_session.member_id == MEMBER
        # the send limit (5 / 600 s per member) counts the sends of both
        for flow in (a, b, a, b):
            flow.send_sms_otp(ORG, MEMBER, session_token=done.session_token)
        assert error_type(a.send_sms_otp, ORG, MEMBER, session_token=done.session_token) == "too_many_requests"
        assert error_type(b.send_sms_otp, ORG, MEMBER, session_token=done.session_token) == "too_many_requests"
        # failures counted on one count on the other, up to the lock
        clock.advance(700)
        primary = a.authenticate_primary(ORG, MEMBER, "password")
        code = transport.last_code()
        for i, guess in enumerate(wrong_codes(code, 10)):
            flow = (a, b)[i % 2]
            if i % 5 == 0 and i:
                flow.send_sms_otp(ORG, MEMBER, intermediate_session_token=primary.intermediate_session_token)
                code = transport.last_code()
            kind = error_type(flow.authenticate_sms_otp, ORG, MEMBER, guess if guess != code else "abcdef",
                              intermediate_session_token=primary.intermediate_session_token)
            assert kind == ("user_lock_limit_reached" if i == 9 else "otp_code_not_found")
        assert b.get_member(ORG, MEMBER).is_locked
        assert error_type(a.authenticate_primary, ORG, MEMBER, "password") == "user_lock_limit_reached"


# --------------------------------------------------------------------------------------------- the races


def tally(outcomes: list[Outcome]) -> Counter[str]:
    """Each MfaError's error_type and "ok" per success; any other exception fails the test at once."""
    counts = error_types(outcomes)
    if won := successes(outcomes):
        counts["ok"] = len(won)
    return counts


def test_c1_one_code_one_session(redis_url: str, redis_db: Any) -> None:
    """C1: 32 threads submit the same correct code: exactly one session, no failure counted."""
    transport = FakeTransport()
    with RedisStore(redis_url) as store:
        flow = make_flow(store, transport=transport, **ROOMY)
        for _ in range(C1_REPETITIONS):
            primary = flow.authenticate_primary(ORG, MEMBER, "password")
            code, ist = transport.last_code(), primary.intermediate_session_token
            counts = tally(race(THREADS, lambda _i, code=code, ist=ist: flow.authenticate_sms_otp(
                ORG, MEMBER, code, intermediate_session_token=ist)))
            assert counts["ok"] == 1, counts
            assert set(counts) <= {"ok"} | C1_LOSER_ERRORS, counts
            assert guard_failures(store) == 0


def test_c2_wrong_codes_count_exactly(redis_url: str, redis_db: Any) -> None:
    """C2: 32 distinct wrong codes: exactly max_attempts_per_code (5) count, the rest find the code dead."""
    transport = FakeTransport()
    with RedisStore(redis_url) as store:
        flow = make_flow(store, transport=transport)
        for rep in range(C2_REPETITIONS):
            redis_db.flushdb()  # a fresh member state each time (the default policy locks at 10 failures)
            primary = flow.authenticate_primary(ORG, MEMBER, "password")
            code, ist = transport.last_code(), primary.intermediate_session_token
            guesses = wrong_codes(code, THREADS)
            counts = tally(race(THREADS, lambda i, ist=ist, guesses=guesses:
                                flow.authenticate_sms_otp(ORG, MEMBER, guesses[i], intermediate_session_token=ist)))
            assert counts == {"otp_code_not_found": 5, "unable_to_auth_otp_code": THREADS - 5}, (rep, counts)
            assert guard_failures(store) == 5


# ------------------------------------------------------------------------------------ connection dropped


def test_a_stopped_server_fails_closed(redis_url: str, start_redis_server: Any) -> None:
    """The server goes away between primary auth and authenticate: internal_server_error, no session."""
    server = start_redis_server()
    events: list[Event] = []
    transport = FakeTransport()
    client = redis.Redis.from_url(server.url, retry=Retry(NoBackoff(), 1), socket_connect_timeout=1)
    flow = make_flow(RedisStore(client), transport=transport, events=events)
    primary = flow.authenticate_primary(ORG, MEMBER, "password")
    server.stop()
    with pytest.raises(MfaError) as info:
        flow.authenticate_sms_otp(ORG, MEMBER, transport.last_code(),
                                  intermediate_session_token=primary.intermediate_session_token)
    assert info.value.error_type == "internal_server_error"
    assert not [e for e in events if e.name == "session.created"]
    client.close()


class DroppedBeforeCommit(redis.connection.Connection):
    """A connection the server closes (CLIENT KILL) just before the commit is written to it."""

    armed = False
    killer: Any = None

    def send_command(self, *args: Any, **kwargs: Any) -> None:
        if args and args[0] == "EVALSHA" and DroppedBeforeCommit.armed:
            DroppedBeforeCommit.armed = False
            assert DroppedBeforeCommit.killer.client_kill_filter(_type="normal", skipme=True) >= 1
        super().send_command(*args, **kwargs)


def test_a_connection_dropped_before_the_commit_fails_closed(redis_url: str, redis_db: Any) -> None:
    """The connection dies between the read and the commit of authenticate: internal_server_error, nothing
    written (redis-py's retry is off here; with it on, redis-py would reconnect and the call would succeed)."""
    transport, events = FakeTransport(), []
    client = redis.Redis.from_url(redis_url, retry=Retry(NoBackoff(), 0), connection_class=DroppedBeforeCommit)
    DroppedBeforeCommit.killer = redis_db
    try:
        flow = make_flow(RedisStore(client), transport=transport, events=events)
        primary = flow.authenticate_primary(ORG, MEMBER, "password")
        before = {k: redis_db.get(k) for k in redis_db.keys("*")}
        DroppedBeforeCommit.armed = True
        with pytest.raises(MfaError) as info:
            flow.authenticate_sms_otp(ORG, MEMBER, transport.last_code(),
                                      intermediate_session_token=primary.intermediate_session_token)
        assert not DroppedBeforeCommit.armed
        assert info.value.error_type == "internal_server_error"
        assert {k: redis_db.get(k) for k in redis_db.keys("*")} == before
        assert not [e for e in events if e.name == "session.created"]
        done = flow.authenticate_sms_otp(ORG, MEMBER, transport.last_code(),  # the code is still live
                                         intermediate_session_token=primary.intermediate_session_token)
        assert done.session_token
    finally:
        DroppedBeforeCommit.armed = False
        client.close()


def test_a_connection_dropped_mid_call_async_fails_closed(redis_url: str, start_redis_server: Any) -> None:
    server = start_redis_server()

    async def main() -> None:
        transport = FakeTransport()
        client = redis.asyncio.Redis.from_url(server.url, retry=Retry(NoBackoff(), 0), socket_connect_timeout=1)
        store = AsyncRedisStore(client)
        flow = AsyncMfaFlow(store=store, secret_key=KEY, clock=FakeClock(), transport=transport)
        setup_directory(flow)
        primary = await flow.authenticate_primary(ORG, MEMBER, "password")
        server.stop()
        with pytest.raises(MfaError) as info:
            await flow.authenticate_sms_otp(ORG, MEMBER, transport.last_code(),
                                            intermediate_session_token=primary.intermediate_session_token)
        assert info.value.error_type == "internal_server_error"
        await client.aclose()

    asyncio.run(main())


def test_a_replayed_commit_answers_like_the_first_run_and_writes_nothing_twice(redis_url: str, redis_db: Any) -> None:
    """redis-py may resend a commit after a dropped connection: the receipt makes the replay harmless."""
    from mfa_flow.stores.redis import _COMMIT_LUA

    store = RedisStore(redis_url, prefix=PREFIX)
    try:
        keys, args = store._core.commit_request({"code:o:m": 0}, {"code:o:m": Write(PhoneLink("a"))}, 0.0)
        first = redis_db.eval(_COMMIT_LUA, len(keys), *keys, *args)
        version_after_first = redis_db.get(PREFIX + "version")
        replay = redis_db.eval(_COMMIT_LUA, len(keys), *keys, *args)
        assert replay == first != 0
        assert redis_db.get(PREFIX + "version") == version_after_first  # nothing applied twice
        stale = store._core.commit_request({"code:o:m": 0}, {"code:o:m": Write(PhoneLink("b"))}, 0.0)
        assert redis_db.eval(_COMMIT_LUA, len(stale[0]), *stale[0], *stale[1]) == 0  # a new commit still checks
    finally:
        store.close()
