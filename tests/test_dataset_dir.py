"""The dataset directory: a round trip preserves everything, and broken directories fail clearly."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from sidkit.data.catalog import ItemCatalog
from sidkit.data.dataset import Dataset, load_dataset, save_dataset, save_embeddings
from sidkit.data.files import dataset_from_files, read_embeddings
from sidkit.data.interactions import Interactions
from sidkit.errors import DataError


@pytest.fixture
def dataset() -> Dataset:
    rng = np.random.default_rng(0)
    n, m = 30, 200
    catalog = ItemCatalog(
        np.arange(100, 100 + n), [f"item {i} é" for i in range(n)],
        rng.normal(size=(n, 8)).astype(np.float32),
        {"genre": np.array([f"g{i % 3}" for i in range(n)], dtype=object), "year": np.arange(n) + 1990},
    )
    inter = Interactions(rng.integers(0, 10, m), rng.integers(100, 100 + n, m), np.sort(rng.integers(0, 1000, m)),
                         rng.integers(1, 6, m).astype(np.float32),
                         {"click": rng.integers(0, 2, m), "like": rng.integers(0, 2, m)})
    users = pa.table({"user_id": np.arange(10), "age": np.arange(10) * 3})
    return Dataset(catalog, inter, users)


def test_round_trip_preserves_everything(dataset, tmp_path):
    save_dataset(dataset, tmp_path)
    loaded = load_dataset(tmp_path)
    a, b = dataset.catalog, loaded.catalog
    np.testing.assert_array_equal(a.item_ids, b.item_ids)
    assert list(a.text) == list(b.text)
    np.testing.assert_array_equal(a.embeddings, b.embeddings)
    assert set(a.columns) == set(b.columns)
    for name in a.columns:
        assert list(a.columns[name]) == list(b.columns[name])
    x, y = dataset.interactions, loaded.interactions
    for field in ("user_ids", "item_ids", "timestamps", "ratings"):
        np.testing.assert_array_equal(getattr(x, field), getattr(y, field))
    assert set(x.labels) == set(y.labels)
    for name in x.labels:
        np.testing.assert_array_equal(x.labels[name], y.labels[name])
    assert loaded.users.equals(dataset.users)
    assert loaded.manifest == dataset.manifest
    assert json.loads((tmp_path / "manifest.json").read_text())["num_items"] == 30


def test_memory_mapped_embeddings(dataset, tmp_path):
    save_dataset(dataset, tmp_path)
    loaded = load_dataset(tmp_path, mmap=True)
    assert isinstance(loaded.catalog.embeddings, np.memmap)
    np.testing.assert_array_equal(loaded.catalog.embeddings, dataset.catalog.embeddings)


def test_save_embeddings_checks_alignment(dataset, tmp_path):
    save_dataset(dataset, tmp_path)
    with pytest.raises(DataError, match="30 items"):
        save_embeddings(tmp_path, np.zeros((29, 4), np.float32), "m")
    save_embeddings(tmp_path, np.ones((30, 4), np.float32), "my-model")
    loaded = load_dataset(tmp_path)
    assert loaded.catalog.dim == 4 and loaded.manifest.embedding_model == "my-model"


def test_failed_write_leaves_previous_file(dataset, tmp_path, monkeypatch):
    save_dataset(dataset, tmp_path)
    before = (tmp_path / "items.parquet").read_bytes()

    def broken(table, where):
        with open(where, "wb") as handle:
            handle.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(pq, "write_table", broken)
    with pytest.raises(OSError, match="disk full"):
        save_dataset(dataset, tmp_path)
    assert (tmp_path / "items.parquet").read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_missing_directory_and_files(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_dataset(tmp_path / "nope")
    with pytest.raises(DataError, match=r"items\.parquet is missing"):
        load_dataset(tmp_path)


def test_missing_column(dataset, tmp_path):
    save_dataset(dataset, tmp_path)
    pq.write_table(pa.table({"user_id": [1], "item_id": [100]}), tmp_path / "interactions.parquet")
    with pytest.raises(DataError, match="'timestamp' is missing"):
        load_dataset(tmp_path)


def test_files_csv_and_parquet_embeddings(dataset, tmp_path):
    cat, inter = dataset.catalog, dataset.interactions
    pacsv.write_csv(pa.table({"item_id": cat.item_ids, "text": cat.text.astype(str)}), tmp_path / "items.csv")
    pacsv.write_csv(pa.table({"user_id": inter.user_ids, "item_id": inter.item_ids,
                              "timestamp": inter.timestamps, "rating": inter.ratings}),
                    tmp_path / "events.csv")
    emb = cat.embeddings
    pq.write_table(pa.table({"item_id": cat.item_ids, "embedding": list(emb)}), tmp_path / "emb.parquet")
    np.save(tmp_path / "emb.npy", emb)
    np.testing.assert_array_equal(read_embeddings(tmp_path / "emb.parquet"), emb)
    mapped = read_embeddings(tmp_path / "emb.npy")
    assert isinstance(mapped, np.memmap)
    built = dataset_from_files(tmp_path / "items.csv", tmp_path / "events.csv", tmp_path / "emb.parquet")
    np.testing.assert_array_equal(built.catalog.embeddings, emb)
    np.testing.assert_array_equal(built.interactions.ratings, inter.ratings)
    with pytest.raises(DataError, match="unsupported"):
        read_embeddings(tmp_path / "items.csv")
