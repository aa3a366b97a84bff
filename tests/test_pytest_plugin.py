"""The pytest plugin (docs/testing.md), run the way a user's project runs it: a project of its own in a
temporary directory, pytest in a subprocess, the plugin found only through the ``pytest11`` entry point
``mfa_flow`` (no conftest names it). The project's own pytest.ini turns warnings into errors and markers into
strict ones, as ours does, so an unregistered marker or a warning from the plugin fails it."""

from __future__ import annotations

import textwrap
from importlib.metadata import entry_points

import pytest

from tests.helpers_process import run_python

pytest_plugins = ["pytester"]

INI = """\
[pytest]
addopts = -p no:cacheprovider --strict-markers --strict-config
filterwarnings = error
"""

#: The toolkit issue's statement, as a user's test module states it (a property over the world's events).
STATEMENT = """
from mfa_flow import MfaError


def nobody_gets_more_than_3_texts_in_10_minutes(world):
    sent = world.events.named("otp.sent")
    for first in sent:
        within = [e for e in sent if e.member_id == first.member_id and 0 <= e.at - first.at < 600]
        assert len(within) <= 3, f"{first.member_id} got {len(within)} texts within 10 minutes"


def test_nobody_gets_more_than_3_texts_in_10_minutes(mfa_world):
    alice = mfa_world.member(phone=True)
    mfa_world.login(alice)
    for _ in range(4):
        mfa_world.idle(minutes=1)
        try:
            mfa_world.send(alice)
        except MfaError:
            pass
    nobody_gets_more_than_3_texts_in_10_minutes(mfa_world)
"""


def source(*parts: str) -> str:
    """Parts of a module, each indented as convenient, joined at column 0."""
    return "\n".join(textwrap.dedent(part) for part in parts)


def project(pytester: pytest.Pytester, *, conftest: str | None = None, **modules: str) -> None:
    """A user's project: its pytest.ini, an optional conftest and its test modules."""
    pytester.makefile(".ini", pytest=INI)
    if conftest is not None:
        pytester.makeconftest(textwrap.dedent(conftest))
    pytester.makepyfile(**{name: textwrap.dedent(source) for name, source in modules.items()})


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess("-q", *args)


def test_the_plugin_is_the_pytest11_entry_point_mfa_flow() -> None:
    found = {ep.name: ep.value for ep in entry_points(group="pytest11")}
    assert found.get("mfa_flow") == "mfa_flow.testing.pytest_plugin"


def test_mfa_world_gives_each_test_a_fresh_world_and_a_broken_statement_fails(pytester: pytest.Pytester) -> None:
    project(pytester, test_policy=source("""
        from mfa_flow import Policy
        """, STATEMENT, """

        def test_an_sso_login_texts_the_member(mfa_world):
            alice = mfa_world.member(phone=True)
            assert mfa_world.login(alice, via="sso").mfa_required.secondary_auth_initiated == "sms_otp"
            assert len(mfa_world.sms.sent) == 1


        def test_each_test_gets_a_world_of_its_own_on_the_default_policy(mfa_world):
            assert mfa_world.sms.sent == [] and mfa_world.members == {} and mfa_world.steps == []
            assert mfa_world.policy == Policy()
        """))
    result = run(pytester)
    # The default policy sends up to 5 codes in 10 minutes: the statement breaks and its test must fail.
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*AssertionError: member-test-1 got 5 texts within 10 minutes",
                                 "FAILED test_policy.py::test_nobody_gets_more_than_3_texts_in_10_minutes*"])


def test_a_conftest_overriding_mfa_policy_sets_the_policy_of_every_world(pytester: pytest.Pytester) -> None:
    project(pytester, conftest="""
        import pytest

        from mfa_flow import Policy


        @pytest.fixture
        def mfa_policy():
            return Policy(send_limit_per_member=(3, 600), resend_cooldown=30)
        """, test_policy=source(STATEMENT, """

        def test_the_world_runs_the_conftests_policy(mfa_world):
            assert mfa_world.policy.send_limit_per_member == (3, 600)
            assert mfa_world.flow.policy is mfa_world.policy
        """))
    run(pytester).assert_outcomes(passed=2)


def test_the_marker_builds_the_tests_policy_from_fields(pytester: pytest.Pytester) -> None:
    project(pytester, conftest="""
        import pytest

        from mfa_flow import Policy


        @pytest.fixture
        def mfa_policy():
            return Policy(inactivity_timeout=600)
        """, test_marker="""
        import pytest

        from mfa_flow import MfaError, Policy


        @pytest.mark.mfa_policy(resend_cooldown=30)
        def test_a_resend_waits_30_seconds(mfa_world):
            alice = mfa_world.member(phone=True)
            mfa_world.login(alice)
            with pytest.raises(MfaError) as refused:
                mfa_world.send(alice)
            assert refused.value.error_type == "too_many_requests"
            mfa_world.idle(30)
            mfa_world.send(alice)
            assert len(mfa_world.sms.sent) == 2


        @pytest.mark.mfa_policy(resend_cooldown=30)
        def test_the_marker_builds_from_the_defaults_not_the_conftests_policy(mfa_world):
            assert mfa_world.policy == Policy(resend_cooldown=30)


        def test_an_unmarked_test_keeps_the_conftests_policy(mfa_world):
            assert mfa_world.policy == Policy(inactivity_timeout=600)


        @pytest.mark.mfa_policy(send_limit_per_member=(5, 600))
        class TestAClassMarked:
            def test_its_tests_share_the_class_policy(self, mfa_world):
                assert mfa_world.policy.send_limit_per_member == (5, 600)
        """)
    run(pytester).assert_outcomes(passed=4)


def test_a_wrong_marker_field_is_an_error_naming_it(pytester: pytest.Pytester) -> None:
    project(pytester, test_marker="""
        import pytest


        @pytest.mark.mfa_policy(resend_cooldwn=30)
        def test_misspelled(mfa_world):
            pass


        @pytest.mark.mfa_policy(otp_ttl=-1)
        def test_out_of_range(mfa_world):
            pass


        @pytest.mark.mfa_policy(30)
        def test_positional(mfa_world):
            pass


        def test_unmarked(mfa_world):
            pass
        """)
    result = run(pytester)
    result.assert_outcomes(passed=1, errors=3)
    result.stdout.fnmatch_lines_random([  # the E lines: the error itself, not the marker's source line
        "E * 'resend_cooldwn'*", "E *Policy.otp_ttl: must be a number greater than 0*",
        "E *mfa_policy takes Policy fields as keywords*"])


def test_without_the_entry_point_there_is_no_mfa_world(pytester: pytest.Pytester) -> None:
    """The fixture comes from the entry point named ``mfa_flow``: disabling that plugin by name removes it."""
    project(pytester, test_plain="""
        def test_uses_the_world(mfa_world):
            assert mfa_world.policy is not None
        """)
    run(pytester).assert_outcomes(passed=1)
    result = run(pytester, "-p", "no:mfa_flow")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*fixture 'mfa_world' not found*"])


def test_importing_mfa_flow_testing_never_imports_pytest() -> None:
    code = ("import sys, mfa_flow.testing; from mfa_flow.testing import MfaWorld, explore; "
            "MfaWorld().member(phone=True); "
            "assert not {'pytest', '_pytest'} & set(sys.modules), sorted(m for m in sys.modules if 'pytest' in m)")
    proc = run_python("-c", code, timeout=60)
    assert proc.returncode == 0, proc.stderr
