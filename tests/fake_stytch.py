"""A scripted stand-in for Stytch's B2B API behind ``httpx.MockTransport``, for Stytch-mode tests that need
to choose each answer (a wrong code, a refusal, a 5xx, a timeout) rather than run the emulator's rules.

``FakeStytch(org, *members)`` answers get-organization and get-member from the records it was given, and
answers ``send``, ``authenticate`` and the phone deletion from a script: ``stytch.script("authenticate",
WRONG_CODE, OK, ...)``; a step is a callable ``(request, body) -> httpx.Response`` or an httpx exception
class, raised as the transport would. Without a script, a send succeeds and an authenticate returns a new
session. Every request is recorded (method, path, JSON body, Basic auth) in ``.requests``.
"""

from __future__ import annotations

import base64
import json
import secrets
from collections import defaultdict, deque
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import attrs
import httpx

from mfa_flow import Member, Organization
from mfa_flow.errors import error_body

__all__ = ["FakeStytch", "Recorded", "answer", "error", "session_answer"]

PROJECT_ID = "project-test-00000000-0000-4000-8000-00000000f00d"
SECRET = "secret-test-fake-stytch-not-a-real-secret"

Step = Callable[[httpx.Request, dict[str, Any]], httpx.Response] | type[httpx.HTTPError]


@attrs.frozen
class Recorded:
    method: str
    path: str
    body: dict[str, Any] | None
    query: dict[str, str]
    auth: tuple[str, str] | None


def _rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def answer(status: int, body: Mapping[str, Any]) -> httpx.Response:
    return httpx.Response(status, json=dict(body))


def error(error_type: str, status: int, message: str = "refused by the fake") -> Step:
    """A Stytch error body with all five fields."""
    return lambda _request, _body: answer(status, error_body(status, error_type, message,
                                                              f"request-id-test-{secrets.token_hex(8)}"))


def session_answer(member: Member, org: Organization, *, now: float, phone: str = "") -> dict[str, Any]:
    """The session part of a successful authenticate: a fresh token and member_session (SMS factor)."""
    factor: dict[str, Any] = {"type": "otp", "delivery_method": "sms", "last_authenticated_at": _rfc3339(now)}
    if phone:
        factor["phone_number_factor"] = {"phone_id": "phone-number-test-1", "phone_number": phone}
    return {
        "session_token": f"session-token-{secrets.token_hex(16)}",
        "session_jwt": "",
        "member_session": {
            "member_session_id": f"member-session-test-{secrets.token_hex(8)}",
            "member_id": member.member_id, "organization_id": org.organization_id,
            "organization_slug": org.organization_slug, "started_at": _rfc3339(now),
            "last_accessed_at": _rfc3339(now), "expires_at": _rfc3339(now + 3600),
            "authentication_factors": [factor], "roles": [], "custom_claims": {},
        },
    }


class FakeStytch:
    """A MockTransport handler; ``client()`` / ``async_client()`` build httpx clients on it."""

    def __init__(self, org: Organization, *members: Member, now: float = 1767225600.0) -> None:
        self.org = org
        self.members = {m.member_id: m for m in members}
        self.now = now
        self.requests: list[Recorded] = []
        self._scripts: dict[str, deque[Step]] = defaultdict(deque)

    def script(self, route: str, *steps: Step) -> None:
        """The next answers of ``route`` ("send", "authenticate", "delete", "get_member", "get_organization")."""
        self._scripts[route].extend(steps)

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(transport=httpx.MockTransport(self), **kwargs)

    def async_client(self, **kwargs: Any) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.MockTransport(self), **kwargs)

    def sent(self, route: str) -> list[Recorded]:
        suffix = {"send": "/otps/sms/send", "authenticate": "/otps/sms/authenticate"}[route]
        return [r for r in self.requests if r.path.endswith(suffix)]

    # --- answers ---------------------------------------------------------------------------------------------

    def envelope(self, member: Member, **extra: Any) -> dict[str, Any]:
        return {"status_code": 200, "request_id": f"request-id-test-{secrets.token_hex(8)}",
                "member_id": member.member_id, "member": member.to_dict(), "organization": self.org.to_dict(),
                **extra}

    def ok(self, request: httpx.Request, body: dict[str, Any]) -> httpx.Response:
        """The default answer of send and authenticate for the member named in the body."""
        member = self.members[body["member_id"]]
        if request.url.path.endswith("/authenticate"):
            return answer(200, self.envelope(member, **session_answer(member, self.org, now=self.now,
                                                                      phone=member.mfa_phone_number)))
        return answer(200, self.envelope(member))

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else None
        auth = request.headers.get("authorization", "")
        user = None
        if auth.startswith("Basic "):
            name, _, password = base64.b64decode(auth[6:]).decode().partition(":")
            user = (name, password)
        path = request.url.path
        self.requests.append(Recorded(request.method, path, body, dict(request.url.params), user))
        route = ("send" if path.endswith("/otps/sms/send") else "authenticate" if path.endswith("/authenticate")
                 else "delete" if "/mfa_phone_numbers/" in path else "get_member" if path.endswith("/member")
                 else "get_organization")
        script = self._scripts[route]
        if script:
            step = script.popleft()
            if isinstance(step, type):
                raise step("scripted failure", request=request)
            return step(request, body or {})
        if route == "get_organization":
            return answer(200, {"status_code": 200, "request_id": "request-id-test-org",
                                "organization": self.org.to_dict()})
        if route == "get_member":
            ref = request.url.params.get("member_id", "")
            member = self.members.get(ref) or next((m for m in self.members.values() if m.external_id == ref), None)
            if member is None:
                return error("member_not_found", 404)(request, {})
            return answer(200, self.envelope(member))
        if route == "delete":
            member = self.members[path.rsplit("/", 1)[1]]
            self.members[member.member_id] = member = attrs.evolve(member, mfa_phone_number="",
                                                                  mfa_phone_number_verified=False)
            return answer(200, self.envelope(member))
        return self.ok(request, body or {})
