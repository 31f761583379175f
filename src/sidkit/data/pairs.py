"""Behaviour pairs: items a user engaged with close together in time (docs/data.md, "Behaviour pairs").

Per user, in time order, two positively engaged items at most ``window`` steps apart form a pair.
Pairs are split by time: only the train part may train anything (for example the +CL loss); the
held-out part is for evaluation (hit-rate retention, SID-embedding AUC).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from sidkit.data.catalog import ItemCatalog
from sidkit.data.interactions import Interactions
from sidkit.errors import ConfigError, DataError

#: Label columns that mean "the user engaged", strongest signal first.
POSITIVE_LABELS = ("like", "click")
_KEY_LIMIT = 1 << 62  # combined int64 sort keys stay below this


@dataclass(frozen=True, eq=False)
class BehaviourPairs:
    """Co-engaged item pairs, split by time.

    Attributes:
        train: (P1, 2) int64 catalog rows (earlier item, later item); pair time < ``split_time``.
        heldout: (P2, 2) int64 catalog rows; pair time >= ``split_time``.
        split_time: the time that splits them; a pair's time is that of its later event.
        window: the largest number of steps between the two events of a pair.

    Each split holds each (earlier, later) pair once, sorted by (earlier, later). A pair of an item
    with itself never occurs. (a, b) and (b, a) are different pairs.
    """

    train: np.ndarray
    heldout: np.ndarray
    split_time: int
    window: int

    def __len__(self) -> int:
        return len(self.train) + len(self.heldout)


def positive_mask(interactions: Interactions, *, min_rating: float = 4.0,
                  label: str | None = None) -> np.ndarray:
    """Which interactions are positive engagements: bool (M,).

    Rules, first that applies:
      1. ``label`` given: that label column is 1.
      2. a ``like`` label exists: like == 1 (a like is a stronger signal than a click).
      3. a ``click`` label exists: click == 1.
      4. ratings exist: rating >= ``min_rating``.
      5. otherwise every row (implicit feedback: each logged interaction is an engagement).
    """
    if label is not None:
        if label not in interactions.labels:
            raise ConfigError(f"label '{label}' is not in the interactions (labels: "
                              f"{sorted(interactions.labels) or 'none'})", where="label",
                              fix="name an existing label column, or leave label unset")
        return interactions.labels[label] == 1
    for name in POSITIVE_LABELS:
        if name in interactions.labels:
            return interactions.labels[name] == 1
    if interactions.ratings is not None:
        if not math.isfinite(min_rating):
            raise ConfigError(f"min_rating must be a finite number, got {min_rating}", where="min_rating")
        return interactions.ratings >= min_rating
    return np.ones(len(interactions), dtype=bool)


def behaviour_pairs(interactions: Interactions, catalog: ItemCatalog, *, window: int = 5,
                    train_share: float = 0.8, split_time: int | None = None,
                    positive: np.ndarray | None = None) -> BehaviourPairs:
    """Pair each positive event with the next ``window`` positive events of the same user.

    Args:
        interactions: M rows; items must be in ``catalog``.
        catalog: N items; pairs hold its row indices.
        window: steps (events, not seconds) to look ahead; 1 pairs only consecutive events.
        train_share: when ``split_time`` is None, split at this quantile of the positive events'
            times (numpy method "higher", so the split is an observed time), in (0, 1).
        split_time: pairs whose later event is earlier than this train; the rest are held out.
        positive: bool (M,) mask of positive rows; default :func:`positive_mask`.

    Events of a user are ordered by (timestamp, row order). Runs in O(M log M + M * window) with
    no loop over users.
    """
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)) or window < 1:
        raise ConfigError(f"window must be an integer >= 1, got {window!r}", where="window",
                          fix="use the default of 5 steps, or 1 for consecutive events only")
    if not 0.0 < float(train_share) < 1.0:
        raise ConfigError(f"train_share must lie strictly between 0 and 1, got {train_share}",
                          where="train_share", fix="use for example 0.8 (the earliest 80% train)")
    mask = positive_mask(interactions) if positive is None else _checked_mask(positive, len(interactions))
    picked = np.flatnonzero(mask)
    if picked.size == 0:
        raise DataError("no positive interactions to pair", where="interactions",
                        fix="lower min_rating, pick another label, or pass a positive mask")
    rows = catalog.index_of(interactions.item_ids[picked])
    times = interactions.timestamps[picked]
    split = _quantile_time(times, train_share) if split_time is None else int(split_time)
    users, order = _event_order(interactions.user_ids[picked], times)
    rows = rows[order]
    early_at = times[order] < split  # a pair is early (train) when its later event is

    n_items = len(catalog)
    train_keys: list[np.ndarray] = []
    heldout_keys: list[np.ndarray] = []
    # Loop over the window's steps, not over users: event e pairs with event e + step of the same user.
    for step in range(1, int(window) + 1):
        same = users[:-step] == users[step:]
        if not np.any(same):
            break  # no user has step + 1 events, so no user has more either
        same &= rows[:-step] != rows[step:]
        first = np.flatnonzero(same)
        later = first + step
        key = rows[first] * n_items + rows[later]  # N^2 < 2^63 for any real catalog
        early = early_at[later]
        train_keys.append(_sorted_unique(key[early]))
        heldout_keys.append(_sorted_unique(key[~early]))
    return BehaviourPairs(_decode(train_keys, n_items), _decode(heldout_keys, n_items), split, int(window))


def _checked_mask(positive: np.ndarray, n: int) -> np.ndarray:
    mask = np.asarray(positive)
    if mask.dtype != np.bool_ or mask.shape != (n,):
        raise DataError(f"positive must be a bool array of shape ({n},), got {mask.dtype} {mask.shape}",
                        where="positive", fix="pass one True/False per interaction row")
    return mask


def _event_order(user_ids: np.ndarray, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Order events by (user, time, row): (user codes in that order, the order), both (M,) int64."""
    if user_ids.dtype.kind in "iu" and int(user_ids.max()) - int(user_ids.min()) < _KEY_LIMIT:
        users = user_ids - user_ids.min()  # integer ids need no np.unique, only equality
    else:
        users = np.unique(user_ids, return_inverse=True)[1].astype(np.int64)
    n_users = int(users.max()) + 1
    span = int(times.max()) - int(times.min()) + 1
    if n_users * span < _KEY_LIMIT:
        # One stable sort of a combined (user, time) key; stability keeps row order within ties.
        order = np.argsort(users * span + (times - times.min()), kind="stable")
    else:
        order = np.argsort(times, kind="stable")
        order = order[np.argsort(users[order], kind="stable")]
    return users[order], order


def _quantile_time(times: np.ndarray, share: float) -> int:
    # "higher" picks an observed time, so about `share` of the events fall strictly before it.
    return int(np.quantile(times, share, method="higher"))


def _decode(keys: list[np.ndarray], n_items: int) -> np.ndarray:
    if not keys:
        return np.empty((0, 2), dtype=np.int64)
    unique = _sorted_unique(np.concatenate(keys)).astype(np.int64, copy=False)
    return np.stack([unique // n_items, unique % n_items], axis=1)


def _sorted_unique(keys: np.ndarray) -> np.ndarray:
    # Sort-based: numpy 2's hash-based np.unique is an order of magnitude slower on int64 keys.
    keys = np.sort(keys)
    if keys.size:
        keys = keys[np.concatenate([[True], keys[1:] != keys[:-1]])]
    return keys
