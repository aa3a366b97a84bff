"""Spec §8: the policy's defaults, hardened(), refusals that name the field, and the rules no setting removes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mfa_flow import ConfigurationError, Policy

#: Spec §6.1: the refused number types, written out here so that the library's own constant cannot define them.
SPEC_BLOCKED_NUMBER_TYPES = frozenset({"PREMIUM_RATE", "SHARED_COST", "TOLL_FREE", "UAN", "VOICEMAIL"})
#: The reference's unsupported countries (../reference/stytch-b2b-sms-otp.md §5) that map to ISO codes: the list
#: the package must ship (CN includes HK; Curaçao & Caribbean Netherlands are CW and BQ; Kosovo is XK).
_REFERENCE_UNSUPPORTED_TEXT = (
    "DZ AF AL AD AO AQ AM AW AZ BS BH BD BB BY BZ BM BT BA BW BV VG MM BI KH CV KY TD CN HK KM CD "
    "CI CU CW BQ CY DK DJ DM TL EG GQ ET ER EE FO FJ PF GA GM GE GI GL GP GU GN HT HN ID IL IR IQ JE JO KZ KP "
    "XK KW KG LA LB LS LR LY MO MK"
)
REFERENCE_UNSUPPORTED_REGIONS = frozenset(_REFERENCE_UNSUPPORTED_TEXT.split())


def test_policy_defaults_are_the_specs() -> None:
    p = Policy()
    assert (p.otp_ttl, p.ist_ttl, p.default_session_minutes) == (120, 600, 60)
    assert (p.max_attempts_per_code, p.lockout_threshold, p.lockout_duration) == (5, 10, 3600)
    assert (p.send_limit_per_member, p.send_limit_per_phone) == ((5, 600.0), (5, 600.0))
    assert (p.send_limit_per_region, p.send_limit_global, p.resend_cooldown) == (None, None, 0)
    assert (p.inactivity_timeout, p.resend_on_inactivity) == (1800, True)
    assert p.allowed_regions == frozenset({"US", "CA"})
    assert p.unsupported_regions == REFERENCE_UNSUPPORTED_REGIONS
    assert p.blocked_number_types == SPEC_BLOCKED_NUMBER_TYPES
    assert (p.test_numbers, p.link_phone_on, p.uniform_refusals) == (frozenset(), "send", False)


def test_policy_hardened_values_and_overrides() -> None:
    p = Policy.hardened()
    assert (p.resend_cooldown, p.link_phone_on, p.uniform_refusals, p.lockout_threshold) == (30, "verify", True, 5)
    assert (p.send_limit_per_member, p.send_limit_per_phone) == ((3, 600.0), (3, 600.0))
    assert Policy.hardened(lockout_threshold=7).lockout_threshold == 7


@pytest.mark.parametrize(("field", "value"), [
    ("otp_ttl", 0), ("otp_ttl", 601), ("otp_ttl", "120"), ("ist_ttl", -1), ("default_session_minutes", 4),
    ("default_session_minutes", 527041), ("max_attempts_per_code", 0), ("max_attempts_per_code", True),
    ("lockout_threshold", 101), ("lockout_threshold", 0), ("lockout_duration", 0),
    ("send_limit_per_member", None), ("send_limit_per_phone", None), ("send_limit_per_member", (0, 600)),
    ("send_limit_per_region", (5,)), ("send_limit_global", (5, 0)), ("resend_cooldown", -1),
    ("inactivity_timeout", 0), ("resend_on_inactivity", 1), ("uniform_refusals", "yes"),
    ("allowed_regions", "US"), ("allowed_regions", {"USA"}), ("unsupported_regions", {1}),
    ("blocked_number_types", {"PREMIUM_RATE"}), ("blocked_number_types", {"NOT_A_TYPE", *SPEC_BLOCKED_NUMBER_TYPES}),
    ("test_numbers", ["not a number"]), ("link_phone_on", "never"),
])
def test_policy_invalid_value_refused_naming_the_field(field: str, value: Any) -> None:
    with pytest.raises(ConfigurationError) as caught:
        Policy(**{field: value})
    assert caught.value.error_type == "invalid_argument"
    assert f"Policy.{field}" in caught.value.error_message


def test_policy_blocked_number_types_can_grow_but_never_drop_the_defaults() -> None:
    grown = Policy(blocked_number_types={"VOIP", *SPEC_BLOCKED_NUMBER_TYPES}).blocked_number_types
    assert grown == SPEC_BLOCKED_NUMBER_TYPES | {"VOIP"}
    for dropped in sorted(SPEC_BLOCKED_NUMBER_TYPES):
        with pytest.raises(ConfigurationError) as caught:
            Policy(blocked_number_types=SPEC_BLOCKED_NUMBER_TYPES - {dropped})
        assert "Policy.blocked_number_types" in caught.value.error_message
    with pytest.raises(ConfigurationError):
        Policy(blocked_number_types=frozenset())


def test_policy_test_numbers_are_normalised_to_e164() -> None:
    assert Policy(test_numbers=["+1 (000) 000-0000", "tel:+14155550100"]).test_numbers == {
        "+10000000000", "+14155550100"}


def test_policy_from_toml_reads_the_field_names(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text('[policy]\notp_ttl = 90\nallowed_regions = ["US"]\nsend_limit_per_member = [3, 300]\n')
    p = Policy.from_toml(path)
    assert (p.otp_ttl, p.allowed_regions, p.send_limit_per_member) == (90, frozenset({"US"}), (3, 300.0))


def test_policy_from_mapping_refuses_unknown_settings_and_bad_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError) as caught:
        Policy.from_mapping({"otp_tll": 90})
    assert "otp_tll" in caught.value.error_message
    bad = tmp_path / "bad.toml"
    bad.write_text("otp_ttl = [")
    with pytest.raises(ConfigurationError):
        Policy.from_toml(bad)
    with pytest.raises(ConfigurationError):
        Policy.from_toml(tmp_path / "missing.toml")


def test_policy_from_toml_refuses_naming_the_file_the_key_and_the_value(tmp_path: Path) -> None:
    """Policy.from_toml reads through the policy files' one path: the refusal says where, which key and what."""
    path = tmp_path / "policy.toml"
    path.write_text('[policy]\notp_ttl = "two minutes"\n')
    with pytest.raises(ConfigurationError) as caught:
        Policy.from_toml(path)
    assert caught.value.error_message.startswith(f"{path}: [policy] otp_ttl = 'two minutes': ")
    path.write_text("otp_ttl = 90\n")  # settings at the top level are a policy too
    assert Policy.from_toml(path).otp_ttl == 90


@pytest.mark.parametrize("field", ["allowed_regions", "unsupported_regions", "blocked_number_types"])
def test_an_unhashable_item_in_a_collection_setting_is_a_configuration_error(field: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        Policy(**{field: [["US"]]})
    assert field in caught.value.error_message
