"""How every public call runs, for both twins: as a generator of effects around one decision.

A call plans (argument shape), then runs its decision in a store transaction and commits every change in
one compare-and-set, re-running from the read when that is lost (docs/concepts.md, the store contract); a
decision that reaches the ``before_send`` hooks without their verdict is run again once the hooks answered,
outside any transaction.
After the commit the code provider delivers; a surely-failed delivery is undone in a second transaction.
Then the events go out and the result is built. ``MfaFlow`` and ``AsyncMfaFlow`` only perform the effects.
"""

from __future__ import annotations

import inspect
import logging
import secrets
from collections.abc import Callable, Generator, Iterable, Sequence
from functools import partial
from typing import Any, Final, TypeVar

from mfa_flow import core
from mfa_flow.arguments import text
from mfa_flow.clock import Clock, SystemClock
from mfa_flow.crypto import Keyring
from mfa_flow.directory import Directory, MemoryDirectory
from mfa_flow.engine import lifecycle, send
from mfa_flow.engine.context import PROBE, Context, EndSessions, HookVerdict, NeedHooks, Outcome, Plan, Step
from mfa_flow.engine.effects import BEGIN, END, Commit, Effect, End, Failed, Sleep, invoke
from mfa_flow.engine.reading import refresh, unresolved
from mfa_flow.errors import (
    ConfigurationError,
    DeliveryFailed,
    MfaError,
    ProviderError,
    RequestError,
    StoreFailure,
    UnexpectedResponse,
)
from mfa_flow.events import Event, EventSink, SendContext, emit
from mfa_flow.policy import Policy
from mfa_flow.stores import AsyncStore, MemoryStore, Store
from mfa_flow.transports import (
    CodeProvider,
    ConsoleGateway,
    DeliveryRejected,
    DeliveryUnknown,
    LocalCodeProvider,
    RemoteCodeProvider,
    SmsGateway,
)

__all__ = ["MAX_RERUNS", "Call", "FlowEngine", "rerun_delay"]

logger = logging.getLogger("mfa_flow")

MAX_RERUNS: Final = 5

Hook = Callable[[SendContext], None]
T = TypeVar("T")
#: A public call as its runner sees it: effects out, their answers in, the result returned.
Call = Generator[Effect, Any, T]


class FlowEngine:
    """What MfaFlow and AsyncMfaFlow share: configuration, and each call as a generator of effects.

    With no arguments it runs on embedded defaults: an in-memory directory and store, codes generated
    here and printed by the console gateway (development only), the system clock, a random key.
    """

    _asynchronous = False  # AsyncMfaFlow awaits plug points; MfaFlow refuses asynchronous ones

    def __init__(
        self,
        *,
        policy: Policy | None = None,
        directory: Directory | None = None,
        store: Store | AsyncStore | None = None,
        transport: SmsGateway | CodeProvider | RemoteCodeProvider | None = None,
        clock: Clock | None = None,
        events: Iterable[EventSink] = (),
        secret_key: bytes | Sequence[bytes] | None = None,
        before_send: Iterable[Hook] = (),
    ) -> None:
        if policy is not None and not isinstance(policy, Policy):
            raise ConfigurationError("policy: must be a mfa_flow.Policy")
        self.policy = policy if policy is not None else Policy()
        self.store: Store | AsyncStore = store if store is not None else MemoryStore()
        if transport is None:
            logger.warning("mfa_flow: no transport given; codes go to the ConsoleGateway (stderr), "
                           "which is for development only")
            transport = ConsoleGateway()
        self.transport = transport
        # Stytch mode (docs/stytch.md): Stytch makes, texts and checks the codes, so no key of ours signs one.
        remote = transport if isinstance(transport, RemoteCodeProvider) else None
        if secret_key is None and remote is None and getattr(self.store, "durable", True):
            raise ConfigurationError("secret_key: required with a durable store (codes must verify after a "
                                     "restart and across processes)")
        keyring = Keyring(secret_key)
        provider: CodeProvider | None = None
        if remote is not None:
            if self.policy.link_phone_on == "verify":
                raise ConfigurationError("policy: link_phone_on='verify' cannot hold in Stytch mode: Stytch links a "
                                         "number when it sends to it; use link_phone_on='send'")
        elif isinstance(transport, CodeProvider):
            for step in ("prepare", "verify"):  # called inside the decision, which never awaits
                if inspect.iscoroutinefunction(getattr(transport, step)):
                    raise ConfigurationError(f"transport: a code provider's {step} must be synchronous")
            provider = transport
        elif isinstance(transport, SmsGateway):
            provider = LocalCodeProvider(transport, keyring, expires_in=self.policy.otp_ttl)
        else:
            raise ConfigurationError("transport: must be an SMS gateway (deliver), a code provider or a remote one "
                                     "(StytchProvider)")
        self.directory: Directory = directory if directory is not None else (
            MemoryDirectory() if remote is None else remote.directory())
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._sinks = tuple(events)
        self._hooks = tuple(before_send)
        for name, items in (("events", self._sinks), ("before_send", self._hooks)):
            if not all(callable(f) for f in items):
                raise ConfigurationError(f"{name}: every item must be callable")
        if not self._asynchronous:
            plugs = [("transport", getattr(transport, "send" if remote else "deliver", None)),
                     *(("before_send", h) for h in self._hooks),
                     ("directory", getattr(self.directory, "get_member", None))]
            for name, fn in plugs:
                if inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn):
                    raise ConfigurationError(f"{name}: asynchronous; use AsyncMfaFlow")
            if getattr(self.store, "asynchronous", False):
                raise ConfigurationError("store: asynchronous; use AsyncMfaFlow")
        self._ctx = Context(self.policy, self.directory, provider, remote, self._sinks)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(store={self.store!r}, transport={self.transport!r})"

    def _call(self, refusal_event: str | None, org_ref: object, member_ref: object,
              result: type[T],  # noqa: ARG002 - types the answer
              plan: Callable[..., Plan], args: tuple[Any, ...]) -> Call[T]:
        """The whole call: plan, decide in a transaction (asking the hooks when needed), then conclude."""
        now = self._clock.now()
        try:
            try:
                decide = plan(self._ctx, now, *args)
            except MfaError as malformed:
                unresolved(malformed)
                raise
            verdict: object = None
            for _ in range(MAX_RERUNS):
                try:
                    outcome = yield from self._transact(partial(decide, PROBE if self._hooks and verdict is None
                                                                else verdict), now)
                except NeedHooks as need:
                    verdict = HookVerdict(need.key, (yield from self._ask_hooks(need.context)))
                    continue
                except EndSessions as inactive:
                    ended = yield from self._transact(partial(lifecycle.end_all, self._ctx, inactive.member_id,
                                                              now), now)
                    emit(self._sinks, ended.events)
                    raise inactive.refusal from None
                answer: T = yield from self._conclude(outcome, now)  # typed by ``result``
                return answer
            raise StoreFailure("internal_server_error", "the send kept changing under the before_send hooks")
        except MfaError as exc:
            raise self._refused(refusal_event, now, org_ref, member_ref, exc) from None

    def _transact(self, step: Callable[[], Step], now: float) -> Generator[Effect, Any, Outcome]:
        """Run a decision in a store transaction and commit its writes; re-run a lost compare-and-set.

        The transaction is always closed before anything leaves: events and hooks never run inside it."""
        for attempt in range(1 + MAX_RERUNS):  # the first run and at most MAX_RERUNS re-runs
            committed = False
            failure: BaseException | None = None
            try:
                yield BEGIN
            except Failed as opening:  # the store could not open a transaction (busy, down, misconfigured)
                raise _store_failure(opening.error) from None
            try:
                outcome = yield from step()
                committed = not outcome.writes or (yield Commit(outcome.writes, now))
            except Failed as io:  # the store (or the directory) failed under the decision
                failure = io.error
            except BaseException as exc:  # noqa: BLE001 - a refusal, the hooks' turn, an interrupt: all close it
                failure = exc
            try:
                yield END if failure is None else End(failure)
            except Failed as closing:
                if failure is None and committed:
                    _closing_failed(closing.error)  # the change stands: answering an error would misreport it
                else:
                    failure = closing.error
            if failure is not None:
                try:
                    if isinstance(failure, NeedHooks | EndSessions) or not isinstance(failure, Exception):
                        raise failure
                    raise _store_failure(failure)
                finally:
                    failure = None  # its traceback holds this frame: no cycle left for the garbage collector
            if committed:
                return outcome
            if attempt < MAX_RERUNS:
                yield Sleep(rerun_delay(attempt))
        raise StoreFailure("internal_server_error", "the store kept changing under this call; try again")

    def _ask_hooks(self, context: SendContext) -> Generator[Effect, Any, MfaError | None]:
        for hook in self._hooks:
            try:
                yield invoke((hook, (context,)))
            except Failed as refused:  # a hook refuses by raising; a broken one refuses too (fail closed)
                return self._hook_refusal(hook, refused.error)
        return None

    def _conclude(self, outcome: Outcome, now: float) -> Generator[Effect, Any, Any]:
        """After the commit: deliver (or, in Stytch mode, call Stytch), undo what a send that surely did not
        happen wrote, settle what Stytch answered in a second transaction; then emit and answer."""
        failure: Exception | None = None
        undo: list[Event] = []
        answer: Any = None
        delivery = outcome.delivery
        ctx = self._ctx
        if delivery is not None:
            try:
                if delivery.request is None:
                    yield invoke((ctx.local_provider().deliver, (delivery.prepared,)))
                else:
                    answer = yield invoke((ctx.remote_provider().send, (delivery.request,)))
            except Failed as undelivered:  # any failure but DeliveryRejected or a refusal may have been sent
                failure = undelivered.error
            if _surely_not_sent(failure):
                try:
                    undo = (yield from self._transact(partial(send.undo_rejected, ctx, delivery, now),
                                                      now)).events
                except MfaError:
                    emit(self._sinks, outcome.events)
                    raise
            if answer is not None:
                yield from refresh(ctx, answer)
        remote = outcome.remote
        if remote is not None:
            try:
                answer = yield invoke((remote.call, remote.args))
            except Failed as refused:
                failure = refused.error
            if remote.settle is None:
                if failure is not None:
                    emit(self._sinks, outcome.events)
                    raise failure if isinstance(failure, MfaError) else ProviderError(
                        "internal_server_error", "Stytch gave no answer") from None
                return self._finish(outcome, None, undo, now, answer)
            events = outcome.events
            outcome = yield from self._transact(partial(remote.settle, answer, failure), now)
            outcome.events[:0] = events
            failure = answer = None
        return self._finish(outcome, failure, undo, now, answer)

    def _refused(self, refusal_event: str | None, now: float, org_ref: object, member_ref: object,
                 exc: MfaError) -> MfaError:
        """A refusal emits its event; uniform_refusals hides the precise reason from the caller."""
        if refusal_event is not None and not exc._reported:  # noqa: SLF001 - the flow's own mark
            refs = exc._refs or (_shown(org_ref), _shown(member_ref))  # noqa: SLF001 - the flow's own mark
            emit(self._sinks, [Event(refusal_event, now, *refs, "", exc.error_type, {})])
        if self.policy.uniform_refusals and exc.error_type in core.UNIFORM_REFUSALS:
            return RequestError("bad_request", "the request was refused")
        return exc

    @staticmethod
    def _hook_refusal(hook: object, exc: BaseException) -> MfaError:
        if isinstance(exc, MfaError):
            return exc
        logger.error("before_send hook %r raised %s; refusing the send", hook, type(exc).__name__)
        return RequestError("bad_request", "a before_send hook failed; the send was refused")

    def _finish(self, outcome: Outcome, failure: Exception | None, undo_events: list[Event], now: float,
                answer: Any) -> Any:
        """After the delivery (if any): the delivery's events, emit them all, then raise or answer."""
        error = outcome.error
        events = outcome.events
        delivery = outcome.delivery
        ctx = self._ctx
        if delivery is not None:
            sub = delivery.subject
            org_id, mid, to = sub.org.organization_id, sub.base.member_id, delivery.to
            purpose, automatic = delivery.purpose, delivery.automatic
            if failure is None:
                ctx.note(events, "otp.sent", now, org_id, mid, to, purpose=purpose, automatic=automatic,
                         locale=delivery.locale, region=delivery.region)
            elif isinstance(failure, MfaError) and not isinstance(failure, UnexpectedResponse):
                events.extend(undo_events)  # Stytch refused the send: nothing went out
                ctx.note(events, "otp.refused", now, org_id, mid, to, failure.error_type, purpose=purpose,
                         automatic=automatic)
                if not automatic:
                    error = failure
            else:
                rejected = isinstance(failure, DeliveryRejected)
                if not rejected and not isinstance(failure, DeliveryUnknown | UnexpectedResponse):
                    logger.error("mfa_flow: the gateway raised %s; treating it as DeliveryUnknown (the code "
                                 "stays live, nothing is retried)", type(failure).__name__)
                events.extend(undo_events)
                ctx.note(events, "delivery.failed", now, org_id, mid, to, "rejected" if rejected else "unknown",
                         purpose=purpose, automatic=automatic)
                if automatic:
                    ctx.note(events, "otp.refused", now, org_id, mid, to, "downstream_carrier_error",
                             purpose=purpose, automatic=True)
                elif isinstance(failure, UnexpectedResponse):
                    error = failure  # Stytch's 200 could not be read: said as such, the SMS may have gone
                else:
                    error = DeliveryFailed("downstream_carrier_error", (
                        "the SMS gateway " if delivery.request is None else "Stytch ") + (
                        "did not send the message" if rejected else "may not have sent the message"))
        if events:  # built only when someone listens
            emit(self._sinks, events)
        if error is not None:
            error._reported = True  # noqa: SLF001 - its event went out with the outcome
            raise error
        assert outcome.finish is not None
        return outcome.finish(delivery is not None and failure is None, answer)


def _surely_not_sent(failure: Exception | None) -> bool:
    """A send that surely did not happen: the gateway said so, or Stytch refused it (any refusal but an
    answer that could not be read, after which the SMS may have gone)."""
    return isinstance(failure, DeliveryRejected) or (
        isinstance(failure, MfaError) and not isinstance(failure, UnexpectedResponse))


def _shown(ref: object) -> str:
    """A caller's reference as a refusal's event may carry it: a plain, encodable copy, else nothing (the
    refusal said why; the event never runs the caller's code or carries what cannot be logged)."""
    try:
        return text(ref, "ref")
    except MfaError:
        return ""


def rerun_delay(attempt: int) -> float:
    """Seconds to wait before re-running a call that lost its compare-and-set: jittered and doubling
    (up to 10, 20, 40, 80, 160 ms), so callers racing on one member on an optimistic store (Redis) spread
    out instead of colliding again; 16 threads on one member then finish within the five re-runs."""
    return secrets.randbelow(1001) / 1000 * 0.01 * 2.0**attempt  # `random` is kept out of the package


def _store_failure(exc: Exception) -> MfaError:
    """A refusal raised by a decision or a store (an evicting Redis refused by its configuration) stands;
    anything else fails closed."""
    return exc if isinstance(exc, MfaError) else _internal_failure(exc)


def _internal_failure(exc: BaseException) -> StoreFailure:
    """Anything but an MfaError raised by the store or inside a decision fails closed."""
    logger.error("mfa_flow: internal failure (%s) in the store or a decision; failing closed", type(exc).__name__,
                 exc_info=exc)
    return StoreFailure("internal_server_error", "the store failed; nothing was changed")


def _closing_failed(exc: BaseException) -> None:
    logger.warning("mfa_flow: closing a store transaction failed (%s) after its commit; the change stands",
                   type(exc).__name__)
