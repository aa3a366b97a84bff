"""Rules of authenticate_primary (§5 order, §6.8 automatic send) and record_mfa_factor (§1)."""

from __future__ import annotations

from typing import Any

import pytest

from mfa_flow import Event, MfaError, MfaFlow
from mfa_flow.testing import FakeClock, FakeTransport
from tests.helpers_rules import (
    MASKED,
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
    factor_kinds,
    names,
    refusals,
    sms_session,
    wrong,
)


def lock(mfa: MfaFlow, transport: FakeTransport, member: str = MEMBER) -> None:
    """Lock ``member`` on a flow built with lockout_threshold=1."""
    r = mfa.authenticate_primary(ORG, member, "email_magic_link")
    e = err(mfa.authenticate_sms_otp, ORG, member, wrong(transport.sent[-1].code),
            intermediate_session_token=r.intermediate_session_token)
    assert e.error_type == "user_lock_limit_reached"
    assert mfa.get_member(ORG, member).is_locked is True


def assert_ist_without_send(r: Any) -> None:
    assert r.member_authenticated is False
    assert r.intermediate_session_token
    assert r.session_token == ""
    assert r.member_session is None
    assert r.mfa_required is not None
    assert r.mfa_required.secondary_auth_initiated is None


# --------------------------------------------------------------------------- §6.8 automatic send


@pytest.mark.parametrize(
    ("mfa_policy", "enrolled"), [("REQUIRED_FOR_ALL", False), ("REQUIRED_FOR_ALL", True), ("OPTIONAL", True)]
)
def test_automatic_send_when_mfa_owed(
    flow: FlowFactory, setup_member: Setup, transport: FakeTransport, clock: FakeClock, events: list[Event],
    mfa_policy: str, enrolled: bool,
) -> None:
    mfa = flow()
    setup_member(mfa, mfa_enrolled=enrolled, org={"mfa_policy": mfa_policy})
    r = mfa.authenticate_primary(ORG, MEMBER, "email_magic_link")
    assert r.member_id == MEMBER
    assert r.organization_id == ORG
    assert r.member_authenticated is False
    assert r.intermediate_session_token
    assert r.session_token == ""
    assert r.session_jwt == ""
    assert r.member_session is None
    assert r.mfa_required is not None
    assert r.mfa_required.secondary_auth_initiated == "sms_otp"
    assert r.mfa_required.member_options.mfa_phone_number == MASKED
    assert r.mfa_required.member_options.totp_registration_id == ""
    assert r.member.member_id == MEMBER
    assert r.organization.organization_id == ORG
    assert len(transport.sent) == 1
    msg = transport.sent[0]
    assert (msg.to, msg.member_id, msg.organization_id) == (PHONE, MEMBER, ORG)
    assert len(msg.code) == 6
    assert msg.code.isascii()
    assert msg.code.isdigit()
    sent = [e for e in events if e.name == "otp.sent"]
    assert len(sent) == 1
    assert (sent[0].member_id, sent[0].phone, sent[0].at) == (MEMBER, MASKED, clock.now())
    assert "session.created" not in names(events)
    # the code is live and bound to this IST
    res = mfa.authenticate_sms_otp(ORG, MEMBER, msg.code, intermediate_session_token=r.intermediate_session_token)
    assert res.session_token


def test_automatic_send_passes_locale(
    member_flow: FlowFactory, transport: FakeTransport
) -> None:
    mfa = member_flow()
    mfa.authenticate_primary(ORG, MEMBER, "email_magic_link", locale="es")
    assert len(transport.sent) == 1
    assert transport.sent[0].locale == "es"


@pytest.mark.parametrize(
    ("member_fields", "org_fields", "sends"),
    [
        pytest.param({"mfa_phone_number_verified": True}, {}, True, id="verified-phone"),
        pytest.param({"mfa_phone_number_verified": False}, {}, True, id="unverified-phone"),
        pytest.param({}, {"mfa_methods": "RESTRICTED", "allowed_mfa_methods": ("sms_otp",)}, True,
                     id="restricted-allows-sms"),
        pytest.param({}, {"mfa_methods": "RESTRICTED", "allowed_mfa_methods": ("sms_otp", "totp")}, True,
                     id="restricted-allows-sms-and-totp"),
        pytest.param({}, {"mfa_methods": "RESTRICTED", "allowed_mfa_methods": ("totp",)}, False,
                     id="restricted-totp-only"),
        pytest.param({"is_breakglass": True}, {"mfa_methods": "RESTRICTED", "allowed_mfa_methods": ("totp",)},
                     True, id="restricted-but-breakglass"),
        pytest.param({"default_mfa_method": ""}, {}, True, id="default-empty"),
        pytest.param({"default_mfa_method": "sms_otp"}, {}, True, id="default-sms"),
        pytest.param({"default_mfa_method": "totp", "totp_registration_id": TOTP}, {}, False, id="default-totp"),
        pytest.param({"mfa_phone_number": "", "mfa_phone_number_verified": False,
                      "totp_registration_id": TOTP}, {}, False, id="no-phone"),
        pytest.param({"mfa_phone_number": "", "mfa_phone_number_verified": False}, {}, False,
                     id="no-factor-at-all"),
    ],
)
def test_automatic_send_sms_conditions(
    flow: FlowFactory, setup_member: Setup, transport: FakeTransport, events: list[Event],
    member_fields: dict[str, Any], org_fields: dict[str, Any], sends: bool,
) -> None:
    mfa = flow()
    setup_member(mfa, org=org_fields, **member_fields)
    r = mfa.authenticate_primary(ORG, MEMBER, "email_magic_link")
    assert r.member_authenticated is False
    assert r.intermediate_session_token
    assert r.session_token == ""
    assert r.member_session is None
    assert r.mfa_required is not None
    phone = member_fields.get("mfa_phone_number", PHONE)
    assert r.mfa_required.member_options.mfa_phone_number == (MASKED if phone else "")
    assert r.mfa_required.member_options.totp_registration_id == member_fields.get("totp_registration_id", "")
    if sends:
        assert r.mfa_required.secondary_auth_initiated == "sms_otp"
        assert [m.to for m in transport.sent] == [PHONE]
        assert "otp.sent" in names(events)
    else:
        assert r.mfa_required.secondary_auth_initiated is None
        assert transport.sent == []
        assert "otp.sent" not in names(events)


@pytest.mark.parametrize("owed", [True, False])
def test_discovery_issues_ist_and_never_sends(
    flow: FlowFactory, setup_member: Setup, transport: FakeTransport, events: list[Event], owed: bool
) -> None:
    mfa = flow()
    setup_member(mfa, org={"mfa_policy": "REQUIRED_FOR_ALL" if owed else "OPTIONAL"})
    r = mfa.authenticate_primary(ORG, MEMBER, "discovery")
    assert r.member_authenticated is False
    assert r.intermediate_session_token
    assert r.session_token == ""
    assert r.member_session is None
    assert transport.sent == []
    assert "otp.sent" not in names(events)
    assert "session.created" not in names(events)
    if owed:
        assert r.mfa_required is not None
        assert r.mfa_required.secondary_auth_initiated is None
        assert r.mfa_required.member_options.mfa_phone_number == MASKED
    else:
        assert r.mfa_required is None
    # the discovery IST carries (magic_link, email)
    ist = r.intermediate_session_token
    mfa.send_sms_otp(ORG, MEMBER, intermediate_session_token=ist)
    res = mfa.authenticate_sms_otp(ORG, MEMBER, transport.sent[-1].code, intermediate_session_token=ist)
    assert res.member_session is not None
    assert factor_kinds(res.member_session) == [
        ("magic_link", "email"), ("otp", "sms")]


@pytest.mark.parametrize(
    ("method", "factor"),
    [
        ("email_magic_link", ("magic_link", "email")),
        ("sso", ("sso", "sso_saml")),
        ("oauth", ("oauth", "oauth_google")),
        ("password", ("password", "knowledge")),
        ("email_otp", ("email_otp", "email")),
    ],
)
def test_mfa_not_owed_issues_session_at_once(
    flow: FlowFactory, setup_member: Setup, transport: FakeTransport, clock: FakeClock, events: list[Event],
    method: str, factor: tuple[str, str],
) -> None:
    mfa = flow()
    setup_member(mfa, mfa_enrolled=False, org={"mfa_policy": "OPTIONAL"})
    r = mfa.authenticate_primary(ORG, MEMBER, method)
    assert r.member_authenticated is True
    assert r.intermediate_session_token == ""
    assert r.session_token
    assert r.session_jwt == ""
    assert r.mfa_required is None
    s = r.member_session
    assert s is not None
    assert factor_kinds(s) == [factor]
    assert s.authentication_factors[0].last_authenticated_at == at(clock.now())
    assert (s.member_id, s.organization_id, s.organization_slug) == (MEMBER, ORG, "acme")
    assert s.started_at == at(clock.now())
    assert s.last_accessed_at == at(clock.now())
    assert s.expires_at == at(clock.now() + 3600)
    assert transport.sent == []
    assert "session.created" in names(events)
    check = mfa.authenticate_session(session_token=r.session_token)
    assert check.step_up_required is False


@pytest.mark.parametrize("method", ["foo", "", "EMAIL_MAGIC_LINK", "magic_link", "email-magic-link"])
def test_unknown_primary_method_is_bad_request(
    member_flow: FlowFactory, transport: FakeTransport, events: list[Event], method: str
) -> None:
    mfa = member_flow()
    e = err(mfa.authenticate_primary, ORG, MEMBER, method)
    assert (e.error_type, e.status_code) == ("bad_request", 400)
    assert transport.sent == []
    assert "otp.sent" not in names(events)
    assert "session.created" not in names(events)


class Hostile:
    """A method argument whose str() and repr() raise: it must still come back as bad_request."""

    def __str__(self) -> str:
        raise RuntimeError("str")

    def __repr__(self) -> str:
        raise RuntimeError("repr")


@pytest.mark.parametrize("method", [None, 7, ["email_magic_link"], b"email_magic_link", Hostile()],
                         ids=["none", "int", "list", "bytes", "hostile"])
def test_non_string_primary_method_is_bad_request_naming_its_type(
    member_flow: FlowFactory, transport: FakeTransport, method: object
) -> None:
    mfa = member_flow()
    e = err(mfa.authenticate_primary, ORG, MEMBER, method)
    assert (e.error_type, e.status_code) == ("bad_request", 400)
    assert f"of type {type(method).__name__}, not a string" in e.error_message
    assert transport.sent == []


@pytest.mark.parametrize(
    "policy", [{"send_limit_per_member": (1, 600)}, {"send_limit_per_phone": (1, 600)}, {"resend_cooldown": 30}]
)
def test_automatic_send_refused_by_limits_still_returns_ist(
    member_flow: FlowFactory, transport: FakeTransport, events: list[Event],
    policy: dict[str, Any],
) -> None:
    mfa = member_flow(**policy)
    r1 = mfa.authenticate_primary(ORG, MEMBER, "email_magic_link")
    code = transport.sent[-1].code
    mark = len(events)
    r2 = mfa.authenticate_primary(ORG, MEMBER, "email_magic_link")
    assert_ist_without_send(r2)
    assert r2.intermediate_session_token != r1.intermediate_session_token
    assert len(transport.sent) == 1
    refused = [(e.reason, e.member_id) for e in events[mark:] if e.name == "otp.refused"]
    assert refused == [("too_many_requests", MEMBER)]
    assert "otp.sent" not in names(events[mark:])
    # the refused send changed nothing: the first code is still live and bound to the first IST
    res = mfa.authenticate_sms_otp(ORG, MEMBER, code, intermediate_session_token=r1.intermediate_session_token)
    assert res.session_token


@pytest.mark.parametrize(
    ("phone", "reason"),
    [
        ("+18765550123", "invalid_phone_number_country_code"),  # JM
        ("+16715550123", "invalid_phone_number_country_code"),  # GU
        ("+19005550123", "invalid_phone_number"),  # premium rate
        ("+18005550123", "invalid_phone_number"),  # toll free
    ],
)
def test_automatic_send_refused_by_destination_still_returns_ist(
    flow: FlowFactory, setup_member: Setup, transport: FakeTransport, events: list[Event], phone: str, reason: str
) -> None:
    hook_calls: list[object] = []
    mfa = flow(before_send=[hook_calls.append])
    setup_member(mfa, mfa_phone_number=phone)
    r = mfa.authenticate_primary(ORG, MEMBER, "email_magic_link")
    assert_ist_without_send(r)
    assert transport.sent == []
    assert refusals(events) == [reason]
    assert hook_calls == []  # hooks run after the destination checks


def test_automatic_send_refused_by_before_send_hook_still_returns_ist(
    member_flow: FlowFactory, transport: FakeTransport, events: list[Event]
) -> None:
    contexts: list[object] = []

    def captcha(ctx: object) -> None:
        contexts.append(ctx)
        raise MfaError("bad_request", "captcha required")

    mfa = member_flow(before_send=[captcha])
    r = mfa.authenticate_primary(ORG, MEMBER, "email_magic_link")
    assert_ist_without_send(r)
    assert len(contexts) == 1
    assert transport.sent == []
    assert refusals(events) == ["bad_request"]
    assert "otp.sent" not in names(events)


def test_automatic_send_allowed_by_before_send_hook(
    member_flow: FlowFactory, transport: FakeTransport, events: list[Event]
) -> None:
    contexts: list[object] = []
    mfa = member_flow(before_send=[contexts.append])
    r = mfa.authenticate_primary(ORG, MEMBER, "email_magic_link")
    assert r.mfa_required is not None
    assert r.mfa_required.secondary_auth_initiated == "sms_otp"
    assert len(contexts) == 1
    assert [m.to for m in transport.sent] == [PHONE]
    assert "otp.refused" not in names(events)


def test_automatic_send_refused_by_gateway_still_returns_ist(
    member_flow: FlowFactory, transport: FakeTransport, events: list[Event]
) -> None:
    mfa = member_flow()
    transport.fail_next("rejected")
    r = mfa.authenticate_primary(ORG, MEMBER, "email_magic_link")
    assert_ist_without_send(r)
    assert transport.sent == []
    assert refusals(events) == ["downstream_carrier_error"]
    # the discarded code: nothing live
    e = err(mfa.authenticate_sms_otp, ORG, MEMBER, "123456", intermediate_session_token=r.intermediate_session_token)
    assert e.error_type == "unable_to_auth_otp_code"


def test_valid_session_skips_mfa(
    member_flow: FlowFactory, transport: FakeTransport, clock: FakeClock, events: list[Event]
) -> None:
    mfa = member_flow()
    token = sms_session(mfa, transport)
    clock.advance(60)
    sent = len(transport.sent)
    r = mfa.authenticate_primary(ORG, MEMBER, "oauth", session_token=token)
    assert r.member_authenticated is True
    assert r.intermediate_session_token == ""
    assert r.mfa_required is None
    assert r.session_token == token
    assert r.member_session is not None
    assert {("oauth", "oauth_google"), ("otp", "sms"), ("magic_link", "email")} <= set(
        factor_kinds(r.member_session))
    assert len(transport.sent) == sent


def test_session_of_another_member_refused_in_primary_auth(
    member_flow: FlowFactory, setup_member: Setup, transport: FakeTransport
) -> None:
    mfa = member_flow()
    setup_member(mfa, MEMBER2, mfa_phone_number=PHONE2)
    other = sms_session(mfa, transport, MEMBER2)
    sent = len(transport.sent)
    e = err(mfa.authenticate_primary, ORG, MEMBER, "email_magic_link", session_token=other)
    assert (e.error_type, e.status_code) == ("member_session_member_id_mismatch", 400)
    assert len(transport.sent) == sent


def test_unknown_or_expired_session_refused_in_primary_auth(
    member_flow: FlowFactory, transport: FakeTransport, clock: FakeClock
) -> None:
    mfa = member_flow()
    e = err(mfa.authenticate_primary, ORG, MEMBER, "email_magic_link", session_token="session-unknown")
    assert (e.error_type, e.status_code) == ("session_not_found", 404)
    assert transport.sent == []
    token = sms_session(mfa, transport, session_duration_minutes=5)
    clock.advance(301)
    e = err(mfa.authenticate_primary, ORG, MEMBER, "email_magic_link", session_token=token)
    assert e.error_type == "session_not_found"
    assert len(transport.sent) == 1


def test_order_primary_org_member_active_method_session_lock(
    member_flow: FlowFactory, setup_member: Setup, transport: FakeTransport
) -> None:
    mfa = member_flow(lockout_threshold=1)
    setup_member(mfa, MEMBER2, mfa_phone_number=PHONE2)
    other = sms_session(mfa, transport, MEMBER2)
    own = sms_session(mfa, transport)
    lock(mfa, transport)
    sent = len(transport.sent)

    def code(org: str, member: str, method: str, **kwargs: Any) -> str:
        return err(mfa.authenticate_primary, org, member, method, **kwargs).error_type

    assert code("organization-unknown", "member-unknown", "foo", session_token="x") == "organization_not_found"
    assert code(ORG, "member-unknown", "foo", session_token="x") == "member_not_found"
    assert code(ORG, MEMBER, "foo", session_token="session-unknown") == "bad_request"
    assert code(ORG, MEMBER, "email_magic_link", session_token="session-unknown") == "session_not_found"
    assert code(ORG, MEMBER, "email_magic_link", session_token=other) == "member_session_member_id_mismatch"
    assert code(ORG, MEMBER, "email_magic_link", session_token=own) == "user_lock_limit_reached"
    assert code(ORG, MEMBER, "email_magic_link") == "user_lock_limit_reached"
    assert code(ORG, MEMBER, "discovery") == "user_lock_limit_reached"
    setup_member(mfa, status="deleted")
    assert code(ORG, MEMBER, "foo", session_token="session-unknown") == "action_available_only_for_active_members"
    assert code(ORG, MEMBER, "email_magic_link") == "action_available_only_for_active_members"
    assert len(transport.sent) == sent


# ---------------------------------------------------------------------------------- record_mfa_factor


@pytest.mark.parametrize(
    ("factor_type", "expected"), [("totp", ("totp", "authenticator_app")),
                                  ("recovery_code", ("recovery_codes", "recovery_code"))]
)
def test_record_mfa_factor_with_ist_issues_session(
    flow: FlowFactory, setup_member: Setup, transport: FakeTransport, clock: FakeClock, events: list[Event],
    factor_type: str, expected: tuple[str, str],
) -> None:
    mfa = flow()
    setup_member(mfa, mfa_phone_number="", mfa_phone_number_verified=False, totp_registration_id=TOTP,
                 default_mfa_method="totp")
    r = mfa.authenticate_primary(ORG, MEMBER, "email_magic_link")
    ist = r.intermediate_session_token
    assert_ist_without_send(r)
    assert r.mfa_required is not None
    assert r.mfa_required.member_options.totp_registration_id == TOTP
    clock.advance(3)
    res = mfa.record_mfa_factor(ORG, MEMBER, factor_type, intermediate_session_token=ist)
    assert res.session_token
    assert res.session_token != ist
    assert res.member_id == MEMBER
    s = res.member_session
    assert s is not None
    assert factor_kinds(s) == [("magic_link", "email"), expected]
    assert s.authentication_factors[1].last_authenticated_at == at(clock.now())
    assert s.expires_at == at(clock.now() + 3600)
    assert "session.created" in names(events)
    assert transport.sent == []
    e = err(mfa.record_mfa_factor, ORG, MEMBER, factor_type, intermediate_session_token=ist)
    assert e.error_type == "intermediate_session_not_found"
    assert mfa.authenticate_session(session_token=res.session_token).step_up_required is False


@pytest.mark.parametrize("factor_type", ["sms_otp", "password", "otp", "foo", "", "TOTP"])
def test_record_mfa_factor_refuses_other_factor_types(
    flow: FlowFactory, setup_member: Setup, factor_type: str
) -> None:
    mfa = flow()
    setup_member(mfa, mfa_phone_number="", mfa_phone_number_verified=False, totp_registration_id=TOTP)
    ist = mfa.authenticate_primary(ORG, MEMBER, "email_magic_link").intermediate_session_token
    e = err(mfa.record_mfa_factor, ORG, MEMBER, factor_type, intermediate_session_token=ist)
    assert (e.error_type, e.status_code) == ("bad_request", 400)
    # nothing consumed
    assert mfa.record_mfa_factor(ORG, MEMBER, "totp", intermediate_session_token=ist).session_token


def test_record_mfa_factor_token_count(flow: FlowFactory, setup_member: Setup) -> None:
    mfa = flow()
    setup_member(mfa, totp_registration_id=TOTP)
    e = err(mfa.record_mfa_factor, ORG, MEMBER, "totp")
    assert (e.error_type, e.status_code) == ("no_session_arguments", 400)
    e = err(mfa.record_mfa_factor, ORG, MEMBER, "totp", intermediate_session_token="a", session_token="b")
    assert (e.error_type, e.status_code) == ("too_many_session_arguments", 400)


def test_record_mfa_factor_token_validity_and_ownership(
    flow: FlowFactory, setup_member: Setup, transport: FakeTransport
) -> None:
    mfa = flow()
    setup_member(mfa, totp_registration_id=TOTP)
    setup_member(mfa, MEMBER2, mfa_phone_number=PHONE2, totp_registration_id="totp-registration-2")
    other_ist = mfa.authenticate_primary(ORG, MEMBER2, "discovery").intermediate_session_token
    other_session = sms_session(mfa, transport, MEMBER2)
    e = err(mfa.record_mfa_factor, ORG, MEMBER, "totp", intermediate_session_token="ist-unknown")
    assert e.error_type == "intermediate_session_not_found"
    e = err(mfa.record_mfa_factor, ORG, MEMBER, "totp", session_token="session-unknown")
    assert e.error_type == "session_not_found"
    e = err(mfa.record_mfa_factor, ORG, MEMBER, "totp", intermediate_session_token=other_ist)
    assert e.error_type == "member_session_member_id_mismatch"
    e = err(mfa.record_mfa_factor, ORG, MEMBER, "totp", session_token=other_session)
    assert e.error_type == "member_session_member_id_mismatch"
    # the other member's IST was not consumed by the refusal
    assert mfa.record_mfa_factor(ORG, MEMBER2, "totp", intermediate_session_token=other_ist).session_token


def test_record_mfa_factor_refuses_locked_member(
    flow: FlowFactory, setup_member: Setup, transport: FakeTransport
) -> None:
    mfa = flow(lockout_threshold=1)
    setup_member(mfa, totp_registration_id=TOTP)
    ist = mfa.authenticate_primary(ORG, MEMBER, "discovery").intermediate_session_token
    lock(mfa, transport)
    e = err(mfa.record_mfa_factor, ORG, MEMBER, "totp", intermediate_session_token=ist)
    assert (e.error_type, e.status_code) == ("user_lock_limit_reached", 429)


def test_record_mfa_factor_with_session_adds_factor_keeps_token(
    flow: FlowFactory, setup_member: Setup, transport: FakeTransport, clock: FakeClock
) -> None:
    mfa = flow()
    setup_member(mfa, totp_registration_id=TOTP)
    token = sms_session(mfa, transport)
    clock.advance(10)
    res = mfa.record_mfa_factor(ORG, MEMBER, "totp", session_token=token)
    assert res.session_token == token
    assert res.member_session is not None
    assert {("totp", "authenticator_app"), ("otp", "sms"), ("magic_link", "email")} <= set(
        factor_kinds(res.member_session))
