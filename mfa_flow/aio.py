"""The asynchronous orchestrator: the same calls as ``MfaFlow``, with every effect awaited when it may be.

Stores, directories, gateways and ``before_send`` hooks may be synchronous or asynchronous: whatever a
plug point returns is awaited when it is awaitable. The decisions themselves never await anything.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any, TypeVar

from mfa_flow.engine import (
    Begin,
    Call,
    Commit,
    End,
    Failed,
    FlowEngine,
    Invoke,
    Read,
    Sleep,
    authenticate,
    factor,
    lifecycle,
    member,
    primary,
    send,
    session_check,
)
from mfa_flow.flow import _exc_info
from mfa_flow.records import Member, Organization, PrimaryMethod
from mfa_flow.results import AuthenticateResult, MemberSession, PrimaryAuthResult, SendResult, SessionCheck

__all__ = ["AsyncMfaFlow"]

T = TypeVar("T")


async def _settle(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


class AsyncMfaFlow(FlowEngine):
    """``MfaFlow`` with awaitable methods, over the same engine, transition tables and stores."""

    _asynchronous = True

    async def authenticate_primary(self, organization_id: str, member_id: str, method: PrimaryMethod, *,
                                   session_token: str | None = None,
                                   locale: str | None = None) -> PrimaryAuthResult:
        """Record a primary authentication the caller did; issue an IST or a session (docs/rules.md)."""
        return await self._run(self._call("otp.refused", organization_id, member_id, PrimaryAuthResult,
                                          primary.plan, (organization_id, member_id, method, session_token, locale)))

    async def record_primary_auth(self, response: Mapping[str, Any]) -> PrimaryAuthResult:
        """Stytch mode: record Stytch's primary-auth answer (see ``MfaFlow.record_primary_auth``)."""
        return await self._run(self._call(None, "", "", PrimaryAuthResult, primary.record, (response,)))

    async def send_sms_otp(self, organization_id: str, member_id: str, *, mfa_phone_number: str | None = None,
                           locale: str | None = None, intermediate_session_token: str | None = None,
                           session_token: str | None = None, session_jwt: str | None = None) -> SendResult:
        """The send endpoint (docs/rules.md: order of checks, phones to send limits, delivery outcomes)."""
        return await self._run(self._call("otp.refused", organization_id, member_id, SendResult, send.plan,
                                          (organization_id, member_id, mfa_phone_number, locale,
                                           intermediate_session_token, session_token, session_jwt)))

    async def authenticate_sms_otp(self, organization_id: str, member_id: str, code: str, *,
                                   intermediate_session_token: str | None = None,
                                   session_token: str | None = None, session_jwt: str | None = None,
                                   session_duration_minutes: int | None = None,
                                   set_mfa_enrollment: str | None = None,
                                   set_default_mfa: bool | None = None) -> AuthenticateResult:
        """The authenticate endpoint (docs/rules.md: order of checks, codes, lock, authenticate success)."""
        return await self._run(self._call("otp.failed", organization_id, member_id, AuthenticateResult,
                                          authenticate.plan,
                                          (organization_id, member_id, code, intermediate_session_token,
                                           session_token, session_jwt, session_duration_minutes,
                                           set_mfa_enrollment, set_default_mfa)))

    async def authenticate_session(self, *, session_token: str | None = None,
                                   session_jwt: str | None = None) -> SessionCheck:
        """Check a session for inactivity; on one that needs a step-up, send the step-up code
        (docs/rules.md, sessions)."""
        return await self._run(self._call("otp.refused", "", "", SessionCheck, session_check.plan,
                                          (session_token, session_jwt)))

    async def record_mfa_factor(self, organization_id: str, member_id: str, factor_type: str, *,
                                intermediate_session_token: str | None = None,
                                session_token: str | None = None) -> AuthenticateResult:
        """Report a factor the caller verified itself ("totp", "recovery_code")."""
        return await self._run(self._call("otp.refused", organization_id, member_id, AuthenticateResult,
                                          factor.plan, (organization_id, member_id, factor_type,
                                                        intermediate_session_token, session_token)))

    async def delete_mfa_phone_number(self, organization_id: str, member_id: str) -> Member:
        """Unlink the member's phone: the only way to replace a linked number."""
        return await self._run(self._call(None, organization_id, member_id, Member, member.delete_phone,
                                          (organization_id, member_id)))

    async def get_member(self, organization_id: str, member_id: str) -> Member:
        """The merged view: directory record, what the flow wrote, and the lock state."""
        return await self._run(self._call(None, organization_id, member_id, Member, member.get_member,
                                          (organization_id, member_id)))

    async def revoke_session(self, *, member_session_id: str | None = None, session_token: str | None = None,
                       session_jwt: str | None = None, member_id: str | None = None) -> None:
        """End a session (Stytch's revoke): exactly one selector; ``member_id`` ends every session of the
        member. A revoked session answers ``session_not_found`` everywhere at once, and a step-up code bound
        to it dies with it. In Stytch mode the local record goes first, then Stytch is asked."""
        return await self._run(self._call(None, "", "", type(None), lifecycle.revoke,
                           (member_session_id, session_token, session_jwt, member_id)))

    async def list_member_sessions(self, organization_id: str, member_id: str) -> list[MemberSession]:
        """The member's live sessions in the organization, newest first (in Stytch mode, as Stytch lists them)."""
        return await self._run(self._call(None, organization_id, member_id, list, lifecycle.list_sessions,
                                    (organization_id, member_id)))

    async def unlock_member(self, organization_id: str, member_id: str) -> Member:
        """The administrator's unlock: ends the member's lock and resets its failure counter (a code killed
        by the lock stays dead). Returns the merged member."""
        return await self._run(self._call(None, organization_id, member_id, Member, lifecycle.unlock,
                                    (organization_id, member_id)))

    async def get_organization(self, organization_id: str) -> Organization:
        return await self._run(self._call(None, organization_id, "", Organization, member.get_organization,
                                          (organization_id,)))

    async def _run(self, call: Call[T]) -> T:
        """``MfaFlow._run`` with await: a store's scope may be synchronous or asynchronous."""
        reply: Any = None
        effect: Any = None
        error: BaseException | None = None
        scope: Any = None
        tx: Any = None
        is_async = False
        try:
            while True:
                try:
                    effect = call.send(reply) if error is None else call.throw(error)
                except StopIteration as stop:
                    answer: T = stop.value
                    return answer
                reply = error = None
                try:
                    if type(effect) is Read:
                        reply = await _settle(tx.read(effect))
                    elif type(effect) is Invoke:
                        reply = await _settle(effect.fn(*effect.args))
                    elif type(effect) is Commit:
                        reply = await _settle(tx.commit(effect.writes, effect.now))
                    elif type(effect) is Begin:
                        scope = self.store.transaction()
                        is_async = isinstance(scope, AbstractAsyncContextManager)
                        tx = await scope.__aenter__() if is_async else scope.__enter__()
                    elif type(effect) is End:
                        closing, scope, tx = scope, None, None
                        if is_async:
                            await closing.__aexit__(*_exc_info(effect.failure))
                        else:
                            closing.__exit__(*_exc_info(effect.failure))
                    elif type(effect) is Sleep:
                        await asyncio.sleep(effect.seconds)
                except Exception as exc:  # noqa: BLE001 - thrown back into the call, which decides
                    error = Failed(exc)
                except BaseException as exc:  # noqa: BLE001 - an interrupt: the call closes its transaction
                    error = exc
        finally:
            error = effect = None  # a failure's traceback holds this frame: leave no cycle for the collector
