"""What completing MFA writes: the IST consumed, a new session, or a factor added to a session (§6.9, §6.10)."""

from __future__ import annotations

from mfa_flow import crypto, machine
from mfa_flow.crypto import new_id, token_digest
from mfa_flow.engine.context import DELETE, Context, Outcome, Subject
from mfa_flow.engine.reading import Token
from mfa_flow.errors import TokenError
from mfa_flow.state import Factor, LoginState, SessionPhase, SessionState, clone, keys
from mfa_flow.stores import Write

__all__ = ["consume_ist", "grow_session", "new_session"]


def consume_ist(out: Outcome, record: LoginState, token: Token) -> None:
    """The IST is single-use: consumed in the same commit that issues the session."""
    login = clone(record)
    if not machine.fire(machine.LOGIN, "consume", login):
        raise TokenError("intermediate_session_not_found", "intermediate_session_token: already used")
    out.writes[token.key] = DELETE


def new_session(ctx: Context, out: Outcome, sub: Subject, factors: tuple[Factor, ...], now: float,
                minutes: int) -> tuple[str, SessionState]:
    """A fresh session token (never the IST), stored only as its SHA-256."""
    token = crypto.new_token()
    session = SessionState(f"member-session-{new_id(16)}", sub.org.organization_id,
                           sub.base.member_id, now, now, now + 60 * minutes, factors)
    out.writes[keys.session(token_digest(token))] = Write(session, session.expires_at)
    if ctx.listening():  # the factor list is built only for someone to read
        ctx.note(out, "session.created", now, session.organization_id, session.member_id,
                 factors=[f.type for f in factors])
    return token, session


def grow_session(ctx: Context, out: Outcome, record: SessionState, digest: str, factor: Factor, now: float,
                 minutes: int | None) -> SessionState:
    """A session gains a factor; one that needed a step-up completes it (spec §6.10)."""
    session = clone(record)
    expires_at = None if minutes is None else now + 60 * minutes
    step_up = session.state is SessionPhase.STEP_UP_REQUIRED
    machine.fire(machine.SESSION, "step_up" if step_up else "add_factor", session, factor=factor, now=now,
                 expires_at=expires_at)
    if not step_up and expires_at is not None:
        session.expires_at = expires_at
    out.writes[keys.session(digest)] = Write(session, session.expires_at)
    if step_up:
        ctx.note(out, "session.step_up_completed", now, session.organization_id, session.member_id,
                 factor=factor.type)
    return session
