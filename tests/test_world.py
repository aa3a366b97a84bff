"""MfaWorld (docs/testing.md): a policy test in the policy's words. First the four statements of the toolkit
issue as a user would write them, then each helper on what it returns and what it leaves in the world."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from mfa_flow import ConfigurationError, Event, MemoryDirectory, MfaError, MfaFlow, Organization, Policy
from mfa_flow.records import Member
from mfa_flow.testing import Events, FakeClock, FakeTransport, MfaWorld, Step
from tests.helpers_rules import wrong

FICTIONAL = re.compile(r"^\+1(415|212|312|617|303|206)55501\d\d$")


def nobody_gets_more_than_3_texts_in_10_minutes(world: MfaWorld) -> None:
    """The statement as a property over the world's events: no member is texted 4 times within 600 s."""
    sent = world.events.named("otp.sent")
    for first in sent:
        within = [e for e in sent if e.member_id == first.member_id and 0 <= e.at - first.at < 600]
        assert len(within) <= 3, f"{first.member_id} got {len(within)} texts within 10 minutes"


def refused(call: Any) -> str:
    """The error_type of a call that must be refused."""
    with pytest.raises(MfaError) as info:
        call()
    return info.value.error_type


# --- the statements ------------------------------------------------------------------------------------


def test_a_member_enrolled_in_mfa_who_logs_in_by_sso_gets_an_sms() -> None:
    world = MfaWorld()
    world.organization(mfa_policy="OPTIONAL")
    alice = world.member(phone=True, mfa_enrolled=True)
    bob = world.member(phone=True)  # same organization, not enrolled: MFA is not owed to him

    login = world.login(alice, via="sso")
    assert login.mfa_required is not None
    assert login.mfa_required.secondary_auth_initiated == "sms_otp"
    assert [(m.to, m.member_id) for m in world.sms.sent] == [(alice.mfa_phone_number, alice.member_id)]
    assert world.session(alice) is None
    assert world.ist(alice) == login.intermediate_session_token

    done = world.verify(alice)
    assert [f.type for f in done.member_session.authentication_factors] == ["sso", "otp"]
    assert world.session(alice) == done.session_token
    assert world.ist(alice) is None

    assert world.login(bob, via="sso").mfa_required is None
    assert len(world.sms.sent) == 1
    assert world.session(bob)


def test_after_30_idle_minutes_the_next_sensitive_action_needs_a_new_code() -> None:
    world = MfaWorld(Policy(default_session_minutes=240))  # a session long enough to go idle twice
    alice = world.member(phone=True)
    world.login(alice, via="sso")
    session = world.verify(alice).session_token

    world.idle(minutes=30)  # exactly 30 minutes is not yet "more than" the timeout
    assert world.check(alice).step_up_required is False
    world.idle(minutes=30, seconds=1)
    check = world.check(alice)
    assert check.step_up_required
    assert check.secondary_auth_initiated == "sms_otp"
    assert len(world.sms.sent) == 2
    assert world.sms.sent[-1].to == alice.mfa_phone_number
    assert [e.member_id for e in world.events.named("session.step_up_required")] == [alice.member_id]
    assert world.check(alice).step_up_required  # still refused until the new code is in, and no third SMS
    assert len(world.sms.sent) == 2

    assert world.verify(alice).session_token == session  # the new code, with the session: the step-up completes
    assert world.check(alice).step_up_required is False
    assert world.events.named("session.step_up_completed")


def text_until_refused(world: MfaWorld, member: Member, times: int) -> list[str | None]:
    """``times`` explicit sends, a minute apart: None for each SMS that went out, else the refusal."""
    answers: list[str | None] = []
    for _ in range(times):
        world.idle(minutes=1)
        try:
            world.send(member)
            answers.append(None)
        except MfaError as exc:
            answers.append(exc.error_type)
    return answers


def test_nobody_gets_more_than_3_texts_in_10_minutes_under_a_policy_that_limits_to_3() -> None:
    world = MfaWorld(Policy(send_limit_per_member=(3, 600)))
    alice = world.member(phone=True)
    world.login(alice)  # the automatic SMS is the first of three
    assert text_until_refused(world, alice, 3) == [None, None, "too_many_requests"]
    assert isinstance(world.last.error, MfaError)
    assert world.last.result is None
    assert world.login(alice).mfa_required.secondary_auth_initiated is None  # a new login does not text either
    nobody_gets_more_than_3_texts_in_10_minutes(world)
    assert len(world.sms.sent) == 3

    world.idle(minutes=7)  # ten minutes after the first SMS the window has room again
    assert text_until_refused(world, alice, 1) == [None]
    nobody_gets_more_than_3_texts_in_10_minutes(world)


def test_nobody_gets_more_than_3_texts_in_10_minutes_fails_under_the_default_limit_of_5() -> None:
    world = MfaWorld()
    alice = world.member(phone=True)
    world.login(alice)
    assert text_until_refused(world, alice, 5) == [None, None, None, None, "too_many_requests"]
    with pytest.raises(AssertionError, match=f"{alice.member_id} got 5 texts within 10 minutes"):
        nobody_gets_more_than_3_texts_in_10_minutes(world)


def test_a_member_with_totp_cannot_attach_a_phone_without_passing_totp_first() -> None:
    world = MfaWorld()
    cara = world.member(totp_registration_id="totp-cara")
    login = world.login(cara)
    assert login.mfa_required is not None
    assert login.mfa_required.member_options.totp_registration_id == "totp-cara"
    assert world.sms.sent == []
    number = "+14155550142"

    assert refused(lambda: world.send(cara, number)) == "insufficient_factors"  # the IST carries no factor
    assert refused(lambda: world.send(cara, number, token={})) == "no_associated_session_passed_in"
    assert world.flow.get_member(cara.organization_id, cara.member_id).mfa_phone_number == ""
    assert world.sms.sent == []
    assert world.events.named("phone.linked") == []

    world.record_factor(cara, "totp")  # the application verified her TOTP code: a session carrying it
    world.send(cara, number)
    assert [m.to for m in world.sms.sent] == [number]
    world.verify(cara)
    linked = world.flow.get_member(cara.organization_id, cara.member_id)
    assert (linked.mfa_phone_number, linked.mfa_phone_number_verified) == (number, True)


# --- the world and its helpers -------------------------------------------------------------------------------


def test_world_runs_the_policy_on_a_fake_clock_and_a_recording_transport() -> None:
    policy = Policy.hardened()
    world = MfaWorld(policy)
    assert world.policy is policy
    assert isinstance(world.flow, MfaFlow)
    assert world.flow.policy is policy
    assert isinstance(world.clock, FakeClock)
    assert isinstance(world.sms, FakeTransport)
    alice = world.member(phone=True)
    world.login(alice)
    assert [m.member_id for m in world.sms.sent] == [alice.member_id]  # the flow texts through world.sms
    world.idle(31)
    assert world.clock.now() == FakeClock().now() + 31
    world.send(alice)  # hardened's 30 s cooldown has passed on the world's clock, not the system's
    assert len(world.sms.sent) == 2
    assert MfaWorld().policy == Policy()


def test_events_holds_every_event_in_order_and_named_filters_them() -> None:
    world = MfaWorld()
    alice = world.member(phone=True)
    assert isinstance(world.events, Events)
    assert world.events == []
    world.login(alice)
    with pytest.raises(MfaError):
        world.verify(alice, wrong(world.code(alice)))
    world.verify(alice)
    names = [e.name for e in world.events]
    assert names[0] == "otp.sent"
    assert names.index("otp.failed") < names.index("otp.verified")
    assert all(isinstance(e, Event) for e in world.events)
    assert world.events.named("otp.failed") == [e for e in world.events if e.name == "otp.failed"]
    assert len(world.events.named("otp.failed")) == 1
    assert world.events.named("member.locked") == []


def test_organization_is_required_for_all_by_default_and_stored_in_the_directory() -> None:
    world = MfaWorld()
    first = world.organization()
    second = world.organization(organization_id="organization-bolt", organization_slug="bolt",
                                mfa_policy="OPTIONAL", mfa_methods="RESTRICTED", allowed_mfa_methods=["totp"])
    assert first.mfa_policy == "REQUIRED_FOR_ALL"
    assert first.organization_id != second.organization_id
    assert world.flow.get_organization(first.organization_id) == first
    assert world.flow.get_organization("bolt") == second  # stored as given, found by slug too
    assert (second.mfa_policy, second.allowed_mfa_methods) == ("OPTIONAL", ("totp",))


def test_member_joins_the_newest_organization_or_one_made_for_it() -> None:
    world = MfaWorld()
    alice = world.member()  # no organization yet: one is made, REQUIRED_FOR_ALL
    made = world.flow.get_organization(alice.organization_id)
    assert made.mfa_policy == "REQUIRED_FOR_ALL"
    other = world.organization(organization_id="organization-other")
    assert world.member().organization_id == "organization-other"
    assert world.member(made).organization_id == made.organization_id
    assert world.member(made.organization_id).organization_id == made.organization_id
    assert world.member(other, member_id="member-zed", name="Zed").member_id == "member-zed"
    stored = world.flow.get_member("organization-other", "member-zed")
    assert (stored.name, stored.mfa_phone_number) == ("Zed", "")
    assert list(world.members) == ["member-test-1", "member-test-2", "member-test-3", "member-test-4", "member-zed"]
    assert alice.member_id == "member-test-1"


def test_member_phone_true_links_a_distinct_fictional_number_to_each_member() -> None:
    world = MfaWorld()
    taken = world.member(phone="+14155550100")  # the allocator's first number, taken by hand
    numbers = [world.member(phone=True).mfa_phone_number for _ in range(120)]  # more than one 555-01xx block
    assert len(set(numbers)) == len(numbers)
    assert taken.mfa_phone_number not in numbers
    assert all(FICTIONAL.match(n) for n in numbers), [n for n in numbers if not FICTIONAL.match(n)]
    again = MfaWorld().member(phone=True)  # another world allocates from the start, on its own
    assert again.mfa_phone_number == "+14155550100"


def test_member_phone_argument_decides_the_linked_number_and_its_verification() -> None:
    world = MfaWorld()
    none = world.member()
    given = world.member(phone="+16135550123")
    unverified = world.member(phone=True, verified=False)
    assert (none.mfa_phone_number, none.mfa_phone_number_verified) == ("", False)
    assert (given.mfa_phone_number, given.mfa_phone_number_verified) == ("+16135550123", True)
    assert unverified.mfa_phone_number
    assert unverified.mfa_phone_number_verified is False
    stored = world.flow.get_member(unverified.organization_id, unverified.member_id)
    assert (stored.mfa_phone_number, stored.mfa_phone_number_verified) == (unverified.mfa_phone_number, False)
    world.login(unverified)  # an unverified linked phone still gets the automatic code
    assert world.sms.sent[-1].to == unverified.mfa_phone_number
    assert world.login(none).mfa_required.secondary_auth_initiated is None


def test_login_records_a_step_and_keeps_the_ist_or_the_session() -> None:
    world = MfaWorld()
    alice = world.member(phone=True)
    result = world.login(alice)
    step = world.last
    assert isinstance(step, Step)
    assert world.steps == [step]
    assert (step.action, step.member_id, step.args, step.at) == ("login", alice.member_id, {"via": "password"},
                                                                 world.clock.now())
    assert step.result is result
    assert step.error is None
    assert world.ist(alice) == result.intermediate_session_token
    assert world.session(alice) is None

    world.organization(mfa_policy="OPTIONAL")
    free = world.member()
    session = world.login(free.member_id, via="oauth")  # a member may be named by its id
    assert world.session(free) == session.session_token
    assert world.ist(free) is None
    assert world.last.args == {"via": "oauth"}


def test_login_refusal_is_raised_and_kept_on_the_step() -> None:
    world = MfaWorld()
    alice = world.member(phone=True)
    assert refused(lambda: world.login(alice, via="saml")) == "bad_request"
    assert world.last.action == "login"
    assert world.last.result is None
    assert isinstance(world.last.error, MfaError)
    assert world.last.error.error_type == "bad_request"
    with pytest.raises(LookupError, match="no member 'member-nobody'"):
        world.login("member-nobody")


def test_code_is_the_newest_code_sent_to_that_member() -> None:
    world = MfaWorld()
    alice, bob = world.member(phone=True), world.member(phone=True)
    with pytest.raises(LookupError):
        world.code(alice)
    world.login(alice)
    world.send(alice)
    world.login(bob)  # a newer SMS, to someone else
    alice_codes = [m.code for m in world.sms.sent if m.member_id == alice.member_id]
    assert len(alice_codes) == 2
    assert world.code(alice) == alice_codes[-1]
    assert world.code(bob) == world.sms.sent[-1].code


def test_verify_uses_the_newest_code_and_the_members_current_token_by_default() -> None:
    world = MfaWorld()
    alice = world.member(phone=True)
    world.login(alice)
    refusal = refused(lambda: world.verify(alice, wrong(world.code(alice))))
    assert refusal == "otp_code_not_found"
    assert world.last.error.error_type == refusal
    assert world.last.args["token"] == ["intermediate_session_token"]
    result = world.verify(alice)
    assert world.last.args == {"code": None, "token": ["intermediate_session_token"]}
    assert world.last.result is result
    assert world.session(alice) == result.session_token
    assert [f.type for f in result.member_session.authentication_factors] == ["password", "otp"]


def test_verify_with_a_token_given_uses_that_token() -> None:
    world = MfaWorld()
    alice, bob = world.member(phone=True), world.member(phone=True)
    world.login(bob)
    world.verify(bob)
    world.login(alice)
    assert refused(lambda: world.verify(alice, token={"session_token": world.session(bob)})) == \
        "member_session_member_id_mismatch"
    assert world.last.args["token"] == ["session_token"]
    assert refused(lambda: world.verify(alice, token={})) == "no_session_arguments"
    assert world.ist(alice)  # nothing consumed: the right token still works
    assert world.verify(alice, token={"intermediate_session_token": world.ist(alice)}).session_token


def test_idle_moves_the_clock_and_records_the_time_passed() -> None:
    world = MfaWorld()
    start = world.clock.now()
    assert world.idle(5, minutes=2, hours=1) == start + 5 + 120 + 3600 == world.clock.now()
    assert (world.last.action, world.last.member_id, world.last.args) == ("advance", None, {"seconds": 3725})
    assert world.last.at == world.clock.now()
    with pytest.raises(ConfigurationError):
        world.idle(-1)
    assert world.clock.now() == start + 3725
    assert len(world.steps) == 1


def test_session_is_the_members_current_session_or_none() -> None:
    world = MfaWorld()
    alice = world.member(phone=True)
    assert world.session(alice) is None
    world.login(alice)
    assert world.session(alice) is None
    token = world.verify(alice).session_token
    assert world.session(alice) == token
    assert world.session(alice.member_id) == token
    assert world.flow.authenticate_session(session_token=token).member_session.member_id == alice.member_id


def test_steps_follow_every_call_in_order() -> None:
    world = MfaWorld()
    alice = world.member(phone=True)
    world.login(alice, via="sso")
    world.idle(10)
    world.verify(alice)
    world.check(alice)
    assert [(s.action, s.member_id) for s in world.steps] == [
        ("login", alice.member_id), ("advance", None), ("verify", alice.member_id),
        ("check_session", alice.member_id)]
    assert [s.at - world.steps[0].at for s in world.steps] == [0, 10, 10, 10]
    assert world.last is world.steps[-1]
    assert world.last.result.step_up_required is False


POLICY_FILE = """\
[policy]
resend_cooldown = 30
send_limit_per_member = [3, 600]
inactivity_timeout = 900

[[organizations]]
organization_id = "organization-acme"
organization_slug = "acme"
mfa_policy = "REQUIRED_FOR_ALL"

[[members]]
member_id = "member-alice"
organization_id = "organization-acme"
mfa_phone_number = "+14155550123"
mfa_phone_number_verified = true
"""


def test_from_toml_reads_the_policy_and_puts_the_records(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(POLICY_FILE, "utf-8")
    world = MfaWorld.from_toml(path)
    assert world.policy == Policy(resend_cooldown=30, send_limit_per_member=(3, 600), inactivity_timeout=900)
    assert world.flow.policy == world.policy
    assert world.flow.get_organization("acme").mfa_policy == "REQUIRED_FOR_ALL"
    assert world.login("member-alice").mfa_required.secondary_auth_initiated == "sms_otp"
    assert world.sms.sent[-1].to == "+14155550123"
    bob = world.member(phone=True)  # joins the file's organization, on a number the file did not take
    assert bob.organization_id == "organization-acme"
    assert bob.mfa_phone_number != "+14155550123"


def test_from_toml_without_a_policy_table_uses_the_defaults(tmp_path: Path) -> None:
    path = tmp_path / "records.toml"
    path.write_text(POLICY_FILE.split("\n\n", 1)[1], "utf-8")
    world = MfaWorld.from_toml(path)
    assert world.policy == Policy()
    assert "member-alice" in world.members


def test_from_toml_refuses_a_wrong_key_naming_the_file_and_the_key(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(POLICY_FILE.replace("resend_cooldown", "resend_cooldwn"), "utf-8")
    with pytest.raises(ConfigurationError) as info:
        MfaWorld.from_toml(path)
    assert str(path) in str(info.value)
    assert "resend_cooldwn" in str(info.value)


def test_flow_factory_builds_the_flow_the_world_drives() -> None:
    calls: list[dict[str, Any]] = []

    def factory(policy: Policy, *, clock: FakeClock, transport: FakeTransport, events: list[Any]) -> MfaFlow:
        calls.append({"policy": policy, "clock": clock, "transport": transport, "events": events})
        return MfaFlow(policy=Policy(otp_ttl=300), clock=clock, transport=transport, events=events)

    policy = Policy()
    world = MfaWorld(policy, flow_factory=factory)
    assert len(calls) == 1
    assert calls[0]["policy"] is policy
    assert calls[0]["clock"] is world.clock
    assert calls[0]["transport"] is world.sms
    assert world.flow.policy.otp_ttl == 300
    assert world.policy is policy
    alice = world.member(phone=True)
    world.login(alice)
    world.idle(200)  # past the policy's 120 s, within the factory's 300 s: the factory's flow answers
    assert world.verify(alice).session_token
    assert [e.name for e in world.events][:1] == ["otp.sent"]  # the world's sink was passed through


class Wrapped:
    """Not an MfaFlow: anything with the public methods (and a directory) is driven the same way."""

    def __init__(self, flow: MfaFlow) -> None:
        self.inner, self.directory, self.calls = flow, flow.directory, []

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.inner, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            return method(*args, **kwargs)

        return call


def test_flow_factory_may_return_anything_with_the_public_methods() -> None:
    world = MfaWorld(flow_factory=lambda policy, **kw: Wrapped(MfaFlow(policy=policy, **kw)))
    alice = world.member(phone=True)
    world.login(alice, via="sso")
    world.verify(alice)
    world.idle(minutes=31)
    assert world.check(alice).step_up_required
    world.verify(alice)
    world.delete_phone(alice)
    assert world.flow.calls == ["authenticate_primary", "authenticate_sms_otp", "authenticate_session",
                                "authenticate_sms_otp", "delete_mfa_phone_number"]
    assert world.flow.inner.get_member(alice.organization_id, alice.member_id).mfa_phone_number == ""


class ReadOnlyDirectory:
    """An application's user table, read-only: the flow runs on it, but a world cannot add records."""

    def __init__(self) -> None:
        self._records = MemoryDirectory()

    def get_organization(self, ref: str) -> Organization | None:
        return self._records.get_organization(ref)

    def get_member(self, organization_id: str, member_ref: str) -> Member | None:
        return self._records.get_member(organization_id, member_ref)

    def find_member_by_phone(self, organization_id: str, e164: str) -> Member | None:
        return self._records.find_member_by_phone(organization_id, e164)


def test_a_flow_whose_directory_cannot_be_written_is_a_configuration_error() -> None:
    world = MfaWorld(flow_factory=lambda policy, **kw: MfaFlow(policy=policy, directory=ReadOnlyDirectory(), **kw))
    for make in (world.organization, world.member):
        with pytest.raises(ConfigurationError, match="directory cannot be written"):
            make()
    assert world.members == {}
    assert world.steps == []


def test_several_worlds_never_share_state() -> None:
    one, two = MfaWorld(), MfaWorld()
    alice = one.member(phone=True)
    one.login(alice)
    one.idle(hours=2)
    assert refused(lambda: two.flow.get_member(alice.organization_id, alice.member_id)) == "organization_not_found"
    assert two.sms.sent == []
    assert two.events == []
    assert two.steps == []
    assert two.members == {}
    assert two.clock.now() == one.clock.now() - 7200
    assert one.flow.store is not two.flow.store
    assert one.flow.directory is not two.flow.directory
    twin = two.member(phone=True)  # the same ids and number, in a world of its own
    assert (twin.member_id, twin.mfa_phone_number) == (alice.member_id, alice.mfa_phone_number)
    two.login(twin)
    assert len(one.sms.sent) == len(two.sms.sent) == 1
    assert one.ist(alice) != two.ist(twin)
