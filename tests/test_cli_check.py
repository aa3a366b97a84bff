"""``mfa-flow check FILE``: explore on a policy file, as a user runs it (a subprocess, in the user's directory).

Exit status 0 (nothing violated, also when ``--seconds`` cut the search short), 1 (a violation: the property,
its numbered steps and a pytest test that replays it), 2 (a bad file or argument); a progress line on stderr,
rewritten in place on a terminal. Every run here stays at depth 3 or less, or is cut short by ``--seconds``.
"""

from __future__ import annotations

import os
import pty
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers_process import AT_MOST_ONE_SMS_PER_MEMBER, python_env, run_python

TIMEOUT = 120

PROPERTIES = AT_MOST_ONE_SMS_PER_MEMBER + '''

def texts_name_their_member(world):
    """Holds under every policy: each text says whom it is for."""
    assert all(message.member_id for message in world.sms.sent), "a text for nobody"
'''
#: The file's [policy] lets a member one text per 10 minutes: "at most one text per member" holds to depth 2.
ONE_TEXT = "[policy]\nsend_limit_per_member = [1, 600]\notp_ttl = 90\n"
#: The defaults' five texts per 10 minutes: two logins in a row break it.
FIVE_TEXTS = "[policy]\notp_ttl = 90\n"


def check(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``python -m mfa_flow check ...`` run in ``cwd`` (the user's directory), to its end."""
    return run_python("-m", "mfa_flow", "check", *args, cwd=cwd, env=python_env(COLUMNS="100"), timeout=TIMEOUT)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A user's directory: properties.py and two policy files beside it."""
    (tmp_path / "properties.py").write_text(PROPERTIES, "utf-8")
    (tmp_path / "one.toml").write_text(ONE_TEXT, "utf-8")
    (tmp_path / "five.toml").write_text(FIVE_TEXTS, "utf-8")
    return tmp_path


def to_pytest_sources(stdout: str) -> list[str]:
    """The test functions the report prints (each from its ``def test_`` line to the end of its block)."""
    return re.findall(r"^(def test_\w+\(\) -> None:\n(?:    .*\n)+)", stdout, re.M)


# --- exit 0 ----------------------------------------------------------------------------------------------------


def test_check_exits_0_when_the_files_policy_keeps_the_property(project: Path) -> None:
    done = check("one.toml", "--depth", "2", "--properties", "properties:at_most_one_sms_per_member", cwd=project)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("mfa-flow check one.toml: its [policy]; 12 built-in invariants and 1 of your "
                                  "properties (at_most_one_sms_per_member); every sequence of at most 2 actions\n")
    assert re.search(r"^explore: no violation — \d+ runs, \d+ distinct states, depth 2, [\d.]+ s$", done.stdout, re.M)
    assert "Incomplete" not in done.stdout
    assert to_pytest_sources(done.stdout) == []


def test_check_progress_is_a_line_per_depth_on_stderr_when_not_a_terminal(project: Path) -> None:
    done = check("one.toml", "--depth", "2", cwd=project)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stderr.splitlines()
    assert lines[0] == "mfa-flow check: exploring to depth 2 ..."
    assert [re.sub(r"[\d,.]+ (states|runs|s)\b", r"N \1", line) for line in lines[1:]] == [
        "mfa-flow check: depth 1/2, N states, N runs, N s", "mfa-flow check: depth 2/2, N states, N runs, N s"]
    assert "\r" not in done.stderr
    states = int(re.search(r"depth 2/2, ([\d,]+) states", done.stderr).group(1).replace(",", ""))  # type: ignore[union-attr]
    assert f"{states} distinct states" in done.stdout  # the last progress line agrees with the report


def test_check_progress_is_one_line_rewritten_in_place_on_a_terminal(project: Path) -> None:
    """With stderr on a terminal, each figure overwrites the last (a carriage return, no new line) and one
    new line ends it before the report."""
    leader, follower = pty.openpty()
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "mfa_flow", "check", "one.toml", "--depth", "2"], cwd=project,
            env=python_env(COLUMNS="100"), stdout=subprocess.PIPE, stderr=follower, text=True)
        os.close(follower)
        terminal = b""
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # EIO: the child closed its end
                break
            if not chunk:
                break
            terminal += chunk
        stdout, _ = process.communicate(timeout=TIMEOUT)
    finally:
        os.close(leader)
    assert process.returncode == 0, stdout
    shown = terminal.decode()
    assert shown.startswith("\rmfa-flow check: exploring to depth 2 ...")
    assert shown.endswith("\r\n")  # the terminal turns the one "\n" into "\r\n"
    assert shown.count("\r\n") == 1
    frames = shown.removesuffix("\r\n").split("\r")[1:]
    assert [frame.rstrip().split(",")[0] for frame in frames] == [
        "mfa-flow check: exploring to depth 2 ...", "mfa-flow check: depth 1/2", "mfa-flow check: depth 2/2"]
    assert len(frames[2]) >= len(frames[1].rstrip())  # a shorter line is padded over the longer one
    assert "explore: no violation" in stdout


def test_check_a_file_without_a_policy_table_explores_the_defaults(project: Path) -> None:
    (project / "records.toml").write_text('[[organizations]]\norganization_id = "organization-check-1"\n', "utf-8")
    done = check("records.toml", "--depth", "1", cwd=project)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("mfa-flow check records.toml: the default policy (the file has no [policy]); ")
    assert "the file's 1 organization(s) and 0 member(s) were checked as records" in done.stdout


def test_check_seconds_cut_short_says_incomplete_and_exits_0(project: Path) -> None:
    done = check("five.toml", "--depth", "6", "--seconds", "0.5", cwd=project)
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"^explore: no violation — .* \(cut short\), [\d.]+ s$", done.stdout, re.M), done.stdout
    assert re.search(r"^Incomplete: --seconds 0\.5 ended the search at depth [1-6] of 6; nothing was violated in "
                     r"what was explored, which is not every sequence\.$", done.stdout, re.M), done.stdout


# --- exit 1 ----------------------------------------------------------------------------------------------------


def test_check_exits_1_with_the_property_its_steps_and_a_test_that_fails_the_same_way(project: Path) -> None:
    done = check("five.toml", "--depth", "2", "--properties", "properties:at_most_one_sms_per_member", cwd=project)
    assert done.returncode == 1, done.stdout + done.stderr
    assert re.search(r"^explore: 1 violation\(s\) — \d+ runs, \d+ distinct states, depth 2, ", done.stdout, re.M)
    assert ("\nat_most_one_sms_per_member: a member got 2 texts\n"
            "  1. alice logs in by password → IST, code sent\n"
            "  2. alice logs in by password → IST, code sent\n") in done.stdout
    sources = to_pytest_sources(done.stdout)
    assert len(sources) == 1
    assert "from properties import at_most_one_sms_per_member" in sources[0]
    assert "Checker(Policy(otp_ttl=90), properties=[at_most_one_sms_per_member])" in sources[0]  # the file's policy
    replay = project / "test_replay.py"
    replay.write_text(sources[0], "utf-8")
    ran = run_python("-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(project), str(replay),
                     cwd=project, env=python_env(COLUMNS="100"), timeout=TIMEOUT)
    assert ran.returncode == 1, ran.stdout + ran.stderr
    assert "AssertionError: at_most_one_sms_per_member: a member got 2 texts" in ran.stdout
    assert re.search(r"^1 failed in ", ran.stdout, re.M), ran.stdout


def test_check_properties_may_repeat_and_be_comma_separated(project: Path) -> None:
    done = check("five.toml", "--depth", "2", "--properties",
                 "properties:texts_name_their_member, properties:at_most_one_sms_per_member",
                 "--properties", "properties:texts_name_their_member", cwd=project)
    assert done.returncode == 1, done.stdout + done.stderr
    assert ("3 of your properties (texts_name_their_member, at_most_one_sms_per_member, texts_name_their_member)"
            in done.stdout)
    assert "\nat_most_one_sms_per_member: a member got 2 texts\n" in done.stdout
    assert "texts_name_their_member:" not in done.stdout


def test_check_all_violations_goes_on_past_the_first_level(project: Path) -> None:
    done = check("five.toml", "--depth", "2", "--all-violations", "--properties",
                 "properties:at_most_one_sms_per_member", cwd=project)
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stdout.count("\nat_most_one_sms_per_member: ") == 1  # at most one violation per property
    assert len(to_pytest_sources(done.stdout)) == 1


# --- interrupted ----------------------------------------------------------------------------------------------


def test_check_interrupted_says_so_and_exits_130(project: Path) -> None:
    """Ctrl-C during a long search: no traceback and no report, the shell's status for SIGINT."""
    process = subprocess.Popen(
        [sys.executable, "-m", "mfa_flow", "check", "five.toml", "--depth", "6", "--seconds", "60"], cwd=project,
        env=python_env(COLUMNS="100"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stderr is not None
        first = process.stderr.readline()
        assert first == "mfa-flow check: exploring to depth 6 ...\n"
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=TIMEOUT)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130, stdout + stderr
    assert stderr.endswith("mfa-flow check: interrupted before the end; no report\n")
    assert "Traceback" not in stderr
    assert "explore:" not in stdout


# --- exit 2 ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("content", "message"), [
    (None, "{file}: cannot read the file (FileNotFoundError: "),
    ("[policy\n", "{file}: not valid TOML: "),
    ('[policy]\notp_ttl = "two minutes"\n',
     "{file}: [policy] otp_ttl = 'two minutes': must be a number greater than 0 and at most 600\n"),
    ('[[members]]\nmember_id = "m-1"\norganization_id = "nowhere"\n',
     "{file}: members[0] (member_id 'm-1'): organization_id = 'nowhere': no organization has that id\n"),
], ids=["missing", "not_toml", "bad_policy_value", "bad_member"])
def test_check_exits_2_on_a_bad_file_naming_it(project: Path, content: str | None, message: str) -> None:
    if content is not None:
        (project / "bad.toml").write_text(content, "utf-8")
    done = check("bad.toml", "--depth", "1", cwd=project)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stdout == ""
    assert done.stderr.startswith("mfa-flow check: " + message.format(file="bad.toml")), done.stderr


@pytest.mark.parametrize(("spec", "message"), [
    ("properties", "--properties 'properties': must be module:function (e.g. properties:no_sms_flood)"),
    ("properties:", "--properties 'properties:': must be module:function"),
    (":at_most_one_sms_per_member", "--properties ':at_most_one_sms_per_member': must be module:function"),
    ("nowhere:prop",
     "--properties 'nowhere:prop': cannot import nowhere: no module named 'nowhere' (searched from {cwd} first)"),
    ("needs_a_package:prop",
     "--properties 'needs_a_package:prop': cannot import needs_a_package: no module named 'package_nobody_installed'"),
    ("raises:prop", "--properties 'raises:prop': importing raises raised RuntimeError: not today"),
    ("broken:prop", "--properties 'broken:prop': importing broken raised SyntaxError: "),
    ("properties:nothing_here", "--properties 'properties:nothing_here': properties has no attribute 'nothing_here'"),
    ("properties:Counter.nope", "--properties 'properties:Counter.nope': properties has no attribute 'Counter.nope'"),
    ("properties:LIMIT",
     ("--properties 'properties:LIMIT': properties.LIMIT is not callable (it is of type int); a property is a "
      "function of the world")),
], ids=["no_colon", "no_function", "no_module", "module_missing", "import_of_a_missing_package", "import_raises",
        "syntax_error", "attribute_missing", "dotted_attribute_missing", "not_callable"])
def test_check_exits_2_on_a_bad_properties_entry(project: Path, spec: str, message: str) -> None:
    (project / "properties.py").write_text(PROPERTIES + "\nLIMIT = 3\n", "utf-8")
    (project / "needs_a_package.py").write_text("import package_nobody_installed\n", "utf-8")
    (project / "raises.py").write_text("raise RuntimeError('not today')\n", "utf-8")
    (project / "broken.py").write_text("def prop(world)\n", "utf-8")
    done = check("one.toml", "--depth", "1", "--properties", f"properties:at_most_one_sms_per_member,{spec}",
                 cwd=project)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stdout == ""
    assert done.stderr.startswith("mfa-flow check: " + message.format(cwd=project)), done.stderr


@pytest.mark.parametrize(("args", "message"), [
    (["--depth", "0"], "argument --depth: must be a whole number of at least 1, not '0'"),
    (["--depth", "two"], "argument --depth: must be a whole number of at least 1, not 'two'"),
    (["--seconds", "0"], "argument --seconds: must be a positive number of seconds, not '0'"),
    (["--seconds", "inf"], "argument --seconds: must be a positive number of seconds, not 'inf'"),
    (["--seconds", "soon"], "argument --seconds: must be a number of seconds, not 'soon'"),
    ([], "the following arguments are required: FILE"),
], ids=["depth_0", "depth_not_a_number", "seconds_0", "seconds_infinite", "seconds_not_a_number", "no_file"])
def test_check_exits_2_on_a_bad_argument(project: Path, args: list[str], message: str) -> None:
    done = check(*(["one.toml"] if args else []), *args, cwd=project)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stdout == ""
    assert done.stderr.startswith("usage: mfa-flow check ")
    assert f"mfa-flow check: error: {message}\n" in done.stderr


def test_check_help_gives_the_default_depth_and_the_exit_statuses(project: Path) -> None:
    done = check("--help", cwd=project)
    assert done.returncode == 0
    text = " ".join(done.stdout.split())
    assert "(default: 3, a few seconds on the default policy;" in text
    assert ("0 nothing violated (also when --seconds cut the search short, which the report says), 1 a violation, "
            "2 a bad file or argument") in text
