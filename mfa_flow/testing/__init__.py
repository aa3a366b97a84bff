"""Test helpers: a clock you move, a transport that records, a world to write policy tests in, and a checker
that explores every short sequence of events for a policy. Never imports pytest (the plugin is
``mfa_flow.testing.pytest_plugin``)."""

from mfa_flow.testing.explore import Checker, Report, Violation, explore
from mfa_flow.testing.fakes import FakeClock, FakeTransport
from mfa_flow.testing.world import Events, MfaWorld, Step

__all__ = ["Checker", "Events", "FakeClock", "FakeTransport", "MfaWorld", "Report", "Step", "Violation", "explore"]
