"""k-means in torch: greedy k-means++ seeding, chunked-GEMM Lloyd iterations, optional balanced loads.

Distances use ||x||^2 - 2 x.c + ||c||^2 with one GEMM per chunk of points, so nothing larger than a
(chunk, K) float32 block is ever materialized. Works on any torch device; float32 throughout.
"""

from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from sidkit.errors import ConfigError
from sidkit.threads import single_thread
from sidkit.workers import block_rows, blocks, map_blocks

# Rows per GEMM block when not given: a (rows, K) float32 score block of 16 MiB (16384 rows at
# K = 256). Block size barely changes idle speed, but fewer, larger ops suffer less from thread
# barriers when the machine is busy.
SCORE_BLOCK_ELEMENTS = 1 << 22
# k-means++ runs on at most this many points per cluster (k sequential passes over them).
SEED_SAMPLE_PER_CLUSTER = 32
# Largest seeding sample that gets a Gram matrix (8192^2 bfloat16 = 128 MiB; float32 twice that).
GRAM_MAX_POINTS = 8192


@dataclass(frozen=True, eq=False)
class KMeansResult:
    """A fitted k-means.

    Attributes:
        centers: (K, D) float32, on the device the clustering ran on.
        assignment: (N,) int64, each point's cluster under ``centers`` (capacity-limited if balanced).
        objective: mean squared distance of points to their assigned centre, after each assignment
            step: ``objective[0]`` is for the initial centres, ``objective[-1]`` for ``centers``.
        iterations: number of centre updates (Lloyd iterations) made.
        converged: True if the relative objective change fell below ``tol`` before ``max_iter``.
        reseeded: number of empty clusters that were re-seeded on a far point.
        bfloat16: True if the Lloyd assignments were scored in bfloat16 (then ``assignment`` and
            ``objective[-1]`` come from one more, exact, float32 pass).
    """

    centers: torch.Tensor
    assignment: torch.Tensor
    objective: tuple[float, ...]
    iterations: int
    converged: bool
    reseeded: int
    bfloat16: bool = False

    @property
    def sizes(self) -> torch.Tensor:
        """(K,) int64, the number of points in each cluster."""
        return torch.bincount(self.assignment, minlength=self.centers.shape[0])


def kmeans(x: torch.Tensor | np.ndarray, k: int, *, device: str | torch.device | None = None,
           seed: int = 0, max_iter: int = 25, tol: float = 1e-4, init_sample: int | None = None,
           balanced: bool = False, balance_factor: float = 1.25,
           chunk_size: int | None = None, bfloat16: bool | None = None) -> KMeansResult:
    """Cluster (N, D) points ``x`` into ``k`` clusters.

    Args:
        x: (N, D) points; converted to float32 on ``device`` (default: where ``x`` already is).
        k: number of clusters, 1 <= k <= N.
        seed: seeds the k-means++ sampling; the same seed gives the same result on the same device.
        max_iter: most Lloyd iterations.
        tol: stop when the objective drops by less than ``tol`` times its value in one iteration.
        init_sample: run k-means++ on a random subset of this many points (default 32 * k):
            seeding reads all its points once per seed, and a subset is enough because Lloyd
            iterations refine it.
        balanced: cap every cluster at ``ceil(balance_factor * N / k)`` points (see
            :func:`balanced_assign`).
        chunk_size: rows per GEMM block (default: a 16 MiB score block).
        bfloat16: score the Lloyd assignments by bfloat16 GEMMs (float32 accumulation) instead of
            float32. None (default): where the hardware multiplies bfloat16 natively
            (:func:`lloyd_bfloat16`). The centre updates, the objective and the final assignment stay
            float32 and exact; only points within about 0.4% of a tie between two centres may take
            the other one during the iterations. Not used with ``balanced``.
    """
    check_kmeans_args(k, max_iter, tol, balance_factor, chunk_size)
    if bfloat16 is not None and not isinstance(bfloat16, bool):
        raise ConfigError(f"bfloat16 must be True, False or None (automatic), got {bfloat16!r}", where="bfloat16")
    points = torch.as_tensor(x, device=device).float()
    if points.ndim != 2 or points.shape[0] == 0:
        raise ConfigError(f"k-means needs a non-empty (N, D) array, got shape {tuple(points.shape)}",
                          where="x")
    n = points.shape[0]
    if k > n:
        raise ConfigError(f"cannot make {k} clusters from {n} points", where="k",
                          fix="use fewer clusters or more points")
    generator = torch.Generator(device=points.device).manual_seed(int(seed))
    sample_size = min(n, init_sample if init_sample is not None else SEED_SAMPLE_PER_CLUSTER * k)
    seed_points = points if sample_size >= n else points[_sample_rows(n, sample_size, generator)]
    centers = kmeans_plus_plus(seed_points, k, generator=generator)
    capacity = math.ceil(balance_factor * n / k) if balanced else None
    point_sq = points.square().sum(1)
    spans = blocks(n, block_rows(n, rows_per_block(chunk_size, k)))
    low = capacity is None and (lloyd_bfloat16(points.device) if bfloat16 is None else bfloat16)
    points_low = points.bfloat16() if low else None

    history: list[float] = []
    iterations = reseeded = 0
    converged = False
    while True:
        if capacity is None:
            assignment, dist, sums, counts, objective = _assign_and_sum(points, centers, point_sq, spans,
                                                                       points_low)
        else:
            assignment, dist = balanced_assign(points, centers, capacity, point_sq=point_sq,
                                               chunk_size=chunk_size)
            objective = float(dist.double().mean())
        history.append(objective)
        if len(history) >= 2 and abs(history[-2] - history[-1]) <= tol * history[-2]:
            converged = True
            break
        if iterations == max_iter:
            break
        if capacity is None:
            if dist is None and bool((counts == 0).any()):  # reseeding needs every point's exact distance
                dist = nearest_centers(points, centers, point_sq=point_sq, chunk_size=chunk_size)[1]
            centers, empty = _centers_from_sums(sums, counts, points, dist)
        else:
            assert dist is not None
            centers, empty = update_centers(points, assignment, dist, centers)
        reseeded += empty
        iterations += 1
    if low:  # the assignment returned is the exact (float32) nearest centre
        assignment, dist = nearest_centers(points, centers, point_sq=point_sq, chunk_size=chunk_size)
        history[-1] = float(dist.double().mean())
    return KMeansResult(centers, assignment, tuple(history), iterations, converged, reseeded, bool(low))


@functools.cache
def lloyd_bfloat16(device: torch.device) -> bool:
    """Whether Lloyd iterations score in bfloat16 by default: CPUs with AMX tiles, where oneDNN's
    bfloat16 GEMM runs about 5x its float32 rate (2 ms against 10 ms for 4096 x 384 x 256 on one
    core). AVX-512 BF16 alone gives about 2x, which the conversions eat. ``SIDKIT_LLOYD_BF16=0``
    or ``1`` overrides."""
    forced = os.environ.get("SIDKIT_LLOYD_BF16")
    if forced in ("0", "1"):
        return forced == "1" and _fast_bfloat16(device)
    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)
    return (device.type == "cpu" and probe is not None and bool(probe()) and _fast_bfloat16(device))


def kmeans_plus_plus(x: torch.Tensor, k: int, *, generator: torch.Generator,
                     n_candidates: int | None = None) -> torch.Tensor:
    """Greedy k-means++ seeds: (K, D) rows of (N, D) ``x``.

    Each step samples ``n_candidates`` points (default 2 + ln k) with probability proportional to
    their squared distance to the nearest seed so far, and keeps the one that lowers the total
    (the potential) most, as in scikit-learn.

    Every step needs the candidates' dot products with all N points. Up to GRAM_MAX_POINTS points
    they come from the (N, N) Gram matrix, computed once by one large GEMM: a step
    then reads 2 + ln k rows of it instead of all of ``x`` (6 MB at 8192 x 384, streamed from the
    L3 cache at every one of the k steps: most of seeding's time). Where bfloat16 is native, the dot
    products are bfloat16 (float32 accumulation); their ~0.4% error only perturbs sampling
    weights, never the final centres.
    """
    n = x.shape[0]
    trials = n_candidates if n_candidates is not None else 2 + int(math.log(k))
    x_sq = x.square().sum(1)
    x_low = x.bfloat16() if _fast_bfloat16(x.device) else x
    # One GEMM call (oneDNN threads it): copying row blocks into place or mirroring a triangle cost more.
    gram = affine_scores(x_low, x_low, None) if n <= GRAM_MAX_POINTS and k > 1 else None

    def distances(rows: torch.Tensor) -> torch.Tensor:
        """(len(rows), N) float32 squared distances from points ``rows`` to every point."""
        dot = gram[rows].float() if gram is not None else affine_scores(x_low[rows], x_low, None).float()
        return dot.mul_(-2).add_(x_sq).add_(x_sq[rows, None]).clamp_min_(0)

    centers = x.new_empty((k, x.shape[1]))
    # k small sequential steps: thread barriers would cost more than a second thread saves.
    with single_thread():
        first = torch.randint(n, (1,), generator=generator, device=x.device)
        centers[0] = x[first[0]]
        closest = distances(first)[0]
        for i in range(1, k):
            if bool(closest.sum() > 0):
                candidates = torch.multinomial(closest, trials, replacement=True, generator=generator)
            else:  # every point already coincides with a seed: any choice is as good
                candidates = torch.randint(n, (trials,), generator=generator, device=x.device)
            merged = torch.minimum(distances(candidates), closest)  # (trials, N)
            best = torch.argmin(merged.sum(1))
            closest = merged[best]
            centers[i] = x[candidates[best]]
    return centers


def nearest_centers(x: torch.Tensor, centers: torch.Tensor, *, point_sq: torch.Tensor | None = None,
                    chunk_size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest centre of each point: (N,) int64 index and (N,) float32 squared distance.

    Compares ``x.c - ||c||^2 / 2`` only (one GEMM with a bias per chunk); ``||x||^2`` is added to
    the winner alone. Ties go to the lowest index.
    """
    n = x.shape[0]
    half_sq = centers.square().sum(1).mul_(-0.5)
    if point_sq is None:
        point_sq = x.square().sum(1)
    index = torch.empty(n, dtype=torch.int64, device=x.device)
    best = torch.empty(n, dtype=torch.float32, device=x.device)

    def block(start: int, stop: int) -> None:
        row_max(affine_scores(x[start:stop], centers, half_sq), best[start:stop], index[start:stop])

    map_blocks(block, blocks(n, block_rows(n, rows_per_block(chunk_size, centers.shape[0]))), device=x.device)
    dist = best.mul_(-2).add_(point_sq).clamp_min_(0)
    return index, dist


class LowPrecisionCodebook:
    """A (K, D) codebook in bfloat16 for approximate nearest-codeword search (bfloat16 GEMM with
    float32 accumulation, then the row argmax): scores are off by about 0.4% of ||x|| ||c||, so a
    point that nearly ties two codewords may take the other one."""

    def __init__(self, centers: torch.Tensor) -> None:
        self.centers = centers.bfloat16()
        self.bias = centers.square().sum(1).mul_(-0.5).bfloat16()

    def nearest(self, x: torch.Tensor) -> torch.Tensor:
        """(B,) int64 approximate nearest codeword of (B, D) float32 rows ``x``."""
        scores = affine_scores(x.bfloat16(), self.centers, self.bias).float()
        values = torch.empty(x.shape[0], dtype=torch.float32, device=x.device)
        index = torch.empty(x.shape[0], dtype=torch.int64, device=x.device)
        row_max(scores, values, index)
        return index


def _assign_and_sum(x: torch.Tensor, centers: torch.Tensor, point_sq: torch.Tensor, spans: list[tuple[int, int]],
                    x_low: torch.Tensor | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor, float]:
    """One Lloyd assignment pass: (N,) nearest index, (N,) squared distance (None when scored in
    bfloat16), the (K, D) sums and (K,) counts of the points per centre, and the mean squared
    distance. Per-block partial sums are added in block order, so nothing depends on the thread count.

    With ``x_low`` (the points in bfloat16) the scores are bfloat16 GEMMs; the objective is then
    computed exactly from the per-centre sums: sum_i ||x_i - c_a(i)||^2 =
    sum_a (Q_a - 2 S_a . c_a + n_a ||c_a||^2), with Q_a the sum of ||x_i||^2 over centre a.
    """
    k = centers.shape[0]
    half_sq = centers.square().sum(1).mul_(-0.5)
    low = None if x_low is None else LowPrecisionCodebook(centers)
    index = torch.empty(x.shape[0], dtype=torch.int64, device=x.device)
    best = torch.empty(x.shape[0], dtype=torch.float32, device=x.device)

    def block(start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        rows = x[start:stop]
        if low is None:
            scores = affine_scores(rows, centers, half_sq)
        else:
            assert x_low is not None
            scores = affine_scores(x_low[start:stop], low.centers, low.bias).float()
        row_max(scores, best[start:stop], index[start:stop])
        chosen = index[start:stop]
        squares = torch.zeros(k, dtype=torch.float64, device=x.device).index_add_(
            0, chosen, point_sq[start:stop].double())
        return (torch.zeros_like(centers).index_add_(0, chosen, rows), torch.bincount(chosen, minlength=k),
                squares)

    parts = map_blocks(block, spans, device=x.device)
    sums, counts, squares = parts[0]
    for part_sums, part_counts, part_squares in parts[1:]:
        sums += part_sums
        counts += part_counts
        squares += part_squares
    if low is None:
        dist = best.mul_(-2).add_(point_sq).clamp_min_(0)
        return index, dist, sums, counts, float(dist.double().mean())
    c = centers.double()
    total = squares.sum() - 2 * (sums.double() * c).sum() + (counts.double() * c.square().sum(1)).sum()
    return index, None, sums, counts, max(float(total), 0.0) / x.shape[0]


def row_max(scores: torch.Tensor, values: torch.Tensor, index: torch.Tensor) -> None:
    """Each row's largest score and its column (the lowest on ties), written into (B,) ``values`` and ``index``.

    On CPU numpy's argmax runs about 7x faster than torch's max with indices (vectorized; 0.4 ms
    against 2.9 ms for 4096 x 256 float32) and releases the GIL, so worker threads overlap.
    """
    if scores.device.type != "cpu" or scores.dtype != torch.float32:
        torch.max(scores, dim=1, out=(values, index))
        return
    found = torch.from_numpy(scores.numpy().argmax(axis=1))
    index.copy_(found)
    torch.gather(scores, 1, found.unsqueeze(1), out=values.unsqueeze(1))


def affine_scores(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``x @ weight.T + bias``: (B, D), (K, D), (K,) -> (B, K), by the fastest exact GEMM.

    On CPU, torch's oneDNN linear kernel takes bfloat16 operands on AMX and avoids the default
    BLAS's slow paths for some shapes (a (3000, 384) x (384, 7) product took 17 ms instead of
    0.1 ms); its float32 rate beside ``torch.matmul``'s on the development machine (an Intel Xeon
    with AMX) is in docs/benchmarks.md ("RQ-KMeans"). It is a private op, so it is used only after a one-time check
    against ``torch.nn.functional.linear``; ``SIDKIT_ONEDNN=0`` turns it off.
    """
    if x.device.type == "cpu" and _onednn_linear_works(x.dtype):
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [None], "")
    return torch.nn.functional.linear(x, weight, bias)


@functools.cache
def _fast_bfloat16(device: torch.device) -> bool:
    """Whether bfloat16 GEMMs run natively (CUDA, or a CPU with AVX-512 BF16 / AMX)."""
    if device.type == "cuda":
        return True
    probe = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    return device.type == "cpu" and probe is not None and bool(probe()) and _onednn_linear_works(torch.bfloat16)


@functools.cache
def _onednn_linear_works(dtype: torch.dtype) -> bool:
    if (os.environ.get("SIDKIT_ONEDNN") == "0" or not torch.backends.mkldnn.is_available()
            or dtype not in (torch.float32, torch.bfloat16)):
        return False
    generator = torch.Generator().manual_seed(0)
    x, w, b = (torch.randn(shape, generator=generator).to(dtype) for shape in ((67, 40), (19, 40), (19,)))
    try:
        got = torch.ops.mkldnn._linear_pointwise(x, w, b, "none", [None], "")
    except (AttributeError, RuntimeError, TypeError):
        return False
    expected = torch.nn.functional.linear(x.float(), w.float(), b.float())
    tolerance = 1e-5 if dtype == torch.float32 else 5e-2
    return bool(got.shape == (67, 19) and got.dtype == dtype
                and torch.allclose(got.float(), expected, rtol=tolerance, atol=tolerance * 10))


def balanced_assign(x: torch.Tensor, centers: torch.Tensor, capacity: int, *,
                    point_sq: torch.Tensor | None = None, n_candidates: int = 16,
                    chunk_size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Assign points to centres so that no centre takes more than ``capacity`` points.

    Capacity-constrained greedy assignment in rounds, O(N m log N) for m candidates: every point
    lists its ``n_candidates`` nearest centres; in round r each unplaced point proposes to its r-th
    candidate, and a centre with c free places accepts the c proposals of largest regret (the extra
    cost if refused: distance to the next candidate minus this one). Points refused by all their
    candidates then go to the nearest centre that still has room. Returns (N,) int64 assignment and
    (N,) float32 squared distances to the assigned centre.
    """
    n, k = x.shape[0], centers.shape[0]
    if capacity * k < n:
        raise ConfigError(f"capacity {capacity} x {k} centres cannot hold {n} points", where="capacity")
    if point_sq is None:
        point_sq = x.square().sum(1)
    m = min(k, n_candidates)
    cand_dist, cand_index = _top_candidates(x, centers, point_sq, m, chunk_size)
    assignment = torch.full((n,), -1, dtype=torch.int64, device=x.device)
    dist = torch.zeros(n, dtype=torch.float32, device=x.device)
    load = torch.zeros(k, dtype=torch.int64, device=x.device)
    for r in range(m):
        pending = torch.nonzero(assignment < 0).squeeze(1)
        if pending.numel() == 0:
            break
        cost = cand_dist[pending, r]
        regret = cand_dist[pending, r + 1] - cost if r + 1 < m else torch.full_like(cost, math.inf)
        _accept(pending, cand_index[pending, r], cost, regret, capacity - load, assignment, dist, load)
    center_sq = centers.square().sum(1)
    while True:  # leftovers: nearest centre with room; each round fills a centre or places everyone
        pending = torch.nonzero(assignment < 0).squeeze(1)
        if pending.numel() == 0:
            break
        scores = torch.addmm(center_sq, x[pending], centers.T, alpha=-2)
        scores[:, load >= capacity] = math.inf
        best, choice = scores.min(1)
        cost = (best + point_sq[pending]).clamp_min_(0)
        _accept(pending, choice, cost, -cost, capacity - load, assignment, dist, load)
    return assignment, dist


def update_centers(x: torch.Tensor, assignment: torch.Tensor, dist: torch.Tensor,
                   centers: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Lloyd update: each centre moves to the mean of its points.

    An empty cluster is re-seeded on one of the points farthest from their own centre; it held no
    points, so moving it cannot raise the objective. Returns (K, D) centres and the number re-seeded.
    """
    k = centers.shape[0]
    counts = torch.bincount(assignment, minlength=k)
    sums = torch.zeros_like(centers).index_add_(0, assignment, x)
    return _centers_from_sums(sums, counts, x, dist)


def _centers_from_sums(sums: torch.Tensor, counts: torch.Tensor, x: torch.Tensor,
                       dist: torch.Tensor | None) -> tuple[torch.Tensor, int]:
    """Means from (K, D) sums and (K,) counts; empty clusters re-seeded on the farthest points
    (``dist``: each point's squared distance to its centre, needed only when a cluster is empty)."""
    new = sums / counts.clamp_min(1).unsqueeze(1).to(sums.dtype)
    empty = torch.nonzero(counts == 0).squeeze(1)
    if empty.numel():
        assert dist is not None
        far = torch.topk(dist, min(empty.numel(), dist.numel())).indices
        new[empty[: far.numel()]] = x[far]
    return new, int(empty.numel())


def _top_candidates(x: torch.Tensor, centers: torch.Tensor, point_sq: torch.Tensor, m: int,
                    chunk_size: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, m) squared distances (ascending) and indices of each point's m nearest centres."""
    chunk_size = rows_per_block(chunk_size, centers.shape[0])
    center_sq = centers.square().sum(1)
    centers_t = centers.T.contiguous()
    parts_d, parts_i = [], []
    for start in range(0, x.shape[0], chunk_size):
        scores = torch.addmm(center_sq, x[start:start + chunk_size], centers_t, alpha=-2)
        values, index = torch.topk(scores, m, dim=1, largest=False, sorted=True)
        parts_d.append(values.add_(point_sq[start:start + chunk_size, None]).clamp_min_(0))
        parts_i.append(index)
    return torch.cat(parts_d), torch.cat(parts_i)


def _accept(pending: torch.Tensor, proposal: torch.Tensor, cost: torch.Tensor, priority: torch.Tensor,
            room: torch.Tensor, assignment: torch.Tensor, dist: torch.Tensor, load: torch.Tensor) -> None:
    """Each centre accepts its proposals of highest priority, as many as it has room; updates in place."""
    order = torch.argsort(priority, descending=True, stable=True)
    order = order[torch.argsort(proposal[order], stable=True)]  # grouped by centre, priority within
    grouped = proposal[order]
    counts = torch.bincount(grouped, minlength=room.numel())
    first = torch.cumsum(counts, 0) - counts
    rank = torch.arange(grouped.numel(), device=grouped.device) - first[grouped]
    accepted = order[rank < room[grouped]]
    assignment[pending[accepted]] = proposal[accepted]
    dist[pending[accepted]] = cost[accepted]
    load += torch.bincount(proposal[accepted], minlength=room.numel())


def _sample_rows(n: int, size: int, generator: torch.Generator) -> torch.Tensor:
    """``size`` distinct row indices of ``n``, sorted (sequential reads)."""
    return torch.randperm(n, generator=generator, device=generator.device)[:size].sort().values


def rows_per_block(chunk_size: int | None, k: int) -> int:
    """Rows per GEMM block: ``chunk_size`` if given, else a 16 MiB (rows, k) score block."""
    return chunk_size if chunk_size is not None else max(256, SCORE_BLOCK_ELEMENTS // max(k, 1))


def check_kmeans_args(k: Any, max_iter: Any, tol: Any, balance_factor: Any, chunk_size: Any) -> None:
    """Raise ConfigError for k-means settings that cannot work."""
    rows = 1 if chunk_size is None else chunk_size
    for name, value, low in (("k", k, 1), ("max_iter", max_iter, 0), ("chunk_size", rows, 1)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ConfigError(f"{name} must be an integer >= {low}, got {value!r}", where=name,
                              fix=f"pass an integer >= {low}")
    if not isinstance(tol, (int, float)) or not tol >= 0:
        raise ConfigError(f"tol must be a number >= 0, got {tol!r}", where="tol", fix="pass e.g. 1e-4")
    if not isinstance(balance_factor, (int, float)) or not balance_factor >= 1:
        raise ConfigError(f"balance_factor must be >= 1 (1 = perfectly even loads), got {balance_factor!r}",
                          where="balance_factor", fix="use for example 1.1 or 1.25")
