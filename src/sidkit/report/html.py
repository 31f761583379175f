"""The comparison report: one self-contained HTML page built from a :class:`ComparisonResult`.

Sections: the summary table; code usage per level (sorted usage, Lorenz curves); K_eff against the
noise level; the distribution and geometry penalties; hit-rate retention against K; mean cosine by
shared prefix length; stability; and a browsable SID trie per method. Plots are base64 PNG. A small
inline script marks, once the page has loaded, whether every image decoded
(``<body data-images="ok 5/5">``), so a headless browser can check the page.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sidkit.diagnostics.overlap import By
from sidkit.io import write_text
from sidkit.report import plots
from sidkit.report.tables import format_value
from sidkit.report.trie import build_trie, render_trie

if TYPE_CHECKING:
    from sidkit.compare import ComparisonResult

STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", "DejaVu Sans", sans-serif; margin: 0;
       color: #1d1d1f; background: #ffffff; }
main { max-width: 1280px; margin: 0 auto; padding: 24px 32px 64px; }
h1 { font-size: 24px; margin: 0 0 4px; } h2 { font-size: 18px; margin: 32px 0 8px;
     border-bottom: 1px solid #e3e3e3; padding-bottom: 4px; }
p.meta { color: #555; margin: 0 0 16px; }
table { border-collapse: collapse; margin: 8px 0 12px; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid #dddddd; padding: 4px 8px; text-align: right; }
th { background: #f4f5f7; } td:first-child, th:first-child { text-align: left; }
img { max-width: 100%; height: auto; display: block; margin: 8px 0; }
.note { color: #555; max-width: 900px; }
details { margin-left: 18px; } details > summary { cursor: pointer; margin-left: -18px; }
summary code { background: #f0f2f5; padding: 0 4px; border-radius: 3px; }
ul.items { margin: 2px 0 6px 8px; padding-left: 16px; color: #333; } .more { color: #888; margin: 2px 0; }
.trie { border: 1px solid #e3e3e3; border-radius: 6px; padding: 8px 12px 8px 28px; margin: 8px 0;
        max-height: 640px; overflow: auto; }
"""

# Marks <body data-images="ok N/N"> (or "broken k/N") once every image has finished loading.
IMAGE_CHECK = """
(function () {
  function check() {
    var images = document.images, done = 0, good = 0;
    for (var i = 0; i < images.length; i++) {
      if (images[i].complete) { done++; if (images[i].naturalWidth > 0) good++; }
    }
    if (done < images.length) { setTimeout(check, 25); return; }
    var status = (good === images.length ? "ok " : "broken ") + good + "/" + images.length;
    document.body.setAttribute("data-images", status);
  }
  if (document.readyState === "complete") check(); else window.addEventListener("load", check);
})();
"""


def write_report(comparison: ComparisonResult, path: str | os.PathLike[str]) -> Path:
    """Render the report of ``comparison`` and write it to ``path`` atomically; returns the path."""
    return write_text(path, render_report(comparison))


def render_report(comparison: ComparisonResult) -> str:
    """The whole page as one HTML string."""
    sections = (_header, _summary, _usage, _effective_size, _penalties, _retention, _auc, _hierarchy, _stability,
                _trie, _notes)
    body = "".join(part for section in sections for part in section(comparison))
    title = f"sidkit comparison: {comparison.data_dir.name}"
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{_e(title)}</title>'
            f"<style>{STYLE}</style></head><body><main>{body}</main>"
            f"<script>{IMAGE_CHECK}</script></body></html>\n")


def _header(comparison: ComparisonResult) -> list[str]:
    settings = comparison.settings
    created = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return [f"<h1>Semantic ID comparison: {_e(comparison.data_dir.name)}</h1>",
            f'<p class="meta">{comparison.num_items:,} items &times; {comparison.dim} dims &middot; '
            f"{settings.levels} levels &times; {settings.codebook_size} codes &middot; behaviour pairs "
            f"{comparison.train_pairs:,} train / {comparison.heldout_pairs:,} held out &middot; {settings.samples} "
            f"noise draws per item &middot; run took {comparison.seconds:.0f} s &middot; {created}</p>"]


def _summary(comparison: ComparisonResult) -> list[str]:
    from sidkit.report.summary import COLUMNS, direction_legend

    rows = [[column.cell(row) for column in COLUMNS] for row in comparison.summary_rows()]
    return ["<h2>Summary</h2>", _table([column.title() for column in COLUMNS], rows),
            f'<p class="note">{_e(direction_legend())} K_eff, DP x and GP x at rho = '
            f"{comparison.settings.reference_rho:g} (noise sigma = rho &times; the embeddings' RMS spread per "
            f"dimension), from {comparison.settings.samples} noise draws per item. DP x &times; GP x = K_nom / K_eff. "
            "Flips to held: of the noisy copies whose SID changed, the share that landed on a SID some item "
            "holds. Retention above 1 means the reconstruction retrieves behaviourally related items better than "
            "the original embedding. Novel: held-out pairs whose items never form a training pair. Stab L1: share "
            "of items whose level-0 code agrees with a second fit (another seed) after matching codes.</p>"]


def _usage(comparison: ComparisonResult) -> list[str]:
    counts = {m.method: [np.bincount(m.codes.codes[:, level], minlength=size)
                         for level, size in enumerate(m.codes.sizes)] for m in comparison.methods}
    return ["<h2>Code usage per level</h2>", _image(plots.usage_figure(counts), "code usage per level"),
            '<p class="note">Top: share of items per code, codes sorted from most to least used (a steep drop means a '
            "few codes take most items). Bottom: Lorenz curves; the diagonal is perfectly even usage and twice the "
            "area between diagonal and curve is the Gini coefficient.</p>"]


def _effective_size(comparison: ComparisonResult) -> list[str]:
    levels = comparison.settings.levels
    panels: dict[str, tuple[By, int]] = {f"level {level}": ("level", level) for level in range(levels)}
    panels["full SID"] = ("depth", levels)
    empirical: dict[str, dict[str, tuple[Sequence[float], Sequence[float]]]] = {}
    analytic: dict[str, dict[str, tuple[Sequence[float], Sequence[float]]]] = {}
    nominal: dict[str, int] = {}
    errors: dict[str, dict[str, Sequence[float]]] = {}
    for m in comparison.methods:
        empirical[m.method] = {panel: (m.overlap.rhos, m.overlap.series(by, index))
                               for panel, (by, index) in panels.items()}
        errors[m.method] = {panel: m.overlap.series(by, index, "effective_size_se")
                            for panel, (by, index) in panels.items()}
        if m.analytic is not None:
            analytic[m.method] = {f"level {level}": (m.analytic.rhos, m.analytic.series("level", level))
                                  for level in range(levels)}
        for panel, (by, index) in panels.items():
            nominal[panel] = m.overlap.reports[0].get(by, index).stats.nominal_size
    return ["<h2>Effective codebook size against noise</h2>",
            _image(plots.effective_size_figure(empirical, analytic, nominal, errors), "K_eff against rho"),
            '<p class="note">K_eff = 1 / O_pi = P(same clean symbol | two noisy copies agree) / P(same clean '
            "symbol): the size of an ideal, uniformly used codebook of disjoint codes with the same overlap under "
            "input noise. At zero noise it equals the inverse Simpson index of usage; it falls towards 1 as noise "
            "grows. Shaded: the 95% interval of the Monte Carlo estimate. The full SID panel treats whole SIDs as "
            "symbols (K_nom = min(N, K^L)); the right axis reads K_eff / K_nom.</p>"]


def _penalties(comparison: ComparisonResult) -> list[str]:
    rho = comparison.settings.reference_rho
    levels = {m.method: m.overlap.at(rho).levels for m in comparison.methods}
    parts = {method: [(1.0 / e.stats.nominal_size, e.stats.distribution_penalty, e.stats.geometry_penalty)
                      for e in entries] for method, entries in levels.items()}
    factors = {method: [(e.stats.distribution_factor, e.stats.geometry_factor) for e in entries]
               for method, entries in levels.items()}
    return ["<h2>Why codes get confused: distribution and geometry penalties</h2>",
            _image(plots.penalty_figure(parts, factors, rho), "distribution and geometry penalties"),
            '<p class="note">O_pi = 1/K_nom + DP + GP. The distribution penalty DP comes from uneven code usage (zero '
            "when usage is uniform); the geometry penalty GP from codewords that the noise confuses (zero when no "
            "two codes overlap). Bottom: the same split in bits, log2 K_nom / K_eff = log2(K_nom sum pi^2) + "
            "log2(O_pi / sum pi^2).</p>"]


def _retention(comparison: ComparisonResult) -> list[str]:
    reports = {m.method: m.retention for m in comparison.methods if m.retention is not None}
    if not reports:
        return []
    first = next(iter(reports.values()))
    curves = {method: (report.cutoffs, report.retention) for method, report in reports.items()}
    rows = []
    for m in comparison.methods:
        for subset, report in (("all", m.retention), ("novel", m.retention_novel)):
            if report is not None:
                rows.append([m.method, subset, *[_fmt(v, "{:.3f}") for v in report.retention]])
    rows.append(["HR@K original", "all", *[f"{v:.4f}" for v in first.original.hit_rates]])
    return ["<h2>Hit-rate retention</h2>", _image(plots.retention_figure(curves), "retention against K"),
            _table(["method", "pairs", *[f"ret@{k} ↑" for k in first.cutoffs]], rows),
            f'<p class="note">Item-to-item retrieval over {first.original.num_pairs:,} held-out behaviour pairs '
            f"({comparison.novel_pairs:,} of them novel: the two items never form a training pair), exact cosine "
            "search over all items. The plot shows all pairs.</p>"]


def _auc(comparison: ComparisonResult) -> list[str]:
    rows = []
    for m in comparison.methods:
        for subset, auc in (("all", m.auc), ("novel", m.auc_novel)):
            if auc is not None:
                rows.append([m.method, subset, f"{auc.auc:.4f}", f"{auc.mean_positive:.3f}",
                             f"{auc.mean_negative:.3f}"])
    if not rows:
        return []
    return ["<h2>SID-embedding AUC (soft matching)</h2>",
            _table(["method", "pairs", "AUC ↑", "mean cos, pairs", "mean cos, random"], rows),
            '<p class="note">Cosine between the items\' quantized vectors (sum of their codewords): held-out behaviour '
            "pairs against as many random pairs. Novel pairs never occur in training, so they measure what the "
            "codes generalize rather than what a contrastive loss memorized.</p>"]


def _hierarchy(comparison: ComparisonResult) -> list[str]:
    depths = range(1, comparison.settings.levels + 1)
    tables = {m.method: m.hierarchy for m in comparison.methods}
    cosines = {method: [row.mean_cosine for row in table.depths] for method, table in tables.items()}
    floors = {method: table.random_cosine for method, table in tables.items()}
    rows = [[method, *[_fmt(row.mean_cosine, "{:.3f}") for row in table.depths], f"{table.random_cosine:.3f}",
             *[f"{row.size_q1:g} / {row.size_median:g} / {row.size_q3:g}" for row in table.depths]]
            for method, table in tables.items()]
    headers = ["method", *[f"cos, depth {d}" for d in depths], "random pairs",
               *[f"sub-trie q1/median/q3, depth {d}" for d in depths]]
    return ["<h2>Prefix hierarchy</h2>", _image(plots.hierarchy_figure(cosines, floors), "prefix cosine by depth"),
            _table(headers, rows)]


def _stability(comparison: ComparisonResult) -> list[str]:
    reports = {m.method: m.stability for m in comparison.methods if m.stability is not None}
    if not reports:
        return []
    levels = comparison.settings.levels
    rows = [[method, *[f"{v:.3f}" for v in report.prefix_agreement], *[f"{v:.3f}" for v in report.ami],
             f"{report.neighbour_overlap:.3f}"] for method, report in reports.items()]
    headers = ["method", *[f"agree, depth {d}" for d in range(1, levels + 1)],
               *[f"AMI, level {level}" for level in range(levels)],
               f"top-{next(iter(reports.values())).neighbours} overlap"]
    return ["<h2>Stability against a second fit</h2>", _table(headers, rows),
            '<p class="note">Second fit with another seed, same items. Codes are matched one to one (Hungarian on '
            "co-assignment) level by level within agreeing prefixes.</p>"]


def _trie(comparison: ComparisonResult) -> list[str]:
    parts = ["<h2>SID trie</h2>",
             '<p class="note">Prefix &rarr; number of items and mean pairwise cosine of their original embeddings; '
             "full SIDs list their items. Largest prefixes first.</p>"]
    for m in comparison.methods:
        root = build_trie(m.codes, comparison.embeddings, comparison.item_text)
        parts.append(f"<details><summary><strong>{_e(m.method)}</strong> &middot; {len(root.children)} level-0 "
                     f'prefixes shown</summary><div class="trie">{render_trie(root)}</div></details>')
    return parts


def _notes(comparison: ComparisonResult) -> list[str]:
    from sidkit.report.summary import notes as summary_notes

    lines = [f"<li>{_e(line)}</li>" for line in summary_notes(comparison)]
    return ["<h2>Notes</h2>", "<ul>", *lines, "</ul>"] if lines else []


def _fmt(value: Any, fmt: str) -> str:

    return format_value(value, fmt)


def _image(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{data}">'


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{_e(cell)}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _e(text: Any) -> str:
    return html.escape(str(text))
