"""What ``import mfa_flow`` loads (issue 11): the synchronous flow on the memory store and nothing more.

Async, the durable stores, the emulator, httpx and the Stytch provider load on first use, and still work
when touched; so do the standard-library modules that only functions off a login's path use. Each check
runs in a fresh interpreter: this process has long imported everything. The import time itself is measured
by benchmarks/bench_import.py, not asserted here.
"""

from __future__ import annotations

import json
import os
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests.helpers_process import python_output, run_python

#: Every mfa_flow module ``import mfa_flow`` loads. A new module on this list is a new import-time cost:
#: add it here only if the synchronous flow needs it on every call.
EAGER_MODULES = frozenset({
    "mfa_flow", "mfa_flow._lazy", "mfa_flow._numbers", "mfa_flow._version", "mfa_flow.arguments", "mfa_flow.clock",
    "mfa_flow.core", "mfa_flow.crypto", "mfa_flow.diagram", "mfa_flow.directory", "mfa_flow.errors",
    "mfa_flow.events", "mfa_flow.flow", "mfa_flow.machine", "mfa_flow.phone", "mfa_flow.policy",
    "mfa_flow.records", "mfa_flow.results", "mfa_flow.state", "mfa_flow.transports", "mfa_flow.wire",
    "mfa_flow.engine", "mfa_flow.engine.authenticate", "mfa_flow.engine.calls", "mfa_flow.engine.context",
    "mfa_flow.engine.effects", "mfa_flow.engine.factor", "mfa_flow.engine.lifecycle", "mfa_flow.engine.member",
    "mfa_flow.engine.primary", "mfa_flow.engine.reading", "mfa_flow.engine.send",
    "mfa_flow.engine.session_check", "mfa_flow.engine.sessions",
    "mfa_flow.stores", "mfa_flow.stores._base", "mfa_flow.stores.memory",
})

#: Loaded only by what needs them: asyncio (and concurrent.futures) by AsyncMfaFlow and the SQLite stores,
#: sqlite3 and redis by their stores, httpx by the HTTP gateways and the Stytch provider, starlette and uvicorn
#: by the emulator.
LAZY_MODULES = (
    "asyncio", "concurrent.futures", "sqlite3", "httpx", "starlette", "uvicorn", "redis",
    "mfa_flow.aio", "mfa_flow.stores.sqlite", "mfa_flow.stores.redis", "mfa_flow.transports.stytch",
    "mfa_flow.emulator",
)

#: Standard-library modules that only functions off a login's path use, so they import them where they are
#: used: Graphviz's call (diagram: subprocess, shutil), the emulator's bodies and request ids (wire: json,
#: uuid), policy files (files: tomllib), the shipped region list (policy: importlib.resources, and pathlib
#: with it) and the escaping of an id holding ':' or '%' (state: urllib.parse).
DEFERRED_MODULES = (
    "subprocess", "shutil", "json", "uuid", "tomllib", "importlib.resources", "pathlib", "urllib.parse",
)

ORG, MEMBER, PHONE = "organization-test-1", "member-test-1", "+14155550123"

#: A full login (primary auth with the automatic send, then the right code) on ``flow``, awaited when ``run``
#: is ``asyncio.run``; prints what it returned.
LOGIN = f"""
from mfa_flow import Member, Organization
from mfa_flow.testing import FakeTransport

def login(make, run=lambda step: step, **kwargs):
    transport = FakeTransport()
    flow = make(transport=transport, **kwargs)
    flow.directory.put_organization(Organization({ORG!r}, organization_slug="acme", mfa_policy="REQUIRED_FOR_ALL"))
    flow.directory.put_member(Member({MEMBER!r}, {ORG!r}, email_address="a@example.com",
                                     mfa_phone_number={PHONE!r}, mfa_phone_number_verified=True))
    primary = run(flow.authenticate_primary({ORG!r}, {MEMBER!r}, "password"))
    done = run(flow.authenticate_sms_otp({ORG!r}, {MEMBER!r}, transport.sent[-1].code,
                                         intermediate_session_token=primary.intermediate_session_token))
    return {{"mfa_required": primary.mfa_required is not None, "texts": len(transport.sent),
             "session": bool(done.session_token),
             "factors": [[f.type, f.delivery_method] for f in done.member_session.authentication_factors]}}
"""

#: What a login answers on any store: MFA asked, one text sent, a session with the password and SMS factors.
LOGGED_IN = {"mfa_required": True, "texts": 1, "session": True,
             "factors": [["password", "knowledge"], ["otp", "sms"]]}


def fresh(code: str) -> Any:
    """Run ``code`` in a fresh interpreter; it prints one JSON value, returned decoded."""
    return json.loads(python_output(textwrap.dedent(code)))


def fresh_without_site(code: str) -> Any:
    """:func:`fresh` under ``-S``: site's ``.pth`` files may load some of :data:`DEFERRED_MODULES` at startup
    (here one imports certifi, which loads pathlib, importlib.resources and urllib.parse), and a module already
    loaded would hide ``import mfa_flow`` loading it too."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    done = run_python("-S", "-c", textwrap.dedent(code), env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_import_mfa_flow_loads_exactly_the_eager_modules() -> None:
    loaded = fresh("""
        import json, sys
        import mfa_flow
        print(json.dumps(sorted(m for m in sys.modules if m == "mfa_flow" or m.startswith("mfa_flow."))))
    """)
    assert set(loaded) == EAGER_MODULES


def test_import_mfa_flow_leaves_async_durable_stores_http_and_emulator_unloaded() -> None:
    found = fresh(f"""
        import importlib.util, json, sys
        import mfa_flow
        loaded = [m for m in {LAZY_MODULES!r} if m in sys.modules]
        # each name is a module that exists, so its absence above means something
        missing = [m for m in {LAZY_MODULES!r} if importlib.util.find_spec(m) is None]
        print(json.dumps([loaded, missing]))
    """)
    assert found == [[], []]


def test_import_mfa_flow_leaves_the_modules_only_functions_off_a_login_path_use_unloaded() -> None:
    found = fresh_without_site(f"""
        import sys
        at_startup = [m for m in {DEFERRED_MODULES!r} if m in sys.modules]
        import mfa_flow
        loaded = [m for m in {DEFERRED_MODULES!r} if m in sys.modules]
        import importlib.util, json
        # none was loaded before, so none loaded after is a finding; each name is a module that exists
        missing = [m for m in {DEFERRED_MODULES!r} if importlib.util.find_spec(m) is None]
        print(json.dumps([at_startup, loaded, missing]))
    """)
    assert found == [[], [], []]


def test_functions_off_a_login_path_import_what_they_use_when_first_called() -> None:
    """In a process where ``import mfa_flow`` left them unloaded (the test above); the diagram's Graphviz call is
    tests/test_cli.py's (it needs dot)."""
    found = fresh_without_site("""
        import re
        from mfa_flow import Policy
        from mfa_flow.policy import shipped_unsupported_regions
        from mfa_flow.state import keys
        from mfa_flow.wire import new_request_id, parse_body
        regions = Policy().unsupported_regions
        request_id = re.fullmatch(r"request-id-test-[0-9a-f-]{36}", new_request_id()) is not None
        answers = [keys.subject("org:1", "m"), keys.subject("org", "1:m"), keys.member("o%", "m"),
                   parse_body(b'{"a": [1]}'), request_id, regions == shipped_unsupported_regions() and len(regions) > 0]
        import json
        print(json.dumps(answers))
    """)
    assert found == [
        ["member:org%3A1:m", "guard:org%3A1:m", "code:org%3A1:m"],
        ["member:org:1%3Am", "guard:org:1%3Am", "code:org:1%3Am"],
        "member:o%25:m",
        {"a": [1]},
        True,
        True,
    ]


def test_async_mfa_flow_loads_on_first_use_and_runs_a_login() -> None:
    found = fresh(LOGIN + """
import json, sys
import mfa_flow
before = [m for m in ("mfa_flow.aio", "asyncio") if m in sys.modules]
cls = mfa_flow.AsyncMfaFlow
after = [m for m in ("mfa_flow.aio", "asyncio") if m in sys.modules]
from mfa_flow import AsyncMfaFlow
import asyncio
import mfa_flow.aio
same = cls is AsyncMfaFlow is mfa_flow.aio.AsyncMfaFlow and "AsyncMfaFlow" in vars(mfa_flow)
print(json.dumps([before, after, same, login(cls, asyncio.run)]))
""")
    assert found == [[], ["mfa_flow.aio", "asyncio"], True, LOGGED_IN]


def test_sqlite_stores_load_on_first_use_and_run_a_login(tmp_path: Path) -> None:
    found = fresh(LOGIN + f"""
import json, sys
import mfa_flow.stores
before = [m for m in ("mfa_flow.stores.sqlite", "sqlite3") if m in sys.modules]
SqliteStore = mfa_flow.stores.SqliteStore
after = [m for m in ("mfa_flow.stores.sqlite", "sqlite3") if m in sys.modules]
from mfa_flow import MfaFlow
from mfa_flow.stores import AsyncSqliteStore
import asyncio
sync = login(MfaFlow, store=SqliteStore({str(tmp_path / "sync.db")!r}), secret_key=b"k" * 32)
asynchronous = login(mfa_flow.AsyncMfaFlow, asyncio.run, store=AsyncSqliteStore({str(tmp_path / "async.db")!r}),
                     secret_key=b"k" * 32)
print(json.dumps([before, after, sync, asynchronous]))
""")
    assert found == [[], ["mfa_flow.stores.sqlite", "sqlite3"], LOGGED_IN, LOGGED_IN]
    assert (tmp_path / "sync.db").stat().st_size > 0
    assert (tmp_path / "async.db").stat().st_size > 0


def test_redis_store_names_load_on_first_use() -> None:
    """Loading only: a login on Redis is tests/test_redis_store.py's (it needs a server)."""
    found = fresh("""
        import json, sys
        import mfa_flow.stores as stores
        before = "mfa_flow.stores.redis" in sys.modules
        names = [stores.RedisStore.__module__, stores.AsyncRedisStore.__module__,
                 issubclass(stores.EvictionPolicyWarning, Warning)]
        from mfa_flow.stores.redis import RedisStore
        print(json.dumps([before, "mfa_flow.stores.redis" in sys.modules, names, RedisStore is stores.RedisStore]))
    """)
    assert found == [False, True, ["mfa_flow.stores.redis", "mfa_flow.stores.redis", True], True]


@pytest.mark.parametrize("package", ["mfa_flow", "mfa_flow.stores"])
def test_dir_lists_every_exported_name_without_loading_it(package: str) -> None:
    found = fresh(f"""
        import importlib, json, sys
        package = importlib.import_module({package!r})
        listed = set(package.__all__) - set(dir(package))
        print(json.dumps([sorted(listed), [m for m in {LAZY_MODULES!r} if m in sys.modules]]))
    """)
    assert found == [[], []]


@pytest.mark.parametrize("package", ["mfa_flow", "mfa_flow.stores"])
def test_star_import_binds_every_exported_name(package: str) -> None:
    found = fresh(f"""
        import importlib, json
        namespace = {{}}
        exec("from {package} import *", namespace)
        package = importlib.import_module({package!r})
        print(json.dumps([sorted(set(package.__all__) - set(namespace)),
                          [n for n in package.__all__ if namespace[n] is not getattr(package, n)]]))
    """)
    assert found == [[], []]


@pytest.mark.parametrize("package", ["mfa_flow", "mfa_flow.stores"])
def test_an_unknown_name_is_an_attribute_error_naming_it(package: str) -> None:
    found = fresh(f"""
        import importlib, json
        package = importlib.import_module({package!r})
        try:
            package.NoSuchName
        except AttributeError as exc:
            print(json.dumps([str(exc), hasattr(package, "NoSuchName")]))
    """)
    assert found == [f"module {package!r} has no attribute 'NoSuchName'", False]

