"""What the emulator costs over HTTP: the official stytch SDK against ``mfa-flow serve``, against the HTTP floor.

    python3 benchmarks/bench_emulator.py            # 5 rounds; per side and round up to 3000 requests or 3 s
    python3 benchmarks/bench_emulator.py --quick    # a smoke run of a few seconds

Ours: ``python -m mfa_flow serve --host 127.0.0.1 --port 0 --test-endpoints`` on the memory store, with a
generated fixtures file (one organization, ``mfa_policy`` OPTIONAL; one member per fictional number +1 NPA
555-01XX, as in bench_flow.py, each with that number linked and not verified) and a policy file that raises the
send limits and the lockout threshold so that no request of the run is refused by them. Baseline: a minimal
Starlette app under plain uvicorn (same versions, one worker, no access log), started the same way (a subprocess
of this script, port 0, the ``Listening on`` line), that reads each request's body and answers the same routes
with canned bodies the SDK accepts: the floor of the HTTP stack, client included. It does not use mfa_flow's
``serve()``, so that a cost of that wrapper shows in the ratio.

Workload: N client threads (default 4), each with its own ``stytch.B2BClient`` (one keep-alive connection), each
iteration on the thread's next member, three SDK calls: ``otps.sms.send`` to the member's linked phone with its
session token (200: the full send path — rules, limits, admission, code, delivery), ``organizations.members.get``
(200) and ``otps.sms.authenticate`` with a wrong code and the session token (404 ``otp_code_not_found``: the full
verify path, the failure counted). The sessions are made before the clock starts, through the test endpoint
``/_emulator/primary_auth`` (no MFA is owed: the session comes at once). Members rotate so that none reaches the
lockout threshold.

Figures: a round runs every thread until its share of the request budget or the time budget is spent; requests/s
= requests completed by all threads / (last thread's end − the common start); latency = client-observed time of
each SDK call (p50, p99 over every request of the round). Each figure is the median over the rounds; rounds of
the two servers are interleaved. Any answer other than the expected one is counted as an error.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from itertools import islice
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from bench_flow import fictional_numbers

from mfa_flow.records import Member, Organization

ROOT = Path(__file__).resolve().parent.parent
PROJECT_ID = "project-test-00000000-0000-4000-8000-0000000be0c4"
SECRET = "secret-test-bench-emulator-not-a-real-secret"
ORG = "organization-bench-emulator"
START_TIMEOUT = 60.0
#: Wrong codes one member may take over the whole run (the policy's lockout threshold is 100).
FAILURES_PER_MEMBER = 90
CALLS = ("send", "get_member", "authenticate")
POLICY = """[policy]
send_limit_per_member = [1000000, 600]
send_limit_per_phone = [1000000, 600]
lockout_threshold = 100
"""


@dataclass(frozen=True)
class Settings:
    rounds: int
    requests: int  # per side and round, all threads together
    seconds: float  # per side and round
    threads: int
    warmup: int  # iterations per thread and side before the first round


QUICK = Settings(rounds=1, requests=120, seconds=1.0, threads=4, warmup=2)
FULL = Settings(rounds=5, requests=3000, seconds=3.0, threads=4, warmup=20)


# ------------------------------------------------------------------------------------------------- servers


class Server:
    """A server child process: waits for its ``Listening on`` line; ``stop()`` sends SIGTERM and reports whether
    it ended with one of ``ok_statuses``."""

    def __init__(self, name: str, command: list[str], ok_statuses: tuple[int, ...] = (0,)) -> None:
        self.name = name
        self.ok_statuses = ok_statuses
        self._log = tempfile.TemporaryFile("w+", encoding="utf-8")  # noqa: SIM115 - closed by stop()
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        self.process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE,  # noqa: S603 - fixed
                                        stderr=self._log, text=True)
        self.url = ""

    def wait_ready(self) -> None:
        line: list[str] = []
        reader = threading.Thread(target=lambda: line.append(self.process.stdout.readline()),  # type: ignore[union-attr]
                                  daemon=True)
        reader.start()
        reader.join(START_TIMEOUT)
        first = line[0] if line else ""
        if not first.startswith("Listening on http://"):
            self.stop()
            raise SystemExit(f"bench_emulator: {self.name} did not start (first line {first!r}):\n{self.log()}")
        self.url = first.removeprefix("Listening on ").strip()

    def log(self) -> str:
        self._log.seek(0)
        return self._log.read()

    def close(self) -> None:
        self._log.close()

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(START_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()
        return self.process.returncode


def write_inputs(directory: Path, members: int) -> tuple[Path, Path, list[str]]:
    """The fixtures file (one fictional number per member), the policy file and the member ids."""
    ids = [f"member-bench-{i:05d}" for i in range(members)]
    fixtures = {
        "organizations": [{"organization_id": ORG, "organization_slug": "bench", "organization_name": "Bench"}],
        "members": [{"member_id": m, "organization_id": ORG, "email_address": f"{m}@example.com",
                     "mfa_phone_number": phone}
                    for m, phone in zip(ids, islice(fictional_numbers(), members), strict=True)],
    }
    fixtures_path, policy_path = directory / "fixtures.json", directory / "policy.toml"
    fixtures_path.write_text(json.dumps(fixtures), "utf-8")
    policy_path.write_text(POLICY, "utf-8")
    return fixtures_path, policy_path, ids


def start_servers(fixtures: Path, policy: Path) -> tuple[Server, Server]:
    ours = Server("mfa-flow serve", [sys.executable, "-m", "mfa_flow", "serve", "--host", "127.0.0.1", "--port", "0",
                                     "--project-id", PROJECT_ID, "--secret", SECRET, "--fixtures", str(fixtures),
                                     "--policy", str(policy), "--test-endpoints"])
    # uvicorn ends by re-raising SIGTERM after its graceful shutdown; mfa-flow serve must exit 0 (spec §12)
    base = Server("the baseline server", [sys.executable, str(Path(__file__).resolve()), "--baseline-server"],
                  ok_statuses=(0, -signal.SIGTERM))
    try:
        for server in (ours, base):
            server.wait_ready()
    except BaseException:
        for server in (ours, base):
            server.stop()
        raise
    return ours, base


# ------------------------------------------------------------------------------------------------ baseline


def baseline_app() -> Any:
    """The same routes, answered with canned bodies the SDK accepts; each request's body is read, not parsed."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    member = Member("member-bench-00000", ORG, email_address="member-bench-00000@example.com",
                    mfa_phone_number="+12015550101").to_dict()
    organization = Organization(ORG, organization_slug="bench", organization_name="Bench").to_dict()
    request_id = "request-id-test-00000000-0000-4000-8000-000000000000"
    found = json.dumps({"status_code": 200, "request_id": request_id, "member_id": member["member_id"],
                        "member": member, "organization": organization}).encode()
    wrong_code = json.dumps({"status_code": 404, "request_id": request_id, "error_type": "otp_code_not_found",
                             "error_message": "code: wrong code",
                             "error_url": "https://stytch.com/docs/api/errors/404#otp_code_not_found"}).encode()

    def canned(body: bytes, status: int) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            await request.body()
            return Response(body, status_code=status, media_type="application/json")

        return endpoint

    return Starlette(routes=[
        Route("/v1/b2b/otps/sms/send", canned(found, 200), methods=["POST"]),
        Route("/v1/b2b/organizations/{organization_id}/member", canned(found, 200), methods=["GET"]),
        Route("/v1/b2b/otps/sms/authenticate", canned(wrong_code, 404), methods=["POST"]),
    ])


def run_baseline_server() -> int:
    """Plain uvicorn (not mfa_flow's ``serve()``, so that the floor owes nothing to the code it measures), announcing
    its port as ``mfa-flow serve`` does."""
    import uvicorn

    class Announcing(uvicorn.Server):
        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets)
            if self.started:
                port = self.servers[0].sockets[0].getsockname()[1]
                print(f"Listening on http://127.0.0.1:{port}", flush=True)

    config = uvicorn.Config(baseline_app(), host="127.0.0.1", port=0, log_level="warning", access_log=False,
                            lifespan="on", timeout_graceful_shutdown=5)
    Announcing(config).run()
    return 0


# ------------------------------------------------------------------------------------------------- clients


def sessions(server: Server, member_ids: list[str]) -> list[str]:
    """A session token per member, through the test endpoint (outside every timed region)."""
    import httpx

    tokens = []
    with httpx.Client(base_url=server.url, timeout=10) as client:
        for member_id in member_ids:
            body = client.post("/_emulator/primary_auth",
                               json={"organization_id": ORG, "member_id": member_id, "method": "password"}).json()
            if not body.get("session_token"):
                raise SystemExit(f"bench_emulator: primary_auth of {member_id} gave no session: {body}")
            tokens.append(body["session_token"])
    return tokens


def new_client(url: str) -> Any:
    with warnings.catch_warnings():  # aiohttp's DeprecationWarning about BasicAuth (reference §6)
        warnings.simplefilter("ignore", DeprecationWarning)
        import stytch

        return stytch.B2BClient(PROJECT_ID, SECRET, environment=url)


@dataclass
class Worker:
    """One client thread: its SDK client, its members (with their session tokens) and what it measured."""

    client: Any
    members: list[tuple[str, str]]
    cursor: int = 0
    latencies: dict[str, list[int]] = field(default_factory=lambda: {c: [] for c in CALLS})
    errors: list[str] = field(default_factory=list)
    ended: float = 0.0

    def iteration(self) -> None:
        from stytch.core.response_base import StytchError

        member_id, token = self.members[self.cursor % len(self.members)]
        self.cursor += 1
        sms, members = self.client.otps.sms, self.client.organizations.members
        t0 = time.perf_counter_ns()
        sent = sms.send(organization_id=ORG, member_id=member_id, session_token=token)
        t1 = time.perf_counter_ns()
        got = members.get(organization_id=ORG, member_id=member_id)
        t2 = time.perf_counter_ns()
        outcome = ""
        try:
            sms.authenticate(organization_id=ORG, member_id=member_id, code="000000", session_token=token)
        except StytchError as error:
            outcome = error.details.error_type or ""
        else:  # one chance in a million that "000000" is the code: a right answer too
            outcome = "otp_code_not_found"
        t3 = time.perf_counter_ns()
        for call, started, ended in zip(CALLS, (t0, t1, t2), (t1, t2, t3), strict=True):
            self.latencies[call].append(ended - started)
        if sent.status_code != 200 or got.status_code != 200 or outcome != "otp_code_not_found":
            self.errors.append(f"{member_id}: send {sent.status_code}, get {got.status_code}, authenticate {outcome}")

    def run(self, iterations: int, deadline: float) -> None:
        try:
            for _ in range(iterations):
                if time.perf_counter() >= deadline:
                    break
                self.iteration()
        except Exception as exc:  # the SDK's errors and pydantic's: reported, the round goes on
            self.errors.append(f"{type(exc).__name__}: {exc}")
        self.ended = time.perf_counter()


@dataclass(frozen=True)
class RoundResult:
    requests: int
    per_second: float
    p50_ms: float
    p99_ms: float
    per_call_p50_ms: dict[str, float]
    errors: list[str]


def percentile(sorted_ns: list[int], q: float) -> float:
    """Nearest-rank percentile, in milliseconds."""
    if not sorted_ns:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(sorted_ns)))
    return sorted_ns[rank - 1] / 1e6


def run_round(workers: list[Worker], settings: Settings) -> RoundResult:
    for worker in workers:
        worker.latencies = {c: [] for c in CALLS}
        worker.errors = []
    iterations = math.ceil(settings.requests / len(CALLS) / len(workers))
    start = threading.Barrier(len(workers) + 1)
    began: list[float] = []

    def body(worker: Worker) -> None:
        start.wait()
        worker.run(iterations, began[0] + settings.seconds)

    threads = [threading.Thread(target=body, args=(w,)) for w in workers]
    for thread in threads:
        thread.start()
    began.append(time.perf_counter())
    start.wait()
    for thread in threads:
        thread.join()
    every = sorted(ns for w in workers for c in CALLS for ns in w.latencies[c])
    elapsed = max(w.ended for w in workers) - began[0]
    per_call = {c: percentile(sorted(ns for w in workers for ns in w.latencies[c]), 50) for c in CALLS}
    return RoundResult(len(every), len(every) / elapsed, percentile(every, 50), percentile(every, 99), per_call,
                       [e for w in workers for e in w.errors])


# ------------------------------------------------------------------------------------------------ the run


@dataclass
class Side:
    name: str
    label: str
    workers: list[Worker]
    rounds: list[RoundResult] = field(default_factory=list)

    def median(self, pick: Callable[[RoundResult], float]) -> float:
        return statistics.median(pick(r) for r in self.rounds)


def report(side: Side) -> str:
    errors = [e for r in side.rounds for e in r.errors]
    shown = "none" if not errors else f"{len(errors)}, first: {errors[0]}"
    per_call = "  ".join(f"{c} {side.median(lambda r, c=c: r.per_call_p50_ms[c]):.2f}" for c in CALLS)
    return (f"  {side.label:<27}{side.median(lambda r: r.per_second):8.0f} requests/s   "
            f"p50 {side.median(lambda r: r.p50_ms):6.2f} ms   p99 {side.median(lambda r: r.p99_ms):6.2f} ms   "
            f"(errors: {shown})\n"
            f"  {'':<27}p50 by call (ms): {per_call}   rounds (requests/s): "
            + " ".join(f"{r.per_second:.0f}" for r in side.rounds))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: 1 round of at most 120 requests or 1 s")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--requests", type=int, default=None, help="requests per side and round (all threads)")
    parser.add_argument("--seconds", type=float, default=None, help="time budget per side and round")
    parser.add_argument("--threads", type=int, default=None, help="client threads (default 4)")
    parser.add_argument("--baseline-server", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.baseline_server:
        return run_baseline_server()
    preset = QUICK if args.quick else FULL
    settings = Settings(rounds=args.rounds or preset.rounds, requests=args.requests or preset.requests,
                        seconds=args.seconds or preset.seconds, threads=args.threads or preset.threads,
                        warmup=preset.warmup)
    if min(settings.rounds, settings.requests, settings.threads) < 1 or settings.seconds <= 0:
        parser.error("--rounds, --requests, --threads and --seconds must be positive")

    per_thread_iterations = settings.warmup + settings.rounds * math.ceil(
        settings.requests / len(CALLS) / settings.threads)
    members_per_thread = math.ceil(per_thread_iterations / FAILURES_PER_MEMBER)
    versions = ", ".join(f"{d} {metadata.version(d)}" for d in ("stytch", "starlette", "uvicorn"))
    print(f"mfa_flow emulator benchmark — Python {platform.python_version()}, {versions}")

    with tempfile.TemporaryDirectory(prefix="bench-emulator-") as tmp:
        fixtures, policy, member_ids = write_inputs(Path(tmp), members_per_thread * settings.threads)
        ours_server, base_server = start_servers(fixtures, policy)
        statuses: dict[Server, int] = {}
        try:
            tokens = sessions(ours_server, member_ids)
            pairs = list(zip(member_ids, tokens, strict=True))
            sides = []
            for name, label, server in (("ours", "ours (mfa-flow serve):", ours_server),
                                        ("base", "baseline (canned bodies):", base_server)):
                workers = [Worker(new_client(server.url), pairs[t::settings.threads]) for t in range(settings.threads)]
                for worker in workers:  # warm-up: connections, imports, code paths
                    worker.run(settings.warmup, math.inf)
                    if worker.errors:
                        raise SystemExit(f"bench_emulator: {name} warm-up failed: {worker.errors[0]}")
                sides.append(Side(name, label, workers))
            for r in range(settings.rounds):
                for side in sides if r % 2 == 0 else sides[::-1]:
                    side.rounds.append(run_round(side.workers, settings))
        finally:
            for server in (ours_server, base_server):
                statuses[server] = server.stop()
        failed = [f"bench_emulator: {server.name} exited with status {status}:\n{server.log()}"
                  for server, status in statuses.items() if status not in server.ok_statuses]
        for server in statuses:
            server.close()
        if failed:
            print("\n".join(failed), file=sys.stderr)
            return 1

    ours, base = sides
    print("workload: per iteration on one member (rotating, each with a session), three official-SDK calls: "
          "otps.sms.send to the linked phone (200), organizations.members.get (200), otps.sms.authenticate with a "
          "wrong code (404 otp_code_not_found)")
    print(f"{settings.threads} client threads, {len(member_ids)} members, {settings.rounds} rounds of at most "
          f"{settings.requests} requests or {settings.seconds:g} s per side; medians over the rounds:")
    print(report(ours))
    print(report(base))
    throughput = ours.median(lambda r: r.per_second) / base.median(lambda r: r.per_second)
    p50 = ours.median(lambda r: r.p50_ms) / base.median(lambda r: r.p50_ms)
    p99 = ours.median(lambda r: r.p99_ms) / base.median(lambda r: r.p99_ms)
    print(f"  ratio ours/baseline:        throughput {throughput:.2f}   p50 latency {p50:.2f}   "
          f"p99 latency {p99:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
