"""Next-item metrics: Recall@K and NDCG@K, counted by item, per slice.

Each example has one target item. A retriever returns a ranked list of catalogue rows (items, never
SIDs, so a collapsed tokenizer cannot score a hit for an item that merely shares a code), best
first. With the target at 0-based position p in the list:

- Recall@K = 1 if p < K else 0 (with one target this is HR@K);
- NDCG@K = 1 / log2(p + 2) if p < K else 0 (the ideal DCG of one relevant item is 1).

Both are averaged over the examples of a slice. Top-K from scores breaks ties by the lower
catalogue row, so a ranking is a fixed function of its scores.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from sidkit.errors import ConfigError
from sidkit.retrieval.data import SLICES, Examples

CUTOFFS: tuple[int, ...] = (5, 10, 20)
METRICS: tuple[str, ...] = ("recall", "ndcg")


@dataclass(frozen=True)
class MetricValue:
    """One metric at one cutoff on one slice: the mean over ``count`` examples (None when empty)."""

    metric: str
    k: int
    slice: str
    value: float | None
    count: int


@dataclass(frozen=True)
class RetrievalMetrics:
    """Every (metric, k, slice) of one evaluation."""

    rows: tuple[MetricValue, ...]

    def get(self, metric: str, k: int, slice: str = "all") -> float | None:
        for row in self.rows:
            if (row.metric, row.k, row.slice) == (metric, k, slice):
                return row.value
        raise ConfigError(f"no {metric}@{k} on slice {slice!r}", where="RetrievalMetrics.get",
                          fix=f"use one of {sorted({(r.metric, r.k, r.slice) for r in self.rows})}")

    def hits(self, k: int, slice: str = "all") -> tuple[int, int]:
        """(examples with the target in the top ``k``, examples) on ``slice``: Recall@k as a count."""
        for row in self.rows:
            if (row.metric, row.k, row.slice) == ("recall", k, slice):
                return (0 if row.value is None else round(row.value * row.count)), row.count
        self.get("recall", k, slice)  # raises the error that names what there is
        raise AssertionError("unreachable")

    def to_rows(self) -> list[dict[str, Any]]:
        return [asdict(row) for row in self.rows]

    @staticmethod
    def from_rows(rows: Sequence[dict[str, Any]]) -> RetrievalMetrics:
        return RetrievalMetrics(tuple(MetricValue(**row) for row in rows))


#: z of a two-sided 95% normal interval.
Z_95 = 1.959963984540054


def wilson_interval(hits: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval of a proportion ``hits / n`` (95% by default).

    Unlike the normal (Wald) interval it stays inside [0, 1] and does not collapse to a point at 0 or
    ``n`` hits, which matters for a slice like ``new`` where a model may hit a handful of targets in
    hundreds: centre (p + z^2 / 2n) / (1 + z^2 / n), half-width
    z sqrt(p (1 - p) / n + z^2 / 4n^2) / (1 + z^2 / n).
    """
    if n <= 0 or not 0 <= hits <= n:
        raise ConfigError(f"a proportion needs 0 <= hits <= n and n > 0, got {hits} of {n}", where="wilson_interval")
    p = hits / n
    scale = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / scale
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / scale
    return max(0.0, float(centre - half)), min(1.0, float(centre + half))


@dataclass(frozen=True)
class ClusteredHits:
    """Recall@k of a slice read by distinct target item, the unit that repeats.

    One held-out item can be the target of many examples (the last item of many users), so the
    examples of a slice are not independent: a model that learns one popular new item scores many
    hits at once. ``low``/``high`` is the cluster-robust 95% interval of ``hits / examples`` with one
    cluster per distinct target (see :func:`clustered_interval`).

    Attributes:
        k: the cutoff. examples, hits: the slice's examples and those with the target in the top k.
        targets: distinct target items. targets_hit: distinct targets hit at least once.
        rate, low, high: hits / examples and its interval.
        boot_low, boot_high: the 95% cluster-bootstrap percentile interval of the same ratio
            (:func:`cluster_bootstrap_interval`), a check on ``low``/``high`` when few clusters hold the hits.
    """

    k: int
    examples: int
    hits: int
    targets: int
    targets_hit: int
    rate: float
    low: float
    high: float
    boot_low: float
    boot_high: float


def clustered_interval(hits: np.ndarray, examples: np.ndarray, z: float = Z_95) -> tuple[float, float, float]:
    """(p, low, high): the ratio p = sum(hits) / sum(examples) over clusters and its cluster-robust
    (sandwich) interval, p -/+ z se with se^2 = C / (C - 1) * sum_c (hits_c - p examples_c)^2 / N^2,
    C clusters, N examples; clipped to [0, 1]. With one example per cluster it is the Wald interval
    widened by sqrt(C / (C - 1)); copying every example leaves it unchanged (a binomial interval on
    the copies would shrink by sqrt(2))."""
    hits = np.asarray(hits, dtype=np.float64)
    examples = np.asarray(examples, dtype=np.float64)
    if (hits < 0).any() or (hits > examples).any():
        raise ConfigError(f"a clustered interval needs 0 <= hits <= examples in every cluster, got hits from "
                          f"{hits.min(initial=0):g} to {hits.max(initial=0):g}", where="clustered_interval",
                          fix="pass per-cluster hit and example counts")
    p, se = _sandwich(hits, examples, "clustered_interval")
    return p, max(0.0, p - z * se), min(1.0, p + z * se)


def _sandwich(sums: np.ndarray, examples: np.ndarray, where: str) -> tuple[float, float]:
    """(mean, se): the per-example mean sum(sums) / sum(examples) of clustered data and its
    cluster-robust standard error (the formula of :func:`clustered_interval`; ``sums`` may be signed)."""
    clusters, total = len(examples), float(examples.sum())
    if clusters < 2 or total <= 0 or len(sums) != clusters:
        raise ConfigError(f"a clustered interval needs at least 2 clusters with examples and one sum per cluster, "
                          f"got {clusters} clusters, {len(sums)} sums and {total:g} examples", where=where,
                          fix="pass per-cluster sums and example counts")
    mean = float(sums.sum()) / total
    se = float(np.sqrt(clusters / (clusters - 1) * float(np.sum((sums - mean * examples) ** 2)))) / total
    return mean, se


def cluster_bootstrap_interval(hits: np.ndarray, examples: np.ndarray, *, draws: int = 10_000,
                               seed: int = 0) -> tuple[float, float]:
    """The 2.5% and 97.5% percentiles of sum(hits) / sum(examples) over ``draws`` resamples of the
    clusters with replacement (``hits`` may be signed: per-cluster sums of paired differences).
    Unlike the sandwich interval it is not symmetric about p, so it follows the skew of a ratio whose
    hits sit in a few clusters; seeded, hence reproducible."""
    hits = np.asarray(hits, dtype=np.float64)
    examples = np.asarray(examples, dtype=np.float64)
    if len(examples) < 2 or examples.sum() <= 0:
        raise ConfigError(f"a cluster bootstrap needs at least 2 clusters and some examples, got {len(examples)} "
                          f"clusters", where="cluster_bootstrap_interval", fix="pass per-cluster counts")
    rng = np.random.default_rng(seed)
    ratios = np.empty(draws)
    chunk = max(1, 2_000_000 // len(examples))  # draws x clusters indices at once would not fit for big slices
    for start in range(0, draws, chunk):
        pick = rng.integers(0, len(examples), size=(min(chunk, draws - start), len(examples)))
        ratios[start:start + len(pick)] = hits[pick].sum(axis=1) / np.maximum(examples[pick].sum(axis=1), 1.0)
    low, high = np.percentile(ratios, [2.5, 97.5])
    return float(low), float(high)


def clustered_hits(targets: np.ndarray, positions: np.ndarray, k: int) -> ClusteredHits:
    """Recall@k of examples with ``targets`` found at 0-based ``positions`` (E,; -1: not ranked),
    clustered by target. ``targets`` is (E,) item ids, or (E, 2) rows such as (seed, item) when runs of
    several seeds are pooled: each seed holds out its own items, so a target is a cluster per seed."""
    targets, positions = np.asarray(targets), np.asarray(positions)
    if targets.ndim == 2:
        items, cluster = np.unique(targets, axis=0, return_inverse=True)
        cluster = cluster.reshape(-1)
    else:
        items, cluster = np.unique(targets, return_inverse=True)
    hit = (positions >= 0) & (positions < k)
    examples = np.bincount(cluster, minlength=len(items))
    hits = np.bincount(cluster, weights=hit, minlength=len(items))
    rate, low, high = clustered_interval(hits, examples)
    boot_low, boot_high = cluster_bootstrap_interval(hits, examples)
    return ClusteredHits(int(k), int(examples.sum()), int(hits.sum()), len(items), int((hits > 0).sum()),
                         rate, low, high, boot_low, boot_high)


@dataclass(frozen=True)
class ClusteredDifference:
    """Recall@k of model a minus model b on the same examples, read by distinct target item.

    Per example the difference is hit_a - hit_b (1, 0 or -1); its mean over the slice is the paired
    Recall@k difference. Clusters are distinct targets, as in :class:`ClusteredHits`, so an item that
    one model learned and the other did not counts once, however many users it ends.

    Attributes:
        k: the cutoff. examples: the paired examples. clusters: distinct targets.
        hits_a, hits_b: examples with the target in each model's top k.
        clusters_a_ahead, clusters_b_ahead: targets where one model has more hits than the other.
        difference, low, high: (hits_a - hits_b) / examples and its cluster-robust 95% interval.
        boot_low, boot_high: its 95% cluster-bootstrap percentile interval.
    """

    k: int
    examples: int
    clusters: int
    hits_a: int
    hits_b: int
    clusters_a_ahead: int
    clusters_b_ahead: int
    difference: float
    low: float
    high: float
    boot_low: float
    boot_high: float


def clustered_difference(targets: np.ndarray, positions_a: np.ndarray, positions_b: np.ndarray, k: int,
                         z: float = Z_95) -> ClusteredDifference:
    """Recall@k of a minus b on examples with ``targets`` ((E,) items or (E, 2) rows such as (seed,
    item), as in :func:`clustered_hits`), found at 0-based ``positions_a`` and ``positions_b`` (-1: not
    ranked) by the two models, clustered by target."""
    targets = np.asarray(targets)
    positions_a, positions_b = np.asarray(positions_a), np.asarray(positions_b)
    if not (len(targets) == len(positions_a) == len(positions_b)):
        raise ConfigError(f"a paired difference needs one position per example from each model, got "
                          f"{len(targets)} targets, {len(positions_a)} and {len(positions_b)} positions",
                          where="clustered_difference", fix="pass both models' positions on the same examples")
    if targets.ndim == 2:
        items, cluster = np.unique(targets, axis=0, return_inverse=True)
        cluster = cluster.reshape(-1)
    else:
        items, cluster = np.unique(targets, return_inverse=True)
    hit_a = (positions_a >= 0) & (positions_a < k)
    hit_b = (positions_b >= 0) & (positions_b < k)
    examples = np.bincount(cluster, minlength=len(items)).astype(np.float64)
    per_a = np.bincount(cluster, weights=hit_a, minlength=len(items))
    per_b = np.bincount(cluster, weights=hit_b, minlength=len(items))
    sums = per_a - per_b
    difference, se = _sandwich(sums, examples, "clustered_difference")
    boot_low, boot_high = cluster_bootstrap_interval(sums, examples)
    return ClusteredDifference(int(k), int(examples.sum()), len(items), int(per_a.sum()), int(per_b.sum()),
                               int((sums > 0).sum()), int((sums < 0).sum()), difference,
                               max(-1.0, difference - z * se), min(1.0, difference + z * se), boot_low, boot_high)


def hit_positions(ranked: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """(E,) 0-based position of each target in its (E, K) ranked list, -1 when absent."""
    ranked = np.asarray(ranked)
    found = ranked == np.asarray(targets)[:, None]
    return np.where(found.any(axis=1), found.argmax(axis=1), -1)


def recall_at(ranked: np.ndarray, targets: np.ndarray, k: int) -> float:
    """Mean Recall@k of (E, >= k) ranked lists; 0.0 for no examples."""
    if len(targets) == 0:
        return 0.0
    position = hit_positions(ranked[:, :k], targets)
    return float(np.mean(position >= 0))


def retrieval_metrics(ranked: np.ndarray, examples: Examples, cutoffs: Sequence[int] = CUTOFFS,
                      slices: Sequence[str] = SLICES) -> RetrievalMetrics:
    """Recall@K and NDCG@K for each cutoff and slice of (E, >= max K) ``ranked`` lists."""
    top = max(cutoffs)
    if ranked.shape[1] < top:
        raise ConfigError(f"ranked lists hold {ranked.shape[1]} items, fewer than K = {top}", where="cutoffs")
    position = hit_positions(ranked[:, :top], examples.targets)
    gain = np.where(position >= 0, 1.0 / np.log2(np.maximum(position, 0) + 2.0), 0.0)
    rows = []
    for name in slices:
        mask = examples.slice_mask(name)
        count = int(mask.sum())
        for metric in METRICS:
            for k in cutoffs:
                hit = (position[mask] >= 0) & (position[mask] < k)
                values = hit.astype(np.float64) if metric == "recall" else np.where(hit, gain[mask], 0.0)
                rows.append(MetricValue(metric, int(k), name, float(values.mean()) if count else None, count))
    return RetrievalMetrics(tuple(rows))


def reserve_new_items(ranked: np.ndarray, ranked_new: np.ndarray, share: float) -> np.ndarray:
    """TIGER's cold-start lists: every ``round(1 / share)``-th position of ``ranked`` holds the best
    unseen item not yet placed.

    Args:
        ranked: (E, K) the model's lists over all candidates, best first (-1: no item).
        ranked_new: (E, >= K) its lists over the unseen items only, best first (-1: no item).
        share: the share of positions reserved, in (0, 1): 0.1 puts unseen items at positions 10 and 20
            (1-based), so a top-k holds ``floor(k * share)`` of them (none in a top-5).

    The other positions keep ``ranked``'s order with the reserved unseen items removed; a reserved
    position falls back to ``ranked``'s next item when no unseen item is left. Returns (E, K).
    """
    if not 0.0 < share < 1.0:
        raise ConfigError(f"the reserved share must be in (0, 1), got {share}", where="new_item_share",
                          fix="pass e.g. 0.1")
    rows, k = ranked.shape
    every = max(1, round(1.0 / share))
    out = np.full((rows, k), -1, dtype=np.int64)
    for row in range(rows):
        new = [int(i) for i in ranked_new[row] if i >= 0]
        placed: set[int] = set()
        regular = iter(int(i) for i in ranked[row])
        for position in range(k):
            if (position + 1) % every == 0 and new:
                item = new.pop(0)
            else:  # ranked's next item not shown yet (-1 once its list runs out)
                item = next((c for c in regular if c < 0 or c not in placed), -1)
            if item >= 0:
                placed.add(item)
                if item in new:
                    new.remove(item)
            out[row, position] = item
    return out


def top_k_items(scores: torch.Tensor, allowed: torch.Tensor, k: int) -> torch.Tensor:
    """(E, k) int64 rows of the k highest ``scores`` among ``allowed`` items, best first; ties go to the
    lower row; -1 where fewer than k items are allowed.

    Args:
        scores: (E, N) float scores.
        allowed: (E, N) or (N,) bool.
    """
    n = scores.shape[1]
    k_eff = min(k, n)
    # float64 keeps float32 scores exact; the tiny row term breaks ties by the lower row.
    rows = torch.arange(n, device=scores.device, dtype=torch.float64)
    keyed = scores.double() - rows * 1e-12 * (1.0 + scores.double().abs().amax(dim=1, keepdim=True))
    keyed = torch.where(allowed, keyed, torch.full_like(keyed, -torch.inf))
    values, index = keyed.topk(k_eff, dim=1)
    index = torch.where(torch.isfinite(values), index, torch.full_like(index, -1))
    if k_eff < k:
        index = torch.cat([index, index.new_full((index.shape[0], k - k_eff), -1)], dim=1)
    return index
