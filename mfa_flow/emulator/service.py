"""What the emulator's routes do, over ``AsyncMfaFlow`` in local mode, without any HTTP: each method takes
the request's parsed fields and returns the success body, or raises the ``MfaError`` the body reports."""

from __future__ import annotations

import hmac
import math
import threading
from base64 import b64decode
from binascii import Error as Base64Error
from collections.abc import Mapping
from typing import Any, Final

from mfa_flow.aio import AsyncMfaFlow
from mfa_flow.clock import Clock, SystemClock
from mfa_flow.errors import NotFoundError, RequestError
from mfa_flow.files import Fixtures
from mfa_flow.policy import Policy
from mfa_flow.stores import AsyncStore, Store
from mfa_flow.transports import SmsMessage
from mfa_flow.wire import AUTHENTICATE, GET_MEMBER, GET_ORGANIZATION, GET_SESSIONS, REVOKE_SESSION, SEND, Endpoint

__all__ = ["Emulator", "MessageLog", "OffsetClock"]

PRIMARY_AUTH: Final = Endpoint("POST", "/_emulator/primary_auth", ("organization_id", "member_id", "method"),
                               ("session_token", "locale"))
CLOCK_ADVANCE: Final = Endpoint("POST", "/_emulator/clock/advance", ("seconds",))


class OffsetClock:
    """The emulator's clock: a base clock (wall time by default) plus every offset the tests added."""

    def __init__(self, base: Clock | None = None) -> None:
        self._base: Clock = base if base is not None else SystemClock()
        self._offset = 0.0
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"OffsetClock({self._base!r}, offset={self._offset:g})"

    def now(self) -> float:
        return self._base.now() + self._offset

    def advance(self, seconds: float) -> float:
        with self._lock:
            self._offset += seconds
        return self.now()


class MessageLog:
    """The emulator's SMS gateway: it prints nothing and, only when the test endpoints are on, keeps every
    message so that ``GET /_emulator/messages`` can hand the codes to the application's tests."""

    def __init__(self, *, keep: bool) -> None:
        self.keep = keep
        self.messages: list[SmsMessage] = []
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"MessageLog(<{len(self.messages)} kept>)"

    def deliver(self, message: SmsMessage) -> None:
        if self.keep:
            with self._lock:
                self.messages.append(message)

    def to_json(self) -> list[dict[str, Any]]:
        with self._lock:
            kept = list(self.messages)
        return [{"to": m.to, "code": m.code, "member_id": m.member_id, "organization_id": m.organization_id,
                 "locale": m.locale} for m in kept]


class Emulator:
    """Stytch's B2B SMS OTP endpoints with mfa_flow's rules: a project's credentials, its records, a flow."""

    def __init__(self, *, project_id: str, secret: str, fixtures: Fixtures, policy: Policy | None = None,
                 clock: Clock | None = None, test_endpoints: bool = False, store: Store | AsyncStore | None = None,
                 secret_key: bytes | None = None) -> None:
        for name, value in (("project_id", project_id), ("secret", secret)):
            if not isinstance(value, str) or not value:
                raise RequestError("bad_request", f"{name}: must be a non-empty string")
        self.project_id = project_id
        self._credentials = f"{project_id}:{secret}".encode()
        self.test_endpoints = test_endpoints
        self.fixtures = fixtures
        self.clock = OffsetClock(clock)
        self.messages = MessageLog(keep=test_endpoints)
        self.flow = AsyncMfaFlow(policy=policy, directory=fixtures.directory(), store=store,
                                 transport=self.messages, clock=self.clock, secret_key=secret_key)
        self._emails = {(m.organization_id, m.email_address.lower()): m.member_id
                        for m in fixtures.members if m.email_address}

    def __repr__(self) -> str:
        return f"Emulator(project_id={self.project_id!r}, store={self.flow.store!r})"

    def authorized(self, authorization: str | None) -> bool:
        """HTTP Basic with the project id and secret, compared in constant time."""
        scheme, _, encoded = (authorization or "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            given = b64decode(encoded.strip(), validate=True)
        except (Base64Error, ValueError):
            return False
        return hmac.compare_digest(given, self._credentials)

    # --- Stytch's routes -----------------------------------------------------------------------------------

    async def send(self, body: Mapping[str, Any]) -> dict[str, Any]:
        f = SEND.check(body)
        result = await self.flow.send_sms_otp(
            f["organization_id"], f["member_id"], mfa_phone_number=f.get("mfa_phone_number"),
            locale=f.get("locale"), intermediate_session_token=f.get("intermediate_session_token"),
            session_token=f.get("session_token"), session_jwt=f.get("session_jwt"))
        return result.to_dict()

    async def authenticate(self, body: Mapping[str, Any]) -> dict[str, Any]:
        f = AUTHENTICATE.check(body)
        if "session_custom_claims" in f:
            raise RequestError("bad_request", "session_custom_claims: not supported by the emulator")
        # telemetry_id is accepted and ignored: the emulator does no device fingerprinting.
        result = await self.flow.authenticate_sms_otp(
            f["organization_id"], f["member_id"], f["code"],
            intermediate_session_token=f.get("intermediate_session_token"), session_token=f.get("session_token"),
            session_jwt=f.get("session_jwt"), session_duration_minutes=f.get("session_duration_minutes"),
            set_mfa_enrollment=f.get("set_mfa_enrollment"), set_default_mfa=f.get("set_default_mfa"))
        return result.to_dict()

    async def get_organization(self, organization_ref: str, query: Mapping[str, Any]) -> dict[str, Any]:
        GET_ORGANIZATION.check(query)  # the official SDK repeats the path's organization_id in the query
        org = await self.flow.get_organization(organization_ref)
        return {"organization": org.to_dict()}

    async def get_member(self, organization_ref: str, query: Mapping[str, Any]) -> dict[str, Any]:
        f = GET_MEMBER.check(query)
        org = await self.flow.get_organization(organization_ref)
        member_ref = f.get("member_id")
        if member_ref is None:
            email = f.get("email_address")
            if email is None:
                raise RequestError("bad_request", "member_id: missing (or give email_address)")
            member_ref = self._emails.get((org.organization_id, email.lower()))
            if member_ref is None:
                raise NotFoundError("member_not_found", "email_address: no such member in the organization")
        member = await self.flow.get_member(org.organization_id, member_ref)
        return {"member_id": member.member_id, "member": member.to_dict(), "organization": org.to_dict()}

    async def delete_mfa_phone_number(self, organization_ref: str, member_ref: str) -> dict[str, Any]:
        member = await self.flow.delete_mfa_phone_number(organization_ref, member_ref)
        org = await self.flow.get_organization(organization_ref)
        return {"member_id": member.member_id, "member": member.to_dict(), "organization": org.to_dict()}

    async def revoke_session(self, body: Mapping[str, Any]) -> dict[str, Any]:
        f = REVOKE_SESSION.check(body)
        await self.flow.revoke_session(member_session_id=f.get("member_session_id"),
                                       session_token=f.get("session_token"), session_jwt=f.get("session_jwt"),
                                       member_id=f.get("member_id"))
        return {}

    async def list_sessions(self, query: Mapping[str, Any]) -> dict[str, Any]:
        f = GET_SESSIONS.check(query)
        sessions = await self.flow.list_member_sessions(f["organization_id"], f["member_id"])
        return {"member_sessions": [s.to_dict() for s in sessions]}

    # --- the test endpoints -------------------------------------------------------------------------------

    async def primary_auth(self, body: Mapping[str, Any]) -> dict[str, Any]:
        f = PRIMARY_AUTH.check(body)
        result = await self.flow.authenticate_primary(f["organization_id"], f["member_id"], f["method"],
                                                      session_token=f.get("session_token"), locale=f.get("locale"))
        return result.to_dict()

    def advance_clock(self, body: Mapping[str, Any]) -> dict[str, Any]:
        seconds = CLOCK_ADVANCE.check(body)["seconds"]
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not math.isfinite(seconds) \
                or seconds < 0:
            raise RequestError("bad_request", "seconds: must be a finite number of at least 0")
        return {"now": self.clock.advance(float(seconds))}
