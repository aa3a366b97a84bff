"""``record_mfa_factor``: a factor the caller verified itself (TOTP, a recovery code) completes MFA like a code."""

from __future__ import annotations

from functools import partial

from mfa_flow import core
from mfa_flow.arguments import plain_str
from mfa_flow.engine.context import Context, Outcome, Plan, Step
from mfa_flow.engine.reading import Token, one_token, read_subject, resolve, token_record
from mfa_flow.engine.sessions import consume_ist, grow_session, index_key, new_session
from mfa_flow.errors import ConfigurationError, RequestError
from mfa_flow.results import AuthenticateResult
from mfa_flow.state import Factor, LoginState, SessionState

__all__ = ["decide", "plan"]


def plan(ctx: Context, now: float, organization_id: object, member_id: object, factor_type: object, ist: object,
         session_token: object) -> Plan:
    if not isinstance(factor_type, str) or plain_str(factor_type) not in core.RECORDED_FACTORS:
        raise RequestError("bad_request", f"factor_type: must be one of {', '.join(sorted(core.RECORDED_FACTORS))}")
    factor_type = plain_str(factor_type)
    token = one_token(ist, session_token, None, required=True)
    assert token is not None
    if ctx.remote is not None and token.kind == "ist":
        raise ConfigurationError("record_mfa_factor: in Stytch mode an IST becomes a session at Stytch (its TOTP or "
                                 "recovery-code endpoint); record that answer with record_primary_auth")
    return partial(decide, ctx, now, organization_id, member_id, token, factor_type)


def decide(ctx: Context, now: float, org_ref: object, member_ref: object, token: Token, factor_type: str,
           _verdict: object) -> Step:
    org, base = yield from resolve(ctx, org_ref, member_ref, session=token)
    sub, got = yield from read_subject(org, base, now, token, index_key(base.member_id))
    record = token_record(ctx, got, sub, token, now)
    core.check_lock(sub.guard)
    factor = Factor(*core.RECORDED_FACTORS[factor_type], now)
    out = Outcome()
    if isinstance(record, LoginState):
        consume_ist(out, record, token)
        session_token, session = new_session(ctx, out, sub, (*record.factors, factor), now,
                                             ctx.policy.default_session_minutes, got)
    else:
        assert isinstance(record, SessionState)
        session_token = token.value
        session = grow_session(ctx, out, record, token.digest, factor, now, None, got)
    member = sub.member
    out.finish = lambda *_: AuthenticateResult(member_id=base.member_id, member=member, organization=org,
                                              session_token=session_token,
                                              member_session=core.member_session(session, org))
    return out
