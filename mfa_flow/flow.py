"""The synchronous orchestrator: it performs the effects of each call (store, plug points, waiting).

Every rule lives in ``mfa_flow.engine``; each method here names the module that holds its endpoint's rules.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
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
from mfa_flow.records import Member, Organization, PrimaryMethod
from mfa_flow.results import AuthenticateResult, MemberSession, PrimaryAuthResult, SendResult, SessionCheck
from mfa_flow.stores import Store

__all__ = ["MfaFlow"]

T = TypeVar("T")


class MfaFlow(FlowEngine):
    """SMS OTP multi-factor authentication with the rules of Stytch's B2B endpoint. Thread-safe.

    With no arguments it runs on embedded defaults: an in-memory directory and store, codes generated
    here and printed by the console gateway (development only), the system clock, a random key.
    Every call reads what it needs, decides, and commits every change in one compare-and-set.
    """

    store: Store  # an asynchronous store is refused at construction

    def authenticate_primary(self, organization_id: str, member_id: str, method: PrimaryMethod, *,
                             session_token: str | None = None, locale: str | None = None) -> PrimaryAuthResult:
        """Record a primary authentication the caller did; issue an IST or a session (docs/rules.md)."""
        return self._run(self._call("otp.refused", organization_id, member_id, PrimaryAuthResult, primary.plan,
                                    (organization_id, member_id, method, session_token, locale)))

    def record_primary_auth(self, response: Mapping[str, Any]) -> PrimaryAuthResult:
        """Stytch mode: record Stytch's primary-auth answer — the SDK's ``.model_dump()`` or the raw JSON — which
        Stytch answered after authenticating the member and, when MFA is owed, texting the first code.

        It refreshes the member view, keeps the IST's digest and the session's record (for the inactivity
        rule), and counts Stytch's automatic send against the local limits (an exceeded limit is reported in
        the ``otp.sent`` event, not refused: the SMS has gone)."""
        return self._run(self._call(None, "", "", PrimaryAuthResult, primary.record, (response,)))

    def send_sms_otp(self, organization_id: str, member_id: str, *, mfa_phone_number: str | None = None,
                     locale: str | None = None, intermediate_session_token: str | None = None,
                     session_token: str | None = None, session_jwt: str | None = None) -> SendResult:
        """The send endpoint (docs/rules.md: order of checks, phones to send limits, delivery outcomes)."""
        return self._run(self._call("otp.refused", organization_id, member_id, SendResult, send.plan,
                                    (organization_id, member_id, mfa_phone_number, locale,
                                     intermediate_session_token, session_token, session_jwt)))

    def authenticate_sms_otp(self, organization_id: str, member_id: str, code: str, *,
                             intermediate_session_token: str | None = None, session_token: str | None = None,
                             session_jwt: str | None = None, session_duration_minutes: int | None = None,
                             set_mfa_enrollment: str | None = None,
                             set_default_mfa: bool | None = None) -> AuthenticateResult:
        """The authenticate endpoint (docs/rules.md: order of checks, codes, lock, authenticate success)."""
        return self._run(self._call("otp.failed", organization_id, member_id, AuthenticateResult, authenticate.plan,
                                    (organization_id, member_id, code, intermediate_session_token, session_token,
                                     session_jwt, session_duration_minutes, set_mfa_enrollment, set_default_mfa)))

    def authenticate_session(self, *, session_token: str | None = None,
                             session_jwt: str | None = None) -> SessionCheck:
        """Check a session for inactivity; on one that needs a step-up, send the step-up code
        (docs/rules.md, sessions)."""
        return self._run(self._call("otp.refused", "", "", SessionCheck, session_check.plan,
                                    (session_token, session_jwt)))

    def record_mfa_factor(self, organization_id: str, member_id: str, factor_type: str, *,
                          intermediate_session_token: str | None = None,
                          session_token: str | None = None) -> AuthenticateResult:
        """Report a factor the caller verified itself ("totp", "recovery_code")."""
        return self._run(self._call("otp.refused", organization_id, member_id, AuthenticateResult, factor.plan,
                                    (organization_id, member_id, factor_type, intermediate_session_token,
                                     session_token)))

    def delete_mfa_phone_number(self, organization_id: str, member_id: str) -> Member:
        """Unlink the member's phone: the only way to replace a linked number."""
        return self._run(self._call(None, organization_id, member_id, Member, member.delete_phone,
                                    (organization_id, member_id)))

    def get_member(self, organization_id: str, member_id: str) -> Member:
        """The merged view: directory record, what the flow wrote, and the lock state."""
        return self._run(self._call(None, organization_id, member_id, Member, member.get_member,
                                    (organization_id, member_id)))

    def revoke_session(self, *, member_session_id: str | None = None, session_token: str | None = None,
                       session_jwt: str | None = None, member_id: str | None = None) -> None:
        """End a session (Stytch's revoke): exactly one selector; ``member_id`` ends every session of the
        member. A revoked session answers ``session_not_found`` everywhere at once, and a step-up code bound
        to it dies with it. In Stytch mode the local record goes first, then Stytch is asked."""
        self._run(self._call(None, "", "", type(None), lifecycle.revoke,
                           (member_session_id, session_token, session_jwt, member_id)))

    def list_member_sessions(self, organization_id: str, member_id: str) -> list[MemberSession]:
        """The member's live sessions in the organization, newest first (in Stytch mode, as Stytch lists them)."""
        return self._run(self._call(None, organization_id, member_id, list, lifecycle.list_sessions,
                                    (organization_id, member_id)))

    def unlock_member(self, organization_id: str, member_id: str) -> Member:
        """The administrator's unlock: ends the member's lock and resets its failure counter (a code killed
        by the lock stays dead). Returns the merged member."""
        return self._run(self._call(None, organization_id, member_id, Member, lifecycle.unlock,
                                    (organization_id, member_id)))

    def get_organization(self, organization_id: str) -> Organization:
        return self._run(self._call(None, organization_id, "", Organization, member.get_organization,
                                    (organization_id,)))

    def _run(self, call: Call[T]) -> T:
        """Perform the call's effects in order; a failing one is thrown back into the call."""
        reply: Any = None
        effect: Any = None
        error: BaseException | None = None
        scope: Any = None
        tx: Any = None
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
                        reply = tx.read(effect)
                    elif type(effect) is Invoke:
                        reply = effect.fn(*effect.args)
                    elif type(effect) is Commit:
                        reply = tx.commit(effect.writes, effect.now)
                    elif type(effect) is Begin:
                        scope = self.store.transaction()
                        tx = scope.__enter__()
                    elif type(effect) is End:
                        closing, scope, tx = scope, None, None
                        closing.__exit__(*_exc_info(effect.failure))
                    elif type(effect) is Sleep:
                        time.sleep(effect.seconds)
                except Exception as exc:  # noqa: BLE001 - thrown back into the call, which decides
                    error = Failed(exc)
                except BaseException as exc:  # noqa: BLE001 - an interrupt: the call closes its transaction
                    error = exc
        finally:
            error = effect = None  # a failure's traceback holds this frame: leave no cycle for the collector


def _exc_info(failure: BaseException | None) -> tuple[Any, ...]:
    """What a context manager's ``__exit__`` takes for ``failure`` (None: a normal exit)."""
    return (None, None, None) if failure is None else (type(failure), failure, failure.__traceback__)
