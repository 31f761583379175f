"""The expected codeword overlap O_pi from chunks of items, in memory that grows with symbols, not items.

:func:`sidkit.diagnostics.overlap.overlap_sweep` holds all N embeddings. Here each symbol set (a
level's codes, or a prefix depth) keeps only the mergeable counts of
:class:`sidkit.diagnostics.overlap_counts.OverlapCounts`: items per symbol, draws that kept their
symbol per symbol and draw group, the sparse (symbol, perturbed symbol, group) counts of the draws
that changed, and a (G, G) table of same-item agreements. They add up across chunks and across
workers (:meth:`OverlapAccumulator.merge`), and give O_pi, K_eff and the flip rate with their
jackknife standard errors.

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
    DEFAULT_SAMPLES,
    PERTURBED_ROWS,
    By,
    OverlapReport,
    OverlapSweep,
    report_from_counts,
    symbol_keys,
)
from sidkit.diagnostics.overlap_counts import OverlapCounts
from sidkit.errors import ConfigError, DataError, SidkitError
from sidkit.ids import SemanticIds
from sidkit.progress import Bar
from sidkit.stream.source import EmbeddingSource, open_embeddings
from sidkit.tokenizers.base import Tokenizer

_RMS_CHUNK_ROWS = 1 << 16  # the chunking of overlap_sweep's sigma, so both give the same float64 sums


class OverlapAccumulator:
    """Overlap counts of one noise level for every symbol set; ``update`` ... ``finalize``.

    Args:
        sizes: codebook sizes, length L.
        samples: noise draws S per item (at least 3).
        by: "level", "depth" or both.
    """

    def __init__(self, sizes: Sequence[int], samples: int = DEFAULT_SAMPLES,
                 by: By | Sequence[By] = ("level", "depth")) -> None:
        self.sizes = tuple(int(size) for size in sizes)
        kinds = (by,) if isinstance(by, str) else tuple(by)
        if not kinds or any(kind not in ("level", "depth") for kind in kinds):
            raise ConfigError(f"by must be 'level', 'depth' or both, got {by!r}", where="by")
        self.symbol_sets = [("level", level) for level in range(len(self.sizes)) if "level" in kinds]
        self.symbol_sets += [("depth", depth) for depth in range(1, len(self.sizes) + 1) if "depth" in kinds]
        self._counts = [OverlapCounts(samples) for _ in self.symbol_sets]
        self.samples = self._counts[0].samples
        self.num_items = 0
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
        for (kind, position), counts in zip(self.symbol_sets, self._counts, strict=True):
            target = symbol_keys(moved, kind, position).reshape(self.samples, b)
            counts.add(symbol_keys(original, kind, position), target)
        self.num_items += b
        return self

    def merge(self, other: OverlapAccumulator) -> OverlapAccumulator:
        """Add ``other``'s counts (same sizes, samples and symbol sets) into this accumulator."""
        if (other.sizes, other.samples, other.symbol_sets) != (self.sizes, self.samples, self.symbol_sets):
            raise DataError("cannot merge overlap counts of different sizes, samples or symbol sets",
                            where="OverlapAccumulator.merge", fix="merge accumulators built alike")
        for mine, theirs in zip(self._counts, other._counts, strict=True):
            mine.merge(theirs)
        self.num_items += other.num_items
        return self

    def finalize(self, rho: float, sigma: float) -> OverlapReport:
        """The empirical report at noise level ``rho`` (input-space standard deviation ``sigma``)."""
        if self.num_items == 0:
            raise DataError("no items were added", where="OverlapAccumulator.finalize",
                            fix="call update() with at least one item first")
        self._finalized = True
        return report_from_counts(rho, sigma, self.num_items, self.sizes, self.symbol_sets, self._counts)


def stream_overlap_sweep(tokenizer: Tokenizer, source: EmbeddingSource | str | os.PathLike[str],
                         rhos: Sequence[float] = DEFAULT_RHOS, samples: int = DEFAULT_SAMPLES, *,
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
