"""The identity records (docs/concepts.md, records): frozen, with Stytch's field names, checked at construction."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any, Literal, get_args

import attrs

from mfa_flow.arguments import plain_str
from mfa_flow.errors import ConfigurationError

__all__ = ["Member", "MfaPolicy", "Organization", "PrimaryMethod", "rfc3339", "to_datetime"]

#: An organization's MFA policy.
MfaPolicy = Literal["OPTIONAL", "REQUIRED_FOR_ALL"]
#: The primary authentication methods ``authenticate_primary`` records (an IDE catches ``"saml"``).
PrimaryMethod = Literal["email_magic_link", "sso", "oauth", "password", "email_otp", "discovery"]

MFA_POLICIES: tuple[MfaPolicy, ...] = get_args(MfaPolicy)
MFA_METHODS = ("ALL_ALLOWED", "RESTRICTED")
MFA_METHOD_NAMES = ("sms_otp", "totp")
MEMBER_STATUSES = ("active", "pending", "invited", "deleted")
DEFAULT_MFA_METHODS = ("", "sms_otp", "totp")


def to_datetime(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def rfc3339(value: datetime | None) -> str | None:
    """UTC, second precision, ``Z`` suffix: the form Stytch's bodies use."""
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _got(value: object) -> str:
    """What a refusal shows of a wrong value: a short plain number, else only its type. A record may be built
    from an answer the caller passed on: its text (a token in the wrong field, a megabyte, a subclass whose
    ``__repr__`` raises) stays out."""
    if type(value) in (int, bool, float) or value is None:
        shown = repr(value)
        if len(shown) <= 40:
            return shown
    return f"a value of type {type(value).__name__}"


def _text(inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, str):
        raise ConfigurationError(f"{type(inst).__name__}.{attribute.name}: must be a string, got {_got(value)}")


def _required_text(inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
    _text(inst, attribute, value)
    if not value:
        raise ConfigurationError(f"{type(inst).__name__}.{attribute.name}: must not be empty")


def _flag(inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, bool):
        raise ConfigurationError(f"{type(inst).__name__}.{attribute.name}: must be True or False, got {_got(value)}")


def _one_of(choices: tuple[str, ...]) -> Callable[[object, attrs.Attribute[Any], object], None]:
    def check(inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
        if (plain_str(value) if isinstance(value, str) else value) not in choices:  # no subclass's __eq__
            raise ConfigurationError(
                f"{type(inst).__name__}.{attribute.name}: must be one of {choices}, got {_got(value)}"
            )

    return check


def _methods(inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if isinstance(value, str) or not all(m in MFA_METHOD_NAMES for m in value):  # type: ignore[attr-defined]
        raise ConfigurationError(
            f"{type(inst).__name__}.{attribute.name}: must be a sequence drawn from {MFA_METHOD_NAMES}"
        )


def _as_tuple(value: Iterable[str]) -> tuple[str, ...]:
    return tuple(value)


@attrs.frozen(slots=True)
class Organization:
    organization_id: str = attrs.field(validator=_required_text)
    organization_slug: str = attrs.field(default="", kw_only=True, validator=_text)
    organization_name: str = attrs.field(default="", kw_only=True, validator=_text)
    organization_external_id: str = attrs.field(default="", kw_only=True, validator=_text)
    mfa_policy: MfaPolicy = attrs.field(default="OPTIONAL", kw_only=True, validator=_one_of(MFA_POLICIES))
    mfa_methods: str = attrs.field(default="ALL_ALLOWED", kw_only=True, validator=_one_of(MFA_METHODS))
    allowed_mfa_methods: tuple[str, ...] = attrs.field(
        default=(), kw_only=True, converter=_as_tuple, validator=_methods
    )

    def allows_sms(self) -> bool:
        return self.mfa_methods != "RESTRICTED" or "sms_otp" in self.allowed_mfa_methods

    def to_dict(self) -> dict[str, Any]:
        """Stytch's organization object, with every field the official SDK requires."""
        return {
            "organization_id": self.organization_id,
            "organization_name": self.organization_name,
            "organization_slug": self.organization_slug,
            "organization_external_id": self.organization_external_id,
            "organization_logo_url": "",
            "trusted_metadata": {},
            "sso_jit_provisioning": "NOT_ALLOWED",
            "sso_jit_provisioning_allowed_connections": [],
            "sso_active_connections": [],
            "email_allowed_domains": [],
            "email_jit_provisioning": "NOT_ALLOWED",
            "email_invites": "ALL_ALLOWED",
            "auth_methods": "ALL_ALLOWED",
            "allowed_auth_methods": [],
            "mfa_policy": self.mfa_policy,
            "rbac_email_implicit_role_assignments": [],
            "mfa_methods": self.mfa_methods,
            "allowed_mfa_methods": list(self.allowed_mfa_methods),
            "oauth_tenant_jit_provisioning": "NOT_ALLOWED",
            "claimed_email_domains": [],
            "first_party_connected_apps_allowed_type": "ALL_ALLOWED",
            "allowed_first_party_connected_apps": [],
            "third_party_connected_apps_allowed_type": "ALL_ALLOWED",
            "allowed_third_party_connected_apps": [],
            "custom_roles": [],
        }


@attrs.frozen(slots=True)
class Member:
    """A member; ``is_locked`` / ``lock_expires_at`` are filled by the merged view from the lock state."""

    member_id: str = attrs.field(validator=_required_text)
    organization_id: str = attrs.field(validator=_required_text)
    email_address: str = attrs.field(default="", kw_only=True, validator=_text)
    name: str = attrs.field(default="", kw_only=True, validator=_text)
    external_id: str = attrs.field(default="", kw_only=True, validator=_text)
    status: str = attrs.field(default="active", kw_only=True, validator=_one_of(MEMBER_STATUSES))
    mfa_enrolled: bool = attrs.field(default=False, kw_only=True, validator=_flag)
    mfa_phone_number: str = attrs.field(default="", kw_only=True, validator=_text)
    mfa_phone_number_verified: bool = attrs.field(default=False, kw_only=True, validator=_flag)
    default_mfa_method: str = attrs.field(
        default="", kw_only=True, validator=_one_of(DEFAULT_MFA_METHODS)
    )
    totp_registration_id: str = attrs.field(default="", kw_only=True, validator=_text)
    is_breakglass: bool = attrs.field(default=False, kw_only=True, validator=_flag)
    is_locked: bool = attrs.field(default=False, kw_only=True, validator=_flag)
    lock_expires_at: datetime | None = attrs.field(default=None, kw_only=True)

    @property
    def has_active_factor(self) -> bool:
        """A verified linked phone or a TOTP registration; an unverified phone is not a factor."""
        return bool(self.mfa_phone_number and self.mfa_phone_number_verified) or bool(self.totp_registration_id)

    def to_dict(self) -> dict[str, Any]:
        """Stytch's member object, with every field the official SDK requires."""
        return {
            "organization_id": self.organization_id,
            "member_id": self.member_id,
            "email_address": self.email_address,
            "status": self.status,
            "name": self.name,
            "external_id": self.external_id,
            "sso_registrations": [],
            "is_breakglass": self.is_breakglass,
            "member_password_id": "",
            "oauth_registrations": [],
            "email_address_verified": False,
            "mfa_phone_number_verified": self.mfa_phone_number_verified,
            "is_admin": False,
            "totp_registration_id": self.totp_registration_id,
            "retired_email_addresses": [],
            "is_locked": self.is_locked,
            "lock_expires_at": rfc3339(self.lock_expires_at),
            "mfa_enrolled": self.mfa_enrolled,
            "mfa_phone_number": self.mfa_phone_number,
            "default_mfa_method": self.default_mfa_method,
            "roles": [],
            "trusted_metadata": {},
            "untrusted_metadata": {},
        }
