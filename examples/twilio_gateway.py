"""Send MFA codes by SMS through Twilio — with ``httpx.MockTransport`` standing in for Twilio (no network, no account).

Alice signs in: the flow texts her a code through ``TwilioGateway``, her "phone" (the stand-in's inbox) shows it,
and she types it in. Bob's number replied STOP to an earlier message: Twilio refuses with error 21610, the
gateway raises ``DeliveryRejected`` (surely not sent), and the flow answers ``downstream_carrier_error`` and
discards that code. The gateway's log lines show what an operator sees: the masked number, the HTTP status and
Twilio's error code — never the code.

In production, pass no ``client`` (the gateway makes its own; close it with ``with`` or ``close()``) and read the
credentials from your secret store::

    TwilioGateway(account_sid, auth_token, messaging_service_sid="MG...")

Run it:

    python3 examples/twilio_gateway.py
"""

from __future__ import annotations

import base64
import logging
import re
from collections import defaultdict
from urllib.parse import parse_qs

import httpx

from mfa_flow import Event, Member, MfaError, MfaFlow, Organization
from mfa_flow.transports.twilio import TwilioGateway

ACCOUNT_SID = "AC" + "0" * 32  # fictional credentials: the stand-in checks them as Twilio would
AUTH_TOKEN = "example-auth-token-not-a-real-one"  # noqa: S105 - fictional, checked by the stand-in only
SERVICE_SID = "MG" + "1" * 32
ORG = "organization-example-1"
ALICE, ALICE_PHONE = "member-alice", "+14155550142"  # fictional US numbers
BOB, BOB_PHONE = "member-bob", "+14155550143"


class FakeTwilio:
    """Stands in for Twilio's Messages resource: checks Basic auth and the form, keeps each SMS in the
    recipient's inbox, and refuses numbers that replied STOP (error 21610), as Twilio does."""

    def __init__(self, opted_out: set[str]) -> None:
        self.inbox: defaultdict[str, list[str]] = defaultdict(list)
        self.opted_out = opted_out
        self.created = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        credentials = base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()
        if request.headers.get("authorization") != f"Basic {credentials}":
            return httpx.Response(401, json={"code": 20003, "message": "Authenticate", "status": 401})
        form = {key: values[0] for key, values in parse_qs(request.content.decode()).items()}
        assert form.keys() == {"To", "MessagingServiceSid", "Body"}, form.keys()
        if form["To"] in self.opted_out:
            return httpx.Response(400, json={"code": 21610, "message": "Attempt to send to unsubscribed recipient",
                                             "more_info": "https://www.twilio.com/docs/errors/21610", "status": 400})
        self.inbox[form["To"]].append(form["Body"])
        self.created += 1
        return httpx.Response(201, json={"sid": f"SM{self.created:02d}" + "f" * 30, "status": "accepted",
                                         "to": form["To"], "messaging_service_sid": SERVICE_SID,
                                         "error_code": None})


def code_in(sms: str) -> str:
    """What the member reads on their phone: the six digits of the SMS."""
    found = re.search(r"\b\d{6}\b", sms)
    assert found is not None
    return found.group(0)


def main() -> None:
    transcript: list[str] = []

    def say(line: str) -> None:
        transcript.append(line)
        print(line)

    class Transcript(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            say(f"  gateway log ({record.levelname}): {record.getMessage()}")

    gateway_log = logging.getLogger("mfa_flow.transports")
    gateway_log.setLevel(logging.DEBUG)
    gateway_log.addHandler(Transcript())

    twilio = FakeTwilio(opted_out={BOB_PHONE})
    events: list[Event] = []
    tokens: list[str] = []
    with httpx.Client(transport=httpx.MockTransport(twilio)) as client, \
            TwilioGateway(ACCOUNT_SID, AUTH_TOKEN, messaging_service_sid=SERVICE_SID, client=client) as gateway:
        say(f"Gateway: {gateway!r}")
        flow = MfaFlow(transport=gateway, events=[events.append])
        flow.directory.put_organization(Organization(ORG, organization_slug="example", mfa_policy="REQUIRED_FOR_ALL"))
        for member, phone in ((ALICE, ALICE_PHONE), (BOB, BOB_PHONE)):
            flow.directory.put_member(Member(member, ORG, mfa_phone_number=phone, mfa_phone_number_verified=True))

        say("1. Alice signs in with her password; the flow texts her a code through Twilio.")
        primary = flow.authenticate_primary(ORG, ALICE, "password")
        assert primary.mfa_required is not None
        assert primary.mfa_required.secondary_auth_initiated == "sms_otp"
        say(f"  SMS sent to {primary.mfa_required.member_options.mfa_phone_number}; "
            f"{len(twilio.inbox[ALICE_PHONE])} message on her phone")
        done = flow.authenticate_sms_otp(ORG, ALICE, code_in(twilio.inbox[ALICE_PHONE][-1]),
                                         intermediate_session_token=primary.intermediate_session_token)
        assert done.member_session is not None
        tokens += [primary.intermediate_session_token, done.session_token]
        factors = ", ".join(f"{f.type}/{f.delivery_method}" for f in done.member_session.authentication_factors)
        say(f"  code accepted: session issued with factors [{factors}]")

        say("2. Bob signs in; his number replied STOP, so Twilio refuses the SMS.")
        primary = flow.authenticate_primary(ORG, BOB, "password")
        assert primary.mfa_required is not None
        assert primary.mfa_required.secondary_auth_initiated is None
        tokens.append(primary.intermediate_session_token)
        say("  the automatic SMS was not sent: the login waits for another factor")
        try:
            flow.send_sms_otp(ORG, BOB, intermediate_session_token=primary.intermediate_session_token)
        except MfaError as error:
            say(f"  an explicit resend is refused: {error.error_type} (HTTP {error.status_code})")
            refused = error.error_type
        else:
            raise AssertionError("an opted-out number was texted")
        assert refused == "downstream_carrier_error"
        assert not twilio.inbox[BOB_PHONE]

    say("Events the flow emitted (an audit log would keep these):")
    for event in events:
        detail = f" reason={event.reason}" if event.reason else ""
        say(f"  {event.name:<18} member={event.member_id:<12} phone={event.phone or '-'}{detail}")

    text = "\n".join(transcript)
    codes = [code_in(sms) for sms in twilio.inbox[ALICE_PHONE]]
    assert all(secret not in text for secret in [*codes, *tokens, AUTH_TOKEN]), "a code, token or credential leaked"
    assert ALICE_PHONE not in text, "a full phone number was printed"
    assert BOB_PHONE not in text, "a full phone number was printed"
    print("OK: codes went only to the phones; no code, token or credential was printed.")


if __name__ == "__main__":
    main()
