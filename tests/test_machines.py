"""The state machines (spec §7): no auto transitions, every transition carries behaviour, diagram().

For every transition of every table in ``mfa_flow.machine.TABLES`` a scenario drives the public API twice,
once with the table as shipped and once with that one transition removed from the machine the flow
triggers (``MACHINES[name].events[trigger].transitions[source]``, restored by monkeypatch); the two runs
must differ. The as-shipped run is also pinned to what the spec says.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import httpx
import pytest

import mfa_flow
from mfa_flow import ConfigurationError, Member, MfaError, MfaFlow, Organization, Policy
from mfa_flow.machine import CODE, GUARD, MACHINES, TABLES, fire
from mfa_flow.state import CodePhase, CodeState, GuardPhase, GuardState
from mfa_flow.testing import FakeClock, FakeTransport
from mfa_flow.transports.stytch import StytchProvider
from tests.fake_stytch import PROJECT_ID, SECRET, FakeStytch
from tests.fake_stytch import error as stytch_error
from tests.helpers_rules import wrong

ORG = "organization-test-1"
MEMBER = "member-test-1"
PHONE = "+14155550123"

NF, NO_CODE, LOCKED = "otp_code_not_found", "unable_to_auth_otp_code", "user_lock_limit_reached"
INTERNAL = "internal_server_error"


# --------------------------------------------------------------------------------------------- helpers


def sources(row: dict[str, Any]) -> list[Any]:
    source = row["source"]
    return list(source) if isinstance(source, list | tuple) else [source]


def label(machine: str, row: dict[str, Any]) -> str:
    return f"{machine}.{row['trigger']}->{row['dest'].name}"


ALL_TRANSITIONS = [(name, index, label(name, row)) for name, (_, _, table) in TABLES.items()
                   for index, row in enumerate(table)]


def remove_transition(monkeypatch: pytest.MonkeyPatch, machine: str, index: int) -> None:
    """Take row ``index`` of the machine's table out of the built machine, for every source it has."""
    table = TABLES[machine][2]
    row = table[index]
    event = MACHINES[machine].events[row["trigger"]]
    for source in sources(row):
        # Rows of one trigger and source are added in table order: this row is the k-th of them.
        k = sum(1 for r in table[:index] if r["trigger"] == row["trigger"] and source in sources(r))
        current = list(event.transitions[source.name])
        assert current[k].dest == row["dest"].name, "the built machine no longer matches its table"
        del current[k]
        monkeypatch.setitem(event.transitions, source.name, current)


def outcome(call: Callable[[], object]) -> str:
    try:
        call()
    except MfaError as exc:
        return exc.error_type
    return "ok"


class World:
    """One REQUIRED_FOR_ALL organization, one member with a verified phone, fake time, recorded SMS."""

    def __init__(self, **policy: Any) -> None:
        self.clock = FakeClock()
        self.transport = FakeTransport()
        self.flow = MfaFlow(clock=self.clock, transport=self.transport, policy=Policy(**policy))
        self.flow.directory.put_organization(Organization(ORG, organization_slug="acme",
                                                          mfa_policy="REQUIRED_FOR_ALL"))
        self.flow.directory.put_member(Member(MEMBER, ORG, mfa_phone_number=PHONE, mfa_phone_number_verified=True))

    def login(self) -> str:
        return self.flow.authenticate_primary(ORG, MEMBER, "email_magic_link").intermediate_session_token

    @property
    def code(self) -> str:
        return self.transport.last_code(MEMBER)

    def auth(self, code: str, ist: str | None = None, session: str | None = None) -> str:
        return outcome(lambda: self.flow.authenticate_sms_otp(ORG, MEMBER, code, intermediate_session_token=ist,
                                                              session_token=session))

    def wrongs(self, n: int, ist: str) -> list[str]:
        code = self.code
        return [self.auth(wrong(code, i), ist) for i in range(n)]

    def session(self) -> str:
        ist = self.login()
        return self.flow.authenticate_sms_otp(ORG, MEMBER, self.code, intermediate_session_token=ist).session_token

    def check(self, session: str) -> tuple[str, bool | None]:
        try:
            result = self.flow.authenticate_session(session_token=session)
        except MfaError as exc:
            return exc.error_type, None
        return "ok", result.step_up_required

    def locked(self) -> bool:
        return self.flow.get_member(ORG, MEMBER).is_locked


# ------------------------------------------------------------------------ one scenario per transition
# Each returns what the public API shows; EXPECTED is the spec's answer with the tables as shipped.


def code_issue() -> object:
    w = World()
    ist = w.login()
    return w.auth(w.code, ist)


def code_expire() -> object:
    w = World()
    ist = w.login()
    w.clock.advance(120)  # otp_ttl: the code is dead at exactly sent_at + 120 s
    return w.auth(w.code, ist)


def code_verify() -> object:
    w = World()
    ist = w.login()
    return w.auth(w.code, ist)


def code_reject_exhausted() -> object:
    w = World()
    ist = w.login()
    code = w.code
    return (*w.wrongs(5, ist), w.auth(code, ist))


def code_reject_counted() -> object:
    return code_reject_exhausted()


def code_kill() -> object:
    """The wrong code that locks also kills the live code: after a short lock it is not accepted."""
    w = World(lockout_threshold=3, lockout_duration=60)
    ist = w.login()
    code = w.code
    answers = w.wrongs(3, ist)
    w.clock.advance(60)  # the lock ended; the code (sent 60 s ago, otp_ttl 120 s) would still be live
    return (*answers, w.auth(code, ist))


def guard_fail_locks() -> object:
    w = World(lockout_threshold=3)
    ist = w.login()
    return (*w.wrongs(3, ist), w.locked())


def guard_fail_counts() -> object:
    return guard_fail_locks()


def guard_unlock() -> object:
    """After the lock ends the member may log in again and the counter starts from 0: three more
    wrong codes lock again. Without the unlock transition the member stays locked."""
    w = World(lockout_threshold=3)
    ist = w.login()
    before = w.wrongs(3, ist)
    w.clock.advance(3600)
    relogin = outcome(w.login)
    if relogin != "ok":
        return (*before, w.locked(), relogin)
    ist = w.login()
    return (*before, w.locked(), *w.wrongs(3, ist), w.locked())


def guard_succeed() -> object:
    """A success resets the counter: two failures, a success, then one failure does not lock."""
    w = World(lockout_threshold=3)
    ist = w.login()
    answers = w.wrongs(2, ist)
    answers.append(w.auth(w.code, ist))
    ist = w.login()
    return (*answers, *w.wrongs(1, ist), w.locked())


def guard_release() -> object:
    """An administrator's unlock_member ends the lock at once: the member logs in again; its counter is back
    at 0 (two more wrong codes do not lock at a threshold of 3). Without release the lock holds for an hour."""
    w = World(lockout_threshold=3)
    ist = w.login()
    before = w.wrongs(3, ist)
    unlocked = not w.flow.unlock_member(ORG, MEMBER).is_locked
    relogin = outcome(w.login)
    if relogin != "ok":
        return (*before, unlocked, relogin)
    return (*before, unlocked, relogin, *w.wrongs(2, w.login()), w.locked())


class StytchWorld:
    """Stytch mode: the same member behind a scripted Stytch (Stytch judges the codes, the flow counts)."""

    def __init__(self, **policy: Any) -> None:
        self.stytch = FakeStytch(Organization(ORG, organization_slug="acme", mfa_policy="REQUIRED_FOR_ALL"),
                                 Member(MEMBER, ORG, mfa_phone_number=PHONE, mfa_phone_number_verified=True))
        self.flow = MfaFlow(clock=FakeClock(), policy=Policy(**policy),
                            transport=StytchProvider(PROJECT_ID, SECRET, client=self.stytch.client()))

    def auths(self, *answers: Any) -> list[str]:
        self.stytch.script("authenticate", *answers)
        return [outcome(lambda: self.flow.authenticate_sms_otp(ORG, MEMBER, "123456", session_token="stytch-token"))
                for _ in answers]

    def locked(self) -> bool:
        return self.flow.get_member(ORG, MEMBER).is_locked


WRONG = stytch_error("otp_code_not_found", 404)


def guard_count() -> object:
    """Stytch mode: an attempt is counted before Stytch answers; one it never answered stays counted, so a
    wrong code after two timeouts reaches the threshold of 3."""
    w = StytchWorld(lockout_threshold=3)
    return (*w.auths(httpx.ReadTimeout, httpx.ReadTimeout, WRONG), w.locked())


def guard_confirm() -> object:
    """Stytch mode: Stytch's wrong-code answer confirms the counted failure; the third locks."""
    w = StytchWorld(lockout_threshold=3)
    return (*w.auths(WRONG, WRONG, WRONG), w.locked())


def guard_uncount() -> object:
    """Stytch mode: a refusal that is not a wrong code takes the counted attempt back."""
    w = StytchWorld(lockout_threshold=3)
    return (*w.auths(stytch_error("session_not_found", 404), stytch_error("session_not_found", 404), WRONG),
            w.locked())


def login_expire() -> object:
    w = World()
    ist = w.login()
    w.clock.advance(600)  # ist_ttl
    return outcome(lambda: w.flow.send_sms_otp(ORG, MEMBER, intermediate_session_token=ist))


def login_consume() -> object:
    """The IST is single-use: after the success it opens nothing."""
    w = World()
    ist = w.login()
    first = w.auth(w.code, ist)
    again = outcome(lambda: w.flow.record_mfa_factor(ORG, MEMBER, "totp", intermediate_session_token=ist))
    return first, again


def session_expire() -> object:
    w = World()
    session = w.session()
    w.clock.advance(minutes=60)  # default_session_minutes
    return w.check(session)


def session_idle() -> object:
    w = World()
    session = w.session()
    w.clock.advance(1801)  # inactivity_timeout is 1800 s, strictly greater
    return w.check(session)


def session_touch() -> object:
    w = World()
    session = w.session()
    w.clock.advance(1000)
    first = w.check(session)
    w.clock.advance(1000)  # 2000 s since the session began, 1000 s since it was last used
    return first, w.check(session)


def session_add_factor() -> object:
    w = World()
    session = w.session()
    result = w.flow.authenticate_primary(ORG, MEMBER, "password", session_token=session)
    assert result.member_session is not None
    return sorted(f.type for f in result.member_session.authentication_factors)


def session_step_up() -> object:
    w = World()
    session = w.session()
    w.clock.advance(1801)
    needed = w.check(session)
    done = w.auth(w.code, session=session)
    return needed, done, w.check(session)


def session_revoke() -> object:
    """A revoked session answers session_not_found at once; its step-up code dies with it."""
    w = World()
    session = w.session()
    w.clock.advance(1801)
    needed = w.check(session)
    code = w.code
    w.flow.revoke_session(session_token=session)
    return needed, w.check(session), w.auth(code, session=session)


SCENARIOS: dict[str, tuple[Callable[[], object], object]] = {
    "code.issue->SENT": (code_issue, "ok"),
    "code.expire->DEAD": (code_expire, NO_CODE),
    "code.verify->VERIFIED": (code_verify, "ok"),
    "code.reject->DEAD": (code_reject_exhausted, (NF, NF, NF, NF, NF, NO_CODE)),
    "code.reject->SENT": (code_reject_counted, (NF, NF, NF, NF, NF, NO_CODE)),
    "code.kill->DEAD": (code_kill, (NF, NF, LOCKED, NO_CODE)),
    "guard.fail->LOCKED": (guard_fail_locks, (NF, NF, LOCKED, True)),
    "guard.fail->OPEN": (guard_fail_counts, (NF, NF, LOCKED, True)),
    "guard.unlock->OPEN": (guard_unlock, (NF, NF, LOCKED, False, NF, NF, LOCKED, True)),
    "guard.succeed->OPEN": (guard_succeed, (NF, NF, "ok", NF, False)),
    "guard.release->OPEN": (guard_release, (NF, NF, LOCKED, True, "ok", NF, NF, False)),
    "guard.count->OPEN": (guard_count, (INTERNAL, INTERNAL, LOCKED, True)),
    "guard.confirm->LOCKED": (guard_confirm, (NF, NF, LOCKED, True)),
    "guard.uncount->OPEN": (guard_uncount, ("session_not_found", "session_not_found", NF, False)),
    "login.expire->EXPIRED": (login_expire, "intermediate_session_not_found"),
    "login.consume->CONSUMED": (login_consume, ("ok", "intermediate_session_not_found")),
    "session.expire->EXPIRED": (session_expire, ("session_not_found", None)),
    "session.idle->STEP_UP_REQUIRED": (session_idle, ("ok", True)),
    "session.touch->ACTIVE": (session_touch, (("ok", False), ("ok", False))),
    "session.add_factor->ACTIVE": (session_add_factor, ["magic_link", "otp", "password"]),
    "session.step_up->ACTIVE": (session_step_up, (("ok", True), "ok", ("ok", False))),
    "session.revoke->REVOKED": (session_revoke, (("ok", True), ("session_not_found", None), "session_not_found")),
}


# ------------------------------------------------------------------------------------------------ tests


@pytest.mark.parametrize("name", sorted(TABLES))
def test_machine_has_no_auto_transitions(name: str) -> None:
    states, _, table = TABLES[name]
    triggers = {row["trigger"] for row in table}
    assert not [t for t in triggers if t.startswith("to_")], "a to_<state> trigger would skip the rules"
    built = MACHINES[name]
    assert not [e for e in built.events if e.startswith("to_")]
    assert set(built.events) == triggers  # the machine holds exactly the table's events
    assert built.auto_transitions is False
    assert {s.name for s in states} >= {d.name for row in table for d in [row["dest"], *sources(row)]}


def test_every_transition_has_a_scenario() -> None:
    assert sorted(SCENARIOS) == sorted(lbl for _, _, lbl in ALL_TRANSITIONS)


@pytest.mark.parametrize(("machine", "index", "name"), ALL_TRANSITIONS, ids=[t[2] for t in ALL_TRANSITIONS])
def test_removing_a_transition_changes_behaviour(monkeypatch: pytest.MonkeyPatch, machine: str, index: int,
                                                 name: str) -> None:
    scenario, expected = SCENARIOS[name]
    shipped = scenario()
    assert shipped == expected
    with monkeypatch.context() as patch:
        remove_transition(patch, machine, index)
        without = scenario()
    assert without != shipped, f"removing {name} changed nothing the public API shows"
    assert scenario() == shipped  # restored


def test_without_code_expiry_an_expired_code_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(MACHINES["code"].events["expire"].transitions, "SENT", [])
    assert code_expire() == "ok"


def test_without_idle_there_is_no_step_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(MACHINES["session"].events["idle"].transitions, "ACTIVE", [])
    assert session_idle() == ("ok", False)


def test_without_ist_expiry_an_expired_ist_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(MACHINES["login"].events["expire"].transitions, "ISSUED", [])
    assert login_expire() == "ok"


def test_without_reject_counting_a_code_never_dies(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(MACHINES["code"].events["reject"].transitions, "SENT", [])
    assert code_reject_exhausted()[-1] == "ok"


# ---------------------------------------------------------------------------------------------- diagram


def test_diagram_draws_every_machine_and_every_trigger() -> None:
    text = mfa_flow.diagram()
    assert isinstance(text, str)
    assert text == mfa_flow.diagram(format="mermaid")
    assert text.count("stateDiagram-v2") == len(TABLES)
    for name, (states, _, table) in TABLES.items():
        assert name in text
        for row in table:
            assert re.search(rf"\b{re.escape(row['trigger'])}\b", text), f"{name}: trigger {row['trigger']}"
        for state in states:
            assert state.name in text


def test_diagram_follows_the_tables(monkeypatch: pytest.MonkeyPatch) -> None:
    """diagram() renders the very tables the flow runs on."""
    states, initial, table = TABLES["login"]
    extra = {"trigger": "revoke_for_diagram_test", "source": initial, "dest": next(iter(states))}
    monkeypatch.setitem(TABLES, "login", (states, initial, [*table, extra]))
    assert "revoke_for_diagram_test" in mfa_flow.diagram()


@pytest.mark.parametrize("fmt", ["dot", "graphviz", ""])
def test_diagram_unknown_format_is_a_configuration_error(fmt: str) -> None:
    with pytest.raises(ConfigurationError) as ei:
        mfa_flow.diagram(format=fmt)
    assert ei.value.error_type == "invalid_argument"
    assert "format" in str(ei.value)


def test_transitions_trigger_api_runs_the_same_lean_transitions_as_fire() -> None:
    """``machine.events[name].trigger(record, **kwargs)`` — transitions' own API, as the docs show it — and
    the flow's ``fire`` take the same transitions: conditions decide, callbacks change only the record."""
    def by_fire(record: CodeState, **kwargs: Any) -> bool:
        return fire(CODE, "verify", record, **kwargs)

    for trigger in (CODE.events["verify"].trigger, by_fire):
        code = CodeState(state=CodePhase.SENT, code_id="c1", attempts=2)
        assert trigger(code, matched=False) is False
        assert (code.state, code.attempts) == (CodePhase.SENT, 2)
        assert trigger(code, matched=True) is True
        assert code.state is CodePhase.VERIFIED
        assert trigger(code, matched=True) is False  # no transition from VERIFIED: nothing changes
        assert code.state is CodePhase.VERIFIED
    guard = GuardState(failures=4)
    assert GUARD.events["fail"].trigger(guard, now=100.0, threshold=5, lock_for=60.0) is True
    assert (guard.state, guard.failures, guard.locked_until) == (GuardPhase.LOCKED, 5, 160.0)
    assert fire(GUARD, "no_such_trigger", guard) is False
