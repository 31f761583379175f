"""The retrieval table, resumable: each (split, seed, model, SIDs) run is written to disk as it finishes.

``sidkit retrieve`` runs a whole experiment in one process and writes its outputs at the end; on a
shared machine an ML-1M table takes hours, so this script runs the same pieces
(:func:`sidkit.retrieval.experiment.run_model` on :func:`sidkit.retrieval.data.build_next_item_data`)
one unit at a time, in the order split -> seed -> arm, and skips every unit whose file exists. A
killed run loses at most the unit it was in; run the same command again to continue. After every
unit it rewrites, per split, ``<out>/<split>/metrics.json`` and ``summary.md`` from the finished
units (:class:`sidkit.retrieval.experiment.RetrievalExperiment`, the tables of ``sidkit retrieve``).

Arms: ``popularity``, ``sasrec``, ``tiger:rq-kmeans`` (RQ-KMeans fitted with the seed on the item
embeddings, ``--levels`` x ``sidkit compare``'s default codebook size), ``tiger:random`` (random codes
of the same shapes drawn with the seed). Models use their default settings (early stopping on
validation Recall@10).

Example (ML-1M, one thread, in the background)::

    python benchmarks/retrieval_table.py --data data/ml-1m --out runs/ml1m-table --threads 1 \\
        --splits leave-one-out,global-time --seeds 0,1,2

    python benchmarks/retrieval_table.py --data data/ml-1m --out runs/ml1m-table --tables-only

With ``--item-holdout 0.1`` a tenth of the items (drawn per seed) never reach training and the test
examples whose target is one of them form the slice ``new``; the training data differ from the run
without a hold-out, so give such a run its own ``--out``. Units record the hold-out share, and a
unit file of another share is refused.

Each unit records the epoch cap it ran under (``epoch_cap``; files without it ran under 30 for tiger,
50 for sasrec). A unit
that stopped early, before its cap, is what a higher cap gives too (constant learning rate, same
batches), so it is kept; one that ran all the way to a cap below ``--tiger-epochs`` (or
``--sasrec-epochs``) did not converge, and is run again under the current cap.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from sidkit.data.dataset import Dataset, load_dataset
from sidkit.ids import SemanticIds
from sidkit.io import write_json, write_text
from sidkit.retrieval.data import NextItemData, build_next_item_data
from sidkit.retrieval.experiment import (
    NO_TOKENIZER,
    RetrievalExperiment,
    RetrieveSettings,
    RunResult,
    run_model,
    write_outputs,
)
from sidkit.retrieval.report import markdown_summary
from sidkit.retrieval.sasrec import SasrecConfig
from sidkit.retrieval.tiger import TigerConfig

ARMS = ("popularity", "sasrec", "tiger:rq-kmeans", "tiger:random")


def parse_arm(arm: str) -> tuple[str, str]:
    """``tiger:rq-kmeans`` -> (tiger, rq-kmeans); ``sasrec`` -> (sasrec, -)."""
    model, _, method = arm.partition(":")
    return model, method or NO_TOKENIZER


def unit_path(out: Path, split: str, model: str, tokenizer: str, seed: int) -> Path:
    return out / "runs" / split / f"{model}-{tokenizer}-seed{seed}.json"


def sids_for(method: str, x: np.ndarray, *, levels: int, seed: int, cache: Path) -> SemanticIds:
    """The method's codes of every catalogue item for this seed (cached: they do not depend on the split)."""
    from sidkit.tokenizers.factory import default_codebook_size, make_tokenizer

    path = cache / f"{method}-seed{seed}.npz"
    if path.is_file():
        stored = np.load(path)
        return SemanticIds(stored["codes"], tuple(int(s) for s in stored["sizes"]))
    size = default_codebook_size(len(x))
    sids = make_tokenizer(method, levels=levels, codebook_size=size, seed=seed).fit(x).encode(x)
    cache.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, codes=np.asarray(sids.codes), sizes=np.asarray(sids.sizes))
    os.replace(tmp, path)
    return sids


# The caps that units written before the cap was recorded ran under (TigerConfig's and SasrecConfig's of then).
LEGACY_EPOCH_CAPS = {"tiger": 30, "sasrec": 50}


def unit_is_current(record: dict, cap: int) -> bool:
    """Whether a finished unit stands under the epoch cap ``cap``: it stopped early before its own cap,
    or its own cap was at least ``cap``. Popularity trains nothing and is always current."""
    if record.get("model") == "popularity":
        return True
    own_cap = int(record.get("epoch_cap", LEGACY_EPOCH_CAPS.get(record.get("model", ""), 0)))
    return own_cap >= cap or int(record["epochs_run"]) < own_cap


def run_unit(arm: str, data: NextItemData, dataset: Dataset, settings: RetrieveSettings, *, seed: int,
             out: Path, log) -> RunResult:
    model, method = parse_arm(arm)
    codes = None
    if model == "tiger":
        x = np.ascontiguousarray(dataset.catalog.embeddings, dtype=np.float32)
        codes = sids_for(method, x, levels=settings.levels, seed=seed, cache=out / "sids")
    return run_model(model, data, codes, settings, seed=seed, tokenizer=method,
                     item_ids=dataset.catalog.item_ids, log=log)


def write_tables(data_dir: Path, out: Path, settings: RetrieveSettings, split: str,
                 seeds: list[int] | None = None) -> RetrievalExperiment | None:
    """metrics.json and summary.md of the finished units of ``split`` (None when none finished), in
    ``out/split``; with ``seeds``, of those seeds' units only, in ``out/split/seeds-0-1-2`` (say)."""
    files = sorted((out / "runs" / split).glob("*.json"))
    records = [json.loads(f.read_text(encoding="utf-8")) for f in files]
    if seeds is not None:
        records = [r for r in records if r["seed"] in seeds]
    if not records:
        return None
    where = out / split if seeds is None else out / split / ("seeds-" + "-".join(str(s) for s in sorted(seeds)))
    order = {arm: i for i, arm in enumerate(ARMS)}

    def key(record: dict) -> tuple[int, int]:
        arm = record["model"] if record["tokenizer"] == NO_TOKENIZER else f"{record['model']}:{record['tokenizer']}"
        return order.get(arm, len(order)), record["seed"]

    records.sort(key=key)
    runs = tuple(RunResult.from_dict({k: v for k, v in r.items()
                                      if k not in ("history", "cpu_seconds", "load", "item_holdout", "new_item_share",
                                                                "epoch_cap")})
                 for r in records)
    n_seeds = len({run.seed for run in runs})
    experiment = RetrievalExperiment(data_dir, where, replace(settings, split=split, seeds=n_seeds), None, runs,
                                     {}, 0.0)
    where.mkdir(parents=True, exist_ok=True)
    write_outputs(experiment, report=False)
    write_text(where / "summary.md", markdown_summary(experiment))
    return experiment


def check_holdout(out: Path, item_holdout: float, new_item_share: float) -> None:
    """Refuse to continue a table whose finished units were run with another ``--item-holdout`` or
    ``--new-item-share``."""

    for path in sorted((out / "runs").glob("*/*.json")):
        record = json.loads(path.read_text(encoding="utf-8"))
        for name, wanted in (("item_holdout", item_holdout), ("new_item_share", new_item_share)):
            found = record.get(name, 0.0)
            if found != wanted:
                flag = "--" + name.replace("_", "-")
                raise SystemExit(f"error: {path} was run with {flag} {found}, not {wanted}. "
                                 f"Fix: pass {flag} {found}, or another --out")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--splits", default="leave-one-out,global-time")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--arms", default=",".join(ARMS))
    parser.add_argument("--levels", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--item-holdout", type=float, default=0.0,
                        help="share of items kept out of training (the `new` slice); use its own --out")
    parser.add_argument("--new-item-share", type=float, default=0.0,
                        help="share of each list reserved for unseen items (TIGER's cold-start protocol)")
    parser.add_argument("--tiger-epochs", type=int, default=TigerConfig().epochs,
                        help="tiger's epoch cap; finished units that ran to a lower cap are run again")
    parser.add_argument("--sasrec-epochs", type=int, default=SasrecConfig().epochs, help="sasrec's epoch cap")
    parser.add_argument("--precision", default="auto", choices=("auto", "float32", "bfloat16"),
                        help="training and inference precision of tiger and sasrec (auto: bfloat16 where the CPU "
                             "has native bfloat16 GEMMs); each unit records the one it ran in")
    parser.add_argument("--tables-only", action="store_true", help="only rewrite the tables from finished units")
    parser.add_argument("--table-seeds", default="",
                        help="with --tables-only: tables of these seeds' units only, in OUT/SPLIT/seeds-...")
    args = parser.parse_args()

    from sidkit.threads import set_threads

    set_threads(args.threads)
    splits = [s for s in args.splits.split(",") if s]
    seeds = [int(s) for s in args.seeds.split(",") if s]
    arms = [a for a in args.arms.split(",") if a]
    settings = RetrieveSettings(models=("tiger", "sasrec", "popularity"), levels=args.levels, threads=args.threads,
                                item_holdout=args.item_holdout, new_item_share=args.new_item_share, progress=False,
                                tiger=replace(TigerConfig(), epochs=args.tiger_epochs, precision=args.precision),
                                sasrec=replace(SasrecConfig(), epochs=args.sasrec_epochs, precision=args.precision))
    caps = {"tiger": args.tiger_epochs, "sasrec": args.sasrec_epochs}
    check_holdout(args.out, args.item_holdout, args.new_item_share)  # tables too: they print the hold-out
    if args.tables_only:
        chosen = [int(s) for s in args.table_seeds.split(",") if s] or None
        for split in splits:
            write_tables(args.data, args.out, settings, split, chosen)
        return
    dataset = load_dataset(args.data)
    for split in splits:
        for seed in seeds:
            todo = []
            for arm in arms:
                model, tokenizer = parse_arm(arm)
                path = unit_path(args.out, split, model, tokenizer, seed)
                if not path.is_file():
                    todo.append(arm)
                elif not unit_is_current(json.loads(path.read_text(encoding="utf-8")), caps.get(model, 0)):
                    print(f"{split} seed {seed} {arm}: {path.name} ran to a lower epoch cap; running it again "
                          f"under {caps[model]}", flush=True)
                    todo.append(arm)
            if not todo:
                continue
            data = build_next_item_data(dataset, split=split, history=settings.history, seed=seed,
                                        item_holdout=settings.item_holdout)
            for arm in todo:
                model, tokenizer = parse_arm(arm)
                started, cpu, where = time.perf_counter(), time.process_time(), f"{split} seed {seed}"

                def log(line: str, started: float = started, cpu: float = cpu, where: str = where) -> None:
                    print(f"{time.strftime('%H:%M:%S')} {where} {line} [wall "
                          f"{time.perf_counter() - started:.0f} s, cpu {time.process_time() - cpu:.0f} s, load "
                          f"{os.getloadavg()[0]:.2f}]", flush=True)

                log(f"{arm}: start")
                run = run_unit(arm, data, dataset, settings, seed=seed, out=args.out, log=log)
                record = run.to_dict()
                record["cpu_seconds"] = time.process_time() - cpu
                record["item_holdout"] = settings.item_holdout
                record["new_item_share"] = settings.new_item_share
                if model in caps:
                    record["epoch_cap"] = caps[model]
                write_json(unit_path(args.out, split, model, tokenizer, seed), record)
                log(f"{arm}: Recall@10 {run.metrics.get('recall', 10):.4f}, NDCG@10 {run.metrics.get('ndcg', 10):.4f}, "
                    f"best epoch {run.best_epoch} of {run.epochs_run}")
                write_tables(args.data, args.out, settings, split)


if __name__ == "__main__":
    main()
