"""Rules of sessions and the inactivity step-up (§6.10), and delete_mfa_phone_number (§1)."""

from __future__ import annotations

from typing import Any

import pytest

from mfa_flow import Event, Member, MfaError, MfaFlow
from mfa_flow.testing import FakeClock, FakeTransport
from tests.helpers_rules import (
    MEMBER,
    MEMBER2,
    ORG,
    PHONE,
    PHONE2,
    TOTP,
    FlowFactory,
    Setup,
    at,
    err,
    names,
    refusals,
    sms_session,
    wrong,
)


def check_after(mfa: MfaFlow, clock: FakeClock, token: str, seconds: float) -> Any:
    """Advance the clock by ``seconds`` of inactivity, then ``authenticate_session`` with ``token``."""
    clock.advance(seconds)
    return mfa.authenticate_session(session_token=token)


def assert_check(check: Any, *, step_up: bool, initiated: str | None) -> None:
    """An authenticate_session result reports ``step_up`` and started ``initiated`` (None: no send)."""
    assert check.step_up_required is step_up
    if initiated is None:
        assert check.secondary_auth_initiated is None
    else:
        assert check.secondary_auth_initiated == initiated


def sms_factors(session: Any) -> list[Any]:
    return [f for f in session.authentication_factors if (f.type, f.delivery_method) == ("otp", "sms")]


# ----------------------------------------------------------------------------- §6.10 inactivity


def test_authenticate_session_on_fresh_session_updates_last_accessed_at(
    member_flow: FlowFactory, transport: FakeTransport, clock: FakeClock
) -> None:
    mfa = member_flow()
    token = sms_session(mfa, transport)
    t0 = clock.now()
    check = check_after(mfa, clock, token, 100)
    assert_check(check, step_up=False, initiated=None)
    assert check.member_session.last_accessed_at == at(t0 + 100)
    assert check.member_session.expires_at == at(t0 + 3600)
    assert check.member_session.member_id == MEMBER
    # activity resets the inactivity timer: 1790 s after the last access, 1890 s after the login
    check = check_after(mfa, clock, token, 1790)
    assert check.step_up_required is False
    assert check.member_session.last_accessed_at == at(t0 + 1890)
    assert len(transport.sent) == 1


def test_idle_exactly_inactivity_timeout_needs_no_step_up(
    member_flow: FlowFactory, transport: FakeTransport, clock: FakeClock, events: list[Event]
) -> None:
    mfa = member_flow()
    token = sms_session(mfa, transport)
    check = check_after(mfa, clock, token, 1800)
    assert_check(check, step_up=False, initiated=None)
    assert check.member_session.last_accessed_at == at(clock.now())
    assert len(transport.sent) == 1
    assert "session.step_up_required" not in names(events)


def test_idle_over_inactivity_timeout_requires_step_up_and_sends_code(
    member_flow: FlowFactory, transport: FakeTransport, clock: FakeClock, events: list[Event]
) -> None:
    mfa = member_flow()
    token = sms_session(mfa, transport)
    t0 = clock.now()
    clock.advance(1800.001)
    mark = len(events)
    check = mfa.authenticate_session(session_token=token)
    assert_check(check, step_up=True, initiated="sms_otp")
    assert len(transport.sent) == 2
    msg = transport.sent[-1]
    assert (msg.to, msg.member_id, msg.organization_id) == (PHONE, MEMBER, ORG)
    new = names(events[mark:])
    assert "session.step_up_required" in new
    assert "otp.sent" in new
    # reporting the step-up is not activity
    assert check.member_session.last_accessed_at == at(t0)
    assert mfa.authenticate_session(session_token=token).step_up_required is True


def test_step_up_repeated_calls_send_nothing_more_while_code_live(
    member_flow: FlowFactory, transport: FakeTransport, clock: FakeClock
) -> None:
    mfa = member_flow()
    token = sms_session(mfa, transport)
    clock.advance(1801)
    for _ in range(4):
        check = mfa.authenticate_session(session_token=token)
        assert_check(check, step_up=True, initiated="sms_otp")
        clock.advance(10)
    assert len(transport.sent) == 2
    # once the step-up code has expired, the next check sends a new one
    check = check_after(mfa, clock, token, 120)
    assert_check(check, step_up=True, initiated="sms_otp")
    assert len(transport.sent) == 3


def test_step_up_code_bound_to_session(
    member_flow: FlowFactory, transport: FakeTransport, clock: FakeClock
) -> None:
    mfa = member_flow()
    token = sms_session(mfa, transport)
    clock.advance(1801)
    mfa.authenticate_session(session_token=token)
    code = transport.sent[-1].code
    ist = mfa.authenticate_primary(ORG, MEMBER, "discovery").intermediate_session_token
    e = err(mfa.authenticate_sms_otp, ORG, MEMBER, code, intermediate_session_token=ist)
    assert e.error_type == "otp_code_not_found"
    res = mfa.authenticate_sms_otp(ORG, MEMBER, code, session_token=token)
    assert res.session_token == token


def test_step_up_send_supersedes_other_live_code(
    member_flow: FlowFactory, transport: FakeTransport, clock: FakeClock
) -> None:
    mfa = member_flow()
    token = sms_session(mfa, transport)
    clock.advance(1750)
    ist = mfa.authenticate_primary(ORG, MEMBER, "discovery").intermediate_session_token
    mfa.send_sms_otp(ORG, MEMBER, intermediate_session_token=ist)
    login_code = transport.sent[-1].code
    check = check_after(mfa, clock, token, 51)
    assert check.secondary_auth_initiated == "sms_otp"
    assert len(transport.sent) == 3
    step_up_code = transport.sent[-1].code
    if login_code != step_up_code:
        e = err(mfa.authenticate_sms_otp, ORG, MEMBER, login_code, intermediate_session_token=ist)
        assert e.error_type == "otp_code_not_found"
    assert mfa.authenticate_sms_otp(ORG, MEMBER, step_up_code, session_token=token).session_token == token


def test_step_up_completed_by_sms_keeps_token_and_expiry(
    member_flow: FlowFactory, transport: FakeTransport, clock: FakeClock, events: list[Event]
) -> None:
    mfa = member_flow()
    token = sms_session(mfa, transport)
    t0 = clock.now()
    clock.advance(1801)
    mfa.authenticate_session(session_token=token)
    clock.advance(5)
    mark = len(events)
    res = mfa.authenticate_sms_otp(ORG, MEMBER, transport.sent[-1].code, session_token=token)
    now = clock.now()
    assert res.session_token == token
    s = res.member_session
    assert s is not None
    assert s.last_accessed_at == at(now)
    assert s.expires_at == at(t0 + 3600)
    sms = sms_factors(s)
    assert len(sms) == 1
    assert sms[0].last_authenticated_at == at(now)
    assert "session.step_up_completed" in names(events[mark:])
    assert "otp.verified" in names(events[mark:])
    check = mfa.authenticate_session(session_token=token)
    assert check.step_up_required is False
    assert check.member_session.expires_at == at(t0 + 3600)


def test_step_up_completed_with_duration_extends_expiry(
    member_flow: FlowFactory, transport: FakeTransport, clock: FakeClock
) -> None:
    mfa = member_flow()
    token = sms_session(mfa, transport)
    clock.advance(1801)
    mfa.authenticate_session(session_token=token)
    res = mfa.authenticate_sms_otp(ORG, MEMBER, transport.sent[-1].code, session_token=token,
                                   session_duration_minutes=120)
    assert res.session_token == token
    assert res.member_session is not None
    assert res.member_session.expires_at == at(clock.now() + 120 * 60)
    t1 = clock.now()
    clock.advance(1700)
    assert mfa.authenticate_session(session_token=token).step_up_required is False
    clock.advance(1700)  # past the original expiry (t0 + 3600), within the extended one
    check = mfa.authenticate_session(session_token=token)
    assert check.step_up_required is False
    assert check.member_session.expires_at == at(t1 + 120 * 60)


def test_step_up_totp_only_member_completed_by_record_mfa_factor(
    flow: FlowFactory, setup_member: Setup, transport: FakeTransport, clock: FakeClock, events: list[Event]
) -> None:
    mfa = flow()
    setup_member(mfa, mfa_phone_number="", mfa_phone_number_verified=False, totp_registration_id=TOTP,
                 default_mfa_method="totp")
    r = mfa.authenticate_primary(ORG, MEMBER, "email_magic_link")
    assert r.mfa_required is not None
    assert r.mfa_required.secondary_auth_initiated is None
    token = mfa.record_mfa_factor(ORG, MEMBER, "totp", intermediate_session_token=r.intermediate_session_token)\
        .session_token
    check = check_after(mfa, clock, token, 1801)
    assert_check(check, step_up=True, initiated=None)
    assert transport.sent == []
    assert "session.step_up_required" in names(events)
    mark = len(events)
    res = mfa.record_mfa_factor(ORG, MEMBER, "totp", session_token=token)
    assert res.session_token == token
    assert res.member_session is not None
    assert res.member_session.last_accessed_at == at(clock.now())
    assert "session.step_up_completed" in names(events[mark:])
    assert mfa.authenticate_session(session_token=token).step_up_required is False


@pytest.mark.parametrize(
    ("member_fields", "org_fields"),
    [
        pytest.param({"totp_registration_id": TOTP},
                     {"mfa_methods": "RESTRICTED", "allowed_mfa_methods": ("totp",)}, id="org-restricts-to-totp"),
        pytest.param({"totp_registration_id": TOTP, "default_mfa_method": "totp"}, {}, id="default-method-totp"),
    ],
)
def test_step_up_without_sms_conditions_reports_without_send_for_member_with_verified_phone(
    flow: FlowFactory, setup_member: Setup, transport: FakeTransport, clock: FakeClock, events: list[Event],
    member_fields: dict[str, Any], org_fields: dict[str, Any],
) -> None:
    """§6.10: a verified phone alone does not start a step-up send; the SMS conditions of §6.8 must hold."""
    mfa = flow()
    member = setup_member(mfa, org=org_fields, **member_fields)
    assert (member.mfa_phone_number, member.mfa_phone_number_verified, member.is_breakglass) == (PHONE, True, False)
    r = mfa.authenticate_primary(ORG, MEMBER, "email_magic_link")
    assert r.mfa_required is not None
    assert r.mfa_required.secondary_auth_initiated is None
    token = mfa.record_mfa_factor(ORG, MEMBER, "totp", intermediate_session_token=r.intermediate_session_token)\
        .session_token
    assert transport.sent == []
    mark = len(events)
    for idle in (1801, 10):  # and a repeated call sends nothing either
        check = check_after(mfa, clock, token, idle)
        assert_check(check, step_up=True, initiated=None)
    assert transport.sent == []
    new = names(events[mark:])
    assert "session.step_up_required" in new
    assert "otp.sent" not in new
    # the caller verifies TOTP itself and completes the step-up
    res = mfa.record_mfa_factor(ORG, MEMBER, "totp", session_token=token)
    assert res.session_token == token
    assert mfa.authenticate_session(session_token=token).step_up_required is False
    assert transport.sent == []


def test_send_limit_counts_the_step_up_send(
    member_flow: FlowFactory, transport: FakeTransport, clock: FakeClock, events: list[Event]
) -> None:
    """§6.7: every send counts, step-up included: the login's automatic send and the step-up send fill a
    per-member limit of 2, so an explicit send within the window is refused."""
    mfa = member_flow(send_limit_per_member=(2, 600), resend_cooldown=0, inactivity_timeout=60)
    token = sms_session(mfa, transport)  # t0: the automatic send (1 of 2)
    check = check_after(mfa, clock, token, 61)  # t0 + 61: the step-up send (2 of 2)
    assert_check(check, step_up=True, initiated="sms_otp")
    assert len(transport.sent) == 2
    step_up_code = transport.sent[-1].code
    clock.advance(10)  # t0 + 71: no cooldown in the way
    mark = len(events)
    e = err(mfa.send_sms_otp, ORG, MEMBER, session_token=token)
    assert (e.error_type, e.status_code) == ("too_many_requests", 429)
    assert len(transport.sent) == 2
    assert refusals(events[mark:]) == ["too_many_requests"]
    # the refused send superseded nothing: the step-up code still completes the step-up
    res = mfa.authenticate_sms_otp(ORG, MEMBER, step_up_code, session_token=token)
    assert res.session_token == token
    # the window slides: at t0 + 600 the automatic send has left it, the step-up send has not
    clock.advance(600 - 71)
    mfa.send_sms_otp(ORG, MEMBER, session_token=token)
    assert len(transport.sent) == 3
    e = err(mfa.send_sms_otp, ORG, MEMBER, session_token=token)
    assert e.error_type == "too_many_requests"


def test_step_up_session_does_not_skip_mfa_in_primary_auth(
    member_flow: FlowFactory, transport: FakeTransport, clock: FakeClock
) -> None:
    mfa = member_flow()
    token = sms_session(mfa, transport)
    clock.advance(1801)
    r = mfa.authenticate_primary(ORG, MEMBER, "oauth", session_token=token)
    assert r.member_authenticated is False
    assert r.intermediate_session_token
    assert r.intermediate_session_token != token
    assert r.session_token == ""
    assert r.member_session is None
    assert r.mfa_required is not None
    assert r.mfa_required.secondary_auth_initiated == "sms_otp"
    assert len(transport.sent) == 2
    # the session is still waiting for its step-up
    assert mfa.authenticate_session(session_token=token).step_up_required is True


def test_session_past_expires_at_is_not_found(
    member_flow: FlowFactory, transport: FakeTransport, clock: FakeClock
) -> None:
    mfa = member_flow()
    token = sms_session(mfa, transport, session_duration_minutes=5)
    clock.advance(200)
    assert mfa.authenticate_session(session_token=token).step_up_required is False
    clock.advance(101)
    e = err(mfa.authenticate_session, session_token=token)
    assert (e.error_type, e.status_code) == ("session_not_found", 404)
    e = err(mfa.send_sms_otp, ORG, MEMBER, session_token=token)
    assert e.error_type == "session_not_found"
    e = err(mfa.authenticate_sms_otp, ORG, MEMBER, "123456", session_token=token)
    assert e.error_type == "session_not_found"
    assert len(transport.sent) == 1


def test_authenticate_session_refuses_unknown_token_and_jwt(member_flow: FlowFactory) -> None:
    mfa = member_flow()
    e = err(mfa.authenticate_session, session_token="session-unknown")
    assert (e.error_type, e.status_code) == ("session_not_found", 404)
    e = err(mfa.authenticate_session, session_jwt="eyJhbGciOiJIUzI1NiJ9.e30.x")
    assert (e.error_type, e.status_code) == ("unable_to_parse_session_jwt", 401)


@pytest.mark.parametrize(
    "member_fields",
    [
        pytest.param({"mfa_phone_number": "", "mfa_phone_number_verified": False}, id="no-phone"),
        pytest.param({"mfa_phone_number_verified": False}, id="unverified-phone"),
    ],
)
def test_member_without_active_factor_never_needs_step_up(
    flow: FlowFactory, setup_member: Setup, transport: FakeTransport, clock: FakeClock, events: list[Event],
    member_fields: dict[str, Any],
) -> None:
    mfa = flow()
    setup_member(mfa, org={"mfa_policy": "OPTIONAL"}, **member_fields)
    r = mfa.authenticate_primary(ORG, MEMBER, "password")
    assert r.session_token
    clock.advance(3000)
    check = mfa.authenticate_session(session_token=r.session_token)
    assert_check(check, step_up=False, initiated=None)
    assert check.member_session.last_accessed_at == at(clock.now())
    assert transport.sent == []
    assert "session.step_up_required" not in names(events)


def test_resend_on_inactivity_off_reports_step_up_without_send(
    member_flow: FlowFactory, transport: FakeTransport, clock: FakeClock
) -> None:
    mfa = member_flow(resend_on_inactivity=False)
    token = sms_session(mfa, transport)
    check = check_after(mfa, clock, token, 1801)
    assert_check(check, step_up=True, initiated=None)
    assert len(transport.sent) == 1
    # the session may still send and authenticate for its own member, which completes the step-up
    mfa.send_sms_otp(ORG, MEMBER, session_token=token)
    assert len(transport.sent) == 2
    res = mfa.authenticate_sms_otp(ORG, MEMBER, transport.sent[-1].code, session_token=token)
    assert res.session_token == token
    assert mfa.authenticate_session(session_token=token).step_up_required is False


def test_step_up_while_locked_reports_without_send(
    member_flow: FlowFactory, transport: FakeTransport, clock: FakeClock
) -> None:
    mfa = member_flow(lockout_threshold=1)
    token = sms_session(mfa, transport)
    ist = mfa.authenticate_primary(ORG, MEMBER, "discovery").intermediate_session_token
    mfa.send_sms_otp(ORG, MEMBER, intermediate_session_token=ist)
    e = err(mfa.authenticate_sms_otp, ORG, MEMBER, wrong(transport.sent[-1].code), intermediate_session_token=ist)
    assert e.error_type == "user_lock_limit_reached"
    sent = len(transport.sent)
    check = check_after(mfa, clock, token, 1801)
    assert_check(check, step_up=True, initiated=None)
    assert len(transport.sent) == sent


def test_step_up_send_refused_by_limits_reports_refusal(
    member_flow: FlowFactory, transport: FakeTransport, clock: FakeClock, events: list[Event]
) -> None:
    mfa = member_flow(send_limit_per_member=(1, 3600))
    token = sms_session(mfa, transport)
    clock.advance(1801)
    mark = len(events)
    check = mfa.authenticate_session(session_token=token)
    assert_check(check, step_up=True, initiated=None)
    assert len(transport.sent) == 1
    assert refusals(events[mark:]) == ["too_many_requests"]


@pytest.mark.parametrize("refuse", [False, True])
def test_step_up_send_runs_before_send_hooks(
    member_flow: FlowFactory, transport: FakeTransport, clock: FakeClock, events: list[Event],
    refuse: bool,
) -> None:
    contexts: list[object] = []
    armed: list[bool] = []

    def hook(ctx: object) -> None:
        contexts.append(ctx)
        if armed:
            raise MfaError("bad_request", "device not recognised")

    mfa = member_flow(before_send=[hook])
    token = mfa.authenticate_primary(ORG, MEMBER, "discovery").intermediate_session_token
    mfa.send_sms_otp(ORG, MEMBER, intermediate_session_token=token)
    session = mfa.authenticate_sms_otp(ORG, MEMBER, transport.sent[-1].code,
                                       intermediate_session_token=token).session_token
    clock.advance(1801)
    if refuse:
        armed.append(True)
    calls = len(contexts)
    mark = len(events)
    check = mfa.authenticate_session(session_token=session)
    assert check.step_up_required is True
    assert len(contexts) == calls + 1
    if refuse:
        assert check.secondary_auth_initiated is None
        assert len(transport.sent) == 1
        assert refusals(events[mark:]) == ["bad_request"]
    else:
        assert check.secondary_auth_initiated == "sms_otp"
        assert len(transport.sent) == 2


# ---------------------------------------------------------------------------- delete_mfa_phone_number


def test_delete_mfa_phone_number_unlinks_and_kills_live_code(
    member_flow: FlowFactory, transport: FakeTransport, events: list[Event]
) -> None:
    mfa = member_flow()
    r = mfa.authenticate_primary(ORG, MEMBER, "email_magic_link")
    code = transport.sent[-1].code
    mark = len(events)
    m = mfa.delete_mfa_phone_number(ORG, MEMBER)
    assert isinstance(m, Member)
    assert (m.mfa_phone_number, m.mfa_phone_number_verified) == ("", False)
    merged = mfa.get_member(ORG, MEMBER)
    assert (merged.mfa_phone_number, merged.mfa_phone_number_verified) == ("", False)
    assert "member.updated" in names(events[mark:])
    e = err(mfa.authenticate_sms_otp, ORG, MEMBER, code, intermediate_session_token=r.intermediate_session_token)
    assert e.error_type == "unable_to_auth_otp_code"
    # no linked phone any more: no automatic send, and a send without a number has nowhere to go
    r2 = mfa.authenticate_primary(ORG, MEMBER, "email_magic_link")
    assert r2.mfa_required is not None
    assert r2.mfa_required.secondary_auth_initiated is None
    assert r2.mfa_required.member_options.mfa_phone_number == ""
    e = err(mfa.send_sms_otp, ORG, MEMBER, intermediate_session_token=r2.intermediate_session_token)
    assert e.error_type == "member_phone_number_not_found"
    assert len(transport.sent) == 1


def test_linked_phone_replaced_only_through_delete(
    member_flow: FlowFactory, transport: FakeTransport, events: list[Event]
) -> None:
    mfa = member_flow()
    ist = mfa.authenticate_primary(ORG, MEMBER, "discovery").intermediate_session_token
    e = err(mfa.send_sms_otp, ORG, MEMBER, mfa_phone_number=PHONE2, intermediate_session_token=ist)
    assert (e.error_type, e.status_code) == ("duplicate_member_phone_number_for_member", 400)
    assert mfa.get_member(ORG, MEMBER).mfa_phone_number == PHONE
    assert transport.sent == []
    mfa.delete_mfa_phone_number(ORG, MEMBER)
    # no active factor left: the send links the new number
    mfa.send_sms_otp(ORG, MEMBER, mfa_phone_number=PHONE2, intermediate_session_token=ist)
    assert [m.to for m in transport.sent] == [PHONE2]
    assert "phone.linked" in names(events)
    m = mfa.get_member(ORG, MEMBER)
    assert (m.mfa_phone_number, m.mfa_phone_number_verified) == (PHONE2, False)
    res = mfa.authenticate_sms_otp(ORG, MEMBER, transport.sent[-1].code, intermediate_session_token=ist)
    assert res.member.mfa_phone_number == PHONE2
    assert mfa.get_member(ORG, MEMBER).mfa_phone_number_verified is True


def test_delete_mfa_phone_number_unknown_refs(member_flow: FlowFactory) -> None:
    mfa = member_flow()
    e = err(mfa.delete_mfa_phone_number, "organization-unknown", MEMBER)
    assert (e.error_type, e.status_code) == ("organization_not_found", 404)
    e = err(mfa.delete_mfa_phone_number, ORG, "member-unknown")
    assert (e.error_type, e.status_code) == ("member_not_found", 404)
    assert mfa.get_member(ORG, MEMBER).mfa_phone_number == PHONE


def test_deleted_phone_frees_number_for_another_member(
    member_flow: FlowFactory, setup_member: Setup, transport: FakeTransport
) -> None:
    mfa = member_flow()
    setup_member(mfa, MEMBER2, mfa_phone_number="", mfa_phone_number_verified=False)
    e = err(mfa.send_sms_otp, ORG, MEMBER2, mfa_phone_number=PHONE)
    assert e.error_type == "duplicate_member_phone_number"
    mfa.delete_mfa_phone_number(ORG, MEMBER)
    mfa.send_sms_otp(ORG, MEMBER2, mfa_phone_number=PHONE)
    assert [(m.to, m.member_id) for m in transport.sent] == [(PHONE, MEMBER2)]
    assert mfa.get_member(ORG, MEMBER2).mfa_phone_number == PHONE
