"""MkDocs hooks: the site's home page is the README, and links that leave docs/ still work.

The Markdown pages link to the repository as GitHub shows it (``../examples/stytch_mode.py`` from docs/,
``docs/rules.md`` from the README). Here every such link is pointed at a page of the site: a link into docs/
at that page, a link to another file or folder of the repository at a generated page showing its source. A
link to something the repository does not have is a warning, which fails ``mkdocs build --strict``.
"""

from __future__ import annotations

import logging
import posixpath
import re
from pathlib import Path, PurePosixPath

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files, InclusionLevel
from mkdocs.structure.pages import Page

log = logging.getLogger("mkdocs.hooks.repository_links")

#: An inline link or image: ``[text](target)`` / ``![alt](target "title")``; reference definitions are not used.
LINK = re.compile(r"(?P<bang>!?)\[(?P<text>[^\]]*)\]\((?P<target>[^)\s]+)(?P<title>\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^\s*(`{3,}|~{3,})")
LANGUAGES = {".py": "python", ".toml": "toml", ".json": "json", ".html": "jinja", ".md": "markdown",
             ".yml": "yaml", ".yaml": "yaml", ".sh": "bash", ".css": "css", ".js": "js", ".cfg": "ini"}
HOME = "index.md"
SOURCE = "source"

#: src_uri of a page made here → the repository file it stands for (a folder for a folder's listing).
_mirrored: dict[str, PurePosixPath] = {}


def _root(config: MkDocsConfig) -> Path:
    return Path(config.config_file_path).resolve().parent


def _docs(config: MkDocsConfig) -> PurePosixPath:
    return PurePosixPath(Path(config.docs_dir).resolve().relative_to(_root(config)).as_posix())


def _repository_path(page_path: PurePosixPath, target: str) -> PurePosixPath | None:
    """The repository path a relative link points at, or None for a URL, an anchor or a link out of the tree."""
    if re.match(r"^[a-z][a-z0-9+.-]*:|^/|^#", target, re.I):
        return None
    joined = posixpath.normpath(posixpath.join(str(page_path.parent), target.split("#", 1)[0]))
    return None if joined.startswith("..") else PurePosixPath(joined)


def _site_uri(path: PurePosixPath, config: MkDocsConfig) -> str:
    """The src_uri of the page that shows repository ``path``: a docs page, the home page or a source page."""
    docs = _docs(config)
    if path.is_relative_to(docs):
        return str(path.relative_to(docs))
    if path == PurePosixPath("README.md"):
        return HOME
    if (_root(config) / path).is_dir():
        return f"{SOURCE}/{path}/index.md"
    return f"{SOURCE}/{path}" if path.suffix == ".md" else f"{SOURCE}/{path}.md"


def _outside_fences(markdown: str) -> list[tuple[bool, str]]:
    """The text in runs of whole lines, each True when outside fenced code (whose links are code, not links)."""
    runs: list[tuple[bool, str]] = []
    fence = ""
    for line in markdown.splitlines(keepends=True):
        opening = FENCE.match(line)
        if not fence and opening:
            fence = opening.group(1)
            outside = False
        elif fence:
            outside = False
            if line.strip() and set(line.strip()) == {fence[0]} and len(line.strip()) >= len(fence):
                fence = ""
        else:
            outside = True
        if runs and runs[-1][0] == outside:
            runs[-1] = (outside, runs[-1][1] + line)
        else:
            runs.append((outside, line))
    return runs


def _links(markdown: str) -> list[re.Match[str]]:
    return [match for outside, text in _outside_fences(markdown) if outside for match in LINK.finditer(text)]


def _page_path(src_uri: str, config: MkDocsConfig) -> PurePosixPath:
    """The repository path of a page's Markdown: its file under docs/, or what a generated page mirrors."""
    return _mirrored.get(src_uri, _docs(config) / src_uri)


def _leaves_docs(path: PurePosixPath, config: MkDocsConfig) -> bool:
    return not path.is_relative_to(_docs(config))


def _fence(text: str) -> str:
    longest = max((len(run) for run in re.findall(r"`{3,}", text)), default=2)
    return "`" * (longest + 1)


def _source_page(path: PurePosixPath, root: Path) -> str:
    """A repository file as a page: Markdown as itself, anything else in a code block; a folder file by file."""
    location = root / path
    if location.is_dir():
        parts = [f"# {path}/\n"]
        for item in sorted(location.rglob("*")):
            if item.is_dir() or any(part.startswith((".", "__pycache__")) for part in item.relative_to(root).parts):
                continue
            parts.append(f"## {item.relative_to(location).as_posix()}\n\n{_code(item)}")
        return "\n".join(parts)
    if path.suffix == ".md":
        return location.read_text("utf-8")
    return f"# {path}\n\n{_code(location)}"


def _code(location: Path) -> str:
    try:
        text = location.read_text("utf-8")
    except UnicodeDecodeError:
        return "A binary file, not shown here.\n"
    fence = _fence(text)
    return f"{fence}{LANGUAGES.get(location.suffix, 'text')}\n{text.rstrip()}\n{fence}\n"


def on_files(files: Files, *, config: MkDocsConfig) -> Files:
    """Add the home page (the README) and a source page for every repository file a page links to."""
    root = _root(config)
    _mirrored.clear()
    if files.get_file_from_path(HOME) is None:
        _mirrored[HOME] = PurePosixPath("README.md")
        files.append(File.generated(config, HOME, content=(root / "README.md").read_text("utf-8")))
    pending = [(file.src_uri, file.content_string) for file in files.documentation_pages()]
    while pending:
        src_uri, markdown = pending.pop()
        page_path = _page_path(src_uri, config)
        for match in _links(markdown):
            target = _repository_path(page_path, match.group("target"))
            if target is None or not _leaves_docs(target, config) or not (root / target).exists():
                continue
            uri = _site_uri(target, config)
            if uri in _mirrored or files.get_file_from_path(uri) is not None:
                continue
            _mirrored[uri] = target
            content = _source_page(target, root)
            files.append(File.generated(config, uri, content=content, inclusion=InclusionLevel.NOT_IN_NAV))
            if target.suffix == ".md":
                pending.append((uri, content))
    return files


def on_page_markdown(markdown: str, *, page: Page, config: MkDocsConfig, **_: object) -> str:
    """Point the page's links that leave docs/ at the site's page for their target."""
    page_path = _page_path(page.file.src_uri, config)
    if not _leaves_docs(page_path, config) and not any(
            (target := _repository_path(page_path, match.group("target"))) is not None
            and _leaves_docs(target, config) for match in _links(markdown)):
        return markdown
    here = posixpath.dirname(page.file.src_uri)

    def rewrite(match: re.Match[str]) -> str:
        link = match.group("target")
        target = _repository_path(page_path, link)
        if target is None or (not _leaves_docs(target, config) and not _leaves_docs(page_path, config)):
            return match.group(0)
        if not (_root(config) / target).exists():
            log.warning("%s links to '%s', which is not in the repository", page_path, link)
            return match.group(0)
        if match.group("bang") and _leaves_docs(target, config):
            log.warning("%s shows the image '%s', which is outside docs/ and so not in the site", page_path, link)
            return match.group(0)
        anchor = f"#{link.split('#', 1)[1]}" if "#" in link else ""
        relative = posixpath.relpath(_site_uri(target, config), here or ".")
        return f"{match.group('bang')}[{match.group('text')}]({relative}{anchor}{match.group('title') or ''})"

    return "".join(LINK.sub(rewrite, text) if outside else text for outside, text in _outside_fences(markdown))
