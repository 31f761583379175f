"""RQ-KMeans: sidkit vs faiss per-level residual k-means vs semantic-id's RQKMeans.

Data: unit-norm 384-d vectors from a 2,000-cluster Gaussian mixture (random unit centres plus
isotropic noise of the same expected norm, then normalized). Every method fits 3 levels x 256 codes
on the residuals of the previous level and encodes greedily; MSE = mean over items of the squared
L2 reconstruction error summed over dimensions (float64), on the items it was fitted on.

The GEMM-bound encode rate is measured in the same run: encoding costs 2 * N * D * K * L flops, so
rate = GEMM flop/s / (2 * D * K * L). Two fp32 GEMMs are measured: ``torch.matmul`` (torch's default
BLAS) and oneDNN's kernel, which sidkit uses on CPU.

    .venv/bin/python benchmarks/bench_rq_kmeans.py            # 20k and 200k, all peers
    .venv/bin/python benchmarks/bench_rq_kmeans.py --sizes 20000 --skip-semantic-id

Needs ``pip install faiss-cpu semantic-id`` for the peers (each is skipped, with a note, if absent).
Each measurement runs in a fresh child process: faiss and torch bring separate OpenMP runtimes, whose
spinning threads slow each other several-fold when both live in one process.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from sidkit.tokenizers.kmeans import affine_scores
from sidkit.tokenizers.rq_kmeans import RQKMeans

DIM, LEVELS, CODES, CLUSTERS = 384, 3, 256, 2000


@dataclass(frozen=True)
class Row:
    method: str
    n: int
    fit_s: float
    encode_per_s: float
    mse: float


def mixture(n: int, *, seed: int = 0, noise: float = 1.0) -> np.ndarray:
    """(n, 384) float32 unit vectors: 2,000 random unit centres plus N(0, noise^2 / D) per dim."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((CLUSTERS, DIM)).astype(np.float32)
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    x = centers[rng.integers(0, CLUSTERS, n)]
    x += (noise / np.sqrt(DIM)) * rng.standard_normal((n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def mse(x: np.ndarray, approx: np.ndarray) -> float:
    return float(((x.astype(np.float64) - approx) ** 2).sum(1).mean())


def timed(fn: Callable[[], object], repeats: int) -> tuple[float, object]:
    """Fastest of ``repeats`` calls in seconds (the least disturbed by other load), and the last result."""
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def gemm_rates(repeats: int = 20) -> dict[str, float]:
    """fp32 GEMM flop/s of (8192, 384) x (384, 256), as encode runs it."""
    generator = torch.Generator().manual_seed(0)
    x, c = torch.randn(8192, DIM, generator=generator), torch.randn(CODES, DIM, generator=generator)
    bias = torch.zeros(CODES)
    flops = 2 * x.shape[0] * DIM * CODES
    rates = {}
    for name, fn in (("torch.matmul", lambda: x @ c.T), ("oneDNN", lambda: affine_scores(x, c, bias))):
        fn()
        fn()
        best = min(timed(fn, 1)[0] for _ in range(repeats))
        rates[name] = flops / best
    return rates


def run_sidkit(x: np.ndarray, repeats: int) -> Row:
    fit_s, model = timed(lambda: RQKMeans(levels=LEVELS, codebook_size=CODES, seed=0).fit(x), 1)
    assert isinstance(model, RQKMeans)
    model.encode(x[:20000])  # warm up
    encode_s, ids = timed(lambda: model.encode(x), repeats)
    return Row("sidkit RQKMeans", len(x), fit_s, len(x) / encode_s, mse(x, model.decode(ids)))  # type: ignore[arg-type]


def run_faiss(x: np.ndarray, repeats: int, niter: int = 20) -> Row:
    import faiss

    def fit() -> list[np.ndarray]:
        residual, books = x.copy(), []
        for level in range(LEVELS):
            km = faiss.Kmeans(DIM, CODES, niter=niter, seed=1234 + level)  # subsamples to 256 per centroid
            km.train(residual)
            _, chosen = km.index.search(residual, 1)
            residual -= km.centroids[chosen[:, 0]]
            books.append(km.centroids.copy())
        return books

    def encode(books: list[np.ndarray]) -> np.ndarray:
        residual, codes = x.copy(), []
        for book in books:
            index = faiss.IndexFlatL2(DIM)
            index.add(book)
            _, chosen = index.search(residual, 1)
            codes.append(chosen[:, 0])
            residual -= book[chosen[:, 0]]
        return np.stack(codes, 1)

    fit_s, books = timed(fit, 1)
    encode_s, codes = timed(lambda: encode(books), repeats)  # type: ignore[arg-type]
    approx = sum(books[level][codes[:, level]] for level in range(LEVELS))  # type: ignore[index]
    return Row(f"faiss Kmeans x{LEVELS} (niter {niter})", len(x), fit_s, len(x) / encode_s, mse(x, approx))


def run_semantic_id(x: np.ndarray) -> Row:
    from semantic_id import RQKMeans as PeerRQKMeans

    fit_s, model = timed(lambda: PeerRQKMeans(n_levels=LEVELS, n_clusters=CODES, random_state=0).fit(x), 1)
    encode_s, codes = timed(lambda: model.encode(x), 1)  # type: ignore[attr-defined]
    books = model.codebooks_  # type: ignore[attr-defined]
    approx = sum(books[level][codes[:, level]] for level in range(LEVELS))  # type: ignore[index]
    return Row("semantic-id RQKMeans (sklearn, 10 inits)", len(x), fit_s, len(x) / encode_s, mse(x, approx))


def table(rows: list[Row], rates: dict[str, float]) -> str:
    flops_per_item = 2 * DIM * CODES * LEVELS
    bound = {name: rate / flops_per_item for name, rate in rates.items()}
    lines = ["| method | N | fit s | fit vs sidkit | encode items/s | encode vs sidkit | "
             "share of GEMM-bound (torch.matmul / oneDNN) | MSE | MSE vs sidkit |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        ours = next(r for r in rows if r.n == row.n and r.method.startswith("sidkit"))
        lines.append(
            f"| {row.method} | {row.n:,} | {row.fit_s:.2f} | {row.fit_s / ours.fit_s:.2f}x | "
            f"{row.encode_per_s:,.0f} | {row.encode_per_s / ours.encode_per_s:.2f}x | "
            f"{row.encode_per_s / bound['torch.matmul']:.0%} / {row.encode_per_s / bound['oneDNN']:.0%} | "
            f"{row.mse:.4f} | {row.mse / ours.mse:.3f} |")
    notes = [f"fp32 GEMM in this run: torch.matmul {rates['torch.matmul'] / 1e9:.0f} GFLOP/s, "
             f"oneDNN {rates['oneDNN'] / 1e9:.0f} GFLOP/s; GEMM-bound encode "
             f"{bound['torch.matmul']:,.0f} / {bound['oneDNN']:,.0f} items/s "
             f"({flops_per_item / 1e3:.0f} kflop per item)."]
    return "\n".join([*lines, "", *notes])


def measure(task: str, n: int, repeats: int) -> dict[str, Any]:
    """Run one measurement in a fresh interpreter and return what it printed as JSON."""
    command = [sys.executable, __file__, "--worker", task, str(n), str(repeats)]
    out = subprocess.run(command, check=True, capture_output=True, text=True, env=os.environ).stdout
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def worker(task: str, n: int, repeats: int) -> None:
    if task == "gemm":
        print(json.dumps(gemm_rates()))
        return
    x = mixture(n)
    runners = {"sidkit": lambda: run_sidkit(x, repeats), "faiss": lambda: run_faiss(x, repeats),
               "semantic-id": lambda: run_semantic_id(x)}
    print(json.dumps(dataclasses.asdict(runners[task]())))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[20000, 200000])
    parser.add_argument("--rounds", type=int, default=3, help="fits per method (best kept; semantic-id: 1)")
    parser.add_argument("--repeats", type=int, default=3, help="encode timings per fit (best kept)")
    parser.add_argument("--skip-semantic-id", action="store_true")
    parser.add_argument("--semantic-id-max-n", type=int, default=20000,
                        help="largest N for semantic-id (its fit grows ~linearly: minutes at 20k)")
    parser.add_argument("--threads", type=int, default=None,
                        help="threads for every library (default: torch's default, the core count)")
    parser.add_argument("--worker", nargs=3, metavar=("TASK", "N", "REPEATS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker[0], int(args.worker[1]), int(args.worker[2]))
        return
    if args.threads:  # children read these before any library starts its thread pool
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            os.environ[name] = str(args.threads)
    threads = args.threads or torch.get_num_threads()
    load_before = os.getloadavg()[0]
    print(f"torch {torch.__version__}, {threads} threads, {os.cpu_count()} CPUs, load average {load_before:.1f}")
    rates = measure("gemm", 0, 1)
    have_faiss = importlib.util.find_spec("faiss") is not None
    have_semantic_id = importlib.util.find_spec("semantic_id") is not None
    rows: list[Row] = []
    skipped: list[str] = []
    for n in args.sizes:
        tasks = ["sidkit"]
        if have_faiss:
            tasks.append("faiss")
        else:
            skipped.append("faiss (not installed)")
        if not have_semantic_id or args.skip_semantic_id:
            skipped.append(f"semantic-id at {n:,} ({'skipped by flag' if have_semantic_id else 'not installed'})")
        elif n > args.semantic_id_max_n:
            skipped.append(f"semantic-id at {n:,} (10 sklearn inits x up to 100 iterations on every row: "
                           f"about {n // args.semantic_id_max_n}x its time at {args.semantic_id_max_n:,})")
        else:
            tasks.append("semantic-id")
        # Rounds interleave the methods, and each keeps its best round, so that load from other
        # processes on the machine hits every method alike.
        results: dict[str, list[dict[str, Any]]] = {task: [] for task in tasks}
        for round_ in range(args.rounds):
            for task in tasks:
                if task == "semantic-id" and round_ > 0:
                    continue
                results[task].append(measure(task, n, args.repeats))
                print(task, n, results[task][-1], flush=True)
            for name, rate in measure("gemm", 0, 1).items():
                rates[name] = max(rates[name], rate)
        for task in tasks:
            best = results[task]
            rows.append(Row(method=str(best[0]["method"]), n=n, fit_s=min(r["fit_s"] for r in best),
                            encode_per_s=max(r["encode_per_s"] for r in best), mse=best[0]["mse"]))
    print()
    print(table(rows, rates))
    print(f"Load average (1 min) before {load_before:.1f}, after {os.getloadavg()[0]:.1f}, on {os.cpu_count()} CPUs.")
    for note in skipped:
        print(f"Not run: {note}.")


if __name__ == "__main__":
    main()
