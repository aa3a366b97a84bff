"""The public surface (spec §1, §9, §10): what each public module exports, what importing it pulls in,
the typing marker, and a strict mypy run over tests/typing/api_usage.py."""

from __future__ import annotations

import importlib
import inspect
import re
import subprocess
import sys
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

import mfa_flow
from mfa_flow import AsyncMfaFlow, MfaError, MfaFlow
from tests.helpers_process import python_output
from tests.helpers_send import (
    M_TOTP,
    M_UNVERIFIED,
    M_VERIFIED,
    ORG,
    Env,
    make_env,
    primary_ist,
    totp_session,
)

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = Path(mfa_flow.__file__).resolve().parent

#: Named by spec §1 and §3 as importable from ``mfa_flow``.
SPEC_TOP_LEVEL = {
    "MfaFlow", "Policy", "Organization", "Member", "MfaError", "ConfigurationError", "Event", "SendContext",
    "PrimaryAuthResult", "SendResult", "AuthenticateResult", "MemberSession", "AuthenticationFactor",
    "SessionCheck", "MfaRequired", "MemberOptions", "diagram",
}
RESULT_CLASSES = ("PrimaryAuthResult", "SendResult", "AuthenticateResult", "MemberSession", "AuthenticationFactor",
                  "SessionCheck", "MfaRequired", "MemberOptions")
#: Spec §1, §9 and §10, module by module.
SPEC_SUBMODULES = {
    "mfa_flow.testing": {"FakeClock", "FakeTransport"},
    "mfa_flow.stores": {"MemoryStore", "Store"},
    "mfa_flow.transports": {"SmsMessage", "DeliveryRejected", "DeliveryUnknown", "ConsoleGateway", "SmsGateway",
                            "CodeProvider", "RemoteCodeProvider"},
    # Stytch mode (§11), the production gateways (§6.11) and the emulator (§12): each its own module, loaded
    # only when used (they import httpx or the emulator's extra)
    "mfa_flow.transports.stytch": {"StytchProvider", "AsyncStytchProvider", "StytchDirectory",
                                   "AsyncStytchDirectory"},
    "mfa_flow.transports.twilio": {"TwilioGateway", "AsyncTwilioGateway"},
    "mfa_flow.transports.webhook": {"WebhookGateway", "AsyncWebhookGateway", "verify_webhook"},
    "mfa_flow.emulator": {"create_app"},
    "mfa_flow.errors": {"MfaError", "ProviderError", "UnexpectedResponse"},
}


def exported_names(module: types.ModuleType) -> set[str]:
    """Public names a package exports: not underscored and not a submodule; plus ``__version__``."""
    names = {n for n, v in vars(module).items() if not n.startswith("_") and not isinstance(v, types.ModuleType)}
    if hasattr(module, "__version__"):
        names.add("__version__")
    return names


# --------------------------------------------------------------------------------------------- mfa_flow


def test_all_is_the_sorted_set_of_public_names() -> None:
    assert mfa_flow.__all__ == sorted(exported_names(mfa_flow))


def test_all_holds_what_the_spec_names() -> None:
    assert set(mfa_flow.__all__) >= SPEC_TOP_LEVEL


@pytest.mark.parametrize("name", sorted(mfa_flow.__all__))
def test_every_exported_name_resolves(name: str) -> None:
    assert getattr(mfa_flow, name) is not None


def _login_results() -> list[object]:
    """Real results of one login: primary auth (with its MfaRequired), an explicit send, the authenticate (with
    its member session and factors), a session check, and the member and organization records they carry."""
    env = make_env()
    f = env.flow
    primary = f.authenticate_primary(ORG, M_VERIFIED, "email_magic_link")
    ist = primary.intermediate_session_token
    assert primary.mfa_required is not None
    sent = f.send_sms_otp(ORG, M_VERIFIED, intermediate_session_token=ist)
    done = f.authenticate_sms_otp(ORG, M_VERIFIED, env.transport.sent[-1].code, intermediate_session_token=ist)
    assert done.member_session is not None
    check = f.authenticate_session(session_token=done.session_token)
    return [primary, primary.mfa_required, primary.mfa_required.member_options, sent, done, done.member_session,
            *done.member_session.authentication_factors, check, done.member, done.organization]


def test_result_classes_are_frozen_attrs_classes() -> None:
    instances: dict[str, object] = {}
    for obj in _login_results():
        instances.setdefault(type(obj).__name__, obj)
    # §3 results and the §2 records they carry are frozen: a caller cannot edit what the flow answered
    for name in (*RESULT_CLASSES, "Member", "Organization"):
        cls = getattr(mfa_flow, name)
        assert attrs.has(cls), name
        if name in RESULT_CLASSES:
            assert callable(getattr(cls, "to_dict", None)), name
        obj = instances[name]
        assert type(obj) is cls, name
        for field in attrs.fields(cls):
            before = getattr(obj, field.name)
            with pytest.raises(attrs.exceptions.FrozenInstanceError):
                setattr(obj, field.name, "tampered")
            with pytest.raises(attrs.exceptions.FrozenInstanceError):
                delattr(obj, field.name)
            assert getattr(obj, field.name) is before, (name, field.name)
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            obj.mfa_verified = True  # type: ignore[attr-defined]


def test_error_classes() -> None:
    assert issubclass(mfa_flow.MfaError, Exception)
    assert issubclass(mfa_flow.ConfigurationError, mfa_flow.MfaError)
    assert issubclass(mfa_flow.ConfigurationError, ValueError)


def test_version_is_a_string() -> None:
    assert isinstance(mfa_flow.__version__, str)
    assert mfa_flow.__version__


# ------------------------------------------------------------------------ the public methods' arguments


def public_methods(cls: type) -> dict[str, Callable[..., Any]]:
    return {name: fn for name, fn in inspect.getmembers(cls, inspect.isfunction) if not name.startswith("_")}


#: Every parameter of every public method (spec §1), in order.
PUBLIC_SIGNATURES: dict[str, tuple[str, ...]] = {
    "authenticate_primary": ("organization_id", "member_id", "method", "session_token", "locale"),
    "record_primary_auth": ("response",),  # Stytch mode (§11): Stytch's own answer, as the application received it
    "send_sms_otp": ("organization_id", "member_id", "mfa_phone_number", "locale", "intermediate_session_token",
                     "session_token", "session_jwt"),
    "authenticate_sms_otp": ("organization_id", "member_id", "code", "intermediate_session_token", "session_token",
                             "session_jwt", "session_duration_minutes", "set_mfa_enrollment", "set_default_mfa"),
    "authenticate_session": ("session_token", "session_jwt"),
    "record_mfa_factor": ("organization_id", "member_id", "factor_type", "intermediate_session_token",
                          "session_token"),
    "delete_mfa_phone_number": ("organization_id", "member_id"),
    "get_member": ("organization_id", "member_id"),
    "get_organization": ("organization_id",),
    "revoke_session": ("member_session_id", "session_token", "session_jwt", "member_id"),
    "list_member_sessions": ("organization_id", "member_id"),
    "unlock_member": ("organization_id", "member_id"),
}
#: Names a parameter would carry if it let the caller assert something about the member's factors.
CALLER_ASSERTS_A_FACTOR = re.compile(
    r"verif|factor|enrol|default_mfa|trust|skip|bypass|done|complete|passed|step_up|authenticated|force|status|lock",
    re.IGNORECASE,
)
#: The documented ones: the trusted hook for a factor the caller verified itself (record_mfa_factor), and the
#: enrolment/default settings applied only by a successful code (authenticate_sms_otp).
DOCUMENTED_CALLER_ASSERTIONS = {
    ("record_mfa_factor", "factor_type"),
    ("authenticate_sms_otp", "set_mfa_enrollment"),
    ("authenticate_sms_otp", "set_default_mfa"),
}


@pytest.mark.parametrize("cls", [MfaFlow, AsyncMfaFlow], ids=["MfaFlow", "AsyncMfaFlow"])
def test_u19_no_entry_point_accepts_verified_from_the_caller(cls: type) -> None:
    """Security U19: no public method has a parameter by which the caller marks a phone verified, a factor done
    or MFA skipped, except the documented ones; and none takes ``*args``/``**kwargs`` to slip one in."""
    methods = public_methods(cls)
    assert set(methods) == set(PUBLIC_SIGNATURES)
    seen: set[tuple[str, str]] = set()
    for name, fn in methods.items():
        params = list(inspect.signature(fn).parameters.values())
        assert params[0].name == "self", name
        params = params[1:]
        assert tuple(p.name for p in params) == PUBLIC_SIGNATURES[name], name
        for p in params:
            assert p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD), (name, p.name)
            if CALLER_ASSERTS_A_FACTOR.search(p.name):
                assert (name, p.name) in DOCUMENTED_CALLER_ASSERTIONS, (name, p.name)
                seen.add((name, p.name))
    assert seen == DOCUMENTED_CALLER_ASSERTIONS


@pytest.mark.parametrize("factor_type", ["totp", "recovery_code"])
def test_u19_record_mfa_factor_never_marks_a_phone_verified(factor_type: str) -> None:
    """The documented hook records the caller's own factor; it does not verify the member's phone, enrol the
    member or put an SMS factor on the session."""
    env = make_env()
    before = env.flow.get_member(ORG, M_UNVERIFIED)
    assert (before.mfa_phone_number_verified, before.mfa_enrolled) == (False, False)
    ist = primary_ist(env, ORG, M_UNVERIFIED)
    res = env.flow.record_mfa_factor(ORG, M_UNVERIFIED, factor_type, intermediate_session_token=ist)
    assert res.session_token
    assert res.member_session is not None
    assert ("otp", "sms") not in [(f.type, f.delivery_method) for f in res.member_session.authentication_factors]
    assert env.flow.get_member(ORG, M_UNVERIFIED) == before
    assert res.member == before


STRING_ARGUMENTS = ("organization_id", "member_id", "intermediate_session_token", "session_token", "session_jwt")
TOKEN_ARGUMENTS = STRING_ARGUMENTS[2:]
#: Methods that require one token (spec §4: authenticate without a token is no_session_arguments).
TOKEN_REQUIRED = {"authenticate_sms_otp", "authenticate_session", "record_mfa_factor"}


def _baseline(env: Env, method: str) -> dict[str, Any]:
    """Valid keyword arguments for ``method``: the call goes through."""
    if method == "get_organization":
        return {"organization_id": ORG}
    if method in ("get_member", "delete_mfa_phone_number"):
        return {"organization_id": ORG, "member_id": M_UNVERIFIED}
    if method == "authenticate_primary":
        return {"organization_id": ORG, "member_id": M_TOTP, "method": "oauth",
                "session_token": totp_session(env, ORG, M_TOTP)}
    if method == "send_sms_otp":
        return {"organization_id": ORG, "member_id": M_UNVERIFIED,
                "intermediate_session_token": primary_ist(env, ORG, M_UNVERIFIED)}
    if method == "authenticate_sms_otp":
        ist = primary_ist(env, ORG, M_UNVERIFIED)  # with the automatic send
        return {"organization_id": ORG, "member_id": M_UNVERIFIED, "code": env.transport.sent[-1].code,
                "intermediate_session_token": ist}
    if method == "authenticate_session":
        return {"session_token": totp_session(env, ORG, M_TOTP)}
    if method == "revoke_session":
        return {"session_token": totp_session(env, ORG, M_TOTP)}
    if method in ("list_member_sessions", "unlock_member"):
        return {"organization_id": ORG, "member_id": M_UNVERIFIED}
    if method == "record_mfa_factor":
        return {"organization_id": ORG, "member_id": M_TOTP, "factor_type": "totp",
                "intermediate_session_token": primary_ist(env, ORG, M_TOTP)}
    raise AssertionError(f"no baseline for the public method {method}: add one")


def _non_str_cases() -> Iterator[Any]:
    for method, fn in sorted(public_methods(MfaFlow).items()):
        params = inspect.signature(fn).parameters
        for arg in STRING_ARGUMENTS:
            if arg not in params:
                continue
            kinds = ["int", "bytes", "list"]
            if arg in ("organization_id", "member_id") or method in TOKEN_REQUIRED:
                kinds.append("None")  # None where a value is required
            for kind in kinds:
                yield pytest.param(method, arg, kind, id=f"{method}-{arg}-{kind}")


@pytest.mark.parametrize(("method", "arg", "kind"), list(_non_str_cases()))
def test_non_str_argument_is_an_mfa_error_never_a_bare_type_error(method: str, arg: str, kind: str) -> None:
    """Spec §4: a non-``str`` where a string is expected is an MfaError (a bare TypeError would fail this test)."""
    env = make_env()
    fn = getattr(env.flow, method)
    kwargs = _baseline(env, method)
    good = str(kwargs.get(arg, "eyJhbGciOiJIUzI1NiJ9.e30.c2ln"))
    bad = {"int": 12345, "bytes": good.encode(), "list": [good], "None": None}[kind]
    call = dict(kwargs)
    # the bad value is the call's only token (revoke_session's selectors, member_id among them, are exclusive)
    exclusive = (*TOKEN_ARGUMENTS, "member_id") if method == "revoke_session" else TOKEN_ARGUMENTS
    if arg in exclusive:
        for token in exclusive:
            call.pop(token, None)
    call[arg] = bad
    mark = env.mark()
    with pytest.raises(MfaError) as caught:
        fn(**call)
    # None leaves a required token out; revoke_session takes no token at all then, which is its bad_request
    expected = ("no_session_arguments" if kind == "None" and arg in TOKEN_ARGUMENTS and method != "revoke_session"
                else "bad_request")
    assert (caught.value.error_type, caught.value.status_code) == (expected, 400), str(caught.value)
    assert env.sent_since(mark) == []
    # the argument alone decided: the same call with the valid value goes through
    fn(**kwargs)


# ------------------------------------------------------------------------------------- public submodules


@pytest.mark.parametrize("module_name", sorted(SPEC_SUBMODULES))
def test_submodule_exports_what_the_spec_lists(module_name: str) -> None:
    module = importlib.import_module(module_name)
    exported = set(module.__all__)
    assert exported >= SPEC_SUBMODULES[module_name]
    # sorted as ruff's RUF022 keeps it: CONSTANTS, then Classes, then functions, each alphabetically
    assert module.__all__ == sorted(exported, key=lambda n: (not n.isupper(), not n[:1].isupper(), n)), \
        "__all__ is kept sorted, without duplicates"
    for name in exported:
        assert hasattr(module, name), f"{module_name}.__all__ names {name}, which does not exist"
        assert not name.startswith("_")


def test_store_and_gateway_protocols_accept_the_builtins() -> None:
    from mfa_flow.stores import MemoryStore, Store
    from mfa_flow.testing import FakeTransport
    from mfa_flow.transports import CodeProvider, ConsoleGateway, SmsGateway

    for protocol in (Store, SmsGateway, CodeProvider):
        assert getattr(protocol, "_is_protocol", False), protocol
    assert isinstance(MemoryStore(), Store)
    assert MemoryStore.durable is False
    assert isinstance(ConsoleGateway(), SmsGateway)
    assert isinstance(FakeTransport(), SmsGateway)


def test_delivery_outcomes_are_exceptions() -> None:
    from mfa_flow.transports import DeliveryRejected, DeliveryUnknown

    assert issubclass(DeliveryRejected, Exception)
    assert issubclass(DeliveryUnknown, Exception)
    assert not issubclass(DeliveryRejected, DeliveryUnknown)
    assert not issubclass(DeliveryUnknown, DeliveryRejected)


def test_sms_message_fields() -> None:
    from mfa_flow.transports import SmsMessage

    fields = set(inspect.signature(SmsMessage).parameters)
    assert fields >= {"to", "code", "locale", "member_id", "organization_id"}


# ------------------------------------------------------------------------------------ what imports import


def test_importing_testing_does_not_import_pytest() -> None:
    out = python_output("import sys, mfa_flow.testing; "
                        "print(sorted(m for m in ('pytest', '_pytest') if m in sys.modules))")
    assert out == "[]"


def test_importing_mfa_flow_does_not_import_httpx() -> None:
    out = python_output("import sys, mfa_flow; print('httpx' in sys.modules)")
    assert out == "False"


def test_package_is_typed() -> None:
    assert (PACKAGE / "py.typed").is_file()


@pytest.mark.timeout(60)
def test_typed_api_usage_passes_mypy_strict(tmp_path: Path) -> None:
    """tests/typing/api_usage.py exercises the public API with types; mypy --strict must accept it."""
    target = ROOT / "tests" / "typing" / "api_usage.py"
    assert target.is_file()
    done = subprocess.run(  # noqa: S603 - this interpreter, with arguments fixed by the test
        [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(tmp_path / "mypy-cache"),
         "--no-color-output", "--no-error-summary", str(target.relative_to(ROOT))],
        cwd=ROOT, capture_output=True, text=True, timeout=55, check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_literal_types_hold_exactly_the_values_the_flow_accepts() -> None:
    from typing import get_args

    from mfa_flow.core import PRIMARY_FACTORS
    from mfa_flow.errors import ERROR_STATUS
    from mfa_flow.records import MFA_POLICIES

    assert set(get_args(mfa_flow.ErrorType)) == set(ERROR_STATUS)
    assert set(get_args(mfa_flow.PrimaryMethod)) == set(PRIMARY_FACTORS)
    assert set(get_args(mfa_flow.MfaPolicy)) == set(MFA_POLICIES) == {"OPTIONAL", "REQUIRED_FOR_ALL"}


@pytest.mark.timeout(60)
def test_mypy_catches_a_misspelt_method_policy_or_error_type(tmp_path: Path) -> None:
    """The point of the Literal types: "saml", "REQUIRED" and a misspelt error_type are type errors."""
    source = tmp_path / "typo.py"
    source.write_text(
        "from mfa_flow import MfaError, MfaFlow, Organization\n"
        "def f(flow: MfaFlow, exc: MfaError) -> bool:\n"
        "    flow.authenticate_primary('org', 'member', 'saml')\n"
        "    Organization('org', mfa_policy='REQUIRED')\n"
        "    return exc.error_type == 'otp_code_not_fund'\n", "utf-8")
    done = subprocess.run(  # noqa: S603 - this interpreter, with arguments fixed by the test
        [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(tmp_path / "mypy-cache"), "--no-color-output",
         str(source)], cwd=ROOT, capture_output=True, text=True, timeout=55, check=False,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    lines = [line for line in done.stdout.splitlines() if ": error:" in line]
    assert [line.split(":")[1] for line in lines] == ["3", "4", "5"], done.stdout
