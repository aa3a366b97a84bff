"""Spec §13, explore: it bites and never cries wolf.

Each fault below is one a user could really ship (tests/explore_faults.py); the checker must name it by the
invariant it breaks, with a shortest counter-example a person can read and a test that replays it. The same
checks on a flow and a policy that keep the rule must report nothing.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import phonenumbers
import pytest

from mfa_flow import ConfigurationError, Policy
from mfa_flow.testing import MfaWorld, Report, Violation, explore
from mfa_flow.testing.explore import universe
from tests import explore_faults as faults

REPO = Path(__file__).resolve().parent.parent

#: (flow factory, the invariant it breaks, the length of a shortest counter-example, what its message says).
FAULTS = [
    # login → 121 s (the policy's otp_ttl + 1) → the newest code: the flow's 300 s code is still live.
    pytest.param(faults.flow_with_longer_codes, "code_expiry", 3, r"accepted 121 s after .*\(otp_ttl is 120 s\)",
                 id="otp_ttl-300-vs-120"),
    # login → wrong codes until refused: the tenth is answered otp_code_not_found, not with a lock.
    pytest.param(faults.flow_with_higher_lockout, "lockout", 2, r"wrong code number 10 in a row .* not locked",
                 id="lockout_threshold-20-vs-10"),
    # login (one text) → codes until refused: the sixth text within 600 s goes out.
    pytest.param(faults.flow_with_looser_limits, "send_limits", 2, r"\d+ SMS within 600 s .* allows 5\)",
                 id="send-limits-10-vs-5"),
    # a member of the OPTIONAL organization with a verified phone gets a session at once; 1801 s later it passes.
    pytest.param(faults.flow_with_longer_idle, "inactivity", 3, r"1801 s after its last use",
                 id="inactivity_timeout-3600-vs-1800"),
    # a member with no factor links a GB number with no token: one step.
    pytest.param(faults.flow_texting_gb, "refused_destination", 1, r"which the policy refuses",
                 id="allowed_regions-with-GB"),
    pytest.param(faults.flow_with_swapped_numbers, "wrong_destination", 1, r"an SMS for alice went to \+1212…0100",
                 id="gateway-swaps-from-and-to"),
    pytest.param(faults.flow_accepting_any_code, "mfa_bypass", 2, r"a wrong code was accepted for alice",
                 id="provider-verify-stub"),
    pytest.param(faults.flow_with_sso_as_mfa, "mfa_bypass", 1, r"session from primary authentication alone",
                 id="sso-counts-as-mfa"),
    # login → login again (a second code) → the first code with the second IST: the resend did not supersede it.
    pytest.param(faults.flow_accepting_earlier_codes, "one_live_code", 3,
                 r"alice's previous code was accepted after a newer one was sent", id="provider-accepts-earlier-codes"),
    # cara (TOTP, no phone) links a number with no token: refused, and the wrapper records TOTP unchecked.
    pytest.param(faults.flow_relinking_with_unchecked_totp, "unverified_link", 1,
                 r"a number was linked to cara, who has an active MFA factor, with no token$",
                 id="link-retried-with-unchecked-totp"),
    # login → wrong codes until locked → login again: the wrapper's unlock lets the login text a code.
    pytest.param(faults.flow_unlocking_on_login, "locked_activity", 3, r"an SMS went to alice while alice was locked",
                 id="login-clears-the-lock"),
    # login → the newest code with no token: refused, and the refusal quotes the code.
    pytest.param(faults.flow_quoting_codes, "secret_leak", 2, r"appears in an error of verify",
                 id="error-quotes-the-code"),
    pytest.param(faults.flow_quoting_tokens, "secret_leak", 2, r"appears in an error of send",
                 id="error-quotes-the-ist"),
    pytest.param(faults.flow_normalising_numbers, "no_crash", 1, r"send raised NumberParseException",
                 id="crash-on-national-format"),
    pytest.param(faults.flow_with_role_lookup, "no_crash", 1, r"login raised KeyError", id="crash-on-one-member"),
    # alice logs in (her number is cached for acme), then ben links his: the SMS goes to alice's number. Every
    # sequence runs on a fresh flow, so the cache of another sequence never shortens it to one step.
    pytest.param(faults.flow_with_sticky_recipients, "wrong_destination", 2,
                 r"an SMS for \w+ went to \+1415…0101, not to", id="gateway-keeps-state-between-calls"),
]

#: (property, a policy that breaks it, shortest length, a policy that keeps it, depth to check that at).
PROPERTIES = [
    # default: 5 texts per member in 600 s; login + codes until refused reaches 5.
    pytest.param(faults.at_most_three_texts_in_ten_minutes, Policy(), 2, Policy(send_limit_per_member=(3, 600)), 3,
                 id="three-texts-in-ten-minutes"),
    # inactivity 3600: a fresh session is checked 3599 s later and passes.
    pytest.param(faults.idle_half_hour_needs_a_new_code, Policy(inactivity_timeout=3600), 3, Policy(), 3,
                 id="idle-half-hour"),
    # default allows CA: a member with no phone links a CA number with no token.
    pytest.param(faults.texts_stay_in_the_us, Policy(), 1, Policy(allowed_regions=frozenset({"US"})), 2, id="us-only"),
]


def load_test(source: str, path: Path) -> Callable[[], None]:
    """The test function a counter-example's ``to_pytest()`` wrote, saved and imported as a user would."""
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    (test,) = [getattr(module, name) for name in vars(module) if name.startswith("test_")]
    return test  # type: ignore[no-any-return]


@functools.cache
def search(factory: Any) -> Report:
    """explore at depth 3 on a faulty flow, once per factory for the whole module (the reports are frozen)."""
    return explore(flow_factory=factory, depth=3)


def only(report: Report) -> Violation:
    assert not report.ok
    (violation,) = report.violations
    return violation


@pytest.mark.parametrize(("factory", "invariant", "length", "message"), FAULTS)
def test_seeded_fault_is_named_with_a_shortest_counterexample(
        factory: Any, invariant: str, length: int, message: str) -> None:
    """A deployment whose flow, gateway or facade differs from the policy it is tested against is caught by
    the invariant the difference breaks, at the first depth where it can show, and nothing else is blamed."""
    report = search(factory)
    violation = only(report)
    assert violation.property == invariant
    assert re.search(message, violation.message), violation.message
    assert len(violation.steps) == length == report.depth  # breadth first: nothing deeper was explored
    assert report.complete


@pytest.mark.parametrize(("factory", "invariant", "length", "message"), FAULTS)
def test_counterexample_replays_and_passes_once_fixed(factory: Any, invariant: str, length: int, message: str,
                                                      tmp_path: Path) -> None:
    """The test ``to_pytest()`` writes fails with the same invariant on the faulty flow, and passes once the
    user builds the flow from the policy it is checked against (the regression test they keep)."""
    source = only(search(factory)).to_pytest()
    assert f"from tests.explore_faults import {factory.__name__}" in source
    with pytest.raises(AssertionError, match=rf"^{invariant}: .*{message}"):
        load_test(source, tmp_path / "test_faulty.py")()
    load_test(source.replace(factory.__name__, "policy_flow"), tmp_path / "test_fixed.py")()


def test_policy_depth_3_has_no_false_alarm() -> None:
    """The library's own flow under its default policy: no built-in invariant fires on any sequence of three
    actions (a checker that cries wolf would be switched off by its users)."""
    report = explore(depth=3)
    assert report.ok, str(report)
    assert report.violations == []
    assert report.complete
    assert report.depth == 3


def test_flow_stricter_than_its_policy_is_not_blamed() -> None:
    """The invariants are bounds: a deployment that expires, locks, limits and refuses sooner than the policy it
    is checked against breaks none of them."""
    report = explore(flow_factory=faults.flow_stricter_than_policy, depth=3)
    assert report.ok, str(report)
    assert report.complete


@pytest.mark.parametrize(("prop", "breaking", "length", "keeping", "depth"), PROPERTIES)
def test_user_property_the_policy_breaks_is_named(prop: Any, breaking: Policy, length: int, keeping: Policy,
                                                   depth: int) -> None:
    """A policy statement a user writes as a plain function with ``assert`` is reported under the function's
    name, with a shortest sequence, when the policy allows what it forbids."""
    report = explore(breaking, properties=[prop], depth=3)
    violation = only(report)
    assert violation.property == prop.__name__
    assert len(violation.steps) == length == report.depth


@pytest.mark.parametrize(("prop", "breaking", "length", "keeping", "depth"), PROPERTIES)
def test_user_property_the_policy_keeps_is_silent(prop: Any, breaking: Policy, length: int, keeping: Policy,
                                                   depth: int) -> None:
    """The same statement under a policy that keeps it: nothing reported, at least as deep as the
    counter-example was."""
    report = explore(keeping, properties=[prop], depth=depth)
    assert report.ok, str(report)
    assert report.complete
    assert report.depth == depth >= length


def test_violation_reads_as_a_numbered_story() -> None:
    """What a user sees in CI: the broken rule, then one numbered line per action naming the member, what it
    did and what it got, and how long after the previous call each call came."""
    violation = only(search(faults.flow_with_longer_codes))
    head, *lines = str(violation).splitlines()
    assert head.startswith("code_expiry: ")
    assert violation.message in head
    assert [re.match(r"\s*(\d+)\. ", line).group(1) for line in lines] == ["1", "2", "3"]  # type: ignore[union-attr]
    assert re.search(r"1\. alice logs in by password → IST, code sent$", lines[0])
    assert "121 s" in lines[1]
    assert re.search(r"3\. 121 s later, alice submits the newest code .*→ session$", lines[2])
    assert [step.action for step in violation.steps] == ["login", "advance", "verify"]
    assert violation.steps[2].at - violation.steps[0].at == 121


def test_report_summary_names_counts_and_violations() -> None:
    """``str(report)`` is the summary a CI log shows: the verdict, runs, states, depth, then each violation."""
    report = search(faults.flow_with_swapped_numbers)
    text = str(report)
    assert text.startswith("explore: 1 violation")
    assert f"{report.runs} runs" in text
    assert f"{report.states} distinct states" in text
    assert str(report.violations[0]) in text
    assert str(explore(depth=1)).startswith("explore: no violation")


def test_generated_test_fails_under_pytest_then_passes_fixed(tmp_path: Path) -> None:
    """The counter-example pasted into a user's test suite, run by pytest itself: the faulty flow fails with
    the invariant's name, the flow built from the policy passes."""
    source = only(search(faults.flow_with_longer_codes)).to_pytest()
    ast.parse(source)
    (tmp_path / "test_faulty.py").write_text(source)
    (tmp_path / "test_fixed.py").write_text(source.replace("flow_with_longer_codes", "policy_flow"))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(  # noqa: S603 - this interpreter, on the files this test wrote
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 1, done.stdout + done.stderr
    assert re.search(r"1 failed, 1 passed", done.stdout), done.stdout
    assert "FAILED test_faulty.py::test_code_expiry_counterexample" in done.stdout
    assert re.search(r"^E +AssertionError: code_expiry: alice's code was accepted 121 s", done.stdout, re.MULTILINE)


def test_replay_without_an_importable_factory_fails_saying_so(tmp_path: Path) -> None:
    """A factory defined inside a test cannot be imported by the generated test: the replay must fail saying
    so, never pass because it silently ran the library's own flow."""
    def local_factory(policy: Policy, **plugs: Any) -> Any:
        return faults.flow_with_swapped_numbers(policy, **plugs)

    source = only(explore(flow_factory=local_factory, depth=1)).to_pytest()
    with pytest.raises(AssertionError, match="not importable"):
        load_test(source, tmp_path / "test_local.py")()


def test_all_violations_reports_each_property_once_with_its_own_shortest_sequence() -> None:
    """A flow with two faults: by default the search stops at depth 1 with the first; with
    ``all_violations=True`` it goes on and reports each broken invariant once, each with its shortest sequence."""
    first = explore(flow_factory=faults.flow_with_two_faults, depth=2)
    assert [v.property for v in first.violations] == ["wrong_destination"]
    assert first.depth == 1
    assert first.runs <= explore(depth=1).runs
    every = explore(flow_factory=faults.flow_with_two_faults, depth=2, all_violations=True)
    names = [v.property for v in every.violations]
    assert len(names) == len(set(names))
    lengths = {v.property: len(v.steps) for v in every.violations}
    assert lengths["wrong_destination"] == 1
    assert lengths["send_limits"] == 2
    assert every.complete
    assert every.depth == 2
    assert not every.ok


def test_report_counts_runs_states_and_time() -> None:
    """``runs`` counts sequences executed, ``states`` the distinct ones (fewer: equivalent states are explored
    once), ``elapsed`` the wall time; each grows with depth."""
    started = time.perf_counter()
    one = explore(depth=1)
    two = explore(depth=2)
    wall = time.perf_counter() - started
    for report in (one, two):
        assert report.ok
        assert report.complete
        assert 1 < report.states <= report.runs + 1
        assert report.elapsed > 0
    assert one.elapsed + two.elapsed <= wall
    assert two.runs > one.runs
    assert two.states > one.states
    assert two.states < two.runs  # deduplication did something


def test_seconds_cuts_a_search_short() -> None:
    """A CI budget: ``seconds`` stops a search that would take hours, and the report says it is incomplete. The
    budget is watched as the search goes, not only between levels: it stops inside the level it was in, having
    run fewer actions than finishing that level takes (work, not wall time, which a shared machine stretches)."""
    report = explore(depth=6, seconds=0.2)
    assert not report.complete
    assert report.depth < 6
    assert report.runs < explore(depth=report.depth).runs
    assert report.elapsed >= 0.2
    assert "cut short" in str(report)


@pytest.mark.parametrize(("kwargs", "argument"), [
    ({"depth": 0}, "depth"), ({"depth": -1}, "depth"), ({"depth": True}, "depth"), ({"depth": "3"}, "depth"),
    ({"depth": 2.5}, "depth"), ({"seconds": 0}, "seconds"), ({"seconds": -1.0}, "seconds"),
    ({"seconds": True}, "seconds"), ({"seconds": "1"}, "seconds"),
])
def test_bad_arguments_are_refused_naming_them(kwargs: dict[str, Any], argument: str) -> None:
    """A typo in a CI script (``depth="3"``, ``seconds=0``) is refused at once, naming the argument."""
    with pytest.raises(ConfigurationError) as refused:
        explore(**kwargs)
    assert refused.value.error_message.startswith(f"{argument}:")
    assert refused.value.error_type == "invalid_argument"


def test_same_search_same_counterexample() -> None:
    """Two runs of one search report the same sequence, runs and states: a counter-example seen in CI is the
    one seen on a laptop."""
    def fingerprint() -> Any:
        report = explore(flow_factory=faults.flow_with_longer_codes, depth=3)
        steps = [(s.action, s.member_id, s.args, s.at - report.violations[0].steps[0].at)
                 for s in report.violations[0].steps]
        return steps, report.runs, report.states

    assert fingerprint() == fingerprint()


def test_same_counterexample_across_processes() -> None:
    """The same across interpreters with different string hashing (a CI runner and a laptop)."""
    script = ("from mfa_flow.testing import explore; from tests.explore_faults import flow_accepting_any_code as f; "
              "r = explore(flow_factory=f, depth=3); v = r.violations[0]; print(r.runs, r.states, str(v))")
    outputs = [subprocess.run(  # noqa: S603 - this interpreter and a fixed script
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120, check=True,
        env={**os.environ, "PYTHONHASHSEED": seed}).stdout for seed in ("1", "2")]
    assert outputs[0] == outputs[1]
    assert "mfa_bypass" in outputs[0]


def test_universe_is_the_one_the_spec_describes() -> None:
    """What a user's policy is checked over: two organizations, four members in each, and the numbers a send
    may ask for (the linked one, its national form, the second member's, CA, GB, premium rate)."""
    world, people = universe()
    assert isinstance(world, MfaWorld)
    orgs = {p.member.organization_id: world.flow.get_organization(p.member.organization_id) for p in people}
    assert sorted((o.mfa_policy, o.mfa_methods, tuple(o.allowed_mfa_methods)) for o in orgs.values()) == [
        ("OPTIONAL", "RESTRICTED", ("totp",)), ("REQUIRED_FOR_ALL", "ALL_ALLOWED", ())]
    assert len({p.member.member_id for p in people}) == len(people) == 8
    for org_id in orgs:
        verified, no_phone, totp, second = [p.member for p in people if p.member.organization_id == org_id]
        assert verified.mfa_phone_number
        assert verified.mfa_phone_number_verified
        assert not no_phone.mfa_phone_number
        assert not no_phone.totp_registration_id
        assert totp.totp_registration_id
        assert not totp.mfa_phone_number
        assert second.mfa_phone_number
        assert second.mfa_phone_number != verified.mfa_phone_number
        numbers = next(p.numbers for p in people if p.member.organization_id == org_id)
        assert numbers[0] is None  # a send with no number
        own, national, other, ca, gb, premium = (str(n) for n in numbers[1:])
        assert own == verified.mfa_phone_number
        assert other == second.mfa_phone_number
        assert not national.startswith("+")
        assert phonenumbers.format_number(phonenumbers.parse(national, "US"),
                                          phonenumbers.PhoneNumberFormat.E164) == own
        regions = [phonenumbers.region_code_for_number(phonenumbers.parse(n)) for n in (own, other, ca, gb)]
        assert regions == ["US", "US", "CA", "GB"]
        assert phonenumbers.number_type(phonenumbers.parse(premium)) == phonenumbers.PhoneNumberType.PREMIUM_RATE


def test_a_flow_without_the_policys_resend_cooldown_is_named() -> None:
    """A deployment that forgot the policy's resend cooldown: a login's text, then a resend at once."""
    policy = Policy(resend_cooldown=30)
    report = explore(policy, flow_factory=faults.flow_without_cooldown, depth=2)
    [violation] = report.violations
    assert violation.property == "send_limits"
    assert re.search(r"two SMS to \w+ 0 s apart \(resend_cooldown is 30 s\)", violation.message), violation.message
    assert len(violation.steps) == 2
    assert explore(policy, flow_factory=faults.policy_flow, depth=2).ok  # with the cooldown: silent
