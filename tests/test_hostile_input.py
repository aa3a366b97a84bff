"""Hostile input (issue 9): every public method, sync and async, answers a hostile argument with a documented
MfaError that names the field, never quotes the value and stays short; and the flow keeps working afterwards.

Hostile means: a lone surrogate (what ``json.loads`` makes of ``"\\ud800"``), a ``str`` or ``int`` subclass whose
every method raises, a megabyte of text, NUL and bidirectional controls, bytes-likes, floats, containers, None
where a value is required, an object that cannot even be printed. Each string holds MARK (or is made of SNOWMAN),
so "no part of the value" is a substring check. A deterministic matrix (method x parameter x value x twin), a
Hypothesis fuzz over each argument in turn, the refusal events and DEBUG logs, and the emulator's JSON routes.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
from collections.abc import Iterator
from datetime import timedelta
from typing import Any, NoReturn

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mfa_flow import (
    AsyncMfaFlow,
    AuthenticateResult,
    Event,
    Member,
    MfaError,
    MfaFlow,
    Organization,
    PrimaryAuthResult,
    SendResult,
    SessionCheck,
)
from mfa_flow.errors import ERROR_STATUS, UnexpectedResponse
from mfa_flow.stores import MemoryStore
from mfa_flow.testing import FakeClock, FakeTransport
from mfa_flow.wire import REVOKE_SESSION
from tests.helpers_send import (
    M_TOTP2,
    M_VERIFIED,
    ORG,
    P_VERIFIED,
    Env,
    populate_directory,
    primary_ist,
    totp_session,
)
from tests.test_emulator import ADA, AUTHENTICATE, CY, PRIMARY_AUTH, SEND, Http, basic, make_app, ok, refused
from tests.test_emulator import ORG as EMULATOR_ORG
from tests.test_public_api import PUBLIC_SIGNATURES, TOKEN_ARGUMENTS, TOKEN_REQUIRED, _baseline
from tests.test_stytch_mode import Env as StytchEnv

MARK = "Qz7hostile"  # in every hostile string: no message, event or log line of the flow holds it
SNOWMAN = "\u2603"  # the megabyte value is made of it
DIGITS = "31337"  # the hostile numbers' value: within 5..527040, so only the type can refuse it
#: What no refusal may hold: the marks, and the hostile characters themselves.
NEEDLES = (MARK, SNOWMAN, "\ud800", "\udfff", "\x00", "\u202e", "\u200b", "\u200f", "\ufeff")
KEY = b"hostile-input-test-key-of-32-bytes"
MAX_MESSAGE = 300
TWINS = ("sync", "async")


def _boom(*_args: object, **_kwargs: object) -> NoReturn:
    raise RuntimeError("a hostile override ran")


class Evil(str):
    """A string whose every method the flow might call raises: only its built-in copy is safe to read."""

    __hash__ = __eq__ = __ne__ = __lt__ = __le__ = __gt__ = __ge__ = _boom
    __len__ = __iter__ = __getitem__ = __contains__ = _boom
    lower = upper = encode = strip = startswith = isascii = _boom
    __str__ = __repr__ = __format__ = _boom


class EvilInt(int):
    """An int whose comparisons, conversions, hash, truth and printing raise."""

    __lt__ = __le__ = __gt__ = __ge__ = __eq__ = __ne__ = _boom
    __index__ = __int__ = __hash__ = __bool__ = _boom
    __str__ = __repr__ = __format__ = _boom


class Unprintable:
    """Not a string, and cannot be printed: a refusal may name its type, nothing else."""

    __str__ = __repr__ = _boom


#: Each hostile value, by the name the tests are parametrized with (pytest would print the value itself).
HOSTILE: dict[str, object] = {
    "lone_surrogate": "\ud800",
    "inner_surrogate": f"a{MARK}\udfffb",
    "str_subclass": Evil(MARK),
    "int_subclass": EvilInt(DIGITS),
    "one_megabyte": SNOWMAN * 1_000_000,
    "nul_rtl_zero_width": f"\x00{MARK}\u202e\u200b\u200f\ufeff",
    "bytes": MARK.encode(),
    "bytearray": bytearray(MARK.encode()),
    "memoryview": memoryview(MARK.encode()),
    "float": float(DIGITS),
    "none": None,
    "dict": {MARK: MARK},
    "list": [MARK],
    "unprintable": Unprintable(),
}
#: Values that are encodable text: read as their plain copy, they name nothing the flow knows.
TEXT = frozenset({"str_subclass", "one_megabyte", "nul_rtl_zero_width"})
#: What encodable text naming nothing is, per parameter that refers to something.
UNKNOWN = {"organization_id": "organization_not_found", "member_id": "member_not_found",
           "intermediate_session_token": "intermediate_session_not_found", "session_token": "session_not_found",
           "member_session_id": "session_not_found", "session_jwt": "unable_to_parse_session_jwt"}
#: Parameters whose malformed value has its own error type (else bad_request).
MALFORMED = {"locale": "invalid_locale", "mfa_phone_number": "invalid_phone_number",
             "session_duration_minutes": "invalid_session_duration_minutes"}
#: The methods whose refusal emits an event (otp.refused; otp.failed for authenticate_sms_otp), which names the
#: organization and member refs they take.
REFUSAL_EVENTS = frozenset({"authenticate_primary", "send_sms_otp", "authenticate_sms_otp", "record_mfa_factor",
                            "authenticate_session"})
RESULT_TYPES: dict[str, type] = {
    "authenticate_primary": PrimaryAuthResult, "record_primary_auth": PrimaryAuthResult, "send_sms_otp": SendResult,
    "authenticate_sms_otp": AuthenticateResult, "authenticate_session": SessionCheck,
    "record_mfa_factor": AuthenticateResult, "delete_mfa_phone_number": Member, "get_member": Member,
    "get_organization": Organization, "revoke_session": type(None), "list_member_sessions": list,
    "unlock_member": Member,
}


def expected_error(method: str, param: str, name: str) -> str | None:
    """The error_type the hostile value ``name`` gets as ``param`` of ``method``; None where it is accepted."""
    if method == "record_primary_auth":
        return "invalid_argument"  # local mode: it records Stytch's answers only in Stytch mode, whatever is passed
    if param == "code":
        return "otp_code_not_found"  # spec §6.5: anything but six ASCII digits is a wrong code (and counts)
    if name == "none":
        return "no_session_arguments" if param in TOKEN_ARGUMENTS and method != "revoke_session" else "bad_request"
    if param == "session_duration_minutes" and name == "int_subclass":
        return None  # an int in range: read as its plain copy
    if method == "revoke_session" and param == "member_id" and name in TEXT:
        return None  # ends every session of a member that has none
    if name in TEXT:
        return UNKNOWN.get(param, MALFORMED.get(param, "bad_request"))
    return MALFORMED.get(param, "bad_request")


def required(method: str, param: str) -> bool:
    """A parameter that must have a value: None there is "None where required"."""
    if method in TOKEN_REQUIRED | {"revoke_session"} and param in (*TOKEN_ARGUMENTS, "member_session_id",
                                                                    "member_id"):
        return True
    default = inspect.signature(getattr(MfaFlow, method)).parameters[param].default
    return default is inspect.Parameter.empty


# --- the flows: MfaFlow and AsyncMfaFlow on one store, directory, key, clock and transport ------------------

def make_twins() -> tuple[Env, AsyncMfaFlow]:
    """The helpers_send environment (its sync flow builds each baseline) and an AsyncMfaFlow sharing all of it,
    key included, so a code sent through either verifies through the other."""
    clock, transport, events = FakeClock(), FakeTransport(), list[Event]()
    flow = MfaFlow(clock=clock, transport=transport, events=[events.append], secret_key=KEY)
    env = Env(flow=flow, clock=clock, transport=transport, events=events)
    populate_directory(env)
    twin = AsyncMfaFlow(clock=clock, transport=transport, events=[events.append], secret_key=KEY,
                        store=flow.store, directory=flow.directory)
    return env, twin


def run(flow: MfaFlow | AsyncMfaFlow, method: str, /, **kwargs: Any) -> Any:
    """``flow.<method>(**kwargs)``, run to completion on the async twin (authenticate_primary takes a
    ``method`` of its own)."""
    result = getattr(flow, method)(**kwargs)
    return asyncio.run(result) if inspect.iscoroutine(result) else result


def baseline(env: Env, method: str) -> dict[str, Any]:
    """Valid arguments for ``method`` (tests/test_public_api.py); record_primary_auth has none in local mode."""
    return {"response": {}} if method == "record_primary_auth" else _baseline(env, method)


def with_value(method: str, call: dict[str, Any], param: str, value: object) -> dict[str, Any]:
    """``call`` with ``value`` as ``param``, the call's only token (revoke_session's selectors are exclusive)."""
    call = dict(call)
    exclusive = (*TOKEN_ARGUMENTS, "member_session_id", "member_id") if method == "revoke_session" else \
        TOKEN_ARGUMENTS
    if param in exclusive:
        for name in exclusive:
            call.pop(name, None)
    call[param] = value
    return call


def assert_refusal_is_clean(exc: MfaError, method: str, param: str, needles: tuple[str, ...] = NEEDLES) -> None:
    """Documented type and status; a short message naming the field; no needle in the message, ``str``,
    ``repr`` or error body, each encodable (a lone surrogate would not be)."""
    assert exc.error_type in ERROR_STATUS
    assert exc.status_code == ERROR_STATUS[exc.error_type]
    message = exc.error_message
    assert len(message) < MAX_MESSAGE, len(message)
    assert param in message or method in message, message
    for shown in (message, str(exc), repr(exc), json.dumps(exc.to_dict(), ensure_ascii=False)):
        shown.encode()
        assert len(shown) < 2 * MAX_MESSAGE, len(shown)
        assert not [n for n in needles if n in shown], shown


def assert_no_trace(env: Env, since: tuple[int, int], caplog: pytest.LogCaptureFixture,
                    needles: tuple[str, ...] = NEEDLES) -> None:
    """The events and the DEBUG log lines since ``since`` hold plain strings and none of ``needles``."""
    for event in env.events_since(since):
        fields = (event.name, event.organization_id, event.member_id, event.phone)
        assert all(type(f) is str for f in fields), event.name
        shown = " ".join((*fields, str(event.reason), repr(dict(event.data))))
        assert not [n for n in needles if n in shown], event.name
    assert not [n for n in needles if n in caplog.text]


def assert_a_login_still_works(env: Env, flow: MfaFlow | AsyncMfaFlow) -> None:
    """Primary authentication, the automatic code, its redemption and the session's check all go through."""
    mark = env.mark()
    primary = run(flow, "authenticate_primary", organization_id=ORG, member_id=M_VERIFIED, method="email_magic_link")
    assert primary.mfa_required is not None
    assert primary.mfa_required.secondary_auth_initiated == "sms_otp"
    [message] = env.sent_since(mark)
    assert message.to == P_VERIFIED
    done = run(flow, "authenticate_sms_otp", organization_id=ORG, member_id=M_VERIFIED, code=message.code,
               intermediate_session_token=primary.intermediate_session_token)
    assert done.session_token
    check = run(flow, "authenticate_session", session_token=done.session_token)
    assert check.step_up_required is False
    assert check.member_session.member_id == M_VERIFIED


def assert_accepted(env: Env, method: str, param: str, result: object, since: tuple[int, int]) -> None:
    """The two hostile values the flow legitimately accepts, and what each did."""
    if param == "session_duration_minutes":  # EvilInt(31337) read as 31337: a session of that many minutes
        assert isinstance(result, AuthenticateResult)
        assert result.member_session is not None
        session = result.member_session
        assert session.expires_at - session.started_at == timedelta(minutes=int(DIGITS))
    else:  # revoke_session(member_id=<text naming no member>): that member has no session; nothing ends
        assert (method, param, result) == ("revoke_session", "member_id", None)
        assert "session.revoked" not in [e.name for e in env.events_since(since)]


# --- the deterministic matrix ------------------------------------------------------------------------------

def _cases() -> Iterator[Any]:
    for method, params in PUBLIC_SIGNATURES.items():
        for param in params:
            for name in HOSTILE:
                if name != "none" or required(method, param):
                    yield pytest.param(method, param, name, id=f"{method}-{param}-{name}")


CASES = list(_cases())


@pytest.mark.parametrize("twin", TWINS)
@pytest.mark.parametrize(("method", "param", "name"), CASES)
def test_hostile_argument_is_a_documented_refusal_and_the_flow_keeps_working(
        twin: str, method: str, param: str, name: str) -> None:
    env, async_flow = make_twins()
    flow = env.flow if twin == "sync" else async_flow
    good = baseline(env, method)
    mark = env.mark()
    expected = expected_error(method, param, name)
    call = with_value(method, good, param, HOSTILE[name])
    if expected is None:
        assert_accepted(env, method, param, run(flow, method, **call), mark)
    else:
        with pytest.raises(MfaError) as caught:  # anything else (RuntimeError, UnicodeEncodeError) fails here
            run(flow, method, **call)
        assert caught.value.error_type == expected, caught.value.error_message
        assert_refusal_is_clean(caught.value, method, param, (*NEEDLES, DIGITS))
        assert env.sent_since(mark) == []
        if param == "code":  # a wrong code (§6.5): counted once on the code and on the member
            failed = [(e.reason, e.data["attempts"], e.data["failures"]) for e in env.events_since(mark)
                      if e.name == "otp.failed"]
            assert failed == [("otp_code_not_found", 1, 1)]
        if method != "record_primary_auth":  # the argument alone decided: the valid call still goes through
            assert isinstance(run(flow, method, **good), RESULT_TYPES[method])
    assert_a_login_still_works(env, flow)


@pytest.mark.parametrize("twin", TWINS)
@pytest.mark.parametrize(("method", "param", "name"), CASES)
def test_hostile_argument_leaves_no_trace_in_events_or_debug_logs(
        twin: str, method: str, param: str, name: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="mfa_flow")
    env, async_flow = make_twins()
    flow = env.flow if twin == "sync" else async_flow
    call = with_value(method, baseline(env, method), param, HOSTILE[name])
    expected = expected_error(method, param, name)
    mark = env.mark()
    caplog.clear()
    if expected is None:
        run(flow, method, **call)
    else:
        with pytest.raises(MfaError):
            run(flow, method, **call)
    assert_no_trace(env, mark, caplog)
    refusals = [e.reason for e in env.events_since(mark) if e.name in ("otp.refused", "otp.failed")]
    # a refusal of the endpoints that report one is reported once, with its error type and nothing else
    assert refusals == ([expected] if expected is not None and method in REFUSAL_EVENTS else [])


def _valid_value_cases() -> Iterator[Any]:
    env, _ = make_twins()
    for method in PUBLIC_SIGNATURES:
        if method != "record_primary_auth":
            for param, value in baseline(env, method).items():
                if isinstance(value, str):
                    yield pytest.param(method, param, id=f"{method}-{param}")


@pytest.mark.parametrize("twin", TWINS)
@pytest.mark.parametrize(("method", "param"), list(_valid_value_cases()))
def test_str_subclass_holding_the_valid_value_is_read_as_its_plain_copy(twin: str, method: str, param: str) -> None:
    """The hostile subclass wrapping the baseline's own value goes through as the baseline does: the flow read
    its built-in copy and never called one of its methods."""
    env, async_flow = make_twins()
    flow = env.flow if twin == "sync" else async_flow
    good = baseline(env, method)
    mark = env.mark()
    result = run(flow, method, **{**good, param: Evil(good[param])})
    assert isinstance(result, RESULT_TYPES[method])
    for field in ("organization_id", "member_id"):
        if getattr(result, field, ""):
            assert type(getattr(result, field)) is str
    for event in env.events_since(mark):
        assert (type(event.organization_id), type(event.member_id)) == (str, str)
    assert_a_login_still_works(env, flow)


def _misplaced_token_cases() -> Iterator[Any]:
    for method, params in PUBLIC_SIGNATURES.items():
        for param in params:
            if param in ("response", "session_duration_minutes", "set_default_mfa"):
                continue  # not text
            for kind in ("intermediate_session_token", "session_token"):
                if param != kind:
                    yield pytest.param(method, param, kind, id=f"{method}-{param}-{kind}")


@pytest.mark.parametrize("twin", TWINS)
@pytest.mark.parametrize(("method", "param", "kind"), list(_misplaced_token_cases()))
def test_a_token_in_the_wrong_field_is_never_quoted(twin: str, method: str, param: str, kind: str,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    """A live token passed where another value belongs shows up in no message, event or log line (§6.12)."""
    caplog.set_level(logging.DEBUG, logger="mfa_flow")
    env, async_flow = make_twins()
    flow = env.flow if twin == "sync" else async_flow
    token = primary_ist(env, ORG, M_TOTP2) if kind == "intermediate_session_token" else \
        totp_session(env, ORG, M_TOTP2)
    good = baseline(env, method)
    expected = expected_error(method, param, "str_subclass")  # encodable text that names nothing there
    mark = env.mark()
    caplog.clear()
    call = with_value(method, good, param, token)
    if expected is None:
        assert_accepted(env, method, param, run(flow, method, **call), mark)
    else:
        with pytest.raises(MfaError) as caught:
            run(flow, method, **call)
        assert caught.value.error_type == expected, caught.value.error_message
        assert_refusal_is_clean(caught.value, method, param, (token,))
    assert_no_trace(env, mark, caplog, (token,))


# --- the fuzz ----------------------------------------------------------------------------------------------

CHARACTERS = st.one_of(st.characters(categories=["Cs"]), st.characters())  # lone surrogates, half the time
ANY_TEXT = st.text(CHARACTERS, max_size=12)
MARKED_TEXT = st.tuples(ANY_TEXT, ANY_TEXT).map(lambda p: p[0] + MARK + p[1])
#: A value as (kind, payload), both printable: the test builds it, so a failing example prints even when the
#: value (a str or int subclass) cannot be printed.
VALUE_SPECS = st.one_of(
    st.tuples(st.just("text"), MARKED_TEXT),
    st.tuples(st.just("text"), ANY_TEXT),
    st.tuples(st.just("str_subclass"), MARKED_TEXT),
    st.tuples(st.just("int"), st.integers()),
    st.tuples(st.just("int_subclass"), st.integers()),
    st.tuples(st.just("bytes"), st.binary(max_size=12).map(lambda b: b + MARK.encode())),
    st.tuples(st.just("none"), st.none()),
    st.tuples(st.just("list"), st.lists(MARKED_TEXT, max_size=3)),
)
BUILD = {"str_subclass": Evil, "int_subclass": EvilInt}


@pytest.mark.parametrize("twin", TWINS)
@pytest.mark.parametrize("method", sorted(PUBLIC_SIGNATURES))
@settings(max_examples=min(settings().max_examples, 50), suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzzed_argument_is_refused_cleanly_or_accepted(twin: str, method: str, data: st.DataObject,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    """Each argument in turn gets arbitrary text (lone surrogates included), an integer, bytes, None or a list:
    a documented refusal that names the field and shows none of the value, or a result; never another
    exception. Either way a login goes through afterwards."""
    param = data.draw(st.sampled_from(PUBLIC_SIGNATURES[method]), label="param")
    kind, payload = data.draw(VALUE_SPECS, label="value")
    value = BUILD[kind](payload) if kind in BUILD else payload
    with caplog.at_level(logging.DEBUG, logger="mfa_flow"):
        env, async_flow = make_twins()
        flow = env.flow if twin == "sync" else async_flow
        call = with_value(method, baseline(env, method), param, value)
        needles: tuple[str, ...] = (MARK,)
        if isinstance(payload, int) and abs(payload) >= 10**6:  # long enough to differ from the flow's numbers
            needles += (str(abs(payload)),)
        mark = env.mark()
        caplog.clear()
        try:
            result = run(flow, method, **call)
        except MfaError as refusal:
            assert_refusal_is_clean(refusal, method, param, needles)
        else:
            assert isinstance(result, RESULT_TYPES[method])
        assert_no_trace(env, mark, caplog, needles)
        assert_a_login_still_works(env, flow)


# --- the emulator's JSON routes ----------------------------------------------------------------------------

REVOKE = REVOKE_SESSION.route
TOKENS = {SEND: TOKEN_ARGUMENTS, AUTHENTICATE: TOKEN_ARGUMENTS, PRIMARY_AUTH: ("session_token",),
          REVOKE: ("member_session_id", "session_token", "session_jwt", "member_id")}
#: Every string field of the emulator's JSON routes, and what a lone surrogate in it answers.
SURROGATE_ANSWERS: dict[str, dict[str, str | None]] = {
    SEND: {"organization_id": "bad_request", "member_id": "bad_request", "mfa_phone_number": "invalid_phone_number",
           "locale": "invalid_locale", "intermediate_session_token": "bad_request", "session_token": "bad_request",
           "session_jwt": "bad_request"},
    AUTHENTICATE: {"organization_id": "bad_request", "member_id": "bad_request",
                   "code": "otp_code_not_found",  # §6.5 locally: not six ASCII digits, a wrong code
                   "intermediate_session_token": "bad_request", "session_token": "bad_request",
                   "session_jwt": "bad_request", "set_mfa_enrollment": "bad_request",
                   "telemetry_id": None},  # accepted and ignored: the emulator does no device fingerprinting
    PRIMARY_AUTH: {"organization_id": "bad_request", "member_id": "bad_request", "method": "bad_request",
                   "session_token": "bad_request", "locale": "invalid_locale"},
    REVOKE: {"member_session_id": "bad_request", "session_token": "bad_request", "session_jwt": "bad_request",
             "member_id": "bad_request"},
}
SURROGATE_VALUE = f"a\ud800{MARK}\udfff"  # json.dumps writes both as \\u escapes, as a hostile client would


@pytest.fixture
def http() -> Iterator[Http]:
    client = Http(make_app())
    yield client
    client.close()


def http_login(http: Http, member_id: str) -> tuple[str, str]:
    """Primary authentication through the test endpoint: the IST and the code it sent."""
    ist = http.login(member_id)
    return ist, http.code(member_id)


def http_session(http: Http, member_id: str) -> str:
    ist, code = http_login(http, member_id)
    body = ok(http.stytch("POST", AUTHENTICATE, {"organization_id": EMULATOR_ORG, "member_id": member_id,
                                                 "code": code, "intermediate_session_token": ist}))
    return str(body["session_token"])


@pytest.mark.parametrize(("route", "field"), [(r, f) for r, fields in SURROGATE_ANSWERS.items() for f in fields])
def test_emulator_answers_a_lone_surrogate_in_any_string_field_naming_the_field(
        http: Http, route: str, field: str) -> None:
    ist, code = http_login(http, ADA)
    good = {
        SEND: {"organization_id": EMULATOR_ORG, "member_id": ADA, "intermediate_session_token": ist},
        AUTHENTICATE: {"organization_id": EMULATOR_ORG, "member_id": ADA, "code": code,
                       "intermediate_session_token": ist},
        PRIMARY_AUTH: {"organization_id": EMULATOR_ORG, "member_id": ADA, "method": "password"},
        REVOKE: {"session_token": http_session(http, CY)},
    }[route]
    body = {k: v for k, v in good.items() if field not in TOKENS[route] or k not in TOKENS[route]}
    body[field] = SURROGATE_VALUE
    response = http.request("POST", route, body=body, headers=None if route == PRIMARY_AUTH else basic())
    assert "\\ud" not in response.text  # not quoted back, even as a JSON escape
    assert MARK not in response.text
    expected = SURROGATE_ANSWERS[route][field]
    if expected is None:
        assert ok(response)["session_token"]
    else:
        status = ERROR_STATUS[expected]
        message = refused(response, status, expected)
        assert field in message, message
        assert len(message) < MAX_MESSAGE
    # the emulator still serves a whole login
    ist, code = http_login(http, ADA)
    assert ok(http.stytch("POST", AUTHENTICATE, {"organization_id": EMULATOR_ORG, "member_id": ADA, "code": code,
                                                 "intermediate_session_token": ist}))["session_token"]


def test_emulator_refuses_a_lone_surrogate_in_a_field_name_as_bad_request(http: Http) -> None:
    response = http.stytch("POST", SEND, {"organization_id": EMULATOR_ORG, "member_id": ADA, "a\ud800": 1})
    message = refused(response, 400, "bad_request")
    message.encode()
    assert len(message) < 200
    assert http.messages() == []


# --- record_primary_auth in Stytch mode --------------------------------------------------------------------

@pytest.mark.parametrize("name", [n for n in HOSTILE if n != "dict"])  # a mapping is an answer: test_stytch_mode
@pytest.mark.parametrize("twin", TWINS)
def test_stytch_mode_record_primary_auth_refuses_a_hostile_response_naming_it(
        twin: str, name: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="mfa_flow")
    stytch = StytchEnv(twin)
    try:
        mark = len(stytch.events)
        with pytest.raises(MfaError) as caught:
            stytch.run("record_primary_auth", HOSTILE[name])
        assert caught.value.error_type == "bad_request"
        assert_refusal_is_clean(caught.value, "record_primary_auth", "response")
        assert stytch.events[mark:] == []
        assert not [n for n in NEEDLES if n in caplog.text]
        # Stytch's real answer is still recorded
        result = stytch.run("record_primary_auth", stytch.primary_answer())
        assert result.mfa_required is not None
        assert result.intermediate_session_token
    finally:
        stytch.close()


#: Where a hostile value can sit inside Stytch's answer that the caller passes on: (path, with a session).
ANSWER_FIELDS = [
    (("member_id",), False), (("member", "member_id"), False), (("member", "organization_id"), False),
    (("organization", "organization_id"), False), (("member", "status"), False),
    (("member", "default_mfa_method"), False), (("organization", "mfa_policy"), False),
    (("organization", "mfa_methods"), False), (("intermediate_session_token",), False),
    (("mfa_required", "secondary_auth_initiated"), False), (("member", "external_id"), False),
    (("member", "mfa_phone_number"), False), (("organization", "organization_slug"), False),
    (("organization", "organization_external_id"), False), (("session_token",), True),
    (("member_session", "member_session_id"), True), (("member_session", "roles"), True),
    (("organization", "allowed_mfa_methods"), False),
]


@pytest.mark.parametrize("name", ["lone_surrogate", "inner_surrogate", "str_subclass", "one_megabyte"])
@pytest.mark.parametrize(("path", "with_session"), ANSWER_FIELDS, ids=[".".join(p) for p, _ in ANSWER_FIELDS])
def test_stytch_mode_record_primary_auth_refuses_hostile_text_inside_the_answer(
        path: tuple[str, ...], with_session: bool, name: str, caplog: pytest.LogCaptureFixture) -> None:
    """Every string of Stytch's answer is read as a plain, encodable copy: a subclass is judged as that copy and
    never runs; a lone surrogate or a megabyte is refused as an unexpected answer naming the field, never
    quoting it, and nothing is recorded; a real answer still is."""
    caplog.set_level(logging.DEBUG, logger="mfa_flow")
    stytch = StytchEnv("sync")
    try:
        body = stytch.primary_answer(session_token="session-token-hostile-test" if with_session else "")
        where = body
        for part in path[:-1]:
            where = where[part]
        hostile = HOSTILE[name]
        where[path[-1]] = [hostile] if path[-1] in ("roles", "allowed_mfa_methods") else hostile
        store = stytch.flow.store
        assert isinstance(store, MemoryStore)
        records, mark = len(store), len(stytch.events)
        try:
            result = stytch.run("record_primary_auth", body)
        except UnexpectedResponse as unexpected:
            refusal: UnexpectedResponse | None = unexpected
        else:
            refusal = None
        # a subclass's text is judged as any text would be there (accepted, or refused as a wrong value)
        assert refusal is not None or name == "str_subclass"
        if refusal is not None:
            message = refusal.error_message
            assert path[-1] in message or message.endswith("name different records")
            assert len(message) < MAX_MESSAGE
            for shown in (message, str(refusal), repr(refusal), str(refusal.to_dict())):
                shown.encode()
                assert not [n for n in NEEDLES if n in shown]
            assert len(store) == records
        else:  # accepted as a plain copy: only encodable text, and nothing the caller's object does ran
            assert isinstance(result, PrimaryAuthResult)
            assert all(type(e.member_id) is str for e in stytch.events[mark:])
        assert not [n for n in NEEDLES if n in caplog.text]
        assert stytch.run("record_primary_auth", stytch.primary_answer()).intermediate_session_token
    finally:
        stytch.close()
