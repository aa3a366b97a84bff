"""benchmarks/bench_stores.py stays runnable: a --quick smoke run prints a line per store (no assertion on speed)."""

from __future__ import annotations

import re
import shutil
from importlib.util import find_spec

import pytest

from tests.helpers_process import run_bench, unavailable

NUMBER = r"(\d+(?:\.\d+)?)"
#: Per public call, without contention: (transactions, reads, commits); the round trips are reads + commits.
#: The Redis command counts of tests/test_redis_store.py::test_round_trips_per_public_call agree.
PER_CALL = {
    "authenticate_primary": (1, 1, 1),
    "send_sms_otp": (1, 1, 1),
    "authenticate_sms_otp": (1, 1, 1),
    "authenticate_session": (1, 1, 1),  # a session used just now: its own record only
}


def _redis_missing() -> str | None:
    if shutil.which("redis-server") is None:
        return "redis-server is not on PATH (Debian: apt-get install redis-server)"
    if find_spec("redis") is None:
        return "redis-py is not installed (pip install mfa_flow[redis])"
    return None


@pytest.mark.timeout(180)
def test_bench_stores_quick_prints_a_line_per_store() -> None:
    missing = _redis_missing()
    if missing is not None:
        unavailable(missing, "the store benchmark on every store")
    out = run_bench("bench_stores.py")
    assert "skipped" not in out, out

    for store, workers in (("memory", 1), ("sqlite", 1), ("sqlite", 2), ("redis", 1), ("redis", 2)):
        line = re.search(rf"^\s+{store}\s+{workers} workers?\s+{NUMBER} logins/s.*errors: none\)$", out, re.MULTILINE)
        assert line is not None, f"no throughput line for {store} with {workers} worker(s) in:\n{out}"
        assert float(line.group(1)) > 0
    for store in ("memory", "sqlite", "redis"):
        calls = re.findall(rf"^\s+{store}\s+(authenticate_primary|send_sms_otp|authenticate_sms_otp|"
                           rf"authenticate_session)\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}", out, re.MULTILINE)
        assert len(calls) == 4, f"not one round-trip line per call for {store} in:\n{out}"
        counted = {call: tuple(float(n) for n in numbers) for call, *numbers in calls}
        expected = {call: (*counts, counts[1] + counts[2]) for call, counts in PER_CALL.items()}
        assert counted == expected, f"round trips per call for {store} in:\n{out}"
        pending = re.search(rf"^\s+{store}\s+{NUMBER} bytes per pending login", out, re.MULTILINE)
        assert pending is not None, f"no pending-login line for {store} in:\n{out}"
        assert float(pending.group(1)) > 0
