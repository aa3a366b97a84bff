"""Every ``mfa_world`` in this project runs our policy: the plugin's ``mfa_policy`` fixture, overridden."""

from __future__ import annotations

from pathlib import Path

import pytest

from mfa_flow import Policy

POLICY_FILE = Path(__file__).with_name("policy.toml")


@pytest.fixture
def mfa_policy() -> Policy:
    return Policy.from_toml(POLICY_FILE)
