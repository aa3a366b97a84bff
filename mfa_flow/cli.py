"""The ``mfa-flow`` command: a scripted demo login, the policy checker, the state diagrams, a Stytch emulator.

    mfa-flow demo [--interactive]          a complete login with SMS MFA and an inactivity step-up
    mfa-flow check FILE [--depth N] [--seconds S] [--properties module:function,...] [--all-violations]
                                           explore every short sequence of events under a policy file
    mfa-flow diagram [--format mermaid|svg|png] [--machine NAME] [--policy FILE] [-o FILE]
                                           the state machines (svg and png through Graphviz's dot)
    mfa-flow serve ...                     a local server that answers as Stytch's B2B SMS OTP API
    mfa-flow --version

The demo runs on the embedded defaults with a fake clock (so 31 minutes of inactivity pass at once) and
the console gateway, which prints each SMS to stderr under its development banner: that banner *is* the
SMS channel here. Nothing the demo prints on stdout holds a code or a token.

``check`` runs ``mfa_flow.testing.explore`` on the file's ``[policy]`` (docs/testing.md): a progress line on
stderr, then on stdout the report, each violation's numbered steps and a pytest test that replays them. It
exits 0 when nothing is violated (also when ``--seconds`` cut the search short: the report says so), 1 on a
violation, 2 on a bad file or argument. A policy file (docs/policy.md) drives ``check``, ``diagram --policy``,
``serve --policy`` and ``MfaWorld.from_toml`` alike.
"""

from __future__ import annotations

import argparse
import importlib
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from mfa_flow._version import __version__
from mfa_flow.diagram import FORMATS, GRAPHVIZ_INSTALL, diagram
from mfa_flow.directory import MemoryDirectory
from mfa_flow.errors import ConfigurationError, MfaError
from mfa_flow.events import Event
from mfa_flow.files import load_policy_file
from mfa_flow.flow import MfaFlow
from mfa_flow.machine import TABLES
from mfa_flow.phone import mask_phone
from mfa_flow.policy import Policy
from mfa_flow.records import Member, Organization
from mfa_flow.results import AuthenticateResult, MemberSession
from mfa_flow.stores import AsyncStore
from mfa_flow.testing import FakeClock
from mfa_flow.testing.explore import INVARIANTS, Property, explore
from mfa_flow.transports import ConsoleGateway, SmsMessage

__all__ = ["main"]

PROG = "mfa-flow"
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports it

DEMO_ORG = "organization-demo-1"
DEMO_SLUG = "acme-demo"
DEMO_MEMBER = "member-demo-1"
DEMO_EMAIL = "ada@example.com"
DEMO_PHONE = "+14155550123"  # +1 415 555 0123: a fictional US number
INACTIVITY_MINUTES = 31


class DemoGateway:
    """Demo only: forwards every SMS to the ConsoleGateway and remembers the last one.

    The scripted demo reads the code of the last message to "type" it, as a user would after reading the
    console gateway's output; an application never reads codes back from its gateway.
    """

    def __init__(self, console: ConsoleGateway | None = None) -> None:
        self._console = console if console is not None else ConsoleGateway()
        self.last: SmsMessage | None = None

    def __repr__(self) -> str:
        return f"DemoGateway({self._console!r})"

    def deliver(self, message: SmsMessage) -> None:
        self._console.deliver(message)
        self.last = message


class _DemoFailed(Exception):
    """The library did not do what the demo script expects; the demo stops with status 1."""


class _NoInput(Exception):
    """Standard input ended while the interactive demo waited for a code."""


def _at(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class _Demo:
    """One run of the demo: numbered steps on ``out``, events and state transitions as they happen."""

    def __init__(self, out: TextIO, *, interactive: bool) -> None:
        self.out = out
        self.interactive = interactive
        self.step_no = 0
        self.clock = FakeClock()
        self.gateway = DemoGateway()
        self.phases = {"code": "none", "guard": "open", "login": "none", "session": "none"}
        self.directory = MemoryDirectory()  # the application's identity data: the demo writes it directly
        self.flow = MfaFlow(clock=self.clock, transport=self.gateway, events=[self.on_event],
                            directory=self.directory)

    # --- output ----------------------------------------------------------------------------------------

    def say(self, text: str = "") -> None:
        self.out.write(text + "\n")
        self.out.flush()  # before the console gateway writes to stderr, so the two streams interleave sanely

    def step(self, title: str) -> None:
        self.step_no += 1
        self.say()
        self.say(f"[{self.step_no}] {title}  (clock {_at(self.clock.now())})")

    def move(self, machine: str, new: str, note: str = "") -> None:
        old = self.phases[machine]
        self.phases[machine] = new
        self.say(f"      state  {machine}: {old} -> {new}" + (f"  ({note})" if note else ""))

    def on_event(self, event: Event) -> None:
        """Print each event (masked phone, reason, data except the merged member) and the transition it marks."""
        parts = [f"    event  {event.name}"]
        if event.phone:
            parts.append(f"phone={event.phone}")
        if event.reason is not None:
            parts.append(f"reason={event.reason}")
        parts.extend(f"{key}={value!r}" for key, value in event.data.items() if key != "member")
        self.say("  ".join(parts))
        data = event.data
        if event.name == "otp.sent":
            self.move("code", "sent", f"purpose {data.get('purpose')}")
        elif event.name == "otp.failed" and event.reason == "otp_code_not_found":  # a counted wrong code
            attempts = data.get("attempts")
            dead = isinstance(attempts, int) and attempts >= self.flow.policy.max_attempts_per_code
            self.move("code", "dead" if dead else "sent", f"attempt {attempts} counted")
            self.say(f"      state  guard: {self.phases['guard']}  (failures {data.get('failures')})")
        elif event.name == "member.locked":
            self.move("guard", "locked")
        elif event.name == "otp.verified":
            self.move("code", "verified")
        elif event.name == "session.created":
            if self.phases["login"] == "issued":
                self.move("login", "consumed", "the IST is spent")
            self.move("session", "active")
        elif event.name == "session.step_up_required":
            self.move("session", "step_up_required")
        elif event.name == "session.step_up_completed":
            self.move("session", "active", "same token, SMS factor refreshed")

    def show_refusal(self, error: MfaError) -> None:
        self.say(f"    refused  {error.error_type} ({error.status_code}): {error.error_message}")

    def show_session(self, session: MemberSession | None) -> None:
        if session is None:
            raise _DemoFailed("no member session was returned")
        self.say(f"    session {session.member_session_id} of {session.member_id} "
                 f"({session.organization_slug}); token: *** (never printed)")
        self.say(f"      started {_when(session.started_at)}, last accessed {_when(session.last_accessed_at)}, "
                 f"expires {_when(session.expires_at)}")
        self.say("      factors:")
        for factor in session.authentication_factors:
            line = f"        - {factor.type} / {factor.delivery_method}, at {_when(factor.last_authenticated_at)}"
            if factor.phone_number_factor is not None:
                line += f", phone {mask_phone(factor.phone_number_factor.get('phone_number', ''))}"
            self.say(line)

    # --- codes -----------------------------------------------------------------------------------------

    def sms_code(self) -> str:
        message = self.gateway.last
        if message is None:
            raise _DemoFailed("no SMS went through the console gateway")
        return message.code

    def ask_code(self) -> str:
        try:
            line = input("    enter the 6-digit code from the SMS (shown on stderr): ")
        except EOFError:
            raise _NoInput from None
        isatty = getattr(sys.stdin, "isatty", None)
        if not (callable(isatty) and isatty()):
            self.say()  # nothing echoed the typed line: end the prompt's line
        return line.strip()

    def redeem(self, what: str, redeem: Callable[[str], AuthenticateResult]) -> AuthenticateResult:
        """Submit codes until one is accepted: typed by the script, or read from stdin with --interactive."""
        if not self.interactive:
            self.say("    (typing the code the console gateway printed)")
            return redeem(self.sms_code())
        while True:
            code = self.ask_code()
            try:
                return redeem(code)
            except MfaError as error:
                self.show_refusal(error)
                if error.error_type != "otp_code_not_found":
                    raise
                self.say(f"    that was not the {what} code; try again")

    # --- the script ------------------------------------------------------------------------------------

    def run(self) -> None:
        flow = self.flow
        self.say(f"mfa_flow {__version__} demo: SMS MFA login and an inactivity step-up")
        self.say("Codes are delivered by the ConsoleGateway: it prints each SMS on stderr under its DEVELOPMENT "
                 "banner.")
        self.say("The clock is a FakeClock, so inactivity passes instantly. Tokens are never printed.")

        self.step("Create the organization and its member")
        self.directory.put_organization(Organization(DEMO_ORG, organization_slug=DEMO_SLUG,
                                                     organization_name="Acme Demo",
                                                     mfa_policy="REQUIRED_FOR_ALL"))
        self.directory.put_member(Member(DEMO_MEMBER, DEMO_ORG, email_address=DEMO_EMAIL, name="Ada",
                                         mfa_phone_number=DEMO_PHONE, mfa_phone_number_verified=True))
        org = flow.get_organization(DEMO_ORG)
        member = flow.get_member(DEMO_ORG, DEMO_MEMBER)
        self.say(f"    organization {org.organization_id} (slug {org.organization_slug}), "
                 f"mfa_policy={org.mfa_policy}")
        self.say(f"    member {member.member_id} <{member.email_address}>, phone "
                 f"{mask_phone(member.mfa_phone_number)} verified={member.mfa_phone_number_verified}")

        self.step("Primary authentication by email_magic_link")
        primary = flow.authenticate_primary(DEMO_ORG, DEMO_MEMBER, "email_magic_link")
        if not primary.intermediate_session_token or primary.mfa_required is None:
            raise _DemoFailed("primary authentication did not ask for MFA")
        self.move("login", "issued", "intermediate session token ***, never printed")
        options = primary.mfa_required.member_options
        self.say(f"    member_authenticated={primary.member_authenticated}: MFA is owed "
                 f"(mfa_policy REQUIRED_FOR_ALL)")
        self.say(f"    secondary_auth_initiated={primary.mfa_required.secondary_auth_initiated!r}: "
                 f"an SMS went to {options.mfa_phone_number} automatically")
        if primary.mfa_required.secondary_auth_initiated != "sms_otp":
            raise _DemoFailed("the automatic SMS was not sent")
        ist = primary.intermediate_session_token

        def redeem_login(code: str) -> AuthenticateResult:
            return flow.authenticate_sms_otp(DEMO_ORG, DEMO_MEMBER, code, intermediate_session_token=ist)

        if self.interactive:
            self.step("Type the code from the SMS (a wrong one is refused with otp_code_not_found)")
        else:
            self.step("A wrong code")
            right = self.sms_code()
            wrong = f"{(int(right) + 1) % 1_000_000:06d}"
            self.say("    (typing 6 digits that are not the code the console gateway printed)")
            try:
                redeem_login(wrong)
            except MfaError as error:
                if error.error_type != "otp_code_not_found":
                    raise
                self.show_refusal(error)
            else:
                raise _DemoFailed("a wrong code was accepted")
            self.step("The right code")
        result = self.redeem("login", redeem_login)
        if not result.session_token:
            raise _DemoFailed("no session token was issued")
        self.say("    accepted: the IST is exchanged for a session (session token: *** , never printed)")
        session_token = result.session_token

        self.step("The session")
        self.show_session(result.member_session)
        self.say(f"    member mfa_enrolled={result.member.mfa_enrolled} "
                 f"(a success under REQUIRED_FOR_ALL enrols)")

        self.step(f"{INACTIVITY_MINUTES} minutes of inactivity (fake clock)")
        before = self.clock.now()
        after = self.clock.advance(minutes=INACTIVITY_MINUTES)
        self.say(f"    clock {_at(before)} -> {_at(after)}: {after - before:.0f} s without a request "
                 f"(inactivity timeout {flow.policy.inactivity_timeout} s)")

        self.step("authenticate_session: is the session still good?")
        check = flow.authenticate_session(session_token=session_token)
        self.say(f"    step_up_required={check.step_up_required}, "
                 f"secondary_auth_initiated={check.secondary_auth_initiated!r}")
        if not check.step_up_required or check.secondary_auth_initiated != "sms_otp":
            raise _DemoFailed("the idle session did not ask for an SMS step-up")
        self.say("    a step-up SMS went to the linked phone, bound to this session")

        self.step("The step-up code")

        def redeem_step_up(code: str) -> AuthenticateResult:
            return flow.authenticate_sms_otp(DEMO_ORG, DEMO_MEMBER, code, session_token=session_token)

        stepped = self.redeem("step-up", redeem_step_up)
        if stepped.session_token != session_token:
            raise _DemoFailed("the step-up did not keep the session token")
        self.say("    accepted: the same session continues (token unchanged, still never printed)")

        self.step("Step-up completed")
        self.show_session(stepped.member_session)
        again = flow.authenticate_session(session_token=session_token)
        self.say(f"    authenticate_session now: step_up_required={again.step_up_required}")
        if again.step_up_required:
            raise _DemoFailed("the session still needs a step-up")
        self.say()
        self.say("Done: login with SMS MFA, then an SMS step-up after inactivity.")


def _demo(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    demo = _Demo(out, interactive=bool(args.interactive))
    try:
        demo.run()
    except _NoInput:
        err.write(f"{PROG} demo: standard input ended before a code was entered; stopping (exit status 1)\n")
        return EXIT_FAILED
    except KeyboardInterrupt:
        err.write(f"{PROG} demo: interrupted\n")
        return EXIT_FAILED
    except MfaError as error:
        err.write(f"{PROG} demo: stopped by {error.error_type} ({error.status_code}): {error.error_message}\n")
        return EXIT_FAILED
    except _DemoFailed as failure:
        err.write(f"{PROG} demo: unexpected behaviour: {failure}\n")
        return EXIT_FAILED
    return EXIT_OK


def _diagram(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    binary_out = None if args.output else getattr(out, "buffer", None)
    if args.format == "png" and not args.output and (binary_out is None or out.isatty()):
        err.write(f"{PROG} diagram: a png is binary: write it with -o FILE or redirect standard output\n")
        return EXIT_USAGE
    try:
        policy = None
        if args.policy is not None:  # its numbers label the conditions they decide (defaults without [policy])
            policy = load_policy_file(args.policy).policy or Policy()
        drawing = diagram(args.format, machine=args.machine, policy=policy)
    except MfaError as error:
        err.write(f"{PROG} diagram: {error.error_message}\n")
        return EXIT_USAGE
    if args.output:
        data = drawing if isinstance(drawing, bytes) else drawing.encode("utf-8")
        try:
            Path(args.output).write_bytes(data)
        except OSError as exc:
            err.write(f"{PROG} diagram: cannot write {args.output} ({exc.strerror})\n")
            return EXIT_USAGE
        err.write(f"{PROG} diagram: wrote {args.output} ({args.format}, {len(data)} bytes)\n")
        return EXIT_OK
    if isinstance(drawing, str):
        out.write(drawing)
        out.flush()
    elif binary_out is not None:  # a png to a pipe or a file (to a terminal it was refused above)
        out.flush()
        binary_out.write(drawing)
        binary_out.flush()
    return EXIT_OK


#: A terminal's progress line is rewritten at most this often (explore calls back once per depth level today).
PROGRESS_INTERVAL = 0.1


class _Progress:
    """``explore``'s progress callback: on a terminal one line rewritten in place (at most every
    PROGRESS_INTERVAL, and whenever the depth changes), elsewhere a line per depth level."""

    def __init__(self, err: TextIO, depth: int) -> None:
        self.err, self.depth = err, depth
        isatty = getattr(err, "isatty", None)
        self.tty = bool(callable(isatty) and isatty())
        self.started = self.shown_at = time.monotonic()
        self.shown_depth = -1
        self.width = 0

    def start(self) -> None:
        self.show(f"{PROG} check: exploring to depth {self.depth} ...")

    def __call__(self, depth: int, states: int, runs: int) -> None:
        now = time.monotonic()
        if depth == self.shown_depth and (not self.tty or now - self.shown_at < PROGRESS_INTERVAL):
            return
        self.shown_depth, self.shown_at = depth, now
        self.show(f"{PROG} check: depth {depth}/{self.depth}, {states:,} states, {runs:,} runs, "
                  f"{now - self.started:.1f} s")

    def show(self, line: str) -> None:
        if self.tty:
            self.err.write("\r" + line.ljust(self.width))
            self.width = len(line)
        else:
            self.err.write(line + "\n")
        self.err.flush()

    def done(self) -> None:
        if self.tty and self.width:
            self.err.write("\n")
            self.err.flush()


def _properties(specs: Sequence[str]) -> list[Property]:
    """Each ``module:function`` of ``--properties`` (comma-separated, the option may repeat), imported with the
    current directory first on sys.path, as ``python -m`` puts it, so a properties.py beside the file is found."""
    here = str(Path.cwd())
    if here not in sys.path:
        sys.path.insert(0, here)
    found: list[Property] = []
    for entry in (part.strip() for spec in specs for part in spec.split(",")):
        module_name, _, attribute = entry.partition(":")
        if not module_name or not attribute:
            raise ConfigurationError(f"--properties {entry!r}: must be module:function (e.g. properties:no_sms_flood)")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            missing = exc.name or module_name
            raise ConfigurationError(f"--properties {entry!r}: cannot import {module_name}: no module named "
                                     f"{missing!r} (searched from {here} first)") from None
        except Exception as exc:  # noqa: BLE001 - the user's module may raise anything while it loads
            raise ConfigurationError(f"--properties {entry!r}: importing {module_name} raised "
                                     f"{type(exc).__name__}: {exc}") from None
        target: Any = module
        for part in attribute.split("."):
            if not hasattr(target, part):
                raise ConfigurationError(f"--properties {entry!r}: {module_name} has no attribute {attribute!r}")
            target = getattr(target, part)
        if not callable(target):
            raise ConfigurationError(f"--properties {entry!r}: {module_name}.{attribute} is not callable (it is "
                                     f"of type {type(target).__name__}); a property is a function of the world")
        found.append(target)
    return found


def _check(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    try:
        loaded = load_policy_file(args.file)
        properties = _properties(args.properties)
    except MfaError as error:
        err.write(f"{PROG} check: {error.error_message}\n")
        return EXIT_USAGE
    policy = loaded.policy if loaded.policy is not None else Policy()
    names = ", ".join(getattr(p, "__name__", repr(p)) for p in properties)
    source = "its [policy]" if loaded.policy is not None else "the default policy (the file has no [policy])"
    judged = f"{len(INVARIANTS)} built-in invariants"
    if properties:
        judged += f" and {len(properties)} of your properties ({names})"
    limit = f", for at most {args.seconds:g} s" if args.seconds is not None else ""
    out.write(f"{PROG} check {args.file}: {source}; {judged}; every sequence of at most {args.depth} "
              f"action{'s' if args.depth > 1 else ''}{limit}\n")
    if loaded.fixtures.organizations or loaded.fixtures.members:
        out.write(f"  (the file's {len(loaded.fixtures.organizations)} organization(s) and "
                  f"{len(loaded.fixtures.members)} member(s) were checked as records; explore runs its own "
                  "universe of members)\n")
    out.flush()
    progress = _Progress(err, args.depth)
    try:
        progress.start()
        report = explore(policy, properties=properties, depth=args.depth, seconds=args.seconds,
                         all_violations=args.all_violations, progress=progress)
    except KeyboardInterrupt:
        progress.done()
        err.write(f"{PROG} check: interrupted before the end; no report\n")
        return EXIT_INTERRUPTED
    except MfaError as error:
        progress.done()
        err.write(f"{PROG} check: {error.error_message}\n")
        return EXIT_USAGE
    progress.done()
    out.write(f"\n{report}\n")
    for violation in report.violations:
        out.write(f"\nA test that replays {violation.property} and fails the same way (Violation.to_pytest()):\n\n"
                  f"{violation.to_pytest()}")
    if not report.complete:
        verdict = ("nothing was violated in what was explored, which is not every sequence" if report.ok
                   else "the violations above stand")
        out.write(f"\nIncomplete: --seconds {args.seconds:g} ended the search at depth {report.depth} of "
                  f"{args.depth}; {verdict}.\n")
    out.flush()
    return EXIT_OK if report.ok else EXIT_FAILED


EMULATOR_EXTRA = "python3 -m pip install 'mfa_flow[emulator]'"


def _serve(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    try:
        from mfa_flow.emulator import create_app
        from mfa_flow.emulator.server import serve
    except ImportError as exc:
        err.write(f"{PROG} serve: needs the emulator extra ({exc.name or 'a dependency'} is not installed): "
                  f"{EMULATOR_EXTRA}\n")
        return EXIT_USAGE
    try:
        store, secret_key = _store(args.store, args.secret_key_file)
        app = create_app(project_id=args.project_id, secret=args.secret, fixtures=args.fixtures, policy=args.policy,
                         test_endpoints=args.test_endpoints, store=store, secret_key=secret_key)
    except MfaError as error:
        err.write(f"{PROG} serve: {error.error_message}\n")
        return EXIT_USAGE
    records = app.state.emulator.fixtures
    err.write(f"{PROG} serve: project {args.project_id}: {len(records.organizations)} organization(s), "
              f"{len(records.members)} member(s), store {'memory' if store is None else repr(store)}\n")
    if args.test_endpoints:
        err.write(f"{PROG} serve: test endpoints on, without authentication: GET /_emulator/messages (codes in "
                  "clear), POST /_emulator/primary_auth, POST /_emulator/clock/advance\n")
    err.flush()
    return serve(app, host=args.host, port=args.port, access_log=args.access_log, out=out, err=err)


def _store(spec: str | None, key_file: str | None) -> tuple[AsyncStore | None, bytes | None]:
    """``--store`` and ``--secret-key-file``: the asynchronous store and the key it needs."""
    key = None
    if key_file is not None:
        try:
            key = Path(key_file).read_bytes().rstrip(b"\r\n")
        except OSError as exc:
            raise ConfigurationError(f"--secret-key-file {key_file}: cannot read it ({exc.strerror})") from None
    if spec is None or spec == "memory":
        return None, key
    if not spec.startswith(("sqlite:", "redis://", "rediss://", "unix://")):
        raise ConfigurationError(f"--store: must be memory, sqlite:PATH or redis://HOST:PORT/DB, not {spec!r}")
    if key is None:  # refused before the store opens (or creates) anything
        raise ConfigurationError(f"--store {spec}: a durable store needs --secret-key-file (codes must verify "
                                 "after a restart and across processes)")
    if spec.startswith("sqlite:"):
        from mfa_flow.stores import AsyncSqliteStore

        return AsyncSqliteStore(spec.removeprefix("sqlite:")), key
    from mfa_flow.stores import AsyncRedisStore

    return AsyncRedisStore(spec), key


#: The default depth of ``check``: a few seconds on the default policy (depth 4 takes about a minute).
DEFAULT_CHECK_DEPTH = 3


def _at_least_one(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, not {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, not {text!r}")
    return value


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of seconds, not {text!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, not {text!r}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="SMS one-time-passcode MFA for B2B login flows: a demo, a policy checker, the state diagrams "
                    "and a local Stytch emulator.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = commands.add_parser(
        "demo",
        help="run a complete scripted login with SMS MFA and an inactivity step-up",
        description="A complete login on the embedded defaults, with a fake clock and the console gateway "
                    "(each SMS is printed on stderr under a development banner).",
    )
    demo.add_argument("--interactive", action="store_true",
                      help="read each code from standard input instead of typing it automatically")
    demo.set_defaults(handler=_demo)

    checker = commands.add_parser(
        "check",
        help="explore every short sequence of events under a policy file; exit 1 on a violation",
        description="Run mfa_flow.testing.explore on FILE's [policy] (defaults without one): every sequence of at "
                    "most --depth actions over a small fixed universe of members, checking the built-in "
                    "invariants and your --properties after every step. A progress line goes to stderr; the "
                    "report, each violation's numbered steps and a pytest test replaying it go to stdout. Exit "
                    "status: 0 nothing violated (also when --seconds cut the search short, which the report "
                    "says), 1 a violation, 2 a bad file or argument, 130 interrupted.",
        epilog="A property is a plain function prop(world) that asserts: e.g. in properties.py, def "
               "at_most_3_texts(world): assert len(world.sms.sent) <= 3; then "
               f"{PROG} check policy.toml --properties properties:at_most_3_texts. See docs/testing.md.",
    )
    checker.add_argument("file", metavar="FILE", help="TOML policy file ([policy], optional records)")
    checker.add_argument("--depth", type=_at_least_one, default=DEFAULT_CHECK_DEPTH, metavar="N",
                         help=f"longest sequence of actions explored (default: {DEFAULT_CHECK_DEPTH}, a few seconds "
                              "on the default policy; each level costs some 20 times the one before)")
    checker.add_argument("--seconds", type=_positive_seconds, metavar="S",
                         help="stop after S seconds; the report then says the search is incomplete")
    checker.add_argument("--properties", action="append", default=[], metavar="MODULE:FUNCTION,...",
                         help="your properties, imported by module and name (the current directory is searched "
                              "first); comma-separated, or repeat the option")
    checker.add_argument("--all-violations", action="store_true",
                         help="go on after the first violating level; at most one violation per property")
    checker.set_defaults(handler=_check)

    drawing = commands.add_parser(
        "diagram",
        help="draw the state machines: mermaid text, or svg and png through Graphviz",
        description="Draw the state machines the flow runs on, from the very tables it triggers: mermaid "
                    "stateDiagram-v2 text (one document per machine), or svg or png laid out by Graphviz's dot "
                    f"program ({GRAPHVIZ_INSTALL}). Standard output unless -o.",
    )
    drawing.add_argument("--format", choices=FORMATS, default="mermaid",
                         help="mermaid (default), svg or png (svg and png need Graphviz's dot on PATH)")
    drawing.add_argument("--machine", choices=sorted(TABLES), metavar="NAME",
                         help=f"only this machine: one of {', '.join(sorted(TABLES))} (default: all)")
    drawing.add_argument("--policy", metavar="FILE",
                         help="a policy file: label each condition with the number it is judged against")
    drawing.add_argument("-o", "--output", metavar="FILE", help="write there instead of standard output")
    drawing.set_defaults(handler=_diagram)

    server = commands.add_parser(
        "serve",
        help="run a local server that answers as Stytch's B2B SMS OTP API (needs the emulator extra)",
        description="A local, Stytch-compatible server for the B2B SMS OTP endpoints, with mfa_flow's rules: "
                    "point the official stytch SDK at it with environment='http://HOST:PORT'. Once ready it "
                    "prints 'Listening on http://HOST:PORT' as the first line on stdout; everything else goes to "
                    "stderr. SIGINT or SIGTERM stops it (exit status 0); a bad file exits with status 2.",
        epilog=f"Needs the emulator extra: {EMULATOR_EXTRA}",
    )
    server.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    server.add_argument("--port", type=int, default=8123, help="port to listen on; 0 picks a free one "
                                                                "(default: 8123)")
    server.add_argument("--project-id", required=True, metavar="ID", help="the project id clients authenticate with")
    server.add_argument("--secret", required=True, metavar="S", help="the secret clients authenticate with")
    server.add_argument("--fixtures", required=True, metavar="FILE",
                        help="JSON or TOML file of organizations and members")
    server.add_argument("--policy", metavar="FILE", help="TOML policy file ([policy], optional records)")
    server.add_argument("--test-endpoints", action="store_true",
                        help="add the unauthenticated /_emulator/ routes: messages (with codes), primary_auth, "
                             "clock/advance")
    server.add_argument("--store", metavar="STORE",
                        help="memory (default), sqlite:PATH or redis://HOST:PORT/DB; durable stores need "
                             "--secret-key-file")
    server.add_argument("--secret-key-file", metavar="FILE",
                        help="file whose bytes (at least 32; a trailing newline is ignored) key the code HMACs")
    server.add_argument("--access-log", action="store_true", help="log every request on stderr")
    server.set_defaults(handler=_serve)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 success, 1 failure, 2 usage error)."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits on --help, --version and usage errors; report the status
        code = exc.code
        if code is None:
            return EXIT_OK
        return code if isinstance(code, int) else EXIT_USAGE
    handler: Callable[[argparse.Namespace, TextIO, TextIO], int] | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_usage(sys.stderr)
        sys.stderr.write(f"{PROG}: error: a command is required (demo, check, diagram, serve)\n")
        return EXIT_USAGE
    try:
        return handler(args, sys.stdout, sys.stderr)
    except BrokenPipeError:  # e.g. `mfa-flow diagram | head`: the reader left; nothing more to say
        try:  # keep the interpreter's final flush of stdout from failing again
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return EXIT_FAILED
