"""Recipe: mfa_flow in a Django application, in one file (docs/recipes.md shows the marked regions;
tests/test_recipes.py drives the whole app through a login and a step-up with Django's test client).

Primary authentication is yours (``check_password``); mfa_flow owns what follows. Where the tokens live:

- the IST, between the password page and the code page, in the server-side session (``request.session``,
  whose cookie holds only Django's session key), together with the member who is signing in;
- the session token in its own cookie (``mfa_session``: HttpOnly, Secure, SameSite=Lax), checked on every
  request by ``@require_fresh_mfa``, which sends the member to the step-up page once the session is idle.

Django's CSRF middleware guards every form. The settings below are the recipe's own; in a project, put the
session and cookie settings in settings.py and call ``install(flow, check_password)`` from an AppConfig.ready.
The cache session backend here is per process: use the database or a shared cache (Redis) with several.
"""

from __future__ import annotations

import contextlib
import functools
import os
import secrets
from collections.abc import Callable
from typing import Any

import django
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.middleware.csrf import get_token
from django.shortcuts import redirect
from django.urls import path
from django.utils.html import escape
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from mfa_flow import MfaError, MfaFlow

if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY=os.environ.get("DJANGO_SECRET_KEY") or secrets.token_urlsafe(50),
        ROOT_URLCONF=__name__,
        ALLOWED_HOSTS=["127.0.0.1", "localhost", "testserver"],
        MIDDLEWARE=[
            "django.middleware.security.SecurityMiddleware",
            "django.contrib.sessions.middleware.SessionMiddleware",
            "django.middleware.csrf.CsrfViewMiddleware",
        ],
        SESSION_ENGINE="django.contrib.sessions.backends.cache",
        CACHES={"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}},
        SESSION_COOKIE_SECURE=True,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        CSRF_COOKIE_SECURE=True,
        USE_TZ=True,
    )
    django.setup()

#: Your primary authentication: (email, password) → (organization_id, member_id), or None.
CheckPassword = Callable[[str, str], tuple[str, str] | None]


class Mfa:
    """What the views run on, set once by ``install``."""

    flow: MfaFlow
    check_password: CheckPassword


def install(flow: MfaFlow, check_password: CheckPassword) -> None:
    Mfa.flow = flow
    Mfa.check_password = check_password


# --8<-- [start:cookies]
SESSION_COOKIE = "mfa_session"


def signed_in(response: HttpResponse, request: HttpRequest, token: str) -> HttpResponse:
    """The session token in its own cookie; the IST is dropped from the server-side session."""
    request.session.pop("mfa_ist", None)
    response.set_cookie(SESSION_COOKIE, token, secure=True, httponly=True, samesite="Lax")
    return response


def signed_out(response: HttpResponse) -> HttpResponse:
    """Expire the cookie with the attributes it was set with (Django's delete_cookie takes no ``secure``)."""
    response.set_cookie(SESSION_COOKIE, "", max_age=0, expires="Thu, 01 Jan 1970 00:00:00 GMT", secure=True,
                        httponly=True, samesite="Lax")
    return response
# --8<-- [end:cookies]


# --8<-- [start:decorator]
def require_fresh_mfa(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Run ``view`` only on a live session that needs no step-up; ``request.member_session`` is who is
    signed in. Each request refreshes the session's activity; an idle one goes to the step-up page (the flow
    has texted the code already)."""

    @functools.wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        token = request.COOKIES.get(SESSION_COOKIE)
        if not token:
            return redirect("/login")
        try:
            check = Mfa.flow.authenticate_session(session_token=token)
        except MfaError:  # expired, revoked, or the member is no longer active
            return signed_out(redirect("/login"))
        if check.step_up_required:
            request.session["after_step_up"] = request.path
            return redirect("/step-up")
        request.member_session = check.member_session  # type: ignore[attr-defined]
        return view(request, *args, **kwargs)

    return wrapped
# --8<-- [end:decorator]


def page(body: str, status: int = 200) -> HttpResponse:
    return HttpResponse(f"<!doctype html><title>mfa_flow recipe</title><main>{body}</main>", status=status)


#: What each field is to the browser: a password manager fills the first two, the SMS code the last.
INPUTS = {"email": 'type="email" autocomplete="username"',
          "password": 'type="password" autocomplete="current-password"',
          "code": 'autocomplete="one-time-code"'}


def form(request: HttpRequest, action: str, *fields: str) -> str:
    inputs = "".join(f'<input name="{name}" {INPUTS[name]}>' for name in fields)
    return (f'<form method="post" action="{action}"><input type="hidden" name="csrfmiddlewaretoken" '
            f'value="{get_token(request)}">{inputs}<button>Continue</button></form>')


def refused(error: MfaError) -> HttpResponse:
    return page(f"<p>Refused: {escape(error.error_type)}</p>", error.status_code)


def member_of(request: HttpRequest) -> tuple[str, str]:
    organization_id, member_id = request.session.get("member") or ("", "")
    return organization_id, member_id


# --8<-- [start:login]
@require_http_methods(["GET", "POST"])
def login(request: HttpRequest) -> HttpResponse:
    if request.method == "GET":
        return page(form(request, "/login", "email", "password"))
    found = Mfa.check_password(request.POST.get("email", ""), request.POST.get("password", ""))
    if found is None:
        return page("<p>Wrong e-mail address or password.</p>", 401)
    organization_id, member_id = found
    try:
        result = Mfa.flow.authenticate_primary(organization_id, member_id, "password")
    except MfaError as error:  # e.g. user_lock_limit_reached
        return refused(error)
    request.session.cycle_key()  # a new session key at sign-in: no fixation
    request.session["member"] = [organization_id, member_id]
    if result.session_token:  # MFA is not owed: signed in
        return signed_in(redirect("/settings"), request, result.session_token)
    request.session["mfa_ist"] = result.intermediate_session_token  # server-side, never in a cookie
    return redirect("/mfa")


@require_http_methods(["GET", "POST"])
def mfa_code(request: HttpRequest) -> HttpResponse:
    if request.method == "GET":
        return page("<p>Enter the code we texted you.</p>" + form(request, "/mfa", "code"))
    organization_id, member_id = member_of(request)
    try:
        done = Mfa.flow.authenticate_sms_otp(organization_id, member_id, request.POST.get("code", ""),
                                             intermediate_session_token=request.session.get("mfa_ist", ""))
    except MfaError as error:  # a wrong code counts towards the member's lock
        return refused(error)
    return signed_in(redirect("/settings"), request, done.session_token)
# --8<-- [end:login]


# --8<-- [start:step-up]
@require_http_methods(["GET", "POST"])
def step_up(request: HttpRequest) -> HttpResponse:
    if request.method == "GET":
        return page("<p>You were away: enter the code we just texted you.</p>"
                    + form(request, "/step-up", "code"))
    organization_id, member_id = member_of(request)
    try:
        Mfa.flow.authenticate_sms_otp(organization_id, member_id, request.POST.get("code", ""),
                                      session_token=request.COOKIES.get(SESSION_COOKIE, ""))
    except MfaError as error:
        return refused(error)
    after = request.session.pop("after_step_up", "/settings")
    # A path of this site only: a browser reads //host and /\host as another site, and drops tabs
    # and newlines (/<tab>/host is //host).
    local = after.startswith("/") and after[1:2] not in ("/", "\\") and after.isprintable()
    return redirect(after if local else "/settings")


@require_GET
@require_fresh_mfa
def settings_page(request: HttpRequest) -> HttpResponse:
    member_id = request.member_session.member_id  # type: ignore[attr-defined]
    return page(f"<h1>Settings of {escape(member_id)}</h1>" + form(request, "/logout"))


@require_POST
def logout(request: HttpRequest) -> HttpResponse:
    token = request.COOKIES.get(SESSION_COOKIE)
    if token:
        with contextlib.suppress(MfaError):  # already ended
            Mfa.flow.revoke_session(session_token=token)  # ends it everywhere, at once
    request.session.flush()
    return signed_out(redirect("/login"))
# --8<-- [end:step-up]


urlpatterns = [
    path("login", login),
    path("mfa", mfa_code),
    path("step-up", step_up),
    path("settings", settings_page),
    path("logout", logout),
]
