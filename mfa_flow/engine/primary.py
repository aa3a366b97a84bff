"""Primary authentication (spec §6.8): the caller authenticated the member; issue an IST or a session,
and send the first code automatically when MFA is owed and the SMS conditions hold."""

from __future__ import annotations

from functools import partial

from mfa_flow import core, crypto, machine
from mfa_flow.crypto import token_digest
from mfa_flow.engine.context import Context, Outcome, Plan, Step
from mfa_flow.engine.reading import Token, read_subject, resolve, text, token_record
from mfa_flow.engine.send import send_automatically
from mfa_flow.engine.sessions import new_session
from mfa_flow.errors import RequestError
from mfa_flow.results import PrimaryAuthResult
from mfa_flow.state import Factor, LoginState, SessionPhase, SessionState, clone, keys
from mfa_flow.stores import Write

__all__ = ["decide", "plan"]


def plan(ctx: Context, now: float, organization_id: object, member_id: object, method: object,
         session_token: object, locale: object) -> Plan:
    name = method if isinstance(method, str) else ""
    method_error = None if name in core.PRIMARY_FACTORS else RequestError(
        "bad_request", "method: unknown primary authentication method "
        + (repr(name) if isinstance(method, str) else f"(of type {type(method).__name__}, not a string)"))
    loc = None if locale is None else core.check_locale(locale)
    ist = crypto.new_token()  # minted (and hashed) once per call: re-runs and the hooks' verdict see one binding
    return partial(decide, ctx, now, organization_id, member_id, name, method_error, session_token, loc, ist,
                   token_digest(ist))


def decide(ctx: Context, now: float, org_ref: object, member_ref: object, method: str,
           method_error: RequestError | None, session_ref: object, locale: str | None, ist: str,
           ist_digest: str, verdict: object) -> Step:
    org, base = yield from resolve(ctx, org_ref, member_ref)
    if method_error is not None:  # checked after organization, member and status (spec §5)
        raise method_error
    session_token = None if session_ref is None else text(session_ref, "session_token")
    policy = ctx.policy
    token = None if session_token is None else Token.of("session", session_token)
    sub, got = yield from read_subject(org, base, now, token)
    passed = token_record(ctx, got, sub, token, now)
    passed_digest = token.digest if token is not None else ""
    core.check_lock(sub.guard)
    member = sub.member
    oid, mid = org.organization_id, base.member_id
    out = Outcome()
    primary = Factor(*core.PRIMARY_FACTORS[method], now)
    owed = core.mfa_owed(org, member)

    if method != "discovery" and isinstance(passed, SessionState) and passed.state is SessionPhase.ACTIVE:
        session = clone(passed)
        machine.fire(machine.SESSION, "add_factor", session, factor=primary, now=now)
        out.writes[keys.session(passed_digest)] = Write(session, session.expires_at)
        out.finish = lambda _: PrimaryAuthResult(
            member_id=mid, organization_id=oid, member=member, organization=org, member_authenticated=True,
            session_token=session_token or "", member_session=core.member_session(session, org))
        return out
    if method != "discovery" and not owed:
        token_value, new = new_session(ctx, out, sub, (primary,), now, policy.default_session_minutes)
        out.finish = lambda _: PrimaryAuthResult(
            member_id=mid, organization_id=oid, member=member, organization=org, member_authenticated=True,
            session_token=token_value, member_session=core.member_session(new, org))
        return out

    login = LoginState(oid, mid, now + policy.ist_ttl, (primary,))
    out.writes[keys.login(ist_digest)] = Write(login, login.expires_at)
    if method != "discovery" and owed and core.sms_conditions(org, member):
        yield from send_automatically(ctx, verdict, out, sub, now, ist_digest, "login", locale)

    def finish(delivered: bool) -> PrimaryAuthResult:
        return PrimaryAuthResult(
            member_id=mid, organization_id=oid, member=member, organization=org,
            member_authenticated=False, intermediate_session_token=ist,
            mfa_required=core.mfa_required(member, delivered) if owed else None)

    out.finish = finish
    return out
