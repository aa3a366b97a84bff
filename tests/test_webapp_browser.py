"""The example web application in a real browser: Debian's headless Chromium driven by Selenium.

The app runs on uvicorn in a thread on 127.0.0.1 (a FakeClock the tests move, a FakeTransport whose codes the
"member" reads); in Stytch mode the codes come from ``mfa-flow serve``'s ``/_emulator/messages``. Selenium uses
Debian's ``chromedriver`` and ``chromium`` by path, and its Selenium Manager (which downloads browsers and
drivers) is replaced by a function that fails the test. Without them the tests skip, except under CI
(``CI=true``), where they fail. Each page visited is saved to docs/screenshots/ for docs/webapp.md.

Chromium treats http://127.0.0.1 as a secure context: it stores and sends the app's Secure, ``__Host-`` cookies
there (the sign-in would fail otherwise), which ``test_the_browser_keeps_the_cookies_as_set`` checks.
"""

from __future__ import annotations

import base64
import json
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from mfa_flow.testing import FakeClock, FakeTransport
from tests.emulator_server import PROJECT_ID, SECRET, EmulatorProcess, require
from tests.helpers_process import unavailable
from tests.test_webapp import ADA, ALAN, BARBARA, FIXTURES, GRACE, ORG, make_app, password, settings_for

ROOT = Path(__file__).resolve().parent.parent
SCREENSHOTS = ROOT / "docs" / "screenshots"
WAIT = 10.0  # seconds, for every page load and element


def need(program: str, package: str) -> str:
    path = shutil.which(program)
    if path is None:
        unavailable(f"{program} is not installed: apt-get install {package}", "the browser tests")
    return path


@pytest.fixture(scope="module")
def driver() -> Iterator[Any]:
    """One headless Chromium for the module; nothing may download a browser or a driver."""
    webdriver = require("selenium.webdriver")
    service_module = require("selenium.webdriver.chrome.service")
    manager = require("selenium.webdriver.common.selenium_manager")
    chromium, chromedriver = need("chromium", "chromium"), need("chromedriver", "chromium-driver")

    def no_downloads(*_: object) -> dict[str, str]:
        raise AssertionError("Selenium Manager was asked for a browser or driver; pass the paths instead")

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1000,720", "--lang=en-US", "--hide-scrollbars"):
        options.add_argument(argument)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SE_OFFLINE", "true")
        patch.setattr(manager.SeleniumManager, "binary_paths", no_downloads)
        browser = webdriver.Chrome(options=options, service=service_module.Service(executable_path=chromedriver))
        browser.set_page_load_timeout(WAIT)
        try:
            yield browser
        finally:
            browser.quit()


@contextmanager
def serve(app: Any) -> Iterator[str]:
    """The app on uvicorn in a thread, on a free loopback port, with its lifespan; yields its URL."""
    uvicorn = require("uvicorn")
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + WAIT
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(WAIT)


class Tab:
    """The browser on one running app: open pages, fill forms, click, read, save screenshots."""

    def __init__(self, driver: Any, url: str) -> None:
        self.driver, self.url = driver, url
        self.by = require("selenium.webdriver.common.by").By
        # A page being replaced may answer any WebDriver error for a moment (Chromium: "Node with given id does
        # not belong to the document"): a wait tries again until WAIT has passed.
        self.wait = require("selenium.webdriver.support.ui").WebDriverWait(
            driver, WAIT, ignored_exceptions=[require("selenium.common.exceptions").WebDriverException])
        self.ec = require("selenium.webdriver.support.expected_conditions")

    @property
    def path(self) -> str:
        return urlsplit(self.driver.current_url).path

    def open(self, path: str) -> str:
        self.driver.get(self.url + path)
        return self.heading()

    def heading(self) -> str:
        return str(self.wait.until(self.ec.presence_of_element_located((self.by.TAG_NAME, "h1"))).text)

    def text(self, element_id: str) -> str:
        return str(self.driver.find_element(self.by.ID, element_id).text)

    def present(self, element_id: str) -> bool:
        return bool(self.driver.find_elements(self.by.ID, element_id))

    def fill(self, **fields: str) -> None:
        for element_id, value in fields.items():
            field = self.driver.find_element(self.by.ID, element_id)
            field.clear()
            field.send_keys(value)

    def click(self, element_id: str) -> str:
        """Click and wait for the next page (the old one gone, the new heading there); its heading. The old page
        is marked on its window, which a new document does not share."""
        self.driver.execute_script("window.mfaFlowOldPage = true")
        self.driver.find_element(self.by.ID, element_id).click()
        self.wait.until(lambda driver: driver.execute_script("return window.mfaFlowOldPage !== true"))
        return self.heading()

    def sign_in(self, email: str) -> str:
        self.open("/login")
        self.fill(email=email, password=password(email))
        return self.click("sign-in")

    def enter_code(self, code: str) -> str:
        self.fill(code=code)
        return self.click("verify")

    def shot(self, name: str) -> None:
        """The whole page, as PNG, to docs/screenshots/NAME.png; no focus, so no blinking caret in the picture."""
        self.driver.execute_script("document.activeElement && document.activeElement.blur()")
        size = self.driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
        picture = self.driver.execute_cdp_cmd("Page.captureScreenshot", {
            "format": "png", "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}})
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        (SCREENSHOTS / f"{name}.png").write_bytes(base64.b64decode(picture["data"]))


@pytest.fixture
def local(driver: Any, tmp_path: Path) -> Iterator[tuple[Tab, FakeClock, FakeTransport]]:
    """The app in local mode, served; the browser starts without cookies."""
    clock, sms = FakeClock(), FakeTransport()
    with serve(make_app(settings_for(tmp_path), clock, sms)) as url:
        try:
            yield Tab(driver, url), clock, sms
        finally:
            driver.delete_all_cookies()


def test_sign_in_with_a_wrong_then_the_right_code_step_up_and_log_out(local: tuple[Tab, FakeClock,
                                                                                   FakeTransport]) -> None:
    tab, clock, sms = local
    assert tab.open("/") == "Sign in"  # / → /home → no session → /login
    tab.shot("01-login")
    assert tab.sign_in("ada@example.com") == "Enter the code we texted you"
    assert tab.text("phone") == "XXXXXXX0101"
    assert tab.text("send-status") == "You can ask for a new code in 30 s. 4 of 5 codes left in 10 minutes."
    assert not tab.driver.find_element(tab.by.ID, "resend").is_enabled()
    tab.shot("02-code")
    wrong = "000000" if sms.last_code(ADA) != "000000" else "111111"
    assert tab.enter_code(wrong) == "Enter the code we texted you"
    assert tab.text("error") == "That code is not right. Check the SMS and try again. otp_code_not_found"
    tab.shot("03-wrong-code")
    assert tab.enter_code(sms.last_code(ADA)) == "Welcome, Ada"
    assert tab.path == "/home"
    tab.shot("04-home")

    clock.advance(minutes=31)  # the member goes idle
    assert tab.open("/settings") == "Enter the code we texted you"
    assert tab.path == "/session/code"
    assert tab.text("notice") == "You were away for a while: enter the code we just texted you to go on."
    tab.shot("05-step-up")
    assert tab.enter_code(sms.last_code(ADA)) == "Settings"
    assert tab.path == "/settings"
    assert tab.text("settings-phone") == "XXXXXXX0101 (verified)"
    tab.shot("06-settings")

    old = tab.driver.get_cookie("__Host-session")
    assert tab.click("logout") == "Sign in"
    assert tab.text("notice") == "You are signed out."
    assert tab.driver.get_cookie("__Host-session") is None
    tab.shot("07-signed-out")
    tab.driver.add_cookie({k: old[k] for k in ("name", "value", "path", "secure", "httpOnly", "sameSite")})
    assert tab.open("/settings") == "Sign in"  # the revoked session, replayed, is refused
    assert tab.path == "/login"
    assert tab.driver.get_cookie("__Host-session") is None  # and forgotten


def test_the_browser_keeps_the_cookies_as_set(local: tuple[Tab, FakeClock, FakeTransport]) -> None:
    tab, _, sms = local
    tab.sign_in("ada@example.com")
    login = tab.driver.get_cookie("__Host-login")
    assert (login["secure"], login["httpOnly"], login["sameSite"], login["path"]) == (True, True, "Lax", "/")
    assert tab.enter_code(sms.last_code(ADA)) == "Welcome, Ada"
    assert tab.driver.get_cookie("__Host-login") is None  # cleared with the code
    cookies = {c["name"]: c for c in tab.driver.get_cookies()}
    assert set(cookies) == {"__Host-csrf", "__Host-session"}
    assert all((c["secure"], c["httpOnly"], c["sameSite"]) == (True, True, "Lax") for c in cookies.values())
    assert "__Host-session" not in tab.driver.execute_script("return document.cookie")  # HttpOnly


def test_five_wrong_codes_lock_and_the_admin_unlocks(local: tuple[Tab, FakeClock, FakeTransport]) -> None:
    tab, clock, sms = local
    tab.sign_in("barbara@example.com")
    wrong = "000000" if sms.last_code(BARBARA) != "000000" else "111111"
    for _ in range(4):
        assert tab.enter_code(wrong) == "Enter the code we texted you"
    assert tab.enter_code(wrong) == "Account locked"
    assert tab.text("error").endswith("user_lock_limit_reached")
    tab.shot("08-locked")

    assert tab.sign_in("margaret@example.com") == "Enter the code we texted you"
    assert tab.enter_code(sms.last_code("member-demo-margaret")) == "Welcome, Margaret (admin)"
    assert tab.open("/admin") == "Administration"
    row = tab.driver.find_element(tab.by.ID, f"member-{BARBARA}")
    assert "locked until 01:00 UTC" in row.text
    events = tab.text("events")
    assert f"member.locked {BARBARA} XXXXXXX0102" in events
    tab.shot("09-admin")
    assert tab.click(f"unlock-{BARBARA}") == "Administration"
    assert tab.text("notice") == "The member is unlocked."
    assert tab.driver.find_element(tab.by.ID, f"member-{BARBARA}").text.endswith("active")
    assert not tab.present(f"unlock-{BARBARA}")
    tab.shot("10-admin-unlocked")
    tab.click("logout")

    clock.advance(30)  # past the resend cooldown of her last code
    assert tab.sign_in("barbara@example.com") == "Enter the code we texted you"
    assert tab.enter_code(sms.last_code(BARBARA)) == "Welcome, Barbara"


def test_first_use_enrolment_with_and_without_an_authenticator(local: tuple[Tab, FakeClock,
                                                                           FakeTransport]) -> None:
    tab, clock, sms = local
    totp = require("examples.webapp.accounts").totp
    assert tab.sign_in("grace@example.com") == "Add your mobile phone"
    tab.fill(phone="+1 415 555 0150")
    tab.shot("11-enrol")
    assert tab.click("enrol") == "Enter the code we texted you"
    assert tab.text("phone") == "XXXXXXX0150"
    assert tab.enter_code(sms.last_code(GRACE)) == "Welcome, Grace"
    tab.click("logout")

    assert tab.sign_in("alan@example.com") == "Enter your authenticator code"
    tab.shot("12-totp")
    tab.fill(code=totp("JBSWY3DPEHPK3PXP", clock.now()))
    assert tab.click("verify") == "Add your mobile phone"
    tab.fill(phone="+14155550160")
    assert tab.click("enrol") == "Enter the code we texted you"
    assert tab.enter_code(sms.last_code(ALAN)) == "Welcome, Alan"
    factors = [e.text for e in tab.driver.find_elements(tab.by.CLASS_NAME, "factor")]
    assert factors == ["password", "totp", "otp"]


def test_stytch_mode_sign_in_against_mfa_flow_serve(driver: Any, start_emulator: Any, tmp_path: Path) -> None:
    emulator: EmulatorProcess = start_emulator(json.loads(FIXTURES.read_text("utf-8")))
    settings = settings_for(tmp_path, mode="stytch", stytch_url=emulator.url, stytch_project_id=PROJECT_ID,
                            stytch_secret=SECRET)
    with serve(make_app(settings, FakeClock(emulator.advance(0)), FakeTransport())) as url:
        tab = Tab(driver, url)
        try:
            assert tab.sign_in("ada@example.com") == "Enter the code we texted you"
            assert tab.text("phone") == "XXXXXXX0101"
            tab.shot("13-stytch-code")
            assert tab.enter_code("12345x") == "Enter the code we texted you"
            assert tab.text("error").endswith("otp_code_not_found")
            assert tab.enter_code(emulator.code(ADA)) == "Welcome, Ada"
            assert tab.click("logout") == "Sign in"
            assert [(m["member_id"], m["organization_id"]) for m in emulator.messages()] == [(ADA, ORG)]
        finally:
            driver.delete_all_cookies()
