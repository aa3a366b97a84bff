"""examples/stytch_mode.py runs as shipped against a real ``mfa-flow serve``: a login in Stytch mode with a wrong
code, the right one and an inactivity step-up, every SMS sent by the server (Stytch) and none of its codes or
tokens printed; without the server's URL it stops before talking to anyone."""

from __future__ import annotations

import json
import re
import subprocess
from typing import Any

from tests.emulator_server import PROJECT_ID, SECRET, EmulatorProcess
from tests.helpers_process import ROOT, python_env, run_python

EXAMPLE = ROOT / "examples" / "stytch_mode.py"
FIXTURES = ROOT / "examples" / "stytch_emulator" / "fixtures.json"  # the records the example's docstring names
URL_VARIABLE = "MFA_FLOW_EMULATOR_URL"
ADA_PHONE = "+14155550101"


def run_example(*args: str, url_variable: str | None = None) -> subprocess.CompletedProcess[str]:
    env = python_env()
    env.pop(URL_VARIABLE, None)
    if url_variable is not None:
        env[URL_VARIABLE] = url_variable
    return run_python(str(EXAMPLE), *args, env=env)


def start(start_emulator: Any) -> EmulatorProcess:
    server: EmulatorProcess = start_emulator(json.loads(FIXTURES.read_text("utf-8")))
    return server


def sent_to_ada(server: EmulatorProcess) -> list[dict[str, Any]]:
    return [m for m in server.messages() if m["member_id"] == "member-test-ada"]


def test_stytch_mode_example_signs_in_and_steps_up_through_the_emulator(start_emulator: Any) -> None:
    server = start(start_emulator)
    proc = run_example(server.url, "--project-id", PROJECT_ID, "--secret", SECRET)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert f"Provider: StytchProvider(project_id='{PROJECT_ID}', base_url='{server.url}/')" in out
    assert "recorded: MFA owed, secondary_auth_initiated='sms_otp', phone XXXXXXX0101" in out
    assert "refused: otp_code_not_found (HTTP 404), with Stytch's request id" in out
    assert "failures counted on the member: 1" in out
    assert "session issued with factors [sso/sso_saml, otp/sms]" in out
    assert "step_up_required=True, secondary_auth_initiated='sms_otp': Stytch texted a step-up code" in out
    assert "step-up done: the same session token, fresh again" in out
    assert re.findall(r"^  (\S+)", out.split("Events the flow emitted:\n")[1], re.M) == [
        "otp.sent", "otp.failed", "otp.verified", "session.created", "member.updated",
        "session.step_up_required", "otp.sent", "otp.verified", "session.step_up_completed"]
    assert out.rstrip().endswith("OK: Stytch issued every token and code; none was printed.")
    # Stytch (the server) texted both codes, login then step-up, to Ada's phone; none reached the output.
    messages = sent_to_ada(server)
    assert [m["to"] for m in messages] == [ADA_PHONE, ADA_PHONE]
    assert all(m["code"] not in out + proc.stderr for m in messages)
    assert not re.search(r"(?<!\d)\d{6}(?!\d)", out), "six digits in a row were printed: a code?"
    assert ADA_PHONE not in out
    assert SECRET not in out + proc.stderr


def test_stytch_mode_example_takes_the_url_from_the_environment(start_emulator: Any) -> None:
    server = start(start_emulator)
    proc = run_example("--project-id", PROJECT_ID, "--secret", SECRET, url_variable=server.url)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.rstrip().endswith("OK: Stytch issued every token and code; none was printed.")
    assert len(sent_to_ada(server)) == 2


def test_stytch_mode_example_without_a_url_stops_before_any_request() -> None:
    proc = run_example()
    assert proc.returncode == 2
    assert proc.stdout == ""  # not even the provider was built
    assert f"give the URL of mfa-flow serve (argument or ${URL_VARIABLE})" in proc.stderr
    assert "this example never talks to Stytch itself" in proc.stderr
