"""Reading user files: embeddings (.npy or parquet), items and interactions (parquet or csv)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
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
        from sidkit.stream.source import ParquetSource

        if not target.is_file():
            raise DataError(f"file {target} does not exist", where=str(target), fix="check the path")
        source = ParquetSource(target, column)  # the checks of streamed reading, for one code path
        return np.concatenate([chunk.embeddings for chunk in source.chunks()])
    raise DataError(f"unsupported embeddings file type '{suffix}'", where=str(target),
                    fix="use a .npy array or a .parquet file")


def read_table(path: str | os.PathLike[str]) -> pa.Table:
    """A parquet or csv file as an Arrow table."""
    return _read_table(Path(path))


def read_interactions(path: str | os.PathLike[str], *, columns: Mapping[str, str] | None = None) -> Interactions:
    """Interactions from parquet or csv with user_id, item_id, timestamp and rating/label columns.

    ``columns`` maps sidkit's names to the file's own (``{"user_id": "userId", "item_id": "movieId"}``).
    """
    return interactions_from_table(rename_columns(_read_table(Path(path)), columns, where=str(path)),
                                   where=str(path))


def read_catalog(path: str | os.PathLike[str], embeddings: np.ndarray | None = None, *,
                 columns: Mapping[str, str] | None = None) -> ItemCatalog:
    """Items from parquet or csv with item_id and text columns (other columns are kept); ``columns``
    maps sidkit's names to the file's own (``{"item_id": "movieId", "text": "title"}``)."""
    table = rename_columns(_read_table(Path(path)), columns, where=str(path))
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
                       users: str | os.PathLike[str] | None = None, *,
                       columns: Mapping[str, str] | None = None) -> Dataset:
    """Assemble a Dataset from separate files (validated as one).

    ``columns`` maps sidkit's column names to the files' own, in every file that has them:
    ``{"user_id": "userId", "item_id": "movieId", "text": "title"}``. A mapped column that no file
    has is an error (a typo would otherwise go unnoticed).
    """
    mapping = dict(columns or {})
    paths = [Path(p) for p in (items, interactions, users) if p is not None]
    names = [_read_schema_names(path) for path in paths]
    check_mapping_used(mapping, {field for file_names in names for field in file_names}, names)
    emb = read_embeddings(embeddings) if embeddings is not None else None
    catalog = read_catalog(items, emb, columns=mapping)
    user_table = rename_columns(_read_table(Path(users)), mapping, where=str(users)) if users is not None else None
    dataset = Dataset(catalog, read_interactions(interactions, columns=mapping), user_table)
    from dataclasses import replace

    return replace(dataset, manifest=dataset.describe(f"files ({Path(items).name})"))


def parse_column_mapping(pairs: Sequence[str], *, where: str = "--map") -> dict[str, str]:
    """``["user_id=userId", "item_id=movieId"]`` -> ``{"user_id": "userId", "item_id": "movieId"}``."""
    mapping: dict[str, str] = {}
    for pair in pairs:
        name, sep, field = pair.partition("=")
        name, field = name.strip(), field.strip()
        if not sep or not name or not field:
            raise DataError(f"cannot read {pair!r} as NAME=COLUMN", where=where,
                            fix="write the sidkit name, '=', then your file's column, e.g. user_id=userId")
        if name in mapping:
            raise DataError(f"{name} is mapped twice", where=where, fix=f"map {name} to one column only")
        mapping[name] = field
    return mapping


def rename_columns(table: pa.Table, mapping: Mapping[str, str] | None, *, where: str) -> pa.Table:
    """``table`` with each column ``mapping[name]`` renamed to ``name`` (mapped columns it lacks are skipped)."""
    if not mapping:
        return table
    return table.rename_columns(renamed_fields(table.column_names, mapping, where=where))


def renamed_fields(names: Sequence[str], mapping: Mapping[str, str], *, where: str) -> list[str]:
    """``names`` with each ``mapping[name]`` renamed to ``name``; DataError if that would make a duplicate."""
    renamed = list(names)
    for target, source in mapping.items():
        if source not in renamed or source == target:
            continue
        if target in renamed:
            raise DataError(f"cannot rename '{source}' to '{target}': there is a '{target}' column already",
                            where=where, fix=f"map {target} to one column only, or drop the mapping")
        renamed[renamed.index(source)] = target
    return renamed


def check_mapping_used(mapping: Mapping[str, str], found: set[str], names: Sequence[Sequence[str]]) -> None:
    """DataError naming every mapped column that is in none of the files (``found``: those that are)."""
    unused = [field for field in mapping.values() if field not in found]
    if unused:
        columns = sorted({name for file_names in names for name in file_names})
        raise DataError(f"mapped column(s) {', '.join(map(repr, unused))} are in none of the files "
                        f"(their columns: {', '.join(columns)})", where="--map",
                        fix="map sidkit names to columns that exist, e.g. user_id=userId")


def _read_schema_names(path: Path) -> list[str]:
    """Column names of a parquet or csv file (the header only)."""
    if path.suffix.lower() == ".parquet" and path.is_file():
        try:
            return list(pq.read_schema(path).names)
        except (pa.ArrowInvalid, OSError):
            pass  # _read_table reports it
    return list(_read_table(path).column_names)


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
