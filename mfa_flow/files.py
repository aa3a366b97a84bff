"""Organizations, members and a policy read from JSON or TOML files.

A **fixtures** file holds ``{"organizations": [...], "members": [...]}`` with the record fields of
:class:`~mfa_flow.Organization` and :class:`~mfa_flow.Member`; a **policy file** is TOML with a ``[policy]``
table (the :class:`~mfa_flow.Policy` fields) and optional ``[[organizations]]`` / ``[[members]]``. Both are
checked whole before anything uses them: a refusal is a :class:`~mfa_flow.ConfigurationError` whose message
names the file, the entry, the key and the value, always in one shape: ``FILE: WHERE KEY = VALUE: REASON``
(``policy.toml: [policy] otp_ttl = 'two minutes': must be a number greater than 0 and at most 600``). Files
are the operator's own configuration, so a refusal quotes the value (cut to 60 characters); the records'
own validators never do, as a record may be built from an untrusted answer.
"""

from __future__ import annotations

import difflib
import json
import re
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

__all__ = ["Fixtures", "PolicyFile", "load_fixtures", "load_policy", "load_policy_file", "shown"]


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
    if "policy" not in data:
        return PolicyFile(None, records)
    return PolicyFile(_policy(name, data["policy"], f"{name}: [policy]"), records)


def load_policy(path: str | Path) -> Policy:
    """Only the policy of a TOML file: its ``[policy]`` table, or settings at the top level (``Policy.from_toml``);
    refused in the same ``FILE: WHERE KEY = VALUE: REASON`` shape."""
    name, data = _read(path)
    if "policy" in data:
        return _policy(name, data["policy"], f"{name}: [policy]")
    return _policy(name, data, f"{name}:")


def _policy(name: str, table: object, place: str) -> Policy:
    """A policy from its table of settings, refused naming the setting at fault."""
    if not isinstance(table, Mapping):
        raise _refusal(f"{name}:", "policy", table, "must be a table of settings ([policy])")
    settings = [a.name for a in attrs.fields(Policy) if a.init]
    policy: Policy = _build(Policy, table, place, settings, required={}, what="setting")
    return policy


#: How much of a wrong value a refusal quotes.
SHOWN_CHARS = 60


def shown(value: object) -> str:
    """A value as a refusal quotes it: its ``repr``, cut to :data:`SHOWN_CHARS` characters."""
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - a parsed mapping may hold anything; its type still tells what is wrong
        return f"a value of type {type(value).__name__}"
    return text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS - 1] + "…"


def _refusal(place: str, key: object, value: object, reason: str) -> ConfigurationError:
    """Every refusal of a key of a file: ``FILE: WHERE KEY = VALUE: REASON`` (``place`` is ``FILE: WHERE``)."""
    return ConfigurationError(f"{place} {key if isinstance(key, str) else shown(key)} = {shown(value)}: {reason}")


def _unknown(key: object, known: Sequence[str], what: str) -> str:
    """The reason for an unknown key: the closest known one when it looks like a typo, else all of them."""
    close = difflib.get_close_matches(key, known, n=1) if isinstance(key, str) else []
    if close:
        return f"unknown {what}; did you mean {close[0]!r}?"
    return f"unknown {what} (expected one of: {', '.join(known)})"


def _reason(error: Exception, head: str) -> str:
    """What a validator said, less what the refusal already shows: the ``Class.key`` it starts with and the
    ``, got ...`` it may end with."""
    if isinstance(error, MfaError):
        text = error.error_message.removeprefix(head).removeprefix(": ")
        text = re.sub(r"\A\[\d+\] \((\w+)\): ", r"its \1 ", text)  # a window's "[0] (count): must be ..."
        return re.sub(r", got .*\Z", "", text, flags=re.S)
    return f"wrong type ({type(error).__name__}: {error})"  # a TypeError from a value of a shape nobody expects


def _build(cls: type[Any], entry: Mapping[Any, Any], place: str, known: Sequence[str], *,
           required: Mapping[str, object], what: str) -> Any:
    """``cls(**entry)``, or a refusal naming the key at fault: an unknown key, a missing one, or the first
    (in the file's order) whose value is refused on its own, next to ``required`` values known to be good."""
    for key, value in entry.items():
        if key not in known:
            raise _refusal(place, key, value, _unknown(key, known, what))
    for key in required:
        if key not in entry:
            raise ConfigurationError(f"{place} {key}: missing (every entry needs {', '.join(required)})")
    try:
        return cls(**entry)
    except (MfaError, TypeError) as exc:
        whole = exc
    for key, value in entry.items():
        try:
            cls(**{**required, key: value})
        except (MfaError, TypeError) as exc:
            raise _refusal(place, key, value, _reason(exc, f"{cls.__name__}.{key}")) from None
    raise ConfigurationError(f"{place} {_reason(whole, cls.__name__)}") from None  # only the keys together


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
        raise ConfigurationError(f"{path}: must hold an object with 'organizations' and 'members', "
                                 f"not {shown(data)}")
    return str(path), data


def _entries(name: str, data: Mapping[str, Any], key: str) -> Sequence[Any]:
    entries = data.get(key, [])
    if not isinstance(entries, list | tuple):
        raise _refusal(f"{name}:", key, entries, "must be a list of records")
    return entries


def _fixtures(name: str, data: Mapping[str, Any], *, allowed: tuple[str, ...], base: Fixtures) -> Fixtures:
    for key, value in data.items():
        if key not in allowed:
            raise _refusal(f"{name}:", key, value, _unknown(key, allowed, "section"))
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
#: The fields every record needs, with a value the validators accept (to judge the other fields on their own).
_REQUIRED: dict[type[Any], dict[str, object]] = {
    Organization: {"organization_id": "organization"},
    Member: {"member_id": "member", "organization_id": "organization"},
}


def _record(name: str, section: str, index: int, entry: object,
            cls: type[Organization | Member]) -> tuple[str, Any]:
    where = f"{name}: {section}[{index}]"
    if not isinstance(entry, Mapping):
        raise _refusal(f"{name}:", f"{section}[{index}]", entry, "must be an object of record fields")
    key = "organization_id" if cls is Organization else "member_id"
    if isinstance(entry.get(key), str):
        where += f" ({key} {shown(entry[key])})"
    place = f"{where}:"
    for field, default in _LOCK_FIELDS.items():
        if field in entry and entry[field] != default:
            raise _refusal(place, field, entry[field], "comes from the lock state and cannot be set in a file")
    methods = entry.get("allowed_mfa_methods", ())
    if not isinstance(methods, list | tuple):  # a string would pass as a sequence of letters
        raise _refusal(place, "allowed_mfa_methods", methods, "must be a list")
    record = _build(cls, entry, place, [a.name for a in attrs.fields(cls)], required=_REQUIRED[cls],
                    what="field")
    if isinstance(record, Member) and record.mfa_phone_number:
        try:
            parse_phone(record.mfa_phone_number, "mfa_phone_number")
        except MfaError as exc:
            raise _refusal(place, "mfa_phone_number", record.mfa_phone_number,
                           _reason(exc, "mfa_phone_number")) from None
    return where, record


def _check(orgs: tuple[Organization, ...], members: tuple[Member, ...], origins: tuple[str, ...]) -> None:
    seen: dict[str, str] = {}  # every organization reference (id, slug, external id) -> where it is
    for where, org in zip(origins, orgs, strict=False):
        for field in ("organization_id", "organization_slug", "organization_external_id"):
            ref = getattr(org, field)
            if ref and ref in seen:
                raise _refusal(f"{where}:", field, ref, f"already names {seen[ref]}")
            if ref:
                seen[ref] = where
    org_ids = {org.organization_id for org in orgs}
    member_refs: dict[tuple[str, str], str] = {}
    phones: dict[tuple[str, str], str] = {}
    for where, member in zip(origins[len(orgs):], members, strict=True):
        if member.organization_id not in org_ids:
            raise _refusal(f"{where}:", "organization_id", member.organization_id, "no organization has that id")
        for field in ("member_id", "external_id"):
            ref = getattr(member, field)
            key = (member.organization_id, ref)
            if ref and key in member_refs:
                raise _refusal(f"{where}:", field, ref, f"already names {member_refs[key]}")
            if ref:
                member_refs[key] = where
        if member.mfa_phone_number:
            key = (member.organization_id, parse_phone(member.mfa_phone_number).e164)
            if key in phones:
                raise _refusal(f"{where}:", "mfa_phone_number", member.mfa_phone_number,
                               f"the number is already linked to {phones[key]} of that organization")
            phones[key] = where
