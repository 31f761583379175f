"""Next-item data: chronological order with stable ties, both splits, the item hold-out, no leakage."""

from __future__ import annotations

import numpy as np
import pytest

from sidkit.data.catalog import ItemCatalog
from sidkit.data.dataset import Dataset
from sidkit.data.interactions import Interactions
from sidkit.errors import ConfigError
from sidkit.retrieval.data import PAD, build_next_item_data, sequence_windows, training_windows


def _dataset(users, items, times, num_items=10):
    catalog = ItemCatalog(np.arange(1, num_items + 1), np.array([f"i{i}" for i in range(num_items)], dtype=object))
    return Dataset(catalog, Interactions(np.array(users), np.array(items), np.array(times)))


def _user_sequences(dataset):
    """Per user, items in (time, row) order, computed the slow way."""
    inter = dataset.interactions
    rows = dataset.catalog.index_of(inter.item_ids)
    out = {}
    for user in np.unique(inter.user_ids):
        picked = [i for i in range(len(inter)) if inter.user_ids[i] == user]
        picked.sort(key=lambda i: (inter.timestamps[i], i))
        out[user] = [int(rows[i]) for i in picked]
    return out


def test_ties_keep_file_order_and_leave_one_out_takes_the_last_two():
    # user 7: items 3, 1, 2 share time 5 (file order 3, 1, 2), then item 9 at time 6; item 4 earliest.
    data = build_next_item_data(_dataset([7, 7, 7, 7, 7], [3, 1, 2, 9, 4], [5, 5, 5, 6, 1]), history=3)
    # rows are item id - 1: sequence 4, 3, 1, 2, 9 -> rows 3, 2, 0, 1, 8
    assert data.test.targets.tolist() == [8]
    assert data.valid.targets.tolist() == [1]
    assert data.train.items.tolist() == [3, 2, 0]
    assert data.test.histories.tolist() == [[2, 0, 1]]  # the last 3, oldest first
    assert data.valid.histories.tolist() == [[3, 2, 0]]
    start, stop = data.test.exclude_offsets[0], data.test.exclude_offsets[1]
    assert sorted(data.test.exclude_items[start:stop].tolist()) == [0, 1, 2, 3]  # the whole past, not only 3


def test_short_histories_are_left_padded():
    data = build_next_item_data(_dataset([1, 1, 1], [1, 2, 3], [1, 2, 3]), history=4)
    assert data.valid.histories.tolist() == [[PAD, PAD, PAD, 0]]
    assert data.test.histories.tolist() == [[PAD, PAD, 0, 1]]


def test_leave_one_out_matches_a_slow_reference_and_never_trains_on_a_target(walks):
    data = build_next_item_data(walks, history=5)
    sequences = _user_sequences(walks)
    users = np.unique(walks.interactions.user_ids)
    assert len(data.test) == len(users)
    for index in range(len(data.train)):
        user = data.user_ids[data.train.users[index]]
        full = sequences[user]
        assert data.train.sequence(index).tolist() == full[:-2]
    for e in range(len(data.test)):
        user = data.user_ids[data.test.users[e]]
        full = sequences[user]
        assert data.test.targets[e] == full[-1]
        expected = full[:-1][-5:]
        assert [v for v in data.test.histories[e].tolist() if v != PAD] == expected
        train = data.train.sequence(int(np.flatnonzero(data.train.users == data.test.users[e])[0]))
        assert data.test.targets[e] not in train.tolist()
        assert data.valid.targets[e] not in train.tolist()


def test_global_time_trains_only_before_the_cut_and_tests_after_it(walks):
    data = build_next_item_data(walks, split="global-time", history=4, test_share=0.2, valid_share=0.2)
    inter = walks.interactions
    rows = walks.catalog.index_of(inter.item_ids)
    order = np.lexsort((np.arange(len(inter)), inter.timestamps))
    rank = np.empty(len(inter), dtype=np.int64)
    rank[order] = np.arange(len(inter))
    valid_start = int(np.ceil(0.6 * len(inter)))
    test_start = int(np.ceil(0.8 * len(inter)))
    train_rows = {(inter.user_ids[i], rows[i]) for i in range(len(inter)) if rank[i] < valid_start}
    got = {(data.user_ids[data.train.users[u]], item) for u in range(len(data.train)) for item in
           data.train.sequence(u).tolist()}
    assert got == train_rows
    for e in range(len(data.test)):
        user = data.user_ids[data.test.users[e]]
        mine = [i for i in range(len(inter)) if inter.user_ids[i] == user]
        after = sorted((rank[i], i) for i in mine if rank[i] >= test_start)
        assert data.test.targets[e] == rows[after[0][1]]  # the first interaction of the test period
        before = sorted((rank[i], i) for i in mine if rank[i] < test_start)
        assert [v for v in data.test.histories[e].tolist() if v != PAD] == [int(rows[i]) for _, i in before][-4:]
        assert (user, data.test.targets[e]) not in train_rows


def test_held_out_items_never_reach_training(walks):
    data = build_next_item_data(walks, history=5, item_holdout=0.25, seed=3)
    heldout = np.flatnonzero(data.heldout)
    assert len(heldout) == round(0.25 * data.candidates.sum())
    assert not np.isin(data.train.items, heldout).any()
    assert not np.isin(data.valid.targets, heldout).any()
    assert not np.isin(data.valid.histories, heldout).any()
    assert np.array_equal(data.test.new, data.heldout[data.test.targets])
    assert data.test.new.any()
    assert data.train_counts[heldout].sum() == 0
    other = build_next_item_data(walks, history=5, item_holdout=0.25, seed=4)
    assert not np.array_equal(other.heldout, data.heldout)
    again = build_next_item_data(walks, history=5, item_holdout=0.25, seed=3)
    assert np.array_equal(again.heldout, data.heldout)


def test_training_windows_follow_the_sequences(walks):
    data = build_next_item_data(walks, history=4)
    rng = np.random.default_rng(0)
    users, histories, targets = training_windows(data.train, history=4, per_user=3, rng=rng)
    assert np.bincount(users).max() <= 3
    by_user = {int(data.train.users[u]): data.train.sequence(u).tolist() for u in range(len(data.train))}
    for user, history, target in zip(users, histories, targets, strict=True):
        sequence = by_user[int(user)]
        real = [v for v in history.tolist() if v != PAD]
        assert real  # at least one item before the target
        position = next(p for p in range(1, len(sequence)) if sequence[p] == target)
        assert sequence[max(0, position - 4):position] == real
    _, _, every = training_windows(data.train, history=4, per_user=None, rng=rng)
    assert len(every) == int(np.sum(data.train.lengths - 1))


@pytest.mark.parametrize("length", [2, 3, 6])
def test_sequence_windows_train_every_target_once(walks, length):
    data = build_next_item_data(walks, history=5)
    users, windows, label_start = sequence_windows(data.train, length=length, rng=np.random.default_rng(1))
    seen = {}
    for user, window, start in zip(users, windows, label_start, strict=True):
        for j in range(start, length - 1):
            if window[j + 1] != PAD:
                assert window[j] != PAD or j == 0 or window[: j + 1].tolist().count(PAD) == j + 1
                seen.setdefault(int(user), []).append(int(window[j + 1]))
    for u in range(len(data.train)):
        sequence = data.train.sequence(u).tolist()
        assert sorted(seen.get(int(data.train.users[u]), [])) == sorted(sequence[1:])


def test_engagements_only_in_impression_data():
    catalog = ItemCatalog(np.arange(1, 5), np.array(["a", "b", "c", "d"], dtype=object))
    inter = Interactions(np.array([1] * 5), np.array([1, 2, 3, 4, 2]), np.arange(5),
                         labels={"click": [1, 0, 1, 1, 1]})
    data = build_next_item_data(Dataset(catalog, inter), history=2)
    # Engagements: items 1, 3, 4, 2 (the unclicked impression of item 2 at time 1 is none).
    assert data.test.targets.tolist() == [1]
    assert data.valid.targets.tolist() == [3]
    assert data.train.items.tolist() == [0, 2]


def test_bad_settings_get_one_line_errors(walks):
    with pytest.raises(ConfigError, match="unknown split"):
        build_next_item_data(walks, split="random")
    with pytest.raises(ConfigError, match="item_holdout"):
        build_next_item_data(walks, item_holdout=1.0)
    with pytest.raises(ConfigError, match="history"):
        build_next_item_data(walks, history=0)
