"""The package faces: flat imports resolve to the right objects, lazily, and the docs' imports work."""

from __future__ import annotations

import ast
import importlib
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ["sidkit", "sidkit.tokenizers", "sidkit.diagnostics", "sidkit.data", "sidkit.features",
            "sidkit.ranking", "sidkit.retrieval", "sidkit.stream"]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def exports(package: str) -> dict[str, tuple[str, ...]]:
    return importlib.import_module(package)._EXPORTS


@pytest.mark.parametrize("package", PACKAGES)
def test_every_export_is_the_object_its_module_defines(package):
    module = importlib.import_module(package)
    for source, names in exports(package).items():
        defining = importlib.import_module(source)
        for name in names:
            assert getattr(module, name) is getattr(defining, name), f"{package}.{name}"
            assert name in module.__all__ and name in dir(module)
    with pytest.raises(AttributeError, match="no attribute 'nonexistent'"):
        module.nonexistent  # noqa: B018


@pytest.mark.parametrize("package", PACKAGES)
def test_no_export_is_shadowed_by_a_submodule_of_the_same_name(package):
    path = importlib.import_module(package).__path__
    submodules = {info.name for info in pkgutil.iter_modules(path)}
    names = {name for group in exports(package).values() for name in group}
    assert not names & submodules, "importing that submodule would replace the exported name"


@pytest.mark.parametrize("package", PACKAGES)
def test_type_checkers_see_the_same_names(package):
    """The ``if TYPE_CHECKING:`` imports of the package list exactly the lazy exports."""
    source = Path(importlib.import_module(package).__file__).read_text(encoding="utf-8")
    block = next(node for node in ast.parse(source).body
                 if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING")
    seen: dict[str, set[str]] = {}
    for node in block.body:
        assert isinstance(node, ast.ImportFrom) and node.module
        for alias in node.names:
            assert alias.asname == alias.name, "re-export as `X as X`"
            seen.setdefault(node.module, set()).add(alias.name)
    assert seen == {module: set(names) for module, names in exports(package).items()}


def _fresh(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          cwd=ROOT).stdout.strip()


def test_importing_the_packages_and_the_cli_leaves_torch_unloaded():
    code = ("import sys\n"
            "import sidkit, sidkit.tokenizers, sidkit.diagnostics, sidkit.data, sidkit.ranking, sidkit.stream\n"
            "from sidkit import SemanticIds, load_dataset, usage_report, DataError\n"
            "import sidkit.cli\n"
            "print('torch' in sys.modules, sidkit.tokenizers.__name__)")
    assert _fresh(code) == "False sidkit.tokenizers"


def test_sidkit_help_does_not_import_torch():
    code = ("import contextlib, io, sys\n"
            "from sidkit.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()) as out:\n"
            "    status = main(['--help'])\n"
            "print(status, 'torch' in sys.modules, 'fit' in out.getvalue())")
    assert _fresh(code) == "0 False True"


def test_a_flat_import_loads_torch_only_when_used():
    code = ("import sys\nimport sidkit\nbefore = 'torch' in sys.modules\n"
            "tokenizer = sidkit.RQKMeans(levels=2, codebook_size=4)\n"
            "print(before, 'torch' in sys.modules, type(tokenizer).__module__)")
    assert _fresh(code) == "False True sidkit.tokenizers.rq_kmeans"


def _doc_imports() -> list[tuple[str, str]]:
    """Every sidkit import statement in the python blocks of README.md and docs/*.md."""
    found = []
    for path in DOCS:
        for block in re.findall(r"^```python\n(.*?)^```", path.read_text(encoding="utf-8"), re.S | re.M):
            for node in ast.walk(ast.parse(block)):
                if isinstance(node, ast.ImportFrom):
                    modules = [node.module or ""]
                elif isinstance(node, ast.Import):
                    modules = [alias.name for alias in node.names]
                else:
                    continue
                if any(module.split(".")[0] == "sidkit" for module in modules):
                    found.append((path.name, ast.unparse(node)))
    return found


def test_the_readme_uses_flat_imports():
    readme = [statement for name, statement in _doc_imports() if name == "README.md"]
    assert "from sidkit import RQKMeans, expected_overlap, usage_report" in readme


@pytest.mark.parametrize("doc, statement", _doc_imports())
def test_every_import_in_the_docs_works(doc, statement):
    exec(statement, {})
