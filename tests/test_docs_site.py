"""The documentation site (mkdocs.yml) builds with ``mkdocs build --strict``: a broken link, anchor or
cross-reference, a docstring mkdocstrings cannot read, or a page left out of the navigation fails the suite.

The site is built once per run, offline: the build runs with every socket connection and name lookup refused,
so a theme or plugin that fetches fonts, images or inventories fails here instead of on a reader's machine.
"""

from __future__ import annotations

import html
import html.parser
import importlib
import posixpath
import re
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest

from tests.emulator_server import require
from tests.helpers_process import ROOT, python_env, run_python

DOCS = ROOT / "docs"
BUILD_SECONDS = 60  # the build runs in every test run: past this it is too slow for one
MISSING = object()
IMAGES = {".svg", ".png", ".jpg", ".jpeg", ".gif", ".webp"}
#: The public modules whose ``__all__`` the API reference must document, name by name.
PUBLIC_MODULES = [
    "mfa_flow",
    "mfa_flow.errors",
    "mfa_flow.stores",
    "mfa_flow.transports",
    "mfa_flow.transports.twilio",
    "mfa_flow.transports.webhook",
    "mfa_flow.transports.stytch",
    "mfa_flow.testing",
    "mfa_flow.testing.pytest_plugin",
    "mfa_flow.emulator",
    "mfa_flow.contrib.opentelemetry",
    "mfa_flow.contrib.logs",
]

# `python -m mkdocs ...` with the network refused: each attempt is reported on stderr, then fails.
OFFLINE_MKDOCS = """
import runpy, socket, sys

def refuse(*args, **kwargs):
    sys.stderr.write(f"NETWORK ATTEMPT {args!r}\\n")
    raise OSError("the documentation build must not reach the network")

socket.socket.connect = socket.socket.connect_ex = refuse
socket.getaddrinfo = socket.create_connection = refuse
runpy.run_module("mkdocs", run_name="__main__", alter_sys=True)
"""


@dataclass(frozen=True)
class Build:
    site: Path
    returncode: int
    output: str
    seconds: float


def page_paths() -> list[str]:
    """Every Markdown page under docs/, as mkdocs names it (``reference/flow.md``)."""
    return sorted(path.relative_to(DOCS).as_posix() for path in DOCS.rglob("*.md")
                  if not path.relative_to(DOCS).parts[0].startswith("_"))


def nav_paths(nav: object) -> list[str]:
    """The page paths of a navigation tree as mkdocs.yml writes it (lists, ``{title: page}`` mappings)."""
    if isinstance(nav, str):
        return [] if "://" in nav else [nav]
    if isinstance(nav, list):
        return [path for item in nav for path in nav_paths(item)]
    if isinstance(nav, dict):
        return [path for value in nav.values() for path in nav_paths(value)]
    raise AssertionError(f"unexpected navigation entry {nav!r}")


def inventory(site: Path) -> dict[str, str]:
    """The objects.inv mkdocstrings writes: each documented Python object's path and role (``py:class``)."""
    header, _, body = site.joinpath("objects.inv").read_bytes().partition(b"zlib.\n")
    assert header.startswith(b"# Sphinx inventory version 2"), header
    entries = {}
    for line in zlib.decompress(body).decode("utf-8").splitlines():
        name, domain_role, *_ = line.split(" ")
        entries[name] = domain_role
    return entries


def resolve(path: str) -> object:
    """The object a dotted path names: a module where the prefix is one, else an attribute of the previous.

    A package may rebind a submodule's name to a function of it (``mfa_flow.testing.explore``): the path
    ``mfa_flow.testing.explore.explore`` still names that function.
    """
    parts = path.split(".")
    found: object = importlib.import_module(parts[0])
    for depth, part in enumerate(parts[1:], start=2):
        try:
            found = importlib.import_module(".".join(parts[:depth]))
        except ModuleNotFoundError:
            found = getattr(found, part, MISSING)
    return found


class Sources(html.parser.HTMLParser):
    """The ``src`` of every image and the ``data`` of every object element of one HTML page."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        wanted = {"img": "src", "object": "data", "embed": "src"}.get(tag)
        self.found.extend(value for name, value in attrs if name == wanted and value)


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> Build:
    for module in ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python"):
        require(module)
    site = tmp_path_factory.mktemp("site")
    env = python_env(NO_MKDOCS_2_WARNING="1")  # material's notice about a future MkDocs, on every build
    started = time.monotonic()
    done = run_python("-c", OFFLINE_MKDOCS, "build", "--strict", "--site-dir", str(site), env=env,
                      timeout=BUILD_SECONDS * 3)
    return Build(site, done.returncode, done.stdout + done.stderr, time.monotonic() - started)


def test_site_builds_strict_without_a_warning(build: Build) -> None:
    problems = [line for line in build.output.splitlines() if re.match(r"(WARNING|ERROR)\b|Traceback", line)]
    assert build.returncode == 0, build.output
    assert problems == [], "\n".join(problems)
    assert (build.site / "index.html").is_file()


def test_site_builds_offline(build: Build) -> None:
    attempts = [line for line in build.output.splitlines() if line.startswith("NETWORK ATTEMPT")]
    assert attempts == []
    assert build.returncode == 0, build.output


def test_site_builds_within_the_time_budget(build: Build) -> None:
    assert build.returncode == 0, build.output
    assert build.seconds < BUILD_SECONDS, f"the site took {build.seconds:.1f} s to build"


def test_every_docs_page_is_in_the_navigation() -> None:
    config = require("mkdocs.config").load_config(str(ROOT / "mkdocs.yml"))
    listed = nav_paths(config.nav)
    assert len(listed) == len(set(listed)), "a page is listed twice"
    # index.md is the README, made at build time (docs/_hooks/repository_links.py).
    assert sorted(set(listed) - {"index.md"}) == page_paths()
    assert "index.md" in listed


def page_text(page: Path) -> str:
    """A built page's text as a reader sees it: tags dropped, entities decoded."""
    return html.unescape(re.sub(r"<[^>]+>", "", page.read_text("utf-8")))


def test_home_page_is_the_readme_with_its_links_into_the_site(build: Build) -> None:
    home = (build.site / "index.html").read_text("utf-8")
    assert "SMS one-time-passcode MFA for B2B login flows" in home
    links = set(re.findall(r'href="([^"#]+)', home))
    assert "concepts/" in links, "the README's docs/concepts.md is the site's Concepts page"
    assert "source/examples/step_up.py/" in links, "a README link to an example opens the example's source"
    assert not any(link.startswith(("docs/", "examples/")) for link in links)
    shown = page_text(build.site / "source/examples/step_up.py/index.html")
    source = (ROOT / "examples/step_up.py").read_text("utf-8")
    assert [line for line in source.splitlines() if line.strip() and line not in shown] == []


def built_page(site: Path, page: str) -> Path:
    """Where mkdocs writes a page (directory URLs: ``concepts.md`` is ``concepts/index.html``)."""
    stem = page.removesuffix(".md")
    return site / (f"{stem}.html" if posixpath.basename(stem) == "index" else f"{stem}/index.html")


def test_every_link_inside_the_site_reaches_a_page(build: Build) -> None:
    assert build.returncode == 0, build.output
    pages = set(build.site.rglob("*.html"))
    assert sorted(p for p in ["index.md", *page_paths()] if built_page(build.site, p) not in pages) == []
    dead = []
    for page in pages:
        base = posixpath.dirname(page.relative_to(build.site).as_posix())
        for link in re.findall(r'href="([^"#?]+)', page.read_text("utf-8")):
            if re.match(r"^[a-z][a-z0-9+.-]*:", link):
                continue
            # 404.html links from the site's root, since it answers for any path.
            target = build.site / posixpath.normpath(posixpath.join(base, link) if link[0] != "/" else link[1:] or ".")
            if not (target.is_file() or (target / "index.html").is_file()):
                dead.append(f"{page.relative_to(build.site)}: {link}")
    assert dead == []


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_api_reference_documents_every_public_name(build: Build, module_name: str) -> None:
    assert build.returncode == 0, build.output
    module = importlib.import_module(module_name)
    documented = inventory(build.site)
    missing = []
    for name in module.__all__:
        wanted = getattr(module, name)
        if not any(
            path.rsplit(".", 1)[-1] == name and path.startswith("mfa_flow.")
            and resolve(path) is wanted and (role == "py:module") == isinstance(wanted, ModuleType)
            for path, role in documented.items()
        ):
            missing.append(name)
    assert missing == [], f"{module_name}: not in the API reference (docs/reference/*.md)"


def test_every_image_in_docs_is_shown_on_a_page(build: Build) -> None:
    shown = set()
    for page in build.site.rglob("*.html"):
        parser = Sources()
        parser.feed(page.read_text("utf-8"))
        base = posixpath.dirname(page.relative_to(build.site).as_posix())
        shown.update(posixpath.normpath(posixpath.join(base, src)) for src in parser.found if "://" not in src)
    images = sorted(path.relative_to(DOCS).as_posix() for path in DOCS.rglob("*") if path.suffix in IMAGES)
    assert [image for image in images if image not in shown] == []
