"""The ``mfa-flow`` command line: demo (scripted and interactive), diagram (mermaid, DOT, svg and png through
Graphviz), version, usage errors. ``mfa-flow check`` is in test_cli_check.py."""

from __future__ import annotations

import importlib
import os
import pty
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest

import mfa_flow
from mfa_flow.cli import main
from mfa_flow.crypto import new_token
from mfa_flow.machine import TABLES
from tests.helpers_process import ROOT, python_env, run_python, unavailable
from tests.helpers_rules import wrong

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
    return python_env(tmp_path, MFA_FLOW_TEST_TOKENS=str(minted)), minted


def test_demo_via_python_dash_m(tmp_path: Path) -> None:
    """A real process: exit 0, the steps and events on stdout, and no token in either stream."""
    env, minted = recording_tokens(tmp_path)
    proc = run_python("-m", "mfa_flow", "demo", env=env)
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
            code = wrong(code)
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
    proc = run_python("-m", "mfa_flow", "diagram")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("---\n")
    assert "\nstateDiagram-v2\n" in proc.stdout


# --- diagram: DOT, svg and png through Graphviz ----------------------------------------------------------

SVG_FILE = ROOT / "docs" / "diagrams" / "machines.svg"
REGENERATE = "python3 -m mfa_flow diagram --format svg -o docs/diagrams/machines.svg"
GENERATOR = re.compile(r"<!-- Generated by graphviz version ([^\n]*)\n -->\n")
SVG = "{http://www.w3.org/2000/svg}"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
NO_DOT = ("mfa-flow diagram: format {fmt}: needs Graphviz's dot program, which is not on PATH (Debian/Ubuntu: "
          "apt-get install graphviz); --format mermaid needs nothing\n")


def require_dot() -> str:
    """The path of Graphviz's dot; skips the test without it, except under CI (CI=true), where it fails."""
    found = shutil.which("dot")
    if found is None:
        unavailable("Graphviz's dot is not on PATH (Debian: apt-get install graphviz)", "the diagram tests")
    return found


def run_mfa_flow(*args: str, cwd: Path = ROOT, path: str | None = None) -> subprocess.CompletedProcess[bytes]:
    """``python -m mfa_flow ...`` (bytes out: a png may come on stdout); ``path`` replaces PATH."""
    env = python_env()
    if path is not None:
        env["PATH"] = path
    return subprocess.run([sys.executable, "-m", "mfa_flow", *args], cwd=cwd, env=env,  # noqa: S603
                          capture_output=True, timeout=120, check=False)


def svg_texts(svg: str) -> set[str]:
    return {text.text or "" for text in ET.fromstring(svg).iter(f"{SVG}text")}  # noqa: S314 - drawn by our dot


def svg_outline(svg: str) -> list[tuple[str, str, tuple[str, ...]]]:
    """What no layout changes: each cluster, node and edge by its title, with the texts drawn for it."""
    outline = []
    for group in ET.fromstring(svg).iter(f"{SVG}g"):  # noqa: S314 - drawn by our dot
        title = group.find(f"{SVG}title")
        if title is not None and group.get("class") in ("cluster", "node", "edge"):
            outline.append((str(group.get("class")), title.text or "",
                            tuple(text.text or "" for text in group.iter(f"{SVG}text"))))
    return sorted(outline)


def svg_edges(svg: str) -> dict[tuple[str, str, str], list[str]]:
    """(machine, source, destination) -> the label's lines, of every edge drawn ("*" is a machine's start)."""
    edges = {}
    for kind, title, texts in svg_outline(svg):
        if kind == "edge":
            source, dest = title.split("->")
            machine, source = source.split(".")
            edges[(machine, source, dest.split(".")[1])] = list(texts)
    return edges


def mermaid_edges(text: str) -> dict[tuple[str, str, str], list[str]]:
    edges = {}
    for document in text.split("\n\n---\n"):
        machine = re.search(r"^title: mfa_flow (\w+)$", document, re.M).group(1)  # type: ignore[union-attr]
        for source, dest, labels in re.findall(r"^  (\w+) --> (\w+): (.*)$", document, re.M):
            edges[(machine, source, dest)] = labels.split(" | ")
    return edges


def table_edges() -> dict[tuple[str, str, str], list[str]]:
    """What the transition tables say, labelled "trigger [condition & condition]"."""
    edges: dict[tuple[str, str, str], list[str]] = {}
    for machine, (_, _, table) in TABLES.items():
        for row in table:
            conditions = " & ".join(c.__name__ for c in row.get("conditions", ()))
            label = row["trigger"] + (f" [{conditions}]" if conditions else "")
            for source in row["source"] if isinstance(row["source"], list) else [row["source"]]:
                edges.setdefault((machine, source.name, row["dest"].name), []).append(label)
    return edges


def test_diagram_svg_draws_every_transition_of_the_tables_as_mermaid_does(capsys: pytest.CaptureFixture[str]) -> None:
    require_dot()
    assert main(["diagram", "--format", "svg"]) == 0
    edges = svg_edges(capsys.readouterr().out)
    starts = {(machine, "*", initial.name): [] for machine, (_, initial, _) in TABLES.items()}
    assert edges == {**table_edges(), **starts}
    assert mermaid_edges(mfa_flow.diagram()) == table_edges()


def test_diagram_svg_parses_and_names_every_machine_and_state() -> None:
    require_dot()
    done = run_mfa_flow("diagram", "--format", "svg")
    assert done.returncode == 0, done.stderr
    svg = done.stdout.decode()
    assert svg == mfa_flow.diagram("svg")
    texts = svg_texts(svg)
    for machine, (states, _, _) in TABLES.items():
        assert f"mfa_flow {machine}" in texts
        assert {state.name for state in states} <= texts
    assert "expire [code_expired]" in texts


def test_diagram_one_machine_as_svg(capsys: pytest.CaptureFixture[str]) -> None:
    require_dot()
    assert main(["diagram", "--format", "svg", "--machine", "guard"]) == 0
    texts = svg_texts(capsys.readouterr().out)
    assert {"mfa_flow guard", "OPEN", "LOCKED"} <= texts
    assert "mfa_flow code" not in texts
    assert "SENT" not in texts


def test_diagram_png_to_a_file_and_to_a_pipe(tmp_path: Path) -> None:
    require_dot()
    target = tmp_path / "machines.png"
    done = run_mfa_flow("diagram", "--format", "png", "-o", str(target))
    assert done.returncode == 0, done.stderr
    assert done.stdout == b""
    png = target.read_bytes()
    assert png.startswith(PNG_MAGIC)
    assert done.stderr.decode() == f"mfa-flow diagram: wrote {target} (png, {len(png)} bytes)\n"
    piped = run_mfa_flow("diagram", "--format", "png")
    assert piped.returncode == 0, piped.stderr
    assert piped.stdout == png
    assert piped.stderr == b""
    assert mfa_flow.diagram("png") == png


def test_diagram_png_is_not_written_to_a_terminal(tmp_path: Path) -> None:
    leader, follower = pty.openpty()
    try:
        done = subprocess.run([sys.executable, "-m", "mfa_flow", "diagram", "--format", "png"], cwd=tmp_path,
                              env=python_env(), stdout=follower, stderr=subprocess.PIPE, timeout=120, check=False)
    finally:
        os.close(follower)
        os.close(leader)
    assert done.returncode == 2
    assert done.stderr.decode() == ("mfa-flow diagram: a png is binary: write it with -o FILE or redirect standard "
                                    "output\n")


@pytest.mark.parametrize("fmt", ["mermaid", "svg"])
def test_diagram_output_file_holds_what_stdout_would(tmp_path: Path, fmt: str) -> None:
    if fmt == "svg":
        require_dot()
    target = tmp_path / f"machines.{fmt}"
    assert main(["diagram", "--format", fmt, "-o", str(target)]) == 0
    assert target.read_text("utf-8") == mfa_flow.diagram(fmt)


def test_diagram_output_file_that_cannot_be_written_exits_2(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "no-such-directory" / "machines.mmd"
    assert main(["diagram", "-o", str(target)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == f"mfa-flow diagram: cannot write {target} (No such file or directory)\n"


POLICY_FOR_LABELS = """\
[policy]
otp_ttl = 90
max_attempts_per_code = 3
lockout_threshold = 7
lockout_duration = 900
ist_ttl = 300
default_session_minutes = 45
inactivity_timeout = 600
"""
LABELLED = {
    ("code", "SENT", "DEAD"): ["expire [code_expired (otp_ttl 90 s)]",
                               "reject [attempts_exhausted (max_attempts_per_code 3)]", "kill"],
    ("guard", "OPEN", "LOCKED"): ["fail [reaches_lockout (lockout_threshold 7)]",
                                  "confirm [lockout_reached (lockout_threshold 7)]"],
    ("guard", "LOCKED", "OPEN"): ["unlock [lock_ended (lockout_duration 900 s)]", "release"],
    ("login", "ISSUED", "EXPIRED"): ["expire [past_expiry (ist_ttl 300 s)]"],
    ("session", "ACTIVE", "EXPIRED"): ["expire [past_expiry (default_session_minutes 45 min)]"],
    ("session", "STEP_UP_REQUIRED", "EXPIRED"): ["expire [past_expiry (default_session_minutes 45 min)]"],
    ("session", "ACTIVE", "STEP_UP_REQUIRED"): [
        "idle [idle_too_long (inactivity_timeout 600 s) & member_has_active_factor]"],
}


@pytest.mark.parametrize("fmt", ["mermaid", "svg"])
def test_diagram_policy_file_labels_each_condition_with_its_number(tmp_path: Path, fmt: str,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    if fmt == "svg":
        require_dot()
    path = tmp_path / "policy.toml"
    path.write_text(POLICY_FOR_LABELS, "utf-8")
    assert main(["diagram", "--format", fmt, "--policy", str(path)]) == 0
    out = capsys.readouterr().out
    edges = mermaid_edges(out) if fmt == "mermaid" else {k: v for k, v in svg_edges(out).items() if k[1] != "*"}
    assert {key: edges[key] for key in LABELLED} == LABELLED
    plain = table_edges()  # every other edge is drawn as without a policy
    assert {k: v for k, v in edges.items() if k not in LABELLED} == {
        k: v for k, v in plain.items() if k not in LABELLED}


def test_diagram_policy_file_without_a_policy_table_labels_the_defaults(tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "records.toml"
    path.write_text('[[organizations]]\norganization_id = "organization-cli-1"\n', "utf-8")
    assert main(["diagram", "--machine", "code", "--policy", str(path)]) == 0
    assert mermaid_edges(capsys.readouterr().out)[("code", "SENT", "DEAD")] == [
        "expire [code_expired (otp_ttl 120 s)]", "reject [attempts_exhausted (max_attempts_per_code 5)]", "kill"]


def test_diagram_bad_policy_file_exits_2_naming_file_key_and_value(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "policy.toml"
    path.write_text("[policy]\nlockout_duration = 0\n", "utf-8")
    assert main(["diagram", "--policy", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == f"mfa-flow diagram: {path}: [policy] lockout_duration = 0: must be a number greater than 0\n"


@pytest.mark.parametrize("fmt", ["svg", "png"])
def test_diagram_without_dot_names_the_debian_package_and_exits_2(tmp_path: Path, fmt: str) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    done = run_mfa_flow("diagram", "--format", fmt, "-o", str(tmp_path / f"m.{fmt}"), cwd=tmp_path, path=str(empty))
    assert done.returncode == 2
    assert done.stdout == b""
    assert done.stderr.decode() == NO_DOT.format(fmt=fmt)
    assert not (tmp_path / f"m.{fmt}").exists()
    text = run_mfa_flow("diagram", "--format", "mermaid", cwd=tmp_path, path=str(empty))
    assert text.returncode == 0
    assert text.stdout.decode() == mfa_flow.diagram()


def fake_dot(tmp_path: Path, script: str) -> Path:
    """A directory whose only program is a ``dot`` running ``script``."""
    directory = tmp_path / "fake-bin"
    directory.mkdir()
    program = directory / "dot"
    program.write_text(f"#!/bin/sh\n{script}\n", "utf-8")
    program.chmod(0o755)
    return directory


def test_diagram_a_failing_dot_is_reported_with_its_last_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    directory = fake_dot(tmp_path, "echo 'Warning: something' >&2\necho 'Error: syntax error in line 1' >&2\nexit 1")
    monkeypatch.setenv("PATH", str(directory))
    assert main(["diagram", "--format", "svg"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (f"mfa-flow diagram: format svg: {directory / 'dot'} failed with exit status 1: "
                   "Error: syntax error in line 1\n")


def test_diagram_a_dot_that_hangs_is_stopped_at_the_timeout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    directory = fake_dot(tmp_path, f"exec {shutil.which('sleep')} 30")
    monkeypatch.setenv("PATH", str(directory))
    monkeypatch.setattr(importlib.import_module("mfa_flow.diagram"), "DOT_TIMEOUT", 0.5)  # the package's diagram
    # attribute is the function
    assert main(["diagram", "--format", "png", "-o", str(tmp_path / "m.png")]) == 2
    assert capsys.readouterr().err == f"mfa-flow diagram: format png: {directory / 'dot'} did not finish within 0.5 s\n"
    assert not (tmp_path / "m.png").exists()


def test_committed_svg_is_what_diagram_draws() -> None:
    """docs/diagrams/machines.svg is ``mfa-flow diagram --format svg`` of the code as it is. Graphviz's version
    comment is left out; drawn by another Graphviz version, the layout may differ, so then only what no layout
    changes is compared: every cluster, node and edge and the texts drawn for it."""
    require_dot()
    committed, drawn = SVG_FILE.read_text("utf-8"), mfa_flow.diagram("svg")
    versions = [m.group(1) if (m := GENERATOR.search(svg)) else None for svg in (committed, drawn)]
    stale = f"{SVG_FILE.relative_to(ROOT)} is not what the code draws now; regenerate it: {REGENERATE}"
    if versions[0] == versions[1]:
        assert GENERATOR.sub("", committed) == GENERATOR.sub("", drawn), stale
    else:
        assert svg_outline(committed) == svg_outline(drawn), (
            f"{stale} (drawn by Graphviz {versions[0]}, {versions[1]} is installed: compared without the layout)")
    assert "(diagrams/machines.svg)" in (ROOT / "docs" / "concepts.md").read_text("utf-8")


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
    for command in ("demo", "check", "diagram", "serve"):
        assert command in out
