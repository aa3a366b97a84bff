"""The ``mfa-flow`` command line: demo (scripted and interactive), diagram, version, usage errors."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import mfa_flow
from mfa_flow.cli import main
from mfa_flow.crypto import new_token
from mfa_flow.machine import TABLES

ROOT = Path(__file__).resolve().parent.parent
CODE_IN_SMS = re.compile(r"Your verification code is (\d{6})")
EVENTS_OF_A_DEMO = (
    "otp.sent", "otp.failed", "otp.verified", "member.updated", "session.created",
    "session.step_up_required", "session.step_up_completed",
)


def codes_in(stderr: str) -> list[str]:
    return CODE_IN_SMS.findall(stderr)


def shows(text: str, secret: str) -> bool:
    """Whether ``secret`` appears as a whole word (a code inside a longer hex id does not count)."""
    return re.search(rf"(?<![\w-]){re.escape(secret)}(?![\w-])", text) is not None


@pytest.fixture
def tokens(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every IST and session token the flow mints during the test."""
    minted: list[str] = []

    def recording() -> str:
        token = new_token()
        minted.append(token)
        return token

    monkeypatch.setattr("mfa_flow.crypto.new_token", recording)
    return minted


def assert_complete_demo(out: str, err: str) -> None:
    for title in ("[1] Create the organization and its member", "Primary authentication by email_magic_link",
                  "31 minutes of inactivity", "authenticate_session", "The step-up code", "Step-up completed"):
        assert title in out
    for name in EVENTS_OF_A_DEMO:
        assert f"event  {name}" in out
    assert "step_up_required=True, secondary_auth_initiated='sms_otp'" in out
    assert "authenticate_session now: step_up_required=False" in out
    assert "session: active -> step_up_required" in out
    assert "session: step_up_required -> active" in out
    assert "magic_link / email" in out
    assert "otp / sms" in out
    assert "XXXXXXX0123" in out
    assert "+14155550123" not in out  # stdout shows masked phones only
    assert "DEVELOPMENT ONLY" in err  # the console gateway's banner is the SMS channel
    assert len(codes_in(err)) == 2  # the login code and the step-up code


def assert_no_secret(out: str, err: str, tokens: list[str]) -> None:
    for code in codes_in(err):
        assert not shows(out, code), "a code leaked to stdout"
    for token in tokens:
        assert token not in out
        assert token not in err


# --- demo, scripted ---------------------------------------------------------------------------------

def test_demo_scripted_runs_a_complete_login(capsys: pytest.CaptureFixture[str], tokens: list[str]) -> None:
    assert main(["demo"]) == 0
    out, err = capsys.readouterr()
    assert_complete_demo(out, err)
    assert "[3] A wrong code" in out
    assert "refused  otp_code_not_found (404)" in out
    assert "event  otp.failed  phone=XXXXXXX0123  reason=otp_code_not_found" in out
    assert "(typing the code the console gateway printed)" in out
    assert len(tokens) == 2  # the IST and the session token
    assert_no_secret(out, err, tokens)
    assert "Done:" in out


def test_demo_events_show_data_but_not_the_member(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo"]) == 0
    out, _ = capsys.readouterr()
    assert "purpose='login'" in out
    assert "purpose='step_up'" in out
    assert "factors=['magic_link', 'otp']" in out
    assert "member=" not in out


def recording_tokens(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """An environment whose Python processes append every token ``secrets.token_urlsafe`` makes to a file
    (through a ``sitecustomize`` on PYTHONPATH), and that file."""
    minted = tmp_path / "tokens.txt"
    (tmp_path / "sitecustomize.py").write_text(
        "import os, secrets\n"
        "_real = secrets.token_urlsafe\n"
        "def _recording(nbytes=None):\n"
        "    token = _real(nbytes)\n"
        "    with open(os.environ['MFA_FLOW_TEST_TOKENS'], 'a') as f:\n"
        "        f.write(token + '\\n')\n"
        "    return token\n"
        "secrets.token_urlsafe = _recording\n"
    )
    env = {**os.environ, "MFA_FLOW_TEST_TOKENS": str(minted),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path), str(ROOT), os.environ.get("PYTHONPATH")]))}
    return env, minted


def test_demo_via_python_dash_m(tmp_path: Path) -> None:
    """A real process: exit 0, the steps and events on stdout, and no token in either stream."""
    env, minted = recording_tokens(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "mfa_flow", "demo"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert_complete_demo(proc.stdout, proc.stderr)
    recorded = minted.read_text().split()
    assert len(recorded) >= 2  # the sitecustomize hook saw the IST and the session token
    assert_no_secret(proc.stdout, proc.stderr, recorded)


def test_demo_via_the_installed_console_script(tmp_path: Path) -> None:
    """The ``mfa-flow`` entry point of pyproject.toml, as pip installed it (the test command installs the
    package with ``pip install -e``, so it must be on PATH): exit 0, the complete demo, no token shown."""
    script = shutil.which("mfa-flow")
    assert script is not None, "the mfa-flow console script is not on PATH: is the package pip-installed?"
    env, minted = recording_tokens(tmp_path)
    version = subprocess.run([script, "--version"], cwd=tmp_path, env=env, capture_output=True, text=True,  # noqa: S603 - the installed entry point, fixed arguments
                             timeout=120, check=False)
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == f"mfa-flow {mfa_flow.__version__}"  # this checkout's package
    proc = subprocess.run([script, "demo"], cwd=tmp_path, env=env, capture_output=True, text=True,  # noqa: S603 - same
                          timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert_complete_demo(proc.stdout, proc.stderr)
    assert "[3] A wrong code" in proc.stdout
    assert "refused  otp_code_not_found (404)" in proc.stdout
    assert "Done:" in proc.stdout
    recorded = minted.read_text().split()
    assert len(recorded) >= 2  # the sitecustomize hook saw the IST and the session token
    assert_no_secret(proc.stdout, proc.stderr, recorded)


# --- demo, interactive ------------------------------------------------------------------------------

class FeedStdin:
    """A stdin for ``input()`` that answers from a script, reading codes from the captured stderr.

    Each answer is "right" (the newest code the console gateway printed), "wrong" (six other digits)
    or "eof" (end of input).
    """

    def __init__(self, capsys: pytest.CaptureFixture[str], answers: list[str]) -> None:
        self.capsys = capsys
        self.answers: Iterator[str] = iter(answers)
        self.out = ""
        self.err = ""
        self.asked = 0

    def isatty(self) -> bool:
        return False

    def readline(self, size: int = -1) -> str:
        captured = self.capsys.readouterr()
        self.out += captured.out
        self.err += captured.err
        self.asked += 1
        answer = next(self.answers, "eof")
        if answer == "eof":
            return ""
        code = codes_in(self.err)[-1]
        if answer == "wrong":
            code = f"{(int(code) + 1) % 1_000_000:06d}"
        return code + "\n"

    def finish(self) -> tuple[str, str]:
        captured = self.capsys.readouterr()
        return self.out + captured.out, self.err + captured.err


def run_interactive(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                    answers: list[str]) -> tuple[int, str, str, FeedStdin]:
    feed = FeedStdin(capsys, answers)
    monkeypatch.setattr(sys, "stdin", feed)
    status = main(["demo", "--interactive"])
    out, err = feed.finish()
    return status, out, err, feed


def test_interactive_wrong_then_eof_exits_1(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                            tokens: list[str]) -> None:
    status, out, err, feed = run_interactive(monkeypatch, capsys, ["wrong", "eof"])
    assert status == 1
    assert feed.asked == 2
    assert "refused  otp_code_not_found (404)" in out
    assert "standard input ended" in err
    assert "Step-up completed" not in out
    assert "(typing the code" not in out  # nothing is typed for the user in interactive mode
    assert_no_secret(out, err, tokens)


def test_interactive_immediate_eof_exits_1(monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err, _ = run_interactive(monkeypatch, capsys, ["eof"])
    assert status == 1
    assert "standard input ended" in err
    assert "session.created" not in out


def test_interactive_right_codes_complete_the_demo(monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str], tokens: list[str]) -> None:
    status, out, err, feed = run_interactive(monkeypatch, capsys, ["wrong", "right", "wrong", "right"])
    assert status == 0, err
    assert feed.asked == 4
    assert_complete_demo(out, err)
    assert out.count("refused  otp_code_not_found") == 2
    assert "(typing the code" not in out
    assert_no_secret(out, err, tokens)


def test_interactive_dead_code_stops_with_status_1(monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """Five wrong codes kill the code (spec §6.5): the demo says so and stops."""
    status, out, err, _ = run_interactive(monkeypatch, capsys, ["wrong"] * 6)
    assert status == 1
    assert out.count("refused  otp_code_not_found") == 5
    assert "unable_to_auth_otp_code" in out
    assert "unable_to_auth_otp_code" in err


# --- diagram ----------------------------------------------------------------------------------------

def test_diagram_prints_every_machine(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["diagram"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("---\n")
    assert out.count("stateDiagram-v2") == len(TABLES)
    assert out == mfa_flow.diagram()
    assert err == ""


@pytest.mark.parametrize("name", sorted(TABLES))
def test_diagram_one_machine(capsys: pytest.CaptureFixture[str], name: str) -> None:
    assert main(["diagram", "--machine", name]) == 0
    out, _ = capsys.readouterr()
    # front matter naming the machine (transitions 0.9.3 writes the bare title, without "title: "), then the diagram
    assert re.match(rf"---\n(title: )?mfa_flow {name}\n---\nstateDiagram-v2\n", out)
    assert out == mfa_flow.diagram(machine=name)


def test_diagram_via_python_dash_m() -> None:
    proc = subprocess.run([sys.executable, "-m", "mfa_flow", "diagram"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("---\n")
    assert "\nstateDiagram-v2\n" in proc.stdout


# --- version and usage errors -----------------------------------------------------------------------

def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"mfa-flow {mfa_flow.__version__}"


@pytest.mark.parametrize("argv", [
    [],
    ["bogus"],
    ["diagram", "--machine", "nope"],
    ["demo", "--nope"],
    ["diagram", "extra"],
])
def test_usage_errors_exit_2_on_stderr(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert "usage: mfa-flow" in err
    assert "error:" in err


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "demo" in out
    assert "diagram" in out
