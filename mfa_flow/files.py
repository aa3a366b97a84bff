"""Organizations, members and a policy read from JSON or TOML files.

A **fixtures** file holds ``{"organizations": [...], "members": [...]}`` with the record fields of
:class:`~mfa_flow.Organization` and :class:`~mfa_flow.Member`; a **policy file** is TOML with a ``[policy]``
table (the :class:`~mfa_flow.Policy` fields) and optional ``[[organizations]]`` / ``[[members]]``. Both are
checked whole before anything uses them: a refusal is a :class:`~mfa_flow.ConfigurationError` whose message
names the file, the entry and the field.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from mfa_flow.directory import MemoryDirectory
from mfa_flow.errors import ConfigurationError, MfaError
from mfa_flow.phone import parse_phone
from mfa_flow.policy import Policy
from mfa_flow.records import Member, Organization

__all__ = ["Fixtures", "PolicyFile", "load_fixtures", "load_policy_file"]


@attrs.frozen
class Fixtures:
    """Records checked together: unique ids, slugs and external ids, one number per member of an organization."""

    organizations: tuple[Organization, ...] = ()
    members: tuple[Member, ...] = ()
    #: Where each record came from ("file: members[2] (member_id 'm-2')"), in the same order, for messages.
    origins: tuple[str, ...] = attrs.field(default=(), eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        if len(self.origins) != len(self.organizations) + len(self.members):
            labels = (*(f"organizations[{i}]" for i in range(len(self.organizations))),
                      *(f"members[{i}]" for i in range(len(self.members))))
            object.__setattr__(self, "origins", labels)
        _check(self.organizations, self.members, self.origins)

    def directory(self) -> MemoryDirectory:
        """A new in-memory directory holding these records."""
        directory = MemoryDirectory()
        for org in self.organizations:
            directory.put_organization(org)
        for member in self.members:
            directory.put_member(member)
        return directory

    def __add__(self, other: Fixtures) -> Fixtures:
        """Both sets of records, checked together (an id in both is refused, naming both entries)."""
        return self._joined(other.organizations, other.members, other.origins)

    def _joined(self, orgs: tuple[Organization, ...], members: tuple[Member, ...],
                origins: tuple[str, ...]) -> Fixtures:
        n, m = len(self.organizations), len(orgs)
        return Fixtures(self.organizations + orgs, self.members + members,
                        self.origins[:n] + origins[:m] + self.origins[n:] + origins[m:])


@attrs.frozen
class PolicyFile:
    """A policy file: its ``[policy]`` (None when the file has none) and its records."""

    policy: Policy | None
    fixtures: Fixtures


def load_fixtures(source: str | Path | Mapping[str, Any]) -> Fixtures:
    """Records from a JSON or TOML file, or from an already parsed mapping of the same shape."""
    name, data = _read(source)
    return _fixtures(name, data, allowed=("organizations", "members"), base=Fixtures())


def load_policy_file(path: str | Path, *, fixtures: Fixtures | None = None) -> PolicyFile:
    """A TOML policy file: ``[policy]`` and optional ``[[organizations]]`` / ``[[members]]``.

    With ``fixtures``, the file's records join them and are checked together (a member of the file may
    belong to an organization of the fixtures; an id in both is refused); the result holds them all."""
    name, data = _read(path)
    records = _fixtures(name, data, allowed=("policy", "organizations", "members"), base=fixtures or Fixtures())
    table = data.get("policy")
    if table is None:
        return PolicyFile(None, records)
    if not isinstance(table, Mapping):
        raise ConfigurationError(f"{name}: policy: must be a table of settings")
    try:
        policy = Policy.from_mapping(table)
    except MfaError as exc:
        raise ConfigurationError(f"{name}: [policy] {exc.error_message}") from None
    return PolicyFile(policy, records)


def _read(source: str | Path | Mapping[str, Any]) -> tuple[str, Mapping[str, Any]]:
    if isinstance(source, Mapping):
        return "fixtures", source
    path = Path(source)
    try:
        text = path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"{path}: cannot read the file ({type(exc).__name__}: {exc})") from None
    data: object
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:  # .toml, or any other name: TOML
            data = tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        kind = "JSON" if path.suffix.lower() == ".json" else "TOML"
        raise ConfigurationError(f"{path}: not valid {kind}: {exc}") from None
    if not isinstance(data, Mapping):
        raise ConfigurationError(f"{path}: must hold an object with 'organizations' and 'members'")
    return str(path), data


def _entries(name: str, data: Mapping[str, Any], key: str) -> Sequence[Any]:
    entries = data.get(key, [])
    if not isinstance(entries, list | tuple):
        raise ConfigurationError(f"{name}: {key}: must be a list of records")
    return entries


def _fixtures(name: str, data: Mapping[str, Any], *, allowed: tuple[str, ...], base: Fixtures) -> Fixtures:
    unknown = [key for key in data if key not in allowed]
    if unknown:
        raise ConfigurationError(f"{name}: unknown section {unknown[0]!r} (expected {', '.join(allowed)})")
    origins: list[str] = []

    def records(section: str, cls: type[Organization | Member]) -> tuple[Any, ...]:
        out = []
        for i, entry in enumerate(_entries(name, data, section)):
            where, record = _record(name, section, i, entry, cls)
            out.append(record)
            origins.append(where)
        return tuple(out)

    orgs, members = records("organizations", Organization), records("members", Member)
    return base._joined(orgs, members, tuple(origins))  # noqa: SLF001 - the class's own helper


#: Filled from the lock state by the merged view: a file may only leave them at their defaults.
_LOCK_FIELDS = {"is_locked": False, "lock_expires_at": None}


def _record(name: str, section: str, index: int, entry: object,
            cls: type[Organization | Member]) -> tuple[str, Any]:
    where = f"{name}: {section}[{index}]"
    if not isinstance(entry, Mapping):
        raise ConfigurationError(f"{where}: must be an object of record fields")
    key = "organization_id" if cls is Organization else "member_id"
    if isinstance(entry.get(key), str):
        where += f" ({key} {entry[key]!r})"
    fields = {a.name: a for a in attrs.fields(cls)}
    for field in entry:
        if field not in fields:
            raise ConfigurationError(f"{where}: unknown field {field!r}")
        if field in _LOCK_FIELDS and entry[field] != _LOCK_FIELDS[field]:
            raise ConfigurationError(f"{where}: {field}: comes from the lock state and cannot be set in a file")
    for field, attribute in fields.items():
        if attribute.default is attrs.NOTHING and field not in entry:
            raise ConfigurationError(f"{where}: missing field {field!r}")
    values = dict(entry)
    if "allowed_mfa_methods" in values and not isinstance(values["allowed_mfa_methods"], list | tuple):
        raise ConfigurationError(f"{where}: allowed_mfa_methods: must be a list")
    try:
        record = cls(**values)
    except MfaError as exc:
        raise ConfigurationError(f"{where}: {exc.error_message}") from None
    except TypeError as exc:  # a field of a type the validators do not expect (a list where text goes, ...)
        raise ConfigurationError(f"{where}: {exc}") from None
    if isinstance(record, Member) and record.mfa_phone_number:
        try:
            parse_phone(record.mfa_phone_number, "mfa_phone_number")
        except MfaError as exc:
            raise ConfigurationError(f"{where}: {exc.error_message}") from None
    return where, record


def _check(orgs: tuple[Organization, ...], members: tuple[Member, ...], origins: tuple[str, ...]) -> None:
    seen: dict[str, str] = {}  # every organization reference (id, slug, external id) -> where it is
    for where, org in zip(origins, orgs, strict=False):
        for field in ("organization_id", "organization_slug", "organization_external_id"):
            ref = getattr(org, field)
            if ref and ref in seen:
                raise ConfigurationError(f"{where}: {field}: {ref!r} already names {seen[ref]}")
            if ref:
                seen[ref] = where
    org_ids = {org.organization_id for org in orgs}
    member_refs: dict[tuple[str, str], str] = {}
    phones: dict[tuple[str, str], str] = {}
    for where, member in zip(origins[len(orgs):], members, strict=True):
        if member.organization_id not in org_ids:
            raise ConfigurationError(f"{where}: organization_id: no organization {member.organization_id!r}")
        for field in ("member_id", "external_id"):
            ref = getattr(member, field)
            key = (member.organization_id, ref)
            if ref and key in member_refs:
                raise ConfigurationError(f"{where}: {field}: {ref!r} already names {member_refs[key]}")
            if ref:
                member_refs[key] = where
        if member.mfa_phone_number:
            key = (member.organization_id, parse_phone(member.mfa_phone_number).e164)
            if key in phones:
                raise ConfigurationError(f"{where}: mfa_phone_number: the number is already linked to "
                                         f"{phones[key]} of that organization")
            phones[key] = where
