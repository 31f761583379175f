"""The five tokenizers of the DRQ paper on one dataset: one markdown table, and the paper's claims checked.

Methods: RQ-KMeans, RQ-VAE, RQP-VAE, DRQ-VAE, DRQ-VAE+CL, all 3 levels, fitted on every item.
Columns: reconstruction MSE (mean over items of ||x - decode(encode(x))||^2, input space), per-level
perplexity and active codes over all items, unique ratio of full SIDs, SID-embedding AUC (docs/diagnostics.md,
Retrieval: cosine of quantized vectors, held-out behaviour pairs against as many random pairs), and
the wall and CPU time of fit (CPU time is the work itself when the machine is shared; with one torch
thread it is close to the wall time on an idle machine). With several seeds, each cell is the mean
(MSE and AUC also +- the standard deviation over seeds).

    .venv/bin/python benchmarks/compare_tokenizers.py --dataset ml-100k --seeds 0 1 2 --threads 1
    .venv/bin/python benchmarks/compare_tokenizers.py --dataset synthetic-100k --threads 1
    .venv/bin/python benchmarks/compare_tokenizers.py --dataset ml-100k --seeds 0 1 2 --precision float32

Datasets: ``ml-100k`` is MovieLens-100K with the bundled MiniLM embeddings (1,682 x 384, 3 x 64
codes); ``synthetic-100k`` is sidkit's synthetic catalog with 100,000 items x 64 and 2M
interactions (seed 0; 3 x 256 codes). Behaviour pairs: sidkit.data.pairs defaults (window 5, the
earliest 80% of positive events train, the rest are held out); DRQ-VAE+CL trains on the train split,
the AUC uses the held-out split only.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sidkit.data.pairs import BehaviourPairs, behaviour_pairs
from sidkit.diagnostics.basic import basic_diagnostics
from sidkit.diagnostics.retrieval import sid_embedding_auc
from sidkit.tokenizers.base import Tokenizer
from sidkit.tokenizers.drq import DRQVAE
from sidkit.tokenizers.rq_kmeans import RQKMeans
from sidkit.tokenizers.rq_vae import RQPVAE, RQVAE
from sidkit.tokenizers.training import training_dtype

METHODS = ("RQ-KMeans", "RQ-VAE", "RQP-VAE", "DRQ-VAE", "DRQ-VAE+CL")


@dataclass(frozen=True)
class Setup:
    """A dataset and the settings every method gets on it."""

    codes: int
    neural: dict[str, Any]  # training settings shared by the four neural methods


SETUPS = {
    # 1,682 items: about 6 steps per epoch, so many epochs; early stopping on 10% held-out items.
    "ml-100k": Setup(64, {"epochs": 300, "batch_size": 256, "patience": 20}),
    "synthetic-100k": Setup(256, {"epochs": 40, "batch_size": 1024, "patience": 5}),
}


@dataclass(frozen=True)
class Result:
    method: str
    seed: int
    mse: float
    perplexity: tuple[float, ...]
    active: tuple[int, ...]
    dead_level0: int
    unique_ratio: float
    auc: float
    seconds: float
    cpu_seconds: float
    epochs: int | None


def load(name: str) -> tuple[np.ndarray, BehaviourPairs]:
    """(N, D) float32 embeddings and behaviour pairs of a dataset."""
    if name == "ml-100k":
        from sidkit.data.movielens import load_movielens_100k
        from sidkit.embed import embed_texts

        dataset = load_movielens_100k()
        x = embed_texts(list(dataset.catalog.text), progress=False)
    else:
        from sidkit.data.synthetic import SyntheticConfig, generate_synthetic

        dataset = generate_synthetic(SyntheticConfig(items=100_000, users=20_000, interactions=2_000_000),
                                     progress=False)
        assert dataset.catalog.embeddings is not None
        x = dataset.catalog.embeddings
    return np.ascontiguousarray(x, dtype=np.float32), behaviour_pairs(dataset.interactions, dataset.catalog)


PRECISIONS = {"auto": None, "float32": False, "bfloat16": True}


def factories(setup: Setup, precision: str = "auto") -> dict[str, Callable[[], Tokenizer]]:
    k, neural = setup.codes, {**setup.neural, "progress": False, "bfloat16": PRECISIONS[precision]}
    return {
        "RQ-KMeans": lambda: RQKMeans(3, k),
        "RQ-VAE": lambda: RQVAE(3, k, **neural),
        "RQP-VAE": lambda: RQPVAE(3, k, **neural),
        "DRQ-VAE": lambda: DRQVAE(3, k, **neural),
        "DRQ-VAE+CL": lambda: DRQVAE(3, k, contrastive=True, **neural),
    }


def evaluate(method: str, tokenizer: Tokenizer, x: np.ndarray, pairs: BehaviourPairs, seed: int) -> Result:
    started, started_cpu = time.perf_counter(), time.process_time()
    if isinstance(tokenizer, DRQVAE) and tokenizer.contrastive:
        tokenizer.set_params(seed=seed).fit(x, pairs=pairs)
    else:
        tokenizer.set_params(seed=seed).fit(x)
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - started_cpu
    report = basic_diagnostics(tokenizer, x, progress=False)
    ids = tokenizer.encode(x)
    auc = sid_embedding_auc(tokenizer.quantized(ids), pairs.heldout, seed=0).auc
    levels = report.usage.levels
    history = getattr(tokenizer, "history", None)
    return Result(method, seed, report.reconstruction.mse, tuple(lv.perplexity for lv in levels),
                  tuple(lv.active for lv in levels), levels[0].dead, report.usage.sid.unique_ratio, auc,
                  seconds, cpu_seconds, None if history is None else len(history))


def table(results: list[Result], codes: int) -> str:
    lines = ["| method | recon MSE | perplexity L0 / L1 / L2 | active codes (of " + str(codes) + ") | unique ratio "
             "| SID-emb AUC | fit wall s | fit CPU s | epochs |", "|---|---|---|---|---|---|---|---|---|"]
    for method in METHODS:
        rows = [r for r in results if r.method == method]
        if not rows:
            continue
        epochs = "-" if rows[0].epochs is None else f"{statistics.mean(r.epochs or 0 for r in rows):.0f}"
        cells = [method, _mean_sd([r.mse for r in rows], 4),
                 " / ".join(f"{statistics.mean(r.perplexity[i] for r in rows):.1f}" for i in range(3)),
                 " / ".join(f"{statistics.mean(r.active[i] for r in rows):.0f}" for i in range(3)),
                 f"{statistics.mean(r.unique_ratio for r in rows):.3f}", _mean_sd([r.auc for r in rows], 4),
                 f"{statistics.mean(r.seconds for r in rows):.1f}",
                 f"{statistics.mean(r.cpu_seconds for r in rows):.1f}", epochs]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def claims(results: list[Result]) -> str:
    def mean(method: str, field: str, index: int | None = None) -> float:
        values = [getattr(r, field) if index is None else getattr(r, field)[index]
                  for r in results if r.method == method]
        return statistics.mean(values) if values else float("nan")

    dead_rq, dead_rqp = mean("RQ-VAE", "dead_level0"), mean("RQP-VAE", "dead_level0")
    ppl_rq, ppl_rqp = mean("RQ-VAE", "perplexity", 0), mean("RQP-VAE", "perplexity", 0)
    mse_rq, mse_drq = mean("RQ-VAE", "mse"), mean("DRQ-VAE", "mse")
    auc_drq, auc_cl = mean("DRQ-VAE", "auc"), mean("DRQ-VAE+CL", "auc")
    first = (dead_rqp == 0 and dead_rq > 0) or ppl_rqp > ppl_rq
    return "\n".join([
        f"- RQP-VAE vs RQ-VAE at level 0: dead codes {dead_rqp:.1f} vs {dead_rq:.1f}, perplexity {ppl_rqp:.1f} vs "
        f"{ppl_rq:.1f}: {'holds' if first else 'does not hold'}",
        f"- DRQ-VAE reconstructs better than RQ-VAE: MSE {mse_drq:.4f} vs {mse_rq:.4f}: "
        f"{'holds' if mse_drq < mse_rq else 'does not hold'}",
        f"- DRQ-VAE+CL has a higher SID-embedding AUC than DRQ-VAE: {auc_cl:.4f} vs {auc_drq:.4f}: "
        f"{'holds' if auc_cl > auc_drq else 'does not hold'}",
    ])


def _mean_sd(values: list[float], digits: int) -> str:
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=list(SETUPS), default="ml-100k")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    parser.add_argument("--precision", choices=list(PRECISIONS), default="auto",
                        help="training GEMMs of the neural methods (auto: bfloat16 where the CPU has it)")
    parser.add_argument("--json", type=Path, default=None, help="also write every result here")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    command = " ".join([".venv/bin/python benchmarks/compare_tokenizers.py", *sys.argv[1:]] if argv is None
                       else [".venv/bin/python benchmarks/compare_tokenizers.py", *argv])
    setup = SETUPS[args.dataset]
    x, pairs = load(args.dataset)
    print(f"command: {command}")
    print(f"data: {args.dataset}, {x.shape[0]:,} x {x.shape[1]}, 3 x {setup.codes} codes, {len(pairs.train):,} "
          f"train / {len(pairs.heldout):,} held-out pairs; torch threads {torch.get_num_threads()}, "
          f"load average {os.getloadavg()[0]:.1f}; neural settings {setup.neural}, precision {args.precision} "
          f"({training_dtype(PRECISIONS[args.precision], torch.device('cpu'))} here)", flush=True)
    print(f"content embeddings' own AUC on the same pairs: {sid_embedding_auc(x, pairs.heldout, seed=0).auc:.4f}")
    results = []
    for seed in args.seeds:
        for method, make in factories(setup, args.precision).items():
            if method in args.methods:
                results.append(evaluate(method, make(), x, pairs, seed))
                print(f"  {results[-1]}", file=sys.stderr, flush=True)
    print(table(results, setup.codes))
    print(claims(results))
    if args.json is not None:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
