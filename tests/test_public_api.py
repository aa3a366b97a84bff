"""The public surface (spec §1, §9, §10): what each public module exports, what importing it pulls in,
the typing marker, and a strict mypy run over tests/typing/api_usage.py."""

from __future__ import annotations

import importlib
import inspect
import subprocess
import sys
import types
from pathlib import Path

import pytest

import mfa_flow

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
                            "CodeProvider"},
}


def run_python(code: str) -> str:
    """Run ``code`` in a fresh interpreter from the project root; return its stdout."""
    done = subprocess.run(  # noqa: S603 - this interpreter, with code fixed by the tests
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


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


def test_result_classes_are_frozen_attrs_classes() -> None:
    import attrs

    for name in RESULT_CLASSES:
        cls = getattr(mfa_flow, name)
        assert attrs.has(cls), name
        assert callable(getattr(cls, "to_dict", None)), name


def test_error_classes() -> None:
    assert issubclass(mfa_flow.MfaError, Exception)
    assert issubclass(mfa_flow.ConfigurationError, mfa_flow.MfaError)
    assert issubclass(mfa_flow.ConfigurationError, ValueError)


def test_version_is_a_string() -> None:
    assert isinstance(mfa_flow.__version__, str)
    assert mfa_flow.__version__


# ------------------------------------------------------------------------------------- public submodules


@pytest.mark.parametrize("module_name", sorted(SPEC_SUBMODULES))
def test_submodule_exports_what_the_spec_lists(module_name: str) -> None:
    module = importlib.import_module(module_name)
    exported = set(module.__all__)
    assert exported >= SPEC_SUBMODULES[module_name]
    assert module.__all__ == sorted(exported), "__all__ is kept sorted, without duplicates"
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
    out = run_python("import sys, mfa_flow.testing; "
                     "print(sorted(m for m in ('pytest', '_pytest') if m in sys.modules))")
    assert out == "[]"


def test_importing_mfa_flow_does_not_import_httpx() -> None:
    out = run_python("import sys, mfa_flow; print('httpx' in sys.modules)")
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
