"""What the public calls return (docs/concepts.md): frozen, Stytch's field names, ``to_dict()`` in Stytch's JSON shape.

Tokens appear only in their own fields and are masked in every ``repr``; no result ever holds a code.

Results are frozen attrs classes *without* slots: a frozen slotted class sets each field through
``object.__setattr__``, a frozen dict class writes its ``__dict__`` directly, and every login builds about
forty result fields. They are built once per call and handed over, so the extra dict is never held.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal

import attrs

from mfa_flow.records import Member, Organization, rfc3339

__all__ = [
    "AuthenticateResult",
    "AuthenticationFactor",
    "MemberOptions",
    "MemberSession",
    "MfaRequired",
    "PrimaryAuthResult",
    "SendResult",
    "SessionCheck",
]


def mask_token(value: str) -> str:
    return "''" if not value else "'***'"


def _token() -> Any:
    return attrs.field(default="", repr=mask_token)


@attrs.frozen(slots=False)
class AuthenticationFactor:
    type: str
    delivery_method: str
    last_authenticated_at: datetime
    phone_number_factor: Mapping[str, str] | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": self.type,
            "delivery_method": self.delivery_method,
            "last_authenticated_at": rfc3339(self.last_authenticated_at),
        }
        if self.phone_number_factor is not None:
            out["phone_number_factor"] = dict(self.phone_number_factor)
        return out


@attrs.frozen(slots=False)
class MemberSession:
    member_session_id: str
    member_id: str
    organization_id: str
    organization_slug: str
    started_at: datetime
    last_accessed_at: datetime
    expires_at: datetime
    authentication_factors: tuple[AuthenticationFactor, ...]
    roles: tuple[str, ...] = ()
    custom_claims: Mapping[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "member_session_id": self.member_session_id,
            "member_id": self.member_id,
            "organization_id": self.organization_id,
            "organization_slug": self.organization_slug,
            "started_at": rfc3339(self.started_at),
            "last_accessed_at": rfc3339(self.last_accessed_at),
            "expires_at": rfc3339(self.expires_at),
            "authentication_factors": [f.to_dict() for f in self.authentication_factors],
            "roles": list(self.roles),
            "custom_claims": dict(self.custom_claims or {}),
        }


@attrs.frozen(slots=False)
class MemberOptions:
    mfa_phone_number: str  # masked, e.g. "XXXXXXX0123"
    totp_registration_id: str

    def to_dict(self) -> dict[str, Any]:
        return {"mfa_phone_number": self.mfa_phone_number, "totp_registration_id": self.totp_registration_id}


@attrs.frozen(slots=False)
class MfaRequired:
    member_options: MemberOptions
    secondary_auth_initiated: Literal["sms_otp"] | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "member_options": self.member_options.to_dict(),
            "secondary_auth_initiated": self.secondary_auth_initiated,
        }


def _envelope(status_code: int, request_id: str, member: Member, organization: Organization) -> dict[str, Any]:
    return {
        "status_code": status_code,
        "request_id": request_id,
        "member_id": member.member_id,
        "member": member.to_dict(),
        "organization": organization.to_dict(),
    }


@attrs.frozen(slots=False, kw_only=True)
class PrimaryAuthResult:
    member_id: str
    organization_id: str
    member: Member
    organization: Organization
    member_authenticated: bool
    intermediate_session_token: str = _token()
    session_token: str = _token()
    session_jwt: str = _token()
    member_session: MemberSession | None = None
    mfa_required: MfaRequired | None = None
    status_code: int = 200
    request_id: str = ""

    def to_dict(self) -> dict[str, Any]:
        out = _envelope(self.status_code, self.request_id, self.member, self.organization)
        out.update(
            organization_id=self.organization_id,
            member_authenticated=self.member_authenticated,
            intermediate_session_token=self.intermediate_session_token,
            session_token=self.session_token,
            session_jwt=self.session_jwt,
            member_session=self.member_session.to_dict() if self.member_session else None,
            mfa_required=self.mfa_required.to_dict() if self.mfa_required else None,
        )
        return out


@attrs.frozen(slots=False, kw_only=True)
class SendResult:
    member_id: str
    member: Member
    organization: Organization
    status_code: int = 200
    request_id: str = ""

    def to_dict(self) -> dict[str, Any]:
        return _envelope(self.status_code, self.request_id, self.member, self.organization)


@attrs.frozen(slots=False, kw_only=True)
class AuthenticateResult:
    member_id: str
    member: Member
    organization: Organization
    session_token: str = _token()
    session_jwt: str = _token()
    member_session: MemberSession | None = None
    status_code: int = 200
    request_id: str = ""

    def to_dict(self) -> dict[str, Any]:
        out = _envelope(self.status_code, self.request_id, self.member, self.organization)
        out.update(
            session_token=self.session_token,
            session_jwt=self.session_jwt,
            member_session=self.member_session.to_dict() if self.member_session else None,
        )
        return out


@attrs.frozen(slots=False, kw_only=True)
class SessionCheck:
    member_session: MemberSession
    step_up_required: bool
    secondary_auth_initiated: Literal["sms_otp"] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "member_session": self.member_session.to_dict(),
            "step_up_required": self.step_up_required,
            "secondary_auth_initiated": self.secondary_auth_initiated,
        }
