"""Which O_pi / K_eff estimator to trust: candidates against exact answers and against very many draws.

Part 1, constructed cases (``sidkit.diagnostics.overlap_reference``: per-item noise distributions
known exactly, so K_eff is known without sampling): disjoint codes, coincident codes, infinite
noise (shared codes, and a prefix per item), a prefix per item that stays with probability 0.7 or
0.3, a level whose codes scatter. For each, at S draws per item over several seeds:

- the plug-in Bhattacharyya estimate (Omega_ab = sum_m sqrt(M_am M_bm) on empirical rows), its
  delete-one-draw jackknife correction and a split-sample (Richardson) extrapolation 2 K(S) - K(S/2),
  all against the exact Bhattacharyya K_eff;
- sidkit's agreement estimator (``OverlapCounts``), against the exact agreement K_eff, with its
  jackknife standard error and the share of runs whose 95% interval holds the exact value.

Part 2 (with ``--data DIR``): a 3 x 64 tokenizer (``--method``, RQ-KMeans by default; neural ones
trained as ``sidkit compare`` trains them) on the dataset's embeddings, every level and depth,
the default sweep plus rho = 2 and 1000: K_eff at the default 8 draws against a reference run with
``--reference-samples`` draws (512), for the plug-in Bhattacharyya and the agreement estimator.

Run (each about 5 minutes with ML-100K on one thread):
    .venv/bin/python benchmarks/overlap_estimators.py --data runs/ml-100k --threads 1
    .venv/bin/python benchmarks/overlap_estimators.py --data runs/ml-100k --method drq-vae --seeds 0 --threads 1
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from sidkit.diagnostics.overlap import noise_sigma, symbol_keys
from sidkit.diagnostics.overlap_counts import OverlapCounts
from sidkit.diagnostics.overlap_reference import CASES
from sidkit.ids import SemanticIds
from sidkit.report.tables import markdown_table


def bhattacharyya_plugin(symbols: np.ndarray, target: np.ndarray) -> float:
    """K_eff = 1 / sum_m (sum_a pi_a sqrt(M^_am))^2 with M^ the empirical rows of (S, N) draws."""
    samples, n = target.shape
    _, inverse, counts = np.unique(symbols, return_inverse=True, return_counts=True)
    keys, pair_counts = np.unique(np.stack([np.tile(inverse.reshape(-1), samples), target.reshape(-1)]),
                                  axis=1, return_counts=True)
    source, column = keys
    values = counts[source] / n * np.sqrt(pair_counts / (samples * counts[source]))
    _, column_index = np.unique(column, return_inverse=True)
    sums = np.bincount(column_index.reshape(-1), weights=values)
    return 1.0 / float(sums @ sums)


def bhattacharyya_jackknife(symbols: np.ndarray, target: np.ndarray) -> float:
    samples = target.shape[0]
    whole = bhattacharyya_plugin(symbols, target)
    replicates = [bhattacharyya_plugin(symbols, np.delete(target, s, axis=0)) for s in range(samples)]
    return samples * whole - (samples - 1) * float(np.mean(replicates))


def bhattacharyya_richardson(symbols: np.ndarray, target: np.ndarray) -> float:
    """Bias taken as c / S: 2 K(S) - K(S / 2), K(S / 2) averaged over the two halves of the draws."""
    half = 0.5 * (bhattacharyya_plugin(symbols, target[0::2]) + bhattacharyya_plugin(symbols, target[1::2]))
    return 2 * bhattacharyya_plugin(symbols, target) - half


def agreement(symbols: np.ndarray, target: np.ndarray) -> tuple[float, float]:
    estimate = OverlapCounts(target.shape[0]).add(symbols, target).estimate()
    return estimate.effective_size, estimate.effective_size_se


def percent(value: float) -> str:
    return f"{100 * value:+.1f}%"


def constructed_cases(samples: int, seeds: int) -> list[list[str]]:
    rows = []
    for name, build in CASES.items():
        model = build()
        exact = model.exact().effective_size
        exact_b = model.exact_bhattacharyya_size()
        plug, jack, rich, agree, errors, covered = [], [], [], [], [], 0
        for seed in range(seeds):
            target = model.draw(samples, seed)
            plug.append(bhattacharyya_plugin(model.symbols, target))
            jack.append(bhattacharyya_jackknife(model.symbols, target))
            rich.append(bhattacharyya_richardson(model.symbols, target))
            value, error = agreement(model.symbols, target)
            agree.append(value)
            errors.append(error)
            covered += abs(value - exact) <= 1.96 * error + 1e-9 * exact
        rows.append([name, f"{exact_b:.2f}", percent(np.mean(plug) / exact_b - 1), percent(np.mean(jack) / exact_b - 1),
                     percent(np.mean(rich) / exact_b - 1), f"{exact:.2f}", percent(np.mean(agree) / exact - 1),
                     f"{100 * np.std(agree, ddof=1) / exact:.1f}%", f"{100 * np.mean(errors) / exact:.1f}%",
                     f"{covered}/{seeds}"])
        print(" | ".join(rows[-1]), flush=True)
    return rows


def realistic(data: Path, method: str, samples: int, reference_samples: int, seed: int) -> list[list[str]]:
    from sidkit.compare import CompareSettings, fit_method
    from sidkit.data.dataset import load_dataset
    from sidkit.data.pairs import BehaviourPairs

    x = np.ascontiguousarray(load_dataset(data).catalog.embeddings, dtype=np.float32)
    no_pairs = BehaviourPairs(np.zeros((0, 2), dtype=np.int64), np.zeros((0, 2), dtype=np.int64), 0, 5)
    # As `sidkit compare` fits it: neural tokenizers until early stopping.
    tokenizer = fit_method(method, x, no_pairs, CompareSettings(levels=3, codebook_size=64), seed=seed)
    ids = tokenizer.encode(x)
    sets = [("level", level) for level in range(3)] + [("depth", depth) for depth in range(1, 4)]
    rows = []
    for rho in (0.02, 0.05, 0.1, 0.2, 0.5, 2.0, 1000.0):
        sigma = noise_sigma(x, rho)
        runs = {}
        for draws in (samples, reference_samples):
            generator = torch.Generator().manual_seed(seed + draws)
            targets = {key: np.empty((draws, len(x)), dtype=np.int64) for key in sets}
            for s in range(draws):
                noise = torch.randn(x.shape, generator=generator) * sigma
                moved = SemanticIds(tokenizer.encode(torch.from_numpy(x) + noise).codes, ids.sizes)
                for kind, index in sets:
                    targets[(kind, index)][s] = symbol_keys(moved, kind, index)
            runs[draws] = targets
        for kind, index in sets:
            source = symbol_keys(ids, kind, index)
            few, many = runs[samples][(kind, index)], runs[reference_samples][(kind, index)]
            plug_few, plug_many = bhattacharyya_plugin(source, few), bhattacharyya_plugin(source, many)
            (value, error), (reference, reference_error) = agreement(source, few), agreement(source, many)
            rows.append([f"{rho:g}", f"{kind} {index}", f"{plug_few:.1f}", f"{plug_many:.1f}",
                         f"{value:.1f} ± {1.96 * error:.1f}", f"{reference:.1f} ± {1.96 * reference_error:.1f}",
                         percent(value / reference - 1)])
            print(" | ".join(rows[-1]), flush=True)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--seeds", type=int, default=20, help="seeds per constructed case (0: skip part 1)")
    parser.add_argument("--data", type=Path, help="dataset directory with embeddings.npy (part 2)")
    parser.add_argument("--reference-samples", type=int, default=512)
    parser.add_argument("--method", default="rq-kmeans", help="tokenizer of part 2 (a `sidkit compare` spec)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    if args.seeds > 0:  # --seeds 0 runs part 2 only
        print(f"## Constructed cases: {args.samples} draws per item, {args.seeds} seeds\n")
        headers = ["case", "exact K_eff (Bhattacharyya)", "plug-in bias", "jackknife bias", "Richardson bias",
                   "exact K_eff (agreement)", "agreement bias", "agreement sd", "mean SE", "95% interval holds"]
        print("\n".join(markdown_table(headers, constructed_cases(args.samples, args.seeds))))
    if args.data is not None:
        print(f"\n## {args.method} 3 x 64 on {args.data.name}: {args.samples} vs {args.reference_samples} draws\n")
        headers = ["rho", "symbols", f"plug-in S={args.samples}", f"plug-in S={args.reference_samples}",
                   f"agreement S={args.samples} (95%)", f"agreement S={args.reference_samples} (95%)",
                   f"S={args.samples} vs S={args.reference_samples}"]
        rows = realistic(args.data, args.method, args.samples, args.reference_samples, 0)
        print("\n".join(markdown_table(headers, rows)))
    print(f"\n{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
