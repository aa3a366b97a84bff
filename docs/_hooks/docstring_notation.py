"""A griffe extension: the docstrings' reStructuredText notation, as the site's Markdown reads it.

The docstrings are read in editors and ``help()`` too, where Sphinx's notation is the usual one. In the site a
role (``:class:`~mfa_flow.MfaFlow```) becomes a cross-reference resolved in the docstring's scope
(``scoped_crossrefs``), so a role naming something the API reference does not show is a warning and
``mkdocs build --strict`` fails on it; and a paragraph ending in ``::`` ends in ``:``, the indented block after
it being a code block in Markdown already.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

LITERAL_BLOCK_AFTER_TEXT = re.compile(r"(?<=\S)::$", re.M)
LITERAL_BLOCK_ALONE = re.compile(r"^[ \t]*::\n", re.M)
ROLE = re.compile(r":(?:py:)?(?:class|func|meth|attr|exc|mod|data|obj):`(?P<short>~?)(?P<target>[\w.]+)`")


def _scope_class(obj: griffe.Object) -> griffe.Object | None:
    """The class whose members a bare name in ``obj``'s docstring may be: ``obj`` itself or its parent."""
    for candidate in (obj, obj.parent):
        if isinstance(candidate, griffe.Object) and candidate.is_class:
            return candidate
    return None


def _convert(obj: griffe.Object) -> None:
    scope = _scope_class(obj)

    def link(match: re.Match[str]) -> str:
        target = match.group("target")
        title = target.rsplit(".", 1)[-1] if match.group("short") else target
        # scoped_crossrefs resolves a name among a class's own members only: inherited ones are made absolute.
        if scope is not None and target.split(".", 1)[0] in scope.all_members:
            target = f"{scope.path}.{target}"
        return f"[`{title}`][{target}]"

    if obj.docstring is not None:
        text = ROLE.sub(link, obj.docstring.value)
        obj.docstring.value = LITERAL_BLOCK_ALONE.sub("", LITERAL_BLOCK_AFTER_TEXT.sub(":", text))
    for member in obj.members.values():
        if not member.is_alias:
            _convert(member)


class SphinxNotation(griffe.Extension):
    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:  # noqa: ARG002 - griffe passes more
        _convert(pkg)
