"""Every ```python block in README.md and docs/*.md runs on its own, so the documentation cannot rot.

Each block runs alone: in a fresh namespace, inside an empty temporary working directory, so a
reader can copy any one block and run it.
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


BLOCKS = [(path, number, code) for path in DOCS for number, code in enumerate(python_blocks(path), start=1)]


@pytest.mark.parametrize(("path", "number", "code"), BLOCKS, ids=[f"{p.name}[{n}]" for p, n, _ in BLOCKS])
def test_doc_block_runs_on_its_own(path, number, code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": f"doc_{path.stem}_{number}"}
    try:
        exec(compile(code, f"{path.name}[block {number}]", "exec"), namespace)
    except Exception as exc:  # name the block so a failure points at the doc
        raise AssertionError(f"{path.name} block {number} failed on its own: {exc!r}\n{code}") from exc
