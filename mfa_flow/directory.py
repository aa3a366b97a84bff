"""The directory: the application's identity data, the trusted admin plane (spec §2)."""

from __future__ import annotations

import threading
from typing import Protocol, runtime_checkable

from mfa_flow.errors import NotFoundError, PolicyRefusal
from mfa_flow.phone import canonical_phone
from mfa_flow.records import Member, Organization

__all__ = ["Directory", "MemoryDirectory"]


@runtime_checkable
class Directory(Protocol):
    def get_organization(self, ref: str) -> Organization | None:
        """By id, slug or ``organization_external_id``."""
        ...

    def get_member(self, org_ref: str, member_ref: str) -> Member | None:
        """By member id or ``external_id`` within the organization."""
        ...

    def find_member_by_phone(self, organization_id: str, e164: str) -> Member | None: ...

    def put_organization(self, org: Organization) -> None: ...

    def put_member(self, member: Member) -> None: ...


class MemoryDirectory:
    """Dicts under a lock. Refs resolve by id first, then slug / external id."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._orgs: dict[str, Organization] = {}
        self._org_refs: dict[str, str] = {}
        self._members: dict[tuple[str, str], Member] = {}
        self._member_refs: dict[tuple[str, str], str] = {}
        self._phones: dict[tuple[str, str], str] = {}

    def __repr__(self) -> str:
        return f"MemoryDirectory(<{len(self._orgs)} organizations, {len(self._members)} members>)"

    def get_organization(self, ref: str) -> Organization | None:
        org = self._orgs.get(ref)
        if org is None and (org_id := self._org_refs.get(ref)) is not None:
            org = self._orgs.get(org_id)
        return org

    def get_member(self, org_ref: str, member_ref: str) -> Member | None:
        member = self._members.get((org_ref, member_ref))  # the flow passes resolved ids
        if member is not None:
            return member
        org = self.get_organization(org_ref)
        if org is None:
            return None
        oid = org.organization_id
        member = self._members.get((oid, member_ref))
        if member is None and (mid := self._member_refs.get((oid, member_ref))) is not None:
            member = self._members.get((oid, mid))
        return member

    def find_member_by_phone(self, organization_id: str, e164: str) -> Member | None:
        mid = self._phones.get((organization_id, e164))
        return None if mid is None else self._members.get((organization_id, mid))

    def put_organization(self, org: Organization) -> None:
        with self._lock:
            old = self._orgs.get(org.organization_id)
            if old is not None:
                for ref in (old.organization_slug, old.organization_external_id):
                    self._org_refs.pop(ref, None)
            self._orgs[org.organization_id] = org
            for ref in (org.organization_slug, org.organization_external_id):
                if ref:
                    self._org_refs[ref] = org.organization_id

    def put_member(self, member: Member) -> None:
        oid, mid = member.organization_id, member.member_id
        phone = canonical_phone(member.mfa_phone_number)
        with self._lock:
            if oid not in self._orgs:
                raise NotFoundError("organization_not_found", f"Member.organization_id: no organization {oid!r}")
            holder = self._phones.get((oid, phone)) if phone else None
            if holder is not None and holder != mid:
                raise PolicyRefusal(
                    "duplicate_member_phone_number",
                    "Member.mfa_phone_number: already linked to another member of the organization",
                )
            old = self._members.get((oid, mid))
            if old is not None:
                self._member_refs.pop((oid, old.external_id), None)
                self._phones.pop((oid, canonical_phone(old.mfa_phone_number)), None)
            self._members[(oid, mid)] = member
            if member.external_id:
                self._member_refs[(oid, member.external_id)] = mid
            if phone:
                self._phones[(oid, phone)] = mid
