"""Twilio Programmable Messaging as an SMS gateway: :class:`TwilioGateway` and :class:`AsyncTwilioGateway`.

Each delivery is one ``POST https://api.twilio.com/2010-04-01/Accounts/{AccountSid}/Messages.json``,
form-encoded ``To``, ``From`` (or ``MessagingServiceSid``) and ``Body``, with HTTP Basic auth
``AccountSid:AuthToken``. :func:`classify` reads the answer; docs/sending-sms.md has the whole failure table.

Twilio creates the Message resource only when it answers 2xx; a 4xx means it refused the request and queued
nothing (its 429 says so in as many words: "requests that receive 429 responses aren't processed"), so every 4xx
is ``DeliveryRejected``. A 5xx, a 2xx body that is not a queued message for this number, or a failure once the
request may have left is ``DeliveryUnknown``. Carrier failures after creation (30001 queue overflow, 30003
unreachable, ...) arrive later by status callback: the gateway cannot see them.
"""

from __future__ import annotations

import re

import httpx

from mfa_flow.errors import ConfigurationError
from mfa_flow.transports import SmsMessage
from mfa_flow.transports._http import AsyncChannel, SyncChannel, Verdict, check_text

__all__ = ["AsyncTwilioGateway", "TwilioGateway"]

API = "https://api.twilio.com/2010-04-01"

#: The refusals a send meets most, by Twilio error code; named in logs and errors. Every 4xx is a refusal
#: whether listed or not. Checked against Twilio's error dictionary (see docs/sending-sms.md).
REFUSALS: dict[int, str] = {
    20003: "authentication failed",
    20429: "too many requests",
    21211: "invalid 'To' number",
    21408: "sending to this region is not enabled",
    21606: "the 'From' number cannot send to this destination",
    21610: "the recipient opted out with STOP",
    21611: "the 'From' number's queue is full",
    21612: "Twilio cannot route between this 'To' and 'From'",
    21614: "the 'To' number is not a mobile number",
    21617: "the body exceeds 1600 characters",
}

#: Message statuses named in logs; any other text the answer holds is not repeated.
_STATUSES = frozenset({"accepted", "scheduled", "queued", "sending", "sent", "delivered", "read",
                       "partially_delivered", "failed", "undelivered", "canceled"})
_FAILED = frozenset({"failed", "undelivered", "canceled"})
_MESSAGE_SID = re.compile(r"[SM]M[0-9a-fA-F]{32}")


def _sid(field: str, value: object, prefix: str) -> str:
    """A SID goes into the URL path or the form: it must be exactly one (never echoed: it may be a token)."""
    if not isinstance(value, str) or not re.fullmatch(prefix + r"[0-9a-fA-F]{32}", value):
        raise ConfigurationError(f"{field}: must be a Twilio SID ({prefix} followed by 32 hex digits)")
    return value


def _error_code(response: httpx.Response) -> int | None:
    try:
        body = response.json()
    except ValueError:
        return None
    code = body.get("code") if isinstance(body, dict) else None
    return code if isinstance(code, int) and not isinstance(code, bool) else None


def _created(response: httpx.Response, to: str) -> Verdict:
    """A 2xx is delivered only when it describes a live message to ``to``; anything else may have been sent."""
    status = response.status_code
    try:
        body = response.json()
    except ValueError:
        return Verdict("unknown", f"HTTP {status} with a body that is not JSON")
    if not isinstance(body, dict):
        return Verdict("unknown", f"HTTP {status} with a body that is not a JSON object")
    sid, state, error = body.get("sid"), body.get("status"), body.get("error_code")
    if not isinstance(sid, str) or not _MESSAGE_SID.fullmatch(sid):
        return Verdict("unknown", f"HTTP {status} without a message sid")
    if not isinstance(state, str):
        return Verdict("unknown", f"HTTP {status}, message {sid} without a status")
    shown = state if state in _STATUSES else "an unexpected status"
    if state in _FAILED or error is not None:
        code = f" (error {error})" if isinstance(error, int) and not isinstance(error, bool) else ""
        return Verdict("unknown", f"HTTP {status}, message {sid} is {shown}{code}")
    if body.get("to") != to:
        return Verdict("unknown", f"HTTP {status}, message {sid} names another number than the one requested")
    return Verdict("sent", f"HTTP {status}, message {sid} {shown}")


def classify(response: httpx.Response, to: str) -> Verdict:
    """Twilio's answer to creating a message for ``to``: sent, refused (any 4xx) or unknown (the rest)."""
    status = response.status_code
    if 200 <= status < 300:
        return _created(response, to)
    if 400 <= status < 500:
        code = _error_code(response)
        if code is None:
            return Verdict("rejected", f"HTTP {status} without Twilio's error body")
        meaning = REFUSALS.get(code)
        return Verdict("rejected", f"HTTP {status}, Twilio error {code}" + (f": {meaning}" if meaning else ""))
    return Verdict("unknown", f"HTTP {status}")


class _Twilio:
    """What both twins share: the checked settings, the request, the credentials and the verdict."""

    name = "Twilio"

    def __init__(self, account_sid: object, auth_token: object, from_: object,
                 messaging_service_sid: object) -> None:
        self._account_sid = _sid("account_sid", account_sid, "AC")
        check_text("auth_token", auth_token)
        if (from_ is None) == (messaging_service_sid is None):
            raise ConfigurationError("from_ / messaging_service_sid: give exactly one (got "
                                     + ("neither)" if from_ is None else "both)"))
        if from_ is not None:
            self._sender = ("From", "from_", check_text("from_", from_))
        else:
            sid = _sid("messaging_service_sid", messaging_service_sid, "MG")
            self._sender = ("MessagingServiceSid", "messaging_service_sid", sid)
        self._url = f"{API}/Accounts/{self._account_sid}/Messages.json"
        self._auth = httpx.BasicAuth(self._account_sid, str(auth_token))

    def describe(self) -> str:
        _, field, value = self._sender
        return f"account_sid={self._account_sid!r}, {field}={value!r}, auth_token='******'"

    def request(self, client: httpx.Client | httpx.AsyncClient, message: SmsMessage,
                timeout: httpx.Timeout) -> httpx.Request:
        form_field, _, sender = self._sender
        return client.build_request("POST", self._url, data={"To": message.to, form_field: sender,
                                                               "Body": message.body}, timeout=timeout)

    def auth(self) -> httpx.Auth:
        return self._auth

    def classify(self, response: httpx.Response, message: SmsMessage) -> Verdict:
        return classify(response, message.to)


class TwilioGateway(SyncChannel):
    """Sends each code through Twilio's Messages API, for :class:`~mfa_flow.MfaFlow`.

    Exactly one of ``from_`` (a Twilio number, short code or sender id) and ``messaging_service_sid``. A
    ``client`` passed in (proxies, pools) is used with this gateway's auth, timeouts and retry rule and is never
    closed here; without one the gateway makes its own, closed by :meth:`close` or ``with``. ``timeout``:
    seconds or an ``httpx.Timeout`` (default connect 3 s, read 10 s). ``connect_retries``: how many times a
    connection that could not be made is tried again (0–5).
    """

    def __init__(self, account_sid: str, auth_token: str, *, from_: str | None = None,
                 messaging_service_sid: str | None = None, client: httpx.Client | None = None,
                 timeout: float | httpx.Timeout | None = None, connect_retries: int = 2) -> None:
        super().__init__(_Twilio(account_sid, auth_token, from_, messaging_service_sid), client, timeout,
                         connect_retries)


class AsyncTwilioGateway(AsyncChannel):
    """The asynchronous twin of :class:`TwilioGateway` (an ``httpx.AsyncClient``), for ``AsyncMfaFlow``;
    closed by :meth:`aclose` or ``async with``."""

    def __init__(self, account_sid: str, auth_token: str, *, from_: str | None = None,
                 messaging_service_sid: str | None = None, client: httpx.AsyncClient | None = None,
                 timeout: float | httpx.Timeout | None = None, connect_retries: int = 2) -> None:
        super().__init__(_Twilio(account_sid, auth_token, from_, messaging_service_sid), client, timeout,
                         connect_retries)
