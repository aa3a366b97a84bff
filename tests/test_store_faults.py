"""Store failures at every step of every public call (reference security.md U23, C7) on every store kind.

A fault layer counts the store operations of one public call — transaction begin, each read, the commit,
transaction end — and fails the k-th one, for every k up to the number a clean run of that call makes
(counted first). A commit fails either before it is applied or after (the reply lost); a transaction end
fails after the commit went through. On Redis the same is done one layer lower, in the redis-py client
(``mget`` / ``evalsha`` raising ``redis.ConnectionError``), and with a TCP proxy that really drops the
connection.

After each faulted call: the call answered ``internal_server_error``; no delivery was attempted once the
admission failed, and no message was ever delivered without its pending code committed first; a fault
before the decisive commit changed nothing (store, member, failure counter) and the same call then runs as
if nothing had happened; a fault after it left exactly that commit's writes; the newest code delivered is
live unless a later commit superseded or used it. The one documented exception: a ``DeliveryRejected``
whose rollback fails answers ``internal_server_error`` and leaves the unverified link (and its undelivered
code) in place.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from collections.abc import Set as AbstractSet
from contextlib import AbstractAsyncContextManager, AbstractContextManager, asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any

import attrs
import pytest

from mfa_flow import Member, MfaError
from mfa_flow.crypto import Keyring
from mfa_flow.state import CodeState, PhoneLink, keys
from mfa_flow.stores import Entry, Write
from tests.helpers_rules import wrong
from tests.stores_matrix import (
    MEMBER,
    NEW_PHONE,
    ORCHESTRATORS,
    ORG,
    PHONELESS,
    SECRET_KEY,
    STORE_KINDS,
    Matrix,
    StoreWrapper,
    World,
    matrix_fixture,  # noqa: F401 - the ``matrix`` fixture
)


class FaultInjected(Exception):
    """What the fault layer raises: any exception but an MfaError is a store failure to the flow."""


# ------------------------------------------------------------------------------------------ fault layers


@dataclass
class FaultPlan:
    """Counts the operations of the armed call; the ``fail_at``-th one fails (``after``: once applied)."""

    armed: bool = False
    fail_at: int = 0
    after: bool = False
    fired: bool = False
    trace: list[str] = field(default_factory=list)

    def arm(self, fail_at: int = 0, *, after: bool = False) -> None:
        self.armed, self.fail_at, self.after, self.fired = True, fail_at, after, False
        self.trace = []

    def disarm(self) -> None:
        self.armed = False

    def tick(self, op: str) -> bool:
        """Count ``op``; True when it is the one to fail."""
        if not self.armed:
            return False
        self.trace.append(op)
        hit = len(self.trace) == self.fail_at
        self.fired |= hit
        return hit


class _FaultTx:
    def __init__(self, tx: Any, plan: FaultPlan) -> None:
        self._tx = tx
        self._plan = plan

    def _before_read(self) -> None:
        if self._plan.tick("read"):
            raise FaultInjected("read")

    def _before_commit(self) -> bool:
        """Count the commit; fail it here when it is the one to fail before it is applied."""
        hit = self._plan.tick("commit")
        if hit and not self._plan.after:
            raise FaultInjected("commit, before it is applied")
        return hit

    @staticmethod
    def _after_commit(hit: bool, applied: object) -> bool:
        if hit:
            raise FaultInjected("commit, after it was applied (the reply is lost)")
        return bool(applied)

    def read(self, keys: Iterable[str]) -> dict[str, Entry]:
        self._before_read()
        return self._tx.read(keys)  # type: ignore[no-any-return]

    def commit(self, writes: Mapping[str, Write], now: float) -> bool:
        hit = self._before_commit()
        return self._after_commit(hit, self._tx.commit(writes, now))


class _AsyncFaultTx(_FaultTx):
    async def read(self, keys: Iterable[str]) -> dict[str, Entry]:  # type: ignore[override]
        self._before_read()
        return await self._tx.read(keys)  # type: ignore[no-any-return]

    async def commit(self, writes: Mapping[str, Write], now: float) -> bool:  # type: ignore[override]
        hit = self._before_commit()
        return self._after_commit(hit, await self._tx.commit(writes, now))


class FaultStore(StoreWrapper):
    """Fails the k-th store operation of the armed call: begin, read, commit (before/after), end."""

    def __init__(self, inner: Any, plan: FaultPlan) -> None:
        super().__init__(inner)
        self.plan = plan

    @contextmanager
    def _sync_scope(self, scope: AbstractContextManager[Any]) -> Iterator[_FaultTx]:
        if self.plan.tick("begin"):
            raise FaultInjected("begin")
        with scope as tx:
            yield _FaultTx(tx, self.plan)
        if self.plan.tick("end"):
            raise FaultInjected("end, after the transaction")

    @asynccontextmanager
    async def _async_scope(self, scope: AbstractAsyncContextManager[Any]) -> Any:
        if self.plan.tick("begin"):
            raise FaultInjected("begin")
        async with scope as tx:
            yield _AsyncFaultTx(tx, self.plan)
        if self.plan.tick("end"):
            raise FaultInjected("end, after the transaction")


class FlakyRedis:
    """A redis-py client proxy whose k-th ``mget`` / ``evalsha`` raises ``redis.ConnectionError``."""

    def __init__(self, client: Any, plan: FaultPlan) -> None:
        self._client = client
        self._plan = plan

    def _io(self, op: str, *args: Any) -> Any:
        import redis

        hit = self._plan.tick(op)
        if hit and not (self._plan.after and op == "evalsha"):
            raise redis.ConnectionError("Connection closed by server (injected).")
        answer = getattr(self._client, op)(*args)
        if hit:
            raise redis.ConnectionError("Connection closed by server (injected, after the script ran).")
        return answer

    def mget(self, *args: Any) -> Any:
        return self._io("mget", *args)

    def evalsha(self, *args: Any) -> Any:
        return self._io("evalsha", *args)

    def eval(self, *args: Any) -> Any:
        return self._client.eval(*args)

    def config_get(self, *args: Any) -> Any:
        return self._client.config_get(*args)

    def execute_command(self, *args: Any) -> Any:
        return self._client.execute_command(*args)

    def close(self) -> None:
        self._client.close()


class AsyncFlakyRedis:
    """``FlakyRedis`` for ``redis.asyncio`` clients."""

    def __init__(self, client: Any, plan: FaultPlan) -> None:
        self._client = client
        self._plan = plan

    async def _io(self, op: str, *args: Any) -> Any:
        import redis

        hit = self._plan.tick(op)
        if hit and not (self._plan.after and op == "evalsha"):
            raise redis.ConnectionError("Connection closed by server (injected).")
        answer = await getattr(self._client, op)(*args)
        if hit:
            raise redis.ConnectionError("Connection closed by server (injected, after the script ran).")
        return answer

    async def mget(self, *args: Any) -> Any:
        return await self._io("mget", *args)

    async def evalsha(self, *args: Any) -> Any:
        return await self._io("evalsha", *args)

    async def eval(self, *args: Any) -> Any:
        return await self._client.eval(*args)

    async def config_get(self, *args: Any) -> Any:
        return await self._client.config_get(*args)

    async def execute_command(self, *args: Any) -> Any:
        return await self._client.execute_command(*args)

    async def aclose(self) -> None:
        await self._client.aclose()


# ---------------------------------------------------------------------------------------- the calls


Context = dict[str, str]


def _login(world: World) -> Context:
    ist, code = world.login(MEMBER)
    return {"ist": ist, "code": code}


def _phoneless(world: World) -> Context:
    result = world.api.authenticate_primary(ORG, PHONELESS, "email_magic_link")
    return {"ist": result.intermediate_session_token}


def _phoneless_rejected(world: World) -> Context:
    ctx = _phoneless(world)
    world.transport.fail_next("rejected")
    return ctx


def _stale_session(world: World) -> Context:
    token = world.session(MEMBER)
    world.clock.advance(1801)
    return {"session": token}


def _nothing(_: World) -> Context:
    return {}


def _linked(before: Member) -> Member:
    return attrs.evolve(before, mfa_phone_number=NEW_PHONE, mfa_phone_number_verified=False)


def _enrolled(before: Member) -> Member:
    return attrs.evolve(before, mfa_enrolled=True)


def _unlinked(before: Member) -> Member:
    return attrs.evolve(before, mfa_phone_number="", mfa_phone_number_verified=False)


def _same(before: Member) -> Member:
    return before


@dataclass(frozen=True)
class Case:
    """A public call: its set-up, the call, the clean answer, and the member view its commit writes."""

    setup: Callable[[World], Context]
    call: Callable[[World, Context], object]
    clean: str  # "ok" or the error_type of a clean run
    member: str  # whose view, counter and codes are checked
    committed: Callable[[Member], Member] = _same  # the member view once the decisive commit is applied
    rejected: bool = False  # the gateway rejects the delivery: a rollback transaction follows


CASES: dict[str, Case] = {
    "primary_auto_send": Case(
        _nothing, lambda w, _: w.api.authenticate_primary(ORG, MEMBER, "email_magic_link"), "ok", MEMBER),
    "explicit_send": Case(
        _login, lambda w, c: w.api.send_sms_otp(ORG, MEMBER, intermediate_session_token=c["ist"]), "ok", MEMBER),
    "send_linking": Case(
        _phoneless, lambda w, c: w.api.send_sms_otp(ORG, PHONELESS, mfa_phone_number=NEW_PHONE,
                                                    intermediate_session_token=c["ist"]),
        "ok", PHONELESS, _linked),
    "send_linking_rejected": Case(
        _phoneless_rejected, lambda w, c: w.api.send_sms_otp(ORG, PHONELESS, mfa_phone_number=NEW_PHONE,
                                                             intermediate_session_token=c["ist"]),
        "downstream_carrier_error", PHONELESS, _linked, rejected=True),
    "authenticate_right_code": Case(
        _login, lambda w, c: w.api.authenticate_sms_otp(ORG, MEMBER, c["code"],
                                                        intermediate_session_token=c["ist"]),
        "ok", MEMBER, _enrolled),
    "authenticate_wrong_code": Case(
        _login, lambda w, c: w.api.authenticate_sms_otp(ORG, MEMBER, wrong(c["code"]),
                                                        intermediate_session_token=c["ist"]),
        "otp_code_not_found", MEMBER),
    "step_up_send": Case(
        _stale_session, lambda w, c: w.api.authenticate_session(session_token=c["session"]), "ok", MEMBER),
    "delete_phone": Case(
        _login, lambda w, _: w.api.delete_mfa_phone_number(ORG, MEMBER), "ok", MEMBER, _unlinked),
    "record_factor": Case(
        _login, lambda w, c: w.api.record_mfa_factor(ORG, MEMBER, "totp", intermediate_session_token=c["ist"]),
        "ok", MEMBER),
}


# ------------------------------------------------------------------------------------------- checking


def answer_of(call: Callable[[], object]) -> tuple[str, object]:
    """("ok", result) or (error_type, the MfaError); any other exception escapes (a bug)."""
    try:
        return "ok", call()
    except MfaError as exc:
        return exc.error_type, exc


def changed(before: Mapping[str, int], after: Mapping[str, int]) -> set[str]:
    return {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}


def written(world: World, since: int) -> set[str]:
    return {k for commit in world.recorder.log[since:] for k in commit.writes}


def newest_code_is_live_unless_superseded(world: World, member_id: str, *,
                                          unlogged: AbstractSet[str] = frozenset()) -> list[str]:
    """The newest code delivered to the member is live unless a later commit replaced or used it.

    ``unlogged``: keys a commit changed that the commit log could not see (one applied under a client
    fault, below the recording layer)."""
    messages = [m for m in world.transport.sent if m.member_id == member_id]
    if not messages:
        return []
    code = messages[-1].code
    keyring = Keyring(SECRET_KEY)
    key = keys.code(ORG, member_id)
    log = world.recorder.log
    wrote = [(i, v) for i, c in enumerate(log) if isinstance(v := getattr(c.writes.get(key), "value", None), CodeState)
             and keyring.verify(v.code_id, code, v.digest)]
    if not wrote:
        return [f"the newest message to {member_id} has no committed code"]
    first, ours = wrote[0]
    later = [c.writes[key].value for c in log[first + 1:] if key in c.writes]
    replaced = key in unlogged or any(v is None or getattr(v, "code_id", "") != ours.code_id for v in later)
    live = world.live_code(member_id)
    if not replaced and (live is None or live.code_id != ours.code_id):
        return [f"the newest code delivered to {member_id} is not live, yet nothing replaced or used it"]
    return []


@dataclass
class Discovery:
    trace: list[str]
    first_end: int  # index (1-based) of the end of the call's first (decisive) transaction
    deliveries: int  # delivery attempts of a clean run


def build(matrix: Matrix, kind: str, orchestrator: str, layer: str, plan: FaultPlan) -> World:
    if layer == "store":
        return matrix.make_flow(kind, orchestrator, wrap=lambda s: FaultStore(s, plan))  # type: ignore[arg-type]
    proxy = AsyncFlakyRedis if orchestrator == "async" else FlakyRedis
    return matrix.make_flow(kind, orchestrator,  # type: ignore[arg-type]
                            redis_client=lambda client: proxy(client, plan))


def discover(matrix: Matrix, kind: str, orchestrator: str, layer: str, case: Case) -> Discovery:
    """A clean run: its answer, the member view after it, and the operations it made."""
    plan = FaultPlan()
    world = build(matrix, kind, orchestrator, layer, plan)
    ctx = case.setup(world)
    before = world.api.get_member(ORG, case.member)
    attempts = len(world.transport.attempts)
    plan.arm()
    answer, _ = answer_of(lambda: case.call(world, ctx))
    plan.disarm()
    assert answer == case.clean
    deliveries = len(world.transport.attempts) - attempts
    after = world.api.get_member(ORG, case.member)
    assert after == (before if case.rejected else case.committed(before)), "the Case table is wrong"
    assert world.transport.unpersisted == []
    assert plan.trace
    ends = [i for i, op in enumerate(plan.trace, 1) if op in ("end", "evalsha")]
    commits = [op for op in plan.trace if op in ("commit", "evalsha")]
    assert len(commits) == (2 if case.rejected else 1), plan.trace
    return Discovery(list(plan.trace), ends[0] if ends else len(plan.trace), deliveries)


def faults(trace: list[str]) -> list[tuple[int, bool]]:
    """(k, after) for every operation: a commit fails before and after it is applied, an end after it."""
    out: list[tuple[int, bool]] = []
    for k, op in enumerate(trace, 1):
        if op in ("commit", "evalsha"):
            out += [(k, False), (k, True)]
        else:
            out.append((k, op == "end"))
    return out


def check_fault(matrix: Matrix, kind: str, orchestrator: str, layer: str, case: Case, found: Discovery,
                k: int, after: bool) -> None:
    where = f"{layer} fault at operation {k} ({found.trace[k - 1]}{', after' if after else ''}) of {found.trace}"
    plan = FaultPlan()
    world = build(matrix, kind, orchestrator, layer, plan)
    ctx = case.setup(world)
    before = world.api.get_member(ORG, case.member)
    failures = world.failures(case.member)
    snapshot = world.snapshot()
    log_start = len(world.recorder.log)
    attempts = len(world.transport.attempts)
    sent = len(world.transport.sent)

    plan.arm(k, after=after)
    answer, _ = answer_of(lambda: case.call(world, ctx))
    plan.disarm()
    assert plan.fired, where
    if found.trace[k - 1] == "end":
        # Closing a transaction failed after its commit (or after a read-only pass): the change stands, so the
        # call answers as a clean run does instead of misreporting a committed change as a failure.
        assert answer == case.clean, f"{where}: answered {answer}"
        assert world.transport.unpersisted == [], where
        assert len(world.transport.attempts) == attempts + found.deliveries, where
        expected = before if case.rejected else case.committed(before)
        assert world.api.get_member(ORG, case.member) == expected, where
        world.close()
        return
    assert answer == "internal_server_error", f"{where}: answered {answer}"
    assert world.transport.unpersisted == [], f"{where}: a message was delivered without its code committed"
    applied = world.recorder.log[log_start:]
    member = world.api.get_member(ORG, case.member)
    in_first = k <= found.first_end
    now_changed = changed(snapshot, world.snapshot())
    # A client-level fault after the script ran is below the commit log: the store applied the commit, yet
    # the flow (and the log above the store) saw an exception. Count it as applied, known by the snapshot.
    unlogged = now_changed - written(world, log_start) if layer == "redis" and after else set()
    if layer == "redis" and after:
        applied = [*applied, None]  # type: ignore[list-item]

    if in_first:
        assert len(world.transport.attempts) == attempts, f"{where}: delivered although admission failed"
        if not after:  # nothing was applied: nothing changed, and the call then runs as if never tried
            assert applied == [], where
            assert now_changed == set(), where
            assert member == before, where
            assert world.failures(case.member) == failures, where
            assert answer_of(lambda: case.call(world, ctx))[0] == case.clean, f"{where}: the retry differs"
        else:  # the decisive commit went through, its reply was lost: exactly its writes, no delivery
            assert len(applied) == 1, where
            assert now_changed <= written(world, log_start) | unlogged, where
            assert member == case.committed(before), where
    else:  # the rollback transaction of a rejected delivery failed
        assert case.rejected, where
        assert len(world.transport.attempts) == attempts + 1, where
        assert len(world.transport.sent) == sent, where
        assert now_changed <= written(world, log_start) | unlogged, where
        if not after:  # the documented case: the unverified link (and its undelivered code) may remain
            assert len(applied) == 1, where
            assert member == case.committed(before), f"{where}: {member}"
            link = world.read(keys.link(ORG, NEW_PHONE))
            assert link is not None, where
            assert isinstance(link.value, PhoneLink), where
            assert link.value.member_id == case.member, where
        else:  # the rollback went through, its reply was lost
            assert len(applied) == 2, where
            assert member == before, where
            assert world.read(keys.link(ORG, NEW_PHONE)) is None, where
    assert newest_code_is_live_unless_superseded(world, case.member, unlogged=unlogged) == [], where
    world.close()


# ------------------------------------------------------------------------------------------- the tests


@pytest.mark.parametrize("orchestrator", ORCHESTRATORS)
@pytest.mark.parametrize("kind", STORE_KINDS)
@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.timeout(180)
def test_store_fault_at_every_operation_fails_closed(matrix: Matrix, kind: str, orchestrator: str,
                                                     name: str) -> None:
    case = CASES[name]
    found = discover(matrix, kind, orchestrator, "store", case)
    for k, after in faults(found.trace):
        check_fault(matrix, kind, orchestrator, "store", case, found, k, after)


@pytest.mark.parametrize("orchestrator", ORCHESTRATORS)
@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.timeout(180)
def test_redis_connection_error_at_every_command_fails_closed(matrix: Matrix, orchestrator: str,
                                                              name: str) -> None:
    case = CASES[name]
    found = discover(matrix, "redis", orchestrator, "redis", case)
    assert set(found.trace) == {"mget", "evalsha"}
    for k, after in faults(found.trace):
        check_fault(matrix, "redis", orchestrator, "redis", case, found, k, after)


def test_fault_layers_are_transparent_when_nothing_fails(matrix: Matrix) -> None:
    """Armed with no fault, every call runs as on the bare store (the discovery runs assert each answer)."""
    for name, case in CASES.items():
        found = discover(matrix, "memory", "sync", "store", case)
        assert found.trace[0] == "begin", name
        assert found.trace.count("begin") == found.trace.count("end"), name


# ------------------------------------------------------------------- a real connection drop (TCP proxy)


class DroppingProxy:
    """A TCP proxy in front of redis-server that drops the connection at the next EVALSHA (the commit).

    ``arm("before")`` closes the connection instead of forwarding the command (Redis never runs it);
    ``arm("after")`` forwards it and closes the connection instead of returning the reply (Redis ran it, the
    reply is lost). With ``refuse=True`` every later connection is closed at once, so the client's own
    reconnect-and-retry fails too; with ``refuse=False`` the client reconnects and retries the command.
    """

    def __init__(self, port: int) -> None:
        self._upstream = port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self.mode: str | None = None
        self.refuse = False
        self.drops = 0
        threading.Thread(target=self._accept, name="redis-proxy", daemon=True).start()

    def arm(self, mode: str, *, refuse: bool) -> None:
        with self._lock:
            self.mode, self.refuse = mode, refuse

    def disarm(self) -> None:
        with self._lock:
            self.mode, self.refuse = None, False

    def close(self) -> None:
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                _close(sock)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                refused = self.refuse and self.drops > 0
            if refused:
                _close(client)
                continue
            server = socket.create_connection(("127.0.0.1", self._upstream))
            with self._lock:
                self._sockets += [client, server]
            lost = threading.Event()
            threading.Thread(target=self._requests, args=(client, server, lost), daemon=True).start()
            threading.Thread(target=self._replies, args=(server, client, lost), daemon=True).start()

    def _requests(self, client: socket.socket, server: socket.socket, lost: threading.Event) -> None:
        while data := _recv(client):
            with self._lock:
                hit = self.mode is not None and b"EVALSHA" in data.upper()
                mode = self.mode if hit else None
                if hit:
                    self.mode = None
                    self.drops += 1
            if mode == "before":
                break
            if mode == "after":
                lost.set()
            try:
                server.sendall(data)
            except OSError:
                break
        _close(client)
        _close(server)

    @staticmethod
    def _replies(server: socket.socket, client: socket.socket, lost: threading.Event) -> None:
        while data := _recv(server):
            if lost.is_set():
                break
            try:
                client.sendall(data)
            except OSError:
                break
        _close(client)
        _close(server)


def _recv(sock: socket.socket) -> bytes:
    try:
        return sock.recv(65536)
    except OSError:
        return b""


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


@pytest.fixture
def redis_proxy(redis_url: str) -> Iterator[DroppingProxy]:
    proxy = DroppingProxy(int(redis_url.rsplit(":", 1)[1].split("/", maxsplit=1)[0]))
    yield proxy
    proxy.close()


def proxied_client(proxy: DroppingProxy, orchestrator: str) -> Callable[[Any], Any]:
    """The store's client, through the proxy; redis-py's own retry kept, with a short backoff."""
    import redis
    import redis.asyncio
    from redis.backoff import ExponentialBackoff

    def make(given: Any) -> Any:
        if orchestrator == "async":
            from redis.asyncio.retry import Retry as AsyncRetry

            # ``given`` (an asyncio client) never connected: there is nothing to close.
            return redis.asyncio.Redis(host="127.0.0.1", port=proxy.port,
                                       retry=AsyncRetry(ExponentialBackoff(cap=0.05, base=0.005), 3))
        from redis.retry import Retry

        given.close()
        return redis.Redis(host="127.0.0.1", port=proxy.port,
                           retry=Retry(ExponentialBackoff(cap=0.05, base=0.005), 3))

    return make


DROP_CALLS = ["authenticate_right_code", "explicit_send", "send_linking", "authenticate_wrong_code"]


@pytest.mark.parametrize("orchestrator", ORCHESTRATORS)
@pytest.mark.parametrize(("mode", "refuse"), [("before", True), ("after", True), ("after", False),
                                              ("before", False)])
@pytest.mark.parametrize("name", DROP_CALLS)
@pytest.mark.timeout(120)
def test_redis_connection_dropped_mid_call_never_yields_success(
        matrix: Matrix, redis_proxy: DroppingProxy, orchestrator: str, mode: str, refuse: bool, name: str) -> None:
    case = CASES[name]
    world = matrix.make_flow("redis", orchestrator,  # type: ignore[arg-type]
                             redis_client=proxied_client(redis_proxy, orchestrator))
    ctx = case.setup(world)
    before = world.api.get_member(ORG, case.member)
    snapshot = world.snapshot()
    attempts = len(world.transport.attempts)
    redis_proxy.arm(mode, refuse=refuse)
    answer, _ = answer_of(lambda: case.call(world, ctx))
    redis_proxy.disarm()
    assert redis_proxy.drops == 1
    assert world.transport.unpersisted == []
    now_changed = changed(snapshot, world.snapshot())
    if refuse:  # the client's retries fail too: the store fails closed, nothing is delivered
        assert answer == "internal_server_error"
        assert len(world.transport.attempts) == attempts
        if mode == "before":  # Redis never ran the commit
            assert now_changed == set()
            assert world.api.get_member(ORG, case.member) == before
        else:  # Redis ran it; its reply was lost
            assert now_changed
            assert world.api.get_member(ORG, case.member) == case.committed(before)
    elif mode == "before":  # the client reconnected and sent the commit once: the call simply succeeds
        assert answer == case.clean
    # Otherwise the client reconnected and replayed the commit Redis had already run: the commit's receipt
    # answers the replay as the first run was answered, so the call took effect exactly once.
    else:
        assert answer == case.clean
        assert world.api.get_member(ORG, case.member) == case.committed(before)
        if name == "authenticate_wrong_code":
            assert world.failures(case.member) == 1  # counted once, not once per replay
        if name in ("explicit_send", "send_linking"):
            assert len(world.transport.attempts) == attempts + 1  # admitted once, delivered once
    assert newest_code_is_live_unless_superseded(world, case.member, unlogged=now_changed) == []


def test_the_delivery_check_sees_a_message_whose_code_was_never_committed(matrix: Matrix) -> None:
    """The check behind "no send without a persisted pending record" has power: an uncommitted code shows."""
    from mfa_flow.transports import SmsMessage

    world = matrix.make_flow("memory")
    _login(world)
    assert world.transport.unpersisted == []
    stray = SmsMessage(world.transport.sent[-1].to, wrong(world.transport.sent[-1].code), None, MEMBER, ORG)
    world.transport.deliver(stray)
    assert world.transport.unpersisted == [stray]
    world.transport.unpersisted.clear()
