"""DTN against MMoE and PLE, at their default sizes and capacity-matched, over seeds; per-task importance.

Run:  .venv/bin/python benchmarks/compare_rankers.py run --data DIR --tokenizer RQK --out runs/cmp-ml100k
      .venv/bin/python benchmarks/compare_rankers.py table runs/cmp-ml100k [--heatmap docs/img/x.png]

``run`` calls ``sidkit.ranking.experiment.run_ranking`` once per model, into ``OUT/<model>``, with one
feature set (``hash+sid-prefix``, 4,096 rows in all) and the documented recipe (2 negatives, Adam
3e-3, early stopping with patience 2, user features age, gender, occupation), so each model sees the
same ranking data per seed and the differences are paired by seed. Models: ``dtn`` (the default
``DTNConfig``: MemoNet memory), ``mmoe`` and ``ple`` at their default sizes, and ``mmoe-wide`` /
``ple-wide``: the same architectures with experts widened (hidden sizes h, h/2) to DTN's parameter
count on this data, the capacity-matched comparison. Every run also measures validation permutation
importance (``--importance`` permutations per field). A run cut short resumes where it stopped.

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
from sidkit.ranking.models import PLE, MMoE, ModelConfig, build_model, model_names, register_model

MODELS = ("dtn", "mmoe", "ple", "mmoe-wide", "ple-wide")
FEATURES = "hash+sid-prefix"
COLUMNS = (("click", "all"), ("click", "new-matched"), ("like|click", "all"), ("like|click", "new-matched"))
SETTINGS = RankSettings(features=(FEATURES,), model="dtn", seeds=5, budget=4096,
                        user_features=("age", "gender", "occupation"), save_models=False, importance_repeats=3)


def _params(name: str, rep: Any, data: Any, config: ModelConfig) -> int:
    model = build_model(name, rep, data.num_user_embeddings, data.tasks, config,
                        num_user_fields=int(data.train.user_features.shape[1]))
    return sum(p.numel() for p in model.parameters())


def register_wide_models(data_dir: str, tokenizer: str, settings: RankSettings) -> dict[str, int]:
    """Register ``mmoe-wide`` and ``ple-wide``: experts (h, h/2) with h chosen so that the whole model has
    DTN's parameter count on this data (seed 0's representation). Returns model -> h."""
    from sidkit.data.dataset import load_dataset
    from sidkit.features.representations import build_representation
    from sidkit.ranking.data import build_ranking_data, training_item_counts
    from sidkit.ranking.experiment import load_sids, seed_data_settings

    dataset = load_dataset(data_dir)
    data = build_ranking_data(dataset, seed=0, **seed_data_settings(settings))
    x = np.ascontiguousarray(dataset.catalog.embeddings, dtype=np.float32)
    sids = load_sids(tokenizer, x, dataset.catalog.item_ids)
    rep = build_representation(FEATURES, item_ids=dataset.catalog.item_ids, sids=sids, budget=settings.budget,
                               train_items=training_item_counts(data), seed=0)
    base = ModelConfig(embedding_dim=settings.embedding_dim)
    target = _params("dtn", rep, data, base)
    widths = {}
    for name, kind in (("mmoe-wide", "mmoe"), ("ple-wide", "ple")):
        h = min(range(64, 2049, 8), key=lambda h: abs(_params(kind, rep, data, replace(base, expert_dims=(h, h // 2)))
                                                     - target))
        widths[name] = h
        cls = MMoE if kind == "mmoe" else PLE
        if name not in model_names():
            register_model(name, lambda f, t, c, cls=cls, h=h: cls(f, t, replace(c, expert_dims=(h, h // 2))))
    return widths


def run(args: argparse.Namespace) -> None:
    settings = replace(SETTINGS, seeds=args.seeds, importance_repeats=args.importance, threads=1)
    widths = register_wide_models(args.data, args.tokenizer, settings)
    root = Path(args.out)
    root.mkdir(parents=True, exist_ok=True)
    (root / "widths.json").write_text(json.dumps(widths))
    for name in args.models:
        started = time.perf_counter()
        run_ranking(args.data, args.tokenizer, root / name, replace(settings, model=name), report=False,
                    log=lambda line, name=name: print(f"[{name}] {line}", flush=True))
        print(f"[{name}] done in {time.perf_counter() - started:.0f} s", flush=True)


def _runs(directory: Path) -> dict[int, dict[str, Any]]:
    out = {}
    for line in (directory / PROGRESS_FILE).read_text().splitlines():
        if line.strip():
            record = json.loads(line)
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
    widths = json.loads((root / "widths.json").read_text()) if (root / "widths.json").is_file() else {}
    names = [f"{task} {s}" for task, s in COLUMNS]
    lines = ["| model | seeds | params | best epoch | s/run | " + " | ".join(names) + " |",
             "|---|---|---|---|---|" + "---|" * len(COLUMNS)]
    for name, by_seed in runs.items():
        records = list(by_seed.values())
        label = f"{name} (experts {widths[name]}-{widths[name] // 2})" if name in widths else name
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
    r.add_argument("--importance", type=int, default=SETTINGS.importance_repeats, help="permutations per field")
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
