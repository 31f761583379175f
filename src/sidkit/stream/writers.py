"""Code files written chunk by chunk: parquet through a ParquetWriter, or a raw ``.npy`` stream.

Both write to a temporary file beside the target and rename it over the target only when every row
is written, so a reader never sees a partial file and a failure leaves the old one (see sidkit.io).

Parquet columns (what ``sidkit encode`` has always written): ``item_id`` when ids are given, int64
``level_0 .. level_{L-1}``, and ``sid`` (``"12-4-9"``); the codebook sizes are kept in the schema
metadata (``sidkit.sizes``), so ``SemanticIds.from_table`` restores them.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from sidkit.errors import ConfigError, DataError
from sidkit.ids import SemanticIds
from sidkit.io import atomic_path

SUFFIXES = (".npy", ".parquet")


def codes_table(codes: np.ndarray, sizes: Sequence[int], item_ids: np.ndarray | None = None) -> pa.Table:
    """The parquet table of (n, L) ``codes``: optional ``item_id``, ``level_*`` columns and ``sid`` strings."""
    ids = SemanticIds(codes, tuple(sizes))
    table = ids.to_table(item_ids=item_ids)
    levels = [pc.cast(table.column(f"level_{level}"), pa.string()) for level in range(ids.levels)]
    # Arrow joins the digits in C++: rendering 10^7 SIDs in Python would cost more than encoding them.
    sid = pc.binary_join_element_wise(*levels, "-") if len(levels) > 1 else levels[0]
    return table.append_column("sid", sid)


class ParquetCodesWriter:
    """Append (n, L) code chunks to a parquet file; the schema is fixed by the first chunk."""

    def __init__(self, path: Path, sizes: Sequence[int], *, row_group_rows: int) -> None:
        self._path = path
        self._sizes = tuple(sizes)
        self._row_group_rows = row_group_rows
        self._writer: pq.ParquetWriter | None = None
        self.rows = 0

    def write(self, codes: np.ndarray, item_ids: np.ndarray | None = None) -> None:
        table = codes_table(codes, self._sizes, item_ids)
        if self._writer is None:
            self._writer = pq.ParquetWriter(self._path, table.schema)
        elif table.schema != self._writer.schema:
            try:
                table = table.cast(self._writer.schema)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
                raise DataError(f"chunk at row {self.rows} does not match the first chunk's columns: {error}",
                                where="item_ids", fix="give every item an id of one type") from None
        self._writer.write_table(table, row_group_size=self._row_group_rows)
        self.rows += len(codes)

    def close(self, levels: int) -> None:
        if self._writer is None:  # no rows: still a valid, empty codes file
            self._writer = pq.ParquetWriter(self._path, codes_table(np.zeros((0, levels), np.int64),
                                                                    self._sizes).schema)
        self._writer.close()


class NpyCodesWriter:
    """Stream an (N, L) int64 ``.npy`` file: the header first (N is known up front), then raw rows."""

    def __init__(self, handle: BinaryIO, num_rows: int, levels: int) -> None:
        header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.int64)), "fortran_order": False,
                  "shape": (num_rows, levels)}
        np.lib.format.write_array_header_2_0(handle, header)
        self._handle = handle
        self._expected = num_rows
        self.rows = 0

    def write(self, codes: np.ndarray, item_ids: np.ndarray | None = None) -> None:
        self._handle.write(np.ascontiguousarray(codes, dtype="<i8").tobytes())
        self.rows += len(codes)

    def close(self, levels: int) -> None:
        if self.rows != self._expected:
            raise DataError(f"wrote {self.rows} rows of codes, expected {self._expected}", where="codes.npy",
                            fix="the source changed while it was read; run again")


@contextlib.contextmanager
def codes_writer(out: str | os.PathLike[str], sizes: Sequence[int], *, num_rows: int,
                 row_group_rows: int = 1 << 20) -> Iterator[ParquetCodesWriter | NpyCodesWriter]:
    """A writer for ``out`` (``.parquet`` or ``.npy``) that appears atomically when the block ends."""
    target = Path(out)
    suffix = target.suffix.lower()
    if suffix not in SUFFIXES:
        raise ConfigError(f"unsupported output type '{target.suffix}'", where=str(target), fix="use .npy or .parquet")
    levels = len(tuple(sizes))
    with atomic_path(target) as tmp:
        if suffix == ".parquet":
            writer = ParquetCodesWriter(tmp, sizes, row_group_rows=row_group_rows)
            try:
                yield writer
            except BaseException:
                if writer._writer is not None:
                    with contextlib.suppress(Exception):
                        writer._writer.close()
                raise
            writer.close(levels)
        else:
            with open(tmp, "wb") as handle:
                npy = NpyCodesWriter(handle, num_rows, levels)
                yield npy
                npy.close(levels)
