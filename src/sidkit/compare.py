"""The comparison runner: fit (or take) several tokenizers on one dataset, diagnose each, write the results.

``run_comparison(data_dir, methods, out_dir)`` takes method specs, each a registered method name
(:data:`sidkit.tokenizers.factory.METHODS`), optionally with settings (``"rq-vae@epochs=50"``,
``"rq-kmeans@balanced=True@fit_sample=4096"``), and/or already fitted tokenizers (``fitted=``), and
computes, per tokenizer: code usage, reconstruction, the empirical overlap O_pi / K_eff with its
penalties over a sweep of noise levels (per level and per depth, with Monte Carlo standard errors),
the analytic overlap per level, hit-rate retention and SID-embedding AUC on held-out behaviour pairs
(all of them, and the novel ones that never occur in training), the prefix hierarchy table, and
stability against a second fit with another seed. Neural tokenizers train until their validation
loss stops improving (early stopping) unless told otherwise. It writes, atomically, into ``out_dir``::

    metrics.json          every number, per method
    summary.md            the summary table and the per-level tables, in markdown
    report.html           one self-contained HTML report with plots and a browsable SID trie
    models/<label>/       each fitted tokenizer (load with sidkit.tokenizers.base.load_tokenizer)
    codes/<label>.parquet the items' Semantic IDs (item_id, level_0, ..., sid)

Behaviour pairs come from the dataset's interactions: a contrastive method (a name ending in "-cl",
or ``contrastive=True``) trains on the earlier (train) pairs only; retention and AUC use the later
(held-out) pairs. Formatting lives in :mod:`sidkit.report.summary`.
"""

from __future__ import annotations

import ast
import inspect
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from sidkit.checks import MAX_SEED, check_float, check_int, check_seed, level_sizes
from sidkit.data.dataset import load_dataset
from sidkit.data.pairs import BehaviourPairs, behaviour_pairs
from sidkit.diagnostics.hierarchy import HierarchyReport, prefix_hierarchy
from sidkit.diagnostics.overlap import DEFAULT_RHOS, DEFAULT_SAMPLES, OverlapSweep, analytic_sweep, overlap_sweep
from sidkit.diagnostics.reconstruction import ReconstructionReport, reconstruction_report
from sidkit.diagnostics.retrieval import (
    DEFAULT_CUTOFFS,
    AucReport,
    RetentionReport,
    novel_pairs,
    retention,
    sid_embedding_auc,
)
from sidkit.diagnostics.stability import StabilityReport, stability
from sidkit.diagnostics.usage import UsageReport, usage_report
from sidkit.errors import ConfigError, DataError, SidkitError
from sidkit.ids import SemanticIds
from sidkit.io import atomic_dir, atomic_path, write_json, write_text
from sidkit.tokenizers.base import Tokenizer, load_tokenizer, resolve_device
from sidkit.tokenizers.factory import METHODS, default_codebook_size, make_tokenizer

METRICS_FILE = "metrics.json"
SUMMARY_FILE = "summary.md"
REPORT_FILE = "report.html"
DEFAULT_METHODS: tuple[str, ...] = ("rq-kmeans", "rq-vae", "rqp-vae", "drq-vae", "drq-vae-cl")
REFERENCE_RHO = 0.1
#: Most epochs and patience of the neural tokenizers in a comparison: early stopping on the validation
#: loss ends training long before the cap on catalogs like MovieLens (see docs/tokenizers.md).
DEFAULT_EPOCHS = 300
DEFAULT_PATIENCE = 20
# Methods trained with behaviour pairs (contrastive) end with this suffix.
CONTRASTIVE_SUFFIX = "-cl"
SETTING_SEPARATOR = "@"
# Settings a method spec may not set: the comparison owns them.
_RESERVED = ("levels", "codebook_size", "seed", "pairs")


@dataclass(frozen=True)
class CompareSettings:
    """How to fit and diagnose.

    Attributes:
        levels: code levels L of every tokenizer.
        codebook_size: codes per level; None picks :func:`default_codebook_size` for the catalog.
        rhos: relative noise levels of the overlap sweep.
        reference_rho: the noise level of the summary table (one of ``rhos``).
        samples: noise draws per item for the empirical overlap (at least 3).
        epochs: most training epochs of neural tokenizers (those whose constructor takes ``epochs``);
            None keeps each tokenizer's default.
        patience: epochs without a better validation loss before a neural tokenizer stops; None keeps
            each tokenizer's default.
        seed: seed of every fit and every random draw; the stability fit uses ``seed + 1``.
        stability: fit each method a second time (another seed) and compare; doubles fit time.
        neighbours: K of the top-K neighbour overlap in the stability check.
        cutoffs: K of hit-rate retention.
        window: behaviour-pair window in steps.
        device: torch device of fitting and encoding.
        options: extra constructor options per method, e.g. ``{"rq-kmeans": {"balanced": True}}``.
    """

    levels: int = 3
    codebook_size: int | None = None
    rhos: tuple[float, ...] = DEFAULT_RHOS
    reference_rho: float = REFERENCE_RHO
    samples: int = DEFAULT_SAMPLES
    epochs: int | None = DEFAULT_EPOCHS
    patience: int | None = DEFAULT_PATIENCE
    seed: int = 0
    stability: bool = True
    neighbours: int = 20
    cutoffs: tuple[int, ...] = DEFAULT_CUTOFFS
    window: int = 5
    device: str = "cpu"
    options: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"levels": self.levels, "codebook_size": self.codebook_size, "rhos": list(self.rhos),
                "reference_rho": self.reference_rho, "samples": self.samples, "epochs": self.epochs,
                "patience": self.patience, "seed": self.seed, "stability": self.stability,
                "neighbours": self.neighbours, "cutoffs": list(self.cutoffs), "window": self.window,
                "device": self.device, "options": self.options}


@dataclass(frozen=True, eq=False)
class MethodSpec:
    """One tokenizer of a comparison: a method to fit with settings, or a tokenizer already fitted.

    Attributes:
        label: its name in tables, ``models/`` and ``codes/`` (``"rq-vae@epochs=50"``).
        method: the registered method name; for a fitted tokenizer its class name.
        options: constructor settings of the spec (``{"epochs": 50}``).
        fitted: the fitted tokenizer, or None to fit one.
        source: the directory a fitted tokenizer was loaded from, if any.
    """

    label: str
    method: str
    options: Mapping[str, Any] = field(default_factory=dict)
    fitted: Tokenizer | None = None
    source: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "method": self.method, "options": dict(self.options),
                "fitted": self.fitted is not None, "source": None if self.source is None else str(self.source)}


@dataclass(frozen=True)
class TrainingSummary:
    """How a neural tokenizer's training ended: epochs run, the epoch kept, whether it stopped early."""

    epochs: int
    best_epoch: int | None
    stopped_early: bool
    max_epochs: int | None

    @property
    def converged(self) -> bool:
        """True when early stopping ended training (the validation loss stopped improving)."""
        return self.stopped_early

    def to_dict(self) -> dict[str, Any]:
        return {"epochs": self.epochs, "best_epoch": self.best_epoch, "stopped_early": self.stopped_early,
                "max_epochs": self.max_epochs, "converged": self.converged}


@dataclass(frozen=True, eq=False)
class MethodResult:
    """Everything measured for one tokenizer. ``codes`` are the items' SIDs (N, L).

    ``method`` is the spec's label. Times: ``fit_seconds`` the fit (None for a tokenizer fitted
    elsewhere), ``diagnose_seconds`` every diagnostic but stability, ``stability_seconds`` the second
    fit and its comparison (0 when skipped). ``retention_novel`` and ``auc_novel`` use only the
    held-out pairs never seen in training.
    """

    method: str
    fit_seconds: float | None
    diagnose_seconds: float
    stability_seconds: float
    codes: SemanticIds
    usage: UsageReport
    reconstruction: ReconstructionReport
    overlap: OverlapSweep
    analytic: OverlapSweep | None
    analytic_note: str | None
    retention: RetentionReport | None
    auc: AucReport | None
    hierarchy: HierarchyReport
    stability: StabilityReport | None
    spec: MethodSpec | None = None
    training: TrainingSummary | None = None
    retention_novel: RetentionReport | None = None
    auc_novel: AucReport | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method, "spec": None if self.spec is None else self.spec.to_dict(),
            "fit_seconds": self.fit_seconds, "diagnose_seconds": self.diagnose_seconds,
            "stability_seconds": self.stability_seconds,
            "training": None if self.training is None else self.training.to_dict(),
            "codebook_sizes": list(self.codes.sizes),
            "usage": self.usage.to_dict()["usage"], "sid": self.usage.sid.to_dict(),
            "reconstruction": self.reconstruction.to_dict(),
            "overlap": self.overlap.to_dict(),
            "analytic_overlap": None if self.analytic is None else self.analytic.to_dict(),
            "analytic_note": self.analytic_note,
            "retention": None if self.retention is None else self.retention.to_dict(),
            "retention_novel": None if self.retention_novel is None else self.retention_novel.to_dict(),
            "sid_embedding_auc": None if self.auc is None else self.auc.to_dict(),
            "sid_embedding_auc_novel": None if self.auc_novel is None else self.auc_novel.to_dict(),
            "hierarchy": self.hierarchy.to_dict(),
            "stability": None if self.stability is None else self.stability.to_dict(),
        }


@dataclass(frozen=True, eq=False)
class ComparisonResult:
    """The comparison of several tokenizers on one dataset, and where its outputs were written.

    ``item_text`` (N,) labels items in the report's SID trie; ``embeddings`` (N, D) are the inputs
    (the report's trie measures cosine on them). ``novel_pairs`` counts the held-out pairs whose two
    items never form a training pair.
    """

    data_dir: Path
    out_dir: Path
    settings: CompareSettings
    num_items: int
    dim: int
    train_pairs: int
    heldout_pairs: int
    methods: tuple[MethodResult, ...]
    item_text: np.ndarray
    embeddings: np.ndarray
    seconds: float
    novel_pairs: int = 0

    @property
    def metrics_path(self) -> Path:
        return self.out_dir / METRICS_FILE

    @property
    def summary_path(self) -> Path:
        return self.out_dir / SUMMARY_FILE

    @property
    def report_path(self) -> Path:
        return self.out_dir / REPORT_FILE

    def method(self, name: str) -> MethodResult:
        for result in self.methods:
            if result.method == name:
                return result
        raise ConfigError(f"no method {name!r} in this comparison", where="name",
                          fix=f"use one of {[m.method for m in self.methods]}")

    def summary_rows(self) -> list[dict[str, Any]]:
        """One dict per method: the headline numbers (see :data:`SUMMARY_KEYS`)."""
        return [summary_row(result, self.settings) for result in self.methods]

    def to_dict(self) -> dict[str, Any]:
        return {"data_dir": str(self.data_dir), "num_items": self.num_items, "dim": self.dim,
                "behaviour_pairs": {"train": self.train_pairs, "heldout": self.heldout_pairs,
                                    "heldout_novel": self.novel_pairs},
                "settings": self.settings.to_dict(), "seconds": self.seconds,
                "summary": self.summary_rows(), "methods": [m.to_dict() for m in self.methods]}


#: The keys of :func:`summary_row`, in table order.
SUMMARY_KEYS: tuple[str, ...] = (
    "method", "fit_seconds", "epochs", "mse", "cosine", "level0_perplexity", "level0_gini", "collision_rate",
    "level0_keff", "level0_keff_se", "level0_dp_factor", "level0_gp_factor", "level0_gp_factor_se",
    "sid_keff", "sid_keff_se", "sid_flip_rate", "sid_flip_rate_se", "sid_flip_to_held", "retention_20",
    "retention_200", "retention_novel_20", "sid_auc", "sid_auc_novel", "agreement_l1",
)


def summary_row(result: MethodResult, settings: CompareSettings) -> dict[str, Any]:
    """The headline numbers of one method; None where a metric was not computed. Keys ending in
    ``_se`` are Monte Carlo standard errors (noise draws) of the figure before them."""
    report = result.overlap.at(settings.reference_rho)
    level0 = report.get("level", 0)
    full = report.get("depth", result.codes.levels)
    training = result.training
    return {
        "method": result.method,
        "fit_seconds": result.fit_seconds,
        "epochs": None if training is None else training.epochs,
        "mse": result.reconstruction.mse,
        "cosine": result.reconstruction.cosine,
        "level0_perplexity": result.usage.levels[0].perplexity,
        "level0_gini": result.usage.levels[0].gini,
        "collision_rate": result.usage.sid.collision_rate,
        "level0_keff": level0.stats.effective_size,
        "level0_keff_se": level0.stats.effective_size_se,
        "level0_dp_factor": level0.stats.distribution_factor,
        "level0_gp_factor": level0.stats.geometry_factor,
        "level0_gp_factor_se": level0.stats.geometry_factor_se,
        "sid_keff": full.stats.effective_size,
        "sid_keff_se": full.stats.effective_size_se,
        "sid_flip_rate": full.flip_rate,
        "sid_flip_rate_se": full.flip_rate_se,
        "sid_flip_to_held": full.flip_to_held,
        "retention_20": _retention_at(result.retention, 20),
        "retention_200": _retention_at(result.retention, 200),
        "retention_novel_20": _retention_at(result.retention_novel, 20),
        "sid_auc": None if result.auc is None else result.auc.auc,
        "sid_auc_novel": None if result.auc_novel is None else result.auc_novel.auc,
        "agreement_l1": None if result.stability is None else result.stability.prefix_agreement[0],
    }


# ----- method specs --------------------------------------------------------------------------------


def split_methods(text: str) -> list[str]:
    """Split a comma-separated list of method specs, keeping commas inside brackets
    (``"rq-kmeans,rq-vae@hidden_dims=(256,128)"`` is two specs)."""
    parts, depth, current = [], 0, ""
    for char in text:
        depth += char in "([{"
        depth -= char in ")]}"
        if char == "," and depth <= 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [part.strip() for part in parts if part.strip()]


def parse_method_spec(text: str) -> MethodSpec:
    """``"rq-vae"`` or ``"rq-vae@epochs=50@latent_dim=16"``: a registered method and constructor settings.

    Values are Python literals (numbers, True/False, None, tuples); anything else is a string.
    ConfigError for an unknown method or a setting its constructor does not take.
    """
    name, *settings = [part.strip() for part in text.strip().split(SETTING_SEPARATOR)]
    key = name.lower()
    if key not in METHODS:
        raise ConfigError(f"tokenizer method {name!r} is not available in this sidkit", where="--methods",
                          fix=f"use some of: {', '.join(METHODS)}")
    accepted = _parameters(METHODS[key])
    options: dict[str, Any] = {}
    label = [key]
    for setting in settings:
        option, sep, value = setting.partition("=")
        option = option.strip()
        if not sep or not option:
            raise ConfigError(f"cannot read setting {setting!r} of {text!r}", where="--methods",
                              fix="write method@name=value, e.g. rq-vae@epochs=50")
        if option in _RESERVED:
            raise ConfigError(f"{option} is set by the comparison, not per method ({text!r})", where="--methods",
                              fix="use --levels, --codebook-size or --seed")
        if option not in accepted:
            choices = sorted(accepted - set(_RESERVED) - {"progress"})
            raise ConfigError(f"{key} has no setting {option!r}", where="--methods",
                              fix=f"use one of: {', '.join(choices)}")
        if option in options:
            raise ConfigError(f"setting {option} given twice in {text!r}", where="--methods")
        options[option] = _literal(value.strip())
        label.append(f"{option}={value.strip()}")
    return MethodSpec(label=SETTING_SEPARATOR.join(label), method=key, options=options)


def fitted_spec(label: str, tokenizer: Tokenizer | str | os.PathLike[str], *, device: str = "cpu") -> MethodSpec:
    """A spec for a tokenizer fitted elsewhere: the object, or a directory written by ``save``."""
    if isinstance(tokenizer, Tokenizer):
        model, source = tokenizer, None
    else:
        source = Path(tokenizer)
        model = load_tokenizer(source, device=device)
    if not getattr(model, "is_fitted", True):
        raise ConfigError(f"tokenizer {label!r} is not fitted", where=label, fix="fit it first, or pass a method name")
    return MethodSpec(label=label, method=type(model).__name__, fitted=model, source=source)


def check_methods(methods: Sequence[str | MethodSpec]) -> tuple[MethodSpec, ...]:
    """Specs for ``methods`` (names, names with settings, or specs); ConfigError naming the available
    methods for any that is not registered, or for a label given twice."""
    specs = tuple(method if isinstance(method, MethodSpec) else parse_method_spec(method)
                  for method in methods if isinstance(method, MethodSpec) or method.strip())
    if not specs:
        raise ConfigError("no methods given", where="--methods", fix=f"use some of: {', '.join(METHODS)}")
    labels = [spec.label for spec in specs]
    duplicates = sorted({label for label in labels if labels.count(label) > 1})
    if duplicates:
        raise ConfigError(f"method(s) {', '.join(duplicates)} given twice", where="--methods",
                          fix="give each its own settings, e.g. rq-vae@epochs=50,rq-vae@epochs=200")
    return specs


# ----- running -------------------------------------------------------------------------------------


def run_comparison(data_dir: str | os.PathLike[str], methods: Sequence[str | MethodSpec] = DEFAULT_METHODS,
                   out_dir: str | os.PathLike[str] = "runs/compare", settings: CompareSettings | None = None, *,
                   fitted: Mapping[str, Tokenizer | str | os.PathLike[str]] | None = None, report: bool = True,
                   log: Callable[[str], None] | None = None) -> ComparisonResult:
    """Fit and diagnose ``methods`` (and the ``fitted`` tokenizers, by label) on the dataset in
    ``data_dir``; write the outputs into ``out_dir``.

    ``log`` receives one line per stage (e.g. ``print``); ``report=False`` skips the HTML report.
    """
    settings = settings or CompareSettings()
    _check_settings(settings)
    specs = [fitted_spec(label, model, device=settings.device) for label, model in (fitted or {}).items()]
    specs = list(check_methods([*(list(methods) if methods else []), *specs]))
    say = log or (lambda _line: None)
    started = time.perf_counter()
    dataset = load_dataset(data_dir)
    x = dataset.catalog.embeddings
    if x is None:
        raise DataError("the dataset has no embeddings.npy", where=str(data_dir),
                        fix=f"run `sidkit embed --data {data_dir}` first")
    x = np.ascontiguousarray(x, dtype=np.float32)
    n = len(x)
    for spec in specs:
        if spec.fitted is not None and spec.fitted.dim != x.shape[1]:
            raise DataError(f"{spec.label} was fitted on {spec.fitted.dim}-d embeddings, the dataset has "
                            f"{x.shape[1]}", where=spec.label, fix="compare tokenizers fitted on these embeddings")
    if settings.codebook_size is None:
        settings = replace(settings, codebook_size=default_codebook_size(n))
    pairs = behaviour_pairs(dataset.interactions, dataset.catalog, window=settings.window)
    novel = novel_pairs(pairs.heldout, pairs.train)
    say(f"{n:,} items x {x.shape[1]} dims; behaviour pairs: {len(pairs.train):,} train, "
        f"{len(pairs.heldout):,} held out ({len(novel):,} never seen in training); "
        f"{settings.levels} x {settings.codebook_size} codes")
    out = Path(out_dir)
    # Built beside `out` and swapped in whole: a crash or an error leaves an earlier run untouched.
    with atomic_dir(out, replaceable=is_compare_run, what="compare run",
                    fix="pass a new directory, or one that `sidkit compare` wrote") as work:
        results = []
        for spec in specs:
            say(f"{spec.label}: " + ("diagnosing (fitted elsewhere)" if spec.fitted is not None else "fitting"))
            result = evaluate_method(spec, x, pairs, settings, work, item_ids=dataset.catalog.item_ids, log=say)
            fit = "fitted elsewhere" if result.fit_seconds is None else f"fit {result.fit_seconds:.1f} s"
            say(f"{spec.label}: {fit}, diagnostics {result.diagnose_seconds:.1f} s, "
                f"stability {result.stability_seconds:.1f} s")
            results.append(result)
        comparison = ComparisonResult(Path(data_dir), work, settings, n, int(x.shape[1]), len(pairs.train),
                                      len(pairs.heldout), tuple(results), _item_labels(dataset.catalog), x,
                                      time.perf_counter() - started, len(novel))
        write_outputs(comparison, report=report)
    comparison = replace(comparison, out_dir=out)
    say(f"wrote {comparison.metrics_path}, {comparison.summary_path}"
        + (f", {comparison.report_path}" if report else ""))
    return comparison


def evaluate_method(spec: str | MethodSpec, x: np.ndarray, pairs: BehaviourPairs, settings: CompareSettings,
                    out: Path, *, item_ids: np.ndarray | None = None,
                    log: Callable[[str], None] | None = None) -> MethodResult:
    """Fit one method (unless the spec holds a fitted tokenizer) on (N, D) ``x`` and compute every diagnostic.

    Writes the tokenizer to ``out/models/<label>`` and the codes (with ``item_ids``, if given) to
    ``out/codes/<label>.parquet``.
    """
    spec = check_methods([spec])[0]
    say = log or (lambda _line: None)
    started = time.perf_counter()
    if spec.fitted is None:
        tokenizer = fit_method(spec, x, pairs, settings, seed=settings.seed)
        fit_seconds: float | None = time.perf_counter() - started
    else:
        tokenizer, fit_seconds = spec.fitted, None
    tokenizer.save(out / "models" / file_label(spec.label))
    started = time.perf_counter()
    ids = tokenizer.encode(x)
    reconstructed = tokenizer.decode(ids)
    quantized = tokenizer.quantized(ids)
    sweep = overlap_sweep(tokenizer, x, settings.rhos, settings.samples, by=("level", "depth"), seed=settings.seed,
                          codes=ids)
    analytic: OverlapSweep | None = None
    note = None
    try:
        analytic = analytic_sweep(tokenizer, x, settings.rhos, codes=ids)
    except SidkitError as error:  # e.g. a tokenizer that does not expose its latent space
        note = f"analytic overlap not available: {error.problem}"
        say(f"{spec.label}: {note}")
    heldout, novel = pairs.heldout, novel_pairs(pairs.heldout, pairs.train)

    def retrieval(subset: np.ndarray) -> tuple[RetentionReport | None, AucReport | None]:
        if not len(subset):
            return None, None
        return (retention(x, reconstructed, subset, settings.cutoffs, device=settings.device),
                sid_embedding_auc(quantized, subset, seed=settings.seed, device=settings.device))

    ret, auc = retrieval(heldout)
    ret_novel, auc_novel = retrieval(novel)
    reconstruction = reconstruction_report(x, reconstructed)
    hierarchy = prefix_hierarchy(ids, x)
    diagnose_seconds = time.perf_counter() - started
    started = time.perf_counter()
    second = None
    if settings.stability:
        say(f"{spec.label}: second fit (seed {settings.seed + 1}) for stability")
        other = (fit_method(spec, x, pairs, settings, seed=settings.seed + 1) if spec.fitted is None
                 else refit(tokenizer, x, pairs, settings, seed_offset=1))
        other_ids = other.encode(x)
        second = stability(ids, other_ids, quantized, other.quantized(other_ids),
                           neighbours=min(settings.neighbours, len(x) - 1), seed=settings.seed)
    stability_seconds = time.perf_counter() - started
    _write_codes(out / "codes" / f"{file_label(spec.label)}.parquet", ids, item_ids)
    return MethodResult(
        method=spec.label, fit_seconds=fit_seconds, diagnose_seconds=diagnose_seconds,
        stability_seconds=stability_seconds, codes=ids, usage=usage_report(ids), reconstruction=reconstruction,
        overlap=sweep, analytic=analytic, analytic_note=note, retention=ret, auc=auc, hierarchy=hierarchy,
        stability=second, spec=spec, training=training_summary(tokenizer), retention_novel=ret_novel,
        auc_novel=auc_novel)


def fit_method(spec: str | MethodSpec, x: np.ndarray, pairs: BehaviourPairs, settings: CompareSettings, *,
               seed: int) -> Tokenizer:
    """A fitted tokenizer of ``spec`` (a method name, a name with settings, or a spec); a contrastive
    method gets the train behaviour pairs.

    ``settings.epochs`` / ``settings.patience`` go to tokenizers whose constructor takes them, under
    the spec's own settings and ``settings.options``. Behaviour pairs go to the constructor or to
    ``fit``, whichever names a ``pairs`` parameter.
    """
    spec = check_methods([spec])[0]
    assert settings.codebook_size is not None
    key = spec.method
    factory = METHODS[key]
    accepted = _parameters(factory)
    options = {**settings.options.get(key, {}), **spec.options}
    for name, value in (("epochs", settings.epochs), ("patience", settings.patience)):
        if value is not None and name in accepted:
            options.setdefault(name, value)
    needs_pairs = key.endswith(CONTRASTIVE_SUFFIX) or bool(options.get("contrastive", False))
    pairs_in_constructor = needs_pairs and "pairs" in accepted
    if pairs_in_constructor:
        _check_train_pairs(key, pairs)
        options["pairs"] = pairs.train
    options["seed"] = seed
    tokenizer = make_tokenizer(key, levels=settings.levels, codebook_size=settings.codebook_size, **options)
    if needs_pairs and not pairs_in_constructor:
        return _fit_with_pairs(tokenizer, key, x, pairs, settings)
    return tokenizer.fit(x, device=settings.device)


def refit(tokenizer: Tokenizer, x: np.ndarray, pairs: BehaviourPairs, settings: CompareSettings, *,
          seed_offset: int) -> Tokenizer:
    """An unfitted copy of ``tokenizer`` with its seed moved by ``seed_offset``, fitted on ``x``."""
    params = tokenizer.get_params()
    params["seed"] = int(params.get("seed", settings.seed) or 0) + seed_offset
    copy = type(tokenizer)(**params)
    if params.get("contrastive", False):
        return _fit_with_pairs(copy, type(tokenizer).__name__, x, pairs, settings)
    return copy.fit(x, device=settings.device)


def training_summary(tokenizer: Tokenizer) -> TrainingSummary | None:
    """How a neural tokenizer's training ended (from its history); None for one without a history."""
    history = getattr(tokenizer, "history", None)
    if history is None:
        return None
    max_epochs = tokenizer.get_params().get("epochs")
    return TrainingSummary(len(history), history.best_epoch, bool(history.stopped_early),
                           None if max_epochs is None else int(max_epochs))


def file_label(label: str) -> str:
    """``label`` as a file name: letters, digits and ``-_.=@`` kept, anything else becomes ``_``."""
    return re.sub(r"[^A-Za-z0-9_.=@-]", "_", label)


def write_outputs(comparison: ComparisonResult, *, report: bool = True) -> None:
    """Write metrics.json, summary.md and (unless ``report`` is False) report.html, each atomically."""
    from sidkit.report.summary import markdown_summary

    write_json(comparison.metrics_path, comparison.to_dict())
    write_text(comparison.summary_path, markdown_summary(comparison))
    if report:
        from sidkit.report.html import write_report

        write_report(comparison, comparison.report_path)


# ----- helpers -------------------------------------------------------------------------------------


def _fit_with_pairs(tokenizer: Tokenizer, key: str, x: np.ndarray, pairs: BehaviourPairs,
                    settings: CompareSettings) -> Tokenizer:
    if "pairs" not in _parameters(tokenizer.fit):
        raise ConfigError(f"{key} needs behaviour pairs, but neither its constructor nor its fit() takes "
                          "a `pairs` argument", where=key, fix="give the tokenizer a pairs=(P, 2) argument")
    _check_train_pairs(key, pairs)
    fit: Any = tokenizer.fit
    return fit(x, pairs=pairs.train, device=settings.device)


def _check_train_pairs(key: str, pairs: BehaviourPairs) -> None:
    if len(pairs.train) == 0:
        raise DataError(f"{key} trains on behaviour pairs, but the train split has none", where="interactions",
                        fix="use a dataset with more positive interactions, or a larger --window")


def _retention_at(report: RetentionReport | None, k: int) -> float | None:
    if report is None or k not in report.cutoffs:
        return None
    return report.at(k)


def _literal(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        lowered = text.lower()
        return {"true": True, "false": False, "none": None}.get(lowered, text)


def _parameters(fn: Callable[..., Any]) -> set[str]:
    """Names of ``fn``'s parameters."""
    try:
        parameters = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return set()
    return {p.name for p in parameters if p.kind is not inspect.Parameter.VAR_KEYWORD}


def _item_labels(catalog: Any) -> np.ndarray:
    """A short label per item for the report: the ``title`` column if there is one, else the text."""
    labels = catalog.columns.get("title", catalog.text)
    return np.asarray([str(label) for label in labels], dtype=object)


def _write_codes(path: Path, ids: SemanticIds, item_ids: np.ndarray | None) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = ids.to_table(item_ids=item_ids).append_column("sid", pa.array(ids.to_strings()))
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def is_compare_run(directory: Path) -> bool:
    """Whether ``directory`` holds the outputs of a comparison (so that a new one may replace it)."""
    return (directory / METRICS_FILE).is_file() or (directory / "models").is_dir()


def _check_settings(settings: CompareSettings) -> None:
    """Every setting checked before anything is loaded or fitted."""
    level_sizes(settings.levels, 2 if settings.codebook_size is None else settings.codebook_size)
    check_seed(settings.seed, where="--seed")
    if settings.stability and settings.seed == MAX_SEED:
        raise ConfigError(f"the stability check refits with seed + 1, past the largest seed {MAX_SEED}",
                          where="--seed", fix="pass a smaller seed, or --no-stability")
    resolve_device(settings.device)
    if settings.epochs is not None:
        check_int(settings.epochs, where="--epochs", fix="pass e.g. --epochs 50, or leave it out")
    for rho in (*settings.rhos, settings.reference_rho):
        check_float(rho, where="--rho", low=0, low_open=True, fix="pass relative noise levels such as 0.02,0.05,0.1")
    if not settings.rhos:
        raise ConfigError("no noise levels", where="rhos", fix="pass e.g. 0.02,0.05,0.1,0.2,0.5")
    if settings.reference_rho not in settings.rhos:
        raise ConfigError(f"reference rho {settings.reference_rho} is not among the swept {list(settings.rhos)}",
                          where="reference_rho", fix="add it to rhos")
    if settings.codebook_size is not None and settings.codebook_size < 2:
        raise ConfigError(f"codebook_size must be at least 2, got {settings.codebook_size}",
                          where="codebook_size")
    if isinstance(settings.samples, bool) or not isinstance(settings.samples, int) or settings.samples < 3:
        raise ConfigError(f"samples must be an integer >= 3, got {settings.samples!r}", where="--samples",
                          fix=f"use at least 3 noise draws per item (default {DEFAULT_SAMPLES})")
