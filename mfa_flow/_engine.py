"""The engine both orchestrators share: argument checks, and every decision as a sans-I/O generator.

Every public call reads the records it needs in a store transaction, runs the checks of spec §5 in order
on them, and commits every changed record in one compare-and-set. A lost compare-and-set re-runs the
call from the read, never once a delivery was attempted. Events are emitted after the commit.
"""

from __future__ import annotations

import inspect
import logging
import secrets
from collections.abc import Callable, Generator, Iterable, Sequence
from functools import partial
from typing import Any, Final, NamedTuple

import attrs

from mfa_flow import core, machine
from mfa_flow.clock import Clock, SystemClock
from mfa_flow.crypto import Keyring, is_code_shaped, new_id, new_token, token_digest
from mfa_flow.directory import Directory, MemoryDirectory
from mfa_flow.errors import (
    CodeRejected,
    ConfigurationError,
    DeliveryFailed,
    MfaError,
    NotFoundError,
    PolicyRefusal,
    RateLimited,
    RequestError,
    StoreFailure,
    TokenError,
)
from mfa_flow.events import Event, EventSink, SendContext, emit
from mfa_flow.phone import Phone, check_destination, mask_phone, parse_phone
from mfa_flow.policy import SESSION_MINUTES_RANGE, Policy
from mfa_flow.records import Member, Organization
from mfa_flow.results import AuthenticateResult, PrimaryAuthResult, SendResult, SessionCheck
from mfa_flow.state import (
    CodePhase,
    CodeState,
    Factor,
    GuardPhase,
    GuardState,
    LoginState,
    MemberState,
    PhoneLink,
    SendWindow,
    SessionPhase,
    SessionState,
    clone,
    keys,
    replace,
)
from mfa_flow.stores import AsyncStore, MemoryStore, Store, Write
from mfa_flow.stores._base import Entry
from mfa_flow.transports import (
    CodeProvider,
    ConsoleGateway,
    DeliveryRejected,
    DeliveryUnknown,
    LocalCodeProvider,
    PreparedCode,
    SmsGateway,
)

__all__ = ["MAX_RERUNS", "FlowEngine", "Plan", "Step", "rerun_delay"]

logger = logging.getLogger("mfa_flow")

MAX_RERUNS: Final = 5
_PROBE: Final = object()  # first pass when before_send hooks exist: decide up to the hooks, commit nothing

Hook = Callable[[SendContext], None]
class _Read(list[str]):
    """A decision asks the store for these keys (one round trip). A list, so building one runs no Python
    code (a NamedTuple's ``__new__`` is a Python function, and decisions read on every call)."""


class _Dir(NamedTuple):
    """A decision asks the directory (a method name and its arguments)."""

    method: str
    args: tuple[Any, ...]


#: Builds a _Dir in C, for the two every call makes (a NamedTuple's ``__new__`` is a Python function).
_new_dir: Callable[[tuple[str, tuple[Any, ...]]], _Dir] = partial(tuple.__new__, _Dir)


_Request = _Read | _Dir


_DELETE: Final = Write(None)  # one shared deletion: a NamedTuple costs a Python call to build


@attrs.define(slots=True)
class _HookVerdict:
    """The before_send hooks' answer for one destination and purpose."""

    key: tuple[str, str, str]
    error: MfaError | None


@attrs.define(slots=True)
class _NeedHooks(Exception):  # control flow: never escapes the flow
    context: SendContext
    key: tuple[str, str, str]


@attrs.define(slots=True)
class _Delivery:
    """An admitted send, committed and about to be delivered, with what a rejection must undo."""

    prepared: PreparedCode
    subject: _Subject
    purpose: str
    automatic: bool
    undo_overlay: MemberState | None  # the overlay to restore if the link made by this send is rolled back
    link_key: str | None
    member: Member  # the merged view as this send leaves it (with the link it made)


@attrs.define(slots=True)
class _Outcome:
    writes: dict[str, Write] = attrs.field(factory=dict)
    events: list[Event] = attrs.field(factory=list)
    error: MfaError | None = None
    delivery: _Delivery | None = None
    #: Builds the result, told whether a code went out in this call. It must not refer to its outcome: that
    #: cycle would leave every call's records for the garbage collector to find.
    finish: Callable[[bool], Any] | None = None


#: A decision: a generator that yields store reads and directory calls and returns its outcome.
Step = Generator[_Request, Any, _Outcome]
#: A call planned and checked for argument shape: a decision with every argument bound but the hooks' verdict
#: (a ``partial``: a closure would allocate a cell per argument on every call).
Plan = Callable[[object], Step]


@attrs.define(slots=True)
class _Subject:
    """A member as one transaction read it."""

    org: Organization
    base: Member
    overlay: MemberState
    guard: GuardState
    code: CodeState
    member: Member
    k_member: str
    k_guard: str
    k_code: str


def _text(value: object, field: str) -> str:
    if not isinstance(value, str):
        raise _not_text(field)
    return value


def _not_text(field: str) -> RequestError:
    return RequestError("bad_request", f"{field}: must be a string")


@attrs.define(slots=True)  # not frozen: a frozen attrs class sets each field through object.__setattr__
class _Token:
    """A token the caller passed: its kind, its value, and the store key of its SHA-256."""

    kind: str  # "ist" | "session" | "jwt"
    value: str = attrs.field(repr=False)
    digest: str
    key: str

    @classmethod
    def of(cls, kind: str, value: str) -> _Token:
        if kind == "jwt":
            return cls(kind, value, "", "")
        digest = token_digest(value)
        return cls(kind, value, digest, keys.login(digest) if kind == "ist" else keys.session(digest))


def _one_token(ist: object, session_token: object, session_jwt: object, *, required: bool) -> _Token | None:
    given = (ist is not None) + (session_token is not None) + (session_jwt is not None)
    if given > 1:
        raise RequestError("too_many_session_arguments", "pass at most one of intermediate_session_token, "
                           "session_token, session_jwt")
    if ist is not None:
        return _Token.of("ist", _text(ist, "intermediate_session_token"))
    if session_token is not None:
        return _Token.of("session", _text(session_token, "session_token"))
    if session_jwt is not None:
        return _Token.of("jwt", _text(session_jwt, "session_jwt"))
    if required:
        raise RequestError("no_session_arguments", "pass one of intermediate_session_token, session_token, "
                           "session_jwt")
    return None


def _event(name: str, now: float, org_id: str, member_id: str, phone: str = "", reason: str | None = None,
           **data: Any) -> Event:
    return Event(name, now, org_id, member_id, mask_phone(phone), reason, data)


class FlowEngine:
    """What MfaFlow and AsyncMfaFlow share: configuration, argument checks and the decisions.

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
        transport: SmsGateway | CodeProvider | None = None,
        clock: Clock | None = None,
        events: Iterable[EventSink] = (),
        secret_key: bytes | Sequence[bytes] | None = None,
        before_send: Iterable[Hook] = (),
    ) -> None:
        if policy is not None and not isinstance(policy, Policy):
            raise ConfigurationError("policy: must be a mfa_flow.Policy")
        self.policy = policy if policy is not None else Policy()
        self.directory: Directory = directory if directory is not None else MemoryDirectory()
        self.store: Store | AsyncStore = store if store is not None else MemoryStore()
        if secret_key is None and getattr(self.store, "durable", True):
            raise ConfigurationError("secret_key: required with a durable store (codes must verify after a "
                                     "restart and across processes)")
        keyring = Keyring(secret_key)
        if transport is None:
            logger.warning("mfa_flow: no transport given; codes go to the ConsoleGateway (stderr), "
                           "which is for development only")
            transport = ConsoleGateway()
        self.transport = transport
        if isinstance(transport, CodeProvider):
            for step in ("prepare", "verify"):  # called inside the decision, which never awaits
                if inspect.iscoroutinefunction(getattr(transport, step)):
                    raise ConfigurationError(f"transport: a code provider's {step} must be synchronous")
            self._provider: CodeProvider = transport
        elif callable(getattr(transport, "deliver", None)):
            self._provider = LocalCodeProvider(transport, keyring)
        else:
            raise ConfigurationError("transport: must be an SMS gateway (deliver) or a code provider")
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._sinks = tuple(events)
        self._hooks = tuple(before_send)
        for name, items in (("events", self._sinks), ("before_send", self._hooks)):
            if not all(callable(f) for f in items):
                raise ConfigurationError(f"{name}: every item must be callable")
        if not self._asynchronous:
            plugs = [("transport", getattr(transport, "deliver", None)), *(("before_send", h) for h in self._hooks),
                     ("directory", getattr(self.directory, "get_member", None))]
            for name, fn in plugs:
                if inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn):
                    raise ConfigurationError(f"{name}: asynchronous; use AsyncMfaFlow")
            if getattr(self.store, "asynchronous", False):
                raise ConfigurationError("store: asynchronous; use AsyncMfaFlow")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(store={self.store!r}, transport={self.transport!r})"

    # --- planning: step 1 of every call (argument shape), then the decision to run ------------------

    def _plan_primary(self, now: float, organization_id: object, member_id: object, method: object,
                      session_token: object, locale: object) -> Plan:
        name = method if isinstance(method, str) else ""
        method_error = None if name in core.PRIMARY_FACTORS else RequestError(
            "bad_request", "method: unknown primary authentication method "
            + (repr(name) if isinstance(method, str) else f"(of type {type(method).__name__}, not a string)"))
        loc = None if locale is None else core.check_locale(locale)
        ist = new_token()  # minted (and hashed) once per call: re-runs and the hooks' verdict see one binding
        return partial(self._decide_primary, now, organization_id, member_id, name, method_error, session_token,
                       loc, ist, token_digest(ist))

    def _plan_send(self, now: float, organization_id: object, member_id: object, mfa_phone_number: object,
                   locale: object, ist: object, session_token: object, session_jwt: object) -> Plan:
        token = _one_token(ist, session_token, session_jwt, required=False)
        given = None if mfa_phone_number is None else parse_phone(mfa_phone_number)
        loc = core.check_locale(locale)
        return partial(self._decide_send, now, organization_id, member_id, token, given, loc)

    def _plan_authenticate(self, now: float, organization_id: object, member_id: object, code: object,
                           ist: object, session_token: object, session_jwt: object, session_duration_minutes: object,
                           set_mfa_enrollment: object, set_default_mfa: object) -> Plan:
        token = _one_token(ist, session_token, session_jwt, required=True)
        assert token is not None
        minutes = None if session_duration_minutes is None else self._session_minutes(session_duration_minutes)
        if set_mfa_enrollment is not None and (not isinstance(set_mfa_enrollment, str)
                                               or set_mfa_enrollment not in ("enroll", "unenroll")):
            raise RequestError("bad_request", "set_mfa_enrollment: must be 'enroll' or 'unenroll'")
        if set_default_mfa is not None and not isinstance(set_default_mfa, bool):
            raise RequestError("bad_request", "set_default_mfa: must be True or False")
        return partial(self._decide_authenticate, now, organization_id, member_id, token, code, minutes,
                       set_mfa_enrollment, set_default_mfa)

    def _plan_session_check(self, now: float, session_token: object, session_jwt: object) -> Plan:
        token = _one_token(None, session_token, session_jwt, required=True)
        assert token is not None
        if token.kind == "jwt":
            raise TokenError("unable_to_parse_session_jwt", "session_jwt: no JWTs are issued in local mode")
        return partial(self._decide_session_check, now, token)

    def _plan_record_factor(self, now: float, organization_id: object, member_id: object, factor_type: object,
                            ist: object, session_token: object) -> Plan:
        if not isinstance(factor_type, str) or factor_type not in core.RECORDED_FACTORS:
            raise RequestError("bad_request", f"factor_type: must be one of {sorted(core.RECORDED_FACTORS)}")
        token = _one_token(ist, session_token, None, required=True)
        assert token is not None
        return partial(self._decide_record_factor, now, organization_id, member_id, token, factor_type)

    def _plan_delete_phone(self, now: float, organization_id: object, member_id: object) -> Plan:
        return partial(self._decide_delete_phone, now, organization_id, member_id)

    def _plan_get_member(self, now: float, organization_id: object, member_id: object) -> Plan:
        return partial(self._decide_get_member, now, organization_id, member_id)

    def _plan_get_organization(self, _now: float, organization_id: object) -> Plan:
        return partial(self._decide_get_organization, organization_id)

    def _decide_get_member(self, now: float, org_ref: object, member_ref: object, _verdict: object) -> Step:
        org, base = yield from self._resolve(org_ref, member_ref, require_active=False)
        sub, _ = yield from self._subject(org, base, now)
        member = sub.member
        return _Outcome(finish=lambda _: member)

    def _decide_get_organization(self, org_ref: object, _verdict: object) -> Step:
        org = yield _Dir("get_organization", (_text(org_ref, "organization_id"),))
        if org is None:
            raise NotFoundError("organization_not_found", "organization_id: no such organization")
        return _Outcome(finish=lambda _: org)

    # --- what both orchestrators do around the decisions ---------------------------------------------

    def _refused(self, refusal_event: str | None, now: float, org_ref: object, member_ref: object,
                 exc: MfaError) -> MfaError:
        """A refusal emits its event; uniform_refusals hides the precise reason from the caller."""
        if refusal_event is not None and not exc._reported:  # noqa: SLF001 - the flow's own mark
            emit(self._sinks, [Event(refusal_event, now, org_ref if isinstance(org_ref, str) else "",
                                     member_ref if isinstance(member_ref, str) else "", "", exc.error_type, {})])
        if self.policy.uniform_refusals and exc.error_type in core.UNIFORM_REFUSALS:
            return RequestError("bad_request", "the request was refused")
        return exc

    def _resolve(self, org_ref: object, member_ref: object, *,
                 require_active: bool = True) -> Generator[_Request, Any, tuple[Organization, Member]]:
        if not isinstance(org_ref, str):  # checked inline: every call resolves its subject
            raise _not_text("organization_id")
        if not isinstance(member_ref, str):
            raise _not_text("member_id")
        org = yield _new_dir(("get_organization", (org_ref,)))
        if org is None:
            raise NotFoundError("organization_not_found", "organization_id: no such organization")
        member = yield _new_dir(("get_member", (org.organization_id, member_ref)))
        if member is None:
            raise NotFoundError("member_not_found", "member_id: no such member in the organization")
        if require_active and member.status != "active":
            raise PolicyRefusal("action_available_only_for_active_members",
                                f"member: status is {member.status!r}, not 'active'")
        return org, member

    @staticmethod
    def _session_minutes(minutes: object) -> int:
        low, high = SESSION_MINUTES_RANGE
        if isinstance(minutes, bool) or not isinstance(minutes, int) or not low <= minutes <= high:
            raise RequestError("invalid_session_duration_minutes",
                               f"session_duration_minutes: must be an integer within {low}..{high}")
        return minutes

    @staticmethod
    def _hook_refusal(hook: object, exc: BaseException) -> MfaError:
        if isinstance(exc, MfaError):
            return exc
        logger.error("before_send hook %r raised %s; refusing the send", hook, type(exc).__name__)
        return RequestError("bad_request", "a before_send hook failed; the send was refused")

    def _finish(self, outcome: _Outcome, failure: BaseException | None, undo_events: list[Event],
                now: float) -> Any:
        """After the delivery (if any): the delivery's events, emit them all, then raise or answer."""
        error = outcome.error
        events = outcome.events
        delivery = outcome.delivery
        if delivery is not None:
            sub, msg = delivery.subject, delivery.prepared.message
            org_id, mid = sub.org.organization_id, sub.base.member_id
            if failure is None:
                self._note(events, "otp.sent", now, org_id, mid, msg.to, purpose=delivery.purpose,
                           automatic=delivery.automatic, locale=msg.locale)
            else:
                rejected = isinstance(failure, DeliveryRejected)
                if not rejected and not isinstance(failure, DeliveryUnknown):
                    logger.error("mfa_flow: the gateway raised %s; treating it as DeliveryUnknown (the code "
                                 "stays live, nothing is retried)", type(failure).__name__)
                events.extend(undo_events)
                self._note(events, "delivery.failed", now, org_id, mid, msg.to,
                           "rejected" if rejected else "unknown", purpose=delivery.purpose,
                           automatic=delivery.automatic)
                if delivery.automatic:
                    self._note(events, "otp.refused", now, org_id, mid, msg.to, "downstream_carrier_error",
                               purpose=delivery.purpose, automatic=True)
                else:
                    error = DeliveryFailed("downstream_carrier_error", "the SMS gateway " + (
                        "refused the message" if rejected else "may not have delivered the message"))
        if events:  # built only when someone listens
            emit(self._sinks, events)
        if error is not None:
            error._reported = True  # noqa: SLF001 - its event went out with the outcome
            raise error
        assert outcome.finish is not None
        return outcome.finish(delivery is not None and failure is None)

    def _undo_step(self, delivery: _Delivery, now: float, _verdict: object = None) -> Step:
        """Remove the code and the link a rejected send wrote, if they are still the ones it wrote."""
        sub = delivery.subject
        wanted = [sub.k_code, sub.k_member] + ([delivery.link_key] if delivery.link_key else [])
        got = yield _Read(wanted)
        out = _Outcome()
        code = got.get(sub.k_code)
        if code is not None and isinstance(code.value, CodeState) and code.value.code_id == delivery.prepared.code_id:
            out.writes[sub.k_code] = _DELETE
        overlay = got.get(sub.k_member)
        if delivery.undo_overlay is not None and overlay is not None and isinstance(overlay.value, MemberState):
            current = overlay.value
            ours = delivery.prepared.message.to
            if (current.phone == ours and not current.phone_verified) or current.pending_phone == ours:
                out.writes[sub.k_member] = Write(delivery.undo_overlay)
                if delivery.link_key and delivery.link_key in got:
                    out.writes[delivery.link_key] = _DELETE
                after = core.merged_member(sub.base, delivery.undo_overlay, sub.guard)
                if after != core.merged_member(sub.base, current, sub.guard):
                    self._note(out, "member.updated", now, sub.org.organization_id,
                               sub.base.member_id, after.mfa_phone_number, member=after)
        return out

    # --- reading a subject --------------------------------------------------------------------------

    def _subject(self, org: Organization, base: Member, now: float,
                 token: _Token | None = None) -> Generator[_Request, Any, tuple[_Subject, dict[str, Entry]]]:
        """The member's records, read with the passed token's (one round trip), settled at ``now``."""
        oid, mid = org.organization_id, base.member_id
        k_member, k_guard, k_code = keys.subject(oid, mid)
        got = yield _Read([k_member, k_guard, k_code, token.key] if token is not None and token.key
                          else [k_member, k_guard, k_code])
        # Absent records (the common case) take their defaults without a lookup; lazy expiry only
        # concerns a locked guard and a sent code.
        overlay = _value(got, k_member, MemberState) if k_member in got else core.EMPTY_OVERLAY
        guard = _value(got, k_guard, GuardState) if k_guard in got else core.OPEN_GUARD
        if guard.state is GuardPhase.LOCKED:
            guard = core.settle_guard(guard, now)
        code = _value(got, k_code, CodeState) if k_code in got else core.NO_CODE
        if code.state is CodePhase.SENT:
            code = core.settle_code(code, now)
        member = core.merged_member(base, overlay, guard)
        return _Subject(org, base, overlay, guard, code, member, k_member, k_guard, k_code), got

    def _token_record(self, got: dict[str, Entry], sub: _Subject, token: _Token | None,
                      now: float) -> LoginState | SessionState | None:
        """Step 3: the passed token's record, valid and the member's own."""
        if token is None:
            return None
        if token.kind == "jwt":
            raise TokenError("unable_to_parse_session_jwt", "session_jwt: no JWTs are issued in local mode")
        oid, mid = sub.org.organization_id, sub.base.member_id
        if token.kind == "ist":
            return core.check_ist(_value(got, token.key, LoginState, None), oid, mid, now)
        return core.check_session(_value(got, token.key, SessionState, None), oid, mid, now, sub.member,
                                  self.policy)

    def _phone_holder(self, sub: _Subject, e164: str) -> Generator[_Request, Any, tuple[str | None, str]]:
        """Who else in the organization has ``e164`` linked: (member id or None, link-index key)."""
        oid, mid = sub.org.organization_id, sub.base.member_id
        k_link = keys.link(oid, e164)
        other = yield _Dir("find_member_by_phone", (oid, e164))
        extra = [keys.member(oid, other.member_id)] if other is not None and other.member_id != mid else []
        got = yield _Read([k_link, *extra])
        link = _value(got, k_link, PhoneLink, None)
        if link is not None and link.member_id != mid:
            return link.member_id, k_link
        if extra and other is not None:
            overlay = _value(got, extra[0], MemberState, core.EMPTY_OVERLAY)
            if overlay.phone is None or overlay.phone == e164:  # that member still holds the directory's number
                return other.member_id, k_link
        return None, k_link

    # --- send ------------------------------------------------------------------------------------

    def _decide_send(self, now: float, org_ref: object, member_ref: object, token: _Token | None,
                     given: Phone | None, locale: str | None, verdict: object) -> Step:
        org, base = yield from self._resolve(org_ref, member_ref)
        sub, got = yield from self._subject(org, base, now, token)
        record = self._token_record(got, sub, token, now)                      # 3
        kind, digest = (token.kind, token.digest) if token is not None else ("", "")
        core.check_lock(sub.guard)                                           # 4
        member = sub.member
        core.check_methods(org, member)                                           # 5
        linked = member.mfa_phone_number                                          # 6
        link_key = None
        if linked:
            if given is None:
                dest: Phone | str = linked  # parsed with the other destination checks (step 8)
            elif linked == given.e164:  # the merged view holds the linked number in E.164
                dest = given
            else:
                raise PolicyRefusal("duplicate_member_phone_number_for_member",
                                    "mfa_phone_number: the member already has a different phone number")
            linking = False
        elif given is None:
            raise PolicyRefusal("member_phone_number_not_found",
                                "mfa_phone_number: the member has no phone number and none was given")
        else:
            holder, link_key = (yield from self._phone_holder(sub, given.e164))
            if holder is not None:
                raise PolicyRefusal("duplicate_member_phone_number",
                                    "mfa_phone_number: linked to another member of the organization")
            dest, linking = given, True
        if member.has_active_factor:                                              # 7
            if record is None:
                raise PolicyRefusal("no_associated_session_passed_in",
                                    "a token of the member is required: the member has an active MFA factor")
            if linking and (
                (isinstance(record, SessionState) and record.state is not SessionPhase.ACTIVE)
                or not core.carries_active_factor(record.factors, member)
            ):
                raise PolicyRefusal("insufficient_factors",
                                    "linking a phone needs a token carrying the member's existing MFA factor")
        purpose = "link" if linking else ("step_up" if kind == "session" else "login")
        out = _Outcome()
        out.delivery = delivery = yield from self._admit(verdict, out, sub, now, dest, linking=linking,
                                                         link_key=link_key, bound_to=digest, purpose=purpose,
                                                         locale=locale, automatic=False)
        after = delivery.member
        out.finish = lambda _: SendResult(member_id=base.member_id, member=after, organization=org)
        return out

    def _admit(self, verdict: object, out: _Outcome, sub: _Subject, now: float, dest: Phone | str, *,
               linking: bool, link_key: str | None, bound_to: str, purpose: str, locale: str | None,
               automatic: bool) -> Generator[_Request, Any, _Delivery]:
        """Steps 8–10 and admission: destination, hooks, limits, then the writes of an admitted send.

        ``dest`` is a number the caller gave (parsed with the arguments) or the member's linked number,
        parsed here: a stored number that does not parse is a step-8 refusal, after the token rules."""
        policy = self.policy
        oid, mid = sub.org.organization_id, sub.base.member_id
        if isinstance(dest, str):
            dest = parse_phone(dest, "member.mfa_phone_number")
        region = check_destination(dest, allowed_regions=policy.allowed_regions,     # 8
                                   unsupported_regions=policy.unsupported_regions,
                                   blocked_number_types=policy.blocked_type_values,
                                   test_numbers=policy.test_numbers)
        if verdict is not None:                                                      # 9
            key = (oid, mid, f"{dest.e164}|{purpose}|{bound_to}")
            if verdict is _PROBE or (isinstance(verdict, _HookVerdict) and verdict.key != key):
                context = SendContext(organization=sub.org, member=sub.member, phone_number=dest.e164,
                                      region=region, locale=locale, purpose=purpose, automatic=automatic, at=now)
                raise _NeedHooks(context, key)
            assert isinstance(verdict, _HookVerdict)
            if verdict.error is not None:
                raise verdict.error
        limits = [("member", keys.window_member(oid, mid), policy.send_limit_per_member),   # 10
                  ("phone", keys.window_phone(dest.e164), policy.send_limit_per_phone)]
        if policy.send_limit_per_region is not None and region:
            limits.append(("region", keys.window_region(region), policy.send_limit_per_region))
        if policy.send_limit_global is not None:
            limits.append(("global", keys.WINDOW_GLOBAL, policy.send_limit_global))
        got = yield _Read([k for _, k, _ in limits])
        windows = [(name, _value(got, k, SendWindow) if k in got else _NO_WINDOW, limit) for name, k, limit in limits]
        core.check_limits(policy, now, windows, windows[0][1])
        for (_, k, (_, seconds)), (_, window, _) in zip(limits, windows, strict=True):   # admit
            keep = max(seconds, policy.resend_cooldown)
            out.writes[k] = Write(core.counted(window, now, keep), now + keep)
        code_id = new_id(8)
        prepared = self._provider.prepare(code_id=code_id, to=dest.e164, locale=locale, organization_id=oid,
                                          member_id=mid)
        code = clone(sub.code)
        machine.fire(machine.CODE, "issue", code, code_id=code_id, digest=prepared.digest, bound_to=bound_to,
                     purpose=purpose, phone=dest.e164, sent_at=now, expires_at=now + policy.otp_ttl)
        out.writes[sub.k_code] = Write(code, code.expires_at)
        undo = None
        member = sub.member
        if linking:
            undo = sub.overlay
            overlay = clone(sub.overlay)
            if policy.link_phone_on == "send":
                overlay.phone, overlay.phone_verified = dest.e164, False
                assert link_key is not None
                out.writes[link_key] = Write(PhoneLink(mid))
                self._note(out, "phone.linked", now, oid, mid, dest.e164, verified=False)
            else:
                overlay.pending_phone = dest.e164
                link_key = None
            out.writes[sub.k_member] = Write(overlay)
            member = self._member_changed(out, sub, overlay, sub.guard, now)
        return _Delivery(prepared, sub, purpose, automatic, undo, link_key, member)

    def _send_automatically(self, verdict: object, out: _Outcome, sub: _Subject, now: float, bound_to: str,
                            purpose: str, locale: str | None) -> Generator[_Request, Any, None]:
        """A send nobody asked for (after primary auth, for a step-up): a refusal is reported, not raised."""
        member = sub.member
        try:
            out.delivery = yield from self._admit(verdict, out, sub, now, member.mfa_phone_number, linking=False,
                                                  link_key=None, bound_to=bound_to, purpose=purpose, locale=locale,
                                                  automatic=True)
        except MfaError as refusal:
            self._note(out, "otp.refused", now, sub.org.organization_id, sub.base.member_id,
                       member.mfa_phone_number, refusal.error_type, purpose=purpose, automatic=True)

    # --- primary authentication -------------------------------------------------------------------

    def _decide_primary(self, now: float, org_ref: object, member_ref: object, method: str,
                        method_error: RequestError | None, session_ref: object, locale: str | None, ist: str,
                        ist_digest: str, verdict: object) -> Step:
        org, base = yield from self._resolve(org_ref, member_ref)
        if method_error is not None:  # checked after organization, member and status (spec §5)
            raise method_error
        session_token = None if session_ref is None else _text(session_ref, "session_token")
        policy = self.policy
        token = None if session_token is None else _Token.of("session", session_token)
        sub, got = yield from self._subject(org, base, now, token)
        passed = self._token_record(got, sub, token, now)
        passed_digest = token.digest if token is not None else ""
        core.check_lock(sub.guard)
        member = sub.member
        oid, mid = org.organization_id, base.member_id
        out = _Outcome()
        primary = Factor(*core.PRIMARY_FACTORS[method], now)
        owed = core.mfa_owed(org, member)

        if method != "discovery" and isinstance(passed, SessionState) and passed.state is SessionPhase.ACTIVE:
            session = clone(passed)
            machine.fire(machine.SESSION, "add_factor", session, factor=primary, now=now)
            out.writes[keys.session(passed_digest)] = Write(session, session.expires_at)
            out.finish = lambda _: PrimaryAuthResult(
                member_id=mid, organization_id=oid, member=member, organization=org, member_authenticated=True,
                session_token=session_token or "", member_session=core.member_session(session, org))
            return out
        if method != "discovery" and not owed:
            token_value, new = self._new_session(out, sub, (primary,), now, policy.default_session_minutes)
            out.finish = lambda _: PrimaryAuthResult(
                member_id=mid, organization_id=oid, member=member, organization=org, member_authenticated=True,
                session_token=token_value, member_session=core.member_session(new, org))
            return out

        login = LoginState(oid, mid, now + policy.ist_ttl, (primary,))
        out.writes[keys.login(ist_digest)] = Write(login, login.expires_at)
        if method != "discovery" and owed and core.sms_conditions(org, member):
            yield from self._send_automatically(verdict, out, sub, now, ist_digest, "login", locale)

        def finish(delivered: bool) -> PrimaryAuthResult:
            return PrimaryAuthResult(
                member_id=mid, organization_id=oid, member=member, organization=org,
                member_authenticated=False, intermediate_session_token=ist,
                mfa_required=core.mfa_required(member, delivered) if owed else None)

        out.finish = finish
        return out

    @staticmethod
    def _consume(out: _Outcome, record: LoginState, token: _Token) -> None:
        """The IST is single-use: consumed in the same commit that issues the session."""
        login = clone(record)
        if not machine.fire(machine.LOGIN, "consume", login):
            raise TokenError("intermediate_session_not_found", "intermediate_session_token: already used")
        out.writes[token.key] = _DELETE

    def _new_session(self, out: _Outcome, sub: _Subject, factors: tuple[Factor, ...], now: float,
                     minutes: int) -> tuple[str, SessionState]:
        token = new_token()
        session = SessionState(f"member-session-{new_id(16)}", sub.org.organization_id,
                               sub.base.member_id, now, now, now + 60 * minutes, factors)
        out.writes[keys.session(token_digest(token))] = Write(session, session.expires_at)
        if self._listening():  # the factor list is built only for someone to read
            self._note(out, "session.created", now, session.organization_id, session.member_id,
                       factors=[f.type for f in factors])
        return token, session

    # --- authenticate ------------------------------------------------------------------------------

    def _decide_authenticate(self, now: float, org_ref: object, member_ref: object, token: _Token,
                             code_input: object, minutes: int | None, enrollment: str | None,
                             set_default: bool | None, _verdict: object) -> Step:
        org, base = yield from self._resolve(org_ref, member_ref)
        policy = self.policy
        sub, got = yield from self._subject(org, base, now, token)
        record = self._token_record(got, sub, token, now)                      # 3
        digest = token.digest
        core.check_lock(sub.guard)                                           # 4
        member = sub.member
        core.check_methods(org, member)                                           # 4b
        code = sub.code
        oid, mid = org.organization_id, base.member_id
        if code.state is not CodePhase.SENT:                                      # 5
            raise CodeRejected("unable_to_auth_otp_code",
                               "code: the member has no live code (none sent, expired, used, or too many attempts)")
        matched = (                                                               # 6
            is_code_shaped(code_input)
            and code.bound_to in ("", digest)
            # `is True`: only a real yes matches; a truthy non-bool from a provider fails closed
            and self._provider.verify(code.code_id, code_input, code.digest) is True  # type: ignore[arg-type]
        )
        out = _Outcome()
        code = clone(code)
        if not machine.fire(machine.CODE, "verify", code, matched=matched):
            guard = clone(sub.guard)
            machine.fire(machine.CODE, "reject", code, max_attempts=policy.max_attempts_per_code)
            machine.fire(machine.GUARD, "fail", guard, now=now, threshold=policy.lockout_threshold,
                         lock_for=policy.lockout_duration)
            self._note(out, "otp.failed", now, oid, mid, code.phone, "otp_code_not_found",
                       attempts=code.attempts, failures=guard.failures)
            if guard.state is GuardPhase.LOCKED:
                machine.fire(machine.CODE, "kill", code)
                self._note(out, "member.locked", now, oid, mid, code.phone,
                           "user_lock_limit_reached", locked_until=guard.locked_until)
                out.error = RateLimited("user_lock_limit_reached", "member: locked after too many wrong codes")
            else:
                out.error = CodeRejected("otp_code_not_found", "code: wrong code")
            out.writes[sub.k_code] = Write(code if code.state is CodePhase.SENT else None, code.expires_at)
            out.writes[sub.k_guard] = Write(guard, guard.locked_until or None)
            self._member_changed(out, sub, sub.overlay, guard, now)
            return out

        phone = code.phone
        changes: dict[str, object] = {}  # only what differs from the merged view: a routine login writes none
        overlay = sub.overlay
        if overlay.pending_phone == phone and policy.link_phone_on == "verify" and not member.mfa_phone_number:
            holder, link_key = (yield from self._phone_holder(sub, phone))
            if holder is not None:
                raise PolicyRefusal("duplicate_member_phone_number",
                                    "mfa_phone_number: linked to another member of the organization")
            changes.update(phone=phone, pending_phone="", phone_verified=True)
            out.writes[link_key] = Write(PhoneLink(mid))
            self._note(out, "phone.linked", now, oid, mid, phone, verified=True)
        elif not member.mfa_phone_number_verified and member.mfa_phone_number == phone:
            changes.update(phone=phone, phone_verified=True)
        out.writes[sub.k_code] = _DELETE
        enrolled = True if org.mfa_policy == "REQUIRED_FOR_ALL" else (
            None if enrollment is None else enrollment == "enroll")
        if enrolled is not None and enrolled != member.mfa_enrolled:
            changes["enrolled"] = enrolled
        if set_default and member.default_mfa_method != "sms_otp":
            changes["default_mfa_method"] = "sms_otp"
        guard = sub.guard
        if guard.failures:
            guard = clone(guard)
            machine.fire(machine.GUARD, "succeed", guard)
            out.writes[sub.k_guard] = Write(guard)
        if changes:
            overlay = replace(overlay, **changes)
            out.writes[sub.k_member] = Write(overlay)
        self._note(out, "otp.verified", now, oid, mid, phone, purpose=code.purpose)
        after = self._member_changed(out, sub, overlay, guard, now)
        factor = Factor(*core.SMS_FACTOR, now, phone)
        session_token = ""
        if isinstance(record, LoginState):
            self._consume(out, record, token)
            session_token, session = self._new_session(
                out, sub, (*record.factors, factor), now,
                minutes if minutes is not None else policy.default_session_minutes)
        else:
            assert isinstance(record, SessionState)
            session_token = token.value
            session = self._grow_session(out, record, digest, factor, now, minutes)
        out.finish = lambda _: AuthenticateResult(member_id=mid, member=after, organization=org,
                                                  session_token=session_token,
                                                  member_session=core.member_session(session, org))
        return out

    def _grow_session(self, out: _Outcome, record: SessionState, digest: str, factor: Factor, now: float,
                      minutes: int | None) -> SessionState:
        """A session gains a factor; one that needed a step-up completes it (spec §6.10)."""
        session = clone(record)
        expires_at = None if minutes is None else now + 60 * minutes
        step_up = session.state is SessionPhase.STEP_UP_REQUIRED
        machine.fire(machine.SESSION, "step_up" if step_up else "add_factor", session, factor=factor, now=now,
                     expires_at=expires_at)
        if not step_up and expires_at is not None:
            session.expires_at = expires_at
        out.writes[keys.session(digest)] = Write(session, session.expires_at)
        if step_up:
            self._note(out, "session.step_up_completed", now, session.organization_id, session.member_id,
                       factor=factor.type)
        return session

    # --- sessions ------------------------------------------------------------------------------------

    def _decide_session_check(self, now: float, token: _Token, verdict: object) -> Step:
        digest, k_session = token.digest, token.key
        got = yield _Read([k_session])
        record = core.check_session(_value(got, k_session, SessionState, None), None, None, now, None, self.policy)
        org, base = yield from self._resolve(record.organization_id, record.member_id)
        sub, _ = yield from self._subject(org, base, now)
        session = core.settle_idle(record, now, sub.member, self.policy)
        out = _Outcome()
        oid, mid = org.organization_id, base.member_id
        if session.state is SessionPhase.ACTIVE:
            session = clone(session)
            machine.fire(machine.SESSION, "touch", session, now=now)
            out.writes[k_session] = Write(session, session.expires_at)
            out.finish = lambda _: SessionCheck(member_session=core.member_session(session, org),
                                                step_up_required=False)
            return out
        if session is not record:
            out.writes[k_session] = Write(session, session.expires_at)
        member = sub.member
        self._note(out, "session.step_up_required", now, oid, mid, member.mfa_phone_number)
        code = sub.code
        live = code.state is CodePhase.SENT and code.bound_to == digest and code.purpose == "step_up"
        locked = sub.guard.state is GuardPhase.LOCKED
        if not live and not locked and self.policy.resend_on_inactivity and core.sms_conditions(org, member):
            yield from self._send_automatically(verdict, out, sub, now, digest, "step_up", None)

        def finish(delivered: bool) -> SessionCheck:
            initiated = live or delivered
            return SessionCheck(member_session=core.member_session(session, org), step_up_required=True,
                                secondary_auth_initiated="sms_otp" if initiated else None)

        out.finish = finish
        return out

    # --- caller-verified factors, phone deletion ----------------------------------------------------

    def _decide_record_factor(self, now: float, org_ref: object, member_ref: object, token: _Token,
                              factor_type: str, _verdict: object) -> Step:
        org, base = yield from self._resolve(org_ref, member_ref)
        sub, got = yield from self._subject(org, base, now, token)
        record = self._token_record(got, sub, token, now)
        digest = token.digest
        core.check_lock(sub.guard)
        factor = Factor(*core.RECORDED_FACTORS[factor_type], now)
        out = _Outcome()
        if isinstance(record, LoginState):
            self._consume(out, record, token)
            session_token, session = self._new_session(out, sub, (*record.factors, factor), now,
                                                       self.policy.default_session_minutes)
        else:
            assert isinstance(record, SessionState)
            session_token = token.value
            session = self._grow_session(out, record, digest, factor, now, None)
        member = sub.member
        out.finish = lambda _: AuthenticateResult(member_id=base.member_id, member=member, organization=org,
                                                  session_token=session_token,
                                                  member_session=core.member_session(session, org))
        return out

    def _decide_delete_phone(self, now: float, org_ref: object, member_ref: object, _verdict: object) -> Step:
        org, base = yield from self._resolve(org_ref, member_ref, require_active=False)
        sub, _ = yield from self._subject(org, base, now)
        out = _Outcome()
        oid, mid = org.organization_id, base.member_id
        old = sub.member.mfa_phone_number
        overlay = clone(sub.overlay)
        overlay.phone, overlay.phone_verified, overlay.pending_phone = "", False, ""
        if overlay != sub.overlay:
            out.writes[sub.k_member] = Write(overlay)
        if old:
            k_link = keys.link(oid, old)
            link = _value((yield _Read([k_link])), k_link, PhoneLink, None)
            if link is not None and link.member_id == mid:
                out.writes[k_link] = _DELETE
        if sub.code.state is CodePhase.SENT:
            code = clone(sub.code)
            machine.fire(machine.CODE, "kill", code)
            out.writes[sub.k_code] = _DELETE
        after = self._member_changed(out, sub, overlay, sub.guard, now)
        out.finish = lambda _: after
        return out

    # --- helpers ---------------------------------------------------------------------------------------

    def _listening(self) -> bool:
        return bool(self._sinks) or logger.isEnabledFor(logging.DEBUG)

    def _note(self, out: _Outcome | list[Event], name: str, now: float, org_id: str, member_id: str,
              phone: str = "", reason: str | None = None, **data: Any) -> None:
        """Record an event for after the commit; nobody listening (no sinks, no DEBUG log) costs nothing."""
        if self._listening():
            (out.events if isinstance(out, _Outcome) else out).append(
                _event(name, now, org_id, member_id, phone, reason, **data))

    def _member_changed(self, out: _Outcome, sub: _Subject, overlay: MemberState, guard: GuardState,
                        now: float) -> Member:
        """Emit member.updated when the merged view changes; return the view after the change."""
        if overlay is sub.overlay and guard is sub.guard:
            return sub.member
        after = core.merged_member(sub.base, overlay, guard)
        if after != sub.member:
            self._note(out, "member.updated", now, sub.org.organization_id, sub.base.member_id,
                       after.mfa_phone_number, member=after)
        return after


_NO_WINDOW: Final = SendWindow()


def _value(got: dict[str, Entry], key: str, kind: type[Any], default: Any = None) -> Any:
    entry = got.get(key)
    if entry is None:
        return default
    if not isinstance(entry.value, kind):
        raise StoreFailure("internal_server_error", f"store: record under {key.split(':', 1)[0]} has the wrong type")
    return entry.value


def rerun_delay(attempt: int) -> float:
    """Seconds to wait before re-running a call that lost its compare-and-set: jittered and doubling
    (up to 10, 20, 40, 80, 160 ms), so callers racing on one member on an optimistic store (Redis) spread
    out instead of colliding again; 16 threads on one member then finish within the five re-runs."""
    return secrets.randbelow(1001) / 1000 * 0.01 * 2.0**attempt  # `random` is kept out of the package


def _internal_failure(exc: BaseException) -> StoreFailure:
    """Anything but an MfaError raised by the store or inside a decision fails closed."""
    logger.error("mfa_flow: internal failure (%s) in the store or a decision; failing closed", type(exc).__name__,
                 exc_info=exc)
    return StoreFailure("internal_server_error", "the store failed; nothing was changed")


def _closing_failed(exc: BaseException) -> None:
    logger.warning("mfa_flow: closing a store transaction failed (%s) after its commit; the change stands",
                   type(exc).__name__)
