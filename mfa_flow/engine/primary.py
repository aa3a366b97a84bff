"""Primary authentication (docs/rules.md): the caller authenticated the member; issue an IST or a session,
and send the first code automatically when MFA is owed and the SMS conditions hold."""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Any

from mfa_flow import core, crypto, machine
from mfa_flow.arguments import plain_str, text
from mfa_flow.crypto import token_digest
from mfa_flow.engine.context import DELETE, Context, Outcome, Plan, Step
from mfa_flow.engine.reading import Token, read_subject, refresh, resolve, token_record
from mfa_flow.engine.send import count_send, send_automatically, window_keys
from mfa_flow.engine.sessions import index_key, new_session, record_session
from mfa_flow.errors import ConfigurationError, MfaError, RequestError, UnexpectedResponse
from mfa_flow.phone import mask_phone, parse_phone, region_of
from mfa_flow.records import Member, Organization
from mfa_flow.results import MemberOptions, MemberSession, MfaRequired, PrimaryAuthResult
from mfa_flow.state import Factor, LoginState, SessionPhase, SessionState, clone, keys
from mfa_flow.stores import Write
from mfa_flow.wire import member_from, member_session_from, object_at, organization_from, session_record, text_at

__all__ = ["decide", "plan", "record"]


def plan(ctx: Context, now: float, organization_id: object, member_id: object, method: object,
         session_token: object, locale: object) -> Plan:
    if ctx.remote is not None:
        raise ConfigurationError("authenticate_primary: in Stytch mode primary authentication happens at Stytch, "
                                 "which sends the first code itself; pass its answer to record_primary_auth")
    name = plain_str(method) if isinstance(method, str) else ""
    method_error = None if name in core.PRIMARY_FACTORS else RequestError(
        "bad_request", ("method: not a primary authentication method" if isinstance(method, str) else
                        f"method: of type {type(method).__name__}, not a string")
        + f"; one of {', '.join(core.PRIMARY_FACTORS)}")
    loc = None if locale is None else core.check_locale(locale)
    token, token_error = None, None
    if session_token is not None:
        try:
            token = Token.of("session", text(session_token, "session_token"))
        except RequestError as malformed:
            token_error = malformed
    ist = crypto.new_token()  # minted (and hashed) once per call: re-runs and the hooks' verdict see one binding
    return partial(decide, ctx, now, organization_id, member_id, name, method_error, token, token_error, loc, ist,
                   token_digest(ist))


def decide(ctx: Context, now: float, org_ref: object, member_ref: object, method: str,
           method_error: RequestError | None, token: Token | None, token_error: RequestError | None,
           locale: str | None, ist: str, ist_digest: str, verdict: object) -> Step:
    org, base = yield from resolve(ctx, org_ref, member_ref, session=token)
    # checked after organization, member and status (docs/rules.md, order of checks)
    if method_error is not None:
        raise method_error
    if token_error is not None:
        raise token_error
    session_token = None if token is None else token.value
    policy = ctx.policy
    # Read up front with the member's records: the windows the automatic send would count in.
    also = [*index_key(base.member_id), *window_keys(ctx, org.organization_id, base.member_id,
                                                      base.mfa_phone_number)]
    sub, got = yield from read_subject(org, base, now, token, also)
    passed = token_record(ctx, got, sub, token, now)
    passed_digest = token.digest if token is not None else ""
    core.check_lock(sub.guard)
    member = sub.member
    oid, mid = org.organization_id, base.member_id
    out = Outcome()
    primary = Factor(*core.PRIMARY_FACTORS[method], now)
    owed = core.mfa_owed(org, member)

    if method != "discovery" and isinstance(passed, SessionState) and passed.state is SessionPhase.ACTIVE:
        session = clone(passed)
        machine.fire(machine.SESSION, "add_factor", session, factor=primary, now=now)
        out.writes[keys.session(passed_digest)] = Write(session, session.expires_at)
        out.finish = lambda *_: PrimaryAuthResult(
            member_id=mid, organization_id=oid, member=member, organization=org, member_authenticated=True,
            session_token=session_token or "", member_session=core.member_session(session, org))
        return out
    if method != "discovery" and not owed:
        token_value, new = new_session(ctx, out, sub, (primary,), now, policy.default_session_minutes, got)
        out.finish = lambda *_: PrimaryAuthResult(
            member_id=mid, organization_id=oid, member=member, organization=org, member_authenticated=True,
            session_token=token_value, member_session=core.member_session(new, org))
        return out

    login = LoginState(oid, mid, now + policy.ist_ttl, (primary,))
    out.writes[keys.login(ist_digest)] = Write(login, login.expires_at)
    if method != "discovery" and owed and core.sms_conditions(org, member):
        yield from send_automatically(ctx, verdict, out, sub, now, ist_digest, "login", locale)

    def finish(delivered: bool, _answer: object) -> PrimaryAuthResult:
        return PrimaryAuthResult(
            member_id=mid, organization_id=oid, member=member, organization=org,
            member_authenticated=False, intermediate_session_token=ist,
            mfa_required=core.mfa_required(member, delivered) if owed else None)

    out.finish = finish
    return out


# --- Stytch mode (docs/stytch.md): Stytch authenticated the member; the flow records what it answered ----------

def record(ctx: Context, now: float, response: object) -> Plan:
    """``record_primary_auth``: Stytch's primary-auth answer (the SDK's ``.model_dump()`` or the raw JSON), read
    whole before anything is recorded: an answer that is not Stytch's fails closed, naming the field."""
    if ctx.remote is None:
        raise ConfigurationError("record_primary_auth: records Stytch's answers in Stytch mode (a StytchProvider "
                                 "transport); in local mode call authenticate_primary")
    if not isinstance(response, Mapping):
        raise RequestError("bad_request", f"response: must be Stytch's primary-auth answer as a mapping, not "
                                          f"{type(response).__name__}")
    org, member = organization_from(response), member_from(response)
    if (text_at(response, "member_id"), member.organization_id) != (member.member_id, org.organization_id):
        raise UnexpectedResponse("Stytch's answer: member_id, member and organization name different records")
    ist = text_at(response, "intermediate_session_token", default="")
    session_token = text_at(response, "session_token", default="")
    if not ist and not session_token:
        raise UnexpectedResponse("Stytch's answer: holds neither an intermediate_session_token nor a session_token")
    shown = member_session_from(response) if session_token else None
    mfa = response.get("mfa_required")
    required = None
    if mfa is not None:
        if not isinstance(mfa, Mapping):
            raise UnexpectedResponse("Stytch's answer: mfa_required: not an object")
        initiated = mfa.get("secondary_auth_initiated")
        if initiated is not None and text_at(mfa, "secondary_auth_initiated", "mfa_required.") != "sms_otp":
            raise UnexpectedResponse("Stytch's answer: mfa_required.secondary_auth_initiated: not 'sms_otp' or null")
        if mfa.get("member_options") is None:  # optional in the official SDK: shown from the member instead
            options = MemberOptions(mask_phone(member.mfa_phone_number), member.totp_registration_id)
        else:
            given, where = object_at(mfa, "member_options", "mfa_required."), "mfa_required.member_options."
            options = MemberOptions(text_at(given, "mfa_phone_number", where),
                                    text_at(given, "totp_registration_id", where, default=""))
        required = MfaRequired(options, "sms_otp" if initiated else None)
    authenticated = response.get("member_authenticated", bool(session_token))
    if not isinstance(authenticated, bool):
        raise UnexpectedResponse("Stytch's answer: member_authenticated: not true/false")
    return partial(_decide_record, ctx, now, response, org, member, ist, session_token, shown, required,
                   authenticated)


def _decide_record(ctx: Context, now: float, response: Mapping[str, Any], org: Organization, member: Member,
                   ist: str, session_token: str, shown: MemberSession | None, required: MfaRequired | None,
                   authenticated: bool, _verdict: object) -> Step:
    yield from refresh(ctx, response)
    sub, got = yield from read_subject(org, member, now, None, [
        *index_key(member.member_id), *window_keys(ctx, org.organization_id, member.member_id,
                                                   member.mfa_phone_number)])
    policy = ctx.policy
    oid, mid = org.organization_id, member.member_id
    out = Outcome()
    if sub.overlay is not core.EMPTY_OVERLAY:  # Stytch's member record is the truth from now on
        out.writes[sub.k_member] = DELETE
    after = core.merged_member(member, core.EMPTY_OVERLAY, sub.guard)
    ist_digest = token_digest(ist) if ist else ""
    if ist:
        login = LoginState(oid, mid, now + policy.ist_ttl, ())
        out.writes[keys.login(ist_digest)] = Write(login, login.expires_at)
    if shown is not None:
        session = session_record(shown, now)
        record_session(out, session, token_digest(session_token), got, now)
        ctx.note(out, "session.created", now, oid, mid, factors=[f.type for f in session.factors])
    phone = after.mfa_phone_number
    if required is not None and required.secondary_auth_initiated == "sms_otp" and phone:
        # Stytch has sent the first code: it counts against the local limits, which it cannot break any more.
        try:
            region: str | None = region_of(parse_phone(phone, "member.mfa_phone_number"))
        except MfaError:
            region = None
        exceeded = yield from count_send(ctx, out, sub, now, phone, region, refuse=False)
        code = clone(sub.code)
        machine.fire(machine.CODE, "issue", code, code_id="", digest=b"", bound_to=ist_digest, purpose="login",
                     phone=phone, sent_at=now, expires_at=now + policy.otp_ttl)
        out.writes[sub.k_code] = Write(code, code.expires_at)
        ctx.note(out, "otp.sent", now, oid, mid, phone, "too_many_requests" if exceeded else None, purpose="login",
                 automatic=True, over_limit=exceeded, region=region)
    out.finish = lambda *_: PrimaryAuthResult(
        member_id=mid, organization_id=oid, member=after, organization=org, member_authenticated=authenticated,
        intermediate_session_token=ist, session_token=session_token,
        session_jwt=text_at(response, "session_jwt", default=""), member_session=shown, mfa_required=required,
        request_id=text_at(response, "request_id", default=""))
    return out
