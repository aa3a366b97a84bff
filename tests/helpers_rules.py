"""Shared helpers for the rule tests built on the conftest fixtures (tests/test_auth_rules.py,
tests/test_session_rules.py, tests/test_primary_rules.py): constants, small assertion helpers and the
"primary auth + the automatic code" session builder."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import pytest

from mfa_flow import Event, Member, MfaError, MfaFlow
from mfa_flow.testing import FakeTransport

ORG = "organization-test-1"
ORG2 = "organization-test-2"
ORG_SLUG = "acme"
MEMBER = "member-test-1"
MEMBER2 = "member-test-2"
MEMBER3 = "member-test-3"
PHONE = "+14155550123"
PHONE2 = "+14155550124"
PHONE3 = "+14155550125"
MASKED = "XXXXXXX0123"
TOTP = "totp-registration-1"

FlowFactory = Callable[..., MfaFlow]
Setup = Callable[..., Member]


def at(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def wrong(code: str, i: int = 0) -> str:
    """Six ASCII digits that differ from ``code``; distinct for each ``i`` below 999,999."""
    return f"{(int(code) + 1 + i) % 1_000_000:06d}"


def err(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> MfaError:
    with pytest.raises(MfaError) as ei:
        fn(*args, **kwargs)
    return ei.value


def names(evs: Iterable[Event]) -> list[str]:
    return [e.name for e in evs]


def refusals(evs: Iterable[Event]) -> list[str]:
    """The reasons of the otp.refused events, in order."""
    return [e.reason for e in evs if e.name == "otp.refused"]


def factor_kinds(session: Any) -> list[tuple[str, str]]:
    """The (type, delivery_method) of each authentication factor of a member session, in order."""
    return [(f.type, f.delivery_method) for f in session.authentication_factors]


def sms_session(mfa: MfaFlow, transport: FakeTransport, member: str = MEMBER, **kwargs: Any) -> str:
    """Primary auth + the automatically sent code → a session token carrying magic_link + sms."""
    r = mfa.authenticate_primary(ORG, member, "email_magic_link")
    assert r.mfa_required is not None
    assert r.mfa_required.secondary_auth_initiated == "sms_otp"
    res = mfa.authenticate_sms_otp(
        ORG, member, transport.sent[-1].code, intermediate_session_token=r.intermediate_session_token, **kwargs
    )
    assert res.session_token
    return str(res.session_token)
