"""Build the API reference (HTML, from the docstrings) with pdoc: ``make apidocs`` -> build/apidocs/index.html.

Every public module of sidkit gets a page (private ``_name`` modules are left out); the package
faces (``sidkit``, ``sidkit.tokenizers``, ...) list the names they export.

    .venv/bin/python scripts/build_apidocs.py [OUT_DIR]
"""

from __future__ import annotations

import os
import pkgutil
import sys
import warnings
from pathlib import Path

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "build" / "apidocs"


def public_modules() -> list[str]:
    """``sidkit`` and every public submodule, by name."""
    import sidkit

    names = ["sidkit"]
    for info in pkgutil.walk_packages(sidkit.__path__, prefix="sidkit."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            names.append(info.name)
    return names


def build(out: str | os.PathLike[str] = DEFAULT_OUT) -> Path:
    """Write the reference into ``out``; returns it."""
    import pdoc

    target = Path(out)
    pdoc.render.configure(docformat="google", show_source=False, search=True)
    with warnings.catch_warnings():  # a package's page already adds the submodules pdoc can see
        warnings.filterwarnings("ignore", message="The module specification", category=UserWarning)
        pdoc.pdoc(*public_modules(), output_directory=target)
    return target


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    print(build(sys.argv[1] if len(sys.argv) > 1 else DEFAULT_OUT) / "index.html")
