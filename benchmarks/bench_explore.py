"""What ``explore`` costs, and what its state deduplication, snapshots and ordering reduction buy.

    python3 benchmarks/bench_explore.py            # depths 1-4, the naive replay to depth 2, seeded faults
    python3 benchmarks/bench_explore.py --deep     # also depth 5 (cut at --budget seconds), 6 projected
    python3 benchmarks/bench_explore.py --quick    # a smoke run of a few seconds

Ours: ``explore(Policy(), depth=d)`` on the default policy, on one core (the process runs no thread of its
own). Figures per depth: runs (actions made), distinct states, seconds, runs per second, and whether the level
finished. Depths up to 3 are timed over ``--rounds`` rounds and the median is quoted; depth 4 once. ``--deep``
explores to depth 5 once, cut at ``--budget`` seconds, printing each level as it finishes, and projects depth 6.

Baseline: a plain replay of every sequence, as the checker would be without its machinery: every sequence of at
most d actions is run from a fresh universe (a new flow, store and model), with the same invariants checked
after each step, no state seen twice skipped and no order of unrelated actions pruned; each sequence is run
once (its prefix's run is the one that lists its actions) with the collector off, as ``explore`` runs. Both
sides run the same ``Checker`` steps, so the ratio is the machinery alone. The baseline's sequences grow as the
branching factor to the power d: it is measured to depth 2 and projected beyond.

Seeded faults: a user's real mistakes, each found at depth <= 3 (the issue's 10 s target): a flow built with a
longer code lifetime than the policy it is checked against (``code_expiry``), a gateway adapter that texts the
wrong number (``wrong_destination``) and the property "nobody gets more than 3 texts in 10 minutes" under the
default policy, which allows 5 (``at_most_three_texts_in_ten_minutes``). They are the test suite's own
(tests/explore_faults.py). Each reports the seconds to the first violation (median over the rounds) and the
length of the counter-example.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mfa_flow import Policy
from mfa_flow.testing import Checker, Report, explore
from tests.explore_faults import at_most_three_texts_in_ten_minutes, flow_with_longer_codes, flow_with_swapped_numbers

Action = tuple[Any, ...]


# --- the baseline: every sequence replayed from scratch ---------------------------------------------------------


def naive(policy: Policy, depth: int) -> tuple[int, int, float]:
    """Every sequence of at most ``depth`` actions, each replayed once on a fresh Checker, with the collector off
    as ``explore`` runs: (sequences, runs, s)."""
    sequences = runs = 0
    collecting = gc.isenabled()
    gc.disable()
    started = time.perf_counter()

    def replay(path: tuple[Action, ...]) -> Checker:
        nonlocal runs
        checker = Checker(policy)
        for action in path:
            checker.step(action)
            runs += 1
        return checker

    def grow(path: tuple[Action, ...], checker: Checker) -> None:
        nonlocal sequences
        for action in list(checker.actions()):
            sequences += 1
            longer = (*path, action)
            after = replay(longer)
            if len(longer) < depth:
                grow(longer, after)

    try:
        grow((), Checker(policy))
        return sequences, runs, time.perf_counter() - started
    finally:
        if collecting:
            gc.enable()


# --- seeded faults ---------------------------------------------------------------------------------------------------


FAULTS: dict[str, dict[str, Any]] = {  # the test suite's own faults (tests/explore_faults.py)
    "other settings (otp_ttl 300 s)": {"flow_factory": flow_with_longer_codes},
    "gateway texts the wrong number": {"flow_factory": flow_with_swapped_numbers},
    "property: at most 3 texts in 10 min": {"properties": (at_most_three_texts_in_ten_minutes,)},
}


# --- measuring ----------------------------------------------------------------------------------------------


def timed(run: Callable[[], Report], rounds: int) -> tuple[Report, float]:
    """The report of the last round and the median of the rounds' seconds."""
    seconds = []
    report = None
    for _ in range(rounds):
        gc.collect()
        report = run()
        seconds.append(report.elapsed)
    assert report is not None
    return report, statistics.median(seconds)


def ours(depths: Iterator[int], rounds: int, budget: float | None) -> dict[int, tuple[Report, float]]:
    figures = {}
    for depth in depths:
        report, seconds = timed(lambda d=depth: explore(Policy(), depth=d, seconds=budget), rounds if depth <= 3
                                else 1)
        figures[depth] = (report, seconds)
        done = "complete" if report.complete else f"cut at {budget:g} s (level {report.depth} reached)"
        print(f"  depth {depth}: {report.runs:>10,} runs {report.states:>10,} states {seconds:8.2f} s "
              f"{report.runs / seconds:>9,.0f} runs/s  {done}", flush=True)
    return figures


def deep(budget: float) -> None:
    """Depth 5 in one exploration cut at ``budget`` seconds, each level's figures as it finishes; depth 6 is
    projected from it. (Exploring to depth 6 keeps a snapshot of every state found at level 5: millions of them,
    more memory than a shared machine has.)"""
    print(f"ours: explore(Policy(), depth=5, seconds={budget:g}), levels as they finish")
    started = time.perf_counter()
    levels: list[tuple[int, int]] = [(1, 0)]  # (distinct states, runs) after each level; level 0: the start

    def level(depth: int, states: int, runs: int) -> None:
        seconds = time.perf_counter() - started
        levels.append((states, runs))
        print(f"  level {depth}: {runs:>12,} runs {states:>10,} states {seconds:8.1f} s {runs / seconds:>9,.0f} "
              "runs/s", flush=True)

    report = explore(Policy(), depth=5, seconds=budget, progress=level)
    rate = report.runs / report.elapsed
    print(f"  {'complete' if report.complete else 'cut short'} after {report.elapsed:.0f} s: {report.runs:,} runs, "
          f"{report.states:,} states, {rate:,.0f} runs/s")
    if report.complete and len(levels) == 6:
        # Level 6 expands the states first found at level 5, at the runs per expanded state level 5 took.
        (s3, _), (s4, r4), (s5, r5) = levels[3:6]
        frontier, per_state = s5 - s4, (r5 - r4) / (s4 - s3)
        print(f"  depth 6 projected: {frontier:,} states to expand x {per_state:.1f} runs each = about "
              f"{frontier * per_state:,.0f} more runs, {frontier * per_state / rate / 3600:,.1f} h at this rate, "
              f"with a snapshot of each of those {frontier:,} states held in memory")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: depth <= 2, one round")
    parser.add_argument("--deep", action="store_true", help="also depth 5, cut at --budget seconds; 6 projected")
    parser.add_argument("--budget", type=float, default=1800.0, help="seconds allowed to depth 5")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the short explorations (median quoted)")
    args = parser.parse_args()
    rounds = 1 if args.quick else args.rounds
    top = 2 if args.quick else 4
    print(f"bench_explore: Python {platform.python_version()} on {platform.machine()}, pid {os.getpid()}, "
          f"{'quick' if args.quick else f'{rounds} rounds'}")

    print("ours: explore(Policy(), depth=d)")
    figures = ours(iter(range(1, top + 1)), rounds, None)
    if args.deep and not args.quick:
        deep(args.budget)

    naive_depth = 1 if args.quick else 2
    sequences, runs, seconds = naive(Policy(), naive_depth)
    report, ours_seconds = figures[naive_depth]
    print(f"baseline: every sequence replayed from a fresh universe, depth {naive_depth}")
    print(f"  {sequences:,} sequences, {runs:,} runs, {seconds:.2f} s, {runs / seconds:,.0f} runs/s")
    print(f"ratio baseline/ours at depth {naive_depth}: {seconds / ours_seconds:.1f}x the time, "
          f"{runs / report.runs:.1f}x the runs")
    if not args.quick:
        branching = sequences ** (1 / naive_depth)
        deepest = max(d for d in figures if figures[d][0].complete)
        projected = sum(branching ** d * d for d in range(1, deepest + 1))
        print(f"  projected at depth {deepest} (branching {branching:.0f}): {projected:,.0f} runs, "
              f"{projected / (runs / seconds) / 3600:,.1f} h; ours: {figures[deepest][0].runs:,} runs, "
              f"{figures[deepest][1]:.1f} s")

    print("seeded faults: time to the first violation (depth <= 3)")
    for label, options in FAULTS.items():
        report, seconds = timed(lambda o=options: explore(Policy(), depth=3, **o), rounds)
        found = report.violations[0] if report.violations else None
        shown = f"{found.property} in {len(found.steps)} steps" if found else "NOT FOUND"
        print(f"  {label:<40} {seconds:6.2f} s  {shown}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
