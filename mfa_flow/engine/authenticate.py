"""The authenticate endpoint (docs/rules.md: order of checks, codes, lock, success): the checks in their order, then the
comparison; a wrong code counts on the code and on the member in one commit, a right one completes MFA."""

from __future__ import annotations

from functools import partial
from typing import Any

from mfa_flow import core, machine
from mfa_flow.arguments import plain_int, plain_str, text
from mfa_flow.crypto import is_code_shaped, token_digest
from mfa_flow.engine.context import DELETE, Context, Outcome, Plan, Remote, Step, value
from mfa_flow.engine.reading import (
    Token,
    forwarded,
    one_token,
    phone_holder,
    read_subject,
    refresh,
    refuse_revoked,
    resolve,
    token_record,
)
from mfa_flow.engine.sessions import consume_ist, grow_session, index_key, new_session, record_session
from mfa_flow.errors import (
    CodeRejected,
    MfaError,
    PolicyRefusal,
    ProviderError,
    RateLimited,
    RequestError,
    UnexpectedResponse,
)
from mfa_flow.policy import SESSION_MINUTES_RANGE
from mfa_flow.records import Member, Organization
from mfa_flow.results import AuthenticateResult
from mfa_flow.state import (
    CodePhase,
    Factor,
    GuardPhase,
    LoginState,
    PhoneLink,
    SessionPhase,
    SessionState,
    clone,
    replace,
)
from mfa_flow.stores import Write
from mfa_flow.transports import DeliveryRejected
from mfa_flow.wire import AUTHENTICATE, member_session_from, organization_from, session_record, text_at

__all__ = ["decide", "decide_remote", "plan", "session_minutes", "settle"]


def plan(ctx: Context, now: float, organization_id: object, member_id: object, code: object, ist: object,
         session_token: object, session_jwt: object, session_duration_minutes: object, set_mfa_enrollment: object,
         set_default_mfa: object) -> Plan:
    token = one_token(ist, session_token, session_jwt, required=True)
    assert token is not None
    minutes = None if session_duration_minutes is None else session_minutes(session_duration_minutes)
    enrollment = None if set_mfa_enrollment is None else text(set_mfa_enrollment, "set_mfa_enrollment")
    if enrollment is not None and enrollment not in ("enroll", "unenroll"):
        raise RequestError("bad_request", "set_mfa_enrollment: must be 'enroll' or 'unenroll'")
    if set_default_mfa is not None and not isinstance(set_default_mfa, bool):
        raise RequestError("bad_request", "set_default_mfa: must be True or False")
    if ctx.remote is not None:  # the code goes to Stytch as JSON text, as Stytch's SDK sends it
        return partial(decide_remote, ctx, now, organization_id, member_id, token, text(code, "code"), minutes,
                       enrollment, set_default_mfa)
    # locally, anything but six ASCII digits is a wrong code (docs/rules.md, codes): a string is looked at as a
    # plain copy
    submitted = plain_str(code) if isinstance(code, str) else code
    return partial(decide, ctx, now, organization_id, member_id, token, submitted, minutes, enrollment,
                   set_default_mfa)


def session_minutes(minutes: object) -> int:
    low, high = SESSION_MINUTES_RANGE
    if isinstance(minutes, bool) or not isinstance(minutes, int) or not low <= plain_int(minutes) <= high:
        raise RequestError("invalid_session_duration_minutes",
                           f"session_duration_minutes: must be an integer within {low}..{high}")
    return plain_int(minutes)


def decide(ctx: Context, now: float, org_ref: object, member_ref: object, token: Token, code_input: object,
           minutes: int | None, enrollment: str | None, set_default: bool | None, _verdict: object) -> Step:
    org, base = yield from resolve(ctx, org_ref, member_ref, session=token)       # 2
    policy = ctx.policy
    sub, got = yield from read_subject(org, base, now, token, index_key(base.member_id))
    record = token_record(ctx, got, sub, token, now)                              # 3
    digest = token.digest
    core.check_lock(sub.guard)                                                    # 4
    member = sub.member
    core.check_methods(org, member)                                               # 4b
    code = sub.code
    oid, mid = org.organization_id, base.member_id
    if code.state is not CodePhase.SENT:                                          # 5
        raise CodeRejected("unable_to_auth_otp_code",
                           "code: the member has no live code (none sent, expired, used, or too many attempts)")
    matched = (                                                                   # 6
        is_code_shaped(code_input)
        and code.bound_to in ("", digest)
        # `is True`: only a real yes matches; a truthy non-bool from a provider fails closed
        and ctx.local_provider().verify(code.code_id, code_input, code.digest) is True  # type: ignore[arg-type]
    )
    out = Outcome()
    code = clone(code)
    if not machine.fire(machine.CODE, "verify", code, matched=matched):
        guard = clone(sub.guard)
        machine.fire(machine.CODE, "reject", code, max_attempts=policy.max_attempts_per_code)
        machine.fire(machine.GUARD, "fail", guard, now=now, threshold=policy.lockout_threshold,
                     lock_for=policy.lockout_duration)
        ctx.note(out, "otp.failed", now, oid, mid, code.phone, "otp_code_not_found",
                 attempts=code.attempts, failures=guard.failures)
        if guard.state is GuardPhase.LOCKED:
            machine.fire(machine.CODE, "kill", code)
            ctx.note(out, "member.locked", now, oid, mid, code.phone,
                     "user_lock_limit_reached", locked_until=guard.locked_until)
            out.error = RateLimited("user_lock_limit_reached", "member: locked after too many wrong codes")
        else:
            out.error = CodeRejected("otp_code_not_found", "code: wrong code")
        out.writes[sub.k_code] = Write(code if code.state is CodePhase.SENT else None, code.expires_at)
        out.writes[sub.k_guard] = Write(guard, guard.locked_until or None)
        ctx.member_changed(out, sub, sub.overlay, guard, now)
        return out

    phone = code.phone
    changes: dict[str, object] = {}  # only what differs from the merged view: a routine login writes none
    overlay = sub.overlay
    if overlay.pending_phone == phone and policy.link_phone_on == "verify" and not member.mfa_phone_number:
        holder, link_key = (yield from phone_holder(ctx, sub, phone))
        if holder is not None:
            raise PolicyRefusal("duplicate_member_phone_number",
                                "mfa_phone_number: linked to another member of the organization")
        changes.update(phone=phone, pending_phone="", phone_verified=True)
        out.writes[link_key] = Write(PhoneLink(mid))
        ctx.note(out, "phone.linked", now, oid, mid, phone, verified=True)
    elif not member.mfa_phone_number_verified and member.mfa_phone_number == phone:
        changes.update(phone=phone, phone_verified=True)
    out.writes[sub.k_code] = DELETE
    enrolled = True if org.mfa_policy == "REQUIRED_FOR_ALL" else (
        None if enrollment is None else enrollment == "enroll")
    if enrolled is not None and enrolled != member.mfa_enrolled:
        changes["enrolled"] = enrolled
    if set_default and member.default_mfa_method != "sms_otp":
        changes["default_mfa_method"] = "sms_otp"
    guard = sub.guard
    if guard.failures:
        guard = clone(guard)
        machine.fire(machine.GUARD, "succeed", guard)
        out.writes[sub.k_guard] = Write(guard)
    if changes:
        overlay = replace(overlay, **changes)
        out.writes[sub.k_member] = Write(overlay)
    ctx.note(out, "otp.verified", now, oid, mid, phone, purpose=code.purpose)
    after = ctx.member_changed(out, sub, overlay, guard, now)
    factor = Factor(*core.SMS_FACTOR, now, phone)
    session_token = ""
    if isinstance(record, LoginState):
        consume_ist(out, record, token)
        session_token, session = new_session(
            ctx, out, sub, (*record.factors, factor), now,
            minutes if minutes is not None else policy.default_session_minutes, got)
    else:
        assert isinstance(record, SessionState)
        session_token = token.value
        session = grow_session(ctx, out, record, digest, factor, now, minutes, got)
    out.finish = lambda *_: AuthenticateResult(member_id=mid, member=after, organization=org,
                                              session_token=session_token,
                                              member_session=core.member_session(session, org))
    return out


# --- Stytch mode (docs/stytch.md): Stytch judges the code; the attempt is counted here first ------------------

def decide_remote(ctx: Context, now: float, org_ref: object, member_ref: object, token: Token, code: str,
                  minutes: int | None, enrollment: str | None, set_default: bool | None, _verdict: object) -> Step:
    """The local checks, then the attempt counted on the member before Stytch is asked (a crash after
    this commit leaves it counted: fail closed). Token validity and the live code are Stytch's to judge."""
    org, base = yield from resolve(ctx, org_ref, member_ref, session=token)       # 2
    sub, got = yield from read_subject(org, base, now, token)
    refuse_revoked(got, token)                                                    # 3, Stytch's but for that
    core.check_lock(sub.guard)                                                    # 4
    core.check_methods(org, sub.member)                                           # 4b
    guard = clone(sub.guard)
    machine.fire(machine.GUARD, "count", guard)
    out = Outcome()
    out.writes[sub.k_guard] = Write(guard)
    body = AUTHENTICATE.body(organization_id=org.organization_id, member_id=base.member_id, code=code,
                             session_duration_minutes=minutes, set_mfa_enrollment=enrollment,
                             set_default_mfa=set_default, **forwarded(token))
    out.remote = Remote(ctx.remote_provider().authenticate, (body,), partial(settle, ctx, now, org, base, token))
    return out


def settle(ctx: Context, now: float, org: Organization, base: Member, token: Token, answer: Any,
           failure: BaseException | None) -> Step:
    """What Stytch answered: a success resets the counter, records the session locally and refreshes the
    member view; a wrong code keeps the counted failure (and locks at the threshold); any other answer
    takes the attempt back. No answer at all keeps it counted (the code may have been judged)."""
    sub, got = yield from read_subject(org, base, now, token, index_key(base.member_id))
    out = Outcome()
    oid, mid = org.organization_id, base.member_id
    guard = sub.guard
    if failure is None:
        if guard.failures:
            guard = clone(guard)
            machine.fire(machine.GUARD, "succeed", guard)
            out.writes[sub.k_guard] = Write(guard)
        if sub.code.state is CodePhase.SENT:
            out.writes[sub.k_code] = DELETE
        if sub.overlay is not core.EMPTY_OVERLAY:  # Stytch's member record is the truth from now on
            out.writes[sub.k_member] = DELETE
        after = core.merged_member((yield from refresh(ctx, answer)), core.EMPTY_OVERLAY, guard)
        shown = member_session_from(answer)
        session = session_record(shown, now)
        if token.kind == "ist" and token.key in got:
            out.writes[token.key] = DELETE  # Stytch consumed it: so does the local record
        prior = value(got, token.key, SessionState, None) if token.kind == "session" else None
        record_session(out, session, token_digest(text_at(answer, "session_token")), got, now)
        ctx.note(out, "otp.verified", now, oid, mid, after.mfa_phone_number, purpose=sub.code.purpose or "login")
        if prior is not None and prior.state is SessionPhase.STEP_UP_REQUIRED:
            ctx.note(out, "session.step_up_completed", now, oid, mid, factor="otp")
        elif prior is None:
            ctx.note(out, "session.created", now, oid, mid, factors=[f.type for f in session.factors])
        if after != sub.member:
            ctx.note(out, "member.updated", now, oid, mid, after.mfa_phone_number, member=after)
        out.finish = lambda *_: AuthenticateResult(
            member_id=mid, member=after, organization=organization_from(answer),
            session_token=text_at(answer, "session_token"), session_jwt=text_at(answer, "session_jwt", default=""),
            member_session=shown, request_id=text_at(answer, "request_id"))
        return out
    guard = clone(guard)
    phone = sub.member.mfa_phone_number
    judged = _judged_wrong(failure)
    if judged is not None:
        # A wrong code keeps the counted failure and locks at the threshold; Stytch's own lock (its answer to
        # the failure that reached *its* threshold, or to any attempt while it holds the member) locks here too.
        threshold = ctx.policy.lockout_threshold if judged == "otp_code_not_found" else 0
        locked_now = machine.fire(machine.GUARD, "confirm", guard, now=now, threshold=threshold,
                                  lock_for=ctx.policy.lockout_duration)
        ctx.note(out, "otp.failed", now, oid, mid, phone, judged, failures=guard.failures)
        if locked_now:  # once, by the settlement that locked: later ones find it locked
            ctx.note(out, "member.locked", now, oid, mid, phone, "user_lock_limit_reached",
                     locked_until=guard.locked_until)
            if sub.code.state is CodePhase.SENT:
                out.writes[sub.k_code] = DELETE
        assert isinstance(failure, MfaError)
        error: MfaError = failure if guard.state is not GuardPhase.LOCKED or judged != "otp_code_not_found" \
            else RateLimited("user_lock_limit_reached", "member: locked after too many wrong codes")
    elif _not_judged(failure):
        machine.fire(machine.GUARD, "uncount", guard)
        error = failure if isinstance(failure, MfaError) else ProviderError(
            "internal_server_error", "Stytch could not be reached; the attempt was not counted")
        ctx.note(out, "otp.failed", now, oid, mid, phone, error.error_type, failures=guard.failures)
    else:
        error = failure if isinstance(failure, MfaError) else ProviderError(
            "internal_server_error", "Stytch gave no answer to the authenticate; the attempt stays counted")
        ctx.note(out, "otp.failed", now, oid, mid, phone, error.error_type, failures=guard.failures)
    out.writes[sub.k_guard] = Write(guard, guard.locked_until or None)
    ctx.member_changed(out, sub, sub.overlay, guard, now)
    out.error = error
    return out


def _judged_wrong(failure: BaseException | None) -> str | None:
    """Stytch's answer that the attempt failed: a wrong code, or its own lock on the member."""
    if isinstance(failure, MfaError) and failure.error_type in ("otp_code_not_found", "user_lock_limit_reached"):
        return failure.error_type
    return None


def _not_judged(failure: BaseException | None) -> bool:
    """Stytch surely did not judge the code: it refused the request for another reason, or was never reached."""
    return isinstance(failure, DeliveryRejected) or (
        isinstance(failure, MfaError) and not isinstance(failure, UnexpectedResponse))
