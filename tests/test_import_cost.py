"""What ``import mfa_flow`` loads (issue 11): the synchronous flow on the memory store and nothing more.

Async, the durable stores, the emulator, httpx and the Stytch provider load on first use, and still work
when touched. Each check runs in a fresh interpreter: this process has long imported everything. The import
time itself is measured by benchmarks/bench_import.py, not asserted here.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests.test_public_api import run_python

#: Every mfa_flow module ``import mfa_flow`` loads. A new module on this list is a new import-time cost:
#: add it here only if the synchronous flow needs it on every call.
EAGER_MODULES = frozenset({
    "mfa_flow", "mfa_flow._numbers", "mfa_flow._version", "mfa_flow.arguments", "mfa_flow.clock",
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
    return json.loads(run_python(textwrap.dedent(code)))


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

