"""``authenticate_session`` (docs/rules.md, sessions): a fresh session is touched; an idle one needs a step-up, and the
step-up code goes out automatically when the SMS conditions hold and none is live for this session."""

from __future__ import annotations

from functools import partial

from mfa_flow import core, machine
from mfa_flow.engine.context import Context, Outcome, Plan, Step, value
from mfa_flow.engine.effects import Read
from mfa_flow.engine.reading import Token, one_token, read_subject, resolve
from mfa_flow.engine.send import send_automatically
from mfa_flow.errors import TokenError
from mfa_flow.records import Organization
from mfa_flow.results import SessionCheck
from mfa_flow.state import CodePhase, GuardPhase, SessionPhase, SessionState, clone
from mfa_flow.stores import Write

__all__ = ["decide", "plan"]


def plan(ctx: Context, now: float, session_token: object, session_jwt: object) -> Plan:
    token = one_token(None, session_token, session_jwt, required=True)
    assert token is not None
    if token.kind == "jwt":
        raise TokenError("unable_to_parse_session_jwt", "session_jwt: no JWTs are issued in local mode" if
                         ctx.remote is None else "session_jwt: the flow keeps its sessions by session_token")
    return partial(decide, ctx, now, token)


def decide(ctx: Context, now: float, token: Token, verdict: object) -> Step:
    digest, k_session = token.digest, token.key
    got = yield Read([k_session])
    record = core.check_session(value(got, k_session, SessionState, None), None, None, now, None, ctx.policy)
    org, base = yield from resolve(ctx, record.organization_id, record.member_id, session=token)
    if record.state is SessionPhase.ACTIVE and not core.idle_too_long(record, now, ctx.policy):
        return touched(record, k_session, org, now)  # the common case: it owes no step-up, so no member record
    sub, _ = yield from read_subject(org, base, now)
    session = core.settle_idle(record, now, sub.member, ctx.policy)
    if session.state is SessionPhase.ACTIVE:  # idle, but the member has no active factor left to ask for
        return touched(session, k_session, org, now)
    out = Outcome()
    oid, mid = org.organization_id, base.member_id
    if session is not record:
        out.writes[k_session] = Write(session, session.expires_at)
    member = sub.member
    ctx.note(out, "session.step_up_required", now, oid, mid, member.mfa_phone_number)
    code = sub.code
    live = code.state is CodePhase.SENT and code.bound_to == digest and code.purpose == "step_up"
    locked = sub.guard.state is GuardPhase.LOCKED
    if not live and not locked and ctx.policy.resend_on_inactivity and core.sms_conditions(org, member):
        yield from send_automatically(ctx, verdict, out, sub, now, digest, "step_up", None, token)

    def finish(delivered: bool, _answer: object) -> SessionCheck:
        initiated = live or delivered
        return SessionCheck(member_session=core.member_session(session, org), step_up_required=True,
                            secondary_auth_initiated="sms_otp" if initiated else None)

    out.finish = finish
    return out


def touched(session: SessionState, k_session: str, org: Organization, now: float) -> Outcome:
    """A session that needs no step-up: its last access is set, and it is answered."""
    session = clone(session)
    machine.fire(machine.SESSION, "touch", session, now=now)
    out = Outcome()
    out.writes[k_session] = Write(session, session.expires_at)
    out.finish = lambda *_: SessionCheck(member_session=core.member_session(session, org), step_up_required=False)
    return out
