"""``.npy`` embedding files checked where they enter: header, dtype, shape, and size against the header.

A truncated file, or one whose header claims more (or fewer) rows than its bytes hold, is refused
with the numbers, before anything maps or reads its data.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sidkit.errors import DataError

_FIX = "save embeddings with numpy.save(path, np.ascontiguousarray(x, dtype=np.float32)) as an (N, D) array"


@dataclass(frozen=True)
class NpyHeader:
    """What a checked ``.npy`` file holds: a C-ordered (rows, dim) numeric array at ``offset``."""

    shape: tuple[int, int]
    dtype: np.dtype
    offset: int


def read_npy_header(path: str | os.PathLike[str]) -> NpyHeader:
    """The header of the embeddings file ``path``, checked against the file's size.

    Raises:
        DataError: not a readable ``.npy`` file; not a 2-d array of numbers; Fortran order; no rows or
            no columns; a file size other than the header says (truncated, or bytes to spare).
    """
    target = Path(path)
    try:
        with open(target, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape, fortran, dtype = read_header(handle, max_header_size=1 << 20)
            offset = handle.tell()
            size = os.fstat(handle.fileno()).st_size
    except (ValueError, OSError, EOFError, SyntaxError) as error:
        if isinstance(error, OSError) and error.errno is not None:
            raise  # the file system's failure (permissions...), reported as such
        problem = "the file is empty" if target.is_file() and target.stat().st_size == 0 else str(error)
        raise DataError(f"cannot read {target.name} as a .npy array: {problem}"[:300], where=str(target),
                        fix=_FIX) from None
    if len(shape) != 2:
        raise DataError(f"{target.name} holds an array of shape {shape}, not (items, dim)", where=str(target),
                        fix=_FIX)
    if dtype.hasobject or dtype.fields is not None or dtype.kind not in "fiu":
        raise DataError(f"{target.name} holds {dtype} values, not numbers", where=str(target), fix=_FIX)
    if fortran:
        raise DataError(f"{target.name} is stored in Fortran (column-major) order, not C-ordered", where=str(target),
                        fix=_FIX)
    rows, dim = int(shape[0]), int(shape[1])
    if rows == 0 or dim == 0:
        raise DataError(f"{target.name} has shape {shape}: no embeddings", where=str(target),
                        fix="write at least one row of at least one value")
    expected = offset + rows * dim * dtype.itemsize
    if size != expected:
        held = (size - offset) // max(1, dim * dtype.itemsize)
        kind = "truncated" if size < expected else "longer than its header says"
        raise DataError(f"{target.name} is {kind}: its header says {rows} x {dim} {dtype} ({expected:,} bytes), "
                        f"the file has {size:,} bytes (about {held:,} rows)", where=str(target),
                        fix="write the file again (an interrupted copy or download leaves it short)")
    return NpyHeader((rows, dim), dtype, offset)
