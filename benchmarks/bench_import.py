"""What ``import mfa_flow`` costs, against importing its runtime dependencies (transitions, attrs, phonenumbers).

    python3 benchmarks/bench_import.py            # 15 runs of each statement
    python3 benchmarks/bench_import.py --quick    # a smoke run of 3
    python3 benchmarks/bench_import.py --bare     # without site (.pth files, sitecustomize) in the baseline

Each statement runs in a fresh interpreter under ``python -X importtime``; its figure is the sum of the
top-level cumulative times, the minimum over the runs, minus the minimum over as many runs of ``pass`` (what
the interpreter imports at startup). Runs alternate between the three statements, so a busy moment of a shared
machine slows all of them. Target (issue 11): ``import mfa_flow`` <= 1.2x the dependencies.

Bytecode: the runs read compiled bytecode, as an installed package does (pip compiles it), from a temporary
``PYTHONPYCACHEPREFIX`` filled by a first, untimed run; with ``PYTHONDONTWRITEBYTECODE`` set (as in this
project's sandbox) an editable checkout would otherwise be compiled from source on every import.

``--bare`` runs with ``-S`` and this interpreter's ``sys.path`` as ``PYTHONPATH``: the baseline then holds no
module a ``.pth`` file happens to import (here one imports certifi, which loads typing, re, pathlib and
importlib.resources before any statement runs).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from importlib.metadata import version

OURS = "import mfa_flow"
DEPS = "import transitions, attrs, phonenumbers"
BASELINE = "pass"
TARGET = 1.2

#: module -> (own µs, cumulative µs, depth: 0 for what the statement itself imports)
Modules = dict[str, tuple[int, int, int]]


def importtime(statement: str, flags: Sequence[str], env: Mapping[str, str]) -> Modules:
    """What one fresh interpreter running ``statement`` imported, and how long each module took."""
    done = subprocess.run(  # noqa: S603 - this interpreter, with statements fixed above
        [sys.executable, *flags, "-X", "importtime", "-c", statement],
        capture_output=True, text=True, env=env, check=True,
    )
    modules: Modules = {}
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "[us]" in line:
            continue
        self_us, cumulative, name = line.removeprefix("import time:").split("|")
        depth = (len(name) - len(name.lstrip()) - 1) // 2
        modules[name.strip()] = (int(self_us), int(cumulative), depth)
    return modules


def total(modules: Modules) -> int:
    """The statement's import time: the sum of the cumulative times of the top-level imports."""
    return sum(cumulative for _, cumulative, depth in modules.values() if depth == 0)


def measure(runs: int, flags: Sequence[str], env: Mapping[str, str]) -> dict[str, list[Modules]]:
    statements = (BASELINE, DEPS, OURS)
    for statement in statements:  # untimed: fills the bytecode cache
        importtime(statement, flags, env)
    timed: dict[str, list[Modules]] = {s: [] for s in statements}
    for _ in range(runs):
        for statement in statements:
            timed[statement].append(importtime(statement, flags, env))
    return timed


def least_self(runs: Sequence[Modules]) -> dict[str, int]:
    """Each module's own time (without what it imports), the minimum over the runs."""
    best: dict[str, int] = {}
    for modules in runs:
        for name, (self_us, _, _) in modules.items():
            best[name] = min(best.get(name, self_us), self_us)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 runs of each statement (a smoke run)")
    parser.add_argument("--runs", type=int, help="runs of each statement (default 15, --quick 3)")
    parser.add_argument("--bare", action="store_true", help="run with -S: no site, no .pth files in the baseline")
    parser.add_argument("--top", type=int, default=12, help="how many of mfa_flow's own modules to list")
    args = parser.parse_args(argv)
    runs = args.runs or (3 if args.quick else 15)

    with tempfile.TemporaryDirectory(prefix="bench_import_pycache_") as cache:
        env = {**os.environ, "PYTHONPYCACHEPREFIX": cache}
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        flags: list[str] = []
        if args.bare:
            flags.append("-S")
            env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        timed = measure(runs, flags, env)

    base = min(map(total, timed[BASELINE]))
    ours = (min(map(total, timed[OURS])) - base) / 1000
    deps = (min(map(total, timed[DEPS])) - base) / 1000
    ratio = ours / deps

    print(f"Python {sys.version.split()[0]}, transitions {version('transitions')}, attrs {version('attrs')}, "
          f"phonenumbers {version('phonenumbers')}; {runs} runs each, the minimum, minus `pass`"
          + (" (-S: no site)" if args.bare else ""))
    print(f"{OURS + ':':<45}{ours:8.1f} ms")
    print(f"{DEPS + ':':<45}{deps:8.1f} ms")
    print(f"{'ratio ours/deps:':<45}{ratio:8.2f}   (target <= {TARGET}: {'met' if ratio <= TARGET else 'not met'})")

    own = least_self(timed[OURS])
    loaded_anyway = set().union(*timed[DEPS], *timed[BASELINE])
    mine = sorted(((us, name) for name, us in own.items() if name.split(".")[0] == "mfa_flow"), reverse=True)
    added = sorted(((us, name) for name, us in own.items()
                    if name.split(".")[0] != "mfa_flow" and name not in loaded_anyway), reverse=True)
    print(f"\nmfa_flow's own modules: {len(mine)}, {sum(us for us, _ in mine) / 1000:.1f} ms of their own time "
          f"(without what they import); the largest:")
    for us, name in mine[:args.top]:
        print(f"  {us / 1000:6.2f} ms  {name}")
    print(f"\nother modules only mfa_flow loads (not the dependencies, not startup): {len(added)}, "
          f"{sum(us for us, _ in added) / 1000:.1f} ms of their own time; the largest:")
    for us, name in added[:args.top]:
        print(f"  {us / 1000:6.2f} ms  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
