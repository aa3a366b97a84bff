"""Concurrency C1–C5 (reference security.md) on every store kind, with the synchronous MfaFlow.

Threads are released together at a ``threading.Barrier``. Each race has one checker that returns the list
of violated expectations; the store tests assert it is empty in every repetition, and the power tests run
the very same race and checker on a deliberately non-atomic store (reads under the lock, then a commit that
sleeps ~1 ms and writes blind) and assert that a violation shows within a bounded number of tries — proof
that each race can see the bug it is there to catch.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from mfa_flow import MfaError
from mfa_flow.crypto import Keyring
from mfa_flow.state import CodeState, PhoneLink, keys
from mfa_flow.stores import Entry
from tests.races import C1_LOSER_ERRORS, NonAtomicStore, Outcome, error_type, error_types, race, successes, wrong_codes
from tests.stores_matrix import (
    MEMBER,
    NEW_PHONE,
    NEW_PHONE_2,
    ORG,
    PHONELESS,
    STORE_KINDS,
    Matrix,
    World,
    matrix_fixture,  # noqa: F401 - the ``matrix`` fixture
)

THREADS = 32
#: Repetitions per store kind: the in-process store is fast, the durable ones pay I/O per call.
C1_REPS = {"memory": 200, "sqlite": 30, "redis": 30}
C2_REPS = {"memory": 40, "sqlite": 10, "redis": 10}
C3_REPS = {"memory": 30, "sqlite": 8, "redis": 8}
C4_REPS = {"memory": 200, "sqlite": 30, "redis": 30}
C5_REPS = {"memory": 40, "sqlite": 10, "redis": 10}
#: Tries the power tests give the non-atomic store to show the race.
POWER_TRIES = 30
ROOMY: dict[str, Any] = {"send_limit_per_member": (100_000, 600), "send_limit_per_phone": (100_000, 600)}

kinds = pytest.mark.parametrize("kind", STORE_KINDS)


# ------------------------------------------------------------------------------ a deliberately broken store


def broken_world(matrix: Matrix, **policy: Any) -> World:
    return matrix.make_flow("memory", inner_wrap=lambda inner: NonAtomicStore(inner, pause=0.001), **policy)


def shows_violation(one_round: Callable[[], list[str]], tries: int = POWER_TRIES) -> list[str]:
    """The first non-empty violation list among ``tries`` calls of ``one_round`` (empty when none showed)."""
    for _ in range(tries):
        if violations := one_round():
            return violations
    return []


# ----------------------------------------------------------------------------------------------------- C1


def c1_round(world: World) -> list[str]:
    """32 threads submit the same correct code with the same IST: exactly one session."""
    ist, code = world.login()
    sent_before = len(world.transport.sent)
    outcomes = race(THREADS, lambda _: world.api.authenticate_sms_otp(ORG, MEMBER, code,
                                                                      intermediate_session_token=ist))
    won = successes(outcomes)
    refused = error_types(outcomes)
    violations = []
    if len({r.session_token for r in won}) != 1 or len(won) != 1:
        violations.append(f"{len(won)} successes ({len({r.session_token for r in won})} sessions) from one code")
    if sum(refused.values()) != THREADS - len(won) or not set(refused) <= C1_LOSER_ERRORS:
        violations.append(f"losers answered {dict(refused)}")
    if (failures := world.failures(MEMBER)) != 0:
        violations.append(f"failure counter {failures} after the race (refusals before step 6 never count)")
    if len(world.transport.sent) != sent_before:
        violations.append("a racing authenticate sent something")
    return violations


@kinds
@pytest.mark.timeout(180)
def test_c1_same_correct_code_accepted_exactly_once(matrix: Matrix, kind: str) -> None:
    world = matrix.make_flow(kind, **ROOMY)  # type: ignore[arg-type]
    for repetition in range(C1_REPS[kind]):
        assert c1_round(world) == [], f"{kind}, repetition {repetition}"


@pytest.mark.timeout(180)
def test_c1_detects_double_acceptance_on_a_non_atomic_store(matrix: Matrix) -> None:
    world = broken_world(matrix, **ROOMY)
    assert shows_violation(lambda: c1_round(world)), \
        "C1 never saw the non-atomic store accept a code twice: the race has no power"


# ----------------------------------------------------------------------------------------------------- C2


def c2_round(world: World, max_attempts: int) -> list[str]:
    """32 distinct wrong codes race on one live code (default policy): exactly max_attempts are counted."""
    ist, code = world.login()
    wrong = wrong_codes(code, THREADS)
    outcomes = race(THREADS, lambda i: world.api.authenticate_sms_otp(ORG, MEMBER, wrong[i],
                                                                      intermediate_session_token=ist))
    violations = []
    if won := successes(outcomes):
        violations.append(f"{len(won)} wrong codes accepted")
    refused = error_types(outcomes)
    expected = Counter({"otp_code_not_found": max_attempts, "unable_to_auth_otp_code": THREADS - max_attempts})
    if refused != expected:
        violations.append(f"answers {dict(refused)}, expected {dict(expected)}")
    if (failures := world.failures(MEMBER)) != max_attempts:
        violations.append(f"failure counter {failures}, expected {max_attempts} (lost or extra updates)")
    # The code died at its last attempt: the right code is refused now, and that refusal is not counted.
    if (answer := error_type(world.api.authenticate_sms_otp, ORG, MEMBER, code,
                             intermediate_session_token=ist)) != "unable_to_auth_otp_code":
        violations.append(f"the right code after the race answered {answer}")
    if world.failures(MEMBER) != failures:
        violations.append("the refused right code was counted")
    if world.api.get_member(ORG, MEMBER).is_locked:
        violations.append("locked below the threshold")
    # Reset the counter for the next round: a success does that.
    ist, code = world.login()
    world.api.authenticate_sms_otp(ORG, MEMBER, code, intermediate_session_token=ist)
    return violations


@kinds
@pytest.mark.timeout(180)
def test_c2_distinct_wrong_codes_counted_exactly_up_to_the_attempt_cap(matrix: Matrix, kind: str) -> None:
    world = matrix.make_flow(kind, **ROOMY)  # type: ignore[arg-type]
    cap = world.flow.policy.max_attempts_per_code
    assert cap == 5
    for repetition in range(C2_REPS[kind]):
        assert c2_round(world, cap) == [], f"{kind}, repetition {repetition}"


@pytest.mark.timeout(180)
def test_c2_detects_lost_updates_on_a_non_atomic_store(matrix: Matrix) -> None:
    world = broken_world(matrix, **ROOMY)
    assert shows_violation(lambda: c2_round(world, 5)), \
        "C2 never saw the non-atomic store lose or add a count: the race has no power"


# ----------------------------------------------------------------------------------------------------- C3


C3_SENDERS = 8
C3_VERIFIERS = 8
C3_ROUNDS = 3  # calls per thread
C3_POLICY: dict[str, Any] = {**ROOMY, "max_attempts_per_code": 100, "lockout_threshold": 100}
C3_ERRORS = frozenset({"otp_code_not_found", "unable_to_auth_otp_code"})
C3_IST_ERRORS = C3_ERRORS | {"intermediate_session_not_found"}
CAS_EXHAUSTED = "compare-and-set exhausted"


def _state(entry: Entry | None) -> tuple[str, int] | None:
    """A code record's identity in the history: (code_id, attempts); None when absent."""
    if entry is None:
        return None
    assert isinstance(entry.value, CodeState)
    return entry.value.code_id, entry.value.attempts


def code_history_violations(world: World, member_id: str = MEMBER) -> list[str]:
    """Check the committed transitions of the member's code record form one compare-and-set chain.

    In a linearizable history every committed transition starts from the record's current state, so no
    state (a code id and its attempt count) is the base of two transitions, and "absent" is the base of
    at most one transition more than the number of deletions. A success (code → absent) then consumed
    the code that was the latest admitted at its commit, and at most one code was live at any moment.
    """
    key = keys.code(ORG, member_id)
    bases: Counter[tuple[str, int]] = Counter()
    from_absent = deletions = 0
    violations = []
    for commit in world.recorder.log:
        if key not in commit.writes:
            continue
        if key not in commit.reads:
            violations.append("the code record was written without being read")
            continue
        base = _state(commit.reads[key])
        new = commit.writes[key].value
        if new is None:
            deletions += 1
        if base is None:
            from_absent += 1
        else:
            bases[base] += 1
    if twice := [b for b, n in bases.items() if n > 1]:
        violations.append(f"{len(twice)} code state(s) changed by two commits each (one of them was stale: "
                          "a superseded code was used or a new code was lost)")
    if from_absent > deletions + 1:
        violations.append(f"{from_absent} commits from an absent code record with only {deletions} deletion(s)")
    return violations


def c3_round(world: World, token_kind: str) -> list[str]:
    """Senders (explicit send_sms_otp) race verifiers (the newest code delivered) on one token."""
    if token_kind == "session":
        token = world.session()
        kwargs = {"session_token": token}
        allowed = C3_ERRORS
    else:
        token, _ = world.login()
        kwargs = {"intermediate_session_token": token}
        allowed = C3_IST_ERRORS

    def work(i: int) -> list[Outcome]:
        done: list[Outcome] = []
        for _ in range(C3_ROUNDS):
            try:
                if i < C3_SENDERS:
                    done.append(("ok", world.api.send_sms_otp(ORG, MEMBER, **kwargs)))
                else:
                    code = world.transport.sent[-1].code
                    done.append(("ok", world.api.authenticate_sms_otp(ORG, MEMBER, code, **kwargs)))
            except MfaError as exc:
                done.append(("error", exc))
        return done

    outcomes = race(C3_SENDERS + C3_VERIFIERS, work)
    flat: list[Outcome] = [o for kind, value in outcomes for o in (value if kind == "ok" else [(kind, value)])]
    violations = code_history_violations(world)
    answers = error_types(flat)
    if exhausted := answers.pop("internal_server_error", 0):
        violations.append(f"{CAS_EXHAUSTED}: {exhausted} of {len(flat)} racing calls answered internal_server_error")
    if not set(answers) <= allowed:
        violations.append(f"racing calls answered {dict(answers)}")
    # After the race: at most one of all the codes ever delivered authenticates, and only the newest
    # committed one (the live record's). Deliveries run after their commits, outside any lock, so the last
    # message delivered need not carry the newest committed code; the order that counts is the commits'.
    live = world.live_code()
    keyring = Keyring(world.secret_key)
    codes = list(dict.fromkeys(m.code for m in reversed(world.transport.sent)))
    newest = [c for c in codes if live is not None and keyring.verify(live.code_id, c, live.digest)]
    accepted = [c for c in codes if error_type(world.api.authenticate_sms_otp, ORG, MEMBER, c, **kwargs) == "ok"]
    if token_kind == "session" and len(accepted) > 1:
        violations.append(f"{len(accepted)} distinct codes authenticated after the race")
    if token_kind == "ist" and accepted:
        violations.append("a code authenticated with an IST after the race")
    if token_kind == "session" and accepted != newest[:1]:
        violations.append("the code accepted after the race was not the newest committed one")
    return violations


@kinds
@pytest.mark.parametrize("token_kind", ["session", "ist"])
@pytest.mark.timeout(180)
def test_c3_sends_racing_verifies_never_two_live_codes(matrix: Matrix, kind: str, token_kind: str) -> None:
    exhausted: list[str] = []
    for repetition in range(C3_REPS[kind]):
        world = matrix.make_flow(kind, **C3_POLICY)  # type: ignore[arg-type]
        violations = c3_round(world, token_kind)
        exhausted += [v for v in violations if v.startswith(CAS_EXHAUSTED)]
        safety = [v for v in violations if not v.startswith(CAS_EXHAUSTED)]
        assert safety == [], f"{kind}, repetition {repetition}"
    # No call may exhaust the compare-and-set re-runs: the flow backs off (jittered, doubling) between them.
    assert exhausted == [], f"{kind}/{token_kind}: in {len(exhausted)} of {C3_REPS[kind]} rounds: {exhausted}"


@pytest.mark.timeout(180)
def test_c3_detects_a_stale_code_on_a_non_atomic_store(matrix: Matrix) -> None:
    assert shows_violation(lambda: c3_round(broken_world(matrix, **C3_POLICY), "session")), \
        "C3 never saw the non-atomic store use a superseded code: no power"


# ----------------------------------------------------------------------------------------------------- C4


C4_ERRORS = frozenset({"duplicate_member_phone_number_for_member"})


def c4_round(world: World) -> list[str]:
    """Two threads link different numbers to one member without a phone: exactly one is bound."""
    numbers = (NEW_PHONE, NEW_PHONE_2)
    sent_before = len(world.transport.sent)
    outcomes = race(2, lambda i: world.api.send_sms_otp(ORG, PHONELESS, mfa_phone_number=numbers[i]))
    won = [numbers[i] for i, (kind, _) in enumerate(outcomes) if kind == "ok"]
    refused = error_types(outcomes)
    violations = []
    if len(won) != 1:
        violations.append(f"{len(won)} links succeeded")
    if not set(refused) <= C4_ERRORS:
        violations.append(f"the loser answered {dict(refused)}")
    member = world.api.get_member(ORG, PHONELESS)
    bound = member.mfa_phone_number
    if len(won) == 1 and bound != won[0]:
        violations.append(f"bound {bound!r}, but {won[0]!r} won")
    if member.mfa_phone_number_verified:
        violations.append("verified without a code")
    messages = world.transport.sent[sent_before:]
    if [m.to for m in messages] != [bound]:
        violations.append(f"messages went to {[m.to for m in messages]}, bound {bound!r}")
    for number in numbers:
        link = world.read(keys.link(ORG, number))
        holder = link.value.member_id if link is not None and isinstance(link.value, PhoneLink) else None
        if (holder is not None) != (number == bound):
            violations.append(f"link index for {number}: {holder!r}, bound {bound!r}")
    # Back to no phone for the next round.
    world.api.delete_mfa_phone_number(ORG, PHONELESS)
    return violations


@kinds
@pytest.mark.timeout(180)
def test_c4_two_first_use_links_bind_exactly_one_number(matrix: Matrix, kind: str) -> None:
    world = matrix.make_flow(kind, **ROOMY)  # type: ignore[arg-type]
    for repetition in range(C4_REPS[kind]):
        assert c4_round(world) == [], f"{kind}, repetition {repetition}"


@pytest.mark.timeout(180)
def test_c4_detects_a_double_link_on_a_non_atomic_store(matrix: Matrix) -> None:
    world = broken_world(matrix, **ROOMY)
    assert shows_violation(lambda: c4_round(world)), \
        "C4 never saw the non-atomic store link two numbers: the race has no power"


# ----------------------------------------------------------------------------------------------------- C5


C5_SENDS = 16
C5_LIMIT = 3
C5_POLICY: dict[str, Any] = {"send_limit_per_member": (C5_LIMIT, 600), "ist_ttl": 3600}


def c5_round(world: World) -> list[str]:
    """16 racing sends at a per-member limit of 3: exactly 3 transport calls, the rest too_many_requests."""
    ist, _ = world.login()  # the automatic send counts; let its window pass (the IST lives an hour)
    world.clock.advance(601)
    before = len(world.transport.attempts)
    outcomes = race(C5_SENDS, lambda _: world.api.send_sms_otp(ORG, MEMBER, intermediate_session_token=ist))
    violations = []
    calls = len(world.transport.attempts) - before
    if calls != C5_LIMIT:
        violations.append(f"{calls} transport calls at a limit of {C5_LIMIT}")
    if len(successes(outcomes)) != C5_LIMIT:
        violations.append(f"{len(successes(outcomes))} sends admitted")
    if (refused := error_types(outcomes)) != Counter({"too_many_requests": C5_SENDS - C5_LIMIT}):
        violations.append(f"refusals {dict(refused)}")
    world.clock.advance(601)
    return violations


@kinds
@pytest.mark.timeout(180)
def test_c5_racing_sends_at_a_limit_make_exactly_that_many_transport_calls(matrix: Matrix, kind: str) -> None:
    world = matrix.make_flow(kind, **C5_POLICY)  # type: ignore[arg-type]
    for repetition in range(C5_REPS[kind]):
        assert c5_round(world) == [], f"{kind}, repetition {repetition}"


@pytest.mark.timeout(180)
def test_c5_detects_an_over_limit_send_on_a_non_atomic_store(matrix: Matrix) -> None:
    world = broken_world(matrix, **C5_POLICY)
    assert shows_violation(lambda: c5_round(world)), \
        "C5 never saw the non-atomic store let a send over the limit: the race has no power"


def test_the_non_atomic_store_is_a_faithful_store_without_concurrency(matrix: Matrix) -> None:
    """Calls that do not overlap behave as on any store, so only a race can break the broken store."""
    world = broken_world(matrix, **ROOMY)
    ist, code = world.login()
    assert error_type(world.api.authenticate_sms_otp, ORG, MEMBER, wrong_codes(code, 1)[0],
                      intermediate_session_token=ist) == "otp_code_not_found"
    assert world.failures(MEMBER) == 1
    assert world.api.authenticate_sms_otp(ORG, MEMBER, code, intermediate_session_token=ist).session_token
    assert error_type(world.api.authenticate_sms_otp, ORG, MEMBER, code,
                      intermediate_session_token=ist) == "intermediate_session_not_found"
    assert world.failures(MEMBER) == 0
    world.api.send_sms_otp(ORG, PHONELESS, mfa_phone_number=NEW_PHONE)
    assert error_type(world.api.send_sms_otp, ORG, PHONELESS,
                      mfa_phone_number=NEW_PHONE_2) == "duplicate_member_phone_number_for_member"
    assert code_history_violations(world) == []
