"""The public API as a typed caller uses it; checked by ``mypy --strict`` (tests/test_public_api.py).

Not a test module (pytest collects only ``test_*.py``) and never run: functions only, nothing at import.
``assert_type`` pins the types the public API promises; a change to a signature fails mypy here.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, assert_type

import mfa_flow
from mfa_flow import (
    AuthenticateResult,
    AuthenticationFactor,
    Clock,
    ConfigurationError,
    Directory,
    ErrorType,
    Event,
    InvalidPhoneNumber,
    Member,
    MemberOptions,
    MemberSession,
    MemoryDirectory,
    MfaError,
    MfaFlow,
    MfaRequired,
    Organization,
    Policy,
    PrimaryAuthResult,
    SendContext,
    SendResult,
    SessionCheck,
    SystemClock,
    WritableDirectory,
)
from mfa_flow.stores import MemoryStore, Store
from mfa_flow.testing import FakeClock, FakeTransport
from mfa_flow.transports import (
    CodeProvider,
    ConsoleGateway,
    DeliveryRejected,
    DeliveryUnknown,
    SmsGateway,
    SmsMessage,
)


class ListGateway:
    """A user-written SMS gateway: structurally an SmsGateway."""

    def __init__(self) -> None:
        self.outbox: list[SmsMessage] = []

    def deliver(self, message: SmsMessage) -> None:
        if not message.to.startswith("+"):
            raise DeliveryRejected("not E.164")
        if message.locale == "xx":
            raise DeliveryUnknown("timed out")
        self.outbox.append(message)


class FixedClock:
    """A user-written clock: structurally a Clock."""

    def now(self) -> float:
        return 1767225600.0


def refuse_blocked_regions(context: SendContext) -> None:
    assert_type(context.phone_number, str)
    assert_type(context.region, str | None)
    assert_type(context.automatic, bool)
    assert_type(context.member, Member)
    assert_type(context.organization, Organization)
    if context.region == "CA" and context.purpose == "link":
        raise MfaError("too_many_requests", "refused by a risk hook")


def audit(event: Event) -> None:
    assert_type(event.name, str)
    assert_type(event.at, float)
    assert_type(event.reason, str | None)


def plug_points() -> None:
    gateway: SmsGateway = ListGateway()
    clock: Clock = FixedClock()
    store: Store = MemoryStore()
    directory: Directory = MemoryDirectory()
    console: SmsGateway = ConsoleGateway()
    system: Clock = SystemClock()
    fake_clock: Clock = FakeClock()
    fake_gateway: SmsGateway = FakeTransport()
    flow = MfaFlow(policy=Policy(), directory=directory, store=store, transport=gateway, clock=clock,
                   events=[audit], secret_key=b"k" * 32, before_send=[refuse_blocked_regions])
    rotated = MfaFlow(secret_key=[b"n" * 32, b"o" * 32], transport=console, clock=system)
    assert_type(flow.policy, Policy)
    assert_type(flow.directory, Directory)
    assert_type(flow.store, Store)
    assert_type(rotated, MfaFlow)
    assert_type(fake_clock.now(), float)
    assert isinstance(fake_gateway, SmsGateway)
    assert not isinstance(gateway, CodeProvider)


def policies() -> Policy:
    hardened = Policy.hardened(lockout_threshold=3)
    assert_type(hardened, Policy)
    assert_type(hardened.otp_ttl, float)
    assert_type(hardened.send_limit_per_member, tuple[int, float])
    assert_type(hardened.send_limit_global, tuple[int, float] | None)
    assert_type(hardened.link_phone_on, Literal["send", "verify"])
    try:
        Policy(otp_ttl=3600)
    except ConfigurationError as exc:
        assert_type(exc.error_type, ErrorType)
        refused: bool = exc.error_type == "invalid_argument"  # a misspelt type here would fail mypy
        assert_type(refused, bool)
    return Policy(send_limit_per_region=(100, 3600), allowed_regions=frozenset({"US"}))


class UserTable:
    """A read-only adapter over the application's own users: the three lookups, no put_*."""

    def __init__(self, rows: dict[tuple[str, str], dict[str, Any]]) -> None:
        self.rows = rows

    def get_organization(self, ref: str) -> Organization | None:
        return Organization(ref, mfa_policy="REQUIRED_FOR_ALL") if any(o == ref for o, _ in self.rows) else None

    def get_member(self, organization_id: str, member_ref: str) -> Member | None:
        row = self.rows.get((organization_id, member_ref))
        return None if row is None else Member(member_ref, organization_id, mfa_phone_number=row["phone"],
                                               mfa_phone_number_verified=True)

    def find_member_by_phone(self, organization_id: str, e164: str) -> Member | None:
        for (org, member), row in self.rows.items():
            if org == organization_id and row["phone"] == e164:
                return self.get_member(org, member)
        return None


def read_only_directory() -> MfaFlow:
    table = UserTable({("organization-test-1", "member-test-1"): {"phone": "+14155550123"}})
    directory: Directory = table
    flow = MfaFlow(directory=table)
    assert_type(flow.directory, Directory)
    writable: WritableDirectory = MemoryDirectory()
    assert isinstance(directory, Directory)
    assert not isinstance(directory, WritableDirectory)
    assert isinstance(writable, WritableDirectory)
    return flow


def login(flow: MfaFlow, directory: WritableDirectory, transport: FakeTransport, clock: FakeClock) -> str:
    directory.put_organization(Organization("organization-test-1", mfa_policy="REQUIRED_FOR_ALL"))
    directory.put_member(Member("member-test-1", "organization-test-1", mfa_phone_number="+14155550123",
                                mfa_phone_number_verified=True))
    primary = flow.authenticate_primary("organization-test-1", "member-test-1", "email_magic_link", locale="en")
    assert_type(primary, PrimaryAuthResult)
    assert_type(primary.intermediate_session_token, str)
    assert_type(primary.member_authenticated, bool)
    assert_type(primary.member_session, MemberSession | None)
    required = primary.mfa_required
    assert_type(required, MfaRequired | None)
    if required is not None:
        assert_type(required.member_options, MemberOptions)
        assert_type(required.secondary_auth_initiated, Literal["sms_otp"] | None)
    message = transport.sent[-1]
    assert_type(message, SmsMessage)
    assert_type(message.code, str)
    assert_type(transport.last_code("member-test-1"), str)
    transport.fail_next("unknown")
    clock.advance(30)
    clock.advance(minutes=1, hours=0)

    sent = flow.send_sms_otp("organization-test-1", "member-test-1",
                             intermediate_session_token=primary.intermediate_session_token)
    assert_type(sent, SendResult)
    assert_type(sent.member, Member)
    assert_type(sent.organization, Organization)
    assert_type(sent.to_dict(), dict[str, Any])

    done = flow.authenticate_sms_otp("organization-test-1", "member-test-1", message.code,
                                     intermediate_session_token=primary.intermediate_session_token,
                                     session_duration_minutes=60, set_mfa_enrollment="enroll",
                                     set_default_mfa=True)
    assert_type(done, AuthenticateResult)
    session = done.member_session
    assert session is not None
    assert_type(session.expires_at, datetime)
    factors = session.authentication_factors
    assert_type(factors, tuple[AuthenticationFactor, ...])
    assert_type(done.member.is_locked, bool)
    assert_type(done.member.lock_expires_at, datetime | None)
    return done.session_token


def sessions(flow: MfaFlow, session_token: str) -> bool:
    check = flow.authenticate_session(session_token=session_token)
    assert_type(check, SessionCheck)
    assert_type(check.secondary_auth_initiated, Literal["sms_otp"] | None)
    grown = flow.record_mfa_factor("organization-test-1", "member-test-1", "totp", session_token=session_token)
    assert_type(grown, AuthenticateResult)
    member = flow.delete_mfa_phone_number("organization-test-1", "member-test-1")
    assert_type(member, Member)
    assert_type(flow.get_member("organization-test-1", "member-test-1"), Member)
    assert_type(flow.get_organization("acme"), Organization)
    return check.step_up_required


def errors(flow: MfaFlow) -> str:
    try:
        flow.send_sms_otp("organization-test-1", "member-test-1", mfa_phone_number="+1 900 555 0123")
    except InvalidPhoneNumber as exc:
        assert_type(exc.status_code, int)
        return exc.error_type
    except MfaError as exc:
        assert_type(exc.error_message, str)
        assert_type(exc.request_id, str | None)
        return exc.error_url
    return ""


def drawing() -> str:
    text = mfa_flow.diagram()
    assert_type(text, str)
    return mfa_flow.diagram(format="mermaid") + mfa_flow.__version__


def stytch_mode(callback_answer: dict[str, Any]) -> str:
    """Stytch mode: the provider as the transport, its directory by default, Stytch's answers recorded."""
    from mfa_flow.errors import ProviderError, UnexpectedResponse
    from mfa_flow.transports.stytch import StytchDirectory, StytchProvider

    provider = StytchProvider("project-test-00000000", "secret", base_url="http://127.0.0.1:8123",
                              connect_retries=1, timeout=5.0)
    directory = provider.directory(cache_seconds=30)
    assert_type(directory, StytchDirectory)
    flow = MfaFlow(transport=provider, directory=directory)
    primary = flow.record_primary_auth(callback_answer)
    assert_type(primary, PrimaryAuthResult)
    try:
        done = flow.authenticate_sms_otp("organization-test-1", "member-test-1", "123456",
                                         intermediate_session_token=primary.intermediate_session_token)
    except UnexpectedResponse as exc:
        return exc.error_message
    except ProviderError as exc:
        assert_type(exc.status_code, int)
        return exc.error_type
    provider.close()
    return done.session_token


async def stytch_mode_async(callback_answer: dict[str, Any]) -> str:
    from mfa_flow import AsyncMfaFlow
    from mfa_flow.transports.stytch import AsyncStytchProvider

    async with AsyncStytchProvider("project-test-00000000", "secret", base_url="http://127.0.0.1:8123") as provider:
        flow = AsyncMfaFlow(transport=provider)
        primary = await flow.record_primary_auth(callback_answer)
        assert_type(primary, PrimaryAuthResult)
        return primary.intermediate_session_token
