"""Ranking metrics against brute-force references: AUC with ties, log loss, t intervals across seeds."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sidkit.errors import DataError
from sidkit.ranking.metrics import aggregate, evaluate, log_loss, mean_ci, roc_auc
from sidkit.ranking.types import RankingSplit


def brute_force_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    pos = scores[labels == 1]
    neg = scores[labels == 0]
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


@pytest.mark.parametrize("seed", range(20))
def test_auc_matches_pairwise_reference_with_ties(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 60))
    labels = rng.integers(0, 2, n)
    labels[0], labels[1] = 0, 1
    scores = rng.integers(0, 5, n).astype(float) / 4  # few distinct values: many ties
    assert roc_auc(labels, scores) == pytest.approx(brute_force_auc(labels, scores), abs=1e-12)


def test_auc_edge_cases():
    assert roc_auc(np.array([0, 1]), np.array([0.1, 0.9])) == 1.0
    assert roc_auc(np.array([0, 1]), np.array([0.9, 0.1])) == 0.0
    assert roc_auc(np.array([0, 1, 0, 1]), np.full(4, 0.3)) == 0.5
    assert roc_auc(np.array([1, 1, 1]), np.array([0.1, 0.2, 0.3])) is None
    assert roc_auc(np.array([], dtype=int), np.array([])) is None
    with pytest.raises(DataError, match="NaN"):
        roc_auc(np.array([0, 1]), np.array([0.1, np.nan]))
    with pytest.raises(DataError, match="0 or 1"):
        roc_auc(np.array([0, 2]), np.array([0.1, 0.2]))


def test_log_loss_matches_the_formula_and_clips():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 200)
    p = rng.uniform(0.01, 0.99, 200)
    expected = -np.mean([math.log(q) if y else math.log(1 - q) for y, q in zip(labels, p, strict=True)])
    assert log_loss(labels, p) == pytest.approx(expected, rel=1e-12)
    clipped = log_loss(np.array([1, 0]), np.array([0.0, 1.0]))
    assert clipped == pytest.approx(-math.log(1e-7), rel=1e-6)  # finite, not inf
    assert log_loss(np.array([], dtype=int), np.array([])) is None
    with pytest.raises(DataError, match="outside"):
        log_loss(np.array([1]), np.array([1.5]))


def test_evaluate_per_task_per_slice_with_one_class_reason():
    labels = {"click": np.array([1, 0, 1, 0, 1], dtype=np.float32),
              "like": np.array([1, 0, 0, 0, 0], dtype=np.float32)}
    slices = {"all": np.ones(5, dtype=bool), "new": np.array([1, 0, 1, 0, 0], dtype=bool),
              "tail": np.zeros(5, dtype=bool)}
    split = RankingSplit(np.arange(5), np.ones((5, 1), dtype=np.int64), np.zeros((5, 2), dtype=np.int64), labels,
                         np.arange(5), np.zeros(5, dtype=np.int64), slices)
    scores = np.array([0.9, 0.2, 0.6, 0.4, 0.5])
    metrics = evaluate(split, {"click": scores, "like": scores})
    assert metrics.get("click", "all").auc == pytest.approx(1.0)
    new = metrics.get("click", "new")
    assert new.auc is None and "one class" in (new.reason or "") and new.log_loss is not None
    tail = metrics.get("like", "tail")
    assert tail.auc is None and tail.log_loss is None and tail.reason == "empty slice" and tail.count == 0
    assert all(not (isinstance(v, float) and math.isnan(v)) for row in metrics.to_rows() for v in row.values())
    with pytest.raises(DataError, match="shape"):
        evaluate(split, {"click": scores[:-1]})


@pytest.mark.parametrize("n", [2, 3, 5, 12])
def test_mean_ci_matches_scipy_t(n):
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(n)
    values = rng.normal(0.7, 0.01, n)
    ci = mean_ci(values.tolist())
    sem = values.std(ddof=1) / math.sqrt(n)
    low, high = stats.t.interval(0.95, n - 1, loc=values.mean(), scale=sem)
    assert ci.mean == pytest.approx(values.mean())
    assert ci.low == pytest.approx(low, rel=1e-9) and ci.high == pytest.approx(high, rel=1e-9)
    ci90 = mean_ci(values.tolist(), confidence=0.9)
    assert ci90.half_width == pytest.approx(stats.t.ppf(0.95, n - 1) * sem, rel=1e-9)


def test_mean_ci_small_samples_and_aggregate():
    assert mean_ci([]).mean is None
    one = mean_ci([0.7])
    assert one.mean == 0.7 and one.half_width is None and one.reason
    labels = {"click": np.array([1, 0, 1, 0], dtype=np.float32)}
    slices = {"all": np.ones(4, dtype=bool), "new": np.array([1, 0, 0, 0], dtype=bool)}
    split = RankingSplit(np.arange(4), np.ones((4, 1), dtype=np.int64), np.zeros((4, 1), dtype=np.int64), labels,
                         np.arange(4), np.zeros(4, dtype=np.int64), slices)
    runs = [evaluate(split, {"click": np.array(s)}) for s in ([0.9, 0.1, 0.8, 0.2], [0.9, 0.8, 0.7, 0.1],
                                                               [0.6, 0.5, 0.4, 0.3])]
    rows = {(r.task, r.slice): r for r in aggregate(runs)}
    all_auc = rows[("click", "all")].auc
    assert all_auc.n == 3 and all_auc.mean == pytest.approx(np.mean([1.0, 0.75, 0.75]))
    assert all_auc.low is not None and all_auc.low < all_auc.mean < all_auc.high
    new = rows[("click", "new")]
    assert new.auc.mean is None and "one class" in (new.auc.reason or "")
    assert new.log_loss.n == 3
