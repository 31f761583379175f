"""The prefix hierarchy table on a constructed trie, against a brute-force pairwise computation."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from sidkit.diagnostics import hierarchy
from sidkit.diagnostics.hierarchy import prefix_hierarchy
from sidkit.errors import DataError
from sidkit.ids import SemanticIds


def brute_force(codes: np.ndarray, x: np.ndarray, depth: int) -> tuple[float, int]:
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    values = [float(unit[i] @ unit[j]) for i, j in itertools.combinations(range(len(x)), 2)
              if np.array_equal(codes[i, :depth], codes[j, :depth])]
    return (float(np.mean(values)) if values else float("nan")), len(values)


def test_constructed_trie():
    # Two level-0 branches; under 0: prefixes (0,0) x3 and (0,1) x1; under 1: (1,0) x2.
    codes = np.array([[0, 0], [0, 0], [0, 0], [0, 1], [1, 0], [1, 0]])
    x = np.array([[1.0, 0.0, 0.0], [1.0, 0.1, 0.0], [2.0, 0.0, 0.1], [1.0, 1.0, 0.0],
                  [0.0, 0.0, 1.0], [0.0, 0.2, 1.0]])
    report = prefix_hierarchy(SemanticIds(codes, (2, 2)), x)
    first, second = report.depths
    assert (first.prefixes, second.prefixes) == (2, 3)
    assert (first.pairs, second.pairs) == (6 + 1, 3 + 1)
    assert first.mean_cosine == pytest.approx(brute_force(codes, x, 1)[0], abs=1e-12)
    assert second.mean_cosine == pytest.approx(brute_force(codes, x, 2)[0], abs=1e-12)
    assert second.mean_cosine > first.mean_cosine > report.random_cosine
    assert (first.size_q1, first.size_median, first.size_q3, first.size_max) == (2.5, 3.0, 3.5, 4)
    assert (second.size_median, second.size_mean, second.size_max) == (2.0, 2.0, 3)
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    every_pair = [unit[i] @ unit[j] for i, j in itertools.combinations(range(6), 2)]
    assert report.random_cosine == pytest.approx(np.mean(every_pair), abs=1e-12)


def test_random_codes_against_brute_force():
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 3, size=(60, 3))
    x = rng.normal(size=(60, 5))
    report = prefix_hierarchy(SemanticIds(codes, (3, 3, 3)), x)
    for row in report.depths:
        mean, pairs = brute_force(codes, x, row.depth)
        assert row.pairs == pairs
        assert row.mean_cosine == pytest.approx(mean, abs=1e-12)


def test_chunked_streaming_gives_the_same_table(monkeypatch):
    rng = np.random.default_rng(1)
    codes = rng.integers(0, 2, size=(50, 2))
    x = rng.normal(size=(50, 4))
    whole = prefix_hierarchy(SemanticIds(codes, (2, 2)), x)
    monkeypatch.setattr(hierarchy, "CHUNK_ROWS", 7)  # prefixes now run across chunk boundaries
    chunked = prefix_hierarchy(SemanticIds(codes, (2, 2)), x.tolist())
    for a, b in zip(whole.depths, chunked.depths, strict=True):
        assert a.mean_cosine == pytest.approx(b.mean_cosine, abs=1e-12)
        assert a.mean_cosine == pytest.approx(brute_force(codes, x, a.depth)[0], abs=1e-12)
    assert chunked.random_cosine == pytest.approx(whole.random_cosine, abs=1e-12)


def test_no_shared_prefix_gives_nan():
    report = prefix_hierarchy(SemanticIds(np.array([[0], [1], [2]]), (3,)), np.eye(3))
    assert report.depths[0].pairs == 0 and np.isnan(report.depths[0].mean_cosine)
    assert report.random_cosine == 0.0


def test_errors():
    ids = SemanticIds(np.zeros((3, 1), dtype=int), (2,))
    with pytest.raises(DataError, match="one embedding row per SID"):
        prefix_hierarchy(ids, np.ones((4, 2)))
    with pytest.raises(DataError, match="at least 2"):
        prefix_hierarchy(SemanticIds(np.zeros((1, 1), dtype=int), (2,)), np.ones((1, 2)))
