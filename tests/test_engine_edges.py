"""Edges found in review: pickling, hostile or asynchronous plug points, the order of checks around stored numbers,
reference cycles, and §10's re-runs of a lost compare-and-set."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import pickle
from collections.abc import Iterable, Mapping
from typing import Any, Self

import pytest

import mfa_flow.engine.calls
from mfa_flow import AsyncMfaFlow, Event, Member, MfaError, MfaFlow, Organization
from mfa_flow.crypto import Keyring
from mfa_flow.errors import CodeRejected, ConfigurationError, error_for
from mfa_flow.stores import Entry, MemoryStore, Write
from mfa_flow.testing import FakeClock, FakeTransport
from mfa_flow.transports import DeliveryRejected, LocalCodeProvider, SmsMessage
from tests.helpers_rules import wrong

ORG, MEMBER, PHONE = "organization-test-1", "member-test-1", "+14155550123"


def make_flow(clock: FakeClock | None = None) -> tuple[MfaFlow, FakeTransport]:
    transport = FakeTransport()
    flow = MfaFlow(clock=clock or FakeClock(), transport=transport)
    flow.directory.put_organization(Organization(ORG, mfa_policy="REQUIRED_FOR_ALL"))
    flow.directory.put_member(Member(MEMBER, ORG, mfa_phone_number=PHONE, mfa_phone_number_verified=True))
    return flow, transport


def test_errors_survive_pickling_with_their_layer_and_fields() -> None:
    for error in (error_for("otp_code_not_found", "code: wrong code"), ConfigurationError("Policy.x: bad")):
        copy = pickle.loads(pickle.dumps(error))  # noqa: S301 - our own object
        assert type(copy) is type(error)
        assert (copy.error_type, copy.status_code, copy.error_message) == (
            error.error_type, error.status_code, error.error_message)
    assert isinstance(pickle.loads(pickle.dumps(error_for("otp_code_not_found", "x"))), CodeRejected)  # noqa: S301
    with_request = CodeRejected("otp_code_not_found", "code: wrong code", request_id="request-id-test-1")
    assert pickle.loads(pickle.dumps(with_request)).request_id == "request-id-test-1"  # noqa: S301


@pytest.mark.parametrize("factor_type", [["totp"], {"totp": 1}, 7, None])
def test_record_mfa_factor_refuses_a_non_string_factor_type_as_bad_request(factor_type: object) -> None:
    flow, _ = make_flow()
    ist = flow.authenticate_primary(ORG, MEMBER, "sso").intermediate_session_token
    with pytest.raises(MfaError) as caught:
        flow.record_mfa_factor(ORG, MEMBER, factor_type, intermediate_session_token=ist)  # type: ignore[arg-type]
    assert caught.value.error_type == "bad_request"


def test_authenticate_session_refuses_the_session_of_a_member_no_longer_active() -> None:
    flow, transport = make_flow()
    ist = flow.authenticate_primary(ORG, MEMBER, "sso").intermediate_session_token
    session = flow.authenticate_sms_otp(ORG, MEMBER, transport.last_code(), intermediate_session_token=ist)
    assert not flow.authenticate_session(session_token=session.session_token).step_up_required
    flow.directory.put_member(Member(MEMBER, ORG, status="deleted", mfa_phone_number=PHONE,
                                     mfa_phone_number_verified=True))
    with pytest.raises(MfaError) as caught:
        flow.authenticate_session(session_token=session.session_token)
    assert caught.value.error_type == "action_available_only_for_active_members"


def test_codes_are_compared_with_hmac_compare_digest(monkeypatch: pytest.MonkeyPatch) -> None:
    """U15: the submitted code's HMAC is compared in constant time, right and wrong codes alike."""
    import hmac

    import mfa_flow.crypto

    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def recording(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(mfa_flow.crypto.hmac, "compare_digest", recording)
    flow, transport = make_flow()
    ist = flow.authenticate_primary(ORG, MEMBER, "sso").intermediate_session_token
    code = transport.last_code()
    with pytest.raises(MfaError):
        flow.authenticate_sms_otp(ORG, MEMBER, wrong(code), intermediate_session_token=ist)
    assert len(calls) == 1
    flow.authenticate_sms_otp(ORG, MEMBER, code, intermediate_session_token=ist)
    assert len(calls) == 2
    assert all(len(a) == len(b) == 32 for a, b in calls)  # HMAC-SHA256 digests, never the codes themselves


def test_console_gateway_fallback_logs_a_warning_and_prints_under_a_development_banner(
        caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]) -> None:
    """Spec §6.12: MfaFlow() warns when it falls back to the console gateway, which writes to stderr only."""
    import logging

    from mfa_flow.transports import ConsoleGateway

    with caplog.at_level(logging.WARNING, logger="mfa_flow"):
        flow = MfaFlow(clock=FakeClock())
    assert isinstance(flow.transport, ConsoleGateway)
    assert any(r.levelno == logging.WARNING and "ConsoleGateway" in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="mfa_flow"):
        MfaFlow(clock=FakeClock(), transport=FakeTransport())
    assert caplog.records == []  # no fallback, no warning
    flow.directory.put_organization(Organization(ORG, mfa_policy="REQUIRED_FOR_ALL"))
    flow.directory.put_member(Member(MEMBER, ORG, mfa_phone_number=PHONE, mfa_phone_number_verified=True))
    result = flow.authenticate_primary(ORG, MEMBER, "sso")
    assert result.mfa_required is not None
    assert result.mfa_required.secondary_auth_initiated == "sms_otp"
    out, err_text = capsys.readouterr()
    assert out == ""
    assert "DEVELOPMENT ONLY" in err_text
    assert f"SMS to {PHONE}" in err_text


def test_calls_leave_no_reference_cycles_for_the_garbage_collector() -> None:
    """Every call's transient records (its outcome, subject, delivery) are freed when it returns, not left in
    a cycle for the collector: a login, a send with a link, a step-up and a refusal, with the collector off."""
    clock = FakeClock()
    flow, transport = make_flow(clock)
    flow.directory.put_member(Member("member-test-2", ORG))
    gc.collect()
    gc.disable()
    try:
        ist = flow.authenticate_primary(ORG, MEMBER, "email_magic_link").intermediate_session_token
        session = flow.authenticate_sms_otp(ORG, MEMBER, transport.last_code(), intermediate_session_token=ist)
        flow.send_sms_otp(ORG, "member-test-2", mfa_phone_number="+14155550124")
        clock.advance(31 * 60)
        step_up = flow.authenticate_session(session_token=session.session_token).secondary_auth_initiated
        with pytest.raises(MfaError):
            flow.authenticate_sms_otp(ORG, MEMBER, "000000", session_token="not-a-session")
        del ist, session
        unreachable = gc.collect()
    finally:
        gc.enable()
    assert step_up == "sms_otp"
    assert [m.to for m in transport.sent] == [PHONE, "+14155550124", PHONE]
    assert unreachable == 0, f"{unreachable} objects were left in reference cycles"


class AsyncVerifyProvider(LocalCodeProvider):
    """A code provider whose verify is a coroutine function: its coroutine object is truthy."""

    async def verify(self, code_id: str, code: str, digest: bytes) -> bool:  # type: ignore[override]
        return False


class TruthyVerifyProvider(LocalCodeProvider):
    """A code provider that answers verify with a truthy non-bool for any code."""

    def verify(self, code_id: str, code: str, digest: bytes) -> bool:
        return "yes"  # type: ignore[return-value]


@pytest.mark.parametrize("orchestrator", [MfaFlow, AsyncMfaFlow])
def test_code_provider_with_asynchronous_verify_or_prepare_is_refused_at_construction(
    orchestrator: type[MfaFlow | AsyncMfaFlow],
) -> None:
    """Codes are prepared and verified inside the decision, which never awaits: an async verify would be a
    truthy coroutine, so any six digits would log in. Refused before the first call."""
    with pytest.raises(ConfigurationError, match="verify must be synchronous"):
        orchestrator(transport=AsyncVerifyProvider(FakeTransport(), Keyring(None)))


def test_code_provider_answering_a_truthy_non_bool_does_not_authenticate() -> None:
    """Only ``True`` is a match: the attacker's wrong code with a provider that answers "yes" is refused and
    counted, and no session is issued."""
    transport = FakeTransport()
    flow = MfaFlow(clock=FakeClock(), transport=TruthyVerifyProvider(transport, Keyring(None)))
    flow.directory.put_organization(Organization(ORG, mfa_policy="REQUIRED_FOR_ALL"))
    flow.directory.put_member(Member(MEMBER, ORG, mfa_phone_number=PHONE, mfa_phone_number_verified=True))
    ist = flow.authenticate_primary(ORG, MEMBER, "sso").intermediate_session_token
    guess = wrong(transport.last_code())
    with pytest.raises(MfaError) as caught:
        flow.authenticate_sms_otp(ORG, MEMBER, guess, intermediate_session_token=ist)
    assert caught.value.error_type == "otp_code_not_found"


def test_order_send_token_rules_step7_before_a_stored_number_that_does_not_parse_step8() -> None:
    """§5: the linked number is judged as a destination at step 8. A directory number that does not parse,
    marked verified (so the member has an active factor), still meets step 7 first: no token → the token
    rule's refusal; with the member's IST → invalid_phone_number, naming the stored number's field."""
    transport = FakeTransport()
    flow = MfaFlow(clock=FakeClock(), transport=transport)
    flow.directory.put_organization(Organization(ORG))
    flow.directory.put_member(Member(MEMBER, ORG, mfa_phone_number="12345", mfa_phone_number_verified=True))
    with pytest.raises(MfaError) as no_token:
        flow.send_sms_otp(ORG, MEMBER)
    assert no_token.value.error_type == "no_associated_session_passed_in"
    ist = flow.authenticate_primary(ORG, MEMBER, "discovery").intermediate_session_token
    with pytest.raises(MfaError) as bad_number:
        flow.send_sms_otp(ORG, MEMBER, intermediate_session_token=ist)
    assert bad_number.value.error_type == "invalid_phone_number"
    assert "member.mfa_phone_number" in bad_number.value.error_message
    assert transport.sent == []


def test_machine_tables_refuse_what_lean_events_would_not_run() -> None:
    """A table row with ``prepare`` (or any key LeanEvent ignores) or a callback given by name is refused at
    import time, instead of being silently skipped by the lean trigger path."""
    from mfa_flow.machine import _check_callables

    def ok(_: object) -> bool:
        return True

    _check_callables([{"trigger": "t", "source": "A", "dest": "B", "conditions": [ok], "after": [ok]}])
    for row in ({"trigger": "t", "source": "A", "dest": "B", "prepare": [ok]},
                {"trigger": "t", "source": "A", "dest": "B", "unless": [ok]},
                {"trigger": "t", "source": "A", "dest": "B", "before": ["by_name"]}):
        with pytest.raises(TypeError):
            _check_callables([row])


class LosingStore:
    """A MemoryStore whose next ``losses`` commits lose their compare-and-set, as if another process had
    written first; every commit attempt is counted."""

    durable = False

    def __init__(self, losses: int) -> None:
        self.inner = MemoryStore()
        self.losses = losses
        self.commits = 0

    def transaction(self) -> contextlib.AbstractContextManager[Any]:
        return _LosingTransaction(self)


class _LosingTransaction:
    def __init__(self, store: LosingStore) -> None:
        self._store = store
        self._tx = store.inner.transaction()

    def __enter__(self) -> Self:
        self._tx.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._tx.__exit__(*exc)

    def read(self, keys: Iterable[str]) -> dict[str, Entry]:
        return self._tx.read(keys)

    def commit(self, writes: Mapping[str, Write], now: float) -> bool:
        self._store.commits += 1
        if self._store.losses:
            self._store.losses -= 1
            return False
        return self._tx.commit(writes, now)


class CountingGateway:
    def __init__(self, reject: bool = False) -> None:
        self.attempts: list[str] = []
        self.reject = reject

    def deliver(self, message: SmsMessage) -> None:
        self.attempts.append(message.code)
        if self.reject:
            raise DeliveryRejected("rejected")


def losing_flow(monkeypatch: pytest.MonkeyPatch, losses: int, gateway: CountingGateway,
                events: list[Event]) -> tuple[MfaFlow, LosingStore]:
    monkeypatch.setattr(mfa_flow.engine.calls, "rerun_delay", lambda attempt: 0.0)  # the back-off is tested elsewhere
    store = LosingStore(0)
    flow = MfaFlow(clock=FakeClock(), transport=gateway, store=store, events=[events.append])
    flow.directory.put_organization(Organization(ORG, mfa_policy="REQUIRED_FOR_ALL"))
    flow.directory.put_member(Member(MEMBER, ORG, mfa_phone_number=PHONE, mfa_phone_number_verified=True))
    store.losses = losses
    return flow, store


def test_lost_compare_and_set_reruns_at_most_five_times_then_internal_server_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """§10: a lost compare-and-set re-runs the call from the read, at most 5 times; the sixth loss answers
    internal_server_error. Nothing was delivered and no losing run emitted an event."""
    gateway, events = CountingGateway(), []
    flow, store = losing_flow(monkeypatch, 6, gateway, events)
    with pytest.raises(MfaError) as caught:
        flow.authenticate_primary(ORG, MEMBER, "email_magic_link")
    assert caught.value.error_type == "internal_server_error"
    assert store.commits == 6
    assert gateway.attempts == []
    assert [e.name for e in events] == ["otp.refused"]  # the refusal only: no event of a losing run


def test_lost_compare_and_set_rerun_that_wins_delivers_and_reports_once(monkeypatch: pytest.MonkeyPatch) -> None:
    gateway, events = CountingGateway(), []
    flow, store = losing_flow(monkeypatch, 5, gateway, events)
    result = flow.authenticate_primary(ORG, MEMBER, "email_magic_link")
    assert result.mfa_required is not None
    assert result.mfa_required.secondary_auth_initiated == "sms_otp"
    assert store.commits == 6
    assert len(gateway.attempts) == 1
    assert [e.name for e in events].count("otp.sent") == 1


def test_lost_compare_and_set_never_reruns_a_delivery(monkeypatch: pytest.MonkeyPatch) -> None:
    """After a delivery was attempted only the undo of a rejected send re-runs: the gateway is called once,
    however often the undo loses, and the rejected code stays unusable."""
    gateway, events = CountingGateway(reject=True), []
    flow, store = losing_flow(monkeypatch, 0, gateway, events)
    ist = flow.authenticate_primary(ORG, MEMBER, "discovery").intermediate_session_token
    real_commit = _LosingTransaction.commit
    armed = [True]

    def lose_after_delivery(self: _LosingTransaction, writes: Mapping[str, Write], now: float) -> bool:
        if gateway.attempts and armed[0]:
            armed[0] = False
            store.losses = 2  # the undo's first two commits lose
        return real_commit(self, writes, now)

    monkeypatch.setattr(_LosingTransaction, "commit", lose_after_delivery)
    commits_before = store.commits
    with pytest.raises(MfaError) as caught:
        flow.send_sms_otp(ORG, MEMBER, intermediate_session_token=ist)
    assert caught.value.error_type == "downstream_carrier_error"
    assert len(gateway.attempts) == 1
    assert store.commits - commits_before == 4  # the send's commit, then the undo: lost, lost, won
    with pytest.raises(MfaError) as used:
        flow.authenticate_sms_otp(ORG, MEMBER, gateway.attempts[0], intermediate_session_token=ist)
    assert used.value.error_type == "unable_to_auth_otp_code"


class AsyncGateway:
    """An ``async def deliver`` gateway: AsyncMfaFlow must await it, not drop the coroutine."""

    def __init__(self, *, reject: bool = False) -> None:
        self.sent: list[SmsMessage] = []
        self.reject = reject

    async def deliver(self, message: SmsMessage) -> None:
        if self.reject:
            raise DeliveryRejected("rejected")
        self.sent.append(message)


@pytest.mark.parametrize("reject", [False, True], ids=["delivered", "rejected"])
def test_async_flow_awaits_an_asynchronous_gateway(reject: bool) -> None:
    """The local code provider hands the gateway's awaitable back: a delivery that never ran is not reported
    as sent, and a rejection raised inside the coroutine is seen."""
    gateway, events = AsyncGateway(reject=reject), []
    flow = AsyncMfaFlow(clock=FakeClock(), transport=gateway, events=[events.append])
    flow.directory.put_organization(Organization(ORG, mfa_policy="REQUIRED_FOR_ALL"))
    flow.directory.put_member(Member(MEMBER, ORG, mfa_phone_number=PHONE, mfa_phone_number_verified=True))
    result = asyncio.run(flow.authenticate_primary(ORG, MEMBER, "password"))
    assert result.mfa_required is not None
    assert result.mfa_required.secondary_auth_initiated == (None if reject else "sms_otp")
    assert [m.to for m in gateway.sent] == ([] if reject else [PHONE])
    assert [e.reason for e in events if e.name == "delivery.failed"] == (["rejected"] if reject else [])
