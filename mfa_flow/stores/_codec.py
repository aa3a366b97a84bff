"""Records as plain data for durable stores: compact JSON, tagged by record type.

Codes are stored only as their HMAC (hex), tokens only as the SHA-256 inside the key; nothing here
ever sees a code or a token in clear.
"""

from __future__ import annotations

import enum
import json
from typing import Any

import attrs

from mfa_flow.errors import StoreFailure
from mfa_flow.state import (
    CodePhase,
    CodeState,
    Factor,
    GuardPhase,
    GuardState,
    LoginPhase,
    LoginState,
    MemberState,
    PhoneLink,
    SendWindow,
    SessionIndex,
    SessionPhase,
    SessionRef,
    SessionState,
)

__all__ = ["decode", "encode"]

_TAGS: dict[type, str] = {
    MemberState: "member", GuardState: "guard", CodeState: "code", LoginState: "ist",
    SessionState: "session", SendWindow: "window", PhoneLink: "link", SessionIndex: "sessions", SessionRef: "sid",
}
_TYPES = {tag: cls for cls, tag in _TAGS.items()}
_PHASES: dict[type, type[enum.Enum]] = {
    CodeState: CodePhase, GuardState: GuardPhase, LoginState: LoginPhase, SessionState: SessionPhase,
}


def _plain(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, Factor):
        return [value.type, value.delivery_method, value.last_authenticated_at, value.phone_number]
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def encode(record: object) -> str:
    """``{"t": tag, field: value, ...}`` as compact JSON."""
    tag = _TAGS.get(type(record))
    if tag is None:
        raise TypeError(f"not a store record: {type(record).__name__}")
    data: dict[str, Any] = {"t": tag}
    for field in attrs.fields(type(record)):  # type: ignore[arg-type]
        data[field.name] = _plain(getattr(record, field.name))
    return json.dumps(data, separators=(",", ":"))


def decode(text: str | bytes) -> object:
    """The record ``encode`` wrote; anything malformed is a store failure (fail closed)."""
    try:
        data = json.loads(text)
        cls = _TYPES[data.pop("t")]
        phase = _PHASES.get(cls)
        if phase is not None:
            data["state"] = phase(data["state"])
        if cls is CodeState:
            data["digest"] = bytes.fromhex(data["digest"])
        if cls in (LoginState, SessionState):
            data["factors"] = tuple(Factor(*f) for f in data["factors"])
        if cls is SendWindow:
            data["times"] = tuple(data["times"])
        if cls is SessionIndex:
            data["entries"] = tuple(tuple(e) for e in data["entries"])
        return cls(**data)
    except (ValueError, KeyError, TypeError) as exc:
        raise StoreFailure("internal_server_error", "store: a record could not be read") from exc
