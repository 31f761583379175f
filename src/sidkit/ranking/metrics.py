"""Ranking metrics: AUC, GAUC and log loss per task and slice, and their mean with a t interval across seeds.

AUC (:func:`sidkit.stats.roc_auc`, the one the diagnostics use too) is the Mann-Whitney statistic:
the probability that a random positive scores above a random negative, ties counting one half. GAUC
is the per-user AUC, averaged with each user's impressions as weights, over users whose impressions
hold both classes. On the ``new-matched`` slice the AUC compares each positive only with the
negatives drawn for it (same user, time and history): the pair-weighted AUC within groups. A
conditional task ``a|b`` (e.g. ``like|click``) scores task a's head on the impressions where b is 1.
A slice whose labels hold one class only has no AUC: it gets None and a reason, never NaN, so a table
cannot average NaN silently. The interval's t quantile is scipy's (:func:`sidkit.stats.t_quantile`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from sidkit.errors import ConfigError, DataError
from sidkit.ranking.types import MATCHED_SLICE, RankingSplit
from sidkit.stats import checked_labels, roc_auc, t_quantile

LOG_LOSS_EPS = 1e-7


@dataclass(frozen=True)
class SliceMetrics:
    """Metrics of one task on one slice of one split.

    Attributes:
        task, slice: e.g. ``"click"``, ``"new"``.
        count: impressions in the slice; positives: those with label 1.
        auc: ROC AUC, or None (see ``reason``) when the slice is empty or holds one class; on
            ``new-matched``, the AUC within groups (each positive against its own negatives).
        log_loss: mean binary cross-entropy of the clipped probabilities, or None when empty.
        reason: why a metric is None, else None.
        gauc: per-user AUC weighted by the users' impressions, or None when no user has both classes.
        gauc_users: users that count in ``gauc``.
    """

    task: str
    slice: str
    count: int
    positives: int
    auc: float | None
    log_loss: float | None
    reason: str | None = None
    gauc: float | None = None
    gauc_users: int = 0


@dataclass(frozen=True)
class RankingMetrics:
    """Every (task, slice) of one evaluation, in task order then slice order."""

    rows: tuple[SliceMetrics, ...]

    def get(self, task: str, slice: str) -> SliceMetrics:
        for row in self.rows:
            if row.task == task and row.slice == slice:
                return row
        raise ConfigError(f"no metrics for task {task!r} on slice {slice!r}", where="RankingMetrics.get",
                          fix=f"use one of {sorted({(r.task, r.slice) for r in self.rows})}")

    def to_rows(self) -> list[dict[str, Any]]:
        """Plain dicts, one per (task, slice), for JSON and tables."""
        return [asdict(row) for row in self.rows]


@dataclass(frozen=True)
class MeanCI:
    """The mean of n values with a two-sided t confidence interval.

    Attributes:
        mean: the mean, or None when there are no values.
        low, high, half_width: the interval ``mean -/+ half_width``, or None for fewer than 2 values.
        std: the sample standard deviation (ddof 1), or None for fewer than 2 values.
        n: the number of values; confidence: e.g. 0.95.
        reason: why something is None, else None.
    """

    mean: float | None
    low: float | None
    high: float | None
    half_width: float | None
    std: float | None
    n: int
    confidence: float
    reason: str | None = None


@dataclass(frozen=True)
class AggregateMetrics:
    """One (task, slice) across runs (seeds): AUC and log loss as mean and interval.

    ``auc.n`` can be below ``runs`` when some runs had no AUC on this slice (one class).
    """

    task: str
    slice: str
    runs: int
    auc: MeanCI
    log_loss: MeanCI
    gauc: MeanCI | None = None


def grouped_auc(labels: np.ndarray, scores: np.ndarray, groups: np.ndarray, *,
                weight: str = "impressions") -> tuple[float | None, int]:
    """AUC within each group, averaged over the groups that hold both classes; and their number.

    Args:
        labels: (n,) 0/1; scores: (n,) floats; groups: (n,) integer group ids (e.g. users).
        weight: ``"impressions"`` weighs a group by its rows (GAUC); ``"pairs"`` by its
            positive x negative pairs, which makes the result the share of within-group pairs ranked
            right (ties one half).

    Returns:
        (the weighted mean AUC or None when no group has both classes, the groups counted).
    """
    y, s = checked_labels(labels, scores, "scores")
    g = np.asarray(groups)
    if g.shape != y.shape:
        raise DataError(f"groups {g.shape} and labels {y.shape} must have the same length", where="groups")
    if weight not in ("impressions", "pairs"):
        raise ConfigError(f"unknown weight {weight!r}", where="grouped_auc", fix="use 'impressions' or 'pairs'")
    if len(y) == 0:
        return None, 0
    _, code = np.unique(g, return_inverse=True)
    code = code.reshape(-1)
    order = np.lexsort((s, code))
    c, v, t = code[order], s[order], y[order]
    new_group = np.concatenate([[True], c[1:] != c[:-1]])
    new_block = new_group | np.concatenate([[True], v[1:] != v[:-1]])
    block_starts = np.flatnonzero(new_block)
    block_ends = np.concatenate([block_starts[1:], [len(v)]])
    group_start = np.maximum.accumulate(np.where(new_group, np.arange(len(v)), 0))
    # 1-based mid-ranks within each group, ties averaged.
    mid = np.repeat((block_starts + block_ends + 1) / 2.0, block_ends - block_starts) - group_start
    count = np.bincount(c)
    positives = np.bincount(c, weights=t).astype(np.int64)
    negatives = count - positives
    rank_sum = np.bincount(c, weights=mid * t)
    both = (positives > 0) & (negatives > 0)
    if not both.any():
        return None, 0
    p, q = positives[both], negatives[both]
    aucs = (rank_sum[both] - p * (p + 1) / 2.0) / (p * q)
    w = count[both] if weight == "impressions" else p * q
    return float(np.sum(w * aucs) / np.sum(w)), int(both.sum())


def log_loss(labels: np.ndarray, probabilities: np.ndarray, *, eps: float = LOG_LOSS_EPS) -> float | None:
    """Mean binary cross-entropy, probabilities clipped to [eps, 1 - eps]; None for no rows."""
    y, p = checked_labels(labels, probabilities, "probabilities")
    if len(y) == 0:
        return None
    if np.any((p < 0) | (p > 1)):
        raise DataError("probabilities fall outside [0, 1]", where="probabilities",
                        fix="pass sigmoid(logits), not logits")
    p = np.clip(p, eps, 1.0 - eps)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log1p(-p)))


def evaluate(split: RankingSplit, predictions: Mapping[str, np.ndarray],
             conditional: Sequence[tuple[str, str]] = ()) -> RankingMetrics:
    """AUC, GAUC and log loss of each task's (M,) probabilities on every slice of ``split``.

    Args:
        split: M impressions with labels and slices (and ``group`` for ``new-matched``).
        predictions: task -> (M,) probabilities; every task must have labels in ``split``.
        conditional: (task, given) pairs, e.g. ``("like", "click")``: rows ``like|click`` score the
            like head on the impressions of each slice where click is 1.
    """
    rows = []
    slices = split.slices or {"all": np.ones(len(split), dtype=bool)}
    targets: list[tuple[str, str, str | None]] = [(task, task, None) for task in predictions]
    targets += [(f"{task}|{given}", task, given) for task, given in conditional]
    for name, task, given in targets:
        if task not in predictions:
            raise DataError(f"no predictions for task {task!r} of {name!r}", where="predictions",
                            fix="predict every task that a conditional task names")
        for needed in (task, given):
            if needed is not None and needed not in split.labels:
                raise DataError(f"no labels for task {needed!r} (labels: {sorted(split.labels)})",
                                where="predictions", fix="predict the tasks of RankingData.tasks")
        labels = np.asarray(split.labels[task])
        p = np.asarray(predictions[task], dtype=np.float64)
        if p.shape != labels.shape:
            raise DataError(f"predictions for {task!r} have shape {p.shape}, labels {labels.shape}",
                            where="predictions", fix="predict every impression of the split, in order")
        condition = np.ones(len(labels), dtype=bool) if given is None else np.asarray(split.labels[given]) == 1
        for slice_name, slice_mask in slices.items():
            mask = np.asarray(slice_mask, dtype=bool) & condition
            rows.append(_slice_metrics(name, slice_name, labels[mask], p[mask], split.user[mask],
                                       None if split.group is None else split.group[mask]))
    return RankingMetrics(tuple(rows))


def _slice_metrics(task: str, slice_name: str, y: np.ndarray, q: np.ndarray, users: np.ndarray,
                   groups: np.ndarray | None) -> SliceMetrics:
    positives = int((y == 1).sum())
    reason = None
    if len(y) == 0:
        reason = "empty slice"
    elif positives in (0, len(y)):
        reason = f"one class only ({'all positive' if positives else 'no positives'} in {len(y)})"
    auc = None
    if reason is None:
        if slice_name == MATCHED_SLICE and groups is not None:
            auc, _ = grouped_auc(y, q, groups, weight="pairs")
            if auc is None:
                reason = "no group holds both classes"
        else:
            auc = roc_auc(y, q)
    gauc, gauc_users = grouped_auc(y, q, users) if reason is None else (None, 0)
    return SliceMetrics(task, slice_name, len(y), positives, auc, log_loss(y, q), reason, gauc, gauc_users)


def mean_ci(values: Sequence[float], *, confidence: float = 0.95) -> MeanCI:
    """Mean of ``values`` with a two-sided Student-t interval at ``confidence``."""
    if not 0.0 < confidence < 1.0:
        raise ConfigError(f"confidence must lie strictly between 0 and 1, got {confidence}", where="confidence")
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1 or not np.all(np.isfinite(x)):
        raise DataError("values must be a 1-d sequence of finite numbers", where="values")
    n = len(x)
    if n == 0:
        return MeanCI(None, None, None, None, None, 0, confidence, "no values")
    mean = float(x.mean())
    if n == 1:
        return MeanCI(mean, None, None, None, None, 1, confidence, "one value: no interval")
    std = float(x.std(ddof=1))
    half = t_quantile(0.5 + confidence / 2.0, n - 1) * std / math.sqrt(n)
    return MeanCI(mean, mean - half, mean + half, half, std, n, confidence)


def aggregate(runs: Sequence[RankingMetrics], *, confidence: float = 0.95) -> tuple[AggregateMetrics, ...]:
    """Per (task, slice), the mean and t interval of AUC and log loss across runs (e.g. seeds).

    Runs where a metric is None (one class) are left out of that metric's mean.
    """
    keys: list[tuple[str, str]] = []
    values: dict[tuple[str, str], list[SliceMetrics]] = {}
    for run in runs:
        for row in run.rows:
            key = (row.task, row.slice)
            if key not in values:
                keys.append(key)
                values[key] = []
            values[key].append(row)
    out = []
    for key in keys:
        rows = values[key]
        aucs = [r.auc for r in rows if r.auc is not None]
        losses = [r.log_loss for r in rows if r.log_loss is not None]
        gaucs = [r.gauc for r in rows if r.gauc is not None]
        auc = mean_ci(aucs, confidence=confidence)
        gauc = mean_ci(gaucs, confidence=confidence)
        if not aucs:
            reasons = sorted({r.reason for r in rows if r.reason})
            auc = MeanCI(None, None, None, None, None, 0, confidence, "; ".join(reasons) or "no AUC")
        out.append(AggregateMetrics(key[0], key[1], len(rows), auc, mean_ci(losses, confidence=confidence), gauc))
    return tuple(out)
