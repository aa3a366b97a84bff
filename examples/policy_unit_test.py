"""How to unit-test YOUR authentication policy with ``mfa_flow.testing``.

Your application picks a ``Policy`` (here ``Policy.hardened()``); these tests pin down what that choice means
for your members, so a later change of policy shows up as a failing test. ``FakeClock`` moves time without
sleeping and ``FakeTransport`` records every SMS, which is how a test reads a code.

    python3 -m pytest examples/policy_unit_test.py -q
"""

from __future__ import annotations

import pytest

from mfa_flow import Member, MfaError, MfaFlow, Organization, Policy
from mfa_flow.testing import FakeClock, FakeTransport

ORG = "organization-acme"
ALICE = "member-alice"
BOB = "member-bob"
ALICE_PHONE = "+14155550123"  # fictional numbers only, never a real one


def our_policy() -> Policy:
    """The policy the application ships with."""
    return Policy.hardened()


def make_flow() -> tuple[MfaFlow, FakeClock, FakeTransport]:
    clock, transport = FakeClock(), FakeTransport()
    flow = MfaFlow(policy=our_policy(), clock=clock, transport=transport)
    flow.directory.put_organization(Organization(ORG, organization_slug="acme", mfa_policy="REQUIRED_FOR_ALL"))
    flow.directory.put_member(Member(ALICE, ORG, mfa_phone_number=ALICE_PHONE, mfa_phone_number_verified=True))
    flow.directory.put_member(Member(BOB, ORG))  # no phone yet: he links one on first use
    return flow, clock, transport


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


def test_our_policy_locks_after_five_failures() -> None:
    flow, clock, transport = make_flow()
    ist = flow.authenticate_primary(ORG, ALICE, "email_magic_link").intermediate_session_token
    code = transport.last_code(ALICE)

    for _ in range(4):
        with pytest.raises(MfaError) as refused:
            flow.authenticate_sms_otp(ORG, ALICE, wrong(code), intermediate_session_token=ist)
        assert refused.value.error_type == "otp_code_not_found"
    with pytest.raises(MfaError) as locked:
        flow.authenticate_sms_otp(ORG, ALICE, wrong(code), intermediate_session_token=ist)
    assert locked.value.error_type == "user_lock_limit_reached"

    member = flow.get_member(ORG, ALICE)
    assert member.is_locked
    with pytest.raises(MfaError) as still_locked:  # even the right code is refused while locked
        flow.authenticate_sms_otp(ORG, ALICE, code, intermediate_session_token=ist)
    assert still_locked.value.error_type == "user_lock_limit_reached"

    clock.advance(hours=1)  # the lock lasts an hour
    assert not flow.get_member(ORG, ALICE).is_locked


def test_international_numbers_are_refused() -> None:
    flow, _, transport = make_flow()
    for number in ("+44 20 7946 0958", "+1 876 555 0123"):  # GB, and Jamaica despite its +1 prefix
        with pytest.raises(MfaError) as refused:
            flow.send_sms_otp(ORG, BOB, mfa_phone_number=number)
        assert refused.value.error_type == "invalid_phone_number_country_code"
    assert transport.sent == []

    flow.send_sms_otp(ORG, BOB, mfa_phone_number="+1 613 555 0123")  # Canada is allowed
    assert transport.sent[-1].to == "+16135550123"


def test_resend_is_rate_limited() -> None:
    flow, clock, transport = make_flow()
    ist = flow.authenticate_primary(ORG, ALICE, "email_magic_link").intermediate_session_token
    assert len(transport.sent) == 1  # the automatic first SMS

    with pytest.raises(MfaError) as too_soon:  # a 30 s cooldown between sends
        flow.send_sms_otp(ORG, ALICE, intermediate_session_token=ist)
    assert too_soon.value.error_type == "too_many_requests"

    clock.advance(31)
    flow.send_sms_otp(ORG, ALICE, intermediate_session_token=ist)
    clock.advance(31)
    flow.send_sms_otp(ORG, ALICE, intermediate_session_token=ist)
    assert len(transport.sent) == 3

    clock.advance(31)  # past the cooldown, but 3 sends in 10 minutes is the limit
    with pytest.raises(MfaError) as over:
        flow.send_sms_otp(ORG, ALICE, intermediate_session_token=ist)
    assert over.value.error_type == "too_many_requests"

    again = flow.authenticate_primary(ORG, ALICE, "email_magic_link")  # a new login is limited too
    assert again.mfa_required is not None
    assert again.mfa_required.secondary_auth_initiated is None
    assert len(transport.sent) == 3

    clock.advance(minutes=10)  # the window slides: the next login texts a code again
    later = flow.authenticate_primary(ORG, ALICE, "email_magic_link")
    assert later.mfa_required is not None
    assert later.mfa_required.secondary_auth_initiated == "sms_otp"
    assert len(transport.sent) == 4


def test_only_the_newest_code_works() -> None:
    flow, clock, transport = make_flow()
    ist = flow.authenticate_primary(ORG, ALICE, "email_magic_link").intermediate_session_token
    first = transport.last_code(ALICE)
    clock.advance(31)
    flow.send_sms_otp(ORG, ALICE, intermediate_session_token=ist)
    newest = transport.last_code(ALICE)

    if first != newest:  # a resend supersedes the previous code
        with pytest.raises(MfaError) as superseded:
            flow.authenticate_sms_otp(ORG, ALICE, first, intermediate_session_token=ist)
        assert superseded.value.error_type == "otp_code_not_found"
    result = flow.authenticate_sms_otp(ORG, ALICE, newest, intermediate_session_token=ist)
    assert result.session_token
