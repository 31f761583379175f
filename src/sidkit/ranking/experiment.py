"""The ranking runner: train a multi-task ranker on several item representations over several seeds.

``run_ranking(data_dir, tokenizer, out_dir, settings)`` encodes the catalog's embeddings into
Semantic IDs once, then for every seed builds :class:`RankingData` once (the item hold-out and the
sampled negatives depend on the seed) and the item representations of every feature set (``sid-spm``
learns its pieces from training items only, weighted by ``training_item_counts``), and trains and
tests one model per feature set x seed. It writes, atomically, into ``out_dir``::

    metrics.json   settings, data summaries, per-feature table sizes and parameter counts, every run,
                   the mean and 95% t interval per feature x task x slice, and paired differences
                   against the baseline feature (``hash``) per seed
    summary.md     the same table in markdown
    report.html    a self-contained page with AUC-by-slice plots (CI error bars) per task

Feature names are those of :mod:`sidkit.features.representations` (``hash``, ``sid-prefix``,
``hash+sid-prefix``, ...). ``settings.budget`` is one table size for every table representation, so
the comparison is size-matched; a name may carry its own budget as ``name@rows`` (e.g.
``sid-spm@512``), which is then no longer size-matched and is reported as such.

The feature x seed runs go to ``settings.jobs`` worker processes (``threads`` torch threads each);
results do not depend on ``jobs``. The run is built in a staging directory beside ``out_dir``
(:func:`sidkit.io.staging_dir`) and swapped in whole when it is complete, so an earlier run there
stays as it was until then. Each finished run is appended to ``runs.jsonl`` in the staging directory
at once, so a long run cut short keeps its finished rows (:func:`experiment_from_runs` reads them).
"""

from __future__ import annotations

import concurrent.futures as futures
import json
import multiprocessing
import os
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
from sidkit.io import atomic_dir, staging_dir, write_json, write_text
from sidkit.ranking.data import SPLITS, build_ranking_data, ranking_summary, training_item_counts
from sidkit.ranking.metrics import AggregateMetrics, MeanCI, RankingMetrics, aggregate, evaluate, mean_ci
from sidkit.ranking.models import ModelConfig, build_model, model_names
from sidkit.ranking.training import TrainConfig, predict, train_model
from sidkit.ranking.types import SLICES
from sidkit.report.tables import markdown_table

METRICS_FILE = "metrics.json"
SUMMARY_FILE = "summary.md"
REPORT_FILE = "report.html"
#: One JSON line per finished run, written as runs finish (the final files are written at the end).
PROGRESS_FILE = "runs.jsonl"
DEFAULT_FEATURES: tuple[str, ...] = ("hash", "sid-unigram", "sid-bigram", "sid-prefix", "sid-spm", "dense",
                                     "hash+sid-prefix")
BASELINE = "hash"
_BUDGET_MARK = "@"


@dataclass(frozen=True)
class RankSettings:
    """How to build the ranking data, the representations and the models.

    Attributes:
        features: feature-set names, each optionally ``name@rows`` to give it its own budget.
        model: a name of :func:`sidkit.ranking.models.model_names`.
        seeds: seeds ``0 .. seeds - 1``; each seeds the hold-out, the negatives, the hashes and training.
        budget: table rows of every table representation (size-matched); None: each one's natural size.
        history: H, engaged items in each impression's history.
        negatives: sampled negatives per engagement.
        item_holdout: share of engaged items removed from training (the ``new`` slice).
        split: ``user-time`` (main) or ``global-time``.
        epochs, batch_size, learning_rate, patience: training (early stopping on validation AUC).
        embedding_dim: width of every embedding.
        device: torch device.
        jobs: worker processes (feature x seed runs in parallel); 1 runs in this process.
        threads: torch threads per worker process.
    """

    features: tuple[str, ...] = DEFAULT_FEATURES
    model: str = "mmoe"
    seeds: int = 5
    budget: int | None = 4096
    history: int = 20
    negatives: int = 4
    item_holdout: float = 0.2
    split: str = "user-time"
    epochs: int = 4
    batch_size: int = 2048
    learning_rate: float = 1e-3
    patience: int = 1
    embedding_dim: int = 32
    device: str = "cpu"
    jobs: int = 1
    threads: int = 1

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["features"] = list(self.features)
        return out


@dataclass(frozen=True)
class FeatureInfo:
    """Table size and parameter counts of one feature set (the same for every seed).

    Attributes:
        name: the feature-set name as given (maybe ``name@rows``).
        representation: the representation name (without the budget).
        budget: the table rows asked for per component; None for dense only or natural size.
        table_rows: embedding-table rows, padding excluded (``num_embeddings - 1``).
        tokens_per_item: T, table rows summed per item.
        item_params: parameters of the item table (and dense projection).
        model_params: parameters of the whole model.
        size_matched: True when the feature used the run's common budget.
    """

    name: str
    representation: str
    budget: int | None
    table_rows: int
    tokens_per_item: int
    item_params: int
    model_params: int
    size_matched: bool


@dataclass(frozen=True)
class RunResult:
    """One feature set trained and tested with one seed."""

    feature: str
    seed: int
    metrics: RankingMetrics
    best_epoch: int
    epochs_run: int
    train_seconds: float
    info: FeatureInfo

    def to_dict(self) -> dict[str, Any]:
        return {"feature": self.feature, "seed": self.seed, "best_epoch": self.best_epoch,
                "epochs_run": self.epochs_run, "train_seconds": self.train_seconds,
                "metrics": self.metrics.to_rows()}


@dataclass(frozen=True)
class SeedResult:
    """Every feature set of one seed, and the summary of that seed's ranking data."""

    seed: int
    data: dict[str, Any]
    runs: tuple[RunResult, ...]


@dataclass(frozen=True)
class PairedDifference:
    """AUC of ``feature`` minus AUC of the baseline on the same seed, as mean and t interval."""

    feature: str
    task: str
    slice: str
    difference: MeanCI


@dataclass(frozen=True, eq=False)
class RankingExperiment:
    """The outcome of :func:`run_ranking` and where its outputs were written."""

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

    @property
    def metrics_path(self) -> Path:
        return self.out_dir / METRICS_FILE

    @property
    def summary_path(self) -> Path:
        return self.out_dir / SUMMARY_FILE

    @property
    def report_path(self) -> Path:
        return self.out_dir / REPORT_FILE

    def runs(self, feature: str) -> list[RunResult]:
        return [run for seed in self.seeds for run in seed.runs if run.feature == feature]

    def table(self) -> dict[str, tuple[AggregateMetrics, ...]]:
        """Feature -> mean and interval of AUC and log loss per (task, slice) across seeds."""
        return {info.name: aggregate([run.metrics for run in self.runs(info.name)]) for info in self.features}

    def paired(self, baseline: str = BASELINE) -> list[PairedDifference]:
        """Per feature (not the baseline), task and slice: AUC minus the baseline's AUC on the same seed.

        Seeds share the ranking data across features, so the paired difference removes the
        seed-to-seed variation of the data; empty when the baseline was not run.
        """
        names = [info.name for info in self.features]
        if baseline not in names:
            return []
        base = {run.seed: run.metrics for run in self.runs(baseline)}
        out = []
        for name in names:
            if name == baseline:
                continue
            for task in self.tasks:
                for slice_name in SLICES:
                    values = []
                    for run in self.runs(name):
                        if run.seed not in base:  # a cut-short run may lack the baseline of a seed
                            continue
                        ours, theirs = _auc(run.metrics, task, slice_name), _auc(base[run.seed], task, slice_name)
                        if ours is not None and theirs is not None:
                            values.append(ours - theirs)
                    out.append(PairedDifference(name, task, slice_name, mean_ci(values)))
        return out

    def summary_rows(self) -> list[dict[str, Any]]:
        """One dict per feature: table rows, parameters, and mean/half-width AUC per task and slice.

        Keys: ``feature``, ``table_rows``, ``item_params``, ``model_params``, ``size_matched`` and
        ``<task>/<slice>`` -> ``{"mean", "half_width", "n"}``. This is what ``make demo`` prints.
        """
        table = self.table()
        rows = []
        for info in self.features:
            row: dict[str, Any] = {"feature": info.name, "table_rows": info.table_rows,
                                   "item_params": info.item_params, "model_params": info.model_params,
                                   "size_matched": info.size_matched}
            for entry in table[info.name]:
                row[f"{entry.task}/{entry.slice}"] = {"mean": entry.auc.mean, "half_width": entry.auc.half_width,
                                                      "n": entry.auc.n}
            rows.append(row)
        return rows

    def to_dict(self) -> dict[str, Any]:
        table = self.table()
        return {
            "data_dir": str(self.data_dir), "tokenizer": self.tokenizer, "num_items": self.num_items,
            "dim": self.dim, "codebook_sizes": list(self.codebook_sizes), "tasks": list(self.tasks),
            "slices": list(SLICES), "settings": self.settings.to_dict(), "seconds": self.seconds,
            "features": [asdict(info) for info in self.features],
            "summary": self.summary_rows(),
            "table": [{"feature": name, **asdict(entry)} for name, entries in table.items() for entry in entries],
            "paired_vs_baseline": {"baseline": BASELINE,
                                   "rows": [asdict(row) for row in self.paired()]},
            "data": {str(seed.seed): seed.data for seed in self.seeds},
            "runs": [run.to_dict() for seed in self.seeds for run in seed.runs],
        }


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


def is_rank_run(directory: Path) -> bool:
    """Whether ``directory`` holds the outputs of a ranking run (so that a new one may replace it)."""
    return (directory / METRICS_FILE).is_file() or (directory / PROGRESS_FILE).is_file()


def _check_settings(settings: RankSettings) -> None:
    if settings.model not in model_names():
        raise ConfigError(f"unknown model {settings.model!r}", where="--model",
                          fix=f"use one of {', '.join(model_names())}")
    if settings.split not in SPLITS:
        raise ConfigError(f"unknown split {settings.split!r}", where="--split", fix=f"use one of {', '.join(SPLITS)}")
    for name in ("seeds", "epochs", "batch_size", "jobs", "threads", "embedding_dim", "patience", "negatives",
                 "history"):
        check_int(getattr(settings, name), where=f"--{name.replace('_', '-')}")
    check_float(settings.learning_rate, where="--learning-rate", low=0, low_open=True, fix="pass e.g. 3e-3")
    check_float(settings.item_holdout, where="--item-holdout", low=0, high=1, high_open=True, fix="pass e.g. 0.2")
    if settings.budget is not None and (isinstance(settings.budget, bool) or settings.budget < 1):
        raise ConfigError(f"budget must be a positive integer, got {settings.budget!r}", where="--budget",
                          fix="pass e.g. --budget 4096")


# ----- running -------------------------------------------------------------------------------------


def run_ranking(data_dir: str | os.PathLike[str], tokenizer: str | os.PathLike[str] | None,
                out_dir: str | os.PathLike[str], settings: RankSettings | None = None, *, report: bool = True,
                log: Callable[[str], None] | None = None) -> RankingExperiment:
    """Train and test every feature set of ``settings`` on every seed; write the outputs into ``out_dir``.

    Args:
        data_dir: a dataset directory with ``embeddings.npy`` (``sidkit embed``).
        tokenizer: a fitted tokenizer directory (it encodes the embeddings) or a codes ``.parquet``;
            None is allowed when no feature set needs Semantic IDs.
        out_dir: where metrics.json, summary.md and report.html go.
        report: False skips report.html. ``log`` receives one line per stage.

    Raises:
        ConfigError: unknown feature or model names, bad settings, a missing tokenizer.
        DataError: no embeddings, or a tokenizer / codes that do not fit the data.
    """
    from sidkit.data.dataset import load_dataset

    settings = settings or RankSettings()
    features = parse_features(settings.features)
    settings = replace(settings, features=tuple(name for name, _, _ in features))
    _check_settings(settings)
    say = log or (lambda _line: None)
    started = time.perf_counter()
    dataset = load_dataset(data_dir)
    x = dataset.catalog.embeddings
    if x is None:
        raise DataError(f"the dataset in {data_dir} has no embeddings.npy", where=str(data_dir),
                        fix=f"run `sidkit embed --data {data_dir}` first")
    needs_sids = any(part.startswith("sid-") for _, rep, _ in features for part in parse_representation(rep))
    sids = None
    if needs_sids:
        if tokenizer is None:
            raise ConfigError("SID feature sets need a tokenizer", where="--tokenizer",
                              fix="pass --tokenizer MODEL_DIR (from `sidkit fit`)")
        sids = load_sids(tokenizer, np.ascontiguousarray(x, dtype=np.float32), dataset.catalog.item_ids)
    say(f"{len(x):,} items x {x.shape[1]} dims; SIDs {'x'.join(map(str, sids.sizes)) if sids else 'none'}; "
        f"{len(features)} feature sets x {settings.seeds} seeds, model {settings.model}")
    out = Path(out_dir)
    # Built in a staging directory beside `out` and swapped in whole at the end: a crash leaves an
    # earlier run untouched, and the staging directory keeps the runs that had finished.
    with atomic_dir(out, replaceable=is_rank_run, what="rank run", resumable=True,
                    fix="pass a new directory, or one that `sidkit rank` wrote") as work:
        job = _SeedJob(str(data_dir), sids, settings)
        progress = work / PROGRESS_FILE
        progress.unlink(missing_ok=True)
        seeds = _run_seeds(job, settings, say, progress)
        infos = tuple(run.info for run in seeds[0].runs)
        experiment = RankingExperiment(Path(data_dir), "" if tokenizer is None else str(tokenizer), work, settings,
                                       len(x), int(x.shape[1]), tuple(sids.sizes) if sids else (), seeds, infos,
                                       time.perf_counter() - started, tasks=tuple(seeds[0].data["tasks"]))
        write_outputs(experiment, report=report)
    experiment = replace(experiment, out_dir=out)
    say(f"wrote {experiment.metrics_path}, {experiment.summary_path}"
        + (f", {experiment.report_path}" if report else ""))
    return experiment


@dataclass(frozen=True, eq=False)
class _SeedJob:
    """What a worker needs to run one seed (picklable: a path, codes and settings)."""

    data_dir: str
    sids: SemanticIds | None
    settings: RankSettings


def _run_seeds(job: _SeedJob, settings: RankSettings, say: Callable[[str], None],
               progress_file: Path | None = None) -> tuple[SeedResult, ...]:
    """Every (seed, feature) run, in ``settings.jobs`` processes; each finished run is appended to
    ``progress_file`` (JSON lines) at once, so a run cut short still leaves its finished rows."""
    tasks = [(seed, index) for seed in range(settings.seeds) for index in range(len(settings.features))]
    done: dict[tuple[int, int], tuple[RunResult, dict[str, Any]]] = {}

    def finished(key: tuple[int, int], result: tuple[RunResult, dict[str, Any]]) -> None:
        done[key] = result
        run = result[0]
        say(f"seed {run.seed} {run.feature}: click AUC all {_fmt(_auc(run.metrics, 'click', 'all'))} new "
            f"{_fmt(_auc(run.metrics, 'click', 'new'))} ({run.train_seconds:.0f} s, best epoch {run.best_epoch}); "
            f"{len(done)}/{len(tasks)} runs done")
        if progress_file is not None:
            with open(progress_file, "a", encoding="utf-8") as handle:
                handle.write(json.dumps({**run.to_dict(), "info": asdict(run.info)}) + "\n")

    if settings.jobs == 1 or len(tasks) == 1:
        for seed, index in tasks:
            finished((seed, index), run_one(job, seed, index))
    else:
        # spawn: a fresh interpreter per worker, never a fork of a process holding torch threads.
        context = multiprocessing.get_context("spawn")
        with futures.ProcessPoolExecutor(max_workers=min(settings.jobs, len(tasks)), mp_context=context) as pool:
            pending = {pool.submit(run_one, job, seed, index): (seed, index) for seed, index in tasks}
            for future in futures.as_completed(pending):
                finished(pending[future], future.result())
    return tuple(SeedResult(seed, done[(seed, 0)][1],
                            tuple(done[(seed, index)][0] for index in range(len(settings.features))))
                 for seed in range(settings.seeds))


# Per worker process: the ranking data of the seeds it ran last (building it takes about a second).
_DATA_CACHE: dict[tuple[str, int], tuple[Any, Any, np.ndarray]] = {}
_DATA_CACHE_SIZE = 2


def _seed_data(job: _SeedJob, seed: int) -> tuple[Any, Any, np.ndarray]:
    """(dataset, RankingData, training impressions per item) of ``seed``, cached per process."""
    from sidkit.data.dataset import load_dataset

    key = (job.data_dir, seed)
    if key not in _DATA_CACHE:
        s = job.settings
        dataset = load_dataset(job.data_dir)
        data = build_ranking_data(dataset, history=s.history, negatives=s.negatives, split=s.split,
                                  item_holdout=s.item_holdout, seed=seed)
        while len(_DATA_CACHE) >= _DATA_CACHE_SIZE:
            _DATA_CACHE.pop(next(iter(_DATA_CACHE)))
        _DATA_CACHE[key] = (dataset, data, training_item_counts(data))
    return _DATA_CACHE[key]


def run_one(job: _SeedJob, seed: int, index: int) -> tuple[RunResult, dict[str, Any]]:
    """Train and test feature set ``index`` of the settings with ``seed``; also the seed's data summary.

    The seed fixes the item hold-out, the negatives, the hashes, the initialization and the shuffling;
    ``sid-spm`` learns its pieces from this seed's training items only.
    """
    from sidkit.threads import set_threads

    settings = job.settings
    set_threads(settings.threads)
    dataset, data, counts = _seed_data(job, seed)
    name, representation, own_budget = parse_features(settings.features)[index]
    budget = own_budget if own_budget is not None else settings.budget
    rep = build_representation(representation, item_ids=dataset.catalog.item_ids, sids=job.sids,
                               embeddings=dataset.catalog.embeddings, budget=budget, train_items=counts, seed=seed)
    config = ModelConfig(embedding_dim=settings.embedding_dim, seed=seed)
    model = build_model(settings.model, rep, data.num_user_embeddings, data.tasks, config)
    result = train_model(model, data, TrainConfig(epochs=settings.epochs, batch_size=settings.batch_size,
                                                  learning_rate=settings.learning_rate, patience=settings.patience,
                                                  seed=seed, device=settings.device, progress=False))
    metrics = evaluate(data.test, predict(model, data.test))
    info = _feature_info(name, representation, budget, rep, settings, model)
    run = RunResult(name, seed, metrics, result.best_epoch, len(result.history), result.seconds, info)
    return run, ranking_summary(data)


def _feature_info(name: str, representation: str, budget: int | None, rep: ItemRepresentation,
                  settings: RankSettings, model: Any) -> FeatureInfo:
    tables = [part for part in parse_representation(representation) if part != "dense"]
    return FeatureInfo(name=name, representation=representation, budget=budget if tables else None,
                       table_rows=rep.num_embeddings - 1, tokens_per_item=int(rep.tokens.shape[1]),
                       item_params=rep.param_count(settings.embedding_dim),
                       model_params=sum(p.numel() for p in model.parameters()),
                       size_matched=not tables or budget == settings.budget)


def _auc(metrics: RankingMetrics, task: str, slice_name: str) -> float | None:
    for row in metrics.rows:
        if row.task == task and row.slice == slice_name:
            return row.auc
    return None


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


# ----- outputs -------------------------------------------------------------------------------------


def write_outputs(experiment: RankingExperiment, *, report: bool = True) -> None:
    """Write metrics.json, summary.md and (unless ``report`` is False) report.html, each atomically."""
    write_json(experiment.metrics_path, experiment.to_dict())
    write_text(experiment.summary_path, markdown_summary(experiment))
    if report:
        from sidkit.ranking.report import write_report

        write_report(experiment, experiment.report_path)


def cell(entry: MeanCI) -> str:
    """``0.742 ± 0.010`` (mean and 95% half-width), ``0.742`` for one seed, ``-`` for none."""
    if entry.mean is None:
        return "-"
    if entry.half_width is None:
        return f"{entry.mean:.3f}"
    return f"{entry.mean:.3f} ± {entry.half_width:.3f}"


def table_rows(experiment: RankingExperiment) -> tuple[list[str], list[list[str]]]:
    """Headers and rows of the main table: one row per feature set, AUC per task x slice."""
    table = experiment.table()
    headers = ["features", "table rows", "item params", "model params",
               *[f"{task} {s}" for task in experiment.tasks for s in SLICES]]
    rows = []
    for info in experiment.features:
        entries = {(e.task, e.slice): e for e in table[info.name]}
        label = info.name + ("" if info.size_matched else " (own budget)")
        rows.append([label, f"{info.table_rows:,}", f"{info.item_params:,}", f"{info.model_params:,}",
                     *[cell(entries[(task, s)].auc) if (task, s) in entries else "-"
                       for task in experiment.tasks for s in SLICES]])
    return headers, rows


def paired_rows(experiment: RankingExperiment) -> tuple[list[str], list[list[str]]]:
    """Headers and rows of the paired-difference table (AUC minus the baseline's, same seed)."""
    paired = {(p.feature, p.task, p.slice): p.difference for p in experiment.paired()}
    headers = ["features", *[f"{task} {s}" for task in experiment.tasks for s in SLICES]]
    rows = []
    for info in experiment.features:
        if info.name == BASELINE:
            continue
        rows.append([info.name, *[_signed(paired.get((info.name, task, s))) for task in experiment.tasks
                                  for s in SLICES]])
    return headers, rows


def _signed(entry: MeanCI | None) -> str:
    if entry is None or entry.mean is None:
        return "-"
    if entry.half_width is None:
        return f"{entry.mean:+.3f}"
    return f"{entry.mean:+.3f} ± {entry.half_width:.3f}"


def markdown_summary(experiment: RankingExperiment) -> str:
    """The main table and the paired differences against ``hash``, as markdown."""

    s = experiment.settings
    lines = [f"# Ranking with item representations: {experiment.data_dir.name}", "",
             _description(experiment), "",
             "Test AUC, mean ± 95% t half-width across seeds. Slices: all; new = items held out of training; "
             "tail / head = bottom / top half of training items by training impressions.", ""]
    headers, rows = table_rows(experiment)
    lines += markdown_table(headers, rows)
    headers, rows = paired_rows(experiment)
    if rows:
        lines += ["", f"## AUC minus {BASELINE} on the same seed (paired, mean ± 95% half-width)", ""]
        lines += markdown_table(headers, rows)
    first = experiment.seeds[0].data
    lines += ["", f"Data (seed {experiment.seeds[0].seed}): {first['train']['impressions']:,} train / "
              f"{first['valid']['impressions']:,} valid / {first['test']['impressions']:,} test impressions; "
              f"{first['heldout_items']:,} held-out items; test slices "
              + ", ".join(f"{k} {v:,}" for k, v in first["test"]["slices"].items())
              + f". Settings: {s.to_dict()}."]
    return "\n".join(lines) + "\n"


def _description(experiment: RankingExperiment) -> str:
    s = experiment.settings
    sizes = "x".join(map(str, experiment.codebook_sizes)) or "none"
    return (f"{experiment.num_items:,} items; model {s.model}; {s.seeds} seeds; budget "
            f"{s.budget if s.budget is not None else 'natural'} rows per table; SIDs {sizes}; history {s.history}; "
            f"{s.negatives} negatives per engagement; {s.split} split; item hold-out {s.item_holdout:g}; "
            f"at most {s.epochs} epochs (patience {s.patience}); run took {experiment.seconds:.0f} s.")


# ----- the demo ------------------------------------------------------------------------------------

#: What ``make demo`` runs on ML-100K: one seed, three feature sets, two epochs (about two minutes on
#: 2 CPU cores); the full table is in docs/ranking.md.
DEMO_SETTINGS = RankSettings(features=("hash", "sid-prefix", "hash+sid-prefix"), seeds=1, budget=4096, negatives=2,
                             epochs=2, learning_rate=3e-3)


def quick_rank(data_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str],
               settings: RankSettings = DEMO_SETTINGS, *, levels: int = 3, codebook_size: int = 64,
               log: Callable[[str], None] | None = None) -> RankingExperiment:
    """Fit an RQ-KMeans tokenizer (``levels`` x ``codebook_size``) on the dataset's embeddings, save it
    beside ``out_dir`` as ``<out_dir>-tokenizer`` (the run directory is replaced as a whole, so it holds
    only the run), and run :func:`run_ranking` with ``settings`` into ``out_dir``.

    ``result.summary_rows()`` gives one row per feature set for a summary table.
    """
    from sidkit.data.dataset import load_dataset
    from sidkit.tokenizers.rq_kmeans import RQKMeans

    x = load_dataset(data_dir).catalog.embeddings
    if x is None:
        raise DataError(f"the dataset in {data_dir} has no embeddings.npy", where=str(data_dir),
                        fix=f"run `sidkit embed --data {data_dir}` first")
    model_dir = Path(out_dir).with_name(f"{Path(out_dir).name}-tokenizer")
    RQKMeans(levels=levels, codebook_size=codebook_size, seed=0).fit(x).save(model_dir)
    return run_ranking(data_dir, model_dir, out_dir, settings, log=log)


# ----- finished runs of an interrupted experiment ----------------------------------------------------


def read_runs(path: str | os.PathLike[str]) -> list[RunResult]:
    """The runs recorded in a ``runs.jsonl`` (one per finished feature x seed run)."""
    from sidkit.ranking.metrics import SliceMetrics

    runs = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        record = json.loads(line)
        metrics = RankingMetrics(tuple(SliceMetrics(**row) for row in record["metrics"]))
        runs.append(RunResult(record["feature"], int(record["seed"]), metrics, int(record["best_epoch"]),
                              int(record["epochs_run"]), float(record["train_seconds"]),
                              FeatureInfo(**record["info"])))
    return runs


def experiment_from_runs(data_dir: str | os.PathLike[str], tokenizer: str | os.PathLike[str],
                         out_dir: str | os.PathLike[str], settings: RankSettings, *,
                         complete_seeds_only: bool = True) -> RankingExperiment:
    """A :class:`RankingExperiment` from ``out_dir/runs.jsonl`` of a run that was cut short.

    Only seeds with every feature set finished are kept (unless ``complete_seeds_only`` is False, when
    each feature set averages the seeds it has); the seeds' data summaries are rebuilt (cheap).
    """
    from sidkit.data.dataset import load_dataset

    recorded = Path(out_dir) / PROGRESS_FILE
    if not recorded.is_file() and (staging_dir(out_dir) / PROGRESS_FILE).is_file():
        recorded = staging_dir(out_dir) / PROGRESS_FILE  # a run cut short keeps its runs there
    runs = read_runs(recorded)
    names = [name for name, _, _ in parse_features(settings.features)]
    by_seed: dict[int, dict[str, RunResult]] = {}
    for run in runs:
        by_seed.setdefault(run.seed, {})[run.feature] = run
    seeds = sorted(seed for seed, got in by_seed.items() if not complete_seeds_only or set(names) <= set(got))
    if not seeds:
        raise DataError(f"no seed has every feature set finished in {Path(out_dir) / PROGRESS_FILE}",
                        where=str(out_dir), fix="wait for a seed to finish, or pass complete_seeds_only=False")
    dataset = load_dataset(data_dir)
    results = []
    infos: dict[str, FeatureInfo] = {}
    for seed in seeds:
        data = build_ranking_data(dataset, history=settings.history, negatives=settings.negatives,
                                  split=settings.split, item_holdout=settings.item_holdout, seed=seed)
        got = by_seed[seed]
        results.append(SeedResult(seed, ranking_summary(data), tuple(got[name] for name in names if name in got)))
        infos.update({name: got[name].info for name in names if name in got})
    x = dataset.catalog.embeddings
    assert x is not None
    sizes = load_sids(tokenizer, np.ascontiguousarray(x, dtype=np.float32), dataset.catalog.item_ids).sizes
    return RankingExperiment(Path(data_dir), str(tokenizer), Path(out_dir), replace(settings, seeds=len(seeds)),
                             len(x), int(x.shape[1]), tuple(sizes), tuple(results),
                             tuple(infos[name] for name in names if name in infos), 0.0,
                             tasks=tuple(results[0].data["tasks"]))
