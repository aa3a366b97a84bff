"""The session and member lifecycle (spec §1, §6.13; the lifecycle issue): ``revoke_session``,
``list_member_sessions`` and ``unlock_member`` — locally on both orchestrators, in Stytch mode over a scripted
Stytch (tests/fake_stytch.py), and through ``mfa-flow serve`` with the official SDK.

The local rules run on the store matrix's memory world (tests/stores_matrix.py), sync and async;
tests/test_lifecycle_stores.py runs revocation on every store, across processes, and counts round trips.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from mfa_flow import AuthenticateResult, Member, MfaError, Organization
from mfa_flow.crypto import token_digest
from mfa_flow.errors import ProviderError
from mfa_flow.state import SessionPhase, keys
from mfa_flow.testing import FakeClock
from tests.emulator_server import EmulatorProcess
from tests.fake_stytch import PROJECT_ID, SECRET, FakeStytch, Recorded, answer, error, session_answer
from tests.helpers_rules import names, wrong
from tests.stores_matrix import (
    MEMBER,
    MEMBER_2,
    ORCHESTRATORS,
    ORG,
    PHONE,
    PHONELESS,
    Matrix,
    World,
    ist_and_code,
    matrix_fixture,  # noqa: F401 - the ``matrix`` fixture
)
from tests.test_emulator_sdk import ADA as SDK_ADA
from tests.test_emulator_sdk import CAROL as SDK_CAROL
from tests.test_emulator_sdk import FIXTURES as SDK_FIXTURES
from tests.test_emulator_sdk import ORG as SDK_ORG
from tests.test_emulator_sdk import Sdk, session_of
from tests.test_stytch_mode import ACME, ADA, ADA_EXTERNAL_ID, CODE, IST, MEMBERS, ORG_SLUG, SESSION, Env, Twin

__all__ = ["ROOMY", "assert_revoked", "call", "lock", "refused", "sid", "signed_in", "step_up_code",
           "wrongs_until_locked"]

ORG2 = "organization-test-2"
ROOMY: dict[str, Any] = {"send_limit_per_member": (1000, 600), "send_limit_per_phone": (1000, 600)}
#: Stytch's member_session object (reference §2; the official SDK's MemberSession model).
MEMBER_SESSION_KEYS = frozenset({"member_session_id", "member_id", "organization_id", "organization_slug",
                                 "started_at", "last_accessed_at", "expires_at", "authentication_factors",
                                 "roles", "custom_claims"})
SELECTORS = ("session_token", "member_session_id", "member_id")


# ------------------------------------------------------------------------------------------------ helpers


def call(world: World, method: str, *args: Any, **kwargs: Any) -> Any:
    """``world.flow.<method>(...)``, run to completion on the world's loop for the async orchestrator."""
    answer_ = getattr(world.flow, method)(*args, **kwargs)
    return world.loop.run_until_complete(answer_) if world.loop is not None else answer_


def refused(world: World, error_type: str, method: str, *args: Any, **kwargs: Any) -> MfaError:
    with pytest.raises(MfaError) as caught:
        call(world, method, *args, **kwargs)
    assert caught.value.error_type == error_type, repr(caught.value)
    return caught.value


def signed_in(world: World, member_id: str = MEMBER, organization_id: str = ORG, **kwargs: Any) -> AuthenticateResult:
    """Primary authentication, then the automatic code: a fresh session (``kwargs`` go to authenticate)."""
    primary = call(world, "authenticate_primary", organization_id, member_id, "email_magic_link")
    ist, code = ist_and_code(primary, world.transport, member_id)
    result: AuthenticateResult = call(world, "authenticate_sms_otp", organization_id, member_id, code,
                                      intermediate_session_token=ist, **kwargs)
    return result


def step_up_code(world: World, session: AuthenticateResult) -> str:
    """The session goes idle (1801 s); authenticate_session sends the step-up code bound to it."""
    world.clock.advance(1801)
    check = call(world, "authenticate_session", session_token=session.session_token)
    assert (check.step_up_required, check.secondary_auth_initiated) == (True, "sms_otp")
    return world.transport.last_code(session.member_id)


def sid(session: AuthenticateResult) -> str:
    """The member_session_id of an authenticate result's session."""
    assert session.member_session is not None
    return session.member_session.member_session_id


def selector_of(selector: str, session: AuthenticateResult) -> dict[str, str]:
    value = {"session_token": session.session_token, "member_id": session.member_id,
             "member_session_id": sid(session)}[selector]
    return {selector: value}


def assert_revoked(world: World, token: str, member_id: str = MEMBER, organization_id: str = ORG) -> None:
    """Every call that takes a session token refuses it with session_not_found; nothing is sent or counted."""
    attempts, failures = len(world.transport.attempts), world.failures(member_id)
    refused(world, "session_not_found", "authenticate_session", session_token=token)
    refused(world, "session_not_found", "send_sms_otp", organization_id, member_id, session_token=token)
    refused(world, "session_not_found", "authenticate_sms_otp", organization_id, member_id, "123456",
            session_token=token)
    refused(world, "session_not_found", "record_mfa_factor", organization_id, member_id, "totp", session_token=token)
    refused(world, "session_not_found", "authenticate_primary", organization_id, member_id, "email_magic_link",
            session_token=token)
    assert len(world.transport.attempts) == attempts
    assert world.failures(member_id) == failures


def assert_live(world: World, session: AuthenticateResult) -> None:
    check = call(world, "authenticate_session", session_token=session.session_token)
    assert check.step_up_required is False
    assert check.member_session.member_session_id == sid(session)


def revoked_ids(world: World, since: int = 0) -> list[str]:
    return [e.data["member_session_id"] for e in world.events[since:] if e.name == "session.revoked"]


def listed_ids(world: World, member_id: str = MEMBER, organization_id: str = ORG) -> list[str]:
    return [s.member_session_id for s in call(world, "list_member_sessions", organization_id, member_id)]


@pytest.fixture(params=ORCHESTRATORS)
def orchestrator(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_world(matrix: Matrix, orchestrator: str) -> Callable[..., World]:
    """``make_world(**policy)``: a memory world on the test's orchestrator, with roomy send limits."""
    return lambda **policy: matrix.make_flow("memory", orchestrator, **{**ROOMY, **policy})  # type: ignore[arg-type]


@pytest.fixture
def world(make_world: Callable[..., World]) -> World:
    return make_world()


# ============================================================================================ revoke_session


@pytest.mark.parametrize("selector", ["session_token", "member_session_id"])
def test_revoke_one_session_ends_it_everywhere_and_leaves_the_others(world: World, selector: str) -> None:
    first, second, other = signed_in(world), signed_in(world), signed_in(world, MEMBER_2)
    since = len(world.events)
    assert call(world, "revoke_session", **selector_of(selector, first)) is None
    revoked = [e for e in world.events[since:] if e.name == "session.revoked"]
    assert [(e.organization_id, e.member_id, e.data) for e in revoked] == [
        (ORG, MEMBER, {"member_session_id": sid(first), "selector": selector})]
    assert names(world.events[since:]) == ["session.revoked"]
    assert_revoked(world, first.session_token)
    assert_live(world, second)
    assert_live(world, other)
    assert listed_ids(world) == [sid(second)]
    assert world.read(keys.session(token_digest(first.session_token))) is None
    assert world.read(keys.session_id(sid(first))) is None


def test_revoke_by_member_id_ends_every_session_of_the_member(world: World) -> None:
    first, second, other = signed_in(world), signed_in(world), signed_in(world, MEMBER_2)
    since = len(world.events)
    assert call(world, "revoke_session", member_id=MEMBER) is None
    assert sorted(revoked_ids(world, since)) == sorted(sid(s) for s in (first, second))
    assert {e.data["selector"] for e in world.events[since:]} == {"member_id"}
    assert names(world.events[since:]) == ["session.revoked"] * 2
    assert_revoked(world, first.session_token)
    assert_revoked(world, second.session_token)
    assert_live(world, other)
    assert listed_ids(world) == []
    assert world.read(keys.sessions(MEMBER)) is None  # the member's index goes with its last session
    assert listed_ids(world, MEMBER_2) == [sid(other)]


@pytest.mark.parametrize("selectors", [
    {},
    {"session_token": "x", "member_id": MEMBER},
    {"member_session_id": "x", "session_token": "y"},
    {"member_session_id": "x", "session_jwt": "y", "member_id": MEMBER, "session_token": "z"},
])
def test_revoke_takes_exactly_one_selector(world: World, selectors: dict[str, str]) -> None:
    session = signed_in(world)
    before, since = world.snapshot(), len(world.events)
    error_ = refused(world, "bad_request", "revoke_session", **selectors)
    assert error_.status_code == 400
    assert world.snapshot() == before
    assert world.events[since:] == []
    assert_live(world, session)


def test_revoke_refuses_a_session_jwt(world: World) -> None:
    """The flow keeps its sessions by session_token: a JWT selector cannot name one."""
    session = signed_in(world)
    before = world.snapshot()
    error_ = refused(world, "unable_to_parse_session_jwt", "revoke_session",
                     session_jwt="eyJhbGciOiJIUzI1NiJ9.e30.c2ln")
    assert error_.status_code == 401
    assert world.snapshot() == before
    assert_live(world, session)


def test_revoke_of_an_unknown_or_ended_session_is_session_not_found(world: World) -> None:
    short = signed_in(world, session_duration_minutes=5)
    kept = signed_in(world)
    call(world, "revoke_session", session_token=kept.session_token)
    world.clock.advance(300)  # `short` expires exactly now
    before, since = world.snapshot(), len(world.events)
    for selector in ({"session_token": "session-token-never-issued"}, {"member_session_id": "member-session-nope"},
                     selector_of("session_token", kept), selector_of("member_session_id", kept),
                     selector_of("session_token", short), selector_of("member_session_id", short)):
        assert refused(world, "session_not_found", "revoke_session", **selector).status_code == 404
    assert world.snapshot() == before
    assert world.events[since:] == []


@pytest.mark.parametrize("member_id", [PHONELESS, "member-test-unknown"])
def test_revoke_by_member_id_without_live_sessions_changes_nothing(world: World, member_id: str) -> None:
    session = signed_in(world)
    before, since = world.snapshot(), len(world.events)
    assert call(world, "revoke_session", member_id=member_id) is None
    assert world.snapshot() == before
    assert world.events[since:] == []
    assert_live(world, session)


def test_revoke_by_member_id_skips_sessions_that_already_expired(world: World) -> None:
    short = signed_in(world, session_duration_minutes=5)
    world.clock.advance(10)
    kept = signed_in(world)
    world.clock.advance(300)
    since = len(world.events)
    call(world, "revoke_session", member_id=MEMBER)
    assert revoked_ids(world, since) == [sid(kept)]
    assert_revoked(world, short.session_token)
    assert_revoked(world, kept.session_token)


@pytest.mark.parametrize("selector", SELECTORS)
def test_a_step_up_code_bound_to_the_revoked_session_dies_with_it(world: World, selector: str) -> None:
    session = signed_in(world)
    code = step_up_code(world, session)
    assert world.live_code() is not None
    call(world, "revoke_session", **selector_of(selector, session))
    commit = world.recorder.log[-1]  # one commit ends the session, its reference and its code
    assert {key: w.value for key, w in commit.writes.items() if w.value is None} == {
        keys.session(token_digest(session.session_token)): None,
        keys.session_id(sid(session)): None,
        keys.code(ORG, MEMBER): None,
        keys.sessions(MEMBER): None,
    }
    assert world.live_code() is None
    # The right code with a valid token of the member (a discovery IST: nothing is sent) finds no code to check;
    # had the code lived, it would have been a wrong code (bound to the session), counted.
    ist = call(world, "authenticate_primary", ORG, MEMBER, "discovery").intermediate_session_token
    refused(world, "unable_to_auth_otp_code", "authenticate_sms_otp", ORG, MEMBER, code,
            intermediate_session_token=ist)
    assert world.failures() == 0


def test_a_step_up_code_survives_the_revoke_of_another_session(world: World) -> None:
    idle = signed_in(world)
    world.clock.advance(1801)
    fresh = signed_in(world)
    check = call(world, "authenticate_session", session_token=idle.session_token)
    assert check.secondary_auth_initiated == "sms_otp"
    code = world.transport.last_code(MEMBER)
    call(world, "revoke_session", session_token=fresh.session_token)
    assert_revoked(world, fresh.session_token)
    assert world.live_code() is not None
    since = len(world.events)
    stepped = call(world, "authenticate_sms_otp", ORG, MEMBER, code, session_token=idle.session_token)
    assert stepped.session_token == idle.session_token
    assert names(world.events[since:])[-2:] == ["otp.verified", "session.step_up_completed"]
    assert_live(world, idle)


@pytest.mark.parametrize("selector", SELECTORS)
def test_a_login_code_bound_to_an_ist_survives_the_revoke(world: World, selector: str) -> None:
    session = signed_in(world)
    ist, code = ist_and_code(call(world, "authenticate_primary", ORG, MEMBER, "email_magic_link"), world.transport,
                             MEMBER)
    call(world, "revoke_session", **selector_of(selector, session))
    assert_revoked(world, session.session_token)
    done = call(world, "authenticate_sms_otp", ORG, MEMBER, code, intermediate_session_token=ist)
    assert done.session_token
    assert listed_ids(world) == [sid(done)]


# ====================================================================================== list_member_sessions


def test_list_member_sessions_is_newest_first_in_stytchs_shape(world: World) -> None:
    first = signed_in(world)
    world.clock.advance(10)
    second = signed_in(world)
    world.clock.advance(10)
    third = signed_in(world)
    signed_in(world, MEMBER_2)
    listed = call(world, "list_member_sessions", ORG, MEMBER)
    assert [s.to_dict() for s in listed] == [s.member_session.to_dict() for s in (third, second, first)]
    for session in listed:
        assert set(session.to_dict()) == MEMBER_SESSION_KEYS
        assert (session.member_id, session.organization_id, session.organization_slug) == (MEMBER, ORG, "acme")
    assert listed_ids(world, organization_id="acme") == listed_ids(world)  # the organization's slug names it too


def test_list_member_sessions_shows_only_the_given_organizations(world: World) -> None:
    """The index is by member id alone; the list filters by organization."""
    world.flow.directory.put_organization(Organization(ORG2, organization_slug="globex",
                                                       mfa_policy="REQUIRED_FOR_ALL"))
    world.flow.directory.put_member(Member(MEMBER, ORG2, mfa_phone_number=PHONE, mfa_phone_number_verified=True))
    here = signed_in(world)
    world.clock.advance(10)
    there = signed_in(world, organization_id=ORG2)
    assert listed_ids(world) == [sid(here)]
    assert listed_ids(world, organization_id=ORG2) == [sid(there)]
    assert call(world, "list_member_sessions", ORG2, MEMBER)[0].organization_slug == "globex"
    assert listed_ids(world, MEMBER_2) == []


def test_list_member_sessions_leaves_out_expired_and_revoked_sessions(world: World) -> None:
    short = signed_in(world, session_duration_minutes=5)
    world.clock.advance(10)
    long_ = signed_in(world)
    revoked = signed_in(world)
    call(world, "revoke_session", session_token=revoked.session_token)
    ids = [sid(long_), sid(short)]
    assert sorted(listed_ids(world)) == sorted(ids)
    world.clock.advance(289)  # `short` started 299 s ago: 1 s left
    assert sorted(listed_ids(world)) == sorted(ids)
    world.clock.advance(1)
    assert listed_ids(world) == [sid(long_)]


def test_list_member_sessions_refuses_an_unknown_organization_or_member(world: World) -> None:
    assert refused(world, "organization_not_found", "list_member_sessions", "organization-nope", MEMBER
                   ).status_code == 404
    assert refused(world, "member_not_found", "list_member_sessions", ORG, "member-nope").status_code == 404


@pytest.mark.parametrize("selector", SELECTORS)
def test_a_step_up_that_extends_a_session_keeps_it_listed_and_revocable(world: World, selector: str) -> None:
    """session_duration_minutes on the step-up moves the expiry: the session's id reference and index entry
    move with it, so it is listed and revocable by every selector until its new expiry."""
    session = signed_in(world)
    started = world.clock.now()
    code = step_up_code(world, session)
    stepped = call(world, "authenticate_sms_otp", ORG, MEMBER, code, session_token=session.session_token,
                   session_duration_minutes=120)
    new_expiry = world.clock.now() + 7200
    assert stepped.member_session.expires_at.timestamp() == new_expiry
    world.clock.advance(1000)
    assert_live(world, session)  # active: not idle by the time the first expiry has passed
    world.clock.advance(started + 3600 + 60 - world.clock.now())  # past the first expiry
    listed = call(world, "list_member_sessions", ORG, MEMBER)
    assert [(s.member_session_id, s.expires_at.timestamp()) for s in listed] == [
        (sid(session), new_expiry)]
    assert_live(world, session)
    since = len(world.events)
    call(world, "revoke_session", **selector_of(selector, session))
    assert revoked_ids(world, since) == [sid(session)]
    assert_revoked(world, session.session_token)
    assert listed_ids(world) == []


def test_an_extended_session_leaves_the_list_at_its_new_expiry(world: World) -> None:
    session = signed_in(world)
    code = step_up_code(world, session)
    call(world, "authenticate_sms_otp", ORG, MEMBER, code, session_token=session.session_token,
         session_duration_minutes=120)
    world.clock.advance(7199)
    assert listed_ids(world) == [sid(session)]
    world.clock.advance(1)
    assert listed_ids(world) == []
    refused(world, "session_not_found", "revoke_session", member_session_id=sid(session))
    refused(world, "session_not_found", "authenticate_session", session_token=session.session_token)


# ============================================================================================= unlock_member


def lock(world: World, member_id: str = MEMBER) -> str:
    """Three wrong codes at a threshold of 3: the member is locked. The login's code (killed by the lock)."""
    ist, code = ist_and_code(call(world, "authenticate_primary", ORG, member_id, "email_magic_link"),
                             world.transport, member_id)
    for _ in range(2):
        refused(world, "otp_code_not_found", "authenticate_sms_otp", ORG, member_id, wrong(code),
                intermediate_session_token=ist)
    refused(world, "user_lock_limit_reached", "authenticate_sms_otp", ORG, member_id, wrong(code),
            intermediate_session_token=ist)
    assert call(world, "get_member", ORG, member_id).is_locked is True
    return code


def wrongs_until_locked(world: World, member_id: str = MEMBER) -> list[str]:
    """A fresh login, then wrong codes until the member is locked (at most 5): the answers."""
    ist, code = ist_and_code(call(world, "authenticate_primary", ORG, member_id, "email_magic_link"),
                             world.transport, member_id)
    answers: list[str] = []
    while len(answers) < 5 and "user_lock_limit_reached" not in answers:
        with pytest.raises(MfaError) as caught:
            call(world, "authenticate_sms_otp", ORG, member_id, wrong(code), intermediate_session_token=ist)
        answers.append(caught.value.error_type)
    return answers


@pytest.fixture
def strict(make_world: Callable[..., World]) -> World:
    """A world with a lockout threshold of 3."""
    return make_world(lockout_threshold=3)


def test_unlock_member_ends_a_lock_and_resets_the_counter(strict: World) -> None:
    lock(strict)
    since = len(strict.events)
    member = call(strict, "unlock_member", ORG, MEMBER)
    assert (member.is_locked, member.lock_expires_at) == (False, None)
    assert member == call(strict, "get_member", ORG, MEMBER)
    events = strict.events[since:]
    assert names(events) == ["member.unlocked", "member.updated"]
    assert [(e.organization_id, e.member_id, e.data) for e in events] == [
        (ORG, MEMBER, {"was_locked": True}), (ORG, MEMBER, {"member": member})]
    assert strict.read(keys.guard(ORG, MEMBER)) is None  # an open guard with no failures: the default record
    # the counter starts again from 0: threshold - 1 wrong codes do not lock, the threshold-th does
    assert wrongs_until_locked(strict) == ["otp_code_not_found", "otp_code_not_found", "user_lock_limit_reached"]


def test_unlock_member_never_revives_the_code_the_lock_killed(strict: World) -> None:
    code = lock(strict)
    call(strict, "unlock_member", ORG, MEMBER)
    assert strict.live_code() is None
    ist = call(strict, "authenticate_primary", ORG, MEMBER, "discovery").intermediate_session_token  # sends nothing
    refused(strict, "unable_to_auth_otp_code", "authenticate_sms_otp", ORG, MEMBER, code,
            intermediate_session_token=ist)
    assert strict.failures() == 0


def test_unlock_member_resets_the_failures_of_a_member_not_locked(strict: World) -> None:
    ist, code = ist_and_code(call(strict, "authenticate_primary", ORG, MEMBER, "email_magic_link"),
                             strict.transport, MEMBER)
    for _ in range(2):
        refused(strict, "otp_code_not_found", "authenticate_sms_otp", ORG, MEMBER, wrong(code),
                intermediate_session_token=ist)
    assert strict.failures() == 2
    since = len(strict.events)
    member = call(strict, "unlock_member", ORG, MEMBER)
    assert member.is_locked is False
    # the merged view did not change (the counter is not part of it): no member.updated
    assert [(e.name, e.data) for e in strict.events[since:]] == [("member.unlocked", {"was_locked": False})]
    assert strict.failures() == 0
    for _ in range(2):  # two more wrong codes: 2 of 3, not locked
        refused(strict, "otp_code_not_found", "authenticate_sms_otp", ORG, MEMBER, wrong(code),
                intermediate_session_token=ist)
    assert call(strict, "get_member", ORG, MEMBER).is_locked is False
    assert call(strict, "authenticate_sms_otp", ORG, MEMBER, code, intermediate_session_token=ist).session_token


def test_unlock_member_of_a_member_neither_locked_nor_failing_changes_nothing(world: World) -> None:
    signed_in(world)
    before, since = world.snapshot(), len(world.events)
    member = call(world, "unlock_member", ORG, MEMBER)
    assert member == call(world, "get_member", ORG, MEMBER)
    assert member.is_locked is False
    assert world.snapshot() == before
    assert world.events[since:] == []


def test_unlock_member_refuses_an_unknown_organization_or_member(strict: World) -> None:
    lock(strict)
    before, since = strict.snapshot(), len(strict.events)
    assert refused(strict, "organization_not_found", "unlock_member", "organization-nope", MEMBER).status_code == 404
    assert refused(strict, "member_not_found", "unlock_member", ORG, "member-nope").status_code == 404
    assert strict.snapshot() == before
    assert strict.events[since:] == []
    assert call(strict, "get_member", ORG, MEMBER).is_locked is True


def test_unlock_member_is_an_admin_action_that_works_for_an_invited_member(strict: World) -> None:
    """unlock_member does not require an active member (the administrator's plane), unlike the member's own
    calls."""
    lock(strict)
    strict.flow.directory.put_member(Member(MEMBER, ORG, mfa_phone_number=PHONE, mfa_phone_number_verified=True,
                                            status="invited"))
    refused(strict, "action_available_only_for_active_members", "authenticate_primary", ORG, MEMBER, "password")
    since = len(strict.events)
    member = call(strict, "unlock_member", ORG, MEMBER)
    assert (member.status, member.is_locked) == ("invited", False)
    assert names(strict.events[since:]) == ["member.unlocked", "member.updated"]
    assert strict.read(keys.guard(ORG, MEMBER)) is None


# ============================================================================ a member who is no longer active


def set_status(world: World, status: str, organization_id: str = ORG) -> None:
    world.flow.directory.put_member(Member(MEMBER, organization_id, mfa_phone_number=PHONE,
                                           mfa_phone_number_verified=True, status=status))


def in_two_organizations(world: World) -> tuple[AuthenticateResult, AuthenticateResult, AuthenticateResult]:
    """Two sessions of MEMBER in ORG, one in ORG2, one of MEMBER_2."""
    world.flow.directory.put_organization(Organization(ORG2, organization_slug="globex",
                                                       mfa_policy="REQUIRED_FOR_ALL"))
    world.flow.directory.put_member(Member(MEMBER, ORG2, mfa_phone_number=PHONE, mfa_phone_number_verified=True))
    return signed_in(world), signed_in(world), signed_in(world, organization_id=ORG2)


SESSION_USES: dict[str, Callable[[World, str], Any]] = {
    "authenticate_session": lambda w, t: call(w, "authenticate_session", session_token=t),
    "send_sms_otp": lambda w, t: call(w, "send_sms_otp", ORG, MEMBER, session_token=t),
    "authenticate_sms_otp": lambda w, t: call(w, "authenticate_sms_otp", ORG, MEMBER, "123456", session_token=t),
    "record_mfa_factor": lambda w, t: call(w, "record_mfa_factor", ORG, MEMBER, "totp", session_token=t),
    "authenticate_primary": lambda w, t: call(w, "authenticate_primary", ORG, MEMBER, "password", session_token=t),
}


@pytest.mark.parametrize("use", SESSION_USES)
def test_an_inactive_member_loses_every_session_on_next_use(world: World, use: str) -> None:
    first, second, elsewhere = in_two_organizations(world)
    other = signed_in(world, MEMBER_2)
    set_status(world, "deleted")
    since, attempts = len(world.events), len(world.transport.attempts)
    with pytest.raises(MfaError) as caught:
        SESSION_USES[use](world, first.session_token)
    assert caught.value.error_type == "action_available_only_for_active_members"
    ended = [e for e in world.events[since:] if e.name == "session.revoked"]
    assert sorted((e.organization_id, e.member_id, e.data["member_session_id"], e.data["selector"]) for e in ended) \
        == sorted((s.member_session.organization_id, MEMBER, sid(s), "inactive_member")
                  for s in (first, second, elsewhere) if s.member_session is not None)
    assert len(world.transport.attempts) == attempts
    assert world.failures() == 0
    set_status(world, "active")  # reactivated: the sessions stay ended
    assert listed_ids(world) == []
    assert listed_ids(world, organization_id=ORG2) == []
    for session in (first, second):
        assert_revoked(world, session.session_token)
    assert_revoked(world, elsewhere.session_token, organization_id=ORG2)
    assert_live(world, other)


def test_an_inactive_members_step_up_code_ends_with_its_sessions(world: World) -> None:
    session = signed_in(world)
    code = step_up_code(world, session)
    set_status(world, "invited")
    refused(world, "action_available_only_for_active_members", "authenticate_sms_otp", ORG, MEMBER, code,
            session_token=session.session_token)
    assert world.live_code() is None
    assert world.read(keys.session(token_digest(session.session_token))) is None
    assert world.read(keys.session_id(sid(session))) is None


@pytest.mark.parametrize("status", ["invited", "pending", "deleted"])
def test_an_inactive_member_without_a_session_in_hand_keeps_its_sessions(world: World, status: str) -> None:
    """Only the use of a session ends them: a login (or a send with an IST) of an inactive member is refused
    and ends nothing; ``revoke_session(member_id=...)`` is the way to end them at once."""
    session = signed_in(world)
    ist, _code = world.login()
    set_status(world, status)
    since = len(world.events)
    refused(world, "action_available_only_for_active_members", "authenticate_primary", ORG, MEMBER, "password")
    refused(world, "action_available_only_for_active_members", "send_sms_otp", ORG, MEMBER,
            intermediate_session_token=ist)
    assert "session.revoked" not in names(world.events[since:])
    set_status(world, "active")
    assert_live(world, session)


# ================================================================================== Stytch mode (FakeStytch)


SESSIONS_PATH = "/v1/b2b/sessions"


class SessionsStytch(FakeStytch):
    """FakeStytch that also answers Stytch's sessions endpoints: ``POST /v1/b2b/sessions/revoke`` and
    ``GET /v1/b2b/sessions``, from ``sessions_script`` (steps as FakeStytch's) or, unscripted, with a bare
    success (revoke) or ``listed`` (list)."""

    def __init__(self, org: Organization, *members: Member) -> None:
        super().__init__(org, *members)
        self.sessions_script: deque[Any] = deque()
        self.listed: list[dict[str, Any]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        # FakeStytch records every request; a path it does not route gets its organization answer, replaced here.
        routed = super().__call__(request)
        if not request.url.path.startswith(SESSIONS_PATH):
            return routed
        if self.sessions_script:
            step = self.sessions_script.popleft()
            if isinstance(step, type):
                raise step("scripted failure", request=request)
            return step(request, self.requests[-1].body or {})  # type: ignore[no-any-return]
        body: dict[str, Any] = {"status_code": 200, "request_id": "request-id-test-sessions"}
        if request.method == "GET":
            body["member_sessions"] = self.listed
        return answer(200, body)

    def sessions_requests(self) -> list[Recorded]:
        return [r for r in self.requests if r.path.startswith(SESSIONS_PATH)]


class SessionsEnv(Env):
    """tests/test_stytch_mode.py's Env over a SessionsStytch."""

    stytch: SessionsStytch

    def __init__(self, twin: str) -> None:  # Env's own __init__ builds a plain FakeStytch
        self.stytch = SessionsStytch(ACME, *MEMBERS)
        self.client = self.stytch.client() if twin == "sync" else self.stytch.async_client()
        Twin.__init__(self, twin, PROJECT_ID, SECRET, clock=FakeClock(), client=self.client)

    def session(self, token: str = SESSION) -> AuthenticateResult:
        """A session Stytch issued through the flow's authenticate: the flow records it locally."""
        self.stytch.script("authenticate", self.session_step(token))
        result: AuthenticateResult = self.run("authenticate_sms_otp", ORG, ADA, CODE, intermediate_session_token=IST)
        assert result.session_token == token
        return result

    def local(self, token: str) -> Any:
        return self.stored(keys.session(token_digest(token)))


@pytest.fixture(params=["sync", "async"])
def stytch_env(request: pytest.FixtureRequest) -> Iterator[SessionsEnv]:
    env = SessionsEnv(str(request.param))
    yield env
    env.close()


@pytest.mark.parametrize("selector", SELECTORS)
def test_stytch_mode_revoke_removes_the_local_record_first_then_asks_stytch_once(
        stytch_env: SessionsEnv, selector: str) -> None:
    env = stytch_env
    session = env.session()
    other = env.session("session-token-from-stytch-other")
    local_at_request: list[Any] = []

    def revoked_at_stytch(_request: httpx.Request, _body: dict[str, Any]) -> httpx.Response:
        local_at_request.append(env.local(SESSION))
        return answer(200, {"status_code": 200, "request_id": "request-id-test-revoke"})

    env.stytch.sessions_script.append(revoked_at_stytch)
    since = len(env.events)
    assert env.run("revoke_session", **selector_of(selector, session)) is None
    # revoked here before Stytch was asked, and kept so until it would have expired: its token stays refused
    assert [record.state for record in local_at_request] == [SessionPhase.REVOKED]
    sent = env.stytch.sessions_requests()
    assert [(r.method, r.path, r.body, r.query, r.auth) for r in sent] == [
        ("POST", "/v1/b2b/sessions/revoke", selector_of(selector, session), {}, (PROJECT_ID, SECRET))]
    ended = [session] if selector != "member_id" else [session, other]
    assert sorted(e.data["member_session_id"] for e in env.events[since:] if e.name == "session.revoked") == sorted(
        sid(s) for s in ended)
    env.refused("session_not_found", "authenticate_session", session_token=SESSION)
    if selector != "member_id":
        assert env.run("authenticate_session", session_token=other.session_token).step_up_required is False


@pytest.mark.usefixtures("pauses")  # connect retries without their pauses
@pytest.mark.parametrize(("failure", "requests"), [
    (error("internal_server_error", 500), 1),  # Stytch's own 500
    (lambda _request, _body: answer(502, {"message": "bad gateway"}), 1),  # a proxy's answer
    (httpx.ConnectError, 3),  # surely not arrived: tried again twice
    (httpx.ReadTimeout, 1),  # may have arrived: never tried again
], ids=["stytch-500", "proxy-502", "connect-error", "read-timeout"])
def test_stytch_mode_a_failed_revoke_is_raised_but_the_session_is_already_gone_here(
        stytch_env: SessionsEnv, failure: Any, requests: int) -> None:
    env = stytch_env
    session = env.session()
    env.stytch.sessions_script.extend([failure] * requests)
    since = len(env.events)
    env.refused("internal_server_error", "revoke_session", session_token=SESSION)
    assert len(env.stytch.sessions_requests()) == requests
    assert env.local(SESSION).state is SessionPhase.REVOKED
    assert [e.data["member_session_id"] for e in env.events[since:] if e.name == "session.revoked"] == [
        sid(session)]
    env.refused("session_not_found", "authenticate_session", session_token=SESSION)
    # and Stytch, which did not hear the revoke, is never asked with that token again: refused here first
    asked = len(env.stytch.requests)
    env.refused("session_not_found", "send_sms_otp", ORG, ADA, session_token=SESSION)
    env.refused("session_not_found", "authenticate_sms_otp", ORG, ADA, "123456", session_token=SESSION)
    assert len(env.stytch.requests) == asked


@pytest.mark.parametrize("selector", [{"session_token": "session-token-issued-elsewhere"},
                                      {"member_session_id": "member-session-test-elsewhere"},
                                      {"member_id": ADA}])
def test_stytch_mode_a_session_unknown_here_is_forwarded_to_stytch_only(
        stytch_env: SessionsEnv, selector: dict[str, str]) -> None:
    env = stytch_env
    since = len(env.events)
    assert env.run("revoke_session", **selector) is None
    assert [(r.method, r.path, r.body) for r in env.stytch.sessions_requests()] == [
        ("POST", "/v1/b2b/sessions/revoke", selector)]
    assert env.events[since:] == []
    # Stytch's refusal of it is raised as Stytch gave it
    env.stytch.sessions_script.append(error("session_not_found", 404))
    refusal = env.refused("session_not_found", "revoke_session", **selector)
    assert refusal.request_id is not None
    assert refusal.request_id.startswith("request-id-test-")
    assert len(env.stytch.sessions_requests()) == 2


@pytest.mark.parametrize(("selectors", "error_type"), [
    ({"session_jwt": "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJtZW1iZXIifQ.c2ln"}, "unable_to_parse_session_jwt"),
    ({}, "bad_request"),
    ({"session_token": SESSION, "member_id": ADA}, "bad_request"),
])
def test_stytch_mode_revoke_refuses_a_jwt_or_a_wrong_selector_count_without_a_request(
        stytch_env: SessionsEnv, selectors: dict[str, str], error_type: str) -> None:
    env = stytch_env
    env.session()
    refusal = env.refused(error_type, "revoke_session", **selectors)
    assert refusal.request_id is None  # mfa_flow's own refusal
    assert env.stytch.sessions_requests() == []
    assert env.local(SESSION) is not None


def stytch_member_session(env: SessionsEnv, started_at: float) -> dict[str, Any]:
    member = env.stytch.members[ADA]
    item: dict[str, Any] = session_answer(member, env.stytch.org, now=started_at, phone=member.mfa_phone_number
                                          )["member_session"]
    return item


@pytest.mark.parametrize(("org_ref", "member_ref"), [(ORG, ADA), (ORG_SLUG, ADA_EXTERNAL_ID)])
def test_stytch_mode_list_member_sessions_is_stytchs_list(stytch_env: SessionsEnv, org_ref: str,
                                                          member_ref: str) -> None:
    env = stytch_env
    env.stytch.listed = [stytch_member_session(env, env.clock.now() - 60), stytch_member_session(env, 1767220000.0)]
    listed = env.run("list_member_sessions", org_ref, member_ref)
    sent = env.stytch.sessions_requests()
    assert [(r.method, r.path, r.body, r.query, r.auth) for r in sent] == [
        ("GET", "/v1/b2b/sessions", None, {"organization_id": ORG, "member_id": ADA}, (PROJECT_ID, SECRET))]
    assert [s.to_dict() for s in listed] == env.stytch.listed  # as Stytch gave them, in Stytch's order
    assert env.calls() == []  # nothing but reads


def test_stytch_mode_list_member_sessions_fails_closed_on_an_answer_without_member_sessions(
        stytch_env: SessionsEnv) -> None:
    env = stytch_env
    env.stytch.sessions_script.append(lambda _request, _body: answer(200, {"status_code": 200,
                                                                           "request_id": "request-id-test-x"}))
    refusal = env.refused("internal_server_error", "list_member_sessions", ORG, ADA)
    assert isinstance(refusal, ProviderError)
    assert "member_sessions" in str(refusal)


# ============================================================================ mfa-flow serve, the official SDK

#: Constructing B2BClient (aiohttp's BasicAuth) and every *_async call (aiohttp's ``auth=``) warn (spec §12).
SDK_BASIC_AUTH_WARNS = pytest.mark.filterwarnings("ignore:BasicAuth is deprecated:DeprecationWarning")
SDK_AUTH_WARNS = pytest.mark.filterwarnings("ignore:The 'auth' parameter is deprecated:DeprecationWarning")


class SessionsSdk(Sdk):
    """tests/test_emulator_sdk.py's Sdk with the B2B sessions API."""

    def list_sessions(self, organization_id: str, member_id: str) -> Any:
        return self._call(self.client.sessions, "get", organization_id, member_id)

    def revoke(self, **selector: str) -> Any:
        return self._call(self.client.sessions, "revoke", **selector)


@pytest.fixture
def server(start_emulator: Callable[..., EmulatorProcess]) -> EmulatorProcess:
    return start_emulator(SDK_FIXTURES)


@pytest.fixture(params=["sync", "async"])
def sdk(request: pytest.FixtureRequest, server: EmulatorProcess) -> Iterator[SessionsSdk]:
    client = SessionsSdk(server.url, str(request.param))
    yield client
    client.close()


def sdk_signed_in(server: EmulatorProcess, sdk: SessionsSdk, member_id: str = SDK_ADA) -> Any:
    server.advance(5)  # distinct start times: newest first is well defined
    return session_of(server, sdk, member_id)


@SDK_BASIC_AUTH_WARNS
@SDK_AUTH_WARNS
@pytest.mark.parametrize("selector", SELECTORS)
def test_emulator_lists_and_revokes_sessions_through_the_official_sdk(server: EmulatorProcess, sdk: SessionsSdk,
                                                                     selector: str) -> None:
    first, second = sdk_signed_in(server, sdk), sdk_signed_in(server, sdk)
    carol = sdk_signed_in(server, sdk, SDK_CAROL)
    listed = sdk.list_sessions(SDK_ORG, SDK_ADA).member_sessions
    assert [s.member_session_id for s in listed] == [second.member_session.member_session_id,
                                                     first.member_session.member_session_id]
    assert listed[0].model_dump() == second.member_session.model_dump()
    value = {"session_token": first.session_token, "member_session_id": first.member_session.member_session_id,
             "member_id": SDK_ADA}[selector]
    assert sdk.revoke(**{selector: value}).status_code == 200
    for token in [first.session_token] + ([second.session_token] if selector == "member_id" else []):
        sdk.refused("session_not_found", 404, sdk.authenticate, SDK_ORG, SDK_ADA, "123456", session_token=token)
        sdk.refused("session_not_found", 404, sdk.send, SDK_ORG, SDK_ADA, session_token=token)
    left = [] if selector == "member_id" else [second.member_session.member_session_id]
    assert [s.member_session_id for s in sdk.list_sessions(SDK_ORG, SDK_ADA).member_sessions] == left
    assert [s.member_session_id for s in sdk.list_sessions(SDK_ORG, SDK_CAROL).member_sessions] == [
        carol.member_session.member_session_id]
    sdk.refused("session_not_found", 404, sdk.revoke, session_token=first.session_token)


@SDK_BASIC_AUTH_WARNS
@SDK_AUTH_WARNS
def test_emulator_revoke_takes_exactly_one_selector_through_the_official_sdk(server: EmulatorProcess,
                                                                              sdk: SessionsSdk) -> None:
    session = sdk_signed_in(server, sdk)
    sdk.refused("bad_request", 400, sdk.revoke)
    sdk.refused("bad_request", 400, sdk.revoke, session_token=session.session_token, member_id=SDK_ADA)
    sdk.refused("unable_to_parse_session_jwt", 401, sdk.revoke, session_jwt="eyJhbGciOiJIUzI1NiJ9.e30.c2ln")
    assert [s.member_session_id for s in sdk.list_sessions(SDK_ORG, SDK_ADA).member_sessions] == [
        session.member_session.member_session_id]


@SDK_BASIC_AUTH_WARNS
def test_emulator_sessions_endpoints_refuse_bad_credentials(server: EmulatorProcess) -> None:
    good = SessionsSdk(server.url, "sync")
    intruder = SessionsSdk(server.url, "sync", secret="secret-test-not-this-project")
    try:
        session = sdk_signed_in(server, good)
        intruder.refused("unauthorized_credentials", 401, intruder.list_sessions, SDK_ORG, SDK_ADA)
        intruder.refused("unauthorized_credentials", 401, intruder.revoke, session_token=session.session_token)
        intruder.refused("unauthorized_credentials", 401, intruder.revoke, member_id=SDK_ADA)
        assert [s.member_session_id for s in good.list_sessions(SDK_ORG, SDK_ADA).member_sessions] == [
            session.member_session.member_session_id]
    finally:
        intruder.close()
        good.close()
