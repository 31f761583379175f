"""Code usage: how evenly items spread over each level's codes, and how many items share a full SID.

Per level l, with counts c_1..c_K of the items that take each of the K codes and pi_k = c_k / N
(docs/diagnostics.md, "Usage"):

- active: codes used by at least one item; dead: K - active.
- perplexity: exp(H(pi)), H = -sum_k pi_k log pi_k (natural log, 0 log 0 = 0). The number of
  equally used codes that would give the same entropy: K for uniform usage, 1 when all items
  share one code.
- entropy_ratio: H / log K, in [0, 1]; 1 for uniform usage. Defined as 1 when K = 1.
- gini: G = sum_i sum_j |c_i - c_j| / (2 K^2 mean(c)) over all K counts, dead codes included.
  0 for uniform usage, (K - 1) / K when all items share one code.

Full SID: unique_ratio = distinct SIDs / N; collision_rate = share of items whose SID some other
item also has; max_bucket = the most items that share one SID.

``usage_report(ids)`` computes all of it at once; ``UsageAccumulator`` gives the same report,
exactly, from codes that arrive in chunks. ``compare(before, after)`` lines two reports up.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sidkit.errors import ConfigError, DataError, SidkitError
from sidkit.ids import UINT64_BITS, SemanticIds

LEVEL_METRICS = ("size", "active", "dead", "perplexity", "entropy_ratio", "gini")
SID_METRICS = ("unique_ratio", "collision_rate", "max_bucket")

Number = int | float


@dataclass(frozen=True)
class LevelUsage:
    """Code usage of one level (see the module docstring for the definitions)."""

    level: int
    size: int
    active: int
    dead: int
    perplexity: float
    entropy_ratio: float
    gini: float

    def to_dict(self) -> dict[str, Number]:
        return {"level": self.level, "size": self.size, "active": self.active, "dead": self.dead,
                "perplexity": self.perplexity, "entropy_ratio": self.entropy_ratio, "gini": self.gini}


@dataclass(frozen=True)
class SidUsage:
    """How many items share a full SID."""

    unique_ratio: float
    collision_rate: float
    max_bucket: int

    def to_dict(self) -> dict[str, Number]:
        return {"unique_ratio": self.unique_ratio, "collision_rate": self.collision_rate,
                "max_bucket": self.max_bucket}


@dataclass(frozen=True)
class UsageReport:
    """Usage of every level, and of the full SID, over ``num_items`` items."""

    levels: tuple[LevelUsage, ...]
    sid: SidUsage
    num_items: int

    def to_dict(self) -> dict[str, object]:
        """JSON shape: ``{"num_items": N, "usage": [per level], "sid": {...}}``."""
        return {"num_items": self.num_items, "usage": [level.to_dict() for level in self.levels],
                "sid": self.sid.to_dict()}


def gini(counts: np.ndarray) -> float:
    """Gini coefficient of K counts, zeros included: sum_i sum_j |c_i - c_j| / (2 K^2 mean(c)).

    With the counts sorted ascending, the double sum is 2 sum_i (2i - K - 1) c_(i) (i = 1..K), so
    G = sum_i (2i - K - 1) c_(i) / (K sum(c)); the numerator is summed in integers, so it is exact.
    Returns 0.0 when all counts are zero.
    """
    values = np.sort(np.asarray(counts, dtype=np.int64))
    size, total = len(values), int(values.sum())
    if size == 0 or total == 0:
        return 0.0
    weights = 2 * np.arange(1, size + 1, dtype=np.int64) - size - 1
    return int(weights @ values) / (size * total)


def level_usage(counts: np.ndarray, level: int = 0) -> LevelUsage:
    """Usage of one level from its (K,) item counts per code (at least one item in all)."""
    counts = np.asarray(counts, dtype=np.int64)
    size, total = len(counts), int(counts.sum())
    if total == 0:
        raise DataError("no items to measure usage on", where=f"level {level}", fix="pass at least one item")
    used = counts[counts > 0]
    share = used / total
    entropy = float(-(share * np.log(share)).sum())
    return LevelUsage(level=level, size=size, active=len(used), dead=size - len(used),
                      perplexity=math.exp(entropy),
                      entropy_ratio=entropy / math.log(size) if size > 1 else 1.0,
                      gini=gini(counts))


def sid_usage(bucket_sizes: np.ndarray) -> SidUsage:
    """Full-SID usage from the number of items of each distinct SID: (U,) positive counts."""
    buckets = np.asarray(bucket_sizes, dtype=np.int64)
    total = int(buckets.sum())
    if total == 0:
        raise DataError("no items to measure usage on", where="sid", fix="pass at least one item")
    return SidUsage(unique_ratio=len(buckets) / total,
                    collision_rate=int(buckets[buckets > 1].sum()) / total,
                    max_bucket=int(buckets.max()))


def usage_report(ids: SemanticIds) -> UsageReport:
    """Usage of each level and of the full SID, for codes (N, L) held in memory."""
    level_counts = [np.bincount(ids.codes[:, level], minlength=size) for level, size in enumerate(ids.sizes)]
    _, buckets = np.unique(_sid_keys(ids), return_counts=True)
    return _report(level_counts, buckets, len(ids))


class UsageAccumulator:
    """Streaming usage: ``UsageAccumulator(sizes).update(chunk)...finalize()`` == ``usage_report``.

    Keeps one count per code of each level and one count per distinct SID seen so far (keyed by
    the packed uint64 when the bits fit, else by the raw row bytes), so memory grows with the
    number of distinct SIDs, not with N.
    """

    # Chunks' SID counts wait in a list and are merged when they outgrow the merged table, so
    # many small updates cost O(N log N) in all rather than a re-sort per update.
    _MIN_MERGE = 1 << 20

    def __init__(self, sizes: Sequence[int]) -> None:
        sizes = tuple(int(size) for size in sizes)
        if not sizes or any(size < 1 for size in sizes):
            raise ConfigError(f"need at least one level and positive sizes, got {sizes}", where="sizes")
        self.sizes = sizes
        self.num_items = 0
        self._level_counts = [np.zeros(size, dtype=np.int64) for size in sizes]
        self._keys: np.ndarray | None = None
        self._key_counts = np.zeros(0, dtype=np.int64)
        self._pending: list[tuple[np.ndarray, np.ndarray]] = []
        self._pending_len = 0
        self._report: UsageReport | None = None

    def update(self, codes: np.ndarray | SemanticIds) -> UsageAccumulator:
        """Add a chunk of codes: (n, L) integers, or a SemanticIds with the same sizes."""
        if self._report is not None:
            raise SidkitError("this UsageAccumulator was already finalized", where="UsageAccumulator.update",
                              fix="start a new UsageAccumulator for more codes")
        if isinstance(codes, SemanticIds):
            if codes.sizes != self.sizes:
                raise DataError(f"chunk has sizes {codes.sizes}, the accumulator {self.sizes}",
                                where="UsageAccumulator.update")
            chunk = codes
        else:
            chunk = SemanticIds(np.asarray(codes), self.sizes)  # validates shape, dtype and range
        if len(chunk) == 0:
            return self
        for level, counts in enumerate(self._level_counts):
            counts += np.bincount(chunk.codes[:, level], minlength=len(counts))
        keys, key_counts = np.unique(_sid_keys(chunk), return_counts=True)
        self._pending.append((keys, key_counts))
        self._pending_len += len(keys)
        self.num_items += len(chunk)
        if self._pending_len > max(len(self._key_counts), self._MIN_MERGE):
            self._merge()
        return self

    def finalize(self) -> UsageReport:
        """The usage report of every code passed to :meth:`update`; later updates are refused."""
        if self._report is None:
            if self.num_items == 0:
                raise DataError("no codes were added", where="UsageAccumulator.finalize",
                                fix="call update() with at least one item first")
            self._merge()
            self._report = _report(self._level_counts, self._key_counts, self.num_items)
        return self._report

    def _merge(self) -> None:
        if not self._pending:
            return
        parts = [(self._keys, self._key_counts)] if self._keys is not None else []
        parts += self._pending
        keys = np.concatenate([part[0] for part in parts])
        counts = np.concatenate([part[1] for part in parts])
        self._keys, inverse = np.unique(keys, return_inverse=True)
        self._key_counts = np.zeros(len(self._keys), dtype=np.int64)
        np.add.at(self._key_counts, inverse.reshape(-1), counts)
        self._pending, self._pending_len = [], 0


@dataclass(frozen=True)
class MetricChange:
    """One metric before and after; ``level`` is None for full-SID metrics and ``num_items``.

    ``before`` or ``after`` is None when that report has no such level; ``delta`` = after - before.
    """

    metric: str
    level: int | None
    before: Number | None
    after: Number | None
    delta: Number | None

    @property
    def name(self) -> str:
        if self.level is None:
            return self.metric if self.metric == "num_items" else f"sid {self.metric}"
        return f"level {self.level} {self.metric}"

    def to_dict(self) -> dict[str, Number | None]:
        return {"before": self.before, "after": self.after, "delta": self.delta}


@dataclass(frozen=True)
class UsageComparison:
    """Every usage metric of two reports side by side (for example two tokenizers)."""

    changes: tuple[MetricChange, ...]

    def get(self, metric: str, level: int | None = None) -> MetricChange:
        """The change of one metric: ``get("gini", level=0)``, ``get("collision_rate")``."""
        for change in self.changes:
            if change.metric == metric and change.level == level:
                return change
        raise ConfigError(f"no metric {metric!r} at level {level}", where="metric",
                          fix=f"use one of {LEVEL_METRICS} with a level, or {SID_METRICS} / 'num_items'")

    def rows(self) -> list[tuple[str, Number | None, Number | None, Number | None]]:
        """(name, before, after, delta) per metric, e.g. ("level 0 gini", 0.41, 0.12, -0.29)."""
        return [(change.name, change.before, change.after, change.delta) for change in self.changes]

    def to_dict(self) -> dict[str, object]:
        """JSON shape of UsageReport.to_dict, with {before, after, delta} in place of each value."""
        levels = sorted({c.level for c in self.changes if c.level is not None})
        return {
            "num_items": self.get("num_items").to_dict(),
            "usage": [{"level": level, **{m: self.get(m, level).to_dict() for m in LEVEL_METRICS}}
                      for level in levels],
            "sid": {metric: self.get(metric).to_dict() for metric in SID_METRICS},
        }


def compare(before: UsageReport, after: UsageReport) -> UsageComparison:
    """Line up two usage reports metric by metric; levels only one of them has get None on the other."""
    changes = [_change("num_items", None, before.num_items, after.num_items)]
    for level in range(max(len(before.levels), len(after.levels))):
        old = before.levels[level] if level < len(before.levels) else None
        new = after.levels[level] if level < len(after.levels) else None
        for metric in LEVEL_METRICS:
            changes.append(_change(metric, level, None if old is None else getattr(old, metric),
                                   None if new is None else getattr(new, metric)))
    for metric in SID_METRICS:
        changes.append(_change(metric, None, getattr(before.sid, metric), getattr(after.sid, metric)))
    return UsageComparison(tuple(changes))


def _change(metric: str, level: int | None, before: Number | None, after: Number | None) -> MetricChange:
    delta = None if before is None or after is None else after - before
    return MetricChange(metric, level, before, after, delta)


def _report(level_counts: Sequence[np.ndarray], buckets: np.ndarray, num_items: int) -> UsageReport:
    levels = tuple(level_usage(counts, level) for level, counts in enumerate(level_counts))
    return UsageReport(levels=levels, sid=sid_usage(buckets), num_items=num_items)


def _sid_keys(ids: SemanticIds) -> np.ndarray:
    """(n,) keys equal iff the full SIDs are equal: packed uint64 when the bits fit, else row bytes."""
    if sum(ids.bits_per_level) <= UINT64_BITS:
        return ids.pack()
    rows = np.ascontiguousarray(ids.codes)
    return rows.view(np.dtype((np.void, rows.itemsize * rows.shape[1]))).reshape(-1)
