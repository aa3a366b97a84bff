"""One scenario suite, every store kind × both orchestrators, the same outcomes everywhere.

Each scenario is written once against ``World.api`` (tests/stores_matrix.py), which calls ``MfaFlow``
directly or runs ``AsyncMfaFlow`` on the world's event loop, over ``MemoryStore``, SQLite (a fresh file)
and Redis (the session redis-server, emptied per test).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from mfa_flow import Member, MfaFlow, Organization
from mfa_flow.state import MemberState, keys
from mfa_flow.testing import FakeTransport
from tests.helpers_rules import wrong
from tests.stores_matrix import (
    MEMBER,
    MEMBER_2,
    NEW_PHONE,
    NEW_PHONE_2,
    ORCHESTRATORS,
    ORG,
    PHONE,
    PHONELESS,
    SECRET_KEY,
    STORE_KINDS,
    Api,
    Matrix,
    World,
    error_type,
    matrix_fixture,  # noqa: F401 - the ``matrix`` fixture
)

CASES = [(kind, orchestrator) for kind in STORE_KINDS for orchestrator in ORCHESTRATORS]

MakeWorld = Callable[..., World]


@pytest.fixture(params=CASES, ids=[f"{k}-{o}" for k, o in CASES])
def make(request: pytest.FixtureRequest, matrix: Matrix) -> MakeWorld:
    """``make(**policy)`` → a world on this case's store kind and orchestrator."""
    kind, orchestrator = request.param
    return lambda **policy: matrix.make_flow(kind, orchestrator, **policy)


def names(world: World) -> list[str]:
    return [event.name for event in world.events]


def phoneless_ist(world: World) -> str:
    """Primary authentication of the member without a phone: an IST, no automatic send."""
    result = world.api.authenticate_primary(ORG, PHONELESS, "email_magic_link")
    assert result.mfa_required is not None
    assert result.mfa_required.secondary_auth_initiated is None
    return result.intermediate_session_token


def twin(world: World) -> tuple[Api, FakeTransport]:
    """Another flow of the same kind on the same store and key (another process sharing the store)."""
    transport = FakeTransport()
    flow = type(world.flow)(store=world.flow.store, secret_key=SECRET_KEY, clock=world.clock,
                            transport=transport, directory=world.flow.directory)
    run = None if isinstance(flow, MfaFlow) else world.api._run
    return Api(flow, run), transport


# ------------------------------------------------------------------------------------------ scenarios


def test_login_automatic_code_and_authenticate_give_a_session(make: MakeWorld) -> None:
    world = make()
    primary = world.api.authenticate_primary(ORG, MEMBER, "email_magic_link")
    assert primary.mfa_required is not None
    assert primary.mfa_required.secondary_auth_initiated == "sms_otp"
    assert primary.mfa_required.member_options.mfa_phone_number == "XXXXXXX0123"
    assert primary.session_token == ""
    assert primary.member_session is None
    ist = primary.intermediate_session_token
    assert ist
    assert [m.to for m in world.transport.sent] == [PHONE]
    code = world.transport.last_code(MEMBER)
    assert world.live_code(MEMBER) is not None

    result = world.api.authenticate_sms_otp(ORG, MEMBER, code, intermediate_session_token=ist)
    assert result.session_token
    assert result.session_token != ist
    assert result.member_session is not None
    assert [(f.type, f.delivery_method) for f in result.member_session.authentication_factors] == [
        ("magic_link", "email"), ("otp", "sms")]
    assert result.member.mfa_enrolled  # REQUIRED_FOR_ALL: a success enrols
    assert result.member.mfa_phone_number_verified
    assert world.live_code(MEMBER) is None  # single use
    assert world.failures(MEMBER) == 0

    check = world.api.authenticate_session(session_token=result.session_token)
    assert check.step_up_required is False
    assert check.member_session.member_session_id == result.member_session.member_session_id
    # The IST was consumed by the success, and the code with it.
    assert error_type(world.api.authenticate_sms_otp, ORG, MEMBER, code,
                      intermediate_session_token=ist) == "intermediate_session_not_found"
    assert {"otp.sent", "otp.verified", "session.created"} <= set(names(world))
    assert world.api.get_member(ORG, MEMBER).mfa_enrolled


def test_wrong_code_is_counted_and_the_right_one_then_resets_the_counter(make: MakeWorld) -> None:
    world = make()
    ist, code = world.login()
    assert error_type(world.api.authenticate_sms_otp, ORG, MEMBER, wrong(code),
                      intermediate_session_token=ist) == "otp_code_not_found"
    assert world.failures(MEMBER) == 1
    failed = [e for e in world.events if e.name == "otp.failed"]
    assert [e.reason for e in failed] == ["otp_code_not_found"]
    # A malformed code is a wrong code too, and counted.
    assert error_type(world.api.authenticate_sms_otp, ORG, MEMBER, "12345",
                      intermediate_session_token=ist) == "otp_code_not_found"
    assert world.failures(MEMBER) == 2
    assert world.api.authenticate_sms_otp(ORG, MEMBER, code, intermediate_session_token=ist).session_token
    assert world.failures(MEMBER) == 0
    assert not world.api.get_member(ORG, MEMBER).is_locked


def test_lock_at_the_threshold_refuses_everything_until_it_ends(make: MakeWorld) -> None:
    world = make(lockout_threshold=3)
    ist, code = world.login()
    guess = wrong(code)
    answers = [error_type(world.api.authenticate_sms_otp, ORG, MEMBER, guess, intermediate_session_token=ist)
               for _ in range(3)]
    assert answers == ["otp_code_not_found", "otp_code_not_found", "user_lock_limit_reached"]
    assert world.failures(MEMBER) == 3
    member = world.api.get_member(ORG, MEMBER)
    assert member.is_locked
    assert member.lock_expires_at is not None
    assert member.lock_expires_at.timestamp() == world.clock.now() + 3600
    assert names(world).count("member.locked") == 1
    assert world.live_code(MEMBER) is None  # the locking failure killed the code
    # While locked: the right code, a send and a primary authentication are all refused; nothing is sent.
    assert error_type(world.api.authenticate_sms_otp, ORG, MEMBER, code,
                      intermediate_session_token=ist) == "user_lock_limit_reached"
    assert error_type(world.api.send_sms_otp, ORG, MEMBER,
                      intermediate_session_token=ist) == "user_lock_limit_reached"
    assert error_type(world.api.authenticate_primary, ORG, MEMBER,
                      "email_magic_link") == "user_lock_limit_reached"
    assert len(world.transport.sent) == 1
    assert world.failures(MEMBER) == 3  # refusals before the comparison never count
    # Another member of the organization is not affected.
    world.login(MEMBER_2)

    world.clock.advance(3600)
    assert not world.api.get_member(ORG, MEMBER).is_locked
    ist, code = world.login()
    # The counter restarted at 0: two wrong codes do not lock (a third would, at threshold 3).
    for _ in range(2):
        assert error_type(world.api.authenticate_sms_otp, ORG, MEMBER, wrong(code),
                          intermediate_session_token=ist) == "otp_code_not_found"
    assert world.api.authenticate_sms_otp(ORG, MEMBER, code, intermediate_session_token=ist).session_token


def test_resend_supersedes_the_previous_code(make: MakeWorld) -> None:
    world = make()
    ist, first = world.login()
    world.api.send_sms_otp(ORG, MEMBER, intermediate_session_token=ist)
    assert len(world.transport.sent) == 2
    second = world.transport.last_code(MEMBER)
    if first != second:  # one chance in a million that the new code repeats the old one
        assert error_type(world.api.authenticate_sms_otp, ORG, MEMBER, first,
                          intermediate_session_token=ist) == "otp_code_not_found"
        assert world.failures(MEMBER) == 1
    assert world.api.authenticate_sms_otp(ORG, MEMBER, second, intermediate_session_token=ist).session_token
    assert world.live_code(MEMBER) is None


def test_phone_is_linked_on_first_use_and_verified_by_the_code(make: MakeWorld) -> None:
    world = make()
    ist = phoneless_ist(world)
    assert error_type(world.api.send_sms_otp, ORG, PHONELESS,
                      intermediate_session_token=ist) == "member_phone_number_not_found"
    sent = world.api.send_sms_otp(ORG, PHONELESS, mfa_phone_number="+1 (415) 555-0130",
                                  intermediate_session_token=ist)
    assert sent.member.mfa_phone_number == NEW_PHONE
    assert not sent.member.mfa_phone_number_verified
    assert [m.to for m in world.transport.sent] == [NEW_PHONE]
    linked = world.api.get_member(ORG, PHONELESS)
    assert (linked.mfa_phone_number, linked.mfa_phone_number_verified) == (NEW_PHONE, False)
    assert "phone.linked" in names(world)
    # Linked: another number for this member, or this number for another member, is refused.
    assert error_type(world.api.send_sms_otp, ORG, PHONELESS, mfa_phone_number=NEW_PHONE_2,
                      intermediate_session_token=ist) == "duplicate_member_phone_number_for_member"
    world.flow.directory.put_member(Member("member-test-nophone-2", ORG, email_address="n2@example.com"))
    assert error_type(world.api.send_sms_otp, ORG, "member-test-nophone-2",
                      mfa_phone_number=NEW_PHONE) == "duplicate_member_phone_number"
    assert len(world.transport.sent) == 1

    code = world.transport.last_code(PHONELESS)
    result = world.api.authenticate_sms_otp(ORG, PHONELESS, code, intermediate_session_token=ist)
    assert result.session_token
    assert (result.member.mfa_phone_number, result.member.mfa_phone_number_verified) == (NEW_PHONE, True)
    assert world.api.get_member(ORG, PHONELESS).mfa_phone_number_verified
    # The next login sends to the linked phone automatically.
    assert world.login(PHONELESS)[1] == world.transport.last_code(PHONELESS)
    assert world.transport.sent[-1].to == NEW_PHONE


def test_step_up_after_inactivity(make: MakeWorld) -> None:
    world = make()
    token = world.session()
    world.clock.advance(1801)  # strictly more than inactivity_timeout (1800 s) since the last access
    check = world.api.authenticate_session(session_token=token)
    assert check.step_up_required is True
    assert check.secondary_auth_initiated == "sms_otp"
    assert len(world.transport.sent) == 2
    # While that code is live, asking again sends nothing more and still reports the send.
    again = world.api.authenticate_session(session_token=token)
    assert (again.step_up_required, again.secondary_auth_initiated) == (True, "sms_otp")
    assert len(world.transport.sent) == 2
    # A session that needs a step-up does not skip MFA at primary authentication.
    primary = world.api.authenticate_primary(ORG, MEMBER, "email_magic_link", session_token=token)
    assert primary.session_token == ""
    code = world.transport.last_code(MEMBER)  # that login sent a new code, superseding the step-up code
    step_up = world.api.authenticate_session(session_token=token)
    assert (step_up.step_up_required, step_up.secondary_auth_initiated) == (True, "sms_otp")
    assert len(world.transport.sent) == 4
    if code != world.transport.last_code(MEMBER):
        assert error_type(world.api.authenticate_sms_otp, ORG, MEMBER, code,
                          session_token=token) == "otp_code_not_found"  # bound to the new IST, not this session
    result = world.api.authenticate_sms_otp(ORG, MEMBER, world.transport.last_code(MEMBER), session_token=token)
    assert result.session_token == token
    assert "session.step_up_completed" in names(world)
    after = world.api.authenticate_session(session_token=token)
    assert (after.step_up_required, after.secondary_auth_initiated) == (False, None)


def test_delivery_rejected_rolls_back_the_link_and_the_code(make: MakeWorld) -> None:
    world = make()
    ist = phoneless_ist(world)
    before = world.snapshot()
    world.transport.fail_next("rejected")
    assert error_type(world.api.send_sms_otp, ORG, PHONELESS, mfa_phone_number=NEW_PHONE,
                      intermediate_session_token=ist) == "downstream_carrier_error"
    member = world.api.get_member(ORG, PHONELESS)
    assert (member.mfa_phone_number, member.mfa_phone_number_verified) == ("", False)
    assert world.transport.sent == []
    assert world.live_code(PHONELESS) is None
    assert world.read(keys.link(ORG, NEW_PHONE)) is None
    after = world.snapshot()
    # Only the admission's counts remain (a send stays counted even when delivery fails), and the member's
    # overlay as it was before the send (rewritten: absent before, the empty overlay now).
    k_member = keys.member(ORG, PHONELESS)
    assert {k for k in after if after[k] != before.get(k)} <= {
        keys.window_member(ORG, PHONELESS), keys.window_phone(NEW_PHONE), k_member}
    assert keys.window_member(ORG, PHONELESS) in after
    overlay = world.read(k_member)
    assert overlay is None or overlay.value == MemberState()
    failed = [e for e in world.events if e.name == "delivery.failed"]
    assert [e.reason for e in failed] == ["rejected"]
    # Nothing of the rejected link remains: another number can be linked now.
    world.api.send_sms_otp(ORG, PHONELESS, mfa_phone_number=NEW_PHONE_2, intermediate_session_token=ist)
    assert world.api.get_member(ORG, PHONELESS).mfa_phone_number == NEW_PHONE_2
    code = world.transport.last_code(PHONELESS)
    assert world.api.authenticate_sms_otp(ORG, PHONELESS, code, intermediate_session_token=ist).session_token


def test_delivery_unknown_keeps_the_code_live(make: MakeWorld) -> None:
    world = make()
    ist = world.api.authenticate_primary(ORG, MEMBER, "discovery").intermediate_session_token
    world.transport.fail_next("unknown")
    assert error_type(world.api.send_sms_otp, ORG, MEMBER,
                      intermediate_session_token=ist) == "downstream_carrier_error"
    assert world.live_code(MEMBER) is not None
    code = world.transport.last_code(MEMBER)
    assert world.api.authenticate_sms_otp(ORG, MEMBER, code, intermediate_session_token=ist).session_token


def test_delete_phone_unlinks_and_kills_the_live_code(make: MakeWorld) -> None:
    world = make()
    ist, code = world.login()
    member = world.api.delete_mfa_phone_number(ORG, MEMBER)
    assert (member.mfa_phone_number, member.mfa_phone_number_verified) == ("", False)
    assert world.live_code(MEMBER) is None
    assert error_type(world.api.authenticate_sms_otp, ORG, MEMBER, code,
                      intermediate_session_token=ist) == "unable_to_auth_otp_code"
    assert world.failures(MEMBER) == 0
    # Without an active factor a new number can be linked again.
    world.api.send_sms_otp(ORG, MEMBER, mfa_phone_number=NEW_PHONE, intermediate_session_token=ist)
    assert world.api.get_member(ORG, MEMBER).mfa_phone_number == NEW_PHONE


def test_send_limit_per_member(make: MakeWorld) -> None:
    world = make(send_limit_per_member=(3, 600), ist_ttl=3600)
    ist, _ = world.login()
    world.api.send_sms_otp(ORG, MEMBER, intermediate_session_token=ist)
    world.api.send_sms_otp(ORG, MEMBER, intermediate_session_token=ist)
    assert error_type(world.api.send_sms_otp, ORG, MEMBER,
                      intermediate_session_token=ist) == "too_many_requests"
    assert len(world.transport.sent) == 3
    world.clock.advance(600)
    world.api.send_sms_otp(ORG, MEMBER, intermediate_session_token=ist)
    assert len(world.transport.sent) == 4


def test_another_flow_on_the_same_store_verifies_the_code(make: MakeWorld) -> None:
    """The local code provider keeps no state: the code's HMAC, binding and attempts are in the store."""
    world = make()
    ist, code = world.login()
    other, other_transport = twin(world)
    assert error_type(other.authenticate_sms_otp, ORG, MEMBER, wrong(code),
                      intermediate_session_token=ist) == "otp_code_not_found"
    assert world.failures(MEMBER) == 1  # counted in the shared store
    result = other.authenticate_sms_otp(ORG, MEMBER, code, intermediate_session_token=ist)
    assert result.session_token
    assert world.api.authenticate_session(session_token=result.session_token).step_up_required is False
    assert other_transport.sent == []


def test_organization_and_member_views_agree(make: MakeWorld) -> None:
    world = make()
    assert world.api.get_organization("acme") == Organization(ORG, organization_slug="acme",
                                                              mfa_policy="REQUIRED_FOR_ALL")
    member = world.api.get_member(ORG, MEMBER)
    assert (member.mfa_phone_number, member.mfa_phone_number_verified, member.is_locked) == (PHONE, True, False)
    assert world.snapshot() == {}  # reading writes nothing
