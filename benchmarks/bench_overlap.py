"""Empirical O_pi at scale: 1M items x 64 dims, 8 noise draws, a 3 x 256 RQ-KMeans.

Run: .venv/bin/python benchmarks/bench_overlap.py --threads 2      (1M items, the acceptance setting)
     .venv/bin/python benchmarks/bench_overlap.py --items 100000   (quick)

On a shared machine wall time depends on the other jobs, so the CPU time of the process is printed
beside it (with the load average); on an idle machine wall time is about CPU time / threads, and the
calibration runs are timed that way too. The
data is a Gaussian mixture (256 clusters). The timed part is ``expected_overlap`` (levels and
depths at one rho): encoding the N items once, then N x S perturbed rows, and the sparse confusion
counts. The work is dominated by encoding: each perturbed row costs one GEMM row per level,
2 * D * K_l flops, so 2 * N * S * D * sum(K_l) in all (about 0.8 TFLOP here). The bound printed
beside it is a roofline from two measurements on this machine: the GEMM rate of the kernel that
encode uses (same shapes) and the memory bandwidth of a large copy.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from sidkit.diagnostics.overlap import expected_overlap
from sidkit.threads import set_threads
from sidkit.tokenizers.kmeans import affine_scores
from sidkit.tokenizers.rq_kmeans import RQKMeans


def gemm_rate(dim: int, codes: int, rows: int = 1 << 16, repeats: int = 5) -> float:
    """Flops per second of the encode GEMM (rows, dim) x (codes, dim)^T + bias, best of ``repeats``."""
    x, w, b = torch.randn(rows, dim), torch.randn(codes, dim), torch.randn(codes)
    affine_scores(x, w, b)  # warm-up (and the one-time oneDNN check)
    best = min(_timed(lambda: affine_scores(x, w, b)) for _ in range(repeats))
    return 2 * rows * dim * codes / best


def copy_bandwidth(megabytes: int = 512, repeats: int = 3) -> float:
    """Bytes per second of a large float32 copy (read + write counted)."""
    src = torch.ones(megabytes << 18)
    dst = torch.empty_like(src)
    best = min(_timed(lambda: dst.copy_(src)) for _ in range(repeats))
    return 2 * src.numel() * 4 / best


def _timed(fn) -> float:  # type: ignore[no-untyped-def]
    """Seconds of ``fn()`` as an idle machine would see them: process CPU time / threads (other
    jobs on a shared machine stretch wall time, not the CPU time this process needs)."""
    start = time.process_time()
    fn()
    return (time.process_time() - start) / torch.get_num_threads()


def mixture(items: int, dim: int, clusters: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(clusters, dim)).astype(np.float32)
    x = rng.normal(scale=0.5, size=(items, dim)).astype(np.float32)
    x += centers[rng.integers(0, clusters, items)]
    return x


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--levels", type=int, default=3)
    parser.add_argument("--codebook-size", type=int, default=256)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--rho", type=float, default=0.1)
    parser.add_argument("--by", default="level,depth", help="level, depth, or level,depth")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads (default: sidkit's, OMP_NUM_THREADS or the physical cores)")
    parser.add_argument("--estimator-cost", action="store_true",
                        help="also time the estimator's counts against plug-in counts on the same draws")
    args = parser.parse_args(argv)
    set_threads(args.threads)

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    x = mixture(args.items, args.dim, 256, args.seed)
    start = time.perf_counter()
    tokenizer = RQKMeans(levels=args.levels, codebook_size=args.codebook_size, seed=args.seed).fit(x)
    print(f"fit RQ-KMeans {args.levels} x {args.codebook_size} on {args.items:,} x {args.dim}: "
          f"{time.perf_counter() - start:.1f} s (not part of the timing below)")

    by = tuple(args.by.split(","))
    start, cpu_start = time.perf_counter(), time.process_time()
    tokenizer.encode(x)
    encode_once, encode_once_cpu = time.perf_counter() - start, time.process_time() - cpu_start
    load_before = os.getloadavg()[0]
    start, cpu_start = time.perf_counter(), time.process_time()
    report = expected_overlap(tokenizer, x, args.rho, args.samples, by=by, seed=args.seed)  # type: ignore[arg-type]
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    load_after = os.getloadavg()[0]

    n, s, d = args.items, args.samples, args.dim
    codes = args.codebook_size * args.levels
    rows = n * (s + 1)  # perturbed rows plus the one clean encode
    flops = 2 * rows * d * codes
    # Bytes that must move at least once: the noise written and read, the perturbed rows written
    # and read by encode, and the residual per level (read + write), float32.
    bytes_moved = 4 * n * s * d * (2 + 2) + 4 * rows * d * 2 * args.levels
    rate = gemm_rate(d, args.codebook_size)
    bandwidth = copy_bandwidth()
    bound = max(flops / rate, bytes_moved / bandwidth)
    threads = torch.get_num_threads()
    print(f"expected_overlap: {n:,} items x {s} draws at rho {args.rho}, by {by}: {wall:.2f} s wall, "
          f"{cpu:.1f} s CPU over {threads} threads (load average {load_before:.1f} -> {load_after:.1f}; on an "
          f"otherwise idle machine wall is about CPU / threads = {cpu / threads:.1f} s)")
    print(f"  encode work   {flops / 1e12:.2f} TFLOP, achieved {flops / wall / 1e9:.0f} GFLOP/s wall, "
          f"{flops * threads / cpu / 1e9:.0f} GFLOP/s by CPU time "
          f"(encode GEMM alone runs at {rate / 1e9:.0f} GFLOP/s here)")
    print(f"  memory        {bytes_moved / 1e9:.1f} GB moved at least, copy bandwidth {bandwidth / 1e9:.1f} GB/s")
    print(f"  roofline bound {bound:.2f} s; achieved {bound / wall:.0%} of it in wall time, "
          f"{bound * threads / cpu:.0%} in CPU time / threads")
    floor_cpu = encode_once_cpu * (s + 1)
    print(f"  tokenizer.encode of the same rows alone: {floor_cpu:.1f} s CPU ({s + 1} x {encode_once_cpu:.2f} s for "
          f"the clean rows, {encode_once:.2f} s wall each); noise and confusion counts add {cpu - floor_cpu:.1f} s CPU")
    for entry in (*report.levels, *report.depths):
        st = entry.stats
        print(f"  {entry.by} {entry.index}: K_eff {st.effective_size:10.1f} ± {1.96 * st.effective_size_se:6.1f} of "
              f"{st.nominal_size:>7}  (1/sum pi^2 {1 / st.simpson:10.1f})  flip rate {entry.flip_rate:.4f} ± "
              f"{1.96 * (entry.flip_rate_se or 0.0):.4f}")
    if args.estimator_cost:
        counting_cost(tokenizer, x, args.rho, args.samples, args.seed)


def counting_cost(tokenizer: RQKMeans, x: np.ndarray, rho: float, samples: int, seed: int) -> None:
    """CPU seconds of the counts behind the estimate against plain plug-in confusion counts, on the same
    encoded draws, chunk by chunk and interleaved: what the bias control costs beyond the encode."""
    from sidkit.diagnostics.overlap import PERTURBED_ROWS, noise_sigma, symbol_keys
    from sidkit.diagnostics.overlap_counts import OverlapCounts, _count_moved
    from sidkit.ids import SemanticIds

    sets = [("level", level) for level in range(tokenizer.levels)]
    sets += [("depth", depth) for depth in range(1, tokenizer.levels + 1)]
    ids = tokenizer.encode(x)
    sigma = noise_sigma(x, rho)
    generator = torch.Generator().manual_seed(seed)
    counts = [OverlapCounts(samples) for _ in sets]
    plugin: list[list[tuple[np.ndarray, ...]]] = [[] for _ in sets]
    agreement_cpu = plugin_cpu = 0.0
    rows = max(1, PERTURBED_ROWS // samples)
    for start in range(0, len(x), rows):
        block = torch.from_numpy(x[start:start + rows])
        noise = torch.randn((samples, *block.shape), generator=generator)
        moved = SemanticIds(tokenizer.encode((block + sigma * noise).reshape(-1, block.shape[1])).codes, ids.sizes)
        for index, (kind, position) in enumerate(sets):
            source = symbol_keys(ids, kind, position)[start:start + rows]
            target = symbol_keys(moved, kind, position).reshape(samples, -1)
            begin = time.process_time()
            counts[index].add(source, target)
            agreement_cpu += time.process_time() - begin
            begin = time.process_time()
            # The plug-in Bhattacharyya counts: unchanged draws per symbol, sorted pairs of the changed ones.
            same = target == source[None, :]
            np.unique(source, return_counts=True)
            draw, item = np.nonzero(~same)
            if len(draw):
                plugin[index].append(_count_moved(source[item], target[draw, item], np.zeros(len(draw), np.int64), 1))
            plugin_cpu += time.process_time() - begin
    begin = time.process_time()
    for item in counts:
        item.estimate()
    agreement_cpu += time.process_time() - begin
    print(f"  counting cost on the same draws, CPU: agreement estimator with jackknife {agreement_cpu:.1f} s, "
          f"plug-in confusion counts (no merge, no estimate) {plugin_cpu:.1f} s")


if __name__ == "__main__":
    main()
