"""A login in Stytch mode, against ``mfa-flow serve`` standing in for Stytch.

In Stytch mode Stytch issues the tokens and generates, texts and checks the codes; mfa_flow keeps its own
rules in front (phones, limits, lock, hooks) and the inactivity clock of each session. Here Ada signs in
with SSO, mistypes her code once, types the right one, then goes idle for 31 minutes: her next request
needs a step-up, which Stytch texts and checks.

Start the emulator with the fixtures of the other Stytch example, then give this script its URL (as the
first argument or in ``MFA_FLOW_EMULATOR_URL``); ``--project-id`` and ``--secret`` must be the server's:

    mfa-flow serve --port 0 --project-id project-test-1 --secret secret-test-1 \\
        --fixtures examples/stytch_emulator/fixtures.json --test-endpoints
    python3 examples/stytch_mode.py http://127.0.0.1:PORT

Without a URL it stops: it never talks to Stytch itself. It reads codes and moves time through the
emulator's test endpoints, which exist only there.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import Any

import httpx

from mfa_flow import Event, MfaError, MfaFlow
from mfa_flow.testing import FakeClock
from mfa_flow.transports.stytch import StytchProvider

URL_VARIABLE = "MFA_FLOW_EMULATOR_URL"
ORG = "organization-test-acme"  # from examples/stytch_emulator/fixtures.json
ADA = "member-test-ada"


def arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="A login in Stytch mode against mfa-flow serve.")
    parser.add_argument("url", nargs="?", default=os.environ.get(URL_VARIABLE),
                        help=f"the emulator's URL, http://127.0.0.1:PORT (default: ${URL_VARIABLE})")
    parser.add_argument("--project-id", default="project-test-1")
    parser.add_argument("--secret", default="secret-test-1")
    args = parser.parse_args(argv)
    if not args.url:
        parser.error(f"give the URL of mfa-flow serve (argument or ${URL_VARIABLE}); this example never "
                     "talks to Stytch itself")
    return args


class Emulator:
    """The emulator's test endpoints: what a person and the passing of time do in a real login."""

    def __init__(self, http: httpx.Client) -> None:
        self.http = http

    def sso_login(self, organization_id: str, member_id: str) -> dict[str, Any]:
        """Stands in for your SSO callback, where ``client.sso.authenticate(...)`` answers this JSON."""
        answer = self.http.post("/_emulator/primary_auth", json={"organization_id": organization_id,
                                                                 "member_id": member_id, "method": "sso"})
        answer.raise_for_status()
        return dict(answer.json())

    def newest_code(self, member_id: str) -> str:
        """The code on the member's phone. An application NEVER does this: the member types the code.
        Only the emulator, started with --test-endpoints, hands codes out."""
        messages = self.http.get("/_emulator/messages").json()
        return str([m["code"] for m in messages if m["member_id"] == member_id][-1])

    def now(self) -> float:
        return self.advance(0)

    def advance(self, seconds: float) -> float:
        """Move Stytch's clock (the emulator's); the flow's clock is moved apart."""
        return float(self.http.post("/_emulator/clock/advance", json={"seconds": seconds}).json()["now"])


def main(argv: list[str]) -> None:
    args = arguments(argv)
    transcript: list[str] = []

    def say(line: str) -> None:
        transcript.append(line)
        print(line)

    with httpx.Client(base_url=args.url, timeout=10) as http, \
            StytchProvider(args.project_id, args.secret, base_url=args.url) as provider:
        say(f"Provider: {provider!r}")
        secrets_seen = sign_in(provider, Emulator(http), say)
    text = "\n".join(transcript)
    assert all(secret not in text for secret in secrets_seen), "a code or token was printed"
    print("OK: Stytch issued every token and code; none was printed.")


def sign_in(provider: StytchProvider, stytch: Emulator, say: Callable[[str], None]) -> list[str]:
    """Ada's login and step-up; the codes and tokens it saw."""
    # Two clocks, as in production: Stytch's and the flow's (the inactivity rule). Here they start together
    # and are moved together; in production both are the wall clock.
    clock = FakeClock(stytch.now())
    events: list[Event] = []
    flow = MfaFlow(transport=provider, clock=clock, events=[events.append])

    say("1. Ada signs in with SSO; Stytch issues an IST and texts her a code.")
    login = flow.record_primary_auth(stytch.sso_login(ORG, ADA))
    assert login.mfa_required is not None
    ist = login.intermediate_session_token
    say(f"  recorded: MFA owed, secondary_auth_initiated={login.mfa_required.secondary_auth_initiated!r}, "
        f"phone {login.mfa_required.member_options.mfa_phone_number}")
    code = stytch.newest_code(ADA)
    wrong = "000000" if code != "000000" else "111111"

    say("2. She mistypes it: Stytch says wrong, mfa_flow counts the failure on her.")
    try:
        flow.authenticate_sms_otp(ORG, ADA, wrong, intermediate_session_token=ist)
    except MfaError as error:
        refusal = error
    else:
        raise AssertionError("a wrong code was accepted")
    assert refusal.error_type == "otp_code_not_found"
    assert refusal.request_id, "Stytch's request id is kept"
    say(f"  refused: {refusal.error_type} (HTTP {refusal.status_code}), with Stytch's request id")
    failures = [e.data["failures"] for e in events if e.name == "otp.failed"]
    say(f"  failures counted on the member: {failures[-1]}")

    say("3. She types the right code: Stytch issues the session.")
    done = flow.authenticate_sms_otp(ORG, ADA, code, intermediate_session_token=ist)
    assert done.member_session is not None
    token = done.session_token
    factors = ", ".join(f"{f.type}/{f.delivery_method}" for f in done.member_session.authentication_factors)
    say(f"  session issued with factors [{factors}]")
    assert flow.authenticate_session(session_token=token).step_up_required is False
    say("  her next request: fresh session, no step-up")

    say("4. 31 minutes without a request (both clocks move).")
    clock.advance(minutes=31)
    stytch.advance(31 * 60)
    check = flow.authenticate_session(session_token=token)
    assert check.step_up_required is True
    say(f"  step_up_required=True, secondary_auth_initiated={check.secondary_auth_initiated!r}: "
        "Stytch texted a step-up code")
    step_up_code = stytch.newest_code(ADA)
    again = flow.authenticate_sms_otp(ORG, ADA, step_up_code, session_token=token)
    assert again.session_token == token
    assert flow.authenticate_session(session_token=token).step_up_required is False
    say("  step-up done: the same session token, fresh again")

    say("Events the flow emitted:")
    for event in events:
        detail = f" reason={event.reason}" if event.reason else ""
        say(f"  {event.name:<26} phone={event.phone or '-'}{detail}")
    return [ist, code, token, step_up_code]


if __name__ == "__main__":
    main(sys.argv[1:])
