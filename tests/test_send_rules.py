"""Rule tests for the send side: order of checks (spec §5), token rules (§6.4), send limits (§6.7),
delivery outcomes (§6.11), restricted methods, member status, references, locale and uniform refusals (§4)
(on send, and on authenticate_sms_otp, authenticate_primary and record_mfa_factor).

Phone normalisation, regions and destination resolution (§6.1, §6.2) are in tests/test_phone_rules.py.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from mfa_flow import Member, MfaError, Organization, Policy, SendContext
from tests.helpers_rules import wrong
from tests.helpers_send import (
    M2_FRESH,
    M2_VERIFIED,
    M_BREAKGLASS,
    M_EXT,
    M_EXT_REF,
    M_FRESH,
    M_FRESH2,
    M_INVITED,
    M_TOTP,
    M_TOTP2,
    M_UNVERIFIED,
    M_VERIFIED,
    ORG,
    ORG2,
    ORG_EXTERNAL_ID,
    ORG_SLUG,
    P_BREAKGLASS,
    P_CA,
    P_EXT,
    P_GU,
    P_INVALID,
    P_JM,
    P_NEW,
    P_NEW2,
    P_OTHER,
    P_PREMIUM,
    P_UNVERIFIED,
    P_VERIFIED,
    Env,
    event_names,
    expect_error,
    expect_refused,
    expect_send_refused,
    lock_member,
    make_env,
    primary_ist,
    totp_session,
)

UNKNOWN_ORG = "organization-does-not-exist"
UNKNOWN_MEMBER = "member-does-not-exist"
RESTRICTED_TOTP_ONLY = {"mfa_methods": "RESTRICTED", "allowed_mfa_methods": ("totp",)}


def restrict_org(env: Env, **fields: Any) -> None:
    env.flow.directory.put_organization(
        Organization(ORG, organization_slug=ORG_SLUG, organization_external_id=ORG_EXTERNAL_ID,
                     mfa_policy="REQUIRED_FOR_ALL", **fields)
    )


# --------------------------------------------------------------------------------------------------
# §5 order of checks for send_sms_otp: two checks fail at once, the earlier one wins
# --------------------------------------------------------------------------------------------------

SendCall = Callable[[Env], object]

STEP1_BEFORE_ORG: list[tuple[str, SendCall, str]] = [
    ("two-tokens", lambda e: e.flow.send_sms_otp(UNKNOWN_ORG, M_VERIFIED, intermediate_session_token="ist-x",
                                                 session_token="session-x"), "too_many_session_arguments"),
    ("ist-and-jwt", lambda e: e.flow.send_sms_otp(UNKNOWN_ORG, M_VERIFIED, intermediate_session_token="ist-x",
                                                  session_jwt="jwt-x"), "too_many_session_arguments"),
    ("three-tokens", lambda e: e.flow.send_sms_otp(UNKNOWN_ORG, UNKNOWN_MEMBER, intermediate_session_token="a",
                                                   session_token="b", session_jwt="c"),
     "too_many_session_arguments"),
    ("phone-not-a-string", lambda e: e.flow.send_sms_otp(UNKNOWN_ORG, M_VERIFIED, mfa_phone_number=14155550123),
     "invalid_phone_number"),
    ("phone-over-64", lambda e: e.flow.send_sms_otp(UNKNOWN_ORG, M_VERIFIED,
                                                    mfa_phone_number="+1" + "4" * 63), "invalid_phone_number"),
    ("phone-unparseable", lambda e: e.flow.send_sms_otp(UNKNOWN_ORG, M_VERIFIED, mfa_phone_number="+1abc"),
     "invalid_phone_number"),
    ("phone-bad-country-code", lambda e: e.flow.send_sms_otp(UNKNOWN_ORG, M_VERIFIED,
                                                             mfa_phone_number="+999123456"),
     "invalid_phone_number"),
    ("phone-no-plus", lambda e: e.flow.send_sms_otp(UNKNOWN_ORG, M_VERIFIED, mfa_phone_number="14155550123"),
     "invalid_phone_number"),
    ("locale-unknown", lambda e: e.flow.send_sms_otp(UNKNOWN_ORG, M_VERIFIED, locale="xx-XX"), "invalid_locale"),
    ("locale-not-a-string", lambda e: e.flow.send_sms_otp(UNKNOWN_ORG, M_VERIFIED, locale=7), "invalid_locale"),
]


@pytest.mark.parametrize(("call", "error_type"), [c[1:] for c in STEP1_BEFORE_ORG],
                         ids=[c[0] for c in STEP1_BEFORE_ORG])
def test_order_argument_shape_before_organization(call: SendCall, error_type: str) -> None:
    env = make_env()
    expect_refused(env, lambda: call(env), error_type)


def test_order_argument_shape_tokens_then_phone_then_locale() -> None:
    env = make_env()
    expect_send_refused(env, M_FRESH, "too_many_session_arguments", mfa_phone_number="+1abc", locale="xx-XX",
                        intermediate_session_token="a", session_token="b")
    expect_send_refused(env, M_FRESH, "invalid_phone_number", mfa_phone_number="+1abc", locale="xx-XX")


def test_order_parseable_but_invalid_phone_is_a_destination_check_not_argument_shape() -> None:
    # +10000000000 parses (step 1 passes); validity is step 8, so the unknown refs answer first.
    env = make_env()
    f = env.flow
    expect_refused(env, lambda: f.send_sms_otp(UNKNOWN_ORG, M_FRESH, mfa_phone_number=P_INVALID),
                   "organization_not_found")
    expect_refused(env, lambda: f.send_sms_otp(ORG, UNKNOWN_MEMBER, mfa_phone_number=P_INVALID),
                   "member_not_found")
    expect_refused(env, lambda: f.send_sms_otp(ORG, UNKNOWN_MEMBER, mfa_phone_number=P_JM), "member_not_found")


def test_order_organization_then_member_then_active_before_tokens() -> None:
    env = make_env()
    f = env.flow
    other_ist = primary_ist(env, ORG, M_FRESH2)
    expect_refused(env, lambda: f.send_sms_otp(UNKNOWN_ORG, UNKNOWN_MEMBER), "organization_not_found")
    expect_refused(env, lambda: f.send_sms_otp(ORG, UNKNOWN_MEMBER, session_jwt="not-a-jwt"), "member_not_found")
    expect_refused(env, lambda: f.send_sms_otp(ORG, UNKNOWN_MEMBER, intermediate_session_token=other_ist),
                   "member_not_found")
    # A member of another organization addressed through ORG is unknown there.
    expect_refused(env, lambda: f.send_sms_otp(ORG, M2_VERIFIED), "member_not_found")
    for kwargs in ({"session_jwt": "not-a-jwt"}, {"intermediate_session_token": other_ist},
                   {"session_token": "session-unknown"}, {"mfa_phone_number": P_INVALID},
                   {"mfa_phone_number": P_JM}):
        expect_send_refused(env, M_INVITED, "action_available_only_for_active_members", **kwargs)


def test_order_token_validity_before_ownership() -> None:
    env = make_env()
    foreign_org_ist = primary_ist(env, ORG2, M2_FRESH)
    expect_send_refused(env, M_FRESH, "invalid_intermediate_session_token_for_organization",
                        intermediate_session_token=foreign_org_ist)
    stale_ist = primary_ist(env, ORG, M_FRESH2)  # another member's IST ...
    env.clock.advance(601)  # ... that has expired: validity is judged before ownership
    expect_send_refused(env, M_FRESH, "intermediate_session_not_found", intermediate_session_token=stale_ist)


def test_order_token_before_lock() -> None:
    env = make_env(Policy(lockout_threshold=3))
    lock_member(env, ORG, M_VERIFIED)
    other_ist = primary_ist(env, ORG, M_FRESH)
    expect_send_refused(env, M_VERIFIED, "unable_to_parse_session_jwt", session_jwt="not-a-jwt")
    expect_send_refused(env, M_VERIFIED, "session_not_found", session_token="session-unknown")
    expect_send_refused(env, M_VERIFIED, "intermediate_session_not_found", intermediate_session_token="ist-unknown")
    expect_send_refused(env, M_VERIFIED, "member_session_member_id_mismatch", intermediate_session_token=other_ist)


def test_order_lock_before_restricted_methods_phone_and_token_rules() -> None:
    env = make_env(Policy(lockout_threshold=3))
    ist = lock_member(env, ORG, M_VERIFIED)
    # locked + phone mismatch, locked + no token (token rule), locked + own valid IST
    expect_send_refused(env, M_VERIFIED, "user_lock_limit_reached", mfa_phone_number=P_NEW)
    expect_send_refused(env, M_VERIFIED, "user_lock_limit_reached", mfa_phone_number=P_OTHER)
    expect_send_refused(env, M_VERIFIED, "user_lock_limit_reached")
    expect_send_refused(env, M_VERIFIED, "user_lock_limit_reached", intermediate_session_token=ist)
    # locked + the organization now restricts SMS
    restrict_org(env, **RESTRICTED_TOTP_ONLY)
    expect_send_refused(env, M_VERIFIED, "user_lock_limit_reached", intermediate_session_token=ist)


def test_order_restricted_methods_before_phone_resolution() -> None:
    env = make_env()
    restrict_org(env, **RESTRICTED_TOTP_ONLY)
    cases = [
        (M_VERIFIED, P_NEW),  # mismatch
        (M_FRESH, None),  # missing
        (M_FRESH, P_OTHER),  # duplicate in the organization
        (M_TOTP, P_NEW),  # token rule (no token, active factor)
        (M_FRESH, P_JM),  # region
    ]
    for member_id, phone in cases:
        expect_send_refused(env, member_id, "operation_restricted_by_organization_mfa_methods", mfa_phone_number=phone)


def test_order_phone_mismatch_before_duplicate_in_organization() -> None:
    env = make_env()
    # P_OTHER is linked to another member of ORG: mismatch (step 6, first) wins over duplicate.
    expect_send_refused(env, M_UNVERIFIED, "duplicate_member_phone_number_for_member", mfa_phone_number=P_OTHER)
    ist = primary_ist(env, ORG, M_VERIFIED)
    expect_send_refused(env, M_VERIFIED, "duplicate_member_phone_number_for_member", mfa_phone_number=P_OTHER,
                        intermediate_session_token=ist)


def test_order_phone_resolution_before_token_rules() -> None:
    env = make_env()
    # Active factor, no token: the phone rules answer first.
    expect_send_refused(env, M_VERIFIED, "duplicate_member_phone_number_for_member", mfa_phone_number=P_NEW)
    expect_send_refused(env, M_TOTP, "member_phone_number_not_found")
    expect_send_refused(env, M_TOTP, "duplicate_member_phone_number", mfa_phone_number=P_OTHER)
    ist = primary_ist(env, ORG, M_TOTP)
    expect_send_refused(env, M_TOTP, "duplicate_member_phone_number", mfa_phone_number=P_OTHER,
                        intermediate_session_token=ist)


def test_order_token_rules_before_destination() -> None:
    env = make_env()
    for phone in (P_JM, P_GU, P_PREMIUM, P_INVALID, "+14155550130 ext. 9"):
        expect_send_refused(env, M_TOTP, "no_associated_session_passed_in", mfa_phone_number=phone)
    ist = primary_ist(env, ORG, M_TOTP)
    for phone in (P_JM, P_PREMIUM, P_INVALID):
        expect_send_refused(env, M_TOTP, "insufficient_factors", mfa_phone_number=phone, intermediate_session_token=ist)


@pytest.mark.parametrize(
    "phone",
    [
        "+12425550123",  # not a valid number, in BS (not allowed, and unsupported)
        "+18765550123 ext. 5",  # extension, JM (not allowed)
        "+449012345678",  # GB premium rate (GB not allowed)
        "+445512345678",  # GB UAN (GB not allowed)
    ],
)
def test_order_destination_validity_and_type_before_region(phone: str) -> None:
    env = make_env()
    expect_send_refused(env, M_FRESH, "invalid_phone_number", mfa_phone_number=phone)


def test_order_destination_before_limits() -> None:
    env = make_env(Policy(send_limit_global=(1, 600)))
    f = env.flow
    f.send_sms_otp(ORG, M_UNVERIFIED)  # fills the global window
    expect_send_refused(env, M_FRESH, "invalid_phone_number_country_code", mfa_phone_number=P_JM)
    expect_send_refused(env, M_FRESH, "invalid_phone_number", mfa_phone_number=P_PREMIUM)
    expect_send_refused(env, M_FRESH, "member_phone_number_not_found")
    # ... and the limit is really full:
    expect_send_refused(env, M_FRESH, "too_many_requests", mfa_phone_number=P_NEW)


class Hook:
    def __init__(self) -> None:
        self.calls: list[Any] = []
        self.refuse = False

    def __call__(self, ctx: Any) -> None:
        self.calls.append(ctx)
        if self.refuse:
            raise MfaError("bad_request", "risk check failed")


def test_order_before_send_hooks_after_rule_checks_and_before_limits() -> None:
    hook = Hook()
    env = make_env(Policy(send_limit_per_member=(1, 600)), before_send=[hook])
    f = env.flow
    hook.refuse = True
    # Rule failures answer without consulting the hook.
    for call, error_type in [
        (lambda: f.send_sms_otp(ORG, M_FRESH, mfa_phone_number=P_JM), "invalid_phone_number_country_code"),
        (lambda: f.send_sms_otp(ORG, M_FRESH, mfa_phone_number=P_PREMIUM), "invalid_phone_number"),
        (lambda: f.send_sms_otp(ORG, M_FRESH), "member_phone_number_not_found"),
        (lambda: f.send_sms_otp(ORG, M_TOTP, mfa_phone_number=P_NEW), "no_associated_session_passed_in"),
        (lambda: f.send_sms_otp(ORG, M_VERIFIED, mfa_phone_number=P_NEW),
         "duplicate_member_phone_number_for_member"),
        (lambda: f.send_sms_otp(ORG, M_INVITED), "action_available_only_for_active_members"),
    ]:
        expect_refused(env, call, error_type)
    assert hook.calls == []
    # A hook refusal passes through, sends nothing, and is not counted against the limits.
    for _ in range(3):
        expect_send_refused(env, M_UNVERIFIED, "bad_request")
    assert len(hook.calls) == 3
    assert all(isinstance(ctx, SendContext) for ctx in hook.calls)
    hook.refuse = False
    f.send_sms_otp(ORG, M_UNVERIFIED)
    assert len(hook.calls) == 4
    assert [m.to for m in env.transport.sent] == [P_UNVERIFIED]
    # The per-member window (1) is now full: the hook still runs first, and its refusal wins.
    hook.refuse = True
    expect_send_refused(env, M_UNVERIFIED, "bad_request")
    assert len(hook.calls) == 5
    hook.refuse = False
    expect_send_refused(env, M_UNVERIFIED, "too_many_requests")
    assert len(hook.calls) == 6


# --------------------------------------------------------------------------------------------------
# §6.4 token rules (attacker side, U8)
# --------------------------------------------------------------------------------------------------


def _other_members_ist(env: Env) -> dict[str, str]:
    return {"intermediate_session_token": primary_ist(env, ORG, M_FRESH)}


def _other_members_factor_session(env: Env) -> dict[str, str]:
    return {"session_token": totp_session(env, ORG, M_TOTP2)}


@pytest.mark.parametrize(
    ("make_token", "error_type"),
    [
        (lambda env: {}, "no_associated_session_passed_in"),
        (lambda env: {"intermediate_session_token": primary_ist(env, ORG, M_TOTP)}, "insufficient_factors"),
        (_other_members_ist, "member_session_member_id_mismatch"),
        (_other_members_factor_session, "member_session_member_id_mismatch"),
    ],
    ids=["a-no-token", "b-primary-only-ist", "c-other-members-ist", "c-other-members-factor-session"],
)
def test_token_rules_linking_with_active_factor_refused_without_factor_bearing_token(
    make_token: Callable[[Env], dict[str, str]], error_type: str
) -> None:
    env = make_env()
    tokens = make_token(env)
    expect_send_refused(env, M_TOTP, error_type, mfa_phone_number=P_NEW, **tokens)
    m = env.flow.get_member(ORG, M_TOTP)
    assert m.mfa_phone_number == ""
    assert m.mfa_phone_number_verified is False
    assert [s for s in env.transport.sent if s.member_id == M_TOTP] == []
    assert "phone.linked" not in event_names(env.events)
    # The number stays free: another member can still link it.
    env.flow.send_sms_otp(ORG, M_FRESH, mfa_phone_number=P_NEW)
    assert env.flow.get_member(ORG, M_FRESH).mfa_phone_number == P_NEW


def test_token_rules_linking_with_factor_bearing_session_allowed() -> None:
    env = make_env()
    session = totp_session(env, ORG, M_TOTP)
    mark = env.mark()
    res = env.flow.send_sms_otp(ORG, M_TOTP, mfa_phone_number=P_NEW, session_token=session)
    assert res.status_code == 200
    assert res.member_id == M_TOTP
    assert res.member.mfa_phone_number == P_NEW
    assert res.member.mfa_phone_number_verified is False
    m = env.flow.get_member(ORG, M_TOTP)
    assert (m.mfa_phone_number, m.mfa_phone_number_verified) == (P_NEW, False)
    sent = env.sent_since(mark)
    assert [(s.to, s.member_id, s.organization_id) for s in sent] == [(P_NEW, M_TOTP, ORG)]
    names = event_names(env.events_since(mark))
    assert "phone.linked" in names
    assert "otp.sent" in names
    # The code authenticates with the session that asked for it and verifies the phone.
    env.flow.authenticate_sms_otp(ORG, M_TOTP, sent[0].code, session_token=session)
    assert env.flow.get_member(ORG, M_TOTP).mfa_phone_number_verified is True


def test_token_rules_step_up_session_is_not_factor_bearing_for_linking() -> None:
    env = make_env()
    session = totp_session(env, ORG, M_TOTP)
    env.clock.advance(1801)  # past inactivity_timeout: the session needs a step-up
    expect_send_refused(env, M_TOTP, "insufficient_factors", mfa_phone_number=P_NEW, session_token=session)
    assert env.flow.get_member(ORG, M_TOTP).mfa_phone_number == ""


def test_token_rules_linked_phone_with_active_factor_requires_a_token() -> None:
    env = make_env()
    f = env.flow
    expect_send_refused(env, M_VERIFIED, "no_associated_session_passed_in")
    expect_send_refused(env, M_VERIFIED, "no_associated_session_passed_in", mfa_phone_number=P_VERIFIED)
    # A primary-only IST of the member is enough: the code goes to the already-trusted phone.
    ist = primary_ist(env, ORG, M_VERIFIED)
    mark = env.mark()
    res = f.send_sms_otp(ORG, M_VERIFIED, intermediate_session_token=ist)
    assert res.status_code == 200
    assert [s.to for s in env.sent_since(mark)] == [P_VERIFIED]
    m = f.get_member(ORG, M_VERIFIED)
    assert (m.mfa_phone_number, m.mfa_phone_number_verified) == (P_VERIFIED, True)
    assert "otp.sent" in event_names(env.events_since(mark))


def test_token_rules_no_active_factor_token_optional() -> None:
    env = make_env()
    f = env.flow
    mark = env.mark()
    f.send_sms_otp(ORG, M_UNVERIFIED)  # linked but unverified: not an active factor
    f.send_sms_otp(ORG, M_FRESH, mfa_phone_number=P_NEW)  # no phone at all: linking without a token
    assert [(s.to, s.member_id) for s in env.sent_since(mark)] == [(P_UNVERIFIED, M_UNVERIFIED),
                                                                  (P_NEW, M_FRESH)]
    assert f.get_member(ORG, M_FRESH).mfa_phone_number == P_NEW
    # ... and a valid token of the member is accepted too.
    ist = primary_ist(env, ORG, M_FRESH2)
    f.send_sms_otp(ORG, M_FRESH2, mfa_phone_number=P_CA, intermediate_session_token=ist)
    assert f.get_member(ORG, M_FRESH2).mfa_phone_number == P_CA


def _unknown_ist(env: Env) -> dict[str, str]:
    return {"intermediate_session_token": "ist-that-was-never-issued"}


def _expired_ist(env: Env) -> dict[str, str]:
    ist = primary_ist(env, ORG, M_FRESH)
    env.clock.advance(601)
    return {"intermediate_session_token": ist}


def _consumed_ist(env: Env) -> dict[str, str]:
    ist = primary_ist(env, ORG, M_FRESH)
    env.flow.send_sms_otp(ORG, M_FRESH, mfa_phone_number=P_NEW, intermediate_session_token=ist)
    res = env.flow.authenticate_sms_otp(ORG, M_FRESH, env.transport.sent[-1].code,
                                        intermediate_session_token=ist)
    assert res.session_token
    env.flow.delete_mfa_phone_number(ORG, M_FRESH)  # back to no active factor: the token is optional again
    env.clock.advance(1)
    return {"intermediate_session_token": ist}


def _foreign_org_ist(env: Env) -> dict[str, str]:
    return {"intermediate_session_token": primary_ist(env, ORG2, M2_FRESH)}


def _jwt(env: Env) -> dict[str, str]:
    return {"session_jwt": "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"}


def _unknown_session(env: Env) -> dict[str, str]:
    return {"session_token": "session-that-was-never-issued"}


def _expired_session(env: Env) -> dict[str, str]:
    ist = primary_ist(env, ORG, M_FRESH)
    env.flow.send_sms_otp(ORG, M_FRESH, mfa_phone_number=P_NEW, intermediate_session_token=ist)
    res = env.flow.authenticate_sms_otp(ORG, M_FRESH, env.transport.sent[-1].code,
                                        intermediate_session_token=ist)
    env.flow.delete_mfa_phone_number(ORG, M_FRESH)
    env.clock.advance(60 * 60 + 1)
    return {"session_token": str(res.session_token)}


def _other_members_ist_no_factor(env: Env) -> dict[str, str]:
    return {"intermediate_session_token": primary_ist(env, ORG, M_FRESH2)}


@pytest.mark.parametrize(
    ("make_token", "error_type"),
    [
        (_unknown_ist, "intermediate_session_not_found"),
        (_expired_ist, "intermediate_session_not_found"),
        (_consumed_ist, "intermediate_session_not_found"),
        (_foreign_org_ist, "invalid_intermediate_session_token_for_organization"),
        (_jwt, "unable_to_parse_session_jwt"),
        (_unknown_session, "session_not_found"),
        (_expired_session, "session_not_found"),
        (_other_members_ist_no_factor, "member_session_member_id_mismatch"),
    ],
    ids=["unknown-ist", "expired-ist", "consumed-ist", "ist-of-another-org", "session-jwt", "unknown-session",
         "expired-session", "other-members-ist"],
)
def test_token_rules_passed_token_must_be_valid_even_when_optional(
    make_token: Callable[[Env], dict[str, str]], error_type: str
) -> None:
    env = make_env()
    tokens = make_token(env)
    m = env.flow.get_member(ORG, M_FRESH)
    assert m.mfa_phone_number == ""  # no active factor: a token would be optional
    expect_send_refused(env, M_FRESH, error_type, mfa_phone_number=P_NEW2, **tokens)
    # Without the bad token the same send is allowed: the token alone decided.
    env.flow.send_sms_otp(ORG, M_FRESH, mfa_phone_number=P_NEW2)
    assert env.transport.sent[-1].to == P_NEW2


# --------------------------------------------------------------------------------------------------
# §6.7 send limits
# --------------------------------------------------------------------------------------------------


def test_send_limit_per_member_sliding_window() -> None:
    env = make_env()
    f = env.flow
    for _ in range(5):  # t = 0, 100, 200, 300, 400
        f.send_sms_otp(ORG, M_UNVERIFIED)
        env.clock.advance(100)
    assert len(env.transport.sent) == 5
    # t = 500: the 6th within 600 s
    err = expect_send_refused(env, M_UNVERIFIED, "too_many_requests")
    assert err.status_code == 429
    # Other members are not affected.
    f.send_sms_otp(ORG, M_EXT)
    env.clock.advance(101)  # t = 601: the send of t = 0 left the window
    f.send_sms_otp(ORG, M_UNVERIFIED)
    env.clock.advance(1)  # t = 602: 100, 200, 300, 400, 601 are in the window (a fixed window would allow)
    expect_send_refused(env, M_UNVERIFIED, "too_many_requests")
    env.clock.advance(99)  # t = 701: the send of t = 100 left
    f.send_sms_otp(ORG, M_UNVERIFIED)
    assert sum(1 for s in env.transport.sent if s.member_id == M_UNVERIFIED) == 7


def test_send_limit_counts_automatic_sends() -> None:
    env = make_env(Policy(send_limit_per_member=(2, 600)))
    f = env.flow
    r = f.authenticate_primary(ORG, M_VERIFIED, "email_magic_link")
    assert r.mfa_required is not None
    assert r.mfa_required.secondary_auth_initiated == "sms_otp"
    ist = r.intermediate_session_token
    f.send_sms_otp(ORG, M_VERIFIED, intermediate_session_token=ist)
    assert len(env.transport.sent) == 2
    expect_send_refused(env, M_VERIFIED, "too_many_requests", intermediate_session_token=ist)
    mark = env.mark()
    r2 = f.authenticate_primary(ORG, M_VERIFIED, "email_magic_link")
    assert r2.intermediate_session_token
    assert r2.mfa_required is not None
    assert r2.mfa_required.secondary_auth_initiated is None
    assert env.sent_since(mark) == []
    assert any(e.name == "otp.refused" and e.reason == "too_many_requests" for e in env.events_since(mark))


def test_send_limit_per_phone_across_members_and_organizations() -> None:
    env = make_env(Policy(send_limit_per_member=(10, 600), send_limit_per_phone=(3, 600)))
    f = env.flow
    shared = "+14155550150"
    d = f.directory
    d.put_organization(Organization("organization-test-3", mfa_policy="OPTIONAL"))
    d.put_member(Member("member-shared-a", ORG, email_address="a@example.com", mfa_phone_number=shared))
    d.put_member(Member("member-shared-b", ORG2, email_address="b@example.org", mfa_phone_number=shared))
    d.put_member(Member("member-shared-c", "organization-test-3", email_address="c@example.net"))
    f.send_sms_otp(ORG, "member-shared-a")
    f.send_sms_otp(ORG, "member-shared-a")
    f.send_sms_otp(ORG2, "member-shared-b")
    assert [s.to for s in env.transport.sent] == [shared] * 3
    expect_send_refused(env, "member-shared-b", "too_many_requests", organization_id=ORG2)
    expect_send_refused(env, "member-shared-a", "too_many_requests")
    # Linking the same number, written differently, in a third organization: the same phone window.
    expect_send_refused(env, "member-shared-c", "too_many_requests", organization_id="organization-test-3",
                        mfa_phone_number="＋１ ４１５-５５５-０１５０")
    assert f.get_member("organization-test-3", "member-shared-c").mfa_phone_number == ""
    # Another number is unaffected.
    f.send_sms_otp(ORG, M_UNVERIFIED)
    assert env.transport.sent[-1].to == P_UNVERIFIED
    env.clock.advance(601)
    f.send_sms_otp(ORG2, "member-shared-b")
    assert env.transport.sent[-1].to == shared


def test_send_limit_per_region_when_configured() -> None:
    # Off by default: three US sends from three members pass.
    env = make_env()
    env.flow.send_sms_otp(ORG, M_UNVERIFIED)
    env.flow.send_sms_otp(ORG, M_EXT)
    env.flow.send_sms_otp(ORG, M_FRESH, mfa_phone_number=P_NEW)
    assert len(env.transport.sent) == 3

    env = make_env(Policy(send_limit_per_region=(2, 600)))
    f = env.flow
    f.directory.put_member(Member("member-ca", ORG, email_address="ca@example.com", mfa_phone_number=P_CA))
    f.send_sms_otp(ORG, M_UNVERIFIED)
    f.send_sms_otp(ORG, M_EXT)
    expect_send_refused(env, M_FRESH, "too_many_requests", mfa_phone_number=P_NEW)
    assert f.get_member(ORG, M_FRESH).mfa_phone_number == ""
    f.send_sms_otp(ORG, "member-ca")  # CA has its own window
    assert [s.to for s in env.transport.sent] == [P_UNVERIFIED, P_EXT, P_CA]


def test_send_limit_global_when_configured() -> None:
    env = make_env(Policy(send_limit_global=(2, 600)))
    f = env.flow
    f.directory.put_member(Member("member-ca", ORG, email_address="ca@example.com", mfa_phone_number=P_CA))
    f.send_sms_otp(ORG, M_UNVERIFIED)
    f.send_sms_otp(ORG2, M2_FRESH, mfa_phone_number=P_NEW)
    expect_send_refused(env, "member-ca", "too_many_requests")
    env.clock.advance(601)
    f.send_sms_otp(ORG, "member-ca")
    assert [s.to for s in env.transport.sent] == [P_UNVERIFIED, P_NEW, P_CA]


def test_send_limit_resend_cooldown() -> None:
    env = make_env(Policy(resend_cooldown=30))
    f = env.flow
    f.send_sms_otp(ORG, M_UNVERIFIED)
    env.clock.advance(29)
    expect_send_refused(env, M_UNVERIFIED, "too_many_requests")
    f.send_sms_otp(ORG, M_EXT)  # per member
    env.clock.advance(2)  # 31 s after the last admitted send
    f.send_sms_otp(ORG, M_UNVERIFIED)
    assert [s.to for s in env.transport.sent] == [P_UNVERIFIED, P_EXT, P_UNVERIFIED]
    # The cooldown is on by default only in hardened().
    env = make_env()
    env.flow.send_sms_otp(ORG, M_UNVERIFIED)
    env.flow.send_sms_otp(ORG, M_UNVERIFIED)
    assert len(env.transport.sent) == 2
    env = make_env(Policy.hardened())
    env.flow.send_sms_otp(ORG, M_UNVERIFIED)
    expect_send_refused(env, M_UNVERIFIED, "too_many_requests")


def test_send_limit_failed_deliveries_still_count() -> None:
    env = make_env(Policy(send_limit_per_member=(3, 600)))
    f = env.flow
    env.transport.fail_next("rejected")
    expect_error(lambda: f.send_sms_otp(ORG, M_UNVERIFIED), "downstream_carrier_error")
    env.transport.fail_next("unknown")
    expect_error(lambda: f.send_sms_otp(ORG, M_UNVERIFIED), "downstream_carrier_error")
    f.send_sms_otp(ORG, M_UNVERIFIED)
    assert len(env.transport.sent) == 2  # the rejected message is not recorded
    expect_send_refused(env, M_UNVERIFIED, "too_many_requests")


class ProbeGateway:
    """An SMS gateway that, while delivering, asks the flow (from another thread) what it has committed."""

    def __init__(self) -> None:
        self.delivered: list[Any] = []
        self.probe: Callable[[], object] | None = None
        self.probe_results: list[object] = []

    def deliver(self, message: Any) -> None:
        if self.probe is not None:
            probe, self.probe = self.probe, None
            box: list[object] = []

            def run() -> None:
                try:
                    box.append(probe())
                except MfaError as exc:
                    box.append(exc.error_type)

            t = threading.Thread(target=run, daemon=True)
            t.start()
            t.join(5)
            self.probe_results.append(box[0] if box else "blocked during delivery")
        self.delivered.append(message)


def test_send_limit_counted_before_the_transport() -> None:
    gateway = ProbeGateway()
    env = make_env(Policy(send_limit_per_member=(1, 600)), transport=gateway)
    f = env.flow

    def probe() -> object:
        linked = f.get_member(ORG, M_FRESH).mfa_phone_number
        try:
            f.send_sms_otp(ORG, M_FRESH)
        except MfaError as exc:
            return (linked, exc.error_type)
        return (linked, "admitted")

    gateway.probe = probe
    f.send_sms_otp(ORG, M_FRESH, mfa_phone_number=P_NEW)
    # While the first message was in the transport, the admission (count + link) was already committed.
    assert gateway.probe_results == [(P_NEW, "too_many_requests")]
    assert len(gateway.delivered) == 1


# --------------------------------------------------------------------------------------------------
# §6.11 delivery outcomes
# --------------------------------------------------------------------------------------------------


def test_delivery_rejected_leaves_no_live_code_and_counts() -> None:
    env = make_env(Policy(send_limit_per_member=(3, 600)))
    f = env.flow
    ist = primary_ist(env, ORG, M_VERIFIED)  # automatic send: code 1
    assert len(env.transport.sent) == 1
    first_code = env.transport.sent[0].code
    env.transport.fail_next("rejected")
    mark = env.mark()
    err = expect_error(lambda: f.send_sms_otp(ORG, M_VERIFIED, intermediate_session_token=ist),
                       "downstream_carrier_error")
    assert err.status_code == 502
    assert env.sent_since(mark) == []
    assert "delivery.failed" in event_names(env.events_since(mark))
    # The previous code stays superseded and the new one was discarded: no live code at all.
    for code in (first_code, wrong(first_code)):
        expect_error(lambda c=code: f.authenticate_sms_otp(ORG, M_VERIFIED, c,
                                                           intermediate_session_token=ist),
                     "unable_to_auth_otp_code")
    m = f.get_member(ORG, M_VERIFIED)
    assert (m.mfa_phone_number, m.mfa_phone_number_verified, m.is_locked) == (P_VERIFIED, True, False)
    # Admission counted: automatic (1) + rejected (2) + this one (3) fill the window.
    f.send_sms_otp(ORG, M_VERIFIED, intermediate_session_token=ist)
    third_code = env.transport.sent[-1].code
    expect_send_refused(env, M_VERIFIED, "too_many_requests", intermediate_session_token=ist)
    res = f.authenticate_sms_otp(ORG, M_VERIFIED, third_code, intermediate_session_token=ist)
    assert res.session_token


def test_delivery_unknown_keeps_the_code_live() -> None:
    env = make_env(Policy(send_limit_per_member=(2, 600)))
    f = env.flow
    ist = primary_ist(env, ORG, M_VERIFIED)
    first_code = env.transport.sent[-1].code
    env.transport.fail_next("unknown")
    mark = env.mark()
    expect_error(lambda: f.send_sms_otp(ORG, M_VERIFIED, intermediate_session_token=ist),
                 "downstream_carrier_error")
    sent = env.sent_since(mark)
    assert [s.to for s in sent] == [P_VERIFIED]  # recorded: it may have been delivered
    assert "delivery.failed" in event_names(env.events_since(mark))
    live = sent[0].code
    if first_code != live:  # the automatic code was superseded by the admitted send
        expect_error(lambda: f.authenticate_sms_otp(ORG, M_VERIFIED, first_code,
                                                    intermediate_session_token=ist), "otp_code_not_found")
    # Admission counted (2 of 2).
    expect_send_refused(env, M_VERIFIED, "too_many_requests", intermediate_session_token=ist)
    res = f.authenticate_sms_otp(ORG, M_VERIFIED, live, intermediate_session_token=ist)
    assert res.session_token
    assert "otp.verified" in event_names(env.events)


# --------------------------------------------------------------------------------------------------
# Organization methods, member status, references, locale
# --------------------------------------------------------------------------------------------------


def test_restricted_organization_methods_refuse_sms_except_breakglass() -> None:
    env = make_env()
    f = env.flow
    restrict_org(env, **RESTRICTED_TOTP_ONLY)
    for member_id, kwargs in [(M_UNVERIFIED, {}), (M_FRESH, {"mfa_phone_number": P_NEW}), (M_EXT, {})]:
        err = expect_send_refused(env, member_id, "operation_restricted_by_organization_mfa_methods", **kwargs)
        assert err.status_code == 400
    assert f.get_member(ORG, M_FRESH).mfa_phone_number == ""
    # Breakglass members are exempt.
    res = f.send_sms_otp(ORG, M_BREAKGLASS)
    assert res.member_id == M_BREAKGLASS
    assert [s.to for s in env.transport.sent] == [P_BREAKGLASS]
    # A restriction that includes sms_otp allows it.
    restrict_org(env, mfa_methods="RESTRICTED", allowed_mfa_methods=("sms_otp", "totp"))
    f.send_sms_otp(ORG, M_UNVERIFIED)
    assert env.transport.sent[-1].to == P_UNVERIFIED


@pytest.mark.parametrize("status", ["invited", "pending", "deleted"])
def test_inactive_member_refused(status: str) -> None:
    env = make_env()
    f = env.flow
    f.directory.put_member(Member("member-inactive", ORG, email_address="x@example.com", status=status,
                                  mfa_phone_number="+14155550160"))
    err = expect_send_refused(env, "member-inactive", "action_available_only_for_active_members")
    assert err.status_code == 400
    expect_send_refused(env, M_INVITED, "action_available_only_for_active_members")


def test_unknown_organization_and_member_refused() -> None:
    env = make_env()
    f = env.flow
    err = expect_refused(env, lambda: f.send_sms_otp(UNKNOWN_ORG, M_UNVERIFIED), "organization_not_found")
    assert err.status_code == 404
    err = expect_refused(env, lambda: f.send_sms_otp(ORG, UNKNOWN_MEMBER, mfa_phone_number=P_NEW),
                         "member_not_found")
    assert err.status_code == 404
    expect_refused(env, lambda: f.send_sms_otp(ORG2, M_UNVERIFIED), "member_not_found")
    assert env.transport.sent == []


@pytest.mark.parametrize("org_ref", [ORG, ORG_SLUG, ORG_EXTERNAL_ID])
@pytest.mark.parametrize("member_ref", [M_EXT, M_EXT_REF])
def test_references_by_slug_external_id_accepted(org_ref: str, member_ref: str) -> None:
    env = make_env()
    res = env.flow.send_sms_otp(org_ref, member_ref)
    assert res.status_code == 200
    assert res.member_id == M_EXT
    assert res.member.member_id == M_EXT
    assert res.organization.organization_id == ORG
    assert [(s.to, s.organization_id, s.member_id) for s in env.transport.sent] == [(P_EXT, ORG, M_EXT)]
    sent_events = [e for e in env.events if e.name == "otp.sent"]
    assert [(e.organization_id, e.member_id) for e in sent_events] == [(ORG, M_EXT)]


@pytest.mark.parametrize("locale", ["xx", "klingon", "en_US_POSIX_x", "e n", 42])
def test_invalid_locale_refused(locale: object) -> None:
    env = make_env()
    err = expect_send_refused(env, M_UNVERIFIED, "invalid_locale", locale=locale)
    assert err.status_code == 400


class ReprRaises:
    def __repr__(self) -> str:
        raise RuntimeError("repr")


def test_invalid_locale_of_another_type_is_named_by_its_type_never_repr() -> None:
    env = make_env()
    err = expect_send_refused(env, M_UNVERIFIED, "invalid_locale", locale=ReprRaises())
    assert "must be a string, not ReprRaises" in err.error_message


@pytest.mark.parametrize("locale", ["en", "es", "fr", "pt-br"])
def test_valid_locale_reaches_the_transport(locale: str) -> None:
    env = make_env()
    env.flow.send_sms_otp(ORG, M_UNVERIFIED, locale=locale)
    assert [s.to for s in env.transport.sent] == [P_UNVERIFIED]
    assert str(env.transport.sent[0].locale).lower() == locale.lower()


# --------------------------------------------------------------------------------------------------
# §4 uniform refusals (Policy.hardened())
# --------------------------------------------------------------------------------------------------


def _send_with_another_members_ist(env: Env) -> Callable[[], object]:
    ist = primary_ist(env, ORG, M_FRESH)
    return lambda: env.flow.send_sms_otp(ORG, M_UNVERIFIED, intermediate_session_token=ist)


def _send_with_another_organizations_ist(env: Env) -> Callable[[], object]:
    ist = primary_ist(env, ORG2, M2_FRESH)
    return lambda: env.flow.send_sms_otp(ORG, M_UNVERIFIED, intermediate_session_token=ist)


def _uniform_cases() -> list[tuple[str, Callable[[Env], Callable[[], object]], str]]:
    return [
        ("member-not-found", lambda e: lambda: e.flow.send_sms_otp(ORG, UNKNOWN_MEMBER, mfa_phone_number=P_NEW),
         "member_not_found"),
        ("inactive", lambda e: lambda: e.flow.send_sms_otp(ORG, M_INVITED),
         "action_available_only_for_active_members"),
        ("phone-not-found", lambda e: lambda: e.flow.send_sms_otp(ORG, M_FRESH), "member_phone_number_not_found"),
        ("phone-mismatch", lambda e: lambda: e.flow.send_sms_otp(ORG, M_UNVERIFIED, mfa_phone_number=P_NEW),
         "duplicate_member_phone_number_for_member"),
        ("phone-of-another-member", lambda e: lambda: e.flow.send_sms_otp(ORG, M_FRESH, mfa_phone_number=P_OTHER),
         "duplicate_member_phone_number"),
        ("token-of-another-member",
         _send_with_another_members_ist,
         "member_session_member_id_mismatch"),
        ("ist-of-another-organization",
         _send_with_another_organizations_ist,
         "invalid_intermediate_session_token_for_organization"),
    ]


@pytest.mark.parametrize(("prepare", "precise"), [c[1:] for c in _uniform_cases()],
                         ids=[c[0] for c in _uniform_cases()])
def test_uniform_refusals_report_bad_request_with_precise_reason_in_event(
    prepare: Callable[[Env], Callable[[], object]], precise: str
) -> None:
    env = make_env(Policy.hardened())
    call = prepare(env)
    err = expect_refused(env, call, "bad_request", reason=precise)
    assert err.status_code == 400
    assert precise not in str(err)
    assert precise not in repr(err)
    assert precise not in err.error_message
    assert precise not in str(err.to_dict())
    # Without the switch the same call answers precisely.
    env = make_env(Policy())
    expect_refused(env, prepare(env), precise)


def test_uniform_refusals_are_indistinguishable() -> None:
    bodies = []
    for _, prepare, _precise in _uniform_cases():
        env = make_env(Policy.hardened())
        err = expect_error(prepare(env), "bad_request")
        bodies.append((type(err), err.to_dict()))
    # ... and the same body on every endpoint: authenticate, primary auth and record_mfa_factor too.
    for endpoint, member_id, tokens, _precise in UNIFORM_OTHER_ENDPOINTS:
        env = make_env(Policy.hardened())
        err = expect_error(_endpoint_call(env, endpoint, member_id, tokens(env)), "bad_request")
        bodies.append((type(err), err.to_dict()))
    assert len({(cls, tuple(sorted(body.items()))) for cls, body in bodies}) == 1, bodies


# The other endpoints that resolve a member or take a token (§4: the switch is not send-only). Each case is
# (endpoint, member addressed, the caller's tokens, the precise reason that only the refusal event may carry).
TokenMaker = Callable[[Env], dict[str, str]]


def _no_token(env: Env) -> dict[str, str]:
    return {}


def _attackers_ist(env: Env) -> dict[str, str]:
    """The attacker's own login (a member of ORG without any factor)."""
    return {"intermediate_session_token": primary_ist(env, ORG, M_FRESH)}


def _attackers_session(env: Env) -> dict[str, str]:
    """The attacker's own fully authenticated session (another member of ORG)."""
    return {"session_token": totp_session(env, ORG, M_TOTP2)}


def _other_organizations_ist(env: Env) -> dict[str, str]:
    return {"intermediate_session_token": primary_ist(env, ORG2, M2_FRESH)}


def _other_organizations_session(env: Env) -> dict[str, str]:
    return {"session_token": totp_session(env, ORG2, M2_FRESH)}


REFUSAL_EVENT = {"authenticate_sms_otp": "otp.failed", "authenticate_primary": "otp.refused",
                 "record_mfa_factor": "otp.refused"}
MISMATCH = "member_session_member_id_mismatch"
FOREIGN_ORG = "invalid_intermediate_session_token_for_organization"


def _token_endpoint_cases(endpoint: str, victim: str) -> list[tuple[str, str, TokenMaker, str]]:
    return [
        (endpoint, UNKNOWN_MEMBER, _attackers_ist, "member_not_found"),
        (endpoint, M_INVITED, _attackers_ist, "action_available_only_for_active_members"),
        (endpoint, victim, _attackers_ist, MISMATCH),
        (endpoint, victim, _attackers_session, MISMATCH),
        (endpoint, victim, _other_organizations_ist, FOREIGN_ORG),
        (endpoint, victim, _other_organizations_session, MISMATCH),
    ]


UNIFORM_OTHER_ENDPOINTS: list[tuple[str, str, TokenMaker, str]] = [
    *_token_endpoint_cases("authenticate_sms_otp", M_VERIFIED),
    *_token_endpoint_cases("record_mfa_factor", M_TOTP),
    ("authenticate_primary", UNKNOWN_MEMBER, _no_token, "member_not_found"),
    ("authenticate_primary", M_INVITED, _no_token, "action_available_only_for_active_members"),
    ("authenticate_primary", M_VERIFIED, _attackers_session, MISMATCH),
    ("authenticate_primary", M_VERIFIED, _other_organizations_session, MISMATCH),
]


def _endpoint_call(env: Env, endpoint: str, member_id: str, tokens: dict[str, str]) -> Callable[[], object]:
    f = env.flow
    if endpoint == "authenticate_sms_otp":
        return lambda: f.authenticate_sms_otp(ORG, member_id, "123456", **tokens)
    if endpoint == "record_mfa_factor":
        return lambda: f.record_mfa_factor(ORG, member_id, "totp", **tokens)
    assert endpoint == "authenticate_primary"
    return lambda: f.authenticate_primary(ORG, member_id, "email_magic_link", **tokens)


def _case_id(case: tuple[str, str, TokenMaker, str]) -> str:
    endpoint, member_id, tokens, precise = case
    return f"{endpoint}-{member_id}-{tokens.__name__.strip('_')}-{precise}"


@pytest.mark.parametrize(("endpoint", "member_id", "tokens", "precise"), UNIFORM_OTHER_ENDPOINTS,
                         ids=[_case_id(c) for c in UNIFORM_OTHER_ENDPOINTS])
def test_uniform_refusals_on_the_other_endpoints_report_bad_request_with_precise_reason_in_event(
    endpoint: str, member_id: str, tokens: TokenMaker, precise: str
) -> None:
    env = make_env(Policy.hardened())
    call = _endpoint_call(env, endpoint, member_id, tokens(env))
    snapshot = env.flow.get_member(ORG, member_id) if member_id != UNKNOWN_MEMBER else None
    mark = env.mark()
    err = expect_error(call, "bad_request")
    assert err.status_code == 400
    for text in (str(err), repr(err), err.error_message, str(err.to_dict())):
        assert precise not in text
    # The precise reason is in the refusal event, and only there; nothing was sent or changed. A member_id that
    # named no member is not repeated (it may be anything: a token in the wrong field).
    shown_member = "" if member_id == UNKNOWN_MEMBER else member_id
    assert [(e.name, e.reason, e.organization_id, e.member_id) for e in env.events_since(mark)] == [
        (REFUSAL_EVENT[endpoint], precise, ORG, shown_member)]
    assert env.sent_since(mark) == []
    if snapshot is not None:
        assert env.flow.get_member(ORG, member_id) == snapshot
    # The body is the send's uniform refusal, to the byte.
    env_send = make_env(Policy.hardened())
    send_err = expect_error(lambda: env_send.flow.send_sms_otp(ORG, UNKNOWN_MEMBER), "bad_request")
    assert (type(err), err.to_dict()) == (type(send_err), send_err.to_dict())
    # Without the switch the same call answers precisely.
    env = make_env(Policy())
    expect_error(_endpoint_call(env, endpoint, member_id, tokens(env)), precise)


def test_uniform_refusals_on_authenticate_are_not_counted_against_the_victim() -> None:
    """An attacker holding the victim's current code but only their own IST gets bad_request every time; the
    victim's failure counter does not move, and the victim's own login still redeems the code."""
    env = make_env(Policy.hardened())
    f = env.flow
    victim_ist = primary_ist(env, ORG, M_VERIFIED)  # the automatic send
    code = env.transport.sent[-1].code
    attacker = primary_ist(env, ORG, M_FRESH)
    mark = env.mark()
    for submitted in [code, wrong(code)] * f.policy.lockout_threshold:
        expect_error(lambda c=submitted: f.authenticate_sms_otp(ORG, M_VERIFIED, c,
                                                                intermediate_session_token=attacker),
                     "bad_request")
    assert {(e.name, e.reason) for e in env.events_since(mark)} == {("otp.failed", MISMATCH)}
    assert f.get_member(ORG, M_VERIFIED).is_locked is False
    res = f.authenticate_sms_otp(ORG, M_VERIFIED, code, intermediate_session_token=victim_ist)
    assert res.session_token
    assert res.member_id == M_VERIFIED


def test_uniform_refusals_keep_other_errors_precise() -> None:
    env = make_env(Policy.hardened())
    f = env.flow
    expect_send_refused(env, M_FRESH, "invalid_phone_number_country_code", mfa_phone_number=P_JM)
    expect_send_refused(env, M_FRESH, "invalid_phone_number", mfa_phone_number=P_PREMIUM)
    expect_send_refused(env, M_UNVERIFIED, "invalid_locale", locale="xx")
    expect_send_refused(env, M_TOTP, "no_associated_session_passed_in", mfa_phone_number=P_NEW)
    # Unknown organization is not in the uniform list (§4).
    expect_refused(env, lambda: f.send_sms_otp(UNKNOWN_ORG, M_FRESH), "organization_not_found")
    # And a legitimate send still works under hardened().
    f.send_sms_otp(ORG, M_UNVERIFIED)
    assert [s.to for s in env.transport.sent] == [P_UNVERIFIED]


def test_duplicate_member_phone_number_when_the_holder_verified_a_directory_number() -> None:
    """Found by the stateful test: verifying a directory-linked number must not free it for others."""
    from mfa_flow import Member, MfaError, MfaFlow, Organization, Policy
    from mfa_flow.testing import FakeClock, FakeTransport

    transport = FakeTransport()
    flow = MfaFlow(clock=FakeClock(), transport=transport, policy=Policy())
    flow.directory.put_organization(Organization("o", mfa_policy="REQUIRED_FOR_ALL"))
    flow.directory.put_member(Member("a", "o"))
    flow.directory.put_member(Member("b", "o", mfa_phone_number="+14155550101"))
    ist = flow.authenticate_primary("o", "b", "email_magic_link").intermediate_session_token
    flow.authenticate_sms_otp("o", "b", transport.sent[-1].code, intermediate_session_token=ist)
    assert flow.get_member("o", "b").mfa_phone_number_verified
    sent = len(transport.sent)
    with pytest.raises(MfaError) as caught:
        flow.send_sms_otp("o", "a", mfa_phone_number="+14155550101")
    assert caught.value.error_type == "duplicate_member_phone_number"
    assert len(transport.sent) == sent
    assert flow.get_member("o", "a").mfa_phone_number == ""


def test_refusal_event_names_the_member_only_once_the_references_resolved() -> None:
    """A refusal raised before the organization and member resolved (malformed arguments, an unknown
    organization or member) repeats no reference the caller passed in its event: the caller may have put
    anything there, a token in the wrong field included. The organization's id shows once it resolved (an
    unknown member), both references once the member did."""
    env = make_env(Policy())
    ist = env.flow.authenticate_primary(ORG, M_FRESH, "discovery").intermediate_session_token
    cases = [
        (lambda: env.flow.send_sms_otp(ORG, ist), "member_not_found", (ORG, "")),
        (lambda: env.flow.send_sms_otp(ORG_SLUG, ist), "member_not_found", (ORG, "")),
        (lambda: env.flow.send_sms_otp(ist, M_FRESH), "organization_not_found", ("", "")),
        (lambda: env.flow.send_sms_otp(ist, M_FRESH, mfa_phone_number="not a number"), "invalid_phone_number",
         ("", "")),
        (lambda: env.flow.send_sms_otp(ORG, M_INVITED), "action_available_only_for_active_members",
         (ORG, M_INVITED)),
        (lambda: env.flow.send_sms_otp(ORG, M_FRESH), "member_phone_number_not_found", (ORG, M_FRESH)),
    ]
    for call, error_type, refs in cases:
        mark = env.mark()
        expect_error(call, error_type)
        refused = [e for e in env.events_since(mark) if e.name == "otp.refused"]
        assert [(e.organization_id, e.member_id, e.reason) for e in refused] == [(*refs, error_type)]
