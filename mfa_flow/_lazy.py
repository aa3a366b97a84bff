"""Names a package exports but loads on first use, so that importing the package does not pay for them."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping


def lazy_exports(package: str, where: Mapping[str, str]) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of ``package`` for the names of ``where`` (name -> the module that
    defines it): each is imported on its first lookup and then kept as a plain global of the package."""

    def __getattr__(name: str) -> object:  # noqa: N807 - a module's __getattr__
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)  # once: later lookups never reach __getattr__
        return value

    def __dir__() -> list[str]:  # noqa: N807 - a module's __dir__
        return sorted({*vars(sys.modules[package]), *where})

    return __getattr__, __dir__
