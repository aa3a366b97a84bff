"""Conformance of ``mfa-flow serve`` to Stytch's B2B SMS OTP API, driven by the OFFICIAL ``stytch`` SDK (spec §12).

Each test starts its own server as a user would (tests/emulator_server.py), talks to it through
``stytch.B2BClient(PROJECT_ID, SECRET, environment=server.url)`` — its sync methods or its ``*_async`` twins — and
asserts on what the SDK parsed: the response objects, or ``StytchError.details``. Codes are read, the clock
advanced and primary authentication recorded through the emulator's test endpoints.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.emulator_server import PROJECT_ID, SECRET, EmulatorProcess, require
from tests.helpers_rules import factor_kinds, wrong

# Constructing B2BClient (aiohttp's BasicAuth) and every *_async call (aiohttp's ``auth=``) warn; nothing else may.
pytestmark = [
    pytest.mark.filterwarnings("ignore:BasicAuth is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:The 'auth' parameter is deprecated:DeprecationWarning"),
]

ORG = "organization-test-7d4c3f2e-1b0a-4e5f-9a8b-000000000001"
ORG_SLUG = "acme-corp"
ORG_EXTERNAL_ID = "acme-external-1"
ORG2 = "organization-test-7d4c3f2e-1b0a-4e5f-9a8b-000000000002"
ADA = "member-test-5e1a0b7c-0000-4000-8000-00000000000a"  # verified linked phone
ADA_EXTERNAL_ID = "ada-external-1"
BOB = "member-test-5e1a0b7c-0000-4000-8000-00000000000b"  # no phone yet
CAROL = "member-test-5e1a0b7c-0000-4000-8000-00000000000c"  # verified linked phone, another member
DAN = "member-test-5e1a0b7c-0000-4000-8000-00000000000d"  # in ORG2 (OPTIONAL, not enrolled)
ADA_PHONE = "+14155550101"
CAROL_PHONE = "+14155550102"
NEW_PHONE = "+14155550142"
NEW_PHONE_FORMATTED = "+1 (415) 555-0142"
CA_PHONE = "+15062345678"  # phonenumbers' example number for CA

FIXTURES: dict[str, Any] = {
    "organizations": [
        {"organization_id": ORG, "organization_name": "Acme Corp", "organization_slug": ORG_SLUG,
         "organization_external_id": ORG_EXTERNAL_ID, "mfa_policy": "REQUIRED_FOR_ALL"},
        {"organization_id": ORG2, "organization_name": "Globex", "organization_slug": "globex",
         "organization_external_id": "globex-external-1"},
    ],
    "members": [
        {"member_id": ADA, "organization_id": ORG, "email_address": "ada@example.com", "name": "Ada",
         "external_id": ADA_EXTERNAL_ID, "mfa_phone_number": ADA_PHONE, "mfa_phone_number_verified": True},
        {"member_id": BOB, "organization_id": ORG, "email_address": "bob@example.com", "name": "Bob"},
        {"member_id": CAROL, "organization_id": ORG, "email_address": "carol@example.com", "name": "Carol",
         "mfa_phone_number": CAROL_PHONE, "mfa_phone_number_verified": True},
        {"member_id": DAN, "organization_id": ORG2, "email_address": "dan@example.com", "name": "Dan"},
    ],
}

ERROR_FIELDS = frozenset({"status_code", "request_id", "error_type", "error_message", "error_url"})
REQUEST_ID_PREFIX = "request-id-test-"
# Secondary rules run through the sync client only: the async path differs only in transport, and every server
# start costs about half a second.
SYNC_ONLY = pytest.mark.parametrize("mode", ["sync"])


class Sdk:
    """The official client on one emulator, through its sync methods or its ``*_async`` twins (all on one event
    loop, as an application would). Every answer, success or error, must carry a fresh test request id."""

    def __init__(self, url: str, mode: str, *, project_id: str = PROJECT_ID, secret: str = SECRET) -> None:
        stytch = require("stytch")
        self.session = require("requests").Session()
        self.client = stytch.B2BClient(project_id, secret, environment=url, sync_session=self.session)
        self.runner = asyncio.Runner() if mode == "async" else None
        self.request_ids: set[str] = set()

    def close(self) -> None:
        if self.runner is not None:
            self.runner.run(self.client.close())
            self.runner.close()
        self.session.close()

    def _call(self, api: Any, name: str, *args: Any, **kwargs: Any) -> Any:
        errors = require("stytch.core.response_base")
        try:
            if self.runner is None:
                response = getattr(api, name)(*args, **kwargs)
            else:
                response = self.runner.run(getattr(api, f"{name}_async")(*args, **kwargs))
        except errors.StytchError as refusal:
            self._fresh(refusal.details.request_id)
            raise
        assert response.status_code == 200
        self._fresh(response.request_id)
        return response

    def _fresh(self, request_id: str) -> None:
        assert request_id.startswith(REQUEST_ID_PREFIX), request_id
        assert len(request_id) > len(REQUEST_ID_PREFIX)
        assert request_id not in self.request_ids, f"request_id {request_id} answered twice"
        self.request_ids.add(request_id)

    def send(self, organization_id: str, member_id: str, **kwargs: Any) -> Any:
        return self._call(self.client.otps.sms, "send", organization_id, member_id, **kwargs)

    def authenticate(self, organization_id: str, member_id: str, code: str, **kwargs: Any) -> Any:
        return self._call(self.client.otps.sms, "authenticate", organization_id, member_id, code, **kwargs)

    def get_organization(self, organization_id: str) -> Any:
        return self._call(self.client.organizations, "get", organization_id)

    def get_member(self, organization_id: str, **kwargs: Any) -> Any:
        return self._call(self.client.organizations.members, "get", organization_id, **kwargs)

    def delete_phone(self, organization_id: str, member_id: str) -> Any:
        return self._call(self.client.organizations.members, "delete_mfa_phone_number", organization_id, member_id)

    def refused(self, error_type: str, status_code: int, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``call(*args, **kwargs)`` must raise StytchError with this type and status; its details."""
        errors = require("stytch.core.response_base")
        with pytest.raises(errors.StytchError) as caught:
            call(*args, **kwargs)
        details = caught.value.details
        assert (details.error_type, details.status_code) == (error_type, status_code), details.error_message
        assert details.error_message
        assert set(details.original_json) >= ERROR_FIELDS
        return details


@pytest.fixture(params=["sync", "async"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def connect(mode: str) -> Iterator[Callable[..., Sdk]]:
    """``connect(server, **credentials)`` → an :class:`Sdk` in the test's mode, closed after the test."""
    opened: list[Sdk] = []

    def make(server: EmulatorProcess, **credentials: str) -> Sdk:
        sdk = Sdk(server.url, mode, **credentials)
        opened.append(sdk)
        return sdk

    yield make
    for sdk in opened:
        sdk.close()


@pytest.fixture
def server(start_emulator: Callable[..., EmulatorProcess]) -> EmulatorProcess:
    return start_emulator(FIXTURES)


@pytest.fixture
def sdk(server: EmulatorProcess, connect: Callable[..., Sdk]) -> Sdk:
    return connect(server)


def login(server: EmulatorProcess, member_id: str = ADA, organization_id: str = ORG) -> str:
    """Primary authentication through the test endpoint; the IST (the automatic code, if any, has gone)."""
    result = server.primary_auth(organization_id, member_id, "password")
    assert result["member_authenticated"] is False  # MFA is owed (REQUIRED_FOR_ALL)
    assert result["session_token"] == ""
    ist = str(result["intermediate_session_token"])
    assert ist
    return ist


def session_of(server: EmulatorProcess, sdk: Sdk, member_id: str = ADA) -> Any:
    """Primary auth + the automatic code → the authenticate response (a session with password + SMS)."""
    ist = login(server, member_id)
    return sdk.authenticate(ORG, member_id, server.code(member_id), intermediate_session_token=ist)


def sent_to(server: EmulatorProcess, member_id: str) -> list[str]:
    return [m["to"] for m in server.messages() if m["member_id"] == member_id]


# --------------------------------------------------------------------------------------------------
# destination (§6.2): the linked phone, first-use linking, mismatch
# --------------------------------------------------------------------------------------------------


def test_send_goes_to_the_members_linked_phone(server: EmulatorProcess, sdk: Sdk) -> None:
    ist = login(server)
    assert sent_to(server, ADA) == [ADA_PHONE]  # the automatic code of the login
    resp = sdk.send(ORG, ADA, locale="es", intermediate_session_token=ist)
    assert resp.member_id == ADA
    assert resp.member.member_id == ADA
    assert resp.member.mfa_phone_number == ADA_PHONE
    assert resp.member.mfa_phone_number_verified is True
    assert resp.organization.organization_id == ORG
    assert resp.organization.organization_slug == ORG_SLUG
    last = server.messages()[-1]
    assert (last["to"], last["member_id"], last["organization_id"], last["locale"]) == (ADA_PHONE, ADA, ORG, "es")
    assert sent_to(server, ADA) == [ADA_PHONE, ADA_PHONE]


@SYNC_ONLY
def test_send_accepts_the_organization_slug_or_external_id_and_the_member_external_id(
    server: EmulatorProcess, sdk: Sdk
) -> None:
    ist = login(server)
    for org_ref in (ORG_SLUG, ORG_EXTERNAL_ID):
        resp = sdk.send(org_ref, ADA_EXTERNAL_ID, intermediate_session_token=ist)
        assert (resp.member_id, resp.organization.organization_id) == (ADA, ORG)
    code = server.code(ADA)
    resp = sdk.authenticate(ORG_SLUG, ADA_EXTERNAL_ID, code, intermediate_session_token=ist)
    assert resp.member_id == ADA
    assert resp.member_session.organization_id == ORG
    assert sent_to(server, ADA) == [ADA_PHONE] * 3


def test_first_use_links_the_number_unverified_and_authenticate_verifies_it(
    server: EmulatorProcess, sdk: Sdk
) -> None:
    result = server.primary_auth(ORG, BOB, "password")
    assert result["mfa_required"]["secondary_auth_initiated"] is None  # no phone: no automatic code
    ist = result["intermediate_session_token"]
    assert server.messages() == []

    resp = sdk.send(ORG, BOB, mfa_phone_number=NEW_PHONE_FORMATTED, intermediate_session_token=ist)
    assert resp.member.mfa_phone_number == NEW_PHONE  # stored as E.164
    assert resp.member.mfa_phone_number_verified is False
    assert sdk.get_member(ORG, member_id=BOB).member.mfa_phone_number == NEW_PHONE
    assert sent_to(server, BOB) == [NEW_PHONE]

    auth = sdk.authenticate(ORG, BOB, server.code(BOB), intermediate_session_token=ist)
    assert auth.member.mfa_phone_number == NEW_PHONE
    assert auth.member.mfa_phone_number_verified is True
    assert auth.member.mfa_enrolled is True  # REQUIRED_FOR_ALL enrols on success
    assert factor_kinds(auth.member_session) == [("password", "knowledge"), ("otp", "sms")]
    assert auth.member_session.authentication_factors[-1].phone_number_factor.phone_number == NEW_PHONE
    assert sdk.get_member(ORG, member_id=BOB).member.mfa_phone_number_verified is True

    # The formatted variant is the same number: no mismatch, the code goes to the linked phone.
    again = sdk.send(ORG, BOB, mfa_phone_number=NEW_PHONE_FORMATTED, session_token=auth.session_token)
    assert again.member.mfa_phone_number == NEW_PHONE
    assert sent_to(server, BOB) == [NEW_PHONE, NEW_PHONE]


@SYNC_ONLY
def test_a_different_number_than_the_linked_one_is_a_mismatch(server: EmulatorProcess, sdk: Sdk) -> None:
    ist = login(server)
    sdk.refused("duplicate_member_phone_number_for_member", 400, sdk.send, ORG, ADA,
                mfa_phone_number="+14155550199", intermediate_session_token=ist)
    member = sdk.get_member(ORG, member_id=ADA).member
    assert (member.mfa_phone_number, member.mfa_phone_number_verified) == (ADA_PHONE, True)
    assert sent_to(server, ADA) == [ADA_PHONE]  # only the login's automatic code


# --------------------------------------------------------------------------------------------------
# the destination's region and type (§6.1)
# --------------------------------------------------------------------------------------------------


OUTSIDE_THE_ALLOWLIST = (
    "+441212345678",  # GB: outside the default allowlist {US, CA}
    "+18765230123",  # JM, though it starts with +1: the parsed region decides
    "+12462501234",  # BB: +1 too
)
INVALID_NUMBERS = (
    "+19002345678",  # US premium rate
    "+18002345678",  # US toll free
    "+1415555",  # too short: not a valid number
    "4155550142",  # no leading +
    "+14155550142 ext. 12",  # an extension
)


@SYNC_ONLY
def test_a_region_outside_the_allowlist_is_refused_and_nothing_is_sent(server: EmulatorProcess, sdk: Sdk) -> None:
    for number in OUTSIDE_THE_ALLOWLIST:
        sdk.refused("invalid_phone_number_country_code", 400, sdk.send, ORG, BOB, mfa_phone_number=number)
    assert server.messages() == []
    assert sdk.get_member(ORG, member_id=BOB).member.mfa_phone_number == ""
    assert sdk.send(ORG, BOB, mfa_phone_number=CA_PHONE).member.mfa_phone_number == CA_PHONE  # CA is allowed
    assert sent_to(server, BOB) == [CA_PHONE]


@SYNC_ONLY
def test_a_premium_rate_or_invalid_number_is_refused_and_nothing_is_sent(server: EmulatorProcess, sdk: Sdk) -> None:
    for number in INVALID_NUMBERS:
        sdk.refused("invalid_phone_number", 400, sdk.send, ORG, BOB, mfa_phone_number=number)
    assert server.messages() == []
    assert sdk.get_member(ORG, member_id=BOB).member.mfa_phone_number == ""
    assert sdk.send(ORG, BOB, mfa_phone_number=NEW_PHONE).member.mfa_phone_number == NEW_PHONE  # a valid one links
    assert sent_to(server, BOB) == [NEW_PHONE]


# --------------------------------------------------------------------------------------------------
# codes (§6.5), ISTs (§6.9), lockout (§6.6), limits (§6.7)
# --------------------------------------------------------------------------------------------------


def test_a_wrong_code_is_otp_code_not_found_and_the_right_one_still_works(server: EmulatorProcess, sdk: Sdk) -> None:
    ist = login(server)
    code = server.code(ADA)
    sdk.refused("otp_code_not_found", 404, sdk.authenticate, ORG, ADA, wrong(code), intermediate_session_token=ist)
    resp = sdk.authenticate(ORG, ADA, code, intermediate_session_token=ist)
    assert resp.session_token
    assert resp.member_session.member_id == ADA


def test_a_code_is_accepted_at_119_seconds_and_expired_at_120(server: EmulatorProcess, sdk: Sdk) -> None:
    ist = login(server)
    server.advance(119)
    assert sdk.authenticate(ORG, ADA, server.code(ADA), intermediate_session_token=ist).session_token

    ist = login(server)
    server.advance(120)
    sdk.refused("unable_to_auth_otp_code", 401, sdk.authenticate, ORG, ADA, server.code(ADA),
                intermediate_session_token=ist)


def test_a_resend_kills_the_previous_code(server: EmulatorProcess, sdk: Sdk) -> None:
    ist = login(server)
    old = server.code(ADA)
    sdk.send(ORG, ADA, intermediate_session_token=ist)
    new = server.code(ADA)
    sdk.refused("otp_code_not_found", 404, sdk.authenticate, ORG, ADA, old, intermediate_session_token=ist)
    resp = sdk.authenticate(ORG, ADA, new, intermediate_session_token=ist)
    assert resp.session_token


def test_an_ist_is_consumed_by_a_successful_authenticate(server: EmulatorProcess, sdk: Sdk) -> None:
    ist = login(server)
    code = server.code(ADA)
    resp = sdk.authenticate(ORG, ADA, code, intermediate_session_token=ist)
    assert resp.session_token
    assert resp.session_token != ist
    assert resp.session_jwt == ""  # local mode issues no JWT
    assert factor_kinds(resp.member_session) == [("password", "knowledge"), ("otp", "sms")]
    assert resp.member_session.authentication_factors[-1].phone_number_factor.phone_number == ADA_PHONE
    assert resp.member_session.organization_slug == ORG_SLUG
    assert resp.member.mfa_enrolled is True
    sdk.refused("intermediate_session_not_found", 404, sdk.authenticate, ORG, ADA, code,
                intermediate_session_token=ist)
    sdk.refused("intermediate_session_not_found", 404, sdk.send, ORG, ADA, intermediate_session_token=ist)


def test_ten_wrong_codes_across_resends_lock_the_member(server: EmulatorProcess, sdk: Sdk) -> None:
    ist = login(server)
    code = server.code(ADA)
    for _ in range(5):  # the 5th kills the code (max_attempts_per_code) and still answers otp_code_not_found
        sdk.refused("otp_code_not_found", 404, sdk.authenticate, ORG, ADA, wrong(code),
                    intermediate_session_token=ist)
    sdk.refused("unable_to_auth_otp_code", 401, sdk.authenticate, ORG, ADA, code, intermediate_session_token=ist)
    sdk.send(ORG, ADA, intermediate_session_token=ist)
    code = server.code(ADA)
    for _ in range(4):
        sdk.refused("otp_code_not_found", 404, sdk.authenticate, ORG, ADA, wrong(code),
                    intermediate_session_token=ist)
    sdk.refused("user_lock_limit_reached", 429, sdk.authenticate, ORG, ADA, wrong(code),
                intermediate_session_token=ist)

    sent = len(server.messages())
    sdk.refused("user_lock_limit_reached", 429, sdk.authenticate, ORG, ADA, code, intermediate_session_token=ist)
    sdk.refused("user_lock_limit_reached", 429, sdk.send, ORG, ADA, intermediate_session_token=ist)
    assert len(server.messages()) == sent
    member = sdk.get_member(ORG, member_id=ADA).member
    assert member.is_locked is True
    assert member.lock_expires_at is not None

    server.advance(3600)  # the lock ends, and the failure counter with it
    assert sdk.get_member(ORG, member_id=ADA).member.is_locked is False
    ist = login(server)
    code = server.code(ADA)
    sdk.refused("otp_code_not_found", 404, sdk.authenticate, ORG, ADA, wrong(code), intermediate_session_token=ist)
    assert sdk.authenticate(ORG, ADA, code, intermediate_session_token=ist).session_token


def test_the_sixth_send_within_600_seconds_is_too_many_requests(server: EmulatorProcess, sdk: Sdk) -> None:
    ist = login(server, BOB)
    sdk.send(ORG, BOB, mfa_phone_number=NEW_PHONE, intermediate_session_token=ist)
    for _ in range(4):
        sdk.send(ORG, BOB, intermediate_session_token=ist)
    fifth = server.code(BOB)
    sdk.refused("too_many_requests", 429, sdk.send, ORG, BOB, intermediate_session_token=ist)
    assert sent_to(server, BOB) == [NEW_PHONE] * 5
    # A refused send changes nothing: the fifth code is still the live one.
    session = sdk.authenticate(ORG, BOB, fifth, intermediate_session_token=ist).session_token

    server.advance(601)
    sdk.send(ORG, BOB, session_token=session)
    assert sent_to(server, BOB) == [NEW_PHONE] * 6


# --------------------------------------------------------------------------------------------------
# token rules of the send (§6.4) and the step-up with a session
# --------------------------------------------------------------------------------------------------


@SYNC_ONLY
def test_a_member_with_an_active_factor_needs_a_token_to_send(server: EmulatorProcess, sdk: Sdk) -> None:
    sdk.refused("no_associated_session_passed_in", 400, sdk.send, ORG, ADA)
    assert server.messages() == []


@SYNC_ONLY
def test_another_members_ist_is_refused(server: EmulatorProcess, sdk: Sdk) -> None:
    carol_ist = login(server, CAROL)
    sdk.refused("member_session_member_id_mismatch", 400, sdk.send, ORG, ADA, intermediate_session_token=carol_ist)
    sdk.refused("member_session_member_id_mismatch", 400, sdk.authenticate, ORG, ADA, server.code(CAROL),
                intermediate_session_token=carol_ist)
    assert sent_to(server, ADA) == []
    assert sdk.authenticate(ORG, CAROL, server.code(CAROL), intermediate_session_token=carol_ist).session_token


def test_a_step_up_with_a_session_token_keeps_the_token(server: EmulatorProcess, sdk: Sdk) -> None:
    first = session_of(server, sdk)
    token, session = first.session_token, first.member_session
    password_at, sms_at = (f.last_authenticated_at for f in session.authentication_factors)
    server.advance(1801)  # past the inactivity timeout: the session is only good for its own step-up now

    resp = sdk.send(ORG, ADA, session_token=token)
    assert resp.member.mfa_phone_number == ADA_PHONE
    assert sent_to(server, ADA) == [ADA_PHONE, ADA_PHONE]
    stepped = sdk.authenticate(ORG, ADA, server.code(ADA), session_token=token)
    assert stepped.session_token == token
    assert stepped.member_session.member_session_id == session.member_session_id
    assert factor_kinds(stepped.member_session) == [("password", "knowledge"), ("otp", "sms")]
    password_again, sms_again = (f.last_authenticated_at for f in stepped.member_session.authentication_factors)
    assert password_again == password_at
    assert (sms_again - sms_at).total_seconds() >= 1801
    assert (stepped.member_session.last_accessed_at - session.last_accessed_at).total_seconds() >= 1801
    assert stepped.member_session.expires_at == session.expires_at  # no session_duration_minutes: not extended


@SYNC_ONLY
def test_refusals_reach_the_sdk_with_their_error_type_and_status(server: EmulatorProcess, sdk: Sdk) -> None:
    ist = login(server)
    cases: list[tuple[str, int, Callable[..., Any], tuple[str, ...], dict[str, Any]]] = [
        ("no_session_arguments", 400, sdk.authenticate, (ORG, ADA, "123456"), {}),
        ("too_many_session_arguments", 400, sdk.send, (ORG, ADA),
         {"intermediate_session_token": ist, "session_token": "session-token-unknown"}),
        ("unable_to_parse_session_jwt", 401, sdk.authenticate, (ORG, ADA, "123456"), {"session_jwt": "not-a-jwt"}),
        ("invalid_session_duration_minutes", 400, sdk.authenticate, (ORG, ADA, "123456"),
         {"intermediate_session_token": ist, "session_duration_minutes": 4}),
        ("invalid_locale", 400, sdk.send, (ORG, ADA), {"intermediate_session_token": ist, "locale": "xx-YY"}),
        ("invalid_intermediate_session_token_for_organization", 400, sdk.send, (ORG2, DAN),
         {"intermediate_session_token": ist}),
        ("intermediate_session_not_found", 404, sdk.send, (ORG, ADA), {"intermediate_session_token": "ist-unknown"}),
        ("session_not_found", 404, sdk.send, (ORG, ADA), {"session_token": "session-token-unknown"}),
        ("organization_not_found", 404, sdk.send, ("organization-test-unknown", ADA), {}),
        ("member_not_found", 404, sdk.send, (ORG, "member-test-unknown"), {}),
        ("duplicate_member_phone_number", 400, sdk.send, (ORG, BOB), {"mfa_phone_number": CAROL_PHONE}),
    ]
    for error_type, status_code, call, args, kwargs in cases:
        sdk.refused(error_type, status_code, call, *args, **kwargs)
    assert [m["to"] for m in server.messages()] == [ADA_PHONE]  # only the login's automatic code
    assert sdk.get_member(ORG, member_id=BOB).member.mfa_phone_number == ""
    # No refusal consumed the IST or superseded the login's code: together they still open a session.
    assert sdk.authenticate(ORG, ADA, server.code(ADA), intermediate_session_token=ist).session_token


# --------------------------------------------------------------------------------------------------
# credentials, the directory routes, deleting a phone
# --------------------------------------------------------------------------------------------------


def test_bad_credentials_are_unauthorized_on_every_route(
    server: EmulatorProcess, connect: Callable[..., Sdk]
) -> None:
    for credentials in ({"secret": "secret-test-wrong"}, {"project_id": "project-test-someone-else"}):
        stranger = connect(server, **credentials)
        for call, args, kwargs in (
            (stranger.send, (ORG, BOB), {"mfa_phone_number": NEW_PHONE}),
            (stranger.authenticate, (ORG, ADA, "123456"), {"session_token": "session-token-unknown"}),
            (stranger.get_organization, (ORG,), {}),
            (stranger.get_member, (ORG,), {"member_id": ADA}),
            (stranger.delete_phone, (ORG, ADA), {}),
        ):
            stranger.refused("unauthorized_credentials", 401, call, *args, **kwargs)
    assert server.messages() == []
    sdk = connect(server)
    assert sdk.get_member(ORG, member_id=ADA).member.mfa_phone_number == ADA_PHONE  # delete was not done


def test_get_organization_by_id_slug_or_external_id(server: EmulatorProcess, sdk: Sdk) -> None:
    for ref in (ORG, ORG_SLUG, ORG_EXTERNAL_ID):
        org = sdk.get_organization(ref).organization
        assert (org.organization_id, org.organization_slug, org.organization_name) == (ORG, ORG_SLUG, "Acme Corp")
        assert org.organization_external_id == ORG_EXTERNAL_ID
        assert org.mfa_policy == "REQUIRED_FOR_ALL"
    assert sdk.get_organization("globex").organization.mfa_policy == "OPTIONAL"
    sdk.refused("organization_not_found", 404, sdk.get_organization, "organization-test-unknown")


def test_get_member_by_id_external_id_or_email_address(server: EmulatorProcess, sdk: Sdk) -> None:
    for org_ref, selector in (
        (ORG, {"member_id": ADA}),
        (ORG_SLUG, {"member_id": ADA_EXTERNAL_ID}),
        (ORG_EXTERNAL_ID, {"email_address": "ada@example.com"}),
    ):
        resp = sdk.get_member(org_ref, **selector)
        assert resp.member_id == ADA
        assert (resp.member.member_id, resp.member.organization_id) == (ADA, ORG)
        assert (resp.member.email_address, resp.member.external_id) == ("ada@example.com", ADA_EXTERNAL_ID)
        assert (resp.member.mfa_phone_number, resp.member.mfa_phone_number_verified) == (ADA_PHONE, True)
        assert resp.member.is_locked is False
        assert resp.organization.organization_id == ORG
    assert sdk.get_member(ORG2, email_address="dan@example.com").member.member_id == DAN
    sdk.refused("member_not_found", 404, sdk.get_member, ORG, member_id="member-test-unknown")
    sdk.refused("member_not_found", 404, sdk.get_member, ORG, email_address="nobody@example.com")
    sdk.refused("member_not_found", 404, sdk.get_member, ORG2, member_id=ADA)  # a member of another organization


def test_deleting_the_phone_unlinks_it(server: EmulatorProcess, sdk: Sdk) -> None:
    resp = sdk.delete_phone(ORG, ADA)
    assert resp.member_id == ADA
    assert resp.member.mfa_phone_number == ""
    assert resp.member.mfa_phone_number_verified is False
    assert sdk.get_member(ORG, member_id=ADA).member.mfa_phone_number == ""
    sdk.refused("member_phone_number_not_found", 404, sdk.send, ORG, ADA)
    assert server.messages() == []
    # The only way to replace a linked number: after the delete a new one links.
    linked = sdk.send(ORG, ADA, mfa_phone_number=NEW_PHONE)
    assert (linked.member.mfa_phone_number, linked.member.mfa_phone_number_verified) == (NEW_PHONE, False)
    assert sent_to(server, ADA) == [NEW_PHONE]


# --------------------------------------------------------------------------------------------------
# --policy FILE
# --------------------------------------------------------------------------------------------------


def test_policy_file_send_limit_refuses_the_third_send(
    start_emulator: Callable[..., EmulatorProcess], connect: Callable[..., Sdk]
) -> None:
    server = start_emulator(FIXTURES, policy="[policy]\nsend_limit_per_member = [2, 600]\n")
    sdk = connect(server)
    sdk.send(ORG, BOB, mfa_phone_number=NEW_PHONE)
    sdk.send(ORG, BOB)
    sdk.refused("too_many_requests", 429, sdk.send, ORG, BOB)
    assert sent_to(server, BOB) == [NEW_PHONE, NEW_PHONE]


@SYNC_ONLY
def test_policy_file_allowed_regions_widen_the_allowlist_but_not_past_the_unsupported_list(
    start_emulator: Callable[..., EmulatorProcess], connect: Callable[..., Sdk]
) -> None:
    server = start_emulator(FIXTURES, policy='[policy]\nallowed_regions = ["US", "CA", "GB", "BB"]\n')
    sdk = connect(server)
    sdk.refused("invalid_phone_number_country_code", 400, sdk.send, ORG, BOB, mfa_phone_number="+12462501234")
    assert server.messages() == []
    resp = sdk.send(ORG, BOB, mfa_phone_number="+447400123456")
    assert resp.member.mfa_phone_number == "+447400123456"
    assert sent_to(server, BOB) == ["+447400123456"]


ORG3 = "organization-test-7d4c3f2e-1b0a-4e5f-9a8b-000000000003"
ERIN = "member-test-5e1a0b7c-0000-4000-8000-00000000000e"
POLICY_WITH_RECORDS = f"""
[policy]
otp_ttl = 300

[[organizations]]
organization_id = "{ORG3}"
organization_slug = "initech"
mfa_policy = "REQUIRED_FOR_ALL"

[[members]]
member_id = "{ERIN}"
organization_id = "{ORG3}"
email_address = "erin@example.com"
mfa_phone_number = "+14155550105"
mfa_phone_number_verified = true
"""


@SYNC_ONLY
def test_policy_file_otp_ttl_and_members_are_used(
    start_emulator: Callable[..., EmulatorProcess], connect: Callable[..., Sdk]
) -> None:
    server = start_emulator(FIXTURES, policy=POLICY_WITH_RECORDS)
    sdk = connect(server)
    assert sdk.get_member("initech", email_address="erin@example.com").member.mfa_phone_number == "+14155550105"
    assert sdk.get_member(ORG, member_id=ADA).member.mfa_phone_number == ADA_PHONE  # the fixtures file still counts
    ist = login(server, ERIN, ORG3)
    assert sent_to(server, ERIN) == ["+14155550105"]
    server.advance(250)  # past the default 120 s, within the file's 300 s
    assert sdk.authenticate(ORG3, ERIN, server.code(ERIN), intermediate_session_token=ist).session_token
