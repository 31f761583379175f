"""Ranking data: no leakage (history, hold-out, negatives, SPM), splits, slices, user features, ML-100K counts."""

from __future__ import annotations

import time

import numpy as np
import pyarrow as pa
import pytest

from sidkit.data.catalog import ItemCatalog
from sidkit.data.dataset import Dataset, save_dataset
from sidkit.data.interactions import Interactions
from sidkit.errors import ConfigError, DataError
from sidkit.ranking.data import (
    build_ranking_data,
    encode_users,
    ranking_summary,
    training_item_counts,
)
from sidkit.ranking.types import SLICES, RankingData, RankingSplit


def engagement_dataset(seed: int = 0, *, n_items: int = 40, n_users: int = 9, n_rows: int = 400) -> Dataset:
    rng = np.random.default_rng(seed)
    item_ids = rng.permutation(n_items) + 500  # ids differ from rows, so a mix-up shows
    catalog = ItemCatalog(item_ids, np.array([f"item {i}" for i in item_ids], dtype=object))
    users = rng.integers(0, n_users, n_rows) * 10 + 3
    items = item_ids[rng.integers(0, n_items, n_rows)]
    # One rating per (user, item), as in MovieLens.
    _, first = np.unique(users.astype(np.int64) * 10_000 + items, return_index=True)
    first = np.sort(first)
    times = rng.integers(0, 60, n_rows)  # few distinct times: many ties
    inter = Interactions(users[first], items[first], times[first],
                         ratings=rng.integers(1, 6, n_rows)[first].astype(np.float32))
    user_ids = np.arange(n_users - 1) * 10 + 3  # the last user has no row in users.parquet
    users_table = pa.table({
        "user_id": pa.array(user_ids, pa.int64()),
        "age": pa.array(([15, 20, 30, 40, 47, 52, 60, None] * n_users)[: n_users - 1], pa.int64()),
        "gender": pa.array(["F", "M"] * ((n_users - 1) // 2) + ["M"] * ((n_users - 1) % 2)),
        "occupation": pa.array([["writer", "doctor", "artist"][i % 3] for i in range(n_users - 1)]),
        "zip_code": pa.array(["00000"] * (n_users - 1)),
    })
    return Dataset(catalog, inter, users_table)


def impression_dataset(seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    n_items, n_rows = 30, 600
    catalog = ItemCatalog(np.arange(n_items), np.array(["x"] * n_items, dtype=object))
    click = (rng.random(n_rows) < 0.3).astype(np.int8)
    like = click * (rng.random(n_rows) < 0.5).astype(np.int8)
    inter = Interactions(rng.integers(0, 12, n_rows), rng.integers(0, n_items, n_rows), rng.integers(0, 100, n_rows),
                         labels={"click": click, "like": like})
    return Dataset(catalog, inter)


def splits(data: RankingData) -> dict[str, RankingSplit]:
    return {"train": data.train, "valid": data.valid, "test": data.test}


def engagements(dataset: Dataset) -> list[tuple[int, int, int, int]]:
    """(user code, time, row, catalog row) of every engagement (all rows, or click == 1)."""
    inter = dataset.interactions
    rows = dataset.catalog.index_of(inter.item_ids)
    codes = np.unique(inter.user_ids, return_inverse=True)[1].reshape(-1)
    click = inter.labels.get("click")
    return [(int(codes[i]), int(inter.timestamps[i]), i, int(rows[i])) for i in range(len(inter))
            if click is None or click[i] == 1]


def reference_history(events: list[tuple[int, int, int, int]], user: int, at: int, length: int, pad: int,
                      excluded: np.ndarray | None) -> list[int]:
    """Pure Python: the user's engaged items strictly before ``at``, latest first (ties: later row first)."""
    mine = sorted((t, r, item) for u, t, r, item in events if u == user and t < at
                  and (excluded is None or not excluded[item]))
    items = [item for _, _, item in reversed(mine)][:length]
    return items + [pad] * (length - len(items))


def history_exclusions(data: RankingData) -> dict[str, np.ndarray | None]:
    """Items each split's histories leave out: training every held-out item, validation the test ones."""
    assert data.valid_heldout_items is not None
    return {"train": data.heldout_items | data.valid_heldout_items, "valid": data.heldout_items, "test": None}


@pytest.mark.parametrize("split", ["user-time", "global-time"])
def test_history_is_strictly_earlier_and_matches_a_reference(split):
    dataset = engagement_dataset()
    data = build_ranking_data(dataset, history=5, negatives=2, split=split, seed=3)
    events = engagements(dataset)
    for name, part in splits(data).items():
        excluded = history_exclusions(data)[name]
        for j in range(len(part)):
            expected = reference_history(events, int(part.user[j]), int(part.time[j]), 5, data.num_items, excluded)
            assert part.history[j].tolist() == expected, (name, j)


def test_heldout_items_never_reach_training_tensors():
    dataset = engagement_dataset()
    data = build_ranking_data(dataset, history=6, negatives=3, item_holdout=0.3, valid_item_holdout=0.2, seed=1)
    heldout, valid_heldout = data.heldout_items, data.valid_heldout_items
    assert valid_heldout is not None
    engaged = len(np.unique(dataset.catalog.index_of(dataset.interactions.item_ids)))
    assert heldout.sum() == round(0.3 * engaged) and valid_heldout.sum() == round(0.2 * engaged)
    assert not (heldout & valid_heldout).any()  # validation never looks at a test item
    for part in (data.train, data.valid):
        assert not heldout[part.item].any()
        hist = part.history[part.history < data.num_items]
        assert not heldout[hist].any()
    assert not valid_heldout[data.train.item].any()
    assert not valid_heldout[data.train.history[data.train.history < data.num_items]].any()
    assert not valid_heldout[data.test.item].any()  # spent on validation: never a test candidate or negative
    assert not (data.train_items & (heldout | valid_heldout)).any()
    assert heldout[data.test.item].any()  # they are tested, as the new slice
    assert valid_heldout[data.valid.item].any()  # and the validation ones validate
    main = data.test.main
    assert np.all(data.test.slices["new"][main & heldout[data.test.item]])
    assert np.all(data.valid.slices["new"][data.valid.main & valid_heldout[data.valid.item]])
    assert np.array_equal(training_item_counts(data)[heldout], np.zeros(heldout.sum()))


def test_sid_spm_trained_on_training_items_never_sees_heldout_items():
    pytest.importorskip("sentencepiece")
    from sidkit.features.representations import build_representation
    from sidkit.ids import SemanticIds

    dataset = engagement_dataset()
    data = build_ranking_data(dataset, history=3, negatives=1, item_holdout=0.3, seed=2)
    n = data.num_items
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 3, (n, 3))
    codes[data.heldout_items] = [3, 3, 3]  # symbols only held-out items use
    sids = SemanticIds(codes, (4, 4, 4))

    def pieces_of_heldout(train_items: np.ndarray) -> np.ndarray:
        rep = build_representation("sid-spm", item_ids=dataset.catalog.item_ids, sids=sids, budget=40,
                                   train_items=train_items)
        return (rep.tokens[:-1][data.heldout_items] > 0).sum(axis=1)

    # Unseen in training, the pattern stays three single-symbol pieces.
    assert np.all(pieces_of_heldout(training_item_counts(data)) == 3)
    # The check can fail: a trainer that saw the held-out items merges their frequent pattern.
    assert np.all(pieces_of_heldout(np.ones(n, dtype=bool)) < 3)


def first_engaged(dataset: Dataset) -> dict[tuple[int, int], int]:
    """(user code, catalog row) -> the time the user first engaged with the item."""
    first: dict[tuple[int, int], int] = {}
    for user, t, _, item in engagements(dataset):
        first[(user, item)] = min(t, first.get((user, item), t))
    return first


def test_negatives_exclude_only_what_the_user_had_engaged_with_by_then():
    dataset = engagement_dataset()
    data = build_ranking_data(dataset, history=2, negatives=4, seed=0)
    first = first_engaged(dataset)
    total, later = 0, 0
    for part in splits(data).values():
        negative = np.flatnonzero(part.labels["click"] == 0)
        total += len(negative)
        for j in negative:
            key = (int(part.user[j]), int(part.item[j]))
            # Never an item engaged at or before the impression's time...
            assert key not in first or first[key] > part.time[j]
            later += key in first  # ...but a later engagement may be one: excluding it would use the future
        assert np.all(part.labels["like"][negative] == 0)
    assert total > 0 and later > 0


def reference_user_time_split(dataset: Dataset, test_share: float = 0.2, valid_share: float = 0.1) -> np.ndarray:
    """Pure Python: per user, the latest rows by (time, row) test, the latest of the rest validate."""
    inter = dataset.interactions
    out = np.zeros(len(inter), dtype=int)
    for user in np.unique(inter.user_ids):
        mine = sorted(np.flatnonzero(inter.user_ids == user).tolist(), key=lambda r: (inter.timestamps[r], r))
        n = len(mine)
        n_test = int(np.floor(test_share * n + 0.5))
        n_valid = int(np.floor(valid_share * (n - n_test) + 0.5))
        for position, r in enumerate(mine):
            out[r] = 2 if position >= n - n_test else 1 if position >= n - n_test - n_valid else 0
    return out


def test_negatives_come_from_the_past_pool_their_split_may_see():
    dataset = engagement_dataset(n_rows=600)
    window = 15
    data = build_ranking_data(dataset, history=2, negatives=3, seed=2, negative_window=window)
    inter = dataset.interactions
    rows = dataset.catalog.index_of(inter.item_ids)
    times = inter.timestamps
    split_of = reference_user_time_split(dataset)
    assert data.valid_heldout_items is not None
    banned = {0: data.heldout_items | data.valid_heldout_items, 1: data.heldout_items, 2: data.valid_heldout_items}
    checked = 0
    for code, part in enumerate((data.train, data.valid, data.test)):
        # The split's pool: engagements of splits up to it (a held-out item's rows from before its split
        # count: they happened), without the items the split may not show, in time order.
        visible = np.flatnonzero((split_of <= code) & ~banned[code][rows])
        visible = visible[np.argsort(times[visible], kind="stable")]
        for j in np.flatnonzero((part.labels["click"] == 0) & part.main):
            known = visible[times[visible] <= part.time[j]]  # at or before the impression: the past only
            assert part.item[j] in set(rows[known[-window:]].tolist()), (code, j)
            checked += 1
    assert checked > 100


def test_context_matched_new_negatives_share_the_positives_context():
    dataset = engagement_dataset(n_rows=800)
    data = build_ranking_data(dataset, history=4, negatives=2, item_holdout=0.3, valid_item_holdout=0.2, seed=1)
    first = first_engaged(dataset)
    for part, new_items in ((data.valid, data.valid_heldout_items), (data.test, data.heldout_items)):
        matched = part.slices["new-matched"]
        extra = matched & ~part.main
        assert extra.any() and part.group is not None
        assert np.all(part.labels["click"][extra] == 0)
        assert np.all(new_items[part.item[matched]])  # new items on both sides
        positives = np.flatnonzero(matched & part.main)
        assert np.all(part.labels["click"][positives] == 1)
        by_group = {int(part.group[j]): j for j in positives}
        for j in np.flatnonzero(extra):
            p = by_group[int(part.group[j])]  # every extra negative belongs to one positive of the slice
            assert part.user[j] == part.user[p] and part.time[j] == part.time[p]
            assert np.array_equal(part.history[j], part.history[p])
            assert np.array_equal(part.user_features[j], part.user_features[p])
            key = (int(part.user[j]), int(part.item[j]))
            assert key not in first or first[key] > part.time[j]
        # The extra rows stay out of every other slice.
        for name in ("all", "new", "tail", "head"):
            assert not (part.slices[name] & extra).any()
    assert not data.train.slices["new-matched"].any() and data.train.main.all()


def test_user_time_split_takes_each_users_latest_interactions():
    dataset = engagement_dataset()
    data = build_ranking_data(dataset, history=2, negatives=1, test_share=0.2, valid_share=0.1, item_holdout=0.0,
                              valid_item_holdout=0.0)
    inter = dataset.interactions
    codes = np.unique(inter.user_ids, return_inverse=True)[1].reshape(-1)
    counts = np.bincount(codes)
    n_test = np.floor(0.2 * counts + 0.5).astype(int)
    test_pos = data.test.labels["click"] == 1
    assert np.array_equal(np.bincount(data.test.user[test_pos], minlength=len(counts)), n_test)
    n_valid = np.floor(0.1 * (counts - n_test) + 0.5).astype(int)
    valid_pos = data.valid.labels["click"] == 1
    assert np.array_equal(np.bincount(data.valid.user[valid_pos], minlength=len(counts)), n_valid)
    for user in range(len(counts)):
        train_times = data.train.time[data.train.user == user]
        test_times = data.test.time[data.test.user == user]
        if len(train_times) and len(test_times):
            assert train_times.max() <= test_times.min()


def test_global_time_split_cuts_everyone_at_once():
    data = build_ranking_data(engagement_dataset(), history=2, negatives=1, split="global-time", item_holdout=0.0,
                              valid_item_holdout=0.0)
    assert data.train.time.max() <= data.valid.time.min() <= data.valid.time.max() <= data.test.time.min()


def test_slices_partition_every_split():
    data = build_ranking_data(engagement_dataset(), history=2, negatives=2, seed=4)
    for name, part in splits(data).items():
        s = part.slices
        assert tuple(s) == SLICES
        main = s["all"]
        assert np.all(s["new"].astype(int) + s["tail"] + s["head"] == main), name
        assert np.array_equal(s["new"], main & ~data.train_items[part.item])
    assert not data.train.slices["new"].any()
    clicks = np.bincount(data.train.item[data.train.labels["click"] == 1], minlength=data.num_items)
    tail_items = np.unique(data.train.item[data.train.slices["tail"]])
    head_items = np.unique(data.train.item[data.train.slices["head"]])
    assert clicks[tail_items].max() <= clicks[head_items].min()
    assert abs(len(tail_items) - len(head_items)) <= 1


def test_tail_and_head_follow_training_clicks_not_impressions():
    # Real impressions: item 0 is shown most but clicked least, item 1 shown least and clicked most.
    rows = [(u, 0, t, int(t % 20 == 0)) for u in range(6) for t in range(0, 60, 2)]
    rows += [(u, 1, t, 1) for u in range(6) for t in range(1, 33, 4)]
    rows += [(u, 2, t, int(t < 13)) for u in range(6) for t in range(1, 31, 3)]
    rows += [(u, 3, t, int(t < 16)) for u in range(6) for t in range(2, 32, 3)]
    users, items, times, click = (np.array(column) for column in zip(*rows, strict=True))
    dataset = Dataset(ItemCatalog(np.arange(4), np.array(["x"] * 4, dtype=object)),
                      Interactions(users, items, times, labels={"click": click.astype(np.int8)}))
    data = build_ranking_data(dataset, history=2, negatives=1, item_holdout=0.0, valid_item_holdout=0.0)
    impressions = np.bincount(data.train.item, minlength=4)
    clicks = np.bincount(data.train.item[data.train.labels["click"] == 1], minlength=4)
    assert impressions[0] > impressions[1] and clicks[0] < clicks[1]
    tail = set(np.unique(data.train.item[data.train.slices["tail"]]).tolist())
    head = set(np.unique(data.train.item[data.train.slices["head"]]).tolist())
    assert 0 in tail and 1 in head


def test_user_features_share_one_table():
    dataset = engagement_dataset()
    with pytest.warns(UserWarning, match="zip_code"):
        data = build_ranking_data(dataset, history=2, negatives=1, user_features=("age", "gender", "occupation"))
    assert data.user_field_names == ("user id", "age", "gender", "occupation")
    features = np.concatenate([p.user_features for p in splits(data).values()])
    n_users = len(np.unique(dataset.interactions.user_ids))
    assert features.shape[1] == 4  # user id, age bucket, gender, occupation
    ages, genders, occupations = 7, 2, 3  # 7 distinct ages: few integers are categories
    assert data.num_user_embeddings == 1 + n_users + ages + genders + occupations
    assert features.min() >= 0 and features.max() < data.num_user_embeddings
    assert features[:, 0].min() >= 1 and features[:, 0].max() <= n_users
    bounds = np.cumsum([n_users, ages, genders, occupations])
    for column in range(1, 4):
        known = features[:, column][features[:, column] > 0]
        assert known.min() > bounds[column - 1] and known.max() <= bounds[column]
    # The user missing from users.parquet, and the null age, are padding.
    last = np.concatenate([p.user for p in splits(data).values()]) == n_users - 1
    assert np.all(features[last, 1:] == 0)
    hashed = build_ranking_data(dataset, history=2, negatives=1, user_buckets=4,
                                user_features=("age", "gender", "occupation"))
    assert hashed.train.user_features[:, 0].max() <= 4
    assert hashed.num_user_embeddings == 1 + 4 + ages + genders + occupations


def test_every_user_column_by_default_numeric_ones_in_quantile_buckets():
    dataset = engagement_dataset(n_users=30, n_rows=900)
    ids = np.unique(dataset.interactions.user_ids)
    rng = np.random.default_rng(1)
    users = pa.table({"user_id": pa.array(ids, pa.int64()), "income": pa.array(rng.normal(size=len(ids))),
                      "country": pa.array([["fr", "de", "jp"][i % 3] for i in range(len(ids))]),
                      "handle": pa.array([f"user-{i}" for i in ids])})
    dataset = Dataset(dataset.catalog, dataset.interactions, users)
    with pytest.warns(UserWarning, match="'handle' is ignored"):
        data = build_ranking_data(dataset, history=2, negatives=1, numeric_buckets=4)
    assert data.user_field_names == ("user id", "income", "country")
    assert data.num_user_embeddings == 1 + len(ids) + 4 + 3
    income = data.train.user_features[:, 1] - len(ids)
    assert income.min() >= 1 and income.max() <= 4
    assert len(np.unique(income)) == 4  # quantile buckets: all used
    with pytest.raises(ConfigError, match="unknown user feature"):
        build_ranking_data(dataset, user_features=("income", "shoe_size"))
    # The saved encoding gives the same rows to the same users, and padding to an unseen user.
    rows = encode_users(data.user_encoding, np.append(ids, 10**9), users)
    for part in splits(data).values():
        assert np.array_equal(rows[part.user], part.user_features)
    assert rows[-1, 0] == 0


def test_every_label_column_is_a_task_and_like_is_also_judged_given_click():
    dataset = engagement_dataset()
    inter = dataset.interactions
    purchase = (np.random.default_rng(0).random(len(inter)) < 0.3).astype(np.int8)
    inter = Interactions(inter.user_ids, inter.item_ids, inter.timestamps, inter.ratings, {"purchase": purchase})
    data = build_ranking_data(Dataset(dataset.catalog, inter, dataset.users), history=2, negatives=2)
    assert data.tasks == ("click", "like", "purchase")
    assert data.conditional == (("like", "click"), ("purchase", "click"))
    negative = data.train.labels["click"] == 0
    assert np.all(data.train.labels["purchase"][negative] == 0) and data.train.labels["purchase"].sum() > 0
    only = build_ranking_data(Dataset(dataset.catalog, inter, dataset.users), history=2, negatives=2,
                              tasks=("click", "purchase"))
    assert only.tasks == ("click", "purchase")
    with pytest.raises(ConfigError, match="unknown task"):
        build_ranking_data(dataset, tasks=("click", "refund"))


def test_a_user_sample_keeps_whole_users():
    dataset = engagement_dataset(n_users=20, n_rows=800)
    data = build_ranking_data(dataset, history=2, negatives=1, max_users=8, seed=3)
    users = np.concatenate([p.user for p in splits(data).values()])
    assert len(np.unique(users)) == 8


def test_real_impressions_are_used_as_they_are():
    dataset = impression_dataset()
    data = build_ranking_data(dataset, history=4, negatives=5, item_holdout=0.2, valid_item_holdout=0.0, seed=0)
    assert data.tasks == ("click", "like")
    inter = dataset.interactions
    heldout_rows = data.heldout_items[inter.item_ids]  # item ids are catalog rows here
    main = data.test.main
    test_heldout = data.heldout_items[data.test.item] & main
    # Every impression is kept, but held-out items' impressions outside the test split.
    assert sum(int(p.main.sum()) for p in splits(data).values()) == int((~heldout_rows).sum() + test_heldout.sum())
    total_clicks = sum(int(p.labels["click"].sum()) for p in splits(data).values())
    kept_clicks = inter.labels["click"][~heldout_rows].sum() + data.test.labels["click"][test_heldout].sum()
    assert total_clicks == int(kept_clicks)
    events = engagements(dataset)  # history holds clicked impressions only
    for j in range(0, len(data.test), 7):
        expected = reference_history(events, int(data.test.user[j]), int(data.test.time[j]), 4, 30, None)
        assert data.test.history[j].tolist() == expected


def test_same_seed_same_data_and_directory_input(tmp_path):
    dataset = engagement_dataset()
    a = build_ranking_data(dataset, history=3, negatives=2, seed=5)
    save_dataset(dataset, tmp_path / "ds")
    b = build_ranking_data(tmp_path / "ds", history=3, negatives=2, seed=5)
    for name in ("train", "valid", "test"):
        pa_, pb = getattr(a, name), getattr(b, name)
        assert np.array_equal(pa_.item, pb.item) and np.array_equal(pa_.history, pb.history)
        assert np.array_equal(pa_.user_features, pb.user_features)
    c = build_ranking_data(dataset, history=3, negatives=2, seed=6)
    assert not np.array_equal(a.heldout_items, c.heldout_items)


def test_bad_arguments_say_what_to_do():
    dataset = engagement_dataset()
    with pytest.raises(ConfigError, match="user-time"):
        build_ranking_data(dataset, split="random")
    with pytest.raises(ConfigError, match="test_share"):
        build_ranking_data(dataset, test_share=0.0)
    with pytest.raises(ConfigError, match="negatives"):
        build_ranking_data(dataset, negatives=0)
    with pytest.raises(ConfigError, match="item_holdout"):
        build_ranking_data(dataset, item_holdout=1.0)
    with pytest.raises(DataError, match="does not exist"):
        build_ranking_data("/nonexistent/dataset")


@pytest.fixture(scope="module")
def movielens_data(movielens) -> tuple[RankingData, float]:
    start = time.perf_counter()
    data = build_ranking_data(movielens, history=20, negatives=4, seed=0, user_features=("age", "gender", "occupation"))
    return data, time.perf_counter() - start


def test_movielens_counts_and_slices(movielens, movielens_data):
    data, elapsed = movielens_data
    assert elapsed < 15  # about 2 s on one core
    assert data.num_items == 1682 and data.tasks == ("click", "like") and data.conditional == (("like", "click"),)
    assert data.valid_heldout_items is not None
    inter = movielens.interactions
    rows = movielens.catalog.index_of(inter.item_ids)
    split_of = reference_user_time_split(movielens)
    expected = {code: int(((split_of == code) & ~banned[rows]).sum()) for code, banned in
                ((0, data.heldout_items | data.valid_heldout_items), (1, data.heldout_items),
                 (2, data.valid_heldout_items))}
    for code, part in enumerate((data.train, data.valid, data.test)):
        positives = int(part.labels["click"][part.main].sum())
        assert positives == expected[code]
        assert part.main.sum() >= positives * 5 - 50  # 4 negatives each, bar a handful of heavy users
        assert part.history.shape == (len(part), 20)
        assert part.user_features.shape[1] == 4  # id, age, gender, occupation
    assert data.heldout_items.sum() == round(0.2 * len(np.unique(rows)))
    assert data.valid_heldout_items.sum() == round(0.1 * len(np.unique(rows)))
    for name in SLICES:
        mask = data.test.slices[name]
        assert mask.any(), name
        assert 0 < data.test.labels["click"][mask].mean() < 1, name
    new = data.test.slices["new"]
    # Time-local negatives from the past, held-out items' earlier engagements included: the new slice is
    # not nearly all positives (trap 3), its click rate is near the overall 1/5.
    assert abs(data.test.labels["click"][new].mean() - 0.2) < 0.05
    summary = ranking_summary(data)
    assert summary["test"]["positives"]["click"] == expected[2]


def test_movielens_representations_are_size_matched_and_train_only(movielens, movielens_embeddings, movielens_data):
    from sidkit.features.representations import build_representations
    from sidkit.tokenizers.rq_kmeans import RQKMeans

    data, _ = movielens_data
    sids = RQKMeans(levels=3, codebook_size=64, seed=0).fit(movielens_embeddings).encode(movielens_embeddings)
    names = ["hash", "sid-unigram", "sid-bigram", "sid-prefix", "hash+sid-prefix", "dense"]
    try:
        import sentencepiece  # noqa: F401

        names.append("sid-spm")
    except ImportError:
        pass
    counts = training_item_counts(data)
    assert counts[data.heldout_items].sum() == 0  # what sid-spm trains on holds no held-out item
    reps = build_representations(names, item_ids=movielens.catalog.item_ids, sids=sids,
                                 embeddings=movielens_embeddings, budget=4096, train_items=counts, seed=0)
    for name, rep in reps.items():
        assert rep.num_items == data.num_items and rep.pad_item == data.num_items
        if name == "dense":
            assert rep.num_embeddings == 1 and rep.dense is not None
        else:
            assert rep.num_embeddings == 4096 + 1, name  # a combination splits the budget
    # The point of SIDs: a held-out item's coarse prefix row is trained by training items.
    prefix = reps["sid-prefix"].tokens[:-1, 0]
    trained_rows = set(prefix[data.train_items].tolist())
    assert set(prefix[data.heldout_items].tolist()) <= trained_rows


def test_context_columns_are_impression_features_that_negatives_inherit(tmp_path):
    base = engagement_dataset(n_rows=500)
    inter = base.interactions
    rng = np.random.default_rng(2)
    device = rng.choice(["phone", "tv", "web"], len(inter))
    price = rng.normal(size=len(inter))
    table_inter = Interactions(inter.user_ids, inter.item_ids, inter.timestamps, inter.ratings,
                               context={"device": device, "price": price})
    dataset = Dataset(base.catalog, table_inter, base.users)
    # Context columns survive a dataset directory: not 0/1, so not labels.
    save_dataset(dataset, tmp_path / "ds")
    from sidkit.data.dataset import load_dataset

    loaded = load_dataset(tmp_path / "ds")
    assert set(loaded.interactions.context) == {"device", "price"} and "device" not in loaded.interactions.labels
    with pytest.warns(UserWarning, match="context features are ignored: price"):
        data = build_ranking_data(loaded, history=2, negatives=2, user_features=("gender",),
                                  context_features=("device",))
    assert data.user_field_names == ("user id", "gender", "context:device")
    assert data.tasks == ("click", "like")  # context is never a task
    for part in splits(data).values():
        column = part.user_features[:, 2]
        assert column.min() > 0 and column.max() < data.num_user_embeddings
        # Every impression carries its engagement's device: a group shares one context row.
        for group in np.unique(part.group)[:50]:
            assert len(np.unique(column[part.group == group])) == 1
    from sidkit.ranking.data import encode_context

    rows = encode_context(data.user_encoding, {"device": device}, len(device))
    train = data.train
    assert np.array_equal(rows[train.group, 0], train.user_features[:, 2])
    with pytest.raises(ConfigError, match="unknown context feature"):
        build_ranking_data(loaded, context_features=("weather",))
