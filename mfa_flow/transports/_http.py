"""What the HTTP gateways share (docs/sending-sms.md): the client, its timeouts, the retry rule and the verdict.

A gateway module supplies a :class:`Core` (its settings, the request it builds, how it reads an answer); the
twins :class:`SyncChannel` and :class:`AsyncChannel` send that request and turn the verdict into the gateway
contract: return (delivered), ``DeliveryRejected`` (surely not sent) or ``DeliveryUnknown`` (may have been sent).

Retry rule: a request is sent again only when it surely did not reach the provider — no connection could be
made (``ConnectError``, ``ConnectTimeout``) or none became free in the pool (``PoolTimeout``) — at most
``connect_retries`` times, after a jittered exponential pause; when every attempt failed so, nothing was sent
(``DeliveryRejected``). Once the request may have left (a read or write timeout, a dropped connection, a
protocol error, any answer), it is never sent again: a second request could text the member twice.

Nothing here logs or raises the message body, the code or a credential: logs and errors carry the masked
number, the HTTP status, the provider's error code and exception type names only. Errors are raised outside
the ``except`` block that saw the httpx exception, so no chained exception (whose request holds the body and
the credentials) travels with them.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Iterator
from types import TracebackType
from typing import Literal, Protocol, Self

import attrs
import httpx

from mfa_flow.errors import ConfigurationError
from mfa_flow.phone import mask_phone
from mfa_flow.transports import DeliveryRejected, DeliveryUnknown, SmsMessage

logger = logging.getLogger("mfa_flow.transports")

#: connect 3 s; read, write and pool 10 s — a login waits for its SMS, never for ever.
DEFAULT_TIMEOUT = httpx.Timeout(10.0, connect=3.0)
MAX_CONNECT_RETRIES = 5
BACKOFF_BASE = 0.25  # seconds before the first retry (at most; at least half of it)
BACKOFF_CAP = 2.0  # no pause is longer

#: Failures where the request surely never reached the provider: the only ones retried.
CONNECT_ERRORS: tuple[type[httpx.HTTPError], ...] = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)

_jitter = secrets.SystemRandom()  # jitter needs no secrecy, but the package never imports random

# Seams for the tests, which record the pauses instead of sleeping through them.
sleep: Callable[[float], None] = time.sleep
async_sleep: Callable[[float], Awaitable[None]] = asyncio.sleep


@attrs.frozen(slots=True)
class Verdict:
    """What one answer (or failure) means; ``detail`` is safe to log: status, provider code, type names."""

    outcome: Literal["sent", "rejected", "unknown"]
    detail: str


class Core(Protocol):
    """One provider's part: its name, its request, its auth and how it reads an answer."""

    name: str

    def request(self, client: httpx.Client | httpx.AsyncClient, message: SmsMessage,
                timeout: httpx.Timeout) -> httpx.Request: ...

    def auth(self) -> httpx.Auth | None:
        """The provider's credentials; ``None`` leaves the client's own auth (if any) in place."""
        ...

    def classify(self, response: httpx.Response, message: SmsMessage) -> Verdict: ...

    def describe(self) -> str:
        """The constructor's arguments for ``repr``, credentials hidden."""
        ...


def check_timeout(timeout: object) -> httpx.Timeout:
    if timeout is None:
        return DEFAULT_TIMEOUT
    if isinstance(timeout, (int, float)) and not isinstance(timeout, bool):
        if timeout <= 0:
            raise ConfigurationError(f"timeout: must be positive seconds, got {timeout}")
        return httpx.Timeout(float(timeout))
    if isinstance(timeout, httpx.Timeout):
        if None in (timeout.connect, timeout.read, timeout.write, timeout.pool):
            raise ConfigurationError("timeout: every phase needs a bound (an unbounded wait hangs the login)")
        return timeout
    raise ConfigurationError(f"timeout: must be None, seconds or an httpx.Timeout, got {type(timeout).__name__}")


def check_retries(connect_retries: object) -> int:
    if (not isinstance(connect_retries, int) or isinstance(connect_retries, bool)
            or not 0 <= connect_retries <= MAX_CONNECT_RETRIES):
        raise ConfigurationError(f"connect_retries: must be an integer from 0 to {MAX_CONNECT_RETRIES}")
    return connect_retries


def check_text(field: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigurationError(f"{field}: must be a non-empty string")
    return value


def pauses(connect_retries: int) -> Iterator[float]:
    """The pause before each attempt: none before the first, then equal jitter over a doubling step.

    Retry ``n`` (from 0) waits between ``d/2`` and ``d``, ``d = min(BACKOFF_CAP, BACKOFF_BASE * 2**n)``, so
    gateways that failed together do not reconnect together.
    """
    yield 0.0
    for n in range(connect_retries):
        step = min(BACKOFF_CAP, BACKOFF_BASE * 2**n)
        yield step / 2 + _jitter.uniform(0, step / 2)


def auth_for(core: Core, client: httpx.Client | httpx.AsyncClient) -> httpx.Auth | None:
    auth = core.auth()
    return client.auth if auth is None else auth


def failure_verdict(exc: httpx.HTTPError) -> Verdict | None:
    """``None`` when the request surely did not reach the provider (retry allowed); else it may have."""
    if isinstance(exc, CONNECT_ERRORS):
        return None
    return Verdict("unknown", f"{type(exc).__name__} once the request may have reached it")


def exhausted(attempts: int, last: str) -> Verdict:
    return Verdict("rejected", f"could not connect ({last}) in {attempts} attempt{'s' * (attempts > 1)}")


def conclude(name: str, message: SmsMessage, verdict: Verdict) -> None:
    """Log the verdict (masked number only) and raise what the gateway contract says."""
    masked = mask_phone(message.to)
    if verdict.outcome == "sent":
        logger.debug("%s: sent to %s (%s)", name, masked, verdict.detail)
        return
    if verdict.outcome == "rejected":
        text = f"{name} did not send the SMS to {masked}: {verdict.detail}"
        logger.warning("%s", text)
        raise DeliveryRejected(text)
    text = f"{name} may have sent the SMS to {masked}: {verdict.detail}; not retried"
    logger.warning("%s", text)
    raise DeliveryUnknown(text)


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine: the one place plain http may go (a local emulator or receiver)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def note_retry(name: str, message: SmsMessage, failure: str, attempt: int, retries: int, pause: float) -> None:
    logger.info("%s: could not connect (%s) to send to %s; retry %d of %d in %.2f s",
                name, failure, mask_phone(message.to), attempt, retries, pause)


class OwnedClient:
    """An ``httpx.Client``: the caller's, never closed here, or one made here and closed by ``close``."""

    _client: httpx.Client

    def _take_client(self, client: object, timeout: httpx.Timeout | float | None, twin: str) -> None:
        if client is not None and not isinstance(client, httpx.Client):
            raise ConfigurationError(f"client: must be an httpx.Client (an httpx.AsyncClient goes to {twin}), "
                                     f"got {type(client).__name__}")
        self._owns_client = client is None
        self._client = httpx.Client(timeout=timeout) if client is None else client

    def close(self) -> None:
        """Close the client made here; a client passed in is the caller's to close."""
        if self._owns_client:
            self._client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class AsyncOwnedClient:
    """The asynchronous twin of :class:`OwnedClient`, over an ``httpx.AsyncClient``."""

    _client: httpx.AsyncClient

    def _take_client(self, client: object, timeout: httpx.Timeout | float | None, twin: str) -> None:
        if client is not None and not isinstance(client, httpx.AsyncClient):
            raise ConfigurationError(f"client: must be an httpx.AsyncClient (an httpx.Client goes to {twin}), "
                                     f"got {type(client).__name__}")
        self._owns_client = client is None
        self._client = httpx.AsyncClient(timeout=timeout) if client is None else client

    async def aclose(self) -> None:
        """Close the client made here; a client passed in is the caller's to close."""
        if self._owns_client:
            await self._client.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()


class _Channel:
    """Settings both twins check the same way; ``repr`` shows the core's, credentials hidden."""

    def __init__(self, core: Core, timeout: object, connect_retries: object) -> None:
        self._core = core
        self._timeout = check_timeout(timeout)
        self._retries = check_retries(connect_retries)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._core.describe()})"


class SyncChannel(_Channel, OwnedClient):
    """An SMS gateway over an ``httpx.Client``: the caller's (never closed here) or its own."""

    def __init__(self, core: Core, client: httpx.Client | None, timeout: object, connect_retries: object) -> None:
        super().__init__(core, timeout, connect_retries)
        self._take_client(client, self._timeout, "the Async twin")

    def deliver(self, message: SmsMessage) -> None:
        """Send ``message``; raise ``DeliveryRejected`` or ``DeliveryUnknown`` when that failed (see module)."""
        request = self._core.request(self._client, message, self._timeout)
        auth = auth_for(self._core, self._client)
        verdict = None
        failure = ""
        for attempt, pause in enumerate(pauses(self._retries)):
            if pause:
                note_retry(self._core.name, message, failure, attempt, self._retries, pause)
                sleep(pause)
            try:
                response = self._client.send(request, auth=auth, follow_redirects=False)
            except httpx.HTTPError as exc:
                verdict, failure = failure_verdict(exc), type(exc).__name__
            else:
                verdict = self._core.classify(response, message)
            if verdict is not None:
                break
        conclude(self._core.name, message, verdict or exhausted(self._retries + 1, failure))


class AsyncChannel(_Channel, AsyncOwnedClient):
    """The asynchronous twin of :class:`SyncChannel`, over an ``httpx.AsyncClient``; for ``AsyncMfaFlow``."""

    def __init__(self, core: Core, client: httpx.AsyncClient | None, timeout: object,
                 connect_retries: object) -> None:
        super().__init__(core, timeout, connect_retries)
        self._take_client(client, self._timeout, "the synchronous twin")

    async def deliver(self, message: SmsMessage) -> None:
        """Send ``message``; raise ``DeliveryRejected`` or ``DeliveryUnknown`` when that failed (see module)."""
        request = self._core.request(self._client, message, self._timeout)
        auth = auth_for(self._core, self._client)
        verdict = None
        failure = ""
        for attempt, pause in enumerate(pauses(self._retries)):
            if pause:
                note_retry(self._core.name, message, failure, attempt, self._retries, pause)
                await async_sleep(pause)
            try:
                response = await self._client.send(request, auth=auth, follow_redirects=False)
            except httpx.HTTPError as exc:
                verdict, failure = failure_verdict(exc), type(exc).__name__
            else:
                verdict = self._core.classify(response, message)
            if verdict is not None:
                break
        conclude(self._core.name, message, verdict or exhausted(self._retries + 1, failure))
