"""Prefix hierarchy: do items that share a longer SID prefix have more similar content?

For each prefix length n = 1..L (docs/diagnostics.md, "Prefix hierarchy"; after Singh et al.'s Table 1):

- mean_cosine: the mean cosine similarity (original embeddings) over all pairs of distinct items
  that share their prefix of length n, pooled over prefixes (every pair weighs the same);
- the sizes of the sub-tries (items per distinct prefix): quartiles, mean and largest;
- random_cosine: the same mean over all pairs of distinct items, the floor to compare against.

All means are exact, with no sampling: with unit vectors u_i and S_g the sum over the items of
prefix g, the pairs of g sum to (||S_g||^2 - n_g) / 2, so one pass over the items suffices.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from sidkit.errors import DataError
from sidkit.ids import SemanticIds

# Rows read and normalized at once: bounds memory for catalogs of any size.
CHUNK_ROWS = 1 << 16


@dataclass(frozen=True)
class PrefixDepth:
    """One row of the hierarchy table: prefixes of length ``depth``."""

    depth: int
    mean_cosine: float
    pairs: int
    prefixes: int
    size_q1: float
    size_median: float
    size_q3: float
    size_mean: float
    size_max: int

    def to_dict(self) -> dict[str, float]:
        return {"depth": self.depth, "mean_cosine": self.mean_cosine, "pairs": self.pairs,
                "prefixes": self.prefixes, "size_q1": self.size_q1, "size_median": self.size_median,
                "size_q3": self.size_q3, "size_mean": self.size_mean, "size_max": self.size_max}


@dataclass(frozen=True)
class HierarchyReport:
    """The prefix hierarchy table, one row per depth, and the random-pair floor."""

    depths: tuple[PrefixDepth, ...]
    random_cosine: float
    num_items: int

    def to_dict(self) -> dict[str, Any]:
        return {"num_items": self.num_items, "random_cosine": self.random_cosine,
                "depths": [row.to_dict() for row in self.depths]}


def prefix_hierarchy(ids: SemanticIds, embeddings: Any) -> HierarchyReport:
    """The hierarchy table of codes ``ids`` (N, L) over (N, D) ``embeddings`` (rows aligned with ids).

    A depth where no two items share a prefix has mean_cosine NaN and pairs 0.
    """
    n = len(ids)
    if not isinstance(embeddings, np.ndarray):  # memory-mapped arrays stay as they are
        embeddings = np.asarray(embeddings)
    shape = np.shape(embeddings)
    if len(shape) != 2 or shape[0] != n:
        raise DataError(f"embeddings have shape {shape} for {n} items", where="embeddings",
                        fix="pass one embedding row per SID, in the same order")
    if n < 2:
        raise DataError("the hierarchy needs at least 2 items", where="ids")
    total, self_sum = np.zeros(shape[1]), 0.0
    for start in range(0, n, CHUNK_ROWS):
        block = _unit_rows(embeddings, np.arange(start, min(n, start + CHUNK_ROWS)))
        total += block.sum(axis=0)
        self_sum += float(np.einsum("ij,ij->", block, block))  # the i = j terms: 1 per non-zero row
    random_cosine = (float(total @ total) - self_sum) / (n * (n - 1))
    rows = []
    for depth in range(1, ids.levels + 1):
        keys = ids.prefix_keys(depth)
        order = np.argsort(keys, kind="stable")
        sorted_keys = keys[order]
        starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
        sizes = np.diff(np.r_[starts, n])
        pair_count = int((sizes * (sizes - 1)).sum()) // 2
        pair_sum = (_sum_of_squared_group_sums(embeddings, order, sorted_keys) - self_sum) / 2.0
        q1, median, q3 = np.percentile(sizes, [25, 50, 75])
        rows.append(PrefixDepth(depth=depth, mean_cosine=pair_sum / pair_count if pair_count else math.nan,
                                pairs=pair_count, prefixes=len(starts), size_q1=float(q1),
                                size_median=float(median), size_q3=float(q3), size_mean=float(sizes.mean()),
                                size_max=int(sizes.max())))
    return HierarchyReport(tuple(rows), random_cosine, n)


def _sum_of_squared_group_sums(embeddings: Any, order: np.ndarray, sorted_keys: np.ndarray) -> float:
    """sum_g ||S_g||^2, S_g the sum of the unit rows of prefix g, streaming over rows in key order.

    Memory stays at one chunk of rows: a prefix that runs across a chunk boundary carries its
    partial sum into the next chunk.
    """
    squares = 0.0
    carry: np.ndarray | None = None
    carry_key = None
    for start in range(0, len(order), CHUNK_ROWS):
        keys = sorted_keys[start:start + CHUNK_ROWS]
        block = _unit_rows(embeddings, order[start:start + CHUNK_ROWS])
        starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
        sums = np.add.reduceat(block, starts, axis=0)  # (G, D) per prefix within this chunk
        if carry is not None:
            if keys[0] == carry_key:
                sums[0] += carry
            else:
                squares += float(carry @ carry)
        squares += float(np.einsum("ij,ij->", sums[:-1], sums[:-1]))
        carry, carry_key = sums[-1], keys[-1]
    assert carry is not None
    return squares + float(carry @ carry)


def _unit_rows(embeddings: Any, rows: np.ndarray) -> np.ndarray:
    """The given rows as float64 unit vectors; zero rows stay zero (their cosines count as 0)."""
    x = np.asarray(embeddings[rows], dtype=np.float64)
    if not np.all(np.isfinite(x)):
        raise DataError("embeddings hold NaN or inf", where="embeddings", fix="drop or fix those rows")
    norms = np.sqrt(np.einsum("ij,ij->i", x, x))[:, None]
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)
