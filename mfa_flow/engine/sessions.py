"""What completing MFA writes: the IST consumed, a new session, or a factor added to a session (docs/rules.md,
authenticate success and sessions).

Every session is written with its ``member_session_id`` reference and its entry in the member's session
index, so that revoking one by id, or all of a member's, needs no scan of the store. Decisions that may write
a session read the index with the member's records (``index_key``): no extra round trip.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Final

from mfa_flow import crypto, machine
from mfa_flow.crypto import new_id, token_digest
from mfa_flow.engine.context import DELETE, Context, Outcome, Subject, value
from mfa_flow.engine.reading import Token
from mfa_flow.errors import TokenError
from mfa_flow.state import Factor, LoginState, SessionIndex, SessionPhase, SessionRef, SessionState, clone, keys
from mfa_flow.stores import Entry, Write

__all__ = ["consume_ist", "drop_sessions", "grow_session", "index_key", "new_session", "record_session"]

_NO_SESSIONS: Final = SessionIndex()
Entries = tuple[tuple[str, str, str, float], ...]


def index_key(member_id: str) -> tuple[str, ...]:
    """What a decision that may write a session reads besides the member's records."""
    return (keys.sessions(member_id),)


def consume_ist(out: Outcome, record: LoginState, token: Token) -> None:
    """The IST is single-use: consumed in the same commit that issues the session."""
    login = clone(record)
    if not machine.fire(machine.LOGIN, "consume", login):
        raise TokenError("intermediate_session_not_found", "intermediate_session_token: already used")
    out.writes[token.key] = DELETE


def new_session(ctx: Context, out: Outcome, sub: Subject, factors: tuple[Factor, ...], now: float,
                minutes: int, got: dict[str, Entry]) -> tuple[str, SessionState]:
    """A fresh session token (never the IST), stored only as its SHA-256."""
    token = crypto.new_token()
    session = SessionState(f"member-session-{new_id(16)}", sub.org.organization_id,
                           sub.base.member_id, now, now, now + 60 * minutes, factors)
    record_session(out, session, token_digest(token), got, now)
    if ctx.listening():  # the factor list is built only for someone to read
        ctx.note(out, "session.created", now, session.organization_id, session.member_id,
                 factors=[f.type for f in factors])
    return token, session


def record_session(out: Outcome, session: SessionState, digest: str, got: dict[str, Entry], now: float) -> None:
    """Write a session, its id reference and its entry in the member's index (pruned of expired ones)."""
    until = session.expires_at
    out.writes[keys.session(digest)] = Write(session, until)
    out.writes[keys.session_id(session.session_id)] = Write(SessionRef(session.member_id, digest), until)
    entry = (session.session_id, digest, session.organization_id, until)
    _rewrite_index(out, got, session.member_id, now,
                   lambda entries: (*(e for e in entries if e[0] != session.session_id), entry))


def drop_sessions(out: Outcome, got: dict[str, Entry], member_id: str, now: float,
                  session_ids: frozenset[str]) -> None:
    """Take sessions out of the member's index (their records are deleted by the caller)."""
    _rewrite_index(out, got, member_id, now, lambda entries: tuple(e for e in entries if e[0] not in session_ids))


def _rewrite_index(out: Outcome, got: dict[str, Entry], member_id: str, now: float,
                   change: Callable[[Entries], Iterable[tuple[str, str, str, float]]]) -> None:
    key = keys.sessions(member_id)
    written = out.writes.get(key)
    index = written.value if written is not None else value(got, key, SessionIndex, _NO_SESSIONS)
    assert isinstance(index, SessionIndex)
    entries = tuple(e for e in change(index.entries) if e[3] > now)
    out.writes[key] = Write(SessionIndex(entries), max(e[3] for e in entries)) if entries else DELETE


def grow_session(ctx: Context, out: Outcome, record: SessionState, digest: str, factor: Factor, now: float,
                 minutes: int | None, got: dict[str, Entry]) -> SessionState:
    """A session gains a factor; one that needed a step-up completes it (docs/rules.md, sessions)."""
    session = clone(record)
    expires_at = None if minutes is None else now + 60 * minutes
    step_up = session.state is SessionPhase.STEP_UP_REQUIRED
    machine.fire(machine.SESSION, "step_up" if step_up else "add_factor", session, factor=factor, now=now,
                 expires_at=expires_at)
    if not step_up and expires_at is not None:
        session.expires_at = expires_at
    if session.expires_at != record.expires_at:  # its reference and index entry live as long as it does
        record_session(out, session, digest, got, now)
    else:
        out.writes[keys.session(digest)] = Write(session, session.expires_at)
    if step_up:
        ctx.note(out, "session.step_up_completed", now, session.organization_id, session.member_id,
                 factor=factor.type)
    return session
