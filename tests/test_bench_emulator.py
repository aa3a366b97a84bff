"""benchmarks/bench_emulator.py stays runnable: a --quick smoke run prints its figures (no assertion on speed)."""

from __future__ import annotations

import re

import pytest

from tests.emulator_server import require
from tests.helpers_process import run_bench

NUMBER = r"(\d+(?:\.\d+)?)"


def side(out: str, label: str) -> tuple[float, float, float]:
    """(requests/s, p50 ms, p99 ms) of one server's line; its errors must be none."""
    line = re.search(rf"^\s+{re.escape(label)}\s+{NUMBER} requests/s\s+p50\s+{NUMBER} ms\s+p99\s+{NUMBER} ms\s+"
                     r"\(errors: none\)$", out, re.MULTILINE)
    assert line is not None, f"no error-free line for {label!r} in:\n{out}"
    per_second, p50, p99 = (float(g) for g in line.groups())
    assert per_second > 0
    assert 0 < p50 <= p99
    return per_second, p50, p99


@pytest.mark.timeout(180)
def test_bench_emulator_quick_prints_its_figures() -> None:
    for module in ("stytch", "starlette", "uvicorn"):
        require(module)
    out = run_bench("bench_emulator.py")
    assert "otps.sms.send" in out  # the output says what was measured
    ours = side(out, "ours (mfa-flow serve):")
    base = side(out, "baseline (canned bodies):")
    for call in ("send", "get_member", "authenticate"):
        assert len(re.findall(rf"\b{call} {NUMBER}\b", out)) == 2, f"no p50 of {call} for each server in:\n{out}"
    ratio = re.search(rf"ratio ours/baseline:\s+throughput {NUMBER}\s+p50 latency {NUMBER}\s+p99 latency {NUMBER}",
                      out)
    assert ratio is not None, out
    throughput, p50, p99 = (float(g) for g in ratio.groups())
    # one round in --quick: each ratio is that of the two printed figures
    assert throughput == pytest.approx(ours[0] / base[0], rel=0.05, abs=0.01)
    assert p50 == pytest.approx(ours[1] / base[1], rel=0.05, abs=0.01)
    assert p99 == pytest.approx(ours[2] / base[2], rel=0.05, abs=0.01)
