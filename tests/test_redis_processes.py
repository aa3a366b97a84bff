"""Several processes, each with its own MfaFlow and RedisStore on one Redis and one key, are one deployment."""

from __future__ import annotations

import multiprocessing
import os
from collections import Counter
from typing import Any

import pytest

from mfa_flow.state import GuardState, keys
from mfa_flow.stores import RedisStore
from mfa_flow.testing import FakeClock, FakeTransport
from tests.test_sqlite_store import (
    C1_LOSER_ERRORS,
    MEMBER,
    ORG,
    PROCESSES,
    THREADS_PER_PROCESS,
    login,
    make_flow,
    race,
    tally,
)

PREFIX = "processes:"


def redeem_in_process(url: str, now: float, ist: str, code: str, barrier: Any, results: Any) -> None:
    """A process of its own: a flow on the shared Redis and key, 8 threads submitting the same code."""
    try:
        store = RedisStore(url, prefix=PREFIX)
        try:
            flow = make_flow(store, FakeClock(now))
            barrier.wait(60)
            outcomes = race(THREADS_PER_PROCESS, lambda _: flow.authenticate_sms_otp(
                ORG, MEMBER, code, intermediate_session_token=ist))
        finally:
            store.close()
        tokens, errors, others = tally(outcomes)
        results.put((os.getpid(), tokens, dict(errors), others))
    except BaseException as exc:
        results.put((os.getpid(), [], {}, [repr(exc)]))


@pytest.mark.timeout(120)
def test_processes_sharing_one_redis_redeem_a_code_once(redis_url: str, redis_db: Any) -> None:
    """C7 across processes: 4 processes × 8 threads submit the same correct code: exactly one session."""
    clock, transport = FakeClock(), FakeTransport()
    store = RedisStore(redis_url, prefix=PREFIX)
    try:
        flow = make_flow(store, clock, transport)
        ist, code = login(flow, transport)
        context = multiprocessing.get_context("spawn")
        barrier = context.Barrier(PROCESSES)
        results = context.Queue()
        processes = [context.Process(target=redeem_in_process,
                                     args=(redis_url, clock.now(), ist, code, barrier, results))
                     for _ in range(PROCESSES)]
        for process in processes:
            process.start()
        try:
            answers = [results.get(timeout=100) for _ in processes]
        finally:
            for process in processes:
                process.join(10)
                if process.is_alive():
                    process.kill()
                    process.join()
        assert [process.exitcode for process in processes] == [0] * PROCESSES
        assert [other for *_, others in answers for other in others] == []
        tokens = [token for _, found, _, _ in answers for token in found]
        errors: Counter[str] = Counter()
        for _, _, found_errors, _ in answers:
            errors.update(found_errors)
        assert len(tokens) == 1, f"{len(tokens)} sessions from one code"
        assert sum(errors.values()) == PROCESSES * THREADS_PER_PROCESS - 1
        assert set(errors) <= C1_LOSER_ERRORS, errors
        with store.transaction() as tx:
            guard = tx.read([keys.guard(ORG, MEMBER)]).get(keys.guard(ORG, MEMBER))
        assert guard is None or (isinstance(guard.value, GuardState) and guard.value.failures == 0)
        assert flow.authenticate_session(session_token=tokens[0]).member_session.member_id == MEMBER
    finally:
        store.close()
