"""Running the project as a user runs it: Python subprocesses with this checkout importable, the benchmark
scripts, and what to do when a program or package a test needs is missing.

``unavailable`` is the one place that decides between skip and fail: locally a missing service or dependency
skips the test; under CI (``CI=true``) every test must run, so it fails.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import NoReturn

import pytest

__all__ = ["AT_MOST_ONE_SMS_PER_MEMBER", "ROOT", "python_env", "python_output", "run_bench", "run_python",
           "unavailable"]

ROOT = Path(__file__).resolve().parent.parent
BENCH_TIMEOUT = 170  # under the benchmark tests' pytest timeout of 180 s

#: The head of a user's properties.py for ``mfa-flow check``: a property broken by two logins in a row under the
#: default send limit, kept by one text per 10 minutes. Each test appends its own further properties.
AT_MOST_ONE_SMS_PER_MEMBER = '''\
from collections import Counter


def at_most_one_sms_per_member(world):
    """No member gets more than 1 SMS."""
    worst = max(Counter(message.member_id for message in world.sms.sent).values(), default=0)
    assert worst <= 1, f"a member got {worst} texts"
'''


def unavailable(message: str, needed_by: str = "this test") -> NoReturn:
    """Skip the test for want of what ``message`` names, except under CI, where it fails."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message}; under CI {needed_by} must run", pytrace=False)
    pytest.skip(message)


def python_env(*first: Path | str, **variables: str) -> dict[str, str]:
    """This environment with ``first``, then the checkout, ahead of any inherited PYTHONPATH; plus ``variables``."""
    paths = [*map(str, first), str(ROOT), os.environ.get("PYTHONPATH")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, paths)), **variables}


def run_python(*args: str, cwd: Path = ROOT, env: Mapping[str, str] | None = None,
               timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``python ARGS`` in ``cwd`` to its end, bounded in time; ``env`` defaults to :func:`python_env`."""
    return subprocess.run(  # noqa: S603 - this interpreter, arguments fixed by the tests
        [sys.executable, *args], cwd=cwd, env=python_env() if env is None else env, capture_output=True, text=True,
        timeout=timeout, check=False)


def python_output(code: str) -> str:
    """Run ``code`` in a fresh interpreter from the project root; its stdout, stripped. It must exit 0."""
    done = run_python("-c", code)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def run_bench(script: str, *args: str) -> str:
    """``benchmarks/SCRIPT --quick ARGS`` to its end: its stdout. It must exit 0 (the output is the message)."""
    done = subprocess.run(  # noqa: S603 - this interpreter and the project's own script
        [sys.executable, str(ROOT / "benchmarks" / script), "--quick", *args], cwd=ROOT,
        env={**os.environ, "PYTHONIOENCODING": "utf-8"}, capture_output=True, timeout=BENCH_TIMEOUT, check=False)
    out = done.stdout.decode("utf-8")
    assert done.returncode == 0, out + done.stderr.decode("utf-8", "replace")
    return out
