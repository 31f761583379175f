"""Ranking data as plain arrays: impressions with labels, user features and engaged history."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

SLICES = ("all", "new", "tail", "head")


@dataclass(frozen=True, eq=False)
class RankingSplit:
    """M impressions of one split (train, valid or test).

    Attributes:
        item: (M,) int64 catalog row of the candidate item.
        user_features: (M, F) int64 rows of the shared user embedding table, one column per user field
            (hashed user id first; demographics when present); 0 is padding.
        history: (M, H) int64 catalog rows of the user's last H engaged items strictly before the
            impression's time, most recent first; padded with the padding item (= number of items).
        labels: task name -> (M,) float32 in {0, 1}.
        time: (M,) int64 impression time.
        user: (M,) int64 raw user index (for grouping and checks, not a model input).
        slices: slice name -> (M,) bool, e.g. ``all``, ``new`` (item absent from training),
            ``tail`` / ``head`` (bottom / top half of training items by training popularity).
    """

    item: np.ndarray
    user_features: np.ndarray
    history: np.ndarray
    labels: Mapping[str, np.ndarray]
    time: np.ndarray
    user: np.ndarray
    slices: Mapping[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.item.shape[0])


@dataclass(frozen=True, eq=False)
class RankingData:
    """Train, validation and test impressions over one catalog.

    Attributes:
        num_items: N; history padding uses index N.
        num_user_embeddings: rows of the user embedding table (padding row 0 included).
        tasks: task names in model order, e.g. ("click", "like").
        train_items: (N,) bool, items that appear anywhere in the training tensors.
        heldout_items: (N,) bool, items removed from training entirely (the item hold-out).
    """

    train: RankingSplit
    valid: RankingSplit
    test: RankingSplit
    num_items: int
    num_user_embeddings: int
    tasks: tuple[str, ...]
    train_items: np.ndarray
    heldout_items: np.ndarray
