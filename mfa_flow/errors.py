"""Every error mfa_flow raises, in one hierarchy, each carrying Stytch's ``error_type``.

Callers catch by layer::

    MfaError                                  any refusal (error_type, status_code, error_message, ...)
    ├── ConfigurationError  (ValueError)      invalid_argument: refused at construction
    ├── RequestError        (ValueError)      the call's arguments: shape, locale, duration, token count
    │   └── InvalidPhoneNumber                invalid_phone_number, invalid_phone_number_country_code
    ├── NotFoundError       (LookupError)     organization_not_found, member_not_found
    ├── TokenError          (PermissionError) IST, session and JWT refusals
    ├── PolicyRefusal       (PermissionError) inactive member, restricted methods, phone and factor rules
    ├── RateLimited                           too_many_requests, user_lock_limit_reached
    ├── CodeRejected                          otp_code_not_found, unable_to_auth_otp_code
    ├── DeliveryFailed                        downstream_carrier_error
    ├── StoreFailure                          internal_server_error (fail closed)
    └── ProviderError                         Stytch mode: an error_type outside this table, kept as Stytch said it
        └── UnexpectedResponse                a 200 from Stytch that cannot be trusted (internal_server_error, 502)

Messages name the field and the problem; they never contain a code or a token.
"""

from __future__ import annotations

from typing import ClassVar, Literal, cast

__all__ = [
    "ERROR_STATUS",
    "CodeRejected",
    "ConfigurationError",
    "DeliveryFailed",
    "ErrorType",
    "InvalidPhoneNumber",
    "MfaError",
    "NotFoundError",
    "PolicyRefusal",
    "ProviderError",
    "RateLimited",
    "RequestError",
    "StoreFailure",
    "TokenError",
    "UnexpectedResponse",
    "error_body",
    "error_for",
]

#: Every error_type mfa_flow answers with: comparing ``exc.error_type`` with a misspelt one is a type error
#: under ``mypy --strict`` (a ``ProviderError`` may carry any string Stytch answered).
ErrorType = Literal[
    "organization_not_found", "member_not_found", "action_available_only_for_active_members",
    "no_session_arguments", "too_many_session_arguments", "intermediate_session_not_found",
    "invalid_intermediate_session_token_for_organization", "member_session_member_id_mismatch",
    "session_not_found", "unable_to_parse_session_jwt", "user_lock_limit_reached",
    "operation_restricted_by_organization_mfa_methods", "invalid_phone_number", "invalid_phone_number_country_code",
    "duplicate_member_phone_number_for_member", "duplicate_member_phone_number", "member_phone_number_not_found",
    "no_associated_session_passed_in", "insufficient_factors", "invalid_locale", "too_many_requests",
    "otp_code_not_found", "unable_to_auth_otp_code", "invalid_session_duration_minutes", "downstream_carrier_error",
    "internal_server_error", "bad_request", "invalid_argument",
]

#: HTTP status of every error_type mfa_flow answers with (docs/errors.md, the table).
ERROR_STATUS: dict[str, int] = {
    "organization_not_found": 404,
    "member_not_found": 404,
    "action_available_only_for_active_members": 400,
    "no_session_arguments": 400,
    "too_many_session_arguments": 400,
    "intermediate_session_not_found": 404,
    "invalid_intermediate_session_token_for_organization": 400,
    "member_session_member_id_mismatch": 400,
    "session_not_found": 404,
    "unable_to_parse_session_jwt": 401,
    "user_lock_limit_reached": 429,
    "operation_restricted_by_organization_mfa_methods": 400,
    "invalid_phone_number": 400,
    "invalid_phone_number_country_code": 400,
    "duplicate_member_phone_number_for_member": 400,
    "duplicate_member_phone_number": 400,
    "member_phone_number_not_found": 404,
    "no_associated_session_passed_in": 400,
    "insufficient_factors": 400,
    "invalid_locale": 400,
    "too_many_requests": 429,
    "otp_code_not_found": 404,
    "unable_to_auth_otp_code": 401,
    "invalid_session_duration_minutes": 400,
    "downstream_carrier_error": 502,
    "internal_server_error": 500,
    "bad_request": 400,
    "invalid_argument": 400,
}


def docs_url(status_code: int, error_type: str) -> str:
    """Where Stytch documents an error, as its bodies' ``error_url``."""
    return f"https://stytch.com/docs/api/errors/{status_code}#{error_type}"


def error_body(status_code: int, error_type: str, error_message: str, request_id: str) -> dict[str, object]:
    """Stytch's error body with all five fields (the official SDK drops ``error_type`` when one is missing)."""
    return {
        "status_code": status_code,
        "request_id": request_id,
        "error_type": error_type,
        "error_message": error_message,
        "error_url": docs_url(status_code, error_type),
    }


class MfaError(Exception):
    """A refusal, shaped like a Stytch error body."""

    error_types: ClassVar[frozenset[str]] = frozenset(ERROR_STATUS)
    _reported: bool = False  # set by the flow once the refusal's event was emitted with its outcome
    _refs: tuple[str, str] | None = None  # set by the flow when raised before the references resolved: what its
    #                                       event may show of them (the organization id once that resolved)

    error_type: ErrorType

    def __init__(self, error_type: str, error_message: str, *, request_id: str | None = None) -> None:
        if error_type not in ERROR_STATUS:
            raise ValueError(f"unknown error_type {error_type!r}")
        super().__init__(f"{error_type}: {error_message}")
        self.error_type = cast("ErrorType", error_type)
        self.status_code = ERROR_STATUS[error_type]
        self.error_message = error_message
        self.request_id = request_id
        self.error_url = docs_url(self.status_code, error_type)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(error_type={self.error_type!r}, error_message={self.error_message!r})"

    def __reduce__(self) -> tuple[object, ...]:
        """Picklable (task queues, multiprocessing) although __init__ takes more than the message."""
        return (error_for, (self.error_type, self.error_message, self.request_id))

    def to_dict(self) -> dict[str, object]:
        """Stytch's error body: all five fields, always."""
        return error_body(self.status_code, self.error_type, self.error_message, self.request_id or "")


class ConfigurationError(MfaError, ValueError):
    """Configuration refused at construction (``invalid_argument``)."""

    def __init__(self, error_message: str) -> None:
        super().__init__("invalid_argument", error_message)


class RequestError(MfaError, ValueError):
    """The call's arguments are malformed."""


class InvalidPhoneNumber(RequestError):
    """The phone number is refused: shape, validity, type, extension or country."""


class NotFoundError(MfaError, LookupError):
    """An organization or member reference names nothing."""


class TokenError(MfaError, PermissionError):
    """An intermediate session, session or JWT is refused."""


class PolicyRefusal(MfaError, PermissionError):
    """A rule of the flow refuses the call: member status, methods, phone and factor rules."""


class RateLimited(MfaError):
    """A send limit, the cooldown or the member lock."""


class CodeRejected(MfaError):
    """The submitted code is wrong, or the member has no live code."""


class DeliveryFailed(MfaError):
    """The SMS gateway refused the message or could not be reached."""


class StoreFailure(MfaError):
    """The store failed; the call changed nothing it could not undo (fail closed)."""


class ProviderError(MfaError):
    """Stytch refused with an ``error_type`` outside mfa_flow's table, or answered in a way the official SDK
    would not accept; Stytch's ``status_code``, ``request_id``, ``error_message`` and ``error_url`` are kept."""

    def __init__(self, error_type: str, error_message: str, *, status_code: int = 502,
                 request_id: str | None = None, error_url: str | None = None) -> None:
        Exception.__init__(self, f"{error_type}: {error_message}")
        self.error_type = error_type  # type: ignore[assignment]  # Stytch's own string, maybe outside ErrorType
        self.status_code = status_code
        self.error_message = error_message
        self.request_id = request_id
        self.error_url = error_url or docs_url(status_code, error_type)

    def __reduce__(self) -> tuple[object, ...]:
        return (_provider_error, (type(self), self.error_type, self.error_message, self.status_code,
                                  self.request_id, self.error_url))


class UnexpectedResponse(ProviderError):
    """A success from Stytch that cannot be trusted: not JSON, a required field missing, or another member or
    organization than the one asked for. It fails closed; for a send it counts as ``DeliveryUnknown``."""

    def __init__(self, error_message: str, *, request_id: str | None = None) -> None:
        super().__init__("internal_server_error", error_message, status_code=502, request_id=request_id)


def _provider_error(cls: type[ProviderError], error_type: str, error_message: str, status_code: int,
                    request_id: str | None, url: str) -> ProviderError:
    error = ProviderError.__new__(cls)
    ProviderError.__init__(error, error_type, error_message, status_code=status_code, request_id=request_id,
                           error_url=url)
    return error


_CLASS_OF: dict[str, type[MfaError]] = {
    **dict.fromkeys(
        ["bad_request", "invalid_locale", "invalid_session_duration_minutes", "no_session_arguments",
         "too_many_session_arguments"],
        RequestError,
    ),
    "invalid_phone_number": InvalidPhoneNumber,
    "invalid_phone_number_country_code": InvalidPhoneNumber,
    "organization_not_found": NotFoundError,
    "member_not_found": NotFoundError,
    **dict.fromkeys(
        ["intermediate_session_not_found", "invalid_intermediate_session_token_for_organization",
         "member_session_member_id_mismatch", "session_not_found", "unable_to_parse_session_jwt"],
        TokenError,
    ),
    **dict.fromkeys(
        ["action_available_only_for_active_members", "operation_restricted_by_organization_mfa_methods",
         "duplicate_member_phone_number_for_member", "duplicate_member_phone_number",
         "member_phone_number_not_found", "no_associated_session_passed_in", "insufficient_factors"],
        PolicyRefusal,
    ),
    "too_many_requests": RateLimited,
    "user_lock_limit_reached": RateLimited,
    "otp_code_not_found": CodeRejected,
    "unable_to_auth_otp_code": CodeRejected,
    "downstream_carrier_error": DeliveryFailed,
    "internal_server_error": StoreFailure,
}


def error_for(error_type: str, error_message: str, request_id: str | None = None) -> MfaError:
    """The error of the right layer for ``error_type``."""
    error = ConfigurationError(error_message) if error_type == "invalid_argument" else _CLASS_OF[error_type](
        error_type, error_message)
    error.request_id = request_id
    return error
