"""Our authentication policy, stated as tests (``policy.toml`` next to this file holds it).

Each test is one sentence of the policy, written with the ``mfa_world`` fixture of mfa_flow's pytest plugin
(installed with mfa_flow; ``conftest.py`` makes every world run ``policy.toml``). The last tests ask the
checker whether *any* short sequence of events breaks a statement, not just the one we thought of.

    python3 -m pytest examples/policy_tests -q
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mfa_flow import MfaError, Policy
from mfa_flow.testing import MfaWorld, explore

POLICY_FILE = Path(__file__).with_name("policy.toml")


def nobody_gets_more_than_3_texts_in_10_minutes(world: MfaWorld) -> None:
    """A property: a plain function that asserts over what the world has seen."""
    sent = world.events.named("otp.sent")
    for first in sent:
        within = [e for e in sent if e.member_id == first.member_id and 0 <= e.at - first.at < 600]
        assert len(within) <= 3, f"{first.member_id} got {len(within)} texts within 10 minutes"


def test_a_member_enrolled_in_mfa_who_logs_in_by_sso_gets_an_sms(mfa_world: MfaWorld) -> None:
    mfa_world.organization(mfa_policy="OPTIONAL")
    alice = mfa_world.member(phone=True, mfa_enrolled=True)

    login = mfa_world.login(alice, via="sso")

    assert login.mfa_required is not None
    assert login.mfa_required.secondary_auth_initiated == "sms_otp"
    assert [sms.to for sms in mfa_world.sms.sent] == [alice.mfa_phone_number]
    assert mfa_world.verify(alice).session_token  # the newest code, with her IST


def test_after_30_idle_minutes_the_next_sensitive_action_needs_a_new_code(mfa_world: MfaWorld) -> None:
    alice = mfa_world.member(phone=True)
    mfa_world.login(alice, via="sso")
    mfa_world.verify(alice)

    mfa_world.idle(minutes=30, seconds=1)
    check = mfa_world.check(alice)  # what the application calls before a sensitive action

    assert check.step_up_required
    assert check.secondary_auth_initiated == "sms_otp"
    assert len(mfa_world.sms.sent) == 2  # a new code went out
    mfa_world.verify(alice)  # the new code, with her session
    assert not mfa_world.check(alice).step_up_required


def test_nobody_gets_more_than_3_texts_in_10_minutes(mfa_world: MfaWorld) -> None:
    alice = mfa_world.member(phone=True)
    mfa_world.login(alice)  # the first text
    refusals = []
    for _ in range(5):
        mfa_world.idle(seconds=40)  # past the resend cooldown each time
        try:
            mfa_world.send(alice)
        except MfaError as refused:
            refusals.append(refused.error_type)

    assert len(mfa_world.sms.sent) == 3
    assert refusals == ["too_many_requests"] * 3
    nobody_gets_more_than_3_texts_in_10_minutes(mfa_world)


def test_a_member_with_totp_cannot_attach_a_phone_without_passing_totp_first(mfa_world: MfaWorld) -> None:
    cara = mfa_world.member(totp_registration_id="totp-registration-cara")
    mfa_world.login(cara)  # primary authentication only: her IST carries no MFA factor yet

    with pytest.raises(MfaError) as refused:
        mfa_world.send(cara, "+14155550142")
    assert refused.value.error_type == "insufficient_factors"
    assert mfa_world.sms.sent == []

    mfa_world.record_factor(cara, "totp")  # our application verified her TOTP code
    mfa_world.send(cara, "+14155550142")  # now with a session that carries it
    mfa_world.verify(cara)
    assert mfa_world.flow.get_member(cara.organization_id, cara.member_id).mfa_phone_number == "+14155550142"


def test_the_members_of_our_policy_file() -> None:
    world = MfaWorld.from_toml(POLICY_FILE)  # the file's [policy], organizations and members

    assert world.login("member-alice", via="sso").mfa_required.secondary_auth_initiated == "sms_otp"
    assert world.login("member-cara", via="sso").mfa_required.member_options.totp_registration_id
    assert [sms.member_id for sms in world.sms.sent] == ["member-alice"]


def test_no_sequence_of_events_texts_anyone_more_than_3_times_in_10_minutes(mfa_policy: Policy) -> None:
    report = explore(mfa_policy, properties=[nobody_gets_more_than_3_texts_in_10_minutes], depth=3)

    assert report.ok, str(report)  # also every built-in invariant, e.g. mfa_bypass and send_limits
    assert report.complete


def test_under_the_default_limits_the_checker_finds_the_shortest_breach() -> None:
    report = explore(Policy(), properties=[nobody_gets_more_than_3_texts_in_10_minutes], depth=3)

    [violation] = report.violations
    assert violation.property == "nobody_gets_more_than_3_texts_in_10_minutes"
    assert [step.action for step in violation.steps] == ["login", "send_until_limited"]
    assert "got 5 texts within 10 minutes" in violation.message
