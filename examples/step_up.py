"""Protect a sensitive action with an SMS step-up after inactivity.

A small billing application lets a signed-in member change the organization's payout bank account. The
action runs only on a session that ``MfaFlow.authenticate_session`` still accepts: after 30 minutes without a
request the session needs a step-up, the flow texts a fresh code to the member's verified phone, and the action
waits until that code is entered.

It runs unattended: ``FakeClock`` moves time on command and ``FakeTransport`` records the SMS so the "member"
can read the code from their "phone". In production, pass your SMS gateway as ``transport=`` and no clock.

    python3 examples/step_up.py
"""

from __future__ import annotations

from mfa_flow import Event, Member, MfaError, MfaFlow, Organization
from mfa_flow.testing import FakeClock, FakeTransport

ORG = "organization-billing-1"
MEMBER = "member-billing-1"
PHONE = "+14155550142"  # a fictional US number


class StepUpRequiredError(Exception):
    """The session is idle: the member must enter the code just sent before the action runs."""

    def __init__(self, sms_sent: bool) -> None:
        super().__init__("step-up required" + (": a code was sent by SMS" if sms_sent else ""))
        self.sms_sent = sms_sent


class BillingApp:
    """The application: it keeps tokens to itself and asks the flow before anything sensitive."""

    def __init__(self, flow: MfaFlow, log: list[str]) -> None:
        self.flow = flow
        self.log = log
        self.payout_account = "DE89 **** **** **** 3000"

    def say(self, line: str) -> None:
        self.log.append(line)
        print(line)

    def start_sign_in(self, organization_id: str, member_id: str) -> str:
        """The member came back from SSO: MFA is owed, the first SMS goes out automatically."""
        result = self.flow.authenticate_primary(organization_id, member_id, "sso")
        assert result.mfa_required is not None
        self.say(f"  sign-in: SSO ok, SMS code sent to {result.mfa_required.member_options.mfa_phone_number}")
        return result.intermediate_session_token

    def finish_sign_in(self, organization_id: str, member_id: str, ist: str, code: str) -> str:
        result = self.flow.authenticate_sms_otp(organization_id, member_id, code, intermediate_session_token=ist)
        assert result.member_session is not None
        factors = ", ".join(f.type for f in result.member_session.authentication_factors)
        self.say(f"  sign-in: code accepted, session issued with factors [{factors}]")
        return result.session_token

    def change_payout_account(self, session_token: str, new_account: str) -> None:
        """The sensitive action: only on a session that does not need a step-up."""
        check = self.flow.authenticate_session(session_token=session_token)
        if check.step_up_required:
            raise StepUpRequiredError(sms_sent=check.secondary_auth_initiated == "sms_otp")
        self.payout_account = new_account
        self.say(f"  payout account changed to {new_account}")

    def complete_step_up(self, organization_id: str, member_id: str, session_token: str, code: str) -> None:
        self.flow.authenticate_sms_otp(organization_id, member_id, code, session_token=session_token)
        self.say("  step-up: code accepted, the same session continues")


def main() -> None:
    clock = FakeClock()
    phone = FakeTransport()  # stands in for the SMS gateway and the member's phone
    log: list[str] = []
    events: list[Event] = []
    flow = MfaFlow(clock=clock, transport=phone, events=[events.append])
    flow.directory.put_organization(Organization(ORG, organization_slug="billing", mfa_policy="REQUIRED_FOR_ALL"))
    flow.directory.put_member(Member(MEMBER, ORG, email_address="grace@example.com",
                                     mfa_phone_number=PHONE, mfa_phone_number_verified=True))
    app = BillingApp(flow, log)

    app.say("1. The member signs in (SSO, then the SMS code).")
    ist = app.start_sign_in(ORG, MEMBER)
    session = app.finish_sign_in(ORG, MEMBER, ist, phone.last_code(MEMBER))

    app.say("2. Ten minutes later they change the payout account: the session is fresh, no step-up.")
    clock.advance(minutes=10)
    app.change_payout_account(session, "DE89 **** **** **** 4000")

    app.say("3. They leave for 31 minutes, come back and try again.")
    clock.advance(minutes=31)
    sms_sent = False
    try:
        app.change_payout_account(session, "DE89 **** **** **** 5000")
    except StepUpRequiredError as step_up:
        app.say(f"  refused: {step_up}")
        sms_sent = step_up.sms_sent
    else:
        raise AssertionError("an idle session changed the payout account")
    assert sms_sent
    assert app.payout_account.endswith("4000")

    app.say("4. A wrong code is refused, and the action still waits.")
    right = phone.last_code(MEMBER)
    refusal = ""
    try:
        app.complete_step_up(ORG, MEMBER, session, f"{(int(right) + 1) % 1_000_000:06d}")
    except MfaError as error:
        app.say(f"  refused: {error.error_type}")
        refusal = error.error_type
    else:
        raise AssertionError("a wrong code completed the step-up")
    assert refusal == "otp_code_not_found"

    app.say("5. The right code completes the step-up; the action goes through.")
    app.complete_step_up(ORG, MEMBER, session, right)
    app.change_payout_account(session, "DE89 **** **** **** 5000")
    assert app.payout_account.endswith("5000")

    app.say("Events the flow emitted (an audit log would keep these):")
    for event in events:
        detail = f" reason={event.reason}" if event.reason else ""
        app.say(f"  {event.name:<27} phone={event.phone or '-'}{detail}")

    secrets = [ist, session, *(message.code for message in phone.sent)]
    transcript = "\n".join(log)
    assert all(secret not in transcript for secret in secrets), "a code or a token was printed"
    assert PHONE not in transcript, "the full phone number was printed"
    print("OK: the sensitive action waited for the step-up, and no code or token was printed.")


if __name__ == "__main__":
    main()
