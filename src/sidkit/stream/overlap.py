"""The expected codeword overlap O_pi from chunks of items, in memory that grows with symbols, not items.

:func:`sidkit.diagnostics.overlap.overlap_sweep` holds all N embeddings and a per-item count. Here
each symbol set (a level's codes, or a prefix depth) keeps only

    n_a    items whose symbol is a,
    c_am   perturbed draws of those items that landed on symbol m (a sparse table; c_aa = stays),

which add up across chunks and across workers (:meth:`OverlapAccumulator.merge`). With S draws per
item and N items, pi_a = n_a / N and M_am = c_am / (S n_a), so

    O_pi = sum_m ( sum_a pi_a sqrt(M_am) )^2 = sum_m ( sum_a sqrt(n_a c_am) )^2 / (S N^2),
    flip rate = 1 - sum_a c_aa / (S N).

:func:`stream_overlap_sweep` draws the noise in the same blocks, from the same generator, as
``overlap_sweep``, so on the same rows it gives the same report (up to float64 summation order).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import numpy as np
import torch

from sidkit.diagnostics.overlap import (
    DEFAULT_RHOS,
    PERTURBED_ROWS,
    By,
    OverlapReport,
    OverlapSweep,
    SymbolOverlap,
    overlap_stats,
)
from sidkit.errors import ConfigError, DataError, SidkitError
from sidkit.ids import SemanticIds
from sidkit.progress import Bar
from sidkit.stream.source import EmbeddingSource, open_embeddings
from sidkit.tokenizers.base import Tokenizer

_RMS_CHUNK_ROWS = 1 << 16  # the chunking of overlap_sweep's sigma, so both give the same float64 sums
_PAIR_KEY_LIMIT = 3_037_000_499  # span^2 < 2^63


class OverlapAccumulator:
    """Confusion counts of one noise level for every symbol set; ``update`` ... ``finalize``.

    Args:
        sizes: codebook sizes, length L.
        samples: noise draws S per item.
        by: "level", "depth" or both.
    """

    def __init__(self, sizes: Sequence[int], samples: int, by: By | Sequence[By] = ("level", "depth")) -> None:
        self.sizes = tuple(int(size) for size in sizes)
        if isinstance(samples, bool) or not isinstance(samples, (int, np.integer)) or samples < 1:
            raise ConfigError(f"samples must be a positive integer, got {samples!r}", where="samples")
        self.samples = int(samples)
        kinds = (by,) if isinstance(by, str) else tuple(by)
        if not kinds or any(kind not in ("level", "depth") for kind in kinds):
            raise ConfigError(f"by must be 'level', 'depth' or both, got {by!r}", where="by")
        self.symbol_sets = [("level", level) for level in range(len(self.sizes)) if "level" in kinds]
        self.symbol_sets += [("depth", depth) for depth in range(1, len(self.sizes) + 1) if "depth" in kinds]
        self.num_items = 0
        self._items: list[list[tuple[np.ndarray, np.ndarray]]] = [[] for _ in self.symbol_sets]
        self._pairs: list[list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = [[] for _ in self.symbol_sets]
        self._finalized = False

    def update(self, codes: np.ndarray, perturbed: np.ndarray) -> OverlapAccumulator:
        """Add B items: ``codes`` (B, L) and ``perturbed`` (S * B, L), row s * B + i = draw s of item i."""
        if self._finalized:
            raise SidkitError("this OverlapAccumulator was already finalized", where="OverlapAccumulator.update",
                              fix="start a new accumulator for more items")
        original = SemanticIds(np.asarray(codes), self.sizes)
        moved = SemanticIds(np.asarray(perturbed), self.sizes)
        b = len(original)
        if len(moved) != self.samples * b:
            raise DataError(f"{len(moved)} perturbed rows for {b} items and {self.samples} draws",
                            where="OverlapAccumulator.update", fix="pass S * B rows, draw by draw")
        for index, (kind, position) in enumerate(self.symbol_sets):
            source = _symbol_keys(original, kind, position)
            target = _symbol_keys(moved, kind, position).reshape(self.samples, b)
            symbols, counts = np.unique(source, return_counts=True)
            self._items[index].append((symbols, counts.astype(np.int64)))
            self._pairs[index].append(_count_pairs(np.tile(source, self.samples), target.reshape(-1)))
            if len(self._pairs[index]) > 64:  # keep the pending tables few and deduplicated
                self._pairs[index] = [_merge_pairs(self._pairs[index])]
                self._items[index] = [_merge_items(self._items[index])]
        self.num_items += b
        return self

    def merge(self, other: OverlapAccumulator) -> OverlapAccumulator:
        """Add ``other``'s counts (same sizes, samples and symbol sets) into this accumulator."""
        if (other.sizes, other.samples, other.symbol_sets) != (self.sizes, self.samples, self.symbol_sets):
            raise DataError("cannot merge overlap counts of different sizes, samples or symbol sets",
                            where="OverlapAccumulator.merge", fix="merge accumulators built alike")
        for index in range(len(self.symbol_sets)):
            self._items[index] += other._items[index]
            self._pairs[index] += other._pairs[index]
        self.num_items += other.num_items
        return self

    def finalize(self, rho: float, sigma: float) -> OverlapReport:
        """The empirical report at noise level ``rho`` (input-space standard deviation ``sigma``)."""
        if self.num_items == 0:
            raise DataError("no items were added", where="OverlapAccumulator.finalize",
                            fix="call update() with at least one item first")
        self._finalized = True
        n, samples = self.num_items, self.samples
        entries: dict[str, list[SymbolOverlap]] = {"level": [], "depth": []}
        for index, (kind, position) in enumerate(self.symbol_sets):
            symbols, counts = _merge_items(self._items[index])
            src, dst, pair_counts = _merge_pairs(self._pairs[index])
            item_counts = counts[np.searchsorted(symbols, src)].astype(np.float64)
            columns, column_of = np.unique(dst, return_inverse=True)
            sums = np.bincount(column_of.reshape(-1), weights=np.sqrt(item_counts * pair_counts),
                               minlength=len(columns))
            overlap = float(sums @ sums) / (samples * float(n) * float(n))
            stays = float(pair_counts[src == dst].sum())
            nominal = self.sizes[position] if kind == "level" else min(n, math.prod(self.sizes[:position]))
            stats = overlap_stats(overlap, counts / n, nominal)
            entries[kind].append(SymbolOverlap(kind, position, stats, 1.0 - stays / (samples * n), len(symbols)))
        return OverlapReport("empirical", float(rho), float(sigma), samples, n, tuple(entries["level"]),
                             tuple(entries["depth"]))


def stream_overlap_sweep(tokenizer: Tokenizer, source: EmbeddingSource | str | os.PathLike[str],
                         rhos: Sequence[float] = DEFAULT_RHOS, samples: int = 8, *,
                         by: By | Sequence[By] = ("level", "depth"), seed: int = 0,
                         progress: bool | None = None) -> OverlapSweep:
    """``overlap_sweep`` over a source read in chunks: two passes for sigma, one to perturb and encode.

    Memory: one block of ``PERTURBED_ROWS`` perturbed rows, plus the sparse counts.
    """
    reader = source if isinstance(source, EmbeddingSource) else open_embeddings(source)
    if reader.dim != tokenizer.dim:
        raise DataError(f"embeddings have dimension {reader.dim}, the tokenizer was fitted on {tokenizer.dim}",
                        where=str(reader.path), fix="use the embeddings the tokenizer was fitted for")
    rho_values = [float(rho) for rho in rhos]
    if not rho_values or any(not (rho >= 0) or math.isinf(rho) for rho in rho_values):
        raise ConfigError(f"rhos must be finite numbers >= 0, got {list(rhos)!r}", where="rhos")
    accumulators = [OverlapAccumulator(tokenizer.codebook_sizes, samples, by) for _ in rho_values]
    scale = centred_rms(reader)
    generator = torch.Generator(device=tokenizer.device).manual_seed(int(seed))
    with Bar("overlap", reader.num_rows, enabled=progress, rate_unit="rows") as bar:
        for chunk in reader.chunks(max(1, PERTURBED_ROWS // samples)):
            block = torch.from_numpy(chunk.embeddings).to(tokenizer.device)
            codes = tokenizer.encode(block).codes
            repeated = block.repeat(samples, 1)  # row s * B + i is draw s of item i
            noise = torch.randn(repeated.shape, generator=generator, device=tokenizer.device)
            for rho, accumulator in zip(rho_values, accumulators, strict=True):
                perturbed = torch.add(repeated, noise, alpha=rho * scale)
                accumulator.update(codes, tokenizer.encode(perturbed).codes)
            bar.advance(len(chunk))
    return OverlapSweep(tuple(accumulator.finalize(rho, rho * scale)
                              for rho, accumulator in zip(rho_values, accumulators, strict=True)))


def centred_rms(source: EmbeddingSource) -> float:
    """sqrt(sum_i ||x_i - mean||^2 / (N D)) over a source: two float64 passes (no cancellation)."""
    total = np.zeros(source.dim)
    for chunk in source.chunks(_RMS_CHUNK_ROWS):
        total += chunk.embeddings.astype(np.float64).sum(axis=0)
    mean = total / source.num_rows
    squares = 0.0
    for chunk in source.chunks(_RMS_CHUNK_ROWS):
        block = chunk.embeddings.astype(np.float64) - mean
        squares += float(np.einsum("ij,ij->", block, block))
    return math.sqrt(squares / (source.num_rows * source.dim))


def _symbol_keys(ids: SemanticIds, kind: str, position: int) -> np.ndarray:
    return ids.codes[:, position] if kind == "level" else ids.prefix_keys(position)


def _count_pairs(source: np.ndarray, target: np.ndarray,
                 weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct (source, target) pairs, sorted, with their counts (summed ``weights``)."""
    span = int(max(source.max(), target.max())) + 1 if len(source) else 1
    if span <= _PAIR_KEY_LIMIT:  # one int64 key per pair: a plain sort
        keys, inverse = np.unique(source * span + target, return_inverse=True)
        first, second = keys // span, keys % span
    else:
        pairs, inverse = np.unique(np.stack([source, target], axis=1), axis=0, return_inverse=True)
        first, second = pairs[:, 0].copy(), pairs[:, 1].copy()
    counts = np.bincount(inverse.reshape(-1), weights=weights, minlength=len(first))
    return first, second, np.rint(counts).astype(np.int64)


def _merge_pairs(parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray,
                                                                                    np.ndarray]:
    if len(parts) == 1:
        return parts[0]
    return _count_pairs(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]),
                        np.concatenate([p[2] for p in parts]).astype(np.float64))


def _merge_items(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    if len(parts) == 1:
        return parts[0]
    symbols, inverse = np.unique(np.concatenate([p[0] for p in parts]), return_inverse=True)
    counts = np.bincount(inverse.reshape(-1), weights=np.concatenate([p[1] for p in parts]).astype(np.float64),
                         minlength=len(symbols))
    return symbols, np.rint(counts).astype(np.int64)
