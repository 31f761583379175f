"""The retrieval runner: next-item retrievers over seeds on one dataset, and the diagnostics they meet.

``run_retrieval(data_dir, out_dir, settings, tokenizer=...)`` builds the next-item data of every seed
(the seed draws the item hold-out, the training windows, the initialization and, for fitted
tokenizers, the tokenizer's fit) and trains and tests each model on it:

- ``tiger`` once per SID source: the fixed tokenizer or codes given as ``tokenizer`` (the same SIDs
  for every seed), each method of ``settings.tokenizers`` fitted on the dataset's embeddings with the
  seed (their diagnostics are computed by :func:`sidkit.compare.evaluate_method`, exactly as
  ``sidkit compare`` computes them), and with ``settings.random_sids`` the same shapes drawn at
  random (:class:`sidkit.tokenizers.random_codes.RandomCodes`);
- ``sasrec`` and ``popularity`` once per seed (they use no SIDs).

Every model ranks the same candidates with the same exclusion rule (see
:mod:`sidkit.retrieval.data`). ``out_dir`` is built in a staging directory beside it
(:func:`sidkit.io.staging_dir`) and swapped in whole when the run is complete, so an earlier run
there stays as it was until then; after a crash the staging directory keeps ``runs.jsonl`` with the
runs that had finished (:func:`experiment_from_runs` reads it). The run directory holds::

    metrics.json   settings, data summaries, every run, the table of mean and 95% t interval per
                   model x tokenizer x metric x K x slice, paired differences against sasrec per
                   seed, and (with fitted tokenizers) the diagnostics-vs-Recall@10 correlations
    summary.md     the same tables in markdown
    report.html    a self-contained page with the tables and plots
    runs.jsonl     one JSON line per finished run, appended as runs finish
    tokenizers/    each fitted tokenizer (seed-<s>/models/<method>) and its codes
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from sidkit.checks import check_float, check_int, level_sizes
from sidkit.errors import ConfigError, DataError
from sidkit.ids import SemanticIds
from sidkit.io import atomic_dir, staging_dir, write_json, write_text
from sidkit.ranking.metrics import MeanCI, mean_ci
from sidkit.retrieval.data import DEFAULT_HISTORY, SLICES, SPLITS, NextItemData, build_next_item_data
from sidkit.retrieval.metrics import (
    CUTOFFS,
    METRICS,
    ClusteredDifference,
    ClusteredHits,
    RetrievalMetrics,
    clustered_difference,
    clustered_hits,
    hit_positions,
    reserve_new_items,
    retrieval_metrics,
)
from sidkit.retrieval.sasrec import SasrecConfig
from sidkit.retrieval.tiger import TigerConfig

METRICS_FILE = "metrics.json"
SUMMARY_FILE = "summary.md"
REPORT_FILE = "report.html"
PROGRESS_FILE = "runs.jsonl"
MODELS: tuple[str, ...] = ("tiger", "sasrec", "popularity")
BASELINE = "sasrec"
RANDOM = "random"
#: The tokenizer column of models that use no SIDs.
NO_TOKENIZER = "-"
#: The metric the correlation study and early stopping read.
HEADLINE = ("recall", 10, "all")


@dataclass(frozen=True)
class RetrieveSettings:
    """What to run.

    Attributes:
        models: names of :data:`MODELS`.
        tokenizers: tokenizer methods (``sidkit compare`` names, e.g. ``rq-kmeans``) fitted per seed on
            the dataset's embeddings, each giving tiger its SIDs and a row of diagnostics.
        random_sids: also run tiger on random SIDs of the same shapes (a fresh draw per seed).
        seeds: seeds ``0 .. seeds - 1``.
        split, history, item_holdout: the next-item data (:func:`build_next_item_data`).
        new_item_share: share of each ranked list reserved for items never seen in training (TIGER's
            cold-start protocol, :func:`sidkit.retrieval.metrics.reserve_new_items`): 0.1 puts the
            model's best unseen items at positions 10 and 20, for every model alike. 0 (the default)
            ranks all candidates together, where no model trained on the split scores on unseen items.
        cutoffs: K of Recall@K and NDCG@K (at most the tiger beam).
        levels, codebook_size: shapes of fitted tokenizers (None: ``sidkit compare``'s default size).
        tokenizer_epochs: epochs of the neural tokenizers (None: each one's default, early-stopped).
        tiger, sasrec: the models' settings.
        device: torch device. threads: torch threads (None leaves torch's setting).
        progress: progress bars (None: when stderr is a terminal).
    """

    models: tuple[str, ...] = MODELS
    tokenizers: tuple[str, ...] = ()
    random_sids: bool = False
    seeds: int = 3
    split: str = "leave-one-out"
    history: int = DEFAULT_HISTORY
    item_holdout: float = 0.0
    new_item_share: float = 0.0
    cutoffs: tuple[int, ...] = CUTOFFS
    levels: int = 3
    codebook_size: int | None = None
    tokenizer_epochs: int | None = None
    tiger: TigerConfig = field(default_factory=TigerConfig)
    sasrec: SasrecConfig = field(default_factory=SasrecConfig)
    device: str = "cpu"
    threads: int | None = None
    progress: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("models", "tokenizers", "cutoffs"):
            out[key] = list(out[key])
        return out


@dataclass(frozen=True)
class RunResult:
    """One model (on one SID source) trained and tested with one seed.

    Attributes:
        model, tokenizer, seed: what ran (tokenizer :data:`NO_TOKENIZER` for models without SIDs).
        metrics: test metrics. valid_recall: validation Recall@10 of the kept epoch (None: no training).
        best_epoch, epochs_run: early stopping (0 for popularity).
        train_seconds, eval_seconds: wall time of training (validation included) and of the test ranking.
        train_examples_per_second: training sequences per second of training time.
        eval_users_per_second: test examples ranked per second.
        parameters: trainable parameters. precision: of training and inference.
        diagnostics: the tokenizer's ``sidkit compare`` summary numbers (fitted tokenizers only).
        new_targets: (target item, 0-based position in the ranked list or -1) of each test example of
            the ``new`` slice, for :meth:`clustered_new`; empty in runs recorded before it was kept.
    """

    model: str
    tokenizer: str
    seed: int
    metrics: RetrievalMetrics
    valid_recall: float | None
    best_epoch: int
    epochs_run: int
    train_seconds: float
    eval_seconds: float
    train_examples_per_second: float | None
    eval_users_per_second: float
    parameters: int
    precision: str
    diagnostics: dict[str, Any] | None = None
    new_targets: tuple[tuple[int, int], ...] = ()

    def clustered_new(self, k: int) -> ClusteredHits | None:
        """Recall@k on the ``new`` slice clustered by distinct target item (None: not recorded, or
        fewer than 2 distinct targets)."""
        return pooled_clustered_new([self], k)  # one seed: a (seed, target) cluster is a target

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["metrics"] = self.metrics.to_rows()
        out["new_targets"] = [list(pair) for pair in self.new_targets]
        return out

    @staticmethod
    def from_dict(record: dict[str, Any]) -> RunResult:
        values = dict(record)
        values["metrics"] = RetrievalMetrics.from_rows(values["metrics"])
        values["new_targets"] = tuple((int(item), int(position)) for item, position in values.get("new_targets", ()))
        return RunResult(**values)


def pooled_clustered_new(runs: Sequence[RunResult], k: int) -> ClusteredHits | None:
    """Recall@k on the ``new`` slice of several runs (seeds) pooled, one cluster per (seed, target
    item): seeds hold out different items, and one item's examples repeat within a seed. None when a
    run did not record its targets, or with fewer than 2 clusters."""
    if not runs or any(not run.new_targets for run in runs):
        return None
    rows = np.array([(run.seed, item, position) for run in runs for item, position in run.new_targets],
                    dtype=np.int64)
    if len(np.unique(rows[:, :2], axis=0)) < 2:
        return None
    return clustered_hits(rows[:, :2], rows[:, 2], k)


def pooled_paired_new(runs_a: Sequence[RunResult], runs_b: Sequence[RunResult], k: int) -> ClusteredDifference | None:
    """Recall@k on the ``new`` slice of runs ``a`` minus runs ``b`` of the same seeds, pooled over the
    seeds both have, one cluster per (seed, target item). None when no seed is shared, a shared run did
    not record its targets, or with fewer than 2 clusters.

    Raises:
        ConfigError: two runs of one seed ranked different ``new`` examples (another split or hold-out).
    """
    by_seed = {run.seed: run for run in runs_b}
    pairs = [(a, by_seed[a.seed]) for a in runs_a if a.seed in by_seed]
    if not pairs or any(not a.new_targets or not b.new_targets for a, b in pairs):
        return None
    rows = []
    for a, b in pairs:
        targets_a = np.array(a.new_targets, dtype=np.int64).reshape(-1, 2)
        targets_b = np.array(b.new_targets, dtype=np.int64).reshape(-1, 2)
        if targets_a.shape != targets_b.shape or not np.array_equal(targets_a[:, 0], targets_b[:, 0]):
            raise ConfigError(f"seed {a.seed}: {a.model}:{a.tokenizer} and {b.model}:{b.tokenizer} ranked different "
                              f"new examples ({len(targets_a)} and {len(targets_b)})", where="pooled_paired_new",
                              fix="pair runs of the same split, seed and --item-holdout")
        rows.append(np.column_stack([np.full(len(targets_a), a.seed), targets_a, targets_b[:, 1]]))
    table = np.concatenate(rows)
    if len(np.unique(table[:, :2], axis=0)) < 2:
        return None
    return clustered_difference(table[:, :2], table[:, 2], table[:, 3], k)


@dataclass(frozen=True)
class TableRow:
    """Mean and 95% t interval across seeds of one model x tokenizer x metric x K x slice."""

    model: str
    tokenizer: str
    metric: str
    k: int
    slice: str
    mean: float | None
    low: float | None
    high: float | None
    half_width: float | None
    n: int


@dataclass(frozen=True)
class PairedRow:
    """``model`` on ``tokenizer`` minus sasrec on the same seed: mean and interval of the differences."""

    model: str
    tokenizer: str
    metric: str
    k: int
    slice: str
    difference: MeanCI


@dataclass(frozen=True)
class Correlation:
    """Spearman rank correlation of one diagnostic with tiger's test Recall@10 across (tokenizer, seed).

    ``n`` points had the diagnostic; ``rho`` and ``p_value`` are None below 3 points or when either
    side is constant. ``without_random`` is the same over the content tokenizers only.
    """

    diagnostic: str
    rho: float | None
    p_value: float | None
    n: int
    rho_without_random: float | None
    p_without_random: float | None
    n_without_random: int


@dataclass(frozen=True, eq=False)
class RetrievalExperiment:
    """The outcome of :func:`run_retrieval` and where its outputs were written."""

    data_dir: Path
    out_dir: Path
    settings: RetrieveSettings
    tokenizer: str | None
    runs: tuple[RunResult, ...]
    data: dict[int, dict[str, Any]]
    seconds: float  # wall time of the whole run; 0 for one assembled from finished runs

    @property
    def run_seconds(self) -> float:
        """Training and test wall time summed over the runs (tokenizer fits not included)."""
        return float(sum(run.train_seconds + run.eval_seconds for run in self.runs))

    @property
    def metrics_path(self) -> Path:
        return self.out_dir / METRICS_FILE

    @property
    def summary_path(self) -> Path:
        return self.out_dir / SUMMARY_FILE

    @property
    def report_path(self) -> Path:
        return self.out_dir / REPORT_FILE

    def arms(self) -> list[tuple[str, str]]:
        """(model, tokenizer) pairs in the order they first ran."""
        return list(dict.fromkeys((run.model, run.tokenizer) for run in self.runs))

    def select(self, model: str, tokenizer: str) -> list[RunResult]:
        return [run for run in self.runs if run.model == model and run.tokenizer == tokenizer]

    def table(self) -> list[TableRow]:
        """Every arm x metric x K x slice: mean and 95% interval over seeds."""
        rows = []
        for model, tokenizer in self.arms():
            runs = self.select(model, tokenizer)
            for slice_name in SLICES:
                for metric in METRICS:
                    for k in self.settings.cutoffs:
                        values = [v for run in runs if (v := run.metrics.get(metric, k, slice_name)) is not None]
                        ci = mean_ci(values)
                        rows.append(TableRow(model, tokenizer, metric, k, slice_name, ci.mean, ci.low, ci.high,
                                             ci.half_width, ci.n))
        return rows

    def paired(self, baseline: str = BASELINE) -> list[PairedRow]:
        """Each arm minus ``baseline`` on the same seed (empty when the baseline did not run)."""
        base = {run.seed: run.metrics for run in self.runs if run.model == baseline}
        if not base:
            return []
        out = []
        for model, tokenizer in self.arms():
            if model == baseline:
                continue
            runs = [run for run in self.select(model, tokenizer) if run.seed in base]
            for slice_name in SLICES:
                for metric in METRICS:
                    for k in self.settings.cutoffs:
                        diffs = []
                        for run in runs:
                            ours = run.metrics.get(metric, k, slice_name)
                            theirs = base[run.seed].get(metric, k, slice_name)
                            if ours is not None and theirs is not None:
                                diffs.append(ours - theirs)
                        out.append(PairedRow(model, tokenizer, metric, k, slice_name, mean_ci(diffs)))
        return out

    def correlations(self) -> list[Correlation]:
        """Spearman correlation of each diagnostic with test Recall@10 over tiger's fitted tokenizers."""
        return diagnostic_correlations(self.runs)

    def to_dict(self) -> dict[str, Any]:
        return {
            "data_dir": str(self.data_dir), "tokenizer": self.tokenizer, "settings": self.settings.to_dict(),
            "seconds": self.seconds,
            "exclusion_rule": "every item the user interacted with before the target is ranked out, for every model",
            "table": [asdict(row) for row in self.table()],
            "paired_vs_sasrec": [{**{k: v for k, v in asdict(row).items() if k != "difference"},
                                  **asdict(row.difference)} for row in self.paired()],
            "correlations": [asdict(row) for row in self.correlations()],
            "data": {str(seed): summary for seed, summary in self.data.items()},
            "runs": [run.to_dict() for run in self.runs],
        }


# ----- the diagnostics study ------------------------------------------------------------------------

#: The ``sidkit compare`` summary numbers the study correlates: every diagnostic of its summary row
#: but the stability agreement (which needs a second fit); not the fit time, epochs or standard errors.
DIAGNOSTICS: tuple[str, ...] = ("mse", "cosine", "level0_perplexity", "level0_gini", "collision_rate",
                                "level0_keff", "level0_dp_factor", "level0_gp_factor", "sid_keff", "sid_flip_rate",
                                "sid_flip_to_held", "retention_20", "retention_200", "retention_novel_20", "sid_auc",
                                "sid_auc_novel")


def diagnostic_correlations(runs: Sequence[RunResult], diagnostics: Sequence[str] = DIAGNOSTICS) -> list[Correlation]:
    """Spearman rho (and its two-sided p-value) of each diagnostic with tiger's test Recall@10, over the
    runs that carry diagnostics (one point per tokenizer x seed)."""
    from scipy.stats import spearmanr

    points = [run for run in runs if run.model == "tiger" and run.diagnostics is not None]
    out = []
    for name in diagnostics:

        def rho_of(selected: list[RunResult], name: str = name) -> tuple[float | None, float | None, int]:
            pairs = [(run.diagnostics[name], run.metrics.get(*HEADLINE)) for run in selected
                     if run.diagnostics is not None and run.diagnostics.get(name) is not None
                     and run.metrics.get(*HEADLINE) is not None]
            xs = np.array([p[0] for p in pairs], dtype=np.float64)
            ys = np.array([p[1] for p in pairs], dtype=np.float64)
            if len(pairs) < 3 or np.ptp(xs) == 0 or np.ptp(ys) == 0:
                return None, None, len(pairs)
            result = spearmanr(xs, ys)
            return float(result.statistic), float(result.pvalue), len(pairs)

        rho, p, n = rho_of(points)
        rho_c, p_c, n_c = rho_of([run for run in points if run.tokenizer != RANDOM])
        out.append(Correlation(name, rho, p, n, rho_c, p_c, n_c))
    return out


# ----- inputs ---------------------------------------------------------------------------------------


def check_settings(settings: RetrieveSettings, *, has_tokenizer: bool) -> RetrieveSettings:
    """Normalized settings; ConfigError for unknown models, tokenizers, splits or cutoffs."""
    models = tuple(dict.fromkeys(m.strip().lower() for m in settings.models if m.strip()))
    if not models:
        raise ConfigError("no models given", where="--models", fix=f"use some of {', '.join(MODELS)}")
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        raise ConfigError(f"unknown model(s) {', '.join(map(repr, unknown))}", where="--models",
                          fix=f"use some of {', '.join(MODELS)}")
    tokenizers = tuple(dict.fromkeys(t.strip().lower() for t in settings.tokenizers if t.strip()))
    if tokenizers:
        from sidkit.compare import check_methods

        check_methods(tokenizers)
    if settings.split not in SPLITS:
        raise ConfigError(f"unknown split {settings.split!r}", where="--split", fix=f"use one of {', '.join(SPLITS)}")
    if isinstance(settings.seeds, bool) or not isinstance(settings.seeds, int) or settings.seeds < 1:
        raise ConfigError(f"seeds must be a positive integer, got {settings.seeds!r}", where="--seeds")
    # Checked here, before the data is loaded or a staging directory made, not where they are used.
    check_int(settings.history, where="--history", fix=f"pass e.g. --history {DEFAULT_HISTORY}")
    check_float(settings.item_holdout, where="--item-holdout", low=0, high=1, high_open=True, fix="pass e.g. 0.1")
    check_float(settings.new_item_share, where="--new-item-share", low=0, high=1, high_open=True,
                fix="pass e.g. 0.1, or 0 to rank all candidates together")
    level_sizes(settings.levels, 2 if settings.codebook_size is None else settings.codebook_size, where="--levels")
    if settings.tokenizer_epochs is not None:
        check_int(settings.tokenizer_epochs, where="--tokenizer-epochs")
    if settings.threads is not None:
        check_int(settings.threads, where="--threads")
    cutoffs = tuple(sorted({int(k) for k in settings.cutoffs}))
    if not cutoffs or cutoffs[0] < 1:
        raise ConfigError(f"cutoffs must be positive integers, got {list(settings.cutoffs)}", where="--k")
    if 10 not in cutoffs:
        raise ConfigError("the cutoffs must include 10 (early stopping and the study read Recall@10)", where="--k",
                          fix="pass e.g. --k 5,10,20")
    if "tiger" in models:
        settings.tiger.check()
        if cutoffs[-1] > settings.tiger.beam:
            raise ConfigError(f"K = {cutoffs[-1]} is larger than the tiger beam ({settings.tiger.beam}); a beam "
                              "search returns at most beam items", where="--k",
                              fix=f"pass --beam {cutoffs[-1]} or more, or smaller cutoffs")
        if not (has_tokenizer or tokenizers or settings.random_sids):
            raise ConfigError("tiger needs Semantic IDs", where="--tokenizer",
                              fix="pass --tokenizer MODEL_DIR, --tokenizers rq-kmeans,... or --random-sids")
    if "sasrec" in models:
        settings.sasrec.check()
    return replace(settings, models=models, tokenizers=tokenizers, cutoffs=cutoffs)


# ----- running --------------------------------------------------------------------------------------


def run_retrieval(data_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str],
                  settings: RetrieveSettings | None = None, *, tokenizer: str | os.PathLike[str] | None = None,
                  report: bool = True, log: Callable[[str], None] | None = None) -> RetrievalExperiment:
    """Train and test every model of ``settings`` on every seed; write the outputs into ``out_dir``.

    Args:
        data_dir: a dataset directory with interactions (and ``embeddings.npy`` when tiger runs).
        out_dir: where metrics.json, summary.md, report.html and runs.jsonl go.
        settings: what to run (default :class:`RetrieveSettings`).
        tokenizer: a fitted tokenizer directory or a codes ``.parquet`` giving tiger its SIDs.
        report: False skips report.html. log: receives one line per stage.

    Raises:
        ConfigError: unknown models, tokenizers or splits, K above the beam, tiger without SIDs.
        DataError: no embeddings, a tokenizer of another dimension, no chronological order.
    """
    import torch

    from sidkit.data.dataset import load_dataset

    settings = check_settings(settings or RetrieveSettings(), has_tokenizer=tokenizer is not None)
    say = log or (lambda _line: None)
    if settings.threads is not None:
        torch.set_num_threads(settings.threads)
    started = time.perf_counter()
    dataset = load_dataset(data_dir)
    if len(np.unique(dataset.interactions.timestamps)) < 2:
        raise DataError("every interaction has the same timestamp, so the sequences have no chronological order",
                        where=f"{data_dir}/interactions.parquet",
                        fix="give the interactions real timestamps (seconds, or any increasing step counter)")
    uses_sids = "tiger" in settings.models
    x = dataset.catalog.embeddings
    if uses_sids and x is None:
        raise DataError(f"the dataset in {data_dir} has no embeddings.npy, which tiger's SIDs come from",
                        where=str(data_dir), fix=f"run `sidkit embed --data {data_dir}` first")
    fixed: tuple[str, SemanticIds] | None = None
    if uses_sids and tokenizer is not None:
        from sidkit.ranking.experiment import load_sids

        assert x is not None
        fixed = (_tokenizer_label(tokenizer),
                 load_sids(tokenizer, np.ascontiguousarray(x, dtype=np.float32), dataset.catalog.item_ids))
    out = Path(out_dir)
    # Built in a staging directory beside `out` and swapped in whole at the end: a crash or an error
    # leaves an earlier run untouched, and the staging directory keeps the runs that had finished.
    with atomic_dir(out, replaceable=is_retrieval_run, what="retrieve run", resumable=True,
                    fix="pass a new directory, or one that `sidkit retrieve` wrote") as work:
        _clear(work)  # a run cut short left its files here; this run does not resume from them
        experiment = _run_seeds(dataset, data_dir, settings, fixed, uses_sids, work, say, started)
        write_outputs(experiment, report=report)
    experiment = replace(experiment, out_dir=out)
    say(f"wrote {experiment.metrics_path}, {experiment.summary_path}"
        + (f", {experiment.report_path}" if report else ""))
    return experiment


def is_retrieval_run(directory: Path) -> bool:
    """Whether ``directory`` holds the outputs of a retrieval run (so that a new one may replace it)."""
    return (directory / METRICS_FILE).is_file() or (directory / PROGRESS_FILE).is_file()


def _clear(directory: Path) -> None:
    import shutil

    for entry in directory.iterdir():
        if entry.name == ".writer":
            continue  # the staging directory's claim of its writer
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def _run_seeds(dataset: Any, data_dir: str | os.PathLike[str], settings: RetrieveSettings,
               fixed: tuple[str, SemanticIds] | None, uses_sids: bool, out: Path, say: Callable[[str], None],
               started: float) -> RetrievalExperiment:
    """Every model on every seed, each run appended to ``out/runs.jsonl`` as it finishes."""
    progress_file = out / PROGRESS_FILE
    runs: list[RunResult] = []
    summaries: dict[int, dict[str, Any]] = {}
    data: NextItemData | None = None
    for seed in range(settings.seeds):
        if data is None or settings.item_holdout > 0:  # without a hold-out every seed has the same data
            data = build_next_item_data(dataset, split=settings.split, history=settings.history,
                                        item_holdout=settings.item_holdout, seed=seed)
        summaries[seed] = data.summary()
        say(f"seed {seed}: {data.summary()['train_interactions']:,} training interactions, "
            f"{len(data.valid):,} validation and {len(data.test):,} test examples ({int(data.test.new.sum()):,} new)")
        sources = _sid_sources(settings, seed, dataset, data, fixed, out, say) if uses_sids else []
        for model in settings.models:
            arms = sources if model == "tiger" else [(NO_TOKENIZER, None, None)]
            for label, codes, diagnostics in arms:
                run = run_model(model, data, codes, settings, seed=seed, tokenizer=label, diagnostics=diagnostics,
                                item_ids=dataset.catalog.item_ids, log=say)
                runs.append(run)
                with open(progress_file, "a", encoding="utf-8") as handle:
                    handle.write(json.dumps(_json_ready(run.to_dict())) + "\n")
                say(f"seed {seed} {model}{'' if label == NO_TOKENIZER else ' on ' + label}: Recall@10 "
                    f"{_fmt(run.metrics.get('recall', 10))} (new {_fmt(run.metrics.get('recall', 10, 'new'))}), "
                    f"NDCG@10 {_fmt(run.metrics.get('ndcg', 10))}; {run.train_seconds:.0f} s training, "
                    f"{run.eval_seconds:.0f} s test; {len(runs)} runs done")
    return RetrievalExperiment(Path(data_dir), out, settings, None if fixed is None else fixed[0],
                               tuple(runs), summaries, time.perf_counter() - started)


def run_model(model: str, data: NextItemData, codes: SemanticIds | None, settings: RetrieveSettings, *,
              seed: int, tokenizer: str = NO_TOKENIZER, diagnostics: dict[str, Any] | None = None,
              item_ids: np.ndarray | None = None, log: Callable[[str], None] | None = None) -> RunResult:
    """Train ``model`` on ``data`` with ``seed`` and test it. ``codes`` are tiger's SIDs (without the
    collision digit, which is appended here)."""
    from sidkit.retrieval.popularity import Popularity
    from sidkit.retrieval.sasrec import Sasrec
    from sidkit.retrieval.tiger import Tiger, tiger_codes

    retriever: Any
    if model == "tiger":
        if codes is None:
            raise ConfigError("tiger needs Semantic IDs", where="run_model", fix="pass codes")
        retriever = Tiger(tiger_codes(codes, item_ids), settings.tiger, seed=seed, device=settings.device,
                          progress=settings.progress, log=log)
    elif model == "sasrec":
        retriever = Sasrec(settings.sasrec, seed=seed, device=settings.device, progress=settings.progress, log=log)
    elif model == "popularity":
        retriever = Popularity(seed=seed, device=settings.device)
    else:
        raise ConfigError(f"unknown model {model!r}", where="--models", fix=f"use some of {', '.join(MODELS)}")
    started = time.perf_counter()
    retriever.fit(data)
    train_seconds = time.perf_counter() - started
    started = time.perf_counter()
    ranked = retriever.recommend(data.test, max(settings.cutoffs))
    unseen = data.candidates & (data.train_counts == 0) if settings.new_item_share > 0 else None
    if unseen is not None and unseen.any():
        ranked = reserve_new_items(ranked, retriever.recommend(data.test, max(settings.cutoffs), candidates=unseen),
                                   settings.new_item_share)
    eval_seconds = time.perf_counter() - started
    metrics = retrieval_metrics(ranked, data.test, settings.cutoffs)
    new = data.test.slice_mask("new")
    positions = hit_positions(ranked[:, :max(settings.cutoffs)], data.test.targets)
    new_targets = tuple(zip(data.test.targets[new].tolist(), positions[new].tolist(), strict=True))
    history = getattr(retriever, "history_", None)
    best = None if history is None else next(e for e in history.epochs if e.epoch == history.best_epoch)
    return RunResult(
        model=model, tokenizer=tokenizer, seed=seed, metrics=metrics,
        valid_recall=None if best is None else best.valid_score,
        best_epoch=0 if history is None else history.best_epoch,
        epochs_run=0 if history is None else len(history.epochs),
        train_seconds=train_seconds, eval_seconds=eval_seconds,
        train_examples_per_second=None if history is None else history.examples_per_second,
        eval_users_per_second=len(data.test) / max(eval_seconds, 1e-9), parameters=int(retriever.num_parameters),
        precision="float32" if history is None else history.precision, diagnostics=diagnostics,
        new_targets=new_targets)


def _sid_sources(settings: RetrieveSettings, seed: int, dataset: Any, data: NextItemData,
                 fixed: tuple[str, SemanticIds] | None, out: Path,
                 say: Callable[[str], None]) -> list[tuple[str, SemanticIds, dict[str, Any] | None]]:
    """(label, SIDs, diagnostics or None) of every SID source of this seed.

    Fitted tokenizers see behaviour pairs from the training interactions only (a contrastive one trains
    on their earlier part, retention and AUC read the later part): no validation or test interaction
    shapes the SIDs.
    """
    sources: list[tuple[str, SemanticIds, dict[str, Any] | None]] = []
    x = np.ascontiguousarray(dataset.catalog.embeddings, dtype=np.float32)
    if fixed is not None:
        sources.append((fixed[0], fixed[1], None))
    methods = list(settings.tokenizers)
    if settings.random_sids and fixed is None and RANDOM not in methods:
        methods.append(RANDOM)
    if methods:
        from sidkit.compare import CompareSettings, evaluate_method, summary_row
        from sidkit.data.pairs import behaviour_pairs
        from sidkit.tokenizers.factory import default_codebook_size

        compare = CompareSettings(levels=settings.levels, seed=seed, stability=False, device=settings.device,
                                  codebook_size=settings.codebook_size or default_codebook_size(len(x)))
        if settings.tokenizer_epochs is not None:
            compare = replace(compare, epochs=settings.tokenizer_epochs)
        pairs = behaviour_pairs(dataset.interactions.take(data.train_rows), dataset.catalog, window=compare.window)
        for method in methods:
            say(f"seed {seed}: fitting and diagnosing {method} ({compare.levels} x {compare.codebook_size})")
            result = evaluate_method(method, x, pairs, compare, out / "tokenizers" / f"seed-{seed}",
                                     item_ids=dataset.catalog.item_ids)
            row = summary_row(result, compare)
            diagnostics = {name: row.get(name) for name in DIAGNOSTICS}
            diagnostics["fit_seconds"] = row.get("fit_seconds")
            diagnostics["tokenizer_epochs"] = row.get("epochs")
            sources.append((method, result.codes, diagnostics))
    if settings.random_sids and fixed is not None:
        from sidkit.tokenizers.random_codes import RandomCodes

        shapes = fixed[1].sizes
        random = RandomCodes(levels=len(shapes), codebook_size=list(shapes), seed=seed).fit(x).encode(x)
        sources.append((RANDOM, random, None))
    return sources


def _tokenizer_label(tokenizer: str | os.PathLike[str]) -> str:
    path = Path(tokenizer)
    return path.stem if path.suffix.lower() == ".parquet" else path.name


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _json_ready(value: Any) -> Any:
    from sidkit.io import json_safe

    return json_safe(value)


# ----- outputs --------------------------------------------------------------------------------------


def write_outputs(experiment: RetrievalExperiment, *, report: bool = True) -> None:
    """Write metrics.json, summary.md and (unless ``report`` is False) report.html, each atomically."""
    from sidkit.retrieval.report import markdown_summary, render_report

    write_json(experiment.metrics_path, experiment.to_dict())
    write_text(experiment.summary_path, markdown_summary(experiment))
    if report:
        write_text(experiment.report_path, render_report(experiment))


def read_runs(path: str | os.PathLike[str]) -> list[RunResult]:
    """The runs recorded in a ``runs.jsonl``."""
    return [RunResult.from_dict(json.loads(line)) for line in Path(path).read_text(encoding="utf-8").splitlines()
            if line.strip()]


def experiment_from_runs(data_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str],
                         settings: RetrieveSettings, *, tokenizer: str | None = None) -> RetrievalExperiment:
    """A :class:`RetrievalExperiment` from ``out_dir/runs.jsonl``: of a run cut short (kept in its staging
    directory, :func:`sidkit.io.staging_dir`), or runs merged by hand."""
    recorded = Path(out_dir) / PROGRESS_FILE
    if not recorded.is_file() and (staging_dir(out_dir) / PROGRESS_FILE).is_file():
        recorded = staging_dir(out_dir) / PROGRESS_FILE  # a run cut short keeps its runs there
    if not recorded.is_file():
        raise DataError(f"no runs.jsonl in {out_dir} or beside it", where=str(out_dir),
                        fix="pass the --out of a `sidkit retrieve` run")
    runs = read_runs(recorded)
    if not runs:
        raise DataError(f"no finished run in {recorded}", where=str(out_dir), fix="wait for a run to finish")
    seeds = sorted({run.seed for run in runs})
    return RetrievalExperiment(Path(data_dir), Path(out_dir), replace(settings, seeds=len(seeds)), tokenizer,
                               tuple(runs), {}, 0.0)
