"""RQ-KMeans: sidkit vs faiss per-level residual k-means (and semantic-id's RQKMeans), fit and encode.

Two data sets, both 3 levels x 256 codes:

- ``public``: unit-norm 384-d vectors from a 2,000-cluster Gaussian mixture (random unit centres plus
  isotropic noise of the same expected norm, then normalized);
- ``anisotropic``: 256-d vectors, not normalized, from 1,000 clusters of Zipf-distributed sizes whose
  centres and noise follow a decaying spectrum (dimension d scaled by (1 + d)^-0.5), each cluster with
  its own noise level (log-normal) and a few stretched directions, as text-embedding catalogues have.

Every method fits on the residuals of the previous level and encodes greedily; MSE = mean over items
of the squared L2 reconstruction error summed over dimensions (float64), on the items fitted on.
faiss: ``Kmeans(niter=20)`` per level (its default; it subsamples to 256 points per centroid, 65,536
rows, as sidkit's ``fit_sample`` does) and ``IndexFlatL2`` search per level to encode.

Each measurement runs in a fresh process (faiss and torch bring separate OpenMP runtimes) with the
thread count set for every library (``OMP_NUM_THREADS``, torch, faiss). faiss runs with its default
environment; sidkit with its own thread policy (``sidkit.threads``). Rounds interleave sidkit and
faiss for every (data, N, threads), alternating which goes first, and the ratio sidkit / faiss is
taken within each round (the same load for both), then the median over rounds. Wall and CPU seconds
are both reported: on a machine shared with other jobs, a one-thread process's CPU time is its own
work and wall time includes its waits for a core. The load average is recorded around every
measurement, and the GEMM rates of this CPU are measured in the same run.

    .venv/bin/python benchmarks/bench_rq_kmeans.py                                  # the full grid
    .venv/bin/python benchmarks/bench_rq_kmeans.py --sizes 20000 --threads 1 --rounds 2 --data public
    .venv/bin/python benchmarks/bench_rq_kmeans.py --sizes 20000 --semantic-id      # + semantic-id (slow)

Needs ``pip install faiss-cpu`` (``make bench``); semantic-id only with ``--semantic-id``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

LEVELS, CODES = 3, 256
DATASETS = ("public", "anisotropic")


def mixture(n: int, *, seed: int = 0, noise: float = 1.0, dim: int = 384, clusters: int = 2000) -> np.ndarray:
    """(n, 384) float32 unit vectors: 2,000 random unit centres plus N(0, noise^2 / D) per dim."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((clusters, dim)).astype(np.float32)
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    x = centers[rng.integers(0, clusters, n)]
    x += (noise / np.sqrt(dim)) * rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def anisotropic(n: int, *, seed: int = 1, dim: int = 256, clusters: int = 1000) -> np.ndarray:
    """(n, 256) float32: Zipf-sized clusters on a decaying spectrum, each with its own spread and shape."""
    rng = np.random.default_rng(seed)
    spectrum = (1.0 + np.arange(dim)) ** -0.5
    centers = rng.standard_normal((clusters, dim)) * spectrum
    sizes = 1.0 / (1.0 + np.arange(clusters)) ** 0.8
    member = rng.choice(clusters, size=n, p=sizes / sizes.sum())
    spread = np.exp(rng.normal(-1.0, 0.5, clusters))  # per-cluster noise level
    stretch = rng.standard_normal((clusters, 4, dim)) * spectrum  # a few long axes per cluster
    x = centers[member] + spread[member, None] * rng.standard_normal((n, dim)) * spectrum
    x += np.einsum("nk,nkd->nd", rng.standard_normal((n, 4)) * 0.5, stretch[member])
    return x.astype(np.float32)


def dataset(name: str, n: int) -> np.ndarray:
    return mixture(n) if name == "public" else anisotropic(n)


def mse(x: np.ndarray, approx: np.ndarray) -> float:
    return float(((x.astype(np.float64) - approx) ** 2).sum(1).mean())


def clock(fn: Callable[[], object]) -> tuple[float, float, object]:
    """Wall seconds, CPU seconds (this process, all threads) and the result of ``fn()``."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, result


def best_encode(fn: Callable[[], object], repeats: int) -> tuple[float, float, object]:
    """The fastest of ``repeats`` timed calls (after one warm-up): wall, its CPU, result."""
    fn()
    runs = [clock(fn) for _ in range(repeats)]
    return min(runs, key=lambda run: run[0])


def run_sidkit(x: np.ndarray, threads: int, repeats: int) -> dict[str, Any]:
    from sidkit.threads import set_threads
    from sidkit.tokenizers.rq_kmeans import RQKMeans

    set_threads(threads)
    fit_wall, fit_cpu, model = clock(lambda: RQKMeans(levels=LEVELS, codebook_size=CODES, seed=0).fit(x))
    assert isinstance(model, RQKMeans) and model.fit_work is not None
    encode_wall, encode_cpu, ids = best_encode(lambda: model.encode(x), repeats)
    work = model.fit_work
    return {"fit_wall": fit_wall, "fit_cpu": fit_cpu, "encode_wall": encode_wall, "encode_cpu": encode_cpu,
            "mse": mse(x, model.decode(ids)),  # type: ignore[arg-type]
            "work": {"training_rows": work.training_rows, "seeding_rows": list(work.seeding_rows),
                     "lloyd_iterations": list(work.lloyd_iterations),
                     "assignment_passes": list(work.assignment_passes), "refine_rounds": work.refine_rounds,
                     "bfloat16": work.bfloat16}}


def run_faiss(x: np.ndarray, threads: int, repeats: int, niter: int = 20) -> dict[str, Any]:
    import faiss

    faiss.omp_set_num_threads(threads)
    dim = x.shape[1]
    trained_rows: list[int] = []

    def fit() -> list[np.ndarray]:
        residual, books = x.copy(), []
        for level in range(LEVELS):
            km = faiss.Kmeans(dim, CODES, niter=niter, seed=1234 + level)  # subsamples to 256 per centroid
            km.train(residual)
            trained_rows.append(min(len(residual), km.cp.max_points_per_centroid * CODES))
            _, chosen = km.index.search(residual, 1)
            residual -= km.centroids[chosen[:, 0]]
            books.append(km.centroids.copy())
        return books

    def encode(books: list[np.ndarray]) -> np.ndarray:
        residual, codes = x.copy(), []
        for book in books:
            index = faiss.IndexFlatL2(dim)
            index.add(book)
            _, chosen = index.search(residual, 1)
            codes.append(chosen[:, 0])
            residual -= book[chosen[:, 0]]
        return np.stack(codes, 1)

    fit_wall, fit_cpu, books = clock(fit)
    encode_wall, encode_cpu, codes = best_encode(lambda: encode(books), repeats)  # type: ignore[arg-type]
    approx = sum(books[level][codes[:, level]] for level in range(LEVELS))  # type: ignore[index]
    return {"fit_wall": fit_wall, "fit_cpu": fit_cpu, "encode_wall": encode_wall, "encode_cpu": encode_cpu,
            "mse": mse(x, approx),  # type: ignore[arg-type]
            "work": {"training_rows": trained_rows[0], "seeding_rows": [0] * LEVELS,
                     "lloyd_iterations": [niter] * LEVELS, "assignment_passes": [niter] * LEVELS,
                     "refine_rounds": 0, "bfloat16": False}}


def run_semantic_id(x: np.ndarray, threads: int, repeats: int) -> dict[str, Any]:
    from semantic_id import RQKMeans as PeerRQKMeans

    fit_wall, fit_cpu, model = clock(lambda: PeerRQKMeans(n_levels=LEVELS, n_clusters=CODES, random_state=0).fit(x))
    encode_wall, encode_cpu, codes = clock(lambda: model.encode(x))  # type: ignore[attr-defined]
    books = model.codebooks_  # type: ignore[attr-defined]
    approx = sum(books[level][codes[:, level]] for level in range(LEVELS))  # type: ignore[index]
    return {"fit_wall": fit_wall, "fit_cpu": fit_cpu, "encode_wall": encode_wall, "encode_cpu": encode_cpu,
            "mse": mse(x, approx), "work": {}}  # type: ignore[arg-type]


def gemm_rates(threads: int, repeats: int = 10) -> dict[str, float]:
    """GFLOP/s of (4096, 384) x (384, 256), as encode runs it: float32 (torch.matmul, oneDNN) and bfloat16."""
    import sidkit  # noqa: F401
    from sidkit.threads import set_threads

    set_threads(threads)
    import torch

    from sidkit.tokenizers.kmeans import affine_scores

    generator = torch.Generator().manual_seed(0)
    x, c = torch.randn(4096, 384, generator=generator), torch.randn(CODES, 384, generator=generator)
    bias = torch.zeros(CODES)
    xb, cb, bb = x.bfloat16(), c.bfloat16(), bias.bfloat16()
    flops = 2 * x.shape[0] * 384 * CODES
    rates = {}
    for name, fn in (("float32 torch.matmul", lambda: x @ c.T), ("float32 oneDNN", lambda: affine_scores(x, c, bias)),
                     ("bfloat16 oneDNN", lambda: affine_scores(xb, cb, bb))):
        fn()
        rates[name] = flops / min(clock(fn)[0] for _ in range(repeats)) / 1e9
    return rates


def child_env(threads: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env["OMP_NUM_THREADS"] = str(threads)  # read by every OpenMP runtime when it loads
    env["MKL_NUM_THREADS"] = env["OPENBLAS_NUM_THREADS"] = str(threads)
    return env


def measure(task: str, data: str, n: int, threads: int, repeats: int) -> dict[str, Any]:
    """One measurement in a fresh interpreter; its JSON result plus the load average around it."""
    before = os.getloadavg()[0]
    command = [sys.executable, __file__, "--worker", task, data, str(n), str(threads), str(repeats)]
    out = subprocess.run(command, check=True, capture_output=True, text=True, env=child_env(threads)).stdout
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    result.update(task=task, data=data, n=n, threads=threads, load=(before, os.getloadavg()[0]))
    return result


def worker(task: str, data: str, n: int, threads: int, repeats: int) -> None:
    if task == "gemm":
        print(json.dumps(gemm_rates(threads)))
        return
    x = dataset(data, n)
    runners = {"sidkit": run_sidkit, "faiss": run_faiss, "semantic-id": run_semantic_id}
    print(json.dumps(runners[task](x, threads, repeats)))


def summarize(results: list[dict[str, Any]]) -> list[str]:
    lines = ["| data | N | threads | fit s sidkit (CPU) | fit s faiss (CPU) | fit ratio wall (CPU) | "
             "encode items/s sidkit | encode items/s faiss | encode ratio wall (CPU) | MSE sidkit | MSE faiss | "
             "load average |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    keys = sorted({(r["data"], r["n"], r["threads"]) for r in results if r["task"] == "sidkit"},
                  key=lambda key: (DATASETS.index(key[0]), key[1], key[2]))
    for data, n, threads in keys:
        pairs = _pairs(results, data, n, threads)
        if not pairs:
            continue
        med = statistics.median

        def ratio(field: str, pairs: list[tuple[dict[str, Any], dict[str, Any]]] = pairs) -> float:
            return statistics.median(s[field] / f[field] for s, f in pairs)

        s_fit, f_fit = med(s["fit_wall"] for s, _ in pairs), med(f["fit_wall"] for _, f in pairs)
        s_fit_cpu, f_fit_cpu = med(s["fit_cpu"] for s, _ in pairs), med(f["fit_cpu"] for _, f in pairs)
        s_enc, f_enc = med(n / s["encode_wall"] for s, _ in pairs), med(n / f["encode_wall"] for _, f in pairs)
        loads = [value for s, f in pairs for value in (*s["load"], *f["load"])]
        lines.append(
            f"| {data} | {n:,} | {threads} | {s_fit:.2f} ({s_fit_cpu:.2f}) | {f_fit:.2f} ({f_fit_cpu:.2f}) | "
            f"**{ratio('fit_wall'):.2f}** ({ratio('fit_cpu'):.2f}) | {s_enc:,.0f} | {f_enc:,.0f} | "
            f"**{1 / ratio('encode_wall'):.2f}** ({1 / ratio('encode_cpu'):.2f}) | {pairs[0][0]['mse']:.4f} | "
            f"{pairs[0][1]['mse']:.4f} | {min(loads):.1f} to {max(loads):.1f} |")
    lines += ["", "fit ratio: sidkit's time / faiss's (below 1: sidkit faster); encode ratio: sidkit's items/s / "
              "faiss's (above 1: sidkit faster); both the median over rounds of the ratio within a round."]
    return lines


def work_lines(results: list[dict[str, Any]]) -> list[str]:
    lines = ["| data | N | method | training rows | seeding rows per level | Lloyd iterations per level | "
             "scoring passes per level | refinement rounds |", "|---|---:|---|---:|---|---|---|---:|"]
    seen = set()
    for r in results:
        key = (r["data"], r["n"], r["task"])
        if r["task"] == "semantic-id" or key in seen:
            continue
        seen.add(key)
        w = r["work"]
        lines.append(f"| {r['data']} | {r['n']:,} | {r['task']}{' (bfloat16 Lloyd)' if w['bfloat16'] else ''} | "
                     f"{w['training_rows']:,} | {w['seeding_rows']} | {w['lloyd_iterations']} | "
                     f"{w['assignment_passes']} | {w['refine_rounds']} |")
    return lines


def _pairs(results: list[dict[str, Any]], data: str, n: int,
           threads: int) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(sidkit, faiss) measurements of the same round."""
    mine = [r for r in results if (r["task"], r["data"], r["n"], r["threads"]) == ("sidkit", data, n, threads)]
    theirs = [r for r in results if (r["task"], r["data"], r["n"], r["threads"]) == ("faiss", data, n, threads)]
    return list(zip(mine, theirs, strict=False))


def _read_results(path: str | None) -> dict[tuple[Any, ...], dict[str, Any]]:
    """Measurements a previous run of the same command appended to ``path``, by (task, data, N, threads, round)."""
    if path is None or not os.path.exists(path):
        return {}
    with open(path, encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle if line.strip()]
    return {(r["task"], r["data"], r["n"], r["threads"], r["round"]): r for r in rows}


def _append_result(path: str | None, result: dict[str, Any]) -> None:
    if path is not None:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(result) + "\n")
            handle.flush()
            os.fsync(handle.fileno())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[20000, 100000, 500000])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--data", nargs="+", default=list(DATASETS), choices=DATASETS)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3, help="encode timings per fit (fastest kept)")
    parser.add_argument("--semantic-id", action="store_true", help="also semantic-id, once per data set at the "
                        "smallest size (10 sklearn inits x up to 100 iterations: tens of minutes)")
    parser.add_argument("--json", help="write every measurement to this file")
    parser.add_argument("--results", help="append each measurement to this JSON-lines file as it finishes, and "
                        "skip the ones it already holds (a killed run resumes where it stopped)")
    parser.add_argument("--worker", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        task, data, n, threads, repeats = args.worker
        worker(task, data, int(n), int(threads), int(repeats))
        return 0
    print(f"command: .venv/bin/python benchmarks/bench_rq_kmeans.py {' '.join(argv or sys.argv[1:])}".rstrip())
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the start", flush=True)
    done = _read_results(args.results)
    results: list[dict[str, Any]] = []
    rates: dict[int, dict[str, float]] = {}

    def run(task: str, data: str, n: int, threads: int, round_: int) -> dict[str, Any]:
        key = (task, data, n, threads, round_)
        if key in done:
            return done[key]
        result = measure(task, data, n, threads, args.repeats)
        result["round"] = round_
        _append_result(args.results, result)
        return result

    for round_ in range(args.rounds):
        for threads in args.threads:
            gemm = run("gemm", "public", 0, threads, round_)
            rates[threads] = {k: max(v, rates.get(threads, {}).get(k, 0.0)) for k, v in gemm.items()
                              if isinstance(v, float) and k not in ("task", "data", "n", "threads", "round")}
        for data in args.data:
            for n in args.sizes:
                for threads in args.threads:
                    order = ("sidkit", "faiss") if (round_ + n // 1000 + threads) % 2 == 0 else ("faiss", "sidkit")
                    for task in order:
                        results.append(run(task, data, n, threads, round_))
                        r = results[-1]
                        print(f"round {round_} {task:6s} {data} {n:,} x{threads}: fit {r['fit_wall']:.2f} s "
                              f"({r['fit_cpu']:.2f} CPU), encode {n / r['encode_wall']:,.0f}/s "
                              f"({r['encode_cpu']:.2f} s CPU), MSE {r['mse']:.4f}, load {r['load'][0]:.1f}",
                              flush=True)
    if args.semantic_id:
        for data in args.data:
            results.append(measure("semantic-id", data, min(args.sizes), 1, 1))
            r = results[-1]
            print(f"semantic-id {data} {min(args.sizes):,}: fit {r['fit_wall']:.1f} s, MSE {r['mse']:.4f}", flush=True)
    print()
    print("\n".join(summarize(results)))
    print()
    print("\n".join(work_lines(results)))
    for threads, rate in sorted(rates.items()):
        print(f"\nGEMM (4096 x 384) x (384 x 256), {threads} thread(s), best of the rounds: "
              + ", ".join(f"{name} {value:.0f} GFLOP/s" for name, value in rate.items()))
    for r in results:
        if r["task"] == "semantic-id":
            print(f"semantic-id RQKMeans on {r['data']} {r['n']:,}: MSE {r['mse']:.4f}, fit {r['fit_wall']:.1f} s")
    print(f"load average at the end {os.getloadavg()[0]:.1f}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump({"results": results, "gemm": rates}, handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
