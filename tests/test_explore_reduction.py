"""explore's machinery loses nothing: with its snapshots, its shortcut for steps that change nothing, its
deduplication and its ordering reduction it reaches exactly the states (as the checker keys them) that replaying
every sequence from a fresh universe reaches, to depth 2; the ordering reduction alone reaches those of the search
without it, to depth 3; and the same run twice reaches the same ones."""

from __future__ import annotations

import sys
from typing import Any

import pytest

import mfa_flow.testing.explore  # noqa: F401 - the module, not the function the package exports
from mfa_flow import Policy
from mfa_flow.testing import Checker, explore

EXPLORE = sys.modules["mfa_flow.testing.explore"]


def replayed(policy: Policy, depth: int) -> tuple[set[Any], set[str]]:
    """The keys of the states every sequence of at most ``depth`` actions reaches, and what they break, each
    sequence run from a fresh universe: no snapshot, no deduplication, no order skipped."""
    keys: set[Any] = set()
    broken: set[str] = set()

    def grow(path: tuple[Any, ...]) -> None:
        checker = Checker(policy)
        for action in path:
            broken.update(name for name, _ in checker.step(action)[1])
        keys.add(checker.key())
        if len(path) < depth:
            for action in list(checker.actions()):
                grow((*path, action))

    grow(())
    return keys, broken


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


def test_explore_reaches_the_states_a_replay_of_every_sequence_reaches(monkeypatch: pytest.MonkeyPatch) -> None:
    """A snapshot taken or restored wrong, or a step wrongly judged to change nothing, makes explore reach other
    states than replaying every sequence from scratch, even when it breaks the search with and without the
    ordering reduction alike: at depth 2 on the default policy the two sets are the same, each counted once."""
    explored: set[Any] = set()
    key = Checker.key

    def recorded(checker: Checker) -> Any:
        explored.add(found := key(checker))
        return found

    monkeypatch.setattr(Checker, "key", recorded)
    report = explore(Policy(), depth=2)
    monkeypatch.undo()
    states, broken = replayed(Policy(), 2)
    assert (report.ok, report.complete, report.depth) == (True, True, 2)
    assert broken == set()
    assert explored == states
    assert report.states == len(states)
