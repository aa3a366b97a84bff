"""Concurrency (reference security.md C1, C2) against the default MemoryStore.

Threads are released together at a ``threading.Barrier``; every test is bounded by pytest-timeout.
The last tests run the same races on a deliberately non-atomic store and assert that it *does* break,
which proves these races can see a double use or a lost update when the store lets one through.
"""

from __future__ import annotations

import time
from collections import Counter

import pytest

from mfa_flow import AuthenticateResult, Event, Member, MfaFlow, Organization, Policy
from mfa_flow.state import GuardState, keys
from mfa_flow.stores import Store
from mfa_flow.testing import FakeClock, FakeTransport
from tests.races import C1_LOSER_ERRORS, NonAtomicStore, error_type, error_types, race, successes, wrong_codes
from tests.stores_matrix import ist_and_code

ORG = "organization-test-1"
MEMBER = "member-test-1"
PHONE = "+14155550123"
THREADS = 32
C1_REPETITIONS = 200
C2_REPETITIONS = 25
#: Generous send limits so repeated logins of one member in one test never hit them.
ROOMY = {"send_limit_per_member": (1000, 600), "send_limit_per_phone": (1000, 600)}

RACE_TIMEOUT = 30.0  # seconds a race may take


# --------------------------------------------------------------------------------------------- harness


def failure_count(flow: MfaFlow, org: str = ORG, member: str = MEMBER) -> int:
    """The member's failure counter as the store holds it (0 when the guard record was never written)."""
    key = keys.guard(org, member)
    with flow.store.transaction() as tx:
        entry = tx.read([key]).get(key)
    if entry is None:
        return 0
    assert isinstance(entry.value, GuardState)
    return entry.value.failures


class World:
    """One organization (MFA required for all) and one member with a verified phone, on fake time."""

    def __init__(self, *, store: Store | None = None, policy: Policy | None = None) -> None:
        self.clock = FakeClock()
        self.transport = FakeTransport()
        self.events: list[Event] = []
        self.flow = MfaFlow(clock=self.clock, transport=self.transport, store=store, events=[self.events.append],
                            policy=policy if policy is not None else Policy(**ROOMY))
        self.flow.directory.put_organization(Organization(ORG, organization_slug="acme",
                                                          mfa_policy="REQUIRED_FOR_ALL"))
        self.flow.directory.put_member(Member(MEMBER, ORG, email_address="a@example.com",
                                              mfa_phone_number=PHONE, mfa_phone_number_verified=True))

    def login(self) -> tuple[str, str]:
        """Primary authentication with the automatic send: (IST, code)."""
        return ist_and_code(self.flow.authenticate_primary(ORG, MEMBER, "email_magic_link"), self.transport, MEMBER)

    def authenticate(self, code: str, ist: str) -> AuthenticateResult:
        return self.flow.authenticate_sms_otp(ORG, MEMBER, code, intermediate_session_token=ist)


# ----------------------------------------------------------------------------------------------------- C1


def c1_round(world: World) -> tuple[list[AuthenticateResult], Counter[str]]:
    """32 threads submit the same correct code with the same IST."""
    ist, code = world.login()
    outcomes = race(THREADS, lambda _: world.authenticate(code, ist), timeout=RACE_TIMEOUT)
    return successes(outcomes), error_types(outcomes)


@pytest.mark.timeout(120)
def test_c1_same_correct_code_accepted_exactly_once() -> None:
    started = time.monotonic()
    for repetition in range(C1_REPETITIONS):
        world = World()
        won, refused = c1_round(world)
        assert len(won) == 1, f"repetition {repetition}: {len(won)} sessions from one code"
        assert isinstance(won[0], AuthenticateResult)
        assert won[0].session_token
        assert sum(refused.values()) == THREADS - 1
        assert set(refused) <= C1_LOSER_ERRORS, f"repetition {repetition}: {dict(refused)}"
        # Refusals before the comparison never count (spec §6.6): the counter stays 0.
        assert failure_count(world.flow) == 0, f"repetition {repetition}"
        assert len(world.transport.sent) == 1  # nobody sent anything more
    assert time.monotonic() - started < 60


@pytest.mark.timeout(120)
def test_c1_losers_leave_no_trace_on_the_failure_counter() -> None:
    """Behavioural proof that the 31 refused calls were not counted: 9 wrong codes then do not lock."""
    world = World(policy=Policy())  # the defaults: 5 attempts per code, lock at the 10th failure
    won, _ = c1_round(world)
    assert len(won) == 1
    ist, code = world.login()
    wrong = wrong_codes(code, 9)
    answers = [error_type(world.authenticate, c, ist) for c in wrong[:5]]
    assert answers == ["otp_code_not_found"] * 5  # the 5th kills the code
    world.flow.send_sms_otp(ORG, MEMBER, intermediate_session_token=ist)
    code = world.transport.last_code(MEMBER)
    answers = [error_type(world.authenticate, c, ist) for c in wrong_codes(code, 4)]
    assert answers == ["otp_code_not_found"] * 4  # 9 failures in all: one more would lock
    assert not world.flow.get_member(ORG, MEMBER).is_locked
    assert world.authenticate(code, ist).session_token


# ----------------------------------------------------------------------------------------------------- C2


def c2_round(world: World) -> tuple[str, str, Counter[str], int]:
    """32 threads each submit a distinct wrong code for one live code."""
    ist, code = world.login()
    wrong = wrong_codes(code, THREADS)
    outcomes = race(THREADS, lambda i: world.authenticate(wrong[i], ist), timeout=RACE_TIMEOUT)
    assert not successes(outcomes), "a wrong code was accepted"
    return ist, code, error_types(outcomes), failure_count(world.flow)


@pytest.mark.timeout(120)
def test_c2_distinct_wrong_codes_no_lost_updates_and_the_code_dies() -> None:
    for repetition in range(C2_REPETITIONS):
        world = World(policy=Policy(lockout_threshold=100, max_attempts_per_code=5, **ROOMY))
        ist, code, refused, failures = c2_round(world)
        assert refused == Counter({"otp_code_not_found": 5, "unable_to_auth_otp_code": THREADS - 5}), \
            f"repetition {repetition}"
        assert failures == 5, f"repetition {repetition}: counter {failures}"
        # The code died at its 5th attempt: the right code is refused, and that refusal is not counted.
        assert error_type(world.authenticate, code, ist) == "unable_to_auth_otp_code"
        assert failure_count(world.flow) == 5
        assert not world.flow.get_member(ORG, MEMBER).is_locked


@pytest.mark.timeout(120)
def test_c2_every_wrong_code_counted_when_the_caps_are_high() -> None:
    for repetition in range(C2_REPETITIONS):
        world = World(policy=Policy(lockout_threshold=100, max_attempts_per_code=100, **ROOMY))
        ist, code, refused, failures = c2_round(world)
        assert refused == Counter({"otp_code_not_found": THREADS}), f"repetition {repetition}"
        assert failures == THREADS, f"repetition {repetition}: counter {failures} (lost updates)"
        # The code is still live after 32 of its 100 attempts; the success resets the counter.
        assert world.authenticate(code, ist).session_token
        assert failure_count(world.flow) == 0


@pytest.mark.timeout(120)
def test_c2_racing_wrong_codes_lock_exactly_at_the_threshold() -> None:
    for repetition in range(C2_REPETITIONS):
        world = World(policy=Policy(lockout_threshold=10, max_attempts_per_code=100, **ROOMY))
        ist, code, refused, failures = c2_round(world)
        # 9 wrong codes answer otp_code_not_found, the 10th locks, the other 22 meet the lock.
        assert refused == Counter({"otp_code_not_found": 9, "user_lock_limit_reached": THREADS - 9}), \
            f"repetition {repetition}"
        assert failures == 10
        assert [e.name for e in world.events].count("member.locked") == 1
        assert world.flow.get_member(ORG, MEMBER).is_locked
        assert error_type(world.authenticate, code, ist) == "user_lock_limit_reached"


# ------------------------------------------------------------------------- the races can see a broken store


@pytest.mark.timeout(120)
def test_c1_race_detects_double_acceptance_on_a_non_atomic_store() -> None:
    """The same race on a check-then-act store accepts one code more than once in at least one try."""
    most = 0
    for _ in range(20):
        world = World(store=NonAtomicStore())
        won, refused = c1_round(world)
        assert set(refused) <= C1_LOSER_ERRORS
        most = max(most, len({r.session_token for r in won}))
        if most > 1:
            break
    assert most > 1, "the C1 race never saw the broken store double-accept: the test has no power"


@pytest.mark.timeout(120)
def test_c2_race_detects_lost_updates_on_a_non_atomic_store() -> None:
    """The same race on a check-then-act store loses failure-counter updates in at least one try."""
    lowest = THREADS
    for _ in range(20):
        world = World(store=NonAtomicStore(), policy=Policy(lockout_threshold=100, max_attempts_per_code=100,
                                                            **ROOMY))
        *_, failures = c2_round(world)
        lowest = min(lowest, failures)
        if lowest < THREADS:
            break
    assert lowest < THREADS, "the C2 race never lost an update on the broken store: the test has no power"


def test_non_atomic_store_is_a_faithful_store_without_concurrency() -> None:
    """The broken store behaves like a store when calls do not overlap, so only the race breaks it."""
    world = World(store=NonAtomicStore(pause=0.0))
    ist, code = world.login()
    assert error_type(world.authenticate, wrong_codes(code, 1)[0], ist) == "otp_code_not_found"
    assert failure_count(world.flow) == 1
    assert world.authenticate(code, ist).session_token
    assert error_type(world.authenticate, code, ist) == "intermediate_session_not_found"
    assert failure_count(world.flow) == 0
