"""The Flask and Django recipes (examples/recipes/) as code: each app driven by its framework's test client
through a login with a wrong then the right code, a step-up after inactivity and a logout whose session is then
refused; the cookies' attributes, CSRF on every form, no token or code in any page; and docs/recipes.md showing
exactly the files' marked regions."""

from __future__ import annotations

import hmac
import importlib.util
import re
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from mfa_flow import Member, MemoryDirectory, MfaError, MfaFlow, Organization
from mfa_flow.testing import FakeClock, FakeTransport
from tests.emulator_server import require
from tests.helpers_rules import wrong

ROOT = Path(__file__).resolve().parent.parent
RECIPES = ROOT / "examples" / "recipes"
DOC = ROOT / "docs" / "recipes.md"
ORG = "org-recipe-1"
MEMBER = "member-recipe-1"
EMAIL = "ada@example.com"
PASSWORD = "correct horse battery staple"  # the demo member's, for the test's check_password
PHONE = "+14155550171"
REGION = re.compile(r"^[ \t]*# --8<-- \[start:(?P<name>[\w-]+)\]\n(?P<code>.*?)^[ \t]*# --8<-- \[end:(?P=name)\]\n",
                    re.S | re.M)
SHOWN = re.compile(r"^<!-- recipe: (?P<file>[\w/.]+)#(?P<name>[\w-]+) -->\n```python\n(?P<code>.*?)^```$", re.S | re.M)


def load(name: str) -> ModuleType:
    """An example file as a module (Django's ROOT_URLCONF names the module, so it is registered)."""
    module_name = f"recipe_{name}"
    if module_name not in sys.modules:
        spec = importlib.util.spec_from_file_location(module_name, RECIPES / f"{name}.py")
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
    return sys.modules[module_name]


def check_password(email: str, password: str) -> tuple[str, str] | None:
    """The application's primary authentication, as the recipes expect it."""
    if hmac.compare_digest(email.encode(), EMAIL.encode()) and hmac.compare_digest(password.encode(),
                                                                                   PASSWORD.encode()):
        return ORG, MEMBER
    return None


@dataclass
class Reply:
    status: int
    location: str
    body: str
    cookies: dict[str, str]  # name → its Set-Cookie header


@dataclass
class Browser:
    """One framework's test client behind the same few calls, keeping what the member saw."""

    framework: str
    client: Any
    clock: FakeClock
    sms: FakeTransport
    flow: MfaFlow
    csrf_refused: int
    pages: list[str] = field(default_factory=list)

    def get(self, path: str) -> Reply:
        return self._seen(self.client.get(path, **self._https()))

    def post(self, path: str, **form: str) -> Reply:
        return self._seen(self.client.post(path, data=form, **self._https()))

    def submit(self, path: str, *, shown_on: str | None = None, **form: str) -> Reply:
        """Open the page showing the form (``path`` itself by default), then post the form with the CSRF
        token that page carries."""
        token = re.search(r'name="(csrf|csrfmiddlewaretoken)" value="([^"]+)"', self.get(shown_on or path).body)
        assert token is not None, f"{shown_on or path} has no CSRF field"
        return self.post(path, **{token.group(1): token.group(2)}, **form)

    def cookie(self, name: str) -> str | None:
        if self.framework == "flask":
            found = self.client.get_cookie(name, domain="localhost", path="/mfa" if name == "mfa_ist" else "/")
            return None if found is None else found.value
        morsel = self.client.cookies.get(name)
        return None if morsel is None or not morsel.value else morsel.value

    def put_cookie(self, name: str, value: str) -> None:
        if self.framework == "flask":
            self.client.set_cookie(name, value, domain="localhost")
        else:
            self.client.cookies[name] = value

    def _https(self) -> dict[str, Any]:
        if self.framework == "flask":
            return {"base_url": "https://localhost"}
        return {"secure": True, "headers": {"referer": "https://testserver/"}}  # Django's HTTPS CSRF check

    def _seen(self, response: Any) -> Reply:
        if self.framework == "flask":
            body = response.get_data(as_text=True)
            cookies = {h.split("=", 1)[0]: h for h in response.headers.getlist("Set-Cookie")}
        else:
            body = response.content.decode()
            cookies = {name: morsel.output(header="").strip() for name, morsel in response.cookies.items()}
        self.pages.append(body)
        return Reply(response.status_code, response.headers.get("Location", ""), body, cookies)


@pytest.fixture(params=["flask", "django"])
def browser(request: pytest.FixtureRequest) -> Iterator[Browser]:
    clock, sms, directory = FakeClock(), FakeTransport(), MemoryDirectory()
    flow = MfaFlow(directory=directory, transport=sms, clock=clock)
    directory.put_organization(Organization(ORG, mfa_policy="REQUIRED_FOR_ALL"))
    directory.put_member(Member(MEMBER, ORG, email_address=EMAIL, mfa_phone_number=PHONE,
                                mfa_phone_number_verified=True))
    if request.param == "flask":
        require("flask")
        app = load("flask_app").create_app(flow, check_password, secret_key="recipe-test-key-" + "0" * 32)
        yield Browser("flask", app.test_client(), clock, sms, flow, csrf_refused=400)
    else:
        require("django")
        load("django_app").install(flow, check_password)
        from django.test import Client
        yield Browser("django", Client(enforce_csrf_checks=True), clock, sms, flow, csrf_refused=403)


def attributes(header: str) -> set[str]:
    """A Set-Cookie header's attributes, lower-cased, without its value and dates."""
    return {part.strip().lower() for part in header.split(";")[1:] if not part.strip().lower().startswith("expires")}


def test_login_step_up_and_logout(browser: Browser) -> None:
    sms = browser.sms
    signed = browser.submit("/login", email=EMAIL, password=PASSWORD)
    assert (signed.status, signed.location) == (302, "/mfa")
    assert [m.to for m in sms.sent] == [PHONE]
    if browser.framework == "flask":  # the IST in a short-lived cookie the code page alone receives
        assert attributes(signed.cookies["mfa_ist"]) == {"max-age=600", "path=/mfa", "secure", "httponly",
                                                         "samesite=strict"}
        assert {"secure", "httponly", "samesite=lax"} <= attributes(signed.cookies["session"])
        ist = browser.cookie("mfa_ist")
        assert ist
        assert ist not in signed.cookies["session"]  # Flask's signed session is readable: no token in it
    else:  # the IST in the server-side session: the browser holds only Django's session key
        ist = browser.client.session["mfa_ist"]
        assert ist
        assert set(signed.cookies) == {"sessionid"}
        assert {"secure", "httponly", "samesite=lax"} <= attributes(signed.cookies["sessionid"])
        assert ist not in signed.cookies["sessionid"]

    refused = browser.submit("/mfa", code=wrong(sms.last_code()))
    assert refused.status == 404  # Stytch's status for otp_code_not_found
    assert "Refused: otp_code_not_found" in refused.body
    done = browser.submit("/mfa", code=sms.last_code())
    assert (done.status, done.location) == (302, "/settings")
    assert attributes(done.cookies["mfa_session"]) == {"path=/", "secure", "httponly", "samesite=lax"}
    token = browser.cookie("mfa_session")
    assert token
    assert browser.flow.authenticate_session(session_token=token).member_session.member_id == MEMBER
    if browser.framework == "flask":
        assert "max-age=0" in attributes(done.cookies["mfa_ist"])
        assert browser.cookie("mfa_ist") is None
    else:
        assert "mfa_ist" not in browser.client.session

    page = browser.get("/settings")
    assert page.status == 200
    assert f"Settings of {MEMBER}" in page.body

    browser.clock.advance(minutes=31)  # idle past inactivity_timeout
    away = browser.get("/settings")
    assert (away.status, away.location) == (302, "/step-up")
    assert len(sms.sent) == 2  # the step-up code went out with the check
    back = browser.submit("/step-up", code=sms.last_code())
    assert (back.status, back.location) == (302, "/settings")
    assert browser.get("/settings").status == 200
    assert browser.cookie("mfa_session") == token  # a step-up keeps the session token

    left = browser.submit("/logout", shown_on="/settings")
    assert (left.status, left.location) == (302, "/login")
    assert browser.cookie("mfa_session") is None
    with pytest.raises(MfaError, match="session_not_found"):
        browser.flow.authenticate_session(session_token=token)
    browser.put_cookie("mfa_session", token)  # the old cookie, replayed
    replayed = browser.get("/settings")
    assert (replayed.status, replayed.location) == (302, "/login")

    secrets = [token, ist, *(m.code for m in sms.sent)]
    assert [s for s in secrets for body in browser.pages if s in body] == []


def signed_in(browser: Browser) -> str:
    """Password and code: the session token."""
    browser.submit("/login", email=EMAIL, password=PASSWORD)
    assert browser.submit("/mfa", code=browser.sms.last_code()).location == "/settings"
    token = browser.cookie("mfa_session")
    assert token
    return token


def plant_after_step_up(browser: Browser, url: str) -> None:
    """Put ``url`` where the recipe keeps the page to return to after the step-up."""
    if browser.framework == "flask":
        with browser.client.session_transaction(base_url="https://localhost") as kept:
            kept["after_step_up"] = url
    else:
        kept = browser.client.session
        kept["after_step_up"] = url
        kept.save()


def test_the_step_up_sends_back_to_a_path_of_this_site_only(browser: Browser) -> None:
    followed = {"/\\evil.example": "/settings", "//evil.example": "/settings", "/\t/evil.example": "/settings",
                "/\n/evil.example": "/settings", "https://evil.example": "/settings", "/login": "/login"}
    for url, expected in followed.items():
        signed_in(browser)  # a session lasts an hour: one for each step-up
        browser.clock.advance(minutes=31)
        assert browser.get("/settings").location == "/step-up"
        plant_after_step_up(browser, url)
        back = browser.submit("/step-up", code=browser.sms.last_code())
        assert (url, back.status, back.location) == (url, 302, expected)


def test_the_password_field_is_a_password_and_the_code_field_a_one_time_code(browser: Browser) -> None:
    login = browser.get("/login").body
    assert '<input name="password" type="password" autocomplete="current-password">' in login
    assert '<input name="email" type="email" autocomplete="username">' in login
    assert "one-time-code" not in login
    assert '<input name="code" autocomplete="one-time-code">' in browser.get("/mfa").body


def test_the_session_cookie_is_expired_with_secure_httponly_and_samesite(browser: Browser) -> None:
    token = signed_in(browser)
    left = browser.submit("/logout", shown_on="/settings")
    assert attributes(left.cookies["mfa_session"]) == {"max-age=0", "path=/", "secure", "httponly", "samesite=lax"}
    browser.put_cookie("mfa_session", token)  # the revoked session: refused, and its cookie expired the same way
    replayed = browser.get("/settings")
    assert (replayed.status, replayed.location) == (302, "/login")
    assert attributes(replayed.cookies["mfa_session"]) == {"max-age=0", "path=/", "secure", "httponly",
                                                           "samesite=lax"}


def test_post_without_the_csrf_token_is_refused(browser: Browser) -> None:
    browser.get("/login")  # the token exists, the forged form lacks it
    forged = browser.post("/login", email=EMAIL, password=PASSWORD)
    assert forged.status == browser.csrf_refused
    assert browser.sms.sent == []


def test_wrong_password_sends_no_code(browser: Browser) -> None:
    refused = browser.submit("/login", email=EMAIL, password=PASSWORD + "!")
    assert refused.status == 401
    assert browser.sms.sent == []
    assert browser.cookie("mfa_session") is None


def test_protected_page_without_a_session_goes_to_login(browser: Browser) -> None:
    reply = browser.get("/settings")
    assert (reply.status, reply.location) == (302, "/login")


def test_the_tenth_wrong_code_locks_and_the_page_says_so(browser: Browser) -> None:
    browser.submit("/login", email=EMAIL, password=PASSWORD)
    statuses = [browser.submit("/mfa", code=wrong(browser.sms.last_code())).status for _ in range(5)]
    browser.submit("/login", email=EMAIL, password=PASSWORD)  # the first code died after 5 tries: a new login
    statuses += [browser.submit("/mfa", code=wrong(browser.sms.last_code())).status for _ in range(5)]
    assert statuses == [404] * 9 + [429]
    locked = browser.submit("/login", email=EMAIL, password=PASSWORD)
    assert (locked.status, "Refused: user_lock_limit_reached" in locked.body) == (429, True)


# -- the docs show the files ------------------------------------------------------------------------------


def regions(path: Path) -> dict[str, str]:
    """A file's ``# --8<-- [start:name]`` … ``[end:name]`` regions, dedented."""
    found = {m["name"]: textwrap.dedent(m["code"]) for m in REGION.finditer(path.read_text("utf-8"))}
    assert found, f"{path.name} marks no region"
    return found


def test_the_docs_show_every_marked_region_of_the_recipes_verbatim() -> None:
    text = DOC.read_text("utf-8")
    shown = [(m["file"], m["name"], m["code"]) for m in SHOWN.finditer(text)]
    assert text.count("<!-- recipe: ") == len(shown), "a recipe marker is not followed by a ```python block"
    expected = sorted((f"examples/recipes/{p.name}", name) for p in RECIPES.glob("*.py") for name in regions(p))
    assert sorted((file, name) for file, name, _ in shown) == expected
    for file, name, code in shown:
        assert code == regions(ROOT / file)[name], f"docs/recipes.md shows {file}#{name} as it no longer is"
