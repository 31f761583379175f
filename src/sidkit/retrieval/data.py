"""Next-item data: per-user chronological sequences, a split, and the examples every retriever uses.

**Order.** Each user's interactions are sorted by timestamp; ties (MovieLens users often rate many
movies within one second) keep the order of the rows in ``interactions.parquet`` (a stable sort).
That order is a fixed function of the file, so every run, model and seed sees the same sequences.

**Engagements.** Every interaction counts as one, except in impression data (a ``click`` label
column holding zeros, as synthetic data have), where only the clicked rows do.

**Splits.**

- ``leave-one-out`` (the protocol of the published tables): a user's last interaction is the test
  target, the second last the validation target, the rest train. Test histories are everything
  before the test target; validation histories everything before the validation target. Users need
  at least 3 interactions. A test target's history can come after other users' training
  interactions, so the model has seen the catalogue's future.
- ``global-time``: two cuts in the global (timestamp, row) order leave the last ``test_share`` of all
  interactions in the test period and the ``valid_share`` before them in the validation period.
  Training uses only interactions before the validation cut. A user's test target is their first
  interaction in the test period, with their history strictly before it (so before the test cut);
  likewise for validation. Nothing of the test period informs training or a test history.

**Item hold-out.** ``item_holdout`` of the items that have interactions (drawn with the seed) never
reach training: they are dropped from every training sequence (neither target nor history), and
validation skips examples whose target is held out and drops them from validation histories. Test
examples keep the user's real history; those whose target is held out form the ``new`` slice.

**Candidates and exclusion.** Every retriever ranks the same candidates, the items with at least one
interaction in the dataset (ML-1M: 3,706 of 3,883), and excludes from each example's ranking every
item the user interacted with before the target (the whole past, not only the last ``history``
items). A repeated target can therefore never be hit; ML-1M has no repeats.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from sidkit.data.dataset import Dataset, load_dataset
from sidkit.errors import ConfigError, DataError

SPLITS: tuple[str, ...] = ("leave-one-out", "global-time")
SLICES: tuple[str, ...] = ("all", "new")
DEFAULT_HISTORY = 20
#: Padding in history arrays (never a catalogue row).
PAD = -1
_MIN_LEAVE_ONE_OUT = 3


@dataclass(frozen=True, eq=False)
class Sequences:
    """Per-user item sequences in CSR form, chronological.

    Attributes:
        users: (U,) int64 user index of each sequence.
        offsets: (U + 1,) int64; sequence u is ``items[offsets[u]:offsets[u + 1]]``.
        items: (M,) int64 catalogue rows.
    """

    users: np.ndarray
    offsets: np.ndarray
    items: np.ndarray

    def __len__(self) -> int:
        return len(self.users)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def sequence(self, index: int) -> np.ndarray:
        return self.items[self.offsets[index]:self.offsets[index + 1]]


@dataclass(frozen=True, eq=False)
class Examples:
    """Evaluation examples: a user, their history and the next item.

    Attributes:
        users: (E,) int64 user index.
        histories: (E, H) int64 catalogue rows of the last H items before the target, oldest first,
            right-aligned (the latest item in the last column), padded on the left with :data:`PAD`.
        targets: (E,) int64 catalogue row of the next item.
        exclude_offsets, exclude_items: CSR of the items ranked out for each example (the user's whole
            past before the target): example e excludes ``exclude_items[exclude_offsets[e]:exclude_offsets[e + 1]]``.
        new: (E,) bool, the target is held out of training.
    """

    users: np.ndarray
    histories: np.ndarray
    targets: np.ndarray
    exclude_offsets: np.ndarray
    exclude_items: np.ndarray
    new: np.ndarray

    def __len__(self) -> int:
        return len(self.targets)

    def take(self, rows: np.ndarray) -> Examples:
        """The examples at ``rows`` (indices, in the given order)."""
        rows = np.asarray(rows, dtype=np.int64)
        starts, ends = self.exclude_offsets[rows], self.exclude_offsets[rows + 1]
        offsets, items = _gather_csr(starts, ends, self.exclude_items)
        return Examples(self.users[rows], self.histories[rows], self.targets[rows], offsets, items,
                        self.new[rows])

    def slice_mask(self, name: str) -> np.ndarray:
        """(E,) bool of the examples in slice ``name`` (``all`` or ``new``)."""
        if name == "all":
            return np.ones(len(self), dtype=bool)
        if name == "new":
            return self.new.copy()
        raise ConfigError(f"unknown slice {name!r}", where="slice", fix=f"use one of {', '.join(SLICES)}")

    def exclusion_mask(self, num_items: int) -> np.ndarray:
        """(E, N) bool, True where an item is ranked out for that example."""
        mask = np.zeros((len(self), num_items), dtype=bool)
        rows = np.repeat(np.arange(len(self)), np.diff(self.exclude_offsets))
        mask[rows, self.exclude_items] = True
        return mask


@dataclass(frozen=True, eq=False)
class NextItemData:
    """Everything a retriever trains and is tested on.

    Attributes:
        split: one of :data:`SPLITS`.
        history: H, the history length of the examples.
        num_items: N, catalogue rows (items are catalogue rows 0..N-1).
        num_users: U, users with at least one interaction (user index 0..U-1).
        user_ids: (U,) the dataset's user id of each user index.
        candidates: (N,) bool, items every retriever may return.
        heldout: (N,) bool, items kept out of training (the ``new`` slice).
        train: training sequences (held-out items removed, only what precedes validation).
        valid, test: evaluation examples.
        train_counts: (N,) int64 training interactions per item.
        train_rows: (M_train,) int64 rows of the dataset's interactions that train (in file order), so
            that anything else fitted on behaviour (a contrastive tokenizer) sees only those.
    """

    split: str
    history: int
    num_items: int
    num_users: int
    user_ids: np.ndarray
    candidates: np.ndarray
    heldout: np.ndarray
    train: Sequences
    valid: Examples
    test: Examples
    train_counts: np.ndarray
    train_rows: np.ndarray

    def summary(self) -> dict[str, Any]:
        """Counts for reports."""
        return {
            "split": self.split, "history": self.history, "num_items": self.num_items,
            "num_users": self.num_users, "candidates": int(self.candidates.sum()),
            "heldout_items": int(self.heldout.sum()), "train_users": len(self.train),
            "train_interactions": len(self.train.items), "valid_examples": len(self.valid),
            "test_examples": len(self.test), "test_new": int(self.test.new.sum()),
            "valid_new": int(self.valid.new.sum()),
        }


def build_next_item_data(dataset: Dataset | str | os.PathLike[str], *, split: str = "leave-one-out",
                         history: int = DEFAULT_HISTORY, item_holdout: float = 0.0, seed: int = 0,
                         test_share: float = 0.1, valid_share: float = 0.1) -> NextItemData:
    """Sequences, split and examples of a dataset (or dataset directory); see the module docstring.

    Args:
        dataset: a Dataset or the path of a dataset directory.
        split: ``"leave-one-out"`` or ``"global-time"``.
        history: H, items of history per example (at least 1).
        item_holdout: share of the items with interactions kept out of training, in [0, 1).
        seed: draws the held-out items.
        test_share, valid_share: shares of all interactions in the test and validation periods
            (``global-time`` only).

    Raises:
        ConfigError: unknown split or out-of-range settings.
        DataError: no interactions with a history, or no training interactions left.
    """
    _check_args(split, history, item_holdout, test_share, valid_share)
    if not isinstance(dataset, Dataset):
        dataset = load_dataset(dataset, embeddings=False)
    inter = dataset.interactions
    click = inter.labels.get("click")
    source_rows = np.arange(len(inter))
    if click is not None and bool(np.any(click == 0)):
        source_rows = np.flatnonzero(click == 1)
        inter = inter.take(source_rows)
    num_items = len(dataset.catalog)
    items = dataset.catalog.index_of(inter.item_ids)
    user_ids, users = np.unique(inter.user_ids, return_inverse=True)
    users = users.reshape(-1).astype(np.int64)
    times = inter.timestamps
    # Chronological per user; equal timestamps keep the file's row order (lexsort is stable).
    order = np.lexsort((times, users))
    users, items, times = users[order], items[order], times[order]
    offsets = np.concatenate([[0], np.cumsum(np.bincount(users, minlength=len(user_ids)))]).astype(np.int64)
    candidates = np.zeros(num_items, dtype=bool)
    candidates[items] = True
    heldout = _hold_out(candidates, item_holdout, seed)
    position = np.arange(len(items)) - offsets[users]
    length = np.diff(offsets)[users]
    if split == "leave-one-out":
        if int(np.diff(offsets).max()) < _MIN_LEAVE_ONE_OUT:
            raise DataError(f"no user has {_MIN_LEAVE_ONE_OUT} interactions, which leave-one-out needs",
                            where="interactions", fix="use a dataset with longer user histories")
        eligible = length >= _MIN_LEAVE_ONE_OUT
        test_rows = np.flatnonzero(eligible & (position == length - 1))
        valid_rows = np.flatnonzero(eligible & (position == length - 2))
        train_mask = eligible & (position < length - 2)
        valid_cut_rows = valid_rows
    else:
        # Global order: (time, original row) over all interactions; the period of a row is its rank.
        global_rank = np.empty(len(items), dtype=np.int64)
        global_rank[np.lexsort((order, times))] = np.arange(len(items))
        # Rounded first, so that 1 - 0.2 - 0.2 = 0.6000000000000001 does not move a cut by one row.
        test_start = math.ceil(round((1.0 - test_share) * len(items), 6))
        valid_start = math.ceil(round((1.0 - test_share - valid_share) * len(items), 6))
        test_rows = _first_in_period(global_rank >= test_start, users, position)
        valid_rows = _first_in_period((global_rank >= valid_start) & (global_rank < test_start), users, position)
        train_mask = global_rank < valid_start
        valid_cut_rows = valid_rows
    # Rows before the cut with history: a target needs at least one earlier interaction.
    test_rows = test_rows[position[test_rows] >= 1]
    valid_rows = valid_cut_rows[position[valid_cut_rows] >= 1]
    train_mask &= ~heldout[items]
    train = _sequences(users[train_mask], items[train_mask], len(user_ids))
    if len(train.items) == 0:
        raise DataError("no interactions are left for training", where="interactions",
                        fix="lower item_holdout (or the test/validation shares), or use more interactions")
    valid_rows = valid_rows[~heldout[items[valid_rows]]]
    valid = _examples(valid_rows, users, items, offsets, position, history, heldout, drop=heldout)
    test = _examples(test_rows, users, items, offsets, position, history, heldout, drop=None)
    if len(test) == 0:
        raise DataError(f"the {split} split has no test example with a history", where="interactions",
                        fix="use a dataset whose users have more than one interaction")
    counts = np.bincount(train.items, minlength=num_items).astype(np.int64)
    train_rows = np.sort(source_rows[order[train_mask]])
    return NextItemData(split, history, num_items, len(user_ids), user_ids, candidates, heldout, train, valid,
                        test, counts, train_rows)


def training_windows(train: Sequences, *, history: int, per_user: int | None,
                     rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Training examples (history, next item) drawn from the training sequences.

    Every position with at least one earlier item can be a target; each user gives at most
    ``per_user`` of them, drawn without replacement (all when None or when the user has fewer).

    Returns:
        users (W,), histories (W, H) right-aligned with :data:`PAD`, targets (W,), in a random order.
    """
    lengths = train.lengths
    available = np.maximum(lengths - 1, 0)
    take = available if per_user is None else np.minimum(available, per_user)
    seq = np.repeat(np.arange(len(train)), take)
    # Per user, a random subset of its target positions 1..n-1: rank random keys within each user.
    if per_user is None:
        local = np.arange(int(take.sum())) - np.repeat(np.cumsum(take) - take, take)
        position = local + 1
    else:
        keys = rng.random(int(available.sum()))
        owner = np.repeat(np.arange(len(train)), available)
        local = np.arange(len(owner)) - np.repeat(np.cumsum(available) - available, available)
        rank = np.empty(len(owner), dtype=np.int64)
        by_key = np.lexsort((keys, owner))
        rank[by_key] = np.arange(len(owner)) - np.repeat(np.cumsum(available) - available, available)
        chosen = rank < take[owner]
        position = local[chosen] + 1
        seq = owner[chosen]
    target_index = train.offsets[seq] + position
    histories = _histories(train.items, train.offsets[seq], target_index, history)
    shuffle = rng.permutation(len(seq))
    return (train.users[seq][shuffle], histories[shuffle], train.items[target_index][shuffle])


def sequence_windows(train: Sequences, *, length: int, rng: np.random.Generator,
                     per_user: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Windows of ``length`` consecutive items for causal models (each position predicts the next).

    A sequence's target positions 1..n-1 are cut, from its end, into groups of ``length - 1``
    after a random first group of 0..length-2 (so the cuts move from call to call), and each group
    is trained by the window of ``length`` items that ends at its last target; every target is
    trained exactly once per call. ``per_user`` keeps at most that many windows per user (a random
    subset). Windows that reach before a sequence's start are padded on the left with :data:`PAD`.

    Returns:
        users (W,), windows (W, length), and label_start (W,): label j of a window (the item at
        column j + 1, predicted from columns 0..j) counts only for j >= label_start.
    """
    step = length - 1
    if step < 1:
        raise ConfigError(f"windows need at least 2 items, got length {length}", where="length")
    lengths = train.lengths
    targets = np.maximum(lengths - 1, 0)
    first = rng.integers(0, step, len(train))  # size of the latest group (0: none)
    first = np.minimum(first, targets)
    groups = np.where(first > 0, 1, 0) + (targets - first + step - 1) // step
    owner = np.repeat(np.arange(len(train)), groups)
    k = np.arange(len(owner)) - np.repeat(np.cumsum(groups) - groups, groups)
    has_first = first[owner] > 0
    # Group k's last target (a position), and its size, counting from the end of the sequence.
    full_index = np.where(has_first, k - 1, k)
    last = np.where(has_first & (k == 0), lengths[owner] - 1, lengths[owner] - 1 - first[owner] - full_index * step)
    size = np.where(has_first & (k == 0), first[owner], np.minimum(step, last))
    if per_user is not None:
        keys = rng.random(len(owner))
        order = np.lexsort((keys, owner))
        counts = np.bincount(owner, minlength=len(train))
        rank = np.empty(len(owner), dtype=np.int64)
        rank[order] = np.arange(len(owner)) - np.repeat(np.cumsum(counts) - counts, counts)
        chosen = rank < per_user
        owner, last, size = owner[chosen], last[chosen], size[chosen]
    stop = train.offsets[owner] + last + 1
    windows = _histories(train.items, train.offsets[owner], stop, length)
    shuffle = rng.permutation(len(owner))
    return train.users[owner][shuffle], windows[shuffle], (step - size)[shuffle]


# ----- helpers ---------------------------------------------------------------------------------------


def _check_args(split: str, history: int, item_holdout: float, test_share: float, valid_share: float) -> None:
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}", where="--split", fix=f"use one of {', '.join(SPLITS)}")
    if isinstance(history, bool) or not isinstance(history, (int, np.integer)) or history < 1:
        raise ConfigError(f"history must be a positive integer, got {history!r}", where="--history")
    if not 0.0 <= item_holdout < 1.0:
        raise ConfigError(f"item_holdout must be in [0, 1), got {item_holdout}", where="--item-holdout",
                          fix="pass e.g. 0.1 to keep a tenth of the items out of training")
    for name, value in (("test_share", test_share), ("valid_share", valid_share)):
        if not 0.0 < value < 1.0:
            raise ConfigError(f"{name} must be in (0, 1), got {value}", where=name)
    if test_share + valid_share >= 1.0:
        raise ConfigError("test_share + valid_share must be below 1", where="test_share, valid_share")


def _hold_out(candidates: np.ndarray, share: float, seed: int) -> np.ndarray:
    """(N,) bool: a random ``share`` of the candidate items, a fixed function of ``seed``."""
    heldout = np.zeros(len(candidates), dtype=bool)
    rows = np.flatnonzero(candidates)
    count = math.floor(share * len(rows) + 0.5)
    if count:
        rng = np.random.default_rng(np.random.SeedSequence([seed, 0x17E4]))
        heldout[rng.choice(rows, size=count, replace=False)] = True
    return heldout


def _first_in_period(in_period: np.ndarray, users: np.ndarray, position: np.ndarray) -> np.ndarray:
    """Row of each user's first interaction (lowest position) inside the period, for users with one."""
    rows = np.flatnonzero(in_period)
    if len(rows) == 0:
        return rows
    # Rows are grouped by user and ordered by position inside each group.
    first = np.concatenate([[True], users[rows][1:] != users[rows][:-1]])
    return rows[first]


def _sequences(users: np.ndarray, items: np.ndarray, num_users: int) -> Sequences:
    counts = np.bincount(users, minlength=num_users)
    keep = np.flatnonzero(counts > 0)
    offsets = np.concatenate([[0], np.cumsum(counts[keep])]).astype(np.int64)
    return Sequences(keep.astype(np.int64), offsets, items.astype(np.int64))


def _examples(rows: np.ndarray, users: np.ndarray, items: np.ndarray, offsets: np.ndarray, position: np.ndarray,
              history: int, heldout: np.ndarray, *, drop: np.ndarray | None) -> Examples:
    """Examples whose targets are ``rows``; ``drop`` (N,) bool removes items from histories."""
    start = offsets[users[rows]]
    stop = start + position[rows]
    exclude_offsets, exclude_items = _gather_csr(start, stop, items)
    if drop is None:
        histories = _histories(items, start, stop, history)
    else:
        keep = ~drop[items]
        # Histories without the dropped items: gather from the filtered item stream.
        kept_before = np.concatenate([[0], np.cumsum(keep)])
        filtered = items[keep]
        histories = _histories(filtered, kept_before[start], kept_before[stop], history)
    return Examples(users[rows].astype(np.int64), histories, items[rows].astype(np.int64), exclude_offsets,
                    exclude_items, heldout[items[rows]])


def _histories(items: np.ndarray, start: np.ndarray, stop: np.ndarray, length: int) -> np.ndarray:
    """(E, length): ``items[max(start, stop - length):stop]`` per row, right-aligned, PAD on the left."""
    out = np.full((len(stop), length), PAD, dtype=np.int64)
    for k in range(1, length + 1):
        index = stop - k
        has = index >= start
        out[has, length - k] = items[index[has]]
    return out


def _gather_csr(starts: np.ndarray, ends: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """CSR (offsets, values) of the ranges ``values[starts[e]:ends[e]]``."""
    sizes = (ends - starts).astype(np.int64)
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    index = np.repeat(starts - offsets[:-1], sizes) + np.arange(int(offsets[-1]))
    return offsets, values[index].astype(np.int64)
