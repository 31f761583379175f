"""The tables of docs/diagnostics.md: `sidkit compare` with its defaults, over seeds, with 95% intervals.

Each seed is one full comparison (``run_comparison`` with ``CompareSettings(seed=s)``: neural
tokenizers train until early stopping, a second fit with seed s + 1 for stability), written to
``OUT/seed-S``. The tables give, per method, the mean over seeds and the half width of the 95%
Student-t interval over seeds; Monte Carlo errors of a single run (noise draws) are in each run's
summary.md. Also printed: per level usage (active and dead codes), per level and depth K_eff at
the reference rho, retention and AUC on all and on novel held-out pairs, training epochs, and times.

Resumable: a seed whose ``OUT/seed-S/metrics.json`` exists is read back, not run again (a compare
run is swapped in whole when it finishes, so a killed run leaves no half-written seed). The tables
are built from those metrics.json files alone.

Run (one thread on a shared 2-core machine: ML-100K 4 to 8 minutes per seed, ML-1M 10 to 13):
    .venv/bin/python benchmarks/diagnostics_tables.py --data runs/ml-100k --out runs/tables-100k --seeds 0 1 2 3 4
    .venv/bin/python benchmarks/diagnostics_tables.py --data runs/ml-1m --out runs/tables-1m --seeds 0 1 2 3 4
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from sidkit.compare import DEFAULT_METHODS, METRICS_FILE, CompareSettings, run_comparison
from sidkit.io import write_text
from sidkit.ranking.metrics import mean_ci
from sidkit.report.summary import COLUMNS
from sidkit.report.tables import markdown_table

Run = dict[str, Any]


def cell(values: Sequence[float | None], fmt: str) -> str:
    present = [float(v) for v in values if v is not None]
    if not present:
        return "-"
    summary = mean_ci(present)
    if summary.half_width is None:
        return fmt.format(summary.mean)
    return f"{fmt.format(summary.mean)} ± {fmt.format(summary.half_width)}"


def method_names(runs: Sequence[Run]) -> list[str]:
    return [m["method"] for m in runs[0]["methods"]]


def method(run: Run, name: str) -> Run:
    return next(m for m in run["methods"] if m["method"] == name)


def at_reference(reports: Sequence[Run] | None, rho: float) -> Run | None:
    """The overlap report of one method at the reference rho (None where it was not computed)."""
    return next((r for r in reports or () if r["rho"] == rho), None)


def entry(report: Run | None, by: str, index: int) -> Run | None:
    if report is None:
        return None
    return next((e for e in report[f"{by}s"] if e["index"] == index), None)


def summary_table(runs: Sequence[Run]) -> list[str]:
    columns = [c for c in COLUMNS if c.key not in ("method", "fit_seconds", "epochs")]
    rows = []
    for name in method_names(runs):
        per_seed = [next(r for r in run["summary"] if r["method"] == name) for run in runs]
        rows.append([name, *[cell([row[c.key] for row in per_seed], c.fmt) for c in columns]])
    return markdown_table(["method", *[c.title() for c in columns]], rows)


def usage_table(runs: Sequence[Run]) -> list[str]:
    """Per level: active codes, the range of dead codes over seeds, perplexity and Gini."""
    rows = []
    for name in method_names(runs):
        results = [method(run, name) for run in runs]
        for level in range(len(results[0]["usage"])):
            usage = [r["usage"][level] for r in results]
            dead = [u["dead"] for u in usage]
            rows.append([name, str(level), str(usage[0]["size"]), cell([u["active"] for u in usage], "{:.1f}"),
                         f"{min(dead)} to {max(dead)}", cell([u["perplexity"] for u in usage], "{:.1f}"),
                         cell([u["gini"] for u in usage], "{:.3f}")])
    return markdown_table(["method", "level", "codes", "active ↑", "dead (min to max over seeds)", "perplexity ↑",
                           "Gini ↓"], rows)


def symbol_table(runs: Sequence[Run]) -> list[str]:
    rho = runs[0]["settings"]["reference_rho"]
    first = at_reference(runs[0]["methods"][0]["overlap"], rho)
    assert first is not None
    sets = [("level", e["index"]) for e in first["levels"]] + [("depth", e["index"]) for e in first["depths"]]
    rows = []
    for name in method_names(runs):
        results = [method(run, name) for run in runs]
        for by, index in sets:
            entries = [entry(at_reference(r["overlap"], rho), by, index) for r in results]
            analytic = [entry(at_reference(r["analytic_overlap"], rho), by, index) if by == "level" else None
                        for r in results]
            known = [e for e in entries if e is not None]
            rows.append([name, f"{by} {index}", str(known[0]["nominal_size"]),
                         cell([1 / e["simpson"] for e in known], "{:.1f}"),
                         cell([e["effective_size"] for e in known], "{:.1f}"),
                         f"{sum(1.96 * e['effective_size_se'] for e in known) / len(known):.1f}",
                         cell([None if a is None else a["effective_size"] for a in analytic], "{:.1f}"),
                         cell([None if a is None else a["onset_rho"] for a in analytic], "{:.2f}"),
                         cell([e["distribution_factor"] for e in known], "{:.2f}"),
                         cell([e["geometry_factor"] for e in known], "{:.2f}"),
                         cell([e["flip_rate"] for e in known], "{:.3f}"),
                         cell([e["flip_to_held"] for e in known], "{:.2f}")])
    return markdown_table(["method", "symbols", "K_nom", "1/sum pi^2", "K_eff ↑", "MC 95% half width (mean)",
                           "K_eff analytic", "analytic onset rho", "DP x ↓", "GP x ↓", "flip ↓", "flips to held"],
                          rows)


def retrieval_table(runs: Sequence[Run]) -> list[str]:
    cutoffs = runs[0]["settings"]["cutoffs"]
    rows = []
    for name in method_names(runs):
        results = [method(run, name) for run in runs]
        for subset, suffix in (("all", ""), ("novel", "_novel")):
            rets = [r[f"retention{suffix}"] for r in results]
            aucs = [r[f"sid_embedding_auc{suffix}"] for r in results]
            rows.append([name, subset, *[cell([None if x is None else x["retention"][i] for x in rets], "{:.3f}")
                                         for i in range(len(cutoffs))],
                         cell([None if a is None else a["auc"] for a in aucs], "{:.3f}")])
    first = runs[0]["methods"][0]
    for subset, suffix in (("all", ""), ("novel", "_novel")):
        original = first[f"retention{suffix}"]
        if original is not None:
            rows.append(["(HR@K original)", subset, *[f"{v:.4f}" for v in original["hit_rate_original"]], "-"])
    return markdown_table(["method", "pairs", *[f"ret@{k} ↑" for k in cutoffs], "SID AUC ↑"], rows)


def training_table(runs: Sequence[Run]) -> list[str]:
    rows = []
    for name in method_names(runs):
        results = [method(run, name) for run in runs]
        trained = [r["training"] for r in results]
        stopped = sum(t is not None and t["stopped_early"] for t in trained)
        rows.append([name, cell([r["fit_seconds"] for r in results], "{:.1f}"),
                     cell([r["diagnose_seconds"] for r in results], "{:.1f}"),
                     cell([r["stability_seconds"] for r in results], "{:.1f}"),
                     cell([None if t is None else t["epochs"] for t in trained], "{:.0f}"),
                     "-" if trained[0] is None else f"{stopped}/{len(trained)}"])
    return markdown_table(["method", "fit s", "diagnostics s", "stability s (second fit)", "epochs",
                           "stopped early"], rows)


def run_seed(data: Path, methods: Sequence[str], out: Path, seed: int, *, report: bool) -> Run:
    """One seed's comparison, read from ``out/metrics.json`` if it finished before, else run now."""
    metrics = out / METRICS_FILE
    if metrics.is_file():
        print(f"seed {seed}: read back from {metrics}", flush=True)
    else:
        started = time.perf_counter()
        run_comparison(data, methods, out, CompareSettings(seed=seed), report=report, log=print)
        print(f"seed {seed}: {time.perf_counter() - started:.0f} s wall", flush=True)
    run: Run = json.loads(metrics.read_text(encoding="utf-8"))
    return run


def tables(runs: Sequence[Run], name: str, seeds: Sequence[int]) -> str:
    first = runs[0]
    settings = first["settings"]
    pairs = first["behaviour_pairs"]
    header = (f"{name}: {first['num_items']:,} items x {first['dim']}, {settings['levels']} x "
              f"{settings['codebook_size']} codes, behaviour pairs {pairs['train']:,} train / "
              f"{pairs['heldout']:,} held out ({pairs['heldout_novel']:,} novel); seeds {list(seeds)}; "
              f"rho = {settings['reference_rho']}, {settings['samples']} noise draws; mean ± 95% t "
              "interval over seeds")
    sections: dict[str, list[str]] = {"summary": summary_table(runs), "usage": usage_table(runs),
                                      "symbols": symbol_table(runs),
                                      "retrieval": retrieval_table(runs), "training": training_table(runs)}
    text = [f"# {header}", ""]
    for section, lines in sections.items():
        text += [f"## {section}", "", *lines, ""]
    return "\n".join(text) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", default=",".join(DEFAULT_METHODS))
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    runs = [run_seed(args.data, args.methods.split(","), args.out / f"seed-{seed}", seed,
                     report=seed == args.seeds[0]) for seed in args.seeds]
    text = tables(runs, args.data.name, args.seeds)
    print(text, end="")
    write_text(args.out / "tables.md", text)


if __name__ == "__main__":
    main()
