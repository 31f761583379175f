"""Shared checks for the data model: each failure names the problem, the column, and the fix."""

from __future__ import annotations

import numpy as np

from sidkit.errors import DataError


def as_id_array(values: object, *, where: str) -> np.ndarray:
    """Return ids as a 1-d int64 or unicode array; reject floats, objects of mixed type, and NaN."""
    try:
        array = np.asarray(values)
    except OverflowError:  # Python ints past 64 bits
        array = np.asarray(values, dtype=object)
    if array.ndim != 1:
        raise DataError(f"ids must be one-dimensional, got shape {array.shape}", where=where,
                        fix="pass a flat list or array of ids")
    if array.size == 0 or array.dtype.kind == "i":
        return array.astype(np.int64, copy=False)
    if array.dtype.kind == "u":
        _check_int64_range(int(array.max()), int(array.min()), where=where)
        return array.astype(np.int64)
    if array.dtype.kind in "US":
        return array.astype(str)
    if array.dtype.kind == "O":
        if all(isinstance(v, str) for v in array.tolist()):
            return array.astype(str)
        if all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in array.tolist()):
            _check_int64_range(max(array.tolist()), min(array.tolist()), where=where)
            return array.astype(np.int64)
    whole = array.dtype.kind == "f" and np.all(np.isfinite(array)) and np.all(array == np.round(array))
    if whole:
        _check_int64_range(float(array.max()), float(array.min()), where=where)
        return array.astype(np.int64)
    raise DataError(f"ids must be integers or strings, got dtype {array.dtype}", where=where,
                    fix="convert the id column to int64 or string")


INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def _check_int64_range(high: float, low: float, *, where: str) -> None:
    if high > INT64_MAX or low < INT64_MIN:
        shown = high if high > INT64_MAX else low
        raise DataError(f"id {int(shown)} is outside the 64-bit integer range [-2^63, 2^63 - 1]", where=where,
                        fix="store such ids as strings, or renumber them")


def check_length(array: np.ndarray, expected: int, *, where: str, against: str) -> None:
    if len(array) != expected:
        raise DataError(f"length {len(array)} does not match {against} length {expected}", where=where,
                        fix="make every column the same length (one value per row)")


def check_not_empty(n: int, *, where: str) -> None:
    if n == 0:
        raise DataError("no rows", where=where, fix="pass at least one row")


def check_unique(ids: np.ndarray, *, where: str) -> None:
    unique, counts = np.unique(ids, return_counts=True)
    if len(unique) != len(ids):
        dupes = unique[counts > 1][:5].tolist()
        raise DataError(f"{len(ids) - len(unique)} duplicate item ids, for example {dupes}", where=where,
                        fix="keep one row per item id")


def check_finite(array: np.ndarray, *, where: str, offset: int = 0) -> None:
    """Check for NaN/inf in chunks so a memory-mapped array is never loaded whole; ``offset`` is the
    row number of ``array[0]`` in the error message."""
    chunk = max(1, (1 << 24) // max(1, int(np.prod(array.shape[1:]))))
    for start in range(0, len(array), chunk):
        block = np.asarray(array[start:start + chunk])
        if not np.all(np.isfinite(block)):
            bad_rows = np.where(~np.isfinite(block).reshape(len(block), -1).all(axis=1))[0] + start + offset
            raise DataError(f"{len(bad_rows)}+ rows hold NaN or inf, first at row {int(bad_rows[0])}",
                            where=where, fix="drop or re-embed those rows; embeddings must be finite")


#: Largest squared row norm accepted in embeddings: squared distances computed in float32 (||x||^2 +
#: ||c||^2 - 2 x.c) must stay far below float32's maximum (3.4e38), or they overflow to inf / NaN.
MAX_SQUARED_NORM = 1e36
_FAST_LIMIT = 1e15  # below this, no row of a realistic width can reach MAX_SQUARED_NORM


def check_embedding_values(array: np.ndarray, *, where: str) -> None:
    """Embeddings must be finite and of a scale that float32 arithmetic holds; checked in chunks,
    so a memory-mapped array is never loaded whole. The error names the first offending rows."""
    width = max(1, int(np.prod(array.shape[1:])))
    chunk = max(1, (1 << 24) // width)
    for start in range(0, len(array), chunk):
        block = np.asarray(array[start:start + chunk])
        if block.size == 0 or block.dtype.kind not in "fiu":
            continue
        high, low = block.max(), block.min()  # NaN and inf show in these without a mask per value
        if block.dtype.kind == "f" and not (np.isfinite(high) and np.isfinite(low)):
            check_finite(block, where=where, offset=start)
        if max(abs(float(high)), abs(float(low))) > _FAST_LIMIT / np.sqrt(width):
            norms = np.square(block.reshape(len(block), -1), dtype=np.float64).sum(axis=1)
            big = np.flatnonzero(norms > MAX_SQUARED_NORM)
            if len(big):
                rows = ", ".join(str(int(row) + start) for row in big[:5])
                raise DataError(f"{len(big)}{'+' if start + chunk < len(array) else ''} rows have values too large "
                                f"for float32 arithmetic (squared norm up to {norms[big].max():.2g}), e.g. rows "
                                f"{rows}", where=where, fix="rescale the embeddings (e.g. normalize each row to "
                                "unit length) or drop those rows")


def check_numeric(array: np.ndarray, *, where: str) -> None:
    if array.dtype.kind not in "iuf":
        raise DataError(f"expected numbers, got dtype {array.dtype}", where=where,
                        fix="convert the column to a numeric type")
