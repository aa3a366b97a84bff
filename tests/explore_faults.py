"""Faults a user could really ship, for tests/test_explore.py: flow factories and properties for ``explore``.

Everything is at module level so that a counter-example's ``to_pytest()`` can import it by name.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Any

import attrs
import phonenumbers

from mfa_flow import MfaError, MfaFlow, Policy, PrimaryMethod
from mfa_flow.events import EventSink
from mfa_flow.testing import FakeClock, FakeTransport, MfaWorld
from mfa_flow.transports import PreparedCode, SmsMessage

# --- flows built with other settings than the policy they are checked against -------------------------------------


def _flow_with(policy: Policy, clock: FakeClock, transport: Any, events: list[EventSink], **settings: Any) -> MfaFlow:
    """The policy under test with a few of the deployment's own settings on top (as a settings module would)."""
    return MfaFlow(policy=attrs.evolve(policy, **settings), clock=clock, transport=transport, events=events)


def policy_flow(policy: Policy, *, clock: FakeClock, transport: FakeTransport, events: list[EventSink]) -> MfaFlow:
    """The fix for every factory below: the flow runs the very policy it is checked against."""
    return MfaFlow(policy=policy, clock=clock, transport=transport, events=events)


def flow_with_longer_codes(policy: Policy, *, clock: FakeClock, transport: FakeTransport,
                           events: list[EventSink]) -> MfaFlow:
    return _flow_with(policy, clock, transport, events, otp_ttl=300)


def flow_with_higher_lockout(policy: Policy, *, clock: FakeClock, transport: FakeTransport,
                             events: list[EventSink]) -> MfaFlow:
    return _flow_with(policy, clock, transport, events, lockout_threshold=20)


#: Twice the default limits, as a deployment tuned for a call centre might set them.
LOOSE_LIMITS: dict[str, Any] = {"send_limit_per_member": (10, 600), "send_limit_per_phone": (10, 600)}


def flow_with_looser_limits(policy: Policy, *, clock: FakeClock, transport: FakeTransport,
                            events: list[EventSink]) -> MfaFlow:
    return _flow_with(policy, clock, transport, events, **LOOSE_LIMITS)


def flow_with_longer_idle(policy: Policy, *, clock: FakeClock, transport: FakeTransport,
                          events: list[EventSink]) -> MfaFlow:
    return _flow_with(policy, clock, transport, events, inactivity_timeout=3600)


def flow_texting_gb(policy: Policy, *, clock: FakeClock, transport: FakeTransport,
                    events: list[EventSink]) -> MfaFlow:
    return _flow_with(policy, clock, transport, events, allowed_regions={"US", "CA", "GB"})


def flow_stricter_than_policy(policy: Policy, *, clock: FakeClock, transport: FakeTransport,
                              events: list[EventSink]) -> MfaFlow:
    """Not a fault: shorter codes and idle time, earlier locks, fewer texts, a cooldown, only US numbers."""
    return _flow_with(policy, clock, transport, events, otp_ttl=60, inactivity_timeout=900, lockout_threshold=5,
                      max_attempts_per_code=3, send_limit_per_member=(3, 600), send_limit_per_phone=(3, 600),
                      resend_cooldown=30, allowed_regions=frozenset({"US"}))


# --- a gateway adapter that texts the wrong number --------------------------------------------------------------------


@attrs.define
class SwappedNumbersGateway:
    """A hand-written adapter that passes the company's sender number as ``to`` (from and to swapped)."""

    inner: FakeTransport
    sender: str = "+12125550100"

    def deliver(self, message: SmsMessage) -> None:
        self.inner.deliver(attrs.evolve(message, to=self.sender))


def flow_with_swapped_numbers(policy: Policy, *, clock: FakeClock, transport: FakeTransport,
                              events: list[EventSink]) -> MfaFlow:
    return MfaFlow(policy=policy, clock=clock, transport=SwappedNumbersGateway(transport), events=events)


@attrs.define
class StickyRecipientGateway:
    """An adapter that caches the first recipient it sees per organization (meant as a per-request cache, kept
    for the process): the next member of that organization is texted at the first one's number."""

    inner: FakeTransport
    recipients: dict[str, str] = attrs.field(factory=dict)

    def deliver(self, message: SmsMessage) -> None:
        to = self.recipients.setdefault(message.organization_id, message.to)
        self.inner.deliver(attrs.evolve(message, to=to))


def flow_with_sticky_recipients(policy: Policy, *, clock: FakeClock, transport: FakeTransport,
                                events: list[EventSink]) -> MfaFlow:
    return MfaFlow(policy=policy, clock=clock, transport=StickyRecipientGateway(transport), events=events)


def flow_without_cooldown(policy: Policy, *, clock: FakeClock, transport: FakeTransport,
                          events: list[EventSink]) -> MfaFlow:
    return _flow_with(policy, clock, transport, events, resend_cooldown=0)


def flow_with_two_faults(policy: Policy, *, clock: FakeClock, transport: FakeTransport,
                         events: list[EventSink]) -> MfaFlow:
    """Swapped numbers (seen at depth 1) and looser limits (seen at depth 2) in one flow."""
    return _flow_with(policy, clock, SwappedNumbersGateway(transport), events, **LOOSE_LIMITS)


# --- what lets any code through -------------------------------------------------------------------------------------


@attrs.define
class HashingProvider:
    """An application's own code provider (codes kept as SHA-256 digests), correct as it stands: the faults
    below are each one change to it."""

    gateway: FakeTransport

    def prepare(self, *, code_id: str, to: str, locale: str | None, organization_id: str,
                member_id: str) -> PreparedCode:
        code = f"{secrets.randbelow(1_000_000):06d}"
        return PreparedCode(code_id, self.digest(code_id, code), SmsMessage(to, code, locale, member_id,
                                                                            organization_id))

    def deliver(self, prepared: PreparedCode) -> None:
        self.gateway.deliver(prepared.message)

    def verify(self, code_id: str, code: str, digest: bytes) -> bool:
        return hmac.compare_digest(self.digest(code_id, code), digest)

    @staticmethod
    def digest(code_id: str, code: str) -> bytes:
        return hashlib.sha256(f"{code_id}:{code}".encode()).digest()


class LengthCheckingProvider(HashingProvider):
    """A code provider whose ``verify`` was left as a development stub: any six characters pass."""

    def verify(self, code_id: str, code: str, digest: bytes) -> bool:
        return len(code) == 6  # the fault: the digest is never compared


def flow_accepting_any_code(policy: Policy, *, clock: FakeClock, transport: FakeTransport,
                            events: list[EventSink]) -> MfaFlow:
    return MfaFlow(policy=policy, clock=clock, transport=LengthCheckingProvider(transport), events=events)


@attrs.define
class OutOfOrderTolerantProvider(HashingProvider):
    """"Texts arrive out of order, so accept any code we sent that member": the provider remembers every code
    it sent per member and lets any of them through, so a resend no longer supersedes the previous code."""

    members: dict[str, str] = attrs.field(factory=dict)  # code id -> member id
    sent: dict[str, set[str]] = attrs.field(factory=dict)  # member id -> every code sent to it

    def prepare(self, *, code_id: str, to: str, locale: str | None, organization_id: str,
                member_id: str) -> PreparedCode:
        prepared = super().prepare(code_id=code_id, to=to, locale=locale, organization_id=organization_id,
                                   member_id=member_id)
        self.members[code_id] = member_id
        self.sent.setdefault(member_id, set()).add(prepared.message.code)
        return prepared

    def verify(self, code_id: str, code: str, digest: bytes) -> bool:
        return super().verify(code_id, code, digest) or code in self.sent.get(self.members.get(code_id, ""), ())


def flow_accepting_earlier_codes(policy: Policy, *, clock: FakeClock, transport: FakeTransport,
                                 events: list[EventSink]) -> MfaFlow:
    return MfaFlow(policy=policy, clock=clock, transport=OutOfOrderTolerantProvider(transport), events=events)


class Facade:
    """An application's facade over MfaFlow: every method passes through unless a subclass overrides it."""

    def __init__(self, flow: MfaFlow) -> None:
        self.flow = flow

    def __getattr__(self, name: str) -> Any:
        return getattr(self.flow, name)


class SsoCountsAsMfa(Facade):
    """"Our IdP already did MFA": an SSO login is completed with a recorded factor the application never checked."""

    def authenticate_primary(self, organization_id: str, member_id: str, method: PrimaryMethod, **kwargs: Any) -> Any:
        result = self.flow.authenticate_primary(organization_id, member_id, method, **kwargs)
        if method != "sso" or not result.intermediate_session_token:
            return result
        done = self.flow.record_mfa_factor(organization_id, member_id, "totp",
                                           intermediate_session_token=result.intermediate_session_token)
        return attrs.evolve(result, intermediate_session_token="", session_token=done.session_token,
                            member_session=done.member_session, mfa_required=None)


class LoginUnlocks(Facade):
    """"A member who passed the password has proved who they are": every login first clears the MFA lock, so
    wrong codes cost nothing but the next login."""

    def authenticate_primary(self, organization_id: str, member_id: str, method: PrimaryMethod, **kwargs: Any) -> Any:
        self.flow.unlock_member(organization_id, member_id)
        return self.flow.authenticate_primary(organization_id, member_id, method, **kwargs)


class RelinkingWithUncheckedTotp(Facade):
    """A fix for a support ticket ("adding a phone says insufficient_factors"): when linking a number is refused
    for lack of a factor, log the member in again, record the TOTP factor the form never checked, and send."""

    def send_sms_otp(self, organization_id: str, member_id: str, *, mfa_phone_number: str | None = None,
                     **kwargs: Any) -> Any:
        try:
            return self.flow.send_sms_otp(organization_id, member_id, mfa_phone_number=mfa_phone_number, **kwargs)
        except MfaError as exc:
            if mfa_phone_number is None or exc.error_type not in ("insufficient_factors",
                                                                  "no_associated_session_passed_in"):
                raise
        login = self.flow.authenticate_primary(organization_id, member_id, "password")
        done = self.flow.record_mfa_factor(organization_id, member_id, "totp",
                                           intermediate_session_token=login.intermediate_session_token)
        return self.flow.send_sms_otp(organization_id, member_id, mfa_phone_number=mfa_phone_number,
                                      session_token=done.session_token)


def flow_unlocking_on_login(policy: Policy, *, clock: FakeClock, transport: FakeTransport,
                            events: list[EventSink]) -> LoginUnlocks:
    return LoginUnlocks(policy_flow(policy, clock=clock, transport=transport, events=events))


def flow_relinking_with_unchecked_totp(policy: Policy, *, clock: FakeClock, transport: FakeTransport,
                                       events: list[EventSink]) -> RelinkingWithUncheckedTotp:
    return RelinkingWithUncheckedTotp(policy_flow(policy, clock=clock, transport=transport, events=events))


# --- secrets in error messages --------------------------------------------------------------------------------------


class CodeQuotingErrors(Facade):
    """Adds "helpful" context to a refused code: the code itself."""

    def authenticate_sms_otp(self, organization_id: str, member_id: str, code: str, **kwargs: Any) -> Any:
        try:
            return self.flow.authenticate_sms_otp(organization_id, member_id, code, **kwargs)
        except MfaError as exc:
            raise MfaError(exc.error_type, f"{exc.error_message} (code {code})") from exc


class TokenQuotingErrors(Facade):
    """Adds the caller's intermediate session token to a refused send, for the support team."""

    def send_sms_otp(self, organization_id: str, member_id: str, **kwargs: Any) -> Any:
        try:
            return self.flow.send_sms_otp(organization_id, member_id, **kwargs)
        except MfaError as exc:
            ist = kwargs.get("intermediate_session_token") or "none"
            raise MfaError(exc.error_type, f"{exc.error_message} (intermediate session {ist})") from exc


def flow_quoting_codes(policy: Policy, *, clock: FakeClock, transport: FakeTransport,
                       events: list[EventSink]) -> CodeQuotingErrors:
    return CodeQuotingErrors(policy_flow(policy, clock=clock, transport=transport, events=events))


def flow_quoting_tokens(policy: Policy, *, clock: FakeClock, transport: FakeTransport,
                        events: list[EventSink]) -> TokenQuotingErrors:
    return TokenQuotingErrors(policy_flow(policy, clock=clock, transport=transport, events=events))


def flow_with_sso_as_mfa(policy: Policy, *, clock: FakeClock, transport: FakeTransport,
                         events: list[EventSink]) -> SsoCountsAsMfa:
    return SsoCountsAsMfa(policy_flow(policy, clock=clock, transport=transport, events=events))


# --- crashes on one input form --------------------------------------------------------------------------------------


class NormalisingNumbers(Facade):
    """Normalises a number to E.164 before the flow sees it, with no default region."""

    def send_sms_otp(self, organization_id: str, member_id: str, *, mfa_phone_number: str | None = None,
                     **kwargs: Any) -> Any:
        if mfa_phone_number is not None:
            parsed = phonenumbers.parse(mfa_phone_number, None)  # raises on "(415) 555-0101"
            mfa_phone_number = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
        return self.flow.send_sms_otp(organization_id, member_id, mfa_phone_number=mfa_phone_number, **kwargs)


#: The application's role table, which nobody filled in for the second organization.
ROLES = {"alice": "admin", "ben": "member", "cara": "member", "dan": "member"}


class RoleLookup(Facade):
    """Looks up the member's role for the audit log before logging it in."""

    def __init__(self, flow: MfaFlow) -> None:
        super().__init__(flow)
        self.audit: list[tuple[str, str]] = []

    def authenticate_primary(self, organization_id: str, member_id: str, method: PrimaryMethod, **kwargs: Any) -> Any:
        role = ROLES[member_id]
        result = self.flow.authenticate_primary(organization_id, member_id, method, **kwargs)
        self.audit.append((member_id, role))
        return result


def flow_normalising_numbers(policy: Policy, *, clock: FakeClock, transport: FakeTransport,
                             events: list[EventSink]) -> NormalisingNumbers:
    return NormalisingNumbers(policy_flow(policy, clock=clock, transport=transport, events=events))


def flow_with_role_lookup(policy: Policy, *, clock: FakeClock, transport: FakeTransport,
                          events: list[EventSink]) -> RoleLookup:
    return RoleLookup(policy_flow(policy, clock=clock, transport=transport, events=events))


# --- users' properties ----------------------------------------------------------------------------------------------


def at_most_three_texts_in_ten_minutes(world: MfaWorld) -> None:
    """Nobody gets more than 3 texts in 10 minutes (read from the otp.sent events)."""
    now = world.clock.now()
    recent: dict[str | None, int] = {}
    for event in world.events.named("otp.sent"):
        if now - event.at < 600:
            recent[event.member_id] = recent.get(event.member_id, 0) + 1
    assert all(n <= 3 for n in recent.values()), f"texts in the last 10 minutes: {recent}"


def idle_half_hour_needs_a_new_code(world: MfaWorld) -> None:
    """After 30 idle minutes, a member with a factor must prove it again (read from world.last and world.steps)."""
    last = world.last
    if last.action != "check_session" or last.error is not None or last.result.step_up_required:
        return
    record = world.members[last.member_id or ""]
    member = world.flow.get_member(record.organization_id, record.member_id)
    if not ((member.mfa_phone_number and member.mfa_phone_number_verified) or member.totp_registration_id):
        return
    active = [step.at for step in world.steps[:-1] if step.member_id == last.member_id and step.error is None
              and (step.action in ("verify", "record_factor", "check_session") or (step.action == "login"
                                                                     and step.result.session_token))]
    assert last.at - active[-1] <= 1800, f"{last.member_id}'s session passed after {last.at - active[-1]:g} s idle"


def texts_stay_in_the_us(world: MfaWorld) -> None:
    """The company only texts US numbers."""
    regions = {str(phonenumbers.region_code_for_number(phonenumbers.parse(m.to))) for m in world.sms.sent}
    assert regions <= {"US"}, f"texted regions {sorted(regions)}"

