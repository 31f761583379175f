"""Behaviour pairs against a brute-force reference, the time split, and the positive-engagement rules."""

from __future__ import annotations

import numpy as np
import pytest

from sidkit.data.catalog import ItemCatalog
from sidkit.data.interactions import Interactions
from sidkit.data.pairs import BehaviourPairs, behaviour_pairs, positive_mask
from sidkit.errors import ConfigError, DataError


def make_catalog(n_items: int, *, offset: int = 100) -> ItemCatalog:
    # Item ids differ from row indices (and are shuffled) so a mix-up of the two shows.
    ids = np.random.default_rng(0).permutation(n_items) + offset
    return ItemCatalog(ids, np.array([f"item {i}" for i in ids], dtype=object))


def random_interactions(seed: int, catalog: ItemCatalog, *, n_rows: int = 300, n_users: int = 12,
                        n_times: int = 40) -> Interactions:
    rng = np.random.default_rng(seed)
    return Interactions(
        rng.integers(0, n_users, n_rows),
        catalog.item_ids[rng.integers(0, len(catalog), n_rows)],
        rng.integers(0, n_times, n_rows),  # few distinct times: many ties to order by row
        ratings=rng.integers(1, 6, n_rows).astype(np.float32),
    )


def reference_pairs(inter: Interactions, catalog: ItemCatalog, mask: np.ndarray, window: int,
                    split: int) -> tuple[set[tuple[int, int]], set[tuple[int, int]]]:
    """Pure-Python reading of the definition in docs/data.md ("Behaviour pairs"), one user at a time."""
    row_of = {item: row for row, item in enumerate(catalog.item_ids.tolist())}
    events: dict[object, list[tuple[int, int, int]]] = {}
    for i in range(len(inter)):
        if mask[i]:
            user = inter.user_ids[i].item()
            events.setdefault(user, []).append((int(inter.timestamps[i]), i, row_of[inter.item_ids[i].item()]))
    train: set[tuple[int, int]] = set()
    heldout: set[tuple[int, int]] = set()
    for seq in events.values():
        seq.sort()
        for a in range(len(seq)):
            for b in range(a + 1, min(a + window, len(seq) - 1) + 1):
                if seq[a][2] == seq[b][2]:
                    continue
                (train if seq[b][0] < split else heldout).add((seq[a][2], seq[b][2]))
    return train, heldout


def as_set(pairs: np.ndarray) -> set[tuple[int, int]]:
    return {(int(a), int(b)) for a, b in pairs}


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("window", [1, 2, 5, 50])
def test_matches_brute_force(seed: int, window: int) -> None:
    catalog = make_catalog(30)
    inter = random_interactions(seed, catalog)
    pairs = behaviour_pairs(inter, catalog, window=window, train_share=0.7)
    mask = positive_mask(inter)
    train, heldout = reference_pairs(inter, catalog, mask, window, pairs.split_time)
    assert pairs.train.dtype == np.int64 and pairs.heldout.dtype == np.int64
    assert pairs.train.shape[1:] == (2,) and pairs.heldout.shape[1:] == (2,)
    assert as_set(pairs.train) == train and as_set(pairs.heldout) == heldout
    # Deduplicated within each split.
    assert len(as_set(pairs.train)) == len(pairs.train)
    assert len(as_set(pairs.heldout)) == len(pairs.heldout)
    assert pairs.window == window and len(pairs) == len(train) + len(heldout)


@pytest.mark.parametrize("seed", [4, 5])
def test_string_ids_and_explicit_split(seed: int) -> None:
    catalog = ItemCatalog(np.array([f"m{i}" for i in range(20)]), np.array(["t"] * 20, dtype=object))
    rng = np.random.default_rng(seed)
    inter = Interactions(np.array([f"u{u}" for u in rng.integers(0, 5, 150)]),
                         catalog.item_ids[rng.integers(0, 20, 150)], rng.integers(0, 1000, 150))
    mask = rng.random(150) < 0.6
    pairs = behaviour_pairs(inter, catalog, window=3, split_time=500, positive=mask)
    train, heldout = reference_pairs(inter, catalog, mask, 3, 500)
    assert pairs.split_time == 500
    assert as_set(pairs.train) == train and as_set(pairs.heldout) == heldout


def test_split_keeps_later_events_out_of_train() -> None:
    # Every event has its own item, so each pair's later item tells its time exactly.
    rng = np.random.default_rng(7)
    n = 400
    catalog = ItemCatalog(np.arange(n), np.full(n, "", dtype=object))
    times = rng.integers(0, 150, n)
    inter = Interactions(rng.integers(0, 15, n), rng.permutation(n), times)
    time_of = np.empty(n, dtype=np.int64)
    time_of[catalog.index_of(inter.item_ids)] = times
    pairs = behaviour_pairs(inter, catalog, window=5)
    assert np.all(time_of[pairs.train[:, 1]] < pairs.split_time)
    assert np.all(time_of[pairs.heldout[:, 1]] >= pairs.split_time)
    assert np.all(time_of[pairs.train[:, 0]] <= time_of[pairs.train[:, 1]])  # (earlier, later)
    # The default split is the 0.8 quantile of the positive event times, an observed time.
    assert pairs.split_time in set(times.tolist())
    assert 0.75 <= np.mean(times < pairs.split_time) <= 0.85
    # Splitting at the first time puts nothing in train; after the last, nothing is held out.
    first = behaviour_pairs(inter, catalog, split_time=int(times.min()))
    last = behaviour_pairs(inter, catalog, split_time=int(times.max()) + 1)
    assert len(first.train) == 0 and len(last.heldout) == 0
    assert as_set(first.heldout) == as_set(last.train)


def test_pair_time_is_the_later_event() -> None:
    catalog = make_catalog(3, offset=0)
    rows = catalog.index_of(np.array([0, 1, 2]))
    # One user: item 0 at t=1, item 1 at t=5, item 2 at t=9. Split at 5.
    inter = Interactions(np.zeros(3, dtype=np.int64), np.array([0, 1, 2]), np.array([1, 5, 9]))
    pairs = behaviour_pairs(inter, catalog, window=2, split_time=5)
    assert pairs.train.shape == (0, 2)  # (0, 1) happens at t=5, not before the split
    assert as_set(pairs.heldout) == {(rows[0], rows[1]), (rows[0], rows[2]), (rows[1], rows[2])}


def test_window_one_gives_consecutive_pairs_only() -> None:
    catalog = make_catalog(6, offset=0)
    row = dict(zip(catalog.item_ids.tolist(), range(6), strict=True))
    # Rows out of time order; the same item twice in a row is not a pair.
    inter = Interactions(np.array([1, 1, 1, 1, 1, 2, 2]), np.array([3, 0, 1, 1, 2, 4, 5]),
                         np.array([40, 10, 20, 25, 30, 5, 6]))
    pairs = behaviour_pairs(inter, catalog, window=1, split_time=10**9)
    expected = {(row[0], row[1]), (row[1], row[2]), (row[2], row[3]), (row[4], row[5])}
    assert as_set(pairs.train) == expected and len(pairs.heldout) == 0
    wider = behaviour_pairs(inter, catalog, window=2, split_time=10**9)
    assert expected < as_set(wider.train)
    assert (row[0], row[2]) not in as_set(wider.train)  # three steps apart: 0 -> 1 -> 1 -> 2


def test_ties_follow_row_order() -> None:
    catalog = make_catalog(3, offset=0)
    row = dict(zip(catalog.item_ids.tolist(), range(3), strict=True))
    inter = Interactions(np.zeros(3, dtype=np.int64), np.array([2, 0, 1]), np.zeros(3, dtype=np.int64))
    pairs = behaviour_pairs(inter, catalog, window=1, split_time=1)
    assert as_set(pairs.train) == {(row[2], row[0]), (row[0], row[1])}


def test_positive_mask_rules() -> None:
    users, items, times = np.zeros(4, dtype=np.int64), np.arange(4), np.arange(4)
    ratings = np.array([5, 3, 4, 1], dtype=np.float32)
    click = np.array([1, 1, 0, 0])
    like = np.array([0, 1, 0, 1])
    both = Interactions(users, items, times, ratings, {"click": click, "like": like, "share": click[::-1]})
    assert positive_mask(both).tolist() == [False, True, False, True]  # like first
    assert positive_mask(both, label="click").tolist() == [True, True, False, False]
    assert positive_mask(both, label="share").tolist() == [False, False, True, True]
    clicks = Interactions(users, items, times, ratings, {"click": click})
    assert positive_mask(clicks).tolist() == [True, True, False, False]  # labels beat ratings
    rated = Interactions(users, items, times, ratings)
    assert positive_mask(rated).tolist() == [True, False, True, False]  # rating >= 4
    assert positive_mask(rated, min_rating=3).tolist() == [True, True, True, False]
    assert positive_mask(Interactions(users, items, times)).tolist() == [True] * 4
    with pytest.raises(ConfigError, match="label 'buy'"):
        positive_mask(both, label="buy")


def test_negatives_never_pair() -> None:
    catalog = make_catalog(4, offset=0)
    inter = Interactions(np.zeros(4, dtype=np.int64), np.arange(4), np.arange(4),
                         np.array([5, 1, 5, 5], dtype=np.float32))
    pairs = behaviour_pairs(inter, catalog, window=1, split_time=100)
    rows = catalog.index_of(np.array([0, 2, 3]))
    assert as_set(pairs.train) == {(rows[0], rows[1]), (rows[1], rows[2])}  # item 1 skipped, not a gap


def test_errors() -> None:
    catalog = make_catalog(5)
    inter = random_interactions(0, catalog, n_rows=20)
    for window in (0, -1, 1.5, True):
        with pytest.raises(ConfigError, match="window"):
            behaviour_pairs(inter, catalog, window=window)  # type: ignore[arg-type]
    for share in (0.0, 1.0, -0.2, 1.5, float("nan")):
        with pytest.raises(ConfigError, match="train_share"):
            behaviour_pairs(inter, catalog, train_share=share)
    with pytest.raises(DataError, match="positive"):
        behaviour_pairs(inter, catalog, positive=np.ones(3, dtype=bool))
    with pytest.raises(DataError, match="no positive"):
        behaviour_pairs(inter, catalog, positive=np.zeros(len(inter), dtype=bool))
    with pytest.raises(DataError, match="not in the catalog"):
        behaviour_pairs(inter, make_catalog(5, offset=1000))


def test_result_is_frozen() -> None:
    catalog = make_catalog(10)
    pairs = behaviour_pairs(random_interactions(1, catalog, n_rows=60), catalog)
    assert isinstance(pairs, BehaviourPairs)
    with pytest.raises(AttributeError):
        pairs.window = 3  # type: ignore[misc]


def test_many_rows_quickly() -> None:
    # Vectorized: 1M rows, 20k users, window 5 in a few seconds at most.
    rng = np.random.default_rng(0)
    n = 1_000_000
    catalog = ItemCatalog(np.arange(5000), np.full(5000, "", dtype=object))
    inter = Interactions(rng.integers(0, 20_000, n), rng.integers(0, 5000, n), rng.integers(0, 10**6, n))
    pairs = behaviour_pairs(inter, catalog)
    assert len(pairs.train) > len(pairs.heldout) > 0
    assert pairs.train.max() < 5000 and pairs.heldout.min() >= 0
