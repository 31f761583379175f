"""Ranking data from a dataset: impressions with click/like labels, user features, history, splits, slices.

The protocol (docs/ranking.md, "The protocol") avoids four traps, each of which alone pushed every
feature set to an AUC near 0.5:

1. **Split per user by time** (main): the last ``test_share`` of each user's interactions test, the
   latest ``valid_share`` of the rest validate. ``split="global-time"`` cuts all users at the same
   times instead (a "new users" view, since most MovieLens users rate in one burst).
2. **Negatives exclude every item the user ever engaged with** (any split, any time).
3. **Negatives come from time-local popularity**: the item of a random engagement among the
   ``negative_window`` engagements on either side in global time order, so items new in the test
   period are sampled as negatives as often as they are engaged, and popularity shift between
   periods cannot become a label.
4. **History**: the last H engaged items strictly before the impression time, most recent first.

Two kinds of input:

- engagements (MovieLens: every rating): each row is a click; ``negatives`` items per engagement are
  sampled as non-clicked impressions; like = rating >= ``like_threshold`` (0 for sampled items).
- impressions (synthetic): a ``click`` label with zeros in it means the rows are real impressions;
  they are used as they are, with their ``click`` and ``like`` labels, and nothing is sampled.

**Item hold-out.** A random ``item_holdout`` share of the engaged items is removed from training
entirely: their train and validation impressions are dropped, they are never sampled as negatives
there, and they never appear in train or validation histories. In the test split they are ordinary
items (as candidates, negatives and history), and they form the ``new`` slice with any other item
absent from training.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from sidkit.data.dataset import Dataset, load_dataset
from sidkit.errors import ConfigError, DataError
from sidkit.features.hashing import field_salt, hash_rows, stable_keys
from sidkit.ranking.types import SLICES, RankingData, RankingSplit

SPLITS: tuple[str, ...] = ("user-time", "global-time")
SPLIT_NAMES: tuple[str, ...] = ("train", "valid", "test")
TRAIN, VALID, TEST = 0, 1, 2
#: users.parquet columns used as user features, when present.
DEMOGRAPHIC_FIELDS: tuple[str, ...] = ("age", "gender", "occupation")
#: Age bucket edges (MovieLens-1M's groups: under 18, 18-24, 25-34, 35-44, 45-49, 50-55, 56+).
AGE_EDGES: tuple[int, ...] = (18, 25, 35, 45, 50, 56)
# Rounds of redrawing rejected negatives before giving up on the few left.
_MAX_NEGATIVE_ROUNDS = 64
_KEY_LIMIT = 1 << 62  # combined (user, time) int64 sort keys stay below this


@dataclass(frozen=True, eq=False)
class _Impressions:
    """Impressions before they are split into RankingSplits; all arrays (M,)."""

    item: np.ndarray
    user: np.ndarray
    time: np.ndarray
    split: np.ndarray
    labels: dict[str, np.ndarray]
    order: np.ndarray  # a sort key that keeps each engagement's negatives after it


def build_ranking_data(dataset: Dataset | str | os.PathLike[str], *, history: int = 20, negatives: int = 4,
                       split: str = "user-time", test_share: float = 0.2, valid_share: float = 0.1,
                       item_holdout: float = 0.2, seed: int = 0, like_threshold: float = 4.0,
                       negative_window: int = 1000, user_buckets: int | None = None) -> RankingData:
    """Build train, validation and test impressions from a dataset (or a dataset directory).

    Args:
        dataset: a Dataset, or the path of a dataset directory.
        history: H, engaged items per impression (0 for none).
        negatives: sampled non-engaged impressions per engagement (engagement data only).
        split: ``"user-time"`` (per user by time, the main protocol) or ``"global-time"``.
        test_share: share of each user's interactions (user-time) or of all (global-time) in test.
        valid_share: share of the remaining latest interactions in validation.
        item_holdout: share of engaged items removed from training (the ``new`` slice in test).
        seed: seeds the hold-out, the negatives and the user-id hash.
        like_threshold: ratings at or above it are likes (rated data only).
        negative_window: engagements on either side, in global time order, that negatives come from.
        user_buckets: rows for the hashed user id; None gives every user its own row.

    Returns:
        RankingData whose splits hold items as catalog rows, user features as rows of one user
        table (user id, then age bucket, gender and occupation when users.parquet has them), and
        tasks ``("click", "like")`` (``("click",)`` when the data have no like signal).
    """
    _check_args(history=history, negatives=negatives, split=split, test_share=test_share,
                valid_share=valid_share, item_holdout=item_holdout, seed=seed, like_threshold=like_threshold,
                negative_window=negative_window, user_buckets=user_buckets)
    if not isinstance(dataset, Dataset):
        dataset = load_dataset(dataset, embeddings=False)
    inter = dataset.interactions
    num_items = len(dataset.catalog)
    items = dataset.catalog.index_of(inter.item_ids)
    user_values, users = _dense_codes(inter.user_ids)
    times = inter.timestamps
    click = inter.labels.get("click")
    impression_mode = click is not None and bool(np.any(click == 0))
    engaged = (click == 1) if impression_mode and click is not None else np.ones(len(inter), dtype=bool)
    like = _like_signal(inter.labels, inter.ratings, like_threshold, impression_mode)
    tasks = ("click", "like") if like is not None else ("click",)

    split_of = (_user_time_split(users, times, test_share, valid_share) if split == "user-time"
                else _global_time_split(times, test_share, valid_share))
    holdout_rng, negative_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    heldout = _hold_out_items(items[engaged], num_items, item_holdout, holdout_rng)
    keep = ~(heldout[items] & (split_of != TEST))

    if impression_mode:
        labels = {"click": engaged.astype(np.float32)}
        if like is not None:
            labels["like"] = like.astype(np.float32)
        rows = np.flatnonzero(keep)
        impressions = _Impressions(items[rows], users[rows], times[rows], split_of[rows],
                                   {k: v[rows] for k, v in labels.items()}, rows * 2)
    else:
        impressions = _with_negatives(items, users, times, split_of, keep, like, negatives=negatives,
                                      window=negative_window, heldout=heldout, num_items=num_items,
                                      rng=negative_rng)

    # Histories: train and validation never see held-out items; test sees every engagement.
    eng = np.flatnonzero(engaged)
    clean = eng[~heldout[items[eng]]]
    timelines = {TEST: _Timeline.build(users[eng], times[eng], items[eng]),
                 TRAIN: _Timeline.build(users[clean], times[clean], items[clean])}
    user_table, num_user_embeddings = _user_features(user_values, dataset.users, user_buckets, seed)
    splits: dict[str, RankingSplit] = {}
    for code, name in enumerate(SPLIT_NAMES):
        timeline = timelines[TEST if code == TEST else TRAIN]
        splits[name] = _make_split(impressions, code, timeline, user_table, history=history, pad=num_items)
    if len(splits["train"]) == 0:
        raise DataError("the training split is empty", where="interactions",
                        fix="lower test_share / valid_share / item_holdout, or use more interactions")
    train_items = _training_items(splits["train"], num_items)
    sliced = _with_slices(splits, train_items)
    return RankingData(sliced["train"], sliced["valid"], sliced["test"], num_items, num_user_embeddings,
                       tasks, train_items, heldout)


def training_item_counts(data: RankingData) -> np.ndarray:
    """Training impressions per item, (N,) int64: the ``train_items`` weights for ``sid-spm``."""
    return np.bincount(data.train.item, minlength=data.num_items).astype(np.int64)


def ranking_summary(data: RankingData) -> dict[str, Any]:
    """Counts for reports: per split the impressions, users, positives per task, and slice sizes."""
    summary: dict[str, Any] = {
        "num_items": data.num_items, "tasks": list(data.tasks),
        "num_user_embeddings": data.num_user_embeddings,
        "train_items": int(data.train_items.sum()), "heldout_items": int(data.heldout_items.sum()),
    }
    for name, part in (("train", data.train), ("valid", data.valid), ("test", data.test)):
        summary[name] = {
            "impressions": len(part), "users": len(np.unique(part.user)),
            "positives": {task: int(part.labels[task].sum()) for task in data.tasks},
            "slices": {s: int(mask.sum()) for s, mask in part.slices.items()},
            "history_fill": float(np.mean(part.history < data.num_items)) if part.history.size else 0.0,
        }
    return summary


# ----- labels and splits ---------------------------------------------------------------------------


def _like_signal(labels: Mapping[str, np.ndarray], ratings: np.ndarray | None, threshold: float,
                 impression_mode: bool) -> np.ndarray | None:
    """(M,) bool like per row, or None when the data have no like signal."""
    if impression_mode:
        return labels["like"] == 1 if "like" in labels else None
    if ratings is not None:
        return ratings >= threshold
    return labels["like"] == 1 if "like" in labels else None


def _user_time_split(users: np.ndarray, times: np.ndarray, test_share: float, valid_share: float) -> np.ndarray:
    """(M,) int8 split code: per user, the latest rows by (time, row order) test, then validation."""
    span = int(times.max()) - int(times.min()) + 1
    if (int(users.max()) + 1) * span < _KEY_LIMIT:  # one stable sort of a combined key beats lexsort
        order = np.argsort(users * span + (times - times.min()), kind="stable")
    else:
        order = np.lexsort((times, users))  # stable: equal times keep row order
    sorted_users = users[order]
    counts = np.bincount(sorted_users)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    position = np.arange(len(order)) - starts[sorted_users]
    n = counts[sorted_users]
    n_test = np.floor(test_share * n + 0.5).astype(np.int64)
    n_valid = np.floor(valid_share * (n - n_test) + 0.5).astype(np.int64)
    code = np.where(position >= n - n_test, TEST, np.where(position >= n - n_test - n_valid, VALID, TRAIN))
    split = np.empty(len(order), dtype=np.int8)
    split[order] = code
    return split


def _global_time_split(times: np.ndarray, test_share: float, valid_share: float) -> np.ndarray:
    """(M,) int8 split code: rows at or after the time that leaves ``test_share`` of rows test."""
    split = np.zeros(len(times), dtype=np.int8)
    ordered = np.sort(times)
    cut = math.ceil((1.0 - test_share) * len(ordered))
    if cut < len(ordered):
        split[times >= ordered[cut]] = TEST
    rest = np.sort(times[split != TEST])
    cut = math.ceil((1.0 - valid_share) * len(rest))
    if cut < len(rest):
        split[(split != TEST) & (times >= rest[cut])] = VALID
    return split


def _hold_out_items(engaged_items: np.ndarray, num_items: int, share: float,
                    rng: np.random.Generator) -> np.ndarray:
    """(N,) bool: a random ``share`` of the items that have engagements."""
    heldout = np.zeros(num_items, dtype=bool)
    candidates = _sorted_unique(engaged_items)
    count = math.floor(share * len(candidates) + 0.5)
    if count:
        heldout[rng.choice(candidates, size=count, replace=False)] = True
    return heldout


# ----- negatives -----------------------------------------------------------------------------------


def _with_negatives(items: np.ndarray, users: np.ndarray, times: np.ndarray, split_of: np.ndarray,
                    keep: np.ndarray, like: np.ndarray | None, *, negatives: int, window: int,
                    heldout: np.ndarray, num_items: int, rng: np.random.Generator) -> _Impressions:
    """Each kept engagement as a click, followed by ``negatives`` time-local sampled non-clicks."""
    m = len(items)
    timeline = np.argsort(times, kind="stable")  # every engagement in global time order
    position = np.empty(m, dtype=np.int64)
    position[timeline] = np.arange(m)
    engaged_keys = _sorted_unique(users * num_items + items)  # (user, item) pairs never to sample

    rows = np.flatnonzero(keep)
    source = np.repeat(rows, negatives)
    width = min(2 * window + 1, m)
    low = np.clip(position[source] - window, 0, m - width)
    allow_heldout = split_of[source] == TEST
    sampled = np.full(len(source), -1, dtype=np.int64)
    todo = np.arange(len(source))
    for _ in range(_MAX_NEGATIVE_ROUNDS):
        if todo.size == 0:
            break
        candidate = items[timeline[low[todo] + rng.integers(0, width, todo.size)]]
        key = users[source[todo]] * num_items + candidate
        found = np.searchsorted(engaged_keys, key)
        seen = engaged_keys[np.minimum(found, len(engaged_keys) - 1)] == key
        bad = seen | (heldout[candidate] & ~allow_heldout[todo])
        sampled[todo[~bad]] = candidate[~bad]
        todo = todo[bad]
    ok = sampled >= 0  # the few still rejected (users who engaged with nearly all nearby items) drop
    source, sampled = source[ok], sampled[ok]
    rank = np.tile(np.arange(1, negatives + 1), len(rows))[ok]

    item = np.concatenate([items[rows], sampled])
    origin = np.concatenate([rows, source])
    labels = {"click": np.concatenate([np.ones(len(rows)), np.zeros(len(sampled))]).astype(np.float32)}
    if like is not None:
        labels["like"] = np.concatenate([like[rows], np.zeros(len(sampled), dtype=bool)]).astype(np.float32)
    order = origin * (negatives + 1) + np.concatenate([np.zeros(len(rows), dtype=np.int64), rank])
    return _Impressions(item, users[origin], times[origin], split_of[origin], labels, order)


# ----- per split -----------------------------------------------------------------------------------


def _make_split(imp: _Impressions, code: int, timeline: _Timeline, user_table: np.ndarray, *,
                history: int, pad: int) -> RankingSplit:
    picked = np.flatnonzero(imp.split == code)
    picked = picked[np.lexsort((imp.order[picked], imp.time[picked]))]  # time order, then engagement order
    user, time = imp.user[picked], imp.time[picked]
    return RankingSplit(imp.item[picked].astype(np.int64), user_table[user],
                        timeline.histories(user, time, length=history, pad=pad),
                        {task: values[picked] for task, values in imp.labels.items()},
                        time.astype(np.int64), user.astype(np.int64))


@dataclass(frozen=True, eq=False)
class _Timeline:
    """Engagements sorted by (user, time, row), with one int64 sort key each.

    Attributes:
        keys: (E,) non-decreasing ``user * span + (time - t0)``.
        items: (E,) catalog rows in the same order.
        span, t0: the key's time scale and origin.
    """

    keys: np.ndarray
    items: np.ndarray
    span: int
    t0: int

    @staticmethod
    def build(users: np.ndarray, times: np.ndarray, items: np.ndarray) -> _Timeline:
        t0 = int(times.min()) if len(times) else 0
        # Impressions outside the engagements' time range clip onto its edges, which keeps their order.
        span = (int(times.max()) - t0 + 3) if len(times) else 1
        if (int(users.max()) + 1 if len(users) else 1) * span >= _KEY_LIMIT:
            raise DataError(f"timestamps span {span} steps, too many to index with {int(users.max()) + 1} users",
                            where="interactions.timestamp", fix="store timestamps in seconds or coarser")
        keys = users * span + (times - t0 + 1)
        order = np.argsort(keys, kind="stable")
        return _Timeline(keys[order], items[order], span, t0)

    def histories(self, user: np.ndarray, time: np.ndarray, *, length: int, pad: int) -> np.ndarray:
        """(M, length) int64: per impression, the user's engaged items strictly before its time, latest first.

        One binary search per impression (in key order, which keeps it cache-friendly) finds how many
        of the user's engagements come strictly earlier; ``length`` gathers read them backwards.
        """
        out = np.full((len(user), length), pad, dtype=np.int64)
        if length == 0 or len(user) == 0 or len(self.keys) == 0:
            return out
        offset = np.clip(time - self.t0 + 1, 0, self.span - 1)
        key = user * self.span + offset
        order = np.argsort(key)
        end = np.empty(len(key), dtype=np.int64)
        end[order] = np.searchsorted(self.keys, key[order], side="left")  # first at or after (user, time)
        start = np.searchsorted(self.keys, user[order] * self.span, side="left")
        available = np.empty(len(key), dtype=np.int64)
        available[order] = end[order] - start
        for k in range(length):
            has = available > k
            out[has, k] = self.items[end[has] - 1 - k]
        return out


def _training_items(train: RankingSplit, num_items: int) -> np.ndarray:
    """(N,) bool: items anywhere in the training tensors, as candidate or in a history."""
    seen = np.zeros(num_items, dtype=bool)
    seen[train.item] = True
    seen[train.history[train.history < num_items]] = True
    return seen


def _with_slices(splits: dict[str, RankingSplit], train_items: np.ndarray) -> dict[str, RankingSplit]:
    """The splits with slices all, new (item absent from training), tail and head (by training clicks)."""
    tail, head = _tail_head(splits["train"], train_items, len(train_items))
    out = {}
    for name, part in splits.items():
        slices = {"all": np.ones(len(part), dtype=bool), "new": ~train_items[part.item],
                  "tail": tail[part.item], "head": head[part.item]}
        out[name] = RankingSplit(part.item, part.user_features, part.history, part.labels, part.time,
                                 part.user, {s: slices[s] for s in SLICES})
    return out


def _tail_head(train: RankingSplit, train_items: np.ndarray, num_items: int) -> tuple[np.ndarray, np.ndarray]:
    """(N,) bool tail and head: training items split in halves by training engagements (clicks)."""
    clicks = np.bincount(train.item[train.labels["click"] == 1], minlength=num_items)
    trained = np.flatnonzero(train_items)
    ranked = trained[np.lexsort((trained, clicks[trained]))]  # fewest clicks first, ties by item row
    tail = np.zeros(num_items, dtype=bool)
    head = np.zeros(num_items, dtype=bool)
    half = len(ranked) // 2
    tail[ranked[:half]] = True
    head[ranked[half:]] = True
    return tail, head


# ----- user features -------------------------------------------------------------------------------


def _user_features(user_values: np.ndarray, users: pa.Table | None, buckets: int | None,
                   seed: int) -> tuple[np.ndarray, int]:
    """(U, F) int64 rows of one user table per user (0 = padding), and the table's rows."""
    n = len(user_values)
    if buckets is None or buckets >= n:
        columns = [np.arange(1, n + 1, dtype=np.int64)]
        offset = n
    else:
        columns = [1 + hash_rows(stable_keys(user_values), buckets=buckets, salt=field_salt(seed, "user-id"))]
        offset = buckets
    for values, size in _demographics(user_values, users):
        columns.append(np.where(values > 0, values + offset, 0))
        offset += size
    return np.column_stack(columns), offset + 1


def _demographics(user_values: np.ndarray, users: pa.Table | None) -> list[tuple[np.ndarray, int]]:
    """Per present demographic field: (U,) int64 codes in [0, size] (0 = unknown), and size."""
    if users is None or "user_id" not in users.column_names:
        return []
    fields = [name for name in DEMOGRAPHIC_FIELDS if name in users.column_names]
    if not fields:
        return []
    table_ids = users.column("user_id").to_numpy(zero_copy_only=False)
    if table_ids.dtype.kind != user_values.dtype.kind and not (
            table_ids.dtype.kind in "iu" and user_values.dtype.kind in "iu"):
        raise DataError(f"users.parquet user_id is {table_ids.dtype}, interactions use {user_values.dtype}",
                        where="users.parquet", fix="store user ids of the same type in both files")
    order = np.argsort(table_ids, kind="stable")
    found = np.clip(np.searchsorted(table_ids, user_values, sorter=order), 0, max(len(order) - 1, 0))
    row = order[found] if len(order) else np.zeros(len(user_values), dtype=np.int64)
    present = table_ids[row] == user_values if len(order) else np.zeros(len(user_values), dtype=bool)
    out = []
    for name in fields:
        column = users.column(name)
        valid = ~np.asarray(column.is_null().to_numpy(zero_copy_only=False), dtype=bool)
        values = column.to_numpy(zero_copy_only=False)
        numeric = pa.types.is_integer(column.type) or pa.types.is_floating(column.type)
        if name == "age" and numeric:  # ages fall into fixed buckets; other fields are categories
            numbers = np.where(valid, values, 0).astype(np.float64)
            codes = np.digitize(numbers, AGE_EDGES).astype(np.int64) + 1
            size = len(AGE_EDGES) + 1
        else:
            text = np.where(valid, values.astype(str), "")
            vocabulary, inverse = np.unique(text[valid], return_inverse=True)
            codes = np.zeros(len(text), dtype=np.int64)
            codes[valid] = inverse.reshape(-1) + 1
            size = len(vocabulary)
        codes = np.where(valid, codes, 0)
        out.append((np.where(present, codes[row], 0), size))
    return out


# ----- helpers -------------------------------------------------------------------------------------


def _dense_codes(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct values (U,) and each row's index among them (M,) int64, without hashing.

    numpy 2's hash-based np.unique is several times slower than sorting on millions of int64 ids.
    """
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    first = np.ones(len(ordered), dtype=bool)
    first[1:] = ordered[1:] != ordered[:-1]
    codes = np.empty(len(values), dtype=np.int64)
    codes[order] = np.cumsum(first) - 1
    return ordered[first], codes


def _sorted_unique(keys: np.ndarray) -> np.ndarray:
    keys = np.sort(keys)
    if keys.size:
        keys = keys[np.concatenate([[True], keys[1:] != keys[:-1]])]
    return keys


# ----- checks --------------------------------------------------------------------------------------


def _check_args(*, history: int, negatives: int, split: str, test_share: float, valid_share: float,
                item_holdout: float, seed: int, like_threshold: float, negative_window: int,
                user_buckets: int | None) -> None:
    def integer(name: str, value: object, low: int) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ConfigError(f"{name} must be an integer >= {low}, got {value!r}", where=name)

    integer("history", history, 0)
    integer("negatives", negatives, 1)
    integer("seed", seed, 0)
    integer("negative_window", negative_window, 1)
    if user_buckets is not None:
        integer("user_buckets", user_buckets, 1)
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}", where="split",
                          fix=f"use one of {', '.join(SPLITS)} (user-time is the main protocol)")
    if not 0.0 < float(test_share) < 1.0:
        raise ConfigError(f"test_share must lie strictly between 0 and 1, got {test_share}", where="test_share",
                          fix="use e.g. 0.2 (the last 20% of each user's interactions)")
    for name, value in (("valid_share", valid_share), ("item_holdout", item_holdout)):
        if not 0.0 <= float(value) < 1.0:
            raise ConfigError(f"{name} must lie in [0, 1), got {value}", where=name)
    if not math.isfinite(float(like_threshold)):
        raise ConfigError(f"like_threshold must be finite, got {like_threshold}", where="like_threshold")
