"""The two statistics both the diagnostics and the rankers report: ROC AUC, and Student's t quantile.

AUC is the Mann-Whitney statistic: the probability that a random positive scores above a random
negative, ties counting one half, computed from mid-ranks in O(n log n). The t quantile (for 95%
intervals over seeds) is scipy's, imported on first use: ``scipy.stats`` takes a while to import.
"""

from __future__ import annotations

import numpy as np

from sidkit.errors import ConfigError, DataError


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """ROC AUC of (n,) scores for (n,) 0/1 labels, ties counting one half; None with one class only."""
    y, s = checked_labels(labels, scores, "scores")
    positives = int(y.sum())
    negatives = len(y) - positives
    if positives == 0 or negatives == 0:
        return None
    order = np.argsort(s, kind="stable")
    ordered = s[order]
    starts = np.flatnonzero(np.concatenate([[True], ordered[1:] != ordered[:-1]]))
    ends = np.concatenate([starts[1:], [len(ordered)]])
    mid_ranks = np.repeat((starts + ends + 1) / 2.0, ends - starts)  # 1-based ranks, ties averaged
    rank_sum = float(mid_ranks[y[order] == 1].sum())
    return (rank_sum - positives * (positives + 1) / 2.0) / (positives * negatives)


def t_quantile(p: float, df: float) -> float:
    """The p-quantile of Student's t with ``df`` degrees of freedom (``scipy.stats.t.ppf``)."""
    if not 0.0 < p < 1.0:
        raise ConfigError(f"p must lie strictly between 0 and 1, got {p}", where="p")
    if not df > 0:
        raise ConfigError(f"degrees of freedom must be positive, got {df}", where="df")
    from scipy import stats

    return float(stats.t.ppf(p, df))


def checked_labels(labels: np.ndarray, values: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(n,) int8 0/1 labels and (n,) float64 finite ``values``; DataError naming ``name`` otherwise."""
    y = np.asarray(labels)
    v = np.asarray(values, dtype=np.float64)
    if y.ndim != 1 or v.shape != y.shape:
        raise DataError(f"labels {y.shape} and {name} {v.shape} must be 1-d of the same length", where=name)
    if y.size and not np.all((y == 0) | (y == 1)):
        raise DataError("labels must be 0 or 1", where="labels")
    if not np.all(np.isfinite(v)):
        raise DataError(f"{name} hold NaN or inf", where=name, fix="check the model's outputs")
    return y.astype(np.int8), v
