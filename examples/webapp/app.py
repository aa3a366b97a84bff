"""The example web application (docs/webapp.md): FastAPI and server-rendered pages around mfa_flow.

Sign-in is the application's own password check, then ``authenticate_primary`` (``record_primary_auth`` in Stytch
mode), then ``authenticate_sms_otp`` with the IST; every page of a signed-in member starts with
``authenticate_session``, which sends the step-up code after inactivity; logout is ``revoke_session``, the admin
page ``unlock_member`` over the event log.

Between two requests the tokens live in cookies that are Secure, HttpOnly, SameSite=Lax and ``__Host-``
prefixed; each cookie holds the organization and member with its token, signed, because
``authenticate_sms_otp`` and ``send_sms_otp`` need both ids and mfa_flow has no call that names the member of an
IST. Every form carries a CSRF token: the MAC of a random per-browser cookie, renewed at sign-in and sign-out.
"""

# No ``from __future__ import annotations``: FastAPI reads the handlers' annotations, and those naming the
# dependencies defined inside create_app (signed_in, admin) must be evaluated where they are defined.
import base64
import hashlib
import hmac
import json
import math
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

import httpx
from fastapi import Depends, FastAPI, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from examples.webapp.accounts import Account, Accounts, totp_step
from examples.webapp.eventlog import EventLog
from examples.webapp.settings import Keys, Settings, private_dir
from mfa_flow import (
    Clock,
    Event,
    MemberSession,
    MfaError,
    MfaFlow,
    Policy,
    PrimaryAuthResult,
    SystemClock,
)
from mfa_flow.phone import mask_phone
from mfa_flow.stores import SqliteStore
from mfa_flow.transports import ConsoleGateway, SmsGateway
from mfa_flow.transports.stytch import StytchProvider

HERE = Path(__file__).parent
# Five wrong codes lock the member (one code's worth of attempts); a resend waits 30 s.
POLICY = Policy(lockout_threshold=5, resend_cooldown=30)
# Wrong authenticator codes a member may enter per hour: mfa_flow's lock counts SMS codes only.
TOTP_GUESSES = (5, 3600)

SESSION_COOKIE = "__Host-session"  # a signed-in member: organization, member and session_token
LOGIN_COOKIE = "__Host-login"  # while MFA is owed: organization, member and the IST
CSRF_COOKIE = "__Host-csrf"  # a random value per browser; forms carry its MAC

PAGES_AFTER_STEP_UP = ("/home", "/settings", "/admin")
NOTICES = {
    "sent": "A new code is on its way.",
    "idle": "You were away for a while: enter the code we just texted you to go on.",
    "bye": "You are signed out.",
    "expired": "That sign-in took too long. Please start again.",
    "unlocked": "The member is unlocked.",
    "unsent": "No code was sent this time: too many were sent lately. Ask for a new one when the button allows.",
}
REFUSALS = {
    "otp_code_not_found": "That code is not right. Check the SMS and try again.",
    "unable_to_auth_otp_code": "That code has expired or was tried too often. Ask for a new one.",
    "user_lock_limit_reached": "Too many wrong codes: this account is locked. Ask an administrator to unlock it.",
    "too_many_requests": "Too many codes were sent. Wait before asking for another.",
    "invalid_phone_number": "That is not a mobile number we can text. Write it with its country code: +1 415 555 0100.",
    "invalid_phone_number_country_code": "We can only text numbers in the United States and Canada.",
    "insufficient_factors": "Confirm it is you with your authenticator app before adding a phone.",
    "no_associated_session_passed_in": "Confirm it is you with your authenticator app before adding a phone.",
    "duplicate_member_phone_number": "That number belongs to another member.",
    "downstream_carrier_error": "The SMS could not be sent. Try again in a moment.",
}


@dataclass(frozen=True)
class Ticket:
    """What a cookie holds: whose token it is, and the token."""

    organization_id: str
    member_id: str
    token: str


@dataclass(frozen=True)
class Current:
    """The signed-in member of a request, as ``authenticate_session`` found them."""

    session: MemberSession
    account: Account


class GoTo(Exception):
    """Leave the handler with a redirect (303), forgetting the cookies named."""

    def __init__(self, url: str, *forget: str) -> None:
        super().__init__(url)
        self.url, self.forget = url, forget


class CsrfRefused(Exception):
    pass


class Signer:
    """MACs (HMAC-SHA256) for the cookies and the CSRF tokens, under the application's own key."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def mac(self, purpose: str, value: str) -> str:
        digest = hmac.new(self._key, f"{purpose}\n{value}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def pack(self, name: str, ticket: Ticket) -> str:
        body = base64.urlsafe_b64encode(json.dumps([ticket.organization_id, ticket.member_id,
                                                    ticket.token]).encode()).decode().rstrip("=")
        return f"{body}.{self.mac(name, body)}"  # no "=": a cookie value with one gets quoted

    def unpack(self, name: str, value: str | None) -> Ticket | None:
        body, _, mac = (value or "").partition(".")
        if not body or not hmac.compare_digest(mac.encode(), self.mac(name, body).encode()):
            return None
        return Ticket(*json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))))

    def csrf_token(self, browser: str) -> str:
        return self.mac("csrf", browser)


class WebApp:
    """The flow and what the pages share: the store, the user table, the event log, the keys."""

    def __init__(self, settings: Settings, *, clock: Clock, gateway: SmsGateway, accounts: Accounts) -> None:
        keys = Keys.load(private_dir(settings.data_dir))
        self.settings, self.clock, self.signer = settings, clock, Signer(keys.cookies)
        self.accounts = accounts
        self.events = EventLog(settings.data_dir / "app.sqlite3")
        self.store = SqliteStore(settings.data_dir / "mfa_flow.sqlite3")
        self.stytch: StytchProvider | None = None
        if settings.mode == "stytch":
            # Stytch (here mfa-flow serve) issues the tokens and makes and texts the codes; no secret_key.
            self.stytch = StytchProvider(settings.stytch_project_id, settings.stytch_secret,
                                         base_url=settings.stytch_url)
            self.flow = MfaFlow(transport=self.stytch, store=self.store, clock=clock, events=[self.events],
                                policy=POLICY)
        else:
            self.flow = MfaFlow(directory=accounts.fixtures.directory(), transport=gateway, store=self.store,
                                secret_key=keys.mfa, clock=clock, events=[self.events], policy=POLICY)

    def primary_auth(self, account: Account) -> PrimaryAuthResult:
        """The password passed: start the second step (in local mode the flow texts the code now)."""
        if self.stytch is None:
            return self.flow.authenticate_primary(account.organization_id, account.member_id, "password")
        # With Stytch this is the SDK's passwords.authenticate answer; mfa-flow serve has no password route, so
        # its test endpoint stands in for it. Stytch has texted the first code when MFA is owed.
        answer = httpx.post(f"{self.settings.stytch_url}/_emulator/primary_auth", timeout=10, json={
            "organization_id": account.organization_id, "member_id": account.member_id, "method": "password"})
        body = answer.json()
        if answer.is_error:
            raise MfaError(body["error_type"], body["error_message"])
        return self.flow.record_primary_auth(body)

    def send_status(self, ticket: Ticket) -> tuple[int, int]:
        """(sends left in the member's window, seconds until the next send may go), from the event log."""
        count, window = POLICY.send_limit_per_member
        now = self.clock.now()
        sent = self.events.times("otp.sent", ticket.organization_id, ticket.member_id, now - window)
        left = max(0, count - len(sent))
        if not sent:
            return left, 0
        wait = sent[-1] + POLICY.resend_cooldown - now if left else sent[0] + window - now
        return left, max(0, math.ceil(wait))

    def close(self) -> None:
        if self.stytch is not None:
            self.stytch.close()
        self.store.close()
        self.events.close()


def create_app(settings: Settings, *, clock: Clock | None = None, gateway: SmsGateway | None = None,
               accounts: Accounts | None = None) -> FastAPI:
    """The application; tests pass a FakeClock and a FakeTransport (and may pass a user table of their own),
    ``python -m examples.webapp`` none of them."""
    web = WebApp(settings, clock=clock or SystemClock(), gateway=gateway or ConsoleGateway(),
                 accounts=accounts or Accounts())

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        web.close()

    app = FastAPI(lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.web = web
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    templates = Jinja2Templates(directory=HERE / "templates")
    templates.env.filters["utc"] = lambda at: datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S")

    # --- cookies, CSRF, pages ---------------------------------------------------------------------------------

    def set_cookie(response: Response, name: str, value: str, max_age: int | None = None) -> None:
        response.set_cookie(name, value, max_age=max_age, path="/", secure=True, httponly=True, samesite="lax")

    def forget(response: Response, *names: str) -> None:
        for name in names:
            response.delete_cookie(name, path="/", secure=True, httponly=True, samesite="lax")

    def redirect(url: str, *forgotten: str) -> RedirectResponse:
        response = RedirectResponse(url, status_code=303)
        forget(response, *forgotten)
        return response

    def render(request: Request, template: str, *, status: int = 200, **context: Any) -> HTMLResponse:
        browser = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(32)
        response = templates.TemplateResponse(request, template, status_code=status, context={
            "csrf_token": web.signer.csrf_token(browser), "mode": settings.mode, **context})
        if browser != request.cookies.get(CSRF_COOKIE):
            set_cookie(response, CSRF_COOKIE, browser)
        return response

    def csrf(request: Request, csrf_token: Annotated[str, Form()] = "") -> None:
        """Every form posts the MAC of this browser's CSRF cookie; a cross-site form cannot know it."""
        browser = request.cookies.get(CSRF_COOKIE, "")
        expected = web.signer.csrf_token(browser)
        if not browser or not hmac.compare_digest(csrf_token.encode(), expected.encode()):
            raise CsrfRefused

    checked = [Depends(csrf)]

    @app.exception_handler(GoTo)
    async def go_to(_: Request, exc: GoTo) -> Response:
        return redirect(exc.url, *exc.forget)

    @app.exception_handler(CsrfRefused)
    async def csrf_refused(request: Request, _: CsrfRefused) -> Response:
        return render(request, "error.html", status=403, message="This form has expired. Go back and try again.")

    @app.middleware("http")
    async def security_headers(request: Request, call_next: Any) -> Response:
        response: Response = await call_next(request)
        response.headers.update({
            "Cache-Control": "no-store",
            "Content-Security-Policy": "default-src 'none'; style-src 'self'; form-action 'self'; "
                                       "frame-ancestors 'none'",
            "Referrer-Policy": "same-origin",
            "X-Content-Type-Options": "nosniff",
        })
        return response

    def ticket(request: Request, cookie: str) -> Ticket:
        found = web.signer.unpack(cookie, request.cookies.get(cookie))
        if found is None:
            raise GoTo("/login", cookie)
        return found

    def signed_in(request: Request) -> Current:
        """The session of this request; after inactivity, off to the step-up (the flow has sent its code)."""
        session = ticket(request, SESSION_COOKIE)
        try:
            check = web.flow.authenticate_session(session_token=session.token)
        except MfaError as refusal:
            if refusal.error_type in ("session_not_found", "action_available_only_for_active_members"):
                raise GoTo("/login", SESSION_COOKIE) from refusal
            raise
        if check.step_up_required:
            raise GoTo("/session/code?" + urlencode({"next": request.url.path, "notice": "idle"}))
        return Current(check.member_session, web.accounts.by_member[check.member_session.member_id])

    def admin(current: Annotated[Current, Depends(signed_in)]) -> Current:
        if not current.account.is_admin:
            raise GoTo("/home")
        return current

    def start_session(session_token: str, login: Ticket, url: str) -> RedirectResponse:
        """Signed in: the session cookie replaces the IST's, and the browser gets a new CSRF value."""
        response = redirect(url, LOGIN_COOKIE)
        set_cookie(response, SESSION_COOKIE, web.signer.pack(
            SESSION_COOKIE, Ticket(login.organization_id, login.member_id, session_token)))
        set_cookie(response, CSRF_COOKIE, secrets.token_urlsafe(32))
        return response

    def code_page(request: Request, owner: Ticket, action: str, *, next_page: str = "", status: int = 200,
                  refusal: MfaError | None = None, notice: str = "") -> HTMLResponse:
        phone = web.flow.get_member(owner.organization_id, owner.member_id).mfa_phone_number
        left, wait = web.send_status(owner)
        return render(request, "code.html", status=status, action=action, next=next_page,
                      phone=mask_phone(phone), left=left, wait=wait,
                      limit=POLICY.send_limit_per_member[0], window=int(POLICY.send_limit_per_member[1] // 60),
                      refusal=refusal, message=REFUSALS.get(refusal.error_type, "") if refusal else "",
                      notice=NOTICES.get(notice, ""))

    def code_refused(request: Request, owner: Ticket, refusal: MfaError, action: str, cookie: str,
                     next_page: str = "") -> Response:
        if refusal.error_type == "user_lock_limit_reached":
            response = render(request, "error.html", status=refusal.status_code, refusal=refusal,
                              message=REFUSALS[refusal.error_type])
            forget(response, cookie)
            return response
        if refusal.error_type in ("intermediate_session_not_found", "session_not_found"):
            raise GoTo("/login?notice=expired", cookie) from refusal
        return code_page(request, owner, action, next_page=next_page, status=refusal.status_code, refusal=refusal)

    def safe_next(url: str) -> str:
        return url if url in PAGES_AFTER_STEP_UP else "/home"

    # --- sign-in ------------------------------------------------------------------------------------------------

    @app.get("/")
    def root() -> RedirectResponse:
        return redirect("/home")

    @app.get("/login")
    def login_page(request: Request, notice: str = "") -> HTMLResponse:
        return render(request, "login.html", notice=NOTICES.get(notice, ""))

    @app.post("/login", dependencies=checked)
    def login(request: Request, email: Annotated[str, Form()], password: Annotated[str, Form()]) -> Response:
        account = web.accounts.check_password(email, password)
        if account is None:
            return render(request, "login.html", status=401, email=email,
                          message="Wrong e-mail address or password.")
        try:
            result = web.primary_auth(account)
        except MfaError as refusal:  # locked, or no longer active
            return render(request, "error.html", status=refusal.status_code, refusal=refusal,
                          message=REFUSALS.get(refusal.error_type, "You cannot sign in now."))
        owner = Ticket(account.organization_id, account.member_id, result.intermediate_session_token)
        if result.mfa_required is None:  # MFA not owed (not so in this demo's organization)
            return start_session(result.session_token, owner, "/home")
        if result.mfa_required.secondary_auth_initiated == "sms_otp":
            url = "/login/code"
        elif result.mfa_required.member_options.totp_registration_id:
            url = "/login/totp"  # the TOTP-bearing step first: linking a phone needs it (insufficient_factors)
        elif not result.mfa_required.member_options.mfa_phone_number:
            url = "/enrol"  # first use: no factor yet, the IST alone may link a phone
        else:
            url = "/login/code?notice=unsent"  # a phone, but no code went out (a send limit): offer a resend
        response = redirect(url)
        set_cookie(response, LOGIN_COOKIE, web.signer.pack(LOGIN_COOKIE, owner), max_age=int(POLICY.ist_ttl))
        return response

    @app.get("/login/code")
    def login_code_page(request: Request, notice: str = "") -> HTMLResponse:
        return code_page(request, ticket(request, LOGIN_COOKIE), "/login/code", notice=notice)

    @app.post("/login/code", dependencies=checked)
    def login_code(request: Request, code: Annotated[str, Form()]) -> Response:
        owner = ticket(request, LOGIN_COOKIE)
        try:
            done = web.flow.authenticate_sms_otp(owner.organization_id, owner.member_id, code.strip(),
                                                 intermediate_session_token=owner.token)
        except MfaError as refusal:
            return code_refused(request, owner, refusal, "/login/code", LOGIN_COOKIE)
        return start_session(done.session_token, owner, "/home")

    @app.post("/login/code/resend", dependencies=checked)
    def login_resend(request: Request) -> Response:
        owner = ticket(request, LOGIN_COOKIE)
        try:
            web.flow.send_sms_otp(owner.organization_id, owner.member_id, intermediate_session_token=owner.token)
        except MfaError as refusal:
            return code_refused(request, owner, refusal, "/login/code", LOGIN_COOKIE)
        return redirect("/login/code?notice=sent")

    def totp_secret(owner: Ticket) -> str:
        """The member's authenticator key; a member without an authenticator goes to their own step instead (an
        empty key would give a code anyone can compute, and record_mfa_factor trusts the application's check)."""
        secret = web.accounts.by_member[owner.member_id].totp_secret
        member = web.flow.get_member(owner.organization_id, owner.member_id)
        if not (secret and member.totp_registration_id):
            raise GoTo("/login/code" if member.mfa_phone_number else "/enrol")
        return secret

    @app.get("/login/totp")
    def totp_page(request: Request) -> HTMLResponse:
        totp_secret(ticket(request, LOGIN_COOKIE))
        return render(request, "totp.html")

    @app.post("/login/totp", dependencies=checked)
    def totp(request: Request, code: Annotated[str, Form()]) -> Response:
        owner = ticket(request, LOGIN_COOKIE)
        secret = totp_secret(owner)
        if settings.mode == "stytch":  # Stytch verifies TOTP itself (its totps.authenticate): not in the emulator
            return render(request, "totp.html", status=501, message="TOTP sign-in goes through Stytch's TOTP "
                          "endpoint, which mfa-flow serve does not emulate. Use local mode.")
        # TOTP is the application's to verify, and to limit: the flow only records a factor verified elsewhere.
        # Counting the wrong guesses, checking the code and recording the outcome are one step for every thread
        # and process, so that concurrent guesses cannot all pass the count.
        now, (guesses, window) = web.clock.now(), TOTP_GUESSES
        with web.events.exclusive():
            limited = len(web.events.times("totp.failed", owner.organization_id, owner.member_id,
                                           now - window)) >= guesses
            step = None if limited else totp_step(secret, code.strip(), now)
            # A code is good once (RFC 6238 section 5.2): one already used, or older, is refused and counted.
            accepted = step is not None and web.events.claim_totp_step(owner.organization_id, owner.member_id, step)
            if not (limited or accepted):
                web.events(Event("totp.failed", now, owner.organization_id, owner.member_id))
        if limited:
            return render(request, "totp.html", status=429, message="Too many wrong codes. Try again in an hour.")
        if not accepted:
            return render(request, "totp.html", status=401, message="That code is not right.")
        try:
            done = web.flow.record_mfa_factor(owner.organization_id, owner.member_id, "totp",
                                              intermediate_session_token=owner.token)
        except MfaError as refusal:
            return code_refused(request, owner, refusal, "/login/code", LOGIN_COOKIE)
        return start_session(done.session_token, owner, "/home" if done.member.mfa_phone_number else "/enrol")

    @app.get("/enrol")
    def enrol_page(request: Request) -> HTMLResponse:
        if LOGIN_COOKIE not in request.cookies:
            ticket(request, SESSION_COOKIE)
        return render(request, "enrol.html")

    @app.post("/enrol", dependencies=checked)
    def enrol(request: Request, phone: Annotated[str, Form()]) -> Response:
        """Link a phone: with the IST while MFA is owed, else with the session (after the TOTP step)."""
        with_ist = LOGIN_COOKIE in request.cookies
        owner = ticket(request, LOGIN_COOKIE if with_ist else SESSION_COOKIE)
        token = {"intermediate_session_token": owner.token} if with_ist else {"session_token": owner.token}
        try:
            web.flow.send_sms_otp(owner.organization_id, owner.member_id, mfa_phone_number=phone, **token)
        except MfaError as refusal:
            return render(request, "enrol.html", status=refusal.status_code, phone=phone, refusal=refusal,
                          message=REFUSALS.get(refusal.error_type, "That number cannot be used."))
        return redirect("/login/code" if with_ist else "/session/code?next=/home")

    # --- a signed-in member ---------------------------------------------------------------------------------

    @app.get("/session/code")
    def session_code_page(request: Request, next: str = "", notice: str = "") -> HTMLResponse:  # noqa: A002
        return code_page(request, ticket(request, SESSION_COOKIE), "/session/code", next_page=safe_next(next),
                         notice=notice)

    @app.post("/session/code", dependencies=checked)
    def session_code(request: Request, code: Annotated[str, Form()], next: Annotated[str, Form()] = "") -> Response:  # noqa: A002
        """The step-up (or a new phone's first code): the same session gains the SMS factor."""
        owner = ticket(request, SESSION_COOKIE)
        try:
            web.flow.authenticate_sms_otp(owner.organization_id, owner.member_id, code.strip(),
                                          session_token=owner.token)
        except MfaError as refusal:
            return code_refused(request, owner, refusal, "/session/code", SESSION_COOKIE, safe_next(next))
        return redirect(safe_next(next))

    @app.post("/session/code/resend", dependencies=checked)
    def session_resend(request: Request, next: Annotated[str, Form()] = "") -> Response:  # noqa: A002
        owner = ticket(request, SESSION_COOKIE)
        try:
            web.flow.send_sms_otp(owner.organization_id, owner.member_id, session_token=owner.token)
        except MfaError as refusal:
            return code_refused(request, owner, refusal, "/session/code", SESSION_COOKIE, safe_next(next))
        return redirect("/session/code?" + urlencode({"next": safe_next(next), "notice": "sent"}))

    @app.get("/home")
    def home(request: Request, current: Annotated[Current, Depends(signed_in)]) -> HTMLResponse:
        return render(request, "home.html", current=current)

    @app.get("/settings")
    def settings_page(request: Request, current: Annotated[Current, Depends(signed_in)]) -> HTMLResponse:
        member = web.flow.get_member(current.session.organization_id, current.session.member_id)
        return render(request, "settings.html", current=current, member=member,
                      phone=mask_phone(member.mfa_phone_number),
                      sessions=web.flow.list_member_sessions(member.organization_id, member.member_id))

    @app.post("/logout", dependencies=checked)
    def logout(request: Request) -> Response:
        session = web.signer.unpack(SESSION_COOKIE, request.cookies.get(SESSION_COOKIE))
        if session is not None:
            with suppress(MfaError):  # session_not_found: it had ended already
                web.flow.revoke_session(session_token=session.token)
        return redirect("/login?notice=bye", SESSION_COOKIE, LOGIN_COOKIE, CSRF_COOKIE)

    # --- administration -----------------------------------------------------------------------------------

    @app.get("/admin")
    def admin_page(request: Request, current: Annotated[Current, Depends(admin)], notice: str = "") -> HTMLResponse:
        """The administrator's own organization only, as unlock: its members and its events."""
        organization_id = current.session.organization_id
        rows = []
        for account in web.accounts.by_email.values():
            if account.organization_id == organization_id:
                member = web.flow.get_member(organization_id, account.member_id)
                rows.append((account, member, mask_phone(member.mfa_phone_number)))
        return render(request, "admin.html", current=current, members=rows, events=web.events.recent(organization_id),
                      notice=NOTICES.get(notice, ""))

    @app.post("/admin/unlock", dependencies=checked)
    def unlock(current: Annotated[Current, Depends(admin)], member_id: Annotated[str, Form()]) -> Response:
        account = web.accounts.by_member.get(member_id)
        if account is not None and account.organization_id == current.session.organization_id:
            web.flow.unlock_member(account.organization_id, account.member_id)
        return redirect("/admin?notice=unlocked")

    return app
