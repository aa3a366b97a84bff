"""The send endpoint (docs/rules.md: order of checks, phones to send limits): the checks in their order, then admission.

Admission — counting the send, superseding the previous code, writing the pending code and, in
link-on-send mode, the link — is committed before the code provider delivers; a delivery the gateway
surely did not make is undone by :func:`undo_rejected`. The automatic sends of primary authentication and
of the inactivity step-up go through :func:`admit` too, by :func:`send_automatically`.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping
from functools import partial
from typing import Any, Final

from mfa_flow import core, machine
from mfa_flow._numbers import E164_SHAPE
from mfa_flow.crypto import new_id
from mfa_flow.engine.context import (
    DELETE,
    PROBE,
    Context,
    Delivery,
    HookVerdict,
    NeedHooks,
    Outcome,
    Plan,
    Step,
    Subject,
    value,
)
from mfa_flow.engine.effects import Effect, Read
from mfa_flow.engine.reading import (
    Token,
    forwarded,
    one_token,
    phone_holder,
    read_more,
    read_subject,
    refuse_revoked,
    resolve,
    token_record,
)
from mfa_flow.errors import MfaError, PolicyRefusal
from mfa_flow.events import SendContext
from mfa_flow.phone import Phone, check_destination, parse_phone
from mfa_flow.records import Member
from mfa_flow.results import SendResult
from mfa_flow.state import (
    CodeState,
    GuardState,
    MemberState,
    PhoneLink,
    SendWindow,
    SessionPhase,
    SessionState,
    clone,
    keys,
)
from mfa_flow.stores import Write
from mfa_flow.wire import SEND, member_from, organization_from

__all__ = ["admit", "count_send", "decide", "plan", "send_automatically", "stytch_member", "undo_rejected",
           "window_keys"]

_NO_WINDOW: Final = SendWindow()


def plan(ctx: Context, now: float, organization_id: object, member_id: object, mfa_phone_number: object,
         locale: object, ist: object, session_token: object, session_jwt: object) -> Plan:
    """Step 1, argument shape: the token count, the given number parsed once, the locale."""
    token = one_token(ist, session_token, session_jwt, required=False)
    given = None if mfa_phone_number is None else parse_phone(mfa_phone_number)
    loc = core.check_locale(locale)
    return partial(decide, ctx, now, organization_id, member_id, token, given, loc)


def decide(ctx: Context, now: float, org_ref: object, member_ref: object, token: Token | None,
           given: Phone | None, locale: str | None, verdict: object) -> Step:
    """The send's checks in their order (docs/rules.md). In Stytch mode the token (validity, ownership, the factor
    rules of step 7) and a number linked to another member are Stytch's to judge: they are forwarded."""
    org, base = yield from resolve(ctx, org_ref, member_ref, session=token)       # 2
    local = ctx.remote is None
    oid, mid = org.organization_id, base.member_id
    # Read up front with the member's records: the windows this send would count in and, for a number to link,
    # the organization's link index entry for it.
    also = window_keys(ctx, oid, mid, base.mfa_phone_number if given is None else given.e164)
    if given is not None and local:
        also.append(keys.link(oid, given.e164))
    sub, got = yield from read_subject(org, base, now, token, also)
    if local:
        record = token_record(ctx, got, sub, token, now)                           # 3
    else:
        record = None  # the token is Stytch's to judge, unless revoked here
        refuse_revoked(got, token)
    kind, digest = (token.kind, token.digest) if token is not None else ("", "")
    core.check_lock(sub.guard)                                                    # 4
    member = sub.member
    core.check_methods(org, member)                                               # 5
    linked = member.mfa_phone_number                                              # 6
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
        if local:  # in Stytch mode, Stytch refuses a number linked to another member itself
            holder, link_key = (yield from phone_holder(ctx, sub, given.e164))
            if holder is not None:
                raise PolicyRefusal("duplicate_member_phone_number",
                                    "mfa_phone_number: linked to another member of the organization")
        dest, linking = given, True
    if local and member.has_active_factor:                                        # 7
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
    out = Outcome()
    request = None if local else SEND.body(
        organization_id=org.organization_id, member_id=base.member_id,
        mfa_phone_number=None if given is None else given.e164, locale=locale, **forwarded(token))
    out.delivery = delivery = yield from admit(ctx, verdict, out, sub, now, dest, linking=linking,
                                               link_key=link_key, bound_to=digest, purpose=purpose,
                                               locale=locale, automatic=False, request=request)
    after, guard = delivery.member, sub.guard

    def finish(_delivered: bool, answer: Mapping[str, Any] | None) -> SendResult:
        if answer is None:
            return SendResult(member_id=base.member_id, member=after, organization=org)
        return SendResult(member_id=base.member_id, member=stytch_member(answer, guard),
                          organization=organization_from(answer), request_id=str(answer["request_id"]))

    out.finish = finish
    return out


def admit(ctx: Context, verdict: object, out: Outcome, sub: Subject, now: float, dest: Phone | str, *,
          linking: bool, link_key: str | None, bound_to: str, purpose: str, locale: str | None,
          automatic: bool, request: dict[str, Any] | None = None) -> Generator[Effect, Any, Delivery]:
    """Steps 8–10 and admission: destination, hooks, limits, then the writes of an admitted send.

    ``dest`` is a number the caller gave (parsed with the arguments) or the member's linked number,
    parsed here: a stored number that does not parse is a step-8 refusal, after the token rules. In
    Stytch mode ``request`` is the body of Stytch's send, and the code record only marks when a code went
    out, to whom and for which token (Stytch keeps the code)."""
    policy = ctx.policy
    oid, mid = sub.org.organization_id, sub.base.member_id
    if isinstance(dest, str):
        dest = parse_phone(dest, "member.mfa_phone_number")
    region = check_destination(dest, allowed_regions=policy.allowed_regions,            # 8
                               unsupported_regions=policy.unsupported_regions,
                               blocked_number_types=policy.blocked_type_values,
                               test_numbers=policy.test_numbers)
    if verdict is not None:                                                             # 9
        key = (oid, mid, f"{dest.e164}|{purpose}|{bound_to}")
        if verdict is PROBE or (isinstance(verdict, HookVerdict) and verdict.key != key):
            context = SendContext(organization=sub.org, member=sub.member, phone_number=dest.e164,
                                  region=region, locale=locale, purpose=purpose, automatic=automatic, at=now)
            raise NeedHooks(context, key)
        assert isinstance(verdict, HookVerdict)
        if verdict.error is not None:
            raise verdict.error
    yield from count_send(ctx, out, sub, now, dest.e164, region)                   # 10, then admit
    code_id = new_id(8)
    prepared = None if request is not None else ctx.local_provider().prepare(
        code_id=code_id, to=dest.e164, locale=locale, organization_id=oid, member_id=mid)
    code = clone(sub.code)
    machine.fire(machine.CODE, "issue", code, code_id=code_id, digest=b"" if prepared is None else prepared.digest,
                 bound_to=bound_to, purpose=purpose, phone=dest.e164, sent_at=now, expires_at=now + policy.otp_ttl)
    out.writes[sub.k_code] = Write(code, code.expires_at)
    undo = None
    member = sub.member
    if linking:
        undo = sub.overlay
        overlay = clone(sub.overlay)
        if policy.link_phone_on == "send":
            overlay.phone, overlay.phone_verified = dest.e164, False
            if link_key is not None:  # the organization's index of linked numbers (local mode)
                out.writes[link_key] = Write(PhoneLink(mid))
            ctx.note(out, "phone.linked", now, oid, mid, dest.e164, verified=False)
        else:
            overlay.pending_phone = dest.e164
            link_key = None
        out.writes[sub.k_member] = Write(overlay)
        member = ctx.member_changed(out, sub, overlay, sub.guard, now)
    return Delivery(code_id, dest.e164, prepared, request, sub, purpose, automatic, undo, link_key, member, locale,
                    region)


def window_keys(ctx: Context, oid: str, mid: str, phone: str | None) -> list[str]:
    """The send windows a send to ``phone`` will count in, as far as known before reading: a call that may
    send reads them with the member's records, so counting the send costs no round trip of its own. A number
    not already in E.164 (or the region's window, known only once the number is parsed) is read when counted."""
    policy = ctx.policy
    wanted = [keys.window_member(oid, mid)]
    if phone and E164_SHAPE.fullmatch(phone):
        wanted.append(keys.window_phone(phone))
    if policy.send_limit_global is not None:
        wanted.append(keys.WINDOW_GLOBAL)
    return wanted


def count_send(ctx: Context, out: Outcome, sub: Subject, now: float, e164: str, region: str | None, *,
               refuse: bool = True) -> Generator[Effect, Any, str | None]:
    """Step 10, the limits and the cooldown, then the send counted in every window. With ``refuse=False``
    (a send that has already gone, in Stytch mode) an exceeded limit is counted and named, not refused."""
    policy = ctx.policy
    limits = [("member", keys.window_member(sub.org.organization_id, sub.base.member_id),
               policy.send_limit_per_member), ("phone", keys.window_phone(e164), policy.send_limit_per_phone)]
    if policy.send_limit_per_region is not None and region:
        limits.append(("region", keys.window_region(region), policy.send_limit_per_region))
    if policy.send_limit_global is not None:
        limits.append(("global", keys.WINDOW_GLOBAL, policy.send_limit_global))
    got = yield from read_more(sub, [k for _, k, _ in limits])
    windows = [(name, value(got, k, SendWindow) if k in got else _NO_WINDOW, limit) for name, k, limit in limits]
    exceeded = None
    try:
        core.check_limits(policy, now, windows, windows[0][1])
    except MfaError as over:
        if refuse:
            raise
        exceeded = over.error_message
    for (_, k, (_, seconds)), (_, window, _) in zip(limits, windows, strict=True):
        keep = max(seconds, policy.resend_cooldown)
        out.writes[k] = Write(core.counted(window, now, keep), now + keep)
    return exceeded


def send_automatically(ctx: Context, verdict: object, out: Outcome, sub: Subject, now: float, bound_to: str,
                       purpose: str, locale: str | None, token: Token | None = None) -> Generator[Effect, Any, None]:
    """A send nobody asked for (after primary auth, for a step-up), bound to the token whose digest is
    ``bound_to``: a refusal is reported, not raised. In Stytch mode it is Stytch's send with ``token``."""
    member = sub.member
    request = None if ctx.remote is None else SEND.body(
        organization_id=sub.org.organization_id, member_id=sub.base.member_id, locale=locale, **forwarded(token))
    try:
        out.delivery = yield from admit(ctx, verdict, out, sub, now, member.mfa_phone_number, linking=False,
                                        link_key=None, bound_to=bound_to, purpose=purpose, locale=locale,
                                        automatic=True, request=request)
    except MfaError as refusal:
        ctx.note(out, "otp.refused", now, sub.org.organization_id, sub.base.member_id,
                 member.mfa_phone_number, refusal.error_type, purpose=purpose, automatic=True)


def stytch_member(answer: Mapping[str, Any], guard: GuardState) -> Member:
    """Stytch mode: the member Stytch answered with, and mfa_flow's lock state (the merged view)."""
    return core.merged_member(member_from(answer), core.EMPTY_OVERLAY, guard)


def undo_rejected(ctx: Context, delivery: Delivery, now: float, _verdict: object = None) -> Step:
    """Remove the code and the link a rejected send wrote, if they are still the ones it wrote."""
    sub = delivery.subject
    wanted = [sub.k_code, sub.k_member] + ([delivery.link_key] if delivery.link_key else [])
    got = yield Read(wanted)
    out = Outcome()
    code = got.get(sub.k_code)
    if code is not None and isinstance(code.value, CodeState) and code.value.code_id == delivery.code_id:
        out.writes[sub.k_code] = DELETE
    overlay = got.get(sub.k_member)
    if delivery.undo_overlay is not None and overlay is not None and isinstance(overlay.value, MemberState):
        current = overlay.value
        ours = delivery.to
        if (current.phone == ours and not current.phone_verified) or current.pending_phone == ours:
            out.writes[sub.k_member] = Write(delivery.undo_overlay)
            if delivery.link_key and delivery.link_key in got:
                out.writes[delivery.link_key] = DELETE
            after = core.merged_member(sub.base, delivery.undo_overlay, sub.guard)
            if after != core.merged_member(sub.base, current, sub.guard):
                ctx.note(out, "member.updated", now, sub.org.organization_id,
                         sub.base.member_id, after.mfa_phone_number, member=after)
    return out
