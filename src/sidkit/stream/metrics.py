"""Usage and reconstruction metrics from chunks, as partial states that merge in any order.

Each chunk (or each worker of a distributed run) turns its rows into a partial; partials merge by
adding counts and sums, and the merged partial gives the same :class:`UsageReport` as
``usage_report`` on all rows (exactly: it is integer counting) and a :class:`ReconstructionReport`
equal to ``reconstruction_report`` up to float64 rounding of the sums (about 1e-15 relative).

:func:`stream_diagnose` runs the local path over an embedding source with sidkit's own streaming
accumulators, so its result equals :func:`sidkit.diagnostics.basic.basic_diagnostics` exactly.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from sidkit.diagnostics.basic import BasicDiagnostics
from sidkit.diagnostics.reconstruction import ReconstructionAccumulator, ReconstructionReport
from sidkit.diagnostics.usage import UsageAccumulator, UsageReport, level_usage, sid_usage
from sidkit.errors import DataError
from sidkit.ids import UINT64_BITS, SemanticIds
from sidkit.progress import Bar
from sidkit.stream.source import DEFAULT_CHUNK_ROWS, EmbeddingSource, check_chunk_rows, open_embeddings
from sidkit.tokenizers.base import Tokenizer


@dataclass(frozen=True, eq=False)
class UsagePartial:
    """Code counts of some items: enough to merge with others and report usage of the union.

    Attributes:
        sizes: codebook size per level, length L.
        level_counts: per level, (K_l,) int64 items per code.
        sid_keys: (U,) sorted distinct full-SID keys (packed uint64 when the bits fit, else row bytes).
        sid_counts: (U,) int64 items per key.
        num_items: items counted.
    """

    sizes: tuple[int, ...]
    level_counts: tuple[np.ndarray, ...]
    sid_keys: np.ndarray
    sid_counts: np.ndarray
    num_items: int

    @classmethod
    def from_codes(cls, codes: np.ndarray | SemanticIds, sizes: Sequence[int] | None = None) -> UsagePartial:
        """The partial of (n, L) codes (SemanticIds, or an int array with ``sizes``)."""
        if isinstance(codes, SemanticIds):
            ids = codes
        elif sizes is None:
            raise DataError("an integer code array needs its codebook sizes", where="UsagePartial.from_codes",
                            fix="pass sizes=tokenizer.codebook_sizes, or SemanticIds")
        else:
            ids = SemanticIds(np.asarray(codes), tuple(sizes))
        counts = tuple(np.bincount(ids.codes[:, level], minlength=size).astype(np.int64)
                       for level, size in enumerate(ids.sizes))
        keys, key_counts = np.unique(sid_keys(ids), return_counts=True)
        return cls(ids.sizes, counts, keys, key_counts.astype(np.int64), len(ids))

    def merge(self, *others: UsagePartial) -> UsagePartial:
        """The partial of this partial's items and every other's."""
        return merge_usage([self, *others])

    def report(self) -> UsageReport:
        """Usage of each level and of the full SID over the items counted."""
        if self.num_items == 0:
            raise DataError("no items were counted", where="UsagePartial.report", fix="count at least one item")
        levels = tuple(level_usage(counts, level) for level, counts in enumerate(self.level_counts))
        return UsageReport(levels=levels, sid=sid_usage(self.sid_counts), num_items=self.num_items)


def merge_usage(partials: Iterable[UsagePartial]) -> UsagePartial:
    """Merge any number of usage partials at once (one sort of all their keys)."""
    parts = list(partials)
    if not parts:
        raise DataError("nothing to merge", where="merge_usage", fix="pass at least one UsagePartial")
    sizes = parts[0].sizes
    for part in parts[1:]:
        if part.sizes != sizes:
            raise DataError(f"cannot merge usage of sizes {part.sizes} into {sizes}", where="merge_usage",
                            fix="merge only partials of one tokenizer")
    counts = tuple(np.asarray(np.sum([part.level_counts[level] for part in parts], axis=0), dtype=np.int64)
                   for level in range(len(sizes)))
    keys, inverse = np.unique(np.concatenate([part.sid_keys for part in parts]), return_inverse=True)
    key_counts = np.bincount(inverse.reshape(-1), weights=np.concatenate([part.sid_counts for part in parts]),
                             minlength=len(keys))
    return UsagePartial(sizes, counts, keys, np.rint(key_counts).astype(np.int64),
                        sum(part.num_items for part in parts))


@dataclass(frozen=True)
class ReconstructionPartial:
    """Sums over some rows of the squared error, relative error and cosine (docs/diagnostics.md)."""

    squared_error: float
    relative_error: float
    cosine: float
    num_items: int

    @classmethod
    def from_rows(cls, x: np.ndarray, x_hat: np.ndarray) -> ReconstructionPartial:
        """The sums over (n, D) inputs ``x`` and reconstructions ``x_hat`` (through the streaming accumulator,
        so zero rows and NaN are refused exactly as there)."""
        if len(x) == 0:
            return cls(0.0, 0.0, 0.0, 0)
        report = ReconstructionAccumulator().update(x, x_hat).finalize()
        n = len(x)
        return cls(report.mse * n, report.relative_error * n, report.cosine * n, n)

    def merge(self, *others: ReconstructionPartial) -> ReconstructionPartial:
        return merge_reconstruction([self, *others])

    def report(self) -> ReconstructionReport:
        if self.num_items == 0:
            raise DataError("no rows were counted", where="ReconstructionPartial.report",
                            fix="count at least one row")
        n = self.num_items
        return ReconstructionReport(mse=self.squared_error / n, relative_error=self.relative_error / n,
                                    cosine=self.cosine / n)


def merge_reconstruction(partials: Iterable[ReconstructionPartial]) -> ReconstructionPartial:
    """Merge reconstruction partials; sums are added exactly (``math.fsum``), so order does not matter."""
    parts = list(partials)
    return ReconstructionPartial(math.fsum(p.squared_error for p in parts), math.fsum(p.relative_error for p in parts),
                                 math.fsum(p.cosine for p in parts), sum(p.num_items for p in parts))


def stream_diagnose(tokenizer: Tokenizer, source: EmbeddingSource | str | os.PathLike[str], *,
                    chunk_rows: int = DEFAULT_CHUNK_ROWS, progress: bool | None = None) -> BasicDiagnostics:
    """Usage and reconstruction of ``tokenizer`` over every row of ``source``, one chunk in memory at a time.

    Equals ``basic_diagnostics(tokenizer, X)`` on the same rows exactly.
    """
    reader = source if isinstance(source, EmbeddingSource) else open_embeddings(source)
    if reader.dim != tokenizer.dim:
        raise DataError(f"embeddings have dimension {reader.dim}, the tokenizer was fitted on {tokenizer.dim}",
                        where=str(reader.path), fix="use the embeddings the tokenizer was fitted for")
    usage = UsageAccumulator(tokenizer.codebook_sizes)
    recon = ReconstructionAccumulator()
    with Bar("diagnose", reader.num_rows, enabled=progress, rate_unit="rows") as bar:
        for chunk in reader.chunks(check_chunk_rows(chunk_rows)):
            ids = tokenizer.encode(chunk.embeddings, batch_size=chunk_rows)
            usage.update(ids)
            recon.update(chunk.embeddings, tokenizer.decode(ids, batch_size=chunk_rows))
            bar.advance(len(chunk))
    return BasicDiagnostics(usage.finalize(), recon.finalize())


def sid_keys(ids: SemanticIds) -> np.ndarray:
    """(n,) keys equal iff full SIDs are equal: packed uint64 when the bits fit, else the rows' bytes."""
    if sum(ids.bits_per_level) <= UINT64_BITS:
        return ids.pack()
    rows = np.ascontiguousarray(ids.codes)
    return rows.view(np.dtype((np.void, rows.itemsize * rows.shape[1]))).reshape(-1)
