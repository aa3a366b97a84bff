"""Recipe: mfa_flow in a Flask application (docs/recipes.md shows the marked regions; tests/test_recipes.py
drives the whole app through a login and a step-up).

Primary authentication is yours (``check_password``); mfa_flow owns what follows. Where the tokens live:

- the IST, between the password page and the code page, in a short-lived cookie (``mfa_ist``: HttpOnly,
  Secure, SameSite=Strict, scoped to ``/mfa``, gone after ``ist_ttl``);
- the session token in its own cookie (``mfa_session``: HttpOnly, Secure, SameSite=Lax), checked on every
  request by ``@require_fresh_mfa``, which sends the member to the step-up page once the session is idle;
- which member is signing in, in Flask's signed session; never a token there (it is readable by the client).

    app = create_app(MfaFlow(...), check_password, secret_key=...)
"""

from __future__ import annotations

import contextlib
import functools
import hmac
import secrets
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, abort, current_app, g, redirect, request, session
from markupsafe import escape

from mfa_flow import MfaError, MfaFlow

#: Your primary authentication: (email, password) → (organization_id, member_id), or None.
CheckPassword = Callable[[str, str], tuple[str, str] | None]

# --8<-- [start:cookies]
IST_COOKIE = "mfa_ist"
SESSION_COOKIE = "mfa_session"


def flow() -> MfaFlow:
    return current_app.extensions["mfa_flow"]


def set_ist_cookie(response: Response, token: str) -> None:
    """Only the code page ever needs the IST: scope it there, and let it die with the IST."""
    response.set_cookie(IST_COOKIE, token, max_age=int(flow().policy.ist_ttl), path="/mfa",
                        secure=True, httponly=True, samesite="Strict")


def set_session_cookie(response: Response, token: str) -> None:
    """No max_age: the flow decides when a session ends (expiry, inactivity, revoke), not the browser."""
    response.set_cookie(SESSION_COOKIE, token, secure=True, httponly=True, samesite="Lax")
    response.delete_cookie(IST_COOKIE, path="/mfa", secure=True, httponly=True, samesite="Strict")
# --8<-- [end:cookies]


# --8<-- [start:decorator]
def require_fresh_mfa(view: Callable[..., Any]) -> Callable[..., Any]:
    """Run ``view`` only on a live session that needs no step-up; ``g.member_session`` is who is signed in.

    Every request through it refreshes the session's activity, so only a member idle for longer than the
    policy's ``inactivity_timeout`` is sent to the step-up page (the flow has texted the code already)."""

    @functools.wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        token = request.cookies.get(SESSION_COOKIE)
        if not token:
            return redirect("/login")
        try:
            check = flow().authenticate_session(session_token=token)
        except MfaError:  # expired, revoked, or the member is no longer active
            response = redirect("/login")
            response.delete_cookie(SESSION_COOKIE, secure=True, httponly=True, samesite="Lax")
            return response
        if check.step_up_required:
            session["after_step_up"] = request.path
            return redirect("/step-up")
        g.member_session = check.member_session
        return view(*args, **kwargs)

    return wrapped
# --8<-- [end:decorator]


def page(body: str, status: int = 200) -> tuple[str, int]:
    return f"<!doctype html><title>mfa_flow recipe</title><main>{body}</main>", status


#: What each field is to the browser: a password manager fills the first two, the SMS code the last.
INPUTS = {"email": 'type="email" autocomplete="username"',
          "password": 'type="password" autocomplete="current-password"',
          "code": 'autocomplete="one-time-code"'}


def form(action: str, *fields: str) -> str:
    """A POST form with the CSRF token and an input per field."""
    token = session.setdefault("csrf", secrets.token_urlsafe(32))
    inputs = "".join(f'<input name="{name}" {INPUTS[name]}>' for name in fields)
    return (f'<form method="post" action="{action}"><input type="hidden" name="csrf" value="{token}">'
            f"{inputs}<button>Continue</button></form>")


def refused(error: MfaError) -> tuple[str, int]:
    return page(f"<p>Refused: {escape(error.error_type)}</p>", error.status_code)


def create_app(mfa: MfaFlow, check_password: CheckPassword, *, secret_key: str) -> Flask:
    app = Flask(__name__)
    app.config.update(SECRET_KEY=secret_key, SESSION_COOKIE_SECURE=True, SESSION_COOKIE_HTTPONLY=True,
                      SESSION_COOKIE_SAMESITE="Lax")
    app.extensions["mfa_flow"] = mfa

    @app.before_request
    def check_csrf() -> None:
        """Every form carries the token kept in the signed session (Flask-WTF's CSRFProtect does the same)."""
        if request.method == "POST" and not hmac.compare_digest(
                session.get("csrf", ""), request.form.get("csrf", "") or "-"):
            abort(400)

    @app.get("/login")
    def login_page() -> tuple[str, int]:
        return page(form("/login", "email", "password"))

    # --8<-- [start:login]
    @app.post("/login")
    def login() -> Any:
        found = check_password(request.form.get("email", ""), request.form.get("password", ""))
        if found is None:
            return page("<p>Wrong e-mail address or password.</p>", 401)
        organization_id, member_id = found
        try:
            result = flow().authenticate_primary(organization_id, member_id, "password")
        except MfaError as error:  # e.g. user_lock_limit_reached
            return refused(error)
        session.clear()  # a new sign-in starts from a clean session (and a new CSRF token)
        session["member"] = [organization_id, member_id]
        if result.session_token:  # MFA is not owed: signed in
            response = redirect("/settings")
            set_session_cookie(response, result.session_token)
            return response
        response = redirect("/mfa")
        set_ist_cookie(response, result.intermediate_session_token)
        return response

    @app.post("/mfa")
    def mfa_code() -> Any:
        organization_id, member_id = session.get("member") or ("", "")
        try:
            done = flow().authenticate_sms_otp(organization_id, member_id, request.form.get("code", ""),
                                               intermediate_session_token=request.cookies.get(IST_COOKIE, ""))
        except MfaError as error:  # a wrong code counts towards the member's lock
            return refused(error)
        response = redirect("/settings")
        set_session_cookie(response, done.session_token)
        return response
    # --8<-- [end:login]

    @app.get("/mfa")
    def mfa_page() -> tuple[str, int]:
        return page("<p>Enter the code we texted you.</p>" + form("/mfa", "code"))

    @app.get("/step-up")
    def step_up_page() -> tuple[str, int]:
        return page("<p>You were away: enter the code we just texted you.</p>" + form("/step-up", "code"))

    # --8<-- [start:step-up]
    @app.post("/step-up")
    def step_up() -> Any:
        organization_id, member_id = session.get("member") or ("", "")
        try:
            flow().authenticate_sms_otp(organization_id, member_id, request.form.get("code", ""),
                                        session_token=request.cookies.get(SESSION_COOKIE, ""))
        except MfaError as error:
            return refused(error)
        after = session.pop("after_step_up", "/settings")
        # A path of this site only: a browser reads //host and /\host as another site, and drops tabs
        # and newlines (/<tab>/host is //host).
        local = after.startswith("/") and after[1:2] not in ("/", "\\") and after.isprintable()
        return redirect(after if local else "/settings")

    @app.get("/settings")
    @require_fresh_mfa
    def settings() -> tuple[str, int]:
        return page(f"<h1>Settings of {escape(g.member_session.member_id)}</h1>" + form("/logout"))

    @app.post("/logout")
    def logout() -> Any:
        token = request.cookies.get(SESSION_COOKIE)
        if token:
            with contextlib.suppress(MfaError):  # already ended
                flow().revoke_session(session_token=token)  # ends it everywhere, at once
        session.clear()
        response = redirect("/login")
        response.delete_cookie(SESSION_COOKIE, secure=True, httponly=True, samesite="Lax")
        return response
    # --8<-- [end:step-up]

    return app
