"""Ranking data from a dataset: impressions with labels, user features, history, splits, slices.

The protocol follows the four traps of docs/ranking.md, each of which alone pushed every feature set
to AUC ~0.5, and uses only what was known at each impression's time:

1. **Split per user by time** (main): the last ``test_share`` of each user's interactions test, the
   latest ``valid_share`` of the rest validate. ``split="global-time"`` cuts all users at the same
   times instead (a "new users" view, since most MovieLens users rate in one burst).
2. **Negatives exclude what the user had engaged with by then**: an item the user engaged with at or
   before the impression's time is never its negative. A later engagement may be: excluding it would
   use the future (a user's later items are exactly the ones a model should not know yet).
3. **Negatives come from time-local popularity, from the past**: the item of a random engagement among
   the ``negative_window`` latest engagements at or before the impression's time, drawn from the
   engagements its split may see (training: training engagements; validation: training and
   validation; test: all). So items new in the test period are sampled as negatives about as often as
   they are engaged, and popularity shift between periods cannot become a label.
4. **History**: the last H engaged items strictly before the impression time, most recent first.

Two kinds of input:

- engagements (MovieLens: every rating): each row is a click; ``negatives`` items per engagement are
  sampled as non-clicked impressions; like = rating >= ``like_threshold`` (0 for sampled items); any
  other 0/1 label column is a task too (0 for sampled items).
- impressions (synthetic): a ``click`` label with zeros in it means the rows are real impressions;
  they are used as they are, with every label column as a task, and nothing is sampled for them.

**Item hold-outs.** Two disjoint random sets of engaged items never reach training: ``item_holdout``
(the test ``new`` slice: their train and validation rows are dropped) and ``valid_item_holdout`` (the
validation ``new`` slice: their train and test rows are dropped, and they are never test negatives),
so that early stopping can see cold-start quality without ever looking at a test item.

**Context-matched new items** (slice ``new-matched``, validation and test): for every engagement of
a held-out item, ``negatives`` extra negatives are drawn among the held-out items, from the same
time-local past pool restricted to them, for the same user, time and history. Its AUC compares each
such positive only with its own negatives, so users, histories and activity cannot differ between
the two sides. These rows are outside the ``all`` slice.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from sidkit.data.dataset import Dataset, load_dataset
from sidkit.errors import ConfigError, DataError
from sidkit.features.hashing import field_salt, hash_rows, stable_keys
from sidkit.ranking.types import MATCHED_SLICE, SLICES, RankingData, RankingSplit

SPLITS: tuple[str, ...] = ("user-time", "global-time")
SPLIT_NAMES: tuple[str, ...] = ("train", "valid", "test")
TRAIN, VALID, TEST = 0, 1, 2
#: Integer columns with more distinct values than this are numeric (quantile buckets), else categories.
MAX_CATEGORY_INTEGERS = 16
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
    group: np.ndarray  # the interaction row each impression was drawn for
    matched: np.ndarray  # bool: an extra negative of the new-matched slice


def build_ranking_data(dataset: Dataset | str | os.PathLike[str], *, history: int = 20, negatives: int = 2,
                       split: str = "user-time", test_share: float = 0.2, valid_share: float = 0.1,
                       item_holdout: float = 0.2, valid_item_holdout: float = 0.1, seed: int = 0,
                       like_threshold: float = 4.0, negative_window: int = 1000, user_buckets: int | None = None,
                       max_users: int | None = None, user_features: Sequence[str] | None = None,
                       numeric_buckets: int = 8, tasks: Sequence[str] | None = None,
                       context_features: Sequence[str] | None = None) -> RankingData:
    """Build train, validation and test impressions from a dataset (or a dataset directory).

    Args:
        dataset: a Dataset, or the path of a dataset directory.
        history: H, engaged items per impression (0 for none).
        negatives: sampled non-engaged impressions per engagement (engagement data only), and extra
            new-item negatives per new-item engagement (``new-matched``, validation and test).
        split: ``"user-time"`` (per user by time, the main protocol) or ``"global-time"``.
        test_share: share of each user's interactions (user-time) or of all (global-time) in test.
        valid_share: share of the remaining latest interactions in validation.
        item_holdout: share of engaged items removed from training and validation (test ``new``).
        valid_item_holdout: share of engaged items removed from training and test (validation ``new``).
        seed: seeds the hold-outs, the negatives, the user sample and the user-id hash.
        like_threshold: ratings at or above it are likes (rated data only).
        negative_window: the latest engagements at or before an impression that its negatives come from.
        user_buckets: rows for the hashed user id; None gives every user its own row.
        max_users: keep a random sample of this many users (None: all), for quick runs.
        user_features: users.parquet columns to use; None uses every column but ``user_id`` and
            columns that only rename the user (one distinct value per user), with a warning for those.
        numeric_buckets: quantile buckets of each numeric user or context feature.
        tasks: label tasks to train (None: every task the data have, ``click`` first).
        context_features: interactions.parquet columns that are neither ids, time, rating nor 0/1
            labels (device, country, ...), carried by each impression (a sampled negative carries its
            engagement's); None uses every such column, () none.

    Returns:
        RankingData whose splits hold items as catalog rows, user features as rows of one user table
        (user id first, then user features, then context features), and tasks (``click``, then
        ``like`` when there is a like signal, then other
        label columns).

    Raises:
        ConfigError: bad arguments, unknown user features or tasks.
        DataError: a dataset that leaves nothing to train on.
    """
    _check_args(history=history, negatives=negatives, split=split, test_share=test_share,
                valid_share=valid_share, item_holdout=item_holdout, valid_item_holdout=valid_item_holdout,
                seed=seed, like_threshold=like_threshold, negative_window=negative_window,
                user_buckets=user_buckets, max_users=max_users, numeric_buckets=numeric_buckets)
    if not isinstance(dataset, Dataset):
        dataset = load_dataset(dataset, embeddings=False)
    notes: list[str] = []
    holdout_rng, negative_rng, user_rng, valid_rng = (np.random.default_rng(s)
                                                      for s in np.random.SeedSequence(seed).spawn(4))
    inter = dataset.interactions
    num_items = len(dataset.catalog)
    items = dataset.catalog.index_of(inter.item_ids)
    user_values, users = _dense_codes(inter.user_ids)
    times = inter.timestamps
    rows_in = np.arange(len(inter))
    if max_users is not None and max_users < len(user_values):
        kept_users = np.sort(user_rng.choice(len(user_values), size=max_users, replace=False))
        rows_in = np.flatnonzero(np.isin(users, kept_users))
        user_values, users = _dense_codes(inter.user_ids[rows_in])
        items, times = items[rows_in], times[rows_in]
    click = inter.labels.get("click")
    click = click[rows_in] if click is not None else None
    impression_mode = click is not None and bool(np.any(click == 0))
    engaged = (click == 1) if impression_mode and click is not None else np.ones(len(items), dtype=bool)
    label_columns = _label_columns(inter.labels, inter.ratings, like_threshold, impression_mode, rows_in)
    label_columns = _chosen_tasks(label_columns, tasks)
    task_names = tuple(label_columns)

    split_of = (_user_time_split(users, times, test_share, valid_share) if split == "user-time"
                else _global_time_split(times, test_share, valid_share))
    heldout, valid_heldout = _hold_out_items(items[engaged], num_items, item_holdout, valid_item_holdout,
                                             holdout_rng, valid_rng)
    keep = (~(heldout[items] & (split_of != TEST)) & ~(valid_heldout[items] & (split_of != VALID)))

    known = _Known.build(users[engaged], items[engaged], times[engaged], num_items)
    banned = {TRAIN: heldout | valid_heldout, VALID: heldout, TEST: valid_heldout}
    pools = _Pools(items, times, split_of, engaged, banned, window=negative_window)
    if impression_mode:
        rows = np.flatnonzero(keep)
        labels = {name: values[rows].astype(np.float32) for name, values in label_columns.items()}
        base = _Impressions(items[rows], users[rows], times[rows], split_of[rows], labels,
                            rows * (2 * negatives + 2), rows, np.zeros(len(rows), dtype=bool))
    else:
        rows = np.flatnonzero(keep)
        base = _with_negatives(rows, items, users, times, split_of, label_columns, negatives=negatives,
                               pools=pools, known=known, banned=banned, rng=negative_rng, notes=notes)
    matched = _matched_negatives(items, users, times, split_of, engaged & keep, label_columns, negatives=negatives,
                                 new_items={VALID: valid_heldout, TEST: heldout}, pools=pools, known=known,
                                 rng=negative_rng, stride=2 * negatives + 2)
    impressions = _concat(base, matched)

    # Histories: training sees no held-out item; validation sees its own held-out items but no test
    # item; test sees every engagement.
    eng = np.flatnonzero(engaged)
    timelines = {}
    for code, excluded in ((TRAIN, heldout | valid_heldout), (VALID, heldout), (TEST, None)):
        chosen = eng if excluded is None else eng[~excluded[items[eng]]]
        timelines[code] = _Timeline.build(users[chosen], times[chosen], items[chosen])
    dataset_users = dataset.users
    user_table, num_user_embeddings, field_names, encoding = _user_features(
        user_values, dataset_users, user_buckets, seed, user_features, numeric_buckets, notes)
    context_table, num_user_embeddings, context_names, context_specs = _context_features(
        {name: values[rows_in] for name, values in inter.context.items()}, len(items), context_features,
        numeric_buckets, num_user_embeddings, notes)
    encoding["context"] = context_specs
    encoding["num_embeddings"] = num_user_embeddings
    field_names = field_names + context_names
    splits: dict[str, RankingSplit] = {}
    for code, name in enumerate(SPLIT_NAMES):
        splits[name] = _make_split(impressions, code, timelines[code], user_table, context_table, history=history,
                                   pad=num_items)
    if len(splits["train"]) == 0:
        raise DataError("the training split is empty", where="interactions",
                        fix="lower test_share / valid_share / item_holdout, or use more interactions")
    train_items = _training_items(splits["train"], num_items)
    sliced = _with_slices(splits, train_items)
    conditional = tuple((task, "click") for task in task_names if task != "click" and "click" in task_names)
    for note in notes:
        warnings.warn(note, UserWarning, stacklevel=2)
    return RankingData(sliced["train"], sliced["valid"], sliced["test"], num_items, num_user_embeddings,
                       task_names, train_items, heldout, valid_heldout, conditional, field_names, tuple(notes),
                       encoding)


def training_item_counts(data: RankingData) -> np.ndarray:
    """Training impressions per item, (N,) int64: the ``train_items`` weights for ``sid-spm``."""
    return np.bincount(data.train.item, minlength=data.num_items).astype(np.int64)


def ranking_summary(data: RankingData) -> dict[str, Any]:
    """Counts for reports: per split the impressions, users, positives per task, and slice sizes."""
    valid_heldout = data.valid_heldout_items
    summary: dict[str, Any] = {
        "num_items": data.num_items, "tasks": list(data.tasks),
        "conditional": [f"{task}|{given}" for task, given in data.conditional],
        "num_user_embeddings": data.num_user_embeddings, "user_fields": list(data.user_field_names),
        "train_items": int(data.train_items.sum()), "heldout_items": int(data.heldout_items.sum()),
        "valid_heldout_items": int(valid_heldout.sum()) if valid_heldout is not None else 0,
        "notes": list(data.notes),
    }
    for name, part in (("train", data.train), ("valid", data.valid), ("test", data.test)):
        main = part.main
        summary[name] = {
            "impressions": int(main.sum()), "users": len(np.unique(part.user[main])),
            "positives": {task: int(part.labels[task][main].sum()) for task in data.tasks},
            "slices": {s: int(mask.sum()) for s, mask in part.slices.items()},
            "history_fill": float(np.mean(part.history < data.num_items)) if part.history.size else 0.0,
        }
    return summary


# ----- labels and splits ---------------------------------------------------------------------------


def _label_columns(labels: Mapping[str, np.ndarray], ratings: np.ndarray | None, threshold: float,
                   impression_mode: bool, rows: np.ndarray) -> dict[str, np.ndarray]:
    """Task -> (M,) bool label per row: click, like, then the other label columns by name."""
    out: dict[str, np.ndarray] = {}
    if impression_mode:
        out["click"] = labels["click"][rows] == 1
    else:
        out["click"] = np.ones(len(rows), dtype=bool)
    if not impression_mode and ratings is not None:
        out["like"] = ratings[rows] >= threshold
    elif "like" in labels:
        out["like"] = labels["like"][rows] == 1
    for name in sorted(labels):
        if name not in out:
            out[name] = labels[name][rows] == 1
    return out


def _chosen_tasks(columns: dict[str, np.ndarray], tasks: Sequence[str] | None) -> dict[str, np.ndarray]:
    if tasks is None:
        return columns
    chosen = [task.strip() for task in tasks if task.strip()]
    unknown = [task for task in chosen if task not in columns]
    if unknown or not chosen:
        raise ConfigError(f"unknown task(s) {unknown or chosen}; the data have {', '.join(columns)}",
                          where="tasks", fix=f"choose among {', '.join(columns)}")
    return {task: columns[task] for task in columns if task in chosen}


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


def _hold_out_items(engaged_items: np.ndarray, num_items: int, share: float, valid_share: float,
                    rng: np.random.Generator, valid_rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two disjoint (N,) bool sets of engaged items: ``share`` (test) and ``valid_share`` (validation).

    The test set is drawn first from its own stream, so adding a validation hold-out leaves it as it was.
    """
    heldout = np.zeros(num_items, dtype=bool)
    valid = np.zeros(num_items, dtype=bool)
    candidates = _sorted_unique(engaged_items)
    count = math.floor(share * len(candidates) + 0.5)
    if count:
        heldout[rng.choice(candidates, size=count, replace=False)] = True
    rest = candidates[~heldout[candidates]]
    count = min(math.floor(valid_share * len(candidates) + 0.5), len(rest))
    if count:
        valid[valid_rng.choice(rest, size=count, replace=False)] = True
    return heldout, valid


# ----- negatives -----------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class _Known:
    """When each user first engaged with each item: sorted (user * N + item) keys and first times."""

    keys: np.ndarray
    first_time: np.ndarray
    num_items: int

    @staticmethod
    def build(users: np.ndarray, items: np.ndarray, times: np.ndarray, num_items: int) -> _Known:
        keys = users.astype(np.int64) * num_items + items
        order = np.lexsort((times, keys))
        keys, ordered_times = keys[order], times[order]
        first = np.ones(len(keys), dtype=bool)
        first[1:] = keys[1:] != keys[:-1]
        return _Known(keys[first], ordered_times[first], num_items)

    def engaged_by(self, users: np.ndarray, items: np.ndarray, times: np.ndarray) -> np.ndarray:
        """(n,) bool: the user had engaged with the item at or before the time."""
        if len(self.keys) == 0:
            return np.zeros(len(users), dtype=bool)
        key = users.astype(np.int64) * self.num_items + items
        found = np.minimum(np.searchsorted(self.keys, key), len(self.keys) - 1)
        return (self.keys[found] == key) & (self.first_time[found] <= times)


class _Pools:
    """The engagements each split may draw negatives from, in time order.

    Split s sees the engagements of splits up to s (training: training only; test: all) whose items
    it may show: training never sees a held-out item, validation never a test one, test never a
    validation one. A held-out item's engagements from before its split count in the pool (they
    happened; they are only kept out of training), so new items are drawn about as often as they are
    engaged. A draw for an impression at time t takes a uniform row among the ``window`` latest of
    them at or before t: popularity near the impression's time, from the past only.
    """

    def __init__(self, items: np.ndarray, times: np.ndarray, split_of: np.ndarray, usable: np.ndarray,
                 banned: Mapping[int, np.ndarray], *, window: int) -> None:
        self.window = window
        self._cache: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
        self._source = (items, times, split_of, usable)
        self._banned = banned

    def _pool(self, code: int, restrict: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        key = (code, -1 if restrict is None else id(restrict))
        if key not in self._cache:
            self._cache[key] = self._build(code, restrict)
        return self._cache[key]

    def _build(self, code: int, restrict: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        items, times, split_of, usable = self._source
        rows = np.flatnonzero(usable & (split_of <= code))
        rows = rows[~self._banned[code][items[rows]]]
        if restrict is not None:
            rows = rows[restrict[items[rows]]]
        order = rows[np.argsort(times[rows], kind="stable")]
        return items[order], times[order]

    def draw(self, code: int, times: np.ndarray, rng: np.random.Generator,
             restrict: np.ndarray | None = None) -> np.ndarray:
        """(n,) catalog rows drawn for impressions of split ``code`` at ``times``; -1 where the pool is empty.

        ``restrict`` (N,) bool keeps only engagements of those items (the held-out items, for
        ``new-matched``).
        """
        pool_items, pool_times = self._pool(code, restrict)
        high = np.searchsorted(pool_times, times, side="right")  # engagements at or before the time
        low = np.maximum(high - self.window, 0)
        width = high - low
        out = np.full(len(times), -1, dtype=np.int64)
        has = width > 0
        out[has] = pool_items[low[has] + (rng.random(int(has.sum())) * width[has]).astype(np.int64)]
        return out


def _draw_rejecting(code: int, users: np.ndarray, times: np.ndarray, *, pools: _Pools, known: _Known,
                    banned: np.ndarray, rng: np.random.Generator, restrict: np.ndarray | None = None) -> np.ndarray:
    """One negative per (user, time) of split ``code``: redrawn while the user knew it or it is banned."""
    sampled = np.full(len(users), -1, dtype=np.int64)
    todo = np.arange(len(users))
    for _ in range(_MAX_NEGATIVE_ROUNDS):
        if todo.size == 0:
            break
        candidate = pools.draw(code, times[todo], rng, restrict)
        empty = candidate < 0
        todo_valid, candidate = todo[~empty], candidate[~empty]
        bad = known.engaged_by(users[todo_valid], candidate, times[todo_valid]) | banned[candidate]
        sampled[todo_valid[~bad]] = candidate[~bad]
        todo = todo_valid[bad]  # rows with an empty pool are given up at once
    return sampled


def _with_negatives(rows: np.ndarray, items: np.ndarray, users: np.ndarray, times: np.ndarray,
                    split_of: np.ndarray, labels: Mapping[str, np.ndarray], *, negatives: int, pools: _Pools,
                    known: _Known, banned: Mapping[int, np.ndarray], rng: np.random.Generator,
                    notes: list[str]) -> _Impressions:
    """Each kept engagement ``rows`` as a click, followed by ``negatives`` time-local sampled non-clicks."""
    source = np.repeat(rows, negatives)
    rank = np.tile(np.arange(1, negatives + 1), len(rows))
    sampled = np.full(len(source), -1, dtype=np.int64)
    for code in (TRAIN, VALID, TEST):
        part = np.flatnonzero(split_of[source] == code)
        if part.size:
            sampled[part] = _draw_rejecting(code, users[source[part]], times[source[part]], pools=pools,
                                            known=known, banned=banned[code], rng=rng)
    ok = sampled >= 0  # the few still rejected (users who engaged with nearly all nearby items) drop
    if not ok.all():
        notes.append(f"{int((~ok).sum()):,} of {len(ok):,} sampled negatives were dropped: the user had engaged "
                     "with every item drawn from the pool at that time")
    source, sampled, rank = source[ok], sampled[ok], rank[ok]
    item = np.concatenate([items[rows], sampled])
    origin = np.concatenate([rows, source])
    out_labels = {name: np.concatenate([values[rows], np.zeros(len(sampled), dtype=bool)]).astype(np.float32)
                  for name, values in labels.items()}
    out_labels["click"] = np.concatenate([np.ones(len(rows)), np.zeros(len(sampled))]).astype(np.float32)
    stride = 2 * negatives + 2
    order = origin * stride + np.concatenate([np.zeros(len(rows), dtype=np.int64), rank])
    return _Impressions(item, users[origin], times[origin], split_of[origin], out_labels, order, origin,
                        np.zeros(len(item), dtype=bool))


def _matched_negatives(items: np.ndarray, users: np.ndarray, times: np.ndarray, split_of: np.ndarray,
                       usable: np.ndarray, labels: Mapping[str, np.ndarray], *, negatives: int,
                       new_items: Mapping[int, np.ndarray], pools: _Pools, known: _Known,
                       rng: np.random.Generator, stride: int) -> _Impressions:
    """For each usable engagement of a held-out item (validation, test): ``negatives`` negatives drawn
    among that split's held-out items, from the split's past pool of their engagements."""
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for code, new in new_items.items():
        rows = np.flatnonzero(usable & (split_of == code) & new[items])
        if rows.size == 0:
            continue
        source = np.repeat(rows, negatives)
        rank = np.tile(np.arange(negatives + 1, 2 * negatives + 1), len(rows))
        sampled = _draw_rejecting(code, users[source], times[source], pools=pools, known=known,
                                  banned=~new, rng=rng, restrict=new)
        ok = sampled >= 0
        parts.append((source[ok], sampled[ok], rank[ok]))
    if not parts:
        empty = np.zeros(0, dtype=np.int64)
        return _Impressions(empty, empty, empty, empty.astype(np.int8), {name: empty.astype(np.float32)
                                                                        for name in labels},
                            empty, empty, empty.astype(bool))
    source = np.concatenate([p[0] for p in parts])
    sampled = np.concatenate([p[1] for p in parts])
    rank = np.concatenate([p[2] for p in parts])
    zero = np.zeros(len(sampled), dtype=np.float32)
    return _Impressions(sampled, users[source], times[source], split_of[source], dict.fromkeys(labels, zero),
                        source * stride + rank, source, np.ones(len(sampled), dtype=bool))


def _concat(a: _Impressions, b: _Impressions) -> _Impressions:
    return _Impressions(np.concatenate([a.item, b.item]), np.concatenate([a.user, b.user]),
                        np.concatenate([a.time, b.time]), np.concatenate([a.split, b.split]),
                        {name: np.concatenate([a.labels[name], b.labels[name]]) for name in a.labels},
                        np.concatenate([a.order, b.order]), np.concatenate([a.group, b.group]),
                        np.concatenate([a.matched, b.matched]))


# ----- per split -----------------------------------------------------------------------------------


def _make_split(imp: _Impressions, code: int, timeline: _Timeline, user_table: np.ndarray,
                context_table: np.ndarray, *, history: int, pad: int) -> RankingSplit:
    picked = np.flatnonzero(imp.split == code)
    picked = picked[np.lexsort((imp.order[picked], imp.time[picked]))]  # time order, then engagement order
    user, time = imp.user[picked], imp.time[picked]
    slices = {"all": ~imp.matched[picked]}
    features = user_table[user]
    if context_table.shape[1]:  # an impression carries the context of the engagement it was drawn for
        features = np.concatenate([features, context_table[imp.group[picked]]], axis=1)
    return RankingSplit(imp.item[picked].astype(np.int64), features,
                        timeline.histories(user, time, length=history, pad=pad),
                        {task: values[picked] for task, values in imp.labels.items()},
                        time.astype(np.int64), user.astype(np.int64), slices, imp.group[picked].astype(np.int64))


# Rows per block of history gathers: (block, H) int64 temporaries of a few MiB.
_HISTORY_BLOCK = 1 << 15


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
        # All H gathers of a block of rows at once (clipped to a valid index; slots past the user's
        # engagements stay padding), in blocks that bound the (rows, H) temporaries.
        back = np.arange(length, dtype=np.int64)
        for lo in range(0, len(user), _HISTORY_BLOCK):
            hi = min(lo + _HISTORY_BLOCK, len(user))
            gathered = self.items[np.maximum(end[lo:hi, None] - 1 - back, 0)]
            np.copyto(out[lo:hi], gathered, where=back < available[lo:hi, None])
        return out


def _training_items(train: RankingSplit, num_items: int) -> np.ndarray:
    """(N,) bool: items anywhere in the training tensors, as candidate or in a history."""
    seen = np.zeros(num_items, dtype=bool)
    seen[train.item] = True
    seen[train.history[train.history < num_items]] = True
    return seen


def _with_slices(splits: dict[str, RankingSplit], train_items: np.ndarray) -> dict[str, RankingSplit]:
    """The splits with slices all, new (item absent from training), new-matched, tail and head."""
    tail, head = _tail_head(splits["train"], train_items, len(train_items))
    out = {}
    for name, part in splits.items():
        main = part.slices["all"]
        new = ~train_items[part.item]
        slices = {"all": main, "new": main & new, MATCHED_SLICE: _matched_slice(part, main, new),
                  "tail": main & tail[part.item], "head": main & head[part.item]}
        out[name] = RankingSplit(part.item, part.user_features, part.history, part.labels, part.time,
                                 part.user, {s: slices[s] for s in SLICES}, part.group)
    return out


def _matched_slice(part: RankingSplit, main: np.ndarray, new: np.ndarray) -> np.ndarray:
    """The extra new-item negatives and the new-item positives they were drawn for."""
    extra = ~main
    if not extra.any():
        return np.zeros(len(part), dtype=bool)
    assert part.group is not None
    groups = np.unique(part.group[extra])
    positive = main & new & (part.labels["click"] == 1) & np.isin(part.group, groups)
    return extra | positive


def _tail_head(train: RankingSplit, train_items: np.ndarray, num_items: int) -> tuple[np.ndarray, np.ndarray]:
    """(N,) bool tail and head: training items split in halves by training clicks (engagements)."""
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


def _user_features(user_values: np.ndarray, users: pa.Table | None, buckets: int | None, seed: int,
                   declared: Sequence[str] | None, numeric_buckets: int,
                   notes: list[str]) -> tuple[np.ndarray, int, tuple[str, ...], dict[str, Any]]:
    """(U, F) int64 rows of one user table per user (0 = padding), the table's rows, field names, and the
    encoding that gives the same rows to any user later (:func:`encode_users`)."""
    n = len(user_values)
    if buckets is None or buckets >= n:
        columns = [np.arange(1, n + 1, dtype=np.int64)]
        offset = n
        encoding: dict[str, Any] = {"user_ids": user_values.tolist(), "buckets": None}
    else:
        columns = [1 + hash_rows(stable_keys(user_values), buckets=buckets, salt=field_salt(seed, "user-id"))]
        offset = buckets
        encoding = {"user_ids": None, "buckets": int(buckets), "salt": field_salt(seed, "user-id")}
    names = ["user id"]
    fields = []
    for name, values, size, spec in _user_columns(user_values, users, declared, numeric_buckets, notes):
        columns.append(np.where(values > 0, values + offset, 0))
        fields.append({"name": name, "offset": offset, "size": size, **spec})
        offset += size
        names.append(name)
    encoding["fields"] = fields
    encoding["num_embeddings"] = offset + 1
    return np.column_stack(columns), offset + 1, tuple(names), encoding


def _context_features(columns: Mapping[str, np.ndarray], rows: int, declared: Sequence[str] | None,
                      numeric_buckets: int, offset: int, notes: list[str]
                      ) -> tuple[np.ndarray, int, tuple[str, ...], list[dict[str, Any]]]:
    """(rows, C) int64 user-table rows of the interactions' context columns (after ``offset`` rows of the
    user table), the table's new size, field names ``context:NAME``, and their specs."""
    available = list(columns)
    if declared is None:
        chosen = available
    else:
        chosen = [name.strip() for name in declared if name.strip()]
        unknown = [name for name in chosen if name not in available]
        if unknown:
            raise ConfigError(f"unknown context feature(s) {unknown}; interactions.parquet has "
                              f"{', '.join(available) or 'no context columns'}", where="context_features",
                              fix="declare interactions.parquet columns that are not ids, time, rating or 0/1 labels")
        left_out = [name for name in available if name not in chosen]
        if left_out:
            notes.append(f"interactions.parquet columns not declared as context features are ignored: "
                         f"{', '.join(left_out)}")
    out = np.zeros((rows, len(chosen)), dtype=np.int64)
    specs = []
    top = offset - 1  # the user table's last row; context rows follow it
    for index, name in enumerate(chosen):
        codes, size, spec = _column_codes(pa.chunked_array([pa.array(columns[name])]), numeric_buckets)
        out[:, index] = np.where(codes > 0, codes + top, 0)
        specs.append({"name": name, "offset": top, "size": size, **spec})
        top += size
    return out, top + 1, tuple(f"context:{name}" for name in chosen), specs


def encode_context(encoding: Mapping[str, Any], columns: Mapping[str, np.ndarray], rows: int) -> np.ndarray:
    """(rows, C) int64 user-table rows of context columns under a saved encoding (unknown values: 0)."""
    specs = encoding.get("context", [])
    out = np.zeros((rows, len(specs)), dtype=np.int64)
    for index, spec in enumerate(specs):
        if spec["name"] not in columns:
            raise DataError(f"the impressions lack the ranker's context column {spec['name']!r}",
                            where="impressions", fix=f"give a {spec['name']} column with each impression")
        codes = _encode_column(pa.chunked_array([pa.array(np.asarray(columns[spec["name"]]))]), spec)
        out[:, index] = np.where(codes > 0, codes + int(spec["offset"]), 0)
    return out


def encode_users(encoding: Mapping[str, Any], user_ids: np.ndarray, users: pa.Table | None) -> np.ndarray:
    """(n, F) int64 user-table rows of ``user_ids`` with a saved encoding (``RankingData.user_encoding``).

    A user the encoding never saw gets the padding row for its id (0), and its features from ``users``
    (users.parquet) when it is there; values the encoding never saw are padding too.
    """
    ids = np.asarray(user_ids)
    if encoding.get("buckets") is None:
        known = np.asarray(encoding["user_ids"])
        if known.dtype.kind != ids.dtype.kind and not (known.dtype.kind in "iu" and ids.dtype.kind in "iu"):
            known, ids = known.astype(str), ids.astype(str)
        order = np.argsort(known, kind="stable")
        found = np.minimum(np.searchsorted(known, ids, sorter=order), max(len(known) - 1, 0))
        row = order[found]
        columns = [np.where(known[row] == ids, row + 1, 0).astype(np.int64)]
    else:
        columns = [1 + hash_rows(stable_keys(ids), buckets=int(encoding["buckets"]), salt=int(encoding["salt"]))]
    fields = encoding.get("fields", [])
    if fields:
        if users is None or "user_id" not in users.column_names:
            raise DataError("the ranker uses user features, but no users table with user_id was given",
                            where="users.parquet", fix="pass the dataset whose users.parquet has the features")
        table_ids = users.column("user_id").to_numpy(zero_copy_only=False)
        if table_ids.dtype.kind != ids.dtype.kind and not (table_ids.dtype.kind in "iu" and ids.dtype.kind in "iu"):
            table_ids, ids = table_ids.astype(str), ids.astype(str)
        order = np.argsort(table_ids, kind="stable")
        found = np.clip(np.searchsorted(table_ids, ids, sorter=order), 0, max(len(order) - 1, 0))
        row = order[found]
        present = table_ids[row] == ids
        for spec in fields:
            if spec["name"] not in users.column_names:
                raise DataError(f"users.parquet lacks the ranker's user feature {spec['name']!r}",
                                where="users.parquet", fix="pass the dataset the ranker was trained on")
            codes = _encode_column(users.column(spec["name"]), spec)
            codes = np.where(present, codes[row], 0)
            columns.append(np.where(codes > 0, codes + int(spec["offset"]), 0))
    return np.column_stack(columns).astype(np.int64)


def _encode_column(column: pa.ChunkedArray, spec: Mapping[str, Any]) -> np.ndarray:
    """Codes of one column under a saved spec: quantile edges or a vocabulary (unknown values: 0)."""
    valid = ~np.asarray(column.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    values = column.to_numpy(zero_copy_only=False)
    codes = np.zeros(len(values), dtype=np.int64)
    if spec["kind"] == "numeric":
        numbers = np.where(valid, values, 0).astype(np.float64)
        valid &= np.isfinite(numbers)
        codes[valid] = np.searchsorted(np.asarray(spec["edges"], dtype=np.float64), numbers[valid], side="right") + 1
        return codes
    vocabulary = np.asarray(spec["values"], dtype=str)
    text = np.where(valid, values.astype(str), "")
    found = np.minimum(np.searchsorted(vocabulary, text), max(len(vocabulary) - 1, 0))
    hit = valid & (len(vocabulary) > 0) & (vocabulary[found] == text) if len(vocabulary) else np.zeros(len(text), bool)
    codes[hit] = found[hit] + 1
    return codes


def _user_columns(user_values: np.ndarray, users: pa.Table | None, declared: Sequence[str] | None,
                  numeric_buckets: int, notes: list[str]) -> list[tuple[str, np.ndarray, int, dict[str, Any]]]:
    """Per used users.parquet column: its name, (U,) int64 codes in [0, size] (0 = unknown), size and spec.

    Strings, booleans and integers with few values are categories; other numbers fall into
    ``numeric_buckets`` quantile buckets.
    """
    if users is None:
        if declared:
            raise ConfigError(f"user features {list(declared)} were asked for, but the dataset has no users.parquet",
                              where="user_features", fix="add users.parquet (user_id and feature columns) or drop them")
        return []
    if "user_id" not in users.column_names:
        raise DataError("users.parquet has no user_id column", where="users.parquet",
                        fix="name the user id column user_id")
    available = [name for name in users.column_names if name != "user_id"]
    if declared is None:
        fields = []
        for name in available:
            column = users.column(name)
            textual = pa.types.is_string(column.type) or pa.types.is_large_string(column.type)
            if textual and users.num_rows > 1 and len(set(column.to_pylist())) == users.num_rows:
                notes.append(f"users.parquet column {name!r} is ignored: a text value per user only renames the "
                             "user id (declare it with user_features to use it anyway)")
                continue
            fields.append(name)
    else:
        fields = [name.strip() for name in declared if name.strip()]
        unknown = [name for name in fields if name not in available]
        if unknown:
            raise ConfigError(f"unknown user feature(s) {unknown}; users.parquet has {', '.join(available) or 'none'}",
                              where="user_features", fix="declare columns of users.parquet")
        left_out = [name for name in available if name not in fields]
        if left_out:
            notes.append(f"users.parquet columns not declared as user features are ignored: {', '.join(left_out)}")
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
        codes, size, spec = _column_codes(users.column(name), numeric_buckets)
        out.append((name, np.where(present, codes[row], 0), size, spec))
    return out


def _column_codes(column: pa.ChunkedArray, numeric_buckets: int) -> tuple[np.ndarray, int, dict[str, Any]]:
    """(rows,) int64 codes in [0, size] of one column (0 = null), size, and the spec that encodes it again."""
    valid = ~np.asarray(column.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    values = column.to_numpy(zero_copy_only=False)
    floating = pa.types.is_floating(column.type)
    integer = pa.types.is_integer(column.type)
    if floating:
        valid &= np.isfinite(np.where(valid, values, 0).astype(np.float64))
    numeric = floating or (integer and len(np.unique(values[valid])) > MAX_CATEGORY_INTEGERS)
    codes = np.zeros(len(values), dtype=np.int64)
    if numeric:
        numbers = values[valid].astype(np.float64)
        edges: np.ndarray = (np.unique(np.quantile(numbers, np.linspace(0, 1, numeric_buckets + 1)[1:-1]))
                             if len(numbers) else np.zeros(0))
        codes[valid] = np.searchsorted(edges, numbers, side="right") + 1
        return codes, len(edges) + 1, {"kind": "numeric", "edges": [float(e) for e in edges]}
    text = np.where(valid, values.astype(str), "")
    vocabulary, inverse = np.unique(text[valid], return_inverse=True)
    codes[valid] = inverse.reshape(-1) + 1
    return codes, len(vocabulary), {"kind": "category", "values": vocabulary.tolist()}


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
                item_holdout: float, valid_item_holdout: float, seed: int, like_threshold: float,
                negative_window: int, user_buckets: int | None, max_users: int | None, numeric_buckets: int) -> None:
    def integer(name: str, value: object, low: int) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ConfigError(f"{name} must be an integer >= {low}, got {value!r}", where=name)

    integer("history", history, 0)
    integer("negatives", negatives, 1)
    integer("seed", seed, 0)
    integer("negative_window", negative_window, 1)
    integer("numeric_buckets", numeric_buckets, 1)
    if user_buckets is not None:
        integer("user_buckets", user_buckets, 1)
    if max_users is not None:
        integer("max_users", max_users, 2)
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}", where="split",
                          fix=f"use one of {', '.join(SPLITS)} (user-time is the main protocol)")
    if not 0.0 < float(test_share) < 1.0:
        raise ConfigError(f"test_share must lie strictly between 0 and 1, got {test_share}", where="test_share",
                          fix="use e.g. 0.2 (the last 20% of each user's interactions)")
    for name, value in (("valid_share", valid_share), ("item_holdout", item_holdout),
                        ("valid_item_holdout", valid_item_holdout)):
        if not 0.0 <= float(value) < 1.0:
            raise ConfigError(f"{name} must lie in [0, 1), got {value}", where=name)
    if float(item_holdout) + float(valid_item_holdout) >= 1.0:
        raise ConfigError(f"item_holdout + valid_item_holdout must stay below 1, got {item_holdout} + "
                          f"{valid_item_holdout}", where="valid_item_holdout", fix="e.g. 0.2 and 0.1")
    if not math.isfinite(float(like_threshold)):
        raise ConfigError(f"like_threshold must be finite, got {like_threshold}", where="like_threshold")
