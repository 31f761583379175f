"""One thread against two, on an idle core pair and with another process loading one core.

Three workloads, each in a fresh process per measurement (so that thread settings and the OpenMP
runtime start clean):

- ``overlap``: ``expected_overlap`` of a 3 x 256 RQ-KMeans on N x 64 items, 8 noise draws, levels
  and depths (mostly encoding N x 9 rows);
- ``encode``: ``RQKMeans.encode`` of N x 384 unit vectors, 3 x 256 codes;
- ``rq-vae``: RQ-VAE training epochs on the MovieLens-100K MiniLM embeddings at sidkit's defaults
  (3 x 64 codes, batch 256): CPU time (fit(1 + E) - fit(1)) / E, wall time the median epoch of
  fit(1 + E) as the training loop times it.

Each is run with 1 and 2 threads, with sidkit's thread policy (OpenMP threads sleep when idle,
``sidkit.threads``) and, for comparison, with GNU OpenMP's default spinning (``GOMP_SPINCOUNT=300000``,
what torch does without sidkit's policy) and, for RQ-VAE, with sidkit's policy but every training
step on all threads (``parallel-steps``: what sidkit did before small steps ran on one thread,
``sidkit.tokenizers.training.PARALLEL_STEP_MACS``); and each once on the machine as it is and once with a
second process spinning on one core (``--loader``). Rounds interleave every variant, so that outside
load hits all alike; the medians over rounds are reported, with wall and CPU time, and the load
average before and after each measurement.

    .venv/bin/python benchmarks/bench_threads.py                          # all three, 3 rounds
    .venv/bin/python benchmarks/bench_threads.py --workloads encode --rounds 5
    .venv/bin/python benchmarks/bench_threads.py --workloads rq-vae --policies sidkit parallel-steps
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from busy import busy_core

WORKLOADS = ("overlap", "encode", "rq-vae")
POLICIES = ("sidkit", "spin", "parallel-steps")
POLICY_NAMES = {"sidkit": "sidkit (idle threads sleep)", "spin": "OpenMP default (spin)",
                "parallel-steps": "sidkit, training steps on all threads"}


@dataclass(frozen=True)
class Measurement:
    workload: str
    threads: int
    policy: str
    loaded: bool
    wall_s: float
    cpu_s: float
    load_before: float
    load_after: float


def child(workload: str, threads: int, size: int) -> dict[str, float]:
    """Run one measurement in this (fresh) process; returns wall and CPU seconds of the timed part."""
    import sidkit  # noqa: F401  (first: the wait policy must be in the environment before torch loads)
    from sidkit.threads import set_threads

    set_threads(threads)
    import numpy as np

    if workload == "rq-vae":
        import warnings

        from sidkit.tokenizers import training
        from sidkit.tokenizers.rq_vae import RQVAE

        if os.environ.get("SIDKIT_BENCH_PARALLEL_STEPS") == "1":
            training.PARALLEL_STEP_MACS = 0  # every step on all threads: the policy before small steps ran on one
        sys.path.insert(0, os.path.dirname(__file__))
        from bench_rq_vae import movielens

        x = np.ascontiguousarray(movielens(), dtype=np.float32)
        epochs = size

        def fit(count: int) -> tuple[float, float]:
            """(median wall seconds of an epoch after the first, CPU seconds of the whole fit)."""
            model = RQVAE(3, 64, epochs=count, validation_share=0.0, patience=None, progress=False, seed=0)
            cpu = time.process_time()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                model.fit(x)
            assert model.history is not None
            return statistics.median(r.seconds for r in model.history.epochs[1:] or model.history.epochs), \
                time.process_time() - cpu

        fit(1)  # warm-up: the first fit in a process pays one-time checks and allocations
        short, long = fit(1), fit(1 + epochs)
        # Wall: the median epoch of the long fit as timed by the training loop (a difference of two
        # fits' wall times is mostly the neighbours' noise on a loaded machine); CPU: the difference.
        return {"wall_s": long[0], "cpu_s": (long[1] - short[1]) / epochs}

    from sidkit.tokenizers.rq_kmeans import RQKMeans

    rng = np.random.default_rng(0)
    if workload == "overlap":
        from sidkit.diagnostics.overlap import expected_overlap

        centers = rng.normal(size=(256, 64)).astype(np.float32)
        x = (centers[rng.integers(0, 256, size)] + rng.normal(scale=0.5, size=(size, 64))).astype(np.float32)
        model = RQKMeans(3, 256, seed=0).fit(x[:65536])

        def run() -> object:
            return expected_overlap(model, x, 0.1, 8, by=("level", "depth"), seed=0)
    else:
        sys.path.insert(0, os.path.dirname(__file__))
        from bench_rq_kmeans import mixture

        x = mixture(size)
        model = RQKMeans(3, 256, seed=0).fit(x[:65536])
        model.encode(x[:20000])

        def run() -> object:
            return model.encode(x)

    wall, cpu = time.perf_counter(), time.process_time()
    run()
    return {"wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu}


def measure(workload: str, threads: int, policy: str, loaded: bool, size: int) -> Measurement:
    env = dict(os.environ)
    env.pop("OMP_NUM_THREADS", None)
    env.pop("OMP_WAIT_POLICY", None)
    env.pop("GOMP_SPINCOUNT", None)
    if policy == "spin":  # GNU OpenMP's default spin before sleeping, which sidkit's policy turns off
        env["GOMP_SPINCOUNT"] = "300000"
    if policy == "parallel-steps":  # sidkit's policy, but RQ-VAE training steps on every thread (as before)
        env["SIDKIT_BENCH_PARALLEL_STEPS"] = "1"
    with busy_core(loaded):
        before = os.getloadavg()[0]
        out = subprocess.run([sys.executable, __file__, "--child", workload, str(threads), str(size)],
                             check=True, capture_output=True, text=True, env=env).stdout
        after = os.getloadavg()[0]
    result = json.loads(out.strip().splitlines()[-1])
    return Measurement(workload, threads, policy, loaded, result["wall_s"], result["cpu_s"], before, after)


def table(rows: list[Measurement]) -> str:
    lines = ["| workload | loader | policy | wall 1 thread | wall 2 threads | wall 2 / 1 | CPU 1 thread | "
             "CPU 2 threads | CPU 2 / 1 | load average during |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---|"]
    keys = sorted({(r.workload, r.loaded, r.policy) for r in rows}, key=lambda k: (WORKLOADS.index(k[0]), k[1],
                                                                                  POLICIES.index(k[2])))
    for workload, loaded, policy in keys:
        group = [r for r in rows if (r.workload, r.loaded, r.policy) == (workload, loaded, policy)]
        one = [r for r in group if r.threads == 1]
        two = [r for r in group if r.threads == 2]
        if not one or not two:
            continue
        w1, w2 = (statistics.median(r.wall_s for r in g) for g in (one, two))
        c1, c2 = (statistics.median(r.cpu_s for r in g) for g in (one, two))
        loads = [value for r in group for value in (r.load_before, r.load_after)]
        lines.append(f"| {workload} | {'one core busy' if loaded else 'none'} | "
                     f"{POLICY_NAMES[policy]} | "
                     f"{w1:.3f} | {w2:.3f} | **{w2 / w1:.2f}** | {c1:.3f} | {c2:.3f} | **{c2 / c1:.2f}** | "
                     f"{min(loads):.1f} to {max(loads):.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=WORKLOADS)
    parser.add_argument("--policies", nargs="+", default=list(POLICIES), choices=POLICIES)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--overlap-items", type=int, default=200_000)
    parser.add_argument("--encode-items", type=int, default=200_000)
    parser.add_argument("--rq-vae-epochs", type=int, default=10)
    parser.add_argument("--no-loader", action="store_true", help="skip the runs with a core-loading process")
    parser.add_argument("--json", help="also write every measurement to this file")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child[0], int(args.child[1]), int(args.child[2]))))
        return 0
    sizes = {"overlap": args.overlap_items, "encode": args.encode_items, "rq-vae": args.rq_vae_epochs}
    print(f"command: .venv/bin/python benchmarks/bench_threads.py {' '.join(argv or sys.argv[1:])}".rstrip())
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the start")
    rows: list[Measurement] = []
    variants = [(w, t, p, loaded) for loaded in ((False,) if args.no_loader else (False, True))
                for w in args.workloads for p in args.policies for t in (1, 2)
                if p != "parallel-steps" or w == "rq-vae"]
    for round_ in range(args.rounds):
        for workload, threads, policy, loaded in variants:
            row = measure(workload, threads, policy, loaded, sizes[workload])
            rows.append(row)
            print(f"round {round_}: {row}", flush=True)
    print()
    print(table(rows))
    print(f"\nload average at the end {os.getloadavg()[0]:.1f}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump([row.__dict__ for row in rows], handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
