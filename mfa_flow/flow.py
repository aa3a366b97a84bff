"""The synchronous orchestrator: load → decide → commit → deliver → emit, over the shared engine."""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

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
from mfa_flow.stores import Store, Transaction
from mfa_flow.transports import DeliveryRejected

__all__ = ["MfaFlow"]

T = TypeVar("T")


class MfaFlow(FlowEngine):
    """SMS OTP multi-factor authentication with the rules of Stytch's B2B endpoint. Thread-safe.

    With no arguments it runs on embedded defaults: an in-memory directory and store, codes generated
    here and printed by the console gateway (development only), the system clock, a random key.
    Every call reads what it needs, decides, and commits every change in one compare-and-set.
    """

    store: Store  # an asynchronous store is refused at construction

    def authenticate_primary(self, organization_id: str, member_id: str, method: str, *,
                             session_token: str | None = None, locale: str | None = None) -> PrimaryAuthResult:
        """Record a primary authentication the caller did; issue an IST or a session (spec §6.8)."""
        return self._call("otp.refused", organization_id, member_id, PrimaryAuthResult, self._plan_primary,
                          (organization_id, member_id, method, session_token, locale))

    def send_sms_otp(self, organization_id: str, member_id: str, *, mfa_phone_number: str | None = None,
                     locale: str | None = None, intermediate_session_token: str | None = None,
                     session_token: str | None = None, session_jwt: str | None = None) -> SendResult:
        """The send endpoint (spec §5 send, §6.1–§6.7, §6.11)."""
        return self._call("otp.refused", organization_id, member_id, SendResult, self._plan_send,
                          (organization_id, member_id, mfa_phone_number, locale, intermediate_session_token,
                           session_token, session_jwt))

    def authenticate_sms_otp(self, organization_id: str, member_id: str, code: str, *,
                             intermediate_session_token: str | None = None, session_token: str | None = None,
                             session_jwt: str | None = None, session_duration_minutes: int | None = None,
                             set_mfa_enrollment: str | None = None,
                             set_default_mfa: bool | None = None) -> AuthenticateResult:
        """The authenticate endpoint (spec §5 authenticate, §6.5, §6.6, §6.9)."""
        return self._call("otp.failed", organization_id, member_id, AuthenticateResult, self._plan_authenticate,
                          (organization_id, member_id, code, intermediate_session_token, session_token, session_jwt,
                           session_duration_minutes, set_mfa_enrollment, set_default_mfa))

    def authenticate_session(self, *, session_token: str | None = None,
                             session_jwt: str | None = None) -> SessionCheck:
        """Check a session for inactivity; on one that needs a step-up, send the step-up code (§6.10)."""
        return self._call("otp.refused", "", "", SessionCheck, self._plan_session_check, (session_token, session_jwt))

    def record_mfa_factor(self, organization_id: str, member_id: str, factor_type: str, *,
                          intermediate_session_token: str | None = None,
                          session_token: str | None = None) -> AuthenticateResult:
        """Report a factor the caller verified itself ("totp", "recovery_code")."""
        return self._call("otp.refused", organization_id, member_id, AuthenticateResult, self._plan_record_factor,
                          (organization_id, member_id, factor_type, intermediate_session_token, session_token))

    def delete_mfa_phone_number(self, organization_id: str, member_id: str) -> Member:
        """Unlink the member's phone: the only way to replace a linked number."""
        return self._call(None, organization_id, member_id, Member, self._plan_delete_phone,
                          (organization_id, member_id))

    def get_member(self, organization_id: str, member_id: str) -> Member:
        """The merged view: directory record, what the flow wrote, and the lock state."""
        return self._call(None, organization_id, member_id, Member, self._plan_get_member, (organization_id, member_id))

    def get_organization(self, organization_id: str) -> Organization:
        return self._call(None, organization_id, "", Organization, self._plan_get_organization, (organization_id,))

    # --- the synchronous driver --------------------------------------------------------------------

    def _call(self, refusal_event: str | None, org_ref: object, member_ref: object, result: type[T],  # noqa: ARG002 - types the answer
              plan: Callable[..., Plan], args: tuple[Any, ...]) -> T:
        now = self._clock.now()
        try:
            decide = plan(now, *args)
            verdict: object = None
            for _ in range(MAX_RERUNS):
                try:
                    outcome = self._transact(partial(decide, _PROBE if self._hooks and verdict is None
                                                     else verdict), now)
                except _NeedHooks as need:
                    verdict = _HookVerdict(need.key, self._ask_hooks(need.context))
                    continue
                answer: T = self._conclude(outcome, now)  # typed by ``result`` (cast() is a call per login)
                return answer
            raise StoreFailure("internal_server_error", "the send kept changing under the before_send hooks")
        except MfaError as exc:
            raise self._refused(refusal_event, now, org_ref, member_ref, exc) from None

    def _transact(self, step: Callable[[], Step], now: float) -> _Outcome:
        """Run a decision in a store transaction and commit its writes; re-run a lost compare-and-set."""
        for attempt in range(1 + MAX_RERUNS):  # the first run and at most MAX_RERUNS re-runs
            committed = False
            try:
                with self.store.transaction() as tx:
                    outcome = self._drive(step(), tx)
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
                time.sleep(rerun_delay(attempt))
        raise StoreFailure("internal_server_error", "the store kept changing under this call; try again")

    def _drive(self, step: Step, tx: Transaction) -> _Outcome:
        try:
            request = next(step)
            while True:
                if isinstance(request, _Dir):
                    reply: Any = getattr(self.directory, request.method)(*request.args)
                else:
                    reply = tx.read(request)
                request = step.send(reply)
        except StopIteration as stop:
            outcome: _Outcome = stop.value
            return outcome

    def _ask_hooks(self, context: SendContext) -> MfaError | None:
        for hook in self._hooks:
            try:
                hook(context)
            except Exception as exc:  # noqa: BLE001 - a broken risk hook refuses the send (fail closed)
                return self._hook_refusal(hook, exc)
        return None

    def _conclude(self, outcome: _Outcome, now: float) -> Any:
        """After the commit: deliver, undo a rejected delivery, then emit and answer."""
        failure: BaseException | None = None
        undo: list[Event] = []
        delivery = outcome.delivery
        if delivery is not None:
            try:
                self._provider.deliver(delivery.prepared)
            except Exception as exc:  # noqa: BLE001 - any failure but DeliveryRejected may have been sent
                failure = exc
            if isinstance(failure, DeliveryRejected):
                try:
                    undo = self._transact(partial(self._undo_step, delivery, now), now).events
                except MfaError:
                    emit(self._sinks, outcome.events)
                    raise
        return self._finish(outcome, failure, undo, now)
