"""Reading what a decision decides on: the passed token, the organization and member, the member's records.

These are the first checks of every call (docs/rules.md): argument shape for tokens, then organization, member
and status, then the token's validity and ownership. Each read is one effect (one round trip).
"""

from __future__ import annotations

from collections.abc import Generator, Mapping, Sequence
from typing import Any

import attrs

from mfa_flow import core
from mfa_flow.arguments import text
from mfa_flow.crypto import token_digest
from mfa_flow.engine.context import Context, EndSessions, Subject, value
from mfa_flow.engine.effects import Effect, Failed, Read, invoke
from mfa_flow.errors import MfaError, NotFoundError, PolicyRefusal, RequestError, TokenError
from mfa_flow.records import Member, Organization
from mfa_flow.state import (
    CodePhase,
    CodeState,
    GuardPhase,
    GuardState,
    LoginState,
    MemberState,
    PhoneLink,
    SessionPhase,
    SessionState,
    keys,
)
from mfa_flow.stores import Entry
from mfa_flow.wire import member_from

__all__ = ["Token", "forwarded", "one_token", "phone_holder", "read_more", "read_subject", "refresh", "refuse_revoked",
           "resolve", "token_record", "unresolved"]



@attrs.define(slots=True)  # not frozen: a frozen attrs class sets each field through object.__setattr__
class Token:
    """A token the caller passed: its kind, its value, and the store key of its SHA-256."""

    kind: str  # "ist" | "session" | "jwt"
    value: str = attrs.field(repr=False)
    digest: str
    key: str

    @classmethod
    def of(cls, kind: str, value: str) -> Token:
        if kind == "jwt":
            return cls(kind, value, "", "")
        digest = token_digest(value)
        return cls(kind, value, digest, keys.login(digest) if kind == "ist" else keys.session(digest))


_FIELDS = {"ist": "intermediate_session_token", "session": "session_token", "jwt": "session_jwt"}


def forwarded(token: Token | None) -> dict[str, str]:
    """Stytch mode: the token as the request field it came in, verbatim (Stytch judges it)."""
    return {} if token is None else {_FIELDS[token.kind]: token.value}


def one_token(ist: object, session_token: object, session_jwt: object, *, required: bool) -> Token | None:
    """Step 1's token count: at most one token (exactly one when ``required``), each a string."""
    given = (ist is not None) + (session_token is not None) + (session_jwt is not None)
    if given > 1:
        raise RequestError("too_many_session_arguments", "pass at most one of intermediate_session_token, "
                           "session_token, session_jwt")
    if ist is not None:
        return Token.of("ist", text(ist, "intermediate_session_token"))
    if session_token is not None:
        return Token.of("session", text(session_token, "session_token"))
    if session_jwt is not None:
        return Token.of("jwt", text(session_jwt, "session_jwt"))
    if required:
        raise RequestError("no_session_arguments", "pass one of intermediate_session_token, session_token, "
                           "session_jwt")
    return None


def resolve(ctx: Context, org_ref: object, member_ref: object, *, require_active: bool = True,
            session: Token | None = None) -> Generator[Effect, Any, tuple[Organization, Member]]:
    """Step 2: the organization and the member (by id, slug or external id), and the member's status.

    A member who is no longer active loses every session on the next use of one (``session``: the token
    the call carries): the call is refused all the same, after they end."""
    org = None
    try:
        org_ref, member_ref = text(org_ref, "organization_id"), text(member_ref, "member_id")
        directory = ctx.directory
        org = yield invoke((directory.get_organization, (org_ref,)))
        if org is None:
            raise NotFoundError("organization_not_found", "organization_id: no such organization")
        member = yield invoke((directory.get_member, (org.organization_id, member_ref)))
        if member is None:
            raise NotFoundError("member_not_found", "member_id: no such member in the organization")
    except (MfaError, Failed) as exc:
        unresolved(exc.error if isinstance(exc, Failed) else exc, "" if org is None else org.organization_id)
        raise
    if require_active and member.status != "active":
        refusal = PolicyRefusal("action_available_only_for_active_members",
                                f"member: status is {member.status!r}, not 'active'")
        if session is not None and session.kind == "session":
            raise EndSessions(member.member_id, refusal)
        raise refusal
    return org, member


def read_subject(org: Organization, base: Member, now: float, token: Token | None = None,
                 also: Sequence[str] = ()) -> Generator[Effect, Any, tuple[Subject, dict[str, Entry]]]:
    """The member's records, read with the passed token's and ``also`` (one round trip), settled at ``now``."""
    oid, mid = org.organization_id, base.member_id
    k_member, k_guard, k_code = keys.subject(oid, mid)
    asked = Read([k_member, k_guard, k_code, token.key, *also] if token is not None and token.key
                 else [k_member, k_guard, k_code, *also])
    got = yield asked
    # Absent records (the common case) take their defaults without a lookup; lazy expiry only
    # concerns a locked guard and a sent code.
    overlay = value(got, k_member, MemberState) if k_member in got else core.EMPTY_OVERLAY
    guard = value(got, k_guard, GuardState) if k_guard in got else core.OPEN_GUARD
    if guard.state is GuardPhase.LOCKED:
        guard = core.settle_guard(guard, now)
    code = value(got, k_code, CodeState) if k_code in got else core.NO_CODE
    if code.state is CodePhase.SENT:
        code = core.settle_code(code, now)
    member = core.merged_member(base, overlay, guard)
    return Subject(org, base, overlay, guard, code, member, k_member, k_guard, k_code, got, asked), got


def read_more(sub: Subject, wanted: list[str]) -> Generator[Effect, Any, dict[str, Entry]]:
    """The records of ``wanted``: those the call has asked for already come from what it read (so a key read
    up front, found or absent, costs no round trip), the rest in one more read."""
    missing = [k for k in wanted if k not in sub.asked]
    if missing:
        sub.got.update((yield Read(missing)))
        sub.asked.extend(missing)
    return sub.got


def token_record(ctx: Context, got: dict[str, Entry], sub: Subject, token: Token | None,
                 now: float) -> LoginState | SessionState | None:
    """Step 3: the passed token's record, valid and the member's own."""
    if token is None:
        return None
    if token.kind == "jwt":
        raise TokenError("unable_to_parse_session_jwt", "session_jwt: no JWTs are issued in local mode")
    oid, mid = sub.org.organization_id, sub.base.member_id
    if token.kind == "ist":
        return core.check_ist(value(got, token.key, LoginState, None), oid, mid, now)
    return core.check_session(value(got, token.key, SessionState, None), oid, mid, now, sub.member, ctx.policy)


def unresolved(exc: BaseException, organization_id: str = "") -> None:
    """Mark a refusal raised before the call's references named a member: its event shows the organization's id
    if that resolved, never what the caller passed (it may be anything, a token in the wrong field included)."""
    if isinstance(exc, MfaError):
        exc._refs = (organization_id, "")  # noqa: SLF001 - the flow's own mark


def refuse_revoked(got: dict[str, Entry], token: Token | None) -> None:
    """Stytch mode's one local judgement of a token: a session revoked here stays refused here, even if the
    revoke never reached Stytch (its record is kept, revoked, until it would have expired)."""
    if token is not None and token.kind == "session":
        record = value(got, token.key, SessionState, None)
        if record is not None and record.state is SessionPhase.REVOKED:
            raise TokenError("session_not_found", "session_token: revoked")


def phone_holder(ctx: Context, sub: Subject, e164: str) -> Generator[Effect, Any, tuple[str | None, str]]:
    """Who else in the organization has ``e164`` linked: (member id or None, link-index key)."""
    oid, mid = sub.org.organization_id, sub.base.member_id
    k_link = keys.link(oid, e164)
    other = yield invoke((ctx.directory.find_member_by_phone, (oid, e164)))
    extra = [keys.member(oid, other.member_id)] if other is not None and other.member_id != mid else []
    got = yield from read_more(sub, [k_link, *extra])
    link = value(got, k_link, PhoneLink, None)
    if link is not None and link.member_id != mid:
        return link.member_id, k_link
    if extra and other is not None:
        overlay = value(got, extra[0], MemberState, core.EMPTY_OVERLAY)
        if overlay.phone is None or overlay.phone == e164:  # that member still holds the directory's number
            return other.member_id, k_link
    return None, k_link




def refresh(ctx: Context, answer: Mapping[str, Any]) -> Generator[Effect, Any, Member]:
    """Stytch mode: an answer's member and organization refresh the directory's cache when it keeps one
    (StytchDirectory); the member, as Stytch answered it."""
    keep = getattr(ctx.directory, "refresh", None)
    if keep is not None:
        member: Member = yield invoke((keep, (answer,)))
        return member
    return member_from(answer)
