"""The comparison's summary as text: the markdown of ``summary.md`` and the terminal table.

Every Monte Carlo figure is printed with its 95% interval (1.96 standard errors over the noise
draws), every column says which direction is better, and the notes say what a reader would
otherwise misread: rankings of full-SID K_eff and flip rate that disagree, neural tokenizers that
stopped at the epoch cap instead of converging, the noise levels where the analytic variant is
informative.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import TYPE_CHECKING, Any

from rich.table import Table

from sidkit.report.tables import format_value, markdown_table

if TYPE_CHECKING:
    from sidkit.compare import ComparisonResult

#: The z value of the 95% normal interval printed beside Monte Carlo figures.
Z95 = 1.96
HIGHER, LOWER = "higher", "lower"
ARROWS = {HIGHER: "↑", LOWER: "↓", None: ""}


@dataclass(frozen=True)
class Column:
    """One summary column: ``key`` of :func:`sidkit.compare.summary_row`, its header and format, the key
    of its standard error (printed as a 95% interval), and which direction is better (None: neither)."""

    key: str
    header: str
    fmt: str
    better: str | None
    name: str
    se_key: str | None = None

    def cell(self, row: dict[str, Any]) -> str:
        value = format_value(row.get(self.key), self.fmt)
        error = row.get(self.se_key) if self.se_key else None
        if error is None or value == "-":
            return value
        return f"{value} ± {self.fmt.format(Z95 * error)}"

    def title(self) -> str:
        arrow = ARROWS[self.better]
        return f"{self.header} {arrow}" if arrow else self.header


COLUMNS: tuple[Column, ...] = (
    Column("method", "method", "{}", None, "method"),
    Column("fit_seconds", "fit s", "{:.1f}", LOWER, "fit seconds"),
    Column("epochs", "epochs", "{}", None, "epochs trained"),
    Column("mse", "MSE", "{:.4f}", LOWER, "reconstruction MSE"),
    Column("cosine", "recon cos", "{:.3f}", HIGHER, "reconstruction cosine"),
    Column("level0_perplexity", "L0 perplexity", "{:.1f}", HIGHER, "level-0 perplexity"),
    Column("level0_gini", "L0 Gini", "{:.3f}", LOWER, "level-0 Gini"),
    Column("collision_rate", "collisions", "{:.3f}", LOWER, "SID collisions"),
    Column("level0_keff", "L0 K_eff", "{:.1f}", HIGHER, "level-0 K_eff", "level0_keff_se"),
    Column("level0_dp_factor", "L0 DP x", "{:.2f}", LOWER, "level-0 DP factor"),
    Column("level0_gp_factor", "L0 GP x", "{:.2f}", LOWER, "level-0 GP factor", "level0_gp_factor_se"),
    Column("sid_keff", "SID K_eff", "{:.0f}", HIGHER, "full-SID K_eff", "sid_keff_se"),
    Column("sid_flip_rate", "SID flip", "{:.3f}", LOWER, "full-SID flip rate", "sid_flip_rate_se"),
    Column("sid_flip_to_held", "flips to held", "{:.2f}", None, "flips landing on a held SID"),
    Column("retention_20", "ret@20", "{:.3f}", HIGHER, "retention@20"),
    Column("retention_200", "ret@200", "{:.3f}", HIGHER, "retention@200"),
    Column("retention_novel_20", "ret@20 novel", "{:.3f}", HIGHER, "retention@20, novel pairs"),
    Column("sid_auc", "SID AUC", "{:.3f}", HIGHER, "SID-embedding AUC"),
    Column("sid_auc_novel", "SID AUC novel", "{:.3f}", HIGHER, "SID-embedding AUC, novel pairs"),
    Column("agreement_l1", "stab L1", "{:.3f}", HIGHER, "stability, level 0"),
)

#: The summary metrics a terminal shows, one row each (every column but the method).
TERMINAL_COLUMNS: tuple[str, ...] = tuple(column.key for column in COLUMNS[1:])


def direction_legend() -> str:
    return ("↑ higher is better, ↓ lower is better, no arrow: descriptive. ± is the 95% interval of the "
            "Monte Carlo estimate over noise draws (1.96 jackknife standard errors), not over seeds.")


def summary_lines(comparison: ComparisonResult) -> list[str]:
    """The summary table as markdown lines, with its legend."""
    rows = comparison.summary_rows()
    return [*markdown_table([column.title() for column in COLUMNS], [[c.cell(row) for c in COLUMNS] for row in rows]),
            "", direction_legend()]


def notes(comparison: ComparisonResult) -> list[str]:
    """Sentences a reader needs beside the numbers (one per line, no markup)."""
    lines = []
    lines += ranking_notes(comparison)
    for result in comparison.methods:
        training = result.training
        if training is not None and not training.converged:
            lines.append(f"{result.method} trained all {training.epochs} epochs without early stopping: its "
                         "validation loss was still improving, so its numbers are not those of a converged model "
                         "(raise --epochs).")
        if result.analytic_note:
            lines.append(f"{result.method}: {result.analytic_note}")
    onsets = [(r.method, e.index, e.onset_rho) for r in comparison.methods if r.analytic is not None
              for e in r.analytic.reports[0].levels if e.onset_rho is not None]
    if onsets:
        low = min(rho for _, _, rho in onsets)
        lines.append(f"The analytic K_eff leaves the inverse Simpson index only as rho approaches each level's onset "
                     f"(the rho at which the closest used codewords reach Omega = 1/e); the lowest onset here is "
                     f"{low:.2g}, against a sweep up to {max(comparison.settings.rhos):g}.")
    return lines


def ranking_notes(comparison: ComparisonResult) -> list[str]:
    """Pairs of methods that full-SID K_eff and flip rate rank in opposite orders, and why."""
    rows = {row["method"]: row for row in comparison.summary_rows()}
    opposite = []
    for a, b in combinations(rows, 2):
        keff = rows[a]["sid_keff"] - rows[b]["sid_keff"]
        flip = rows[a]["sid_flip_rate"] - rows[b]["sid_flip_rate"]
        # Higher K_eff is better, a lower flip rate is better: the orders are opposite when one method
        # has both the larger K_eff and the larger flip rate, each beyond its 95% interval.
        keff_error = Z95 * _hypot(rows[a]["sid_keff_se"], rows[b]["sid_keff_se"])
        flip_error = Z95 * _hypot(rows[a]["sid_flip_rate_se"], rows[b]["sid_flip_rate_se"])
        if abs(keff) > keff_error and abs(flip) > flip_error and (keff > 0) == (flip > 0):
            opposite.append((a, b) if keff > 0 else (b, a))
    if not opposite:
        return []
    pairs = "; ".join(f"{a} over {b} (K_eff {rows[a]['sid_keff']:.0f} vs {rows[b]['sid_keff']:.0f}, flip "
                      f"{rows[a]['sid_flip_rate']:.3f} vs {rows[b]['sid_flip_rate']:.3f})" for a, b in opposite)
    held = ", ".join(f"{name} {format_value(row['sid_flip_to_held'], '{:.2f}')}" for name, row in rows.items())
    return [f"Full-SID K_eff and flip rate rank some methods in opposite orders (the first has both the larger "
            f"K_eff and the higher flip rate): {pairs}. They measure different "
            "things: the flip rate counts every noisy copy whose SID changes, K_eff only the copies that land on a "
            "SID another item holds (a confusion between two items). Noise that moves items to SIDs no item "
            f"holds raises the flip rate and leaves K_eff high. Share of flips that land on a held SID: {held}."]


def overlap_lines(comparison: ComparisonResult) -> list[str]:
    """The per-level and per-depth overlap table at the reference rho, with 95% intervals."""
    settings = comparison.settings
    rows = []
    for result in comparison.methods:
        report = result.overlap.at(settings.reference_rho)
        analytic = None if result.analytic is None else result.analytic.at(settings.reference_rho)
        for entry in (*report.levels, *report.depths):
            st = entry.stats
            exact = analytic.get("level", entry.index) if analytic is not None and entry.by == "level" else None
            rows.append([result.method, f"{entry.by} {entry.index}", str(st.nominal_size), f"{1 / st.simpson:.1f}",
                         _interval(st.effective_size, st.effective_size_se, "{:.1f}"),
                         format_value(None if exact is None else exact.stats.effective_size, "{:.1f}"),
                         format_value(None if exact is None else exact.onset_rho, "{:.2g}"),
                         f"{st.distribution_factor:.2f}",
                         _interval(st.geometry_factor, st.geometry_factor_se, "{:.2f}"),
                         _interval(entry.flip_rate, entry.flip_rate_se, "{:.3f}"),
                         format_value(entry.flip_to_held, "{:.2f}")])
    return markdown_table(["method", "symbols", "K_nom", "1/sum pi^2", "K_eff ↑", "K_eff analytic",
                           "analytic onset rho", "DP x ↓", "GP x ↓", "flip rate ↓", "flips to held"], rows)


def markdown_summary(comparison: ComparisonResult) -> str:
    """The summary table, and per-level overlap, retention and hierarchy tables, as markdown."""
    settings = comparison.settings
    lines = [f"# Tokenizer comparison: {comparison.data_dir.name}", "",
             f"{comparison.num_items:,} items x {comparison.dim} dims; {settings.levels} levels x "
             f"{settings.codebook_size} codes; behaviour pairs {comparison.train_pairs:,} train / "
             f"{comparison.heldout_pairs:,} held out ({comparison.novel_pairs:,} novel: never a training pair); "
             f"overlap at rho = {settings.reference_rho} with {settings.samples} noise draws per item.", ""]
    lines += summary_lines(comparison)
    lines += ["", f"## Overlap per level and depth (rho = {settings.reference_rho})", ""]
    lines += overlap_lines(comparison)
    lines += _retention_lines(comparison)
    lines += ["", "## Prefix hierarchy (mean cosine of items sharing a prefix)", ""]
    depth_headers = [f"depth {d}" for d in range(1, settings.levels + 1)]
    rows = [[result.method, *[format_value(row.mean_cosine, "{:.3f}") for row in result.hierarchy.depths],
             f"{result.hierarchy.random_cosine:.3f}",
             " / ".join(f"{row.size_median:g}" for row in result.hierarchy.depths)]
            for result in comparison.methods]
    lines += markdown_table(["method", *depth_headers, "random pairs", "median sub-trie size by depth"], rows)
    extra = notes(comparison)
    if extra:
        lines += ["", "## Notes", "", *[f"- {line}" for line in extra]]
    return "\n".join(lines) + "\n"


def summary_table(comparison: ComparisonResult, metrics: Sequence[str] = TERMINAL_COLUMNS) -> Table:
    """The summary as a rich table for a terminal: one row per metric (with its better direction), one
    column per method, so five methods fit in 80 characters."""
    by_key = {column.key: column for column in COLUMNS}
    settings = comparison.settings
    table = Table(title=f"Semantic IDs on {comparison.data_dir.name}: {comparison.num_items:,} items, "
                  f"{settings.levels} x {settings.codebook_size} codes, rho = {settings.reference_rho}",
                  caption=direction_legend())
    table.add_column("metric", no_wrap=True)
    table.add_column("", no_wrap=True)
    rows = comparison.summary_rows()
    for row in rows:
        table.add_column(str(row["method"]), justify="right", no_wrap=True)
    for key in metrics:
        column = by_key[key]
        table.add_row(column.name, ARROWS[column.better], *[column.cell(row) for row in rows])
    return table


def _retention_lines(comparison: ComparisonResult) -> list[str]:
    results = [r for r in comparison.methods if r.retention is not None]
    if not results:
        return []
    cutoffs = comparison.settings.cutoffs
    lines = ["", "## Hit-rate retention and soft matching", "",
             f"All {comparison.heldout_pairs:,} held-out pairs, and the {comparison.novel_pairs:,} novel ones (the two "
             "items never form a training pair). ↑ higher is better.", ""]
    rows = []
    for result in results:
        for subset, ret, auc in (("all", result.retention, result.auc), ("novel", result.retention_novel,
                                                                         result.auc_novel)):
            rows.append([result.method, subset,
                         *[format_value(None if ret is None else ret.at(k), "{:.3f}") for k in cutoffs],
                         format_value(None if auc is None else auc.auc, "{:.3f}")])
    first = results[0]
    for subset, ret in (("all", first.retention), ("novel", first.retention_novel)):
        if ret is not None:
            rows.append(["(HR@K original)", subset, *[f"{v:.4f}" for v in ret.original.hit_rates], "-"])
    return lines + markdown_table(["method", "pairs", *[f"ret@{k}" for k in cutoffs], "SID AUC"], rows)


def _interval(value: float | None, error: float | None, fmt: str) -> str:
    text = format_value(value, fmt)
    return text if error is None or text == "-" else f"{text} ± {fmt.format(Z95 * error)}"


def _hypot(first: float | None, second: float | None) -> float:
    return float(((first or 0.0) ** 2 + (second or 0.0) ** 2) ** 0.5)
