"""The example web application (examples/webapp, docs/webapp.md) through its HTTP handlers.

The app runs in-process behind ``httpx.ASGITransport`` on ``https://testserver`` (its cookies are Secure), with a
FakeClock and a FakeTransport, as a user's test of their own application would run it. Starlette's TestClient is
not used: with httpx (not httpx2) it raises a deprecation warning, an error under this suite's settings.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import types
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from mfa_flow import ConfigurationError, Event, MfaError
from mfa_flow.testing import FakeClock, FakeTransport
from tests.emulator_server import PROJECT_ID, SECRET, EmulatorProcess, require
from tests.helpers_rules import wrong as wrong_code

if TYPE_CHECKING:
    from examples.webapp.app import WebApp
    from examples.webapp.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
ORG = "organization-demo-acme"
ADA, BARBARA, GRACE, ALAN = "member-demo-ada", "member-demo-barbara", "member-demo-grace", "member-demo-alan"
MARGARET = "member-demo-margaret"
TOTP_KEY = "JBSWY3DPEHPK3PXP"  # Alan's, in accounts.json
COOKIES = ("__Host-csrf", "__Host-login", "__Host-session")


def password(email: str) -> str:
    """The demo password: the name before the @, then -demo-password."""
    return email.split("@", maxsplit=1)[0] + "-demo-password"


def csrf_of(page: httpx.Response) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found, f"no CSRF field on {page.url}"
    return found.group(1)


def error_type_of(page: httpx.Response) -> str:
    found = re.search(r'id="error">[^<]*<code>([a-z_]+)</code>', page.text)
    return found.group(1) if found else ""


class Client:
    """A browser for the handlers: an httpx client over the ASGI app, with its cookie jar, used synchronously."""

    def __init__(self, app: Any) -> None:
        self._runner = asyncio.Runner()
        self.http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://testserver",
                                      follow_redirects=True)
        self.pages: list[httpx.Response] = []  # every answer, redirects included, for the leak checks

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        response = self._runner.run(self.http.request(method, url, **kwargs))
        self.pages += [*response.history, response]
        return response

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, data: dict[str, str] | None = None, **kwargs: Any) -> httpx.Response:
        return self.request("POST", url, data=data or {}, **kwargs)

    def submit(self, page: httpx.Response, url: str, **fields: str) -> httpx.Response:
        """Post a form of ``page`` with its CSRF token, as the browser would."""
        return self.post(url, {"csrf_token": csrf_of(page), **fields})

    def submit_at_once(self, page: httpx.Response, url: str, times: int, **fields: str) -> list[httpx.Response]:
        """Post a form of ``page`` ``times`` times concurrently, as many tabs would: the app's sync handlers run
        in its threadpool, so the posts overlap."""
        async def posts() -> list[httpx.Response]:
            form = {"csrf_token": csrf_of(page), **fields}
            return list(await asyncio.gather(*(self.http.post(url, data=form) for _ in range(times))))

        answers = self._runner.run(posts())
        self.pages += [page for answer in answers for page in (*answer.history, answer)]
        return answers

    def cookie(self, name: str) -> str | None:
        return self.http.cookies.get(name)

    def set_cookie(self, name: str, value: str) -> None:
        self.http.cookies.set(name, value, domain="testserver.local", path="/")

    def close(self) -> None:
        self._runner.run(self.http.aclose())
        self._runner.close()


@dataclass
class Demo:
    """The app under test, its clock and its SMS gateway, and the browsers opened on it."""

    app: Any
    web: WebApp
    clock: FakeClock
    sms: FakeTransport
    clients: list[Client] = field(default_factory=list)

    def browser(self) -> Client:
        client = Client(self.app)
        self.clients.append(client)
        return client

    def sign_in(self, client: Client, email: str) -> httpx.Response:
        """Password sign-in: answers the page that follows (the code page for a member with a phone)."""
        page = client.get("/login")
        return client.submit(page, "/login", email=email, password=password(email))

    def signed_in(self, email: str) -> Client:
        """A browser whose member passed the password and the SMS code."""
        client = self.browser()
        page = self.sign_in(client, email)
        member = self.web.accounts.by_email[email].member_id
        home = client.submit(page, "/login/code", code=self.sms.last_code(member))
        assert home.url.path == "/home", home.text
        return client


def make_app(settings: Settings, clock: FakeClock, sms: FakeTransport, accounts: Any = None) -> Any:
    return require("examples.webapp.app").create_app(settings, clock=clock, gateway=sms, accounts=accounts)


def settings_for(data_dir: Path, **overrides: Any) -> Settings:
    return require("examples.webapp.settings").Settings(data_dir=data_dir, **overrides)


@contextmanager
def started(data_dir: Path, accounts: Any = None) -> Iterator[Demo]:
    clock, sms = FakeClock(), FakeTransport()
    app = make_app(settings_for(data_dir), clock, sms, accounts)
    running = Demo(app, app.state.web, clock, sms)
    try:
        yield running
    finally:
        for client in running.clients:
            client.close()
        running.web.close()  # ASGITransport runs no lifespan


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Demo]:
    with started(tmp_path) as running:
        yield running


# --- CSRF -----------------------------------------------------------------------------------------------------

POSTS = ["/login", "/login/code", "/login/code/resend", "/login/totp", "/enrol", "/session/code",
         "/session/code/resend", "/logout", "/admin/unlock"]


def test_every_form_refuses_a_post_without_the_csrf_token(demo: Demo) -> None:
    admin = demo.signed_in("margaret@example.com")
    sent = len(demo.sms.sent)
    fields = {"email": "ada@example.com", "password": password("ada@example.com"), "code": "123456",
              "phone": "+14155550150", "member_id": ADA}
    for url in POSTS:
        refused = admin.post(url, fields)
        assert (url, refused.status_code) == (url, 403)
        assert "This form has expired" in refused.text
    assert len(demo.sms.sent) == sent  # no sign-in started, no code sent
    assert admin.get("/admin").url.path == "/admin"  # /logout without the token ended nothing


def test_a_csrf_token_of_another_browser_or_an_older_visit_is_refused(demo: Demo) -> None:
    mallory, ada = demo.browser(), demo.browser()
    foreign = csrf_of(mallory.get("/login"))
    page = ada.get("/login")
    refused = ada.post("/login", {"csrf_token": foreign, "email": "ada@example.com",
                                  "password": password("ada@example.com")})
    assert refused.status_code == 403
    assert ada.cookie("__Host-login") is None
    before_sign_in = csrf_of(page)
    code_page = ada.submit(page, "/login", email="ada@example.com", password=password("ada@example.com"))
    home = ada.submit(code_page, "/login/code", code=demo.sms.last_code(ADA))
    assert home.url.path == "/home"
    stale = ada.post("/logout", {"csrf_token": before_sign_in})  # sign-in renewed the browser's CSRF value
    assert stale.status_code == 403
    assert ada.get("/home").url.path == "/home"
    assert ada.submit(home, "/logout").url.path == "/login"


# --- cookies ----------------------------------------------------------------------------------------------------

def set_cookies(response: httpx.Response) -> dict[str, Any]:
    """Every Set-Cookie of a response and of the redirects before it, by name (the last one wins)."""
    jar: dict[str, Any] = {}
    for answer in [*response.history, response]:
        for header in answer.headers.get_list("set-cookie"):
            parsed = SimpleCookie()
            parsed.load(header)
            jar.update(parsed)
    return jar


def test_every_cookie_is_secure_httponly_samesite_and_host_prefixed(demo: Demo) -> None:
    client = demo.browser()
    login = client.get("/login")
    code_page = client.submit(login, "/login", email="ada@example.com", password=password("ada@example.com"))
    home = client.submit(code_page, "/login/code", code=demo.sms.last_code(ADA))
    seen = {**set_cookies(login), **set_cookies(code_page)}
    seen.update(set_cookies(home))
    assert set(seen) == set(COOKIES)
    for name, morsel in seen.items():
        assert (name, morsel["secure"], morsel["httponly"], morsel["samesite"].lower(), morsel["path"],
                morsel["domain"]) == (name, True, True, "lax", "/", "")
    assert set_cookies(code_page)["__Host-login"]["max-age"] == "600"  # the IST lives 600 s


def test_the_ist_cookie_is_cleared_once_the_code_is_accepted_and_cannot_be_replayed(demo: Demo) -> None:
    client = demo.browser()
    code_page = demo.sign_in(client, "ada@example.com")
    ist_cookie = client.cookie("__Host-login")
    assert ist_cookie is not None
    home = client.submit(code_page, "/login/code", code=demo.sms.last_code(ADA))
    assert set_cookies(home)["__Host-login"]["max-age"] == "0"
    assert client.cookie("__Host-login") is None
    assert client.cookie("__Host-session") is not None
    client.set_cookie("__Host-login", ist_cookie)  # the consumed IST, replayed
    replay = client.submit(home, "/login/code", code=demo.sms.last_code(ADA))
    assert replay.url.path == "/login"
    assert replay.history[0].headers["location"] == "/login?notice=expired"


def test_a_tampered_or_misplaced_cookie_is_not_trusted(demo: Demo) -> None:
    ticket = require("examples.webapp.app").Ticket
    ada = demo.signed_in("ada@example.com")
    session = demo.web.signer.unpack("__Host-session", ada.cookie("__Host-session"))
    assert session is not None
    mac = ada.cookie("__Host-session").partition(".")[2]  # type: ignore[union-attr]
    barbara = demo.web.signer.pack("__Host-session", ticket(ORG, BARBARA, session.token)).partition(".")[0]
    for forged in (f"{barbara}.{mac}",  # Barbara's ids under the MAC of Ada's cookie
                   demo.web.signer.pack("__Host-login", session)):  # a valid MAC, for another cookie
        other = demo.browser()
        other.set_cookie("__Host-session", forged)
        assert other.get("/settings").url.path == "/login"
    assert ada.get("/settings").url.path == "/settings"


# --- sign-in, code page, lock, step-up, logout -----------------------------------------------------------------

def test_a_wrong_password_or_unknown_address_starts_nothing(demo: Demo) -> None:
    client = demo.browser()
    for email, typed in [("ada@example.com", "not-her-password"), ("nobody@example.com", "whatever")]:
        page = client.submit(client.get("/login"), "/login", email=email, password=typed)
        assert page.status_code == 401
        assert "Wrong e-mail address or password." in page.text
    assert client.cookie("__Host-login") is None
    assert demo.sms.sent == []


def test_a_wrong_code_then_the_right_one_signs_in(demo: Demo) -> None:
    client = demo.browser()
    page = demo.sign_in(client, "ada@example.com")
    assert page.url.path == "/login/code"
    assert 'id="phone">XXXXXXX0101<' in page.text
    wrong = client.submit(page, "/login/code", code=wrong_code(demo.sms.last_code(ADA)))
    assert (wrong.status_code, error_type_of(wrong)) == (404, "otp_code_not_found")
    home = client.submit(wrong, "/login/code", code=demo.sms.last_code(ADA))
    assert home.url.path == "/home"
    assert re.findall(r'class="factor">(\w+)<', home.text) == ["password", "otp"]


def test_the_code_page_shows_the_cooldown_and_the_sends_left(demo: Demo) -> None:
    client = demo.browser()
    page = demo.sign_in(client, "ada@example.com")
    assert "You can ask for a new code in 30 s. 4 of 5 codes left in 10 minutes." in " ".join(page.text.split())
    assert re.search(r'id="resend" disabled', page.text)
    early = client.submit(page, "/login/code/resend")  # a forged click during the cooldown
    assert (early.status_code, error_type_of(early)) == (429, "too_many_requests")
    assert len(demo.sms.sent) == 1
    for left in (3, 2, 1, 0):
        demo.clock.advance(30)
        page = client.submit(client.get("/login/code"), "/login/code/resend")
        assert page.url.query == b"notice=sent"
        assert f"{left} of 5 codes left" in page.text
    assert len(demo.sms.sent) == 5
    demo.clock.advance(30)
    page = client.get("/login/code")
    # The window's first send was 150 s ago: the next one may go in 600 - 150 s.
    assert "You can ask for a new code in 450 s. 0 of 5 codes left" in " ".join(page.text.split())
    assert re.search(r'id="resend" disabled', page.text)
    code = client.submit(page, "/login/code", code=demo.sms.last_code(ADA))
    assert code.url.path == "/home"


def test_five_wrong_codes_lock_the_member_and_the_admin_unlocks(demo: Demo) -> None:
    barbara = demo.browser()
    page = demo.sign_in(barbara, "barbara@example.com")
    right = demo.sms.last_code(BARBARA)
    wrong = wrong_code(right)
    for _ in range(4):
        page = barbara.submit(page, "/login/code", code=wrong)
        assert error_type_of(page) == "otp_code_not_found"
    locked = barbara.submit(page, "/login/code", code=wrong)
    assert (locked.status_code, error_type_of(locked)) == (429, "user_lock_limit_reached")
    assert "<h1>Account locked</h1>" in locked.text
    assert barbara.cookie("__Host-login") is None
    again = demo.sign_in(barbara, "barbara@example.com")
    assert error_type_of(again) == "user_lock_limit_reached"

    admin = demo.signed_in("margaret@example.com")
    console = admin.get("/admin")
    row = re.search(rf'<tr id="member-{BARBARA}">.*?</tr>', console.text, re.S)
    assert row
    assert "locked until" in row.group(0)
    assert re.search(rf"<td>member.locked</td><td>{BARBARA}</td><td>XXXXXXX0102</td>", console.text)
    unlocked = admin.submit(console, "/admin/unlock", member_id=BARBARA)
    assert 'id="notice">The member is unlocked.' in unlocked.text
    assert re.search(rf'<tr id="member-{BARBARA}">.*?<td class="state">active</td>', unlocked.text, re.S)
    assert "<td>member.unlocked</td>" in unlocked.text
    assert demo.web.flow.get_member(ORG, BARBARA).is_locked is False

    page = demo.sign_in(barbara, "barbara@example.com")  # within 30 s of the last code: none is sent
    assert (page.url.path, page.url.query) == ("/login/code", b"notice=unsent")
    assert len(demo.sms.sent) == 2  # hers and the admin's
    demo.clock.advance(30)
    page = demo.sign_in(barbara, "barbara@example.com")
    assert barbara.submit(page, "/login/code", code=demo.sms.last_code(BARBARA)).url.path == "/home"


def lock(demo: Demo, member_id: str, organization_id: str = ORG) -> None:
    """Five wrong codes, straight through the flow."""
    login = demo.web.flow.authenticate_primary(organization_id, member_id, "password")
    wrong = wrong_code(demo.sms.last_code(member_id))
    refusals = []
    for _ in range(5):
        with pytest.raises(MfaError) as refused:
            demo.web.flow.authenticate_sms_otp(organization_id, member_id, wrong,
                                               intermediate_session_token=login.intermediate_session_token)
        refusals.append(refused.value.error_type)
    assert refusals[-1] == "user_lock_limit_reached"


def test_only_an_admin_sees_the_admin_page_or_unlocks(demo: Demo) -> None:
    lock(demo, BARBARA)
    ada = demo.signed_in("ada@example.com")
    home = ada.get("/admin")
    assert home.url.path == "/home"
    assert "Admin</a>" not in home.text
    assert ada.submit(home, "/admin/unlock", member_id=BARBARA).url.path == "/home"
    assert demo.web.flow.get_member(ORG, BARBARA).is_locked is True


GLOBEX, LINUS = "organization-demo-globex", "member-demo-linus"


def two_organizations(folder: Path) -> Any:
    """The demo's user table and records, and a second organization with one member, Linus."""
    accounts = require("examples.webapp.accounts")
    fixtures = json.loads(FIXTURES.read_text("utf-8"))
    fixtures["organizations"].append({"organization_id": GLOBEX, "organization_slug": "globex",
                                      "organization_name": "Globex", "mfa_policy": "REQUIRED_FOR_ALL"})
    fixtures["members"].append({"member_id": LINUS, "organization_id": GLOBEX, "email_address": "linus@example.com",
                                "name": "Linus", "mfa_phone_number": "+14155550104",
                                "mfa_phone_number_verified": True})
    table = json.loads((ROOT / "examples" / "webapp" / "accounts.json").read_text("utf-8"))
    table.append({"email": "linus@example.com", "password_hash": accounts.hash_password(password("linus@example.com")),
                  "admin": False, "totp_secret": ""})
    (folder / "fixtures.json").write_text(json.dumps(fixtures), "utf-8")
    (folder / "accounts.json").write_text(json.dumps(table), "utf-8")
    return accounts.Accounts(folder / "fixtures.json", folder / "accounts.json")


def test_the_admin_page_shows_the_admins_own_organization_only(tmp_path: Path) -> None:
    with started(tmp_path / "data", two_organizations(tmp_path)) as demo:
        linus = demo.browser()
        page = demo.sign_in(linus, "linus@example.com")  # otp.sent in Globex's log
        wrong = linus.submit(page, "/login/code", code="12345x")
        assert error_type_of(wrong) == "otp_code_not_found"  # otp.failed
        lock(demo, LINUS, GLOBEX)  # member.locked
        admin = demo.signed_in("margaret@example.com")
        console = admin.get("/admin")
        assert re.search(rf'<tr id="member-{ADA}">', console.text)
        assert re.search(rf"<td>session.created</td><td>{MARGARET}</td>", console.text)
        assert [leak for leak in (LINUS, "linus@example.com", "XXXXXXX0104") if leak in console.text] == []
        unlocked = admin.submit(console, "/admin/unlock", member_id=LINUS)  # nor can she unlock him
        assert (unlocked.url.path, LINUS in unlocked.text) == ("/admin", False)
        assert demo.web.flow.get_member(GLOBEX, LINUS).is_locked is True


def test_an_idle_session_steps_up_on_settings_and_comes_back(demo: Demo) -> None:
    ada = demo.signed_in("ada@example.com")
    assert ada.get("/settings").url.path == "/settings"
    demo.clock.advance(minutes=31)
    sent = len(demo.sms.sent)
    page = ada.get("/settings")
    assert (page.url.path, page.url.params["next"]) == ("/session/code", "/settings")
    assert "You were away for a while" in page.text
    assert len(demo.sms.sent) == sent + 1  # authenticate_session sent the step-up code
    assert ada.get("/home").url.path == "/session/code"  # every page waits for it; no second SMS
    assert len(demo.sms.sent) == sent + 1
    wrong = ada.submit(page, "/session/code", code="12345x", next="/settings")
    assert error_type_of(wrong) == "otp_code_not_found"
    back = ada.submit(wrong, "/session/code", code=demo.sms.last_code(ADA), next="/settings")
    assert back.url.path == "/settings"
    assert 'id="settings-phone">XXXXXXX0101 (verified)' in back.text
    assert ada.get("/home").url.path == "/home"


def test_logout_revokes_the_session_and_the_old_cookie_is_refused(demo: Demo) -> None:
    ada = demo.signed_in("ada@example.com")
    old = ada.cookie("__Host-session")
    assert old is not None
    out = ada.submit(ada.get("/home"), "/logout")
    assert out.url.path == "/login"
    assert "You are signed out." in out.text
    assert ada.cookie("__Host-session") is None
    assert demo.web.flow.list_member_sessions(ORG, ADA) == []
    thief = demo.browser()
    thief.set_cookie("__Host-session", old)
    replay = thief.get("/settings")
    assert replay.url.path == "/login"
    assert set_cookies(replay)["__Host-session"]["max-age"] == "0"


# --- enrolment ----------------------------------------------------------------------------------------------

def test_a_member_without_a_factor_links_a_phone_with_the_ist(demo: Demo) -> None:
    grace = demo.browser()
    page = demo.sign_in(grace, "grace@example.com")
    assert page.url.path == "/enrol"
    assert demo.sms.sent == []
    bad = grace.submit(page, "/enrol", phone="+1 900 555 0100")
    assert error_type_of(bad) == "invalid_phone_number"
    code_page = grace.submit(bad, "/enrol", phone="+1 415 555 0150")
    assert code_page.url.path == "/login/code"
    assert 'id="phone">XXXXXXX0150<' in code_page.text
    home = grace.submit(code_page, "/login/code", code=demo.sms.last_code(GRACE))
    assert home.url.path == "/home"
    member = demo.web.flow.get_member(ORG, GRACE)
    assert (member.mfa_phone_number, member.mfa_phone_number_verified) == ("+14155550150", True)


def test_a_totp_member_passes_totp_before_linking_a_phone(demo: Demo) -> None:
    totp = require("examples.webapp.accounts").totp
    alan = demo.browser()
    page = demo.sign_in(alan, "alan@example.com")
    assert page.url.path == "/login/totp"
    skipped = alan.submit(page, "/enrol", phone="+14155550160")  # straight to linking: the IST has no factor
    assert error_type_of(skipped) == "insufficient_factors"
    assert demo.sms.sent == []
    wrong = alan.submit(page, "/login/totp", code=wrong_code(totp("JBSWY3DPEHPK3PXP", demo.clock.now())))
    assert wrong.status_code == 401
    enrol = alan.submit(wrong, "/login/totp", code=totp("JBSWY3DPEHPK3PXP", demo.clock.now()))
    assert enrol.url.path == "/enrol"
    assert alan.cookie("__Host-login") is None
    code_page = alan.submit(enrol, "/enrol", phone="+14155550160")
    assert code_page.url.path == "/session/code"
    home = alan.submit(code_page, "/session/code", code=demo.sms.last_code(ALAN), next="/home")
    assert home.url.path == "/home"
    assert re.findall(r'class="factor">(\w+)<', home.text) == ["password", "totp", "otp"]
    assert demo.web.flow.get_member(ORG, ALAN).mfa_phone_number_verified is True


def test_authenticator_guesses_are_limited_to_five_an_hour(demo: Demo) -> None:
    totp = require("examples.webapp.accounts").totp
    alan = demo.browser()
    page = demo.sign_in(alan, "alan@example.com")
    right = totp("JBSWY3DPEHPK3PXP", demo.clock.now())
    wrong = wrong_code(right)
    for _ in range(5):
        page = alan.submit(page, "/login/totp", code=wrong)
        assert page.status_code == 401
    refused = alan.submit(page, "/login/totp", code=right)
    assert (refused.status_code, refused.url.path) == (429, "/login/totp")
    assert "Too many wrong codes." in refused.text
    assert alan.cookie("__Host-session") is None
    demo.clock.advance(3601)
    page = demo.sign_in(alan, "alan@example.com")  # the first IST has expired by now
    enrol = alan.submit(page, "/login/totp", code=totp("JBSWY3DPEHPK3PXP", demo.clock.now()))
    assert enrol.url.path == "/enrol"


def test_a_member_without_an_authenticator_cannot_pass_the_totp_step(demo: Demo) -> None:
    """Her account has no key: a code made from an empty key, which anyone can compute, must not replace her SMS."""
    totp = require("examples.webapp.accounts").totp
    for email, member_id in (("ada@example.com", ADA), ("margaret@example.com", MARGARET)):
        client = demo.browser()
        page = demo.sign_in(client, email)
        assert page.url.path == "/login/code"
        assert client.get("/login/totp").url.path == "/login/code"
        forged = client.submit(page, "/login/totp", code=totp("", demo.clock.now()))
        assert forged.url.path == "/login/code"
        assert client.cookie("__Host-session") is None
        assert demo.web.flow.list_member_sessions(ORG, member_id) == []
        home = client.submit(forged, "/login/code", code=demo.sms.last_code(member_id))  # her own step still works
        assert re.findall(r'class="factor">(\w+)<', home.text) == ["password", "otp"]
    grace = demo.browser()
    assert demo.sign_in(grace, "grace@example.com").url.path == "/enrol"
    assert grace.get("/login/totp").url.path == "/enrol"  # no factor at all: linking a phone is her step


def test_an_authenticator_code_is_accepted_once(demo: Demo) -> None:
    """RFC 6238 section 5.2: a code seen over Alan's shoulder, with his password, opens no second session; nor does
    the code of the step before it, still within the drift allowed."""
    totp = require("examples.webapp.accounts").totp
    alan, mallory = demo.browser(), demo.browser()
    alans_page, mallorys_page = demo.sign_in(alan, "alan@example.com"), demo.sign_in(mallory, "alan@example.com")
    seen_at = demo.clock.now()
    assert alan.submit(alans_page, "/login/totp", code=totp(TOTP_KEY, seen_at)).url.path == "/enrol"
    demo.clock.advance(10)  # the code is still the current one
    for used in (totp(TOTP_KEY, seen_at), totp(TOTP_KEY, seen_at - 30)):
        replay = mallory.submit(mallorys_page, "/login/totp", code=used)
        assert (replay.status_code, replay.url.path) == (401, "/login/totp")
        assert "That code is not right." in replay.text
        assert mallory.cookie("__Host-session") is None
    assert len(demo.web.flow.list_member_sessions(ORG, ALAN)) == 1
    demo.clock.advance(30)  # the next step's code is a new one
    assert mallory.submit(mallorys_page, "/login/totp", code=totp(TOTP_KEY, demo.clock.now())).url.path == "/enrol"


def test_authenticator_guesses_posted_at_once_are_counted_in_one_step(demo: Demo,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Twelve wrong guesses at once: five are checked (and counted), seven refused; none slips past the count."""
    app = require("examples.webapp.app")
    check = app.totp_step

    def slow_check(secret: str, code: str, at: float) -> int | None:
        time.sleep(0.05)  # widen the gap between counting and recording, as a loaded server would
        return check(secret, code, at)

    monkeypatch.setattr(app, "totp_step", slow_check)
    alan = demo.browser()
    page = demo.sign_in(alan, "alan@example.com")
    wrong = wrong_code(require("examples.webapp.accounts").totp(TOTP_KEY, demo.clock.now()))
    answers = alan.submit_at_once(page, "/login/totp", 12, code=wrong)
    assert sorted(answer.status_code for answer in answers) == [401] * 5 + [429] * 7
    assert len(demo.web.events.times("totp.failed", ORG, ALAN, 0)) == 5


# --- the event log -------------------------------------------------------------------------------------------

def test_the_event_log_keeps_plain_values_only(tmp_path: Path) -> None:
    """An object in an event's data is left out, not stored as its text (which may hold anything)."""
    eventlog = require("examples.webapp.eventlog")

    class Carrier:
        def __str__(self) -> str:
            return "its text: a secret"

        __repr__ = __str__

    log = eventlog.EventLog(tmp_path / "app.sqlite3")
    try:
        log(Event("otp.sent", 0.0, ORG, ADA, "XXXXXXX0101", None,
                  {"purpose": "login", "carrier": Carrier(), "factors": ("password", "otp")}))
        [logged] = log.recent(ORG)
    finally:
        log.close()
    assert json.loads(logged.data) == {"purpose": "login", "factors": ["password", "otp"]}


def test_a_members_events_are_counted_through_an_index(demo: Demo) -> None:
    """The code page counts the member's sends on every render: a search of the index, not a scan of the log."""
    query = require("examples.webapp.eventlog").TIMES_QUERY
    with closing(sqlite3.connect(demo.web.settings.data_dir / "app.sqlite3")) as db:
        plan = [row[-1] for row in db.execute("EXPLAIN QUERY PLAN " + query, ("otp.sent", ORG, ADA, 0.0))]
    [step] = plan  # one search, and no sort of its own for the ORDER BY
    assert step.endswith("events USING COVERING INDEX events_of_member (name=? AND organization_id=? AND member_id=? "
                         "AND at>?)")


def test_the_fixtures_file_is_checked_whole_naming_the_file(tmp_path: Path) -> None:
    accounts = require("examples.webapp.accounts")
    fixtures = json.loads(FIXTURES.read_text("utf-8"))
    fixtures["members"].append({**fixtures["members"][0], "email_address": "ada.again@example.com"})
    path = tmp_path / "fixtures.json"
    path.write_text(json.dumps(fixtures), "utf-8")
    with pytest.raises(ConfigurationError, match=rf"{re.escape(str(path))}: members\[5\] .*already names"):
        accounts.Accounts(path)


# --- secrets stay out of pages, URLs and logs ----------------------------------------------------------------

def token_of(demo: Demo, client: Client, cookie: str) -> str:
    ticket = demo.web.signer.unpack(cookie, client.cookie(cookie))
    assert ticket is not None
    return ticket.token


def test_no_code_or_token_reaches_a_page_a_url_the_event_log_or_a_log(demo: Demo,
                                                                          caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    tokens: list[str] = []
    ada = demo.browser()
    page = demo.sign_in(ada, "ada@example.com")
    tokens.append(token_of(demo, ada, "__Host-login"))
    page = ada.submit(page, "/login/code", code="12345x")
    demo.clock.advance(30)
    page = ada.submit(page, "/login/code/resend")
    page = ada.submit(page, "/login/code", code=demo.sms.last_code(ADA))
    tokens.append(token_of(demo, ada, "__Host-session"))
    demo.clock.advance(minutes=31)
    page = ada.get("/settings")
    page = ada.submit(page, "/session/code", code=demo.sms.last_code(ADA), next="/settings")
    ada.submit(page, "/logout")
    admin = demo.signed_in("margaret@example.com")
    admin.get("/admin")
    codes = [message.code for message in demo.sms.sent]
    assert len(codes) == 4
    assert len(tokens) == 2
    texts = [f"{p.url} {p.headers.get('location', '')} {p.text}" for c in demo.clients for p in c.pages]
    texts += [record.getMessage() for record in caplog.records]
    texts += [repr(event) for event in demo.web.events.recent(ORG, limit=1000)]  # the demo's one organization
    for secret in codes + tokens:
        assert not [text for text in texts if secret in text]


# --- settings and the one command ---------------------------------------------------------------------------

def test_settings_come_from_the_environment(tmp_path: Path) -> None:
    settings = require("examples.webapp.settings").Settings
    read = settings.from_env({"MFA_WEBAPP_MODE": "stytch", "MFA_WEBAPP_DATA": str(tmp_path),
                              "MFA_WEBAPP_PORT": "8001", "MFA_WEBAPP_STYTCH_URL": "http://127.0.0.1:9000"})
    assert (read.mode, read.data_dir, read.port, read.stytch_url) == ("stytch", tmp_path, 8001,
                                                                       "http://127.0.0.1:9000")
    assert settings.from_env({}).mode == "local"
    with pytest.raises(SystemExit, match="MFA_WEBAPP_MODE must be 'local' or 'stytch'"):
        settings.from_env({"MFA_WEBAPP_MODE": "live"})


def test_a_key_file_that_is_empty_short_or_not_hex_is_refused_naming_it(tmp_path: Path) -> None:
    """A truncated key would sign cookies and codes with a key anyone knows."""
    keys = require("examples.webapp.settings").Keys
    path = tmp_path / "secret.key"
    for text in ("", "\n", "ab" * 31, "not a key at all"):
        path.write_text(text)
        with pytest.raises(SystemExit, match=rf"^{re.escape(str(path))}: not a key of at least 32 bytes"):
            keys.load(tmp_path)
        with pytest.raises(SystemExit, match=re.escape(str(path))):
            make_app(settings_for(tmp_path), FakeClock(), FakeTransport())
    path.write_text("ab" * 32)
    assert keys.load(tmp_path) == keys.from_secret(bytes.fromhex("ab" * 32))


def test_workers_starting_together_share_one_whole_key(tmp_path: Path) -> None:
    """The first start of several workers at once: each reads the same full key, none an empty or partial one."""
    keys = require("examples.webapp.settings").Keys
    for attempt in range(20):
        folder = tmp_path / str(attempt)
        folder.mkdir()
        ready = threading.Barrier(8)

        def start(folder: Path = folder, ready: threading.Barrier = ready) -> Any:
            ready.wait()
            return keys.load(folder)

        with ThreadPoolExecutor(8) as pool:
            loaded = [future.result() for future in [pool.submit(start) for _ in range(8)]]
        assert loaded == [keys.from_secret(bytes.fromhex((folder / "secret.key").read_text()))] * 8
        assert [(p.name, len(p.read_text())) for p in folder.iterdir()] == [("secret.key", 64)]  # no draft left


def test_a_data_folder_others_may_write_or_another_user_owns_is_refused(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The key, sessions and event log live there; the default is under the shared temp folder."""
    for mode in (0o777, 0o770):
        shared = tmp_path / oct(mode)
        shared.mkdir()
        shared.chmod(mode)
        refusal = rf"^{re.escape(str(shared))} may be written by others \(mode {oct(mode)}\)"
        with pytest.raises(SystemExit, match=refusal):
            make_app(settings_for(shared), FakeClock(), FakeTransport())
        assert list(shared.iterdir()) == []  # nothing was written there
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o700)
    with monkeypatch.context() as patch:
        patch.setattr(os, "getuid", lambda: theirs.stat().st_uid + 1)  # as if another user had made it
        with pytest.raises(SystemExit, match=rf"^{re.escape(str(theirs))} belongs to another user"):
            make_app(settings_for(theirs), FakeClock(), FakeTransport())
    fresh = tmp_path / "new" / "data"
    make_app(settings_for(fresh), FakeClock(), FakeTransport()).state.web.close()
    assert oct(fresh.stat().st_mode & 0o777) == "0o700"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_python_m_examples_webapp_serves_the_login_page_on_loopback(tmp_path: Path) -> None:
    require("fastapi")
    port = free_port()
    env = {**os.environ, "MFA_WEBAPP_DATA": str(tmp_path), "MFA_WEBAPP_PORT": str(port),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    server = subprocess.Popen([sys.executable, "-m", "examples.webapp"], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline, page = time.monotonic() + 30, None
        while page is None and time.monotonic() < deadline and server.poll() is None:
            try:
                page = httpx.get(f"http://127.0.0.1:{port}/login", timeout=2)
            except httpx.TransportError:
                time.sleep(0.2)
        assert page is not None, "the app did not answer within 30 s"
        assert page.status_code == 200
        assert '<form method="post" action="/login">' in page.text
        assert "__Host-csrf=" in page.headers["set-cookie"]
    finally:
        server.send_signal(signal.SIGTERM)
        out, err = server.communicate(timeout=30)
    # uvicorn shuts down gracefully, then re-raises the signal so that the exit status tells what stopped it.
    assert (server.returncode, "Application shutdown complete." in err) == (-signal.SIGTERM, True), err
    assert out.startswith(f"mfa_flow example webapp, local mode, data in {tmp_path}: open http://127.0.0.1:{port}/")
    assert f"Uvicorn running on http://127.0.0.1:{port}" in err
    assert (tmp_path / "mfa_flow.sqlite3").exists()
    assert oct((tmp_path / "secret.key").stat().st_mode & 0o777) == "0o600"


# --- Stytch mode against mfa-flow serve ----------------------------------------------------------------------

FIXTURES = ROOT / "examples" / "webapp" / "fixtures.json"


def stytch_demo(start_emulator: Any, tmp_path: Path) -> tuple[Demo, EmulatorProcess]:
    emulator: EmulatorProcess = start_emulator(json.loads(FIXTURES.read_text("utf-8")))
    clock = FakeClock(emulator.advance(0))  # the flow's clock starts at Stytch's
    settings = settings_for(tmp_path, mode="stytch", stytch_url=emulator.url, stytch_project_id=PROJECT_ID,
                            stytch_secret=SECRET)
    unused = FakeTransport()  # Stytch texts the codes
    app = make_app(settings, clock, unused)
    return Demo(app, app.state.web, clock, unused), emulator


def test_stytch_mode_signs_in_steps_up_and_logs_out_through_the_emulator(start_emulator: Any,
                                                                         tmp_path: Path) -> None:
    running, emulator = stytch_demo(start_emulator, tmp_path)
    try:
        ada = running.browser()
        page = running.sign_in(ada, "ada@example.com")
        assert page.url.path == "/login/code"
        assert "mfa_flow example · stytch mode" in page.text
        wrong = ada.submit(page, "/login/code", code="12345x")
        assert error_type_of(wrong) == "otp_code_not_found"
        home = ada.submit(wrong, "/login/code", code=emulator.code(ADA))
        assert home.url.path == "/home"
        running.clock.advance(minutes=31)  # the flow's clock judges inactivity, Stytch's its codes
        emulator.advance(31 * 60)
        page = ada.get("/settings")
        assert page.url.path == "/session/code"
        back = ada.submit(page, "/session/code", code=emulator.code(ADA), next="/settings")
        assert back.url.path == "/settings"
        old = ada.cookie("__Host-session")
        assert ada.submit(back, "/logout").url.path == "/login"
        thief = running.browser()
        thief.set_cookie("__Host-session", old or "")
        assert thief.get("/home").url.path == "/login"
        assert [m["member_id"] for m in emulator.messages()] == [ADA, ADA]
    finally:
        for client in running.clients:
            client.close()
        running.web.close()


def test_the_user_table_keeps_salted_scrypt_hashes_only() -> None:
    accounts = require("examples.webapp.accounts")
    table = accounts.Accounts()
    hashes = [account.password_hash for account in table.by_email.values()]
    assert len(hashes) == 5
    assert all(h.startswith("scrypt$16384$8$1$") for h in hashes)
    assert len({h.split("$")[4] for h in hashes}) == 5  # a salt of its own each
    text = (ROOT / "examples" / "webapp" / "accounts.json").read_text("utf-8")
    for email, account in table.by_email.items():
        assert password(email) not in text
        assert table.check_password(email.upper(), password(email)) == account
        assert table.check_password(email, password(email) + "!") is None
    assert accounts.verify_password("s3cret", accounts.hash_password("s3cret"))


def test_an_unknown_address_costs_the_scrypt_of_a_known_one_whatever_scrypt_n(monkeypatch: pytest.MonkeyPatch) -> None:
    """accounts.py with SCRYPT_N raised, as its comment asks of production: an unknown address is checked at the
    same cost as a new hash, so the answer's time does not tell whether the address has an account."""
    path = ROOT / "examples" / "webapp" / "accounts.py"
    shipped = "SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1"
    source = path.read_text("utf-8")
    assert shipped in source
    raised = types.ModuleType("accounts_with_scrypt_n_raised")
    raised.__file__ = str(path)
    monkeypatch.setitem(sys.modules, raised.__name__, raised)
    exec(compile(source.replace(shipped, "SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1"), path, "exec"),  # noqa: S102
         raised.__dict__)
    costs: list[int] = []

    def scrypt(password: bytes, **kwargs: Any) -> bytes:
        costs.append(kwargs["n"])
        return hashlib.scrypt(password, **kwargs)

    monkeypatch.setattr(raised, "hashlib", types.SimpleNamespace(scrypt=scrypt, sha1=hashlib.sha1))
    stored = raised.hash_password("s3cret")
    assert raised.verify_password("s3cret", stored)
    assert raised.Accounts().check_password("nobody@example.com", "s3cret") is None
    assert costs == [2**15] * 3
