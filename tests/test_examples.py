"""The examples in examples/ run and pass as shipped."""

from __future__ import annotations

import re
import runpy

import pytest

from tests.emulator_server import require
from tests.helpers_process import ROOT, run_python

EXAMPLES = ROOT / "examples"
TIMEOUT = 300  # an example run as a script or under pytest


def test_step_up_example_runs_in_process(capsys: pytest.CaptureFixture[str]) -> None:
    runpy.run_path(str(EXAMPLES / "step_up.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert "refused: step-up required: a code was sent by SMS" in out
    assert "refused: otp_code_not_found" in out
    assert "payout account changed to DE89 **** **** **** 5000" in out
    assert "session.step_up_completed" in out
    assert out.rstrip().endswith("no code or token was printed.")


def test_step_up_example_runs_as_a_script() -> None:
    proc = run_python(str(EXAMPLES / "step_up.py"), timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "step-up: code accepted" in proc.stdout
    assert "OK:" in proc.stdout


def test_policy_unit_test_example_passes() -> None:
    proc = run_python("-m", "pytest", str(EXAMPLES / "policy_unit_test.py"), "-q", "-p", "no:cacheprovider",
                      timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert " passed" in proc.stdout
    assert "failed" not in proc.stdout
    assert "error" not in proc.stdout.lower()


def test_policy_tests_example_passes() -> None:
    """A user's project of policy tests: the plugin's fixture, a conftest policy, a policy file, explore."""
    proc = run_python("-m", "pytest", str(EXAMPLES / "policy_tests"), "-q", "-p", "no:cacheprovider", timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(r"^7 passed in ", proc.stdout, re.M), proc.stdout


def test_stytch_emulator_example_passes() -> None:
    """The user's-eye example: its own fixture starts ``mfa-flow serve`` and the official SDK talks to it."""
    for module in ("stytch", "starlette", "uvicorn"):
        require(module)
    proc = run_python("-m", "pytest", str(EXAMPLES / "stytch_emulator"), "-q", "-p", "no:cacheprovider",
                      timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(r"^3 passed in ", proc.stdout, re.M), proc.stdout
