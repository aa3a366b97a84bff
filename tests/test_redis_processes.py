"""Several processes, each with its own MfaFlow and RedisStore on one Redis and one key, are one deployment."""

from __future__ import annotations

from functools import partial
from typing import Any

import pytest

from mfa_flow.state import GuardState, keys
from mfa_flow.stores import RedisStore
from mfa_flow.testing import FakeClock, FakeTransport
from tests.test_sqlite_store import MEMBER, ORG, login, make_flow, redeem_across_processes

PREFIX = "processes:"


@pytest.mark.timeout(120)
def test_c7_processes_sharing_one_redis_redeem_a_code_once(redis_url: str, redis_db: Any) -> None:
    """C7 across processes: 4 processes × 8 threads submit the same correct code: exactly one session."""
    clock, transport = FakeClock(), FakeTransport()
    store = RedisStore(redis_url, prefix=PREFIX)
    try:
        flow = make_flow(store, clock, transport)
        ist, code = login(flow, transport)
        tokens = redeem_across_processes(partial(RedisStore, redis_url, prefix=PREFIX), clock.now(), ist, code)
        with store.transaction() as tx:
            guard = tx.read([keys.guard(ORG, MEMBER)]).get(keys.guard(ORG, MEMBER))
        assert guard is None or (isinstance(guard.value, GuardState) and guard.value.failures == 0)
        assert flow.authenticate_session(session_token=tokens[0]).member_session.member_id == MEMBER
    finally:
        store.close()
