"""Your own SMS service behind a signed HTTPS webhook: :class:`WebhookGateway`, :class:`AsyncWebhookGateway`
and, for the receiver, :func:`verify_webhook`.

Each delivery is one ``POST`` of a JSON object (UTF-8, no whitespace)::

    {"id": "<32 hex, this delivery>", "to": "+14155550123", "body": "<the SMS text>", "code": "<6 digits>",
     "locale": "en" | null, "member_id": "...", "organization_id": "...", "sent_at": "2026-01-01T00:00:00Z"}

with ``X-Mfa-Flow-Timestamp: <UNIX seconds>`` (the same second as ``sent_at``) and
``X-Mfa-Flow-Signature: <hex HMAC-SHA256 of "{timestamp}.{raw body}" under the shared secret>``. The receiver
checks the signature and the timestamp (:func:`verify_webhook`: at most 300 s away) before texting ``body`` to
``to``, and answers 2xx once the SMS is handed over, 4xx when it surely will not be sent, 5xx when it cannot
tell. A delivery retried after a failed connection carries the same ``id``, timestamp and signature.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid

import httpx

from mfa_flow.errors import ConfigurationError
from mfa_flow.records import rfc3339, to_datetime
from mfa_flow.transports import SmsMessage
from mfa_flow.transports._http import AsyncChannel, SyncChannel, Verdict, is_loopback

__all__ = ["SIGNATURE_HEADER", "TIMESTAMP_HEADER", "AsyncWebhookGateway", "WebhookGateway", "verify_webhook"]

TIMESTAMP_HEADER = "X-Mfa-Flow-Timestamp"
SIGNATURE_HEADER = "X-Mfa-Flow-Signature"
MIN_SECRET_BYTES = 32
REPLAY_TOLERANCE = 300  # seconds between the timestamp and the receiver's clock, either way


def _secret(secret: object) -> bytes:
    if isinstance(secret, str):
        secret = secret.encode()
    if not isinstance(secret, (bytes, bytearray)):
        raise ConfigurationError(f"secret: must be bytes or str, got {type(secret).__name__}")
    if len(secret) < MIN_SECRET_BYTES:
        raise ConfigurationError(f"secret: must be at least {MIN_SECRET_BYTES} bytes (use secrets.token_bytes(32))")
    return bytes(secret)


def _sign(secret: bytes, timestamp: str, body: bytes) -> str:
    return hmac.new(secret, timestamp.encode("ascii") + b"." + body, hashlib.sha256).hexdigest()


def verify_webhook(body: bytes, timestamp: str, signature: str, secret: bytes | str, *, now: float | None = None,
                   tolerance: float = REPLAY_TOLERANCE) -> bool:
    """Whether a delivery is genuine and fresh: ``signature`` is the HMAC of ``timestamp`` and the raw ``body``
    under ``secret`` (compared in constant time) and ``timestamp`` is within ``tolerance`` seconds of ``now``
    (default: the system clock). Missing or malformed headers are simply ``False``; a bad secret or tolerance
    raises ``ConfigurationError``. Within the window a captured request verifies again: drop repeated ``id``s.
    """
    key = _secret(secret)
    if (not isinstance(tolerance, (int, float)) or isinstance(tolerance, bool)) or tolerance < 0:
        raise ConfigurationError("tolerance: must be non-negative seconds")
    if not isinstance(body, (bytes, bytearray)) or not isinstance(timestamp, str) or not isinstance(signature, str):
        return False
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12 and signature.isascii()):
        return False
    moment = time.time() if now is None else now
    if abs(moment - int(timestamp)) > tolerance:
        return False
    return hmac.compare_digest(_sign(key, timestamp, bytes(body)), signature)


def _url(url: object) -> httpx.URL:
    if not isinstance(url, str):
        raise ConfigurationError(f"url: must be a string, got {type(url).__name__}")
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        raise ConfigurationError("url: not a valid URL") from None
    if parsed.userinfo:
        raise ConfigurationError("url: must not carry credentials (user:password@host); use the signature")
    if not parsed.host or not (parsed.scheme == "https" or (parsed.scheme == "http" and is_loopback(parsed.host))):
        raise ConfigurationError("url: must be https:// (plain http:// only to a loopback host, for tests)")
    return parsed


def classify(response: httpx.Response) -> Verdict:
    """The receiver's answer: 2xx handed over, 4xx surely not sent, anything else (5xx, 3xx) unknown."""
    status = response.status_code
    if 200 <= status < 300:
        return Verdict("sent", f"HTTP {status}")
    return Verdict("rejected" if 400 <= status < 500 else "unknown", f"HTTP {status}")


class _Webhook:
    """What both twins share: the checked URL and secret, the signed request and the verdict."""

    name = "SMS webhook"

    def __init__(self, url: object, secret: object) -> None:
        self._url = _url(url)
        self._secret = _secret(secret)

    def describe(self) -> str:
        shown = self._url.copy_with(query=None, fragment=None)  # a query may carry a token
        return f"url={str(shown)!r}, secret='******'"

    def request(self, client: httpx.Client | httpx.AsyncClient, message: SmsMessage,
                timeout: httpx.Timeout) -> httpx.Request:
        now = int(time.time())
        body = json.dumps({
            "id": uuid.uuid4().hex,
            "to": message.to,
            "body": message.body,
            "code": message.code,
            "locale": message.locale,
            "member_id": message.member_id,
            "organization_id": message.organization_id,
            "sent_at": rfc3339(to_datetime(now)),
        }, separators=(",", ":")).encode()
        timestamp = str(now)
        headers = {"Content-Type": "application/json", TIMESTAMP_HEADER: timestamp,
                   SIGNATURE_HEADER: _sign(self._secret, timestamp, body)}
        return client.build_request("POST", self._url, content=body, headers=headers, timeout=timeout)

    def auth(self) -> None:
        return None  # the client's own auth, if the receiver wants more than the signature

    def classify(self, response: httpx.Response, message: SmsMessage) -> Verdict:  # noqa: ARG002 - Core's signature
        return classify(response)


class WebhookGateway(SyncChannel):
    """POSTs each SMS, signed, to your own service (which texts it), for :class:`~mfa_flow.MfaFlow`.

    ``url`` must be https (http only to 127.0.0.1, ::1 or localhost); ``secret``: at least 32 bytes, shared
    with the receiver. ``client``, ``timeout`` and ``connect_retries`` as for
    :class:`~mfa_flow.transports.twilio.TwilioGateway`; close with :meth:`close` or ``with``.
    """

    def __init__(self, url: str, *, secret: bytes | str, client: httpx.Client | None = None,
                 timeout: float | httpx.Timeout | None = None, connect_retries: int = 2) -> None:
        super().__init__(_Webhook(url, secret), client, timeout, connect_retries)


class AsyncWebhookGateway(AsyncChannel):
    """The asynchronous twin of :class:`WebhookGateway` (an ``httpx.AsyncClient``), for ``AsyncMfaFlow``;
    closed by :meth:`aclose` or ``async with``."""

    def __init__(self, url: str, *, secret: bytes | str, client: httpx.AsyncClient | None = None,
                 timeout: float | httpx.Timeout | None = None, connect_retries: int = 2) -> None:
        super().__init__(_Webhook(url, secret), client, timeout, connect_retries)
