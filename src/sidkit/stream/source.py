"""Embeddings read chunk by chunk, in bounded memory, from a ``.npy`` file or a parquet file or directory.

A ``.npy`` file is memory-mapped; each chunk is copied out as float32 and its pages are then dropped
from this process (``madvise(MADV_DONTNEED)``), so the resident set stays near one chunk however
large the file is (a plain memmap would keep every page it ever touched resident until unmapped).

A parquet source (one file, or a directory of files read as one dataset in path order) holds either
one list column of floats (default ``embedding``) or one float column per dimension; an ``item_id``
column, if present, comes with each chunk.
"""

from __future__ import annotations

import contextlib
import mmap
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads

from sidkit.checks import check_int
from sidkit.data.npy import read_npy_header
from sidkit.data.validation import check_embedding_values
from sidkit.errors import DataError

DEFAULT_CHUNK_ROWS = 65_536
ITEM_ID = "item_id"


@dataclass(frozen=True, eq=False)
class Chunk:
    """Rows ``start .. start + len(embeddings) - 1`` of a source.

    Attributes:
        start: index of the first row in the source.
        embeddings: (n, D) float32, C-contiguous and writable (owned by the chunk).
        item_ids: (n,) ids from the source's ``item_id`` column, or None when it has none.
    """

    start: int
    embeddings: np.ndarray
    item_ids: np.ndarray | None

    def __len__(self) -> int:
        return int(self.embeddings.shape[0])

    @property
    def stop(self) -> int:
        return self.start + len(self)


class EmbeddingSource:
    """A readable (N, D) embedding file; see the module docstring. Open with :func:`open_embeddings`."""

    def __init__(self, path: Path, num_rows: int, dim: int, *, has_item_ids: bool) -> None:
        self.path = path
        self.num_rows = num_rows
        self.dim = dim
        self.has_item_ids = has_item_ids

    def __len__(self) -> int:
        return self.num_rows

    @property
    def shape(self) -> tuple[int, int]:
        return (self.num_rows, self.dim)

    def chunks(self, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> Iterator[Chunk]:
        """Consecutive chunks of exactly ``chunk_rows`` rows (the last one may be shorter)."""
        raise NotImplementedError


class NpySource(EmbeddingSource):
    """A C-ordered 2-d numeric ``.npy`` file, memory-mapped and read one chunk at a time."""

    def __init__(self, path: Path) -> None:
        header = read_npy_header(path)
        self._offset = header.offset
        shape, dtype = header.shape, header.dtype
        super().__init__(path, int(shape[0]), int(shape[1]), has_item_ids=False)
        self._dtype = dtype

    def read(self, start: int, stop: int) -> np.ndarray:
        """Rows [start, stop) as an owned (n, D) float32 array; their pages are released afterwards."""
        start, stop = max(0, start), min(self.num_rows, stop)
        if stop <= start:
            return np.zeros((0, self.dim), dtype=np.float32)
        with open(self.path, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            return self._copy_rows(mapped, start, stop)

    def chunks(self, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> Iterator[Chunk]:
        chunk_rows = check_chunk_rows(chunk_rows)
        with open(self.path, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            _advise(mapped, mmap.MADV_SEQUENTIAL, 0, len(mapped))  # more read-ahead
            for start in range(0, self.num_rows, chunk_rows):
                stop = min(self.num_rows, start + chunk_rows)
                yield Chunk(start, self._copy_rows(mapped, start, stop), None)

    def _copy_rows(self, mapped: mmap.mmap, start: int, stop: int) -> np.ndarray:
        row_bytes = self.dim * self._dtype.itemsize
        begin = self._offset + start * row_bytes
        view = np.frombuffer(mapped, dtype=self._dtype, count=(stop - start) * self.dim, offset=begin)
        rows = view.reshape(stop - start, self.dim).astype(np.float32, copy=True)
        del view  # the buffer export must end before the mapping may close
        # The copy is all we need: drop the file pages from this process so RSS stays bounded.
        page_start = begin - begin % mmap.PAGESIZE
        _advise(mapped, mmap.MADV_DONTNEED, page_start, begin + (stop - start) * row_bytes - page_start)
        check_embedding_values(rows, where=f"{self.path} rows {start}..{stop - 1}")
        return rows


class ParquetSource(EmbeddingSource):
    """A parquet file or directory of files (read in path order) with a list column or float columns."""

    def __init__(self, path: Path, column: str = "embedding") -> None:
        try:
            self._dataset = pads.dataset(str(path), format="parquet")
            num_rows = int(self._dataset.count_rows())
        except (pa.ArrowInvalid, OSError) as error:
            raise DataError(f"cannot read {path} as parquet: {error}", where=str(path),
                            fix="pass a parquet file, or a directory of parquet files") from None
        schema = self._dataset.schema
        self._list_column: str | None = None
        if column in schema.names:
            kind = schema.field(column).type
            listed = pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind)
            if not listed or not (pa.types.is_floating(kind.value_type) or pa.types.is_integer(kind.value_type)):
                raise DataError(f"column '{column}' is {kind}, not a list of numbers", where=str(path),
                                fix="store one list<float> per row, or one float column per dimension")
            self._list_column = column
            self._columns = [column]
        else:
            self._columns = [name for name in schema.names
                             if name != ITEM_ID and pa.types.is_floating(schema.field(name).type)]
            if not self._columns:
                raise DataError(f"no '{column}' list column and no float columns (columns: {schema.names})",
                                where=str(path), fix=f"name the embedding column '{column}' or pass column=...")
        if num_rows == 0:
            raise DataError("the parquet source has no rows", where=str(path), fix="pass at least one embedding")
        has_ids = ITEM_ID in schema.names
        self._read_columns = [*self._columns, ITEM_ID] if has_ids else list(self._columns)
        super().__init__(path, num_rows, self._first_width(), has_item_ids=has_ids)

    @property
    def list_column(self) -> str | None:
        """The list column holding the embeddings, or None when they are one float column per dimension."""
        return self._list_column

    @property
    def feature_columns(self) -> list[str]:
        """The embedding columns: ``[list_column]``, or one per dimension."""
        return list(self._columns)

    @property
    def read_columns(self) -> list[str]:
        """Every column a chunk reads: the embedding columns, then ``item_id`` when present."""
        return list(self._read_columns)

    def _first_width(self) -> int:
        if self._list_column is None:
            return len(self._columns)
        kind = self._dataset.schema.field(self._list_column).type
        if pa.types.is_fixed_size_list(kind):
            return int(kind.list_size)
        for batch in self._dataset.to_batches(columns=[self._list_column], batch_size=1):
            if batch.num_rows:
                return len(batch.column(0)[0].values)
        raise AssertionError("unreachable: a dataset with rows has a non-empty batch")

    def chunks(self, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> Iterator[Chunk]:
        chunk_rows = check_chunk_rows(chunk_rows)
        pending: list[pa.RecordBatch] = []
        held, start = 0, 0
        for batch in self._dataset.to_batches(columns=self._read_columns, batch_size=chunk_rows):
            pending.append(batch)
            held += batch.num_rows
            while held >= chunk_rows:
                table = pa.Table.from_batches(pending)
                yield self._chunk(table.slice(0, chunk_rows), start)
                rest = table.slice(chunk_rows)
                pending, held, start = rest.to_batches(), rest.num_rows, start + chunk_rows
        if held:
            yield self._chunk(pa.Table.from_batches(pending), start)

    def _chunk(self, table: pa.Table, start: int) -> Chunk:
        where = f"{self.path} rows {start}..{start + table.num_rows - 1}"
        embeddings = table_embeddings(table, self._list_column, self._columns, self.dim, where=where)
        ids = table.column(ITEM_ID).to_numpy(zero_copy_only=False) if self.has_item_ids else None
        return Chunk(start, embeddings, ids)


class DatasetSource(EmbeddingSource):
    """A dataset directory's ``embeddings.npy`` with the ``item_id`` column of its ``items.parquet``,
    both read chunk by chunk (row i of one is row i of the other)."""

    def __init__(self, directory: Path) -> None:
        from sidkit.data.dataset import EMBEDDINGS_FILE, ITEMS_FILE

        self._embeddings = NpySource(_existing(directory / EMBEDDINGS_FILE, directory))
        self._items = _existing(directory / ITEMS_FILE, directory)
        try:
            self._ids = pads.dataset(str(self._items), format="parquet")
            rows = int(self._ids.count_rows())
        except (pa.ArrowInvalid, OSError) as error:
            raise DataError(f"cannot read {ITEMS_FILE}: {error}", where=str(self._items),
                            fix="check that it is a complete parquet file") from None
        if ITEM_ID not in self._ids.schema.names:
            raise DataError(f"{ITEMS_FILE} has no '{ITEM_ID}' column", where=str(self._items),
                            fix="items.parquet needs item_id and text columns")
        if rows != self._embeddings.num_rows:
            raise DataError(f"{ITEMS_FILE} has {rows} items but {EMBEDDINGS_FILE} {self._embeddings.num_rows} rows",
                            where=str(directory), fix=f"re-run `sidkit embed --data {directory}`")
        super().__init__(directory, rows, self._embeddings.dim, has_item_ids=True)

    @property
    def embeddings_path(self) -> Path:
        return self._embeddings.path

    @property
    def items_path(self) -> Path:
        return self._items

    def chunks(self, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> Iterator[Chunk]:
        ids = _column_chunks(self._ids, ITEM_ID, check_chunk_rows(chunk_rows))
        for chunk in self._embeddings.chunks(chunk_rows):
            yield Chunk(chunk.start, chunk.embeddings, next(ids))


def open_dataset_embeddings(directory: str | os.PathLike[str]) -> DatasetSource:
    """The embeddings and item ids of a dataset directory, for chunked reading."""
    root = Path(directory)
    if not root.is_dir():
        raise DataError(f"dataset directory {root} does not exist", where=str(root), fix="check the path")
    return DatasetSource(root)


def _column_chunks(dataset: pads.Dataset, column: str, chunk_rows: int) -> Iterator[np.ndarray]:
    """One column in consecutive chunks of exactly ``chunk_rows`` values (the last may be shorter)."""
    pending: list[pa.Array] = []
    held = 0
    for batch in dataset.to_batches(columns=[column], batch_size=chunk_rows):
        pending.append(batch.column(0))
        held += batch.num_rows
        while held >= chunk_rows:
            values = pa.chunked_array(pending).combine_chunks()
            yield values.slice(0, chunk_rows).to_numpy(zero_copy_only=False)
            pending, held = [values.slice(chunk_rows)], held - chunk_rows
    if held:
        yield pa.chunked_array(pending).combine_chunks().to_numpy(zero_copy_only=False)


def _existing(path: Path, directory: Path) -> Path:
    if not path.is_file():
        raise DataError(f"{path.name} is missing", where=str(directory),
                        fix="a dataset directory needs items.parquet and embeddings.npy "
                        f"(`sidkit embed --data {directory}` writes the embeddings)")
    return path


def table_embeddings(table: pa.Table, list_column: str | None, columns: list[str], dim: int, *,
                     where: str) -> np.ndarray:
    """(n, D) float32 embeddings of an Arrow table: one list column, or ``columns`` one per dimension."""
    if list_column is None:
        values = [table.column(name).to_numpy(zero_copy_only=False) for name in columns]
        rows = np.column_stack(values).astype(np.float32, copy=False) if values else np.zeros((0, 0), np.float32)
    else:
        lists = table.column(list_column).combine_chunks()
        if lists.null_count:
            raise DataError(f"{lists.null_count} rows of '{list_column}' are null", where=where,
                            fix="drop items without an embedding")
        if lists.flatten().null_count:
            raise DataError(f"{lists.flatten().null_count} values inside '{list_column}' are null", where=where,
                            fix="fill or drop the embeddings with missing values")
        lengths = lists.value_lengths().to_numpy(zero_copy_only=False)
        if len(lengths) and (lengths.min() != dim or lengths.max() != dim):
            raise DataError(f"rows of '{list_column}' have {lengths.min()} to {lengths.max()} values, "
                            f"expected {dim}", where=where, fix="every embedding needs one width")
        flat = lists.flatten().to_numpy(zero_copy_only=False)
        rows = np.asarray(flat, dtype=np.float32).reshape(len(lengths), dim)
    rows = np.array(rows, dtype=np.float32, order="C", copy=True)
    check_embedding_values(rows, where=where)
    return rows


def open_embeddings(path: str | os.PathLike[str], *, column: str = "embedding") -> EmbeddingSource:
    """Open ``path`` for chunked reading: a ``.npy`` file, a ``.parquet`` file, or a directory of parquet files."""
    target = Path(path)
    if target.is_dir():
        return ParquetSource(target, column)
    if not target.is_file():
        raise DataError(f"embeddings file {target} does not exist", where=str(target), fix="check the path")
    suffix = target.suffix.lower()
    if suffix == ".npy":
        return NpySource(target)
    if suffix == ".parquet":
        return ParquetSource(target, column)
    raise DataError(f"unsupported embeddings file type '{suffix}'", where=str(target),
                    fix="use a .npy array, a .parquet file or a directory of parquet files")


def check_chunk_rows(chunk_rows: int) -> int:
    return check_int(chunk_rows, where="chunk_rows", fix="pass the rows per chunk, e.g. 65536")


def _advise(mapped: mmap.mmap, advice: int, start: int, length: int) -> None:
    """madvise where the platform has it; a hint only, so failures are ignored."""
    if length <= 0 or not hasattr(mapped, "madvise"):
        return
    with contextlib.suppress(OSError, ValueError):
        mapped.madvise(advice, start, length)
