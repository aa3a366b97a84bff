"""The member's view and the phone's unlinking: ``get_member``, ``get_organization``, ``delete_mfa_phone_number``."""

from __future__ import annotations

from functools import partial

from mfa_flow import machine
from mfa_flow.engine.context import DELETE, Context, Outcome, Plan, Step, value
from mfa_flow.engine.effects import Read, invoke
from mfa_flow.engine.reading import read_subject, resolve, text
from mfa_flow.errors import NotFoundError
from mfa_flow.state import CodePhase, PhoneLink, clone, keys
from mfa_flow.stores import Write

__all__ = ["delete_phone", "get_member", "get_organization"]


def get_member(ctx: Context, now: float, organization_id: object, member_id: object) -> Plan:
    return partial(_decide_get_member, ctx, now, organization_id, member_id)


def _decide_get_member(ctx: Context, now: float, org_ref: object, member_ref: object, _verdict: object) -> Step:
    org, base = yield from resolve(ctx, org_ref, member_ref, require_active=False)
    sub, _ = yield from read_subject(org, base, now)
    member = sub.member
    return Outcome(finish=lambda _: member)


def get_organization(ctx: Context, _now: float, organization_id: object) -> Plan:
    return partial(_decide_get_organization, ctx, organization_id)


def _decide_get_organization(ctx: Context, org_ref: object, _verdict: object) -> Step:
    org = yield invoke((ctx.directory.get_organization, (text(org_ref, "organization_id"),)))
    if org is None:
        raise NotFoundError("organization_not_found", "organization_id: no such organization")
    return Outcome(finish=lambda _: org)


def delete_phone(ctx: Context, now: float, organization_id: object, member_id: object) -> Plan:
    return partial(_decide_delete_phone, ctx, now, organization_id, member_id)


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
    out.finish = lambda _: after
    return out
