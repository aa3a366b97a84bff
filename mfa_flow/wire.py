"""Stytch's wire format for the endpoints mfa_flow speaks: their routes, the fields of their bodies, and
their answers read into mfa_flow's records.

The emulator checks incoming bodies against these tables and the Stytch provider builds its requests from
them, so both sides agree on exactly the keys of Stytch's API. An answer that is not what Stytch sends is
refused as :class:`~mfa_flow.errors.UnexpectedResponse` naming the field: nothing is trusted half-read.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final, TypeVar

import attrs

from mfa_flow.arguments import text
from mfa_flow.errors import MfaError, ProviderError, RequestError, UnexpectedResponse, error_for
from mfa_flow.records import Member, Organization
from mfa_flow.results import AuthenticationFactor, MemberSession
from mfa_flow.state import Factor, SessionState

__all__ = [
    "AUTHENTICATE",
    "DELETE_MFA_PHONE_NUMBER",
    "GET_MEMBER",
    "GET_ORGANIZATION",
    "GET_SESSIONS",
    "REVOKE_SESSION",
    "SEND",
    "Endpoint",
    "member_from",
    "member_session_from",
    "new_request_id",
    "object_at",
    "organization_from",
    "parse_body",
    "session_record",
    "stytch_error",
    "text_at",
]


@attrs.frozen
class Endpoint:
    """A route of Stytch's API and the fields its body (or query) may carry."""

    method: str
    route: str
    required: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()

    def fields(self) -> frozenset[str]:
        return frozenset(self.required + self.optional)

    def check(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """The body's fields, ``null`` ones dropped; an unknown or missing field is ``bad_request`` naming it."""
        known = self.fields()
        for name in body:
            if name not in known:
                raise RequestError("bad_request", f"{_shown(name)}: not a field of {self.method} {self.route}")
        present = {name: value for name, value in body.items() if value is not None}
        for name in self.required:
            if name not in present:
                raise RequestError("bad_request", f"{name}: missing (required by {self.method} {self.route})")
        return present

    def body(self, **values: object) -> dict[str, Any]:
        """A request body with exactly the keys whose value is not None, as the official SDK sends."""
        unknown = set(values) - self.fields()
        if unknown:
            raise TypeError(f"{self.route}: not fields: {sorted(unknown)}")
        return {name: value for name, value in values.items() if value is not None}


_TOKENS: Final = ("intermediate_session_token", "session_token", "session_jwt")

SEND: Final = Endpoint("POST", "/v1/b2b/otps/sms/send", ("organization_id", "member_id"),
                       ("mfa_phone_number", "locale", *_TOKENS))
AUTHENTICATE: Final = Endpoint(
    "POST", "/v1/b2b/otps/sms/authenticate", ("organization_id", "member_id", "code"),
    (*_TOKENS, "session_duration_minutes", "session_custom_claims", "set_mfa_enrollment", "set_default_mfa",
     "telemetry_id"),
)
GET_ORGANIZATION: Final = Endpoint("GET", "/v1/b2b/organizations/{organization_id}", (), ("organization_id",))
GET_MEMBER: Final = Endpoint("GET", "/v1/b2b/organizations/{organization_id}/member", (),
                             ("organization_id", "member_id", "email_address"))
REVOKE_SESSION: Final = Endpoint("POST", "/v1/b2b/sessions/revoke", (),
                                 ("member_session_id", "session_token", "session_jwt", "member_id"))
GET_SESSIONS: Final = Endpoint("GET", "/v1/b2b/sessions", ("organization_id", "member_id"))
DELETE_MFA_PHONE_NUMBER: Final = Endpoint(
    "DELETE", "/v1/b2b/organizations/{organization_id}/members/mfa_phone_numbers/{member_id}")


def _shown(name: str) -> str:
    """A field name from a request, cut short: an error message never carries a long caller value."""
    return repr(name if len(name) <= 64 else name[:61] + "...")


def parse_body(raw: bytes) -> dict[str, Any]:
    """A JSON object, or ``bad_request`` saying why not."""
    import json  # here, not at the top: only the emulator reads bodies, so `import mfa_flow` need not load it

    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        raise RequestError("bad_request", "request body: not valid JSON") from None
    if not isinstance(data, dict):
        raise RequestError("bad_request", "request body: must be a JSON object")
    return data


def new_request_id() -> str:
    """A request id shaped like those of Stytch's test environment."""
    import uuid  # here, not at the top: only the emulator makes request ids, so `import mfa_flow` need not load it

    return f"request-id-test-{uuid.uuid4()}"


# --- Stytch's answers, read into records -------------------------------------------------------------------

def stytch_error(status_code: int, body: object) -> MfaError:
    """The error an error body describes: the class docs/errors.md gives its ``error_type`` (or a ProviderError for one
    outside it), with Stytch's status, request id, message and URL. A body without all five fields is one the
    official SDK would not read either: a ProviderError."""
    fields = ("status_code", "request_id", "error_type", "error_message", "error_url")
    if not isinstance(body, Mapping) or not all(isinstance(body.get(f), int if f == "status_code" else str)
                                                   for f in fields):
        return ProviderError("internal_server_error", f"Stytch answered HTTP {status_code} with an error body "
                             "that lacks one of status_code, request_id, error_type, error_message, error_url")
    error_type, message, request_id = body["error_type"], body["error_message"], body["request_id"]
    try:
        error = error_for(error_type, message, request_id)
    except KeyError:
        return ProviderError(error_type, message, status_code=status_code, request_id=request_id,
                             error_url=body["error_url"])
    error.status_code, error.error_url = status_code, body["error_url"]
    return error


def object_at(data: Mapping[str, Any], field: str, where: str = "") -> Mapping[str, Any]:
    value = data.get(field)
    if not isinstance(value, Mapping):
        raise UnexpectedResponse(f"Stytch's answer: {where}{field}: missing or not an object")
    return value


#: The longest string an answer's field may hold. Stytch's ids and tokens are under 100 characters and a session
#: JWT (custom claims at most 4 KB) a few KB; anything longer is not Stytch's and would only bloat the records.
MAX_ANSWER_TEXT: Final = 16_384


def text_at(data: Mapping[str, Any], field: str, where: str = "", *, default: str | None = None) -> str:
    """A plain, encodable copy of at most MAX_ANSWER_TEXT characters: an answer may come through the caller
    (``record_primary_auth``), whose strings may be subclasses, hold lone surrogates or be of any size."""
    value = data.get(field, default)
    if not isinstance(value, str):
        raise UnexpectedResponse(f"Stytch's answer: {where}{field}: missing or not a string")
    try:
        plain = text(value, "")  # first: a subclass's own __len__ never runs
    except MfaError:
        raise UnexpectedResponse(f"Stytch's answer: {where}{field}: not valid text") from None
    if len(plain) > MAX_ANSWER_TEXT:
        raise UnexpectedResponse(f"Stytch's answer: {where}{field}: longer than {MAX_ANSWER_TEXT} characters")
    return plain


def _texts_at(data: Mapping[str, Any], field: str, where: str, *, default: list[str] | None = None) -> tuple[str, ...]:
    values = data.get(field, default)
    if not isinstance(values, list):
        raise UnexpectedResponse(f"Stytch's answer: {where}{field}: missing or not a list")
    return tuple(text_at({field: v}, field, where) for v in values)


def _flag_at(data: Mapping[str, Any], field: str, where: str) -> bool:
    value = data.get(field)
    if not isinstance(value, bool):
        raise UnexpectedResponse(f"Stytch's answer: {where}{field}: missing or not true/false")
    return value


def _time_at(data: Mapping[str, Any], field: str, where: str) -> datetime:
    """An RFC 3339 time (raw JSON), or the datetime the official SDK's ``.dict()`` holds."""
    value = data.get(field)
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value
    try:
        when = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        when = None
    if when is None or when.tzinfo is None:
        raise UnexpectedResponse(f"Stytch's answer: {where}{field}: missing or not an RFC 3339 time")
    return when


def _record(cls: type[R], where: str, **fields: Any) -> R:
    try:
        return cls(**fields)
    except MfaError as exc:  # a value outside what mfa_flow knows (a new status, policy, method)
        raise UnexpectedResponse(f"Stytch's answer: {where}: {exc.error_message}") from None


R = TypeVar("R", Organization, Member)


def organization_from(data: Mapping[str, Any]) -> Organization:
    """The organization object of an answer, as a record (the fields of an Organization)."""
    org = object_at(data, "organization")
    return _record(Organization, "organization", organization_id=text_at(org, "organization_id", "organization."),
                   organization_slug=text_at(org, "organization_slug", "organization."),
                   organization_name=text_at(org, "organization_name", "organization."),
                   organization_external_id=text_at(org, "organization_external_id", "organization.", default=""),
                   mfa_policy=text_at(org, "mfa_policy", "organization."),
                   mfa_methods=text_at(org, "mfa_methods", "organization."),
                   allowed_mfa_methods=_texts_at(org, "allowed_mfa_methods", "organization."))


def member_from(data: Mapping[str, Any]) -> Member:
    """The member object of an answer, as a record. Stytch's own ``is_locked`` is not read: the merged view
    takes the lock from mfa_flow's failure counter."""
    m = object_at(data, "member")
    w = "member."
    return _record(Member, "member", member_id=text_at(m, "member_id", w),
                   organization_id=text_at(m, "organization_id", w), email_address=text_at(m, "email_address", w),
                   name=text_at(m, "name", w), external_id=text_at(m, "external_id", w, default=""),
                   status=text_at(m, "status", w), mfa_enrolled=_flag_at(m, "mfa_enrolled", w),
                   mfa_phone_number=text_at(m, "mfa_phone_number", w),
                   mfa_phone_number_verified=_flag_at(m, "mfa_phone_number_verified", w),
                   default_mfa_method=text_at(m, "default_mfa_method", w),
                   totp_registration_id=text_at(m, "totp_registration_id", w),
                   is_breakglass=_flag_at(m, "is_breakglass", w))


def member_session_from(data: Mapping[str, Any]) -> MemberSession:
    """The member_session object of an answer, as Stytch gave it (its phone ids, roles, claims)."""
    s = object_at(data, "member_session")
    w = "member_session."
    factors = s.get("authentication_factors")
    if not isinstance(factors, list):
        raise UnexpectedResponse("Stytch's answer: member_session.authentication_factors: missing or not a list")
    read = []
    for i, f in enumerate(factors):
        where = f"{w}authentication_factors[{i}]."
        if not isinstance(f, Mapping):
            raise UnexpectedResponse(f"Stytch's answer: {where[:-1]}: not an object")
        phone = f.get("phone_number_factor")
        read.append(AuthenticationFactor(
            text_at(f, "type", where), text_at(f, "delivery_method", where),
            _time_at(f, "last_authenticated_at", where),
            {"phone_id": text_at(phone, "phone_id", where + "phone_number_factor.", default=""),
             "phone_number": text_at(phone, "phone_number", where + "phone_number_factor.")}
            if isinstance(phone, Mapping) else None))
    claims = s.get("custom_claims")
    return MemberSession(
        member_session_id=text_at(s, "member_session_id", w), member_id=text_at(s, "member_id", w),
        organization_id=text_at(s, "organization_id", w), organization_slug=text_at(s, "organization_slug", w),
        started_at=_time_at(s, "started_at", w), last_accessed_at=_time_at(s, "last_accessed_at", w),
        expires_at=_time_at(s, "expires_at", w), authentication_factors=tuple(read),
        roles=_texts_at(s, "roles", w, default=[]),
        custom_claims=dict(claims) if isinstance(claims, Mapping) else None)


def session_record(session: MemberSession, now: float) -> SessionState:
    """The local record of a Stytch session (for the inactivity rule), last accessed ``now``."""
    factors = tuple(Factor(f.type, f.delivery_method, f.last_authenticated_at.timestamp(),
                           (f.phone_number_factor or {}).get("phone_number", ""))
                    for f in session.authentication_factors)
    return SessionState(session.member_session_id, session.organization_id, session.member_id,
                        session.started_at.timestamp(), now, session.expires_at.timestamp(), factors)
