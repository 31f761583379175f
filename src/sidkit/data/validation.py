"""Shared checks for the data model: each failure names the problem, the column, and the fix."""

from __future__ import annotations

import numpy as np

from sidkit.errors import DataError


def as_id_array(values: object, *, where: str) -> np.ndarray:
    """Return ids as a 1-d int64 or unicode array; reject floats, objects of mixed type, and NaN."""
    array = np.asarray(values)
    if array.ndim != 1:
        raise DataError(f"ids must be one-dimensional, got shape {array.shape}", where=where,
                        fix="pass a flat list or array of ids")
    if array.size == 0 or array.dtype.kind in "iu":
        return array.astype(np.int64, copy=False)
    if array.dtype.kind in "US":
        return array.astype(str)
    if array.dtype.kind == "O":
        if all(isinstance(v, str) for v in array.tolist()):
            return array.astype(str)
        if all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in array.tolist()):
            return array.astype(np.int64)
    whole = array.dtype.kind == "f" and np.all(np.isfinite(array)) and np.all(array == np.round(array))
    if whole:
        return array.astype(np.int64)
    raise DataError(f"ids must be integers or strings, got dtype {array.dtype}", where=where,
                    fix="convert the id column to int64 or string")


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


def check_finite(array: np.ndarray, *, where: str) -> None:
    """Check for NaN/inf in chunks so a memory-mapped array is never loaded whole."""
    chunk = max(1, (1 << 24) // max(1, int(np.prod(array.shape[1:]))))
    for start in range(0, len(array), chunk):
        block = np.asarray(array[start:start + chunk])
        if not np.all(np.isfinite(block)):
            bad_rows = np.where(~np.isfinite(block).reshape(len(block), -1).all(axis=1))[0] + start
            raise DataError(f"{len(bad_rows)}+ rows hold NaN or inf, first at row {int(bad_rows[0])}",
                            where=where, fix="drop or re-embed those rows; embeddings must be finite")


def check_numeric(array: np.ndarray, *, where: str) -> None:
    if array.dtype.kind not in "iuf":
        raise DataError(f"expected numbers, got dtype {array.dtype}", where=where,
                        fix="convert the column to a numeric type")
