"""Reconstruction quality: how far each item's decoded embedding x^_i lies from its input x_i.

Over items i = 1..N (docs/diagnostics.md, "Reconstruction"):

- mse = mean_i ||x_i - x^_i||^2: squared L2 distance summed over the D dimensions, then averaged
  over items (not over N * D entries, so it is D times the elementwise mean squared error).
- relative_error = mean_i ||x_i - x^_i||^2 / ||x_i||^2: the error as a share of each item's
  energy; 0 for a perfect reconstruction, 1 for reconstructing every item as zero.
- cosine = mean_i cos(x_i, x^_i); a zero x^_i counts as cosine 0 (it points nowhere).

Rows of X with zero norm are refused: their relative error and cosine are undefined.
Work goes in chunks of rows, so X and X^ may be memory-mapped arrays larger than memory.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from sidkit.errors import DataError, SidkitError

# Sums run over fixed blocks of rows, so a result does not depend on how the rows were chunked.
BLOCK_ROWS = 1 << 16
# Rows per chunk in the one-shot function: about 32 MB of float64 per array.
CHUNK_VALUES = 1 << 22


@dataclass(frozen=True)
class ReconstructionReport:
    """Mean squared L2 error, mean relative error and mean cosine over the items."""

    mse: float
    relative_error: float
    cosine: float

    def to_dict(self) -> dict[str, float]:
        return {"mse": self.mse, "relative_error": self.relative_error, "cosine": self.cosine}


class ReconstructionAccumulator:
    """Streaming reconstruction report: ``update(X_chunk, X_hat_chunk) ... finalize()``.

    Gives the same numbers, bit for bit, as :func:`reconstruction_report` on the concatenated
    rows, however they were chunked: per-row values are summed over fixed blocks of
    ``BLOCK_ROWS`` rows, and the block sums are added exactly (``math.fsum``).
    """

    def __init__(self) -> None:
        self.num_items = 0
        self.dim: int | None = None
        self._pending: list[np.ndarray] = []  # (n, 3) per-row error, relative error, cosine
        self._pending_rows = 0
        self._block_sums: list[np.ndarray] = []
        self._report: ReconstructionReport | None = None

    def update(self, X: Any, X_hat: Any) -> ReconstructionAccumulator:
        """Add matching chunks: X (n, D) inputs and X_hat (n, D) reconstructions."""
        if self._report is not None:
            raise SidkitError("this ReconstructionAccumulator was already finalized",
                              where="ReconstructionAccumulator.update",
                              fix="start a new ReconstructionAccumulator for more rows")
        x = _as_rows(X, "X")
        x_hat = _as_rows(X_hat, "X_hat")
        if x.shape != x_hat.shape:
            raise DataError(f"X has shape {x.shape} but X_hat has {x_hat.shape}", where="X_hat",
                            fix="pass the reconstruction of exactly these rows, one per input row")
        if self.dim is not None and x.shape[1] != self.dim:
            raise DataError(f"chunk has dimension {x.shape[1]}, earlier chunks {self.dim}", where="X")
        self.dim = x.shape[1]
        if len(x) == 0:
            return self
        _check_finite(x, "X", self.num_items)
        _check_finite(x_hat, "X_hat", self.num_items)
        self._pending.append(_row_values(x, x_hat, self.num_items))
        self._pending_rows += len(x)
        self.num_items += len(x)
        if self._pending_rows >= BLOCK_ROWS:
            rows = np.concatenate(self._pending)
            full = len(rows) - len(rows) % BLOCK_ROWS
            for start in range(0, full, BLOCK_ROWS):
                self._block_sums.append(rows[start:start + BLOCK_ROWS].sum(axis=0))
            self._pending = [rows[full:]]
            self._pending_rows = len(rows) - full
        return self

    def finalize(self) -> ReconstructionReport:
        """The report over every row passed to :meth:`update`; later updates are refused."""
        if self._report is None:
            if self.num_items == 0:
                raise DataError("no rows were added", where="ReconstructionAccumulator.finalize",
                                fix="call update() with at least one row first")
            sums = list(self._block_sums)
            if self._pending_rows:
                sums.append(np.concatenate(self._pending).sum(axis=0))
            totals = [math.fsum(float(block[column]) for block in sums) for column in range(3)]
            self._report = ReconstructionReport(mse=totals[0] / self.num_items,
                                                relative_error=totals[1] / self.num_items,
                                                cosine=totals[2] / self.num_items)
        return self._report


def reconstruction_report(X: Any, X_hat: Any, *, chunk_rows: int | None = None) -> ReconstructionReport:
    """MSE, relative error and mean cosine of X_hat (N, D) against X (N, D).

    Both may be memory-mapped; they are read ``chunk_rows`` rows at a time (default: about 4M
    values per chunk).

    Raises:
        DataError: shapes differ, an input is not 2-d numeric, holds NaN/inf, or X has a zero row.
    """
    x_shape, x_hat_shape = tuple(np.shape(X)), tuple(np.shape(X_hat))
    if x_shape != x_hat_shape:
        raise DataError(f"X has shape {x_shape} but X_hat has {x_hat_shape}", where="X_hat",
                        fix="pass the reconstruction of exactly these rows, one per input row")
    if len(x_shape) != 2:
        raise DataError(f"X must be 2-d (items, dimensions), got shape {x_shape}", where="X")
    rows = chunk_rows or max(1, CHUNK_VALUES // max(1, x_shape[1]))
    accumulator = ReconstructionAccumulator()
    for start in range(0, x_shape[0], rows):
        accumulator.update(X[start:start + rows], X_hat[start:start + rows])
    return accumulator.finalize()


def _as_rows(values: Any, where: str) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 2:
        raise DataError(f"{where} must be 2-d (items, dimensions), got shape {array.shape}", where=where)
    if array.dtype.kind not in "iuf":
        raise DataError(f"{where} must be numeric, got dtype {array.dtype}", where=where)
    # float64 and C order: sums are accurate, and each row is reduced the same way in any chunk.
    return np.ascontiguousarray(array, dtype=np.float64)


def _check_finite(array: np.ndarray, where: str, offset: int) -> None:
    bad = ~np.isfinite(array).all(axis=1)
    if bad.any():
        rows = np.flatnonzero(bad)
        raise DataError(f"{len(rows)} rows hold NaN or inf, first at row {offset + int(rows[0])}", where=where,
                        fix="drop those items or fix the model that produced them")


def _row_values(x: np.ndarray, x_hat: np.ndarray, offset: int) -> np.ndarray:
    """(n, 3): squared error, relative error, cosine of each row."""
    diff = x - x_hat
    error = (diff * diff).sum(axis=1)
    norm_x = (x * x).sum(axis=1)
    norm_x_hat = (x_hat * x_hat).sum(axis=1)
    zero = norm_x == 0
    if zero.any():
        raise DataError(f"{int(zero.sum())} rows of X are all zero, first at row "
                        f"{offset + int(np.flatnonzero(zero)[0])}: their relative error and cosine "
                        "are undefined", where="X", fix="drop items whose embedding is zero")
    denominator = np.sqrt(norm_x) * np.sqrt(norm_x_hat)
    dot = (x * x_hat).sum(axis=1)
    cosine = np.divide(dot, denominator, out=np.zeros_like(dot), where=denominator > 0)
    return np.column_stack([error, error / norm_x, cosine])
