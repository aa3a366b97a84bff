"""What each store costs: full logins per second, store round trips per public call, bytes per pending login.

    python3 benchmarks/bench_stores.py            # 3 rounds, up to 2000 logins or 3 s per worker, 10,000 pending
    python3 benchmarks/bench_stores.py --quick    # a smoke run (under 15 s)

Stores: ``MemoryStore`` (one process only: its state is per-process), ``SqliteStore`` on a file in a temporary
directory (under ``--dir``, default the system's temporary directory: put it on the disk you mean to measure)
and ``RedisStore`` on a redis-server the benchmark starts itself (the binary on PATH, 127.0.0.1, a free port,
``--save "" --appendonly no --maxmemory-policy noeviction``) and always stops at the end. Without redis-server
on PATH or without redis-py, the Redis rows are skipped and the output says so.

Throughput: every worker is a process of its own (multiprocessing "spawn") with its own ``MfaFlow``, directory
and gateway on the shared store, all with the same ``secret_key``. A full login is primary authentication with
the automatic code (a gateway that keeps the last code), then authenticate with that code, which issues the
session. Every login of a round has a member and a phone number that no other login of the round uses (+1 NPA
555-01XX, as in bench_flow.py); the directories are filled and a few logins per worker warm up before the
workers are started together. A worker stops after its logins or its time budget, whichever comes first.
logins/s = logins completed by all workers / (last worker's end - first worker's start). Every round starts
on an empty store (a new SQLite file, a flushed Redis database); rounds of the configurations are interleaved
and each figure is the median over the rounds. A login refused with an ``MfaError`` is counted as an error.

Round trips: one process, no contention. The store is wrapped to count transactions, reads and commits per
public call (a store round trip is one read or one commit); Redis commands are counted by a client subclass,
SQL statements by the pooled connection's trace callback.

Memory: bytes held per pending login (primary authentication with the automatic send, not yet authenticated)
over N pending logins with a gateway that drops messages: MemoryStore by the tracemalloc delta / N (as in
bench_flow.py), SqliteStore by the growth of database file + WAL, checkpointed (TRUNCATE) before and after,
/ N, RedisStore by the ``INFO memory`` used_memory delta / N. Records per pending login alongside.
"""

from __future__ import annotations

import argparse
import gc
import multiprocessing
import os
import platform
import queue
import secrets
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import tracemalloc
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import closing, contextmanager, suppress
from dataclasses import dataclass
from importlib import metadata
from importlib.util import find_spec
from itertools import islice
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from _redis import RedisServer
from bench_flow import METHOD, ORG, DropGateway, add_members, fictional_numbers, new_flow

from mfa_flow import MfaError, MfaFlow
from mfa_flow.stores import Entry, MemoryStore, RedisStore, SqliteStore, Write
from mfa_flow.transports import SmsMessage

START_TIMEOUT = 120.0  # seconds a worker may take to fill its directory and warm up
STORES = ("memory", "sqlite", "redis")
CONFIGS = (("memory", 1), ("sqlite", 1), ("sqlite", 2), ("redis", 1), ("redis", 2))
CALLS = ("authenticate_primary", "send_sms_otp", "authenticate_sms_otp", "authenticate_session")


@dataclass(frozen=True)
class Settings:
    rounds: int
    logins: int  # per worker and round
    budget: float  # seconds per worker and round
    warmup: int  # logins per worker before the clock starts
    pending: int
    sequences: int  # logins whose calls are counted for the round-trip table


QUICK = Settings(rounds=1, logins=100, budget=1.0, warmup=10, pending=500, sequences=5)
FULL = Settings(rounds=3, logins=2000, budget=3.0, warmup=100, pending=10_000, sequences=50)


# ------------------------------------------------------------------------------------------------ helpers


class LastCode:
    """A gateway that keeps only the last code: the login reads it back."""

    def __init__(self) -> None:
        self.code = ""

    def deliver(self, message: SmsMessage) -> None:
        self.code = message.code


def open_store(kind: str, target: Any) -> Any:
    """``target``: the SQLite path, or a redis:// URL or client; unused for the memory store."""
    if kind == "memory":
        return MemoryStore()
    if kind == "sqlite":
        return SqliteStore(target)
    return RedisStore(target, require_noeviction=True)


def close_store(store: Any) -> None:
    close = getattr(store, "close", None)
    if callable(close):
        close()


def login(flow: MfaFlow, gateway: LastCode, member_id: str) -> str:
    """One full login: primary authentication with the automatic code, then authenticate → session token."""
    ist = flow.authenticate_primary(ORG, member_id, METHOD).intermediate_session_token
    return flow.authenticate_sms_otp(ORG, member_id, gateway.code, intermediate_session_token=ist).session_token


# ------------------------------------------------------------------------------------------- redis-server


def redis_client(url: str) -> Any:
    import redis

    return redis.Redis.from_url(url)


# ----------------------------------------------------------------------------------------------- throughput


@dataclass(frozen=True)
class Job:
    kind: str
    target: str  # the SQLite path or the redis:// URL; "" for the memory store
    key: bytes
    worker: int
    phones: tuple[str, ...]
    warmup: int
    budget: float


def worker_main(job: Job, go: Any, results: Any) -> None:
    """One worker process: its own flow on the shared store; reports ready, waits for ``go``, logs in."""
    try:
        store = open_store(job.kind, job.target)
        try:
            gateway = LastCode()
            flow = new_flow(gateway, store=store, secret_key=job.key)
            ids = add_members(flow, list(job.phones), f"w{job.worker}")
            for member_id in ids[:job.warmup]:
                login(flow, gateway, member_id)
            gc.collect()
            results.put(("ready", job.worker, None))
            if not go.wait(START_TIMEOUT):
                return
            done = 0
            errors: Counter[str] = Counter()
            started = time.monotonic()
            deadline = started + job.budget
            for member_id in ids[job.warmup:]:
                try:
                    token = login(flow, gateway, member_id)
                except MfaError as exc:
                    errors[exc.error_type] += 1
                else:
                    done += bool(token)
                if time.monotonic() >= deadline:
                    break
            ended = time.monotonic()
            results.put(("done", job.worker, (done, dict(errors), started, ended)))
        finally:
            close_store(store)
    except BaseException:
        results.put(("error", job.worker, traceback.format_exc()))


@dataclass
class Round:
    logins: int
    errors: Counter[str]
    seconds: float

    @property
    def rate(self) -> float:
        return self.logins / self.seconds if self.seconds > 0 else 0.0


def _collect(results: Any, what: str, n: int, timeout: float, procs: list[Any]) -> list[Any]:
    """n messages of kind ``what`` from the workers; a worker's error or death ends the round."""
    got: list[Any] = []
    deadline = time.monotonic() + timeout
    while len(got) < n:
        if time.monotonic() > deadline:
            raise RuntimeError(f"workers did not report {what!r} within {timeout:.0f} s")
        try:
            kind, worker, payload = results.get(timeout=0.5)
        except queue.Empty:
            dead = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
            if dead:
                raise RuntimeError(f"a worker died (exit code {dead[0]})") from None
            continue
        if kind == "error":
            raise RuntimeError(f"worker {worker} failed:\n{payload}")
        if kind == what:
            got.append(payload)
    return got


def run_round(ctx: Any, kind: str, target: str, key: bytes, phones: list[str], workers: int,
              settings: Settings) -> Round:
    per_worker = settings.warmup + settings.logins
    go = ctx.Event()
    results = ctx.Queue()
    procs = []
    try:
        for w in range(workers):
            job = Job(kind, target, key, w, tuple(phones[w * per_worker:(w + 1) * per_worker]), settings.warmup,
                      settings.budget)
            proc = ctx.Process(target=worker_main, args=(job, go, results), daemon=True)
            proc.start()
            procs.append(proc)
        _collect(results, "ready", workers, START_TIMEOUT, procs)
        go.set()
        reports = _collect(results, "done", workers, settings.budget + 60.0, procs)
    finally:
        go.set()  # a worker still waiting returns
        for proc in procs:
            proc.join(10)
            if proc.is_alive():
                proc.terminate()
                proc.join(5)
        results.close()
    errors: Counter[str] = Counter()
    for _, errs, _, _ in reports:
        errors.update(errs)
    seconds = max(r[3] for r in reports) - min(r[2] for r in reports)
    return Round(sum(r[0] for r in reports), errors, seconds)


def throughput(ctx: Any, kinds: list[str], key: bytes, phones: list[str], workdir: Path,
               redis_url: str | None, settings: Settings) -> dict[tuple[str, int], list[Round]]:
    figures: dict[tuple[str, int], list[Round]] = {}
    for r in range(settings.rounds):  # rounds interleaved across the configurations
        for kind, workers in CONFIGS:
            if kind not in kinds:
                continue
            target = ""
            if kind == "sqlite":
                target = str(workdir / f"throughput-{workers}w-{r}.db")
                close_store(SqliteStore(target))  # the schema exists before the workers open it
            elif kind == "redis":
                assert redis_url is not None
                with closing(redis_client(redis_url)) as client:
                    client.flushdb()
                target = redis_url
            figures.setdefault((kind, workers), []).append(
                run_round(ctx, kind, target, key, phones, workers, settings))
            if kind == "sqlite":
                for suffix in ("", "-wal", "-shm"):
                    Path(target + suffix).unlink(missing_ok=True)
    return figures


# ---------------------------------------------------------------------------------------------- round trips


class CountingTransaction:
    def __init__(self, tx: Any, counts: Counter[str]) -> None:
        self._tx = tx
        self._counts = counts

    def read(self, keys: list[str]) -> dict[str, Entry]:
        self._counts["reads"] += 1
        return self._tx.read(keys)  # type: ignore[no-any-return]

    def commit(self, writes: Mapping[str, Write], now: float) -> bool:
        self._counts["commits"] += 1
        ok = bool(self._tx.commit(writes, now))
        if not ok:
            self._counts["lost"] += 1
        return ok


class CountingStore:
    """A store wrapped to count transactions, reads and commits."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.durable = inner.durable
        self.counts: Counter[str] = Counter()

    @contextmanager
    def transaction(self) -> Iterator[CountingTransaction]:
        with self.inner.transaction() as tx:
            self.counts["transactions"] += 1
            yield CountingTransaction(tx, self.counts)


def counting_redis(url: str) -> Any:
    """A redis-py client that counts the commands it sends (in ``client.commands``)."""
    import redis

    class CountingRedis(redis.Redis):
        commands: Counter[str]

        def execute_command(self, *args: Any, **options: Any) -> Any:
            self.commands[str(args[0]).upper()] += 1
            return super().execute_command(*args, **options)  # type: ignore[no-untyped-call]

    client: Any = CountingRedis.from_url(url)
    client.commands = Counter()
    return client


def trace_sql(store: SqliteStore) -> Counter[str]:
    """Count the SQL statements on the store's pooled connection (one process, one thread: one connection)."""
    counts: Counter[str] = Counter()

    def seen(statement: str) -> None:
        counts[statement.split(None, 1)[0].upper()] += 1

    for db in store._core._idle:  # noqa: SLF001 - the benchmark reaches into the pool to trace its connection
        db.set_trace_callback(seen)
    return counts


@dataclass
class Trips:
    calls: int = 0
    transactions: int = 0
    reads: int = 0
    commits: int = 0
    lost: int = 0
    backend: Counter[str] | None = None


def round_trips(kind: str, key: bytes, phones: list[str], workdir: Path, redis_url: str | None,
                sequences: int) -> tuple[dict[str, Trips], str]:
    """Per public call: transactions, reads, commits and backend commands, over ``sequences`` logins."""
    backend: Counter[str] = Counter()
    unit = ""
    client: Any = None
    inner: Any
    if kind == "memory":
        inner = MemoryStore()
    elif kind == "sqlite":
        inner = SqliteStore(workdir / "trips.db")
        backend, unit = trace_sql(inner), "SQL statements"
    else:
        assert redis_url is not None
        client = counting_redis(redis_url)
        client.flushdb()
        inner = RedisStore(client, require_noeviction=True)
        backend, unit = client.commands, "Redis commands"
    store = CountingStore(inner)
    gateway = LastCode()
    flow = new_flow(gateway, store=store, secret_key=key)
    ids = add_members(flow, phones[:sequences + 1], "trips")
    table = {call: Trips(backend=Counter()) for call in CALLS}

    def count(call: str, run: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        before, before_backend = Counter(store.counts), Counter(backend)
        answer = run(*args, **kwargs)
        trips = table[call]
        diff = store.counts - before
        trips.calls += 1
        trips.transactions += diff["transactions"]
        trips.reads += diff["reads"]
        trips.commits += diff["commits"]
        trips.lost += diff["lost"]
        assert trips.backend is not None
        trips.backend.update(backend - before_backend)
        return answer

    try:
        for i, member_id in enumerate(ids):
            if i == 0:  # warm-up: imports, the Redis script cache, the SQLite schema pages
                token = login(flow, gateway, member_id)
                flow.authenticate_session(session_token=token)
                continue
            ist = count("authenticate_primary", flow.authenticate_primary, ORG, member_id, METHOD
                        ).intermediate_session_token
            count("send_sms_otp", flow.send_sms_otp, ORG, member_id, intermediate_session_token=ist)
            token = count("authenticate_sms_otp", flow.authenticate_sms_otp, ORG, member_id, gateway.code,
                          intermediate_session_token=ist).session_token
            check = count("authenticate_session", flow.authenticate_session, session_token=token)
            assert not check.step_up_required
    finally:
        close_store(inner)
        if client is not None:
            client.close()
        if kind == "sqlite":
            for suffix in ("", "-wal", "-shm"):
                Path(str(workdir / "trips.db") + suffix).unlink(missing_ok=True)
    return table, unit


# --------------------------------------------------------------------------------------------------- memory


def _sqlite_size(path: Path) -> tuple[int, int]:
    """Checkpoint (TRUNCATE) from another connection; the bytes of file + WAL, and the rows held."""
    with closing(sqlite3.connect(path)) as db:
        busy = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
        if busy:
            raise RuntimeError("the WAL checkpoint was blocked")
        rows = int(db.execute("SELECT COUNT(*) FROM records").fetchone()[0])
    wal = Path(f"{path}-wal")
    return path.stat().st_size + (wal.stat().st_size if wal.exists() else 0), rows


def pending_bytes(kind: str, key: bytes, phones: list[str], workdir: Path, redis_url: str | None,
                  pending: int) -> tuple[float, float]:
    """Bytes and records held per pending login (primary auth + automatic send, not authenticated)."""
    path = workdir / "pending.db"
    client: Any = None
    if kind == "redis":
        assert redis_url is not None
        client = redis_client(redis_url)
        client.flushdb()
    store = open_store(kind, path if kind == "sqlite" else redis_url)
    try:
        flow = new_flow(DropGateway(), store=store, secret_key=key)
        ids = add_members(flow, phones[:pending + 1], "pending")
        primary = flow.authenticate_primary
        primary(ORG, ids[0], METHOD)  # warm-up: lazy imports, the Redis script cache, the SQLite schema
        pending_ids = ids[1:]
        gc.collect()
        if kind == "memory":
            records0 = len(store)
            tracemalloc.start()
            before = tracemalloc.get_traced_memory()[0]
        elif kind == "sqlite":
            before, records0 = _sqlite_size(path)
        else:
            before, records0 = int(client.info("memory")["used_memory"]), int(client.dbsize())
        for member_id in pending_ids:
            result = primary(ORG, member_id, METHOD)
        del result
        gc.collect()
        if kind == "memory":
            after = tracemalloc.get_traced_memory()[0]
            tracemalloc.stop()
            records1 = len(store)
        elif kind == "sqlite":
            after, records1 = _sqlite_size(path)
        else:
            after, records1 = int(client.info("memory")["used_memory"]), int(client.dbsize())
    finally:
        close_store(store)
        if client is not None:
            client.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
    return (after - before) / pending, (records1 - records0) / pending


# ----------------------------------------------------------------------------------------------------- main


def _versions(redis_binary: str | None) -> str:
    parts = [f"Python {platform.python_version()}", f"SQLite {sqlite3.sqlite_version}"]
    if find_spec("redis") is not None:
        parts.append(f"redis-py {metadata.version('redis')}")
    if redis_binary is not None:
        out = subprocess.run([redis_binary, "--version"], capture_output=True, text=True, timeout=10,  # noqa: S603
                             check=False).stdout.split()
        parts.append("redis-server " + next((w[2:] for w in out if w.startswith("v=")), "?"))
    return ", ".join(parts)


def _machine() -> str:
    load = ""
    with suppress(OSError):
        load = f", load average {os.getloadavg()[0]:.2f}"
    return f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs{load}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: 1 round x 100 logins (or 1 s) per worker, 500 pending, 5 sequences")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--logins", type=int, default=None, help="logins per worker and round")
    parser.add_argument("--seconds", type=float, default=None, help="time budget per worker and round")
    parser.add_argument("--pending", type=int, default=None, help="pending logins for the memory figure")
    parser.add_argument("--dir", default=None, help="where the SQLite files go (default: the temp directory)")
    args = parser.parse_args(argv)
    base = QUICK if args.quick else FULL
    settings = Settings(rounds=max(1, min(args.rounds or base.rounds, 20)),
                        logins=max(1, min(args.logins or base.logins, 10_000)),
                        budget=max(0.1, min(args.seconds or base.budget, 60.0)),
                        warmup=base.warmup, pending=max(1, min(args.pending or base.pending, 30_000)),
                        sequences=base.sequences)
    needed = max(2 * (settings.warmup + settings.logins), settings.pending + 1, settings.sequences + 1)
    phones = list(islice(fictional_numbers(), needed))
    if len(phones) < needed:
        raise SystemExit(f"bench_stores: only {len(phones)} fictional numbers; ask for fewer logins")

    redis_binary = shutil.which("redis-server")
    kinds = list(STORES)
    skipped = ""
    if redis_binary is None:
        skipped = "redis: skipped (redis-server is not on PATH)"
    elif find_spec("redis") is None:
        skipped = "redis: skipped (redis-py is not installed: pip install mfa_flow[redis])"
    if skipped:
        kinds.remove("redis")

    print(f"mfa_flow store benchmark — {_versions(redis_binary if 'redis' in kinds else None)}")
    print(f"machine: {_machine()}")
    key = secrets.token_bytes(32)
    ctx = multiprocessing.get_context("spawn")
    server: RedisServer | None = None
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="mfa-bench-stores-", dir=args.dir) as tmp:
        workdir = Path(tmp)
        try:
            redis_url = None
            if "redis" in kinds:
                assert redis_binary is not None
                (workdir / "redis").mkdir()
                server = RedisServer(redis_binary, workdir / "redis")
                redis_url = server.url
            print(f"SQLite files in {workdir} (WAL, synchronous=NORMAL); Redis on 127.0.0.1 "
                  f"(no persistence, noeviction)" if redis_url else f"SQLite files in {workdir}")
            if skipped:
                print(skipped)

            figures = throughput(ctx, kinds, key, phones, workdir, redis_url, settings)
            print()
            print(f"full logins per second (primary auth + automatic code + authenticate + session), median of "
                  f"{settings.rounds} round(s); each worker up to {settings.logins} logins or "
                  f"{settings.budget:g} s, after {settings.warmup} warm-up logins:")
            for (kind, workers), rounds in figures.items():
                rate = statistics.median(r.rate for r in rounds)
                errors = Counter[str]()
                for r in rounds:
                    errors.update(r.errors)
                error_text = ", ".join(f"{n} {t}" for t, n in errors.most_common()) or "none"
                print(f"  {kind:<7} {workers} worker{'s' if workers > 1 else ' '}  {rate:8.0f} logins/s"
                      f"   ({rate / workers:6.0f} per worker; rounds: "
                      + " ".join(f"{r.rate:.0f}" for r in rounds)
                      + f"; logins per round: {statistics.median(r.logins for r in rounds):.0f}; errors: "
                      f"{error_text})")

            print()
            print(f"store round trips per public call (1 process, no contention; mean over {settings.sequences} "
                  "logins; round trips = reads + commits):")
            print(f"  {'store':<7} {'call':<22} {'transactions':>12} {'reads':>6} {'commits':>8} "
                  f"{'round trips':>12}   backend")
            for kind in kinds:
                table, unit = round_trips(kind, key, phones, workdir, redis_url, settings.sequences)
                for call, t in table.items():
                    n = t.calls
                    assert t.backend is not None
                    detail = ""
                    if unit:
                        detail = (f"{t.backend.total() / n:.1f} {unit} ("
                                  + ", ".join(f"{c} {v / n:g}" for c, v in sorted(t.backend.items())) + ")")
                    lost = f"; {t.lost} lost compare-and-set" if t.lost else ""
                    print(f"  {kind:<7} {call:<22} {t.transactions / n:12.1f} {t.reads / n:6.1f} "
                          f"{t.commits / n:8.1f} {(t.reads + t.commits) / n:12.1f}   {detail or '-'}{lost}")

            print()
            print(f"bytes held per pending login ({settings.pending} pending logins: primary auth + automatic "
                  "send, not authenticated):")
            how = {"memory": "tracemalloc delta", "sqlite": "database + WAL growth, checkpointed",
                   "redis": "INFO used_memory delta"}
            for kind in kinds:
                per_login, records = pending_bytes(kind, key, phones, workdir, redis_url, settings.pending)
                print(f"  {kind:<7} {per_login:8.0f} bytes per pending login   {records:4.1f} records "
                      f"per pending login   ({how[kind]})")
        finally:
            if server is not None:
                server.stop()
    print()
    print(f"({len(phones)} distinct phone numbers; {time.monotonic() - started:.1f} s in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
