"""The day of operation the event sinks' tests (tests/test_contrib_opentelemetry.py, tests/test_contrib_logs.py)
watch: a login, a refused send, a phone linked, wrong codes until a lock, a step-up after inactivity, a
rejected delivery, an unlock and a revoke, on a real MfaFlow; and every secret it produced, so a test can
look for them in what a sink wrote.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import pytest

from mfa_flow import Event, Member, MemoryDirectory, MfaError, MfaFlow, Organization, Policy
from mfa_flow.testing import FakeClock, FakeTransport
from tests.helpers_rules import wrong

ORG = "org-operating-1"
ORG_OPTIONAL = "org-operating-2"
M_LOGIN = "member-operating-login"  # logs in, steps up, loses a delivery, is revoked
M_LOCKED = "member-operating-locked"  # locked by three wrong codes, then unlocked
M_LINK = "member-operating-link"  # links a phone (an organization where MFA is optional)
M_UNKNOWN = "member-operating-unknown"  # not in the directory: its send is refused
PHONES = {M_LOGIN: "+14155550161", M_LOCKED: "+14155550162", M_LINK: "+14155550163"}
LOCKOUT_THRESHOLD = 3


@dataclass
class Secrets:
    """What must never reach a metric attribute (all of it) or a log record (codes, tokens, full numbers)."""

    codes: list[str] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)
    phones: list[str] = field(default_factory=list)
    member_ids: list[str] = field(default_factory=list)
    session_ids: list[str] = field(default_factory=list)

    def private(self) -> list[str]:
        """Codes, tokens and full numbers (E.164 and national digits)."""
        return [*self.codes, *self.tokens, *self.phones, *(phone[2:] for phone in self.phones)]

    def identifying(self) -> list[str]:
        """Everything that names one member or one session, besides the private values."""
        return [*self.private(), *self.member_ids, *self.session_ids]


def found_in(text: str, secrets: Iterable[str]) -> list[str]:
    """The secrets ``text`` holds as a whole word (a 6-digit code inside a 10-digit timestamp is not one)."""
    return [s for s in secrets if re.search(rf"(?<![\w+]){re.escape(s)}(?!\w)", text)]


def run_day(sinks: Iterable[Callable[[Event], None]]) -> Secrets:
    """Drive one flow with ``sinks`` as its event callbacks through the scenario; return its secrets."""
    clock, sms, directory = FakeClock(), FakeTransport(), MemoryDirectory()
    seen: list[Event] = []
    flow = MfaFlow(directory=directory, transport=sms, clock=clock, events=[*sinks, seen.append],
                   policy=Policy(lockout_threshold=LOCKOUT_THRESHOLD))
    directory.put_organization(Organization(ORG, mfa_policy="REQUIRED_FOR_ALL"))
    directory.put_organization(Organization(ORG_OPTIONAL))
    for member in (M_LOGIN, M_LOCKED):
        directory.put_member(Member(member, ORG, email_address=f"{member}@example.com",
                                    mfa_phone_number=PHONES[member], mfa_phone_number_verified=True))
    directory.put_member(Member(M_LINK, ORG_OPTIONAL, email_address=f"{M_LINK}@example.com"))
    secrets = Secrets(phones=list(PHONES.values()), member_ids=[M_LOGIN, M_LOCKED, M_LINK, M_UNKNOWN])

    login = flow.authenticate_primary(ORG, M_LOGIN, "password")
    done = flow.authenticate_sms_otp(ORG, M_LOGIN, sms.last_code(M_LOGIN),
                                     intermediate_session_token=login.intermediate_session_token)
    assert done.session_token
    assert done.member_session is not None
    secrets.tokens += [login.intermediate_session_token, done.session_token, done.session_jwt]
    secrets.session_ids.append(done.member_session.member_session_id)

    with pytest.raises(MfaError, match="member_not_found"):
        flow.send_sms_otp(ORG, M_UNKNOWN)

    flow.send_sms_otp(ORG_OPTIONAL, M_LINK, mfa_phone_number=PHONES[M_LINK])

    locked = flow.authenticate_primary(ORG, M_LOCKED, "password")
    secrets.tokens.append(locked.intermediate_session_token)
    right = sms.last_code(M_LOCKED)
    guess = wrong(right)
    for answer in ["otp_code_not_found"] * (LOCKOUT_THRESHOLD - 1) + ["user_lock_limit_reached"]:
        with pytest.raises(MfaError, match=answer):
            flow.authenticate_sms_otp(ORG, M_LOCKED, guess,
                                      intermediate_session_token=locked.intermediate_session_token)
    secrets.codes.append(guess)

    clock.advance(minutes=31)
    check = flow.authenticate_session(session_token=done.session_token)
    assert check.step_up_required
    assert check.secondary_auth_initiated == "sms_otp"
    flow.authenticate_sms_otp(ORG, M_LOGIN, sms.last_code(M_LOGIN), session_token=done.session_token)

    sms.fail_next("rejected")
    with pytest.raises(MfaError, match="downstream_carrier_error"):
        flow.send_sms_otp(ORG, M_LOGIN, session_token=done.session_token)

    assert flow.unlock_member(ORG, M_LOCKED).is_locked is False
    flow.revoke_session(session_token=done.session_token)

    secrets.codes += [message.code for message in sms.sent]
    secrets.tokens = [token for token in secrets.tokens if token]  # no JWT in local mode
    assert len(secrets.codes) == 5  # the wrong one, and the login, link, lock and step-up codes
    assert len(secrets.tokens) == 3  # two ISTs and the session
    assert {e.name for e in seen} >= {"otp.sent", "otp.refused", "otp.failed", "member.locked", "delivery.failed"}
    return secrets
