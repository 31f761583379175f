"""The ranking report: one self-contained HTML page built from a :class:`RankingExperiment`.

Sections: the settings, per task the table (AUC mean ± 95% half-width per feature set x slice, GAUC
and log loss, with table rows and rows used), a plot of AUC by slice with CI error bars per feature
set (none for one seed), the paired differences against each feature's baseline, convergence, and
the data summary. Plots are base64 PNG
drawn with the comparison report's helpers; the page needs nothing from elsewhere.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.figure import Figure

from sidkit.io import write_text
from sidkit.report.html import IMAGE_CHECK, STYLE, _e, _image, _table
from sidkit.report.plots import color, to_png

if TYPE_CHECKING:
    from sidkit.ranking.experiment import RankingExperiment

#: (mean, low, high) of one bar; None where there is no value.
Bar = tuple[float | None, float | None, float | None]


def write_report(experiment: RankingExperiment, path: str | os.PathLike[str]) -> Path:
    """Render the report of ``experiment`` and write it to ``path`` atomically; returns the path."""
    return write_text(path, render_report(experiment))


def render_report(experiment: RankingExperiment) -> str:
    """The whole page as one HTML string."""
    from sidkit.ranking.summary import (
        SLICE_NOTE,
        convergence_rows,
        description,
        interval_note,
        paired_task_rows,
        task_rows,
    )

    created = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    title = f"sidkit ranking: {experiment.data_dir.name}"
    body = [f"<h1>{_e(title)}</h1>", f'<p class="meta">{_e(description(experiment))} &middot; {created}</p>',
            f'<p class="note">{_e(interval_note(experiment))} {_e(SLICE_NOTE)}</p>']
    body += [f'<p class="note"><strong>warning:</strong> {_e(line)}</p>' for line in experiment.warnings]
    table = experiment.table()
    show_intervals = experiment.num_seeds >= 2
    for task in experiment.evaluated:
        bars = {name: {e.slice: (e.auc.mean, e.auc.low if show_intervals else None,
                                 e.auc.high if show_intervals else None)
                       for e in entries if e.task == task}
                for name, entries in table.items()}
        body += [f"<h2>{_e(task)}</h2>", _table(*task_rows(experiment, task)),
                 _image(auc_figure(bars, task, seeds=experiment.num_seeds), f"{task} AUC by slice")]
        headers, rows = paired_task_rows(experiment, task)
        if rows:
            body += [f"<h3>{_e(task)}: minus the baseline, paired by seed</h3>", _table(headers, rows)]
    body += ['<p class="note">Each seed shares its data (hold-outs, negatives) across feature sets, so the '
             "paired difference removes the data's seed-to-seed variation.</p>",
             "<h2>Convergence</h2>", _table(*convergence_rows(experiment)),
             "<h2>Data per seed</h2>", _table(*_data_rows(experiment))]
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{_e(title)}</title>'
            f"<style>{STYLE}</style></head><body><main>{''.join(body)}</main>"
            f"<script>{IMAGE_CHECK}</script></body></html>\n")


def auc_figure(bars: Mapping[str, Mapping[str, Bar]], task: str, *, seeds: int | None = None) -> bytes:
    """Grouped bars: one group per slice, one bar per feature set, error bars from the interval.

    Args:
        bars: feature -> slice -> (mean, low, high); a None mean leaves the bar out, a None interval
            draws no error bar (one seed has none: a zero-width bar would claim certainty).
        task: names the y axis.
        seeds: the number of seeds, for the title.
    """
    features = list(bars)
    slices = list(dict.fromkeys(s for per in bars.values() for s in per))
    figure = Figure(figsize=(10, 4.2))
    axis = figure.add_subplot()
    width = 0.8 / max(len(features), 1)
    low_end = 1.0
    for index, name in enumerate(features):
        xs: list[float] = []
        means: list[float] = []
        errors: list[list[float]] = [[], []]
        for position, slice_name in enumerate(slices):
            mean, low, high = bars[name].get(slice_name, (None, None, None))
            if mean is None:
                continue
            xs.append(position - 0.4 + width * (index + 0.5))
            means.append(mean)
            errors[0].append(np.nan if low is None else mean - low)
            errors[1].append(np.nan if high is None else high - mean)
            low_end = min(low_end, mean if low is None else low)
        has_errors = bool(np.isfinite(np.array(errors, dtype=float)).any())
        axis.bar(xs, means, width, yerr=np.nan_to_num(np.array(errors, dtype=float)) if has_errors else None,
                 capsize=2 if has_errors else 0, color=color(index), label=name)
    axis.axhline(0.5, color="#888888", linewidth=0.8, linestyle="--")
    axis.set_xticks(range(len(slices)), slices)
    axis.set_ylim(max(0.0, min(0.5, low_end) - 0.05), 1.0)
    axis.set_ylabel(f"{task} AUC (test)")
    if seeds is not None:
        axis.set_title(f"{task}: mean of {seeds} seed{'' if seeds == 1 else 's'}"
                       + (", 95% t interval" if seeds >= 2 else ", no interval"), fontsize=9)
    axis.legend(fontsize=8, ncols=min(4, max(len(features), 1)), loc="upper left")
    figure.tight_layout()
    return to_png(figure)


def _data_rows(experiment: RankingExperiment) -> tuple[Sequence[str], list[list[str]]]:
    headers = ["seed", "train", "valid", "test", "held-out items", "test new", "test new-matched", "test tail",
               "test head"]
    rows = []
    for seed in experiment.seeds:
        d = seed.data
        slices = d["test"]["slices"]
        rows.append([str(seed.seed), f"{d['train']['impressions']:,}", f"{d['valid']['impressions']:,}",
                     f"{d['test']['impressions']:,}", f"{d['heldout_items']:,}",
                     *[f"{slices.get(s, 0):,}" for s in ("new", "new-matched", "tail", "head")]])
    return headers, rows
