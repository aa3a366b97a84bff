"""What every decision shares: the context it may consult, and the outcome it returns.

A decision reads through its effects and returns an :class:`Outcome`: the writes to commit in one
compare-and-set, the events to emit after that commit, an error to raise after it (a wrong code still
counts), a delivery to make, and how to build the result.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator, Sequence
from typing import Any, Final

import attrs

from mfa_flow import core
from mfa_flow.directory import Directory
from mfa_flow.engine.effects import Effect
from mfa_flow.errors import MfaError, StoreFailure
from mfa_flow.events import Event, EventSink, SendContext
from mfa_flow.phone import mask_phone
from mfa_flow.policy import Policy
from mfa_flow.records import Member, Organization
from mfa_flow.state import CodeState, GuardState, MemberState
from mfa_flow.stores import Entry, Write
from mfa_flow.transports import CodeProvider, PreparedCode, RemoteCodeProvider

__all__ = ["DELETE", "PROBE", "Context", "Delivery", "EndSessions", "HookVerdict", "NeedHooks", "Outcome", "Plan",
           "Remote", "Step", "Subject", "value"]

logger = logging.getLogger("mfa_flow")

DELETE: Final = Write(None)  # one shared deletion: a NamedTuple costs a Python call to build

#: The hooks' verdict on a first pass when before_send hooks exist: decide up to the hooks, commit nothing.
PROBE: Final = object()


class Context:
    """What a decision may consult: the policy, the directory (to name in its calls), the code provider
    (to prepare and verify codes, which do no I/O) or, in Stytch mode, the remote one (to name in its
    calls), and who listens for events. Never a store or a clock."""

    __slots__ = ("directory", "policy", "provider", "remote", "sinks")

    def __init__(self, policy: Policy, directory: Directory, provider: CodeProvider | None,
                 remote: RemoteCodeProvider | None, sinks: Sequence[EventSink]) -> None:
        self.policy = policy
        self.directory = directory
        self.provider = provider
        self.remote = remote
        self.sinks = sinks

    def local_provider(self) -> CodeProvider:
        assert self.provider is not None, "local mode only"
        return self.provider

    def remote_provider(self) -> RemoteCodeProvider:
        assert self.remote is not None, "Stytch mode only"
        return self.remote

    def listening(self) -> bool:
        return bool(self.sinks) or logger.isEnabledFor(logging.DEBUG)

    def note(self, out: Outcome | list[Event], name: str, now: float, org_id: str, member_id: str,
             phone: str = "", reason: str | None = None, **data: Any) -> None:
        """Record an event for after the commit; nobody listening (no sinks, no DEBUG log) costs nothing."""
        if self.listening():
            (out.events if isinstance(out, Outcome) else out).append(
                Event(name, now, org_id, member_id, mask_phone(phone), reason, data))

    def member_changed(self, out: Outcome, sub: Subject, overlay: MemberState, guard: GuardState,
                       now: float) -> Member:
        """Emit member.updated when the merged view changes; return the view after the change."""
        if overlay is sub.overlay and guard is sub.guard:
            return sub.member
        after = core.merged_member(sub.base, overlay, guard)
        if after != sub.member:
            self.note(out, "member.updated", now, sub.org.organization_id, sub.base.member_id,
                      after.mfa_phone_number, member=after)
        return after


@attrs.define(slots=True)
class Subject:
    """A member as one transaction read it, settled at the call's clock value."""

    org: Organization
    base: Member
    overlay: MemberState
    guard: GuardState
    code: CodeState
    member: Member
    k_member: str
    k_guard: str
    k_code: str
    got: dict[str, Entry]  # every record the transaction has read for this call, by key
    asked: list[str]  # every key it has asked for (an absent record is asked and not got)


@attrs.define(slots=True)
class Delivery:
    """An admitted send, committed and about to be delivered, with what a rejection must undo.

    In local mode the code provider delivers ``prepared``; in Stytch mode ``request`` is the body of
    Stytch's send (Stytch makes and texts the code)."""

    code_id: str
    to: str  # the destination, E.164
    prepared: PreparedCode | None
    request: dict[str, Any] | None
    subject: Subject
    purpose: str
    automatic: bool
    undo_overlay: MemberState | None  # the overlay to restore if the link made by this send is rolled back
    link_key: str | None
    member: Member  # the merged view as this send leaves it (with the link it made)
    locale: str | None
    region: str | None  # the destination's region (None for a test number without one)


@attrs.define(slots=True)
class Remote:
    """Stytch mode: a call to make after the commit, then the decision that settles what it answered
    (its answer, or the error it raised) in a second transaction. Without one, a failure is raised as it
    came and an answer goes to the outcome's ``finish``."""

    call: Callable[..., Any]
    args: tuple[Any, ...]
    settle: Callable[[Any, BaseException | None], Step] | None


@attrs.define(slots=True)
class HookVerdict:
    """The before_send hooks' answer for one destination and purpose."""

    key: tuple[str, str, str]
    error: MfaError | None


@attrs.define(slots=True)
class NeedHooks(Exception):  # control flow: never escapes the flow
    """A decision reached the hooks (step 9) without their verdict: ask them, outside any transaction."""

    context: SendContext
    key: tuple[str, str, str]


@attrs.define(slots=True)
class EndSessions(Exception):  # control flow: never escapes the flow
    """A session of a member who is no longer active was used: every session of the member ends (in a
    transaction of its own), then the call is refused with ``refusal``."""

    member_id: str
    refusal: MfaError


@attrs.define(slots=True)
class Outcome:
    writes: dict[str, Write] = attrs.field(factory=dict)
    events: list[Event] = attrs.field(factory=list)
    error: MfaError | None = None
    delivery: Delivery | None = None
    remote: Remote | None = None
    #: Builds the result, told whether a code went out in this call and (Stytch mode) what Stytch answered the
    #: send. It must not refer to its outcome: that cycle would leave every call's records for the collector.
    finish: Callable[[bool, Any], Any] | None = None


#: A decision: a generator that yields reads and plug-point calls and returns its outcome.
Step = Generator[Effect, Any, Outcome]
#: A call planned and checked for argument shape: a decision with every argument bound but the hooks' verdict
#: (a ``partial``: a closure would allocate a cell per argument on every call).
Plan = Callable[[object], Step]


def value(got: dict[str, Entry], key: str, kind: type[Any], default: Any = None) -> Any:
    """The record under ``key`` as read, checked to be a ``kind``; ``default`` when absent."""
    entry = got.get(key)
    if entry is None:
        return default
    if not isinstance(entry.value, kind):
        raise StoreFailure("internal_server_error", f"store: record under {key.split(':', 1)[0]} has the wrong type")
    return entry.value


