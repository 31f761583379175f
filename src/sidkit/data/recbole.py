"""RecBole atomic files (``.inter``, ``.item``, ``.user``) as a sidkit Dataset.

RecBole, and the many public datasets converted for it, store each table as a tab-separated text
file whose header names every field with its type, ``name:type``::

    user_id:token   item_id:token   rating:float    timestamp:float
    196             242             3               881250949

Types: ``token`` (an id or category, kept as a string), ``token_seq`` (space-separated tokens,
kept as one string), ``float`` (a number), ``float_seq`` (space-separated numbers, kept as a string).
Fields are renamed to sidkit's names with ``columns`` (sidkit name -> file field, e.g.
``{"user_id": "uid"}``); RecBole's defaults (``user_id``, ``item_id``, ``timestamp``, ``rating``) need
no mapping.

- interactions (``.inter``, required): ``user_id``, ``item_id``, ``timestamp`` (integral numbers),
  ``rating`` if present, and every other ``float`` field whose values are 0/1 as a label; any other
  field is left out with a warning that names it.
- items (``.item``, required): ``item_id``; ``text`` is the mapped ``text`` field, or else all
  ``token_seq`` fields joined by ". " (ML-100K: ``"Toy Story. Animation Children's Comedy"``); every
  other field is kept as an item column.
- users (``.user``, optional): kept as the users table.

Ids that are decimal integers in every file become int64; otherwise all ids stay strings.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from sidkit.data.catalog import ItemCatalog
from sidkit.data.dataset import Dataset
from sidkit.data.files import check_mapping_used, renamed_fields
from sidkit.data.interactions import Interactions
from sidkit.errors import DataError

FIELD_TYPES = ("token", "token_seq", "float", "float_seq")
TEXT_SEPARATOR = ". "


def read_atomic_file(path: str | os.PathLike[str]) -> tuple[pa.Table, dict[str, str]]:
    """One atomic file as a table (``float`` fields float64, the rest strings) and each field's type."""
    target = Path(path)
    if not target.is_file():
        raise DataError(f"file {target} does not exist", where=str(target), fix="check the path")
    with open(target, encoding="utf-8") as handle:
        header = handle.readline().rstrip("\r\n")
    names, types = [], {}
    for number, field in enumerate(header.split("\t"), start=1):
        name, _, kind = field.rpartition(":")
        if not name or kind not in FIELD_TYPES:
            raise DataError(f"header field {number} ({field!r}) is not name:type with a type in {FIELD_TYPES}",
                            where=str(target), fix="RecBole atomic files start with a header like "
                            "'user_id:token<TAB>item_id:token<TAB>timestamp:float'")
        if name in types:
            raise DataError(f"field {name!r} appears twice in the header", where=str(target))
        names.append(name)
        types[name] = kind
    column_types = {name: pa.float64() if kind == "float" else pa.string() for name, kind in types.items()}
    try:
        table = pacsv.read_csv(
            target, read_options=pacsv.ReadOptions(column_names=names, skip_rows=1),
            parse_options=pacsv.ParseOptions(delimiter="\t", quote_char=False),
            convert_options=pacsv.ConvertOptions(column_types=column_types, strings_can_be_null=False))
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise DataError(f"cannot read {target.name} as a RecBole atomic file: {str(exc).splitlines()[0]}",
                        where=str(target), fix="every row needs one tab-separated value per header field, "
                        "and float fields need numbers") from None
    return table, types


def find_atomic_files(path: str | os.PathLike[str]) -> dict[str, Path]:
    """The ``.inter`` / ``.item`` / ``.user`` files of a RecBole dataset: ``path`` is the dataset
    directory (holding one ``NAME.inter``) or the ``.inter`` file itself."""
    target = Path(path)
    if target.is_file() and target.suffix == ".inter":
        inter = target
    elif target.is_dir():
        candidates = sorted(target.glob("*.inter"))
        if len(candidates) != 1:
            found = ", ".join(p.name for p in candidates) or "none"
            raise DataError(f"a RecBole dataset directory holds one NAME.inter file; found {found}",
                            where=str(target), fix="pass the .inter file itself")
        inter = candidates[0]
    else:
        raise DataError(f"{target} is neither a RecBole dataset directory nor a .inter file", where=str(target),
                        fix="pass the directory holding NAME.inter and NAME.item")
    files = {"inter": inter}
    for kind in ("item", "user"):
        candidate = inter.with_suffix(f".{kind}")
        if candidate.is_file():
            files[kind] = candidate
    if "item" not in files:
        raise DataError(f"{inter.with_suffix('.item').name} is missing: sidkit needs an item file with text",
                        where=str(inter.parent), fix="add NAME.item with item_id and a text (token_seq) field")
    return files


def load_recbole(path: str | os.PathLike[str], *, columns: Mapping[str, str] | None = None) -> Dataset:
    """A Dataset from RecBole atomic files (see the module docstring); ``columns`` renames fields."""
    files = find_atomic_files(path)
    mapping = dict(columns or {})
    tables: dict[str, tuple[pa.Table, dict[str, str]]] = {}
    found: set[str] = set()
    for kind, file in files.items():
        table, types = read_atomic_file(file)
        found |= set(types) & set(mapping.values())
        names = renamed_fields(table.column_names, mapping, where=str(file))
        tables[kind] = table.rename_columns(names), dict(zip(names, types.values(), strict=True))
    check_mapping_used(mapping, found, [table.column_names for table, _ in tables.values()])
    inter, inter_types = tables["inter"]
    items, item_types = tables["item"]
    users = tables["user"][0] if "user" in tables else None
    for name, table, where in (("user_id", inter, files["inter"]), ("item_id", inter, files["inter"]),
                               ("timestamp", inter, files["inter"]), ("item_id", items, files["item"])):
        if name not in table.column_names:
            raise DataError(f"field '{name}' is missing (fields: {table.column_names})", where=str(where),
                            fix=f"map it from the file's own field, e.g. {name}=FIELD")
    item_ids = _ids([inter.column("item_id"), items.column("item_id")])
    user_ids = _ids([inter.column("user_id")] + ([users.column("user_id")] if users is not None
                                                  and "user_id" in users.column_names else []))
    text = _item_text(items, item_types, files["item"])
    extra = {name: items.column(name).to_numpy(zero_copy_only=False) for name in items.column_names
             if name not in ("item_id", "text")}
    catalog = ItemCatalog(item_ids[1], text, None, extra)
    interactions = Interactions(user_ids[0], item_ids[0], _timestamps(inter, files["inter"]),
                                _floats(inter, "rating"), _labels(inter, inter_types, files["inter"]))
    if users is not None and len(user_ids) > 1:
        users = users.set_column(users.column_names.index("user_id"), "user_id", pa.array(user_ids[1]))
    dataset = Dataset(catalog, interactions, users)
    return replace(dataset, manifest=dataset.describe(f"recbole ({files['inter'].stem})"))


def _ids(columns: list[pa.ChunkedArray]) -> list[np.ndarray]:
    """The id columns as int64 if every value in all of them is a decimal integer, else as strings."""
    integral = (pc.all(pc.match_substring_regex(column, r"^-?[0-9]{1,18}$")).as_py() is not False for column in columns)
    if all(integral):
        return [pc.cast(column, pa.int64()).to_numpy(zero_copy_only=False) for column in columns]
    return [np.asarray(column.to_pylist(), dtype=object) for column in columns]


def _item_text(items: pa.Table, types: Mapping[str, str], where: Path) -> np.ndarray:
    if "text" in items.column_names:
        return np.asarray(items.column("text").to_pylist(), dtype=object)
    fields = [name for name in items.column_names if types.get(name) == "token_seq"]
    if not fields:
        raise DataError("the item file has no text: no 'text' field and no token_seq field", where=str(where),
                        fix="map the field that describes items, e.g. --map text=title")
    parts = [items.column(name).to_pylist() for name in fields]
    joined = [TEXT_SEPARATOR.join(p.strip() for p in row if p and p.strip()) for row in zip(*parts, strict=True)]
    return np.asarray(joined, dtype=object)


def _timestamps(inter: pa.Table, where: Path) -> np.ndarray:
    column = inter.column("timestamp")
    if not pa.types.is_floating(column.type):
        raise DataError("field 'timestamp' must be a float field (numbers)", where=str(where),
                        fix="declare it timestamp:float")
    values = column.to_numpy(zero_copy_only=False)
    if not np.all(np.isfinite(values)) or not np.all(values == np.round(values)):
        bad = int(np.flatnonzero(~np.isfinite(values) | (values != np.round(values)))[0])
        raise DataError(f"timestamps must be whole numbers; row {bad + 1} has {float(values[bad])}", where=str(where),
                        fix="store seconds (or any whole-number step) in the timestamp field")
    return values.astype(np.int64)


def _floats(inter: pa.Table, name: str) -> np.ndarray | None:
    if name not in inter.column_names:
        return None
    return inter.column(name).to_numpy(zero_copy_only=False).astype(np.float32)


def _labels(inter: pa.Table, types: Mapping[str, str], where: Path) -> dict[str, np.ndarray]:
    labels, ignored = {}, []
    for name in inter.column_names:
        if name in ("user_id", "item_id", "timestamp", "rating"):
            continue
        values = inter.column(name).to_numpy(zero_copy_only=False)
        if types.get(name) == "float" and np.isin(values, (0.0, 1.0)).all():
            labels[name] = values.astype(np.int8)
        else:
            ignored.append(f"{name}:{types.get(name)}")
    if ignored:
        warnings.warn(f"{where.name}: fields {', '.join(ignored)} are neither ids, timestamp, rating nor 0/1 "
                      "labels and were left out", UserWarning, stacklevel=3)
    return labels
