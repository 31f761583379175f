"""The ranking runner: train a multi-task ranker on several item representations over several seeds.

``run_ranking(data_dir, tokenizer, out_dir, settings)`` encodes the catalog's embeddings into
Semantic IDs once, then for every seed builds :class:`RankingData` once (the item hold-outs and the
sampled negatives depend on the seed) and the item representations of every feature set (``sid-spm``
learns its pieces from training items only, weighted by ``training_item_counts``), and trains and
tests one model per feature set x budget x seed. It builds ``out_dir`` in a staging directory beside
it (:func:`sidkit.io.staging_dir`: ``runs.jsonl`` grows there while the run goes on, and stays after
a crash) and swaps it in whole when the run is complete::

    settings.json  the settings of the run (a later run into the same directory resumes only with
                   the same protocol settings)
    runs.jsonl     one line per finished run, appended as runs finish
    metrics.json   settings, data summaries, per-feature table rows / rows used / parameter counts,
                   every run, the mean and 95% t interval of AUC, GAUC and log loss per feature x task
                   x slice, and paired differences against the baseline (``hash`` at the same budget)
    summary.md     the same tables in markdown
    report.html    a self-contained page with AUC-by-slice plots (CI error bars) per task
    models/        each trained ranker (config.json + weights.safetensors), for ``sidkit predict``

Feature names are those of :mod:`sidkit.features.representations` (``hash``, ``sid-prefix``,
``hash+sid-prefix``, ...). ``settings.budget`` is one table size for every table representation (a
combination splits it between its tables), so the comparison is size-matched; ``settings.sweep``
repeats the table features at more budgets (rows, or a share of the catalog such as ``1/4``), named
``name@rows``. A name given as ``name@rows`` has its own size and is not size-matched unless its
baseline ``hash@rows`` runs too.

The runs go to ``settings.jobs`` worker processes (``threads`` torch threads each); results do not
depend on ``jobs``. A run cut short keeps its finished lines in ``runs.jsonl``; running again with the
same settings and ``--out`` resumes from them (adding feature sets or sweep budgets is allowed: no run
depends on which others run), and other settings are refused unless ``overwrite``.
"""

from __future__ import annotations

import concurrent.futures as futures
import json
import multiprocessing
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from sidkit.checks import check_float, check_int
from sidkit.errors import ConfigError, DataError
from sidkit.features.representations import build_representation, parse_representation
from sidkit.features.types import ItemRepresentation
from sidkit.ids import SemanticIds
from sidkit.io import atomic_dir, clean_stale_in, staging_dir, write_json, write_text
from sidkit.ranking.data import SPLITS, build_ranking_data, ranking_summary, training_item_counts
from sidkit.ranking.metrics import AggregateMetrics, MeanCI, RankingMetrics, aggregate, evaluate, mean_ci
from sidkit.ranking.models import ModelConfig, build_model, model_names
from sidkit.ranking.training import SELECTIONS, TrainConfig, predict, train_model
from sidkit.ranking.types import SLICES

METRICS_FILE = "metrics.json"
SUMMARY_FILE = "summary.md"
REPORT_FILE = "report.html"
SETTINGS_FILE = "settings.json"
MODELS_DIR = "models"
#: One JSON line per finished run, written as runs finish (the final files are written at the end).
PROGRESS_FILE = "runs.jsonl"
DEFAULT_FEATURES: tuple[str, ...] = ("hash", "sid-unigram", "sid-bigram", "sid-prefix", "sid-spm", "dense",
                                     "hash+sid-prefix")
BASELINE = "hash"
_BUDGET_MARK = "@"
# Settings that change how runs are executed, or which feature sets and seeds run, but not the result of
# any one run (feature x budget x seed): a resumed run directory may change them, e.g. to add a budget
# sweep or more seeds.
_NOT_COMPARED = ("jobs", "threads", "device", "save_models", "features", "sweep", "sweep_features", "seeds")


@dataclass(frozen=True)
class RankSettings:
    """How to build the ranking data, the representations and the models.

    The defaults are the recipe of docs/ranking.md: 2 negatives per engagement, Adam 3e-3, and at
    most 30 epochs with patience 2, enough for every run there to stop on its validation optimum.

    Attributes:
        features: feature-set names, each optionally ``name@rows`` to give it its own budget.
        model: a name of :func:`sidkit.ranking.models.model_names`.
        seeds: seeds ``0 .. seeds - 1``; each seeds the hold-outs, the negatives, the hashes and training.
        budget: table rows of every table feature set (size-matched); None: each one's natural size.
        sweep: more budgets, each rows (``"1024"``) or a share of the catalog's items (``"1/4"``); the
            table features of ``sweep_features`` run again at each, named ``name@rows``.
        sweep_features: the features repeated in the sweep; None: every table feature without its own budget.
        history: H, engaged items in each impression's history.
        negatives: sampled negatives per engagement (and new-item negatives per new-item engagement).
        item_holdout: share of engaged items removed from training (the test ``new`` slice).
        valid_item_holdout: share of engaged items removed from training and test (validation ``new``).
        split: ``user-time`` (main) or ``global-time``.
        epochs, batch_size, learning_rate, patience: training (early stopping on validation AUC).
        select: the epoch whose weights and test metrics are reported: ``all`` (validation AUC on all
            impressions) or ``all+new`` (its mean with validation's context-matched new items). Both
            are tracked and tested; ``RankingExperiment.with_selection`` gives the other one's tables.
        embedding_dim: width of every embedding.
        user_features: users.parquet columns used as user features; None: every column but the id.
        context_features: interactions.parquet context columns (not ids, time, rating or 0/1 labels)
            used as features of each impression; None: all of them.
        tasks: label tasks to train; None: every task of the data.
        max_users: a random sample of this many users (None: all), for quick runs.
        device: torch device.
        jobs: worker processes (runs in parallel); 1 runs in this process.
        threads: torch threads per worker process.
        save_models: write every trained ranker under ``out_dir/models``.
        importance_repeats: when positive, each run also measures per-task permutation importance on
            its validation split with this many permutations per field (``sidkit.ranking.importance``).
        match_params: a model name (e.g. ``dtn``): every run resizes ``model``'s experts (MMoE, PLE) or
            hidden layers (DNN, shared-bottom) until it has as many parameters as this model would on
            the same data and features (``sidkit.ranking.capacity``); None: the default sizes.
    """

    features: tuple[str, ...] = DEFAULT_FEATURES
    model: str = "mmoe"
    seeds: int = 5
    budget: int | None = 4096
    sweep: tuple[str, ...] = ()
    sweep_features: tuple[str, ...] | None = None
    history: int = 20
    negatives: int = 2
    item_holdout: float = 0.2
    valid_item_holdout: float = 0.1
    split: str = "user-time"
    epochs: int = 30
    batch_size: int = 2048
    learning_rate: float = 3e-3
    patience: int = 2
    select: str = "all"
    embedding_dim: int = 32
    user_features: tuple[str, ...] | None = None
    context_features: tuple[str, ...] | None = None
    tasks: tuple[str, ...] | None = None
    max_users: int | None = None
    device: str = "cpu"
    jobs: int = 1
    threads: int = 1
    save_models: bool = True
    importance_repeats: int = 0
    match_params: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for name in ("features", "sweep", "sweep_features", "user_features", "context_features", "tasks"):
            if out[name] is not None:
                out[name] = list(out[name])
        return out


@dataclass(frozen=True)
class Entry:
    """One feature set at one budget: what a run trains.

    Attributes:
        name: the name in tables (``sid-prefix``, ``sid-prefix@420``, ``sid-spm@512``).
        representation: the representation name (without the budget).
        budget: table rows asked for; None for dense only or the natural size.
        baseline: the entry it is compared with, paired by seed (``hash`` at the same budget when it
            runs, else ``hash``); None for the baseline itself.
    """

    name: str
    representation: str
    budget: int | None
    baseline: str | None


@dataclass(frozen=True)
class FeatureInfo:
    """Table size and parameter counts of one feature set (the same for every seed).

    Attributes:
        name: the entry's name (maybe ``name@rows``).
        representation: the representation name (without the budget).
        budget: the table rows asked for; None for dense only or natural size.
        table_rows: embedding-table rows, padding excluded (``num_embeddings - 1``).
        tokens_per_item: T, table rows summed per item.
        item_params: parameters of the item table (and dense projection).
        model_params: parameters of the whole model.
        size_matched: True when the feature's tables together have exactly its baseline's rows.
        rows_used: distinct rows some catalog item uses (of seed 0's tables; hashing changes with the seed).
        baseline: the entry it is paired with (None for a baseline).
        resized: with ``settings.match_params``, the resized layers (``expert_dims=h,h/2``).
    """

    name: str
    representation: str
    budget: int | None
    table_rows: int
    tokens_per_item: int
    item_params: int
    model_params: int
    size_matched: bool
    rows_used: int = 0
    baseline: str | None = None
    resized: str | None = None


@dataclass(frozen=True)
class RunResult:
    """One feature set trained and tested with one seed.

    Attributes:
        metrics: test metrics of the epoch that ``settings.select`` chose (the weights kept).
        best_epoch: that epoch.
        valid_scores: the early-stopping score of ``settings.select`` after each epoch run.
        stopped_early: True when patience ran out before the epoch limit (the validation optimum was
            passed); False means the limit cut training short.
        by_selection: selection rule (``all``, ``all+new``) -> (its best epoch, test metrics at it);
            the test split is scored after every epoch, so each rule's choice is tested.
        importance: validation permutation importance (fields, tasks, drop, std, base_auc, repeats)
            when ``settings.importance_repeats`` is positive.
    """

    feature: str
    seed: int
    metrics: RankingMetrics
    best_epoch: int
    epochs_run: int
    train_seconds: float
    info: FeatureInfo
    stopped_early: bool = False
    valid_scores: tuple[float, ...] = ()
    by_selection: dict[str, tuple[int, RankingMetrics]] = field(default_factory=dict)
    importance: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"feature": self.feature, "seed": self.seed, "best_epoch": self.best_epoch,
                "epochs_run": self.epochs_run, "stopped_early": self.stopped_early,
                "train_seconds": self.train_seconds, "valid_scores": list(self.valid_scores),
                "metrics": self.metrics.to_rows(),
                "by_selection": {name: {"best_epoch": epoch, "metrics": metrics.to_rows()}
                                 for name, (epoch, metrics) in self.by_selection.items()},
                "importance": self.importance}

    def selected(self, selection: str) -> RunResult:
        """This run as if ``selection`` had chosen its epoch (itself when it did, or when it is unknown)."""
        if selection not in self.by_selection:
            return self
        epoch, metrics = self.by_selection[selection]
        return replace(self, metrics=metrics, best_epoch=epoch)


@dataclass(frozen=True)
class SeedResult:
    """Every feature set of one seed, and the summary of that seed's ranking data."""

    seed: int
    data: dict[str, Any]
    runs: tuple[RunResult, ...]


@dataclass(frozen=True)
class PairedDifference:
    """AUC of ``feature`` minus AUC of its baseline on the same seed, as mean and t interval."""

    feature: str
    baseline: str
    task: str
    slice: str
    difference: MeanCI
    metric: str = "auc"


@dataclass(frozen=True, eq=False)
class RankingExperiment:
    """The outcome of :func:`run_ranking` and where its outputs were written.

    Attributes:
        tasks: the models' tasks, e.g. ("click", "like").
        evaluated: every task of the tables: the model's tasks, then the conditional ones (``like|click``).
        warnings: lines about results to distrust (runs below chance, runs cut by the epoch limit).
    """

    data_dir: Path
    tokenizer: str
    out_dir: Path
    settings: RankSettings
    num_items: int
    dim: int
    codebook_sizes: tuple[int, ...]
    seeds: tuple[SeedResult, ...]
    features: tuple[FeatureInfo, ...]
    seconds: float
    tasks: tuple[str, ...] = field(default=())
    evaluated: tuple[str, ...] = field(default=())
    warnings: tuple[str, ...] = field(default=())

    @property
    def metrics_path(self) -> Path:
        return self.out_dir / METRICS_FILE

    @property
    def summary_path(self) -> Path:
        return self.out_dir / SUMMARY_FILE

    @property
    def report_path(self) -> Path:
        return self.out_dir / REPORT_FILE

    @property
    def num_seeds(self) -> int:
        return len(self.seeds)

    def runs(self, feature: str) -> list[RunResult]:
        return [run for seed in self.seeds for run in seed.runs if run.feature == feature]

    def with_selection(self, selection: str) -> RankingExperiment:
        """The same experiment with every run's metrics taken at the epoch ``selection`` chose."""
        seeds = tuple(replace(seed, runs=tuple(run.selected(selection) for run in seed.runs)) for seed in self.seeds)
        return replace(self, seeds=seeds, settings=replace(self.settings, select=selection))

    def table(self) -> dict[str, tuple[AggregateMetrics, ...]]:
        """Feature -> mean and interval of AUC, GAUC and log loss per (task, slice) across seeds."""
        return {info.name: aggregate([run.metrics for run in self.runs(info.name)]) for info in self.features}

    def paired(self, metric: str = "auc") -> list[PairedDifference]:
        """Per feature with a baseline, task and slice: ``metric`` (``auc`` or ``gauc``) minus the
        baseline's on the same seed.

        Seeds share the ranking data across features, so the paired difference removes the
        seed-to-seed variation of the data.
        """
        names = {info.name for info in self.features}
        out = []
        for info in self.features:
            if info.baseline is None or info.baseline not in names:
                continue
            base = {run.seed: run.metrics for run in self.runs(info.baseline)}
            for task in self.evaluated:
                for slice_name in SLICES:
                    values = []
                    for run in self.runs(info.name):
                        if run.seed not in base:  # a cut-short run may lack the baseline of a seed
                            continue
                        ours = metric_value(run.metrics, task, slice_name, metric)
                        theirs = metric_value(base[run.seed], task, slice_name, metric)
                        if ours is not None and theirs is not None:
                            values.append(ours - theirs)
                    out.append(PairedDifference(info.name, info.baseline, task, slice_name, mean_ci(values), metric))
        return out

    def importance(self, feature: str) -> Any:
        """Permutation importance of ``feature`` across seeds (ImportanceAcrossRuns), or None when not measured."""
        from sidkit.ranking.importance import FeatureImportance, importance_across_runs

        found = [FeatureImportance(tuple(r.importance["fields"]), tuple(r.importance["tasks"]),
                                   dict(r.importance["base_auc"]), np.asarray(r.importance["drop"]),
                                   np.asarray(r.importance["std"]), int(r.importance["repeats"]))
                 for r in self.runs(feature) if r.importance is not None]
        return importance_across_runs(found) if found else None

    def summary_rows(self) -> list[dict[str, Any]]:
        """One dict per feature: table rows, rows used, parameters, and mean/half-width AUC per task and slice.

        Keys: ``feature``, ``table_rows``, ``rows_used``, ``item_params``, ``model_params``,
        ``size_matched`` and ``<task>/<slice>`` -> ``{"mean", "half_width", "n"}``.
        """
        table = self.table()
        rows = []
        for info in self.features:
            row: dict[str, Any] = {"feature": info.name, "table_rows": info.table_rows, "rows_used": info.rows_used,
                                   "item_params": info.item_params, "model_params": info.model_params,
                                   "size_matched": info.size_matched}
            for entry in table[info.name]:
                row[f"{entry.task}/{entry.slice}"] = {"mean": entry.auc.mean, "half_width": entry.auc.half_width,
                                                      "n": entry.auc.n}
            rows.append(row)
        return rows

    def convergence(self) -> dict[str, dict[str, Any]]:
        """Per feature: best epochs, epochs run, and how many runs stopped on patience (not the limit)."""
        out = {}
        for info in self.features:
            runs = self.runs(info.name)
            out[info.name] = {"best_epochs": [r.best_epoch for r in runs], "epochs_run": [r.epochs_run for r in runs],
                              "stopped_early": sum(r.stopped_early for r in runs), "runs": len(runs),
                              "train_seconds": float(np.mean([r.train_seconds for r in runs])) if runs else None}
        return out

    def to_dict(self) -> dict[str, Any]:
        table = self.table()
        return {
            "data_dir": str(self.data_dir), "tokenizer": self.tokenizer, "num_items": self.num_items,
            "dim": self.dim, "codebook_sizes": list(self.codebook_sizes), "tasks": list(self.tasks),
            "evaluated": list(self.evaluated), "slices": list(SLICES), "settings": self.settings.to_dict(),
            "seeds": self.num_seeds, "seconds": self.seconds, "warnings": list(self.warnings),
            "features": [asdict(info) for info in self.features],
            "summary": self.summary_rows(),
            "table": [{"feature": name, **asdict(entry)} for name, entries in table.items() for entry in entries],
            "paired_vs_baseline": {"baseline": BASELINE, "rows": [asdict(row) for row in self.paired()],
                                   "gauc_rows": [asdict(row) for row in self.paired("gauc")]},
            "convergence": self.convergence(),
            "data": {str(seed.seed): seed.data for seed in self.seeds},
            "runs": [run.to_dict() for seed in self.seeds for run in seed.runs],
        }


def metric_value(metrics: RankingMetrics, task: str, slice_name: str, metric: str = "auc") -> float | None:
    """One number of a run's metrics (``auc``, ``gauc`` or ``log_loss``), None when absent."""
    for row in metrics.rows:
        if row.task == task and row.slice == slice_name:
            value = getattr(row, metric)
            return None if value is None else float(value)
    return None


# ----- inputs ----------------------------------------------------------------------------------------


def parse_features(features: Sequence[str] | str) -> tuple[tuple[str, str, int | None], ...]:
    """(name as given, representation, own budget or None) per feature; ConfigError for unknown names.

    ``"sid-spm@512"`` -> ``("sid-spm@512", "sid-spm", 512)``.
    """
    names = [part.strip() for part in (features.split(",") if isinstance(features, str) else features)]
    names = [name for name in names if name]
    if not names:
        raise ConfigError("no feature sets given", where="--features",
                          fix="pass e.g. hash,sid-prefix,hash+sid-prefix")
    parsed = []
    for name in names:
        representation, budget = name, None
        if _BUDGET_MARK in name:
            representation, _, text = name.partition(_BUDGET_MARK)
            if not text.isdigit() or int(text) < 1:
                raise ConfigError(f"cannot read the budget of feature {name!r}", where="--features",
                                  fix="write name@rows with a positive integer, e.g. sid-spm@512")
            budget = int(text)
        parse_representation(representation)  # raises for unknown names, naming the known ones
        parsed.append((name, representation, budget))
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ConfigError(f"feature set(s) {', '.join(repeated)} given twice", where="--features")
    return tuple(parsed)


def parse_budget(text: str | int, num_items: int) -> int:
    """Rows of one budget: ``"1024"`` -> 1024; ``"1/4"`` -> a quarter of ``num_items`` (rounded, at least 1)."""
    value = str(text).strip()
    if "/" in value:
        top, _, bottom = value.partition("/")
        if not (top.isdigit() and bottom.isdigit()) or int(top) < 1 or int(bottom) < 1:
            raise ConfigError(f"cannot read the budget {value!r}", where="--budget",
                              fix="write rows (1024) or a share of the catalog (1/4)")
        return max(1, round(num_items * int(top) / int(bottom)))
    if not value.isdigit() or int(value) < 1:
        raise ConfigError(f"cannot read the budget {value!r}", where="--budget",
                          fix="write rows (1024) or a share of the catalog (1/4)")
    return int(value)


def plan_entries(settings: RankSettings, num_items: int) -> tuple[Entry, ...]:
    """Every (feature, budget) the settings ask for, in table order: the features at the main budget,
    then each sweep budget's features; each with its paired baseline."""
    parsed = parse_features(settings.features)
    entries: list[tuple[str, str, int | None]] = []
    for name, representation, own in parsed:
        tables = any(part != "dense" for part in parse_representation(representation))
        entries.append((name, representation, (own if own is not None else settings.budget) if tables else None))
    swept = settings.sweep_features
    if swept is None:
        swept = tuple(name for name, rep, own in parsed
                      if own is None and any(part != "dense" for part in parse_representation(rep)))
    else:
        for name, rep, own in parse_features(swept):
            if own is not None or all(part == "dense" for part in parse_representation(rep)):
                raise ConfigError(f"{name!r} cannot be swept: it has no table or its own budget",
                                  where="sweep_features", fix="sweep table features without @rows")
    taken = {name for name, _, _ in entries}
    for text in settings.sweep:
        rows = parse_budget(text, num_items)
        for feature in swept:
            name = f"{feature}{_BUDGET_MARK}{rows}"
            if name not in taken and rows != settings.budget:
                entries.append((name, feature, rows))
                taken.add(name)
    out = []
    for name, representation, budget in entries:
        own_hash = f"{BASELINE}{_BUDGET_MARK}{budget}"
        if name in (BASELINE, own_hash):
            baseline = None
        else:
            baseline = own_hash if own_hash in taken and budget != settings.budget else BASELINE
            if baseline not in taken:
                baseline = None
        out.append(Entry(name, representation, budget, baseline))
    return tuple(out)
def load_sids(tokenizer: str | os.PathLike[str], embeddings: np.ndarray, item_ids: np.ndarray) -> SemanticIds:
    """The catalog's Semantic IDs: a tokenizer directory encodes (N, D) ``embeddings``; a codes
    ``.parquet`` (``sidkit encode`` / ``sidkit compare`` output, with ``item_id``) must cover exactly
    the catalog's ``item_ids`` (rows are reordered to catalog order)."""
    path = Path(tokenizer)
    if path.suffix.lower() == ".parquet" and path.is_file():
        return _sids_from_codes(path, item_ids)
    if not (path / "config.json").is_file():
        raise DataError(f"{path} is neither a tokenizer directory (config.json) nor a codes .parquet",
                        where="--tokenizer",
                        fix="pass a directory written by `sidkit fit` (or `sidkit compare`'s models/<method>)")
    from sidkit.tokenizers.base import load_tokenizer

    model = load_tokenizer(path)
    if model.dim != embeddings.shape[1]:
        raise DataError(f"the tokenizer in {path} was fitted on {model.dim}-dimensional embeddings, but the "
                        f"dataset's embeddings.npy has {embeddings.shape[1]} dimensions", where="--tokenizer",
                        fix="fit a tokenizer on this dataset's embeddings (`sidkit fit --data DIR`), or embed the "
                        "data with the model the tokenizer was fitted on")
    sids = model.encode(embeddings)
    if len(sids) != len(item_ids):
        raise DataError(f"the tokenizer gave {len(sids)} SIDs for {len(item_ids)} items", where="--tokenizer")
    return sids


def _sids_from_codes(path: Path, item_ids: np.ndarray) -> SemanticIds:
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    sids = SemanticIds.from_table(table)
    if "item_id" not in table.column_names:
        if len(sids) != len(item_ids):
            raise DataError(f"{path} holds {len(sids)} codes, the catalog {len(item_ids)} items", where="--tokenizer",
                            fix="encode this dataset's catalog")
        return sids
    codes_ids = np.asarray(table.column("item_id").to_numpy(zero_copy_only=False))
    catalog = np.asarray(item_ids)
    if codes_ids.dtype.kind != catalog.dtype.kind:
        codes_ids, catalog = codes_ids.astype(str), catalog.astype(str)
    order = np.argsort(codes_ids, kind="stable")
    found = np.searchsorted(codes_ids, catalog, sorter=order)
    row = order[np.minimum(found, len(order) - 1)]
    missing = int(np.sum(codes_ids[row] != catalog))
    if missing or len(codes_ids) != len(catalog):
        raise DataError(f"the codes in {path} cover {len(codes_ids)} items and miss {missing} of the catalog's "
                        f"{len(catalog)}: they were made for another item set", where="--tokenizer",
                        fix="encode this dataset's catalog (`sidkit encode --data DIR`)")
    return SemanticIds(sids.codes[row], sids.sizes)


def _check_settings(settings: RankSettings) -> None:
    if settings.model not in model_names():
        raise ConfigError(f"unknown model {settings.model!r}", where="--model",
                          fix=f"use one of {', '.join(model_names())}")
    if settings.split not in SPLITS:
        raise ConfigError(f"unknown split {settings.split!r}", where="--split", fix=f"use one of {', '.join(SPLITS)}")
    if settings.select not in SELECTIONS:
        raise ConfigError(f"unknown selection {settings.select!r}", where="--select",
                          fix=f"use one of {', '.join(SELECTIONS)}")
    for name in ("seeds", "epochs", "batch_size", "jobs", "threads", "embedding_dim", "patience", "negatives",
                 "history"):
        check_int(getattr(settings, name), where=f"--{name.replace('_', '-')}")
    check_float(settings.learning_rate, where="--learning-rate", low=0, low_open=True, fix="pass e.g. 3e-3")
    for name in ("item_holdout", "valid_item_holdout"):
        check_float(getattr(settings, name), where=f"--{name.replace('_', '-')}", low=0, high=1, high_open=True,
                    fix="pass e.g. 0.2")
    if isinstance(settings.importance_repeats, bool) or not isinstance(settings.importance_repeats, int) \
            or settings.importance_repeats < 0:
        raise ConfigError(f"importance_repeats must be an integer >= 0, got {settings.importance_repeats!r}",
                          where="--importance")
    if settings.budget is not None and (isinstance(settings.budget, bool) or not isinstance(settings.budget, int)
                                        or settings.budget < 1):
        raise ConfigError(f"budget must be a positive integer, got {settings.budget!r}", where="--budget",
                          fix="pass e.g. --budget 4096")
    if settings.match_params is not None:
        from sidkit.ranking.capacity import WIDTH_FIELDS

        if settings.match_params not in model_names():
            raise ConfigError(f"unknown model {settings.match_params!r}", where="--match-params",
                              fix=f"use one of {', '.join(model_names())}")
        if settings.model not in WIDTH_FIELDS:
            raise ConfigError(f"--model {settings.model} cannot be resized to another model's parameter count",
                              where="--match-params",
                              fix=f"use --model {' / '.join(WIDTH_FIELDS)}, or drop --match-params")
    if settings.sweep and settings.budget is None:
        raise ConfigError("a budget sweep needs a main budget", where="--budget",
                          fix="pass e.g. --budget 4096,1/4,1/16")
    for text in settings.sweep:
        parse_budget(text, 1)


# ----- running -------------------------------------------------------------------------------------


def run_ranking(data_dir: str | os.PathLike[str], tokenizer: str | os.PathLike[str] | None,
                out_dir: str | os.PathLike[str], settings: RankSettings | None = None, *, report: bool = True,
                overwrite: bool = False, log: Callable[[str], None] | None = None) -> RankingExperiment:
    """Train and test every feature set of ``settings`` on every seed; write the outputs into ``out_dir``.

    Args:
        data_dir: a dataset directory with ``embeddings.npy`` (``sidkit embed``).
        tokenizer: a fitted tokenizer directory (it encodes the embeddings) or a codes ``.parquet``;
            None is allowed when no feature set needs Semantic IDs.
        out_dir: where the outputs go. If it holds a run with the same protocol settings, its finished
            runs are kept and only the others run (resume; feature sets and budgets may be added); a
            run with other settings is refused.
        report: False skips report.html.
        overwrite: replace a run with other settings in ``out_dir`` (its outputs are deleted first).
        log: receives one line per stage.

    Raises:
        ConfigError: unknown feature or model names, bad settings, a missing tokenizer, or ``out_dir``
            holding a run with other settings.
        DataError: no embeddings, or a tokenizer / codes that do not fit the data.
    """
    from sidkit.data.dataset import load_dataset

    settings = settings or RankSettings()
    features = parse_features(settings.features)
    settings = replace(settings, features=tuple(name for name, _, _ in features),
                       sweep=tuple(str(s).strip() for s in settings.sweep))
    _check_settings(settings)
    say = log or (lambda _line: None)
    started = time.perf_counter()
    dataset = load_dataset(data_dir)
    x = dataset.catalog.embeddings
    if x is None:
        raise DataError(f"the dataset in {data_dir} has no embeddings.npy", where=str(data_dir),
                        fix=f"run `sidkit embed --data {data_dir}` first")
    entries = plan_entries(settings, len(x))
    needs_sids = any(part.startswith("sid-") for entry in entries
                     for part in parse_representation(entry.representation))
    sids = None
    if needs_sids:
        if tokenizer is None:
            raise ConfigError("SID feature sets need a tokenizer", where="--tokenizer",
                              fix="pass --tokenizer MODEL_DIR (from `sidkit fit`)")
        sids = load_sids(tokenizer, np.ascontiguousarray(x, dtype=np.float32), dataset.catalog.item_ids)
    out = Path(out_dir)
    _check_previous(out, settings, overwrite=overwrite)  # before anything is touched
    # Built in a staging directory beside `out` (it survives a crash, and the next run resumes from it)
    # and swapped in whole at the end: an earlier run in `out` stays as it was until then.
    with atomic_dir(out, replaceable=is_rank_run, what="rank run", resumable=True,
                    fix="pass a new directory, or one that `sidkit rank` wrote") as work:
        done = _resume(work, out, settings, overwrite=overwrite)
        say(f"{len(x):,} items x {x.shape[1]} dims; SIDs {'x'.join(map(str, sids.sizes)) if sids else 'none'}; "
            f"{len(entries)} feature sets x {settings.seeds} seeds, model {settings.model}"
            + (f"; resuming: {len(done)} runs already finished" if done else ""))
        job = _SeedJob(str(data_dir), sids, settings, entries, str(work))
        seeds = _run_seeds(job, settings, say, work / PROGRESS_FILE, done)
        experiment = _assemble(Path(data_dir), "" if tokenizer is None else str(tokenizer), work, settings, entries,
                               len(x), int(x.shape[1]), tuple(sids.sizes) if sids else (), seeds,
                               time.perf_counter() - started)
        for line in experiment.warnings:
            say(f"warning: {line}")
        write_outputs(experiment, report=report)
    experiment = replace(experiment, out_dir=out)
    say(f"wrote {experiment.metrics_path}, {experiment.summary_path}"
        + (f", {experiment.report_path}" if report else ""))
    return experiment


def is_rank_run(directory: Path) -> bool:
    """Whether ``directory`` holds the outputs of a ranking run (so that a new one may replace it)."""
    return any((directory / name).is_file() for name in (METRICS_FILE, PROGRESS_FILE, SETTINGS_FILE))


def _previous(out: Path) -> Path | None:
    """Where the run being continued lives: the staging directory of a run cut short, else ``out``."""
    for place in (staging_dir(out), out):
        if (place / SETTINGS_FILE).is_file() or (place / PROGRESS_FILE).is_file():
            return place
    return None


def _comparable(settings: dict[str, Any]) -> dict[str, Any]:
    # A settings file written before a setting existed ran with that setting's default.
    merged = {**RankSettings().to_dict(), **settings}
    return {key: value for key, value in merged.items() if key not in _NOT_COMPARED}


def _check_previous(out: Path, settings: RankSettings, *, overwrite: bool) -> None:
    """Refuse to continue a run with other settings (a run directory is resumed or replaced as a whole,
    never mixed), unless ``overwrite``."""
    place = _previous(out)
    if place is None or overwrite:
        return
    stored = place / SETTINGS_FILE
    previous = json.loads(stored.read_text(encoding="utf-8")) if stored.is_file() else None
    current = _comparable(settings.to_dict())
    if previous is None or _comparable(previous) != current:
        changed = sorted(key for key in current if previous is None or previous.get(key) != current[key])
        raise ConfigError(f"{out} holds a ranking run with other settings ({', '.join(changed) or 'unknown'})",
                          where="--out", fix="pass the same settings to resume it, another --out, or --overwrite "
                          "to replace it")


def _resume(work: Path, out: Path, settings: RankSettings, *,
            overwrite: bool = False) -> dict[tuple[int, str], dict[str, Any]]:
    """Fill the staging directory ``work``: the finished runs (seed, feature) -> record of the run being
    continued (a run cut short: ``work`` itself; a finished one: ``out``), none when its settings differ
    (``overwrite``: the old run is replaced)."""
    place = _previous(out)
    same = False
    if place is not None and (place / SETTINGS_FILE).is_file():
        previous = json.loads((place / SETTINGS_FILE).read_text(encoding="utf-8"))
        # --overwrite replaces the run as a whole, even one it could continue (e.g. with fewer seeds)
        same = not overwrite and _comparable(previous) == _comparable(settings.to_dict())
    if place is not None and place != work and same:  # extend a finished run: start from its files
        for name in (PROGRESS_FILE, SETTINGS_FILE):
            if (place / name).is_file():
                shutil.copy2(place / name, work / name)
        if (place / MODELS_DIR).is_dir() and not (work / MODELS_DIR).exists():
            shutil.copytree(place / MODELS_DIR, work / MODELS_DIR)
    if not same:  # nothing to continue: the staging directory starts empty
        for name in (PROGRESS_FILE, SETTINGS_FILE, METRICS_FILE, SUMMARY_FILE, REPORT_FILE):
            (work / name).unlink(missing_ok=True)
        shutil.rmtree(work / MODELS_DIR, ignore_errors=True)
    if (work / MODELS_DIR).is_dir():  # a run killed while saving a ranker left its temporary folder
        for feature in (work / MODELS_DIR).iterdir():
            clean_stale_in(feature)
    done: dict[tuple[int, str], dict[str, Any]] = {}
    progress = work / PROGRESS_FILE
    if progress.is_file():
        for line in progress.read_text(encoding="utf-8").splitlines():
            if line.strip():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:  # a line cut by a crash: that run runs again
                    continue
                done[(int(record["seed"]), str(record["feature"]))] = record
    write_json(work / SETTINGS_FILE, settings.to_dict())
    write_text(progress, "".join(json.dumps(record) + "\n" for record in done.values()))  # whole lines only
    return done


@dataclass(frozen=True, eq=False)
class _SeedJob:
    """What a worker needs to run one seed (picklable: paths, codes and settings)."""

    data_dir: str
    sids: SemanticIds | None
    settings: RankSettings
    entries: tuple[Entry, ...]
    out_dir: str


def _run_seeds(job: _SeedJob, settings: RankSettings, say: Callable[[str], None], progress_file: Path,
               done: dict[tuple[int, str], dict[str, Any]]) -> tuple[SeedResult, ...]:
    """Every (seed, entry) run not yet in ``done``, in ``settings.jobs`` processes; each finished run is
    appended to ``progress_file`` (JSON lines) at once, so a run cut short keeps its finished rows."""
    tasks = [(seed, index) for seed in range(settings.seeds) for index in range(len(job.entries))]
    results: dict[tuple[int, int], tuple[RunResult, dict[str, Any]]] = {}
    for seed, index in tasks:
        record = done.get((seed, job.entries[index].name))
        if record is not None:
            results[(seed, index)] = (run_from_record(record), record["data"])
    todo = [key for key in tasks if key not in results]

    def finished(key: tuple[int, int], result: tuple[RunResult, dict[str, Any]]) -> None:
        results[key] = result
        run = result[0]
        say(f"seed {run.seed} {run.feature}: click AUC all {_fmt(metric_value(run.metrics, 'click', 'all'))} "
            f"new-matched {_fmt(metric_value(run.metrics, 'click', 'new-matched'))} ({run.train_seconds:.0f} s, "
            f"best epoch {run.best_epoch} of {run.epochs_run}); {len(results)}/{len(tasks)} runs done")
        with open(progress_file, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({**run.to_dict(), "info": asdict(run.info), "data": result[1]}) + "\n")

    if settings.jobs == 1 or len(todo) <= 1:
        for seed, index in todo:
            finished((seed, index), run_one(job, seed, index))
    else:
        # spawn: a fresh interpreter per worker, never a fork of a process holding torch threads.
        context = multiprocessing.get_context("spawn")
        with futures.ProcessPoolExecutor(max_workers=min(settings.jobs, len(todo)), mp_context=context) as pool:
            pending = {pool.submit(run_one, job, seed, index): (seed, index) for seed, index in todo}
            for future in futures.as_completed(pending):
                finished(pending[future], future.result())
    return tuple(SeedResult(seed, results[(seed, 0)][1],
                            tuple(results[(seed, index)][0] for index in range(len(job.entries))))
                 for seed in range(settings.seeds))


def _assemble(data_dir: Path, tokenizer: str, out: Path, settings: RankSettings, entries: Sequence[Entry],
              num_items: int, dim: int, sizes: tuple[int, ...], seeds: Sequence[SeedResult],
              seconds: float) -> RankingExperiment:
    """The experiment of finished seeds, with size matching judged against each entry's baseline."""
    names = [entry.name for entry in entries]
    infos = {}
    for name in names:
        got = [run.info for seed in seeds for run in seed.runs if run.feature == name]
        if got:
            infos[name] = got[0]
    rows = {name: info.table_rows for name, info in infos.items()}
    features = []
    for entry in entries:
        if entry.name not in infos:
            continue
        info = infos[entry.name]
        matched = info.table_rows > 0 and (entry.baseline is None or rows.get(entry.baseline) == info.table_rows)
        features.append(replace(info, size_matched=matched, baseline=entry.baseline))
    first = seeds[0].data if seeds else {}
    tasks = tuple(first.get("tasks", ()))
    evaluated = tasks + tuple(first.get("conditional", ()))
    experiment = RankingExperiment(data_dir, tokenizer, out, replace(settings, seeds=len(seeds)), num_items, dim,
                                   sizes, tuple(seeds), tuple(features), seconds, tasks=tasks, evaluated=evaluated)
    return replace(experiment, warnings=tuple(_warnings(experiment)))


def _warnings(experiment: RankingExperiment) -> list[str]:
    """Results to distrust: a feature below chance on all items, runs cut by the epoch limit, few seeds."""
    lines = []
    table = experiment.table()
    for name, entries in table.items():
        for entry in entries:
            if entry.slice == "all" and entry.auc.mean is not None and entry.auc.mean < 0.5:
                lines.append(f"{name}: {entry.task} AUC on all items {entry.auc.mean:.3f} is below chance (0.5): the "
                             "model has not learnt; train longer (--epochs) or check the labels")
    for name, stats in experiment.convergence().items():
        cut = stats["runs"] - stats["stopped_early"]
        if cut:
            lines.append(f"{name}: {cut} of {stats['runs']} runs reached the epoch limit before early stopping, "
                         "so they may not be at their validation optimum; raise --epochs")
    if experiment.num_seeds < 3:
        lines.append(f"{experiment.num_seeds} seed{'s' if experiment.num_seeds != 1 else ''}: intervals need at "
                     "least 3 seeds to be worth reading")
    return lines


# Per worker process: the ranking data of the seeds it ran last (building it takes seconds).
_DATA_CACHE: dict[tuple[str, int], tuple[Any, Any, np.ndarray]] = {}
_DATA_CACHE_SIZE = 2


def seed_data_settings(settings: RankSettings) -> dict[str, Any]:
    """The keyword arguments of :func:`build_ranking_data` that ``settings`` fix (the seed aside)."""
    return {"history": settings.history, "negatives": settings.negatives, "split": settings.split,
            "item_holdout": settings.item_holdout, "valid_item_holdout": settings.valid_item_holdout,
            "user_features": settings.user_features, "context_features": settings.context_features,
            "tasks": settings.tasks, "max_users": settings.max_users}


def _seed_data(job: _SeedJob, seed: int) -> tuple[Any, Any, np.ndarray]:
    """(dataset, RankingData, training impressions per item) of ``seed``, cached per process."""
    import warnings

    from sidkit.data.dataset import load_dataset

    key = (job.data_dir, seed)
    if key not in _DATA_CACHE:
        dataset = load_dataset(job.data_dir)
        with warnings.catch_warnings():  # the notes are in the data summary and the run's log
            warnings.simplefilter("ignore", UserWarning)
            data = build_ranking_data(dataset, seed=seed, **seed_data_settings(job.settings))
        while len(_DATA_CACHE) >= _DATA_CACHE_SIZE:
            _DATA_CACHE.pop(next(iter(_DATA_CACHE)))
        _DATA_CACHE[key] = (dataset, data, training_item_counts(data))
    return _DATA_CACHE[key]


def run_one(job: _SeedJob, seed: int, index: int) -> tuple[RunResult, dict[str, Any]]:
    """Train and test entry ``index`` with ``seed``; also the seed's data summary.

    The seed fixes the item hold-outs, the negatives, the hashes, the initialization and the shuffling;
    ``sid-spm`` learns its pieces from this seed's training items only.
    """
    from sidkit.threads import set_threads

    settings = job.settings
    set_threads(settings.threads)
    dataset, data, counts = _seed_data(job, seed)
    entry = job.entries[index]
    rep = build_representation(entry.representation, item_ids=dataset.catalog.item_ids, sids=job.sids,
                               embeddings=dataset.catalog.embeddings, budget=entry.budget, train_items=counts,
                               seed=seed)
    config = ModelConfig(embedding_dim=settings.embedding_dim, seed=seed)
    resized = None
    user_fields = int(data.train.user_features.shape[1])
    if settings.match_params is not None:
        from sidkit.ranking.capacity import match_capacity, model_parameters

        target = model_parameters(settings.match_params, rep, data.num_user_embeddings, data.tasks, config,
                                  num_user_fields=user_fields)
        match = match_capacity(settings.model, rep, data.num_user_embeddings, data.tasks, config, target,
                               num_user_fields=user_fields)
        config, resized = match.config, f"{match.field}={','.join(map(str, match.dims))}"
    model = build_model(settings.model, rep, data.num_user_embeddings, data.tasks, config,
                        num_user_fields=user_fields)
    # The weights of each selection's best epoch so far, tested once training ends: testing every epoch
    # that set a best score cost a pass over the test split each time.
    best: dict[str, int] = {}
    kept: dict[int, dict[str, Any]] = {}

    def keep_best(record: Any) -> None:
        if record.improved:
            best.update(dict.fromkeys(record.improved, record.epoch))
            kept[record.epoch] = {key: value.detach().clone() for key, value in model.state_dict().items()}
            for epoch in set(kept) - set(best.values()):
                del kept[epoch]

    result = train_model(model, data, TrainConfig(epochs=settings.epochs, batch_size=settings.batch_size,
                                                  learning_rate=settings.learning_rate, patience=settings.patience,
                                                  select=settings.select, seed=seed, device=settings.device,
                                                  progress=False), on_epoch=keep_best)
    metrics = evaluate(data.test, predict(model, data.test), data.conditional)  # the model holds the selected epoch
    tested = {result.best_epoch: metrics}
    others = {epoch for epoch in result.best_epochs.values() if epoch not in tested and epoch in kept}
    if others:
        selected = {key: value.detach().clone() for key, value in model.state_dict().items()}
        for epoch in sorted(others):
            model.load_state_dict(kept[epoch])
            tested[epoch] = evaluate(data.test, predict(model, data.test), data.conditional)
        model.load_state_dict(selected)
    by_selection = {name: (epoch, tested[epoch]) for name, epoch in result.best_epochs.items() if epoch in tested}
    info = _feature_info(entry, rep, settings, model, resized)
    if settings.save_models:
        from sidkit.ranking.saved import save_ranker

        save_ranker(Path(job.out_dir) / MODELS_DIR / entry.name / f"seed-{seed}", model, rep, data,
                    model_name=settings.model, model_config=config, item_ids=dataset.catalog.item_ids,
                    users=dataset.users, user_features=settings.user_features, seed=seed)
    scores = tuple(float(r.score) for r in result.history if r.score is not None)
    importance = None
    if settings.importance_repeats > 0:
        from sidkit.ranking.importance import permutation_importance

        found = permutation_importance(model, data.valid, user_field_names=data.user_field_names,
                                       repeats=settings.importance_repeats, seed=seed, conditional=data.conditional)
        importance = {"fields": list(found.fields), "tasks": list(found.tasks), "drop": found.drop.tolist(),
                      "std": found.std.tolist(), "base_auc": found.base_auc, "repeats": found.repeats}
    run = RunResult(entry.name, seed, metrics, result.best_epoch, len(result.history), result.seconds, info,
                    result.stopped_early, scores, by_selection, importance)
    return run, ranking_summary(data)


def _feature_info(entry: Entry, rep: ItemRepresentation, settings: RankSettings, model: Any,
                  resized: str | None = None) -> FeatureInfo:
    tables = [part for part in parse_representation(entry.representation) if part != "dense"]
    return FeatureInfo(name=entry.name, representation=entry.representation,
                       budget=entry.budget if tables else None, table_rows=rep.table_rows,
                       tokens_per_item=int(rep.tokens.shape[1]), item_params=rep.param_count(settings.embedding_dim),
                       model_params=sum(p.numel() for p in model.parameters()), size_matched=False,
                       rows_used=rep.rows_used, baseline=entry.baseline, resized=resized)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


# ----- outputs -------------------------------------------------------------------------------------


def write_outputs(experiment: RankingExperiment, *, report: bool = True) -> None:
    """Write metrics.json, summary.md and (unless ``report`` is False) report.html, each atomically."""
    from sidkit.ranking.summary import markdown_summary

    write_json(experiment.metrics_path, experiment.to_dict())
    write_text(experiment.summary_path, markdown_summary(experiment))
    if report:
        from sidkit.ranking.report import write_report

        write_report(experiment, experiment.report_path)


# ----- the demo ------------------------------------------------------------------------------------

#: What ``make demo`` runs on ML-100K: the documented training recipe (defaults: early stopping on
#: validation, at most 30 epochs) for two feature sets and one seed, on a random quarter of the users
#: so that it takes about a minute on one core; the full tables are in docs/ranking.md.
DEMO_SETTINGS = RankSettings(features=("hash", "sid-prefix"), seeds=1, max_users=240,
                             user_features=("age", "gender", "occupation"), save_models=False)


def quick_rank(data_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str],
               settings: RankSettings = DEMO_SETTINGS, *, levels: int = 3, codebook_size: int = 64,
               log: Callable[[str], None] | None = None) -> RankingExperiment:
    """Fit an RQ-KMeans tokenizer (``levels`` x ``codebook_size``) on the dataset's embeddings, save it to
    ``out_dir/tokenizer``, and run :func:`run_ranking` with ``settings`` into ``out_dir/run``.

    ``result.summary_rows()`` gives one row per feature set for a summary table.
    """
    from sidkit.data.dataset import load_dataset
    from sidkit.tokenizers.rq_kmeans import RQKMeans

    x = load_dataset(data_dir).catalog.embeddings
    if x is None:
        raise DataError(f"the dataset in {data_dir} has no embeddings.npy", where=str(data_dir),
                        fix=f"run `sidkit embed --data {data_dir}` first")
    model_dir = Path(out_dir) / "tokenizer"
    RQKMeans(levels=levels, codebook_size=codebook_size, seed=0).fit(x).save(model_dir)
    return run_ranking(data_dir, model_dir, Path(out_dir) / "run", settings, log=log, overwrite=True)


# ----- finished runs of an interrupted experiment ----------------------------------------------------


def run_from_record(record: dict[str, Any]) -> RunResult:
    """A RunResult from one line of ``runs.jsonl``."""
    from sidkit.ranking.metrics import SliceMetrics

    def metrics_of(rows: list[dict[str, Any]]) -> RankingMetrics:
        return RankingMetrics(tuple(SliceMetrics(**row) for row in rows))

    by_selection = {name: (int(value["best_epoch"]), metrics_of(value["metrics"]))
                    for name, value in record.get("by_selection", {}).items()}
    return RunResult(record["feature"], int(record["seed"]), metrics_of(record["metrics"]), int(record["best_epoch"]),
                     int(record["epochs_run"]), float(record["train_seconds"]), FeatureInfo(**record["info"]),
                     bool(record.get("stopped_early", False)), tuple(record.get("valid_scores", ())), by_selection,
                     record.get("importance"))


def read_runs(path: str | os.PathLike[str]) -> list[RunResult]:
    """The runs recorded in a ``runs.jsonl`` (one per finished feature x seed run)."""
    return [run_from_record(json.loads(line)) for line in Path(path).read_text(encoding="utf-8").splitlines()
            if line.strip()]


def experiment_from_runs(data_dir: str | os.PathLike[str], tokenizer: str | os.PathLike[str],
                         out_dir: str | os.PathLike[str], settings: RankSettings, *,
                         complete_seeds_only: bool = True) -> RankingExperiment:
    """A :class:`RankingExperiment` from ``out_dir/runs.jsonl`` of a run that was cut short (or is running).

    Only seeds with every entry finished are kept (unless ``complete_seeds_only`` is False, when each
    feature set averages the seeds it has).
    """
    from sidkit.data.dataset import load_dataset

    recorded = Path(out_dir) / PROGRESS_FILE
    if (staging_dir(out_dir) / PROGRESS_FILE).is_file():
        recorded = staging_dir(out_dir) / PROGRESS_FILE  # a run going on or cut short keeps its runs there
    records = [json.loads(line) for line in recorded.read_text(encoding="utf-8").splitlines() if line.strip()]
    dataset = load_dataset(data_dir)
    x = dataset.catalog.embeddings
    assert x is not None
    entries = plan_entries(settings, len(x))
    names = [entry.name for entry in entries]
    by_seed: dict[int, dict[str, dict[str, Any]]] = {}
    for record in records:
        by_seed.setdefault(int(record["seed"]), {})[record["feature"]] = record
    seeds = sorted(seed for seed, got in by_seed.items() if not complete_seeds_only or set(names) <= set(got))
    if not seeds:
        raise DataError(f"no seed has every feature set finished in {Path(out_dir) / PROGRESS_FILE}",
                        where=str(out_dir), fix="wait for a seed to finish, or pass complete_seeds_only=False")
    results = []
    for seed in seeds:
        got = by_seed[seed]
        data = next(iter(got.values()))["data"]
        results.append(SeedResult(seed, data, tuple(run_from_record(got[name]) for name in names if name in got)))
    sizes = load_sids(tokenizer, np.ascontiguousarray(x, dtype=np.float32), dataset.catalog.item_ids).sizes
    return _assemble(Path(data_dir), str(tokenizer), Path(out_dir), settings, entries, len(x), int(x.shape[1]),
                     tuple(sizes), results, 0.0)
