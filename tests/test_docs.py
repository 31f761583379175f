"""Every ```python block in README.md and docs/*.md runs, so the documentation cannot rot.

Blocks of one file run in order in one namespace, inside a temporary working directory.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def python_blocks(path: Path) -> list[str]:
    return BLOCK.findall(path.read_text(encoding="utf-8"))


@pytest.mark.parametrize("path", [p for p in DOCS if python_blocks(p)], ids=lambda p: p.name)
def test_doc_examples_run(path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": f"doc_{path.stem}"}
    for number, code in enumerate(python_blocks(path), start=1):
        try:
            exec(compile(code, f"{path.name}[block {number}]", "exec"), namespace)
        except Exception as exc:  # name the block so a failure points at the doc
            raise AssertionError(f"{path.name} block {number} failed: {exc!r}\n{code}") from exc
