"""The HTTP SMS gateways (spec §6.11, §6.12; docs/sending-sms.md): every row of the failure table, the exact
requests, the connect-only retry, client ownership, secrets kept out of reprs, errors and logs, and whole logins
through MfaFlow and AsyncMfaFlow — all against ``httpx.MockTransport`` standing in for Twilio and for a webhook
receiver. Each test runs on the synchronous and on the asynchronous twin (the ``rig`` fixture)."""

from __future__ import annotations

import asyncio
import base64
import hmac
import inspect
import json
import logging
import re
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

from mfa_flow import (
    AsyncMfaFlow,
    ConfigurationError,
    Event,
    Member,
    MemoryDirectory,
    MfaError,
    MfaFlow,
    Organization,
    Policy,
)
from mfa_flow.errors import DeliveryFailed
from mfa_flow.records import rfc3339, to_datetime
from mfa_flow.testing import FakeClock, FakeTransport
from mfa_flow.transports import DeliveryRejected, DeliveryUnknown, SmsMessage
from mfa_flow.transports import webhook as webhook_module
from mfa_flow.transports.twilio import AsyncTwilioGateway, TwilioGateway
from mfa_flow.transports.webhook import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    AsyncWebhookGateway,
    WebhookGateway,
    verify_webhook,
)
from tests.helpers_process import run_python
from tests.helpers_rules import MASKED, MEMBER, ORG, PHONE, Setup, names

ACCOUNT = "AC" + "0123456789abcdef" * 2
TOKEN = "test-auth-token-0f1e2d3c4b5a6978"
SERVICE = "MG" + "fedcba9876543210" * 2
SENDER = "+14155550100"
HOOK = "https://sms.example.com/mfa/deliver"
SECRET = b"test-webhook-secret-of-32-bytes!"
SID = "SM" + "0a1b2c3d" * 4
CODE = "481516"
MESSAGE = SmsMessage(PHONE, CODE, "en", MEMBER, ORG)
TWILIO_URL = f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT}/Messages.json"
BASIC = "Basic " + base64.b64encode(f"{ACCOUNT}:{TOKEN}".encode()).decode()
DEFAULT_TIMEOUT = {"connect": 3.0, "read": 10.0, "write": 10.0, "pool": 10.0}
#: What may never appear in a repr, an error or a log line.
SECRETS = (CODE, MESSAGE.body, TOKEN, SECRET.decode(), BASIC.split()[1], PHONE)

Answer = Callable[[], httpx.Response] | type[httpx.HTTPError]


def answer(status: int, body: object = None, *, content: bytes | None = None, **headers: str) -> Answer:
    """A fresh response each time (a response object cannot be sent twice)."""
    if body is not None:
        return lambda: httpx.Response(status, json=body, headers=headers)
    return lambda: httpx.Response(status, content=content or b"", headers=headers)


def twilio_message(**fields: object) -> dict[str, object]:
    """Twilio's 201 body for a created message (it repeats the body: the gateway must not log it)."""
    body: dict[str, object] = {"sid": SID, "status": "queued", "to": PHONE, "from": SENDER, "body": MESSAGE.body,
                               "error_code": None, "error_message": None, "account_sid": ACCOUNT}
    body.update(fields)
    return body


def twilio_error(code: int, status: int = 400) -> Answer:
    return answer(status, {"code": code, "message": f"The 'To' number {PHONE} cannot receive this message",
                           "more_info": f"https://www.twilio.com/docs/errors/{code}", "status": status})


CREATED = answer(201, twilio_message())


class Provider:
    """The far end behind ``httpx.MockTransport``: answers from a script (the last step repeats) and keeps every
    request it received, so tests count attempts."""

    def __init__(self, *script: Answer) -> None:
        self.script = script
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        step = self.script[min(len(self.requests), len(self.script)) - 1]
        if isinstance(step, type):
            raise step("scripted failure", request=request)
        return step()


class Rig:
    """Builds gateways of one twin (sync or async) over a provider, and delivers through them."""

    def __init__(self, asynchronous: bool) -> None:
        self.asynchronous = asynchronous
        self.clients: list[httpx.Client | httpx.AsyncClient] = []

    def client(self, provider: Provider, **kwargs: Any) -> Any:
        kind = httpx.AsyncClient if self.asynchronous else httpx.Client
        client = kind(transport=httpx.MockTransport(provider), **kwargs)
        self.clients.append(client)
        return client

    def gateway(self, kind: str, provider: Provider | None = None, **kwargs: Any) -> Any:
        if "client" not in kwargs:
            kwargs["client"] = self.client(provider or Provider(CREATED if kind == "twilio" else answer(204)))
        if kind == "twilio":
            if "messaging_service_sid" not in kwargs:
                kwargs.setdefault("from_", SENDER)
            return (AsyncTwilioGateway if self.asynchronous else TwilioGateway)(ACCOUNT, TOKEN, **kwargs)
        kwargs.setdefault("secret", SECRET)
        return (AsyncWebhookGateway if self.asynchronous else WebhookGateway)(HOOK, **kwargs)

    def run(self, value: Any) -> Any:
        return asyncio.run(value) if inspect.iscoroutine(value) else value

    def attempt(self, gateway: Any, message: SmsMessage = MESSAGE) -> Exception | None:
        """None when delivered, else what ``deliver`` raised."""
        try:
            self.run(gateway.deliver(message))
        except (DeliveryRejected, DeliveryUnknown) as exc:
            return exc
        return None

    def flow(self, gateway: Any, events: list[Event]) -> Any:
        kind = AsyncMfaFlow if self.asynchronous else MfaFlow
        return kind(transport=gateway, clock=FakeClock(), events=[events.append])

    def close(self) -> None:
        for client in self.clients:
            self.run(client.aclose() if isinstance(client, httpx.AsyncClient) else client.close())


pytestmark = pytest.mark.usefixtures("pauses")  # no test sleeps through a backoff


@pytest.fixture(params=[False, True], ids=["sync", "async"])
def rig(request: pytest.FixtureRequest) -> Iterator[Rig]:
    made = Rig(request.param)
    yield made
    made.close()


def form(request: httpx.Request) -> dict[str, list[str]]:
    return parse_qs(request.content.decode(), strict_parsing=True)


def code_in(kind: str, request: httpx.Request) -> str:
    """The code a provider received — what the member's phone shows."""
    if kind == "twilio":
        found = re.search(r"\b(\d{6})\b", form(request)["Body"][0])
        assert found is not None
        return found.group(1)
    return str(json.loads(request.content)["code"])


def assert_clean(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text


def assert_rejected(exc: Exception | None, *fragments: str) -> None:
    assert isinstance(exc, DeliveryRejected), exc
    assert all(fragment in str(exc) for fragment in fragments), str(exc)


def assert_unknown(exc: Exception | None, *fragments: str) -> None:
    assert isinstance(exc, DeliveryUnknown), exc
    assert all(fragment in str(exc) for fragment in fragments), str(exc)


# ------------------------------------------------------------------------- the Twilio rows of the table


@pytest.mark.parametrize(("status", "state"), [(201, "queued"), (201, "accepted"), (200, "sent")])
def test_twilio_2xx_with_a_live_message_for_the_number_is_delivered(rig: Rig, status: int, state: str) -> None:
    provider = Provider(answer(status, twilio_message(status=state)))
    assert rig.attempt(rig.gateway("twilio", provider)) is None
    assert len(provider.requests) == 1


REFUSAL_ROWS = [
    (21211, "invalid 'To' number"),
    (21610, "the recipient opted out with STOP"),
    (21408, "sending to this region is not enabled"),
    (21612, "Twilio cannot route between this 'To' and 'From'"),
    (21614, "the 'To' number is not a mobile number"),
    (21606, "the 'From' number cannot send to this destination"),
    (21611, "the 'From' number's queue is full"),
    (21617, "the body exceeds 1600 characters"),
]


@pytest.mark.parametrize(("code", "meaning"), REFUSAL_ROWS, ids=[str(code) for code, _ in REFUSAL_ROWS])
def test_twilio_400_refusal_with_its_error_code_is_rejected(rig: Rig, code: int, meaning: str) -> None:
    provider = Provider(twilio_error(code), CREATED)
    exc = rig.attempt(rig.gateway("twilio", provider))
    assert_rejected(exc, f"Twilio did not send the SMS to {MASKED}: HTTP 400, Twilio error {code}: {meaning}")
    assert len(provider.requests) == 1


def test_twilio_400_with_an_unlisted_error_code_is_rejected_naming_the_code(rig: Rig) -> None:
    provider = Provider(twilio_error(21659))
    exc = rig.attempt(rig.gateway("twilio", provider))
    assert_rejected(exc, "HTTP 400, Twilio error 21659")
    assert str(exc).endswith("Twilio error 21659")


@pytest.mark.parametrize("status", [401, 403])
def test_twilio_401_or_403_credentials_refused_is_rejected(rig: Rig, status: int) -> None:
    provider = Provider(twilio_error(20003, status), CREATED)
    exc = rig.attempt(rig.gateway("twilio", provider))
    assert_rejected(exc, f"HTTP {status}, Twilio error 20003: authentication failed")
    assert len(provider.requests) == 1


def test_twilio_429_too_many_requests_is_rejected_and_not_retried(rig: Rig, pauses: list[float]) -> None:
    provider = Provider(twilio_error(20429, 429), CREATED)
    exc = rig.attempt(rig.gateway("twilio", provider))
    assert_rejected(exc, "HTTP 429, Twilio error 20429: too many requests")
    assert len(provider.requests) == 1
    assert pauses == []


@pytest.mark.parametrize("status", [404, 405, 413])
def test_twilio_other_4xx_without_twilios_error_body_is_rejected(rig: Rig, status: int) -> None:
    provider = Provider(answer(status, content=b"<html>refused by a proxy</html>", **{"content-type": "text/html"}))
    exc = rig.attempt(rig.gateway("twilio", provider))
    assert_rejected(exc, f"HTTP {status} without Twilio's error body")
    assert len(provider.requests) == 1


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_twilio_5xx_is_unknown_and_not_retried(rig: Rig, status: int) -> None:
    provider = Provider(answer(status, {"code": 20500, "status": status}), CREATED)
    exc = rig.attempt(rig.gateway("twilio", provider))
    assert_unknown(exc, f"Twilio may have sent the SMS to {MASKED}: HTTP {status}; not retried")
    assert len(provider.requests) == 1


@pytest.mark.parametrize("kind", ["twilio", "webhook"])
@pytest.mark.parametrize("status", [301, 307, 308])
def test_3xx_is_unknown_and_never_followed(rig: Rig, kind: str, status: int) -> None:
    """Following a redirect would POST the message again; even a client that follows redirects does not here."""
    provider = Provider(answer(status, content=b"", location="https://elsewhere.example.com/"), CREATED)
    gateway = rig.gateway(kind, client=rig.client(provider, follow_redirects=True))
    assert_unknown(rig.attempt(gateway), f"HTTP {status}")
    assert len(provider.requests) == 1


def test_twilio_2xx_whose_body_is_not_json_is_unknown(rig: Rig) -> None:
    provider = Provider(answer(201, content=b"<Response>queued</Response>"))
    assert_unknown(rig.attempt(rig.gateway("twilio", provider)), "HTTP 201 with a body that is not JSON")
    assert len(provider.requests) == 1


@pytest.mark.parametrize("body", [[SID], "queued"], ids=["list", "string"])
def test_twilio_2xx_whose_json_is_not_an_object_is_unknown(rig: Rig, body: object) -> None:
    provider = Provider(answer(201, body))
    assert_unknown(rig.attempt(rig.gateway("twilio", provider)), "HTTP 201 with a body that is not a JSON object")


@pytest.mark.parametrize("sid", [None, "", 42, "SM123", "XX" + "0" * 32, f"{SID} {CODE}"])
def test_twilio_2xx_without_a_message_sid_is_unknown(rig: Rig, sid: object) -> None:
    body = twilio_message(sid=sid)
    if sid is None:
        del body["sid"]
    provider = Provider(answer(201, body))
    exc = rig.attempt(rig.gateway("twilio", provider))
    assert_unknown(exc, "HTTP 201 without a message sid")
    assert_clean(str(exc))


def test_twilio_2xx_without_a_status_is_unknown(rig: Rig) -> None:
    provider = Provider(answer(201, twilio_message(status=None)))
    assert_unknown(rig.attempt(rig.gateway("twilio", provider)), f"HTTP 201, message {SID} without a status")


@pytest.mark.parametrize(("fields", "shown"), [
    ({"status": "failed", "error_code": 30001}, "is failed (error 30001)"),
    ({"status": "undelivered", "error_code": 30003}, "is undelivered (error 30003)"),
    ({"status": "canceled"}, "is canceled"),
    ({"status": "queued", "error_code": 21610}, "is queued (error 21610)"),
    ({"status": CODE, "error_code": "x"}, "is an unexpected status"),
], ids=["failed-30001", "undelivered", "canceled", "error-code-set", "unexpected-status"])
def test_twilio_2xx_whose_message_already_failed_is_unknown(rig: Rig, fields: dict[str, object], shown: str) -> None:
    provider = Provider(answer(201, twilio_message(**fields)))
    exc = rig.attempt(rig.gateway("twilio", provider))
    assert_unknown(exc, f"HTTP 201, message {SID} {shown}")
    assert_clean(str(exc))
    assert len(provider.requests) == 1


@pytest.mark.parametrize("to", ["+14155550199", None])
def test_twilio_2xx_for_another_number_is_unknown(rig: Rig, to: str | None) -> None:
    provider = Provider(answer(201, twilio_message(to=to)))
    exc = rig.attempt(rig.gateway("twilio", provider))
    assert_unknown(exc, "names another number than the one requested")
    assert "0199" not in str(exc)


# ------------------------------------------------------------------------ the webhook rows of the table


@pytest.mark.parametrize("status", [200, 202, 204])
def test_webhook_2xx_is_delivered(rig: Rig, status: int) -> None:
    provider = Provider(answer(status, content=b"ok"))
    assert rig.attempt(rig.gateway("webhook", provider)) is None
    assert len(provider.requests) == 1


@pytest.mark.parametrize("status", [400, 401, 403, 410, 422, 429])
def test_webhook_4xx_is_rejected_and_not_retried(rig: Rig, status: int) -> None:
    provider = Provider(answer(status, {"error": "no"}), answer(204))
    exc = rig.attempt(rig.gateway("webhook", provider))
    assert_rejected(exc, f"SMS webhook did not send the SMS to {MASKED}: HTTP {status}")
    assert len(provider.requests) == 1


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_webhook_5xx_is_unknown_and_not_retried(rig: Rig, status: int) -> None:
    provider = Provider(answer(status), answer(204))
    exc = rig.attempt(rig.gateway("webhook", provider))
    assert_unknown(exc, f"SMS webhook may have sent the SMS to {MASKED}: HTTP {status}; not retried")
    assert len(provider.requests) == 1


# ---------------------------------------------- the transport rows of the table (both gateways, one rule)

CONNECT_FAILURES = [httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout]
MAYBE_SENT_FAILURES = [httpx.ReadTimeout, httpx.WriteTimeout, httpx.RemoteProtocolError, httpx.ReadError,
                       httpx.WriteError, httpx.ProxyError]


def backoff_bounds(retry: int) -> tuple[float, float]:
    """The documented pause before retry ``retry`` (from 0): between half the step and the step."""
    step = min(2.0, 0.25 * 2**retry)
    return step / 2, step


@pytest.mark.parametrize("kind", ["twilio", "webhook"])
@pytest.mark.parametrize("failure", CONNECT_FAILURES, ids=lambda f: f.__name__)
@pytest.mark.parametrize("retries", [0, 2, 5])
def test_connect_failure_on_every_attempt_is_rejected_after_one_plus_connect_retries(
        rig: Rig, pauses: list[float], kind: str, failure: type[httpx.HTTPError], retries: int) -> None:
    provider = Provider(failure)
    exc = rig.attempt(rig.gateway(kind, provider, connect_retries=retries))
    attempts = retries + 1
    assert_rejected(exc, f"could not connect ({failure.__name__}) in {attempts} attempt")
    assert len(provider.requests) == attempts
    assert len(pauses) == retries
    for retry, pause in enumerate(pauses):
        low, high = backoff_bounds(retry)
        assert low <= pause <= high


def test_backoff_pauses_are_jittered(rig: Rig, pauses: list[float]) -> None:
    for _ in range(20):
        rig.attempt(rig.gateway("twilio", Provider(httpx.ConnectError), connect_retries=1))
    assert len(pauses) == 20
    assert len(set(pauses)) > 1


@pytest.mark.parametrize("kind", ["twilio", "webhook"])
def test_connect_failure_then_an_answer_is_delivered_with_the_same_request(rig: Rig, kind: str) -> None:
    provider = Provider(httpx.ConnectError, httpx.ConnectTimeout, CREATED if kind == "twilio" else answer(204))
    assert rig.attempt(rig.gateway(kind, provider)) is None
    first, *rest = provider.requests
    assert len(rest) == 2
    for again in rest:  # the webhook's id, timestamp and signature too
        assert again.content == first.content
        assert again.headers == first.headers


@pytest.mark.parametrize("kind", ["twilio", "webhook"])
def test_connect_failure_then_a_read_timeout_is_unknown_and_stops(rig: Rig, kind: str) -> None:
    provider = Provider(httpx.ConnectError, httpx.ReadTimeout, CREATED if kind == "twilio" else answer(204))
    exc = rig.attempt(rig.gateway(kind, provider, connect_retries=5))
    assert_unknown(exc, "ReadTimeout once the request may have reached it; not retried")
    assert len(provider.requests) == 2


@pytest.mark.parametrize("kind", ["twilio", "webhook"])
@pytest.mark.parametrize("failure", MAYBE_SENT_FAILURES, ids=lambda f: f.__name__)
def test_failure_once_the_request_may_have_left_is_unknown_and_not_retried(
        rig: Rig, pauses: list[float], kind: str, failure: type[httpx.HTTPError]) -> None:
    provider = Provider(failure, CREATED if kind == "twilio" else answer(204))
    exc = rig.attempt(rig.gateway(kind, provider, connect_retries=5))
    assert_unknown(exc, f"{failure.__name__} once the request may have reached it")
    assert len(provider.requests) == 1
    assert pauses == []


# ---------------------------------------------------------------------------------- the exact requests


def test_twilio_request_is_a_form_post_with_basic_auth(rig: Rig) -> None:
    provider = Provider(CREATED)
    rig.attempt(rig.gateway("twilio", provider))
    (request,) = provider.requests
    assert request.method == "POST"
    assert str(request.url) == TWILIO_URL
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert request.headers["authorization"] == BASIC
    assert form(request) == {"To": [PHONE], "From": [SENDER], "Body": [MESSAGE.body]}
    assert request.extensions["timeout"] == DEFAULT_TIMEOUT


def test_twilio_request_through_a_messaging_service_names_it_instead_of_from(rig: Rig) -> None:
    provider = Provider(answer(201, twilio_message(status="accepted")))
    assert rig.attempt(rig.gateway("twilio", provider, messaging_service_sid=SERVICE)) is None
    assert form(provider.requests[0]) == {"To": [PHONE], "MessagingServiceSid": [SERVICE], "Body": [MESSAGE.body]}


def test_twilio_credentials_win_over_the_callers_client_auth(rig: Rig) -> None:
    provider = Provider(CREATED)
    rig.attempt(rig.gateway("twilio", client=rig.client(provider, auth=("someone", "else"))))
    assert provider.requests[0].headers["authorization"] == BASIC


def test_webhook_request_is_signed_json(rig: Rig) -> None:
    provider = Provider(answer(204))
    rig.attempt(rig.gateway("webhook", provider))
    (request,) = provider.requests
    assert request.method == "POST"
    assert str(request.url) == HOOK
    assert request.headers["content-type"] == "application/json"
    assert "authorization" not in request.headers
    timestamp, signature = request.headers[TIMESTAMP_HEADER], request.headers[SIGNATURE_HEADER]
    payload = json.loads(request.content)
    assert re.fullmatch(r"[0-9a-f]{32}", payload.pop("id"))
    assert payload == {"to": PHONE, "body": MESSAGE.body, "code": CODE, "locale": "en", "member_id": MEMBER,
                       "organization_id": ORG, "sent_at": rfc3339(to_datetime(int(timestamp)))}
    assert re.fullmatch(r"[0-9a-f]{64}", signature)
    assert verify_webhook(request.content, timestamp, signature, SECRET, now=int(timestamp))
    assert request.extensions["timeout"] == DEFAULT_TIMEOUT


def test_webhook_deliveries_have_distinct_ids(rig: Rig) -> None:
    provider = Provider(answer(204))
    gateway = rig.gateway("webhook", provider)
    rig.attempt(gateway)
    rig.attempt(gateway)
    assert len({json.loads(r.content)["id"] for r in provider.requests}) == 2


def test_webhook_keeps_the_callers_client_auth(rig: Rig) -> None:
    provider = Provider(answer(204))
    rig.attempt(rig.gateway("webhook", client=rig.client(provider, auth=("receiver", "password"))))
    assert provider.requests[0].headers["authorization"].startswith("Basic ")


@pytest.mark.parametrize("kind", ["twilio", "webhook"])
def test_timeouts_apply_to_every_request_even_on_the_callers_client(rig: Rig, kind: str) -> None:
    default = Provider(CREATED if kind == "twilio" else answer(204))
    rig.attempt(rig.gateway(kind, client=rig.client(default, timeout=60.0)))
    assert default.requests[0].extensions["timeout"] == DEFAULT_TIMEOUT
    custom = Provider(CREATED if kind == "twilio" else answer(204))
    rig.attempt(rig.gateway(kind, custom, timeout=5))
    assert custom.requests[0].extensions["timeout"] == dict.fromkeys(DEFAULT_TIMEOUT, 5.0)
    chosen = httpx.Timeout(8.0, connect=1.5)
    exact = Provider(CREATED if kind == "twilio" else answer(204))
    rig.attempt(rig.gateway(kind, exact, timeout=chosen))
    assert exact.requests[0].extensions["timeout"] == chosen.as_dict()


# ------------------------------------------------------------------------------------- verify_webhook


def signed(body: bytes = b'{"code":"481516"}', timestamp: str = "1767225600") -> tuple[bytes, str, str]:
    expected = hmac.new(SECRET, timestamp.encode() + b"." + body, "sha256").hexdigest()
    return body, timestamp, expected


def test_verify_webhook_accepts_a_fresh_genuine_delivery_within_the_tolerance() -> None:
    body, timestamp, signature = signed()
    moment = int(timestamp)
    assert verify_webhook(body, timestamp, signature, SECRET, now=moment)
    assert verify_webhook(body, timestamp, signature, SECRET, now=moment + 300)
    assert verify_webhook(body, timestamp, signature, SECRET, now=moment - 300)
    assert verify_webhook(body, timestamp, signature, SECRET.decode(), now=moment)


def test_verify_webhook_refuses_a_timestamp_beyond_the_tolerance() -> None:
    body, timestamp, signature = signed()
    moment = int(timestamp)
    assert not verify_webhook(body, timestamp, signature, SECRET, now=moment + 301)
    assert not verify_webhook(body, timestamp, signature, SECRET, now=moment - 301)
    assert not verify_webhook(body, timestamp, signature, SECRET, now=moment + 61, tolerance=60)
    assert not verify_webhook(body, timestamp, signature, SECRET)  # the system clock is later than 2026-01-01


def test_verify_webhook_refuses_a_tampered_body_timestamp_signature_or_another_secret() -> None:
    body, timestamp, signature = signed()
    moment = int(timestamp)
    assert not verify_webhook(body.replace(b"481516", b"000000"), timestamp, signature, SECRET, now=moment)
    assert not verify_webhook(body, str(moment + 1), signature, SECRET, now=moment)
    assert not verify_webhook(body, timestamp, signature[:-1] + ("0" if signature[-1] != "0" else "1"), SECRET,
                              now=moment)
    assert not verify_webhook(body, timestamp, signature.upper(), SECRET, now=moment)
    assert not verify_webhook(body, timestamp, signature, b"another-secret-of-at-least-32-bytes", now=moment)


@pytest.mark.parametrize(("body", "timestamp", "signature"), [
    (None, "1767225600", "ab"), ("text", "1767225600", "ab"), (b"{}", None, "ab"), (b"{}", "", "ab"),
    (b"{}", "17672256OO", "ab"), (b"{}", "１７６７２２５６００", "ab"), (b"{}", "-1767225600", "ab"),
    (b"{}", "1767225600", None), (b"{}", "1767225600", "é" * 64), (b"{}", "9" * 40, "ab"),
], ids=["no-body", "str-body", "no-timestamp", "empty-timestamp", "letters", "full-width-digits", "negative",
        "no-signature", "non-ascii-signature", "huge-timestamp"])
def test_verify_webhook_is_false_for_missing_or_malformed_parts(body: Any, timestamp: Any, signature: Any) -> None:
    assert verify_webhook(body, timestamp, signature, SECRET, now=1767225600) is False


def test_verify_webhook_compares_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    compared: list[tuple[object, object]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(webhook_module.hmac, "compare_digest", spy)
    body, timestamp, signature = signed()
    assert verify_webhook(body, timestamp, signature, SECRET, now=int(timestamp))
    assert compared == [(signature, signature)]


@pytest.mark.parametrize(("secret", "tolerance", "field"), [
    (b"x" * 31, 300, "secret"), ("x" * 31, 300, "secret"), (12345, 300, "secret"), (SECRET, -1, "tolerance"),
    (SECRET, "300", "tolerance"),
])
def test_verify_webhook_refuses_a_short_secret_or_a_bad_tolerance(secret: Any, tolerance: Any, field: str) -> None:
    body, timestamp, signature = signed()
    with pytest.raises(ConfigurationError, match=f"^invalid_argument: {field}:"):
        verify_webhook(body, timestamp, signature, secret, now=int(timestamp), tolerance=tolerance)


# ------------------------------------------------------------------------------------ construction


def twilio_class(rig: Rig) -> Any:
    return AsyncTwilioGateway if rig.asynchronous else TwilioGateway


def webhook_class(rig: Rig) -> Any:
    return AsyncWebhookGateway if rig.asynchronous else WebhookGateway


@pytest.mark.parametrize(("kwargs", "got"), [({}, "neither"), ({"from_": SENDER, "messaging_service_sid": SERVICE},
                                                                "both")])
def test_twilio_needs_exactly_one_of_from_and_messaging_service_sid(rig: Rig, kwargs: dict[str, str],
                                                                     got: str) -> None:
    with pytest.raises(ConfigurationError, match=f"from_ / messaging_service_sid: give exactly one \\(got {got}\\)"):
        twilio_class(rig)(ACCOUNT, TOKEN, **kwargs)


@pytest.mark.parametrize(("field", "args", "kwargs"), [
    ("account_sid", (TOKEN, TOKEN), {"from_": SENDER}),
    ("account_sid", ("AC" + "0" * 31, TOKEN), {"from_": SENDER}),
    ("account_sid", (ACCOUNT + "/../x", TOKEN), {"from_": SENDER}),
    ("account_sid", (None, TOKEN), {"from_": SENDER}),
    ("auth_token", (ACCOUNT, ""), {"from_": SENDER}),
    ("auth_token", (ACCOUNT, None), {"from_": SENDER}),
    ("from_", (ACCOUNT, TOKEN), {"from_": " "}),
    ("messaging_service_sid", (ACCOUNT, TOKEN), {"messaging_service_sid": ACCOUNT}),
    ("messaging_service_sid", (ACCOUNT, TOKEN), {"messaging_service_sid": TOKEN}),
])
def test_twilio_refuses_malformed_settings_naming_the_field_never_the_value(
        rig: Rig, field: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError, match=f"^invalid_argument: {field}:") as caught:
        twilio_class(rig)(*args, **kwargs)
    assert TOKEN not in str(caught.value)


@pytest.mark.parametrize("kind", ["twilio", "webhook"])
def test_gateways_refuse_the_other_twins_client(rig: Rig, kind: str) -> None:
    other = httpx.Client() if rig.asynchronous else httpx.AsyncClient()
    with pytest.raises(ConfigurationError, match=r"^invalid_argument: client: must be an httpx"):
        rig.gateway(kind, client=other)
    rig.run(other.aclose() if isinstance(other, httpx.AsyncClient) else other.close())


@pytest.mark.parametrize("kind", ["twilio", "webhook"])
@pytest.mark.parametrize(("settings", "field"), [
    ({"timeout": 0}, "timeout"), ({"timeout": -1.0}, "timeout"), ({"timeout": "3"}, "timeout"),
    ({"timeout": True}, "timeout"), ({"timeout": httpx.Timeout(None)}, "timeout"),
    ({"timeout": httpx.Timeout(5.0, read=None)}, "timeout"),
    ({"connect_retries": -1}, "connect_retries"), ({"connect_retries": 6}, "connect_retries"),
    ({"connect_retries": True}, "connect_retries"), ({"connect_retries": 1.0}, "connect_retries"),
])
def test_gateways_refuse_unbounded_timeouts_and_unbounded_retries(rig: Rig, kind: str, settings: dict[str, Any],
                                                                  field: str) -> None:
    with pytest.raises(ConfigurationError, match=f"^invalid_argument: {field}:"):
        rig.gateway(kind, **settings)


@pytest.mark.parametrize("url", ["https://sms.example.com/x", "https://sms.example.com:8443/x?tenant=1",
                                 "http://127.0.0.1:8080/x", "http://127.0.0.2/x", "http://localhost/x",
                                 "http://[::1]:9000/x"])
def test_webhook_url_may_be_https_or_plain_http_to_a_loopback_host(rig: Rig, url: str) -> None:
    provider = Provider(answer(204))
    gateway = webhook_class(rig)(url, secret=SECRET, client=rig.client(provider))
    assert rig.attempt(gateway) is None
    assert str(provider.requests[0].url) == url


@pytest.mark.parametrize("url", ["http://sms.example.com/x", "http://10.0.0.7/x", "http://localhost.example.com/x",
                                 "ftp://sms.example.com/x", "https://user:pw@sms.example.com/x", "/relative/path",
                                 "https://", "http://[::1", None])
def test_webhook_url_must_be_https_except_to_a_loopback_host(rig: Rig, url: Any) -> None:
    with pytest.raises(ConfigurationError, match=r"^invalid_argument: url:") as caught:
        webhook_class(rig)(url, secret=SECRET)
    assert "pw" not in str(caught.value)


@pytest.mark.parametrize("secret", [b"x" * 31, "x" * 31, b"", 1234, None])
def test_webhook_secret_must_be_at_least_32_bytes(rig: Rig, secret: Any) -> None:
    with pytest.raises(ConfigurationError, match=r"^invalid_argument: secret:"):
        webhook_class(rig)(HOOK, secret=secret)


def test_webhook_secret_of_32_bytes_or_characters_is_accepted(rig: Rig) -> None:
    for secret in (b"x" * 32, "x" * 32):
        provider = Provider(answer(204))
        rig.attempt(webhook_class(rig)(HOOK, secret=secret, client=rig.client(provider)))
        request = provider.requests[0]
        assert verify_webhook(request.content, request.headers[TIMESTAMP_HEADER], request.headers[SIGNATURE_HEADER],
                              b"x" * 32, now=int(request.headers[TIMESTAMP_HEADER]))


# --------------------------------------------------------------------------------- client ownership


@pytest.mark.parametrize("kind", ["twilio", "webhook"])
def test_gateway_never_closes_the_callers_client(rig: Rig, kind: str) -> None:
    provider = Provider(CREATED if kind == "twilio" else answer(204))
    client = rig.client(provider)

    async def enter_and_leave() -> None:
        async with rig.gateway(kind, client=client) as gateway:
            await gateway.deliver(MESSAGE)
        await rig.gateway(kind, client=client).aclose()

    if rig.asynchronous:
        asyncio.run(enter_and_leave())
    else:
        with rig.gateway(kind, client=client) as gateway:
            gateway.deliver(MESSAGE)
        rig.gateway(kind, client=client).close()
    assert not client.is_closed
    assert rig.attempt(rig.gateway(kind, client=client)) is None
    assert len(provider.requests) == 2


@pytest.mark.parametrize("kind", ["twilio", "webhook"])
def test_gateway_closes_the_client_it_made(rig: Rig, kind: str) -> None:
    settings = {"from_": SENDER} if kind == "twilio" else {"secret": SECRET}
    args = (ACCOUNT, TOKEN) if kind == "twilio" else (HOOK,)
    cls = twilio_class(rig) if kind == "twilio" else webhook_class(rig)
    closed_by_close, closed_by_with = cls(*args, **settings), cls(*args, **settings)
    own = closed_by_close._client
    assert isinstance(own, httpx.AsyncClient if rig.asynchronous else httpx.Client)
    assert own.timeout == httpx.Timeout(10.0, connect=3.0)
    assert not own.is_closed

    async def close_both() -> None:
        await closed_by_close.aclose()
        async with closed_by_with:
            pass

    if rig.asynchronous:
        asyncio.run(close_both())
    else:
        closed_by_close.close()
        with closed_by_with:
            pass
    assert own.is_closed
    assert closed_by_with._client.is_closed


# ----------------------------------------------------------------------------------------- secrets


@pytest.mark.parametrize("kind", ["twilio", "webhook"])
def test_repr_and_str_hide_the_auth_token_and_the_webhook_secret(rig: Rig, kind: str) -> None:
    gateway = rig.gateway(kind)
    for text in (repr(gateway), str(gateway)):
        assert_clean(text)
        assert "'******'" in text
    if kind == "twilio":
        assert repr(gateway) == (f"{type(gateway).__name__}(account_sid={ACCOUNT!r}, from_={SENDER!r}, "
                                 "auth_token='******')")
    else:
        assert repr(gateway) == f"{type(gateway).__name__}(url={HOOK!r}, secret='******')"


def test_webhook_repr_hides_the_urls_query(rig: Rig) -> None:
    gateway = webhook_class(rig)(HOOK + "?key=query-token-1234", secret=SECRET, client=rig.client(Provider()))
    assert "query-token-1234" not in repr(gateway)
    assert HOOK in repr(gateway)


FAILURE_SCRIPTS: list[tuple[str, Answer]] = [
    ("twilio", twilio_error(21610)), ("twilio", twilio_error(20003, 401)), ("twilio", answer(503)),
    ("twilio", answer(201, twilio_message(status="failed", error_code=30001))),
    ("twilio", answer(201, twilio_message(sid=CODE))), ("twilio", answer(201, content=MESSAGE.body.encode())),
    ("twilio", httpx.ConnectError), ("twilio", httpx.ReadTimeout), ("twilio", CREATED),
    ("webhook", answer(400, content=MESSAGE.body.encode())), ("webhook", answer(500)),
    ("webhook", httpx.ConnectTimeout), ("webhook", httpx.RemoteProtocolError), ("webhook", answer(204)),
]


@pytest.mark.parametrize(("kind", "script"), FAILURE_SCRIPTS,
                         ids=[f"{kind}-{i}" for i, (kind, _) in enumerate(FAILURE_SCRIPTS)])
def test_no_code_body_credential_or_number_in_errors_or_logs(rig: Rig, caplog: pytest.LogCaptureFixture,
                                                            kind: str, script: Answer) -> None:
    caplog.set_level(logging.DEBUG)
    exc = rig.attempt(rig.gateway(kind, Provider(script)))
    gateway_lines = [r.getMessage() for r in caplog.records if r.name == "mfa_flow.transports"]
    assert gateway_lines, "the gateway logged nothing"
    assert all(MASKED in line for line in gateway_lines)
    assert_clean(caplog.text)
    if exc is not None:
        assert_clean(str(exc) + repr(exc))
        assert MASKED in str(exc)
        assert exc.__cause__ is None
        assert exc.__context__ is None  # no httpx exception, whose request holds the body and the credentials


def test_import_mfa_flow_does_not_import_httpx() -> None:
    script = ("import sys, mfa_flow, mfa_flow.transports, mfa_flow.testing\n"
              "print('httpx' in sys.modules)\n"
              "import mfa_flow.transports.twilio, mfa_flow.transports.webhook\n"
              "print('httpx' in sys.modules)\n")
    proc = run_python("-c", script)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["False", "True"]


# ------------------------------------------------------------------------------ through the flow


def delivered(kind: str) -> Answer:
    return CREATED if kind == "twilio" else answer(204)


def refused(kind: str) -> Answer:
    return twilio_error(21610) if kind == "twilio" else answer(422)


def signed_in(rig: Rig, setup_member: Setup, kind: str, *script: Answer) -> tuple[Any, Provider, list[Event]]:
    """A flow over the gateway and the default member (a verified phone, MFA required)."""
    provider = Provider(*script)
    events: list[Event] = []
    flow = rig.flow(rig.gateway(kind, provider), events)
    setup_member(flow)
    return flow, provider, events


@pytest.mark.parametrize("kind", ["twilio", "webhook"])
def test_login_through_the_gateway(rig: Rig, setup_member: Setup, kind: str) -> None:
    flow, provider, events = signed_in(rig, setup_member, kind, delivered(kind))
    primary = rig.run(flow.authenticate_primary(ORG, MEMBER, "password"))
    assert primary.mfa_required is not None
    assert primary.mfa_required.secondary_auth_initiated == "sms_otp"
    (request,) = provider.requests
    done = rig.run(flow.authenticate_sms_otp(ORG, MEMBER, code_in(kind, request),
                                             intermediate_session_token=primary.intermediate_session_token))
    assert done.session_token
    assert done.member_session is not None
    assert [f.delivery_method for f in done.member_session.authentication_factors] == ["knowledge", "sms"]
    assert "otp.sent" in names(events)


def resend(rig: Rig, flow: Any, ist: str) -> MfaError:
    with pytest.raises(DeliveryFailed) as caught:
        rig.run(flow.send_sms_otp(ORG, MEMBER, intermediate_session_token=ist))
    return caught.value


@pytest.mark.parametrize("kind", ["twilio", "webhook"])
def test_flow_discards_the_code_a_gateway_rejected(rig: Rig, setup_member: Setup, kind: str) -> None:
    flow, provider, events = signed_in(rig, setup_member, kind, delivered(kind), refused(kind))
    ist = rig.run(flow.authenticate_primary(ORG, MEMBER, "password")).intermediate_session_token
    error = resend(rig, flow, ist)
    assert (error.error_type, error.status_code) == ("downstream_carrier_error", 502)
    assert [e.reason for e in events if e.name == "delivery.failed"] == ["rejected"]
    first, second = (code_in(kind, r) for r in provider.requests)
    for code in (second, first):  # the rejected code is gone, and the first one stays superseded
        with pytest.raises(MfaError) as caught:
            rig.run(flow.authenticate_sms_otp(ORG, MEMBER, code, intermediate_session_token=ist))
        assert caught.value.error_type == "unable_to_auth_otp_code"


@pytest.mark.parametrize("kind", ["twilio", "webhook"])
def test_flow_keeps_the_code_a_gateway_may_have_sent(rig: Rig, setup_member: Setup, kind: str) -> None:
    flow, provider, events = signed_in(rig, setup_member, kind, delivered(kind), httpx.ReadTimeout)
    ist = rig.run(flow.authenticate_primary(ORG, MEMBER, "password")).intermediate_session_token
    error = resend(rig, flow, ist)
    assert (error.error_type, error.status_code) == ("downstream_carrier_error", 502)
    assert [e.reason for e in events if e.name == "delivery.failed"] == ["unknown"]
    assert len(provider.requests) == 2  # never retried
    done = rig.run(flow.authenticate_sms_otp(ORG, MEMBER, code_in(kind, provider.requests[1]),
                                             intermediate_session_token=ist))
    assert done.session_token


@pytest.mark.parametrize("kind", ["twilio", "webhook"])
def test_mfa_flow_refuses_the_async_gateways(kind: str) -> None:
    rig = Rig(asynchronous=True)
    gateway = rig.gateway(kind)
    with pytest.raises(ConfigurationError, match="transport: asynchronous; use AsyncMfaFlow"):
        MfaFlow(transport=gateway)
    rig.close()


def test_the_text_says_the_policys_code_lifetime() -> None:
    """The SMS states how long the code lives as the policy says, not a fixed two minutes."""
    for ttl, said in ((120, "2 minutes"), (60, "1 minute"), (90, "90 seconds"), (300, "5 minutes")):
        sms, directory = FakeTransport(), MemoryDirectory()
        directory.put_organization(Organization("organization-text", mfa_policy="REQUIRED_FOR_ALL"))
        directory.put_member(Member("member-text", "organization-text", mfa_phone_number="+14155550123",
                                    mfa_phone_number_verified=True))
        MfaFlow(policy=Policy(otp_ttl=ttl), transport=sms, directory=directory).authenticate_primary(
            "organization-text", "member-text", "password")
        assert sms.sent[-1].body.endswith(f"It expires in {said}."), sms.sent[-1].body
