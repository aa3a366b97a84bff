"""A login with SMS MFA, tested against a local Stytch: ``mfa-flow serve`` and the official ``stytch`` SDK.

This is how an application's own test suite can use the emulator: one server for the test session, on a
free port, with the records of ``fixtures.json`` next to this file, and the SDK's client pointed at it.
``--test-endpoints`` lets the tests do what a person would: sign in, read the SMS, wait.

    python3 -m pytest examples/stytch_emulator -q

Needs ``python3 -m pip install '.[emulator]' stytch`` from the repository's root.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import stytch
from stytch.core.response_base import StytchError

PROJECT_ID = "project-test-00000000-0000-0000-0000-000000000000"
SECRET = "secret-test-emulator-only"  # noqa: S105 - any string: the emulator accepts the pair it started with
FIXTURES = Path(__file__).with_name("fixtures.json")
ORG = "organization-test-acme"

# Creating a B2BClient makes aiohttp (3.14) warn that BasicAuth is deprecated; a test suite that turns
# warnings into errors must let this one through.
pytestmark = pytest.mark.filterwarnings("ignore:BasicAuth is deprecated:DeprecationWarning")


@pytest.fixture(scope="session")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``mfa-flow serve`` for the whole session; yields its URL. Stopped by SIGTERM, it must exit 0."""
    log_path = tmp_path_factory.mktemp("emulator") / "stderr.log"
    with log_path.open("w") as log:
        server = subprocess.Popen(  # noqa: S603 - `mfa-flow serve`, from the environment pytest runs in
            [sys.executable, "-m", "mfa_flow", "serve", "--host", "127.0.0.1", "--port", "0",
             "--project-id", PROJECT_ID, "--secret", SECRET, "--fixtures", str(FIXTURES), "--test-endpoints"],
            stdout=subprocess.PIPE, stderr=log, text=True,
        )
        assert server.stdout is not None
        ready = server.stdout.readline()  # "Listening on http://127.0.0.1:PORT" once it serves; "" if it died
        if not ready.startswith("Listening on "):
            server.kill()
            server.wait()
            pytest.fail(f"mfa-flow serve did not start:\n{log_path.read_text()}")
        yield ready.removeprefix("Listening on ").strip()
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=10) == 0, log_path.read_text()
        server.stdout.close()


@pytest.fixture(scope="session")
def client(emulator: str) -> stytch.B2BClient:
    # Any environment other than "test" or "live" is the base URL the SDK sends its requests to.
    return stytch.B2BClient(PROJECT_ID, SECRET, environment=emulator)


def sign_in(emulator: str, member_id: str) -> dict[str, Any]:
    """The password check the application does before MFA. MFA is owed (REQUIRED_FOR_ALL), so the answer
    carries an intermediate session token and the emulator has texted a code to the member's phone."""
    answer = httpx.post(f"{emulator}/_emulator/primary_auth",
                        json={"organization_id": ORG, "member_id": member_id, "method": "password"})
    answer.raise_for_status()
    return dict(answer.json())


def texts_to(emulator: str, member_id: str) -> list[dict[str, Any]]:
    """Every SMS the emulator sent to the member, oldest first, codes in clear."""
    answer = httpx.get(f"{emulator}/_emulator/messages")
    answer.raise_for_status()
    return [message for message in answer.json() if message["member_id"] == member_id]


def wrong(code: str) -> str:
    return "000000" if code != "000000" else "111111"


def test_login_with_the_automatic_sms(emulator: str, client: stytch.B2BClient) -> None:
    login = sign_in(emulator, "member-test-ada")
    assert login["mfa_required"]["secondary_auth_initiated"] == "sms_otp"
    sms = texts_to(emulator, "member-test-ada")
    assert [message["to"] for message in sms] == ["+14155550101"]

    done = client.otps.sms.authenticate(organization_id=ORG, member_id="member-test-ada", code=sms[-1]["code"],
                                        intermediate_session_token=login["intermediate_session_token"])

    assert done.session_token
    assert [factor.type for factor in done.member_session.authentication_factors] == ["password", "otp"]
    assert done.member.mfa_enrolled  # a success under REQUIRED_FOR_ALL enrols the member


def test_a_wrong_code_is_refused_and_the_right_one_still_works(emulator: str, client: stytch.B2BClient) -> None:
    login = sign_in(emulator, "member-test-grace")
    code = texts_to(emulator, "member-test-grace")[-1]["code"]

    with pytest.raises(StytchError) as refused:
        client.otps.sms.authenticate(organization_id=ORG, member_id="member-test-grace", code=wrong(code),
                                     intermediate_session_token=login["intermediate_session_token"])
    assert refused.value.details.status_code == 404
    assert refused.value.details.error_type == "otp_code_not_found"

    done = client.otps.sms.authenticate(organization_id=ORG, member_id="member-test-grace", code=code,
                                        intermediate_session_token=login["intermediate_session_token"])
    assert done.member_session.member_id == "member-test-grace"


def test_a_code_expires_after_two_minutes(emulator: str, client: stytch.B2BClient) -> None:
    login = sign_in(emulator, "member-test-edsger")
    ist = login["intermediate_session_token"]
    code = texts_to(emulator, "member-test-edsger")[-1]["code"]

    # The clock moves for every test that shares this server: each test here signs in its own member, so
    # none depends on when another one ran.
    httpx.post(f"{emulator}/_emulator/clock/advance", json={"seconds": 120}).raise_for_status()

    with pytest.raises(StytchError) as refused:
        client.otps.sms.authenticate(organization_id=ORG, member_id="member-test-edsger", code=code,
                                     intermediate_session_token=ist)
    assert refused.value.details.status_code == 401
    assert refused.value.details.error_type == "unable_to_auth_otp_code"

    # The intermediate session token lives 10 minutes: the member asks for a new code and signs in with it.
    client.otps.sms.send(organization_id=ORG, member_id="member-test-edsger", intermediate_session_token=ist)
    sms = texts_to(emulator, "member-test-edsger")
    assert len(sms) == 2
    done = client.otps.sms.authenticate(organization_id=ORG, member_id="member-test-edsger", code=sms[-1]["code"],
                                        intermediate_session_token=ist)
    assert done.member_session.member_id == "member-test-edsger"
