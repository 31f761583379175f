"""Monte Carlo counts behind O_pi, and the estimator that turns them into O_pi with a standard error.

The expected codeword overlap is defined through *agreement* (docs/diagnostics.md): two noisy copies
agree when they get the same symbol. For two items i, j drawn independently (uniformly, with
replacement), each perturbed by its own noise,

    P(same)            = sum_a pi_a^2                      (the clean symbols are equal),
    P(agree)           = sum_m ( sum_a pi_a M_am )^2        = (1/N^2) sum_{i,j} <P_i, P_j>,
    P(agree and same)  = sum_a pi_a^2 sum_m M_am^2          = (1/N^2) sum_{i,j: a(i) = a(j)} <P_i, P_j>,
    O_pi               = P(same) P(agree) / P(agree and same) = P(same) / P(same | agree),

where P_i is item i's distribution of perturbed symbols and M_a the mean of P_i over the items of
symbol a. Both pair sums are polynomials of degree two in the P_i, so they have unbiased estimators
from S >= 2 draws per item; no square root of a sparse empirical row is taken (the plug-in
Bhattacharyya form sum_m sqrt(M_am M_bm) is biased low off the diagonal when rows hold few draws).
With c_im the draws of item i that land on symbol m and Q = sum of squared counts,

    sum_{i != j} <P_i, P_j> ~ (Q - Q_item) / S^2,     sum_i ||P_i||^2 ~ (Q_item - N S) / (S (S - 1)),

with Q = sum_m C_m^2 (C_m = sum_i c_im) for P(agree), Q = sum_a sum_m C_am^2 (C_am over the items of
a) for P(agree and same), and Q_item = sum_i sum_m c_im^2. O_pi is a ratio of the two estimates:
its bias is of order 1 / (the number of agreeing draw pairs), and the delete-a-group jackknife over
draw groups (draw s belongs to group s mod G) gives its standard error and an estimate of that bias.

The counts add up over chunks of items and over workers (:meth:`OverlapCounts.merge`); memory
grows with the distinct (symbol, perturbed symbol) pairs of the draws that changed symbol, plus one
count per symbol and group for the draws that did not.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from sidkit.errors import ConfigError, DataError, SidkitError

#: At most this many jackknife groups of draws (draw s is in group s mod G).
MAX_GROUPS = 16
_KEY_LIMIT = 1 << 62
_MIN_MERGE = 1 << 22


@dataclass(frozen=True)
class OverlapEstimate:
    """O_pi of one symbol set at one noise level, with Monte Carlo standard errors.

    Attributes:
        overlap: O_pi, in [sum pi^2, 1].
        overlap_se: its jackknife standard error over draw groups.
        effective_size: K_eff = 1 / O_pi.
        effective_size_se: jackknife standard error of K_eff.
        effective_size_bias: the jackknife's estimate of the bias of K_eff (already small; not removed).
        flip_rate: P(symbol of a noisy copy != clean symbol).
        flip_rate_se: its standard error.
        usage: (A,) pi over the distinct clean symbols (sorted by symbol key).
        samples: draws S per item; groups: jackknife groups G.
        agreement: P(agree); agreement_same: P(agree | same clean symbol).
        flip_to_held: of the draws that changed symbol, the share that landed on a symbol some item
            holds (the rest went to symbols no item has); None when no draw changed.
    """

    overlap: float
    overlap_se: float
    effective_size: float
    effective_size_se: float
    effective_size_bias: float
    flip_rate: float
    flip_rate_se: float
    usage: np.ndarray
    samples: int
    groups: int
    agreement: float
    agreement_same: float
    flip_to_held: float | None = None


class OverlapCounts:
    """Where the noisy draws of some items landed, for one symbol set at one noise level.

    ``add(source, target)`` takes a chunk: (B,) clean symbol keys and (S, B) perturbed symbol keys,
    row s = draw s (nonnegative int64 keys, e.g. codes or ``SemanticIds.prefix_keys``).
    ``estimate()`` gives :class:`OverlapEstimate`.

    Args:
        samples: draws S per item, at least 3 (two draws per jackknife replicate).
        groups: jackknife groups G (default ``min(S, MAX_GROUPS)``), 2 <= G <= S.
    """

    def __init__(self, samples: int, groups: int | None = None) -> None:
        if isinstance(samples, bool) or not isinstance(samples, (int, np.integer)) or samples < 3:
            raise ConfigError(f"samples must be an integer >= 3, got {samples!r}", where="samples",
                              fix="use at least 3 noise draws per item (8 is the default)")
        self.samples = int(samples)
        self.groups = min(self.samples, MAX_GROUPS) if groups is None else int(groups)
        if not 2 <= self.groups <= self.samples:
            raise ConfigError(f"groups must be between 2 and samples = {self.samples}, got {groups!r}",
                              where="groups")
        if self.samples - math.ceil(self.samples / self.groups) < 2:
            raise ConfigError(f"{self.groups} groups of {self.samples} draws leave a jackknife replicate with "
                              "fewer than 2 draws", where="groups", fix="use more draws or more groups")
        self.group_of = np.arange(self.samples) % self.groups  # (S,) draw -> group
        self._one_hot = np.eye(self.groups)[self.group_of]      # (S, G)
        self.item_pairs = np.zeros((self.groups, self.groups))  # D_gh = sum_i sum_m c_im^g c_im^h
        self._stays: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # (symbols, items, stays (A, G))
        self._moved: list[_Moved] = []
        self._moved_rows = 0
        self._merged: _Moved | None = None
        self._finalized = False

    # ----- counting ---------------------------------------------------------------------------------

    def add(self, source: np.ndarray, target: np.ndarray) -> OverlapCounts:
        """Count a chunk: ``source`` (B,) clean symbol keys, ``target`` (S, B) perturbed ones."""
        if self._finalized:
            raise SidkitError("these overlap counts were already estimated", where="OverlapCounts.add",
                              fix="start new counts for more items")
        source = np.asarray(source, dtype=np.int64).reshape(-1)
        target = np.asarray(target, dtype=np.int64)
        if target.shape != (self.samples, len(source)):
            raise DataError(f"perturbed symbols have shape {target.shape}, expected ({self.samples}, "
                            f"{len(source)}): one row per draw", where="OverlapCounts.add",
                            fix="pass the (S, B) perturbed symbols, row s = draw s of every item")
        if len(source) == 0:
            return self
        same = target == source[None, :]
        # Same-item pairs of draws: E_st = number of items whose draws s and t agree.
        equal = np.empty((self.samples, self.samples))
        for s in range(self.samples):
            equal[s, s] = len(source)
            for t in range(s + 1, self.samples):
                equal[s, t] = equal[t, s] = np.count_nonzero(target[s] == target[t])
        self.item_pairs += self._one_hot.T @ equal @ self._one_hot
        # Draws that kept their symbol: one count per (symbol, group).
        symbols, inverse, items = np.unique(source, return_inverse=True, return_counts=True)
        keys = inverse.reshape(1, -1) * self.groups + self.group_of[:, None]
        stays = np.bincount(keys[same], minlength=len(symbols) * self.groups).reshape(len(symbols), self.groups)
        self._stays.append((symbols, items.astype(np.int64), stays.astype(np.int64)))
        # Draws that changed symbol: sparse (source, target, group) counts.
        draw, item = np.nonzero(~same)
        if len(draw):
            moved = _count_moved(source[item], target[draw, item], self.group_of[draw], self.groups)
            self._moved.append(moved)
            self._moved_rows += len(moved[0])
            if self._moved_rows > max(_MIN_MERGE, 0 if self._merged is None else len(self._merged[0])):
                self._merge_moved()
        if len(self._stays) > 64:
            self._stays = [_merge_stays(self._stays)]
        return self

    def merge(self, other: OverlapCounts) -> OverlapCounts:
        """Add ``other``'s counts (same samples and groups, other items) into these."""
        if (other.samples, other.groups) != (self.samples, self.groups):
            raise DataError(f"cannot merge counts of {other.samples} draws in {other.groups} groups into "
                            f"{self.samples} draws in {self.groups} groups", where="OverlapCounts.merge",
                            fix="merge counts built with the same samples and groups")
        if self._finalized or other._finalized:
            raise SidkitError("these overlap counts were already estimated", where="OverlapCounts.merge",
                              fix="merge before calling estimate()")
        self.item_pairs += other.item_pairs
        self._stays += other._stays
        self._moved += ([] if other._merged is None else [other._merged]) + other._moved
        self._moved_rows += other._moved_rows + (0 if other._merged is None else len(other._merged[0]))
        return self

    # ----- estimation -------------------------------------------------------------------------------

    def estimate(self) -> OverlapEstimate:
        """O_pi, K_eff and the flip rate with their jackknife standard errors (see the module docstring)."""
        if not self._stays:
            raise DataError("no items were counted", where="OverlapCounts.estimate",
                            fix="add at least one chunk of items first")
        self._finalized = True
        symbols, items, stays = _merge_stays(self._stays)
        self._merge_moved()
        n = int(items.sum())
        usage = items / n
        simpson = float(usage @ usage)
        total, within, flip_to_held = _pair_matrices(symbols, stays, self._merged, self.groups)
        sizes = np.bincount(self.group_of, minlength=self.groups).astype(np.float64)
        stays_per_group = stays.sum(axis=0).astype(np.float64)

        def estimate_on(keep: np.ndarray) -> tuple[float, float, float, float]:
            draws = float(sizes[keep].sum())
            block = np.ix_(keep, keep)
            q_item = float(self.item_pairs[block].sum())
            same_item = (q_item - n * draws) / (draws * (draws - 1.0))
            agree = ((float(total[block].sum()) - q_item) / draws**2 + same_item) / n**2
            agree_same = ((float(within[block].sum()) - q_item) / draws**2 + same_item) / n**2
            # O_pi >= P(same) holds for the estimates too (total >= within). No agreeing pair within
            # symbols at all (only at extreme noise with few draws) reads as complete overlap.
            overlap = 1.0 if agree_same <= 0 else simpson * agree / agree_same
            flip = 1.0 - float(stays_per_group[keep].sum()) / (n * draws)
            return overlap, flip, agree, agree_same / simpson

        everything = np.ones(self.groups, dtype=bool)
        overlap, flip, agree, agree_same = estimate_on(everything)
        replicates = np.array([estimate_on(everything & (np.arange(self.groups) != g))[:2]
                               for g in range(self.groups)])
        scale = (self.groups - 1) / self.groups
        overlap_se = math.sqrt(scale * float(((replicates[:, 0] - replicates[:, 0].mean()) ** 2).sum()))
        sizes_rep = 1.0 / replicates[:, 0]
        size_se = math.sqrt(scale * float(((sizes_rep - sizes_rep.mean()) ** 2).sum()))
        flip_se = math.sqrt(scale * float(((replicates[:, 1] - replicates[:, 1].mean()) ** 2).sum()))
        bias = (self.groups - 1) * (float(sizes_rep.mean()) - 1.0 / overlap)
        # The ratio can exceed 1 by Monte Carlo error near infinite noise: the value is clipped to
        # 1 (K_eff >= 1), the standard error comes from the unclipped replicates.
        overlap = min(1.0, overlap)
        return OverlapEstimate(overlap=overlap, overlap_se=overlap_se, effective_size=1.0 / overlap,
                               effective_size_se=size_se, effective_size_bias=bias, flip_rate=flip,
                               flip_rate_se=flip_se, usage=usage, samples=self.samples, groups=self.groups,
                               agreement=agree, agreement_same=agree_same, flip_to_held=flip_to_held)

    def _merge_moved(self) -> None:
        parts = ([] if self._merged is None else [self._merged]) + self._moved
        if len(parts) > 1:
            self._merged = _sum_moved(parts, self.groups)
        elif parts:
            self._merged = parts[0]
        self._moved, self._moved_rows = [], 0


# (source, target, group, count) of draws that changed symbol, sorted by (source, target, group).
_Moved = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def _count_moved(source: np.ndarray, target: np.ndarray, group: np.ndarray, groups: int,
                 counts: np.ndarray | None = None) -> _Moved:
    """Distinct (source, target, group) triples with their number (or the sum of ``counts``), sorted."""
    span = int(max(source.max(), target.max())) + 1
    if span <= math.isqrt(_KEY_LIMIT // groups):  # one int64 key per triple: a plain sort
        keys = (source * span + target) * groups + group
        if counts is None:
            unique, summed = np.unique(keys, return_counts=True)
        else:
            unique, inverse = np.unique(keys, return_inverse=True)
            summed = np.bincount(inverse.reshape(-1), weights=counts, minlength=len(unique))
        pair, grp = np.divmod(unique, groups)
        first, second = np.divmod(pair, span)
    else:
        rows, inverse = np.unique(np.stack([source, target, group], axis=1), axis=0, return_inverse=True)
        first, second, grp = rows[:, 0].copy(), rows[:, 1].copy(), rows[:, 2].copy()
        summed = np.bincount(inverse.reshape(-1), weights=counts, minlength=len(rows))
    return first, second, grp, np.rint(summed).astype(np.int64)


def _sum_moved(parts: list[_Moved], groups: int) -> _Moved:
    source, target, group = (np.concatenate([p[k] for p in parts]) for k in range(3))
    return _count_moved(source, target, group, groups, np.concatenate([p[3] for p in parts]).astype(np.float64))


def _merge_stays(parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray,
                                                                                   np.ndarray]:
    if len(parts) == 1:
        return parts[0]
    symbols, stacked = _sum_rows(np.concatenate([p[0] for p in parts]),
                                 np.concatenate([np.column_stack([p[1], p[2]]) for p in parts]).astype(np.float64))
    counts = np.rint(stacked).astype(np.int64)
    return symbols, counts[:, 0].copy(), counts[:, 1:].copy()


def _sum_rows(keys: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct sorted ``keys`` and, per key, the sum of its (K, C) ``rows``."""
    order = np.argsort(keys, kind="stable")
    ordered = keys[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    return ordered[starts], np.add.reduceat(rows[order], starts, axis=0)


def _group_table(keys: np.ndarray, group: np.ndarray, weights: np.ndarray, groups: int) -> tuple[np.ndarray,
                                                                                             np.ndarray]:
    """Distinct sorted ``keys`` and their (U, G) dense per-group sums of ``weights``."""
    order = np.argsort(keys, kind="stable")
    ordered = keys[order]
    new = np.r_[True, ordered[1:] != ordered[:-1]]
    row = np.cumsum(new) - 1
    table = np.bincount(row * groups + group[order], weights=weights[order], minlength=int(row[-1] + 1) * groups)
    return ordered[new], table.reshape(-1, groups)


def _pair_matrices(symbols: np.ndarray, stays: np.ndarray, moved: _Moved | None,
                   groups: int) -> tuple[np.ndarray, np.ndarray, float | None]:
    """(G, G) sums over perturbed symbols m of C_m^g C_m^h and over (a, m) of C_am^g C_am^h, and the
    share of moved draws that landed on a held symbol (None when none moved)."""
    held = stays.astype(np.float64)  # (A, G): the draws that stayed, by symbol
    within = held.T @ held
    if moved is None or len(moved[0]) == 0:
        return within.copy(), within, None
    source, target, group, count = moved
    weights = count.astype(np.float64)
    # Moved triples are sorted by (source, target): number each distinct pair, one row of G counts each.
    new_pair = np.r_[True, (source[1:] != source[:-1]) | (target[1:] != target[:-1])]
    pair = np.cumsum(new_pair) - 1
    cells = np.bincount(pair * groups + group, weights=weights, minlength=int(pair[-1] + 1) * groups)
    cells = cells.reshape(-1, groups)
    within = within + cells.T @ cells
    # C_m^g = stays of symbol m (if an item holds m) + arrivals at m from other symbols.
    landing, arrivals = _group_table(target, group, weights, groups)
    index = np.minimum(np.searchsorted(symbols, landing), len(symbols) - 1)
    is_held = symbols[index] == landing
    own = np.zeros_like(arrivals)
    own[is_held] = held[index[is_held]]
    cross = own.T @ arrivals
    total = held.T @ held + arrivals.T @ arrivals + cross + cross.T
    return total, within, float(arrivals[is_held].sum() / arrivals.sum())
