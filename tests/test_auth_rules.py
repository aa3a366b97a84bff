"""Rules of authenticate_sms_otp: order of checks (§5), codes (§6.5), lock (§6.6), success (§6.9),
secrets (§6.12), events (§6.13) and the secret_key configuration (§1)."""

from __future__ import annotations

import logging
import re
import types
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest

from mfa_flow import ConfigurationError, Event, MfaError, MfaFlow
from mfa_flow.testing import FakeClock, FakeTransport
from tests.helpers_rules import (
    MASKED,
    MEMBER,
    MEMBER2,
    MEMBER3,
    ORG,
    ORG2,
    PHONE,
    PHONE2,
    PHONE3,
    FlowFactory,
    Setup,
    at,
    err,
    names,
    wrong,
)

ROOMY = {"send_limit_per_member": (100, 600), "send_limit_per_phone": (100, 600)}


# --------------------------------------------------------------------------------------------- helpers


def login(
    mfa: MfaFlow, transport: FakeTransport, member: str = MEMBER, org: str = ORG, method: str = "email_magic_link"
) -> tuple[str, str]:
    """Primary auth with the automatic send; returns (IST, code)."""
    before = len(transport.sent)
    r = mfa.authenticate_primary(org, member, method)
    assert r.intermediate_session_token
    assert r.mfa_required is not None
    assert r.mfa_required.secondary_auth_initiated == "sms_otp"
    assert len(transport.sent) == before + 1
    assert transport.sent[-1].member_id == member
    return r.intermediate_session_token, transport.sent[-1].code


def logged_in(member_flow: FlowFactory, transport: FakeTransport, **flow_kwargs: Any) -> tuple[MfaFlow, str, str]:
    """The default member on a new ``member_flow(**flow_kwargs)``, past primary auth: (flow, IST, code)."""
    mfa = member_flow(**flow_kwargs)
    ist, code = login(mfa, transport)
    return mfa, ist, code


def discovery_ist(mfa: MfaFlow, member: str = MEMBER, org: str = ORG) -> str:
    r = mfa.authenticate_primary(org, member, "discovery")
    assert r.intermediate_session_token
    return r.intermediate_session_token


def resend(mfa: MfaFlow, transport: FakeTransport, ist: str, member: str = MEMBER, org: str = ORG) -> str:
    """An explicit send bound to ``ist``; returns a new code that differs from the previous one."""
    previous = transport.sent[-1].code if transport.sent else None
    for _ in range(3):
        before = len(transport.sent)
        mfa.send_sms_otp(org, member, intermediate_session_token=ist)
        assert len(transport.sent) == before + 1
        if transport.sent[-1].code != previous:
            break
    return transport.sent[-1].code


def auth(mfa: MfaFlow, code: object, ist: str, member: str = MEMBER, **kwargs: Any) -> Any:
    return mfa.authenticate_sms_otp(ORG, member, code, intermediate_session_token=ist, **kwargs)


def wrong_tries(mfa: MfaFlow, code: str, ist: str, n: int) -> list[str]:
    """Submit ``wrong(code)`` ``n`` times with ``ist``; returns the error types."""
    return [err(auth, mfa, wrong(code), ist).error_type for _ in range(n)]


def fail(mfa: MfaFlow, transport: FakeTransport, ist: str, n: int, *, per_code: int = 4) -> list[str]:
    """Submit ``n`` wrong codes with ``ist``, resending (bound to ``ist``) after every ``per_code`` failures."""
    out: list[str] = []
    code = transport.sent[-1].code
    for i in range(n):
        if i and i % per_code == 0:
            code = resend(mfa, transport, ist)
        out.append(err(auth, mfa, wrong(code), ist).error_type)
    return out


def assert_untouched(mfa: MfaFlow, transport: FakeTransport, ist: str, code: str, sent: int) -> None:
    """Under lockout_threshold=1: not locked, nothing sent, and the code is still live and redeemable."""
    assert mfa.get_member(ORG, MEMBER).is_locked is False
    assert len(transport.sent) == sent
    res = auth(mfa, code, ist)
    assert res.session_token


# ------------------------------------------------------------------------------ §5 order of checks


@pytest.mark.parametrize(
    ("org", "tokens", "duration", "expected"),
    [
        ("organization-unknown", {}, None, "no_session_arguments"),
        ("organization-unknown", {"intermediate_session_token": "x", "session_token": "y"}, None,
         "too_many_session_arguments"),
        ("organization-unknown", {"intermediate_session_token": "x", "session_jwt": "y"}, None,
         "too_many_session_arguments"),
        ("organization-unknown", {"session_token": "x", "session_jwt": "y"}, None, "too_many_session_arguments"),
        ("organization-unknown", {"intermediate_session_token": "x"}, 4, "invalid_session_duration_minutes"),
        ("organization-unknown", {"intermediate_session_token": "x"}, 527041, "invalid_session_duration_minutes"),
        ("organization-unknown", {}, 4, "no_session_arguments"),
        (ORG, {}, 4, "no_session_arguments"),
    ],
)
def test_order_authenticate_step1_token_count_then_duration_range(
    member_flow: FlowFactory, transport: FakeTransport,
    org: str, tokens: dict[str, str], duration: int | None, expected: str,
) -> None:
    mfa, ist, code = logged_in(member_flow, transport, lockout_threshold=1)
    e = err(mfa.authenticate_sms_otp, org, MEMBER, wrong(code), session_duration_minutes=duration, **tokens)
    assert e.error_type == expected
    assert e.status_code == 400
    assert_untouched(mfa, transport, ist, code, 1)


def test_order_authenticate_step2_organization_member_active_before_token(
    member_flow: FlowFactory, setup_member: Setup, transport: FakeTransport
) -> None:
    mfa, ist, code = logged_in(member_flow, transport, lockout_threshold=1)
    e = err(mfa.authenticate_sms_otp, "organization-unknown", MEMBER, wrong(code), intermediate_session_token="bogus")
    assert (e.error_type, e.status_code) == ("organization_not_found", 404)
    e = err(mfa.authenticate_sms_otp, ORG, "member-unknown", wrong(code), intermediate_session_token="bogus")
    assert (e.error_type, e.status_code) == ("member_not_found", 404)
    # an unknown member with the real member's IST is still member_not_found (member before token)
    e = err(mfa.authenticate_sms_otp, ORG, "member-unknown", code, intermediate_session_token=ist)
    assert e.error_type == "member_not_found"
    setup_member(mfa, status="deleted")
    e = err(auth, mfa, wrong(code), "bogus")
    assert (e.error_type, e.status_code) == ("action_available_only_for_active_members", 400)
    e = err(auth, mfa, code, ist)
    assert e.error_type == "action_available_only_for_active_members"
    setup_member(mfa, status="active")
    assert_untouched(mfa, transport, ist, code, 1)


@pytest.mark.parametrize(
    "token_kind",
    ["unknown_ist", "other_member_ist", "other_org_ist", "unknown_session", "other_member_session", "jwt"],
)
def test_order_authenticate_step3_token_validity_and_ownership_before_lock(
    member_flow: FlowFactory, setup_member: Setup, transport: FakeTransport, token_kind: str
) -> None:
    mfa = member_flow(lockout_threshold=1)
    setup_member(mfa, MEMBER2, mfa_phone_number=PHONE2)
    setup_member(mfa, MEMBER3, organization_id=ORG2, mfa_phone_number=PHONE3)
    ist, code = login(mfa, transport)
    other_ist, _ = login(mfa, transport, MEMBER2)
    other_org_ist, _ = login(mfa, transport, MEMBER3, ORG2)
    other_session = auth(mfa, transport.sent[-2].code, other_ist, member=MEMBER2).session_token
    other_ist = discovery_ist(mfa, MEMBER2)  # the first one was consumed
    code = resend(mfa, transport, ist)  # the member's live code, bound to ist
    # lock the member with one counted failure (threshold 1)
    assert err(auth, mfa, wrong(code), ist).error_type == "user_lock_limit_reached"
    assert mfa.get_member(ORG, MEMBER).is_locked is True
    sent = len(transport.sent)
    kwargs, expected = {
        "unknown_ist": ({"intermediate_session_token": "ist-unknown"}, "intermediate_session_not_found"),
        "other_member_ist": ({"intermediate_session_token": other_ist}, "member_session_member_id_mismatch"),
        "other_org_ist": ({"intermediate_session_token": other_org_ist},
                          "invalid_intermediate_session_token_for_organization"),
        "unknown_session": ({"session_token": "session-unknown"}, "session_not_found"),
        "other_member_session": ({"session_token": other_session}, "member_session_member_id_mismatch"),
        "jwt": ({"session_jwt": "eyJhbGciOiJIUzI1NiJ9.e30.x"}, "unable_to_parse_session_jwt"),
    }[token_kind]
    e = err(mfa.authenticate_sms_otp, ORG, MEMBER, code, **kwargs)
    assert e.error_type == expected
    # the member's own IST reaches the lock
    assert err(auth, mfa, code, ist).error_type == "user_lock_limit_reached"
    assert len(transport.sent) == sent


@pytest.mark.parametrize("token_kind", ["expired_ist", "consumed_ist", "expired_session"])
def test_order_authenticate_step3_validity_before_ownership_for_another_members_dead_token(
    member_flow: FlowFactory, setup_member: Setup, transport: FakeTransport, clock: FakeClock, token_kind: str
) -> None:
    """An attacker holding another member's dead token learns only that it is dead, never whose it was."""
    mfa = member_flow(lockout_threshold=1)
    setup_member(mfa, MEMBER2, mfa_phone_number=PHONE2)
    other_ist, other_code = login(mfa, transport, MEMBER2)
    kwargs: dict[str, str]
    if token_kind == "expired_session":
        other = auth(mfa, other_code, other_ist, member=MEMBER2, session_duration_minutes=5).session_token
        kwargs, dead, ttl = {"session_token": other}, "session_not_found", 300
    else:
        kwargs, dead, ttl = {"intermediate_session_token": other_ist}, "intermediate_session_not_found", 600
    # while the token is valid, ownership answers
    e = err(mfa.authenticate_sms_otp, ORG, MEMBER, "123456", **kwargs)
    assert e.error_type == "member_session_member_id_mismatch"
    if token_kind == "consumed_ist":
        assert auth(mfa, other_code, other_ist, member=MEMBER2).session_token
    else:
        clock.advance(ttl)
    ist, code = login(mfa, transport)  # the member has a live code, bound to its own IST
    sent = len(transport.sent)
    for submitted in (code, wrong(code)):
        e = err(mfa.authenticate_sms_otp, ORG, MEMBER, submitted, **kwargs)
        assert (e.error_type, e.status_code) == (dead, 404)
    # not counted (threshold 1 would lock) and nothing consumed
    assert_untouched(mfa, transport, ist, code, sent)


def test_order_authenticate_step4_lock_before_restricted_methods(
    member_flow: FlowFactory, setup_member: Setup, transport: FakeTransport
) -> None:
    mfa, ist, code = logged_in(member_flow, transport, lockout_threshold=1)
    assert err(auth, mfa, wrong(code), ist).error_type == "user_lock_limit_reached"
    setup_member(mfa, org={"mfa_methods": "RESTRICTED", "allowed_mfa_methods": ("totp",)})
    e = err(auth, mfa, code, ist)
    assert (e.error_type, e.status_code) == ("user_lock_limit_reached", 429)


def test_order_authenticate_step4b_restricted_methods_before_live_code_and_comparison(
    member_flow: FlowFactory, setup_member: Setup, transport: FakeTransport
) -> None:
    mfa, ist, code = logged_in(member_flow, transport, lockout_threshold=1)
    setup_member(mfa, org={"mfa_methods": "RESTRICTED", "allowed_mfa_methods": ("totp",)})
    # with a live code and a wrong one: restricted first, and not counted
    e = err(auth, mfa, wrong(code), ist)
    assert (e.error_type, e.status_code) == ("operation_restricted_by_organization_mfa_methods", 400)
    # with the right code: still refused, the code is not consumed
    assert err(auth, mfa, code, ist).error_type == "operation_restricted_by_organization_mfa_methods"
    # without a live code (discovery IST, nothing sent): restricted before unable_to_auth_otp_code
    setup_member(mfa, MEMBER2, mfa_phone_number=PHONE2)
    ist2 = discovery_ist(mfa, MEMBER2)
    e = err(auth, mfa, wrong(code), ist2, member=MEMBER2)
    assert e.error_type == "operation_restricted_by_organization_mfa_methods"
    setup_member(mfa, org={"mfa_methods": "RESTRICTED", "allowed_mfa_methods": ("sms_otp", "totp")})
    assert_untouched(mfa, transport, ist, code, 1)


def test_order_authenticate_step4b_breakglass_member_exempt_from_restricted_methods(
    flow: FlowFactory, setup_member: Setup, transport: FakeTransport
) -> None:
    mfa = flow()
    setup_member(mfa, is_breakglass=True,
                 org={"mfa_methods": "RESTRICTED", "allowed_mfa_methods": ("totp",)})
    ist, code = login(mfa, transport)
    res = auth(mfa, code, ist)
    assert res.session_token
    assert res.member_session is not None


def test_order_authenticate_step5_no_live_code_is_unable_to_auth_and_not_counted(
    member_flow: FlowFactory, transport: FakeTransport
) -> None:
    mfa = member_flow(lockout_threshold=1)
    ist = discovery_ist(mfa)
    assert transport.sent == []
    for _ in range(3):
        e = err(auth, mfa, "123456", ist)
        assert (e.error_type, e.status_code) == ("unable_to_auth_otp_code", 401)
    assert mfa.get_member(ORG, MEMBER).is_locked is False
    code = resend(mfa, transport, ist)
    assert_untouched(mfa, transport, ist, code, 1)


def test_order_authenticate_step6_comparison_last(
    member_flow: FlowFactory, transport: FakeTransport
) -> None:
    mfa, ist, code = logged_in(member_flow, transport)
    e = err(auth, mfa, wrong(code), ist)
    assert (e.error_type, e.status_code) == ("otp_code_not_found", 404)
    res = auth(mfa, code, ist)
    assert res.session_token


# ---------------------------------------------------------------------------------- §6.5 codes


def test_u1_code_reuse_after_success_refused(
    member_flow: FlowFactory, transport: FakeTransport
) -> None:
    mfa, ist, code = logged_in(member_flow, transport, lockout_threshold=1)
    res = auth(mfa, code, ist)
    # the same code with the new session: no live code (not counted: threshold 1 would lock)
    e = err(mfa.authenticate_sms_otp, ORG, MEMBER, code, session_token=res.session_token)
    assert e.error_type == "unable_to_auth_otp_code"
    # the same code with a fresh IST of the member
    ist2 = discovery_ist(mfa)
    assert err(auth, mfa, code, ist2).error_type == "unable_to_auth_otp_code"
    # the consumed IST
    assert err(auth, mfa, code, ist).error_type == "intermediate_session_not_found"
    assert mfa.get_member(ORG, MEMBER).is_locked is False
    assert len(transport.sent) == 1


def test_u2_resend_invalidates_previous_code(
    member_flow: FlowFactory, transport: FakeTransport
) -> None:
    mfa, ist, old = logged_in(member_flow, transport)
    new = resend(mfa, transport, ist)
    assert new != old
    e = err(auth, mfa, old, ist)
    assert e.error_type == "otp_code_not_found"
    res = auth(mfa, new, ist)
    assert res.session_token


def test_u3_code_accepted_just_before_ttl(
    member_flow: FlowFactory, transport: FakeTransport, clock: FakeClock
) -> None:
    mfa, ist, code = logged_in(member_flow, transport)
    clock.advance(119.999)
    res = auth(mfa, code, ist)
    assert res.session_token


def test_u3_code_refused_at_ttl_and_not_counted(
    member_flow: FlowFactory, transport: FakeTransport, clock: FakeClock
) -> None:
    mfa, ist, code = logged_in(member_flow, transport, lockout_threshold=1)
    clock.advance(120)
    e = err(auth, mfa, code, ist)
    assert (e.error_type, e.status_code) == ("unable_to_auth_otp_code", 401)
    assert err(auth, mfa, wrong(code), ist).error_type == "unable_to_auth_otp_code"
    assert mfa.get_member(ORG, MEMBER).is_locked is False
    new = resend(mfa, transport, ist)
    assert_untouched(mfa, transport, ist, new, 2)


def test_code_bound_to_its_token_other_ist_is_wrong_code(
    member_flow: FlowFactory, transport: FakeTransport
) -> None:
    mfa, ist, code = logged_in(member_flow, transport)
    other = discovery_ist(mfa)
    e = err(auth, mfa, code, other)
    assert (e.error_type, e.status_code) == ("otp_code_not_found", 404)
    # four more with the other IST: the code dies after five attempts in all
    for _ in range(4):
        assert err(auth, mfa, code, other).error_type == "otp_code_not_found"
    assert err(auth, mfa, code, ist).error_type == "unable_to_auth_otp_code"


def test_code_bound_to_its_token_counts_on_member(
    member_flow: FlowFactory, transport: FakeTransport
) -> None:
    mfa, _, code = logged_in(member_flow, transport, lockout_threshold=1)
    other = discovery_ist(mfa)
    assert err(auth, mfa, code, other).error_type == "user_lock_limit_reached"
    assert mfa.get_member(ORG, MEMBER).is_locked is True


def test_code_bound_to_its_token_still_redeemable_by_its_own_token(
    member_flow: FlowFactory, transport: FakeTransport
) -> None:
    mfa, ist, code = logged_in(member_flow, transport)
    other = discovery_ist(mfa)
    assert err(auth, mfa, code, other).error_type == "otp_code_not_found"
    assert auth(mfa, code, ist).session_token


def test_u18_login_code_submitted_with_a_session_of_the_member_is_a_wrong_code_and_counts(
    member_flow: FlowFactory, transport: FakeTransport, events: list[Event]
) -> None:
    """A code issued for a login (bound to its IST) cannot be redeemed through a session of the same member,
    even a fully valid one: it answers as a wrong code, and counts on the code and on the member."""
    mfa = member_flow(**ROOMY)
    ist0, code0 = login(mfa, transport)
    session = auth(mfa, code0, ist0).session_token
    before = mfa.authenticate_session(session_token=session)
    assert before.step_up_required is False
    ist, code = login(mfa, transport)  # a second login: its code is bound to this IST
    mark = len(events)
    tries = [err(mfa.authenticate_sms_otp, ORG, MEMBER, code, session_token=session).error_type for _ in range(5)]
    assert tries == ["otp_code_not_found"] * 5
    assert names(events[mark:]) == ["otp.failed"] * 5
    assert "otp.verified" not in names(events[mark:])
    # the session gained nothing
    after = mfa.authenticate_session(session_token=session)
    assert after.step_up_required is False
    assert after.member_session.authentication_factors == before.member_session.authentication_factors
    # counted on the code: the five attempts killed it, so its own IST can no longer redeem it
    assert err(auth, mfa, code, ist).error_type == "unable_to_auth_otp_code"
    # counted on the member: 5 + 4 wrong codes do not lock, the 10th does
    code2 = resend(mfa, transport, ist)
    assert wrong_tries(mfa, code2, ist, 4) == ["otp_code_not_found"] * 4
    assert mfa.get_member(ORG, MEMBER).is_locked is False
    assert err(auth, mfa, wrong(code2), ist).error_type == "user_lock_limit_reached"
    assert mfa.get_member(ORG, MEMBER).is_locked is True


def test_u18_login_code_submitted_with_a_session_of_the_member_locks_at_the_threshold(
    member_flow: FlowFactory, transport: FakeTransport
) -> None:
    mfa = member_flow(lockout_threshold=1)
    ist0, code0 = login(mfa, transport)
    session = auth(mfa, code0, ist0).session_token
    ist, code = login(mfa, transport)
    e = err(mfa.authenticate_sms_otp, ORG, MEMBER, code, session_token=session)
    assert (e.error_type, e.status_code) == ("user_lock_limit_reached", 429)
    assert mfa.get_member(ORG, MEMBER).is_locked is True
    assert err(auth, mfa, code, ist).error_type == "user_lock_limit_reached"


@pytest.mark.parametrize("token_kind", ["discovery_ist", "session"])
def test_code_sent_without_token_redeemable_by_any_valid_token_of_member(
    flow: FlowFactory, setup_member: Setup, transport: FakeTransport, token_kind: str
) -> None:
    mfa = flow()
    # no active factor (unverified phone), MFA not owed: a send needs no token
    setup_member(mfa, mfa_phone_number_verified=False, org={"mfa_policy": "OPTIONAL"})
    mfa.send_sms_otp(ORG, MEMBER)
    assert [m.to for m in transport.sent] == [PHONE]
    code = transport.sent[-1].code
    if token_kind == "discovery_ist":
        kwargs = {"intermediate_session_token": discovery_ist(mfa)}
    else:
        p = mfa.authenticate_primary(ORG, MEMBER, "password")
        assert p.session_token
        kwargs = {"session_token": p.session_token}
    res = mfa.authenticate_sms_otp(ORG, MEMBER, code, **kwargs)
    assert res.session_token
    assert mfa.get_member(ORG, MEMBER).mfa_phone_number_verified is True


def _fullwidth(code: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) for c in code)


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda c: " " + c, id="leading-space"),
        pytest.param(_fullwidth, id="fullwidth-digits"),
        pytest.param(lambda c: c[:5], id="five-digits"),
        pytest.param(lambda c: c + "7", id="seven-digits"),
        pytest.param(lambda c: c + "\n", id="trailing-newline"),
        pytest.param(lambda c: None, id="None"),
        pytest.param(int, id="int"),
    ],
)
def test_non_six_digit_inputs_are_wrong_codes(
    member_flow: FlowFactory, transport: FakeTransport, mangle: Callable[[str], object]
) -> None:
    mfa, ist, code = logged_in(member_flow, transport)
    bad = mangle(code)
    e = err(auth, mfa, bad, ist)
    assert (e.error_type, e.status_code) == ("otp_code_not_found", 404)
    # counted on the code: four more kill it
    for _ in range(4):
        assert err(auth, mfa, bad, ist).error_type == "otp_code_not_found"
    assert err(auth, mfa, code, ist).error_type == "unable_to_auth_otp_code"


@pytest.mark.parametrize(
    "mangle",
    [pytest.param(lambda c: " " + c, id="leading-space"), pytest.param(_fullwidth, id="fullwidth"),
     pytest.param(lambda c: None, id="None"), pytest.param(int, id="int")],
)
def test_non_six_digit_inputs_count_on_member(
    member_flow: FlowFactory, transport: FakeTransport, mangle: Callable[[str], object]
) -> None:
    mfa, ist, code = logged_in(member_flow, transport, lockout_threshold=1)
    assert err(auth, mfa, mangle(code), ist).error_type == "user_lock_limit_reached"
    assert mfa.get_member(ORG, MEMBER).is_locked is True


def test_fifth_wrong_attempt_kills_code(
    member_flow: FlowFactory, transport: FakeTransport
) -> None:
    mfa, ist, code = logged_in(member_flow, transport)
    assert wrong_tries(mfa, code, ist, 5) == ["otp_code_not_found"] * 5
    e = err(auth, mfa, code, ist)
    assert (e.error_type, e.status_code) == ("unable_to_auth_otp_code", 401)
    assert mfa.get_member(ORG, MEMBER).is_locked is False


def test_fourth_wrong_attempt_leaves_code_live(
    member_flow: FlowFactory, transport: FakeTransport
) -> None:
    mfa, ist, code = logged_in(member_flow, transport)
    assert wrong_tries(mfa, code, ist, 4) == ["otp_code_not_found"] * 4
    assert auth(mfa, code, ist).session_token


# ------------------------------------------------------------------------------- §6.6 counter and lock


def test_u4_u6_tenth_wrong_code_across_codes_and_ists_locks(
    member_flow: FlowFactory, transport: FakeTransport, clock: FakeClock, events: list[Event]
) -> None:
    mfa, ist1, c1 = logged_in(member_flow, transport)
    assert wrong_tries(mfa, c1, ist1, 4) == ["otp_code_not_found"] * 4
    ist2, c2 = login(mfa, transport)
    assert wrong_tries(mfa, c2, ist2, 4) == ["otp_code_not_found"] * 4
    c3 = resend(mfa, transport, ist1)
    assert err(auth, mfa, wrong(c3), ist1).error_type == "otp_code_not_found"  # 9th
    assert mfa.get_member(ORG, MEMBER).is_locked is False
    assert "member.locked" not in names(events)
    locked_at = clock.now()
    e = err(auth, mfa, wrong(c3), ist1)  # 10th
    assert (e.error_type, e.status_code) == ("user_lock_limit_reached", 429)
    locked = [ev for ev in events if ev.name == "member.locked"]
    assert len(locked) == 1
    assert (locked[0].organization_id, locked[0].member_id) == (ORG, MEMBER)
    m = mfa.get_member(ORG, MEMBER)
    assert m.is_locked is True
    assert m.lock_expires_at == at(locked_at + 3600)
    sent = len(transport.sent)
    # while locked: the right code, a send, a primary auth
    assert err(auth, mfa, c3, ist1).error_type == "user_lock_limit_reached"
    assert err(mfa.send_sms_otp, ORG, MEMBER, intermediate_session_token=ist1).error_type == \
        "user_lock_limit_reached"
    assert err(mfa.authenticate_primary, ORG, MEMBER, "email_magic_link").error_type == "user_lock_limit_reached"
    assert len(transport.sent) == sent
    clock.advance(3599)
    assert mfa.get_member(ORG, MEMBER).is_locked is True
    assert err(mfa.authenticate_primary, ORG, MEMBER, "email_magic_link").error_type == "user_lock_limit_reached"
    clock.advance(1.001)
    m = mfa.get_member(ORG, MEMBER)
    assert m.is_locked is False
    assert m.lock_expires_at is None
    # the counter is 0 after the lock: 9 more failures do not lock, the 10th does
    ist3, _ = login(mfa, transport)
    assert fail(mfa, transport, ist3, 9) == ["otp_code_not_found"] * 9
    assert mfa.get_member(ORG, MEMBER).is_locked is False
    assert fail(mfa, transport, ist3, 1) == ["user_lock_limit_reached"]
    assert mfa.get_member(ORG, MEMBER).is_locked is True


def test_u4_lock_applies_to_the_right_code(
    member_flow: FlowFactory, transport: FakeTransport
) -> None:
    mfa, ist, _ = logged_in(member_flow, transport)
    assert fail(mfa, transport, ist, 10)[-1] == "user_lock_limit_reached"
    code = transport.sent[-1].code
    assert err(auth, mfa, code, ist).error_type == "user_lock_limit_reached"
    assert mfa.get_member(ORG, MEMBER).is_locked is True


def test_u5_resends_do_not_reset_counter(
    member_flow: FlowFactory, transport: FakeTransport
) -> None:
    mfa, ist, _ = logged_in(member_flow, transport)
    assert fail(mfa, transport, ist, 9, per_code=3) == ["otp_code_not_found"] * 9
    code = resend(mfa, transport, ist)
    assert len(transport.sent) == 4
    e = err(auth, mfa, wrong(code), ist)
    assert e.error_type == "user_lock_limit_reached"
    assert mfa.get_member(ORG, MEMBER).is_locked is True


def test_failure_that_kills_code_and_reaches_threshold_answers_lock(
    member_flow: FlowFactory, transport: FakeTransport, events: list[Event]
) -> None:
    mfa, ist, c1 = logged_in(member_flow, transport)
    assert wrong_tries(mfa, c1, ist, 5) == ["otp_code_not_found"] * 5
    assert err(auth, mfa, c1, ist).error_type == "unable_to_auth_otp_code"  # dead, not counted
    c2 = resend(mfa, transport, ist)
    assert wrong_tries(mfa, c2, ist, 4) == ["otp_code_not_found"] * 4
    e = err(auth, mfa, wrong(c2), ist)  # 5th on this code and 10th on the member
    assert e.error_type == "user_lock_limit_reached"
    assert mfa.get_member(ORG, MEMBER).is_locked is True
    assert names(events).count("member.locked") == 1


def test_u7_success_resets_counter(
    member_flow: FlowFactory, transport: FakeTransport
) -> None:
    mfa, ist, _ = logged_in(member_flow, transport, **ROOMY)
    assert fail(mfa, transport, ist, 9) == ["otp_code_not_found"] * 9
    assert auth(mfa, transport.sent[-1].code, ist).session_token
    ist2, _ = login(mfa, transport)
    assert fail(mfa, transport, ist2, 9) == ["otp_code_not_found"] * 9
    assert mfa.get_member(ORG, MEMBER).is_locked is False
    assert fail(mfa, transport, ist2, 1) == ["user_lock_limit_reached"]


def test_refusals_before_step_6_never_count(
    member_flow: FlowFactory, setup_member: Setup, transport: FakeTransport, clock: FakeClock
) -> None:
    mfa = member_flow(**ROOMY)
    setup_member(mfa, MEMBER2, mfa_phone_number=PHONE2)
    other = discovery_ist(mfa, MEMBER2)
    d = discovery_ist(mfa)
    for _ in range(3):
        assert err(auth, mfa, "123456", d).error_type == "unable_to_auth_otp_code"
    ist, code = login(mfa, transport)
    for _ in range(3):
        assert err(auth, mfa, wrong(code), "ist-unknown").error_type == "intermediate_session_not_found"
        assert err(auth, mfa, wrong(code), other).error_type == "member_session_member_id_mismatch"
        assert err(auth, mfa, wrong(code), ist, session_duration_minutes=4).error_type == \
            "invalid_session_duration_minutes"
        assert err(mfa.authenticate_sms_otp, ORG, MEMBER, wrong(code)).error_type == "no_session_arguments"
    clock.advance(120)
    for _ in range(3):
        assert err(auth, mfa, wrong(code), ist).error_type == "unable_to_auth_otp_code"
    resend(mfa, transport, ist)
    assert fail(mfa, transport, ist, 9) == ["otp_code_not_found"] * 9
    assert mfa.get_member(ORG, MEMBER).is_locked is False
    assert fail(mfa, transport, ist, 1) == ["user_lock_limit_reached"]


def test_failure_counter_has_no_time_window(
    member_flow: FlowFactory, transport: FakeTransport, clock: FakeClock
) -> None:
    mfa, ist, _ = logged_in(member_flow, transport)
    assert fail(mfa, transport, ist, 9) == ["otp_code_not_found"] * 9
    clock.advance(30 * 24 * 3600)  # 30 days: a counter with any plausible time window would have forgotten
    assert mfa.get_member(ORG, MEMBER).is_locked is False
    ist2, code = login(mfa, transport)
    assert err(auth, mfa, wrong(code), ist2).error_type == "user_lock_limit_reached"


def test_directory_lock_fields_have_no_effect(
    flow: FlowFactory, setup_member: Setup, transport: FakeTransport, clock: FakeClock
) -> None:
    mfa = flow()
    setup_member(mfa, is_locked=True, lock_expires_at=at(clock.now() + 3600))
    m = mfa.get_member(ORG, MEMBER)
    assert m.is_locked is False
    assert m.lock_expires_at is None
    ist, code = login(mfa, transport)
    assert auth(mfa, code, ist).session_token


# -------------------------------------------------------------------------------- §6.9 success


def test_success_consumes_ist_and_issues_fresh_session(
    member_flow: FlowFactory, transport: FakeTransport, clock: FakeClock
) -> None:
    mfa, ist, code = logged_in(member_flow, transport)
    clock.advance(5)
    now = clock.now()
    res = auth(mfa, code, ist)
    assert res.status_code == 200
    assert res.request_id == ""
    assert res.member_id == MEMBER
    assert res.session_token
    assert res.session_token != ist
    assert len(res.session_token) >= 22  # >= 128 bits in any text encoding
    assert res.session_jwt == ""
    s = res.member_session
    assert s is not None
    assert (s.member_id, s.organization_id, s.organization_slug) == (MEMBER, ORG, "acme")
    assert s.last_accessed_at == at(now)
    assert s.expires_at == at(now + 60 * 60)
    factors = s.authentication_factors
    assert [(f.type, f.delivery_method) for f in factors] == [("magic_link", "email"), ("otp", "sms")]
    sms = factors[1]
    assert sms.last_authenticated_at == at(now)
    assert sms.phone_number_factor is not None
    assert sms.phone_number_factor["phone_number"] == PHONE
    assert "phone_id" in sms.phone_number_factor
    assert factors[0].phone_number_factor is None
    # U17: the IST is consumed
    e = err(auth, mfa, code, ist)
    assert (e.error_type, e.status_code) == ("intermediate_session_not_found", 404)
    e = err(mfa.send_sms_otp, ORG, MEMBER, intermediate_session_token=ist)
    assert e.error_type == "intermediate_session_not_found"
    assert len(transport.sent) == 1


def test_success_sets_verified_flag(
    flow: FlowFactory, setup_member: Setup, transport: FakeTransport, events: list[Event]
) -> None:
    mfa = flow()
    setup_member(mfa, mfa_phone_number_verified=False)
    ist, code = login(mfa, transport)  # an unverified linked phone still gets the automatic send
    assert mfa.get_member(ORG, MEMBER).mfa_phone_number_verified is False
    start = len(events)
    res = auth(mfa, code, ist)
    assert res.member.mfa_phone_number_verified is True
    m = mfa.get_member(ORG, MEMBER)
    assert m.mfa_phone_number_verified is True
    assert m.mfa_phone_number == PHONE
    assert "member.updated" in names(events[start:])


def test_success_enrols_under_required_for_all(
    flow: FlowFactory, setup_member: Setup, transport: FakeTransport
) -> None:
    mfa = flow()
    setup_member(mfa, mfa_enrolled=False)
    ist, code = login(mfa, transport)
    res = auth(mfa, code, ist)
    assert res.member.mfa_enrolled is True
    assert mfa.get_member(ORG, MEMBER).mfa_enrolled is True


@pytest.mark.parametrize("initial", [False, True])
def test_success_enrols_under_required_for_all_even_when_asked_to_unenroll(
    flow: FlowFactory, setup_member: Setup, transport: FakeTransport, initial: bool
) -> None:
    mfa = flow()
    setup_member(mfa, mfa_enrolled=initial)
    ist, code = login(mfa, transport)
    res = auth(mfa, code, ist, set_mfa_enrollment="unenroll")
    assert res.member.mfa_enrolled is True
    assert mfa.get_member(ORG, MEMBER).mfa_enrolled is True


@pytest.mark.parametrize(
    ("initial", "setting", "expected"),
    [(True, "unenroll", False), (True, None, True), (False, "enroll", True), (False, None, False),
     (True, "enroll", True), (False, "unenroll", False)],
)
def test_set_mfa_enrollment_outside_required_for_all(
    flow: FlowFactory, setup_member: Setup, transport: FakeTransport,
    initial: bool, setting: str | None, expected: bool,
) -> None:
    mfa = flow()
    setup_member(mfa, mfa_enrolled=initial, org={"mfa_policy": "OPTIONAL"})
    ist = discovery_ist(mfa)
    code = resend(mfa, transport, ist)
    res = auth(mfa, code, ist, set_mfa_enrollment=setting)
    assert res.member.mfa_enrolled is expected
    assert mfa.get_member(ORG, MEMBER).mfa_enrolled is expected


class EqualsRaises:
    """An argument whose == raises, as a hostile caller's object might."""

    def __eq__(self, other: object) -> bool:
        raise RuntimeError("eq")

    __hash__ = object.__hash__


@pytest.mark.parametrize("setting", ["ENROLL", "", 1, True, EqualsRaises()],
                         ids=["upper", "empty", "int", "bool", "hostile-eq"])
def test_set_mfa_enrollment_other_values_are_bad_request_and_consume_nothing(
    flow: FlowFactory, setup_member: Setup, transport: FakeTransport, setting: object,
) -> None:
    mfa = flow()
    setup_member(mfa)
    ist, code = login(mfa, transport)
    e = err(auth, mfa, code, ist, set_mfa_enrollment=setting)
    assert (e.error_type, e.status_code) == ("bad_request", 400)
    assert auth(mfa, code, ist).session_token  # the code and the IST are still good


@pytest.mark.parametrize(("set_default", "expected"), [(True, "sms_otp"), (None, ""), (False, "")])
def test_set_default_mfa(
    flow: FlowFactory, setup_member: Setup, transport: FakeTransport, set_default: bool | None, expected: str
) -> None:
    mfa = flow()
    setup_member(mfa, default_mfa_method="")
    ist, code = login(mfa, transport)
    res = auth(mfa, code, ist, set_default_mfa=set_default)
    assert res.member.default_mfa_method == expected
    assert mfa.get_member(ORG, MEMBER).default_mfa_method == expected


def test_set_default_mfa_replaces_totp_default(
    flow: FlowFactory, setup_member: Setup, transport: FakeTransport
) -> None:
    mfa = flow()
    setup_member(mfa, default_mfa_method="totp", totp_registration_id="totp-registration-1")
    r = mfa.authenticate_primary(ORG, MEMBER, "email_magic_link")
    assert transport.sent == []
    code = resend(mfa, transport, r.intermediate_session_token)
    res = auth(mfa, code, r.intermediate_session_token, set_default_mfa=True)
    assert mfa.get_member(ORG, MEMBER).default_mfa_method == "sms_otp"
    assert res.member.default_mfa_method == "sms_otp"


@pytest.mark.parametrize(("minutes", "lifetime"), [(None, 60), (5, 5), (527040, 527040), (1440, 1440)])
def test_session_duration_minutes_in_range(
    member_flow: FlowFactory, transport: FakeTransport, clock: FakeClock,
    minutes: int | None, lifetime: int,
) -> None:
    mfa, ist, code = logged_in(member_flow, transport)
    res = auth(mfa, code, ist, session_duration_minutes=minutes)
    assert res.member_session is not None
    assert res.member_session.expires_at == at(clock.now() + lifetime * 60)


@pytest.mark.parametrize("minutes", [4, 527041, 0, -5])
def test_session_duration_minutes_out_of_range(
    member_flow: FlowFactory, transport: FakeTransport, minutes: int
) -> None:
    mfa, ist, code = logged_in(member_flow, transport, lockout_threshold=1)
    e = err(auth, mfa, code, ist, session_duration_minutes=minutes)
    assert (e.error_type, e.status_code) == ("invalid_session_duration_minutes", 400)
    e = err(auth, mfa, wrong(code), ist, session_duration_minutes=minutes)
    assert e.error_type == "invalid_session_duration_minutes"
    assert_untouched(mfa, transport, ist, code, 1)


def test_u17_ist_valid_before_600_s(
    member_flow: FlowFactory, transport: FakeTransport, clock: FakeClock
) -> None:
    mfa, ist, _ = logged_in(member_flow, transport)
    clock.advance(590)
    code = resend(mfa, transport, ist)
    clock.advance(9)
    assert auth(mfa, code, ist).session_token


def test_u17_ist_expires_after_600_s(
    member_flow: FlowFactory, transport: FakeTransport, clock: FakeClock
) -> None:
    mfa, ist, code = logged_in(member_flow, transport)
    clock.advance(601)
    e = err(mfa.send_sms_otp, ORG, MEMBER, intermediate_session_token=ist)
    assert (e.error_type, e.status_code) == ("intermediate_session_not_found", 404)
    assert err(auth, mfa, code, ist).error_type == "intermediate_session_not_found"
    assert len(transport.sent) == 1


def test_u17_ist_of_another_member_refused(
    member_flow: FlowFactory, setup_member: Setup, transport: FakeTransport
) -> None:
    mfa = member_flow()
    setup_member(mfa, MEMBER2, mfa_phone_number=PHONE2)
    ist, code = login(mfa, transport)
    _, code2 = login(mfa, transport, MEMBER2)
    e = err(auth, mfa, code2, ist, member=MEMBER2)
    assert (e.error_type, e.status_code) == ("member_session_member_id_mismatch", 400)
    # the IST stays usable by its own member
    assert auth(mfa, code, ist).session_token


# -------------------------------------------------------------------------- §6.12 secrets never leak

_SKIP_TYPES = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType, types.MethodType,
               int, float, complex, bool, type(None))


def _strings_held_by(root: object, skip: set[int]) -> Iterator[str | bytes]:
    """Every str/bytes reachable from ``root`` through containers, ``__dict__`` and ``__slots__``."""
    seen = set(skip)
    stack: list[object] = [root]
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, str | bytes):
            yield obj
            continue
        if isinstance(obj, bytearray | memoryview):
            yield bytes(obj)
            continue
        if isinstance(obj, (*_SKIP_TYPES, FakeTransport)):
            continue
        if isinstance(obj, Mapping):
            stack.extend(obj.keys())
            stack.extend(obj.values())
        elif isinstance(obj, list | tuple | set | frozenset | deque):
            stack.extend(obj)
        attrs_ = getattr(obj, "__dict__", None)
        if isinstance(attrs_, dict):
            stack.extend(attrs_.values())
        for cls in type(obj).__mro__:
            slots = cls.__dict__.get("__slots__", ())
            for slot in (slots,) if isinstance(slots, str) else slots:
                if slot in ("__dict__", "__weakref__"):
                    continue
                try:
                    stack.append(getattr(obj, slot))
                except AttributeError:
                    continue


def _leaks(text: str | bytes, codes: list[str], tokens: list[str]) -> list[str]:
    """The secrets found in ``text``: a code delimited by non-digits, or a token anywhere."""
    found: list[str] = []
    for code in codes:
        if isinstance(text, bytes):
            if re.search(rb"(?<![0-9])" + code.encode() + rb"(?![0-9])", text):
                found.append(code)
        elif re.search(r"(?<![0-9])" + code + r"(?![0-9])", text):
            found.append(code)
    for token in tokens:
        needle: str | bytes = token.encode() if isinstance(text, bytes) else token
        if needle in text:  # type: ignore[operator]
            found.append(token)
    return found


def test_u14_known_code_never_leaks(
    setup_member: Setup, transport: FakeTransport, clock: FakeClock, events: list[Event],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    key = b"K3y-for-the-leak-test-0123456789-abcdef"
    mfa = MfaFlow(clock=clock, transport=transport, events=[events.append], secret_key=key)
    setup_member(mfa)
    setup_member(mfa, MEMBER2, mfa_phone_number=PHONE2)
    results: list[object] = []
    errors: list[MfaError] = []
    p = mfa.authenticate_primary(ORG, MEMBER, "email_magic_link")
    results.append(p)
    ist = p.intermediate_session_token
    c1 = transport.sent[-1].code
    errors.append(err(auth, mfa, wrong(c1), ist))
    results.append(mfa.send_sms_otp(ORG, MEMBER, intermediate_session_token=ist))
    c2 = transport.sent[-1].code
    errors.append(err(auth, mfa, c1, ist))  # superseded code
    other = discovery_ist(mfa)
    errors.append(err(auth, mfa, c2, other))  # right digits, wrong token
    p2 = mfa.authenticate_primary(ORG, MEMBER2, "email_magic_link")
    results.append(p2)
    errors.append(err(auth, mfa, transport.sent[-1].code, ist, member=MEMBER2))  # another member's IST
    res = auth(mfa, c2, ist)
    results.append(res)
    errors.append(err(auth, mfa, c2, ist))  # consumed IST
    errors.append(err(mfa.authenticate_sms_otp, ORG, MEMBER, c2, session_token=res.session_token))  # used code
    clock.advance(1801)
    check = mfa.authenticate_session(session_token=res.session_token)
    results.append(check)
    assert check.step_up_required is True
    results.append(mfa.get_member(ORG, MEMBER))
    results.append(mfa.get_member(ORG, MEMBER2))

    codes = [m.code for m in transport.sent]
    assert len(codes) >= 4
    tokens = [ist, other, p2.intermediate_session_token, res.session_token]
    assert all(tokens)

    for obj in results:
        for text in (repr(obj), str(obj)):
            assert _leaks(text, codes, tokens) == [], type(obj).__name__
        to_dict = getattr(obj, "to_dict", None)
        if to_dict is not None:
            assert _leaks(repr(to_dict()), codes, []) == [], type(obj).__name__
    for e in errors:
        for text in (repr(e), str(e), e.error_message, repr(e.args), repr(e.to_dict())):
            assert _leaks(text, codes, tokens) == [], e.error_type
    assert events
    for ev in events:
        assert _leaks(repr(ev) + str(ev) + repr(ev.data) + repr(ev.reason), codes, tokens) == [], ev.name
    log_text = caplog.text + "".join(
        r.getMessage() + repr(r.args) + repr(vars(r).get("exc_text")) for r in caplog.records
    )
    assert _leaks(log_text, codes, tokens) == []
    stored = list(_strings_held_by(mfa.store, {id(mfa), id(transport), id(mfa.transport), id(events)}))
    assert any(MEMBER in s for s in stored if isinstance(s, str)), "the walk saw none of the store's records"
    for s in stored:
        assert _leaks(s, codes, tokens) == []
        if isinstance(s, bytes):
            assert key not in s
        else:
            assert key.decode() not in s
            assert key.hex() not in s


def test_results_repr_masks_tokens(
    member_flow: FlowFactory, transport: FakeTransport
) -> None:
    mfa = member_flow()
    p = mfa.authenticate_primary(ORG, MEMBER, "email_magic_link")
    ist = p.intermediate_session_token
    assert ist not in repr(p)
    assert ist not in str(p)
    assert p.to_dict()["intermediate_session_token"] == ist  # in its own field
    res = auth(mfa, transport.sent[-1].code, ist)
    token = res.session_token
    assert token not in repr(res)
    assert token not in str(res)
    assert res.to_dict()["session_token"] == token
    check = mfa.authenticate_session(session_token=token)
    assert token not in repr(check)
    assert token not in repr(check.to_dict())


# ------------------------------------------------------------------------------------ §6.13 events


def test_events_emitted_in_order_with_names(
    member_flow: FlowFactory, transport: FakeTransport, clock: FakeClock, events: list[Event]
) -> None:
    mfa = member_flow()
    p = mfa.authenticate_primary(ORG, MEMBER, "email_magic_link")
    ist = p.intermediate_session_token
    sent = [e for e in events if e.name == "otp.sent"]
    assert len(sent) == 1
    assert (sent[0].organization_id, sent[0].member_id, sent[0].phone) == (ORG, MEMBER, MASKED)
    assert sent[0].at == clock.now()
    assert not {"otp.verified", "otp.failed", "session.created"} & set(names(events))

    clock.advance(1)
    mark = len(events)
    err(auth, mfa, wrong(transport.sent[-1].code), ist)
    failed = [e for e in events[mark:] if e.name == "otp.failed"]
    assert len(failed) == 1
    assert failed[0].reason == "otp_code_not_found"
    assert failed[0].at == clock.now()
    assert not {"otp.sent", "otp.verified", "session.created"} & set(names(events[mark:]))

    clock.advance(1)
    mark = len(events)
    auth(mfa, transport.sent[-1].code, ist)
    after = names(events[mark:])
    assert "otp.verified" in after
    assert "session.created" in after
    assert "member.updated" in after  # enrolled by REQUIRED_FOR_ALL
    assert "otp.sent" not in after
    assert "otp.failed" not in after
    for ev in events[mark:]:
        assert ev.at == clock.now()
        assert (ev.organization_id, ev.member_id) == (ORG, MEMBER)
    updated = [e for e in events[mark:] if e.name == "member.updated"]
    assert updated

    # The whole scenario, in the order the events were emitted: the automatic send; the wrong code; then the
    # success: the code verified, the member record changed (enrolled), the session created.
    assert names(events) == ["otp.sent", "otp.failed", "otp.verified", "member.updated", "session.created"]
    assert [e.reason for e in events] == [None, "otp_code_not_found", None, None, None]
    # member.updated carries the merged record, exactly what get_member answers after the change.
    assert len(updated) == 1
    merged = mfa.get_member(ORG, MEMBER)
    assert updated[0].data["member"] == merged
    assert merged.mfa_enrolled is True
    assert updated[0].phone == MASKED


def test_event_phone_linked_on_link(
    flow: FlowFactory, setup_member: Setup, transport: FakeTransport, events: list[Event]
) -> None:
    mfa = flow()
    setup_member(mfa, mfa_phone_number="", mfa_phone_number_verified=False)
    mfa.send_sms_otp(ORG, MEMBER, mfa_phone_number=PHONE)
    linked = [e for e in events if e.name == "phone.linked"]
    assert len(linked) == 1
    assert (linked[0].member_id, linked[0].phone) == (MEMBER, MASKED)
    assert "otp.sent" in names(events)
    assert mfa.get_member(ORG, MEMBER).mfa_phone_number == PHONE


def test_event_delivery_failed(
    member_flow: FlowFactory, transport: FakeTransport, events: list[Event]
) -> None:
    mfa = member_flow()
    ist = discovery_ist(mfa)
    transport.fail_next("rejected")
    e = err(mfa.send_sms_otp, ORG, MEMBER, intermediate_session_token=ist)
    assert (e.error_type, e.status_code) == ("downstream_carrier_error", 502)
    assert transport.sent == []
    assert "delivery.failed" in names(events)
    assert "otp.sent" not in names(events)


def test_event_callback_exception_is_swallowed(
    member_flow: FlowFactory, transport: FakeTransport, events: list[Event],
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls: list[str] = []

    def boom(event: Event) -> None:
        calls.append(event.name)
        raise RuntimeError("callback-boom-marker")

    caplog.set_level(logging.DEBUG)
    mfa, ist, code = logged_in(member_flow, transport, extra_events=[boom])
    res = auth(mfa, code, ist)
    assert res.session_token
    assert calls
    assert names(events) == calls  # the next callback still gets every event
    assert "otp.verified" in calls
    assert "callback-boom-marker" in caplog.text or "RuntimeError" in caplog.text
    assert mfa.get_member(ORG, MEMBER).mfa_enrolled is True  # the state change persisted


# ------------------------------------------------------------------------------ §1 secret_key


@pytest.mark.parametrize(
    "key",
    [
        pytest.param(b"k" * 31, id="31-bytes"),
        pytest.param("k" * 32, id="str"),
        pytest.param([b"k" * 32, b"k" * 31], id="rotation-with-short-key"),
        pytest.param(b"", id="empty"),
    ],
)
def test_secret_key_validation(key: object) -> None:
    with pytest.raises(ConfigurationError) as ei:
        MfaFlow(secret_key=key)  # type: ignore[arg-type]
    assert ei.value.error_type == "invalid_argument"
    assert ei.value.status_code == 400
    assert isinstance(ei.value, ValueError)
    assert "secret_key" in ei.value.error_message


@pytest.mark.parametrize("key", [b"k" * 32, [b"a" * 32, b"b" * 48], (b"c" * 64,)])
def test_secret_key_accepted(
    key: object, clock: FakeClock, transport: FakeTransport, setup_member: Setup
) -> None:
    mfa = MfaFlow(secret_key=key, clock=clock, transport=transport)  # type: ignore[arg-type]
    setup_member(mfa)
    ist, code = login(mfa, transport)
    assert auth(mfa, code, ist).session_token


def test_secret_key_rotation_verifies_with_older_key(
    clock: FakeClock, transport: FakeTransport, setup_member: Setup
) -> None:
    old, new = b"o" * 32, b"n" * 32
    first = MfaFlow(secret_key=old, clock=clock, transport=transport)
    setup_member(first)
    ist, code = login(first, transport)
    rotated = MfaFlow(secret_key=[new, old], clock=clock, transport=transport,
                      store=first.store, directory=first.directory)
    assert auth(rotated, code, ist).session_token


def test_secret_key_required_with_durable_store() -> None:
    from mfa_flow.stores import MemoryStore

    class DurableStore:
        durable = True

        def __init__(self) -> None:
            self._inner = MemoryStore()

        def __getattr__(self, name: str) -> Any:
            return getattr(self._inner, name)

    with pytest.raises(ConfigurationError) as ei:
        MfaFlow(store=DurableStore())
    assert ei.value.error_type == "invalid_argument"
    assert "secret_key" in ei.value.error_message
