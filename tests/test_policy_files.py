"""Policy files (docs/policy.md, policy files): one TOML file drives ``mfa-flow check``, ``MfaWorld.from_toml`` and
``mfa-flow serve --policy``; a wrong key, type or value in ``[policy]``, ``[[organizations]]`` or ``[[members]]``
is refused by all three with the same message, naming the file, the key and the value.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from mfa_flow import ConfigurationError, Policy
from mfa_flow.files import SHOWN_CHARS, load_policy_file
from mfa_flow.testing import MfaWorld
from tests.emulator_server import PROJECT_ID, SECRET, require
from tests.helpers_process import AT_MOST_ONE_SMS_PER_MEMBER, run_python

ORG = "organization-files-acme"
ADA = "member-files-ada"
BOB = "member-files-bob"
ADA_PHONE = "+14155550121"

ORGANIZATION = f'[[organizations]]\norganization_id = "{ORG}"\n'
MEMBER_ADA = f'[[members]]\nmember_id = "{ADA}"\norganization_id = "{ORG}"\n'
MEMBER_BOB = f'[[members]]\nmember_id = "{BOB}"\norganization_id = "{ORG}"\n'
ORG_FIELDS = ("organization_id, organization_slug, organization_name, organization_external_id, mfa_policy, "
              "mfa_methods, allowed_mfa_methods")
MEMBER_FIELDS = ("member_id, organization_id, email_address, name, external_id, status, mfa_enrolled, "
                 "mfa_phone_number, mfa_phone_number_verified, default_mfa_method, totp_registration_id, "
                 "is_breakglass, is_locked, lock_expires_at")

#: (id, file content, the message after "FILE: "): an unknown key, a wrong type and a bad value in each part.
BAD_FILES: list[tuple[str, str, str]] = [
    ("policy_unknown_key", "[policy]\notp_tll = 90\n",
     "[policy] otp_tll = 90: unknown setting; did you mean 'otp_ttl'?"),
    ("policy_wrong_type", '[policy]\notp_ttl = "two minutes"\n',
     "[policy] otp_ttl = 'two minutes': must be a number greater than 0 and at most 600"),
    ("policy_bad_value", "[policy]\nlockout_threshold = 101\n",
     "[policy] lockout_threshold = 101: must be at most 100"),
    ("policy_bad_window", "[policy]\nsend_limit_per_member = [0, 600]\n",
     "[policy] send_limit_per_member = [0, 600]: its count must be an integer of at least 1"),
    ("organizations_unknown_key", ORGANIZATION + 'region = "eu"\n',
     f"organizations[0] (organization_id '{ORG}'): region = 'eu': unknown field (expected one of: {ORG_FIELDS})"),
    ("organizations_wrong_type", ORGANIZATION + "mfa_policy = true\n",
     (f"organizations[0] (organization_id '{ORG}'): mfa_policy = True: must be one of ('OPTIONAL', "
      "'REQUIRED_FOR_ALL')")),
    ("organizations_bad_value", ORGANIZATION + 'mfa_methods = "SOME"\n',
     (f"organizations[0] (organization_id '{ORG}'): mfa_methods = 'SOME': must be one of ('ALL_ALLOWED', "
      "'RESTRICTED')")),
    ("members_unknown_key", ORGANIZATION + MEMBER_ADA + f'mfa_phone_numer = "{ADA_PHONE}"\n',
     (f"members[0] (member_id '{ADA}'): mfa_phone_numer = '{ADA_PHONE}': unknown field; did you mean "
      "'mfa_phone_number'?")),
    ("members_unknown_key_unlike_any", ORGANIZATION + MEMBER_ADA + "colour = 3\n",
     f"members[0] (member_id '{ADA}'): colour = 3: unknown field (expected one of: {MEMBER_FIELDS})"),
    ("members_wrong_type", ORGANIZATION + MEMBER_ADA + 'mfa_phone_number_verified = "yes"\n',
     f"members[0] (member_id '{ADA}'): mfa_phone_number_verified = 'yes': must be True or False"),
    ("members_bad_value", ORGANIZATION + MEMBER_ADA + MEMBER_BOB + 'status = "actve"\n',
     (f"members[1] (member_id '{BOB}'): status = 'actve': must be one of ('active', 'pending', 'invited', "
      "'deleted')")),
    ("members_bad_phone", ORGANIZATION + MEMBER_ADA + 'mfa_phone_number = "4155550121"\n',
     (f"members[0] (member_id '{ADA}'): mfa_phone_number = '4155550121': must start with '+' and a country code "
      "(E.164)")),
    ("members_missing_key", ORGANIZATION + f'[[members]]\nmember_id = "{ADA}"\n',
     f"members[0] (member_id '{ADA}'): organization_id: missing (every entry needs member_id, organization_id)"),
    ("members_lock_field", ORGANIZATION + MEMBER_ADA + "lock_expires_at = 2026-01-01T00:00:00Z\n",
     (f"members[0] (member_id '{ADA}'): lock_expires_at = "
      "datetime.datetime(2026, 1, 1, 0, 0, tzinfo=datetime.timezon…: comes from the lock state and cannot be set "
      "in a file")),
    ("members_of_no_organization", MEMBER_ADA,
     f"members[0] (member_id '{ADA}'): organization_id = '{ORG}': no organization has that id"),
    ("members_sharing_a_number", ORGANIZATION + MEMBER_ADA + f'mfa_phone_number = "{ADA_PHONE}"\n' + MEMBER_BOB
     + 'mfa_phone_number = "+1 415 555 0121"\n',
     (f"members[1] (member_id '{BOB}'): mfa_phone_number = '+1 415 555 0121': the number is already linked to "
      f"{{file}}: members[0] (member_id '{ADA}') of that organization")),
    ("section_unknown", "[polcy]\notp_ttl = 90\n", "polcy = {'otp_ttl': 90}: unknown section; did you mean 'policy'?"),
    ("section_of_the_wrong_shape", "policy = 90\n", "policy = 90: must be a table of settings ([policy])"),
    ("entry_of_the_wrong_shape", "members = [1]\n", "members[0] = 1: must be an object of record fields"),
]
IDS = [row[0] for row in BAD_FILES]


def write(tmp_path: Path, content: str, name: str = "policy.toml") -> Path:
    path = tmp_path / name
    path.write_text(content, "utf-8")
    return path


def expected(path: Path, message: str) -> str:
    return f"{path}: {message.replace('{file}', str(path))}"


def serve_once(tmp_path: Path, policy: Path) -> subprocess.CompletedProcess[str]:
    """``mfa-flow serve --policy FILE`` with empty fixtures, to its end (a bad file ends it at once)."""
    fixtures = tmp_path / "fixtures.json"
    fixtures.write_text(json.dumps({"organizations": [], "members": []}), "utf-8")
    return run_python("-m", "mfa_flow", "serve", "--host", "127.0.0.1", "--port", "0", "--project-id", PROJECT_ID,
                      "--secret", SECRET, "--fixtures", str(fixtures), "--policy", str(policy), cwd=tmp_path)


# --- a bad file: the same message from the loader and from each of the three --------------------------------------


@pytest.mark.parametrize(("content", "message"), [row[1:] for row in BAD_FILES], ids=IDS)
def test_policy_file_refusal_names_the_file_the_key_and_the_value(tmp_path: Path, content: str, message: str) -> None:
    path = write(tmp_path, content)
    with pytest.raises(ConfigurationError) as info:
        load_policy_file(path)
    assert info.value.error_type == "invalid_argument"
    assert info.value.error_message == expected(path, message)


@pytest.mark.parametrize(("content", "message"), [row[1:] for row in BAD_FILES], ids=IDS)
def test_policy_file_refusal_from_mfa_world_from_toml(tmp_path: Path, content: str, message: str) -> None:
    path = write(tmp_path, content)
    with pytest.raises(ConfigurationError) as info:
        MfaWorld.from_toml(path)
    assert info.value.error_message == expected(path, message)


@pytest.mark.parametrize(("content", "message"), [row[1:] for row in BAD_FILES], ids=IDS)
def test_policy_file_refusal_from_mfa_flow_check_exits_2(tmp_path: Path, content: str, message: str) -> None:
    path = write(tmp_path, content)
    done = run_python("-m", "mfa_flow", "check", str(path), "--depth", "1", cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stdout == ""
    assert done.stderr == f"mfa-flow check: {expected(path, message)}\n"


@pytest.mark.parametrize(("content", "message"), [row[1:] for row in BAD_FILES], ids=IDS)
def test_policy_file_refusal_from_mfa_flow_serve_exits_2(tmp_path: Path, content: str, message: str) -> None:
    require("starlette")
    require("uvicorn")
    path = write(tmp_path, content)
    done = serve_once(tmp_path, path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stdout == ""
    assert done.stderr == f"mfa-flow serve: {expected(path, message)}\n"


def test_policy_file_refusal_of_a_value_policy_cannot_even_hash_names_the_key_and_the_value(tmp_path: Path) -> None:
    """Policy's own check lets a TypeError out for an array of arrays; the file's refusal still names it."""
    path = write(tmp_path, "[policy]\nblocked_number_types = [[1]]\n")
    with pytest.raises(ConfigurationError) as info:
        load_policy_file(path)
    assert info.value.error_message.startswith(f"{path}: [policy] blocked_number_types = [[1]]: ")


def test_policy_file_refusal_cuts_a_long_value_to_60_characters(tmp_path: Path) -> None:
    name = ["Ada " * 50]
    path = write(tmp_path, ORGANIZATION + MEMBER_ADA + f"name = {json.dumps(name)}\n")
    with pytest.raises(ConfigurationError) as info:
        load_policy_file(path)
    shown = repr(name)[:SHOWN_CHARS - 1] + "…"
    assert len(shown) == SHOWN_CHARS == 60
    assert info.value.error_message == f"{path}: members[0] (member_id '{ADA}'): name = {shown}: must be a string"


def test_policy_file_refusal_shows_control_characters_escaped(tmp_path: Path) -> None:
    """A value is shown as its repr: an escape sequence in a file cannot repaint the operator's terminal."""
    path = write(tmp_path, ORGANIZATION + MEMBER_ADA + 'status = "\\u001b[2Jactive\\u202e"\n')
    with pytest.raises(ConfigurationError) as info:
        load_policy_file(path)
    message = info.value.error_message
    assert message == (f"{path}: members[0] (member_id '{ADA}'): status = '\\x1b[2Jactive\\u202e': must be one of "
                       "('active', 'pending', 'invited', 'deleted')")
    assert "\x1b" not in message
    assert "\u202e" not in message


def test_policy_file_refusal_of_the_first_wrong_key_in_the_files_order(tmp_path: Path) -> None:
    path = write(tmp_path, '[policy]\nist_ttl = 300\nlink_phone_on = "never"\notp_ttl = 0\n')
    with pytest.raises(ConfigurationError) as info:
        load_policy_file(path)
    assert info.value.error_message == f"{path}: [policy] link_phone_on = 'never': must be 'send' or 'verify'"


# --- a good file: the same policy and records in each of the three -----------------------------------------------

SHARED = f"""\
[policy]
send_limit_per_member = [1, 600]
otp_ttl = 90

[[organizations]]
organization_id = "{ORG}"
organization_slug = "acme"
mfa_policy = "REQUIRED_FOR_ALL"

[[members]]
member_id = "{ADA}"
organization_id = "{ORG}"
mfa_phone_number = "{ADA_PHONE}"
mfa_phone_number_verified = true
"""
SHARED_POLICY = Policy(send_limit_per_member=(1, 600), otp_ttl=90)

PROPERTIES = AT_MOST_ONE_SMS_PER_MEMBER + """

def nobody_logs_in(world):
    assert not any(step.action == "login" for step in world.steps), "someone logged in"
"""


@pytest.fixture
def shared(tmp_path: Path) -> Path:
    (tmp_path / "properties.py").write_text(PROPERTIES, "utf-8")
    return write(tmp_path, SHARED)


def test_policy_file_drives_mfa_world_from_toml(shared: Path) -> None:
    world = MfaWorld.from_toml(shared)
    assert world.policy == SHARED_POLICY
    ada = world.flow.get_member("acme", ADA)
    assert ada.mfa_phone_number == ADA_PHONE
    first, second = world.login(ada), world.login(ada)
    assert first.mfa_required is not None
    assert first.mfa_required.secondary_auth_initiated == "sms_otp"
    assert second.mfa_required is not None
    assert second.mfa_required.secondary_auth_initiated is None  # the file's limit: one text per 10 minutes
    assert [message.to for message in world.sms.sent] == [ADA_PHONE]


def test_policy_file_drives_mfa_flow_check(shared: Path) -> None:
    """Under the file's limit no member gets a second text in 2 steps (under the defaults two logins do it:
    test_cli_check.py), and a counter-example's replay carries the file's policy."""
    kept = run_python("-m", "mfa_flow", "check", shared.name, "--depth", "2", "--properties",
                      "properties:at_most_one_sms_per_member", cwd=shared.parent)
    assert kept.returncode == 0, kept.stdout + kept.stderr
    assert "explore: no violation" in kept.stdout
    broken = run_python("-m", "mfa_flow", "check", shared.name, "--depth", "2", "--properties",
                        "properties:nobody_logs_in", cwd=shared.parent)
    assert broken.returncode == 1, broken.stdout + broken.stderr
    assert ("    checker = Checker(Policy(otp_ttl=90, send_limit_per_member=(1, 600.0)), "
            "properties=[nobody_logs_in])\n") in broken.stdout


def test_policy_file_drives_mfa_flow_serve(shared: Path, start_emulator: Any) -> None:
    server = start_emulator({"organizations": [], "members": []}, extra_args=["--policy", str(shared)])
    first = server.primary_auth(ORG, ADA)
    second = server.primary_auth(ORG, ADA)
    assert first["mfa_required"]["secondary_auth_initiated"] == "sms_otp"
    assert second["mfa_required"]["secondary_auth_initiated"] is None  # the file's limit
    assert [message["to"] for message in server.messages()] == [ADA_PHONE]
    assert server.stop() == 0
    assert "project " + PROJECT_ID + ": 1 organization(s), 1 member(s)" in server.stderr
