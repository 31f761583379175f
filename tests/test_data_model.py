"""Validation of ItemCatalog, Interactions and Dataset: every failure names the problem and the fix."""

from __future__ import annotations

import numpy as np
import pytest

from sidkit.data.catalog import ItemCatalog, check_embedding_dim
from sidkit.data.dataset import Dataset
from sidkit.data.interactions import Interactions
from sidkit.errors import DataError


def catalog(n: int = 4, dim: int = 3, **overrides) -> ItemCatalog:
    args = dict(item_ids=np.arange(n), text=[f"item {i}" for i in range(n)],
                embeddings=np.ones((n, dim), np.float32))
    args.update(overrides)
    return ItemCatalog(**args)


def test_valid_catalog_normalizes_types():
    c = catalog(embeddings=np.ones((4, 3), np.float64))
    assert c.embeddings.dtype == np.float32
    assert c.item_ids.dtype == np.int64
    assert c.dim == 3 and len(c) == 4


def test_string_ids_are_kept():
    c = catalog(item_ids=np.array(["a", "b", "c", "d"]))
    assert c.index_of(np.array(["c", "a"])).tolist() == [2, 0]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (dict(item_ids=np.array([1.5, 2.0, 3.0, 4.0])), "integers or strings"),
        (dict(item_ids=np.array([0, 1, 1, 2])), "duplicate item ids"),
        (dict(text=["a", "b"]), "does not match"),
        (dict(text=["a", "b", None, "d"]), "not strings"),
        (dict(embeddings=np.ones((3, 3), np.float32)), "3 rows but the catalog has 4"),
        (dict(embeddings=np.ones((4,), np.float32)), "must be 2-d"),
        (dict(embeddings=np.ones((4, 3), np.int32)), "floating point"),
        (dict(item_ids=np.array([], np.int64), text=[], embeddings=None), "no rows"),
    ],
)
def test_catalog_errors(overrides, message):
    with pytest.raises(DataError, match=message) as info:
        catalog(**overrides)
    assert "items" in str(info.value) or "embeddings" in str(info.value)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_embeddings_name_the_row(bad):
    emb = np.ones((4, 3), np.float32)
    emb[2, 1] = bad
    with pytest.raises(DataError, match="first at row 2") as info:
        catalog(embeddings=emb)
    assert "Fix:" in str(info.value)


def test_wrong_dimension_for_a_model():
    with pytest.raises(DataError, match="dimension 8"):
        check_embedding_dim(np.ones((4, 3), np.float32), 8, where="X.npy")


def interactions(**overrides) -> Interactions:
    args = dict(user_ids=[1, 1, 2], item_ids=[0, 2, 3], timestamps=[5, 6, 7], ratings=[4.0, 3.0, 5.0],
                labels={"click": [1, 0, 1]})
    args.update(overrides)
    return Interactions(**args)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (dict(item_ids=[0, 2]), "does not match"),
        (dict(timestamps=["a", "b", "c"]), "expected numbers"),
        (dict(timestamps=[1.0, np.nan, 2.0]), "NaN or inf"),
        (dict(ratings=[1.0, np.nan, 2.0]), "ratings hold NaN"),
        (dict(labels={"click": [1, 2, 0]}), "0 or 1"),
        (dict(user_ids=[], item_ids=[], timestamps=[], ratings=None, labels={}), "no rows"),
        (dict(user_ids=[[1], [2], [3]]), "one-dimensional"),
    ],
)
def test_interaction_errors(overrides, message):
    with pytest.raises(DataError, match=message):
        interactions(**overrides)


def test_unknown_item_ids_in_interactions():
    with pytest.raises(DataError, match=r"not in the catalog, for example \[9\]") as info:
        Dataset(catalog(), interactions(item_ids=[0, 9, 3]))
    assert "interactions" in str(info.value)


def test_take_keeps_columns_aligned():
    inter = interactions()
    part = inter.take(np.array([2, 0]))
    assert part.item_ids.tolist() == [3, 0]
    assert part.labels["click"].tolist() == [1, 1]
    assert part.ratings.tolist() == [5.0, 4.0]
