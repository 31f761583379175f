"""Noise models with exact answers: the ground truth that the O_pi estimator is checked against.

A :class:`NoiseModel` gives every item a clean symbol and an exact distribution P_i over the symbols
its noisy copies get, so M, O_pi, K_eff and the flip rate are known without sampling
(:meth:`NoiseModel.exact`, through :func:`sidkit.diagnostics.overlap.overlap_from_confusion`), and
:meth:`NoiseModel.draw` samples draws from it for the Monte Carlo estimator
(:class:`sidkit.diagnostics.overlap_counts.OverlapCounts`). The constructors build the cases where
plug-in estimates fail: symbols held by one item each, rows that scatter, infinite noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from sidkit.diagnostics.overlap import overlap_from_confusion
from sidkit.errors import DataError


@dataclass(frozen=True)
class ExactOverlap:
    """O_pi, K_eff and the flip rate of a noise model, computed from its exact distributions."""

    overlap: float
    effective_size: float
    flip_rate: float
    inverse_simpson: float


@dataclass(frozen=True, eq=False)
class NoiseModel:
    """Items with clean symbols and exact perturbed-symbol distributions.

    Attributes:
        symbols: (N,) int64 clean symbol of each item.
        cells: (N, W) int64 symbols a noisy copy of item i can get.
        probs: (N, W) their probabilities (rows sum to 1; zeros pad).
    """

    symbols: np.ndarray
    cells: np.ndarray
    probs: np.ndarray

    def __post_init__(self) -> None:
        if self.cells.shape != self.probs.shape or self.cells.shape[0] != len(self.symbols):
            raise DataError(f"cells {self.cells.shape} and probs {self.probs.shape} must be (N, W) for "
                            f"{len(self.symbols)} symbols", where="NoiseModel")
        if np.any(self.probs < 0) or not np.allclose(self.probs.sum(axis=1), 1.0):
            raise DataError("every row of probs must be a distribution", where="NoiseModel.probs")

    def confusion(self) -> tuple[sp.csr_array, np.ndarray, np.ndarray]:
        """(A, C) exact M over the distinct clean symbols and every reachable cell, (A,) item counts,
        and the (C,) cell keys."""
        symbols, row, items = np.unique(self.symbols, return_inverse=True, return_counts=True)
        keys, column = np.unique(np.concatenate([symbols, self.cells.reshape(-1)]), return_inverse=True)
        column = column.reshape(-1)[len(symbols):]
        rows = np.repeat(row.reshape(-1), self.cells.shape[1])
        weights = self.probs.reshape(-1) / items[rows]
        m = sp.csr_array((weights, (rows, column)), shape=(len(symbols), len(keys)))
        return m, items, keys

    def exact(self) -> ExactOverlap:
        """The S -> infinity values."""
        m, items, _ = self.confusion()
        result = overlap_from_confusion(m, items)
        stays = float((self.probs * (self.cells == self.symbols[:, None])).sum())
        return ExactOverlap(result.overlap, result.effective_size, 1.0 - stays / len(self.symbols),
                            1.0 / result.simpson)

    def exact_bhattacharyya_size(self) -> float:
        """K_eff under the Bhattacharyya form Omega_ab = sum_m sqrt(M_am M_bm), for comparison."""
        m, items, _ = self.confusion()
        pi = items / items.sum()
        columns = np.asarray((sp.diags_array(pi) @ m.sqrt()).sum(axis=0)).reshape(-1)
        return 1.0 / float(columns @ columns)

    def draw(self, samples: int, seed: int = 0) -> np.ndarray:
        """(S, N) int64: draw s of every item, sampled from its distribution."""
        rng = np.random.default_rng(seed)
        n, width = self.probs.shape
        # Row i's cumulative probabilities shifted by i: one sorted array for all rows, searched at once.
        cumulative = np.cumsum(self.probs, axis=1)
        cumulative[:, -1] = 1.0
        flat = (cumulative + np.arange(n)[:, None]).reshape(-1)
        u = rng.random((samples, n)) * (1 - 1e-12) + np.arange(n)
        pick = np.searchsorted(flat, u, side="right")
        return self.cells.reshape(-1)[np.minimum(pick, (np.arange(n) + 1) * width - 1)]


def disjoint_model(codes: int = 64, items_per_code: int = 26, stay: float = 0.7) -> NoiseModel:
    """Each code's items move only to cells no other code reaches: O_pi = sum pi^2 exactly (GP = 0)."""
    symbols = np.repeat(np.arange(codes, dtype=np.int64), items_per_code)
    private = codes + 4 * symbols[:, None] + np.arange(4)
    cells = np.concatenate([symbols[:, None], private], axis=1)
    rest = (1 - stay) * np.array([0.4, 0.3, 0.2, 0.1])
    return NoiseModel(symbols, cells, np.tile(np.r_[stay, rest], (len(symbols), 1)))


def coincident_model(codes: int = 64, items_per_code: int = 26) -> NoiseModel:
    """Codes come in pairs whose items land on either code of the pair with equal chance: every pair
    is one symbol to the noise, so K_eff = codes / 2 exactly."""
    symbols = np.repeat(np.arange(codes, dtype=np.int64), items_per_code)
    first = symbols - symbols % 2
    return NoiseModel(symbols, np.stack([first, first + 1], axis=1), np.full((len(symbols), 2), 0.5))


def infinite_noise_model(items: int = 1682, codes: int | None = None, cells: int = 1000,
                         seed: int = 0) -> NoiseModel:
    """Where a noisy copy lands does not depend on the item: every P_i is one Zipf-like distribution
    over ``cells`` cells; K_eff = 1 exactly. ``codes=None`` gives every item its own symbol (a
    singleton prefix per item), else the items share ``codes`` symbols evenly."""
    rng = np.random.default_rng(seed)
    symbols = (np.arange(items, dtype=np.int64) if codes is None
               else np.arange(items, dtype=np.int64) % codes)
    weights = rng.permutation(1.0 / np.arange(1, cells + 1) ** 0.7)
    weights /= weights.sum()
    return NoiseModel(symbols, np.tile(np.arange(cells, dtype=np.int64), (items, 1)), np.tile(weights, (items, 1)))


def singleton_model(items: int = 1682, stay: float = 0.7, seed: int = 0) -> NoiseModel:
    """A prefix per item (deep SIDs): item i keeps its symbol with probability ``stay``, else moves to
    one of three symbols other items hold or one of three that no item holds."""
    rng = np.random.default_rng(seed)
    symbols = np.arange(items, dtype=np.int64)
    held = rng.integers(0, items, (items, 3))
    empty = items + rng.integers(0, 3 * items, (items, 3))
    moves = rng.dirichlet(np.ones(6), items) * (1 - stay)
    return NoiseModel(symbols, np.concatenate([symbols[:, None], held, empty], axis=1),
                      np.concatenate([np.full((items, 1), stay), moves], axis=1))


def scatter_model(codes: int = 64, items_per_code: int = 26, seed: int = 0) -> NoiseModel:
    """A deep level whose codes scatter: item i stays with its own probability in [0.2, 0.9], else
    lands uniformly on any of the codes."""
    rng = np.random.default_rng(seed)
    symbols = np.repeat(np.arange(codes, dtype=np.int64), items_per_code)
    stay = rng.uniform(0.2, 0.9, len(symbols))
    cells = np.concatenate([symbols[:, None], np.tile(np.arange(codes, dtype=np.int64), (len(symbols), 1))], axis=1)
    probs = np.concatenate([stay[:, None], np.repeat(((1 - stay) / codes)[:, None], codes, axis=1)], axis=1)
    return NoiseModel(symbols, cells, probs)


#: The constructed cases, by name.
CASES = {
    "disjoint codes": disjoint_model,
    "coincident codes": coincident_model,
    "infinite noise, shared codes": lambda: infinite_noise_model(codes=64),
    "infinite noise, a prefix per item": infinite_noise_model,
    "a prefix per item, stay 0.7": singleton_model,
    "a prefix per item, stay 0.3": lambda: singleton_model(stay=0.3),
    "scattering level": scatter_model,
}

