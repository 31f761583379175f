"""Expected codeword overlap O_pi, effective codebook size K_eff, and its split into two penalties.

Definitions (docs/diagnostics.md; sidkit's own formalization of the DRQ paper's concepts, whose
exact equations are not public). A *symbol* is one level's code (``by="level"``) or a prefix
(``by="depth"``); pi_a is the share of items with symbol a; M_ab = P(symbol(x~) = b | symbol(x) = a)
under x~ = x + N(0, sigma^2 I), sigma = rho * (centred RMS per dimension of X).

- Two noisy copies *agree* when they get the same symbol. For two items drawn independently
  (uniformly, with replacement), each with its own noise: P(same) = sum_a pi_a^2 (clean symbols
  equal), P(agree) = sum_m (sum_a pi_a M_am)^2, P(agree | same) = sum_a pi_a^2 ||M_a||^2 / P(same).
- O_pi = P(same) P(agree) / P(agree and same) = P(same) / P(same | agree); K_eff = 1 / O_pi
  = P(same | agree) / P(same): how much more often agreeing noisy copies come from one clean symbol
  than two random items do. Equivalently O_pi = sum_ab pi_a pi_b Omega_ab with
  Omega_ab = <M_a, M_b> / P(agree | same).
- O_pi = 1/K_nom + DP + GP: DP = sum pi^2 - 1/K_nom (uneven usage), GP = O_pi - sum pi^2
  = sum pi^2 * P(other symbol | agree) / P(same | agree) (codewords that the noise confuses).
  Multiplicatively K_nom / K_eff = (K_nom sum pi^2) * (O_pi / sum pi^2), O_pi / sum pi^2 = 1 / P(same | agree).
- Analytic variant, per level in the tokenizer's quantization space: codewords mu_j with isotropic
  spread sigma_l = rho * (centred RMS per dimension of the level's input) are Gaussian rows whose
  agreement gives Omega_jk = exp(-||mu_j - mu_k||^2 / (4 sigma_l^2)).

As sigma -> 0, GP -> 0 and K_eff -> 1 / sum pi^2 (the inverse Simpson index of usage); as
sigma -> infinity every row of M is the same and K_eff -> 1.

The Monte Carlo estimate (:mod:`sidkit.diagnostics.overlap_counts`) needs no square root of sparse
empirical rows: both probabilities have unbiased estimators from S >= 3 draws per item, and a
delete-a-group jackknife over draw groups gives the standard error of every figure.

Array level: :func:`overlap_from_confusion`, :func:`agreement_matrix`, :func:`overlap_from_omega`,
:func:`analytic_overlap`. Tokenizer level: :func:`expected_overlap` (Monte Carlo),
:func:`overlap_sweep` (several rho with common random numbers), :func:`analytic_expected_overlap`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp
import torch

from sidkit.diagnostics.overlap_counts import OverlapCounts
from sidkit.errors import ConfigError, DataError
from sidkit.ids import SemanticIds
from sidkit.tokenizers.base import Tokenizer, check_embeddings

By = Literal["level", "depth"]
BY_CHOICES: tuple[str, ...] = ("level", "depth")
DEFAULT_RHOS: tuple[float, ...] = (0.02, 0.05, 0.1, 0.2, 0.5)
DEFAULT_SAMPLES = 8
# Perturbed rows handled at once: bounds the noise buffer to about 64 MiB of float32 for D = 64.
PERTURBED_ROWS = 1 << 18
_ROW_SUM_TOLERANCE = 1e-6


@dataclass(frozen=True)
class Overlap:
    """O_pi and what it splits into, for one set of symbols.

    Attributes:
        overlap: O_pi, in [1/K_nom, 1].
        effective_size: K_eff = 1 / O_pi, in [1, K_nom].
        nominal_size: K_nom.
        simpson: sum_a pi_a^2; 1 / simpson is the inverse Simpson index, K_eff's limit at zero noise.
        distribution_penalty: DP = simpson - 1/K_nom >= 0, zero iff usage is uniform over K_nom symbols.
        geometry_penalty: GP = O_pi - simpson >= 0, zero iff no two used symbols overlap.
        distribution_factor: K_nom * simpson >= 1 (multiplicative DP).
        geometry_factor: O_pi / simpson >= 1 (multiplicative GP); their product is K_nom / K_eff.
        overlap_se: Monte Carlo standard error of O_pi (0 for exact computations); GP has the same,
            DP none (usage is counted, not sampled).
        effective_size_se: Monte Carlo standard error of K_eff.
        effective_size_bias: the jackknife's estimate of the remaining bias of K_eff (not removed).
    """

    overlap: float
    effective_size: float
    nominal_size: int
    simpson: float
    distribution_penalty: float
    geometry_penalty: float
    distribution_factor: float
    geometry_factor: float
    overlap_se: float = 0.0
    effective_size_se: float = 0.0
    effective_size_bias: float = 0.0

    @property
    def geometry_penalty_se(self) -> float:
        return self.overlap_se

    @property
    def geometry_factor_se(self) -> float:
        return self.overlap_se / self.simpson

    def to_dict(self) -> dict[str, float]:
        return {"overlap": self.overlap, "overlap_se": self.overlap_se, "effective_size": self.effective_size,
                "effective_size_se": self.effective_size_se, "effective_size_bias": self.effective_size_bias,
                "nominal_size": self.nominal_size, "simpson": self.simpson,
                "distribution_penalty": self.distribution_penalty, "geometry_penalty": self.geometry_penalty,
                "geometry_penalty_se": self.geometry_penalty_se, "distribution_factor": self.distribution_factor,
                "geometry_factor": self.geometry_factor, "geometry_factor_se": self.geometry_factor_se}


@dataclass(frozen=True)
class SymbolOverlap:
    """Overlap of one level's codes (``by="level"``, index 0..L-1) or one prefix depth (index 1..L).

    ``flip_rate`` = P(symbol(x~) != symbol(x)) and ``flip_rate_se`` its Monte Carlo standard error,
    both None for the analytic variant; ``symbols`` counts the distinct symbols the items use.
    ``onset_rho`` (analytic only, see :func:`analytic_onset_rho`): far below it the analytic K_eff is
    the inverse Simpson index. ``flip_to_held`` (empirical): of the noisy copies that changed symbol,
    the share that landed on a symbol some item holds; only those can confuse two items, so a high
    flip rate with a low ``flip_to_held`` leaves K_eff high.
    """

    by: str
    index: int
    stats: Overlap
    flip_rate: float | None
    symbols: int
    flip_rate_se: float | None = None
    onset_rho: float | None = None
    flip_to_held: float | None = None

    def to_dict(self) -> dict[str, Any]:
        entry = {"by": self.by, "index": self.index, **self.stats.to_dict(), "flip_rate": self.flip_rate,
                 "flip_rate_se": self.flip_rate_se, "flip_to_held": self.flip_to_held, "symbols": self.symbols}
        if self.onset_rho is not None:
            entry["onset_rho"] = self.onset_rho if math.isfinite(self.onset_rho) else None
        return entry


@dataclass(frozen=True)
class OverlapReport:
    """Overlap at one noise level, per level and/or per depth.

    Attributes:
        method: ``"empirical"`` (Monte Carlo in the input space) or ``"analytic"`` (codebooks).
        rho: relative noise level.
        sigma: the input-space noise standard deviation (empirical); for the analytic variant
            sigma differs per level and is not summarized here (NaN).
        samples: noise draws per item (0 for analytic).
        num_items: N.
        groups: jackknife groups of draws behind the standard errors (0 for analytic).
        levels: one entry per level asked for, else empty.
        depths: one entry per depth asked for, else empty.
    """

    method: str
    rho: float
    sigma: float
    samples: int
    num_items: int
    levels: tuple[SymbolOverlap, ...]
    depths: tuple[SymbolOverlap, ...]
    groups: int = 0

    def get(self, by: By, index: int) -> SymbolOverlap:
        """The entry for level ``index`` (0-based) or depth ``index`` (1-based)."""
        for entry in self.levels if by == "level" else self.depths:
            if entry.index == index:
                return entry
        raise ConfigError(f"this report has no {by} {index}", where="index",
                          fix="levels count from 0, depths from 1; ask for by='depth' when computing it")

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "rho": self.rho, "sigma": self.sigma, "samples": self.samples,
                "groups": self.groups, "num_items": self.num_items, "levels": [e.to_dict() for e in self.levels],
                "depths": [e.to_dict() for e in self.depths]}


@dataclass(frozen=True)
class OverlapSweep:
    """Overlap reports over a sweep of noise levels, in the order of ``rhos``."""

    reports: tuple[OverlapReport, ...]

    @property
    def rhos(self) -> tuple[float, ...]:
        return tuple(report.rho for report in self.reports)

    def at(self, rho: float) -> OverlapReport:
        """The report whose rho is closest to ``rho``."""
        return min(self.reports, key=lambda report: abs(report.rho - rho))

    def series(self, by: By, index: int, field: str = "effective_size") -> list[float]:
        """One number per rho, e.g. ``series("level", 0)`` = K_eff of level 0 against rho, or
        ``series("level", 0, "effective_size_se")`` its standard errors."""
        values = []
        for report in self.reports:
            entry = report.get(by, index)
            value = getattr(entry, field) if field in ("flip_rate", "flip_rate_se") else getattr(entry.stats, field)
            values.append(math.nan if value is None else float(value))
        return values

    def to_dict(self) -> list[dict[str, Any]]:
        return [report.to_dict() for report in self.reports]


# ----- array level ---------------------------------------------------------------------------------


def overlap_from_confusion(confusion: np.ndarray | sp.spmatrix | sp.sparray, usage: np.ndarray, *,
                           nominal_size: int | None = None) -> Overlap:
    """O_pi from an exact confusion matrix: sum pi^2 * ||pi' M||^2 / sum_a pi_a^2 ||M_a||^2.

    Args:
        confusion: (A, B) dense or scipy sparse, row a = P(perturbed symbol | symbol a); rows of
            used symbols sum to 1. B >= A when perturbed inputs reach symbols no item has.
        usage: (A,) nonnegative usage pi (counts work: it is normalized to sum 1).
        nominal_size: K_nom; default A.
    """
    pi = _usage(usage)
    m = _confusion(confusion, len(pi), pi)
    marginal = np.asarray(m.T @ pi).reshape(-1)  # P(perturbed symbol) of a random item
    squares = np.asarray((m.multiply(m) if sp.issparse(m) else m * m).sum(axis=1)).reshape(-1)  # ||M_a||^2
    simpson = float(pi @ pi)
    return overlap_stats(simpson * float(marginal @ marginal) / float((pi * pi) @ squares), pi, nominal_size)


def agreement_matrix(confusion: np.ndarray | sp.spmatrix | sp.sparray) -> np.ndarray:
    """(A, A) dense G_ab = <M_a, M_b> = P(noisy copies of an item of a and one of b agree).

    O_pi = sum pi^2 * pi' G pi / sum_a pi_a^2 G_aa, i.e. Omega = G / P(agree | same).
    """
    m = _confusion(confusion, None, None)
    product = m @ m.T
    return np.asarray(product.todense() if sp.issparse(product) else product, dtype=np.float64)


def overlap_from_omega(omega: np.ndarray, usage: np.ndarray, *, nominal_size: int | None = None) -> Overlap:
    """O_pi = pi' Omega pi from an (A, A) symmetric overlap matrix with unit diagonal and (A,) usage."""
    pi = _usage(usage)
    matrix = np.asarray(omega, dtype=np.float64)
    if matrix.shape != (len(pi), len(pi)):
        raise DataError(f"Omega has shape {matrix.shape}, usage has {len(pi)} symbols", where="omega",
                        fix="pass one row and one column per symbol")
    return overlap_stats(float(pi @ matrix @ pi), pi, nominal_size)


def analytic_overlap(centroids: np.ndarray, usage: np.ndarray, sigma: float, *,
                     nominal_size: int | None = None) -> Overlap:
    """O_pi when the items of code j are N(mu_j, sigma^2 I): Omega_jk = exp(-||mu_j - mu_k||^2 / (4 sigma^2)).

    Omega_jk is the agreement of two Gaussian rows normalized by their self-agreement
    (<N_j, N_k> / ||N_j|| ||N_k||), the definition of O_pi applied to a continuum of symbols.

    Args:
        centroids: (K, Q) codewords mu_j; a common shift of all of them gives the same result.
        usage: (K,) usage pi (counts work).
        sigma: per-dimension spread, >= 0; 0 makes distinct codewords disjoint and coincident ones
            identical, ``inf`` makes every pair coincide.
        nominal_size: K_nom; default K.
    """
    mu = np.asarray(centroids, dtype=np.float64)
    pi = _usage(usage)
    if mu.ndim != 2 or mu.shape[0] != len(pi):
        raise DataError(f"centroids must be (K, Q) with K = {len(pi)} (one per usage entry), got "
                        f"shape {mu.shape}", where="centroids")
    sigma = _non_negative(sigma, "sigma")
    squared = pairwise_squared_distances(mu)
    if sigma == 0:
        omega = (squared == 0).astype(np.float64)
    elif math.isinf(sigma):
        omega = np.ones_like(squared)
    else:
        omega = np.exp(-squared / (4.0 * sigma * sigma))
    return overlap_from_omega(omega, pi, nominal_size=nominal_size)


def pairwise_squared_distances(points: np.ndarray) -> np.ndarray:
    """(K, K) float64 ||p_j - p_k||^2 of (K, Q) ``points``, invariant to a common shift.

    The points are centred first, so the expansion |a|^2 + |b|^2 - 2 a.b loses precision only
    relative to their spread, not their offset; distances below that rounding (about 1e-12 of the
    largest centred norm squared) are exact zeros: coincident codewords.
    """
    centred = points - points.mean(axis=0)
    norms = (centred * centred).sum(axis=1)
    squared = np.maximum(norms[:, None] + norms[None, :] - 2.0 * centred @ centred.T, 0.0)
    squared[squared <= 1e-12 * max(float(norms.max(initial=0.0)), np.finfo(float).tiny)] = 0.0
    np.fill_diagonal(squared, 0.0)
    return squared


def analytic_onset_rho(centroids: np.ndarray, usage: np.ndarray, spread: float) -> float:
    """The rho at which the closest pair of used codewords reaches Omega = 1/e: d_min / (2 * spread).

    Below it every used pair has Omega_jk < 1/e, below half of it Omega_jk < e^-4 (about 0.018): far
    below it the analytic K_eff is the inverse Simpson index. ``inf`` with fewer than two distinct
    used codewords.
    """
    pi = _usage(usage)
    used = np.flatnonzero(pi > 0)
    if len(used) < 2 or spread <= 0:
        return math.inf
    squared = pairwise_squared_distances(np.asarray(centroids, dtype=np.float64)[used])
    off = squared[~np.eye(len(used), dtype=bool)]
    positive = off[off > 0]
    return math.sqrt(float(positive.min())) / (2.0 * spread) if len(positive) else math.inf


def overlap_stats(overlap: float, usage: np.ndarray, nominal_size: int | None = None) -> Overlap:
    """Build :class:`Overlap` from O_pi and the usage pi (normalized) it was computed with."""
    pi = _usage(usage)
    k_nom = len(pi) if nominal_size is None else int(nominal_size)
    used = int(np.count_nonzero(pi))
    if k_nom < used:
        raise ConfigError(f"nominal size {k_nom} is below the {used} symbols in use", where="nominal_size",
                          fix="pass the number of symbols that exist (K, or min(N, K_1 ... K_l) for a depth)")
    simpson = float(pi @ pi)
    return Overlap(overlap=overlap, effective_size=1.0 / overlap, nominal_size=k_nom, simpson=simpson,
                   distribution_penalty=simpson - 1.0 / k_nom, geometry_penalty=overlap - simpson,
                   distribution_factor=k_nom * simpson, geometry_factor=overlap / simpson)


# ----- tokenizer level: Monte Carlo in the input space ---------------------------------------------


def noise_sigma(X: Any, rho: float, *, chunk_rows: int = 1 << 16) -> float:
    """sigma = rho * sqrt(sum_i ||x_i - mean(x)||^2 / (N D)) for (N, D) ``X``, in float64, in chunks."""
    x = check_embeddings(X, where="X")
    rho = _non_negative(rho, "rho")
    return rho * _centred_rms(x, chunk_rows)


def expected_overlap(tokenizer: Tokenizer, X: Any, rho: float = 0.1, samples: int = DEFAULT_SAMPLES, *,
                     by: By | Sequence[By] = "level", seed: int = 0,
                     codes: SemanticIds | None = None) -> OverlapReport:
    """Empirical O_pi of ``tokenizer`` on (N, D) ``X`` under input noise of relative level ``rho``.

    Each item is perturbed ``samples`` times (at least 3); the counts are kept sparse (only symbol
    changes are stored per pair), so depth symbols with up to N distinct prefixes work. Every
    figure comes with its jackknife standard error. ``by`` is "level", "depth" or both (a
    sequence). ``codes`` are the items' codes if already known.
    """
    return overlap_sweep(tokenizer, X, (rho,), samples, by=by, seed=seed, codes=codes).reports[0]


def overlap_sweep(tokenizer: Tokenizer, X: Any, rhos: Sequence[float] = DEFAULT_RHOS,
                  samples: int = DEFAULT_SAMPLES, *, by: By | Sequence[By] = ("level", "depth"), seed: int = 0,
                  codes: SemanticIds | None = None) -> OverlapSweep:
    """:func:`expected_overlap` at each rho; every rho scales the same noise draws (common random
    numbers), so differences between noise levels are not drowned by Monte Carlo error."""
    x = check_embeddings(X, where="X", expected_dim=tokenizer.dim)
    rho_values = [_non_negative(rho, "rho") for rho in rhos]
    if not rho_values:
        raise ConfigError("no noise levels given", where="rhos", fix="pass e.g. (0.02, 0.05, 0.1, 0.2, 0.5)")
    samples = _samples(samples)
    kinds = _by(by)
    n, levels = x.shape[0], tokenizer.levels
    original = tokenizer.encode(x) if codes is None else codes
    if len(original) != n or original.sizes != tokenizer.codebook_sizes:
        raise DataError(f"codes cover {len(original)} items with sizes {original.sizes}, expected {n} "
                        f"items with sizes {tokenizer.codebook_sizes}", where="codes",
                        fix="pass tokenizer.encode(X), or leave codes unset")
    symbol_sets = _symbol_sets(kinds, levels)
    item_keys = [symbol_keys(original, kind, index) for kind, index in symbol_sets]
    scale = _centred_rms(x, 1 << 16)
    counts = [[OverlapCounts(samples) for _ in symbol_sets] for _ in rho_values]

    generator = torch.Generator(device=tokenizer.device).manual_seed(int(seed))
    rows = max(1, PERTURBED_ROWS // samples)
    for start in range(0, n, rows):
        stop = min(n, start + rows)
        block = torch.from_numpy(np.ascontiguousarray(x[start:stop], dtype=np.float32)).to(tokenizer.device)
        noise = torch.randn((samples, *block.shape), generator=generator, device=tokenizer.device)
        for rho_index, rho in enumerate(rho_values):
            # Row s * B + i is draw s of item start + i; one broadcast pass, no repeated copy of the block.
            perturbed = torch.add(block, noise, alpha=rho * scale).reshape(-1, block.shape[1])
            moved = SemanticIds(tokenizer.encode(perturbed).codes, original.sizes)
            for set_index, (kind, index) in enumerate(symbol_sets):
                target = symbol_keys(moved, kind, index).reshape(samples, stop - start)
                counts[rho_index][set_index].add(item_keys[set_index][start:stop], target)

    return OverlapSweep(tuple(
        report_from_counts(rho, rho * scale, n, original.sizes, symbol_sets, rho_counts)
        for rho, rho_counts in zip(rho_values, counts, strict=True)))


def report_from_counts(rho: float, sigma: float, num_items: int, sizes: Sequence[int],
                       symbol_sets: Sequence[tuple[str, int]], counts: Sequence[OverlapCounts]) -> OverlapReport:
    """The empirical :class:`OverlapReport` of one noise level from its counts, one per symbol set."""
    entries: dict[str, list[SymbolOverlap]] = {"level": [], "depth": []}
    samples = groups = 0
    for (kind, index), symbol_counts in zip(symbol_sets, counts, strict=True):
        estimate = symbol_counts.estimate()
        samples, groups = estimate.samples, estimate.groups
        stats = replace(overlap_stats(estimate.overlap, estimate.usage, nominal_size(sizes, kind, index, num_items)),
                        overlap_se=estimate.overlap_se, effective_size_se=estimate.effective_size_se,
                        effective_size_bias=estimate.effective_size_bias)
        entries[kind].append(SymbolOverlap(kind, index, stats, estimate.flip_rate, len(estimate.usage),
                                           estimate.flip_rate_se, flip_to_held=estimate.flip_to_held))
    return OverlapReport("empirical", float(rho), float(sigma), samples, num_items, tuple(entries["level"]),
                         tuple(entries["depth"]), groups)


# ----- tokenizer level: analytic, from the codebooks -----------------------------------------------


def analytic_expected_overlap(tokenizer: Tokenizer, X: Any, rho: float = 0.1, *,
                              codes: SemanticIds | None = None) -> OverlapReport:
    """Analytic O_pi per level of ``tokenizer`` on (N, D) ``X`` (see the module docstring)."""
    return analytic_sweep(tokenizer, X, (rho,), codes=codes).reports[0]


def analytic_sweep(tokenizer: Tokenizer, X: Any, rhos: Sequence[float] = DEFAULT_RHOS, *,
                   codes: SemanticIds | None = None) -> OverlapSweep:
    """:func:`analytic_expected_overlap` at each rho; codebooks and level spreads are computed once.

    Needs a residual quantizer whose quantized vector is the sum of one codeword per level (every
    sidkit tokenizer is) and, unless its quantization space is the input space, a ``latent(X)``
    method giving the (N, Q) vectors it quantizes.
    """
    x = check_embeddings(X, where="X", expected_dim=tokenizer.dim)
    rho_values = [_non_negative(rho, "rho") for rho in rhos]
    ids = tokenizer.encode(x) if codes is None else codes
    codebooks = level_codebooks(tokenizer)
    _check_additive(tokenizer, ids, codebooks)
    spreads = level_input_rms(tokenizer, x, ids)
    n = len(ids)
    usage = [np.bincount(ids.codes[:, level], minlength=size) / n for level, size in enumerate(ids.sizes)]
    onsets = [analytic_onset_rho(codebooks[level], usage[level], spreads[level]) for level in range(tokenizer.levels)]
    reports = []
    for rho in rho_values:
        entries = tuple(
            SymbolOverlap("level", level, analytic_overlap(codebooks[level], usage[level], rho * spreads[level]),
                          None, int(np.count_nonzero(usage[level])), onset_rho=onsets[level])
            for level in range(tokenizer.levels))
        reports.append(OverlapReport("analytic", rho, math.nan, 0, n, entries, ()))
    return OverlapSweep(tuple(reports))


def level_codebooks(tokenizer: Tokenizer) -> list[np.ndarray]:
    """Per level, the (K_l, Q) codewords in the quantization space, each shifted by a constant.

    Read through the public ``quantized`` API: codeword j of level l is quantized(code with j at
    level l, 0 elsewhere) - quantized(all 0). The shift (codeword 0 of the level) cancels in
    every distance, which is all the analytic overlap uses.
    """
    zero = np.zeros((1, tokenizer.levels), dtype=np.int64)
    base = tokenizer.quantized(zero)
    books = []
    for level, size in enumerate(tokenizer.codebook_sizes):
        codes = np.zeros((size, tokenizer.levels), dtype=np.int64)
        codes[:, level] = np.arange(size)
        books.append((tokenizer.quantized(codes) - base).astype(np.float64))
    return books


def level_input_rms(tokenizer: Tokenizer, X: Any, codes: SemanticIds) -> list[float]:
    """Per level l, the centred RMS per dimension of that level's input z - sum_{l' < l} mu_{l'}[c_l'].

    z is ``tokenizer.latent(X)`` when the tokenizer has one, else X (a quantizer of the input space).
    """
    z = quantizer_input(tokenizer, X)
    levels = tokenizer.levels
    zero = np.zeros((1, levels), dtype=np.int64)
    base = tokenizer.quantized(zero)
    spreads = []
    for level in range(levels):
        partial = codes.codes.copy()
        partial[:, level:] = 0
        # The constant base (codeword 0 of levels >= l) shifts every row alike: the centred RMS ignores it.
        residual = z - (tokenizer.quantized(partial) - base)
        spreads.append(_centred_rms(residual, 1 << 16))
    return spreads


def quantizer_input(tokenizer: Tokenizer, X: Any) -> np.ndarray:
    """The (N, Q) vectors that the tokenizer's first level quantizes: ``latent(X)`` or X itself."""
    x = check_embeddings(X, where="X", expected_dim=tokenizer.dim)
    latent = getattr(tokenizer, "latent", None)
    if callable(latent):
        return np.asarray(latent(x), dtype=np.float64)
    width = tokenizer.quantized(np.zeros((1, tokenizer.levels), dtype=np.int64)).shape[1]
    if width != x.shape[1]:
        raise ConfigError(f"{type(tokenizer).__name__} quantizes a {width}-d space but exposes no latent(X) "
                          f"for the {x.shape[1]}-d input", where="analytic overlap",
                          fix="give the tokenizer a latent(X) -> (N, Q) method, or use expected_overlap")
    return np.asarray(x, dtype=np.float64)


# ----- helpers -------------------------------------------------------------------------------------


def _symbol_sets(kinds: tuple[str, ...], levels: int) -> list[tuple[str, int]]:
    sets: list[tuple[str, int]] = []
    if "level" in kinds:
        sets += [("level", level) for level in range(levels)]
    if "depth" in kinds:
        sets += [("depth", depth) for depth in range(1, levels + 1)]
    return sets


def symbol_keys(ids: SemanticIds, kind: str, index: int) -> np.ndarray:
    """(N,) int64 keys of the items' symbols: level ``index``'s codes, or their depth-``index`` prefixes."""
    return ids.codes[:, index] if kind == "level" else ids.prefix_keys(index)


def nominal_size(sizes: Sequence[int], kind: str, index: int, n: int) -> int:
    """K_nom: K_l for level ``index``; min(N, K_1 ... K_l) for depth ``index``."""
    if kind == "level":
        return sizes[index]
    return min(n, math.prod(sizes[:index]))


def _centred_rms(x: np.ndarray, chunk_rows: int) -> float:
    """sqrt(sum_i ||x_i - mean||^2 / (N D)), two passes in float64 (no cancellation)."""
    n, d = x.shape
    total = np.zeros(d)
    for start in range(0, n, chunk_rows):
        total += np.asarray(x[start:start + chunk_rows], dtype=np.float64).sum(axis=0)
    mean = total / n
    squares = 0.0
    for start in range(0, n, chunk_rows):
        block = np.asarray(x[start:start + chunk_rows], dtype=np.float64) - mean
        squares += float(np.einsum("ij,ij->", block, block))
    return math.sqrt(squares / (n * d))


def _usage(usage: Any) -> np.ndarray:
    pi = np.asarray(usage, dtype=np.float64)
    if pi.ndim != 1 or pi.size == 0:
        raise DataError(f"usage must be a non-empty 1-d array, got shape {pi.shape}", where="usage")
    if not np.all(np.isfinite(pi)) or np.any(pi < 0) or pi.sum() <= 0:
        raise DataError("usage must be finite, nonnegative and not all zero", where="usage",
                        fix="pass the share (or count) of items per symbol")
    return pi / pi.sum()


def _confusion(confusion: Any, rows: int | None, pi: np.ndarray | None) -> Any:
    """Check an (A, B) row-stochastic confusion matrix; return float64 CSR or ndarray."""
    if sp.issparse(confusion):
        matrix: Any = sp.csr_array(confusion, dtype=np.float64)
        values = matrix.data
        row_sums = np.asarray(matrix.sum(axis=1)).reshape(-1)
    else:
        matrix = np.asarray(confusion, dtype=np.float64)
        if matrix.ndim != 2:
            raise DataError(f"confusion must be 2-d, got shape {matrix.shape}", where="confusion")
        values = matrix
        row_sums = matrix.sum(axis=1)
    if rows is not None and (matrix.shape[0] != rows or matrix.shape[1] < rows):
        raise DataError(f"confusion has shape {matrix.shape} for {rows} symbols", where="confusion",
                        fix="pass an (A, B) matrix with one row per usage entry and B >= A")
    if not np.all(np.isfinite(values)) or np.any(values < 0):
        raise DataError("confusion holds negative or non-finite values", where="confusion")
    used = row_sums > 0 if pi is None else pi > 0
    off = np.abs(row_sums[used] - 1.0) > _ROW_SUM_TOLERANCE
    if off.any():
        raise DataError(f"{int(off.sum())} rows of the confusion matrix do not sum to 1", where="confusion",
                        fix="divide each row of counts by its sum (M_ab = P(b | a))")
    return matrix


def _by(by: Any) -> tuple[str, ...]:
    kinds = (by,) if isinstance(by, str) else tuple(by)
    if not kinds or any(kind not in BY_CHOICES for kind in kinds):
        raise ConfigError(f"by must be 'level', 'depth' or both, got {by!r}", where="by")
    return kinds


def _non_negative(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ConfigError(f"{name} must be a number, got {value!r}", where=name)
    number = float(value)
    if math.isnan(number) or number < 0:
        raise ConfigError(f"{name} must be >= 0, got {value!r}", where=name)
    return number


def _samples(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 3:
        raise ConfigError(f"samples must be an integer >= 3, got {value!r}", where="samples",
                          fix="use at least 3 noise draws per item (the estimator needs pairs of draws; "
                              f"default {DEFAULT_SAMPLES})")
    return int(value)


def _check_additive(tokenizer: Tokenizer, ids: SemanticIds, codebooks: list[np.ndarray]) -> None:
    """Refuse tokenizers whose quantized vector is not base + one codeword per level."""
    rows = ids.codes[: min(len(ids), 256)]
    expected = tokenizer.quantized(np.zeros((1, tokenizer.levels), dtype=np.int64)).astype(np.float64)
    expected = expected + sum(codebooks[level][rows[:, level]] for level in range(tokenizer.levels))
    got = tokenizer.quantized(rows).astype(np.float64)
    scale = max(1.0, float(np.abs(got).max()))
    if not np.allclose(got, expected, rtol=1e-4, atol=1e-4 * scale):
        raise ConfigError(f"{type(tokenizer).__name__}'s quantized vector is not a sum of one codeword per "
                          "level, so the analytic overlap does not apply", where="analytic overlap",
                          fix="use expected_overlap (Monte Carlo) for this tokenizer")
