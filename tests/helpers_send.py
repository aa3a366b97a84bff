"""Shared set-up for the send-side rule tests (tests/test_send_rules.py, tests/test_phone_rules.py).

Every helper builds its state through the public API only: the directory (the admin plane), primary
authentication, ``record_mfa_factor`` and the FakeTransport, which is the only way to read a code.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import pytest

from mfa_flow import Event, Member, MfaError, MfaFlow, Organization, Policy
from mfa_flow.testing import FakeClock, FakeTransport
from tests.helpers_rules import wrong

ORG = "organization-test-1"
ORG_SLUG = "acme"
ORG_EXTERNAL_ID = "external-organization-1"
ORG2 = "organization-test-2"

# Members of ORG (organization REQUIRED_FOR_ALL, all methods allowed).
M_VERIFIED = "member-verified"  # verified linked phone: an active factor
M_UNVERIFIED = "member-unverified"  # linked but unverified phone: no active factor
M_FRESH = "member-fresh"  # no phone, no TOTP: no active factor
M_FRESH2 = "member-fresh-2"
M_TOTP = "member-totp"  # TOTP only, no phone: an active factor
M_TOTP2 = "member-totp-2"
M_OTHER = "member-other"  # verified phone, another member of the same organization
M_INVITED = "member-invited"  # status "invited"
M_EXT = "member-external"  # reachable through its external_id
M_EXT_REF = "external-member-1"
M_BREAKGLASS = "member-breakglass"

# Members of ORG2.
M2_VERIFIED = "member-org2-verified"  # same number as M_VERIFIED, in another organization
M2_FRESH = "member-org2-fresh"

P_VERIFIED = "+14155550123"
P_UNVERIFIED = "+14155550124"
P_OTHER = "+14155550125"
P_EXT = "+14155550126"
P_BREAKGLASS = "+14155550127"
P_NEW = "+14155550130"  # linked to nobody
P_NEW2 = "+14155550131"
P_CA = "+16135550123"
P_JM = "+18765550123"
P_DO = "+18095550123"
P_BS = "+12423570123"  # a valid Bahamas number (+1 242 555 01xx is not a valid BS number)
P_PR = "+17875550123"
P_GU = "+16715550123"
P_PREMIUM = "+19005550123"
P_TOLL_FREE = "+18005550123"
P_INVALID = "+10000000000"

TOTP_ID = "totp-registration-test-1"


@dataclass
class Env:
    flow: MfaFlow
    clock: FakeClock
    transport: FakeTransport
    events: list[Event] = field(default_factory=list)

    def mark(self) -> tuple[int, int]:
        """(messages sent so far, events so far) to compare against after a call."""
        return len(self.transport.sent), len(self.events)

    def events_since(self, mark: tuple[int, int]) -> list[Event]:
        return self.events[mark[1] :]

    def sent_since(self, mark: tuple[int, int]) -> list[Any]:
        return list(self.transport.sent[mark[0] :])


def make_env(
    policy: Policy | None = None,
    *,
    before_send: Iterable[Callable[[Any], None]] = (),
    transport: Any = None,
    populate: bool = True,
) -> Env:
    clock = FakeClock()
    fake = transport if transport is not None else FakeTransport()
    events: list[Event] = []
    flow = MfaFlow(
        clock=clock,
        transport=fake,
        events=[events.append],
        policy=policy if policy is not None else Policy(),
        before_send=tuple(before_send),
    )
    env = Env(flow=flow, clock=clock, transport=fake, events=events)
    if populate:
        populate_directory(env)
    return env


def populate_directory(env: Env) -> None:
    d = env.flow.directory
    d.put_organization(
        Organization(
            ORG,
            organization_slug=ORG_SLUG,
            organization_name="Acme",
            organization_external_id=ORG_EXTERNAL_ID,
            mfa_policy="REQUIRED_FOR_ALL",
        )
    )
    d.put_organization(Organization(ORG2, organization_slug="globex", mfa_policy="REQUIRED_FOR_ALL"))
    for member in (
        Member(M_VERIFIED, ORG, email_address="verified@example.com", mfa_enrolled=True,
               mfa_phone_number=P_VERIFIED, mfa_phone_number_verified=True),
        Member(M_UNVERIFIED, ORG, email_address="unverified@example.com", mfa_phone_number=P_UNVERIFIED),
        Member(M_FRESH, ORG, email_address="fresh@example.com"),
        Member(M_FRESH2, ORG, email_address="fresh2@example.com"),
        Member(M_TOTP, ORG, email_address="totp@example.com", mfa_enrolled=True,
               totp_registration_id=TOTP_ID, default_mfa_method="totp"),
        Member(M_TOTP2, ORG, email_address="totp2@example.com", mfa_enrolled=True,
               totp_registration_id="totp-registration-test-2", default_mfa_method="totp"),
        Member(M_OTHER, ORG, email_address="other@example.com", mfa_enrolled=True,
               mfa_phone_number=P_OTHER, mfa_phone_number_verified=True),
        Member(M_INVITED, ORG, email_address="invited@example.com", status="invited",
               mfa_phone_number="+14155550128"),
        Member(M_EXT, ORG, email_address="ext@example.com", external_id=M_EXT_REF, mfa_phone_number=P_EXT),
        Member(M_BREAKGLASS, ORG, email_address="breakglass@example.com", is_breakglass=True,
               mfa_phone_number=P_BREAKGLASS),
        Member(M2_VERIFIED, ORG2, email_address="verified@example.org", mfa_enrolled=True,
               mfa_phone_number=P_VERIFIED, mfa_phone_number_verified=True),
        Member(M2_FRESH, ORG2, email_address="fresh@example.org"),
    ):
        d.put_member(member)


def primary_ist(env: Env, organization_id: str, member_id: str) -> str:
    """A primary-only IST (email magic link). Members with a linked phone also get the automatic send."""
    r = env.flow.authenticate_primary(organization_id, member_id, "email_magic_link")
    assert r.intermediate_session_token, "MFA must be owed in these organizations"
    assert r.session_token == ""
    return str(r.intermediate_session_token)


def totp_session(env: Env, organization_id: str, member_id: str) -> str:
    """A session carrying primary + TOTP: factor-bearing for a member with a TOTP registration."""
    ist = primary_ist(env, organization_id, member_id)
    res = env.flow.record_mfa_factor(organization_id, member_id, "totp", intermediate_session_token=ist)
    assert res.session_token
    return str(res.session_token)


def lock_member(env: Env, organization_id: str, member_id: str) -> str:
    """Lock a member with a linked phone by wrong codes; needs a policy with a small lockout_threshold.

    Returns the (still unconsumed) IST used.
    """
    before = len(env.transport.sent)
    ist = primary_ist(env, organization_id, member_id)
    if len(env.transport.sent) == before:
        env.flow.send_sms_otp(organization_id, member_id, intermediate_session_token=ist)
    code = env.transport.sent[-1].code
    seen: list[str] = []
    for _ in range(env.flow.policy.lockout_threshold):
        with pytest.raises(MfaError) as ei:
            env.flow.authenticate_sms_otp(organization_id, member_id, wrong(code),
                                          intermediate_session_token=ist)
        seen.append(ei.value.error_type)
    expected = ["otp_code_not_found"] * (env.flow.policy.lockout_threshold - 1) + ["user_lock_limit_reached"]
    assert seen == expected
    assert env.flow.get_member(organization_id, member_id).is_locked
    return ist


def expect_error(call: Callable[[], object], error_type: str) -> MfaError:
    with pytest.raises(MfaError) as ei:
        call()
    assert ei.value.error_type == error_type, (ei.value.error_type, str(ei.value))
    return ei.value


def expect_refused(
    env: Env,
    call: Callable[[], object],
    error_type: str,
    *,
    member: tuple[str, str] | None = None,
    reason: str | None = None,
) -> MfaError:
    """The call raises ``error_type``, sends nothing, leaves ``member`` unchanged and emits otp.refused.

    ``reason`` is the precise reason expected in the otp.refused event (defaults to ``error_type``).
    """
    snapshot = env.flow.get_member(*member) if member is not None else None
    mark = env.mark()
    err = expect_error(call, error_type)
    assert env.sent_since(mark) == [], "a refused send must not reach the transport"
    if member is not None:
        assert env.flow.get_member(*member) == snapshot, "a refused call changes nothing"
    new = env.events_since(mark)
    names = [e.name for e in new]
    assert "otp.sent" not in names
    assert "phone.linked" not in names
    expected_reason = reason if reason is not None else error_type
    assert any(e.name == "otp.refused" and e.reason == expected_reason for e in new), [
        (e.name, e.reason) for e in new
    ]
    return err


def expect_send_refused(
    env: Env,
    member_id: str,
    error_type: str,
    *,
    organization_id: str = ORG,
    reason: str | None = None,
    **send_kwargs: Any,
) -> MfaError:
    """``send_sms_otp(organization_id, member_id, **send_kwargs)`` is refused as ``expect_refused`` checks, and
    leaves that member unchanged."""
    return expect_refused(env, lambda: env.flow.send_sms_otp(organization_id, member_id, **send_kwargs),
                          error_type, member=(organization_id, member_id), reason=reason)


def event_names(events: Iterable[Event]) -> list[str]:
    return [e.name for e in events]
