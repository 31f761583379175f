"""The canonical dataset directory that every command reads and writes.

Layout::

    DIR/items.parquet          item_id, text, other per-item columns
    DIR/interactions.parquet   user_id, item_id, timestamp, rating and/or label columns
    DIR/users.parquet          optional: user_id and user features
    DIR/embeddings.npy         optional: float32 (N, D), aligned row by row with items.parquet
    DIR/manifest.json          source, counts, embedding model, created
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from sidkit import __version__
from sidkit.data.catalog import ItemCatalog
from sidkit.data.interactions import Interactions
from sidkit.data.npy import read_npy_header
from sidkit.errors import DataError
from sidkit.io import atomic_dir, atomic_path, save_npy, write_json

ITEMS_FILE = "items.parquet"
INTERACTIONS_FILE = "interactions.parquet"
USERS_FILE = "users.parquet"
EMBEDDINGS_FILE = "embeddings.npy"
MANIFEST_FILE = "manifest.json"
_INTERACTION_CORE = ("user_id", "item_id", "timestamp", "rating")


@dataclass(frozen=True)
class Manifest:
    """What a dataset directory holds and where it came from."""

    source: str
    num_items: int
    num_users: int
    num_interactions: int
    embedding_model: str | None = None
    embedding_dim: int | None = None
    created: str = ""
    sidkit_version: str = __version__

    @staticmethod
    def now() -> str:
        return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


@dataclass(frozen=True, eq=False)
class Dataset:
    """A catalog, its interactions, optional user features, and a manifest."""

    catalog: ItemCatalog
    interactions: Interactions
    users: pa.Table | None = None
    manifest: Manifest | None = None

    def __post_init__(self) -> None:
        self.interactions.check_items(self.catalog)
        if self.manifest is None:
            object.__setattr__(self, "manifest", self.describe("unknown"))

    def describe(self, source: str, embedding_model: str | None = None) -> Manifest:
        """A fresh manifest with counts taken from the data."""
        return Manifest(
            source=source,
            num_items=len(self.catalog),
            num_users=self.interactions.num_users,
            num_interactions=len(self.interactions),
            embedding_model=embedding_model,
            embedding_dim=self.catalog.dim,
            created=Manifest.now(),
        )

    def with_embeddings(self, embeddings: np.ndarray, model: str) -> Dataset:
        catalog = self.catalog.with_embeddings(embeddings)
        assert self.manifest is not None
        manifest = replace(self.manifest, embedding_model=model, embedding_dim=catalog.dim)
        return Dataset(catalog, self.interactions, self.users, manifest)


def save_dataset(dataset: Dataset, directory: str | os.PathLike[str]) -> Path:
    """Write ``dataset`` as a dataset directory, as a whole (:func:`sidkit.io.atomic_dir`): an earlier
    dataset there is replaced in one step, and a crash leaves the old one or the new one."""
    out = Path(directory)
    with atomic_dir(out, replaceable=is_dataset_dir, what="dataset directory",
                    fix="pass a new directory, or one that sidkit wrote a dataset to") as work:
        _write_dataset_files(dataset, work)
    return out


def is_dataset_dir(directory: Path) -> bool:
    """Whether ``directory`` holds a dataset (so that writing a dataset may replace it)."""
    return any((directory / name).is_file() for name in (ITEMS_FILE, INTERACTIONS_FILE, MANIFEST_FILE))


def _write_dataset_files(dataset: Dataset, out: Path) -> None:
    catalog = dataset.catalog
    items = {"item_id": catalog.item_ids, "text": catalog.text.astype(str)}
    items.update(catalog.columns)
    _write_parquet(pa.table(items), out / ITEMS_FILE)
    inter = dataset.interactions
    columns: dict[str, np.ndarray] = {
        "user_id": inter.user_ids, "item_id": inter.item_ids, "timestamp": inter.timestamps,
    }
    if inter.ratings is not None:
        columns["rating"] = inter.ratings
    columns.update(inter.labels)
    columns.update(inter.context)
    _write_parquet(pa.table(columns), out / INTERACTIONS_FILE)
    if dataset.users is not None:
        _write_parquet(dataset.users, out / USERS_FILE)
    if catalog.embeddings is not None:
        save_npy(out / EMBEDDINGS_FILE, np.ascontiguousarray(catalog.embeddings, dtype=np.float32))
    assert dataset.manifest is not None
    write_json(out / MANIFEST_FILE, asdict(dataset.manifest))


def save_embeddings(directory: str | os.PathLike[str], embeddings: np.ndarray, model: str) -> None:
    """Add or replace ``embeddings.npy`` in a dataset directory and record the model in the manifest;
    both change in one step (the other files are kept, as hard links, in the new directory)."""
    dataset = load_dataset(directory, embeddings=False)
    dataset = dataset.with_embeddings(embeddings, model)  # validates rows and values
    assert dataset.manifest is not None
    with atomic_dir(directory, keep_existing=True) as work:
        save_npy(work / EMBEDDINGS_FILE, np.ascontiguousarray(embeddings, dtype=np.float32))
        write_json(work / MANIFEST_FILE, asdict(dataset.manifest))


def check_dataset_directory(directory: str | os.PathLike[str]) -> Path:
    """``directory`` as a Path; DataError unless it is a directory holding items and interactions."""
    root = Path(directory)
    if not root.is_dir():
        raise DataError(f"dataset directory {root} does not exist", where=str(root),
                        fix="create one with `sidkit data fetch movielens-100k --out DIR` or "
                        "`sidkit data synth --out DIR`")
    for name in (ITEMS_FILE, INTERACTIONS_FILE):
        if not (root / name).is_file():
            raise DataError(f"{name} is missing", where=str(root),
                            fix="a dataset directory needs items.parquet and interactions.parquet")
    return root


def load_dataset(directory: str | os.PathLike[str], *, embeddings: bool = True,
                 mmap: bool = False) -> Dataset:
    """Read a dataset directory. ``mmap`` memory-maps ``embeddings.npy`` instead of loading it."""
    root = check_dataset_directory(directory)
    items = _read_parquet(root / ITEMS_FILE)
    for required in ("item_id", "text"):
        if required not in items.column_names:
            raise DataError(f"column '{required}' is missing", where=str(root / ITEMS_FILE),
                            fix="items.parquet needs item_id and text columns")
    extra = {n: items.column(n).to_numpy(zero_copy_only=False)
             for n in items.column_names if n not in ("item_id", "text")}
    emb = None
    if embeddings and (root / EMBEDDINGS_FILE).is_file():
        emb = load_embeddings(root / EMBEDDINGS_FILE, mmap=mmap)
    catalog = ItemCatalog(
        items.column("item_id").to_numpy(zero_copy_only=False),
        items.column("text").to_numpy(zero_copy_only=False),
        emb,
        extra,
    )
    interactions = interactions_from_table(_read_parquet(root / INTERACTIONS_FILE),
                                           where=str(root / INTERACTIONS_FILE))
    users = _read_parquet(root / USERS_FILE) if (root / USERS_FILE).is_file() else None
    manifest = None
    if (root / MANIFEST_FILE).is_file():
        import json

        try:
            manifest = Manifest(**json.loads((root / MANIFEST_FILE).read_text(encoding="utf-8")))
        except (TypeError, ValueError) as exc:
            raise DataError(f"manifest.json is unreadable: {exc}", where=str(root / MANIFEST_FILE),
                            fix="delete it; sidkit rewrites it from the data") from None
    dataset = Dataset(catalog, interactions, users, manifest)
    if manifest is None:
        dataset = replace(dataset, manifest=dataset.describe("directory"))
    return dataset


def interactions_from_table(table: pa.Table, *, where: str) -> Interactions:
    """Build Interactions from a table with user_id, item_id, timestamp, and rating/label columns.

    Other 0/1 columns are labels; any other column (text, or numbers beyond 0 and 1) is context.
    """
    for required in ("user_id", "item_id", "timestamp"):
        if required not in table.column_names:
            raise DataError(f"column '{required}' is missing (columns: {table.column_names})", where=where,
                            fix="interactions need user_id, item_id and timestamp columns")

    def col(name: str) -> np.ndarray:
        return table.column(name).to_numpy(zero_copy_only=False)

    ratings = col("rating") if "rating" in table.column_names else None
    labels: dict[str, np.ndarray] = {}
    context: dict[str, np.ndarray] = {}
    for name in table.column_names:
        if name in _INTERACTION_CORE:
            continue
        values = col(name)
        # 0/1 columns are labels (tasks); any other column is context an impression carries.
        binary = values.dtype.kind in "biuf" and bool(np.all((values == 0) | (values == 1)))
        (labels if binary else context)[name] = values
    return Interactions(col("user_id"), col("item_id"), col("timestamp"), ratings, labels, context)


def load_embeddings(path: str | os.PathLike[str], *, mmap: bool = False) -> np.ndarray:
    """Load a float (N, D) ``.npy`` file, memory-mapped when ``mmap`` is set."""
    target = Path(path)
    if not target.is_file():
        raise DataError(f"embeddings file {target} does not exist", where=str(target),
                        fix="run `sidkit embed --data DIR` or pass an existing .npy file")
    read_npy_header(target)  # shape, dtype and size against the header, before reading anything
    try:
        array = np.load(target, mmap_mode="r" if mmap else None, allow_pickle=False)
    except ValueError as exc:
        raise DataError(f"cannot read {target.name} as a numeric .npy array: {exc}", where=str(target),
                        fix="save embeddings with numpy.save as a float32 (N, D) array") from None
    return array


def _write_parquet(table: pa.Table, path: Path) -> None:
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def _read_parquet(path: Path) -> pa.Table:
    try:
        return pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"cannot read parquet file: {exc}", where=str(path),
                        fix="check that the file is a complete parquet file") from None
