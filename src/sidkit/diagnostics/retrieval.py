"""Item-to-item retrieval with Semantic IDs: hit-rate retention @K and SID-embedding AUC.

Definitions (docs/diagnostics.md, "Retrieval"), for held-out behaviour pairs (q, p):

- HR@K: share of pairs whose p is among the K items most cosine-similar to q, q itself excluded,
  searching all N items exactly (brute force, in chunks of queries). Items whose score ties p's
  (collided SIDs share one reconstruction) are ordered at random: a pair counts the probability
  that p lands in the top K, so ties neither help nor hurt on average.
- Retention@K = HR@K on reconstructed embeddings x^ / HR@K on the originals x. Above 1 means the
  reconstruction retrieves behaviourally related items better than the content embedding does.
- SID-embedding AUC: each item's quantized vector (sum of its codewords in the tokenizer's
  quantization space); the AUC of cosine similarity separating held-out pairs from as many
  random item pairs (ties count one half).
- Novel pairs (:func:`novel_pairs`): the held-out pairs whose two items never form a training pair;
  both metrics are reported on them beside all held-out pairs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from sidkit.errors import ConfigError, DataError
from sidkit.stats import roc_auc

DEFAULT_CUTOFFS: tuple[int, ...] = (20, 50, 100, 200)
# Scores whose difference is below this count as ties (float32 GEMMs may order equal vectors' sums
# differently).
TIE_TOLERANCE = 1e-6
# Queries x items scored per block (float64: about 128 MiB).
SCORE_VALUES = 1 << 24
# Cosines are clamped into [-_SCORE_BOUND, _SCORE_BOUND] (float32 products can pass 1 by rounding); the
# query's own score _NO_ANSWER lies below them, farther than any tie tolerance.
_SCORE_BOUND = 1.5
_NO_ANSWER = -2.0
# Rows of sorted scores are shifted by this much each, so they can be searched as one sorted array.
# One row spans [_NO_ANSWER, _SCORE_BOUND]; the gap to the next row (here 4.5) must exceed the tie
# tolerance, or a target at cosine 1 would tie with the next row's query (a phantom tie).
_ROW_OFFSET = 8.0


@dataclass(frozen=True)
class HitRates:
    """HR@K of one embedding table over ``num_pairs`` pairs, one value per cutoff."""

    cutoffs: tuple[int, ...]
    hit_rates: tuple[float, ...]
    num_pairs: int

    def at(self, k: int) -> float:
        return self.hit_rates[_cutoff_index(self.cutoffs, k)]

    def to_dict(self) -> dict[str, Any]:
        return {"num_pairs": self.num_pairs, **{f"hr@{k}": v for k, v in zip(self.cutoffs, self.hit_rates,
                                                                            strict=True)}}


@dataclass(frozen=True)
class RetentionReport:
    """HR@K with original and reconstructed embeddings, and their ratio (retention) per cutoff."""

    original: HitRates
    reconstructed: HitRates

    @property
    def cutoffs(self) -> tuple[int, ...]:
        return self.original.cutoffs

    @property
    def retention(self) -> tuple[float, ...]:
        """HR_reconstructed / HR_original per cutoff; NaN where the original hits nothing."""
        return tuple(r / o if o > 0 else math.nan
                     for r, o in zip(self.reconstructed.hit_rates, self.original.hit_rates, strict=True))

    def at(self, k: int) -> float:
        return self.retention[_cutoff_index(self.cutoffs, k)]

    def to_dict(self) -> dict[str, Any]:
        return {"num_pairs": self.original.num_pairs,
                "cutoffs": list(self.cutoffs),
                "hit_rate_original": list(self.original.hit_rates),
                "hit_rate_reconstructed": list(self.reconstructed.hit_rates),
                "retention": list(self.retention)}


@dataclass(frozen=True)
class AucReport:
    """AUC of a pair score: behaviour pairs (positives) against random pairs (negatives)."""

    auc: float
    num_positive: int
    num_negative: int
    mean_positive: float
    mean_negative: float

    def to_dict(self) -> dict[str, float]:
        return {"auc": self.auc, "num_positive": self.num_positive, "num_negative": self.num_negative,
                "mean_cosine_positive": self.mean_positive, "mean_cosine_negative": self.mean_negative}


def hit_rates(embeddings: Any, pairs: np.ndarray, cutoffs: Sequence[int] = DEFAULT_CUTOFFS, *,
              device: str | torch.device = "cpu") -> HitRates:
    """HR@K for (P, 2) pairs (query row, target row) over (N, D) ``embeddings``, by exact cosine search.

    Each distinct query is scored once against all N items. Rows of zero norm score 0 against all.
    """
    table = _normalized(embeddings, device)
    pair_rows = check_pairs(pairs, len(table))
    ks = _cutoffs(cutoffs)
    if len(pair_rows) == 0:
        raise DataError("no pairs to evaluate", where="pairs", fix="pass at least one (query, target) pair")
    order = np.argsort(pair_rows[:, 0], kind="stable")
    queries, targets = pair_rows[order, 0], pair_rows[order, 1]
    n = len(table)
    totals = np.zeros(len(ks))
    ks_tensor = torch.tensor(ks, dtype=torch.float64, device=table.device)
    block_pairs = max(1, SCORE_VALUES // n)
    with torch.inference_mode():
        for start in range(0, len(queries), block_pairs):
            q = torch.from_numpy(queries[start:start + block_pairs]).to(table.device)
            t = torch.from_numpy(targets[start:start + block_pairs]).to(table.device)
            distinct, slot = torch.unique(q, return_inverse=True)  # score each query once
            scores = (table[distinct] @ table.T).double().clamp_(-_SCORE_BOUND, _SCORE_BOUND)  # (U, N) cosines
            scores[torch.arange(len(distinct), device=table.device), distinct] = _NO_ANSWER  # q itself
            own = scores[slot, t]                                    # (B,) each target's score
            # Rank by binary search: every row sorted, rows laid end to end with offsets that keep
            # the whole array sorted (float64 keeps the offsets exact far beyond cosine precision).
            offsets = _ROW_OFFSET * torch.arange(len(distinct), device=table.device, dtype=torch.float64)
            flat = (torch.sort(scores, dim=1).values + offsets[:, None]).reshape(-1)
            shifted = own + offsets[slot]
            row_start = slot * n
            at_most = torch.searchsorted(flat, shifted + TIE_TOLERANCE, right=True) - row_start
            below = torch.searchsorted(flat, shifted - TIE_TOLERANCE) - row_start
            above = (n - at_most).double()
            tied = (at_most - below).double()  # p itself included
            # p sits uniformly among its ties: P(rank < K) = clip(K - above, 0, tied) / tied.
            hits = torch.clamp(ks_tensor[None, :] - above[:, None], min=0)
            hits = torch.minimum(hits, tied[:, None]) / tied[:, None]
            totals += hits.sum(0).cpu().numpy()
    return HitRates(tuple(ks), tuple(float(v) for v in totals / len(queries)), len(queries))


def retention(original: Any, reconstructed: Any, pairs: np.ndarray, cutoffs: Sequence[int] = DEFAULT_CUTOFFS,
              *, device: str | torch.device = "cpu") -> RetentionReport:
    """HR@K of (N, D) ``reconstructed`` against (N, D) ``original`` embeddings, for (P, 2) ``pairs``."""
    shape_a, shape_b = np.shape(original), np.shape(reconstructed)
    if shape_a != shape_b:
        raise DataError(f"original has shape {shape_a}, reconstructed {shape_b}", where="reconstructed",
                        fix="pass tokenizer.decode(tokenizer.encode(X)) for the same X")
    return RetentionReport(hit_rates(original, pairs, cutoffs, device=device),
                           hit_rates(reconstructed, pairs, cutoffs, device=device))


def pair_cosines(embeddings: Any, pairs: np.ndarray, *, device: str | torch.device = "cpu") -> np.ndarray:
    """(P,) float64 cosine similarity of each pair of rows of (N, D) ``embeddings``."""
    table = _normalized(embeddings, device)
    rows = check_pairs(pairs, len(table))
    out = np.empty(len(rows))
    step = max(1, SCORE_VALUES // max(1, table.shape[1]))
    with torch.inference_mode():
        for start in range(0, len(rows), step):
            block = torch.from_numpy(rows[start:start + step]).to(table.device)
            out[start:start + len(block)] = (table[block[:, 0]] * table[block[:, 1]]).sum(1).double().cpu().numpy()
    return out


def novel_pairs(heldout: np.ndarray, train: np.ndarray) -> np.ndarray:
    """The (P', 2) held-out pairs whose two items never form a training pair, in either order.

    A held-out pair that recurs from training (the same two items, engaged together again later) can
    be scored well by anything that saw the training pairs; the novel ones measure generalization.
    """
    rows = check_pairs(heldout, np.iinfo(np.int64).max)
    seen = check_pairs(train, np.iinfo(np.int64).max)
    if len(rows) == 0 or len(seen) == 0:
        return rows.copy()
    span = int(max(rows.max(), seen.max())) + 1

    def unordered(pairs: np.ndarray) -> np.ndarray:
        return np.minimum(pairs[:, 0], pairs[:, 1]) * span + np.maximum(pairs[:, 0], pairs[:, 1])

    return rows[~np.isin(unordered(rows), unordered(seen))]


def random_pairs(num_items: int, count: int, *, seed: int = 0) -> np.ndarray:
    """(count, 2) int64 uniformly random pairs of distinct rows of ``num_items`` items."""
    if num_items < 2:
        raise DataError(f"random pairs need at least 2 items, got {num_items}", where="embeddings")
    rng = np.random.default_rng(seed)
    first = rng.integers(0, num_items, count)
    second = (first + rng.integers(1, num_items, count)) % num_items  # never equal to first
    return np.stack([first, second], axis=1).astype(np.int64)


def sid_embedding_auc(quantized: Any, pairs: np.ndarray, *, negatives: np.ndarray | None = None, seed: int = 0,
                      device: str | torch.device = "cpu") -> AucReport:
    """AUC of cosine similarity between (N, Q) SID embeddings: (P, 2) behaviour pairs against random pairs.

    ``negatives`` default to P uniformly random pairs of distinct items (seeded).
    """
    n = int(np.shape(quantized)[0])
    positive = pair_cosines(quantized, pairs, device=device)
    negative_pairs = random_pairs(n, len(positive), seed=seed) if negatives is None else negatives
    negative = pair_cosines(quantized, negative_pairs, device=device)
    if len(positive) == 0 or len(negative) == 0:
        raise DataError("AUC needs at least one positive and one negative pair", where="pairs")
    return AucReport(auc_score(positive, negative), len(positive), len(negative), float(positive.mean()),
                     float(negative.mean()))


def auc_score(positive: np.ndarray, negative: np.ndarray) -> float:
    """P(score of a random positive > score of a random negative), ties counted one half (Mann-Whitney):
    :func:`sidkit.stats.roc_auc` of the positives labelled 1 and the negatives labelled 0."""
    pos, neg = np.asarray(positive, dtype=np.float64), np.asarray(negative, dtype=np.float64)
    auc = roc_auc(np.r_[np.ones(len(pos), np.int8), np.zeros(len(neg), np.int8)], np.concatenate([pos, neg]))
    if auc is None:
        raise DataError("AUC needs at least one positive and one negative score", where="scores")
    return auc


def check_pairs(pairs: Any, num_items: int) -> np.ndarray:
    """Return (P, 2) int64 row pairs; raise DataError for a bad shape or rows outside [0, num_items)."""
    rows = np.asarray(pairs)
    if rows.ndim != 2 or rows.shape[1] != 2:
        raise DataError(f"pairs must have shape (P, 2), got {rows.shape}", where="pairs",
                        fix="pass BehaviourPairs.heldout or another (P, 2) array of catalog rows")
    if rows.size and rows.dtype.kind not in "iu":
        raise DataError(f"pairs must be integer rows, got dtype {rows.dtype}", where="pairs")
    rows = rows.astype(np.int64, copy=False)
    if rows.size and (rows.min() < 0 or rows.max() >= num_items):
        raise DataError(f"pairs refer to rows outside [0, {num_items})", where="pairs",
                        fix="pairs must index the rows of the embeddings they are scored on")
    return rows


def _normalized(embeddings: Any, device: str | torch.device) -> torch.Tensor:
    """(N, D) float32 unit rows on ``device``; zero rows stay zero."""
    table = torch.as_tensor(np.asarray(embeddings), dtype=torch.float32, device=device)
    if table.ndim != 2 or table.shape[0] == 0:
        raise DataError(f"embeddings must be a non-empty (N, D) array, got shape {tuple(table.shape)}",
                        where="embeddings")
    if not bool(torch.isfinite(table).all()):
        raise DataError("embeddings hold NaN or inf", where="embeddings", fix="drop or fix those rows")
    norms = table.norm(dim=1, keepdim=True)
    return table / torch.where(norms > 0, norms, torch.ones_like(norms))


def _cutoffs(cutoffs: Sequence[int]) -> list[int]:
    ks = [int(k) for k in cutoffs]
    if not ks or any(k < 1 for k in ks) or any(isinstance(k, bool) for k in cutoffs):
        raise ConfigError(f"cutoffs must be positive integers, got {list(cutoffs)}", where="cutoffs",
                          fix="use e.g. (20, 50, 100, 200)")
    return ks


def _cutoff_index(cutoffs: tuple[int, ...], k: int) -> int:
    if k not in cutoffs:
        raise ConfigError(f"no cutoff {k}; computed: {list(cutoffs)}", where="k")
    return cutoffs.index(k)
