"""summarize_dataset reads columns one at a time; its numbers match those of the loaded dataset."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from sidkit.data import Dataset, Interactions, ItemCatalog, load_dataset, save_dataset, summarize_dataset
from sidkit.errors import DataError


@pytest.fixture(scope="module")
def directory(tmp_path_factory):
    rng = np.random.default_rng(3)
    n, events = 40, 500
    catalog = ItemCatalog(np.arange(1000, 1000 + n), [f"item {i}" for i in range(n)],
                          rng.normal(size=(n, 6)).astype(np.float32),
                          {"genre": np.array(["a", "b"] * 20, dtype=object)})
    interactions = Interactions(rng.integers(0, 30, events), rng.integers(1000, 1000 + n, events),
                                rng.integers(10, 10_000, events), rng.integers(1, 6, events).astype(np.float32),
                                {"click": rng.integers(0, 2, events), "like": rng.integers(0, 2, events)})
    users = pa.table({"user_id": np.arange(30), "age": rng.integers(18, 70, 30)})
    out = tmp_path_factory.mktemp("data") / "d"
    save_dataset(Dataset(catalog, interactions, users), out)
    return out


def test_summary_matches_the_loaded_dataset(directory):
    summary = summarize_dataset(directory)
    dataset = load_dataset(directory)
    inter = dataset.interactions
    assert summary.num_items == len(dataset.catalog) == 40
    assert summary.num_interactions == len(inter) and summary.num_users == len(np.unique(inter.user_ids))
    assert (summary.first_time, summary.last_time) == (inter.timestamps.min(), inter.timestamps.max())
    assert summary.interactions_per_user_median == np.median(np.unique(inter.user_ids, return_counts=True)[1])
    assert summary.interactions_per_item_median == np.median(np.unique(inter.item_ids, return_counts=True)[1])
    assert summary.rating_mean == pytest.approx(float(inter.ratings.mean()))
    assert summary.label_rates == pytest.approx({k: float(v.mean()) for k, v in inter.labels.items()})
    assert summary.item_columns == ("genre",) and summary.user_columns == ("user_id", "age")
    assert summary.embedding_shape == (40, 6)
    norms = np.linalg.norm(dataset.catalog.embeddings.astype(np.float64), axis=1)
    assert summary.embedding_mean_norm == pytest.approx(float(norms.mean()))
    assert summary.source == dataset.manifest.source
    assert dict(summary.rows())["items"] == "40"


def test_summary_refuses_a_directory_without_its_files(directory, tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        summarize_dataset(tmp_path / "missing")
    (tmp_path / "items.parquet").write_bytes((directory / "items.parquet").read_bytes())
    with pytest.raises(DataError, match=r"interactions.parquet is missing"):
        summarize_dataset(tmp_path)
    (tmp_path / "interactions.parquet").write_bytes(b"not parquet")
    with pytest.raises(DataError, match="cannot read parquet"):
        summarize_dataset(tmp_path)
