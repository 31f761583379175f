"""The ranking report: one self-contained HTML page built from a :class:`RankingExperiment`.

Sections: the settings, the main table (AUC mean ± 95% half-width per feature set x task x slice,
with table rows and parameter counts), one plot per task of AUC by slice with CI error bars per
feature set, the paired differences against ``hash``, and the data summary. Plots are base64 PNG
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
    from sidkit.ranking.experiment import BASELINE, _description, paired_rows, table_rows

    created = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    title = f"sidkit ranking: {experiment.data_dir.name}"
    body = [f"<h1>{_e(title)}</h1>", f'<p class="meta">{_e(_description(experiment))} &middot; {created}</p>',
            "<h2>Test AUC by feature set</h2>", _table(*table_rows(experiment)),
            '<p class="note">Mean &plusmn; 95% Student-t half-width across seeds. Slices: all; new = items held '
            "out of training; tail / head = bottom / top half of training items by training impressions. Table rows "
            "exclude padding; a combination gets one budget per component.</p>"]
    table = experiment.table()
    for task in experiment.tasks:
        bars = {name: {e.slice: (e.auc.mean, e.auc.low, e.auc.high) for e in entries if e.task == task}
                for name, entries in table.items()}
        body += [f"<h2>{_e(task)} AUC by slice</h2>", _image(auc_figure(bars, task), f"{task} AUC by slice")]
    headers, rows = paired_rows(experiment)
    if rows:
        body += [f"<h2>AUC minus {BASELINE}, paired by seed</h2>", _table(headers, rows),
                 '<p class="note">Each seed shares its data (hold-out, negatives) across feature sets, so the '
                 "paired difference removes the data's seed-to-seed variation.</p>"]
    body += ["<h2>Data per seed</h2>", _table(*_data_rows(experiment))]
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{_e(title)}</title>'
            f"<style>{STYLE}</style></head><body><main>{''.join(body)}</main>"
            f"<script>{IMAGE_CHECK}</script></body></html>\n")


def auc_figure(bars: Mapping[str, Mapping[str, Bar]], task: str) -> bytes:
    """Grouped bars: one group per slice, one bar per feature set, error bars from the interval.

    Args:
        bars: feature -> slice -> (mean, low, high); a None mean leaves the bar out.
        task: names the y axis.
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
            errors[0].append(0.0 if low is None else mean - low)
            errors[1].append(0.0 if high is None else high - mean)
            low_end = min(low_end, mean if low is None else low)
        axis.bar(xs, means, width, yerr=np.array(errors), capsize=2, color=color(index), label=name)
    axis.axhline(0.5, color="#888888", linewidth=0.8, linestyle="--")
    axis.set_xticks(range(len(slices)), slices)
    axis.set_ylim(max(0.0, min(0.5, low_end) - 0.05), 1.0)
    axis.set_ylabel(f"{task} AUC (test)")
    axis.legend(fontsize=8, ncols=min(4, max(len(features), 1)), loc="upper left")
    figure.tight_layout()
    return to_png(figure)


def _data_rows(experiment: RankingExperiment) -> tuple[Sequence[str], list[list[str]]]:
    headers = ["seed", "train", "valid", "test", "held-out items", "test new", "test tail", "test head"]
    rows = []
    for seed in experiment.seeds:
        d = seed.data
        slices = d["test"]["slices"]
        rows.append([str(seed.seed), f"{d['train']['impressions']:,}", f"{d['valid']['impressions']:,}",
                     f"{d['test']['impressions']:,}", f"{d['heldout_items']:,}",
                     *[f"{slices.get(s, 0):,}" for s in ("new", "tail", "head")]])
    return headers, rows
