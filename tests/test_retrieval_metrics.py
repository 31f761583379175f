"""Recall@K and NDCG@K against a hand computation; top-K from scores."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sidkit.errors import ConfigError
from sidkit.retrieval.data import Examples
from sidkit.retrieval.metrics import (
    cluster_bootstrap_interval,
    clustered_difference,
    clustered_hits,
    clustered_interval,
    hit_positions,
    recall_at,
    retrieval_metrics,
    top_k_items,
    wilson_interval,
)


def _examples(targets, new):
    n = len(targets)
    return Examples(np.arange(n), np.zeros((n, 1), dtype=np.int64), np.array(targets), np.zeros(n + 1, dtype=np.int64),
                    np.zeros(0, dtype=np.int64), np.array(new))


def test_recall_and_ndcg_by_hand():
    ranked = np.array([[5, 3, 9, 1, 0, 2],   # target 3 at position 1
                       [7, 8, 6, 4, 2, 0],   # target 2 at position 4
                       [1, 2, 3, 4, 5, 6],   # target 9 absent
                       [9, 1, 2, 3, 4, 5]])  # target 9 at position 0
    examples = _examples([3, 2, 9, 9], [False, True, True, False])
    metrics = retrieval_metrics(ranked, examples, cutoffs=(1, 2, 5))
    assert hit_positions(ranked, examples.targets).tolist() == [1, 4, -1, 0]
    assert metrics.get("recall", 1) == pytest.approx(1 / 4)
    assert metrics.get("recall", 2) == pytest.approx(2 / 4)
    assert metrics.get("recall", 5) == pytest.approx(3 / 4)
    assert metrics.get("ndcg", 1) == pytest.approx(1 / 4)
    assert metrics.get("ndcg", 2) == pytest.approx((1 / math.log2(3) + 1) / 4)
    assert metrics.get("ndcg", 5) == pytest.approx((1 / math.log2(3) + 1 / math.log2(6) + 1) / 4)
    # slice new: examples 1 (hit at position 4) and 2 (miss)
    assert metrics.get("recall", 2, "new") == 0.0
    assert metrics.get("recall", 5, "new") == pytest.approx(1 / 2)
    assert metrics.get("ndcg", 5, "new") == pytest.approx(1 / math.log2(6) / 2)
    assert recall_at(ranked, examples.targets, 2) == pytest.approx(0.5)
    with pytest.raises(ConfigError, match="fewer than K"):
        retrieval_metrics(ranked, examples, cutoffs=(10,))


@pytest.mark.parametrize(("hits", "n"), [(9, 586), (0, 586), (586, 586), (1, 3), (50, 100)])
def test_wilson_interval_matches_scipy(hits, n):
    from scipy.stats import binomtest

    reference = binomtest(hits, n).proportion_ci(confidence_level=0.95, method="wilson")
    low, high = wilson_interval(hits, n)
    assert (low, high) == pytest.approx((reference.low, reference.high), abs=1e-12)
    assert 0.0 <= low <= hits / n <= high <= 1.0
    assert (low == 0.0) == (hits == 0) and (high == 1.0) == (hits == n)


@pytest.mark.parametrize(("hits", "n"), [(1, 0), (-1, 5), (6, 5)])
def test_wilson_interval_refuses_an_impossible_count(hits, n):
    with pytest.raises(ConfigError, match="0 <= hits <= n"):
        wilson_interval(hits, n)


def test_hits_count_the_recall_of_a_slice():
    ranked = np.array([[3, 1], [2, 0], [1, 2], [0, 1]])
    metrics = retrieval_metrics(ranked, _examples([3, 0, 9, 1], [True, True, True, False]), cutoffs=(1, 2))
    assert metrics.hits(1, "new") == (1, 3) and metrics.hits(2, "new") == (2, 3) and metrics.hits(2) == (3, 4)
    empty = retrieval_metrics(np.array([[1, 2]]), _examples([1], [False]), cutoffs=(2,))
    assert empty.hits(2, "new") == (0, 0)
    with pytest.raises(ConfigError, match="no recall@7"):
        metrics.hits(7)


def test_an_empty_slice_has_no_value():
    metrics = retrieval_metrics(np.array([[1, 2]]), _examples([1], [False]), cutoffs=(2,))
    assert metrics.get("recall", 2, "new") is None
    assert metrics.get("recall", 2, "all") == 1.0


def test_hits_are_items_so_a_shared_code_scores_nothing():
    # Two items with one SID would be one "hit" by SID; by item, only the target row counts.
    ranked = np.array([[4, 5]])
    assert retrieval_metrics(ranked, _examples([6], [False]), cutoffs=(2,)).get("recall", 2) == 0.0


def test_top_k_skips_disallowed_items_and_breaks_ties_by_row():
    scores = torch.tensor([[1.0, 3.0, 3.0, 2.0, 5.0], [0.0, 0.0, 0.0, 0.0, 0.0]])
    allowed = torch.tensor([[True, True, True, True, False], [True, False, True, False, False]])
    top = top_k_items(scores, allowed, 4)
    assert top[0].tolist() == [1, 2, 3, 0]
    assert top[1].tolist() == [0, 2, -1, -1]


def test_clustered_interval_with_one_example_per_cluster_is_the_widened_wald_interval():
    hits = np.array([1, 0, 0, 1, 0, 0, 0, 1, 0, 0])
    p, low, high = clustered_interval(hits, np.ones(10))
    wald = 1.959963984540054 * math.sqrt(0.3 * 0.7 / 10) * math.sqrt(10 / 9)
    assert p == pytest.approx(0.3) and low == pytest.approx(0.3 - wald) and high == pytest.approx(0.3 + wald)


def test_clustered_interval_does_not_shrink_when_every_example_is_repeated():
    hits, examples = np.array([3, 0, 1, 0, 0, 2]), np.array([5, 4, 2, 6, 1, 3])
    once = clustered_interval(hits, examples)
    twice = clustered_interval(2 * hits, 2 * examples)
    np.testing.assert_allclose(once, twice)
    # the binomial interval of the repeated counts does shrink: it takes repeats for new evidence
    wilson_once, wilson_twice = wilson_interval(6, 21), wilson_interval(12, 42)
    assert wilson_twice[1] - wilson_twice[0] < wilson_once[1] - wilson_once[0]


def test_clustered_hits_count_examples_and_distinct_targets():
    targets = np.array([7, 7, 7, 3, 3, 9, 5])
    positions = np.array([0, 4, -1, 12, -1, -1, 2])
    at5 = clustered_hits(targets, positions, 5)
    assert (at5.examples, at5.hits, at5.targets, at5.targets_hit) == (7, 3, 4, 2)
    # by hand: clusters 3, 5, 7, 9 have (hits, examples) (0, 2), (1, 1), (2, 3), (0, 1)
    p = 3 / 7
    se = math.sqrt(4 / 3 * ((0 - 2 * p) ** 2 + (1 - p) ** 2 + (2 - 3 * p) ** 2 + (0 - p) ** 2)) / 7
    assert at5.rate == pytest.approx(p) and at5.high == pytest.approx(min(1.0, p + 1.959963984540054 * se))
    assert at5.low == pytest.approx(max(0.0, p - 1.959963984540054 * se))
    assert clustered_hits(targets, positions, 20).hits == 4


def test_clustered_hits_over_seed_target_rows_keep_one_item_of_two_seeds_apart():
    # item 7 is a target on seeds 0 and 1: two clusters, as if the second were another item
    rows = np.array([[0, 7], [0, 7], [1, 7], [1, 3], [1, 3]])
    positions = np.array([0, -1, 1, -1, 4])
    pooled = clustered_hits(rows, positions, 5)
    relabelled = clustered_hits(np.array([70, 70, 71, 3, 3]), positions, 5)
    assert (pooled.examples, pooled.hits, pooled.targets, pooled.targets_hit) == (5, 3, 3, 3)
    assert (pooled.rate, pooled.low, pooled.high) == pytest.approx((relabelled.rate, relabelled.low, relabelled.high))
    # pooled by item id alone, item 7's four examples would be one cluster and the interval would differ
    merged = clustered_hits(rows[:, 1], positions, 5)
    assert merged.targets == 2 and merged.low != pytest.approx(pooled.low)


def test_cluster_bootstrap_is_seeded_and_near_the_sandwich_for_many_even_clusters():
    rng = np.random.default_rng(3)
    examples = rng.integers(1, 4, size=400)
    hits = rng.binomial(examples, 0.3)
    first = cluster_bootstrap_interval(hits, examples, draws=4_000, seed=1)
    assert first == cluster_bootstrap_interval(hits, examples, draws=4_000, seed=1)
    _, low, high = clustered_interval(hits, examples)
    assert first[0] == pytest.approx(low, abs=0.01) and first[1] == pytest.approx(high, abs=0.01)


def test_cluster_bootstrap_follows_the_skew_of_hits_in_few_clusters():
    # 6 of 300 clusters hold every hit: resampled ratios never go below 0 and skew right, so the
    # bootstrap's 2.5% point sits above the symmetric sandwich's lower bound
    examples = np.ones(300)
    examples[:6] = 20
    hits = np.zeros(300)
    hits[:6] = [12, 8, 5, 3, 2, 1]
    low, high = cluster_bootstrap_interval(hits, examples)
    p, sandwich_low, _ = clustered_interval(hits, examples)
    assert 0.0 < sandwich_low < low < p < high
    # with no hits at all every resample is 0
    assert cluster_bootstrap_interval(np.zeros(300), examples) == (0.0, 0.0)


def test_clustered_interval_refuses_impossible_counts():
    with pytest.raises(ConfigError, match="at least 2 clusters"):
        clustered_interval(np.array([1]), np.array([3]))
    with pytest.raises(ConfigError, match="hits <= examples"):
        clustered_interval(np.array([4, 0]), np.array([3, 2]))


def _loop_sandwich(clusters, values):
    """The cluster-robust mean and se written out per cluster, as a reference."""
    labels = sorted(set(clusters))
    sums = [sum(v for c, v in zip(clusters, values, strict=True) if c == label) for label in labels]
    counts = [sum(1 for c in clusters if c == label) for label in labels]
    total = sum(counts)
    mean = sum(sums) / total
    big_c = len(labels)
    se = math.sqrt(big_c / (big_c - 1) * sum((s - mean * n) ** 2 for s, n in zip(sums, counts, strict=True))) / total
    return mean, se


def test_clustered_difference_matches_a_per_cluster_loop():
    rng = np.random.default_rng(3)
    targets = rng.integers(0, 40, size=400)
    positions_a = np.where(rng.random(400) < 0.3, rng.integers(0, 20, size=400), -1)
    positions_b = np.where(rng.random(400) < 0.2, rng.integers(0, 20, size=400), -1)
    d = clustered_difference(targets, positions_a, positions_b, 10)
    values = [int(0 <= a < 10) - int(0 <= b < 10) for a, b in zip(positions_a, positions_b, strict=True)]
    mean, se = _loop_sandwich(targets.tolist(), values)
    assert d.difference == pytest.approx(mean) and d.low == pytest.approx(mean - 1.959963984540054 * se)
    assert d.high == pytest.approx(mean + 1.959963984540054 * se)
    assert (d.examples, d.clusters) == (400, len(set(targets.tolist())))
    assert d.hits_a == int(((positions_a >= 0) & (positions_a < 10)).sum())
    assert d.difference == pytest.approx((d.hits_a - d.hits_b) / 400)
    assert d.boot_low < d.difference < d.boot_high


def test_clustered_difference_is_antisymmetric_and_reduces_to_the_one_arm_reading():
    targets = np.repeat(np.arange(30), 4)
    positions = np.where(np.arange(120) % 7 == 0, 3, -1)
    never = np.full(120, -1)
    ab = clustered_difference(targets, positions, never, 10)
    ba = clustered_difference(targets, never, positions, 10)
    assert ba.difference == pytest.approx(-ab.difference)
    assert (ba.low, ba.high) == pytest.approx((-ab.high, -ab.low))
    assert (ab.clusters_a_ahead, ab.clusters_b_ahead) == (ba.clusters_b_ahead, ba.clusters_a_ahead)
    # against a model that never hits, the difference is the clustered Recall@k itself
    alone = clustered_hits(targets, positions, 10)
    assert alone.low > 0 and (ab.difference, ab.low, ab.high) == pytest.approx((alone.rate, alone.low, alone.high))
    same = clustered_difference(targets, positions, positions, 10)
    assert (same.difference, same.low, same.high, same.boot_low, same.boot_high) == (0.0, 0.0, 0.0, 0.0, 0.0)
    # (seed, item) rows keep one item of two seeds apart
    rows = np.column_stack([np.arange(120) % 2, np.zeros(120, dtype=np.int64)])
    assert clustered_difference(rows, positions, never, 10).clusters == 2


def test_clustered_difference_refuses_unpaired_positions():
    with pytest.raises(ConfigError, match="one position per example from each model"):
        clustered_difference(np.arange(4), np.zeros(4), np.zeros(3), 10)
    with pytest.raises(ConfigError, match="at least 2 clusters"):
        clustered_difference(np.zeros(4), np.zeros(4), np.zeros(4), 10)
