"""Stytch mode end to end (spec §11): MfaFlow over StytchProvider — and AsyncMfaFlow over AsyncStytchProvider —
talking HTTP to a real ``mfa-flow serve`` (tests/emulator_server.py) as it would to Stytch.

The scenarios of tests/test_emulator_sdk.py, now driven through the flow: primary authentication happens at
"Stytch" (the emulator's test endpoint) and its answer is recorded with ``record_primary_auth``; codes are read
from the emulator; time passes on both clocks (the emulator's and the flow's FakeClock) together. What the
flow refuses locally never reaches the emulator (no message, no request id); what it forwards comes back with
the emulator's verdict and request id.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from mfa_flow import MfaError
from mfa_flow.errors import CodeRejected, PolicyRefusal, ProviderError, RateLimited, TokenError
from mfa_flow.results import PrimaryAuthResult
from mfa_flow.testing import FakeClock
from mfa_flow.transports.stytch import AsyncStytchDirectory, StytchDirectory
from tests.emulator_server import PROJECT_ID, SECRET, EmulatorProcess
from tests.helpers_rules import factor_kinds, names, wrong
from tests.test_emulator_sdk import (
    ADA,
    ADA_EXTERNAL_ID,
    ADA_PHONE,
    BOB,
    CA_PHONE,
    CAROL,
    FIXTURES,
    INVALID_NUMBERS,
    NEW_PHONE,
    NEW_PHONE_FORMATTED,
    ORG,
    ORG2,
    ORG_EXTERNAL_ID,
    ORG_SLUG,
    OUTSIDE_THE_ALLOWLIST,
    REQUEST_ID_PREFIX,
    sent_to,
)
from tests.test_stytch_mode import Twin

# Secondary rules run through the sync twin only: the async one differs in transport alone.
SYNC_ONLY = pytest.mark.parametrize("twin", ["sync"])


class App(Twin):
    """An application in Stytch mode whose "Stytch" is the emulator; its clock starts at the emulator's."""

    def __init__(self, server: EmulatorProcess, twin: str, *, secret: str = SECRET, **policy: Any) -> None:
        self.server = server
        super().__init__(twin, PROJECT_ID, secret, clock=FakeClock(time.time()), base_url=server.url, **policy)

    def login(self, member_id: str = ADA, organization_id: str = ORG) -> PrimaryAuthResult:
        """Primary authentication at "Stytch", recorded by the flow."""
        result: PrimaryAuthResult = self.run("record_primary_auth",
                                             self.server.primary_auth(organization_id, member_id, "password"))
        assert result.member_authenticated is False  # MFA is owed (REQUIRED_FOR_ALL)
        assert result.intermediate_session_token
        return result

    def session(self, member_id: str = ADA) -> Any:
        """Primary auth + the automatic code → the flow's AuthenticateResult (a session at "Stytch")."""
        ist = self.login(member_id).intermediate_session_token
        return self.run("authenticate_sms_otp", ORG, member_id, self.server.code(member_id),
                        intermediate_session_token=ist)

    def at_stytch(self, member_id: str) -> dict[str, Any]:
        """The member as "Stytch" holds it, read past the flow (and its directory's cache)."""
        answer: Any = self.provider.get_member(ORG, member_id)
        found = self.runner.run(answer) if self.runner is not None else answer
        assert found is not None
        return dict(found["member"])

    def advance(self, seconds: float) -> None:
        self.server.advance(seconds)
        self.clock.advance(seconds)

    def local(self, error_type: str, method: str, *args: Any, **kwargs: Any) -> MfaError:
        """Refused by the flow itself: nothing reached the emulator."""
        sent = len(self.server.messages())
        err = self.refused(error_type, method, *args, **kwargs)
        assert err.request_id is None, f"{error_type} came from the emulator, not from the flow"
        assert len(self.server.messages()) == sent
        return err

    def remote(self, error_type: str, method: str, *args: Any, **kwargs: Any) -> MfaError:
        """Refused by the emulator ("Stytch"), its verdict passed through."""
        err = self.refused(error_type, method, *args, **kwargs)
        assert err.request_id is not None
        assert err.request_id.startswith(REQUEST_ID_PREFIX)
        return err


@pytest.fixture(params=["sync", "async"])
def twin(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def server(start_emulator: Callable[..., EmulatorProcess]) -> EmulatorProcess:
    return start_emulator(FIXTURES)


@pytest.fixture
def connect(twin: str) -> Iterator[Callable[..., App]]:
    """``connect(server, **options)`` → an :class:`App` of the test's twin, closed after the test."""
    opened: list[App] = []

    def make(server: EmulatorProcess, **options: Any) -> App:
        app = App(server, twin, **options)
        opened.append(app)
        return app

    yield make
    for app in opened:
        app.close()


@pytest.fixture
def app(server: EmulatorProcess, connect: Callable[..., App]) -> App:
    return connect(server)


# --------------------------------------------------------------------------------------------------
# primary authentication recorded, the destination, first-use linking
# --------------------------------------------------------------------------------------------------


def test_send_goes_to_the_members_linked_phone(server: EmulatorProcess, app: App) -> None:
    login = app.login()
    assert login.mfa_required is not None
    assert login.mfa_required.secondary_auth_initiated == "sms_otp"
    assert login.member.mfa_phone_number == ADA_PHONE
    assert sent_to(server, ADA) == [ADA_PHONE]  # the emulator's automatic code
    assert [(e.name, e.data["automatic"]) for e in app.events] == [("otp.sent", True)]  # counted by the flow

    resp = app.run("send_sms_otp", ORG, ADA, locale="es", intermediate_session_token=login.intermediate_session_token)
    assert resp.request_id.startswith(REQUEST_ID_PREFIX)
    assert (resp.member_id, resp.member.mfa_phone_number, resp.member.mfa_phone_number_verified) == (
        ADA, ADA_PHONE, True)
    assert (resp.organization.organization_id, resp.organization.organization_slug) == (ORG, ORG_SLUG)
    last = server.messages()[-1]
    assert (last["to"], last["member_id"], last["organization_id"], last["locale"]) == (ADA_PHONE, ADA, ORG, "es")
    assert sent_to(server, ADA) == [ADA_PHONE, ADA_PHONE]


@SYNC_ONLY
def test_refs_are_resolved_to_canonical_ids_before_stytch_sees_them(server: EmulatorProcess, app: App) -> None:
    ist = app.login().intermediate_session_token
    for org_ref in (ORG_SLUG, ORG_EXTERNAL_ID):
        resp = app.run("send_sms_otp", org_ref, ADA_EXTERNAL_ID, intermediate_session_token=ist)
        assert (resp.member_id, resp.organization.organization_id) == (ADA, ORG)
    resp = app.run("authenticate_sms_otp", ORG_SLUG, ADA_EXTERNAL_ID, server.code(ADA), intermediate_session_token=ist)
    assert (resp.member_id, resp.member_session.organization_id) == (ADA, ORG)
    assert sent_to(server, ADA) == [ADA_PHONE] * 3


def test_first_use_links_the_number_unverified_and_authenticate_verifies_it(
    server: EmulatorProcess, app: App
) -> None:
    login = app.login(BOB)
    assert login.mfa_required is not None
    assert login.mfa_required.secondary_auth_initiated is None  # no phone: no automatic code
    assert app.events == []
    ist = login.intermediate_session_token

    resp = app.run("send_sms_otp", ORG, BOB, mfa_phone_number=NEW_PHONE_FORMATTED, intermediate_session_token=ist)
    assert (resp.member.mfa_phone_number, resp.member.mfa_phone_number_verified) == (NEW_PHONE, False)
    assert sent_to(server, BOB) == [NEW_PHONE]  # the flow sent Stytch the number in E.164
    assert app.run("get_member", ORG, BOB).mfa_phone_number == NEW_PHONE
    assert names(app.events) == ["phone.linked", "member.updated", "otp.sent"]

    auth = app.run("authenticate_sms_otp", ORG, BOB, server.code(BOB), intermediate_session_token=ist)
    assert (auth.member.mfa_phone_number, auth.member.mfa_phone_number_verified) == (NEW_PHONE, True)
    assert auth.member.mfa_enrolled is True  # REQUIRED_FOR_ALL enrols on success
    assert factor_kinds(auth.member_session) == [("password", "knowledge"), ("otp", "sms")]
    member = app.run("get_member", ORG, BOB)
    assert (member.mfa_phone_number, member.mfa_phone_number_verified) == (NEW_PHONE, True)

    # The formatted variant is the same number: no mismatch, the code goes to the linked phone.
    again = app.run("send_sms_otp", ORG, BOB, mfa_phone_number=NEW_PHONE_FORMATTED, session_token=auth.session_token)
    assert again.member.mfa_phone_number == NEW_PHONE
    assert sent_to(server, BOB) == [NEW_PHONE, NEW_PHONE]


@SYNC_ONLY
def test_a_different_number_than_the_linked_one_is_refused_locally(server: EmulatorProcess, app: App) -> None:
    ist = app.login().intermediate_session_token
    err = app.local("duplicate_member_phone_number_for_member", "send_sms_otp", ORG, ADA,
                    mfa_phone_number="+14155550199", intermediate_session_token=ist)
    assert isinstance(err, PolicyRefusal)
    assert sent_to(server, ADA) == [ADA_PHONE]  # only the login's automatic code


@SYNC_ONLY
def test_a_number_linked_to_another_member_is_refused_by_stytch(server: EmulatorProcess, app: App) -> None:
    carol = app.run("get_member", ORG, CAROL).mfa_phone_number
    app.remote("duplicate_member_phone_number", "send_sms_otp", ORG, BOB, mfa_phone_number=carol)
    assert app.run("get_member", ORG, BOB).mfa_phone_number == ""  # the link admission wrote is rolled back
    assert sent_to(server, BOB) == []
    assert app.at_stytch(BOB)["mfa_phone_number"] == ""


# --------------------------------------------------------------------------------------------------
# the destination's region and type (§6.1): the flow's own rules
# --------------------------------------------------------------------------------------------------


@SYNC_ONLY
def test_an_unsupported_country_or_invalid_number_is_refused_locally(server: EmulatorProcess, app: App) -> None:
    for number in OUTSIDE_THE_ALLOWLIST:
        app.local("invalid_phone_number_country_code", "send_sms_otp", ORG, BOB, mfa_phone_number=number)
    for number in INVALID_NUMBERS:
        app.local("invalid_phone_number", "send_sms_otp", ORG, BOB, mfa_phone_number=number)
    assert server.messages() == []
    assert app.at_stytch(BOB)["mfa_phone_number"] == ""
    resp = app.run("send_sms_otp", ORG, BOB, mfa_phone_number=CA_PHONE)  # CA is allowed
    assert resp.member.mfa_phone_number == CA_PHONE
    assert sent_to(server, BOB) == [CA_PHONE]


# --------------------------------------------------------------------------------------------------
# codes, ISTs, lockout, limits
# --------------------------------------------------------------------------------------------------


def test_a_wrong_code_is_otp_code_not_found_and_the_right_one_still_works(server: EmulatorProcess, app: App) -> None:
    ist = app.login().intermediate_session_token
    code = server.code(ADA)
    err = app.remote("otp_code_not_found", "authenticate_sms_otp", ORG, ADA, wrong(code),
                     intermediate_session_token=ist)
    assert isinstance(err, CodeRejected)
    resp = app.run("authenticate_sms_otp", ORG, ADA, code, intermediate_session_token=ist)
    assert resp.session_token
    assert resp.member_session.member_id == ADA
    assert names(app.events)[1:] == ["otp.failed", "otp.verified", "session.created", "member.updated"]
    assert app.events[-1].data["member"].mfa_enrolled is True  # "Stytch" enrolled her: the view follows


@SYNC_ONLY
def test_a_code_is_accepted_at_119_seconds_and_expired_at_120(server: EmulatorProcess, app: App) -> None:
    ist = app.login().intermediate_session_token
    app.advance(119)
    assert app.run("authenticate_sms_otp", ORG, ADA, server.code(ADA), intermediate_session_token=ist).session_token

    ist = app.login().intermediate_session_token
    app.advance(120)
    app.remote("unable_to_auth_otp_code", "authenticate_sms_otp", ORG, ADA, server.code(ADA),
               intermediate_session_token=ist)


def test_a_resend_kills_the_previous_code(server: EmulatorProcess, app: App) -> None:
    ist = app.login().intermediate_session_token
    old = server.code(ADA)
    app.run("send_sms_otp", ORG, ADA, intermediate_session_token=ist)
    new = server.code(ADA)
    app.remote("otp_code_not_found", "authenticate_sms_otp", ORG, ADA, old, intermediate_session_token=ist)
    assert app.run("authenticate_sms_otp", ORG, ADA, new, intermediate_session_token=ist).session_token


def test_an_ist_is_consumed_by_a_successful_authenticate(server: EmulatorProcess, app: App) -> None:
    ist = app.login().intermediate_session_token
    code = server.code(ADA)
    resp = app.run("authenticate_sms_otp", ORG, ADA, code, intermediate_session_token=ist)
    assert resp.session_token
    assert resp.session_token != ist
    assert resp.request_id.startswith(REQUEST_ID_PREFIX)
    assert factor_kinds(resp.member_session) == [("password", "knowledge"), ("otp", "sms")]
    assert resp.member_session.authentication_factors[-1].phone_number_factor["phone_number"] == ADA_PHONE
    assert isinstance(app.remote("intermediate_session_not_found", "authenticate_sms_otp", ORG, ADA, code,
                                 intermediate_session_token=ist), TokenError)
    app.remote("intermediate_session_not_found", "send_sms_otp", ORG, ADA, intermediate_session_token=ist)
    assert sent_to(server, ADA) == [ADA_PHONE]
    # The session the IST became is the flow's to judge for inactivity.
    assert app.run("authenticate_session", session_token=resp.session_token).step_up_required is False


def test_the_flows_lock_refuses_before_stytch(server: EmulatorProcess, connect: Callable[..., App]) -> None:
    """A local threshold below Stytch's (5 < 10): the 5th wrong code locks the member in the flow; from then on
    nothing reaches the emulator, which has not locked anyone."""
    app = connect(server, lockout_threshold=5)
    ist = app.login().intermediate_session_token
    code = server.code(ADA)
    for _ in range(4):
        app.remote("otp_code_not_found", "authenticate_sms_otp", ORG, ADA, wrong(code), intermediate_session_token=ist)
    err = app.refused("user_lock_limit_reached", "authenticate_sms_otp", ORG, ADA, wrong(code),
                      intermediate_session_token=ist)
    assert isinstance(err, RateLimited)
    assert app.run("get_member", ORG, ADA).is_locked is True
    assert [e.reason for e in app.events if e.name == "member.locked"] == ["user_lock_limit_reached"]

    app.local("user_lock_limit_reached", "authenticate_sms_otp", ORG, ADA, code, intermediate_session_token=ist)
    app.local("user_lock_limit_reached", "send_sms_otp", ORG, ADA, intermediate_session_token=ist)
    assert app.at_stytch(ADA)["is_locked"] is False

    app.advance(3600)  # the lock ends, and the failure counter with it
    assert app.run("get_member", ORG, ADA).is_locked is False
    ist = app.login().intermediate_session_token
    code = server.code(ADA)
    app.remote("otp_code_not_found", "authenticate_sms_otp", ORG, ADA, wrong(code), intermediate_session_token=ist)
    assert app.run("authenticate_sms_otp", ORG, ADA, code, intermediate_session_token=ist).session_token


@SYNC_ONLY
def test_stytchs_own_lock_reaches_the_caller_and_locks_here_too(server: EmulatorProcess, app: App) -> None:
    """Ten wrong codes across a resend: "Stytch" locks the member and says so; the flow locks the member too,
    so the next send is refused here, before any request, and nothing more is sent."""
    ist = app.login().intermediate_session_token
    code = server.code(ADA)
    for _ in range(5):  # the 5th kills the code (max_attempts_per_code) and still answers otp_code_not_found
        app.remote("otp_code_not_found", "authenticate_sms_otp", ORG, ADA, wrong(code), intermediate_session_token=ist)
    app.remote("unable_to_auth_otp_code", "authenticate_sms_otp", ORG, ADA, code, intermediate_session_token=ist)
    app.run("send_sms_otp", ORG, ADA, intermediate_session_token=ist)
    code = server.code(ADA)
    for _ in range(4):
        app.remote("otp_code_not_found", "authenticate_sms_otp", ORG, ADA, wrong(code), intermediate_session_token=ist)
    err = app.remote("user_lock_limit_reached", "authenticate_sms_otp", ORG, ADA, wrong(code),
                     intermediate_session_token=ist)
    assert isinstance(err, RateLimited)
    sent = len(server.messages())
    app.local("user_lock_limit_reached", "send_sms_otp", ORG, ADA, intermediate_session_token=ist)
    assert len(server.messages()) == sent
    assert app.at_stytch(ADA)["is_locked"] is True


def test_the_sixth_send_within_600_seconds_is_refused_locally(server: EmulatorProcess, app: App) -> None:
    ist = app.login(BOB).intermediate_session_token
    app.run("send_sms_otp", ORG, BOB, mfa_phone_number=NEW_PHONE, intermediate_session_token=ist)
    for _ in range(4):
        app.run("send_sms_otp", ORG, BOB, intermediate_session_token=ist)
    fifth = server.code(BOB)
    app.local("too_many_requests", "send_sms_otp", ORG, BOB, intermediate_session_token=ist)
    assert sent_to(server, BOB) == [NEW_PHONE] * 5
    # A refused send changes nothing: the fifth code is still the live one.
    session = app.run("authenticate_sms_otp", ORG, BOB, fifth, intermediate_session_token=ist).session_token

    app.advance(601)
    app.run("send_sms_otp", ORG, BOB, session_token=session)
    assert sent_to(server, BOB) == [NEW_PHONE] * 6


# --------------------------------------------------------------------------------------------------
# the inactivity step-up, the directory, deleting a phone, credentials
# --------------------------------------------------------------------------------------------------


def test_inactivity_step_up_goes_through_stytch_with_the_session_token(server: EmulatorProcess, app: App) -> None:
    first = app.session()
    token = first.session_token
    app.advance(1801)
    mark = len(app.events)
    check = app.run("authenticate_session", session_token=token)
    assert (check.step_up_required, check.secondary_auth_initiated) == (True, "sms_otp")
    assert sent_to(server, ADA) == [ADA_PHONE, ADA_PHONE]  # the step-up code, sent by "Stytch"
    assert names(app.events[mark:]) == ["session.step_up_required", "otp.sent"]
    assert app.run("authenticate_session", session_token=token).secondary_auth_initiated == "sms_otp"
    assert len(server.messages()) == 2  # nothing more while that code is live

    stepped = app.run("authenticate_sms_otp", ORG, ADA, server.code(ADA), session_token=token)
    assert stepped.session_token == token
    assert stepped.member_session.member_session_id == first.member_session.member_session_id
    assert names(app.events)[-2:] == ["otp.verified", "session.step_up_completed"]
    assert app.run("authenticate_session", session_token=token).step_up_required is False


@SYNC_ONLY
def test_members_and_organizations_are_read_through_the_stytch_directory(server: EmulatorProcess, app: App) -> None:
    assert isinstance(app.flow.directory, StytchDirectory | AsyncStytchDirectory)
    for ref in (ORG, ORG_SLUG, ORG_EXTERNAL_ID):
        org = app.run("get_organization", ref)
        assert (org.organization_id, org.organization_slug, org.mfa_policy) == (ORG, ORG_SLUG, "REQUIRED_FOR_ALL")
    assert app.run("get_organization", "globex").organization_id == ORG2
    for ref in (ADA, ADA_EXTERNAL_ID):
        member = app.run("get_member", ORG_SLUG, ref)
        assert (member.member_id, member.mfa_phone_number, member.mfa_phone_number_verified) == (ADA, ADA_PHONE, True)
    app.refused("organization_not_found", "get_organization", "organization-test-unknown")
    app.refused("member_not_found", "get_member", ORG, "member-test-unknown")
    app.refused("member_not_found", "get_member", ORG2, ADA)  # a member of another organization
    assert server.messages() == []


def test_deleting_the_phone_unlinks_it_at_stytch_and_locally(server: EmulatorProcess, app: App) -> None:
    member = app.run("delete_mfa_phone_number", ORG, ADA)
    assert (member.mfa_phone_number, member.mfa_phone_number_verified) == ("", False)
    assert app.at_stytch(ADA)["mfa_phone_number"] == ""
    assert app.run("get_member", ORG, ADA).mfa_phone_number == ""
    app.local("member_phone_number_not_found", "send_sms_otp", ORG, ADA)
    assert server.messages() == []
    # The only way to replace a linked number: after the delete a new one links.
    linked = app.run("send_sms_otp", ORG, ADA, mfa_phone_number=NEW_PHONE)
    assert (linked.member.mfa_phone_number, linked.member.mfa_phone_number_verified) == (NEW_PHONE, False)
    assert sent_to(server, ADA) == [NEW_PHONE]


def test_bad_credentials_are_a_provider_error_keeping_stytchs_error_type(
    server: EmulatorProcess, connect: Callable[..., App]
) -> None:
    """An error_type outside mfa_flow's table (unauthorized_credentials) is a ProviderError that keeps Stytch's
    string, status and request id; the secret is in none of it."""
    stranger = connect(server, secret="secret-test-wrong")
    for method, args, kwargs in (
        ("send_sms_otp", (ORG, BOB), {"mfa_phone_number": NEW_PHONE}),
        ("authenticate_sms_otp", (ORG, ADA, "123456"), {"session_token": "session-token-unknown"}),
        ("get_organization", (ORG,), {}),
        ("get_member", (ORG, ADA), {}),
        ("delete_mfa_phone_number", (ORG, ADA), {}),
    ):
        err = stranger.remote("unauthorized_credentials", method, *args, **kwargs)
        assert type(err) is ProviderError
        assert err.status_code == 401
        assert "secret-test-wrong" not in f"{err!r} {err}"
    assert server.messages() == []
    honest = connect(server)
    assert honest.run("get_member", ORG, ADA).mfa_phone_number == ADA_PHONE  # the delete was not done
