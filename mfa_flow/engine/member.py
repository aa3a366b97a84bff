"""The member's view and the phone's unlinking: ``get_member``, ``get_organization``, ``delete_mfa_phone_number``."""

from __future__ import annotations

from functools import partial
from typing import Any

from mfa_flow import core, machine
from mfa_flow.arguments import text
from mfa_flow.engine.context import DELETE, Context, Outcome, Plan, Remote, Step, value
from mfa_flow.engine.effects import Read, invoke
from mfa_flow.engine.reading import read_subject, refresh, resolve
from mfa_flow.errors import MfaError, NotFoundError, ProviderError
from mfa_flow.records import Member, Organization
from mfa_flow.state import CodePhase, PhoneLink, clone, keys
from mfa_flow.stores import Write

__all__ = ["delete_phone", "get_member", "get_organization"]


def get_member(ctx: Context, now: float, organization_id: object, member_id: object) -> Plan:
    return partial(_decide_get_member, ctx, now, organization_id, member_id)


def _decide_get_member(ctx: Context, now: float, org_ref: object, member_ref: object, _verdict: object) -> Step:
    org, base = yield from resolve(ctx, org_ref, member_ref, require_active=False)
    sub, _ = yield from read_subject(org, base, now)
    member = sub.member
    return Outcome(finish=lambda *_: member)


def get_organization(ctx: Context, _now: float, organization_id: object) -> Plan:
    return partial(_decide_get_organization, ctx, organization_id)


def _decide_get_organization(ctx: Context, org_ref: object, _verdict: object) -> Step:
    org = yield invoke((ctx.directory.get_organization, (text(org_ref, "organization_id"),)))
    if org is None:
        raise NotFoundError("organization_not_found", "organization_id: no such organization")
    return Outcome(finish=lambda *_: org)


def delete_phone(ctx: Context, now: float, organization_id: object, member_id: object) -> Plan:
    decide = _decide_delete_phone if ctx.remote is None else _decide_delete_at_stytch
    return partial(decide, ctx, now, organization_id, member_id)


def _decide_delete_at_stytch(ctx: Context, now: float, org_ref: object, member_ref: object,
                             _verdict: object) -> Step:
    """Stytch mode: Stytch deletes the number first; only then is the local view cleared."""
    org, base = yield from resolve(ctx, org_ref, member_ref, require_active=False)
    out = Outcome()
    out.remote = Remote(ctx.remote_provider().delete_mfa_phone_number, (org.organization_id, base.member_id),
                        partial(_settle_deleted, ctx, now, org, base))
    return out


def _settle_deleted(ctx: Context, now: float, org: Organization, base: Member, answer: Any,
                    failure: BaseException | None) -> Step:
    if failure is not None:
        raise failure if isinstance(failure, MfaError) else ProviderError(
            "internal_server_error", "Stytch gave no answer to the deletion; the number may still be linked")
    sub, _ = yield from read_subject(org, base, now)
    after = core.merged_member((yield from refresh(ctx, answer)), core.EMPTY_OVERLAY, sub.guard)
    out = Outcome()
    if sub.overlay is not core.EMPTY_OVERLAY:
        out.writes[sub.k_member] = DELETE
    if sub.code.state is CodePhase.SENT:
        code = clone(sub.code)
        machine.fire(machine.CODE, "kill", code)
        out.writes[sub.k_code] = DELETE
    if after != sub.member:
        ctx.note(out, "member.updated", now, org.organization_id, base.member_id, after.mfa_phone_number,
                 member=after)
    out.finish = lambda *_: after
    return out


def _decide_delete_phone(ctx: Context, now: float, org_ref: object, member_ref: object, _verdict: object) -> Step:
    org, base = yield from resolve(ctx, org_ref, member_ref, require_active=False)
    sub, _ = yield from read_subject(org, base, now)
    out = Outcome()
    oid, mid = org.organization_id, base.member_id
    old = sub.member.mfa_phone_number
    overlay = clone(sub.overlay)
    overlay.phone, overlay.phone_verified, overlay.pending_phone = "", False, ""
    if overlay != sub.overlay:
        out.writes[sub.k_member] = Write(overlay)
    if old:
        k_link = keys.link(oid, old)
        link = value((yield Read([k_link])), k_link, PhoneLink, None)
        if link is not None and link.member_id == mid:
            out.writes[k_link] = DELETE
    if sub.code.state is CodePhase.SENT:
        code = clone(sub.code)
        machine.fire(machine.CODE, "kill", code)
        out.writes[sub.k_code] = DELETE
    after = ctx.member_changed(out, sub, overlay, sub.guard, now)
    out.finish = lambda *_: after
    return out
