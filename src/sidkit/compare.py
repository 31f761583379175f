"""The comparison runner: fit several tokenizers on one dataset, diagnose each, write the results.

``run_comparison(data_dir, methods, out_dir)`` fits every method (names of
:data:`sidkit.tokenizers.factory.METHODS`) on the dataset's embeddings and computes, per method:
code usage, reconstruction, the empirical overlap O_pi / K_eff with its penalties over a sweep of
noise levels (per level and per depth), the analytic overlap per level, hit-rate retention and
SID-embedding AUC on held-out behaviour pairs, the prefix hierarchy table, and stability against a
second fit with another seed. It writes, atomically, into ``out_dir``::

    metrics.json          every number, per method
    summary.md            the summary table and the per-level tables, in markdown
    report.html           one self-contained HTML report with plots and a browsable SID trie
    models/<method>/      each fitted tokenizer (load with sidkit.tokenizers.base.load_tokenizer)
    codes/<method>.parquet the items' Semantic IDs (item_id, level_0, ..., sid)

Behaviour pairs come from the dataset's interactions (docs/data.md, "Behaviour pairs"): a "-cl" method trains
on the earlier (train) pairs only; retention and AUC use the later (held-out) pairs.
"""

from __future__ import annotations

import inspect
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from rich.table import Table

from sidkit.data.dataset import load_dataset
from sidkit.data.pairs import BehaviourPairs, behaviour_pairs
from sidkit.diagnostics.hierarchy import HierarchyReport, prefix_hierarchy
from sidkit.diagnostics.overlap import DEFAULT_RHOS, OverlapSweep, analytic_sweep, overlap_sweep
from sidkit.diagnostics.reconstruction import ReconstructionReport, reconstruction_report
from sidkit.diagnostics.retrieval import (
    DEFAULT_CUTOFFS,
    AucReport,
    RetentionReport,
    retention,
    sid_embedding_auc,
)
from sidkit.diagnostics.stability import StabilityReport, stability
from sidkit.diagnostics.usage import UsageReport, usage_report
from sidkit.errors import ConfigError, DataError, SidkitError
from sidkit.ids import SemanticIds
from sidkit.io import atomic_path, write_json, write_text
from sidkit.report.tables import format_value, markdown_table
from sidkit.tokenizers.base import Tokenizer
from sidkit.tokenizers.factory import METHODS, default_codebook_size, make_tokenizer

METRICS_FILE = "metrics.json"
SUMMARY_FILE = "summary.md"
REPORT_FILE = "report.html"
DEFAULT_METHODS: tuple[str, ...] = ("rq-kmeans", "rq-vae", "rqp-vae", "drq-vae", "drq-vae-cl")
REFERENCE_RHO = 0.1
# Methods trained with behaviour pairs (contrastive) end with this suffix.
CONTRASTIVE_SUFFIX = "-cl"
_VAR_KEYWORD = "**"  # stands for a **options parameter in _parameters()


@dataclass(frozen=True)
class CompareSettings:
    """How to fit and diagnose.

    Attributes:
        levels: code levels L of every tokenizer.
        codebook_size: codes per level; None picks :func:`default_codebook_size` for the catalog.
        rhos: relative noise levels of the overlap sweep.
        reference_rho: the noise level of the summary table (one of ``rhos``).
        samples: noise draws per item for the empirical overlap.
        epochs: training epochs passed to neural tokenizers (those whose constructor takes
            ``epochs``); None keeps each tokenizer's default.
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
    samples: int = 8
    epochs: int | None = None
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
                "seed": self.seed, "stability": self.stability, "neighbours": self.neighbours,
                "cutoffs": list(self.cutoffs), "window": self.window, "device": self.device,
                "options": self.options}


@dataclass(frozen=True, eq=False)
class MethodResult:
    """Everything measured for one tokenizer. ``codes`` are the items' SIDs (N, L).

    Times: ``fit_seconds`` the fit, ``diagnose_seconds`` every diagnostic but stability,
    ``stability_seconds`` the second fit and its comparison (0 when skipped).
    """

    method: str
    fit_seconds: float
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

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method, "fit_seconds": self.fit_seconds, "diagnose_seconds": self.diagnose_seconds,
            "stability_seconds": self.stability_seconds,
            "codebook_sizes": list(self.codes.sizes),
            "usage": self.usage.to_dict()["usage"], "sid": self.usage.sid.to_dict(),
            "reconstruction": self.reconstruction.to_dict(),
            "overlap": self.overlap.to_dict(),
            "analytic_overlap": None if self.analytic is None else self.analytic.to_dict(),
            "analytic_note": self.analytic_note,
            "retention": None if self.retention is None else self.retention.to_dict(),
            "sid_embedding_auc": None if self.auc is None else self.auc.to_dict(),
            "hierarchy": self.hierarchy.to_dict(),
            "stability": None if self.stability is None else self.stability.to_dict(),
        }


@dataclass(frozen=True, eq=False)
class ComparisonResult:
    """The comparison of several tokenizers on one dataset, and where its outputs were written.

    ``item_text`` (N,) labels items in the report's SID trie; ``embeddings`` (N, D) are the inputs
    (the report's trie measures cosine on them).
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
        """One dict per method: the headline numbers (see :data:`SUMMARY_COLUMNS`)."""
        return [summary_row(result, self.settings) for result in self.methods]

    def to_dict(self) -> dict[str, Any]:
        return {"data_dir": str(self.data_dir), "num_items": self.num_items, "dim": self.dim,
                "behaviour_pairs": {"train": self.train_pairs, "heldout": self.heldout_pairs},
                "settings": self.settings.to_dict(), "seconds": self.seconds,
                "summary": self.summary_rows(), "methods": [m.to_dict() for m in self.methods]}


#: (key, header, format) of the summary table, in order.
SUMMARY_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("method", "method", "{}"),
    ("fit_seconds", "fit s", "{:.1f}"),
    ("mse", "MSE", "{:.4f}"),
    ("cosine", "recon cos", "{:.3f}"),
    ("level0_perplexity", "L0 perplexity", "{:.1f}"),
    ("level0_gini", "L0 Gini", "{:.3f}"),
    ("collision_rate", "collisions", "{:.3f}"),
    ("level0_keff", "L0 K_eff", "{:.1f}"),
    ("level0_dp_factor", "L0 DP x", "{:.2f}"),
    ("level0_gp_factor", "L0 GP x", "{:.2f}"),
    ("sid_keff", "SID K_eff", "{:.0f}"),
    ("sid_flip_rate", "SID flip", "{:.3f}"),
    ("retention_20", "ret@20", "{:.3f}"),
    ("retention_200", "ret@200", "{:.3f}"),
    ("sid_auc", "SID AUC", "{:.3f}"),
    ("agreement_l1", "stab L1", "{:.3f}"),
)


#: What ``make demo`` runs on ML-100K: all defaults, with neural tokenizers trained for 20 epochs, so
#: that the five methods, each fitted twice (stability), finish in a few minutes on 2 CPU cores.
DEMO_SETTINGS = CompareSettings(epochs=20)


def summary_row(result: MethodResult, settings: CompareSettings) -> dict[str, Any]:
    """The headline numbers of one method; None where a metric was not computed."""
    report = result.overlap.at(settings.reference_rho)
    level0 = report.get("level", 0)
    full = report.get("depth", result.codes.levels)
    ret = result.retention
    return {
        "method": result.method,
        "fit_seconds": result.fit_seconds,
        "mse": result.reconstruction.mse,
        "cosine": result.reconstruction.cosine,
        "level0_perplexity": result.usage.levels[0].perplexity,
        "level0_gini": result.usage.levels[0].gini,
        "collision_rate": result.usage.sid.collision_rate,
        "level0_keff": level0.stats.effective_size,
        "level0_dp_factor": level0.stats.distribution_factor,
        "level0_gp_factor": level0.stats.geometry_factor,
        "sid_keff": full.stats.effective_size,
        "sid_flip_rate": full.flip_rate,
        "retention_20": _retention_at(ret, 20),
        "retention_200": _retention_at(ret, 200),
        "sid_auc": None if result.auc is None else result.auc.auc,
        "agreement_l1": None if result.stability is None else result.stability.prefix_agreement[0],
    }


#: The summary metrics a terminal shows, one row each.
TERMINAL_COLUMNS: tuple[str, ...] = ("fit_seconds", "mse", "cosine", "level0_perplexity", "level0_gini",
                                     "collision_rate", "level0_keff", "level0_dp_factor", "level0_gp_factor",
                                     "sid_keff", "sid_flip_rate", "retention_20", "retention_200", "sid_auc",
                                     "agreement_l1")
#: Longer names of the summary metrics, for the terminal table.
METRIC_NAMES: dict[str, str] = {
    "fit_seconds": "fit seconds", "mse": "reconstruction MSE", "cosine": "reconstruction cosine",
    "level0_perplexity": "level-0 perplexity", "level0_gini": "level-0 Gini", "collision_rate": "SID collisions",
    "level0_keff": "level-0 K_eff", "level0_dp_factor": "level-0 DP factor", "level0_gp_factor": "level-0 GP factor",
    "sid_keff": "full-SID K_eff", "sid_flip_rate": "full-SID flip rate", "retention_20": "retention@20",
    "retention_200": "retention@200", "sid_auc": "SID-embedding AUC", "agreement_l1": "stability, level 0",
}


def summary_table(comparison: ComparisonResult, metrics: Sequence[str] = TERMINAL_COLUMNS) -> Table:
    """The summary as a rich table for a terminal: one row per metric, one column per method, so five
    methods fit in 80 characters; ``metrics`` are keys of :data:`SUMMARY_COLUMNS`."""
    formats = {key: fmt for key, _, fmt in SUMMARY_COLUMNS}
    settings = comparison.settings
    table = Table(title=f"Semantic IDs on {comparison.data_dir.name}: {comparison.num_items:,} items, "
                  f"{settings.levels} x {settings.codebook_size} codes, rho = {settings.reference_rho}")
    table.add_column("metric", no_wrap=True)
    rows = comparison.summary_rows()
    for row in rows:
        table.add_column(str(row["method"]), justify="right", no_wrap=True)
    for key in metrics:
        table.add_row(METRIC_NAMES.get(key, key), *[format_value(row[key], formats[key]) for row in rows])
    return table


def check_methods(methods: Sequence[str]) -> tuple[str, ...]:
    """Normalized method names; ConfigError naming the available ones for any that is not registered."""
    names = tuple(method.strip().lower() for method in methods if method.strip())
    if not names:
        raise ConfigError("no methods given", where="--methods", fix=f"use some of: {', '.join(METHODS)}")
    missing = [name for name in names if name not in METHODS]
    if missing:
        raise ConfigError(f"tokenizer method(s) {', '.join(missing)} are not available in this sidkit",
                          where="--methods", fix=f"use some of: {', '.join(METHODS)}")
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ConfigError(f"method(s) {', '.join(duplicates)} given twice", where="--methods")
    return names


def run_comparison(data_dir: str | os.PathLike[str], methods: Sequence[str] = DEFAULT_METHODS,
                   out_dir: str | os.PathLike[str] = "runs/compare", settings: CompareSettings | None = None, *,
                   report: bool = True, log: Callable[[str], None] | None = None) -> ComparisonResult:
    """Fit and diagnose ``methods`` on the dataset in ``data_dir``; write the outputs into ``out_dir``.

    ``log`` receives one line per stage (e.g. ``print``); ``report=False`` skips the HTML report.
    """
    settings = settings or CompareSettings()
    names = check_methods(methods)
    _check_settings(settings)
    say = log or (lambda _line: None)
    started = time.perf_counter()
    dataset = load_dataset(data_dir)
    x = dataset.catalog.embeddings
    if x is None:
        raise DataError("the dataset has no embeddings.npy", where=str(data_dir),
                        fix=f"run `sidkit embed --data {data_dir}` first")
    x = np.ascontiguousarray(x, dtype=np.float32)
    n = len(x)
    if settings.codebook_size is None:
        settings = replace(settings, codebook_size=default_codebook_size(n))
    pairs = behaviour_pairs(dataset.interactions, dataset.catalog, window=settings.window)
    say(f"{n:,} items x {x.shape[1]} dims; behaviour pairs: {len(pairs.train):,} train, "
        f"{len(pairs.heldout):,} held out; {settings.levels} x {settings.codebook_size} codes")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for name in names:
        say(f"{name}: fitting")
        result = evaluate_method(name, x, pairs, settings, out, item_ids=dataset.catalog.item_ids, log=say)
        say(f"{name}: fit {result.fit_seconds:.1f} s, diagnostics {result.diagnose_seconds:.1f} s, "
            f"stability {result.stability_seconds:.1f} s")
        results.append(result)
    comparison = ComparisonResult(Path(data_dir), out, settings, n, int(x.shape[1]), len(pairs.train),
                                  len(pairs.heldout), tuple(results), _item_labels(dataset.catalog), x,
                                  time.perf_counter() - started)
    write_outputs(comparison, report=report)
    say(f"wrote {comparison.metrics_path}, {comparison.summary_path}"
        + (f", {comparison.report_path}" if report else ""))
    return comparison


def evaluate_method(name: str, x: np.ndarray, pairs: BehaviourPairs, settings: CompareSettings, out: Path, *,
                    item_ids: np.ndarray | None = None, log: Callable[[str], None] | None = None) -> MethodResult:
    """Fit one method on (N, D) ``x`` and compute every diagnostic.

    Writes the tokenizer to ``out/models/<name>`` and the codes (with ``item_ids``, if given) to
    ``out/codes/<name>.parquet``.
    """
    say = log or (lambda _line: None)
    started = time.perf_counter()
    tokenizer = fit_method(name, x, pairs, settings, seed=settings.seed)
    fit_seconds = time.perf_counter() - started
    tokenizer.save(out / "models" / name)
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
        say(f"{name}: {note}")
    heldout = pairs.heldout
    ret = retention(x, reconstructed, heldout, settings.cutoffs, device=settings.device) if len(heldout) else None
    auc = sid_embedding_auc(quantized, heldout, seed=settings.seed, device=settings.device) if len(heldout) else None
    reconstruction = reconstruction_report(x, reconstructed)
    hierarchy = prefix_hierarchy(ids, x)
    diagnose_seconds = time.perf_counter() - started
    started = time.perf_counter()
    second = None
    if settings.stability:
        say(f"{name}: second fit (seed {settings.seed + 1}) for stability")
        other = fit_method(name, x, pairs, settings, seed=settings.seed + 1)
        other_ids = other.encode(x)
        second = stability(ids, other_ids, quantized, other.quantized(other_ids),
                           neighbours=min(settings.neighbours, len(x) - 1), seed=settings.seed)
    stability_seconds = time.perf_counter() - started
    _write_codes(out / "codes" / f"{name}.parquet", ids, item_ids)
    return MethodResult(
        method=name, fit_seconds=fit_seconds, diagnose_seconds=diagnose_seconds,
        stability_seconds=stability_seconds, codes=ids, usage=usage_report(ids), reconstruction=reconstruction,
        overlap=sweep, analytic=analytic, analytic_note=note, retention=ret, auc=auc, hierarchy=hierarchy,
        stability=second)


def fit_method(name: str, x: np.ndarray, pairs: BehaviourPairs, settings: CompareSettings, *,
               seed: int) -> Tokenizer:
    """A fitted tokenizer of method ``name``; a "-cl" method gets the train behaviour pairs.

    ``settings.epochs`` goes to tokenizers whose constructor takes ``epochs`` (or ``**options``, as
    the neural ones pass them on). Behaviour pairs go to the constructor or to ``fit``, whichever
    names a ``pairs`` parameter.
    """
    key = check_methods([name])[0]
    assert settings.codebook_size is not None
    factory = METHODS[key]
    accepted = _parameters(factory)
    options = dict(settings.options.get(key, {}))
    if settings.epochs is not None and ("epochs" in accepted or _VAR_KEYWORD in accepted):
        options.setdefault("epochs", settings.epochs)
    needs_pairs = key.endswith(CONTRASTIVE_SUFFIX)
    if needs_pairs and len(pairs.train) == 0:
        raise DataError(f"{key} trains on behaviour pairs, but the train split has none", where="interactions",
                        fix="use a dataset with more positive interactions, or a larger --window")
    pairs_in_constructor = needs_pairs and "pairs" in accepted
    if pairs_in_constructor:
        options["pairs"] = pairs.train
    options["seed"] = seed
    tokenizer = make_tokenizer(key, levels=settings.levels, codebook_size=settings.codebook_size, **options)
    if needs_pairs and not pairs_in_constructor:
        if "pairs" not in _parameters(tokenizer.fit):
            raise ConfigError(f"{key} needs behaviour pairs, but neither its constructor nor its fit() takes "
                              "a `pairs` argument", where=key, fix="give the tokenizer a pairs=(P, 2) argument")
        fit: Any = tokenizer.fit
        return fit(x, pairs=pairs.train, device=settings.device)
    return tokenizer.fit(x, device=settings.device)


def write_outputs(comparison: ComparisonResult, *, report: bool = True) -> None:
    """Write metrics.json, summary.md and (unless ``report`` is False) report.html, each atomically."""
    write_json(comparison.metrics_path, comparison.to_dict())
    write_text(comparison.summary_path, markdown_summary(comparison))
    if report:
        from sidkit.report.html import write_report

        write_report(comparison, comparison.report_path)


def markdown_summary(comparison: ComparisonResult) -> str:
    """The summary table, and per-level overlap, retention and hierarchy tables, as markdown."""
    settings = comparison.settings
    lines = [f"# Tokenizer comparison: {comparison.data_dir.name}", "",
             f"{comparison.num_items:,} items x {comparison.dim} dims; {settings.levels} levels x "
             f"{settings.codebook_size} codes; behaviour pairs {comparison.train_pairs:,} train / "
             f"{comparison.heldout_pairs:,} held out; overlap at rho = {settings.reference_rho} with "
             f"{settings.samples} noise draws per item.", ""]
    lines += markdown_table([header for _, header, _ in SUMMARY_COLUMNS],
                            [[format_value(row[key], fmt) for key, _, fmt in SUMMARY_COLUMNS]
                             for row in comparison.summary_rows()])
    lines += ["", f"## Overlap per level and depth (rho = {settings.reference_rho})", ""]
    rows = []
    for result in comparison.methods:
        report = result.overlap.at(settings.reference_rho)
        analytic = None if result.analytic is None else result.analytic.at(settings.reference_rho)
        for entry in (*report.levels, *report.depths):
            st = entry.stats
            analytic_keff = (analytic.get("level", entry.index).stats.effective_size
                             if analytic is not None and entry.by == "level" else None)
            rows.append([result.method, f"{entry.by} {entry.index}", str(st.nominal_size),
                         f"{1 / st.simpson:.1f}", f"{st.effective_size:.1f}", format_value(analytic_keff, "{:.1f}"),
                         f"{st.distribution_penalty:.2e}", f"{st.geometry_penalty:.2e}",
                         f"{st.distribution_factor:.2f}", f"{st.geometry_factor:.2f}", f"{entry.flip_rate:.3f}"])
    lines += markdown_table(["method", "symbols", "K_nom", "1/sum pi^2", "K_eff", "K_eff analytic", "DP", "GP",
                             "DP x", "GP x", "flip rate"], rows)
    if any(result.retention is not None for result in comparison.methods):
        lines += ["", "## Hit-rate retention", ""]
        cutoffs = settings.cutoffs
        rows = [[result.method, *[format_value(_retention_at(result.retention, k), "{:.3f}") for k in cutoffs]]
                for result in comparison.methods]
        first = next(r.retention for r in comparison.methods if r.retention is not None)
        assert first is not None
        rows.append(["(HR@K original)", *[f"{v:.4f}" for v in first.original.hit_rates]])
        lines += markdown_table(["method", *[f"ret@{k}" for k in cutoffs]], rows)
    lines += ["", "## Prefix hierarchy (mean cosine of items sharing a prefix)", ""]
    depth_headers = [f"depth {d}" for d in range(1, settings.levels + 1)]
    rows = [[result.method, *[format_value(row.mean_cosine, "{:.3f}") for row in result.hierarchy.depths],
             f"{result.hierarchy.random_cosine:.3f}",
             " / ".join(f"{row.size_median:g}" for row in result.hierarchy.depths)]
            for result in comparison.methods]
    lines += markdown_table(["method", *depth_headers, "random pairs", "median sub-trie size by depth"], rows)
    notes = [f"- {r.method}: {r.analytic_note}" for r in comparison.methods if r.analytic_note]
    if notes:
        lines += ["", "Notes:", "", *notes]
    return "\n".join(lines) + "\n"



def _retention_at(report: RetentionReport | None, k: int) -> float | None:
    if report is None or k not in report.cutoffs:
        return None
    return report.at(k)




def _parameters(fn: Callable[..., Any]) -> set[str]:
    """Names of ``fn``'s parameters, plus :data:`_VAR_KEYWORD` when it takes ``**options``."""
    try:
        parameters = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return set()
    return {_VAR_KEYWORD if p.kind is inspect.Parameter.VAR_KEYWORD else p.name for p in parameters}


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


def _check_settings(settings: CompareSettings) -> None:
    if not settings.rhos:
        raise ConfigError("no noise levels", where="rhos", fix="pass e.g. 0.02,0.05,0.1,0.2,0.5")
    if settings.reference_rho not in settings.rhos:
        raise ConfigError(f"reference rho {settings.reference_rho} is not among the swept {list(settings.rhos)}",
                          where="reference_rho", fix="add it to rhos")
    if settings.codebook_size is not None and settings.codebook_size < 2:
        raise ConfigError(f"codebook_size must be at least 2, got {settings.codebook_size}",
                          where="codebook_size")
