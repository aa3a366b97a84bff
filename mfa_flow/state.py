"""The records the flow keeps in the store, and the keys they live under.

They are plain mutable attrs records: the machines (``mfa_flow.machine``) trigger on them, the core
never mutates one it read without copying it first, and durable stores turn them into plain data.
Records that never expire (the member overlay, the phone-link index) are kept apart from those that
do (codes, ISTs, sessions, the failure guard while locked, send windows) so each can carry its own TTL.
Nothing here holds a code or a token in clear: codes as HMACs, tokens as the SHA-256 in the key.
"""

from __future__ import annotations

import enum
import operator
from collections.abc import Callable
from typing import Any, TypeVar

import attrs

__all__ = [
    "CodePhase",
    "CodeState",
    "Factor",
    "GuardPhase",
    "GuardState",
    "LoginPhase",
    "LoginState",
    "MemberState",
    "PhoneLink",
    "SendWindow",
    "SessionIndex",
    "SessionPhase",
    "SessionRef",
    "SessionState",
    "clone",
    "keys",
    "replace",
]


def quote(string: str, safe: str) -> str:
    """``urllib.parse.quote``, loaded on the first id holding ':' or '%' (rare), not by ``import mfa_flow``."""
    from urllib.parse import quote

    return quote(string, safe=safe)


class CodePhase(enum.Enum):
    NONE = "none"
    SENT = "sent"
    VERIFIED = "verified"
    DEAD = "dead"


class GuardPhase(enum.Enum):
    OPEN = "open"
    LOCKED = "locked"


class LoginPhase(enum.Enum):
    ISSUED = "issued"
    CONSUMED = "consumed"
    EXPIRED = "expired"


class SessionPhase(enum.Enum):
    ACTIVE = "active"
    STEP_UP_REQUIRED = "step_up_required"
    EXPIRED = "expired"
    REVOKED = "revoked"


@attrs.frozen(slots=True)
class Factor:
    """An authentication factor carried by an IST or a session."""

    type: str
    delivery_method: str
    last_authenticated_at: float
    phone_number: str = ""


@attrs.define(slots=True)
class MemberState:
    """The member overlay: ``None`` means "not written by the flow", so the directory's value applies."""

    phone: str | None = None
    phone_verified: bool | None = None
    pending_phone: str = ""
    enrolled: bool | None = None
    default_mfa_method: str | None = None


@attrs.define(slots=True)
class GuardState:
    """The member's failure counter and lock (docs/rules.md)."""

    state: GuardPhase = GuardPhase.OPEN
    failures: int = 0
    locked_until: float = 0.0


@attrs.define(slots=True)
class CodeState:
    """The member's single challenge: at most one live code (docs/rules.md, codes)."""

    state: CodePhase = CodePhase.NONE
    code_id: str = ""
    digest: bytes = attrs.field(default=b"", repr=False)
    bound_to: str = ""  # digest of the token the code was issued for; "" = any valid token of the member
    purpose: str = ""
    phone: str = ""
    sent_at: float = 0.0
    expires_at: float = 0.0
    attempts: int = 0


@attrs.define(slots=True)
class LoginState:
    """An intermediate session: a bag of factors that becomes a session once MFA is done."""

    organization_id: str
    member_id: str
    expires_at: float
    factors: tuple[Factor, ...]
    state: LoginPhase = LoginPhase.ISSUED


@attrs.define(slots=True)
class SessionState:
    session_id: str
    organization_id: str
    member_id: str
    started_at: float
    last_accessed_at: float
    expires_at: float
    factors: tuple[Factor, ...]
    state: SessionPhase = SessionPhase.ACTIVE


@attrs.define(slots=True)
class SendWindow:
    """Times of admitted sends within the sliding window, oldest first."""

    times: tuple[float, ...] = ()


@attrs.frozen(slots=True)
class SessionIndex:
    """A member's live sessions, so revoking them all or listing them needs no scan of the store:
    ``(member_session_id, token digest, organization_id, expires_at)``, oldest first."""

    entries: tuple[tuple[str, str, str, float], ...] = ()


@attrs.frozen(slots=True)
class SessionRef:
    """What a ``member_session_id`` names: the member and the digest of the session's token."""

    member_id: str
    digest: str


@attrs.frozen(slots=True)
class PhoneLink:
    """The organization's phone-link index: which member a number is linked to."""

    member_id: str


R = TypeVar("R")


_COPIERS: dict[type, Callable[[Any], Any]] = {}


def _copier(cls: type) -> Callable[[Any], Any]:
    fields = attrs.fields(cls)
    names = tuple(a.name for a in fields)
    get = operator.attrgetter(*names)
    if len(names) > 1 and all(a.init and not a.kw_only and a.validator is None and a.converter is None
                              for a in fields):
        return lambda record: cls(*get(record))  # the plain records: attrs' own __init__ is the fast path
    set_, new = object.__setattr__, object.__new__

    def copy(record: Any) -> Any:  # validated records (Member): copy the slots, skip the validators
        duplicate: Any = new(cls)
        for name in names:
            set_(duplicate, name, getattr(record, name))
        return duplicate

    return copy


def clone(record: R) -> R:
    """A shallow copy to trigger on, so a record read from the store is never changed in place.

    Also used on frozen records to build a changed copy (``replace``); it never re-runs attrs' validators,
    which the record already passed, because this sits on every call's hot path.
    """
    cls = type(record)
    copy = _COPIERS.get(cls)
    if copy is None:
        copy = _COPIERS[cls] = _copier(cls)
    return copy(record)  # type: ignore[no-any-return]


def replace(record: R, **changes: object) -> R:
    """A copy of a (possibly frozen) record with ``changes``; the values must already be valid."""
    new = clone(record)
    for name, value in changes.items():
        object.__setattr__(new, name, value)
    return new


def _part(value: str) -> str:
    return quote(value, safe="") if (":" in value or "%" in value) else value


class keys:  # noqa: N801 - a namespace of key builders, read as keys.member(...)
    """Store keys. Ids containing ``:`` are escaped so two subjects never share a key."""

    @staticmethod
    def subject(org: str, member: str) -> tuple[str, str, str]:
        """The member overlay, guard and code keys, escaped once (every call reads all three, so _part's
        test is inlined here)."""
        org = quote(org, safe="") if (":" in org or "%" in org) else org
        member = quote(member, safe="") if (":" in member or "%" in member) else member
        tail = f"{org}:{member}"
        return f"member:{tail}", f"guard:{tail}", f"code:{tail}"

    @staticmethod
    def member(org: str, member: str) -> str:
        return f"member:{_part(org)}:{_part(member)}"

    @staticmethod
    def guard(org: str, member: str) -> str:
        return f"guard:{_part(org)}:{_part(member)}"

    @staticmethod
    def code(org: str, member: str) -> str:
        return f"code:{_part(org)}:{_part(member)}"

    @staticmethod
    def login(token_digest: str) -> str:
        return f"ist:{token_digest}"

    @staticmethod
    def session(token_digest: str) -> str:
        return f"session:{token_digest}"

    @staticmethod
    def sessions(member: str) -> str:
        """The member's session index; by member id alone, as Stytch revokes "every session of a member"."""
        return f"sessions:{_part(member)}"

    @staticmethod
    def session_id(member_session_id: str) -> str:
        return f"sid:{_part(member_session_id)}"

    @staticmethod
    def link(org: str, e164: str) -> str:
        return f"link:{_part(org)}:{e164}"

    @staticmethod
    def window_member(org: str, member: str) -> str:
        return f"window:member:{_part(org)}:{_part(member)}"

    @staticmethod
    def window_phone(e164: str) -> str:
        return f"window:phone:{e164}"

    @staticmethod
    def window_region(region: str) -> str:
        return f"window:region:{region}"

    WINDOW_GLOBAL = "window:global"
