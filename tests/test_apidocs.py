"""The API reference builds from the docstrings (``make apidocs``) and covers every public module."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_api_reference_builds(tmp_path):
    pytest.importorskip("pdoc")
    spec = importlib.util.spec_from_file_location("build_apidocs", ROOT / "scripts" / "build_apidocs.py")
    assert spec is not None and spec.loader is not None
    builder = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(builder)
    out = builder.build(tmp_path / "api")
    modules = builder.public_modules()
    assert "sidkit.tokenizers.rq_kmeans" in modules and not any("._" in name for name in modules)
    for name in modules:
        page = out / (name.replace(".", "/") + ".html")
        assert page.is_file(), name
    rq_kmeans = (out / "sidkit/tokenizers/rq_kmeans.html").read_text(encoding="utf-8")
    assert "Residual k-means tokenizer" in rq_kmeans and "get_params" in rq_kmeans
    face = (out / "sidkit.html").read_text(encoding="utf-8")
    assert "RQKMeans" in face and "SemanticIds" in face
