"""Ranking data as plain arrays: impressions with labels, user features and engaged history."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: Evaluation slices. ``new-matched`` holds the positives of new items and, for each, negatives drawn
#: among new items for the same user, time and history; its AUC compares only within those groups.
SLICES = ("all", "new", "new-matched", "tail", "head")
#: The slice whose AUC is computed within groups (each positive against its own negatives).
MATCHED_SLICE = "new-matched"


@dataclass(frozen=True, eq=False)
class RankingSplit:
    """M impressions of one split (train, valid or test).

    Attributes:
        item: (M,) int64 catalog row of the candidate item.
        user_features: (M, F) int64 rows of the shared user embedding table, one column per user field
            (user id first; then the declared user features); 0 is padding.
        history: (M, H) int64 catalog rows of the user's last H engaged items strictly before the
            impression's time, most recent first; padded with the padding item (= number of items).
        labels: task name -> (M,) float32 in {0, 1}.
        time: (M,) int64 impression time.
        user: (M,) int64 raw user index (for grouping and checks, not a model input).
        slices: slice name -> (M,) bool, e.g. ``all``, ``new`` (item absent from training),
            ``new-matched``, ``tail`` / ``head`` (bottom / top half of training items by training clicks).
            Rows outside ``all`` exist only for ``new-matched`` (extra negatives drawn among new items).
        group: (M,) int64 the engagement an impression was drawn for: an engagement and its sampled
            negatives share it (a real impression is its own group); None when unknown.
    """

    item: np.ndarray
    user_features: np.ndarray
    history: np.ndarray
    labels: Mapping[str, np.ndarray]
    time: np.ndarray
    user: np.ndarray
    slices: Mapping[str, np.ndarray] = field(default_factory=dict)
    group: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.item.shape[0])

    @property
    def main(self) -> np.ndarray:
        """(M,) bool: the ordinary impressions (the ``all`` slice; everything when there are no slices)."""
        if "all" in self.slices:
            return np.asarray(self.slices["all"], dtype=bool)
        return np.ones(len(self), dtype=bool)


@dataclass(frozen=True, eq=False)
class RankingData:
    """Train, validation and test impressions over one catalog.

    Attributes:
        num_items: N; history padding uses index N.
        num_user_embeddings: rows of the user embedding table (padding row 0 included).
        tasks: task names in model order, e.g. ("click", "like").
        train_items: (N,) bool, items that appear anywhere in the training tensors.
        heldout_items: (N,) bool, items removed from training and validation (the test ``new`` slice).
        valid_heldout_items: (N,) bool, items removed from training and test: the validation ``new``
            slice, so that early stopping sees cold-start quality without touching the test items.
        conditional: (task, given) pairs evaluated on the impressions where ``given`` is 1, e.g.
            ("like", "click") gives the ``like|click`` rows.
        user_field_names: a name per user_features column (``user id`` first).
        notes: what was left out of the data and why (columns ignored, rows dropped), one line each.
        user_encoding: how raw user ids and users.parquet columns became user_features rows, as plain
            JSON-able values (``sidkit.ranking.data.encode_users`` applies it to new users).
    """

    train: RankingSplit
    valid: RankingSplit
    test: RankingSplit
    num_items: int
    num_user_embeddings: int
    tasks: tuple[str, ...]
    train_items: np.ndarray
    heldout_items: np.ndarray
    valid_heldout_items: np.ndarray | None = None
    conditional: tuple[tuple[str, str], ...] = ()
    user_field_names: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    user_encoding: Mapping[str, Any] | None = None
