"""Hit-rate retention (exact search, ties shared fairly) and SID-embedding AUC."""

from __future__ import annotations

import numpy as np
import pytest

from sidkit.diagnostics.retrieval import (
    auc_score,
    hit_rates,
    random_pairs,
    retention,
    sid_embedding_auc,
)
from sidkit.errors import ConfigError, DataError


def brute_force_hit_rates(x: np.ndarray, pairs: np.ndarray, cutoffs) -> list[float]:
    """Rank of p among all items but q, by cosine, with numpy (no ties in random data)."""
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    hits = np.zeros(len(cutoffs))
    for q, p in pairs:
        scores = unit @ unit[q]
        scores[q] = -np.inf
        rank = int((scores > scores[p]).sum())
        hits += [rank < k for k in cutoffs]
    return list(hits / len(pairs))


def test_retention_is_exactly_one_when_reconstruction_is_exact():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 16)).astype(np.float32)
    pairs = random_pairs(500, 300, seed=1)
    report = retention(x, x.copy(), pairs, (10, 20, 50, 100))
    assert report.retention == (1.0, 1.0, 1.0, 1.0)
    assert report.at(20) == 1.0


def test_hit_rates_match_brute_force_search():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 8))
    pairs = random_pairs(300, 200, seed=2)
    pairs[:50, 1] = np.argsort(-(x / np.linalg.norm(x, axis=1, keepdims=True)) @ (x[pairs[:50, 0]] /
                                np.linalg.norm(x[pairs[:50, 0]], axis=1, keepdims=True)).T, axis=0)[1]
    cutoffs = (1, 3, 10, 50)
    got = hit_rates(x, pairs, cutoffs)
    assert got.hit_rates == pytest.approx(brute_force_hit_rates(x, pairs, cutoffs), abs=1e-12)
    assert got.num_pairs == 200


def test_ties_are_shared_as_a_random_order_would():
    # q = item 0; items 1, 2, 3 are identical (one collided SID), item 4 is farther away.
    x = np.array([[1.0, 0.0], [1.0, 0.2], [1.0, 0.2], [1.0, 0.2], [0.0, 1.0]])
    report = hit_rates(x, np.array([[0, 1]]), (1, 2, 3, 4))
    assert report.hit_rates == pytest.approx((1 / 3, 2 / 3, 1.0, 1.0))


def test_query_itself_is_never_an_answer():
    x = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.01]])
    # Without excluding q, q would take rank 0 and item 2 would need K = 2.
    assert hit_rates(x, np.array([[0, 2]]), (1,)).hit_rates == (1.0,)


def test_retention_above_one_is_possible():
    x = np.array([[1.0, 0.0], [0.6, 0.8], [0.8, 0.6]])
    x_hat = np.array([[1.0, 0.0], [0.9, 0.1], [0.8, 0.6]])  # the reconstruction pulls the target closer
    report = retention(x, x_hat, np.array([[0, 1]]), (1,))
    assert report.original.hit_rates == (0.0,)
    assert np.isnan(report.retention[0])
    report = retention(x_hat, x, np.array([[0, 1]]), (1,))  # and the other way round
    assert report.retention == (0.0,)


def test_auc_is_one_half_for_random_pairs_and_one_when_separable():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 32))
    report = sid_embedding_auc(x, random_pairs(2000, 5000, seed=5), seed=6)
    assert report.auc == pytest.approx(0.5, abs=0.03)
    # Items of a group share one direction; pairs within groups (cos 1) against pairs across (cos 0).
    groups = np.repeat(np.arange(10), 20)
    vectors = np.eye(10)[groups]
    within = np.array([[i, i + 1] for i in range(0, 200, 2)])
    across = np.array([[i, (i + 20) % 200] for i in range(100)])
    separable = sid_embedding_auc(vectors, within, negatives=across)
    assert separable.auc == 1.0
    assert (separable.mean_positive, separable.mean_negative) == (pytest.approx(1.0), pytest.approx(0.0))


def test_auc_matches_a_reference_with_ties():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    pos = rng.integers(0, 5, 300).astype(float)
    neg = rng.integers(0, 4, 400).astype(float)
    labels = np.r_[np.ones(300), np.zeros(400)]
    assert auc_score(pos, neg) == pytest.approx(metrics.roc_auc_score(labels, np.r_[pos, neg]), abs=1e-12)


def test_random_pairs_never_pair_an_item_with_itself():
    pairs = random_pairs(3, 1000, seed=0)
    assert np.all(pairs[:, 0] != pairs[:, 1])
    assert pairs.min() >= 0 and pairs.max() <= 2


def test_input_errors():
    x = np.ones((4, 2))
    with pytest.raises(DataError, match="shape"):
        hit_rates(x, np.array([0, 1]))
    with pytest.raises(DataError, match="outside"):
        hit_rates(x, np.array([[0, 4]]))
    with pytest.raises(DataError, match="no pairs"):
        hit_rates(x, np.zeros((0, 2), dtype=int))
    with pytest.raises(ConfigError, match="cutoffs"):
        hit_rates(x, np.array([[0, 1]]), (0,))
    with pytest.raises(DataError, match="NaN"):
        hit_rates(np.full((3, 2), np.nan), np.array([[0, 1]]))
    with pytest.raises(DataError, match="reconstructed"):
        retention(x, np.ones((4, 3)), np.array([[0, 1]]))


def exact_hit_rates_with_ties(x: np.ndarray, pairs: np.ndarray, cutoffs, tolerance: float) -> list[float]:
    """float64 reference: p sits uniformly among the items tied with it (q excluded)."""
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    hits = np.zeros(len(cutoffs))
    for q, p in pairs:
        scores = np.delete(unit @ unit[q], q)
        own = float(unit[p] @ unit[q])
        above = int((scores > own + tolerance).sum())
        tied = int((np.abs(scores - own) <= tolerance).sum())
        hits += [min(max(k - above, 0), tied) / tied for k in cutoffs]
    return list(hits / len(pairs))


def test_collided_sids_get_no_phantom_ties_from_the_next_query():
    """Reconstructions of collided SIDs are identical (cosine 1 between q and p): the count must
    match an exact float64 reference, with no tie borrowed from the next query's row."""
    from sidkit.diagnostics.retrieval import TIE_TOLERANCE

    rng = np.random.default_rng(0)
    centers = rng.normal(size=(40, 16))
    sid = rng.integers(0, 40, 600)
    reconstructed = centers[sid]                       # 600 items on 40 SIDs: many collide
    same = np.flatnonzero(sid == sid[0])
    pairs = random_pairs(600, 400, seed=3)
    partners = [rng.choice(np.flatnonzero((sid == sid[q]) & (np.arange(600) != q))) for q in pairs[:200, 0]]
    pairs[:200, 1] = partners                          # half the targets share the query's SID
    assert len(same) > 1
    cutoffs = (1, 5, 20, 50)
    got = hit_rates(reconstructed, pairs, cutoffs)
    expected = exact_hit_rates_with_ties(reconstructed, pairs, cutoffs, TIE_TOLERANCE)
    assert got.hit_rates == pytest.approx(expected, abs=1e-9)


def test_novel_pairs_drop_every_pair_seen_in_training_in_either_order():
    from sidkit.diagnostics.retrieval import novel_pairs

    train = np.array([[0, 1], [2, 3], [5, 4]])
    heldout = np.array([[1, 0], [0, 1], [2, 4], [4, 5], [3, 6]])
    assert novel_pairs(heldout, train).tolist() == [[2, 4], [3, 6]]
    assert novel_pairs(heldout, np.zeros((0, 2), dtype=np.int64)).tolist() == heldout.tolist()
