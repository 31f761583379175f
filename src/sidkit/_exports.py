"""Lazy package faces: ``from sidkit import RQKMeans`` without importing torch until a name is used.

A package lists its public names by the module that defines them; :func:`lazy_exports` returns the
module-level ``__getattr__`` and ``__dir__`` (PEP 562) that import the module on first access and
cache the name in the package. Type checkers see the same names through ``if TYPE_CHECKING:``
imports in the package itself.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Collection, Mapping
from typing import Any


def lazy_exports(package: str, exports: Mapping[str, Collection[str]], submodules: Collection[str] = ()
                 ) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package``, whose public names ``exports[module]`` live in ``module``.

    ``submodules`` are subpackages reachable as attributes without an import of their own
    (``import sidkit; sidkit.tokenizers.RQKMeans``), as torch allows.
    """

    names = {name: module for module, module_names in exports.items() for name in module_names}

    def __getattr__(name: str) -> Any:
        module_name = names.get(name)
        if module_name is not None:
            value = getattr(importlib.import_module(module_name), name)
        elif name in submodules:
            value = importlib.import_module(f"{package}.{name}")
        else:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        setattr(sys.modules[package], name, value)  # later lookups skip __getattr__
        return value

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[package]), *names, *submodules})

    return __getattr__, __dir__
