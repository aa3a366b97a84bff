"""A pytest plugin: ``mfa-flow serve`` started as a user starts it, in a subprocess on a free loopback port.

``start_emulator(fixtures=..., policy=None, extra_args=())`` writes the fixtures (a mapping) to a JSON file,
runs ``python -m mfa_flow serve --host 127.0.0.1 --port 0 ... --test-endpoints``, waits for the first stdout
line ``Listening on http://127.0.0.1:PORT`` and returns an :class:`EmulatorProcess`; every server is stopped
with SIGTERM at the end of the test, and its exit status must be 0.

Tests that need the emulator's extra or the official SDK call :func:`require`: a missing package skips the
test, except under CI (``CI=true``), where it is a failure.
"""

from __future__ import annotations

import importlib
import json
import signal
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.helpers_process import ROOT, python_env, unavailable

__all__ = ["PROJECT_ID", "SECRET", "EmulatorProcess", "require", "start_emulator"]

PROJECT_ID = "project-test-00000000-0000-4000-8000-000000000001"
SECRET = "secret-test-emulator-not-a-real-secret"
START_TIMEOUT = 30.0


def require(module: str) -> ModuleType:
    """Import ``module``; skip the test without it, or fail under CI, where every test must run. Only a missing
    third-party package skips: an import error in the project's own code (the examples, mfa_flow) is raised."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        if (exc.name or module).partition(".")[0] in _OWN_PACKAGES:
            raise
        unavailable(f"{module} is not installed ({exc}); python3 -m pip install -e '.[test]'")


#: Top-level packages of this repository: their import errors are bugs, never a reason to skip.
_OWN_PACKAGES = frozenset({"mfa_flow", "examples", "tests", "benchmarks"})


class EmulatorProcess:
    """One ``mfa-flow serve`` child process and the test endpoints' helpers."""

    def __init__(self, args: Sequence[str]) -> None:
        env = python_env()
        self.args = list(args)
        self.process = subprocess.Popen(  # noqa: S603 - this interpreter, arguments fixed by the tests
            [sys.executable, "-m", "mfa_flow", "serve", *args], cwd=ROOT, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        self.stderr_lines: list[str] = []
        self._stderr_reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._stderr_reader.start()
        self.first_line = self._first_stdout_line()
        prefix = "Listening on "
        if not self.first_line.startswith(prefix):
            self.stop()
            pytest.fail(f"mfa-flow serve did not start: first stdout line {self.first_line!r}; stderr:\n"
                        + self.stderr, pytrace=False)
        self.url = self.first_line.removeprefix(prefix).strip()
        self.returncode: int | None = None

    def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.stderr_lines.append(line)

    def _first_stdout_line(self) -> str:
        assert self.process.stdout is not None
        box: list[str] = []
        reader = threading.Thread(target=lambda: box.append(self.process.stdout.readline()),  # type: ignore[union-attr]
                                  daemon=True)
        reader.start()
        reader.join(START_TIMEOUT)
        return box[0] if box else ""

    @property
    def stderr(self) -> str:
        return "".join(self.stderr_lines)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Send ``sig`` and wait; the exit status (cached once the process ended)."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=START_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._stderr_reader.join(5)
        self.returncode = self.process.returncode
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()
        return self.returncode

    # --- the test endpoints ---------------------------------------------------------------------------------

    def request(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method,  # noqa: S310 - our loopback server
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as response:  # noqa: S310
            return json.load(response)

    def messages(self) -> list[dict[str, Any]]:
        return list(self.request("GET", "/_emulator/messages"))

    def code(self, member_id: str) -> str:
        """The newest code sent to ``member_id``."""
        for message in reversed(self.messages()):
            if message["member_id"] == member_id:
                return str(message["code"])
        raise AssertionError(f"no message was sent to {member_id}")

    def primary_auth(self, organization_id: str, member_id: str, method: str = "password") -> dict[str, Any]:
        return dict(self.request("POST", "/_emulator/primary_auth",
                                 {"organization_id": organization_id, "member_id": member_id, "method": method}))

    def advance(self, seconds: float) -> float:
        return float(self.request("POST", "/_emulator/clock/advance", {"seconds": seconds})["now"])


@pytest.fixture
def start_emulator(tmp_path: Path) -> Iterator[Any]:
    """``start_emulator(fixtures, *, policy=None, test_endpoints=True, extra_args=())``; stopped after the test."""
    require("starlette")
    require("uvicorn")
    started: list[EmulatorProcess] = []

    def start(fixtures: Mapping[str, Any], *, policy: str | None = None, test_endpoints: bool = True,
              extra_args: Sequence[str] = ()) -> EmulatorProcess:
        path = tmp_path / f"fixtures-{len(started)}.json"
        path.write_text(json.dumps(fixtures), "utf-8")
        args = ["--host", "127.0.0.1", "--port", "0", "--project-id", PROJECT_ID, "--secret", SECRET,
                "--fixtures", str(path)]
        if policy is not None:
            policy_path = tmp_path / f"policy-{len(started)}.toml"
            policy_path.write_text(policy, "utf-8")
            args += ["--policy", str(policy_path)]
        if test_endpoints:
            args.append("--test-endpoints")
        server = EmulatorProcess([*args, *extra_args])
        started.append(server)
        return server

    yield start
    for server in started:
        status = server.stop()
        assert status == 0, f"mfa-flow serve exited with {status}; stderr:\n{server.stderr}"
