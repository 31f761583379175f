"""User-item interactions: who engaged with what, when, and how (rating and/or labels)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from sidkit.data.catalog import ItemCatalog
from sidkit.data.validation import as_id_array, check_length, check_not_empty, check_numeric
from sidkit.errors import DataError

#: Below this, integer times read as seconds since 1970 (or steps); each factor of 1000 above is the next unit.
_SECONDS_LIMIT = 10**11  # about the year 5138 in seconds; 1973 in milliseconds
TIME_UNITS = ("s", "ms", "us", "ns")


def as_timestamps(values: object, *, where: str = "interactions.timestamp") -> np.ndarray:
    """(M,) int64 times from integers, whole or fractional floats (truncated), or datetime64 (kept in
    its own unit); DataError for text, NaN / inf, and values outside int64."""
    times = np.asarray(values)
    if times.dtype.kind == "M":  # datetime64 (an Arrow timestamp column): its integer ticks, in its unit
        if np.isnat(times).any():
            raise DataError("timestamps hold missing values (NaT)", where=where,
                            fix="drop rows without a time or fill them")
        return times.view(np.int64).astype(np.int64, copy=False)
    check_numeric(times, where=where)
    if times.dtype.kind == "f":
        if not np.all(np.isfinite(times)):
            raise DataError("timestamps hold NaN or inf", where=where, fix="drop rows without a time or fill them")
        if len(times) and (times.max() >= 2.0**63 or times.min() < -(2.0**63)):
            raise DataError(f"timestamps up to {float(np.abs(times).max()):.3g} do not fit in 64-bit integers",
                            where=where, fix="store times as integer seconds (or ms, us, ns) since 1970")
        return times.astype(np.int64)
    if times.dtype.kind == "u" and len(times) and int(times.max()) > 2**63 - 1:
        raise DataError(f"timestamp {int(times.max())} does not fit in a 64-bit signed integer", where=where,
                        fix="store times as integer seconds (or ms, us, ns) since 1970")
    return times.astype(np.int64, copy=False)


def timestamp_unit(timestamps: np.ndarray) -> str:
    """The unit integer times are most likely in, from their size: ``"s"`` (or a step counter) below
    1e11, then ``"ms"``, ``"us"``, ``"ns"`` for each factor of 1000 (all for dates after 1973)."""
    if len(timestamps) == 0:
        return "s"
    largest = max(abs(int(np.max(timestamps))), abs(int(np.min(timestamps))))
    for unit in TIME_UNITS:
        if largest < _SECONDS_LIMIT:
            return unit
        largest //= 1000
    return "ns"


@dataclass(frozen=True, eq=False)
class Interactions:
    """One row per interaction (or impression), M rows in all.

    Attributes:
        user_ids: (M,) int64 or str.
        item_ids: (M,) int64 or str, each present in the catalog.
        timestamps: (M,) int64 in any unit: seconds, milliseconds, microseconds or nanoseconds since
            1970 (:func:`timestamp_unit` tells which from their size), or a step counter. Arrow
            timestamp columns keep their own unit; float times are truncated to integers.
        ratings: (M,) float32 explicit ratings, or None.
        labels: binary task labels such as ``click`` and ``like``, each (M,) int8 in {0, 1}.
        context: other per-row columns (device, country, ...), each (M,) of any dtype: features an
            impression carries, not labels.
    """

    user_ids: np.ndarray
    item_ids: np.ndarray
    timestamps: np.ndarray
    ratings: np.ndarray | None = None
    labels: Mapping[str, np.ndarray] = field(default_factory=dict)
    context: Mapping[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        users = as_id_array(self.user_ids, where="interactions.user_id")
        check_not_empty(len(users), where="interactions")
        items = as_id_array(self.item_ids, where="interactions.item_id")
        check_length(items, len(users), where="interactions.item_id", against="user_id")
        times = as_timestamps(self.timestamps)
        check_length(times, len(users), where="interactions.timestamp", against="user_id")
        object.__setattr__(self, "user_ids", users)
        object.__setattr__(self, "item_ids", items)
        object.__setattr__(self, "timestamps", times.astype(np.int64, copy=False))
        if self.ratings is not None:
            ratings = np.asarray(self.ratings)
            check_numeric(ratings, where="interactions.rating")
            check_length(ratings, len(users), where="interactions.rating", against="user_id")
            ratings = ratings.astype(np.float32)
            if not np.all(np.isfinite(ratings)):
                raise DataError("ratings hold NaN or inf", where="interactions.rating",
                                fix="drop unrated rows or store them without a rating column")
            object.__setattr__(self, "ratings", ratings)
        labels = {}
        for name, values in self.labels.items():
            label = np.asarray(values)
            check_numeric(label, where=f"interactions.{name}")
            check_length(label, len(users), where=f"interactions.{name}", against="user_id")
            if not np.all((label == 0) | (label == 1)):
                raise DataError("labels must be 0 or 1", where=f"interactions.{name}",
                                fix="binarize the label column")
            labels[name] = label.astype(np.int8)
        object.__setattr__(self, "labels", labels)
        context = {}
        for name, values in self.context.items():
            column = np.asarray(values)
            check_length(column, len(users), where=f"interactions.{name}", against="user_id")
            context[name] = column
        object.__setattr__(self, "context", context)

    def __len__(self) -> int:
        return len(self.user_ids)

    @property
    def num_users(self) -> int:
        return len(np.unique(self.user_ids))

    def check_items(self, catalog: ItemCatalog) -> np.ndarray:
        """Row of each interaction's item in ``catalog``; raises on ids the catalog lacks."""
        return catalog.index_of(self.item_ids)

    def take(self, rows: np.ndarray) -> Interactions:
        """The interactions at ``rows`` (indices or a boolean mask)."""
        return Interactions(
            self.user_ids[rows],
            self.item_ids[rows],
            self.timestamps[rows],
            None if self.ratings is None else self.ratings[rows],
            {k: v[rows] for k, v in self.labels.items()},
            {k: v[rows] for k, v in self.context.items()},
        )
