"""explore's machinery loses nothing: the ordering reduction, the state keys and the snapshots reach exactly the
states a plain exploration reaches, and the same run twice reaches the same ones."""

from __future__ import annotations

import sys

import pytest

import mfa_flow.testing.explore  # noqa: F401 - the module, not the function the package exports
from mfa_flow.testing import explore

EXPLORE = sys.modules["mfa_flow.testing.explore"]


def test_the_ordering_reduction_reaches_every_state_the_plain_search_reaches(monkeypatch: pytest.MonkeyPatch) -> None:
    """Skipping one order of two unrelated actions is sound only if their effects truly commute and the state
    key does not depend on the order they happened in: with it and without it, depth 3 reaches the same
    distinct states, with fewer runs."""
    reduced = explore(depth=3)
    monkeypatch.setattr(EXPLORE, "_commutes_before", lambda *_args: False)
    plain = explore(depth=3)
    assert (reduced.ok, plain.ok) == (True, True)
    assert reduced.states == plain.states
    assert reduced.runs < plain.runs * 0.8


def test_the_same_exploration_twice_reaches_the_same_states() -> None:
    """Codes and tokens are random; the state key names them by role, so nothing random tells states apart."""
    first, second = explore(depth=3), explore(depth=3)
    assert (first.runs, first.states) == (second.runs, second.states)
