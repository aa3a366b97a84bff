"""The Stytch-compatible local server (spec §12), except the official-SDK conformance (tests/test_emulator_sdk.py).

Route rules run in-process against ``create_app`` through ``httpx.ASGITransport`` (the lifespan does not run,
which these tests do not need); the command line, signals and durable stores run ``mfa-flow serve`` as a user
does, through tests/emulator_server.py.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import secrets
import shutil
import signal
import subprocess
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest

from mfa_flow.testing import FakeClock
from tests.emulator_server import PROJECT_ID, SECRET, EmulatorProcess, require
from tests.helpers_process import ROOT, python_env, run_python
from tests.helpers_rules import wrong

ORG = "organization-emulator-1"
ADA = "member-emulator-ada"  # a verified phone
BOB = "member-emulator-bob"  # no phone
CY = "member-emulator-cy"  # a verified phone, for locks
PHONE_ADA = "+14155550101"
PHONE_BOB = "+14155550102"
PHONE_CY = "+14155550103"
FIXTURES: dict[str, Any] = {
    "organizations": [{"organization_id": ORG, "organization_slug": "acme", "organization_name": "Acme",
                       "mfa_policy": "REQUIRED_FOR_ALL"}],
    "members": [
        {"member_id": ADA, "organization_id": ORG, "email_address": "ada@example.com",
         "mfa_phone_number": PHONE_ADA, "mfa_phone_number_verified": True},
        {"member_id": BOB, "organization_id": ORG, "email_address": "bob@example.com"},
        {"member_id": CY, "organization_id": ORG, "mfa_phone_number": PHONE_CY, "mfa_phone_number_verified": True},
    ],
}

SEND = "/v1/b2b/otps/sms/send"
AUTHENTICATE = "/v1/b2b/otps/sms/authenticate"
ORGANIZATION = f"/v1/b2b/organizations/{ORG}"
MEMBER = f"/v1/b2b/organizations/{ORG}/member"
DELETE_PHONE = f"/v1/b2b/organizations/{ORG}/members/mfa_phone_numbers/{BOB}"
MESSAGES = "/_emulator/messages"
PRIMARY_AUTH = "/_emulator/primary_auth"
ADVANCE = "/_emulator/clock/advance"
ERROR_FIELDS = {"status_code", "request_id", "error_type", "error_message", "error_url"}
MESSAGE_FIELDS = {"to", "code", "member_id", "organization_id", "locale"}
REQUEST_ID_PREFIX = "request-id-test-"


def basic(project_id: str = PROJECT_ID, secret: str = SECRET) -> dict[str, str]:
    token = base64.b64encode(f"{project_id}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


# --- what every answer looks like --------------------------------------------------------------------------

def assert_request_id(body: Mapping[str, Any]) -> str:
    request_id = body["request_id"]
    assert isinstance(request_id, str)
    assert request_id.startswith(REQUEST_ID_PREFIX), request_id
    uuid.UUID(request_id.removeprefix(REQUEST_ID_PREFIX))  # raises on anything but a UUID
    return request_id


def refused(response: httpx.Response, status: int, error_type: str) -> str:
    """Assert Stytch's error shape (exactly the five fields); the error message."""
    body = response.json()
    assert response.status_code == status, body
    assert response.headers["content-type"].startswith("application/json")
    assert set(body) == ERROR_FIELDS, body
    assert body["status_code"] == status
    assert body["error_type"] == error_type, body
    assert isinstance(body["error_message"], str)
    assert body["error_message"]
    assert isinstance(body["error_url"], str)
    assert body["error_url"].startswith("https://stytch.com/docs/api/errors/")
    assert body["error_url"].endswith(f"#{error_type}")
    assert_request_id(body)
    return str(body["error_message"])


def ok(response: httpx.Response) -> dict[str, Any]:
    """Assert a success body: status_code 200 and a generated request_id; the body."""
    body = response.json()
    assert response.status_code == 200, body
    assert body["status_code"] == 200
    assert_request_id(body)
    return dict(body)


def bad_request_naming(response: httpx.Response, field: str) -> None:
    message = refused(response, 400, "bad_request")
    assert re.search(rf"(?<!\w){re.escape(field)}(?!\w)", message), message


# --- in-process: create_app over ASGITransport --------------------------------------------------------------

class Http:
    """An httpx client on the app, driven from sync tests on one event loop."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self._runner = asyncio.Runner()
        self._client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://emulator")

    def request(self, method: str, path: str, *, body: object = None, content: bytes | None = None,
                headers: Mapping[str, str] | None = None, params: Mapping[str, str] | None = None) -> httpx.Response:
        if content is None and body is not None:
            content = json.dumps(body).encode()
        return self._runner.run(self._client.request(method, path, content=content, headers=headers, params=params))

    def stytch(self, method: str, path: str, body: object = None, *, params: Mapping[str, str] | None = None,
               content: bytes | None = None) -> httpx.Response:
        """A request to one of Stytch's routes, with the project's Basic credentials."""
        return self.request(method, path, body=body, content=content, headers=basic(), params=params)

    def close(self) -> None:
        self._runner.run(self._client.aclose())
        self._runner.close()

    # the test endpoints

    def messages(self) -> list[dict[str, Any]]:
        response = self.request("GET", MESSAGES)
        assert response.status_code == 200
        return list(response.json())

    def code(self, member_id: str) -> str:
        return str([m for m in self.messages() if m["member_id"] == member_id][-1]["code"])

    def login(self, member_id: str, **extra: str) -> str:
        """Primary authentication with the automatic code; the IST."""
        body = ok(self.request("POST", PRIMARY_AUTH,
                               body={"organization_id": ORG, "member_id": member_id, "method": "password", **extra}))
        assert body["mfa_required"]["secondary_auth_initiated"] == "sms_otp"
        return str(body["intermediate_session_token"])


def make_app(*, test_endpoints: bool = True, clock: FakeClock | None = None) -> Any:
    require("starlette")
    from mfa_flow.emulator import create_app

    return create_app(project_id=PROJECT_ID, secret=SECRET, fixtures=FIXTURES, clock=clock,
                      test_endpoints=test_endpoints)


@pytest.fixture
def fake_clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def http(fake_clock: FakeClock) -> Iterator[Http]:
    client = Http(make_app(clock=fake_clock))
    yield client
    client.close()


@pytest.fixture
def http_without_test_endpoints() -> Iterator[Http]:
    client = Http(make_app(test_endpoints=False))
    yield client
    client.close()


#: (route, the smallest valid body) for every POST route, Stytch's and the test endpoints'.
POST_ROUTES = [
    (SEND, {"organization_id": ORG, "member_id": BOB, "mfa_phone_number": PHONE_BOB}),
    (AUTHENTICATE, {"organization_id": ORG, "member_id": ADA, "code": "000000",
                    "intermediate_session_token": "ist-unknown"}),
    (PRIMARY_AUTH, {"organization_id": ORG, "member_id": ADA, "method": "password"}),
    (ADVANCE, {"seconds": 1}),
]
POST_IDS = ["send", "authenticate", "primary_auth", "clock_advance"]


def post(http: Http, route: str, body: object = None, *, content: bytes | None = None) -> httpx.Response:
    if route.startswith("/_emulator/"):
        return http.request("POST", route, body=body, content=content)
    return http.stytch("POST", route, body, content=content)


# --- body rules --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("route", [r for r, _ in POST_ROUTES], ids=POST_IDS)
@pytest.mark.parametrize("content", [b"", b"{", b"organization_id=x", b"\xff\xfe", b'{"a": 1} trailing'],
                         ids=["empty", "truncated", "form", "not_utf8", "trailing"])
def test_body_that_is_not_json_is_bad_request(http: Http, route: str, content: bytes) -> None:
    message = refused(post(http, route, content=content), 400, "bad_request")
    assert "not valid JSON" in message
    assert http.messages() == []


@pytest.mark.parametrize("route", [r for r, _ in POST_ROUTES], ids=POST_IDS)
@pytest.mark.parametrize("content", [b"[]", b'["organization_id"]', b'"text"', b"7", b"null", b"true"],
                         ids=["empty_list", "list", "string", "number", "null", "bool"])
def test_body_that_is_not_an_object_is_bad_request(http: Http, route: str, content: bytes) -> None:
    message = refused(post(http, route, content=content), 400, "bad_request")
    assert "JSON object" in message


@pytest.mark.parametrize(("route", "body"), POST_ROUTES, ids=POST_IDS)
def test_missing_required_field_is_bad_request_naming_it(http: Http, route: str, body: dict[str, Any]) -> None:
    required = {SEND: ("organization_id", "member_id"), AUTHENTICATE: ("organization_id", "member_id", "code"),
                PRIMARY_AUTH: ("organization_id", "member_id", "method"), ADVANCE: ("seconds",)}[route]
    for field in required:
        without = {k: v for k, v in body.items() if k != field}
        bad_request_naming(post(http, route, without), field)
        # a null required field is as absent as a missing one
        bad_request_naming(post(http, route, {**body, field: None}), field)
    assert http.messages() == []


@pytest.mark.parametrize(("route", "body"), POST_ROUTES, ids=POST_IDS)
def test_unknown_field_is_bad_request_naming_it(http: Http, route: str, body: dict[str, Any]) -> None:
    bad_request_naming(post(http, route, {**body, "mfa_phone": PHONE_BOB}), "'mfa_phone'")
    bad_request_naming(post(http, route, {**body, "Organization_Id": ORG}), "'Organization_Id'")
    assert http.messages() == []
    assert ok(http.stytch("GET", MEMBER, params={"member_id": BOB}))["member"]["mfa_phone_number"] == ""


def test_unknown_query_parameter_is_bad_request_naming_it(http: Http) -> None:
    bad_request_naming(http.stytch("GET", MEMBER, params={"member_id": ADA, "expand": "all"}), "'expand'")
    bad_request_naming(http.stytch("GET", ORGANIZATION, params={"verbose": "1"}), "'verbose'")


def test_unknown_field_name_is_cut_short_in_the_message(http: Http) -> None:
    long_name = "x" * 5000
    message = refused(http.stytch("POST", SEND, {"organization_id": ORG, "member_id": ADA, long_name: 1}), 400,
                      "bad_request")
    assert len(message) < 200
    assert long_name not in message


def test_null_optional_fields_are_treated_as_absent(http: Http) -> None:
    ist = http.login(ADA)
    body = ok(http.stytch("POST", SEND, {"organization_id": ORG, "member_id": ADA, "mfa_phone_number": None,
                                         "locale": None, "intermediate_session_token": ist, "session_token": None,
                                         "session_jwt": None}))
    assert body["member_id"] == ADA
    sent = http.messages()
    assert [m["locale"] for m in sent] == [None, None]
    result = ok(http.stytch("POST", AUTHENTICATE, {
        "organization_id": ORG, "member_id": ADA, "code": sent[-1]["code"], "intermediate_session_token": ist,
        "session_token": None, "session_jwt": None, "session_duration_minutes": None,
        "session_custom_claims": None, "set_mfa_enrollment": None, "set_default_mfa": None, "telemetry_id": None}))
    assert result["session_token"]
    assert result["member_session"]["member_id"] == ADA
    # absent session_duration_minutes: the default 60 minutes
    session = result["member_session"]
    assert session["expires_at"] > session["started_at"]


# --- what every answer carries ----------------------------------------------------------------------------

def test_every_success_body_has_status_code_200_and_a_request_id(http: Http) -> None:
    ist = http.login(ADA)
    code = http.code(ADA)
    bodies = [
        ok(http.stytch("POST", SEND, {"organization_id": ORG, "member_id": BOB, "mfa_phone_number": PHONE_BOB})),
        ok(http.stytch("POST", AUTHENTICATE, {"organization_id": ORG, "member_id": ADA, "code": code,
                                              "intermediate_session_token": ist})),
        ok(http.stytch("GET", ORGANIZATION)),
        ok(http.stytch("GET", MEMBER, params={"member_id": ADA})),
        ok(http.stytch("DELETE", DELETE_PHONE)),
        ok(http.request("POST", PRIMARY_AUTH, body={"organization_id": ORG, "member_id": CY, "method": "sso"})),
        ok(http.request("POST", ADVANCE, body={"seconds": 0})),
    ]
    request_ids = [b["request_id"] for b in bodies]
    assert len(set(request_ids)) == len(request_ids)


def test_every_error_body_has_exactly_the_five_fields(http: Http) -> None:
    """One refusal of each origin: auth, routing, the body, the flow's rules; every request id is new."""
    responses = [
        (http.request("POST", SEND, body={"organization_id": ORG, "member_id": ADA}), 401, "unauthorized_credentials"),
        (http.stytch("GET", "/v1/b2b/nothing"), 404, "route_not_found"),
        (http.stytch("PUT", SEND), 405, "method_not_allowed"),
        (http.stytch("POST", SEND, content=b"{"), 400, "bad_request"),
        (http.stytch("POST", SEND, {"organization_id": ORG, "member_id": "member-nobody"}), 404, "member_not_found"),
        (http.stytch("POST", SEND, {"organization_id": ORG, "member_id": BOB}), 404,
         "member_phone_number_not_found"),
        (http.stytch("POST", SEND, {"organization_id": ORG, "member_id": ADA}), 400,
         "no_associated_session_passed_in"),
        (http.stytch("GET", "/v1/b2b/organizations/organization-nowhere"), 404, "organization_not_found"),
        (http.stytch("POST", AUTHENTICATE, {"organization_id": ORG, "member_id": ADA, "code": "123456",
                                            "session_duration_minutes": 2, "session_token": "x"}), 400,
         "invalid_session_duration_minutes"),
        (http.request("POST", ADVANCE, body={"seconds": -1}), 400, "bad_request"),
    ]
    request_ids = set()
    for response, status, error_type in responses:
        refused(response, status, error_type)
        request_ids.add(response.json()["request_id"])
    assert len(request_ids) == len(responses)


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/"), ("GET", "/v1/b2b/otps/sms"), ("POST", "/v1/b2b/otps/sms/verify"), ("GET", "/_emulator/nothing"),
    ("POST", "/v1/b2b/organizations/x/members/mfa_phone_numbers"),
])
def test_unknown_route_is_route_not_found(http: Http, method: str, path: str) -> None:
    message = refused(http.stytch(method, path), 404, "route_not_found")
    assert path in message


@pytest.mark.parametrize(("method", "path"), [
    ("GET", SEND), ("PUT", AUTHENTICATE), ("DELETE", ORGANIZATION), ("POST", MEMBER), ("GET", DELETE_PHONE),
    ("POST", MESSAGES), ("GET", PRIMARY_AUTH), ("GET", ADVANCE),
])
def test_wrong_method_is_method_not_allowed(http: Http, method: str, path: str) -> None:
    message = refused(http.stytch(method, path), 405, "method_not_allowed")
    assert method in message


# --- HTTP Basic auth ---------------------------------------------------------------------------------------

STYTCH_ROUTES = [
    ("POST", SEND, {"organization_id": ORG, "member_id": BOB, "mfa_phone_number": PHONE_BOB}, None),
    ("POST", AUTHENTICATE, {"organization_id": ORG, "member_id": ADA, "code": "000000",
                            "intermediate_session_token": "ist-unknown"}, None),
    ("GET", ORGANIZATION, None, None),
    ("GET", MEMBER, None, {"member_id": ADA}),
    ("DELETE", f"/v1/b2b/organizations/{ORG}/members/mfa_phone_numbers/{ADA}", None, None),
]
STYTCH_IDS = ["send", "authenticate", "get_organization", "get_member", "delete_mfa_phone_number"]
BAD_CREDENTIALS = {
    "missing": {},
    "wrong_secret": basic(secret=SECRET + "x"),
    "wrong_project": basic(project_id="project-test-00000000-0000-4000-8000-000000000002"),
    "swapped": basic(project_id=SECRET, secret=PROJECT_ID),
    "malformed_base64": {"Authorization": "Basic !!not-base64!!"},
    "no_colon": {"Authorization": "Basic " + base64.b64encode(f"{PROJECT_ID}{SECRET}".encode()).decode()},
    "empty": {"Authorization": "Basic "},
    "bearer": {"Authorization": f"Bearer {SECRET}"},
}


@pytest.mark.parametrize(("method", "path", "body", "params"), STYTCH_ROUTES, ids=STYTCH_IDS)
@pytest.mark.parametrize("headers", list(BAD_CREDENTIALS.values()), ids=list(BAD_CREDENTIALS))
def test_basic_auth_is_required_on_every_stytch_route(http: Http, method: str, path: str, body: object,
                                                      params: Mapping[str, str] | None,
                                                      headers: dict[str, str]) -> None:
    refused(http.request(method, path, body=body, headers=headers, params=params), 401, "unauthorized_credentials")
    # nothing happened: no SMS, Ada's phone still linked
    assert http.messages() == []
    member = ok(http.stytch("GET", MEMBER, params={"member_id": ADA}))["member"]
    assert member["mfa_phone_number"] == PHONE_ADA


def test_basic_auth_is_checked_before_the_body(http: Http) -> None:
    """A caller without the credentials learns nothing from the body checks."""
    refused(http.request("POST", SEND, content=b"{"), 401, "unauthorized_credentials")
    refused(http.request("POST", SEND, body={"organization_id": "organization-nowhere", "member_id": "m"}), 401,
            "unauthorized_credentials")


def test_test_routes_need_no_auth(http: Http) -> None:
    ist = http.login(ADA)  # http.login sends no Authorization header
    assert ist
    assert [m["member_id"] for m in http.messages()] == [ADA]
    assert ok(http.request("POST", ADVANCE, body={"seconds": 1}))["now"] > 0


@pytest.mark.parametrize(("method", "path", "body"), [
    ("GET", MESSAGES, None),
    ("POST", PRIMARY_AUTH, {"organization_id": ORG, "member_id": ADA, "method": "password"}),
    ("POST", ADVANCE, {"seconds": 1}),
])
def test_test_routes_are_absent_without_test_endpoints(http_without_test_endpoints: Http, method: str, path: str,
                                                       body: object) -> None:
    refused(http_without_test_endpoints.request(method, path, body=body), 404, "route_not_found")
    refused(http_without_test_endpoints.stytch(method, path, body), 404, "route_not_found")


def test_without_test_endpoints_stytch_routes_still_answer(http_without_test_endpoints: Http) -> None:
    body = ok(http_without_test_endpoints.stytch("POST", SEND, {"organization_id": ORG, "member_id": BOB,
                                                                "mfa_phone_number": PHONE_BOB}))
    assert body["member"]["mfa_phone_number"] == PHONE_BOB


# --- the test endpoints --------------------------------------------------------------------------------------

@pytest.mark.parametrize("content", [b'{"seconds": -1}', b'{"seconds": -0.001}', b'{"seconds": "5"}',
                                     b'{"seconds": true}', b'{"seconds": false}', b'{"seconds": NaN}',
                                     b'{"seconds": Infinity}', b'{"seconds": -Infinity}', b'{"seconds": [5]}',
                                     b'{"seconds": {"value": 5}}'],
                         ids=["negative", "slightly_negative", "string", "true", "false", "nan", "infinity",
                              "minus_infinity", "list", "object"])
def test_clock_advance_refuses_what_is_not_a_finite_non_negative_number(http: Http, fake_clock: FakeClock,
                                                                        content: bytes) -> None:
    before = ok(http.request("POST", ADVANCE, body={"seconds": 0}))["now"]
    bad_request_naming(http.request("POST", ADVANCE, content=content), "seconds")
    assert ok(http.request("POST", ADVANCE, body={"seconds": 0}))["now"] == before == fake_clock.now()


def test_clock_advance_adds_to_the_emulators_clock(http: Http, fake_clock: FakeClock) -> None:
    start = fake_clock.now()
    assert ok(http.request("POST", ADVANCE, body={"seconds": 90}))["now"] == start + 90
    assert ok(http.request("POST", ADVANCE, body={"seconds": 0.5}))["now"] == start + 90.5
    assert ok(http.request("POST", ADVANCE, body={"seconds": 0}))["now"] == start + 90.5


def test_clock_advance_is_the_clock_the_rules_run_on(http: Http) -> None:
    """A code lives 120 s: advanced past that, the right code finds no live code."""
    ist = http.login(ADA)
    code = http.code(ADA)
    ok(http.request("POST", ADVANCE, body={"seconds": 120}))
    refused(http.stytch("POST", AUTHENTICATE, {"organization_id": ORG, "member_id": ADA, "code": code,
                                               "intermediate_session_token": ist}), 401, "unable_to_auth_otp_code")


def test_messages_lists_every_message_oldest_first_with_exactly_its_keys(http: Http) -> None:
    assert http.messages() == []
    ist = http.login(ADA)
    ok(http.stytch("POST", SEND, {"organization_id": ORG, "member_id": BOB, "mfa_phone_number": "+1 415-555-0102",
                                  "locale": "pt-br"}))
    ok(http.stytch("POST", SEND, {"organization_id": ORG, "member_id": ADA, "intermediate_session_token": ist,
                                  "locale": "es"}))
    sent = http.messages()
    assert [(m["member_id"], m["to"], m["locale"]) for m in sent] == [
        (ADA, PHONE_ADA, None), (BOB, PHONE_BOB, "pt-br"), (ADA, PHONE_ADA, "es")]
    for message in sent:
        assert set(message) == MESSAGE_FIELDS
        assert message["organization_id"] == ORG
        assert re.fullmatch(r"\d{6}", message["code"])
    # the newest code is the live one: it signs Ada in
    result = ok(http.stytch("POST", AUTHENTICATE, {"organization_id": ORG, "member_id": ADA, "code": sent[-1]["code"],
                                                   "intermediate_session_token": ist}))
    assert result["member"]["mfa_phone_number_verified"] is True


def test_primary_auth_answers_the_primary_auth_result_with_the_automatic_send(http: Http) -> None:
    body = ok(http.request("POST", PRIMARY_AUTH, body={"organization_id": ORG, "member_id": ADA,
                                                       "method": "email_magic_link"}))
    assert body["member_id"] == ADA
    assert body["organization_id"] == ORG
    assert body["member_authenticated"] is False  # MFA is owed (REQUIRED_FOR_ALL)
    assert body["intermediate_session_token"]
    assert body["session_token"] == ""
    assert body["member_session"] is None
    assert body["mfa_required"] == {"member_options": {"mfa_phone_number": "XXXXXXX0101", "totp_registration_id": ""},
                                    "secondary_auth_initiated": "sms_otp"}
    assert [m["to"] for m in http.messages()] == [PHONE_ADA]
    refused(http.request("POST", PRIMARY_AUTH, body={"organization_id": ORG, "member_id": ADA, "method": "fax"}),
            400, "bad_request")


def test_session_custom_claims_is_refused_naming_it(http: Http) -> None:
    ist = http.login(ADA)
    code = http.code(ADA)
    body = {"organization_id": ORG, "member_id": ADA, "code": code, "intermediate_session_token": ist}
    bad_request_naming(http.stytch("POST", AUTHENTICATE, {**body, "session_custom_claims": {"role": "admin"}}),
                       "session_custom_claims")
    # the refusal changed nothing: the code and the IST still sign Ada in
    assert ok(http.stytch("POST", AUTHENTICATE, body))["session_token"]


def test_telemetry_id_is_accepted(http: Http) -> None:
    ist = http.login(ADA)
    result = ok(http.stytch("POST", AUTHENTICATE, {"organization_id": ORG, "member_id": ADA, "code": http.code(ADA),
                                                   "intermediate_session_token": ist,
                                                   "telemetry_id": "telemetry-id-test-1"}))
    assert result["session_token"]
    assert result["member_id"] == ADA


# --- Stytch's routes do what the flow does -----------------------------------------------------------------

def test_full_login_over_http_issues_a_session(http: Http) -> None:
    ist = http.login(ADA)
    result = ok(http.stytch("POST", AUTHENTICATE, {"organization_id": ORG, "member_id": ADA, "code": http.code(ADA),
                                                   "intermediate_session_token": ist,
                                                   "session_duration_minutes": 30}))
    session = result["member_session"]
    assert result["session_token"]
    assert result["session_token"] != ist
    assert session["member_id"] == ADA
    assert [f["type"] for f in session["authentication_factors"]] == ["password", "otp"]
    assert result["member"]["mfa_enrolled"] is True  # a success under REQUIRED_FOR_ALL enrols
    assert result["organization"]["organization_id"] == ORG
    # the IST is spent
    refused(http.stytch("POST", AUTHENTICATE, {"organization_id": ORG, "member_id": ADA, "code": "123456",
                                               "intermediate_session_token": ist}), 404,
            "intermediate_session_not_found")


def test_wrong_codes_lock_the_member(http: Http) -> None:
    ist = http.login(CY)
    for attempt in range(1, 11):
        if attempt in (5, 9):  # the 5th wrong attempt on a code kills it: send a new one first
            ok(http.stytch("POST", SEND, {"organization_id": ORG, "member_id": CY, "intermediate_session_token": ist}))
        response = http.stytch("POST", AUTHENTICATE, {"organization_id": ORG, "member_id": CY,
                                                      "code": wrong(http.code(CY)),
                                                      "intermediate_session_token": ist})
        if attempt < 10:
            refused(response, 404, "otp_code_not_found")
    refused(response, 429, "user_lock_limit_reached")
    member = ok(http.stytch("GET", MEMBER, params={"member_id": CY}))["member"]
    assert member["is_locked"] is True
    assert member["lock_expires_at"]


def test_get_organization_by_id_or_slug(http: Http) -> None:
    by_id = ok(http.stytch("GET", ORGANIZATION))["organization"]
    by_slug = ok(http.stytch("GET", "/v1/b2b/organizations/acme"))["organization"]
    assert by_id == by_slug
    assert by_id["organization_id"] == ORG
    assert by_id["organization_name"] == "Acme"
    assert by_id["mfa_policy"] == "REQUIRED_FOR_ALL"
    # the official SDK repeats the path's organization_id in the query
    assert ok(http.stytch("GET", ORGANIZATION, params={"organization_id": ORG}))["organization"] == by_id


def test_get_member_by_id_or_email_address(http: Http) -> None:
    by_id = ok(http.stytch("GET", MEMBER, params={"member_id": ADA}))
    by_email = ok(http.stytch("GET", MEMBER, params={"email_address": "Ada@Example.com"}))
    assert by_id["member"] == by_email["member"]
    assert by_id["member_id"] == ADA
    assert by_id["member"]["mfa_phone_number"] == PHONE_ADA
    assert by_id["organization"]["organization_id"] == ORG
    bad_request_naming(http.stytch("GET", MEMBER), "member_id")
    refused(http.stytch("GET", MEMBER, params={"email_address": "nobody@example.com"}), 404, "member_not_found")
    refused(http.stytch("GET", MEMBER, params={"member_id": "member-nobody"}), 404, "member_not_found")


def test_delete_mfa_phone_number_unlinks_the_phone(http: Http) -> None:
    ok(http.stytch("POST", SEND, {"organization_id": ORG, "member_id": BOB, "mfa_phone_number": PHONE_BOB}))
    linked = ok(http.stytch("GET", MEMBER, params={"member_id": BOB}))["member"]
    assert (linked["mfa_phone_number"], linked["mfa_phone_number_verified"]) == (PHONE_BOB, False)
    body = ok(http.stytch("DELETE", DELETE_PHONE))
    assert body["member_id"] == BOB
    assert body["member"]["mfa_phone_number"] == ""
    assert ok(http.stytch("GET", MEMBER, params={"member_id": BOB}))["member"]["mfa_phone_number"] == ""


# --- the command line, as a user runs it ---------------------------------------------------------------------

LISTENING = re.compile(r"Listening on http://127\.0\.0\.1:(\d+)\n")
SERVE_TIMEOUT = 60


def run_serve(*args: str) -> subprocess.CompletedProcess[str]:
    """``python -m mfa_flow serve ...`` with the project's credentials, to its end (bounded in time)."""
    return run_python("-m", "mfa_flow", "serve", "--host", "127.0.0.1", "--port", "0", "--project-id", PROJECT_ID,
                      "--secret", SECRET, *args, env=python_env(COLUMNS="100"), timeout=SERVE_TIMEOUT)


def write_fixtures(tmp_path: Path, content: object = FIXTURES, name: str = "fixtures.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(content), "utf-8")
    return path


def stytch_call(server: EmulatorProcess, method: str, path: str, body: object = None,
                params: Mapping[str, str] | None = None) -> httpx.Response:
    """One of Stytch's routes of a running server, with the project's Basic credentials."""
    return httpx.request(method, server.url + path, json=body, params=params, auth=(PROJECT_ID, SECRET), timeout=10)


def test_serve_prints_only_the_listening_line_on_stdout(start_emulator: Any) -> None:
    server = start_emulator(FIXTURES, extra_args=["--access-log"])
    match = LISTENING.fullmatch(server.first_line)
    assert match is not None, server.first_line
    assert server.url == f"http://127.0.0.1:{match.group(1)}"
    # it answers there, and what it logs (requests included) goes to stderr
    assert ok(stytch_call(server, "GET", ORGANIZATION))["organization"]["organization_id"] == ORG
    server.primary_auth(ORG, ADA)
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(timeout=SERVE_TIMEOUT) == 0
    assert server.process.stdout is not None
    assert server.process.stdout.read() == ""
    server.stop()
    assert f"GET {ORGANIZATION}" in server.stderr
    assert "POST /_emulator/primary_auth" in server.stderr
    assert "test endpoints on" in server.stderr
    assert server.returncode == 0


def test_serve_never_prints_a_code(start_emulator: Any) -> None:
    server = start_emulator(FIXTURES, extra_args=["--access-log"])
    server.primary_auth(ORG, ADA)
    code = server.code(ADA)
    assert server.stop() == 0
    assert not re.search(rf"(?<!\d){code}(?!\d)", server.stderr)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_serve_exits_0_on_sigint_and_sigterm(start_emulator: Any, sig: signal.Signals) -> None:
    server = start_emulator(FIXTURES, test_endpoints=False)
    ok(stytch_call(server, "GET", MEMBER, params={"member_id": ADA}))
    assert server.stop(sig) == 0
    assert "Traceback" not in server.stderr


def test_serve_refuses_a_bad_fixtures_file_with_status_2(tmp_path: Path) -> None:
    bad = {**FIXTURES, "members": [*FIXTURES["members"], {"member_id": "member-emulator-dee", "organization_id": ORG,
                                                          "mfa_phone_number": "+1 (415) 555-0101"}]}
    path = write_fixtures(tmp_path, bad)
    done = run_serve("--fixtures", str(path))
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    assert f"{path}: members[3] (member_id 'member-emulator-dee'): mfa_phone_number" in done.stderr
    typed = write_fixtures(tmp_path, {"organizations": [{"organization_id": ORG, "mfa_policy": 1}]}, "typed.json")
    done = run_serve("--fixtures", str(typed))
    assert done.returncode == 2, done.stderr
    assert f"{typed}: organizations[0] (organization_id '{ORG}'): mfa_policy = 1: must be one of" in done.stderr


def test_serve_refuses_a_bad_policy_file_with_status_2(tmp_path: Path) -> None:
    fixtures = write_fixtures(tmp_path)
    policy = tmp_path / "policy.toml"
    policy.write_text("[policy]\nlockout_threshold = 0\n", "utf-8")
    done = run_serve("--fixtures", str(fixtures), "--policy", str(policy))
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    assert f"{policy}: [policy] lockout_threshold = 0: must be an integer of at least 1" in done.stderr
    policy.write_text(f'[[members]]\nmember_id = "{ADA}"\norganization_id = "organization-nowhere"\n', "utf-8")
    done = run_serve("--fixtures", str(fixtures), "--policy", str(policy))
    assert done.returncode == 2, done.stderr
    assert f"{policy}: members[0] (member_id '{ADA}'): organization_id" in done.stderr


@pytest.mark.parametrize("store", ["postgres://127.0.0.1/db", "sqlite", "file.db", ""])
def test_serve_refuses_a_bad_store_with_status_2(tmp_path: Path, store: str) -> None:
    done = run_serve("--fixtures", str(write_fixtures(tmp_path)), "--store", store)
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    assert "--store: must be memory, sqlite:PATH or redis://" in done.stderr


@pytest.mark.parametrize("store", ["sqlite:{tmp}/emulator.db", "redis://127.0.0.1:1/0"], ids=["sqlite", "redis"])
def test_serve_refuses_a_durable_store_without_a_secret_key_file(tmp_path: Path, store: str) -> None:
    done = run_serve("--fixtures", str(write_fixtures(tmp_path)), "--store", store.format(tmp=tmp_path))
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    assert "a durable store needs --secret-key-file" in done.stderr
    assert not (tmp_path / "emulator.db").exists()  # refused before the store created its file


def test_serve_refuses_an_unreadable_or_short_secret_key_file(tmp_path: Path) -> None:
    fixtures = str(write_fixtures(tmp_path))
    store = f"sqlite:{tmp_path / 'emulator.db'}"
    done = run_serve("--fixtures", fixtures, "--store", store, "--secret-key-file", str(tmp_path / "absent.key"))
    assert done.returncode == 2, done.stderr
    assert f"--secret-key-file {tmp_path / 'absent.key'}: cannot read it" in done.stderr
    short = tmp_path / "short.key"
    short.write_bytes(b"0123456789abcdef\n")  # 16 bytes
    done = run_serve("--fixtures", fixtures, "--store", store, "--secret-key-file", str(short))
    assert done.returncode == 2, done.stderr
    assert "secret_key" in done.stderr


def test_serve_help_exits_0_and_names_the_extra() -> None:
    script = shutil.which("mfa-flow")
    assert script is not None, "the mfa-flow console script is not on PATH: is the package pip-installed?"
    done = subprocess.run([script, "serve", "--help"], cwd=ROOT, env=python_env(COLUMNS="100"),  # noqa: S603 - the entry point
                          capture_output=True, text=True, timeout=SERVE_TIMEOUT, check=False)
    assert done.returncode == 0, done.stderr
    assert "mfa_flow[emulator]" in done.stdout
    assert "--fixtures" in done.stdout


#: Run as ``python -c``: hide starlette and uvicorn, run mfa_flow.cli.main(argv), then report which of the
#: emulator's modules got imported (on stderr, after the command's own output).
WITHOUT_EXTRA = """
import json, sys
class Hide:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in ("starlette", "uvicorn"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, Hide())
from mfa_flow.cli import main
status = main(json.loads(sys.argv[1]))
loaded = sorted(m for m in sys.modules if m.partition(".")[0] in ("starlette", "uvicorn")
                or m.startswith("mfa_flow.emulator"))
sys.stderr.write("LOADED " + json.dumps(loaded) + "\\n")
sys.exit(status)
"""


def run_without_extra(*argv: str) -> tuple[int, str, list[str]]:
    """(exit status, stdout + stderr before the report, modules of the extra that were imported)."""
    done = run_python("-c", WITHOUT_EXTRA, json.dumps(argv), env=python_env(COLUMNS="100"), timeout=SERVE_TIMEOUT)
    err, _, report = done.stderr.rpartition("LOADED ")
    assert report, done.stderr
    return done.returncode, done.stdout + err, json.loads(report)


def test_serve_help_works_without_the_extra() -> None:
    status, output, loaded = run_without_extra("serve", "--help")
    assert status == 0, output
    assert "mfa_flow[emulator]" in output
    assert "--secret-key-file" in output
    assert loaded == []


def test_serve_without_the_extra_exits_2_saying_how_to_install_it(tmp_path: Path) -> None:
    status, output, loaded = run_without_extra("serve", "--project-id", PROJECT_ID, "--secret", SECRET,
                                               "--fixtures", str(write_fixtures(tmp_path)), "--port", "0")
    assert status == 2, output
    assert "needs the emulator extra" in output
    assert "pip install 'mfa_flow[emulator]'" in output
    assert "Listening" not in output
    assert "Traceback" not in output
    assert not [m for m in loaded if m.partition(".")[0] in ("starlette", "uvicorn")]


def test_importing_mfa_flow_does_not_import_the_emulator() -> None:
    script = ("import sys, mfa_flow, mfa_flow.cli\n"
              "print(sorted(m for m in sys.modules if m.partition('.')[0] in ('starlette', 'uvicorn', 'stytch')"
              " or m.startswith('mfa_flow.emulator')))")
    done = run_python("-c", script, env=python_env(COLUMNS="100"), timeout=SERVE_TIMEOUT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


# --- durable stores: processes share state, and a restart keeps it ----------------------------------------

@pytest.fixture
def secret_key_file(tmp_path: Path) -> Path:
    path = tmp_path / "emulator.key"
    path.write_text(secrets.token_hex(32) + "\n", "utf-8")
    return path


@pytest.fixture(params=["sqlite", "redis"])
def durable_store(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A ``--store`` value: a new SQLite file, or the test Redis server's database, flushed."""
    if request.param == "sqlite":
        return f"sqlite:{tmp_path / 'emulator.db'}"
    require("redis")
    request.getfixturevalue("redis_db")  # flushes the database
    return str(request.getfixturevalue("redis_url"))


def start_durable(start_emulator: Any, store: str, key_file: Path) -> EmulatorProcess:
    server: EmulatorProcess = start_emulator(FIXTURES, extra_args=["--store", store,
                                                                   "--secret-key-file", str(key_file)])
    return server


def test_two_servers_on_one_durable_store_verify_each_others_codes(start_emulator: Any, durable_store: str,
                                                                   secret_key_file: Path) -> None:
    first = start_durable(start_emulator, durable_store, secret_key_file)
    second = start_durable(start_emulator, durable_store, secret_key_file)
    ist = str(first.primary_auth(ORG, ADA)["intermediate_session_token"])
    code = first.code(ADA)
    assert second.messages() == []  # each process keeps its own message log; the code is in the store
    result = ok(stytch_call(second, "POST", AUTHENTICATE, {"organization_id": ORG, "member_id": ADA, "code": code,
                                                          "intermediate_session_token": ist}))
    session_token = result["session_token"]
    assert session_token
    # the session made through the second is valid on the first: a send to the linked phone accepts it
    ok(stytch_call(first, "POST", SEND, {"organization_id": ORG, "member_id": ADA, "session_token": session_token}))
    assert first.messages()[-1]["member_id"] == ADA
    # and the code the second redeemed is spent for the first as well
    refused(stytch_call(first, "POST", AUTHENTICATE, {"organization_id": ORG, "member_id": ADA, "code": code,
                                                      "intermediate_session_token": ist}), 404,
            "intermediate_session_not_found")


def test_two_servers_on_one_durable_store_share_a_lock(start_emulator: Any, durable_store: str,
                                                       secret_key_file: Path) -> None:
    first = start_durable(start_emulator, durable_store, secret_key_file)
    second = start_durable(start_emulator, durable_store, secret_key_file)
    ist = str(second.primary_auth(ORG, CY)["intermediate_session_token"])
    for attempt in range(1, 11):
        if attempt in (5, 9):  # a code dies at its 5th wrong attempt: send a new one through the other server
            ok(stytch_call(first, "POST", SEND, {"organization_id": ORG, "member_id": CY,
                                                 "intermediate_session_token": ist}))
        live = second.code(CY) if attempt < 5 else first.code(CY)  # each server logs the codes it sent
        response = stytch_call(second if attempt % 2 else first, "POST", AUTHENTICATE, {
            "organization_id": ORG, "member_id": CY, "code": wrong(live), "intermediate_session_token": ist})
        if attempt < 10:
            refused(response, 404, "otp_code_not_found")
    refused(response, 429, "user_lock_limit_reached")
    for server in (first, second):
        member = ok(stytch_call(server, "GET", MEMBER, params={"member_id": CY}))["member"]
        assert member["is_locked"] is True
        refused(stytch_call(server, "POST", SEND, {"organization_id": ORG, "member_id": CY,
                                                   "intermediate_session_token": ist}), 429,
                "user_lock_limit_reached")


def test_a_restarted_server_keeps_its_sqlite_state(start_emulator: Any, tmp_path: Path,
                                                   secret_key_file: Path) -> None:
    store = f"sqlite:{tmp_path / 'emulator.db'}"
    before = start_durable(start_emulator, store, secret_key_file)
    linked = ok(stytch_call(before, "POST", SEND, {"organization_id": ORG, "member_id": BOB,
                                                   "mfa_phone_number": "+1 (415) 555-0102"}))["member"]
    assert (linked["mfa_phone_number"], linked["mfa_phone_number_verified"]) == (PHONE_BOB, False)
    ist = str(before.primary_auth(ORG, ADA)["intermediate_session_token"])
    code = before.code(ADA)
    assert before.stop() == 0

    after = start_durable(start_emulator, store, secret_key_file)
    member = ok(stytch_call(after, "GET", MEMBER, params={"member_id": BOB}))["member"]
    assert (member["mfa_phone_number"], member["mfa_phone_number_verified"]) == (PHONE_BOB, False)
    # the code sent before the restart verifies after it (the key came from the same file)
    result = ok(stytch_call(after, "POST", AUTHENTICATE, {"organization_id": ORG, "member_id": ADA, "code": code,
                                                         "intermediate_session_token": ist}))
    assert result["member"]["mfa_enrolled"] is True


def test_serve_listens_on_a_tcp_socket_so_asyncio_turns_nagle_off() -> None:
    """With protocol 0, asyncio leaves Nagle's algorithm on for accepted connections and every answer
    (headers and body written apart by uvicorn) waits ~40 ms for the client's delayed ACK."""
    import socket

    from mfa_flow.emulator.server import listening_socket

    with listening_socket("127.0.0.1", 0) as sock:
        assert sock.proto == socket.IPPROTO_TCP
        assert sock.getsockname()[1] > 0
