"""The sans-I/O core: every rule of the flow as a pure function over records and a clock value.

The orchestrators (``mfa_flow.flow``) read records, call these in the order of checks (docs/rules.md),
and commit what they return. Nothing here reads a clock, a store or the network.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Final

from mfa_flow import machine
from mfa_flow.arguments import text
from mfa_flow.errors import PolicyRefusal, RateLimited, RequestError, TokenError
from mfa_flow.phone import canonical_phone, mask_phone
from mfa_flow.policy import Policy
from mfa_flow.records import Member, Organization, to_datetime
from mfa_flow.results import AuthenticationFactor, MemberOptions, MemberSession, MfaRequired
from mfa_flow.state import (
    CodePhase,
    CodeState,
    Factor,
    GuardPhase,
    GuardState,
    LoginState,
    MemberState,
    SendWindow,
    SessionPhase,
    SessionState,
    clone,
    replace,
)

__all__ = [
    "LOCALES",
    "PRIMARY_FACTORS",
    "UNIFORM_REFUSALS",
    "carries_active_factor",
    "check_ist",
    "check_limits",
    "check_lock",
    "check_methods",
    "check_session",
    "idle_too_long",
    "merged_member",
    "mfa_owed",
    "settle_code",
    "settle_guard",
    "settle_idle",
    "sms_conditions",
]

#: Stytch's locales (docs and SDK 15.3), matched case-insensitively.
LOCALES: Final = {
    loc.lower(): loc
    for loc in ("en", "es", "fr", "pt-br", "it", "de-DE", "zh-Hans", "ca-ES", "ja", "ru", "nl", "pl", "tr",
                "fa", "vi", "cs")
}

#: Primary methods (``PrimaryMethod``) -> (factor type, delivery method), checked against the official SDK's enums.
PRIMARY_FACTORS: Final[dict[str, tuple[str, str]]] = {
    "email_magic_link": ("magic_link", "email"),
    "sso": ("sso", "sso_saml"),
    "oauth": ("oauth", "oauth_google"),
    "password": ("password", "knowledge"),
    "email_otp": ("email_otp", "email"),
    "discovery": ("magic_link", "email"),
}

#: Caller-verified factors accepted by record_mfa_factor.
RECORDED_FACTORS: Final = {"totp": ("totp", "authenticator_app"),
                           "recovery_code": ("recovery_codes", "recovery_code")}
SMS_FACTOR: Final = ("otp", "sms")

#: Refusals reported as bad_request under Policy.uniform_refusals (the reason goes to the event only).
UNIFORM_REFUSALS: Final = frozenset({
    "member_not_found", "action_available_only_for_active_members", "member_phone_number_not_found",
    "duplicate_member_phone_number", "duplicate_member_phone_number_for_member",
    "member_session_member_id_mismatch", "invalid_intermediate_session_token_for_organization",
})

EMPTY_OVERLAY: Final = MemberState()
OPEN_GUARD: Final = GuardState()
NO_CODE: Final = CodeState()


# --- the merged member view (docs/concepts.md) --------------------------------------------------------

def merged_member(base: Member, overlay: MemberState, guard: GuardState) -> Member:
    """The directory's record overlaid with what the flow wrote, and the lock state."""
    locked = guard.state is GuardPhase.LOCKED  # settled by the caller: the machine decides when it ends
    phone = canonical_phone(base.mfa_phone_number) if overlay.phone is None else overlay.phone
    if (overlay is EMPTY_OVERLAY and not locked and not base.is_locked and base.lock_expires_at is None
            and phone == base.mfa_phone_number):
        return base
    return replace(
        base,
        mfa_phone_number=phone,
        mfa_phone_number_verified=(
            base.mfa_phone_number_verified if overlay.phone_verified is None else overlay.phone_verified
        ),
        mfa_enrolled=base.mfa_enrolled if overlay.enrolled is None else overlay.enrolled,
        default_mfa_method=(
            base.default_mfa_method if overlay.default_mfa_method is None else overlay.default_mfa_method
        ),
        is_locked=locked,
        lock_expires_at=to_datetime(guard.locked_until) if locked else None,
    )


def mfa_owed(org: Organization, member: Member) -> bool:
    return org.mfa_policy == "REQUIRED_FOR_ALL" or member.mfa_enrolled


def sms_conditions(org: Organization, member: Member) -> bool:
    """When a code may be sent without the caller asking (docs/rules.md, primary authentication)."""
    return (
        bool(member.mfa_phone_number)
        and (org.allows_sms() or member.is_breakglass)
        and member.default_mfa_method in ("", "sms_otp")
    )


def mfa_required(member: Member, initiated: bool) -> MfaRequired:
    return MfaRequired(
        MemberOptions(mask_phone(member.mfa_phone_number), member.totp_registration_id),
        "sms_otp" if initiated else None,
    )


# --- lazy expiry: evaluated from the clock value of the call, through the machines --------------------

def settle_guard(guard: GuardState, now: float) -> GuardState:
    if guard.state is GuardPhase.LOCKED and now >= guard.locked_until:
        guard = clone(guard)
        machine.fire(machine.GUARD, "unlock", guard, now=now)
    return guard


def settle_code(code: CodeState, now: float) -> CodeState:
    if code.state is CodePhase.SENT and now >= code.expires_at:
        code = clone(code)
        machine.fire(machine.CODE, "expire", code, now=now)
    return code


# --- the checks, in the order of docs/rules.md --------------------------------------------------------

def check_ist(login: LoginState | None, organization_id: str, member_id: str, now: float) -> LoginState:
    if login is None:
        raise TokenError("intermediate_session_not_found", "intermediate_session_token: not found")
    if now >= login.expires_at:
        settled = clone(login)
        machine.fire(machine.LOGIN, "expire", settled, now=now)
        if settled.state is not machine.L.ISSUED:
            raise TokenError("intermediate_session_not_found", "intermediate_session_token: expired")
        login = settled
    if login.organization_id != organization_id:
        raise TokenError(
            "invalid_intermediate_session_token_for_organization",
            "intermediate_session_token: issued for another organization",
        )
    if login.member_id != member_id:
        raise TokenError("member_session_member_id_mismatch", "intermediate_session_token: another member's")
    return login


def check_session(session: SessionState | None, organization_id: str | None, member_id: str | None,
                  now: float, member: Member | None, policy: Policy) -> SessionState:
    """Validity, ownership, then the lazy inactivity check (which needs the member's factors)."""
    if session is None or session.state is SessionPhase.REVOKED:
        raise TokenError("session_not_found", "session_token: not found")
    if now >= session.expires_at:
        settled = clone(session)
        machine.fire(machine.SESSION, "expire", settled, now=now)
        if settled.state is SessionPhase.EXPIRED:
            raise TokenError("session_not_found", "session_token: expired")
        session = settled
    if organization_id is not None and (
        session.organization_id != organization_id or session.member_id != member_id
    ):
        raise TokenError("member_session_member_id_mismatch", "session_token: another member's")
    return session if member is None else settle_idle(session, now, member, policy)


def idle_too_long(session: SessionState, now: float, policy: Policy) -> bool:
    return now - session.last_accessed_at > policy.inactivity_timeout


def settle_idle(session: SessionState, now: float, member: Member, policy: Policy) -> SessionState:
    """The lazy inactivity check of a valid session: idle too long with an active factor → step-up."""
    if session.state is SessionPhase.ACTIVE and idle_too_long(session, now, policy):
        session = clone(session)
        machine.fire(machine.SESSION, "idle", session, now=now, inactivity_timeout=policy.inactivity_timeout,
                     has_active_factor=member.has_active_factor)
    return session


def check_lock(guard: GuardState) -> None:
    """``guard`` must be settled (``settle_guard``): the lock ends only through the machine's unlock."""
    if guard.state is GuardPhase.LOCKED:
        raise RateLimited("user_lock_limit_reached", "member: locked after too many wrong codes")


def check_methods(org: Organization, member: Member) -> None:
    if not org.allows_sms() and not member.is_breakglass:
        raise PolicyRefusal(
            "operation_restricted_by_organization_mfa_methods",
            "organization: sms_otp is not among its allowed MFA methods",
        )


def carries_active_factor(factors: Iterable[Factor], member: Member) -> bool:
    """Whether a token's factors include an active MFA factor of this member (docs/rules.md, token rules)."""
    for f in factors:
        if (f.type, f.delivery_method) == SMS_FACTOR:
            if member.mfa_phone_number_verified and f.phone_number == member.mfa_phone_number:
                return True
        elif f.type == "totp":
            if member.totp_registration_id:
                return True
        elif f.type == "recovery_codes":
            return True
    return False


def check_limits(policy: Policy, now: float, windows: Iterable[tuple[str, SendWindow, tuple[int, float]]],
                 member_window: SendWindow) -> None:
    """Sliding windows over admitted sends, then the per-member cooldown (docs/rules.md, send limits)."""
    for name, window, (count, seconds) in windows:
        if window.times and sum(1 for t in window.times if now - t < seconds) >= count:
            raise RateLimited("too_many_requests", f"send limit reached ({name}: {count} per {seconds:g} s)")
    if policy.resend_cooldown and member_window.times and now - member_window.times[-1] < policy.resend_cooldown:
        raise RateLimited("too_many_requests", f"resend cooldown: wait {policy.resend_cooldown:g} s between sends")


def counted(window: SendWindow, now: float, keep: float) -> SendWindow:
    """The window with this admitted send added and sends older than ``keep`` seconds dropped."""
    if not window.times:  # a number or member seen for the first time: the common case
        return SendWindow((now,))
    return SendWindow((*(t for t in window.times if now - t < keep), now))


def check_locale(locale: object) -> str | None:
    if locale is None:
        return None
    canonical = LOCALES.get(text(locale, "locale", "invalid_locale").lower())
    if canonical is None:  # the value is not quoted: it is the caller's, of any size
        raise RequestError("invalid_locale", f"locale: not a supported locale; one of {', '.join(LOCALES.values())}")
    return canonical


# --- results ----------------------------------------------------------------------------------------

def phone_id(organization_id: str, member_id: str, e164: str) -> str:
    """A stable id for a member's phone, shaped like Stytch's ``phone_id`` (a UUID from a BLAKE2b, which
    Python computes itself: OpenSSL's digest lookup costs more than the hash of these few bytes)."""
    h = hashlib.blake2b(f"{organization_id}\x00{member_id}\x00{e164}".encode(), digest_size=16,
                        person=b"mfa_flow/phone").hexdigest()
    return f"phone-number-{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


def member_session(session: SessionState, org: Organization) -> MemberSession:
    # A new session's start, last access and newest factor share one clock value: one datetime for them.
    started = datetime.fromtimestamp(session.started_at, UTC)  # to_datetime, without a call per value
    accessed = (started if session.last_accessed_at == session.started_at
                else datetime.fromtimestamp(session.last_accessed_at, UTC))
    oid, mid = session.organization_id, session.member_id
    factors = []
    for f in session.factors:
        at = f.last_authenticated_at
        factors.append(AuthenticationFactor(
            f.type, f.delivery_method,
            accessed if at == session.last_accessed_at else started if at == session.started_at
            else datetime.fromtimestamp(at, UTC),
            {"phone_id": phone_id(oid, mid, f.phone_number), "phone_number": f.phone_number}
            if f.phone_number else None,
        ))
    return MemberSession(
        member_session_id=session.session_id,
        member_id=mid,
        organization_id=oid,
        organization_slug=org.organization_slug,
        started_at=started,
        last_accessed_at=accessed,
        expires_at=datetime.fromtimestamp(session.expires_at, UTC),
        authentication_factors=tuple(factors),
    )
