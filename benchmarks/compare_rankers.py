"""DTN against MMoE and PLE, at their default sizes and capacity-matched, over seeds; per-task importance.

Run:  .venv/bin/python benchmarks/compare_rankers.py run --data DIR --tokenizer RQK --out runs/cmp-ml100k
      .venv/bin/python benchmarks/compare_rankers.py table runs/cmp-ml100k [--heatmap docs/img/x.png]

``run`` calls ``sidkit.ranking.experiment.run_ranking`` per model, into ``OUT/<model>``, with one feature
set (``--features``, default ``sid-prefix`` at 4,096 rows) and the documented recipe (2 negatives, Adam
3e-3, early stopping with patience 2, user features age, gender, occupation), so each model sees the
same ranking data per seed and the differences are paired by seed. Models: ``dtn`` (the default
``DTNConfig``: MemoNet memory), ``mmoe`` and ``ple`` at their default sizes, and ``mmoe-wide`` /
``ple-wide``: the same architectures with experts resized to DTN's parameter count on each run's
data (``RankSettings(match_params="dtn")``, as ``sidkit rank --match-params dtn``), the
capacity-matched comparison. Seeds go in the outer loop (seed 0 of every model, then seed 1, ...), so
a run cut short has whole paired seeds; it resumes where it stopped. ``--importance N`` also measures
validation permutation importance (N permutations per field) in every run.

``table`` prints, per model, the parameter count and test AUC (mean ± 95% t over seeds) on all items,
context-matched new items and like given click, then DTN minus each baseline paired by seed, and the
importance of each field per task with its interval over seeds.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from sidkit.ranking.experiment import PROGRESS_FILE, RankSettings, run_ranking
from sidkit.ranking.metrics import mean_ci

MODELS = ("dtn", "mmoe", "ple", "mmoe-wide", "ple-wide")
COLUMNS = (("click", "all"), ("click", "new-matched"), ("like", "all"), ("like", "new-matched"),
           ("like|click", "all"))
SETTINGS = RankSettings(features=("sid-prefix",), model="dtn", seeds=5, budget=4096,
                        user_features=("age", "gender", "occupation"), save_models=False, importance_repeats=0)


def model_settings(name: str, settings: RankSettings) -> RankSettings:
    """The settings of one compared model: ``x-wide`` is model x resized to DTN's parameter count."""
    if name.endswith("-wide"):
        return replace(settings, model=name.removesuffix("-wide"), match_params="dtn")
    return replace(settings, model=name)


def run(args: argparse.Namespace) -> None:
    settings = replace(SETTINGS, features=(args.features,), importance_repeats=args.importance, threads=args.threads)
    root = Path(args.out)
    root.mkdir(parents=True, exist_ok=True)
    for seeds in range(1, args.seeds + 1):
        for name in args.models:
            started = time.process_time()
            run_ranking(args.data, args.tokenizer, root / name, replace(model_settings(name, settings), seeds=seeds),
                        report=False, log=lambda line, name=name: print(f"[{name}] {line}", flush=True))
            print(f"[{name}] seeds 0..{seeds - 1} done ({time.process_time() - started:.0f} CPU s this call)",
                  flush=True)


def _runs(directory: Path) -> dict[int, dict[str, Any]]:
    """Seed -> finished run of the folder's one feature set (a folder resumed from a wider run may hold others)."""
    settings = directory / "settings.json"
    features = json.loads(settings.read_text())["features"] if settings.is_file() else None
    out = {}
    for line in (directory / PROGRESS_FILE).read_text().splitlines():
        if line.strip():
            record = json.loads(line)
            if features is None or record["feature"] in features:
                out[int(record["seed"])] = record
    return out


def _auc(record: dict[str, Any], task: str, slice_name: str) -> float | None:
    for row in record["metrics"]:
        if row["task"] == task and row["slice"] == slice_name:
            return row["auc"]
    return None


def _fmt(values: list[float], sign: str = "") -> str:
    ci = mean_ci(values)
    if ci.mean is None:
        return "-"
    mean = f"{ci.mean:{sign}.4f}"
    return f"{mean} ± {ci.half_width:.4f}" if ci.half_width is not None else mean


def table(args: argparse.Namespace) -> None:
    root = Path(args.root)
    runs = {name: _runs(root / name) for name in MODELS if (root / name / PROGRESS_FILE).is_file()}
    names = [f"{task} {s}" for task, s in COLUMNS]
    lines = ["| model | seeds | params | best epoch | s/run | " + " | ".join(names) + " |",
             "|---|---|---|---|---|" + "---|" * len(COLUMNS)]
    for name, by_seed in runs.items():
        records = list(by_seed.values())
        resized = records[0]["info"].get("resized")
        label = f"{name} ({resized})" if resized else name
        cells = [_fmt([v for r in records if (v := _auc(r, t, s)) is not None]) for t, s in COLUMNS]
        lines.append(f"| {label} | {len(records)} | {records[0]['info']['model_params']:,} | "
                     f"{np.mean([r['best_epoch'] for r in records]):.1f} | "
                     f"{np.mean([r['train_seconds'] for r in records]):.0f} | " + " | ".join(cells) + " |")
    if "dtn" in runs:
        lines += ["", "DTN minus baseline, paired by seed (mean ± 95% t):", "",
                  "| baseline | seeds | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(COLUMNS)]
        for name, by_seed in runs.items():
            if name == "dtn":
                continue
            seeds = sorted(set(by_seed) & set(runs["dtn"]))
            cells = []
            for task, s in COLUMNS:
                diffs = [a - b for seed in seeds if (a := _auc(runs["dtn"][seed], task, s)) is not None
                         and (b := _auc(by_seed[seed], task, s)) is not None]
                cells.append(_fmt(diffs, "+"))
            lines.append(f"| {name} | {len(seeds)} | " + " | ".join(cells) + " |")
    panels = {}
    for name, by_seed in runs.items():
        found = [r["importance"] for r in by_seed.values() if r.get("importance")]
        if not found:
            continue
        from sidkit.ranking.importance import FeatureImportance, importance_across_runs

        summary = importance_across_runs([FeatureImportance(tuple(f["fields"]), tuple(f["tasks"]), f["base_auc"],
                                                            np.asarray(f["drop"]), np.asarray(f["std"]),
                                                            int(f["repeats"])) for f in found])
        panels[name] = summary.mean()
        lines += ["", f"Importance, {name} ({summary.runs} seeds x {summary.repeats} permutations; validation AUC "
                  "drop, mean ± 95% t over seeds):", "", "| field | " + " | ".join(summary.tasks) + " |",
                  "|---|" + "---|" * len(summary.tasks)]
        for field in summary.fields:
            cells = []
            for task in summary.tasks:
                ci = summary.drop[field][task]
                cells.append("-" if ci.mean is None else f"{ci.mean:.4f}" + (
                    f" ± {ci.half_width:.4f}" if ci.half_width is not None else ""))
            lines.append(f"| {field} | " + " | ".join(cells) + " |")
    print("\n".join(lines))
    if args.heatmap and panels:
        from sidkit.ranking.importance import importance_heatmap

        Path(args.heatmap).parent.mkdir(parents=True, exist_ok=True)
        Path(args.heatmap).write_bytes(importance_heatmap(panels))
        print(f"wrote {args.heatmap}", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run")
    r.add_argument("--data", required=True, help="dataset directory with embeddings.npy")
    r.add_argument("--tokenizer", required=True, help="tokenizer directory (sidkit fit)")
    r.add_argument("--out", required=True)
    r.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    r.add_argument("--seeds", type=int, default=SETTINGS.seeds)
    r.add_argument("--features", default=SETTINGS.features[0], help="one feature set (default sid-prefix)")
    r.add_argument("--importance", type=int, default=SETTINGS.importance_repeats, help="permutations per field")
    r.add_argument("--threads", type=int, default=1, help="torch threads per run (one process runs the models in "
                   "turn; start a second process with other --models to use a second core)")
    t = sub.add_parser("table")
    t.add_argument("root")
    t.add_argument("--heatmap")
    args = parser.parse_args()
    started = time.perf_counter()
    if args.command == "run":
        run(args)
        print(f"done in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    else:
        table(args)


if __name__ == "__main__":
    main()
