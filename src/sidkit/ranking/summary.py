"""Tables of a ranking experiment: headers and rows for markdown, HTML and the terminal.

Every function here reads a finished :class:`~sidkit.ranking.experiment.RankingExperiment` and
formats it; nothing trains or evaluates. Intervals are 95% Student-t half-widths across seeds, shown
as ``mean ± half-width`` with the number of seeds n in the caption; one seed shows the mean alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from sidkit.ranking.metrics import MeanCI
from sidkit.ranking.types import SLICES
from sidkit.report.tables import markdown_table

if TYPE_CHECKING:
    from sidkit.ranking.experiment import RankingExperiment

#: Slices in the compact table (the terminal's and the demo's).
COMPACT_SLICES = ("all", "new-matched")


def seeds_phrase(n: int) -> str:
    """``1 seed``, ``5 seeds``."""
    return f"{n} seed{'' if n == 1 else 's'}"


def interval_note(experiment: RankingExperiment) -> str:
    """What the ± means, with n; a warning when there are too few seeds for an interval to mean much."""
    n = experiment.num_seeds
    if n == 1:
        return "1 seed: means only, no interval (run at least 3 seeds for intervals)."
    note = f"Mean ± 95% Student-t half-width over n = {seeds_phrase(n)}."
    if n < 3:
        note += f" Warning: with {n} seeds the interval is very wide and unstable; run at least 3."
    return note


def cell(entry: MeanCI | None, *, signed: bool = False, digits: int = 3) -> str:
    """``0.742 ± 0.010`` (mean and 95% half-width), the mean alone for one value, ``-`` for none."""
    if entry is None or entry.mean is None:
        return "-"
    mean = f"{entry.mean:+.{digits}f}" if signed else f"{entry.mean:.{digits}f}"
    if entry.half_width is None:
        return mean
    return f"{mean} ± {entry.half_width:.{digits}f}"


def _label(experiment: RankingExperiment, name: str) -> str:
    info = next(i for i in experiment.features if i.name == name)
    if info.table_rows == 0:
        return f"{name} (no table)"
    return name if info.size_matched else f"{name} (not size-matched)"


def task_rows(experiment: RankingExperiment, task: str) -> tuple[list[str], list[list[str]]]:
    """One task: per feature set its table rows, rows used, AUC per slice, GAUC and log loss on all."""
    table = experiment.table()
    headers = ["features", "table rows", "rows used", *[f"AUC {s}" for s in SLICES], "GAUC all", "log loss all"]
    rows = []
    for info in experiment.features:
        entries = {e.slice: e for e in table[info.name] if e.task == task}
        every = entries.get("all")
        rows.append([_label(experiment, info.name), f"{info.table_rows:,}", f"{info.rows_used:,}",
                     *[cell(entries[s].auc) if s in entries else "-" for s in SLICES],
                     cell(every.gauc) if every is not None else "-",
                     cell(every.log_loss, digits=4) if every is not None else "-"])
    return headers, rows


def paired_task_rows(experiment: RankingExperiment, task: str) -> tuple[list[str], list[list[str]]]:
    """One task: AUC per slice (and GAUC on all) minus the baseline's on the same seed."""
    auc = {(p.feature, p.slice): p for p in experiment.paired("auc") if p.task == task}
    gauc = {(p.feature, p.slice): p for p in experiment.paired("gauc") if p.task == task}
    headers = ["features", "baseline", *[f"AUC {s}" for s in SLICES], "GAUC all"]
    rows = []
    for info in experiment.features:
        if (info.name, "all") not in auc:
            continue
        rows.append([info.name, auc[(info.name, "all")].baseline,
                     *[cell(auc[(info.name, s)].difference, signed=True) if (info.name, s) in auc else "-"
                       for s in SLICES],
                     cell(gauc[(info.name, "all")].difference, signed=True) if (info.name, "all") in gauc else "-"])
    return headers, rows


def table_rows(experiment: RankingExperiment) -> tuple[list[str], list[list[str]]]:
    """The compact table: per feature set its rows and, per task, AUC on all and on new-matched."""
    table = experiment.table()
    headers = ["features", "table rows", "rows used",
               *[f"{task} {s}" for task in experiment.evaluated for s in COMPACT_SLICES]]
    rows = []
    for info in experiment.features:
        entries = {(e.task, e.slice): e for e in table[info.name]}
        rows.append([_label(experiment, info.name), f"{info.table_rows:,}", f"{info.rows_used:,}",
                     *[cell(entries[(task, s)].auc) if (task, s) in entries else "-"
                       for task in experiment.evaluated for s in COMPACT_SLICES]])
    return headers, rows


def convergence_rows(experiment: RankingExperiment) -> tuple[list[str], list[list[str]]]:
    """Per feature set: best epochs, epochs run, runs stopped by patience, and seconds per run."""
    other = other_selection(experiment)
    headers = ["features", f"best epoch, {experiment.settings.select} (mean, range)",
               *([f"best epoch, {other}"] if other else []), "epochs run (max)", "stopped by patience", "s / run"]
    rows = []
    for name, stats in experiment.convergence().items():
        best = stats["best_epochs"]
        extra = []
        if other:
            epochs = [run.by_selection[other][0] for run in experiment.runs(name) if other in run.by_selection]
            extra = [f"{np.mean(epochs):.1f} ({min(epochs)}-{max(epochs)})" if epochs else "-"]
        rows.append([name, f"{np.mean(best):.1f} ({min(best)}-{max(best)})" if best else "-", *extra,
                     str(max(stats["epochs_run"])) if stats["epochs_run"] else "-",
                     f"{stats['stopped_early']} of {stats['runs']}",
                     "-" if stats["train_seconds"] is None else f"{stats['train_seconds']:.0f}"])
    return headers, rows


def other_selection(experiment: RankingExperiment) -> str | None:
    """The selection rule the runs were also tested under, if any."""
    for seed in experiment.seeds:
        for run in seed.runs:
            for name in run.by_selection:
                if name != experiment.settings.select:
                    return name
    return None


def importance_rows(experiment: RankingExperiment, feature: str) -> tuple[list[str], list[list[str]]] | None:
    """Fields x tasks: the validation AUC drop when the field is permuted, mean ± 95% t over seeds."""
    found = experiment.importance(feature)
    if found is None:
        return None
    headers = ["field", *found.tasks]
    rows = [[name, *[cell(found.drop[name][task]) for task in found.tasks]] for name in found.fields]
    return headers, rows


def data_line(experiment: RankingExperiment) -> str:
    """Seed 0's impressions, items and slice sizes, in one sentence."""
    if not experiment.seeds:
        return ""
    first = experiment.seeds[0].data
    return (f"Data (seed {experiment.seeds[0].seed}): {first['train']['impressions']:,} train / "
            f"{first['valid']['impressions']:,} valid / {first['test']['impressions']:,} test impressions; "
            f"{first['train_items']:,} training items, {first['heldout_items']:,} held out for test and "
            f"{first.get('valid_heldout_items', 0):,} for validation; test slices "
            + ", ".join(f"{k} {v:,}" for k, v in first["test"]["slices"].items()) + ".")


def description(experiment: RankingExperiment) -> str:
    """The run's settings in one sentence."""
    s = experiment.settings
    sizes = "x".join(map(str, experiment.codebook_sizes)) or "none"
    sweep = f" (and {', '.join(s.sweep)})" if s.sweep else ""
    model = s.model if s.match_params is None else f"{s.model} resized to {s.match_params}'s parameter count"
    return (f"{experiment.num_items:,} items; model {model}; {seeds_phrase(experiment.num_seeds)}; budget "
            f"{s.budget if s.budget is not None else 'natural'}{sweep} rows per feature set; SIDs {sizes}; history "
            f"{s.history}; {s.negatives} negatives per engagement; {s.split} split; item hold-out "
            f"{s.item_holdout:g} (validation {s.valid_item_holdout:g}); Adam {s.learning_rate:g}, at most {s.epochs} "
            f"epochs (patience {s.patience}, early stopping on {s.select}); run took {experiment.seconds:.0f} s.")


SLICE_NOTE = ("Slices: all; new = items held out of training; new-matched = each new-item positive against new-item "
              "negatives drawn for the same user, time and history (AUC within those groups); tail / head = bottom / "
              "top half of training items by training clicks. GAUC = per-user AUC weighted by impressions. "
              "A conditional task a|b scores the a head on the impressions where b is 1.")


def markdown_summary(experiment: RankingExperiment) -> str:
    """Per task the main table and the paired differences, then convergence and data, as markdown."""
    lines = [f"# Ranking with item representations: {experiment.data_dir.name}", "", description(experiment), "",
             f"Test metrics. {interval_note(experiment)} {SLICE_NOTE}", ""]
    for line in experiment.warnings:
        lines += [f"> warning: {line}", ""]
    for task in experiment.evaluated:
        lines += [f"## {task}", ""]
        lines += markdown_table(*task_rows(experiment, task))
        headers, rows = paired_task_rows(experiment, task)
        if rows:
            lines += ["", f"Minus the baseline on the same seed (paired; {interval_note(experiment)})", ""]
            lines += markdown_table(headers, rows)
        lines.append("")
    other = other_selection(experiment)
    if other is not None:
        alternative = experiment.with_selection(other)
        lines += [f"## The epoch chosen by validation {other}", "",
                  f"The same runs, each tested at the epoch of its best validation {other} score instead of "
                  f"{experiment.settings.select} (training ran until neither improved).", ""]
        for task in experiment.evaluated:
            lines += [f"### {task} ({other})", ""]
            lines += markdown_table(*task_rows(alternative, task))
            headers, rows = paired_task_rows(alternative, task)
            if rows:
                lines += [""]
                lines += markdown_table(headers, rows)
            lines.append("")
    for info in experiment.features:
        table = importance_rows(experiment, info.name)
        if table is not None:
            lines += [f"## Permutation importance: {info.name}", "",
                      f"Validation AUC drop when a field is permuted across rows. {interval_note(experiment)}", ""]
            lines += markdown_table(*table)
            lines.append("")
    lines += ["## Convergence", ""]
    lines += markdown_table(*convergence_rows(experiment))
    lines += ["", data_line(experiment), "", f"Settings: {experiment.settings.to_dict()}."]
    return "\n".join(lines) + "\n"
