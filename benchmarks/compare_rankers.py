"""DTN vs MMoE, PLE and Shared-Bottom on one feature set, over seeds; per-task permutation importance.

Run:  .venv/bin/python benchmarks/compare_rankers.py run --data DIR --name ml-100k --out runs/cmp.jsonl
      .venv/bin/python benchmarks/compare_rankers.py run --synthetic --name synthetic --out runs/cmp.jsonl
      .venv/bin/python benchmarks/compare_rankers.py table runs/cmp.jsonl [--heatmap docs/img/x.png]

``run`` fits a 3 x 64 RQ-KMeans on the dataset's embeddings, then per seed builds the ranking data
(``build_ranking_data``: its own hold-out, negatives and init per seed) and one representation
(``hash+sid-prefix``, 4,096 rows per component), trains each model with the same TrainConfig, and
appends one JSON line per (seed, model) with test AUC per task and slice. Every model of a seed sees
the same data and representation, so paired differences across models are meaningful. With
``--importance-seed S`` it also writes the validation permutation importance of each model on seed S.
Lines are appended as runs finish, so a cut-short run keeps what it finished.

``table`` aggregates the lines into a markdown table (mean and 95% t interval over seeds), paired
differences of DTN against each baseline, and the importance heatmap.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sidkit.data.dataset import Dataset, load_dataset
from sidkit.data.synthetic import SyntheticConfig, generate_synthetic
from sidkit.features.representations import build_representation
from sidkit.ids import SemanticIds
from sidkit.ranking.data import build_ranking_data, training_item_counts
from sidkit.ranking.importance import FeatureImportance, importance_heatmap, permutation_importance
from sidkit.ranking.metrics import evaluate, mean_ci
from sidkit.ranking.models import ModelConfig, build_model
from sidkit.ranking.training import TrainConfig, predict, train_model
from sidkit.tokenizers.rq_kmeans import RQKMeans

MODELS = ("dtn", "mmoe", "ple", "shared-bottom")
FEATURES = "hash+sid-prefix"
SYNTHETIC = SyntheticConfig(items=4000, users=800, interactions=60_000, dim=64, seed=0)
SLICES_SHOWN = ("all", "new")


def _dataset(args: argparse.Namespace) -> Dataset:
    if args.synthetic:
        return generate_synthetic(SYNTHETIC, progress=False)
    return load_dataset(args.data)


def _user_field_names(dataset: Dataset, columns: int) -> list[str]:
    names = ["user id"]
    if dataset.users is not None:
        names += [c for c in ("age", "gender", "occupation") if c in dataset.users.column_names]
    return names if len(names) == columns else [f"user{j}" for j in range(columns)]


def run(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    dataset = _dataset(args)
    x = np.ascontiguousarray(dataset.catalog.embeddings, dtype=np.float32)
    sids: SemanticIds = RQKMeans(levels=3, codebook_size=64).fit(x).encode(x)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    for seed in args.seeds:
        data = build_ranking_data(dataset, history=20, negatives=args.negatives, seed=seed)
        rep = build_representation(FEATURES, item_ids=dataset.catalog.item_ids, sids=sids, budget=4096,
                                   train_items=training_item_counts(data), seed=seed)
        for name in args.models:
            config = ModelConfig(embedding_dim=32, seed=seed)
            model = build_model(name, rep, data.num_user_embeddings, data.tasks, config)
            trained = train_model(model, data, TrainConfig(epochs=args.epochs, batch_size=2048, patience=1, seed=seed,
                                                           progress=False))
            metrics = evaluate(data.test, predict(model, data.test))
            auc = {f"{row.task}/{row.slice}": row.auc for row in metrics.rows}
            line: dict[str, Any] = {
                "dataset": args.name, "seed": seed, "model": name, "features": FEATURES, "auc": auc,
                "best_epoch": trained.best_epoch, "seconds": round(trained.seconds, 1),
                "params": sum(p.numel() for p in model.parameters()), "train_rows": len(data.train),
                "negatives": args.negatives, "epochs": args.epochs}
            if seed == args.importance_seed:
                names = _user_field_names(dataset, data.valid.user_features.shape[1])
                imp = permutation_importance(model, data.valid, user_field_names=names, repeats=2, seed=seed)
                line["importance"] = {"fields": list(imp.fields), "tasks": list(imp.tasks),
                                      "base_auc": imp.base_auc, "drop": imp.drop.tolist(), "std": imp.std.tolist()}
            with out.open("a") as handle:
                handle.write(json.dumps(line) + "\n")
            print(f"{args.name} seed {seed} {name}: " + " ".join(f"{k} {v:.4f}" for k, v in auc.items()
                                                                 if v is not None and k.endswith(("/all", "/new")))
                  + f" ({trained.seconds:.0f} s)", flush=True)


def _fmt(values: list[float], sign: str = "") -> str:
    ci = mean_ci(values)
    if ci.mean is None:
        return "n/a"
    mean = f"{ci.mean:{sign}.4f}"
    return f"{mean} ± {ci.half_width:.4f}" if ci.half_width is not None else mean


def table(args: argparse.Namespace) -> None:
    lines = [json.loads(text) for path in args.files for text in Path(path).read_text().splitlines() if text.strip()]
    by: dict[tuple[str, str], dict[int, dict[str, Any]]] = defaultdict(dict)
    for line in lines:
        by[(line["dataset"], line["model"])][line["seed"]] = line
    datasets = list(dict.fromkeys(line["dataset"] for line in lines))
    out = []
    for dataset in datasets:
        models = [m for m in MODELS if (dataset, m) in by]
        tasks = sorted({k.split("/")[0] for line in lines if line["dataset"] == dataset for k in line["auc"]},
                       key=lambda t: (t != "click", t))
        columns = [f"{t}/{s}" for t in tasks for s in SLICES_SHOWN]
        out.append(f"**{dataset}** (test AUC, mean ± 95% CI half-width over seeds)\n")
        out.append("| model | seeds | params | s/run | " + " | ".join(columns) + " |")
        out.append("|---|---|---|---|" + "---|" * len(columns))
        for model in models:
            runs = by[(dataset, model)]
            cells = [_fmt([r["auc"][c] for r in runs.values() if r["auc"].get(c) is not None]) for c in columns]
            first = next(iter(runs.values()))
            seconds = np.mean([r["seconds"] for r in runs.values()])
            out.append(f"| {model} | {len(runs)} | {first['params']:,} | {seconds:.0f} | " + " | ".join(cells) + " |")
        if "dtn" in models:
            out.append("\nPaired difference, DTN minus baseline on the same seeds (mean ± 95% CI):\n")
            out.append("| baseline | " + " | ".join(columns) + " |")
            out.append("|---|" + "---|" * len(columns))
            dtn = by[(dataset, "dtn")]
            for model in models:
                if model == "dtn":
                    continue
                other = by[(dataset, model)]
                seeds = sorted(set(dtn) & set(other))
                cells = []
                for c in columns:
                    diffs = [dtn[s]["auc"][c] - other[s]["auc"][c] for s in seeds
                             if dtn[s]["auc"].get(c) is not None and other[s]["auc"].get(c) is not None]
                    cells.append(_fmt(diffs, "+") if diffs else "n/a")
                out.append(f"| {model} | " + " | ".join(cells) + " |")
        out.append("")
    print("\n".join(out))
    if args.heatmap:
        panels = {}
        for line in lines:
            if "importance" in line and line["dataset"] == args.heatmap_dataset:
                imp = line["importance"]
                panels[line["model"]] = FeatureImportance(tuple(imp["fields"]), tuple(imp["tasks"]), imp["base_auc"],
                                                          np.asarray(imp["drop"]), np.asarray(imp["std"]), 2)
        if panels:
            ordered = {m: panels[m] for m in MODELS if m in panels}
            Path(args.heatmap).parent.mkdir(parents=True, exist_ok=True)
            Path(args.heatmap).write_bytes(importance_heatmap(ordered))
            print(f"wrote {args.heatmap}", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run")
    r.add_argument("--data", default=os.environ.get("SIDKIT_ML100K", ""))
    r.add_argument("--synthetic", action="store_true")
    r.add_argument("--name", required=True)
    r.add_argument("--out", required=True)
    r.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    r.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    r.add_argument("--epochs", type=int, default=3)
    r.add_argument("--negatives", type=int, default=2)
    r.add_argument("--threads", type=int, default=1)
    r.add_argument("--importance-seed", type=int, default=0)
    t = sub.add_parser("table")
    t.add_argument("files", nargs="+")
    t.add_argument("--heatmap")
    t.add_argument("--heatmap-dataset", default="ml-100k")
    args = parser.parse_args()
    started = time.perf_counter()
    if args.command == "run":
        if not args.synthetic and not args.data:
            parser.error("pass --data DIR (a dataset directory with embeddings.npy) or --synthetic")
        run(args)
        print(f"done in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    else:
        table(args)


if __name__ == "__main__":
    main()
