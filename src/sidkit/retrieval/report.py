"""Formatting of a :class:`RetrievalExperiment`: markdown tables, terminal rows and the HTML report.

The HTML page is self-contained: the settings, the main table (Recall@K and NDCG@K per model and
tokenizer, mean ± 95% half-width across seeds, per slice), a bar chart of Recall@10 and NDCG@10, the
paired differences against sasrec, the time per run, and (with fitted tokenizers) the Spearman
correlation of each diagnostic with Recall@10 and one scatter panel per diagnostic.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.figure import Figure

from sidkit.report.html import IMAGE_CHECK, STYLE, _e, _image, _table
from sidkit.report.plots import color, to_png
from sidkit.report.tables import markdown_table
from sidkit.retrieval.experiment import BASELINE, RANDOM, pooled_clustered_new, pooled_paired_new
from sidkit.retrieval.metrics import ClusteredHits, wilson_interval

if TYPE_CHECKING:
    from sidkit.ranking.metrics import MeanCI
    from sidkit.retrieval.experiment import Correlation, RetrievalExperiment, RunResult, TableRow

#: Longer names of the diagnostics, for tables and plot titles.
DIAGNOSTIC_NAMES: dict[str, str] = {
    "mse": "reconstruction MSE", "cosine": "reconstruction cosine", "level0_perplexity": "level-0 perplexity",
    "level0_gini": "level-0 Gini", "collision_rate": "SID collision rate", "level0_keff": "level-0 K_eff",
    "level0_dp_factor": "level-0 DP factor", "level0_gp_factor": "level-0 GP factor", "sid_keff": "full-SID K_eff",
    "sid_flip_rate": "full-SID flip rate", "sid_flip_to_held": "full-SID flips to held-out", "retention_20":
    "retention@20", "retention_200": "retention@200", "retention_novel_20": "retention@20 (novel pairs)",
    "sid_auc": "SID-embedding AUC", "sid_auc_novel": "SID-embedding AUC (novel pairs)",
}


def cell(mean: float | None, half_width: float | None, digits: int = 4) -> str:
    """``0.2812 ± 0.0040``; the mean alone for one seed; ``-`` for none."""
    if mean is None:
        return "-"
    if half_width is None:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {half_width:.{digits}f}"


def signed(ci: MeanCI, digits: int = 4) -> str:
    if ci.mean is None:
        return "-"
    if ci.half_width is None:
        return f"{ci.mean:+.{digits}f}"
    return f"{ci.mean:+.{digits}f} ± {ci.half_width:.{digits}f}"


def arm_label(model: str, tokenizer: str) -> str:
    return model if tokenizer == "-" else f"{model} ({tokenizer})"


def table_rows(experiment: RetrievalExperiment, slice_name: str = "all") -> tuple[list[str], list[list[str]]]:
    """Headers and rows of the main table on one slice: Recall@K and NDCG@K per arm."""
    cutoffs = experiment.settings.cutoffs
    entries: dict[tuple[str, str, str, int], TableRow] = {
        (r.model, r.tokenizer, r.metric, r.k): r for r in experiment.table() if r.slice == slice_name}
    headers = ["model", "SIDs", "seeds", *[f"Recall@{k}" for k in cutoffs], *[f"NDCG@{k}" for k in cutoffs]]
    rows = []
    for model, tokenizer in experiment.arms():
        values = [entries[(model, tokenizer, metric, k)] for metric in ("recall", "ndcg") for k in cutoffs]
        rows.append([model, tokenizer, str(values[0].n), *[cell(v.mean, v.half_width) for v in values]])
    return headers, rows


def paired_rows(experiment: RetrievalExperiment) -> tuple[list[str], list[list[str]]]:
    """Headers and rows of the paired differences against sasrec at K = 10, per slice."""
    headers = ["model", "SIDs", "Recall@10 all", "NDCG@10 all", "Recall@10 new", "NDCG@10 new"]
    paired = {(p.model, p.tokenizer, p.metric, p.k, p.slice): p.difference for p in experiment.paired()}
    rows = []
    for model, tokenizer in experiment.arms():
        if (model, tokenizer, "recall", 10, "all") not in paired:
            continue
        rows.append([model, tokenizer, *[signed(paired[(model, tokenizer, metric, 10, s)])
                                         for s in ("all", "new") for metric in ("recall", "ndcg")]])
    return headers, rows


NEW_SLICE_TITLE = ("Slice new, per run and pooled over seeds: hits with the 95% Wilson interval, then by distinct "
                   "target item with the 95% clustered and cluster-bootstrap intervals")


def new_item_rows(experiment: RetrievalExperiment) -> tuple[list[str], list[list[str]]]:
    """Per run with a non-empty ``new`` slice: its Recall@K as hits of examples with the 95% Wilson
    interval, which a few hits in hundreds needs (a t interval over two or three seeds says little);
    then the same hits clustered by distinct target item (targets repeat across users, so the Wilson
    interval, which treats examples as independent, is optimistic)."""
    cutoffs = [k for k in experiment.settings.cutoffs if k >= 10] or list(experiment.settings.cutoffs)
    headers = ["model", "SIDs", "seed", "new examples",
               *[h for k in cutoffs for h in (f"hits@{k}", f"Recall@{k} (95% Wilson)")],
               "distinct targets",
               *[h for k in cutoffs for h in (f"targets hit@{k}", f"Recall@{k} (95% clustered; cluster bootstrap)")]]
    rows = []
    for model, tokenizer in experiment.arms():
        with_slice = []
        for run in experiment.select(model, tokenizer):
            if not run.metrics.hits(cutoffs[0], "new")[1]:
                continue
            with_slice.append(run)
            counts = [run.metrics.hits(k, "new") for k in cutoffs]
            rows.append([model, tokenizer, str(run.seed), str(counts[0][1]),
                         *_new_item_cells(counts, [run.clustered_new(k) for k in cutoffs])])
        if len(with_slice) >= 2:
            # pooled over seeds: one cluster per (seed, target), as each seed holds out its own items
            counts = [_summed([run.metrics.hits(k, "new") for run in with_slice]) for k in cutoffs]
            rows.append([model, tokenizer, "pooled", str(counts[0][1]),
                         *_new_item_cells(counts, [pooled_clustered_new(with_slice, k) for k in cutoffs])])
    return headers, rows


NEW_PAIRED_TITLE = ("Slice new, paired on the same examples and pooled over the seeds both ran: Recall@K of one arm "
                    "minus another, by distinct target item, with the 95% clustered and cluster-bootstrap intervals")


def new_item_pairs(experiment: RetrievalExperiment) -> list[tuple[tuple[str, str], tuple[str, str]]]:
    """The comparisons read on the ``new`` slice: tiger on each tokenizer's SIDs against tiger on random
    SIDs (does content help new items?), then every arm against the baseline (sasrec)."""
    arms = experiment.arms()
    random_arm = ("tiger", RANDOM)
    pairs = [(arm, random_arm) for arm in arms if arm[0] == "tiger" and arm != random_arm and random_arm in arms]
    baseline = next((arm for arm in arms if arm[0] == BASELINE), None)
    if baseline is not None:
        pairs += [(arm, baseline) for arm in arms if arm != baseline]
    return pairs


def new_item_paired_rows(experiment: RetrievalExperiment) -> tuple[list[str], list[list[str]]]:
    """Per pair of arms, pooled over their shared seeds: examples, distinct targets and, per cutoff of
    10 and above, both arms' hits, the targets where each is ahead, and the difference with its
    intervals (:func:`sidkit.retrieval.experiment.pooled_paired_new`)."""
    cutoffs = [k for k in experiment.settings.cutoffs if k >= 10] or list(experiment.settings.cutoffs)
    headers = ["arm a", "arm b", "seeds", "new examples", "distinct targets",
               *[h for k in cutoffs for h in (f"hits@{k} a / b", f"targets ahead@{k} a / b",
                                               f"Recall@{k} a - b (95% clustered; cluster bootstrap)")]]
    rows = []
    for a, b in new_item_pairs(experiment):
        runs_a, runs_b = experiment.select(*a), experiment.select(*b)
        differences = [pooled_paired_new(runs_a, runs_b, k) for k in cutoffs]
        first = differences[0]
        if first is None:
            continue
        seeds = sorted({run.seed for run in runs_a} & {run.seed for run in runs_b})
        cells = []
        for d in differences:
            assert d is not None
            cells += [f"{d.hits_a} / {d.hits_b}", f"{d.clusters_a_ahead} / {d.clusters_b_ahead}",
                      f"{d.difference:+.4f} ({d.low:+.4f} to {d.high:+.4f}; bootstrap {d.boot_low:+.4f} to "
                      f"{d.boot_high:+.4f})"]
        rows.append([arm_label(*a), arm_label(*b), ",".join(str(s) for s in seeds), str(first.examples),
                     str(first.clusters), *cells])
    return headers, rows


def _summed(counts: list[tuple[int, int]]) -> tuple[int, int]:
    """(hits, examples) of several runs added up."""
    return sum(h for h, _ in counts), sum(n for _, n in counts)


def _new_item_cells(counts: list[tuple[int, int]], clustered: list[ClusteredHits | None]) -> list[str]:
    """Per cutoff hits and the Wilson interval, then distinct targets and per cutoff targets hit and
    the clustered interval ("-" where the targets were not recorded)."""
    cells = []
    for hits, n in counts:
        low, high = wilson_interval(hits, n)
        cells += [str(hits), f"{hits / n:.4f} ({low:.4f} to {high:.4f})"]
    if clustered[0] is None:
        return cells + ["-"] * (1 + 2 * len(clustered))
    cells.append(str(clustered[0].targets))
    for c in clustered:
        assert c is not None
        cells += [str(c.targets_hit),
                  f"{c.rate:.4f} ({c.low:.4f} to {c.high:.4f}; bootstrap {c.boot_low:.4f} to {c.boot_high:.4f})"]
    return cells


def timing_rows(experiment: RetrievalExperiment) -> tuple[list[str], list[list[str]]]:
    """Per arm: mean training and test seconds, epochs, training and ranking rates, parameters."""
    headers = ["model", "SIDs", "train s", "test s", "epochs (best)", "train seq/s", "test users/s", "parameters",
               "precision"]
    rows = []
    for model, tokenizer in experiment.arms():
        runs = experiment.select(model, tokenizer)
        rates = [r.train_examples_per_second for r in runs if r.train_examples_per_second is not None]
        rows.append([model, tokenizer, f"{np.mean([r.train_seconds for r in runs]):.0f}",
                     f"{np.mean([r.eval_seconds for r in runs]):.0f}",
                     " ".join(f"{r.epochs_run}({r.best_epoch})" for r in runs),
                     f"{np.mean(rates):.0f}" if rates else "-",
                     f"{np.mean([r.eval_users_per_second for r in runs]):.0f}",
                     f"{runs[0].parameters:,}", runs[0].precision])
    return headers, rows


def correlation_rows(correlations: Sequence[Correlation]) -> tuple[list[str], list[list[str]]]:
    headers = ["diagnostic", "Spearman rho", "p", "n", "rho without random", "p", "n"]
    rows = [[DIAGNOSTIC_NAMES.get(c.diagnostic, c.diagnostic), _num(c.rho, "{:+.2f}"), _num(c.p_value, "{:.3g}"),
             str(c.n), _num(c.rho_without_random, "{:+.2f}"), _num(c.p_without_random, "{:.3g}"),
             str(c.n_without_random)] for c in correlations]
    return headers, rows


def study_rows(experiment: RetrievalExperiment) -> tuple[list[str], list[list[str]]]:
    """Per tokenizer: the mean over seeds of each diagnostic and of tiger's test Recall@10."""
    from sidkit.retrieval.experiment import DIAGNOSTICS

    points = [r for r in experiment.runs if r.model == "tiger" and r.diagnostics is not None]
    names = list(dict.fromkeys(r.tokenizer for r in points))
    headers = ["tokenizer", "Recall@10", *[DIAGNOSTIC_NAMES.get(d, d) for d in DIAGNOSTICS]]
    rows = []
    for name in names:
        runs = [r for r in points if r.tokenizer == name]
        recall = np.mean([r.metrics.get("recall", 10) or 0.0 for r in runs])
        values = []
        for diagnostic in DIAGNOSTICS:
            got = [r.diagnostics[diagnostic] for r in runs
                   if r.diagnostics and r.diagnostics.get(diagnostic) is not None]
            values.append(_num(float(np.mean(got)) if got else None, "{:.4g}"))
        rows.append([name, f"{recall:.4f}", *values])
    return headers, rows


def description(experiment: RetrievalExperiment) -> str:
    s = experiment.settings
    first = next(iter(experiment.data.values()), None)
    data = "" if first is None else (
        f" {first['train_interactions']:,} training interactions, {first['test_examples']:,} test examples "
        f"({first['test_new']:,} with a held-out target), {first['candidates']:,} candidate items.")
    took = (f"run took {experiment.seconds:.0f} s" if experiment.seconds > 0 else
            f"assembled from {len(experiment.runs)} finished runs, {experiment.run_seconds:,.0f} s of training "
            "and test in all")
    reserved = (f" (a share {s.new_item_share:g} of each list reserved for items unseen in training)"
                if s.new_item_share > 0 else "")
    return (f"{s.split} split, history {s.history}, item hold-out {s.item_holdout:g}{reserved}, {s.seeds} seeds; "
            f"tiger {s.tiger.encoder_layers}+{s.tiger.decoder_layers} layers x {s.tiger.width}, beam {s.tiger.beam}; "
            f"sasrec {s.sasrec.layers} layers x {s.sasrec.width}; {took}.{data}")


def markdown_summary(experiment: RetrievalExperiment) -> str:
    """Every table of the experiment as markdown."""
    lines = [f"# Next-item retrieval: {experiment.data_dir.name}", "", description(experiment), "",
             "Test metrics, mean ± 95% t half-width across seeds, counted by item. Every model ranks the items "
             "with interactions and excludes each user's earlier items.", ""]
    for slice_name in ("all", "new"):
        headers, rows = table_rows(experiment, slice_name)
        if any(row[3] != "-" for row in rows):
            lines += [f"## Slice: {slice_name}", "", *markdown_table(headers, rows), ""]
    headers, rows = new_item_rows(experiment)
    if rows:
        lines += [f"## {NEW_SLICE_TITLE}", "", *markdown_table(headers, rows), ""]
    headers, rows = new_item_paired_rows(experiment)
    if rows:
        lines += [f"## {NEW_PAIRED_TITLE}", "", *markdown_table(headers, rows), ""]
    headers, rows = paired_rows(experiment)
    if rows:
        lines += ["## Minus sasrec on the same seed (paired)", "", *markdown_table(headers, rows), ""]
    correlations = [c for c in experiment.correlations() if c.n]
    if correlations:
        lines += ["## Diagnostics against tiger's Recall@10 (Spearman, tokenizer x seed)", "",
                  *markdown_table(*correlation_rows(correlations)), "", "Means over seeds:", "",
                  *markdown_table(*study_rows(experiment)), ""]
    lines += ["## Time per run", "", *markdown_table(*timing_rows(experiment))]
    return "\n".join(lines) + "\n"


def render_report(experiment: RetrievalExperiment) -> str:
    """The HTML page as one string."""
    created = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    title = f"sidkit retrieval: {experiment.data_dir.name}"
    body = [f"<h1>{_e(title)}</h1>", f'<p class="meta">{_e(description(experiment))} &middot; {created}</p>']
    for slice_name in ("all", "new"):
        headers, rows = table_rows(experiment, slice_name)
        if any(row[3] != "-" for row in rows):
            body += [f"<h2>Test metrics, slice {_e(slice_name)}</h2>", _table(headers, rows)]
    body += ['<p class="note">Mean &plusmn; 95% Student-t half-width across seeds, counted by item (never by SID). '
             "Every model ranks the items with interactions and excludes the user's earlier items; tiger ranks by "
             "beam search constrained to valid SIDs.</p>",
             "<h2>Recall@10 and NDCG@10</h2>", _image(bars_figure(experiment), "Recall@10 and NDCG@10 by model")]
    headers, rows = new_item_rows(experiment)
    if rows:
        body += [f"<h2>{NEW_SLICE_TITLE}</h2>", _table(headers, rows)]
    headers, rows = new_item_paired_rows(experiment)
    if rows:
        body += [f"<h2>{NEW_PAIRED_TITLE}</h2>", _table(headers, rows)]
    headers, rows = paired_rows(experiment)
    if rows:
        body += ["<h2>Minus sasrec on the same seed</h2>", _table(headers, rows)]
    correlations = [c for c in experiment.correlations() if c.n]
    if correlations:
        body += ["<h2>Do the diagnostics predict retrieval?</h2>", _table(*correlation_rows(correlations)),
                 '<p class="note">Spearman rank correlation of each <code>sidkit compare</code> diagnostic with '
                 "tiger's test Recall@10, one point per tokenizer and seed.</p>",
                 _image(scatter_figure(experiment.runs), "diagnostics against Recall@10"),
                 "<h3>Means over seeds</h3>", _table(*study_rows(experiment))]
    body += ["<h2>Time per run</h2>", _table(*timing_rows(experiment))]
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{_e(title)}</title>'
            f"<style>{STYLE}</style></head><body><main>{''.join(body)}</main>"
            f"<script>{IMAGE_CHECK}</script></body></html>\n")


def bars_figure(experiment: RetrievalExperiment) -> bytes:
    """Grouped bars of Recall@10 and NDCG@10 (slice all) per arm, with the 95% interval."""
    rows = {(r.model, r.tokenizer, r.metric): r for r in experiment.table() if r.k == 10 and r.slice == "all"}
    arms = experiment.arms()
    figure = Figure(figsize=(10, 4))
    axis = figure.add_subplot()
    width = 0.8 / max(len(arms), 1)
    for index, (model, tokenizer) in enumerate(arms):
        means, errors = [], []
        for metric in ("recall", "ndcg"):
            row = rows[(model, tokenizer, metric)]
            means.append(row.mean or 0.0)
            errors.append(row.half_width or 0.0)
        xs = np.arange(2) - 0.4 + width * (index + 0.5)
        axis.bar(xs, means, width, yerr=errors, capsize=2, color=color(index), label=arm_label(model, tokenizer))
    axis.set_xticks([0, 1], ["Recall@10", "NDCG@10"])
    axis.set_ylabel("test, slice all")
    axis.legend(fontsize=8, ncols=min(4, max(len(arms), 1)), loc="upper right")
    figure.tight_layout()
    return to_png(figure)


def scatter_figure(runs: Sequence[RunResult]) -> bytes:
    """One panel per diagnostic: its value (x) against tiger's test Recall@10 (y), a colour per tokenizer."""
    from sidkit.retrieval.experiment import DIAGNOSTICS, diagnostic_correlations

    points = [r for r in runs if r.model == "tiger" and r.diagnostics is not None]
    names = list(dict.fromkeys(r.tokenizer for r in points))
    correlations = {c.diagnostic: c for c in diagnostic_correlations(points)}
    shown = [d for d in DIAGNOSTICS if correlations[d].n]
    columns = 5
    rows = math.ceil(max(len(shown), 1) / columns)
    figure = Figure(figsize=(14, 2.5 * rows))
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    figure.subplots_adjust(left=0.05, right=0.99, bottom=0.08 / rows, top=1 - 0.1 / rows, wspace=0.3, hspace=0.45)
    for axis, diagnostic in zip(axes, shown, strict=False):
        for index, name in enumerate(names):
            xs = [r.diagnostics[diagnostic] for r in points if r.tokenizer == name and r.diagnostics
                  and r.diagnostics.get(diagnostic) is not None]
            ys = [r.metrics.get("recall", 10) for r in points if r.tokenizer == name and r.diagnostics
                  and r.diagnostics.get(diagnostic) is not None]
            axis.scatter(xs, ys, s=18, color=color(index), label=name)
        rho = correlations[diagnostic].rho
        axis.set_title(f"{DIAGNOSTIC_NAMES.get(diagnostic, diagnostic)} (rho {_num(rho, '{:+.2f}')})", fontsize=8)
        axis.tick_params(labelsize=7)
    for axis in axes[len(shown):]:
        axis.set_visible(False)
    if shown:
        axes[0].set_ylabel("Recall@10", fontsize=8)
        axes[0].legend(fontsize=7)
    return to_png(figure)


def _num(value: float | None, fmt: str) -> str:
    return "-" if value is None else fmt.format(value)
