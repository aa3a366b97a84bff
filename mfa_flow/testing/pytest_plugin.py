"""The pytest plugin (entry point ``mfa_flow``): an ``MfaWorld`` per test, built from the test's policy.

    def test_sso_login_texts_the_member(mfa_world):
        alice = mfa_world.member(phone=True)
        assert mfa_world.login(alice, via="sso").mfa_required.secondary_auth_initiated == "sms_otp"

    @pytest.mark.mfa_policy(resend_cooldown=30)
    def test_resend_waits(mfa_world): ...

The policy is the marker's fields when the test is marked, else the ``mfa_policy`` fixture, which returns
``None`` (the defaults) unless your conftest overrides it.
"""

from __future__ import annotations

import pytest

from mfa_flow.errors import MfaError
from mfa_flow.policy import Policy
from mfa_flow.testing.world import MfaWorld

__all__ = ["mfa_policy", "mfa_world"]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "mfa_policy(**fields): the Policy fields of this test's mfa_world")


@pytest.fixture
def mfa_policy() -> Policy | None:
    """The policy ``mfa_world`` is built with: override this fixture in a conftest to set one for many tests."""
    return None


@pytest.fixture
def mfa_world(request: pytest.FixtureRequest, mfa_policy: Policy | None) -> MfaWorld:
    """A fresh ``MfaWorld`` for this test: the ``mfa_policy`` marker's policy, else the ``mfa_policy`` fixture's."""
    marker = request.node.get_closest_marker("mfa_policy")
    if marker is None:
        return MfaWorld(mfa_policy)
    if marker.args:
        raise pytest.UsageError("@pytest.mark.mfa_policy takes Policy fields as keywords, e.g. "
                                "@pytest.mark.mfa_policy(resend_cooldown=30)")
    try:
        policy = Policy.from_mapping(marker.kwargs)
    except MfaError as refused:  # a misspelt field or a refused value: name the marker, not a Policy internal
        raise pytest.UsageError(f"@pytest.mark.mfa_policy: {refused.error_message}") from None
    return MfaWorld(policy)
