"""Package exports that load on first use (PEP 562), so importing a stage's config stays light.

A stage package re-exports its classes for convenience, but those modules pull in torch (and
more); the CLI only needs the config to parse and check options. With ``lazy_exports`` the
package imports its config eagerly and the rest when a name is first asked for.
"""
from __future__ import annotations

from importlib import import_module
from typing import Any, Callable


def lazy_exports(package: str, exports: dict[str, list[str]]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package``: name -> loaded from its submodule ('.run', ...)."""
    where = {name: module for module, names in exports.items() for name in names}

    def __getattr__(name: str) -> Any:
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(import_module(where[name], package), name)
        setattr(import_module(package), name, value)  # found once, then an ordinary attribute
        return value

    return __getattr__
