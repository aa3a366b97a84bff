"""Stytch's wire format for the endpoints mfa_flow speaks: their routes and the fields of their bodies.

The emulator checks incoming bodies against these tables and the Stytch provider builds its requests from
them, so both sides agree on exactly the keys of Stytch's API.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from typing import Any, Final

import attrs

from mfa_flow.errors import RequestError

__all__ = [
    "AUTHENTICATE",
    "DELETE_MFA_PHONE_NUMBER",
    "GET_MEMBER",
    "GET_ORGANIZATION",
    "SEND",
    "Endpoint",
    "new_request_id",
    "parse_body",
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
DELETE_MFA_PHONE_NUMBER: Final = Endpoint(
    "DELETE", "/v1/b2b/organizations/{organization_id}/members/mfa_phone_numbers/{member_id}")


def _shown(name: str) -> str:
    """A field name from a request, cut short: an error message never carries a long caller value."""
    return repr(name if len(name) <= 64 else name[:61] + "...")


def parse_body(raw: bytes) -> dict[str, Any]:
    """A JSON object, or ``bad_request`` saying why not."""
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        raise RequestError("bad_request", "request body: not valid JSON") from None
    if not isinstance(data, dict):
        raise RequestError("bad_request", "request body: must be a JSON object")
    return data


def new_request_id() -> str:
    """A request id shaped like those of Stytch's test environment."""
    return f"request-id-test-{uuid.uuid4()}"
