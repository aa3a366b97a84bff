"""mfa_flow.files: fixtures and policy files are checked whole, and every refusal names the file, the entry, the
field and its value (spec §12: a bad file is refused at start-up with a message naming the entry and field; §13:
a policy file's refusal names the file, the key and the value)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mfa_flow import ConfigurationError, Member, Organization, Policy
from mfa_flow.files import Fixtures, load_fixtures, load_policy_file, shown

ORG = "organization-files-1"
ORG2 = "organization-files-2"
PHONE = "+14155550101"
PHONE2 = "+14155550102"

Data = dict[str, Any]


def org(organization_id: str = ORG, **fields: Any) -> Data:
    return {"organization_id": organization_id, **fields}


def member(member_id: object, organization_id: str = ORG, **fields: Any) -> Data:
    return {"member_id": member_id, "organization_id": organization_id, **fields}


def data(orgs: list[Data] | None = None, members: list[Data] | None = None) -> Data:
    return {"organizations": [org()] if orgs is None else orgs, "members": [] if members is None else members}


def write_json(tmp_path: Path, content: object, name: str = "fixtures.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(content), "utf-8")
    return path


def refusal(load: Callable[[Path], object], path: Path) -> str:
    """The message of the ConfigurationError ``load(path)`` raises (``invalid_argument``, as every one is)."""
    with pytest.raises(ConfigurationError) as info:
        load(path)
    assert info.value.error_type == "invalid_argument"
    return info.value.error_message


def names(message: str, field: str) -> bool:
    """Whether ``field`` appears in ``message`` as a whole name (``name`` is not found in ``organization_name``)."""
    return re.search(rf"(?<!\w){re.escape(field)}(?!\w)", message) is not None


# --- every refusal of a bad fixtures file names the file, the entry and the field -------------------------

#: (test id, file content, entry, field): one row per kind of bad record.
BAD_RECORDS: list[tuple[str, Data, str, str]] = [
    ("unknown_field_of_member", data(members=[member("m-0"), member("m-1", colour="blue")]), "members[1]", "colour"),
    ("unknown_field_of_organization", data([org(), org(ORG2, region="eu")]), "organizations[1]", "region"),
    ("missing_organization_id", data([org(), {"organization_slug": "beta"}]), "organizations[1]", "organization_id"),
    ("missing_member_id", data(members=[member("m-0"), {"organization_id": ORG}]), "members[1]", "member_id"),
    ("missing_organization_id_of_member", data(members=[{"member_id": "m-0"}]), "members[0]", "organization_id"),
    ("empty_member_id", data(members=[member("")]), "members[0]", "member_id"),
    ("organization_id_not_a_string", data([org(5)]), "organizations[0]", "organization_id"),
    ("member_id_not_a_string", data(members=[member(7)]), "members[0]", "member_id"),
    ("text_field_is_a_list", data([org(organization_name=["Acme"])]), "organizations[0]", "organization_name"),
    ("text_field_is_a_number", data(members=[member("m-0", name=3)]), "members[0]", "name"),
    ("text_field_is_a_boolean", data(members=[member("m-0", email_address=False)]), "members[0]", "email_address"),
    ("phone_is_a_number", data(members=[member("m-0", mfa_phone_number=14155550101)]), "members[0]",
     "mfa_phone_number"),
    ("flag_is_a_string", data(members=[member("m-0", mfa_enrolled="yes")]), "members[0]", "mfa_enrolled"),
    ("flag_is_an_integer", data(members=[member("m-0", mfa_phone_number_verified=1)]), "members[0]",
     "mfa_phone_number_verified"),
    ("flag_is_null", data(members=[member("m-0", is_breakglass=None)]), "members[0]", "is_breakglass"),
    ("method_list_is_a_string", data([org(allowed_mfa_methods="sms_otp")]), "organizations[0]",
     "allowed_mfa_methods"),
    ("method_list_holds_a_number", data([org(allowed_mfa_methods=[1])]), "organizations[0]", "allowed_mfa_methods"),
    ("bad_mfa_policy", data([org(mfa_policy="ALWAYS")]), "organizations[0]", "mfa_policy"),
    ("bad_mfa_methods", data([org(mfa_methods="SOME")]), "organizations[0]", "mfa_methods"),
    ("bad_allowed_mfa_method", data([org(mfa_methods="RESTRICTED", allowed_mfa_methods=["email_otp"])]),
     "organizations[0]", "allowed_mfa_methods"),
    ("bad_status", data(members=[member("m-0", status="gone")]), "members[0]", "status"),
    ("bad_default_mfa_method", data(members=[member("m-0", default_mfa_method="email")]), "members[0]",
     "default_mfa_method"),
    ("duplicate_organization_id", data([org(), org(ORG)]), "organizations[1]", "organization_id"),
    ("duplicate_organization_slug", data([org(organization_slug="acme"), org(ORG2, organization_slug="acme")]),
     "organizations[1]", "organization_slug"),
    ("duplicate_organization_external_id",
     data([org(organization_external_id="ext-1"), org(ORG2, organization_external_id="ext-1")]),
     "organizations[1]", "organization_external_id"),
    ("slug_equal_to_another_organization_id", data([org(), org(ORG2, organization_slug=ORG)]), "organizations[1]",
     "organization_slug"),
    ("duplicate_member_id_in_an_organization", data(members=[member("m-0"), member("m-0")]), "members[1]",
     "member_id"),
    ("duplicate_member_external_id_in_an_organization",
     data(members=[member("m-0", external_id="x-1"), member("m-1", external_id="x-1")]), "members[1]",
     "external_id"),
    ("one_number_linked_to_two_members",
     data(members=[member("m-0", mfa_phone_number=PHONE), member("m-1", mfa_phone_number=PHONE)]), "members[1]",
     "mfa_phone_number"),
    ("one_number_linked_to_two_members_formatted_differently",
     data(members=[member("m-0", mfa_phone_number=PHONE), member("m-1", mfa_phone_number="+1 (415) 555-0101")]),
     "members[1]", "mfa_phone_number"),
    ("member_of_an_unknown_organization", data(members=[member("m-0", organization_id="organization-nowhere")]),
     "members[0]", "organization_id"),
    ("is_locked_set", data(members=[member("m-0", is_locked=True)]), "members[0]", "is_locked"),
    ("lock_expires_at_set", data(members=[member("m-0", lock_expires_at="2026-01-01T00:00:00Z")]), "members[0]",
     "lock_expires_at"),
    ("unparseable_phone", data(members=[member("m-0", mfa_phone_number="+999 1234")]), "members[0]",
     "mfa_phone_number"),
    ("phone_without_a_country_code", data(members=[member("m-0", mfa_phone_number="4155550101")]), "members[0]",
     "mfa_phone_number"),
]


@pytest.mark.parametrize(("content", "entry", "field"), [row[1:] for row in BAD_RECORDS],
                         ids=[row[0] for row in BAD_RECORDS])
def test_fixtures_refuse_a_bad_record_naming_file_entry_and_field(tmp_path: Path, content: Data, entry: str,
                                                                  field: str) -> None:
    path = write_json(tmp_path, content)
    message = refusal(load_fixtures, path)
    assert message.startswith(f"{path}: {entry}"), message
    assert names(message, field), message
    section, index = re.fullmatch(r"(\w+)\[(\d+)\]", entry).groups()  # type: ignore[union-attr]
    fields = content[section][int(index)]
    if field in fields:  # and the value it holds (a missing field has none)
        assert f": {field} = {shown(fields[field])}: " in message, message


def test_fixtures_refuse_a_bad_record_from_a_parsed_mapping_naming_entry_and_field() -> None:
    with pytest.raises(ConfigurationError) as info:
        load_fixtures(data(members=[member("m-0"), member("m-1", colour="blue")]))
    assert info.value.error_message == ("fixtures: members[1] (member_id 'm-1'): colour = 'blue': unknown field "
                                        "(expected one of: member_id, organization_id, email_address, name, "
                                        "external_id, status, mfa_enrolled, mfa_phone_number, "
                                        "mfa_phone_number_verified, default_mfa_method, totp_registration_id, "
                                        "is_breakglass, is_locked, lock_expires_at)")


def test_fixtures_duplicate_refusal_names_both_entries(tmp_path: Path) -> None:
    path = write_json(tmp_path, data(members=[member("m-0", mfa_phone_number=PHONE), member("m-1"),
                                              member("m-2", mfa_phone_number=f"tel:{PHONE}")]))
    message = refusal(load_fixtures, path)
    assert message.startswith(f"{path}: members[2] (member_id 'm-2'): mfa_phone_number"), message
    assert "members[0] (member_id 'm-0')" in message


def test_fixtures_refuse_an_unknown_section(tmp_path: Path) -> None:
    path = write_json(tmp_path, {**data(), "policy": {"otp_ttl": 60}})
    message = refusal(load_fixtures, path)
    assert message == f"{path}: policy = {{'otp_ttl': 60}}: unknown section (expected one of: organizations, members)"


@pytest.mark.parametrize(("content", "expected"), [
    ({"organizations": org()}, f"organizations = {{'organization_id': '{ORG}'}}: must be a list of records"),
    ({"members": "m-0"}, "members = 'm-0': must be a list of records"),
    (data(members=["m-0"]), "members[0] = 'm-0': must be an object of record fields"),
    (data([org(), [ORG2]]), f"organizations[1] = ['{ORG2}']: must be an object of record fields"),
], ids=["organizations_not_a_list", "members_not_a_list", "member_not_an_object", "organization_not_an_object"])
def test_fixtures_refuse_a_section_or_entry_of_the_wrong_shape(tmp_path: Path, content: Data, expected: str) -> None:
    path = write_json(tmp_path, content)
    assert refusal(load_fixtures, path) == f"{path}: {expected}"


@pytest.mark.parametrize("text", ['[{"organization_id": "o"}]', '"organizations"', "3", "null"],
                         ids=["array", "string", "number", "null"])
def test_fixtures_refuse_a_file_that_is_not_an_object(tmp_path: Path, text: str) -> None:
    path = tmp_path / "fixtures.json"
    path.write_text(text, "utf-8")
    message = refusal(load_fixtures, path)
    assert message.startswith(f"{path}: must hold an object"), message


def test_fixtures_refuse_a_file_that_is_not_valid_json(tmp_path: Path) -> None:
    path = tmp_path / "fixtures.json"
    path.write_text('{"organizations": [', "utf-8")
    assert refusal(load_fixtures, path).startswith(f"{path}: not valid JSON")


@pytest.mark.parametrize("name", ["fixtures.toml", "fixtures.txt"])
def test_fixtures_refuse_a_file_that_is_not_valid_toml(tmp_path: Path, name: str) -> None:
    """A name that does not end in .json is read as TOML."""
    path = tmp_path / name
    path.write_text('[[organizations]]\norganization_id = "o\n', "utf-8")
    assert refusal(load_fixtures, path).startswith(f"{path}: not valid TOML")


def test_fixtures_refuse_a_bad_record_in_a_toml_file_naming_entry_and_field(tmp_path: Path) -> None:
    path = tmp_path / "fixtures.toml"
    path.write_text(f'[[organizations]]\norganization_id = "{ORG}"\n\n'
                    f'[[members]]\nmember_id = "m-0"\norganization_id = "{ORG}"\nmfa_enrolled = "yes"\n', "utf-8")
    message = refusal(load_fixtures, path)
    assert message.startswith(f"{path}: members[0] (member_id 'm-0')"), message
    assert names(message, "mfa_enrolled"), message


def test_fixtures_refuse_an_unreadable_file_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "absent.json"
    assert refusal(load_fixtures, missing).startswith(f"{missing}: cannot read the file")
    latin1 = tmp_path / "latin1.json"
    latin1.write_bytes(b'{"organizations": [{"organization_id": "caf\xe9"}]}')
    assert refusal(load_fixtures, latin1).startswith(f"{latin1}: cannot read the file")


# --- what a good file gives -----------------------------------------------------------------------------

GOOD = {
    "organizations": [
        org(organization_slug="acme", organization_name="Acme", organization_external_id="acme-ext",
            mfa_policy="REQUIRED_FOR_ALL", mfa_methods="RESTRICTED", allowed_mfa_methods=["sms_otp", "totp"]),
        org(ORG2, organization_slug="beta"),
    ],
    "members": [
        member("m-0", email_address="ada@example.com", name="Ada", external_id="ada-ext", mfa_enrolled=True,
               mfa_phone_number=PHONE, mfa_phone_number_verified=True, default_mfa_method="sms_otp",
               is_breakglass=True, is_locked=False),
        member("m-1", status="invited", totp_registration_id="totp-1"),
        # the same member id, external id and number in another organization are another member's
        member("m-0", ORG2, external_id="ada-ext", mfa_phone_number=PHONE),
    ],
}
GOOD_TOML = f"""
[[organizations]]
organization_id = "{ORG}"
organization_slug = "acme"
organization_name = "Acme"
organization_external_id = "acme-ext"
mfa_policy = "REQUIRED_FOR_ALL"
mfa_methods = "RESTRICTED"
allowed_mfa_methods = ["sms_otp", "totp"]

[[organizations]]
organization_id = "{ORG2}"
organization_slug = "beta"

[[members]]
member_id = "m-0"
organization_id = "{ORG}"
email_address = "ada@example.com"
name = "Ada"
external_id = "ada-ext"
mfa_enrolled = true
mfa_phone_number = "{PHONE}"
mfa_phone_number_verified = true
default_mfa_method = "sms_otp"
is_breakglass = true
is_locked = false

[[members]]
member_id = "m-1"
organization_id = "{ORG}"
status = "invited"
totp_registration_id = "totp-1"

[[members]]
member_id = "m-0"
organization_id = "{ORG2}"
external_id = "ada-ext"
mfa_phone_number = "{PHONE}"
"""
EXPECTED = Fixtures(
    (Organization(ORG, organization_slug="acme", organization_name="Acme", organization_external_id="acme-ext",
                  mfa_policy="REQUIRED_FOR_ALL", mfa_methods="RESTRICTED", allowed_mfa_methods=("sms_otp", "totp")),
     Organization(ORG2, organization_slug="beta")),
    (Member("m-0", ORG, email_address="ada@example.com", name="Ada", external_id="ada-ext", mfa_enrolled=True,
            mfa_phone_number=PHONE, mfa_phone_number_verified=True, default_mfa_method="sms_otp", is_breakglass=True),
     Member("m-1", ORG, status="invited", totp_registration_id="totp-1"),
     Member("m-0", ORG2, external_id="ada-ext", mfa_phone_number=PHONE)),
)


def test_fixtures_json_file_is_accepted(tmp_path: Path) -> None:
    assert load_fixtures(write_json(tmp_path, GOOD)) == EXPECTED


@pytest.mark.parametrize("name", ["fixtures.toml", "fixtures.TOML", "records.conf"])
def test_fixtures_toml_file_is_accepted(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_text(GOOD_TOML, "utf-8")
    assert load_fixtures(path) == EXPECTED


def test_fixtures_path_given_as_a_string_is_accepted(tmp_path: Path) -> None:
    assert load_fixtures(str(write_json(tmp_path, GOOD))) == EXPECTED


def test_fixtures_parsed_mapping_is_accepted() -> None:
    assert load_fixtures(GOOD) == EXPECTED
    assert load_fixtures({}) == Fixtures()


def test_fixtures_lock_fields_at_their_defaults_are_accepted() -> None:
    loaded = load_fixtures(data(members=[member("m-0", is_locked=False, lock_expires_at=None)]))
    assert loaded.members == (Member("m-0", ORG),)


def test_fixtures_origins_name_each_record_by_its_entry(tmp_path: Path) -> None:
    path = write_json(tmp_path, GOOD)
    assert load_fixtures(path).origins == (
        f"{path}: organizations[0] (organization_id '{ORG}')", f"{path}: organizations[1] (organization_id '{ORG2}')",
        f"{path}: members[0] (member_id 'm-0')", f"{path}: members[1] (member_id 'm-1')",
        f"{path}: members[2] (member_id 'm-0')",
    )


def test_fixtures_directory_resolves_every_reference() -> None:
    directory = load_fixtures(GOOD).directory()
    for ref in (ORG, "acme", "acme-ext"):
        found = directory.get_organization(ref)
        assert found is not None
        assert found.organization_id == ORG
    by_external = directory.get_member(ORG2, "ada-ext")
    assert by_external == Member("m-0", ORG2, external_id="ada-ext", mfa_phone_number=PHONE)


# --- policy files ---------------------------------------------------------------------------------------

POLICY_TOML = f"""
[policy]
otp_ttl = 60
lockout_threshold = 20
send_limit_per_member = [50, 600]
allowed_regions = ["US"]

[[organizations]]
organization_id = "{ORG2}"
mfa_policy = "REQUIRED_FOR_ALL"

[[members]]
member_id = "m-9"
organization_id = "{ORG2}"
mfa_phone_number = "{PHONE2}"
"""


def write_policy(tmp_path: Path, text: str, name: str = "policy.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, "utf-8")
    return path


def test_policy_file_gives_its_policy_and_its_records(tmp_path: Path) -> None:
    loaded = load_policy_file(write_policy(tmp_path, POLICY_TOML))
    assert loaded.policy == Policy(otp_ttl=60, lockout_threshold=20, send_limit_per_member=(50, 600),
                                   allowed_regions={"US"})
    assert loaded.fixtures == Fixtures((Organization(ORG2, mfa_policy="REQUIRED_FOR_ALL"),),
                                       (Member("m-9", ORG2, mfa_phone_number=PHONE2),))


def test_policy_file_without_a_policy_table_gives_none(tmp_path: Path) -> None:
    loaded = load_policy_file(write_policy(tmp_path, f'[[organizations]]\norganization_id = "{ORG2}"\n'))
    assert loaded.policy is None
    assert loaded.fixtures == Fixtures((Organization(ORG2),))


@pytest.mark.parametrize(("text", "expected"), [
    ("[policy]\notp_ttl = -5\n", "[policy] otp_ttl = -5: must be a number greater than 0"),
    ('[policy]\nlink_phone_on = "never"\n', "[policy] link_phone_on = 'never': must be 'send' or 'verify'"),
    ("[policy]\ncolour = 5\n", "[policy] colour = 5: unknown setting (expected one of: otp_ttl, "),
    ("policy = 5\n", "policy = 5: must be a table of settings"),
    ("[polcy]\notp_ttl = 5\n", "polcy = {'otp_ttl': 5}: unknown section; did you mean 'policy'?"),
    (f'[[members]]\nmember_id = "m-0"\norganization_id = "{ORG2}"\n',
     f"members[0] (member_id 'm-0'): organization_id = '{ORG2}': no organization has that id"),
    ("[policy\n", "not valid TOML"),
], ids=["bad_value", "bad_choice", "unknown_setting", "policy_not_a_table", "unknown_section",
        "member_of_an_unknown_organization", "not_toml"])
def test_policy_file_refusal_names_the_file_and_the_setting(tmp_path: Path, text: str, expected: str) -> None:
    path = write_policy(tmp_path, text)
    message = refusal(load_policy_file, path)
    assert message.startswith(f"{path}: {expected}"), message


# --- Fixtures + Fixtures ----------------------------------------------------------------------------------

def test_fixtures_added_hold_the_records_of_both() -> None:
    both = load_fixtures(data(members=[member("m-0", mfa_phone_number=PHONE)])) + load_fixtures(
        data([org(ORG2)], [member("m-9", ORG2, mfa_phone_number=PHONE)]))
    assert both == Fixtures((Organization(ORG), Organization(ORG2)),
                            (Member("m-0", ORG, mfa_phone_number=PHONE), Member("m-9", ORG2, mfa_phone_number=PHONE)))
    assert [o.split(": ", 1)[1] for o in both.origins] == [
        f"organizations[0] (organization_id '{ORG}')", f"organizations[0] (organization_id '{ORG2}')",
        "members[0] (member_id 'm-0')", "members[0] (member_id 'm-9')"]


@pytest.mark.parametrize(("second", "entry", "field", "first_entry"), [
    (f'[[organizations]]\norganization_id = "{ORG}"\n', f"organizations[0] (organization_id '{ORG}')",
     "organization_id", f"organizations[0] (organization_id '{ORG}')"),
    (f'[[organizations]]\norganization_id = "{ORG2}"\norganization_slug = "acme"\n',
     f"organizations[0] (organization_id '{ORG2}')", "organization_slug",
     f"organizations[0] (organization_id '{ORG}')"),
], ids=["organization_id", "organization_slug"])
def test_fixtures_added_refuse_an_organization_in_both(tmp_path: Path, second: str, entry: str, field: str,
                                                       first_entry: str) -> None:
    first_path = write_json(tmp_path, data([org(organization_slug="acme")]))
    second_path = write_policy(tmp_path, second)
    first, other = load_fixtures(first_path), load_policy_file(second_path).fixtures
    with pytest.raises(ConfigurationError) as info:
        first + other
    message = info.value.error_message
    assert message.startswith(f"{second_path}: {entry}: {field} = "), message
    assert f"{first_path}: {first_entry}" in message


def test_fixtures_added_refuse_the_same_records_twice_naming_both_files(tmp_path: Path) -> None:
    content = data(members=[member("m-0", mfa_phone_number=PHONE)])
    first_path, second_path = write_json(tmp_path, content, "a.json"), write_json(tmp_path, content, "b.json")
    with pytest.raises(ConfigurationError) as info:
        load_fixtures(first_path) + load_fixtures(second_path)
    assert info.value.error_message == (f"{second_path}: organizations[0] (organization_id '{ORG}'): "
                                        f"organization_id = '{ORG}': already names {first_path}: "
                                        f"organizations[0] (organization_id '{ORG}')")


# --- a policy file's records joined to fixtures ------------------------------------------------------------

def test_policy_file_members_may_belong_to_an_organization_of_the_fixtures(tmp_path: Path) -> None:
    fixtures = load_fixtures(write_json(tmp_path, data()))
    path = write_policy(tmp_path, f'[[members]]\nmember_id = "m-7"\norganization_id = "{ORG}"\n')
    joined = load_policy_file(path, fixtures=fixtures).fixtures
    assert joined == Fixtures((Organization(ORG),), (Member("m-7", ORG),))
    assert joined.origins[-1] == f"{path}: members[0] (member_id 'm-7')"


@pytest.mark.parametrize(("toml", "field"), [
    ('[[members]]\nmember_id = "m-0"\norganization_id = "{org}"\n', "member_id"),
    ('[[members]]\nmember_id = "m-1"\norganization_id = "{org}"\nmfa_phone_number = "+1 415-555-0101"\n',
     "mfa_phone_number"),
], ids=["member_id", "formatted_number"])
def test_policy_file_records_joined_to_fixtures_refuse_what_the_fixtures_hold(tmp_path: Path, toml: str,
                                                                            field: str) -> None:
    fixtures_path = write_json(tmp_path, data(members=[member("m-0", mfa_phone_number=PHONE)]))
    path = write_policy(tmp_path, toml.format(org=ORG))
    with pytest.raises(ConfigurationError) as info:
        load_policy_file(path, fixtures=load_fixtures(fixtures_path))
    message = info.value.error_message
    assert message.startswith(f"{path}: members[0]"), message
    assert f": {field} = " in message
    assert f"{fixtures_path}: members[0] (member_id 'm-0')" in message


def test_fixtures_built_directly_are_checked_too() -> None:
    """A Fixtures is always consistent, however it was built: create_app accepts one as it is."""
    with pytest.raises(ConfigurationError, match=r"members\[0\]: organization_id = '.*': no organization has that id"):
        Fixtures((), (Member("m-0", ORG),))
    with pytest.raises(ConfigurationError, match=r"members\[1\]: member_id = 'm-0': already names members\[0\]"):
        Fixtures((Organization(ORG),), (Member("m-0", ORG), Member("m-0", ORG)))


def test_fixtures_unknown_sections_of_any_key_type_are_refused_by_name() -> None:
    with pytest.raises(ConfigurationError, match=r"fixtures: 1 = \[\]: unknown section \(expected one of: "):
        load_fixtures({"organizations": [], 1: [], "x": []})
