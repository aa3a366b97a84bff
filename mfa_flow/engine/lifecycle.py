"""Session and member lifecycle: ``revoke_session``, ``list_member_sessions``, ``unlock_member``.

A session lives under its token's digest, with a ``member_session_id`` reference and an entry in its
member's session index (``engine.sessions``), so revoking one by any selector, or all of a member's, and
listing them read a few keys and never scan. A revoked session's record is deleted in one commit with a
step-up code bound to it: every later use answers ``session_not_found``, on every store and process. In
Stytch mode the local record goes first, then Stytch is asked: after a failed request ``authenticate_session``
still refuses the session (a send or authenticate with its token is Stytch's to judge).
"""

from __future__ import annotations

from collections.abc import Generator
from functools import partial
from typing import Any, Final

from mfa_flow import core, machine
from mfa_flow.arguments import text
from mfa_flow.crypto import token_digest
from mfa_flow.engine.context import DELETE, Context, Outcome, Plan, Remote, Step, value
from mfa_flow.engine.effects import Effect, Read
from mfa_flow.engine.reading import read_subject, resolve
from mfa_flow.engine.sessions import drop_sessions
from mfa_flow.errors import ProviderError, RequestError, TokenError
from mfa_flow.results import MemberSession
from mfa_flow.state import (
    CodePhase,
    CodeState,
    GuardPhase,
    SessionIndex,
    SessionPhase,
    SessionRef,
    SessionState,
    clone,
    keys,
)
from mfa_flow.stores import Entry, Write
from mfa_flow.wire import GET_SESSIONS, REVOKE_SESSION, member_session_from

__all__ = ["end_all", "end_sessions", "list_sessions", "revoke", "unlock"]

_SELECTORS: Final = ("member_session_id", "session_token", "session_jwt", "member_id")


def revoke(ctx: Context, now: float, member_session_id: object, session_token: object, session_jwt: object,
           member_id: object) -> Plan:
    """Exactly one selector, as Stytch's revoke takes it; ``member_id`` ends every session of the member."""
    given = [(name, v) for name, v in zip(_SELECTORS, (member_session_id, session_token, session_jwt, member_id),
                                          strict=True) if v is not None]
    if len(given) != 1:
        raise RequestError("bad_request", "revoke_session: pass exactly one of " + ", ".join(_SELECTORS))
    selector, ref = given[0][0], text(given[0][1], given[0][0])
    if selector == "session_jwt":
        raise TokenError("unable_to_parse_session_jwt", "session_jwt: the flow keeps its sessions by "
                         "session_token; revoke by session_token, member_session_id or member_id")
    return partial(_decide_revoke, ctx, now, selector, ref)


def _decide_revoke(ctx: Context, now: float, selector: str, ref: str, _verdict: object) -> Step:
    out = Outcome()
    if selector == "member_id":
        yield from end_sessions(ctx, out, ref, now, selector)
        return _ask_stytch(ctx, out, selector, ref)
    digest = token_digest(ref) if selector == "session_token" else (yield from _digest_of(ref))
    got = yield Read([keys.session(digest)])
    record = value(got, keys.session(digest), SessionState, None)
    if record is None or now >= record.expires_at or record.state is SessionPhase.REVOKED:
        if ctx.remote is None:
            raise TokenError("session_not_found", f"{selector}: no such session")
        return _ask_stytch(ctx, out, selector, ref)  # not one this flow recorded: Stytch's to end
    yield from end_sessions(ctx, out, record.member_id, now, selector, {digest: record.organization_id})
    return _ask_stytch(ctx, out, selector, ref)


def end_sessions(ctx: Context, out: Outcome, member_id: str, now: float, selector: str,
                 digests: dict[str, str] | None = None) -> Generator[Effect, Any, None]:
    """End the member's sessions named by ``digests`` (token digest -> organization id; all of the member's
    live ones when None): each through the session machine, deleted (in Stytch mode kept as a revoked record
    until it would have expired), out of the index, with a step-up code bound to it. ``selector`` (what named
    them: a revoke's selector, or "inactive_member") goes into each ``session.revoked`` event."""
    if digests is None:
        index = value((yield Read([keys.sessions(member_id)])), keys.sessions(member_id), SessionIndex,
                      SessionIndex())
        digests = {digest: org_id for _, digest, org_id, until in index.entries if until > now}
    orgs = sorted(set(digests.values()))
    got = yield Read([keys.sessions(member_id), *(keys.code(o, member_id) for o in orgs),
                      *(keys.session(d) for d in digests)])
    ended: set[str] = set()
    for digest in digests:
        record = value(got, keys.session(digest), SessionState, None)
        if record is None or now >= record.expires_at:
            continue
        session = clone(record)
        if machine.fire(machine.SESSION, "revoke", session):
            # Locally an absent session is refused the same; in Stytch mode the revoked record stays until it
            # would have expired, so its token is refused here even when Stytch did not hear the revoke.
            kept = DELETE if ctx.remote is None else Write(session, session.expires_at)
            out.writes[keys.session(digest)] = kept
            out.writes[keys.session_id(session.session_id)] = DELETE
            ended.add(session.session_id)
            ctx.note(out, "session.revoked", now, session.organization_id, member_id,
                     member_session_id=session.session_id, selector=selector)
    for org_id in orgs:  # a step-up code bound to an ended session dies with it
        k_code = keys.code(org_id, member_id)
        code = value(got, k_code, CodeState, None)
        if code is not None and code.state is CodePhase.SENT and code.bound_to in digests:
            code = clone(code)
            machine.fire(machine.CODE, "kill", code)
            out.writes[k_code] = DELETE
    drop_sessions(out, got, member_id, now, frozenset(ended))


def end_all(ctx: Context, member_id: str, now: float, _verdict: object = None) -> Step:
    """Every session of a member no longer active (see ``reading.resolve``)."""
    out = Outcome()
    yield from end_sessions(ctx, out, member_id, now, "inactive_member")
    return out


def _ask_stytch(ctx: Context, out: Outcome, selector: str, ref: str) -> Outcome:
    """In Stytch mode, after the local record is revoked: a failed request leaves the token refused here."""
    if ctx.remote is not None:
        out.remote = Remote(ctx.remote.revoke_session, (REVOKE_SESSION.body(**{selector: ref}),), None)
    out.finish = lambda *_: None
    return out


def _digest_of(member_session_id: str) -> Generator[Effect, Any, str]:
    """The digest a member_session_id names ("" when no session this flow recorded has that id)."""
    key = keys.session_id(member_session_id)
    found = value((yield Read([key])), key, SessionRef, None)
    digest: str = "" if found is None else found.digest
    return digest


def list_sessions(ctx: Context, now: float, organization_id: object, member_id: object) -> Plan:
    return partial(_decide_list, ctx, now, organization_id, member_id)


def _decide_list(ctx: Context, now: float, org_ref: object, member_ref: object, _verdict: object) -> Step:
    """The member's live sessions in the organization, newest first (in Stytch mode, Stytch's list)."""
    org, base = yield from resolve(ctx, org_ref, member_ref, require_active=False)
    oid, mid = org.organization_id, base.member_id
    remote = ctx.remote
    if remote is not None:
        out = Outcome()
        out.remote = Remote(remote.list_sessions, (GET_SESSIONS.body(organization_id=oid, member_id=mid),), None)
        out.finish = lambda _sent, answer: _stytch_sessions(answer)
        return out
    k_index = keys.sessions(mid)
    index = value((yield Read([k_index])), k_index, SessionIndex, SessionIndex())
    digests = [digest for _, digest, org_id, until in index.entries if org_id == oid and until > now]
    got: dict[str, Entry] = (yield Read([keys.session(d) for d in digests])) if digests else {}
    records = [value(got, keys.session(d), SessionState, None) for d in digests]
    live = sorted((r for r in records if r is not None and now < r.expires_at),
                  key=lambda r: r.started_at, reverse=True)
    return Outcome(finish=lambda *_: [core.member_session(r, org) for r in live])


def _stytch_sessions(answer: Any) -> list[MemberSession]:
    items = answer.get("member_sessions") if isinstance(answer, dict) else None
    if not isinstance(items, list):
        raise ProviderError("internal_server_error", "Stytch's answer: member_sessions: missing or not a list")
    return [member_session_from({"member_session": item}) for item in items]


def unlock(ctx: Context, now: float, organization_id: object, member_id: object) -> Plan:
    return partial(_decide_unlock, ctx, now, organization_id, member_id)


def _decide_unlock(ctx: Context, now: float, org_ref: object, member_ref: object, _verdict: object) -> Step:
    """An administrator ends the member's lock and resets its failure counter; a dead code stays dead."""
    org, base = yield from resolve(ctx, org_ref, member_ref, require_active=False)
    sub, _ = yield from read_subject(org, base, now)
    out = Outcome()
    guard = sub.guard
    if guard.state is GuardPhase.LOCKED or guard.failures:
        was_locked = guard.state is GuardPhase.LOCKED
        guard = clone(guard)
        if machine.fire(machine.GUARD, "release", guard):
            out.writes[sub.k_guard] = DELETE  # an open guard with no failures is the default record
            ctx.note(out, "member.unlocked", now, org.organization_id, base.member_id, was_locked=was_locked)
    after = ctx.member_changed(out, sub, sub.overlay, guard, now)
    out.finish = lambda *_: after
    return out


