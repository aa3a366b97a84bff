"""Stytch mode (spec §11): MfaFlow and AsyncMfaFlow over StytchProvider / AsyncStytchProvider and a scripted
Stytch (tests/fake_stytch.py), a FakeClock and an events list.

Each rule is a test named after it. Every test asserts the outcome, the events, the requests Stytch received
(count and exact bodies) and the local state: the merged member view, the lock, the session record, and
where no public call shows it (the failure counter, the code marker, an IST's record) the store itself.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import threading
import traceback
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, cast

import attrs
import httpx
import pytest

from mfa_flow import AsyncMfaFlow, ConfigurationError, Event, Member, MfaError, MfaFlow, Organization, Policy
from mfa_flow.crypto import token_digest
from mfa_flow.errors import (
    CodeRejected,
    DeliveryFailed,
    PolicyRefusal,
    ProviderError,
    RateLimited,
    TokenError,
    UnexpectedResponse,
)
from mfa_flow.events import SendContext
from mfa_flow.state import CodePhase, CodeState, LoginState, SessionState, keys
from mfa_flow.stores import MemoryStore, SqliteStore
from mfa_flow.testing import FakeClock, FakeTransport
from mfa_flow.transports.stytch import AsyncStytchProvider, StytchProvider
from tests.emulator_server import require
from tests.fake_stytch import PROJECT_ID, SECRET, FakeStytch, Recorded, answer, error, session_answer
from tests.helpers_rules import at, names

ORG = "organization-test-1"
ORG_SLUG = "acme"
ADA = "member-test-ada"  # a verified linked phone: an active MFA factor
ADA_EXTERNAL_ID = "ada-external-1"
BOB = "member-test-bob"  # no phone yet
CAROL = "member-test-carol"  # a verified linked phone, another member
IVY = "member-test-ivy"  # invited, not active
GLADYS = "member-test-gladys"  # breakglass
ADA_PHONE = "+14155550123"
ADA_PHONE_FORMATTED = "+1 (415) 555-0123"
CAROL_PHONE = "+14155550124"
GLADYS_PHONE = "+14155550127"
NEW_PHONE = "+14155550130"
NEW_PHONE_FORMATTED = "+1 (415) 555-0130"
MASKED_ADA = "XXXXXXX0123"
CODE = "123456"

ACME = Organization(ORG, organization_slug=ORG_SLUG, organization_name="Acme", mfa_policy="REQUIRED_FOR_ALL")
RESTRICTED = Organization(ORG, organization_slug=ORG_SLUG, organization_name="Acme", mfa_policy="REQUIRED_FOR_ALL",
                          mfa_methods="RESTRICTED", allowed_mfa_methods=("totp",))
MEMBERS = (
    Member(ADA, ORG, email_address="ada@example.com", name="Ada", external_id=ADA_EXTERNAL_ID,
           mfa_phone_number=ADA_PHONE, mfa_phone_number_verified=True),
    Member(BOB, ORG, email_address="bob@example.com", name="Bob"),
    Member(CAROL, ORG, email_address="carol@example.com", mfa_phone_number=CAROL_PHONE,
           mfa_phone_number_verified=True),
    Member(IVY, ORG, email_address="ivy@example.com", status="invited"),
    Member(GLADYS, ORG, email_address="gladys@example.com", is_breakglass=True, mfa_phone_number=GLADYS_PHONE,
           mfa_phone_number_verified=True),
)

Answer = Callable[[httpx.Request, dict[str, Any]], httpx.Response]
WRONG = cast("Answer", error("otp_code_not_found", 404))
IST = "ist-from-stytch-\u00e9 with spaces & symbols"  # forwarded verbatim, whatever it looks like
SESSION = "session-token-from-stytch-0123456789abcdef"
JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJtZW1iZXIifQ.c2lnbmF0dXJl"


class Twin:
    """A flow in Stytch mode — MfaFlow over StytchProvider, or AsyncMfaFlow over AsyncStytchProvider — on a
    FakeClock and an events list; ``run`` calls either the same way (tests/test_stytch_e2e.py uses it too)."""

    def __init__(self, twin: str, project_id: str, secret: str, *, clock: FakeClock,
                 client: httpx.Client | httpx.AsyncClient | None = None, base_url: str | None = None,
                 store: Any = None, before_send: tuple[Callable[[SendContext], None], ...] = (),
                 **policy: Any) -> None:
        assert twin in ("sync", "async")
        self.clock = clock
        self.events: list[Event] = []
        self.runner = asyncio.Runner() if twin == "async" else None
        self.provider: StytchProvider | AsyncStytchProvider
        flow_cls: type[MfaFlow | AsyncMfaFlow]
        if self.runner is None:
            self.provider = StytchProvider(project_id, secret, base_url=base_url, client=client)  # type: ignore[arg-type]
            flow_cls = MfaFlow
        else:
            self.provider = AsyncStytchProvider(project_id, secret, base_url=base_url,
                                                client=client)  # type: ignore[arg-type]
            flow_cls = AsyncMfaFlow
        self.flow = flow_cls(policy=Policy(**policy), transport=self.provider, clock=clock, store=store,
                             events=[self.events.append], before_send=before_send)

    def close(self) -> None:
        """Close the provider's own client (a client passed in is the caller's) and the event loop."""
        if isinstance(self.provider, StytchProvider):
            self.provider.close()
        elif self.runner is not None:
            self.runner.run(self.provider.aclose())
        if self.runner is not None:
            self.runner.close()

    def run(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """``flow.<method>(...)``, awaited on the async twin."""
        result = getattr(self.flow, method)(*args, **kwargs)
        return self.runner.run(result) if self.runner is not None else result

    def refused(self, error_type: str, method: str, *args: Any, **kwargs: Any) -> MfaError:
        with pytest.raises(MfaError) as caught:
            self.run(method, *args, **kwargs)
        assert caught.value.error_type == error_type, repr(caught.value)
        return caught.value


class Env(Twin):
    """A :class:`Twin` over its own scripted Stytch (FakeStytch)."""

    def __init__(self, twin: str, *, org: Organization = ACME, members: tuple[Member, ...] = MEMBERS,
                 **options: Any) -> None:
        self.stytch = FakeStytch(org, *members)
        self.client = self.stytch.client() if twin == "sync" else self.stytch.async_client()
        super().__init__(twin, PROJECT_ID, SECRET, clock=FakeClock(), client=self.client, **options)

    def close(self) -> None:
        if isinstance(self.client, httpx.Client):
            self.client.close()
        elif self.runner is not None:
            self.runner.run(self.client.aclose())
        super().close()

    def advance(self, seconds: float) -> None:
        """Time passes for the flow and for the scripted Stytch alike."""
        self.clock.advance(seconds)
        self.stytch.now = self.clock.now()

    def calls(self, since: int = 0) -> list[Recorded]:
        """The requests that ask Stytch to do something (send, authenticate, delete): every one but the
        directory's reads."""
        return [r for r in self.stytch.requests[since:] if r.method != "GET"]

    def stored(self, key: str) -> Any:
        with self.flow.store.transaction() as tx:  # type: ignore[union-attr]
            entry = tx.read([key]).get(key)
        return None if entry is None else entry.value

    def failures(self, member_id: str = ADA) -> int:
        guard = self.stored(keys.guard(ORG, member_id))
        return 0 if guard is None else int(guard.failures)

    def code_marker(self, member_id: str = ADA) -> CodeState | None:
        code = self.stored(keys.code(ORG, member_id))
        return code if isinstance(code, CodeState) and code.state is CodePhase.SENT else None

    def primary_answer(self, member_id: str = ADA, *, ist: str = IST, session_token: str = "",
                       initiated: str | None = "sms_otp") -> dict[str, Any]:
        """Stytch's raw JSON answer to a primary authentication (e.g. passwords/authenticate)."""
        member = self.stytch.members[member_id]
        body = self.stytch.envelope(member, organization_id=ORG, intermediate_session_token=ist,
                                    session_token="", session_jwt="", member_authenticated=False,
                                    member_session=None, mfa_required=None)
        if session_token:
            body.update(session_answer(member, self.stytch.org, now=self.stytch.now), member_authenticated=True,
                        session_token=session_token)
            body["member_session"]["authentication_factors"][0].update(type="password", delivery_method="knowledge")
        else:
            body["mfa_required"] = {"member_options": {"mfa_phone_number": MASKED_ADA, "totp_registration_id": ""},
                                    "secondary_auth_initiated": initiated}
        return body

    def session_step(self, token: str, *, as_member: str | None = None) -> Answer:
        """A successful authenticate answering with ``token`` (a step-up keeps the session's token), for a
        session of 8 hours: long enough to go idle in. ``as_member`` answers for another member than asked."""
        def step(_request: httpx.Request, body: dict[str, Any]) -> httpx.Response:
            member = self.stytch.members[as_member or body["member_id"]]
            session = session_answer(member, self.stytch.org, now=self.stytch.now, phone=member.mfa_phone_number)
            session["member_session"]["expires_at"] = at(self.stytch.now + 8 * 3600).isoformat()
            return answer(200, self.stytch.envelope(member, **{**session, "session_token": token}))
        return step


@pytest.fixture(params=["sync", "async"])
def twin(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_env(twin: str) -> Iterator[Callable[..., Env]]:
    made: list[Env] = []

    def make(**kwargs: Any) -> Env:
        env = Env(twin, **kwargs)
        made.append(env)
        return env

    yield make
    for env in made:
        env.close()


@pytest.fixture
def env(make_env: Callable[..., Env]) -> Env:
    return make_env()


def assert_from_stytch(err: MfaError) -> None:
    """The error is Stytch's answer: it carries Stytch's request id."""
    assert err.request_id is not None
    assert err.request_id.startswith("request-id-test-")


def reasons(events: list[Event], name: str) -> list[str | None]:
    return [e.reason for e in events if e.name == name]


def send_body(member_id: str = ADA, **fields: Any) -> dict[str, Any]:
    return {"organization_id": ORG, "member_id": member_id, **fields}


# ==================================================================================================
# local rules: refused before any request to Stytch
# ==================================================================================================


def test_phone_mismatch_is_refused_locally(env: Env) -> None:
    err = env.refused("duplicate_member_phone_number_for_member", "send_sms_otp", ORG, ADA,
                      mfa_phone_number=CAROL_PHONE, intermediate_session_token=IST)
    assert isinstance(err, PolicyRefusal)
    assert err.request_id is None  # mfa_flow's own refusal, not Stytch's
    assert env.calls() == []
    assert reasons(env.events, "otp.refused") == ["duplicate_member_phone_number_for_member"]
    member = env.run("get_member", ORG, ADA)
    assert (member.mfa_phone_number, member.mfa_phone_number_verified) == (ADA_PHONE, True)
    assert env.code_marker() is None


def test_missing_phone_is_refused_locally(env: Env) -> None:
    env.refused("member_phone_number_not_found", "send_sms_otp", ORG, BOB)
    assert env.calls() == []
    assert reasons(env.events, "otp.refused") == ["member_phone_number_not_found"]
    assert env.run("get_member", ORG, BOB).mfa_phone_number == ""


DESTINATION_REFUSALS = [
    pytest.param("+441212345678", "invalid_phone_number_country_code", id="country-outside-the-allowlist"),
    pytest.param("+18765550123", "invalid_phone_number_country_code", id="country-by-parsed-region-JM"),
    pytest.param("+12462501234", "invalid_phone_number_country_code", id="unsupported-region-even-allowlisted"),
    pytest.param("+19005550123", "invalid_phone_number", id="premium-rate"),
    pytest.param("+18005550123", "invalid_phone_number", id="toll-free"),
    pytest.param("+14155550130 ext. 12", "invalid_phone_number", id="extension"),
    pytest.param("+10000000000", "invalid_phone_number", id="invalid"),
    pytest.param("4155550130", "invalid_phone_number", id="no-leading-plus"),
]


@pytest.mark.parametrize(("number", "error_type"), DESTINATION_REFUSALS)
def test_destination_refusals_are_local(make_env: Callable[..., Env], number: str, error_type: str) -> None:
    env = make_env(allowed_regions={"US", "CA", "BB"})  # BB is on the unsupported list, which wins
    env.refused(error_type, "send_sms_otp", ORG, BOB, mfa_phone_number=number)
    assert env.calls() == []
    assert reasons(env.events, "otp.refused") == [error_type]
    assert "phone.linked" not in names(env.events)
    assert env.run("get_member", ORG, BOB).mfa_phone_number == ""
    assert env.code_marker(BOB) is None


def test_a_linked_number_refused_as_a_destination_is_not_sent_to(make_env: Callable[..., Env]) -> None:
    """The destination rules apply to the member's linked number too, not only to a number given."""
    premium = Member("member-test-premium", ORG, mfa_phone_number="+19005550123", mfa_phone_number_verified=True)
    env = make_env(members=(*MEMBERS, premium))
    env.refused("invalid_phone_number", "send_sms_otp", ORG, premium.member_id, intermediate_session_token=IST)
    assert env.calls() == []


def test_restricted_methods_are_refused_locally(make_env: Callable[..., Env]) -> None:
    env = make_env(org=RESTRICTED)
    env.refused("operation_restricted_by_organization_mfa_methods", "send_sms_otp", ORG, ADA,
                intermediate_session_token=IST)
    env.refused("operation_restricted_by_organization_mfa_methods", "authenticate_sms_otp", ORG, ADA, CODE,
                intermediate_session_token=IST)
    assert env.calls() == []
    assert env.failures() == 0  # refused before the attempt is counted
    # A breakglass member is exempt: the send goes to Stytch.
    env.run("send_sms_otp", ORG, GLADYS, intermediate_session_token=IST)
    assert [r.body for r in env.calls()] == [send_body(GLADYS, intermediate_session_token=IST)]


def test_inactive_member_is_refused_locally(env: Env) -> None:
    env.refused("action_available_only_for_active_members", "send_sms_otp", ORG, IVY, mfa_phone_number=NEW_PHONE)
    env.refused("action_available_only_for_active_members", "authenticate_sms_otp", ORG, IVY, CODE,
                session_token=SESSION)
    assert env.calls() == []
    assert env.failures(IVY) == 0
    assert env.run("get_member", ORG, IVY).mfa_phone_number == ""


def test_unknown_organization_or_member_as_the_directory_answers(env: Env) -> None:
    env.refused("member_not_found", "send_sms_otp", ORG, "member-test-unknown", mfa_phone_number=NEW_PHONE)
    assert [(r.method, r.path, r.query.get("member_id")) for r in env.stytch.requests] == [
        ("GET", f"/v1/b2b/organizations/{ORG}", None),
        ("GET", f"/v1/b2b/organizations/{ORG}/member", "member-test-unknown"),
    ]
    env.stytch.script("get_organization", error("organization_not_found", 404))
    env.refused("organization_not_found", "authenticate_sms_otp", "organization-test-unknown", ADA, CODE,
                session_token=SESSION)
    assert [(r.method, r.path) for r in env.stytch.requests[2:]] == [
        ("GET", "/v1/b2b/organizations/organization-test-unknown")]
    assert reasons(env.events, "otp.refused") == ["member_not_found"]
    assert reasons(env.events, "otp.failed") == ["organization_not_found"]


ARGUMENT_SHAPE = [
    pytest.param("send_sms_otp", (ORG, ADA), {"intermediate_session_token": IST, "session_token": SESSION},
                 "too_many_session_arguments", id="send-two-tokens"),
    pytest.param("authenticate_sms_otp", (ORG, ADA, CODE), {"session_token": SESSION, "session_jwt": JWT},
                 "too_many_session_arguments", id="authenticate-two-tokens"),
    pytest.param("authenticate_sms_otp", (ORG, ADA, CODE), {}, "no_session_arguments", id="authenticate-no-token"),
    pytest.param("send_sms_otp", (ORG, ADA), {"locale": "xx-YY", "intermediate_session_token": IST},
                 "invalid_locale", id="bad-locale"),
    pytest.param("authenticate_sms_otp", (ORG, ADA, CODE), {"session_token": SESSION, "session_duration_minutes": 4},
                 "invalid_session_duration_minutes", id="session-minutes-below-5"),
    pytest.param("authenticate_sms_otp", (ORG, ADA, CODE),
                 {"session_token": SESSION, "session_duration_minutes": 527041},
                 "invalid_session_duration_minutes", id="session-minutes-above-527040"),
    pytest.param("authenticate_sms_otp", (ORG, ADA, 123456), {"session_token": SESSION}, "bad_request",
                 id="code-not-a-string"),
    pytest.param("authenticate_sms_otp", (ORG, ADA, CODE), {"session_token": SESSION, "set_mfa_enrollment": "yes"},
                 "bad_request", id="bad-set-mfa-enrollment"),
]


@pytest.mark.parametrize(("method", "args", "kwargs", "error_type"), ARGUMENT_SHAPE)
def test_argument_shape_errors_are_local(env: Env, method: str, args: tuple[Any, ...], kwargs: dict[str, Any],
                                         error_type: str) -> None:
    env.refused(error_type, method, *args, **kwargs)
    assert env.stytch.requests == []  # refused before even the directory is read
    assert env.failures() == 0
    assert len(env.flow.store) == 0  # type: ignore[arg-type]


def test_before_send_hook_refusal_is_local(make_env: Callable[..., Env]) -> None:
    seen: list[SendContext] = []
    refusing = [True]

    def hook(context: SendContext) -> None:
        seen.append(context)
        if refusing[0]:
            raise RateLimited("too_many_requests", "the risk engine says no")

    env = make_env(before_send=(hook,))
    err = env.refused("too_many_requests", "send_sms_otp", ORG, BOB, mfa_phone_number=NEW_PHONE_FORMATTED,
                      locale="es", intermediate_session_token=IST)
    assert err.error_message == "the risk engine says no"
    assert env.calls() == []
    assert [(c.phone_number, c.region, c.locale, c.purpose, c.automatic) for c in seen] == [
        (NEW_PHONE, "US", "es", "link", False)]
    assert reasons(env.events, "otp.refused") == ["too_many_requests"]
    assert env.run("get_member", ORG, BOB).mfa_phone_number == ""
    # The refused send was not counted: five sends still pass the default limit.
    refusing[0] = False
    for _ in range(5):
        env.run("send_sms_otp", ORG, BOB, mfa_phone_number=NEW_PHONE)
    assert len(env.calls()) == 5


def test_send_limits_are_local(env: Env) -> None:
    for _ in range(5):
        env.run("send_sms_otp", ORG, ADA, intermediate_session_token=IST)
    env.refused("too_many_requests", "send_sms_otp", ORG, ADA, intermediate_session_token=IST)
    assert [r.body for r in env.calls()] == [send_body(intermediate_session_token=IST)] * 5
    assert names(e for e in env.events if e.name.startswith("otp.")) == ["otp.sent"] * 5 + ["otp.refused"]
    env.advance(600)  # the window slides past the first send
    env.run("send_sms_otp", ORG, ADA, intermediate_session_token=IST)
    assert len(env.calls()) == 6


def test_send_cooldown_is_local(make_env: Callable[..., Env]) -> None:
    env = make_env(resend_cooldown=30)
    env.run("send_sms_otp", ORG, ADA, intermediate_session_token=IST)
    env.advance(29)
    env.refused("too_many_requests", "send_sms_otp", ORG, ADA, intermediate_session_token=IST)
    assert len(env.calls()) == 1
    env.advance(1)
    env.run("send_sms_otp", ORG, ADA, intermediate_session_token=IST)
    assert len(env.calls()) == 2


# ==================================================================================================
# forwarded for Stytch to judge: exactly one request, its exact body
# ==================================================================================================

TOKENS = [
    pytest.param({"intermediate_session_token": IST}, id="ist"),
    pytest.param({"session_token": SESSION}, id="session"),
    pytest.param({"session_jwt": JWT}, id="jwt"),
    pytest.param({}, id="no-token-with-an-active-factor"),
]


@pytest.mark.parametrize("token", TOKENS)
def test_token_rules_are_forwarded_to_stytch(env: Env, token: dict[str, str]) -> None:
    """Token validity, ownership and the factor rules are Stytch's: a token mfa_flow never saw (or none at all
    for a member with an active factor) is not refused locally, it goes to Stytch verbatim."""
    result = env.run("send_sms_otp", ORG_SLUG, ADA_EXTERNAL_ID, mfa_phone_number=ADA_PHONE_FORMATTED, locale="pt-br",
                     **token)
    assert [(r.method, r.path, r.body) for r in env.calls()] == [
        ("POST", "/v1/b2b/otps/sms/send", send_body(mfa_phone_number=ADA_PHONE, locale="pt-br", **token))]
    assert result.member_id == ADA
    assert result.request_id.startswith("request-id-test-")
    assert [(e.name, e.phone, e.data) for e in env.events] == [
        ("otp.sent", MASKED_ADA, {"purpose": "step_up" if "session_token" in token else "login", "automatic": False,
                                  "locale": "pt-br", "region": "US"})]

    # Stytch's verdict on the token is what the caller gets, with Stytch's request id.
    refusal, status = ("session_not_found", 404) if token else ("no_associated_session_passed_in", 400)
    env.stytch.script("send", error(refusal, status))
    err = env.refused(refusal, "send_sms_otp", ORG, ADA, **token)
    assert err.status_code == status
    assert_from_stytch(err)
    assert [r.body for r in env.calls()][1:] == [send_body(**token)]


@pytest.mark.parametrize("token", TOKENS[:3])
def test_authenticate_forwards_the_token_verbatim_with_only_the_keys_given(env: Env, token: dict[str, str]) -> None:
    env.run("authenticate_sms_otp", ORG_SLUG, ADA_EXTERNAL_ID, CODE, **token)
    env.run("authenticate_sms_otp", ORG, ADA, "000000", session_duration_minutes=90, set_mfa_enrollment="unenroll",
            set_default_mfa=False, **token)
    assert [(r.path, r.body) for r in env.calls()] == [
        ("/v1/b2b/otps/sms/authenticate", send_body(code=CODE, **token)),
        ("/v1/b2b/otps/sms/authenticate", send_body(code="000000", session_duration_minutes=90,
                                                    set_mfa_enrollment="unenroll", set_default_mfa=False, **token)),
    ]


def test_duplicate_member_phone_number_is_forwarded(env: Env) -> None:
    """Whether a number is linked to another member is Stytch's to say (a member search per send would cost a
    request): the send goes out, Stytch refuses, the link admission wrote is rolled back."""
    env.stytch.script("send", error("duplicate_member_phone_number", 400))
    err = env.refused("duplicate_member_phone_number", "send_sms_otp", ORG, BOB, mfa_phone_number=CAROL_PHONE)
    assert isinstance(err, PolicyRefusal)
    assert_from_stytch(err)
    assert err.status_code == 400
    assert [r.body for r in env.calls()] == [send_body(BOB, mfa_phone_number=CAROL_PHONE)]
    member = env.run("get_member", ORG, BOB)
    assert member.mfa_phone_number == ""
    assert env.code_marker(BOB) is None
    assert names(env.events) == ["phone.linked", "member.updated", "member.updated", "otp.refused"]
    assert env.events[-1].reason == "duplicate_member_phone_number"
    assert env.events[2].data["member"].mfa_phone_number == ""  # the link's undo


# ==================================================================================================
# send admission: committed before the request; what each outcome keeps
# ==================================================================================================


def test_a_send_answers_with_stytchs_member_and_request_id(env: Env) -> None:
    assert env.run("get_member", ORG, ADA).name == "Ada"  # now in the directory's cache
    env.stytch.members[ADA] = attrs.evolve(env.stytch.members[ADA], name="Ada as Stytch knows her")
    result = env.run("send_sms_otp", ORG, ADA, intermediate_session_token=IST)
    assert result.member.name == "Ada as Stytch knows her"
    assert result.member.is_locked is False
    assert result.organization.organization_name == "Acme"
    assert result.request_id.startswith("request-id-test-")
    marker = env.code_marker()
    assert marker is not None
    assert (marker.phone, marker.purpose, marker.bound_to, marker.digest) == (
        ADA_PHONE, "login", token_digest(IST), b"")  # Stytch keeps the code; the marker only says one went out
    # The answer refreshed the directory: the member view is Stytch's without another read.
    before = len(env.stytch.requests)
    assert env.run("get_member", ORG, ADA).name == "Ada as Stytch knows her"
    assert len(env.stytch.requests) == before


def test_admission_is_committed_before_the_request(env: Env) -> None:
    """What Stytch's send finds already committed: the count, the code marker and the link. Its refusal then
    takes back the marker and the link, never the count."""
    at_request: list[tuple[Any, ...]] = []

    def look_then_refuse(request: httpx.Request, body: dict[str, Any]) -> httpx.Response:
        window = env.stored(keys.window_member(ORG, BOB))
        overlay = env.stored(keys.member(ORG, BOB))
        at_request.append((window.times, env.code_marker(BOB) is not None, overlay.phone, overlay.phone_verified))
        return cast("Answer", error("duplicate_member_phone_number", 400))(request, body)

    env.stytch.script("send", look_then_refuse)
    env.refused("duplicate_member_phone_number", "send_sms_otp", ORG, BOB, mfa_phone_number=NEW_PHONE)
    assert at_request == [((env.clock.now(),), True, NEW_PHONE, False)]
    assert env.stored(keys.window_member(ORG, BOB)).times == (env.clock.now(),)
    assert env.code_marker(BOB) is None
    assert env.run("get_member", ORG, BOB).mfa_phone_number == ""


def test_the_attempt_is_counted_before_the_request(env: Env) -> None:
    at_request: list[int] = []

    def look_then_answer(request: httpx.Request, body: dict[str, Any]) -> httpx.Response:
        at_request.append(env.failures())
        return env.session_step(SESSION)(request, body)

    env.stytch.script("authenticate", WRONG, look_then_answer)
    env.refused("otp_code_not_found", "authenticate_sms_otp", ORG, ADA, CODE, session_token=SESSION)
    env.run("authenticate_sms_otp", ORG, ADA, CODE, session_token=SESSION)
    assert at_request == [2]  # the wrong code's, and this one's
    assert env.failures() == 0


def test_a_stytch_refusal_still_counts_toward_the_send_limit(env: Env) -> None:
    env.stytch.script("send", *[error("unable_to_send_sms_not_in_mfa_flows_table", 400)] * 5)
    for _ in range(5):
        err = env.refused("unable_to_send_sms_not_in_mfa_flows_table", "send_sms_otp", ORG, ADA,
                          intermediate_session_token=IST)
        assert type(err) is ProviderError  # an error_type outside mfa_flow's table keeps its string
        assert err.status_code == 400
        assert env.code_marker() is None
    env.refused("too_many_requests", "send_sms_otp", ORG, ADA, intermediate_session_token=IST)
    assert len(env.calls()) == 5  # the 6th never reached Stytch
    assert reasons(env.events, "otp.refused") == ["unable_to_send_sms_not_in_mfa_flows_table"] * 5 + [
        "too_many_requests"]
    assert "otp.sent" not in names(env.events)


def test_the_link_is_rolled_back_on_delivery_rejected(env: Env, pauses: list[float]) -> None:
    env.stytch.script("send", httpx.ConnectError, httpx.ConnectTimeout, httpx.ConnectError)
    err = env.refused("downstream_carrier_error", "send_sms_otp", ORG, BOB, mfa_phone_number=NEW_PHONE)
    assert isinstance(err, DeliveryFailed)
    assert err.status_code == 502
    assert [r.body for r in env.calls()] == [send_body(BOB, mfa_phone_number=NEW_PHONE)] * 3  # connect_retries=2
    assert len(pauses) == 2
    assert env.run("get_member", ORG, BOB).mfa_phone_number == ""
    assert env.code_marker(BOB) is None
    assert names(env.events) == ["phone.linked", "member.updated", "member.updated", "delivery.failed"]
    assert env.events[-1].reason == "rejected"
    # The admission still counts: four more sends reach the limit.
    for _ in range(4):
        env.run("send_sms_otp", ORG, BOB, mfa_phone_number=NEW_PHONE)
    env.refused("too_many_requests", "send_sms_otp", ORG, BOB, mfa_phone_number=NEW_PHONE)
    assert len(env.calls()) == 7


UNKNOWN_DELIVERY = [
    pytest.param(httpx.ReadTimeout, id="read-timeout"),
    pytest.param(httpx.RemoteProtocolError, id="dropped-connection"),
    pytest.param(error("internal_server_error", 500), id="http-500"),
    pytest.param(lambda _r, _b: httpx.Response(503, text="upstream unavailable"), id="http-503-not-json"),
]


@pytest.mark.parametrize("step", UNKNOWN_DELIVERY)
def test_the_link_is_kept_on_delivery_unknown(env: Env, pauses: list[float], step: Any) -> None:
    env.stytch.script("send", step)
    err = env.refused("downstream_carrier_error", "send_sms_otp", ORG, BOB, mfa_phone_number=NEW_PHONE)
    assert isinstance(err, DeliveryFailed)
    assert [r.body for r in env.calls()] == [send_body(BOB, mfa_phone_number=NEW_PHONE)]  # never retried
    assert pauses == []
    member = env.run("get_member", ORG, BOB)
    assert (member.mfa_phone_number, member.mfa_phone_number_verified) == (NEW_PHONE, False)
    marker = env.code_marker(BOB)
    assert marker is not None
    assert marker.phone == NEW_PHONE
    assert names(env.events) == ["phone.linked", "member.updated", "delivery.failed"]
    assert env.events[-1].reason == "unknown"


UNEXPECTED = [
    pytest.param(lambda _r, _b: httpx.Response(200, text="<html>maintenance</html>"), "not a JSON object",
                 id="not-json"),
    pytest.param(lambda _r, b: answer(200, {"status_code": 200, "request_id": "request-id-test-x",
                                            "member_id": b["member_id"]}), "member", id="no-member"),
    pytest.param(lambda _r, b: answer(200, {"status_code": 200, "member_id": b["member_id"]}), "request_id",
                 id="no-request-id"),
]


@pytest.mark.parametrize(("step", "named"), UNEXPECTED)
def test_an_unexpected_response_keeps_the_link_and_is_raised_as_is(env: Env, step: Any, named: str) -> None:
    env.stytch.script("send", step)
    err = env.refused("internal_server_error", "send_sms_otp", ORG, BOB, mfa_phone_number=NEW_PHONE)
    assert isinstance(err, UnexpectedResponse)
    assert err.status_code == 502
    assert named in err.error_message
    assert len(env.calls()) == 1
    assert env.run("get_member", ORG, BOB).mfa_phone_number == NEW_PHONE
    assert env.code_marker(BOB) is not None
    assert names(env.events) == ["phone.linked", "member.updated", "delivery.failed"]
    assert env.events[-1].reason == "unknown"


def test_a_send_answer_naming_another_member_is_unexpected(env: Env) -> None:
    env.stytch.script("send", lambda _r, _b: answer(200, env.stytch.envelope(env.stytch.members[CAROL])))
    err = env.refused("internal_server_error", "send_sms_otp", ORG, ADA, intermediate_session_token=IST)
    assert isinstance(err, UnexpectedResponse)
    assert "another member or organization" in err.error_message
    assert err.request_id is not None
    assert env.run("get_member", ORG, CAROL).mfa_phone_number == CAROL_PHONE
    assert env.code_marker() is not None  # the SMS may have gone to Ada


# ==================================================================================================
# authenticate: counted before the request, settled after
# ==================================================================================================


def test_an_attempt_never_answered_stays_counted(make_env: Callable[..., Env]) -> None:
    env = make_env(lockout_threshold=3)
    env.stytch.script("authenticate", httpx.ReadTimeout, httpx.ReadTimeout, WRONG)
    for expected in (1, 2):
        err = env.refused("internal_server_error", "authenticate_sms_otp", ORG, ADA, CODE, session_token=SESSION)
        assert type(err) is ProviderError
        assert "attempt stays counted" in err.error_message
        assert env.failures() == expected
    err = env.refused("user_lock_limit_reached", "authenticate_sms_otp", ORG, ADA, CODE, session_token=SESSION)
    assert isinstance(err, RateLimited)
    assert len(env.calls()) == 3  # a read timeout is never retried
    assert env.run("get_member", ORG, ADA).is_locked is True
    assert reasons(env.events, "member.locked") == ["user_lock_limit_reached"]


def test_a_wrong_code_keeps_the_attempt_and_the_threshold_th_locks(env: Env) -> None:
    env.stytch.script("authenticate", *[WRONG] * 10)
    for n in range(1, 10):
        err = env.refused("otp_code_not_found", "authenticate_sms_otp", ORG, ADA, CODE, intermediate_session_token=IST)
        assert isinstance(err, CodeRejected)
        assert_from_stytch(err)
        assert env.failures() == n
        assert env.run("get_member", ORG, ADA).is_locked is False
    err = env.refused("user_lock_limit_reached", "authenticate_sms_otp", ORG, ADA, CODE, intermediate_session_token=IST)
    assert err.status_code == 429
    member = env.run("get_member", ORG, ADA)
    assert member.is_locked is True
    assert member.lock_expires_at == at(env.clock.now() + 3600)
    assert reasons(env.events, "otp.failed") == ["otp_code_not_found"] * 10
    assert [e.data["failures"] for e in env.events if e.name == "otp.failed"] == list(range(1, 11))
    locked = [e for e in env.events if e.name == "member.locked"]
    assert [(e.reason, e.data["locked_until"]) for e in locked] == [("user_lock_limit_reached", env.clock.now() + 3600)]
    assert len(env.calls()) == 10

    # Locked: every send and authenticate is refused here, and Stytch hears nothing.
    env.refused("user_lock_limit_reached", "send_sms_otp", ORG, ADA, intermediate_session_token=IST)
    env.refused("user_lock_limit_reached", "authenticate_sms_otp", ORG, ADA, CODE, intermediate_session_token=IST)
    env.refused("user_lock_limit_reached", "send_sms_otp", ORG, ADA, mfa_phone_number=ADA_PHONE)
    assert len(env.calls()) == 10
    assert env.failures() == 10  # refusals of a locked member count nothing

    env.advance(3600)  # the lock ends, and the counter with it
    assert env.run("get_member", ORG, ADA).is_locked is False
    env.stytch.script("authenticate", WRONG)
    env.refused("otp_code_not_found", "authenticate_sms_otp", ORG, ADA, CODE, intermediate_session_token=IST)
    assert env.failures() == 1


OTHER_REFUSALS = [
    pytest.param(error("intermediate_session_not_found", 404), "intermediate_session_not_found", TokenError,
                 id="intermediate_session_not_found"),
    pytest.param(error("too_many_requests", 429), "too_many_requests", RateLimited, id="too_many_requests"),
    pytest.param(error("unable_to_auth_otp_code", 401), "unable_to_auth_otp_code", CodeRejected,
                 id="unable_to_auth_otp_code"),
    pytest.param(error("session_not_found", 404), "session_not_found", TokenError, id="session_not_found"),
    pytest.param(error("a_new_stytch_error", 400), "a_new_stytch_error", ProviderError, id="unknown-error-type"),
]


@pytest.mark.parametrize(("step", "error_type", "cls"), OTHER_REFUSALS)
def test_another_refusal_takes_the_attempt_back(make_env: Callable[..., Env], step: Any, error_type: str,
                                                 cls: type[MfaError]) -> None:
    env = make_env(lockout_threshold=2)
    env.stytch.script("authenticate", WRONG, step, step, step)
    env.refused("otp_code_not_found", "authenticate_sms_otp", ORG, ADA, CODE, intermediate_session_token=IST)
    for _ in range(3):
        err = env.refused(error_type, "authenticate_sms_otp", ORG, ADA, CODE, intermediate_session_token=IST)
        assert isinstance(err, cls)
        assert_from_stytch(err)
        assert env.failures() == 1
    assert env.run("get_member", ORG, ADA).is_locked is False
    assert reasons(env.events, "otp.failed") == ["otp_code_not_found"] + [error_type] * 3
    assert len(env.calls()) == 4


def test_an_authenticate_that_never_reached_stytch_takes_the_attempt_back(
    make_env: Callable[..., Env], pauses: list[float]
) -> None:
    env = make_env(lockout_threshold=2)
    env.stytch.script("authenticate", WRONG, *[httpx.ConnectError] * 3)
    env.refused("otp_code_not_found", "authenticate_sms_otp", ORG, ADA, CODE, session_token=SESSION)
    with pytest.raises(ProviderError) as caught:  # no answer from Stytch: not a refusal of Stytch's
        env.run("authenticate_sms_otp", ORG, ADA, CODE, session_token=SESSION)
    assert "could not be reached; the attempt was not counted" in caught.value.error_message
    assert len(env.calls()) == 4  # connect failures are retried: the request surely never arrived
    assert len(pauses) == 2
    assert env.failures() == 1
    assert env.run("get_member", ORG, ADA).is_locked is False


def test_stytchs_own_lock_locks_the_member_here_too(env: Env) -> None:
    """Stytch locks at its own threshold (10, as ours by default) and answers the failure that reached it with
    user_lock_limit_reached, not otp_code_not_found: the flow locks the member too, once, and refuses the
    next send and authenticate itself, before any request."""
    env.stytch.script("authenticate", *[WRONG] * 9, error("user_lock_limit_reached", 429))
    for _ in range(9):
        env.refused("otp_code_not_found", "authenticate_sms_otp", ORG, ADA, CODE, intermediate_session_token=IST)
    err = env.refused("user_lock_limit_reached", "authenticate_sms_otp", ORG, ADA, CODE,
                      intermediate_session_token=IST)
    assert_from_stytch(err)  # Stytch's own answer, its request id kept
    assert env.run("get_member", ORG, ADA).is_locked is True
    assert names(env.events).count("member.locked") == 1
    assert reasons(env.events, "otp.failed")[-1] == "user_lock_limit_reached"
    calls = len(env.calls())
    env.refused("user_lock_limit_reached", "send_sms_otp", ORG, ADA, intermediate_session_token=IST)
    env.refused("user_lock_limit_reached", "authenticate_sms_otp", ORG, ADA, CODE, intermediate_session_token=IST)
    assert len(env.calls()) == calls


def test_stytchs_lock_answered_before_our_threshold_locks_here_too(make_env: Callable[..., Env]) -> None:
    """Stytch may hold the member locked from attempts the flow never saw: its lock is followed at once."""
    env = make_env(lockout_threshold=10)
    env.stytch.script("authenticate", error("user_lock_limit_reached", 429))
    env.refused("user_lock_limit_reached", "authenticate_sms_otp", ORG, ADA, CODE, intermediate_session_token=IST)
    assert env.failures() == 1
    assert env.run("get_member", ORG, ADA).is_locked is True


def test_a_directory_read_that_cannot_reach_stytch_says_so(env: Env, pauses: list[float]) -> None:
    env.stytch.script("get_organization", *[httpx.ConnectError] * 3)
    err = env.refused("internal_server_error", "send_sms_otp", ORG, ADA, intermediate_session_token=IST)
    assert type(err) is ProviderError
    assert err.error_message.startswith("Stytch could not be read")
    assert "store" not in err.error_message


def test_a_malformed_primary_auth_answer_emits_no_refusal_of_a_send(env: Env) -> None:
    raw = env.primary_answer()
    raw.pop("member")
    with pytest.raises(UnexpectedResponse):
        env.run("record_primary_auth", raw)
    assert "otp.refused" not in names(env.events)


def _without(field: str) -> Callable[[Env], Answer]:
    def make(env: Env) -> Answer:
        def step(request: httpx.Request, body: dict[str, Any]) -> httpx.Response:
            whole = env.session_step(SESSION)(request, body).json()
            whole.pop(field)
            return answer(200, whole)
        return step
    return make


UNREADABLE_AUTHENTICATE = [
    pytest.param(_without("session_token"), "session_token", id="no-session_token"),
    pytest.param(_without("member_session"), "member_session", id="no-member_session"),
    pytest.param(lambda env: env.session_step(SESSION, as_member=CAROL), "another member", id="another-member"),
]


@pytest.mark.parametrize(("make_step", "named"), UNREADABLE_AUTHENTICATE)
def test_an_unreadable_authenticate_answer_keeps_the_attempt_counted(
    env: Env, make_step: Callable[[Env], Answer], named: str
) -> None:
    """A 200 that cannot be trusted may hide a judged wrong code: the attempt stays counted, no session is
    recorded and the IST stays."""
    env.run("record_primary_auth", env.primary_answer())
    env.stytch.script("authenticate", make_step(env))
    err = env.refused("internal_server_error", "authenticate_sms_otp", ORG, ADA, CODE, intermediate_session_token=IST)
    assert isinstance(err, UnexpectedResponse)
    assert named in err.error_message
    assert env.failures() == 1
    assert env.stored(keys.session(token_digest(SESSION))) is None
    assert isinstance(env.stored(keys.login(token_digest(IST))), LoginState)
    env.refused("session_not_found", "authenticate_session", session_token=SESSION)


def test_a_success_resets_the_counter_and_records_the_session(env: Env) -> None:
    env.run("record_primary_auth", env.primary_answer())
    assert isinstance(env.stored(keys.login(token_digest(IST))), LoginState)
    env.stytch.script("authenticate", WRONG, WRONG, env.session_step(SESSION))
    for _ in range(2):
        env.refused("otp_code_not_found", "authenticate_sms_otp", ORG, ADA, "111111", intermediate_session_token=IST)
    assert env.failures() == 2
    mark = len(env.events)
    result = env.run("authenticate_sms_otp", ORG, ADA, CODE, intermediate_session_token=IST)
    assert result.session_token == SESSION
    assert result.request_id.startswith("request-id-test-")
    assert result.member_session.member_id == ADA
    assert [(f.type, f.delivery_method) for f in result.member_session.authentication_factors] == [("otp", "sms")]
    assert env.failures() == 0
    assert env.stored(keys.login(token_digest(IST))) is None  # Stytch consumed the IST, and so does the flow
    assert env.code_marker() is None
    session = env.stored(keys.session(token_digest(SESSION)))
    assert isinstance(session, SessionState)
    assert (session.session_id, session.last_accessed_at) == (result.member_session.member_session_id,
                                                                env.clock.now())
    assert names(env.events[mark:]) == ["otp.verified", "session.created"]
    assert [r.body for r in env.calls()][-1] == send_body(code=CODE, intermediate_session_token=IST)

    check = env.run("authenticate_session", session_token=SESSION)
    assert (check.step_up_required, check.secondary_auth_initiated) == (False, None)
    assert check.member_session.member_session_id == result.member_session.member_session_id
    assert len(env.calls()) == 3  # judged locally


def test_inactivity_step_up_is_sent_through_stytch_with_the_session_token(env: Env) -> None:
    env.stytch.script("authenticate", env.session_step(SESSION))
    env.run("authenticate_sms_otp", ORG, ADA, CODE, intermediate_session_token=IST)
    env.advance(1800)
    assert env.run("authenticate_session", session_token=SESSION).step_up_required is False  # not strictly more
    env.advance(1801)
    mark = (len(env.stytch.requests), len(env.events))
    check = env.run("authenticate_session", session_token=SESSION)
    assert (check.step_up_required, check.secondary_auth_initiated) == (True, "sms_otp")
    assert [(r.path, r.body) for r in env.calls(mark[0])] == [
        ("/v1/b2b/otps/sms/send", send_body(session_token=SESSION))]
    assert [(e.name, e.reason, e.data) for e in env.events[mark[1]:]] == [
        ("session.step_up_required", None, {}),
        ("otp.sent", None, {"purpose": "step_up", "automatic": True, "locale": None, "region": "US"})]
    # While that code is live nothing more is sent.
    again = env.run("authenticate_session", session_token=SESSION)
    assert (again.step_up_required, again.secondary_auth_initiated) == (True, "sms_otp")
    assert len(env.calls()) == 2

    env.stytch.script("authenticate", env.session_step(SESSION))
    stepped = env.run("authenticate_sms_otp", ORG, ADA, CODE, session_token=SESSION)
    assert stepped.session_token == SESSION
    assert names(env.events)[-2:] == ["otp.verified", "session.step_up_completed"]
    assert env.run("authenticate_session", session_token=SESSION).step_up_required is False


def test_authenticate_session_knows_only_sessions_recorded_through_the_flow(env: Env) -> None:
    env.refused("session_not_found", "authenticate_session", session_token="session-token-never-seen")
    env.refused("unable_to_parse_session_jwt", "authenticate_session", session_jwt=JWT)
    assert env.stytch.requests == []


@pytest.mark.parametrize("store_kind", ["memory", "sqlite"])
def test_concurrent_wrong_codes_are_each_counted_and_lock_the_member(store_kind: str, tmp_path: Path) -> None:
    """32 threads submit a wrong code at once (threshold 10). Stytch answers only once all 32 requests are in
    flight, so every attempt was counted first: the counter must read exactly 32 (no lost update)."""
    threads_n = 32
    store = MemoryStore() if store_kind == "memory" else SqliteStore(tmp_path / "mfa.sqlite3")
    env = Env("sync", store=store, lockout_threshold=10)
    try:
        env.run("get_member", ORG, ADA)  # the directory's cache is warm: the threads race on the store only
        counted: list[int] = []
        in_flight = threading.Barrier(threads_n, action=lambda: counted.append(env.failures()), timeout=30)

        def wrong_once_all_counted(request: httpx.Request, body: dict[str, Any]) -> httpx.Response:
            in_flight.wait()
            return WRONG(request, body)

        env.stytch.script("authenticate", *[wrong_once_all_counted] * threads_n)
        start = threading.Barrier(threads_n, timeout=30)
        outcomes: list[str] = []

        def attempt() -> None:
            start.wait()
            try:
                env.run("authenticate_sms_otp", ORG, ADA, "654321", session_token=SESSION)
            except MfaError as refusal:
                outcomes.append(refusal.error_type)

        threads = [threading.Thread(target=attempt) for _ in range(threads_n)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert not any(thread.is_alive() for thread in threads)
        assert counted == [threads_n]
        assert len(env.stytch.sent("authenticate")) == threads_n
        assert env.failures() == threads_n
        assert env.run("get_member", ORG, ADA).is_locked is True
        assert sorted(outcomes) == ["user_lock_limit_reached"] * threads_n
        assert names(env.events).count("otp.failed") == threads_n
        assert names(env.events).count("member.locked") == 1  # by the settlement that locked, not by each
        env.refused("user_lock_limit_reached", "send_sms_otp", ORG, ADA, session_token=SESSION)
        assert len(env.calls()) == threads_n
    finally:
        env.close()
        if isinstance(store, SqliteStore):
            store.close()


# ==================================================================================================
# record_primary_auth
# ==================================================================================================


@pytest.mark.parametrize("flow_cls", [MfaFlow, AsyncMfaFlow])
def test_record_primary_auth_is_refused_in_local_mode(flow_cls: type[MfaFlow | AsyncMfaFlow]) -> None:
    flow = flow_cls(transport=FakeTransport())

    def record() -> object:
        result = flow.record_primary_auth({"member_id": ADA})
        return asyncio.run(result) if asyncio.iscoroutine(result) else result

    with pytest.raises(ConfigurationError) as caught:
        record()
    assert "authenticate_primary" in caught.value.error_message
    assert len(flow.store) == 0  # type: ignore[arg-type]


def test_record_primary_auth_records_the_ist_and_counts_the_automatic_send(env: Env) -> None:
    env.stytch.members[ADA] = attrs.evolve(env.stytch.members[ADA], name="Ada, fresh from Stytch")
    raw = env.primary_answer()
    result = env.run("record_primary_auth", raw)
    assert env.stytch.requests == []  # everything came in the answer: no directory read
    assert (result.member_id, result.organization_id, result.member_authenticated) == (ADA, ORG, False)
    assert result.intermediate_session_token == IST
    assert result.session_token == ""
    assert result.request_id == raw["request_id"]
    assert result.mfa_required is not None
    assert result.mfa_required.secondary_auth_initiated == "sms_otp"
    assert result.mfa_required.member_options.mfa_phone_number == MASKED_ADA
    assert result.member.name == "Ada, fresh from Stytch"
    assert env.run("get_member", ORG, ADA).name == "Ada, fresh from Stytch"
    assert env.stytch.requests == []
    login = env.stored(keys.login(token_digest(IST)))
    assert isinstance(login, LoginState)
    assert login.expires_at == env.clock.now() + 600
    marker = env.code_marker()
    assert marker is not None
    assert (marker.bound_to, marker.purpose, marker.phone) == (token_digest(IST), "login", ADA_PHONE)
    assert [(e.name, e.reason, e.data) for e in env.events] == [
        ("otp.sent", None, {"purpose": "login", "automatic": True, "over_limit": None, "region": "US"})]
    # The automatic send counted: four explicit sends remain.
    for _ in range(4):
        env.run("send_sms_otp", ORG, ADA, intermediate_session_token=IST)
    env.refused("too_many_requests", "send_sms_otp", ORG, ADA, intermediate_session_token=IST)
    assert len(env.calls()) == 4


def test_record_primary_auth_without_an_automatic_send_counts_nothing(env: Env) -> None:
    result = env.run("record_primary_auth", env.primary_answer(initiated=None))
    assert result.mfa_required is not None
    assert result.mfa_required.secondary_auth_initiated is None
    assert env.events == []
    assert env.code_marker() is None
    for _ in range(5):
        env.run("send_sms_otp", ORG, ADA, intermediate_session_token=IST)
    assert len(env.calls()) == 5


def test_the_sixth_automatic_send_over_the_limit_is_recorded_not_refused(env: Env) -> None:
    for n in range(6):
        result = env.run("record_primary_auth", env.primary_answer(ist=f"ist-{n}"))
        assert result.mfa_required.secondary_auth_initiated == "sms_otp"
    sent = [e for e in env.events if e.name == "otp.sent"]
    assert [e.reason for e in sent] == [None] * 5 + ["too_many_requests"]
    assert sent[-1].data["over_limit"]
    assert sent[-1].data["automatic"] is True
    marker = env.code_marker()
    assert marker is not None
    assert marker.bound_to == token_digest("ist-5")
    env.refused("too_many_requests", "send_sms_otp", ORG, ADA, intermediate_session_token="ist-5")
    assert env.calls() == []


def test_record_primary_auth_records_the_session(env: Env) -> None:
    result = env.run("record_primary_auth", env.primary_answer(ist="", session_token=SESSION))
    assert (result.member_authenticated, result.session_token, result.intermediate_session_token) == (
        True, SESSION, "")
    assert result.mfa_required is None
    assert [(f.type, f.delivery_method) for f in result.member_session.authentication_factors] == [
        ("password", "knowledge")]
    assert names(env.events) == ["session.created"]
    assert env.code_marker() is None
    check = env.run("authenticate_session", session_token=SESSION)
    assert check.step_up_required is False
    assert check.member_session.member_session_id == result.member_session.member_session_id
    assert env.stytch.requests == []


def _drop(field: str) -> Callable[[dict[str, Any]], None]:
    return lambda raw: raw.pop(field)


MALFORMED = [
    pytest.param(_drop("member"), "member", id="missing-member"),
    pytest.param(_drop("organization"), "organization", id="missing-organization"),
    pytest.param(lambda raw: raw.update(member_id=CAROL), "member_id", id="mismatched-member_id"),
    pytest.param(lambda raw: raw["member"].update(organization_id="organization-test-2"), "organization",
                 id="member-of-another-organization"),
    pytest.param(lambda raw: raw.update(mfa_required="sms_otp"), "mfa_required", id="mfa_required-not-an-object"),
    pytest.param(lambda raw: raw["mfa_required"].update(secondary_auth_initiated="email_otp"),
                 "mfa_required.secondary_auth_initiated", id="bad-secondary_auth_initiated"),
    pytest.param(lambda raw: raw["mfa_required"].update(member_options="XXXXXXX0101"), "mfa_required.member_options",
                 id="member_options-not-an-object"),
    pytest.param(lambda raw: raw.update(intermediate_session_token=""), "intermediate_session_token",
                 id="no-token-at-all"),
    pytest.param(lambda raw: raw.update(member_authenticated="no"), "member_authenticated",
                 id="member_authenticated-not-a-bool"),
    pytest.param(lambda raw: raw["member"].update(mfa_phone_number_verified="yes"), "member.mfa_phone_number_verified",
                 id="member-flag-not-a-bool"),
]


@pytest.mark.parametrize(("corrupt", "field"), MALFORMED)
def test_malformed_primary_auth_answers_are_unexpected_response(env: Env, corrupt: Callable[[dict[str, Any]], None],
                                                                field: str) -> None:
    raw = env.primary_answer()
    corrupt(raw)
    with pytest.raises(UnexpectedResponse) as caught:
        env.run("record_primary_auth", raw)
    assert field in caught.value.error_message
    assert (caught.value.error_type, caught.value.status_code) == ("internal_server_error", 502)
    assert len(env.flow.store) == 0  # type: ignore[arg-type]
    assert env.stytch.requests == []
    assert not {"otp.sent", "session.created"} & set(names(env.events))  # nothing was recorded


@pytest.mark.parametrize("absent", ["missing", "null"])
def test_primary_auth_answer_without_member_options_shows_the_members_own(env: Env, absent: str) -> None:
    """The official SDK types mfa_required.member_options as optional: without it, the options shown are the
    member's (its masked number and TOTP registration), and the answer is recorded as any other."""
    raw = env.primary_answer()
    if absent == "null":
        raw["mfa_required"]["member_options"] = None
    else:
        del raw["mfa_required"]["member_options"]
    result = env.run("record_primary_auth", raw)
    assert result.mfa_required is not None
    assert result.mfa_required.member_options.mfa_phone_number == MASKED_ADA
    assert result.mfa_required.secondary_auth_initiated == "sms_otp"
    assert "otp.sent" in names(env.events)


def test_malformed_session_in_a_primary_auth_answer_is_unexpected_response(env: Env) -> None:
    raw = env.primary_answer(ist="", session_token=SESSION)
    raw["member_session"]["expires_at"] = "tomorrow"
    with pytest.raises(UnexpectedResponse) as caught:
        env.run("record_primary_auth", raw)
    assert "member_session.expires_at" in caught.value.error_message
    assert len(env.flow.store) == 0  # type: ignore[arg-type]


def test_record_primary_auth_accepts_the_sdks_parsed_answer(env: Env) -> None:
    """The official SDK parses Stytch's JSON into pydantic models with datetimes; their ``.dict()`` (pydantic 2's
    ``model_dump()``) is recorded exactly as the raw JSON is."""
    models = require("stytch.b2b.models.passwords")
    with_ist = models.AuthenticateResponse.from_json(200, env.primary_answer()).model_dump()
    raw_with_session = env.primary_answer(ist="", session_token=SESSION)
    with_session = models.AuthenticateResponse.from_json(200, raw_with_session).model_dump()
    assert isinstance(with_session["member_session"]["expires_at"], datetime)  # really datetimes

    first = env.run("record_primary_auth", with_ist)
    assert first.intermediate_session_token == IST
    assert first.mfa_required.secondary_auth_initiated == "sms_otp"
    assert first.member.mfa_phone_number == ADA_PHONE
    assert isinstance(env.stored(keys.login(token_digest(IST))), LoginState)

    second = env.run("record_primary_auth", with_session)
    raw_json_result = env.run("record_primary_auth", raw_with_session)
    assert second.member_session == raw_json_result.member_session
    assert second.member == raw_json_result.member
    assert env.run("authenticate_session", session_token=SESSION).step_up_required is False
    assert names(env.events) == ["otp.sent", "session.created", "session.created"]


# ==================================================================================================
# configuration
# ==================================================================================================


def test_authenticate_primary_in_stytch_mode_points_to_record_primary_auth(env: Env) -> None:
    with pytest.raises(ConfigurationError) as caught:
        env.run("authenticate_primary", ORG, ADA, "password")
    assert "record_primary_auth" in caught.value.error_message
    assert env.stytch.requests == []


@pytest.mark.parametrize("provider_cls", [StytchProvider, AsyncStytchProvider])
def test_link_phone_on_verify_is_refused_in_stytch_mode(
    provider_cls: type[StytchProvider | AsyncStytchProvider],
) -> None:
    flow_cls = MfaFlow if provider_cls is StytchProvider else AsyncMfaFlow
    provider = provider_cls(PROJECT_ID, SECRET)
    try:
        with pytest.raises(ConfigurationError) as caught:
            flow_cls(transport=provider, policy=Policy(link_phone_on="verify"))
        assert "link_phone_on" in caught.value.error_message
        with pytest.raises(ConfigurationError, match="link_phone_on"):
            flow_cls(transport=provider, policy=Policy.hardened())
        assert flow_cls(transport=provider).policy.link_phone_on == "send"
    finally:
        if isinstance(provider, StytchProvider):
            provider.close()
        else:
            asyncio.run(provider.aclose())


def test_mfa_flow_refuses_the_async_provider() -> None:
    provider = AsyncStytchProvider(PROJECT_ID, SECRET)
    with pytest.raises(ConfigurationError) as caught:
        MfaFlow(transport=provider)
    assert "AsyncMfaFlow" in caught.value.error_message
    assert isinstance(AsyncMfaFlow(transport=provider).transport, AsyncStytchProvider)
    asyncio.run(provider.aclose())


def test_secret_key_is_not_required_with_a_durable_store(twin: str, tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "mfa.sqlite3")
    try:
        with pytest.raises(ConfigurationError, match="secret_key"):  # local mode needs it: its codes are ours
            MfaFlow(store=store, transport=FakeTransport())
        env = Env(twin, store=store)
        try:
            env.run("record_primary_auth", env.primary_answer())
            env.run("send_sms_otp", ORG, ADA, intermediate_session_token=IST)
            assert [r.body for r in env.calls()] == [send_body(intermediate_session_token=IST)]
            assert isinstance(env.stored(keys.login(token_digest(IST))), LoginState)
        finally:
            env.close()
    finally:
        store.close()


def test_record_mfa_factor_with_an_ist_is_refused(env: Env) -> None:
    env.run("record_primary_auth", env.primary_answer())
    with pytest.raises(ConfigurationError) as caught:
        env.run("record_mfa_factor", ORG, ADA, "totp", intermediate_session_token=IST)
    assert "record_primary_auth" in caught.value.error_message
    assert isinstance(env.stored(keys.login(token_digest(IST))), LoginState)  # not consumed


def test_record_mfa_factor_with_a_session_completes_a_local_step_up(env: Env) -> None:
    env.stytch.script("authenticate", env.session_step(SESSION))
    env.run("authenticate_sms_otp", ORG, ADA, CODE, intermediate_session_token=IST)
    env.advance(1801)
    assert env.run("authenticate_session", session_token=SESSION).step_up_required is True
    calls = len(env.calls())
    result = env.run("record_mfa_factor", ORG, ADA, "totp", session_token=SESSION)
    assert result.session_token == SESSION
    assert ("totp", "authenticator_app") in [(f.type, f.delivery_method)
                                             for f in result.member_session.authentication_factors]
    assert names(env.events)[-1] == "session.step_up_completed"
    assert len(env.calls()) == calls  # nothing asked of Stytch
    assert env.run("authenticate_session", session_token=SESSION).step_up_required is False


# ==================================================================================================
# delete_mfa_phone_number
# ==================================================================================================


def test_delete_mfa_phone_number_calls_stytch_then_clears_the_local_view(env: Env) -> None:
    env.run("send_sms_otp", ORG, BOB, mfa_phone_number=NEW_PHONE)
    assert env.run("get_member", ORG, BOB).mfa_phone_number == NEW_PHONE
    assert env.code_marker(BOB) is not None
    mark = len(env.events)
    member = env.run("delete_mfa_phone_number", ORG, BOB)
    assert (member.mfa_phone_number, member.mfa_phone_number_verified) == ("", False)
    assert [(r.method, r.path, r.body) for r in env.calls()][-1] == (
        "DELETE", f"/v1/b2b/organizations/{ORG}/members/mfa_phone_numbers/{BOB}", None)
    assert env.run("get_member", ORG, BOB).mfa_phone_number == ""
    assert env.code_marker(BOB) is None
    assert names(env.events[mark:]) == ["member.updated"]

    env.run("delete_mfa_phone_number", ORG_SLUG, ADA_EXTERNAL_ID)
    assert env.calls()[-1].path == f"/v1/b2b/organizations/{ORG}/members/mfa_phone_numbers/{ADA}"
    assert env.run("get_member", ORG, ADA).mfa_phone_number == ""
    calls = len(env.calls())
    env.refused("member_phone_number_not_found", "send_sms_otp", ORG, ADA, intermediate_session_token=IST)
    assert len(env.calls()) == calls


def test_a_refused_delete_changes_nothing_locally(env: Env) -> None:
    env.run("send_sms_otp", ORG, BOB, mfa_phone_number=NEW_PHONE)
    env.stytch.script("delete", error("unauthorized_credentials", 401))
    mark = len(env.events)
    err = env.refused("unauthorized_credentials", "delete_mfa_phone_number", ORG, BOB)
    assert type(err) is ProviderError
    assert err.status_code == 401
    assert env.calls()[-1].method == "DELETE"
    member = env.run("get_member", ORG, BOB)
    assert (member.mfa_phone_number, member.mfa_phone_number_verified) == (NEW_PHONE, False)
    assert env.code_marker(BOB) is not None
    assert env.events[mark:] == []


# ==================================================================================================
# secrets
# ==================================================================================================


def test_stytch_session_tokens_and_the_secret_never_leak(env: Env, caplog: pytest.LogCaptureFixture,
                                                          pauses: list[float]) -> None:
    caplog.set_level(logging.DEBUG)
    seen: list[object] = []
    env.stytch.script("authenticate", WRONG, env.session_step(SESSION), httpx.ReadTimeout)
    env.stytch.script("send", httpx.ReadTimeout, error("session_not_found", 404),
                      lambda _r, b: answer(200, {"status_code": 200, "request_id": "r", "member_id": b["member_id"]}))
    seen.append(env.run("record_primary_auth", env.primary_answer()))
    seen.append(env.run("record_primary_auth", env.primary_answer(ist="", session_token="session-token-primary")))
    for method, args, kwargs in [
        ("authenticate_sms_otp", (ORG, ADA, CODE), {"intermediate_session_token": IST}),
        ("authenticate_sms_otp", (ORG, ADA, CODE), {"intermediate_session_token": IST}),
        ("authenticate_sms_otp", (ORG, ADA, CODE), {"session_token": SESSION}),
        ("send_sms_otp", (ORG, ADA), {"session_token": SESSION}),
        ("send_sms_otp", (ORG, ADA), {"session_token": SESSION}),
        ("send_sms_otp", (ORG, ADA), {"session_jwt": JWT}),
        ("authenticate_session", (), {"session_token": SESSION}),
        ("authenticate_session", (), {"session_token": "session-token-primary"}),
    ]:
        try:
            seen.append(env.run(method, *args, **kwargs))
        except MfaError as refusal:
            seen.append(refusal)
    assert len([s for s in seen if isinstance(s, MfaError)]) == 5
    texts = [caplog.text, repr(env.flow), repr(env.provider), repr(env.flow.directory)]
    for item in seen:
        texts += [repr(item), str(item)]
        if isinstance(item, MfaError):
            texts.append("".join(traceback.format_exception(item)))
            texts.append(repr(item.to_dict()))
    texts += [repr(e) for e in env.events]
    blob = "\n".join(texts)
    for secret in (SECRET, IST, SESSION, "session-token-primary", JWT, CODE):
        assert secret not in blob, secret
    assert base64.b64encode(f"{PROJECT_ID}:{SECRET}".encode()).decode() not in blob
    assert PROJECT_ID in repr(env.provider)  # the repr says what it talks to, just not with what key
    assert all(r.auth == (PROJECT_ID, SECRET) for r in env.stytch.requests)  # and every request was authorized
