"""The synthetic generator: deterministic, hierarchical, time-consistent, and content-driven labels."""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path

import numpy as np
import pytest

import sidkit.data.synthetic as synthetic
from sidkit.data.dataset import Dataset, load_dataset
from sidkit.data.synthetic import (
    SyntheticConfig,
    generate_synthetic,
    load_synthetic_config,
    true_affinity,
    write_synthetic,
)
from sidkit.errors import ConfigError

# Several generation blocks of items (16384) and impressions (65536), so block seams are exercised.
CONFIG = SyntheticConfig(items=20_000, users=400, interactions=140_000, dim=32, topics=(8, 4, 4), seed=3)
FILES = ("items.parquet", "interactions.parquet", "users.parquet", "embeddings.npy", "synthetic.json")


@pytest.fixture(scope="module")
def data() -> Dataset:
    return generate_synthetic(CONFIG)


def _auc(score: np.ndarray, label: np.ndarray) -> float:
    """Mann-Whitney AUC (scores are continuous, so ties do not matter)."""
    ranks = np.empty(len(score))
    ranks[np.argsort(score, kind="stable")] = np.arange(1, len(score) + 1)
    pos = int(label.sum())
    neg = len(label) - pos
    return float((ranks[label == 1].sum() - pos * (pos + 1) / 2) / (pos * neg))


def _assert_same(a: Dataset, b: Dataset) -> None:
    ca, cb = a.catalog, b.catalog
    np.testing.assert_array_equal(ca.item_ids, cb.item_ids)
    np.testing.assert_array_equal(ca.text, cb.text)
    np.testing.assert_array_equal(ca.embeddings, cb.embeddings)
    assert ca.columns.keys() == cb.columns.keys()
    for name in ca.columns:
        np.testing.assert_array_equal(ca.columns[name], cb.columns[name], err_msg=name)
    ia, ib = a.interactions, b.interactions
    for name in ("user_ids", "item_ids", "timestamps"):
        np.testing.assert_array_equal(getattr(ia, name), getattr(ib, name), err_msg=name)
    assert ia.labels.keys() == ib.labels.keys() == {"click", "like"}
    for name in ia.labels:
        np.testing.assert_array_equal(ia.labels[name], ib.labels[name], err_msg=name)
    assert a.users is not None and b.users is not None and a.users.equals(b.users)
    assert a.manifest is not None and b.manifest is not None
    assert dataclasses.replace(a.manifest, created="") == dataclasses.replace(b.manifest, created="")


def test_same_seed_same_data_other_seed_other_data(data: Dataset) -> None:
    _assert_same(data, generate_synthetic(CONFIG))
    other = generate_synthetic(dataclasses.replace(CONFIG, seed=4))
    assert not np.array_equal(other.catalog.embeddings, data.catalog.embeddings)
    assert not np.array_equal(other.interactions.item_ids, data.interactions.item_ids)
    assert not np.array_equal(other.catalog.columns["topic_l2"], data.catalog.columns["topic_l2"])


def test_write_round_trip_is_byte_identical_and_independent_of_chunks(data: Dataset, tmp_path: Path) -> None:
    first = write_synthetic(CONFIG, tmp_path / "a", chunk_rows=5_000)
    write_synthetic(CONFIG, tmp_path / "b", chunk_rows=5_000)
    write_synthetic(CONFIG, tmp_path / "c", chunk_rows=1 << 17)
    for name in FILES:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    loaded = load_dataset(tmp_path / "a")
    assert loaded.manifest == first
    assert first.source == "synthetic" and first.num_items == CONFIG.items
    assert first.num_interactions == CONFIG.interactions and first.embedding_dim == CONFIG.dim
    _assert_same(loaded, data)
    _assert_same(load_dataset(tmp_path / "c"), data)
    assert load_synthetic_config(tmp_path / "a") == CONFIG


def test_ground_truth_columns_and_text(data: Dataset) -> None:
    cols = data.catalog.columns
    k0, k1, k2 = CONFIG.topics
    l0, l1, l2 = cols["topic_l0"], cols["topic_l1"], cols["topic_l2"]
    np.testing.assert_array_equal(l1 // k1, l0)
    np.testing.assert_array_equal(l2 // k2, l1)
    assert len(np.unique(l2)) == k0 * k1 * k2  # every leaf holds items
    assert data.catalog.embeddings is not None and data.catalog.embeddings.dtype == np.float32
    for row in np.random.default_rng(0).integers(0, CONFIG.items, 20):
        a, b, c = int(l0[row]), int(l1[row]) % k1, int(l2[row]) % k2
        expected = f"topic {a} / sub {a}.{b} / leaf {a}.{b}.{c} item {data.catalog.item_ids[row]}"
        assert data.catalog.text[row] == expected


def test_items_of_a_topic_are_closer_the_deeper_they_share_it(data: Dataset) -> None:
    x = np.asarray(data.catalog.embeddings, dtype=np.float64)
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    rng = np.random.default_rng(1)
    cols = data.catalog.columns
    l0, l1, l2 = cols["topic_l0"], cols["topic_l1"], cols["topic_l2"]

    def pairs_within(level: np.ndarray, deeper: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Random pairs sharing ``level`` but not ``deeper`` (about 20k of them)."""
        order = np.argsort(level, kind="stable")
        a = rng.integers(0, len(x), 60_000)
        start = np.searchsorted(level[order], level[a], side="left")
        stop = np.searchsorted(level[order], level[a], side="right")
        b = order[start + (rng.random(len(a)) * (stop - start)).astype(np.int64)]
        keep = a != b if deeper is None else deeper[a] != deeper[b]
        return a[keep], b[keep]

    def mean_cos(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.mean(np.sum(unit[a] * unit[b], axis=1)))

    def mean_dist(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.mean(np.linalg.norm(x[a] - x[b], axis=1)))

    leaf, sub, top = pairs_within(l2, None), pairs_within(l1, l2), pairs_within(l0, l1)
    rand = rng.integers(0, len(x), (2, 20_000))
    assert min(len(leaf[0]), len(sub[0]), len(top[0])) > 5_000
    cosines = [mean_cos(*leaf), mean_cos(*sub), mean_cos(*top), mean_cos(rand[0], rand[1])]
    dists = [mean_dist(*leaf), mean_dist(*sub), mean_dist(*top), mean_dist(rand[0], rand[1])]
    assert all(a > b + 0.03 for a, b in itertools.pairwise(cosines)), cosines
    assert all(a < b for a, b in itertools.pairwise(dists)), dists


def test_leaf_covariance_is_anisotropic(data: Dataset) -> None:
    x = np.asarray(data.catalog.embeddings, dtype=np.float64)
    leaf = data.catalog.columns["topic_l2"]
    biggest = np.bincount(leaf).argmax()
    spread = x[leaf == biggest].std(axis=0)
    assert spread.max() / spread.min() > 2.0  # isotropic noise would give a ratio near 1


def test_popularity_is_zipf_and_drives_impressions(data: Dataset) -> None:
    weight = np.sort(np.asarray(data.catalog.columns["popularity"]))[::-1]
    rank = np.arange(1, len(weight) + 1)
    middle = slice(100, len(weight) // 2)  # the extremes of a finite sample are noisy
    slope = np.polyfit(np.log(rank[middle]), np.log(weight[middle]), 1)[0]
    assert slope == pytest.approx(-CONFIG.popularity_exponent, abs=0.15)
    start = data.catalog.columns["introduced_at"] == CONFIG.start_time  # items shown all period long
    counts = np.bincount(data.interactions.item_ids, minlength=CONFIG.items)[start]
    top = np.sort(counts)[::-1]
    assert top[: len(top) // 10].sum() > 0.4 * top.sum()  # heavy head
    pop_rank = np.argsort(np.argsort(data.catalog.columns["popularity"][start]))
    count_rank = np.argsort(np.argsort(counts))
    assert np.corrcoef(pop_rank, count_rank)[0, 1] > 0.5


def test_users_see_mostly_their_topics(data: Dataset) -> None:
    assert data.users is not None
    top_topic = data.users.column("top_topic").to_numpy()
    inter = data.interactions
    shown = data.catalog.columns["topic_l0"][inter.item_ids]
    share = float(np.mean(shown == top_topic[inter.user_ids]))
    assert share > 2.0 / CONFIG.topics[0]


def test_time_order_and_introduction(data: Dataset) -> None:
    inter = data.interactions
    times = inter.timestamps
    assert inter.timestamps.dtype == np.int64 and inter.item_ids.dtype == np.int64
    assert np.all(np.diff(times) >= 0)
    assert times[0] >= CONFIG.start_time and times[-1] < CONFIG.start_time + CONFIG.duration
    introduced = data.catalog.columns["introduced_at"]
    assert np.all(introduced[inter.item_ids] <= times)


def test_later_window_holds_new_items(data: Dataset) -> None:
    inter = data.interactions
    cutoff = CONFIG.start_time + CONFIG.duration // 2
    early, late = inter.timestamps < cutoff, inter.timestamps >= cutoff
    new_items = np.setdiff1d(np.unique(inter.item_ids[late]), np.unique(inter.item_ids[early]))
    born_late = data.catalog.columns["introduced_at"][inter.item_ids] >= cutoff  # per impression
    assert not np.any(born_late & early)
    shown_late = np.unique(inter.item_ids[late & born_late])  # items that did not exist before the cutoff
    assert len(shown_late) > 500
    assert np.all(np.isin(shown_late, new_items))
    assert np.mean(born_late[late]) > 0.05


def test_content_predicts_labels(data: Dataset) -> None:
    inter = data.interactions
    click, like = inter.labels["click"], inter.labels["like"]
    assert 0.05 < click.mean() < 0.95
    truth = true_affinity(CONFIG, data)
    assert truth.click_logit.shape == truth.like_logit.shape == (len(inter),)
    assert _auc(truth.click_logit, click) > 0.7
    clicked = click == 1
    assert _auc(truth.like_logit[clicked], like[clicked]) > 0.65
    # Calibrated: the mean predicted click probability matches the click rate.
    assert np.mean(1 / (1 + np.exp(-truth.click_logit))) == pytest.approx(click.mean(), abs=0.01)
    # Content alone (the leaf centre a user prefers) already predicts clicks.
    cols = data.catalog.columns
    assert data.users is not None
    top_topic = data.users.column("top_topic").to_numpy()
    in_top = cols["topic_l0"][inter.item_ids] == top_topic[inter.user_ids]
    assert click[in_top].mean() > click[~in_top].mean() + 0.1


def test_like_only_where_click(data: Dataset) -> None:
    click, like = data.interactions.labels["click"], data.interactions.labels["like"]
    assert click.dtype == like.dtype == np.int8
    assert np.all(like <= click)
    assert 0 < like.sum() < click.sum()


def test_true_affinity_from_disk_matches_memory(data: Dataset, tmp_path: Path) -> None:
    small = dataclasses.replace(CONFIG, items=2_000, interactions=5_000, topics=(4, 4, 4))
    write_synthetic(small, tmp_path / "d")
    loaded = load_dataset(tmp_path / "d", mmap=True)
    config = load_synthetic_config(tmp_path / "d")
    a, b = true_affinity(config, loaded), true_affinity(small, generate_synthetic(small))
    np.testing.assert_allclose(a.click_logit, b.click_logit, rtol=1e-12)
    np.testing.assert_allclose(a.like_logit, b.like_logit, rtol=1e-12)
    with pytest.raises(ConfigError, match="does not match the config"):
        true_affinity(CONFIG, loaded)


def test_failed_write_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(synthetic, "_users_table", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        write_synthetic(CONFIG, tmp_path / "out")
    assert list(tmp_path.iterdir()) == []  # neither the target nor the temporary build directory


def test_refuses_to_clobber_unless_asked(tmp_path: Path) -> None:
    small = dataclasses.replace(CONFIG, items=500, users=50, interactions=1_000, topics=(2, 2, 2))
    (tmp_path / "out").mkdir()
    write_synthetic(small, tmp_path / "out")  # an empty directory is fine
    with pytest.raises(ConfigError, match="not empty") as info:
        write_synthetic(small, tmp_path / "out")
    assert "overwrite" in str(info.value)
    other = dataclasses.replace(small, seed=9)
    write_synthetic(other, tmp_path / "out", overwrite=True)
    assert load_synthetic_config(tmp_path / "out") == other
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no leftovers beside it


@pytest.mark.parametrize(("kwargs", "where", "needle"), [
    ({"items": 100}, "SyntheticConfig.items", "1024 leaf topics"),
    ({"items": 0}, "SyntheticConfig.items", "positive"),
    ({"users": -3}, "SyntheticConfig.users", "positive"),
    ({"interactions": 2.5}, "SyntheticConfig.interactions", "integer"),
    ({"dim": 1}, "SyntheticConfig.dim", "at least 2"),
    ({"topics": ()}, "SyntheticConfig.topics", "non-empty"),
    ({"topics": (4, 0)}, "SyntheticConfig.topics", "positive integers"),
    ({"level_scales": (1.0, 0.5)}, "SyntheticConfig.level_scales", "one per level"),
    ({"personalization": 1.5}, "SyntheticConfig.personalization", "[0, 1]"),
    ({"user_concentration": 0.0}, "SyntheticConfig.user_concentration", "positive"),
    ({"leaf_spread": -1.0}, "SyntheticConfig.leaf_spread", "non-negative"),
    ({"click_bias": float("nan")}, "SyntheticConfig.click_bias", "finite"),
    ({"like_scale": "big"}, "SyntheticConfig.like_scale", "finite number"),
    ({"topics": 16}, "SyntheticConfig.topics", "tuple"),
    ({"seed": -1}, "SyntheticConfig.seed", "non-negative"),
])
def test_config_errors_say_what_where_and_how(kwargs: dict[str, object], where: str, needle: str) -> None:
    base: dict[str, object] = {"items": 2_000}
    with pytest.raises(ConfigError) as info:
        SyntheticConfig(**{**base, **kwargs})  # type: ignore[arg-type]
    error = info.value
    assert error.where == where
    assert needle in error.problem
    assert error.fix


def test_items_below_leaves_suggests_topics_that_fit() -> None:
    with pytest.raises(ConfigError) as info:
        SyntheticConfig(items=600, topics=(16, 8, 8))
    assert info.value.fix is not None and "topics=(8, 8, 8)" in info.value.fix
    SyntheticConfig(items=600, topics=(8, 8, 8))  # and that suggestion is valid


def test_bad_chunk_rows(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="chunk_rows"):
        write_synthetic(CONFIG, tmp_path / "x", chunk_rows=0)
    assert not (tmp_path / "x").exists()


def test_other_depths() -> None:
    flat = generate_synthetic(SyntheticConfig(items=300, users=20, interactions=2_000, dim=8, topics=(5,)))
    assert set(flat.catalog.columns) >= {"topic_l0", "introduced_at", "popularity"}
    assert flat.catalog.text[0].startswith("topic ")
    deep = generate_synthetic(SyntheticConfig(items=400, users=20, interactions=2_000, dim=8,
                                              topics=(2, 2, 2, 2)))
    assert "topic_l3" in deep.catalog.columns
    assert deep.catalog.text[0].count(" / ") == 3
    assert np.all(deep.interactions.labels["like"] <= deep.interactions.labels["click"])
