"""What RQ-KMeans's Lloyd tolerance and refinement rounds buy: fit CPU seconds against training MSE.

Fits 3 x 256 RQ-KMeans on the two 20k mixtures of ``bench_rq_kmeans.py`` with each (tol, refine_passes)
setting, one torch thread, the settings interleaved within every round (the same load for all), and
prints the median CPU seconds of a fit, the MSE of the items fitted on (float64) and the work done.

    .venv/bin/python benchmarks/bench_rq_kmeans_settings.py                 # 3 rounds, 20,000 items
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

# isort: off
import sidkit  # noqa: F401  (first: the thread policy must be in place before torch loads)
# isort: on
from sidkit.threads import set_threads
from sidkit.tokenizers.rq_kmeans import RQKMeans

sys.path.insert(0, os.path.dirname(__file__))
from bench_rq_kmeans import DATASETS, dataset, mse

SETTINGS = ((1e-4, 3), (1e-4, 0), (1e-3, 0), (1e-3, 8))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    set_threads(1)
    print(f"command: .venv/bin/python benchmarks/bench_rq_kmeans_settings.py {' '.join(argv or sys.argv[1:])}".rstrip())
    print(f"1 thread, load average {os.getloadavg()[0]:.1f} at the start", flush=True)
    rows = []
    for name in DATASETS:
        x = dataset(name, args.items)
        cpu: dict[tuple[float, int], list[float]] = {s: [] for s in SETTINGS}
        result: dict[tuple[float, int], tuple[float, object]] = {}
        for round_ in range(args.rounds):
            order = SETTINGS if round_ % 2 == 0 else SETTINGS[::-1]
            for tol, refine in order:
                started = time.process_time()
                model = RQKMeans(3, 256, tol=tol, refine_passes=refine, seed=0).fit(x)
                cpu[(tol, refine)].append(time.process_time() - started)
                result[(tol, refine)] = (mse(x, model.decode(model.encode(x))), model.fit_work)
        for setting in SETTINGS:
            error, work = result[setting]
            rows.append((name, *setting, statistics.median(cpu[setting]), error, work))
    print("\n| data | tol | refine_passes | fit CPU s (median) | MSE | Lloyd iterations per level | "
          "refinement rounds |")
    print("|---|---:|---:|---:|---:|---|---:|")
    for name, tol, refine, seconds, error, work in rows:
        print(f"| {name} | {tol:g} | {refine} | {seconds:.2f} | {error:.4f} | {list(work.lloyd_iterations)} | "
              f"{work.refine_rounds} |")
    print(f"\nload average at the end {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
