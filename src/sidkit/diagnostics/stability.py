"""Stability: do two tokenizers (another seed, or data from another period) give the same Semantic IDs?

Code labels are arbitrary (code 7 of one fit may be code 130 of the other), so every measure here
is invariant to relabelling the codes of each level:

- prefix_agreement[d - 1]: share of items whose length-d prefixes agree after matching codes.
  Level-0 codes are matched one to one by the Hungarian method on their co-assignment counts
  (maximum total agreement); then, within each agreeing parent prefix, the next level's codes are
  matched the same way, and so on down the trie.
- ami[l]: adjusted mutual information of the two level-l code assignments (arithmetic-mean
  normalization, as scikit-learn's default): 1 for the same partition, about 0 for independent ones.
- neighbour_overlap: mean over query items of |top-K(a) & top-K(b)| / K, the top-K neighbours by
  cosine in each tokenizer's quantized space (self excluded). Ties among collided items break
  the same way for identical inputs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from scipy.special import gammaln

from sidkit.errors import ConfigError, DataError
from sidkit.ids import SemanticIds
from sidkit.tokenizers.base import Tokenizer, check_embeddings

DEFAULT_NEIGHBOURS = 20
DEFAULT_QUERIES = 2000
# Terms of the expected mutual information evaluated at once.
_EMI_BLOCK = 1 << 22


@dataclass(frozen=True)
class StabilityReport:
    """How far two tokenizers' Semantic IDs of the same N items agree (see the module docstring)."""

    prefix_agreement: tuple[float, ...]
    ami: tuple[float, ...]
    neighbour_overlap: float
    neighbours: int
    queries: int
    num_items: int

    def to_dict(self) -> dict[str, Any]:
        return {"num_items": self.num_items, "prefix_agreement": list(self.prefix_agreement),
                "ami": list(self.ami), "neighbour_overlap": self.neighbour_overlap,
                "neighbours": self.neighbours, "queries": self.queries}


def tokenizer_stability(first: Tokenizer, second: Tokenizer, X: Any, *, neighbours: int = DEFAULT_NEIGHBOURS,
                        queries: int = DEFAULT_QUERIES, seed: int = 0) -> StabilityReport:
    """Encode (N, D) ``X`` with both tokenizers and compare codes and quantized neighbourhoods."""
    if first.levels != second.levels:
        raise ConfigError(f"the tokenizers have {first.levels} and {second.levels} levels", where="second",
                          fix="compare tokenizers with the same number of levels")
    x = check_embeddings(X, where="X", expected_dim=first.dim)
    ids_a, ids_b = first.encode(x), second.encode(x)
    return stability(ids_a, ids_b, first.quantized(ids_a), second.quantized(ids_b), neighbours=neighbours,
                     queries=queries, seed=seed)


def stability(first: SemanticIds, second: SemanticIds, quantized_first: Any, quantized_second: Any, *,
              neighbours: int = DEFAULT_NEIGHBOURS, queries: int = DEFAULT_QUERIES,
              seed: int = 0) -> StabilityReport:
    """Stability from two codings of the same items and their (N, Q_a), (N, Q_b) quantized vectors."""
    _check_same_items(first, second)
    ami = tuple(adjusted_mutual_information(first.codes[:, level], second.codes[:, level])
                for level in range(first.levels))
    overlap, used = neighbour_overlap(quantized_first, quantized_second, neighbours=neighbours,
                                      queries=queries, seed=seed)
    return StabilityReport(prefix_agreement(first, second), ami, overlap, neighbours, used, len(first))


def prefix_agreement(first: SemanticIds, second: SemanticIds) -> tuple[float, ...]:
    """Per depth d = 1..L, the share of items whose length-d prefixes agree after matching codes."""
    _check_same_items(first, second)
    n = len(first)
    agree = np.ones(n, dtype=bool)
    parent = np.zeros(n, dtype=np.int64)  # the item's agreeing parent prefix, as a dense id
    shares = []
    for level in range(first.levels):
        rows = np.flatnonzero(agree)
        a, b = first.codes[rows, level], second.codes[rows, level]
        matched = _matched_within_parents(parent[rows], a, b, second.sizes[level])
        agree[:] = False
        agree[rows[matched]] = True
        shares.append(float(agree.sum()) / n)
        # Children of an agreeing parent are told apart by the first tokenizer's code.
        parent[rows] = np.unique(parent[rows] * first.sizes[level] + a, return_inverse=True)[1].reshape(-1)
    return tuple(shares)


def adjusted_mutual_information(labels_a: np.ndarray, labels_b: np.ndarray) -> float:
    """AMI of two (N,) integer labelings: (MI - E[MI]) / (mean(H_a, H_b) - E[MI]).

    E[MI] is exact under the hypergeometric model of random labelings with the same cluster sizes
    (Vinh, Epps and Bailey 2010). Two labelings with one cluster each count as identical (1.0).
    """
    a, b = np.asarray(labels_a), np.asarray(labels_b)
    if a.shape != b.shape or a.ndim != 1 or len(a) == 0:
        raise DataError(f"labelings must be two non-empty 1-d arrays of one length, got {a.shape} and {b.shape}",
                        where="labels")
    _, a_index = np.unique(a, return_inverse=True)
    _, b_index = np.unique(b, return_inverse=True)
    a_index, b_index = a_index.reshape(-1), b_index.reshape(-1)
    rows, cols = int(a_index.max()) + 1, int(b_index.max()) + 1
    if rows == cols == 1:
        return 1.0
    n = len(a)
    cells, counts = np.unique(a_index * cols + b_index, return_counts=True)
    row_sums = np.bincount(a_index, minlength=rows).astype(np.float64)
    col_sums = np.bincount(b_index, minlength=cols).astype(np.float64)
    nij = counts.astype(np.float64)
    mi = float((nij / n * (np.log(nij * n) - np.log(row_sums[cells // cols]) - np.log(col_sums[cells % cols]))).sum())
    h_a, h_b = _entropy(row_sums, n), _entropy(col_sums, n)
    emi = _expected_mutual_information(row_sums, col_sums, n)
    denominator = (h_a + h_b) / 2.0 - emi
    # Guard as scikit-learn does: a vanishing denominator means both are (nearly) trivial.
    eps = np.finfo(np.float64).eps
    denominator = min(denominator, -eps) if denominator < 0 else max(denominator, eps)
    return float((mi - emi) / denominator)


def neighbour_overlap(first: Any, second: Any, *, neighbours: int = DEFAULT_NEIGHBOURS,
                      queries: int = DEFAULT_QUERIES, seed: int = 0,
                      device: str | torch.device = "cpu") -> tuple[float, int]:
    """Mean |top-K_a & top-K_b| / K over up to ``queries`` random items (seeded); returns (mean, queries used).

    ``first`` and ``second`` are (N, Q_a) and (N, Q_b) embeddings of the same items (Q may differ).
    """
    a, b = _unit_table(first, device), _unit_table(second, device)
    n = a.shape[0]
    if b.shape[0] != n:
        raise DataError(f"the embeddings cover {n} and {b.shape[0]} items", where="second",
                        fix="embed the same items, in the same order")
    if isinstance(neighbours, bool) or not isinstance(neighbours, int) or not 1 <= neighbours < n:
        raise ConfigError(f"neighbours must be an integer in [1, {n - 1}], got {neighbours!r}", where="neighbours")
    count = min(n, int(queries))
    chosen = np.sort(np.random.default_rng(seed).choice(n, size=count, replace=False))
    total = 0.0
    block = max(1, (1 << 24) // n)
    with torch.inference_mode():
        for start in range(0, count, block):
            rows = torch.from_numpy(chosen[start:start + block]).to(a.device)
            top_a = _top_neighbours(a, rows, neighbours)
            top_b = _top_neighbours(b, rows, neighbours)
            shared = (top_a[:, :, None] == top_b[:, None, :]).any(2).sum()
            total += float(shared)
    return total / (count * neighbours), count


def _top_neighbours(table: torch.Tensor, rows: torch.Tensor, k: int) -> torch.Tensor:
    scores = table[rows] @ table.T
    scores[torch.arange(len(rows), device=table.device), rows] = -math.inf
    # topk is deterministic: identical tables give identical lists, ties included.
    return torch.topk(scores, k, dim=1, sorted=False).indices


def _matched_within_parents(parent: np.ndarray, a: np.ndarray, b: np.ndarray, size_b: int) -> np.ndarray:
    """Bool mask of the items whose (a, b) cell the per-parent Hungarian matching keeps."""
    if len(parent) == 0:
        return np.zeros(0, dtype=bool)
    size_a = int(a.max()) + 1
    cell = (parent * size_a + a) * size_b + b
    cells, cell_of, counts = np.unique(cell, return_inverse=True, return_counts=True)
    cell_parent = cells // (size_a * size_b)
    cell_a = (cells // size_b) % size_a
    cell_b = cells % size_b
    keep = np.zeros(len(cells), dtype=bool)
    starts = np.flatnonzero(np.r_[True, cell_parent[1:] != cell_parent[:-1]])
    stops = np.r_[starts[1:], len(cells)]
    for start, stop in zip(starts.tolist(), stops.tolist(), strict=True):
        if stop - start == 1:  # one cell: its codes match each other
            keep[start] = True
            continue
        local_a, row = np.unique(cell_a[start:stop], return_inverse=True)
        local_b, col = np.unique(cell_b[start:stop], return_inverse=True)
        matrix = np.zeros((len(local_a), len(local_b)))
        matrix[row, col] = counts[start:stop]
        pick_row, pick_col = linear_sum_assignment(matrix, maximize=True)
        chosen = np.zeros_like(matrix, dtype=bool)
        chosen[pick_row, pick_col] = True
        keep[start:stop] = chosen[row, col]
    return keep[cell_of.reshape(-1)]


def _entropy(sizes: np.ndarray, n: int) -> float:
    share = sizes[sizes > 0] / n
    return float(-(share * np.log(share)).sum())


def _expected_mutual_information(row_sums: np.ndarray, col_sums: np.ndarray, n: int) -> float:
    """E[MI] of random labelings with these cluster sizes, summing the hypergeometric terms in blocks."""
    log_fact = gammaln
    total = 0.0
    base = log_fact(n + 1)
    for a_i in row_sums:
        low = np.maximum(1.0, a_i + col_sums - n)
        high = np.minimum(a_i, col_sums)
        lengths = np.maximum(high - low + 1, 0).astype(np.int64)
        if lengths.sum() == 0:
            continue
        # Flatten all (j, n_ij) terms of this row; a block bound keeps memory flat for huge N.
        for j_start, j_stop in _blocks(lengths, _EMI_BLOCK):
            counts = lengths[j_start:j_stop]
            b_j = np.repeat(col_sums[j_start:j_stop], counts)
            offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
            nij = np.repeat(low[j_start:j_stop], counts) + offsets
            log_p = (log_fact(a_i + 1) + log_fact(b_j + 1) + log_fact(n - a_i + 1) + log_fact(n - b_j + 1)
                     - base - log_fact(nij + 1) - log_fact(a_i - nij + 1) - log_fact(b_j - nij + 1)
                     - log_fact(n - a_i - b_j + nij + 1))
            total += float((nij / n * (np.log(n * nij) - np.log(a_i * b_j)) * np.exp(log_p)).sum())
    return total


def _blocks(lengths: np.ndarray, limit: int) -> list[tuple[int, int]]:
    """Split indices into consecutive runs whose lengths sum to at most ``limit`` (at least one each)."""
    blocks, start, running = [], 0, 0
    for index, length in enumerate(lengths.tolist()):
        if running and running + length > limit:
            blocks.append((start, index))
            start, running = index, 0
        running += length
    blocks.append((start, len(lengths)))
    return blocks


def _unit_table(values: Any, device: str | torch.device) -> torch.Tensor:
    table = torch.as_tensor(np.asarray(values), dtype=torch.float32, device=device)
    if table.ndim != 2 or table.shape[0] < 2:
        raise DataError(f"embeddings must be (N, Q) with N >= 2, got shape {tuple(table.shape)}", where="embeddings")
    norms = table.norm(dim=1, keepdim=True)
    return table / torch.where(norms > 0, norms, torch.ones_like(norms))


def _check_same_items(first: SemanticIds, second: SemanticIds) -> None:
    if len(first) != len(second) or first.levels != second.levels:
        raise DataError(f"codes of {len(first)} items x {first.levels} levels vs {len(second)} x "
                        f"{second.levels}", where="second",
                        fix="encode the same items with two tokenizers of the same depth")
