"""The tables of docs/diagnostics.md: `sidkit compare` with its defaults, over seeds, with 95% intervals.

Each seed is one full comparison (``run_comparison`` with ``CompareSettings(seed=s)``: neural
tokenizers train until early stopping, a second fit with seed s + 1 for stability), written to
``OUT/seed-S``. The tables give, per method, the mean over seeds and the half width of the 95%
Student-t interval over seeds; Monte Carlo errors of a single run (noise draws) are in each run's
summary.md. Also printed: per level and depth K_eff at the reference rho, retention and AUC on all
and on novel held-out pairs, training epochs, and times.

Run (one thread; ML-100K about 4 minutes per seed, ML-1M about 12):
    .venv/bin/python benchmarks/diagnostics_tables.py --data runs/ml-100k --out runs/tables-100k --seeds 0 1 2 3 4
    .venv/bin/python benchmarks/diagnostics_tables.py --data runs/ml-1m --out runs/tables-1m --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from sidkit.compare import DEFAULT_METHODS, CompareSettings, ComparisonResult, run_comparison
from sidkit.ranking.metrics import mean_ci
from sidkit.report.summary import COLUMNS
from sidkit.report.tables import markdown_table


def cell(values: Sequence[float | None], fmt: str) -> str:
    present = [float(v) for v in values if v is not None]
    if not present:
        return "-"
    summary = mean_ci(present)
    if summary.half_width is None:
        return fmt.format(summary.mean)
    return f"{fmt.format(summary.mean)} ± {fmt.format(summary.half_width)}"


def summary_table(runs: Sequence[ComparisonResult]) -> list[str]:
    columns = [c for c in COLUMNS if c.key not in ("method", "fit_seconds", "epochs")]
    methods = [m.method for m in runs[0].methods]
    rows = []
    for method in methods:
        per_seed = [next(r for r in run.summary_rows() if r["method"] == method) for run in runs]
        rows.append([method, *[cell([row[c.key] for row in per_seed], c.fmt) for c in columns]])
    return markdown_table(["method", *[c.title() for c in columns]], rows)


def symbol_table(runs: Sequence[ComparisonResult]) -> list[str]:
    rho = runs[0].settings.reference_rho
    first = runs[0].methods[0].overlap.at(rho)
    sets = [(e.by, e.index) for e in (*first.levels, *first.depths)]
    rows = []
    for method in [m.method for m in runs[0].methods]:
        results = [run.method(method) for run in runs]
        for by, index in sets:
            entries = [result.overlap.at(rho).get(by, index) for result in results]
            analytic = [None if r.analytic is None or by != "level" else r.analytic.at(rho).get(by, index)
                        for r in results]
            rows.append([method, f"{by} {index}", str(entries[0].stats.nominal_size),
                         cell([1 / e.stats.simpson for e in entries], "{:.1f}"),
                         cell([e.stats.effective_size for e in entries], "{:.1f}"),
                         f"{sum(1.96 * e.stats.effective_size_se for e in entries) / len(entries):.1f}",
                         cell([None if a is None else a.stats.effective_size for a in analytic], "{:.1f}"),
                         cell([None if a is None else a.onset_rho for a in analytic], "{:.2f}"),
                         cell([e.stats.distribution_factor for e in entries], "{:.2f}"),
                         cell([e.stats.geometry_factor for e in entries], "{:.2f}"),
                         cell([e.flip_rate for e in entries], "{:.3f}"),
                         cell([e.flip_to_held for e in entries], "{:.2f}")])
    return markdown_table(["method", "symbols", "K_nom", "1/sum pi^2", "K_eff ↑", "MC 95% half width (mean)",
                           "K_eff analytic", "analytic onset rho", "DP x ↓", "GP x ↓", "flip ↓", "flips to held"],
                          rows)


def retrieval_table(runs: Sequence[ComparisonResult]) -> list[str]:
    cutoffs = runs[0].settings.cutoffs
    rows = []
    for method in [m.method for m in runs[0].methods]:
        results = [run.method(method) for run in runs]
        for subset in ("all", "novel"):
            rets = [r.retention if subset == "all" else r.retention_novel for r in results]
            aucs = [r.auc if subset == "all" else r.auc_novel for r in results]
            rows.append([method, subset, *[cell([None if x is None else x.at(k) for x in rets], "{:.3f}")
                                           for k in cutoffs],
                         cell([None if a is None else a.auc for a in aucs], "{:.3f}")])
    for subset in ("all", "novel"):
        originals = [(r.retention if subset == "all" else r.retention_novel) for r in runs[0].methods[:1]]
        if originals[0] is not None:
            rows.append(["(HR@K original)", subset, *[f"{v:.4f}" for v in originals[0].original.hit_rates], "-"])
    return markdown_table(["method", "pairs", *[f"ret@{k} ↑" for k in cutoffs], "SID AUC ↑"], rows)


def training_table(runs: Sequence[ComparisonResult]) -> list[str]:
    rows = []
    for method in [m.method for m in runs[0].methods]:
        results = [run.method(method) for run in runs]
        trained = [r.training for r in results]
        stopped = sum(t is not None and t.stopped_early for t in trained)
        rows.append([method, cell([r.fit_seconds for r in results], "{:.1f}"),
                     cell([r.diagnose_seconds for r in results], "{:.1f}"),
                     cell([r.stability_seconds for r in results], "{:.1f}"),
                     cell([None if t is None else t.epochs for t in trained], "{:.0f}"),
                     "-" if trained[0] is None else f"{stopped}/{len(trained)}"])
    return markdown_table(["method", "fit s", "diagnostics s", "stability s (second fit)", "epochs",
                           "stopped early"], rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", default=",".join(DEFAULT_METHODS))
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    runs = []
    for seed in args.seeds:
        started = time.perf_counter()
        run = run_comparison(args.data, args.methods.split(","), args.out / f"seed-{seed}", CompareSettings(seed=seed),
                             report=seed == args.seeds[0], log=print)
        print(f"seed {seed}: {time.perf_counter() - started:.0f} s wall", flush=True)
        runs.append(run)
    first = runs[0]
    header = (f"{args.data.name}: {first.num_items:,} items x {first.dim}, {first.settings.levels} x "
              f"{first.settings.codebook_size} codes, behaviour pairs {first.train_pairs:,} train / "
              f"{first.heldout_pairs:,} held out ({first.novel_pairs:,} novel); seeds {args.seeds}; "
              f"rho = {first.settings.reference_rho}, {first.settings.samples} noise draws; mean ± 95% t "
              "interval over seeds")
    sections: dict[str, list[str]] = {"summary": summary_table(runs), "symbols": symbol_table(runs),
                                      "retrieval": retrieval_table(runs), "training": training_table(runs)}
    text = [f"# {header}", ""]
    for name, lines in sections.items():
        text += [f"## {name}", "", *lines, ""]
    print("\n".join(text))
    (args.out / "tables.md").write_text("\n".join(text) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
