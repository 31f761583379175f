"""Empirical O_pi at scale: 1M items x 64 dims, 8 noise draws, a 3 x 256 RQ-KMeans.

Run: .venv/bin/python benchmarks/bench_overlap.py                  (1M items, the acceptance setting)
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
    args = parser.parse_args(argv)

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
        print(f"  {entry.by} {entry.index}: K_eff {st.effective_size:8.1f} of {st.nominal_size:>7}  "
              f"(1/sum pi^2 {1 / st.simpson:8.1f})  flip rate {entry.flip_rate:.4f}")


if __name__ == "__main__":
    main()
