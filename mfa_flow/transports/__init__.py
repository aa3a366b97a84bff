"""Transports: how a code reaches a phone (docs/concepts.md, transports).

``transport=`` takes an **SMS gateway** (``deliver(message)``), which the flow wraps in the built-in
:class:`LocalCodeProvider`, or a **code provider** that generates, delivers and verifies codes itself.
A gateway returns when the message was delivered, raises :class:`DeliveryRejected` when it surely was
not sent, and :class:`DeliveryUnknown` when it may have been.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Awaitable, Mapping
from typing import Any, Protocol, TextIO, runtime_checkable

import attrs

from mfa_flow.crypto import Keyring, generate_code
from mfa_flow.phone import mask_phone

__all__ = [
    "CodeProvider",
    "ConsoleGateway",
    "DeliveryRejected",
    "DeliveryUnknown",
    "LocalCodeProvider",
    "PreparedCode",
    "RemoteCodeProvider",
    "SmsGateway",
    "SmsMessage",
]


class DeliveryRejected(Exception):
    """The gateway surely did not send the message: the new code is discarded, a new link rolled back."""


class DeliveryUnknown(Exception):
    """The message may have been sent: the new code stays live and nothing is retried."""


def _hidden(_: object) -> str:
    return "'******'"


@attrs.frozen(slots=True)
class SmsMessage:
    """One SMS. The code is in clear only here, on its way to the gateway; ``repr`` hides it."""

    to: str = attrs.field(repr=mask_phone)
    code: str = attrs.field(repr=_hidden)
    locale: str | None
    member_id: str
    organization_id: str
    expires_in: float = attrs.field(default=120, kw_only=True)  # seconds: the policy's otp_ttl

    @property
    def body(self) -> str:
        total = round(self.expires_in)
        minutes, seconds = divmod(total, 60)
        lasts = f"{minutes} minute{'s' * (minutes != 1)}" if minutes and not seconds else f"{total} seconds"
        return f"Your verification code is {self.code}. It expires in {lasts}."


@runtime_checkable
class SmsGateway(Protocol):
    def deliver(self, message: SmsMessage) -> Awaitable[None] | None:
        """Send it; raise DeliveryRejected or DeliveryUnknown when that failed. An ``async def deliver``
        (for AsyncMfaFlow) returns an awaitable."""
        ...


@attrs.frozen(slots=True)
class PreparedCode:
    """A code about to be delivered: the store keeps ``digest``; ``message`` goes to the gateway."""

    code_id: str
    digest: bytes = attrs.field(repr=False)
    message: SmsMessage


@runtime_checkable
class CodeProvider(Protocol):
    def prepare(self, *, code_id: str, to: str, locale: str | None, organization_id: str,
                member_id: str) -> PreparedCode:
        """Generate a code (no I/O); the flow commits the digest before delivery."""
        ...

    def deliver(self, prepared: PreparedCode) -> Awaitable[None] | None:
        """Deliver it; raise DeliveryRejected or DeliveryUnknown when that failed (awaitable for AsyncMfaFlow)."""
        ...

    def verify(self, code_id: str, code: str, digest: bytes) -> bool:
        """Whether ``code`` is the one whose digest the store kept (constant time)."""
        ...


@runtime_checkable
class RemoteCodeProvider(Protocol):
    """A service that generates, delivers and verifies codes itself: Stytch (``mfa_flow.transports.stytch``).

    With one, the flow runs in Stytch mode (docs/stytch.md): its local rules first, then these calls. Each takes
    and answers Stytch's JSON (canonical ids, only the keys not None) and raises as the provider documents:
    Stytch's refusals as ``MfaError``, ``DeliveryRejected`` (never reached) or ``DeliveryUnknown`` (may have).
    The asynchronous twin's methods are coroutines.
    """

    def send(self, body: Mapping[str, Any]) -> Any: ...

    def authenticate(self, body: Mapping[str, Any]) -> Any: ...

    def get_organization(self, organization_ref: str) -> Any: ...

    def get_member(self, organization_id: str, member_ref: str) -> Any: ...

    def delete_mfa_phone_number(self, organization_id: str, member_id: str) -> Any: ...

    def revoke_session(self, body: Mapping[str, Any]) -> Any: ...

    def list_sessions(self, query: Mapping[str, Any]) -> Any: ...

    def directory(self, *, cache_seconds: float = 60) -> Any:
        """The directory to read organizations and members from when the flow is given none."""
        ...


class LocalCodeProvider:
    """Codes generated here, kept only as HMACs in the store, delivered through an SMS gateway.

    It keeps no state of its own, so any process sharing the store and the key verifies a code.
    """

    __slots__ = ("expires_in", "gateway", "keyring")

    def __init__(self, gateway: SmsGateway, keyring: Keyring, *, expires_in: float = 120) -> None:
        self.gateway = gateway
        self.keyring = keyring
        self.expires_in = expires_in  # what the text says of the code's lifetime (the policy's otp_ttl)

    def __repr__(self) -> str:
        return f"LocalCodeProvider({self.gateway!r})"

    def prepare(self, *, code_id: str, to: str, locale: str | None, organization_id: str,
                member_id: str) -> PreparedCode:
        code = generate_code()
        return PreparedCode(
            code_id, self.keyring.sign(code_id, code),
            SmsMessage(to, code, locale, member_id, organization_id, expires_in=self.expires_in))

    def deliver(self, prepared: PreparedCode) -> Awaitable[None] | None:
        """The gateway's answer, returned: an asynchronous gateway's awaitable is awaited by AsyncMfaFlow."""
        return self.gateway.deliver(prepared.message)

    def verify(self, code_id: str, code: str, digest: bytes) -> bool:
        return self.keyring.verify(code_id, code, digest)


class ConsoleGateway:
    """Development only: writes each SMS to stderr under a banner. Never use it in production."""

    BANNER = "mfa_flow ConsoleGateway: DEVELOPMENT ONLY, no SMS is sent; do not use in production"

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return "ConsoleGateway()"

    def deliver(self, message: SmsMessage) -> None:
        stream = self._stream if self._stream is not None else sys.stderr
        with self._lock:
            stream.write(f"[{self.BANNER}]\n  SMS to {message.to}: {message.body}\n")
            stream.flush()
