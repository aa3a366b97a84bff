"""Stytch mode's provider and directory (spec §11; notes/stytch-mode.md) against a scripted Stytch behind
``httpx.MockTransport``: the exact requests, the base URL rule, the connect-only retry, how every answer is read
(Stytch's errors kept, untrustworthy successes refused), the directory's cache, the session parsing and the
secret kept out of reprs, errors and logs; F3 of reference/security.md drives random answers through it.
Each provider and directory test runs on the synchronous and on the asynchronous twin (the ``rig`` fixture)."""

from __future__ import annotations

import asyncio
import base64
import copy
import inspect
import json
import logging
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mfa_flow import ConfigurationError, Member, MfaError, Organization
from mfa_flow._version import __version__
from mfa_flow.errors import (
    ERROR_STATUS,
    NotFoundError,
    ProviderError,
    RateLimited,
    StoreFailure,
    UnexpectedResponse,
    error_body,
    error_for,
)
from mfa_flow.transports import DeliveryRejected, DeliveryUnknown
from mfa_flow.transports import stytch as stytch_module
from mfa_flow.transports.stytch import (
    AsyncStytchDirectory,
    AsyncStytchProvider,
    StytchDirectory,
    StytchProvider,
    base_url_for,
)
from mfa_flow.wire import AUTHENTICATE, SEND, member_from, member_session_from, organization_from
from tests.fake_stytch import PROJECT_ID, SECRET, FakeStytch, error, session_answer
from tests.helpers_rules import MEMBER, MEMBER2, ORG, ORG2, ORG_SLUG, PHONE
from tests.test_gateways import CONNECT_FAILURES, MAYBE_SENT_FAILURES, backoff_bounds

LIVE_PROJECT = "project-live-00000000-0000-4000-8000-00000000beef"
ORG_EXTERNAL = "acme-external-1"
MEMBER_EXTERNAL = "hr-0001"
IST = "intermediate-session-token-test-0f1e2d3c4b5a69788796a5b4c3d2e1f0"
CODE = "481516"
TEST_API = "https://test.stytch.com"
BASIC = "Basic " + base64.b64encode(f"{PROJECT_ID}:{SECRET}".encode()).decode()
DEFAULT_TIMEOUT = {"connect": 3.0, "read": 10.0, "write": 10.0, "pool": 10.0}
#: What may never appear in a repr, an error or a log line.
LEAKS = (SECRET, BASIC.split()[1], IST, CODE)

ORGANIZATION = Organization(ORG, organization_slug=ORG_SLUG, organization_name="Acme",
                            organization_external_id=ORG_EXTERNAL, mfa_policy="REQUIRED_FOR_ALL")
ALICE = Member(MEMBER, ORG, email_address="alice@example.com", name="Alice", external_id=MEMBER_EXTERNAL,
               mfa_enrolled=True, mfa_phone_number=PHONE, mfa_phone_number_verified=True,
               default_mfa_method="sms_otp")
BOB = Member(MEMBER2, ORG, email_address="bob@example.com", name="Bob")

SEND_BODY = SEND.body(organization_id=ORG, member_id=MEMBER, mfa_phone_number=PHONE, locale="en",
                      intermediate_session_token=IST, session_token=None, session_jwt=None)
AUTHENTICATE_BODY = AUTHENTICATE.body(organization_id=ORG, member_id=MEMBER, code=CODE,
                                      intermediate_session_token=IST, session_duration_minutes=60,
                                      set_mfa_enrollment="enroll", session_jwt=None)
#: Each provider method, its usual arguments and the route FakeStytch scripts it by.
CALLS: dict[str, tuple[tuple[Any, ...], str]] = {
    "send": ((SEND_BODY,), "send"),
    "authenticate": ((AUTHENTICATE_BODY,), "authenticate"),
    "get_organization": ((ORG,), "get_organization"),
    "get_member": ((ORG, MEMBER), "get_member"),
    "delete_mfa_phone_number": ((ORG, MEMBER), "delete"),
}
METHODS = list(CALLS)
#: The methods whose answer must name the member and organization asked for.
SUBJECT_METHODS = ["send", "authenticate", "get_member", "delete_mfa_phone_number"]

Step = Callable[[httpx.Request, dict[str, Any]], httpx.Response]
Outcome = Any  # what a call returned, or the exception it raised


class Stytch(FakeStytch):
    """FakeStytch over Acme (Alice, Bob) that also keeps each raw request: headers, timeouts, raw path."""

    def __init__(self) -> None:
        super().__init__(ORGANIZATION, ALICE, BOB)
        self.raw: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.raw.append(request)
        return super().__call__(request)

    def success(self, method: str, member: Member = ALICE) -> dict[str, Any]:
        """The 200 body Stytch gives ``method`` for ``member``."""
        if method == "get_organization":
            return {"status_code": 200, "request_id": "request-id-test-org", "organization": self.org.to_dict()}
        if method == "authenticate":
            return self.envelope(member, **session_answer(member, self.org, now=self.now, phone=PHONE))
        return self.envelope(member)


def reply(status: int, body: object = None, *, content: bytes = b"") -> Step:
    """A scripted answer: ``body`` as JSON, else the raw ``content``."""
    if body is not None:
        return lambda _request, _body: httpx.Response(status, json=body)
    return lambda _request, _body: httpx.Response(status, content=content)


def stytch_error_body(status: int, error_type: str) -> dict[str, Any]:
    """Stytch's five-field error body, with a request id and URL that are recognisably Stytch's own."""
    body = error_body(status, error_type, f"Stytch says no: {error_type}", f"request-id-test-{error_type}")
    body["error_url"] = f"https://stytch.com/docs/api/errors/{status}?from=stytch#{error_type}"
    return body


DROP = object()  # changed(): remove the field


def changed(body: Mapping[str, Any], path: tuple[str, ...], value: object) -> dict[str, Any]:
    """A deep copy of ``body`` with the field at ``path`` set to ``value`` (removed when ``value`` is DROP)."""
    out = copy.deepcopy(dict(body))
    *parents, last = path
    holder: Any = out
    for name in parents:
        holder = holder[name]
    if value is DROP:
        holder.pop(last, None)
    else:
        holder[last] = value
    return out


class Rig:
    """Builds providers and directories of one twin (sync or async) on a scripted Stytch, and runs their calls."""

    def __init__(self, asynchronous: bool) -> None:
        self.asynchronous = asynchronous
        self.clients: list[httpx.Client | httpx.AsyncClient] = []
        self.runner = asyncio.Runner()

    def client(self, stytch: Stytch, **kwargs: Any) -> Any:
        made = stytch.async_client(**kwargs) if self.asynchronous else stytch.client(**kwargs)
        self.clients.append(made)
        return made

    @property
    def provider_class(self) -> Any:
        return AsyncStytchProvider if self.asynchronous else StytchProvider

    def provider(self, stytch: Stytch | None = None, project_id: str = PROJECT_ID, **kwargs: Any) -> Any:
        if "client" not in kwargs:
            kwargs["client"] = self.client(stytch or Stytch())
        return self.provider_class(project_id, SECRET, **kwargs)

    def run(self, value: Any) -> Any:
        return self.runner.run(value) if inspect.iscoroutine(value) else value

    def call(self, provider: Any, method: str, *args: Any) -> Any:
        """``method`` with ``args`` (the usual ones of CALLS when none are given)."""
        return self.run(getattr(provider, method)(*(args or CALLS[method][0])))

    def outcome(self, provider: Any, method: str, *args: Any) -> Outcome:
        """What the call returned, or the MfaError / DeliveryRejected / DeliveryUnknown it raised."""
        try:
            return self.call(provider, method, *args)
        except (MfaError, DeliveryRejected, DeliveryUnknown) as exc:
            return exc

    def close(self) -> None:
        for client in self.clients:
            self.run(client.aclose() if isinstance(client, httpx.AsyncClient) else client.close())
        self.runner.close()


pytestmark = pytest.mark.usefixtures("pauses")  # no test sleeps through a backoff


@pytest.fixture(params=[False, True], ids=["sync", "async"])
def rig(request: pytest.FixtureRequest) -> Iterator[Rig]:
    made = Rig(request.param)
    yield made
    made.close()


def scripted(rig: Rig, method: str, *steps: Any, **kwargs: Any) -> tuple[Stytch, Any]:
    stytch = Stytch()
    stytch.script(CALLS[method][1], *steps)
    return stytch, rig.provider(stytch, **kwargs)


def chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception and every exception it carries (cause, context)."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        item = todo.pop()
        if item is not None and id(item) not in seen:
            seen.add(id(item))
            yield item
            todo += [item.__cause__, item.__context__]


def assert_clean(text: str) -> None:
    for leak in LEAKS:
        assert leak not in text


def assert_unexpected(outcome: Outcome, *fragments: str) -> None:
    assert isinstance(outcome, UnexpectedResponse), outcome
    assert (outcome.error_type, outcome.status_code) == ("internal_server_error", 502)
    assert all(fragment in outcome.error_message for fragment in fragments), outcome.error_message


# ---------------------------------------------------------------------------------- the exact requests

EXPECTED_REQUESTS: dict[str, tuple[str, str, dict[str, str], dict[str, Any] | None]] = {
    "send": ("POST", "/v1/b2b/otps/sms/send", {}, SEND_BODY),
    "authenticate": ("POST", "/v1/b2b/otps/sms/authenticate", {}, AUTHENTICATE_BODY),
    "get_organization": ("GET", f"/v1/b2b/organizations/{ORG}", {"organization_id": ORG}, None),
    "get_member": ("GET", f"/v1/b2b/organizations/{ORG}/member", {"organization_id": ORG, "member_id": MEMBER},
                   None),
    "delete_mfa_phone_number": ("DELETE", f"/v1/b2b/organizations/{ORG}/members/mfa_phone_numbers/{MEMBER}", {},
                                None),
}


@pytest.mark.parametrize("method", METHODS)
def test_each_call_is_the_sdks_request_with_basic_auth_user_agent_and_the_default_timeouts(
        rig: Rig, method: str) -> None:
    stytch = Stytch()
    answer = rig.call(rig.provider(stytch), method)
    verb, path, query, body = EXPECTED_REQUESTS[method]
    (request,) = stytch.raw
    assert request.method == verb
    assert str(request.url) == TEST_API + path + (f"?{urlencode(query)}" if query else "")
    assert request.headers["authorization"] == BASIC
    assert request.headers["user-agent"] == f"mfa_flow/{__version__}"
    assert request.extensions["timeout"] == DEFAULT_TIMEOUT
    if body is None:
        assert request.content == b""
    else:
        assert request.headers["content-type"] == "application/json"
        assert json.loads(request.content) == body
    assert answer["request_id"].startswith("request-id-test-")


def test_request_bodies_carry_exactly_the_keys_given_none_dropped_by_the_endpoint_table() -> None:
    assert SEND_BODY == {"organization_id": ORG, "member_id": MEMBER, "mfa_phone_number": PHONE, "locale": "en",
                         "intermediate_session_token": IST}
    assert "session_jwt" not in AUTHENTICATE_BODY
    with pytest.raises(TypeError, match="not fields: \\['telemetry'\\]"):
        SEND.body(organization_id=ORG, member_id=MEMBER, telemetry="x")


def test_send_body_is_forwarded_verbatim(rig: Rig) -> None:
    stytch = Stytch()
    body = {"organization_id": ORG, "member_id": MEMBER, "session_token": "session-token-test-forwarded",
            "locale": "pt-br"}
    rig.call(rig.provider(stytch), "send", body)
    assert json.loads(stytch.raw[0].content) == body
    assert stytch.sent("send")[0].body == body


@pytest.mark.parametrize(("base_url", "origin"), [
    ("https://stytch.example.com/prefix/v9/", "https://stytch.example.com"),
    ("https://stytch.example.com/prefix", "https://stytch.example.com"),
    ("http://127.0.0.1:8765", "http://127.0.0.1:8765"),
    ("http://localhost:8765/", "http://localhost:8765"),
])
def test_base_url_path_prefix_is_dropped_as_the_sdk_does(rig: Rig, base_url: str, origin: str) -> None:
    stytch = Stytch()
    rig.call(rig.provider(stytch, base_url=base_url), "send")
    assert str(stytch.raw[0].url) == origin + "/v1/b2b/otps/sms/send"


def test_path_parameters_are_percent_quoted(rig: Rig) -> None:
    stytch = Stytch()
    ref, member = "acme/../x y?z#w", "member/../../other member"
    stytch.script("get_organization", error("organization_not_found", 404))
    stytch.script("delete", error("member_not_found", 404))
    provider = rig.provider(stytch)
    assert rig.call(provider, "get_organization", ref) is None
    assert isinstance(rig.outcome(provider, "delete_mfa_phone_number", ref, member), NotFoundError)
    org_request, delete_request = stytch.raw
    assert org_request.url.raw_path.split(b"?")[0] == b"/v1/b2b/organizations/acme%2F..%2Fx%20y%3Fz%23w"
    assert dict(org_request.url.params) == {"organization_id": ref}
    assert delete_request.url.raw_path == (b"/v1/b2b/organizations/acme%2F..%2Fx%20y%3Fz%23w/members/"
                                           b"mfa_phone_numbers/member%2F..%2F..%2Fother%20member")


@pytest.mark.parametrize("client_auth", [{"auth": ("someone", "else")},
                                         {"headers": {"Authorization": "Bearer someone-elses-token"}}],
                         ids=["client-auth", "client-header"])
def test_basic_auth_wins_over_the_callers_client_auth(rig: Rig, client_auth: dict[str, Any]) -> None:
    stytch = Stytch()
    rig.call(rig.provider(client=rig.client(stytch, **client_auth)), "send")
    assert stytch.raw[0].headers["authorization"] == BASIC
    assert stytch.requests[0].auth == (PROJECT_ID, SECRET)


def test_timeouts_apply_to_every_request_even_on_the_callers_client(rig: Rig) -> None:
    default = Stytch()
    rig.call(rig.provider(client=rig.client(default, timeout=60.0)), "get_organization")
    assert default.raw[0].extensions["timeout"] == DEFAULT_TIMEOUT
    seconds = Stytch()
    rig.call(rig.provider(client=rig.client(seconds, timeout=60.0), timeout=5), "send")
    assert seconds.raw[0].extensions["timeout"] == dict.fromkeys(DEFAULT_TIMEOUT, 5.0)
    chosen = httpx.Timeout(8.0, connect=1.5)
    exact = Stytch()
    rig.call(rig.provider(exact, timeout=chosen), "authenticate")
    assert exact.raw[0].extensions["timeout"] == chosen.as_dict()


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_redirects_are_never_followed_even_by_a_client_that_follows_them(rig: Rig, status: int) -> None:
    stytch = Stytch()
    redirect = lambda _r, _b: httpx.Response(status, headers={"location": f"{TEST_API}/elsewhere"})  # noqa: E731
    stytch.script("authenticate", redirect)
    outcome = rig.outcome(rig.provider(client=rig.client(stytch, follow_redirects=True)), "authenticate")
    assert type(outcome) is ProviderError
    assert outcome.error_type == "internal_server_error"
    assert len(stytch.raw) == 1


# ------------------------------------------------------------------------------ construction, base_url


def test_base_url_none_chooses_as_the_sdk_does_live_for_project_live_else_test(rig: Rig) -> None:
    assert base_url_for(LIVE_PROJECT) == "https://api.stytch.com/"
    assert base_url_for(PROJECT_ID) == "https://test.stytch.com/"
    assert base_url_for("project-livefoo") == "https://test.stytch.com/"
    live, test = Stytch(), Stytch()
    rig.call(rig.provider(live, project_id=LIVE_PROJECT), "send")
    rig.call(rig.provider(test), "send")
    assert str(live.raw[0].url) == "https://api.stytch.com/v1/b2b/otps/sms/send"
    assert str(test.raw[0].url) == "https://test.stytch.com/v1/b2b/otps/sms/send"


@pytest.mark.parametrize("base_url", ["ftp://stytch.example.com/", "stytch.example.com", "/v1/b2b", "https://",
                                      "http:///path", "", "   ", 8765, b"https://test.stytch.com/"])
def test_invalid_base_url_is_refused_naming_base_url(rig: Rig, base_url: Any) -> None:
    with pytest.raises(ConfigurationError, match=r"^invalid_argument: base_url:"):
        rig.provider_class(PROJECT_ID, SECRET, base_url=base_url)


@pytest.mark.parametrize("base_url", ["http://stytch.example.com/", "http://10.0.0.7:8765",
                                      "http://localhost.example.com/"])
def test_plain_http_to_a_non_loopback_host_logs_a_warning(rig: Rig, caplog: pytest.LogCaptureFixture,
                                                          base_url: str) -> None:
    caplog.set_level(logging.DEBUG)
    rig.provider(base_url=base_url)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and r.name == "mfa_flow.transports"]
    assert len(warnings) == 1
    assert "plain HTTP" in warnings[0].getMessage()
    assert_clean(caplog.text)


@pytest.mark.parametrize("base_url", ["http://127.0.0.1:8765", "http://127.0.0.2:8765", "http://localhost:8765/",
                                      "http://[::1]:8765", "https://stytch.example.com/", None])
def test_https_or_plain_http_to_loopback_logs_no_warning(rig: Rig, caplog: pytest.LogCaptureFixture,
                                                         base_url: str | None) -> None:
    caplog.set_level(logging.DEBUG)
    rig.provider(base_url=base_url)
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_provider_refuses_the_other_twins_client(rig: Rig) -> None:
    other = httpx.Client() if rig.asynchronous else httpx.AsyncClient()
    rig.clients.append(other)
    with pytest.raises(ConfigurationError, match=r"^invalid_argument: client: must be an httpx"):
        rig.provider(client=other)


@pytest.mark.parametrize(("settings_", "field"), [
    ({"timeout": 0}, "timeout"), ({"timeout": -1.0}, "timeout"), ({"timeout": "3"}, "timeout"),
    ({"timeout": httpx.Timeout(5.0, read=None)}, "timeout"),
    ({"connect_retries": -1}, "connect_retries"), ({"connect_retries": 6}, "connect_retries"),
    ({"connect_retries": True}, "connect_retries"), ({"connect_retries": 1.0}, "connect_retries"),
    ({"connect_retries": None}, "connect_retries"),
])
def test_provider_refuses_unbounded_timeouts_and_retries_outside_0_to_5(rig: Rig, settings_: dict[str, Any],
                                                                         field: str) -> None:
    with pytest.raises(ConfigurationError, match=f"^invalid_argument: {field}:"):
        rig.provider(**settings_)


@pytest.mark.parametrize(("args", "field"), [((None, SECRET), "project_id"), (("", SECRET), "project_id"),
                                             ((PROJECT_ID, None), "secret"), ((PROJECT_ID, " "), "secret"),
                                             ((PROJECT_ID, b"secret"), "secret")])
def test_provider_refuses_a_missing_project_id_or_secret_naming_the_field(rig: Rig, args: tuple[Any, Any],
                                                                          field: str) -> None:
    with pytest.raises(ConfigurationError, match=f"^invalid_argument: {field}: must be a non-empty string$"):
        rig.provider_class(*args)


def test_provider_never_closes_the_callers_client(rig: Rig) -> None:
    stytch = Stytch()
    client = rig.client(stytch)
    provider = rig.provider(client=client)
    rig.run(provider.aclose() if rig.asynchronous else provider.close())
    assert not client.is_closed
    assert rig.call(rig.provider(client=client), "get_organization")["organization"]["organization_id"] == ORG


def test_provider_closes_the_client_it_made_which_has_the_default_timeouts(rig: Rig) -> None:
    provider = rig.provider_class(PROJECT_ID, SECRET)
    own = provider._client
    assert isinstance(own, httpx.AsyncClient if rig.asynchronous else httpx.Client)
    assert own.timeout == httpx.Timeout(10.0, connect=3.0)

    async def leave() -> None:
        async with provider:
            pass

    if rig.asynchronous:
        rig.run(leave())
    else:
        with provider:
            pass
    assert own.is_closed


# ------------------------------------------------------------------------------------------ retries


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("failure", CONNECT_FAILURES, ids=lambda f: f.__name__)
def test_connect_failure_is_retried_connect_retries_times_then_delivery_rejected(
        rig: Rig, pauses: list[float], method: str, failure: type[httpx.HTTPError]) -> None:
    stytch, provider = scripted(rig, method, failure, failure, failure)  # then a success, never reached
    outcome = rig.outcome(provider, method)
    assert isinstance(outcome, DeliveryRejected)
    assert f"could not connect to Stytch ({failure.__name__}) in 3 attempts" in str(outcome)
    assert len(stytch.raw) == 3
    assert len(pauses) == 2
    for retry, pause in enumerate(pauses):
        low, high = backoff_bounds(retry)
        assert low <= pause <= high


@pytest.mark.parametrize("retries", [0, 1, 5])
def test_connect_retries_bounds_the_attempts_from_0_to_5(rig: Rig, pauses: list[float], retries: int) -> None:
    stytch, provider = scripted(rig, "send", *[httpx.ConnectError] * (retries + 1), connect_retries=retries)
    outcome = rig.outcome(provider, "send")
    assert isinstance(outcome, DeliveryRejected)
    assert f"in {retries + 1} attempt" in str(outcome)
    assert len(stytch.raw) == retries + 1
    assert len(pauses) == retries


def test_backoff_pauses_are_jittered(rig: Rig, pauses: list[float]) -> None:
    for _ in range(20):
        rig.outcome(scripted(rig, "send", httpx.ConnectError, httpx.ConnectError, connect_retries=1)[1], "send")
    assert len(pauses) == 20
    assert len(set(pauses)) > 1


@pytest.mark.parametrize("method", METHODS)
def test_connect_failure_then_an_answer_returns_it_after_resending_the_same_request(rig: Rig, method: str) -> None:
    stytch, provider = scripted(rig, method, httpx.ConnectError, httpx.PoolTimeout)
    answer = rig.call(provider, method)
    assert answer["request_id"].startswith("request-id-test-")
    first, *again = stytch.raw
    assert len(again) == 2
    for request in again:
        assert (request.method, request.url, request.content) == (first.method, first.url, first.content)
        assert request.headers == first.headers


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("failure", MAYBE_SENT_FAILURES, ids=lambda f: f.__name__)
def test_failure_once_the_request_may_have_arrived_is_delivery_unknown_with_one_request(
        rig: Rig, pauses: list[float], method: str, failure: type[httpx.HTTPError]) -> None:
    stytch, provider = scripted(rig, method, failure)  # then a success, never reached
    outcome = rig.outcome(provider, method)
    assert isinstance(outcome, DeliveryUnknown)
    assert f"Stytch may have received the request ({failure.__name__}); not retried" in str(outcome)
    assert len(stytch.raw) == 1
    assert pauses == []


def test_connect_failure_then_a_read_timeout_stops_there(rig: Rig) -> None:
    stytch, provider = scripted(rig, "send", httpx.ConnectTimeout, httpx.ReadTimeout, connect_retries=5)
    assert isinstance(rig.outcome(provider, "send"), DeliveryUnknown)
    assert len(stytch.raw) == 2


@pytest.mark.parametrize("status", [500, 502, 503, 504])
@pytest.mark.parametrize("shape", ["stytch-error", "html"])
def test_send_answered_5xx_is_delivery_unknown_with_one_request(rig: Rig, pauses: list[float], status: int,
                                                                 shape: str) -> None:
    answer = (reply(status, stytch_error_body(status, "internal_server_error")) if shape == "stytch-error"
              else reply(status, content=b"<html>bad gateway</html>"))
    stytch, provider = scripted(rig, "send", answer)
    outcome = rig.outcome(provider, "send")
    assert isinstance(outcome, DeliveryUnknown)
    assert f"HTTP {status}" in str(outcome)
    assert len(stytch.raw) == 1
    assert pauses == []


@pytest.mark.parametrize("method", ["authenticate", "get_organization", "get_member", "delete_mfa_phone_number"])
@pytest.mark.parametrize("status", [500, 503])
def test_other_calls_answered_5xx_raise_stytchs_error_with_one_request(rig: Rig, pauses: list[float], method: str,
                                                                        status: int) -> None:
    stytch, provider = scripted(rig, method, reply(status, stytch_error_body(status, "internal_server_error")))
    outcome = rig.outcome(provider, method)
    assert type(outcome) is StoreFailure
    assert (outcome.error_type, outcome.status_code, outcome.request_id) == (
        "internal_server_error", status, "request-id-test-internal_server_error")
    assert len(stytch.raw) == 1
    bare, provider = scripted(rig, method, reply(status, content=b"<html>unavailable</html>"))
    outcome = rig.outcome(provider, method)
    assert type(outcome) is ProviderError
    assert outcome.error_type == "internal_server_error"
    assert len(bare.raw) == 1
    assert pauses == []


@pytest.mark.parametrize("method", METHODS)
def test_429_is_too_many_requests_and_not_retried(rig: Rig, pauses: list[float], method: str) -> None:
    stytch, provider = scripted(rig, method, reply(429, stytch_error_body(429, "too_many_requests")))
    outcome = rig.outcome(provider, method)
    assert type(outcome) is RateLimited
    assert (outcome.error_type, outcome.status_code) == ("too_many_requests", 429)
    assert len(stytch.raw) == 1
    assert pauses == []


# ------------------------------------------------------------------------------------------ answers

KNOWN_ERRORS = sorted(ERROR_STATUS.items())


@pytest.mark.parametrize(("method", "error_type", "status"),
                         [("authenticate", t, s) for t, s in KNOWN_ERRORS]
                         + [("send", t, s) for t, s in KNOWN_ERRORS if s < 500])
def test_each_known_error_type_is_its_mfa_error_class_with_stytchs_fields_kept(rig: Rig, method: str,
                                                                               error_type: str, status: int) -> None:
    body = stytch_error_body(status, error_type)
    stytch, provider = scripted(rig, method, reply(status, body))
    outcome = rig.outcome(provider, method)
    assert type(outcome) is type(error_for(error_type, "x"))
    assert isinstance(outcome, MfaError)
    assert (outcome.error_type, outcome.status_code, outcome.request_id, outcome.error_message,
            outcome.error_url) == (error_type, status, body["request_id"], body["error_message"], body["error_url"])
    assert len(stytch.raw) == 1


def test_stytchs_status_is_kept_even_where_mfa_flows_table_says_another(rig: Rig) -> None:
    _, provider = scripted(rig, "authenticate", reply(422, stytch_error_body(422, "invalid_phone_number")))
    outcome = rig.outcome(provider, "authenticate")
    assert (type(outcome).__name__, outcome.error_type, outcome.status_code) == (
        "InvalidPhoneNumber", "invalid_phone_number", 422)


@pytest.mark.parametrize("method", ["send", "authenticate", "delete_mfa_phone_number"])
@pytest.mark.parametrize(("error_type", "status"), [("unsubscribed_phone_number", 400),
                                                    ("unauthorized_credentials", 401),
                                                    ("invalid_session_token", 401)])
def test_unknown_error_type_is_a_provider_error_keeping_the_string_and_status(rig: Rig, method: str,
                                                                              error_type: str, status: int) -> None:
    body = stytch_error_body(status, error_type)
    _, provider = scripted(rig, method, reply(status, body))
    outcome = rig.outcome(provider, method)
    assert type(outcome) is ProviderError
    assert (outcome.error_type, outcome.status_code, outcome.request_id, outcome.error_message,
            outcome.error_url) == (error_type, status, body["request_id"], body["error_message"], body["error_url"])


@pytest.mark.parametrize("field", ["status_code", "request_id", "error_type", "error_message", "error_url"])
@pytest.mark.parametrize("method", ["send", "authenticate", "get_member"])
def test_error_body_lacking_one_of_the_five_fields_is_a_provider_error(rig: Rig, method: str, field: str) -> None:
    body = stytch_error_body(404, "member_not_found")
    for broken in (changed(body, (field,), DROP), changed(body, (field,), None)):
        _, provider = scripted(rig, method, reply(404, broken))
        outcome = rig.outcome(provider, method)
        assert type(outcome) is ProviderError
        assert outcome.error_type == "internal_server_error"
        assert "lacks one of status_code, request_id, error_type, error_message, error_url" in outcome.error_message


@pytest.mark.parametrize("answer", [reply(400, content=b"<html>refused by a proxy</html>"),
                                    reply(400, ["bad_request"]), reply(400, content=b"null"),
                                    reply(400, {**stytch_error_body(400, "bad_request"), "status_code": "400"})],
                         ids=["html", "list", "null", "status-as-text"])
def test_error_answer_the_sdk_would_not_read_is_a_provider_error(rig: Rig, answer: Step) -> None:
    _, provider = scripted(rig, "authenticate", answer)
    outcome = rig.outcome(provider, "authenticate")
    assert type(outcome) is ProviderError
    assert outcome.error_type == "internal_server_error"


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(("answer", "said"), [
    (reply(200, content=b"<html>ok</html>"), "not a JSON object"),
    (reply(200, content=b""), "not a JSON object"),
    (reply(200, ["request-id-test-1"]), "not a JSON object"),
    (reply(200, "ok"), "not a JSON object"),
    (reply(200, content=b"null"), "not a JSON object"),
    (reply(201, {"status_code": 201}), "request_id: missing or not a string"),
    (reply(200, {"status_code": 200, "request_id": 17}), "request_id: missing or not a string"),
], ids=["html", "empty", "list", "string", "null", "no-request-id", "request-id-number"])
def test_2xx_that_is_not_a_json_object_with_a_request_id_is_unexpected_response(rig: Rig, method: str,
                                                                                answer: Step, said: str) -> None:
    stytch, provider = scripted(rig, method, answer)
    assert_unexpected(rig.outcome(provider, method), said)
    assert len(stytch.raw) == 1


SUBJECT_PLACES: list[tuple[tuple[str, ...], str]] = [
    (("member_id",), MEMBER2), (("member", "member_id"), MEMBER2), (("member", "organization_id"), ORG2),
    (("organization", "organization_id"), ORG2),
]


@pytest.mark.parametrize("method", SUBJECT_METHODS)
@pytest.mark.parametrize(("path", "other"), SUBJECT_PLACES, ids=[".".join(p) for p, _ in SUBJECT_PLACES])
def test_success_naming_another_member_or_organization_is_unexpected_response(rig: Rig, method: str,
                                                                              path: tuple[str, ...],
                                                                              other: str) -> None:
    stytch = Stytch()
    body = changed(stytch.success(method), path, other)
    stytch.script(CALLS[method][1], reply(200, body))
    assert_unexpected(rig.outcome(rig.provider(stytch), method),
                      "names another member or organization than the one asked for")


@pytest.mark.parametrize("method", SUBJECT_METHODS)
@pytest.mark.parametrize("path", [("member_id",), ("member",), ("organization",), ("member", "member_id"),
                                  ("member", "organization_id"), ("organization", "organization_id")],
                         ids=".".join)
def test_success_missing_the_member_or_organization_is_unexpected_response_naming_it(
        rig: Rig, method: str, path: tuple[str, ...]) -> None:
    stytch = Stytch()
    stytch.script(CALLS[method][1], reply(200, changed(stytch.success(method), path, DROP)))
    assert_unexpected(rig.outcome(rig.provider(stytch), method), ".".join(path) + ": missing")


def test_get_organization_answer_naming_another_organization_is_unexpected_response(rig: Rig) -> None:
    other = Organization(ORG2, organization_slug="globex", organization_external_id="globex-external")
    stytch = Stytch()
    stytch.script("get_organization", reply(200, {"status_code": 200, "request_id": "request-id-test-1",
                                                  "organization": other.to_dict()}))
    assert_unexpected(rig.outcome(rig.provider(stytch), "get_organization", ORG),
                      "names another organization than the one asked for")


@pytest.mark.parametrize("ref", [ORG, ORG_SLUG, ORG_EXTERNAL])
def test_get_organization_accepts_the_organization_named_by_id_slug_or_external_id(rig: Rig, ref: str) -> None:
    stytch = Stytch()
    answer = rig.call(rig.provider(stytch), "get_organization", ref)
    assert answer == stytch.success("get_organization")
    assert dict(stytch.raw[0].url.params) == {"organization_id": ref}


@pytest.mark.parametrize(("field", "value"), [("session_token", DROP), ("session_token", None),
                                              ("session_token", 42), ("member_session", DROP),
                                              ("member_session", None), ("member_session", "session")])
def test_authenticate_success_without_a_session_is_unexpected_response(rig: Rig, field: str, value: object) -> None:
    stytch = Stytch()
    stytch.script("authenticate", reply(200, changed(stytch.success("authenticate"), (field,), value)))
    assert_unexpected(rig.outcome(rig.provider(stytch), "authenticate"), f"{field}: missing or not")


@pytest.mark.parametrize("method", SUBJECT_METHODS)
def test_a_matching_success_is_returned_as_stytch_sent_it(rig: Rig, method: str) -> None:
    stytch = Stytch()
    body = {**stytch.success(method), "member_device": {"ip_address": "192.0.2.1"}, "status_code": 200}
    stytch.script(CALLS[method][1], reply(200, body))
    assert rig.call(rig.provider(stytch), method) == body


def test_get_organization_and_get_member_not_found_is_none(rig: Rig) -> None:
    stytch = Stytch()
    stytch.script("get_organization", error("organization_not_found", 404))
    provider = rig.provider(stytch)
    assert rig.call(provider, "get_organization", "unknown-org") is None
    assert rig.call(provider, "get_member", ORG, "unknown-member") is None
    assert len(stytch.raw) == 2


@pytest.mark.parametrize(("method", "answer", "error_type"), [
    ("get_organization", reply(401, stytch_error_body(401, "unauthorized_credentials")), "unauthorized_credentials"),
    ("get_organization", reply(400, stytch_error_body(400, "bad_request")), "bad_request"),
    ("get_organization", reply(404, stytch_error_body(404, "member_not_found")), "member_not_found"),
    ("get_organization", reply(404, content=b"<html>not found</html>"), "internal_server_error"),
    ("get_member", reply(403, stytch_error_body(403, "unauthorized_credentials")), "unauthorized_credentials"),
    ("get_member", reply(404, stytch_error_body(404, "organization_not_found")), "organization_not_found"),
    ("get_member", reply(404, content=b""), "internal_server_error"),
], ids=["org-401", "org-400", "org-404-member", "org-404-html", "member-403", "member-404-org", "member-404-empty"])
def test_other_refusals_of_get_organization_and_get_member_are_raised_not_none(rig: Rig, method: str, answer: Step,
                                                                               error_type: str) -> None:
    """Only Stytch's own "no such organization / member" means none: a proxy's 404 or another refusal stands."""
    _, provider = scripted(rig, method, answer)
    outcome = rig.outcome(provider, method)
    assert isinstance(outcome, MfaError)
    assert outcome.error_type == error_type


# ------------------------------------------------------------------------------------------ secrets


def test_repr_and_str_show_project_id_and_base_url_never_the_secret(rig: Rig) -> None:
    provider = rig.provider(base_url="https://stytch.example.com/")
    expected = f"{type(provider).__name__}(project_id={PROJECT_ID!r}, base_url='https://stytch.example.com/')"
    assert repr(provider) == str(provider) == expected
    directory = provider.directory(cache_seconds=30)
    assert repr(directory) == f"{type(directory).__name__}({expected}, cache_seconds=30)"
    for text in (repr(provider), repr(directory), str(directory)):
        assert_clean(text)


LEAK_SCRIPTS: list[tuple[str, Any]] = [
    ("send", None), ("authenticate", None), ("get_member", None),
    ("send", httpx.ConnectError), ("authenticate", httpx.ReadTimeout), ("get_organization", httpx.PoolTimeout),
    ("delete_mfa_phone_number", httpx.RemoteProtocolError), ("send", reply(503, content=b"busy")),
    ("authenticate", reply(404, stytch_error_body(404, "otp_code_not_found"))),
    ("authenticate", reply(401, stytch_error_body(401, "unauthorized_credentials"))),
    ("send", reply(400, content=b"<html/>")), ("authenticate", reply(200, content=b"<html/>")),
    ("send", reply(200, {"status_code": 200, "request_id": "request-id-test-1", "member_id": MEMBER2})),
    ("get_member", reply(500, {"status_code": 500})),
]


@pytest.mark.parametrize(("method", "step"), LEAK_SCRIPTS, ids=[f"{m}-{i}" for i, (m, _) in enumerate(LEAK_SCRIPTS)])
def test_secret_never_in_errors_their_chain_or_logs_at_debug(rig: Rig, caplog: pytest.LogCaptureFixture,
                                                             method: str, step: Any) -> None:
    caplog.set_level(logging.DEBUG)
    steps = [] if step is None else [step] * 3
    _, provider = scripted(rig, method, *steps)
    outcome = rig.outcome(provider, method)
    assert_clean(caplog.text)
    if step is None:
        assert isinstance(outcome, dict)
        return
    assert isinstance(outcome, MfaError | DeliveryRejected | DeliveryUnknown)
    for exc in chain(outcome):
        assert_clean(str(exc) + repr(exc) + repr(exc.args))
    assert outcome.__cause__ is None
    assert outcome.__context__ is None  # no httpx exception, whose request holds the Basic credentials


# ---------------------------------------------------------------------------------------- directory


def directory_of(rig: Rig, stytch: Stytch, **kwargs: Any) -> Any:
    return rig.provider(stytch).directory(**kwargs)


def test_provider_directory_is_the_twins_directory_with_a_60_second_cache(rig: Rig) -> None:
    directory = directory_of(rig, Stytch())
    assert type(directory) is (AsyncStytchDirectory if rig.asynchronous else StytchDirectory)
    assert repr(directory).endswith("cache_seconds=60)")


@pytest.mark.parametrize("first", [ORG, ORG_SLUG, ORG_EXTERNAL])
def test_directory_resolves_an_organization_by_id_slug_or_external_id_with_one_request(rig: Rig, first: str) -> None:
    stytch = Stytch()
    directory = directory_of(rig, stytch)
    assert rig.run(directory.get_organization(first)) == ORGANIZATION
    for ref in (ORG, ORG_SLUG, ORG_EXTERNAL):
        assert rig.run(directory.get_organization(ref)) == ORGANIZATION
    assert [(r.method, dict(r.url.params)) for r in stytch.raw] == [("GET", {"organization_id": first})]


@pytest.mark.parametrize("first", [MEMBER, MEMBER_EXTERNAL])
def test_directory_resolves_a_member_by_id_or_external_id_with_one_request(rig: Rig, first: str) -> None:
    stytch = Stytch()
    directory = directory_of(rig, stytch)
    assert rig.run(directory.get_member(ORG_SLUG, first)) == ALICE
    for org_ref in (ORG, ORG_SLUG, ORG_EXTERNAL):
        for ref in (MEMBER, MEMBER_EXTERNAL):
            assert rig.run(directory.get_member(org_ref, ref)) == ALICE
    assert [r.path for r in stytch.requests] == [f"/v1/b2b/organizations/{ORG_SLUG}",
                                                 f"/v1/b2b/organizations/{ORG}/member"]
    assert stytch.requests[1].query == {"organization_id": ORG, "member_id": first}


def test_directory_unknown_organization_or_member_is_none(rig: Rig) -> None:
    stytch = Stytch()
    stytch.script("get_organization", error("organization_not_found", 404))
    directory = directory_of(rig, stytch)
    assert rig.run(directory.get_member("unknown-org", MEMBER)) is None
    assert rig.run(directory.get_member(ORG, "unknown-member")) is None
    assert [r.path.rsplit("/", 1)[1] for r in stytch.requests] == ["unknown-org", ORG, "member"]


def test_directory_raises_stytchs_other_refusals(rig: Rig) -> None:
    stytch = Stytch()
    stytch.script("get_organization", reply(401, stytch_error_body(401, "unauthorized_credentials")))
    with pytest.raises(ProviderError) as caught:
        rig.run(directory_of(rig, stytch).get_organization(ORG))
    assert (caught.value.error_type, caught.value.status_code) == ("unauthorized_credentials", 401)


@pytest.fixture
def monotonic(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The directory cache's clock (time.monotonic as mfa_flow.transports.stytch sees it), set by the test."""
    now = [1000.0]
    monkeypatch.setattr(stytch_module, "time", SimpleNamespace(monotonic=lambda: now[0]))
    return now


def test_directory_cache_expires_after_cache_seconds(rig: Rig, monotonic: list[float]) -> None:
    stytch = Stytch()
    directory = directory_of(rig, stytch, cache_seconds=30)
    rig.run(directory.get_member(ORG, MEMBER))
    assert len(stytch.raw) == 2
    monotonic[0] += 29.5
    assert rig.run(directory.get_member(ORG, MEMBER_EXTERNAL)) == ALICE
    assert len(stytch.raw) == 2
    monotonic[0] += 0.5
    assert rig.run(directory.get_member(ORG, MEMBER)) == ALICE
    assert [r.path for r in stytch.requests[2:]] == [f"/v1/b2b/organizations/{ORG}",
                                                     f"/v1/b2b/organizations/{ORG}/member"]


def test_directory_cache_seconds_0_reads_stytch_every_time(rig: Rig) -> None:
    stytch = Stytch()
    directory = directory_of(rig, stytch, cache_seconds=0)
    for _ in range(3):
        assert rig.run(directory.get_organization(ORG)) == ORGANIZATION
    assert len(stytch.raw) == 3


@pytest.mark.parametrize("seconds", [-1, True, "60", None])
def test_directory_refuses_a_cache_seconds_that_is_not_a_number_of_at_least_0(rig: Rig, seconds: Any) -> None:
    with pytest.raises(ConfigurationError, match=r"^invalid_argument: cache_seconds:"):
        directory_of(rig, Stytch(), cache_seconds=seconds)


def test_directory_refresh_seeds_the_cache_from_an_answer_so_no_request_is_made(rig: Rig) -> None:
    stytch = Stytch()
    directory = directory_of(rig, stytch)
    verified = Member(MEMBER2, ORG, email_address="bob@example.com", name="Bob", mfa_phone_number=PHONE,
                      mfa_phone_number_verified=True)
    assert directory.refresh(stytch.envelope(verified)) == verified
    assert rig.run(directory.get_organization(ORG_EXTERNAL)) == ORGANIZATION
    assert rig.run(directory.get_member(ORG_SLUG, MEMBER2)) == verified
    assert stytch.raw == []


def test_directory_refresh_replaces_an_older_record(rig: Rig) -> None:
    stytch = Stytch()
    directory = directory_of(rig, stytch)
    assert rig.run(directory.get_member(ORG, MEMBER)) == ALICE
    unlinked = Member(MEMBER, ORG, email_address="alice@example.com", name="Alice", external_id=MEMBER_EXTERNAL)
    directory.refresh(stytch.envelope(unlinked))
    assert rig.run(directory.get_member(ORG, MEMBER_EXTERNAL)) == unlinked
    assert len(stytch.raw) == 2


def test_directory_find_member_by_phone_is_none_without_a_request(rig: Rig) -> None:
    stytch = Stytch()
    directory = directory_of(rig, stytch)
    directory.refresh(stytch.envelope(ALICE))
    assert directory.find_member_by_phone(ORG, PHONE) is None
    assert stytch.raw == []


def test_directory_put_seeds_the_cache_and_writes_nothing_to_stytch(rig: Rig) -> None:
    stytch = Stytch()
    directory = directory_of(rig, stytch)
    carol = Member("member-test-3", ORG, external_id="hr-0003", status="invited")
    assert directory.put_organization(ORGANIZATION) is None
    assert directory.put_member(carol) is None
    assert rig.run(directory.get_member(ORG_SLUG, "hr-0003")) == carol
    assert rig.run(directory.get_organization(ORG_EXTERNAL)) == ORGANIZATION
    assert stytch.raw == []


def test_directory_records_are_read_with_the_wire_parsers_ignoring_stytchs_is_locked(rig: Rig) -> None:
    stytch = Stytch()
    answer = stytch.envelope(ALICE)
    answer["member"]["is_locked"] = True
    stytch.script("get_member", reply(200, answer))
    member = rig.run(directory_of(rig, stytch).get_member(ORG, MEMBER))
    assert member == member_from(answer) == ALICE
    assert member.is_locked is False  # the lock is mfa_flow's own (the merged view)
    assert organization_from(answer) == ORGANIZATION


MALFORMED_MEMBERS: list[tuple[str, object, str]] = [
    ("email_address", DROP, "member.email_address: missing or not a string"),
    ("name", None, "member.name: missing or not a string"),
    ("status", "suspended", "member: Member.status: must be one of"),
    ("mfa_enrolled", "yes", "member.mfa_enrolled: missing or not true/false"),
    ("mfa_phone_number_verified", DROP, "member.mfa_phone_number_verified: missing or not true/false"),
    ("default_mfa_method", "email_otp", "member: Member.default_mfa_method: must be one of"),
    ("is_breakglass", 0, "member.is_breakglass: missing or not true/false"),
]


@pytest.mark.parametrize(("field", "value", "said"), MALFORMED_MEMBERS, ids=[f for f, _, _ in MALFORMED_MEMBERS])
def test_directory_refuses_a_malformed_member_naming_the_field_and_caches_nothing(
        rig: Rig, field: str, value: object, said: str) -> None:
    stytch = Stytch()
    stytch.script("get_member", reply(200, changed(stytch.envelope(ALICE), ("member", field), value)))
    directory = directory_of(rig, stytch)
    with pytest.raises(UnexpectedResponse) as caught:
        rig.run(directory.get_member(ORG, MEMBER))
    assert caught.value.error_message.startswith(f"Stytch's answer: {said}")
    assert rig.run(directory.get_member(ORG, MEMBER)) == ALICE  # read again: the refused answer was not kept
    assert len(stytch.raw) == 3


MALFORMED_ORGANIZATIONS: list[tuple[str, object, str]] = [
    ("organization_slug", DROP, "organization.organization_slug: missing or not a string"),
    ("mfa_policy", "SOMETIMES", "organization: Organization.mfa_policy: must be one of"),
    ("mfa_methods", None, "organization.mfa_methods: missing or not a string"),
    ("allowed_mfa_methods", "sms_otp", "organization.allowed_mfa_methods: missing or not a list"),
    ("allowed_mfa_methods", ["email_otp"], "organization: Organization.allowed_mfa_methods: must be a sequence"),
]


@pytest.mark.parametrize(("field", "value", "said"), MALFORMED_ORGANIZATIONS,
                         ids=[f"{f}-{i}" for i, (f, _, _) in enumerate(MALFORMED_ORGANIZATIONS)])
def test_directory_refuses_a_malformed_organization_naming_the_field(rig: Rig, field: str, value: object,
                                                                     said: str) -> None:
    stytch = Stytch()
    body = changed(stytch.success("get_organization"), ("organization", field), value)
    stytch.script("get_organization", reply(200, body))
    with pytest.raises(UnexpectedResponse) as caught:
        rig.run(directory_of(rig, stytch).get_organization(ORG))
    assert caught.value.error_message.startswith(f"Stytch's answer: {said}")


def test_directory_refresh_refuses_a_malformed_answer_naming_the_field(rig: Rig) -> None:
    stytch = Stytch()
    directory = directory_of(rig, stytch)
    with pytest.raises(UnexpectedResponse, match=r"member\.mfa_phone_number: missing or not a string"):
        directory.refresh(changed(stytch.envelope(ALICE), ("member", "mfa_phone_number"), DROP))
    with pytest.raises(UnexpectedResponse, match="organization: missing or not an object"):
        directory.refresh(changed(stytch.envelope(ALICE), ("organization",), DROP))


# ------------------------------------------------------------------------------- member_session parsing

STARTED = datetime(2026, 1, 1, tzinfo=UTC)


def a_session(**changes: object) -> dict[str, Any]:
    """An authenticate answer's session part (as FakeStytch sends it), with ``changes`` made to member_session."""
    answer = session_answer(ALICE, ORGANIZATION, now=STARTED.timestamp(), phone=PHONE)
    answer["member_session"].update(changes)
    return answer


def test_member_session_from_reads_rfc3339_text() -> None:
    text = a_session(last_accessed_at="2026-01-01T01:00:00.250+01:00")
    session = member_session_from(text)
    assert (session.member_id, session.organization_id, session.organization_slug) == (MEMBER, ORG, ORG_SLUG)
    assert session.started_at == STARTED
    assert session.last_accessed_at == STARTED + timedelta(milliseconds=250)
    assert session.expires_at == STARTED + timedelta(hours=1)
    (factor,) = session.authentication_factors
    assert (factor.type, factor.delivery_method, factor.last_authenticated_at) == ("otp", "sms", STARTED)
    assert factor.phone_number_factor == {"phone_id": "phone-number-test-1", "phone_number": PHONE}


def test_member_session_from_reads_the_timezone_aware_datetimes_of_the_sdks_dict() -> None:
    text = a_session()
    sdk = copy.deepcopy(text)
    sdk["member_session"].update(started_at=STARTED, expires_at=STARTED + timedelta(hours=1),
                                 last_accessed_at=STARTED.astimezone(timezone(timedelta(hours=-5))))
    sdk["member_session"]["authentication_factors"][0]["last_authenticated_at"] = STARTED
    read = member_session_from(sdk)
    assert read == member_session_from(text)
    assert read.last_accessed_at == STARTED


@pytest.mark.parametrize("value", [datetime(2026, 1, 1), "2026-01-01T00:00:00", "yesterday", "", 1767225600,  # noqa: DTZ001 - naive on purpose
                                   None, DROP], ids=["naive", "naive-text", "words", "empty", "number", "null",
                                                     "missing"])
@pytest.mark.parametrize("field", ["started_at", "last_accessed_at", "expires_at", "last_authenticated_at"])
def test_member_session_from_refuses_naive_or_invalid_times_naming_the_field(field: str, value: object) -> None:
    answer = a_session()
    if field == "last_authenticated_at":
        answer = changed(answer, ("member_session", "authentication_factors"), [
            changed(answer["member_session"]["authentication_factors"][0], (field,), value)])
        where = "member_session.authentication_factors[0].last_authenticated_at"
    else:
        answer = changed(answer, ("member_session", field), value)
        where = f"member_session.{field}"
    with pytest.raises(UnexpectedResponse) as caught:
        member_session_from(answer)
    assert caught.value.error_message == f"Stytch's answer: {where}: missing or not an RFC 3339 time"


# ---------------------------------------------------------------------------- F3: random answers

#: F3 drives the methods whose answer the provider itself checks for the subject.
F3_METHODS = ["send", "authenticate", "get_organization", "delete_mfa_phone_number"]
SUBJECT_FIELDS: list[tuple[str, ...]] = [
    ("request_id",), ("member_id",), ("member",), ("member", "member_id"), ("member", "organization_id"),
    ("organization",), ("organization", "organization_id"), ("organization", "organization_slug"),
    ("organization", "organization_external_id"), ("session_token",), ("member_session",), ("status_code",),
]
ERROR_FIELDS = ["status_code", "request_id", "error_type", "error_message", "error_url"]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
#: Values that come close to a valid one: the other member and organization, the right ones, empties.
near_values = st.sampled_from([DROP, MEMBER, MEMBER2, ORG, ORG2, ORG_SLUG, ORG_EXTERNAL, "", None, 0, [], {}])
statuses = st.sampled_from([200, 201, 204, 301, 400, 401, 403, 404, 409, 429, 500, 502, 503]) | st.integers(200, 599)


@st.composite
def answers(draw: st.DrawFn, method: str) -> tuple[int, object]:
    """An answer: (status, JSON body) or (status, bytes that are not JSON), from valid shapes and broken ones."""
    kind = draw(st.sampled_from(["success", "error", "json", "bytes"]))
    status = draw(st.sampled_from([200, 201]) | statuses if kind == "success" else statuses)
    if kind == "bytes":
        return status, draw(st.binary(max_size=24).filter(lambda b: not _is_json(b)))
    if kind == "json":
        return status, draw(json_values)
    if kind == "error":
        error_type = draw(st.sampled_from([*ERROR_STATUS, "unsubscribed_phone_number", ""]) | st.text(max_size=12))
        refusal = stytch_error_body(draw(statuses), "bad_request") | {"error_type": error_type}
        for field in draw(st.lists(st.sampled_from(ERROR_FIELDS), max_size=2)):
            refusal = changed(refusal, (field,), draw(near_values | json_values))
        return status, refusal
    body = Stytch().success(method)
    for path in draw(st.lists(st.sampled_from(SUBJECT_FIELDS), max_size=3)):
        if len(path) == 1 or isinstance(body.get(path[0]), dict):
            body = changed(body, path, draw(near_values | json_values))
    return status, body


def _is_json(raw: bytes) -> bool:
    try:
        json.loads(raw)
    except ValueError:
        return False
    return True


def matching_success(method: str, body: object) -> bool:
    """The contract's schema-valid success naming what was asked for (spec §11; notes/stytch-mode.md)."""
    if not isinstance(body, dict) or not isinstance(body.get("request_id"), str):
        return False
    member, org = body.get("member"), body.get("organization")
    if method == "get_organization":
        return isinstance(org, dict) and ORG in (org.get("organization_id"), org.get("organization_slug"),
                                                 org.get("organization_external_id"))
    if not (isinstance(member, dict) and isinstance(org, dict)):
        return False
    named = (body.get("member_id"), member.get("member_id"), member.get("organization_id"),
             org.get("organization_id"))
    session = (isinstance(body.get("session_token"), str) and isinstance(body.get("member_session"), dict)
               if method == "authenticate" else True)
    return named == (MEMBER, MEMBER, ORG, ORG) and session


def full_error(body: object) -> bool:
    """An error body with all five fields, as the official SDK requires."""
    return isinstance(body, dict) and all(isinstance(body.get(f), int if f == "status_code" else str)
                                          for f in ERROR_FIELDS)


def script_verdict(failures: list[type[httpx.HTTPError]]) -> tuple[str, int]:
    """What transport failures before the answer mean under the connect-only retry rule (connect_retries=2):
    the verdict, and how many requests it takes."""
    for attempt, failure in enumerate(failures, start=1):
        if failure in MAYBE_SENT_FAILURES:
            return "unknown", attempt
        if attempt == 3:
            return "rejected", attempt
    return "answer", len(failures) + 1


def check_answer(method: str, status: int, body: object, outcome: Outcome) -> None:
    """What the provider must make of one answer (``body`` is bytes when it is not JSON)."""
    if 200 <= status < 300:
        if matching_success(method, body):
            assert outcome == body
        else:
            assert isinstance(outcome, UnexpectedResponse), outcome
        return
    if method == "send" and (status >= 500 or 300 <= status < 400):  # the SMS may have gone: never followed
        assert isinstance(outcome, DeliveryUnknown), outcome
        return
    if not full_error(body):
        assert type(outcome) is ProviderError, outcome
        assert outcome.error_type == "internal_server_error"
        return
    assert isinstance(body, dict)
    if method == "get_organization" and body["error_type"] == "organization_not_found":
        assert outcome is None
        return
    assert isinstance(outcome, MfaError), outcome
    assert (outcome.error_type, outcome.status_code, outcome.request_id, outcome.error_message) == (
        body["error_type"], status, body["request_id"], body["error_message"])
    assert type(outcome) is (type(error_for(body["error_type"], "x")) if body["error_type"] in ERROR_STATUS
                             else ProviderError)


@pytest.mark.parametrize("method", F3_METHODS)
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_f3_random_answers_anything_but_a_matching_success_raises_and_nothing_leaks(
        rig: Rig, caplog: pytest.LogCaptureFixture, method: str, data: st.DataObject) -> None:
    caplog.set_level(logging.DEBUG)
    failures = data.draw(st.lists(st.sampled_from(CONNECT_FAILURES + MAYBE_SENT_FAILURES), max_size=3))
    status, body = data.draw(answers(method))
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    stytch, provider = scripted(rig, method, *failures, reply(status, content=raw))
    outcome = rig.outcome(provider, method)

    verdict, requests = script_verdict(failures)
    if verdict == "unknown":
        assert isinstance(outcome, DeliveryUnknown), outcome
    elif verdict == "rejected":
        assert isinstance(outcome, DeliveryRejected), outcome
    else:
        check_answer(method, status, body, outcome)
    assert len(stytch.raw) == requests
    if isinstance(outcome, BaseException):
        for exc in chain(outcome):
            assert_clean(str(exc) + repr(exc))
        assert outcome.__context__ is None
    assert_clean(caplog.text)


# --- found by review: each a failing case before its fix ---------------------------------------------------

@pytest.mark.parametrize("base_url", ["https://user:pw@test.stytch.com/", "http://emulator@127.0.0.1:8123"])
def test_base_url_carrying_credentials_is_refused(rig: Rig, base_url: str) -> None:
    """They would show in repr and logs, and the provider sends its own."""
    with pytest.raises(ConfigurationError, match=r"^invalid_argument: base_url: must not carry credentials"):
        rig.provider_class(PROJECT_ID, SECRET, base_url=base_url)


@pytest.mark.parametrize("ref", [MEMBER, MEMBER_EXTERNAL], ids=["member_id", "external_id"])
def test_get_member_answering_another_member_is_unexpected_response(rig: Rig, ref: str) -> None:
    """A consistent body for Bob, asked for Alice (by id or external id), fails closed: nothing is cached."""
    stytch = Stytch()
    stytch.script("get_member", reply(200, stytch.success("get_member", BOB)))
    assert_unexpected(rig.outcome(rig.provider(stytch), "get_member", ORG, ref),
                      "names another member or organization than the one asked for")


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("status", [200, 400])
def test_json_nested_too_deep_to_parse_is_refused_as_an_mfa_error(rig: Rig, method: str, status: int) -> None:
    _, provider = scripted(rig, method, reply(status, content=b"[" * 100_000))
    outcome = rig.outcome(provider, method)
    assert isinstance(outcome, MfaError), outcome
    assert outcome.error_type == "internal_server_error"


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_redirect_answering_a_send_is_delivery_unknown_and_never_followed(rig: Rig, status: int) -> None:
    stytch, provider = scripted(rig, "send", lambda _r, _b: httpx.Response(
        status, headers={"Location": "https://elsewhere.example/v1/b2b/otps/sms/send"}))
    assert isinstance(rig.outcome(provider, "send"), DeliveryUnknown)
    assert len(stytch.raw) == 1
