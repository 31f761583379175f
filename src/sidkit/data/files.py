"""Reading user files: embeddings (.npy or parquet), items and interactions (parquet or csv)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from sidkit.data.catalog import ItemCatalog
from sidkit.data.dataset import Dataset, interactions_from_table, load_embeddings
from sidkit.data.interactions import Interactions
from sidkit.errors import DataError


def read_embeddings(path: str | os.PathLike[str], *, mmap: bool = True,
                    column: str = "embedding") -> np.ndarray:
    """Embeddings (N, D) from ``.npy`` (memory-mapped by default) or parquet.

    A parquet file holds either one list column (``column``, default ``embedding``) or one numeric
    column per dimension; an ``item_id`` column, if present, is ignored here (rows are the order).
    """
    target = Path(path)
    suffix = target.suffix.lower()
    if suffix == ".npy":
        return load_embeddings(target, mmap=mmap)
    if suffix == ".parquet":
        table = _read_table(target)
        if column in table.column_names:
            values = table.column(column).combine_chunks()
            if not pa.types.is_list(values.type) and not pa.types.is_fixed_size_list(values.type):
                raise DataError(f"column '{column}' is not a list of floats", where=str(target),
                                fix="store one list<float> per row, or one column per dimension")
            lengths = values.value_lengths().to_numpy(zero_copy_only=False)
            if len(lengths) and (lengths.min() != lengths.max()):
                raise DataError(f"rows of '{column}' have different lengths ({lengths.min()} to "
                                f"{lengths.max()})", where=str(target), fix="every embedding needs one width")
            flat = values.flatten().to_numpy(zero_copy_only=False)
            width = int(lengths[0]) if len(lengths) else 0
            return np.asarray(flat, dtype=np.float32).reshape(len(lengths), width)
        numeric = [n for n in table.column_names if n != "item_id"
                   and pa.types.is_floating(table.schema.field(n).type)]
        if not numeric:
            raise DataError(f"no '{column}' list column and no float columns", where=str(target),
                            fix=f"name the embedding column '{column}' or pass column=...")
        return np.column_stack([table.column(n).to_numpy(zero_copy_only=False) for n in numeric]
                               ).astype(np.float32)
    raise DataError(f"unsupported embeddings file type '{suffix}'", where=str(target),
                    fix="use a .npy array or a .parquet file")


def read_table(path: str | os.PathLike[str]) -> pa.Table:
    """A parquet or csv file as an Arrow table."""
    return _read_table(Path(path))


def read_interactions(path: str | os.PathLike[str]) -> Interactions:
    """Interactions from parquet or csv with user_id, item_id, timestamp and rating/label columns."""
    return interactions_from_table(_read_table(Path(path)), where=str(path))


def read_catalog(path: str | os.PathLike[str], embeddings: np.ndarray | None = None) -> ItemCatalog:
    """Items from parquet or csv with item_id and text columns (other columns are kept)."""
    table = _read_table(Path(path))
    for required in ("item_id", "text"):
        if required not in table.column_names:
            raise DataError(f"column '{required}' is missing (columns: {table.column_names})",
                            where=str(path), fix="items need item_id and text columns")
    extra = {n: table.column(n).to_numpy(zero_copy_only=False)
             for n in table.column_names if n not in ("item_id", "text")}
    text = np.asarray([("" if t is None else str(t)) for t in table.column("text").to_pylist()], dtype=object)
    return ItemCatalog(table.column("item_id").to_numpy(zero_copy_only=False), text, embeddings, extra)


def dataset_from_files(items: str | os.PathLike[str], interactions: str | os.PathLike[str],
                       embeddings: str | os.PathLike[str] | None = None,
                       users: str | os.PathLike[str] | None = None) -> Dataset:
    """Assemble a Dataset from separate files (validated as one)."""
    emb = read_embeddings(embeddings) if embeddings is not None else None
    catalog = read_catalog(items, emb)
    dataset = Dataset(catalog, read_interactions(interactions),
                      _read_table(Path(users)) if users is not None else None)
    from dataclasses import replace

    return replace(dataset, manifest=dataset.describe(f"files ({Path(items).name})"))


def _read_table(path: Path) -> pa.Table:
    if not path.is_file():
        raise DataError(f"file {path} does not exist", where=str(path), fix="check the path")
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            return pq.read_table(path)
        if suffix in (".csv", ".tsv"):
            options = pacsv.ParseOptions(delimiter="\t" if suffix == ".tsv" else ",")
            return pacsv.read_csv(path, parse_options=options)
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"cannot read {path.name}: {exc}", where=str(path),
                        fix="check that the file is complete and in the format its suffix says") from None
    raise DataError(f"unsupported file type '{suffix}'", where=str(path),
                    fix="use .parquet, .csv or .tsv")
