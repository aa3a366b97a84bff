"""The directory: the application's identity data, the trusted admin plane (docs/concepts.md, records)."""

from __future__ import annotations

import threading
from typing import Protocol, runtime_checkable

from mfa_flow.errors import NotFoundError, PolicyRefusal
from mfa_flow.phone import canonical_phone
from mfa_flow.records import Member, Organization

__all__ = ["Directory", "MemoryDirectory", "WritableDirectory"]


@runtime_checkable
class Directory(Protocol):
    """The application's identity data, read-only: all the flow ever calls. Implement these three over your
    own user table (an adapter needs no ``put_*``); ``AsyncMfaFlow`` also accepts ``async def`` ones.

    Contract:
    - An unknown reference answers ``None`` (the flow refuses with ``organization_not_found`` /
      ``member_not_found``); an exception fails the call closed (``internal_server_error``).
    - ``get_organization(ref)`` resolves the id, the ``organization_slug`` or the ``organization_external_id``,
      as Stytch does: the directory resolves its own references.
    - ``get_member(organization_id, member_ref)`` is called with the organization's id (the flow resolved
      slugs and external ids through ``get_organization`` first), and resolves the member's id or its
      ``external_id`` within that organization.
    - ``find_member_by_phone(organization_id, e164)``: the member of the organization whose linked number is
      ``e164`` (E.164 text), or ``None``. The flow asks it before linking a number to another member; a
      directory that cannot search by number may answer ``None`` (numbers linked through the flow are
      refused all the same, from the store's own index).
    - Records are the frozen ``Organization`` and ``Member``; their ``is_locked`` / ``lock_expires_at`` are
      ignored (the lock is the flow's).
    """

    def get_organization(self, ref: str) -> Organization | None: ...

    def get_member(self, organization_id: str, member_ref: str) -> Member | None: ...

    def find_member_by_phone(self, organization_id: str, e164: str) -> Member | None: ...


@runtime_checkable
class WritableDirectory(Directory, Protocol):
    """A directory the application writes through the flow's own API (the in-memory one)."""

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
        """By member id or external id, in the organization given by id (or, for callers, slug or external id)."""
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
