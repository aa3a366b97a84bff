"""The asynchronous orchestrator: the same decisions as ``MfaFlow``, driven with ``await``.

Stores, directories, gateways and ``before_send`` hooks may be synchronous or asynchronous: whatever a
plug point returns is awaited when it is awaitable. The decisions themselves never await anything.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from functools import partial
from typing import Any, TypeVar, cast

from mfa_flow._engine import (
    _PROBE,
    MAX_RERUNS,
    FlowEngine,
    Plan,
    Step,
    _closing_failed,
    _Dir,
    _HookVerdict,
    _internal_failure,
    _NeedHooks,
    _Outcome,
    rerun_delay,
)
from mfa_flow.errors import MfaError, StoreFailure
from mfa_flow.events import Event, SendContext, emit
from mfa_flow.records import Member, Organization
from mfa_flow.results import AuthenticateResult, PrimaryAuthResult, SendResult, SessionCheck
from mfa_flow.transports import DeliveryRejected

__all__ = ["AsyncMfaFlow"]

T = TypeVar("T")


async def _settle(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


class AsyncMfaFlow(FlowEngine):
    """``MfaFlow`` with awaitable methods, over the same engine, transition tables and stores."""

    _asynchronous = True

    async def authenticate_primary(self, organization_id: str, member_id: str, method: str, *,
                                   session_token: str | None = None,
                                   locale: str | None = None) -> PrimaryAuthResult:
        """Record a primary authentication the caller did; issue an IST or a session (spec §6.8)."""
        return await self._call("otp.refused", organization_id, member_id, PrimaryAuthResult, self._plan_primary,
                                (organization_id, member_id, method, session_token, locale))

    async def send_sms_otp(self, organization_id: str, member_id: str, *, mfa_phone_number: str | None = None,
                           locale: str | None = None, intermediate_session_token: str | None = None,
                           session_token: str | None = None, session_jwt: str | None = None) -> SendResult:
        """The send endpoint (spec §5 send, §6.1–§6.7, §6.11)."""
        return await self._call("otp.refused", organization_id, member_id, SendResult, self._plan_send,
                                (organization_id, member_id, mfa_phone_number, locale, intermediate_session_token,
                                 session_token, session_jwt))

    async def authenticate_sms_otp(self, organization_id: str, member_id: str, code: str, *,
                                   intermediate_session_token: str | None = None,
                                   session_token: str | None = None, session_jwt: str | None = None,
                                   session_duration_minutes: int | None = None,
                                   set_mfa_enrollment: str | None = None,
                                   set_default_mfa: bool | None = None) -> AuthenticateResult:
        """The authenticate endpoint (spec §5 authenticate, §6.5, §6.6, §6.9)."""
        return await self._call("otp.failed", organization_id, member_id, AuthenticateResult, self._plan_authenticate,
                                (organization_id, member_id, code, intermediate_session_token, session_token,
                                 session_jwt, session_duration_minutes, set_mfa_enrollment, set_default_mfa))

    async def authenticate_session(self, *, session_token: str | None = None,
                                   session_jwt: str | None = None) -> SessionCheck:
        """Check a session for inactivity; on one that needs a step-up, send the step-up code (§6.10)."""
        return await self._call("otp.refused", "", "", SessionCheck, self._plan_session_check,
                                (session_token, session_jwt))

    async def record_mfa_factor(self, organization_id: str, member_id: str, factor_type: str, *,
                                intermediate_session_token: str | None = None,
                                session_token: str | None = None) -> AuthenticateResult:
        """Report a factor the caller verified itself ("totp", "recovery_code")."""
        return await self._call("otp.refused", organization_id, member_id, AuthenticateResult, self._plan_record_factor,
                                (organization_id, member_id, factor_type, intermediate_session_token, session_token))

    async def delete_mfa_phone_number(self, organization_id: str, member_id: str) -> Member:
        """Unlink the member's phone: the only way to replace a linked number."""
        return await self._call(None, organization_id, member_id, Member, self._plan_delete_phone,
                                (organization_id, member_id))

    async def get_member(self, organization_id: str, member_id: str) -> Member:
        """The merged view: directory record, what the flow wrote, and the lock state."""
        return await self._call(None, organization_id, member_id, Member, self._plan_get_member,
                                (organization_id, member_id))

    async def get_organization(self, organization_id: str) -> Organization:
        return await self._call(None, organization_id, "", Organization, self._plan_get_organization,
                                (organization_id,))

    # --- the asynchronous driver: MfaFlow's, with await where a plug point may be asynchronous -----

    async def _call(self, refusal_event: str | None, org_ref: object, member_ref: object,
                    result: type[T],  # noqa: ARG002 - types the answer
                    plan: Callable[..., Plan], args: tuple[Any, ...]) -> T:
        now = self._clock.now()
        try:
            decide = plan(now, *args)
            verdict: object = None
            for _ in range(MAX_RERUNS):
                try:
                    outcome = await self._transact(partial(decide, _PROBE if self._hooks and verdict is None
                                                           else verdict), now)
                except _NeedHooks as need:
                    verdict = _HookVerdict(need.key, await self._ask_hooks(need.context))
                    continue
                answer: T = await self._conclude(outcome, now)  # typed by ``result``
                return answer
            raise StoreFailure("internal_server_error", "the send kept changing under the before_send hooks")
        except MfaError as exc:
            raise self._refused(refusal_event, now, org_ref, member_ref, exc) from None

    async def _transact(self, step: Callable[[], Step], now: float) -> _Outcome:
        for attempt in range(1 + MAX_RERUNS):  # the first run and at most MAX_RERUNS re-runs
            scope = self.store.transaction()
            committed = False
            try:
                if isinstance(scope, AbstractAsyncContextManager):
                    async with scope as tx:
                        outcome = await self._drive(step(), tx)
                        committed = not outcome.writes or await _settle(tx.commit(outcome.writes, now))
                else:
                    with cast("AbstractContextManager[Any]", scope) as tx:
                        outcome = await self._drive(step(), tx)
                        committed = not outcome.writes or tx.commit(outcome.writes, now)
            except (MfaError, _NeedHooks):
                raise
            except Exception as exc:
                if not committed:
                    raise _internal_failure(exc) from exc
                _closing_failed(exc)  # the change stands: answering an error would misreport it
            if committed:
                return outcome
            if attempt < MAX_RERUNS:
                await asyncio.sleep(rerun_delay(attempt))
        raise StoreFailure("internal_server_error", "the store kept changing under this call; try again")

    async def _drive(self, step: Step, tx: Any) -> _Outcome:
        try:
            request = next(step)
            while True:
                if isinstance(request, _Dir):
                    reply = await _settle(getattr(self.directory, request.method)(*request.args))
                else:
                    reply = await _settle(tx.read(request))
                request = step.send(reply)
        except StopIteration as stop:
            outcome: _Outcome = stop.value
            return outcome

    async def _ask_hooks(self, context: SendContext) -> MfaError | None:
        for hook in self._hooks:
            try:
                await _settle(hook(context))
            except Exception as exc:  # noqa: BLE001 - a broken risk hook refuses the send (fail closed)
                return self._hook_refusal(hook, exc)
        return None

    async def _conclude(self, outcome: _Outcome, now: float) -> Any:
        failure: BaseException | None = None
        undo: list[Event] = []
        delivery = outcome.delivery
        if delivery is not None:
            try:
                await _settle(cast("Awaitable[None] | None", self._provider.deliver(delivery.prepared)))
            except Exception as exc:  # noqa: BLE001 - any failure but DeliveryRejected may have been sent
                failure = exc
            if isinstance(failure, DeliveryRejected):
                try:
                    undo = (await self._transact(partial(self._undo_step, delivery, now), now)).events
                except MfaError:
                    emit(self._sinks, outcome.events)
                    raise
        return self._finish(outcome, failure, undo, now)
