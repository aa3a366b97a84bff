"""benchmarks/bench_flow.py stays runnable: a --quick smoke run prints its figures (no assertion on speed)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks" / "bench_flow.py"
NUMBER = r"(\d+(?:\.\d+)?)"


@pytest.mark.timeout(180)
def test_bench_flow_quick_prints_its_figures() -> None:
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    done = subprocess.run(  # noqa: S603 - this interpreter and the project's own script
        [sys.executable, str(BENCH), "--quick"], cwd=ROOT, env=env, capture_output=True, timeout=170,
        check=False,
    )
    out = done.stdout.decode("utf-8")
    assert done.returncode == 0, out + done.stderr.decode("utf-8", "replace")
    figures = []
    for pattern in (rf"ours \(MfaFlow\):\s+{NUMBER} µs/login", rf"baseline \(hand-written\):\s+{NUMBER} µs/login",
                    rf"ratio ours/baseline:\s+{NUMBER}", rf"{NUMBER} bytes per pending login"):
        found = re.search(pattern, out)
        assert found is not None, f"{pattern!r} not in:\n{out}"
        figures.append(float(found.group(1)))
    ours_us, base_us, ratio_value, per_login = figures
    assert ours_us > 0
    assert base_us > 0
    assert per_login > 0
    assert ratio_value == pytest.approx(ours_us / base_us, rel=0.01, abs=0.01)


@pytest.mark.timeout(180)
def test_bench_explore_quick_prints_its_figures() -> None:
    """benchmarks/bench_explore.py --quick: ours per depth, the naive replay and its ratio, the seeded faults."""
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    done = subprocess.run(  # noqa: S603 - this interpreter and the project's own script
        [sys.executable, str(ROOT / "benchmarks" / "bench_explore.py"), "--quick"], cwd=ROOT, env=env,
        capture_output=True, timeout=170, check=False,
    )
    out = done.stdout.decode("utf-8")
    assert done.returncode == 0, out + done.stderr.decode("utf-8", "replace")
    depths = re.findall(r"depth (\d): +([\d,]+) runs +([\d,]+) states", out)
    assert [d for d, _, _ in depths] == ["1", "2"]
    assert all(int(runs.replace(",", "")) >= int(states.replace(",", "")) > 0 for _, runs, states in depths)
    assert re.search(rf"ratio baseline/ours at depth 1: {NUMBER}x the time", out), out
    found = re.findall(r"  (.+?) +\d+\.\d+ s  (\w+) in (\d+) steps", out)
    assert [(prop, int(steps) <= 3) for _, prop, steps in found] == [
        ("code_expiry", True), ("wrong_destination", True), ("at_most_three_texts", True)], out


@pytest.mark.timeout(180)
def test_bench_import_quick_prints_its_figures() -> None:
    """benchmarks/bench_import.py --quick: ours and the dependencies in ms, their ratio, mfa_flow's own modules."""
    from tests.test_import_cost import EAGER_MODULES

    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    done = subprocess.run(  # noqa: S603 - this interpreter and the project's own script
        [sys.executable, str(ROOT / "benchmarks" / "bench_import.py"), "--quick"], cwd=ROOT, env=env,
        capture_output=True, timeout=170, check=False,
    )
    out = done.stdout.decode("utf-8")
    assert done.returncode == 0, out + done.stderr.decode("utf-8", "replace")
    figures = []
    for pattern in (rf"import mfa_flow:\s+{NUMBER} ms", rf"import transitions, attrs, phonenumbers:\s+{NUMBER} ms",
                    rf"ratio ours/deps:\s+{NUMBER}"):
        found = re.search(pattern, out)
        assert found is not None, f"{pattern!r} not in:\n{out}"
        figures.append(float(found.group(1)))
    ours_ms, deps_ms, ratio_value = figures
    assert ours_ms > 0
    assert deps_ms > 0
    assert ratio_value == pytest.approx(ours_ms / deps_ms, rel=0.01, abs=0.01)
    # the modules it counts as mfa_flow's are exactly those tests/test_import_cost.py pins
    counted = re.search(r"mfa_flow's own modules: (\d+)", out)
    assert counted is not None, out
    assert int(counted.group(1)) == len(EAGER_MODULES)
    listed = re.findall(r"^ +\d+\.\d+ ms  (\S+)$", out.split("other modules")[0], re.MULTILINE)
    assert listed
    assert set(listed) <= EAGER_MODULES
