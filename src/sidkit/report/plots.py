"""Plots of the comparison report, drawn with matplotlib's Agg canvas and returned as PNG bytes.

Every function takes plain numbers keyed by method name, so it can be called (and tested) without a
comparison run. Figures are built with ``matplotlib.figure.Figure`` directly, never pyplot: no global
state, no GUI backend, safe to call from any thread.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence

import numpy as np

from sidkit.errors import ConfigError

try:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
except ImportError:  # pragma: no cover - depends on the installation
    raise ConfigError("the HTML report needs matplotlib, which is not installed", where="sidkit.report",
                      fix="pip install matplotlib, or run `sidkit compare --no-report`") from None
from matplotlib.ticker import (
    FixedFormatter,
    FixedLocator,
    FuncFormatter,
    LogLocator,
    MaxNLocator,
    NullFormatter,
)

DPI = 100
# Colours per method, in the order methods are given (matplotlib's tab10).
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf")


def color(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def to_png(figure: Figure) -> bytes:
    """The figure as PNG bytes."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def _log_ticks(axis: Axes, ticks: Sequence[float]) -> None:
    """Log x axis with a labelled tick at each given value and none in between (no clutter)."""
    axis.set_xscale("log")
    axis.xaxis.set_major_locator(FixedLocator(list(ticks)))
    axis.xaxis.set_major_formatter(FixedFormatter([f"{tick:g}" for tick in ticks]))
    axis.xaxis.set_minor_formatter(NullFormatter())
    axis.yaxis.set_minor_formatter(NullFormatter())


def lorenz_curve(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(share of codes, share of items) of the Lorenz curve of (K,) usage counts, least used codes first.

    Both arrays have K + 1 points from (0, 0) to (1, 1); the diagonal is perfect equality, and twice
    the area between the diagonal and the curve is the Gini coefficient.
    """
    values = np.sort(np.asarray(counts, dtype=np.float64))
    total = values.sum()
    cumulative = np.r_[0.0, np.cumsum(values)] / (total if total > 0 else 1.0)
    return np.linspace(0.0, 1.0, len(values) + 1), cumulative


def usage_figure(counts: Mapping[str, Sequence[np.ndarray]]) -> bytes:
    """Code usage per level: sorted usage share (top row, log scale) and Lorenz curves (bottom row).

    ``counts[method][level]`` is the (K_l,) number of items per code.
    """
    levels = max(len(per_level) for per_level in counts.values())
    figure = Figure(figsize=(4.2 * levels, 6.4), layout="constrained")
    axes = figure.subplots(2, levels, squeeze=False)
    for index, (method, per_level) in enumerate(counts.items()):
        for level, level_counts in enumerate(per_level):
            values = np.sort(np.asarray(level_counts, dtype=np.float64))[::-1]
            share = values / max(values.sum(), 1.0)
            used = share > 0
            ranks = np.arange(1, len(share) + 1)
            axes[0, level].plot(ranks[used], share[used], color=color(index), label=method, lw=1.5)
            x, y = lorenz_curve(level_counts)
            axes[1, level].plot(x, y, color=color(index), label=method, lw=1.5)
    for level in range(levels):
        top, bottom = axes[0, level], axes[1, level]
        top.set_yscale("log")
        top.set_title(f"level {level}: usage, codes sorted")
        top.set_xlabel("code rank")
        top.set_ylabel("share of items")
        bottom.plot([0, 1], [0, 1], color="#999999", ls=":", lw=1)
        bottom.set_title(f"level {level}: Lorenz curve")
        bottom.set_xlabel("share of codes (least used first)")
        bottom.set_ylabel("share of items")
        for axis in (top, bottom):
            axis.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=8)
    return to_png(figure)


def effective_size_figure(series: Mapping[str, Mapping[str, tuple[Sequence[float], Sequence[float]]]],
                          analytic: Mapping[str, Mapping[str, tuple[Sequence[float], Sequence[float]]]],
                          nominal: Mapping[str, int],
                          errors: Mapping[str, Mapping[str, Sequence[float]]] | None = None) -> bytes:
    """K_eff against rho, one panel per symbol set (e.g. "level 0", ..., "full SID").

    ``series[method][panel] = (rhos, K_eff)`` empirical (solid, with a shaded 95% band from
    ``errors[method][panel]``, the standard errors); ``analytic`` likewise (dashed); ``nominal[panel]``
    = K_nom (dotted line). The log y axis spans the data, not [1, K_nom], so curves near K_nom stay
    apart; the right axis reads the same values as K_eff / K_nom.
    """
    errors = errors or {}
    panels = list(nominal)
    columns = min(len(panels), 2)  # two wide panels per row stay readable at page width
    rows = math.ceil(len(panels) / columns)
    figure = Figure(figsize=(6.4 * columns, 4.0 * rows), layout="constrained")
    grid = figure.subplots(rows, columns, squeeze=False).reshape(-1)
    for unused in grid[len(panels):]:
        unused.set_visible(False)
    axes = grid[:len(panels)]
    shown: dict[str, list[float]] = {panel: [] for panel in panels}
    for index, method in enumerate(series):
        for axis, panel in zip(axes, panels, strict=True):
            if panel in series[method]:
                rhos, values = series[method][panel]
                axis.plot(rhos, values, color=color(index), marker="o", ms=3, lw=1.5, label=method)
                shown[panel] += [v for v in values if v > 0]
                spread = errors.get(method, {}).get(panel)
                if spread is not None:
                    low = [max(v - 1.96 * e, 1e-12) for v, e in zip(values, spread, strict=True)]
                    high = [v + 1.96 * e for v, e in zip(values, spread, strict=True)]
                    axis.fill_between(rhos, low, high, color=color(index), alpha=0.2, lw=0)
            if panel in analytic.get(method, {}):
                rhos, values = analytic[method][panel]
                axis.plot(rhos, values, color=color(index), ls="--", lw=1, alpha=0.8)
                shown[panel] += [v for v in values if v > 0]
    rhos = sorted({rho for per_panel in series.values() for values in per_panel.values() for rho in values[0]})
    for axis, panel in zip(axes, panels, strict=True):
        k_nom = nominal[panel]
        axis.axhline(k_nom, color="#999999", ls=":", lw=1)
        axis.set_yscale("log")
        bottom, top = log_limits(shown[panel], k_nom)
        axis.set_ylim(bottom, top)
        # A narrow range (full SIDs near K_nom) needs more labelled ticks per decade to be read.
        subs = (1.0, 2.0, 5.0) if top / bottom > 20 else (1.0, 1.2, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0)
        relative = axis.secondary_yaxis("right", functions=(lambda k, n=k_nom: k / n, lambda r, n=k_nom: r * n))
        relative.set_ylabel("K_eff / K_nom")
        for side in (axis, relative):
            side.yaxis.set_major_locator(LogLocator(subs=subs))
            side.yaxis.set_major_formatter(FuncFormatter(_tick_label))
            side.yaxis.set_minor_formatter(NullFormatter())
        _log_ticks(axis, [rho for rho in rhos if rho > 0])
        axis.set_title(f"{panel}: K_eff (K_nom = {k_nom:,}, dotted)")
        axis.set_xlabel("relative noise rho")
        axis.set_ylabel("effective codebook size K_eff")
        axis.grid(alpha=0.3, which="both")
    axes[0].legend(fontsize=8, title="solid: Monte Carlo (band: 95%), dashed: analytic", title_fontsize=7)
    return to_png(figure)


def _tick_label(value: float, _position: object = None) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def log_limits(values: Sequence[float], nominal: float) -> tuple[float, float]:
    """Y limits of a log axis that show ``values`` and the ``nominal`` line with a margin, and no more:
    curves near K_nom are not squeezed into the top of an axis that starts at 1."""
    lowest = min((v for v in values if v > 0), default=1.0)
    highest = max([*values, nominal])
    return max(lowest / 1.4, 0.5), highest * 1.15


def penalty_figure(parts: Mapping[str, Sequence[tuple[float, float, float]]],
                   factors: Mapping[str, Sequence[tuple[float, float]]], rho: float) -> bytes:
    """O_pi split into 1/K_nom + DP + GP (top, stacked) and log2 K_nom / K_eff into its two factors (bottom).

    ``parts[method][level] = (1/K_nom, DP, GP)``; ``factors[method][level] = (DP factor, GP factor)``.
    """
    methods = list(parts)
    levels = max(len(per_level) for per_level in parts.values())
    figure = Figure(figsize=(max(4.2 * levels, 6), 7.0), layout="constrained")
    axes = figure.subplots(2, levels, squeeze=False)
    x = np.arange(len(methods))
    for level in range(levels):
        top, bottom = axes[0, level], axes[1, level]
        base = np.array([parts[m][level][0] for m in methods])
        dp = np.array([parts[m][level][1] for m in methods])
        gp = np.array([parts[m][level][2] for m in methods])
        top.bar(x, base, color="#bbbbbb", label="1/K_nom")
        top.bar(x, dp, bottom=base, color="#4c72b0", label="distribution penalty")
        top.bar(x, gp, bottom=base + dp, color="#dd8452", label="geometry penalty")
        top.set_title(f"level {level}: O_pi = 1/K_nom + DP + GP")
        top.set_ylabel("expected overlap O_pi")
        bits_dp = np.log2([max(factors[m][level][0], 1.0) for m in methods])
        bits_gp = np.log2([max(factors[m][level][1], 1.0) for m in methods])
        bottom.bar(x, bits_dp, color="#4c72b0", label="distribution (log2 K_nom sum pi^2)")
        bottom.bar(x, bits_gp, bottom=bits_dp, color="#dd8452", label="geometry (log2 O_pi / sum pi^2)")
        bottom.set_title(f"level {level}: bits lost, log2 K_nom / K_eff")
        bottom.set_ylabel("bits")
        for axis in (top, bottom):
            axis.set_xticks(x, methods, rotation=30, ha="right", fontsize=8)
            axis.grid(alpha=0.3, axis="y")
    axes[0, 0].legend(fontsize=7)
    axes[1, 0].legend(fontsize=7)
    figure.suptitle(f"penalties at rho = {rho:g}")
    return to_png(figure)


def retention_figure(retention: Mapping[str, tuple[Sequence[int], Sequence[float]]]) -> bytes:
    """Hit-rate retention against the cutoff K; ``retention[method] = (cutoffs, retention)``."""
    figure = Figure(figsize=(5.6, 3.8), layout="constrained")
    axis = figure.subplots()
    for index, (method, (cutoffs, values)) in enumerate(retention.items()):
        clean = [math.nan if v is None else v for v in values]
        axis.plot(cutoffs, clean, color=color(index), marker="o", ms=4, lw=1.5, label=method)
    axis.axhline(1.0, color="#999999", ls=":", lw=1)
    _log_ticks(axis, sorted({k for cutoffs, _ in retention.values() for k in cutoffs}))
    axis.set_xlabel("cutoff K")
    axis.set_ylabel("HR@K reconstructed / HR@K original")
    axis.set_title("hit-rate retention")
    axis.grid(alpha=0.3, which="both")
    axis.legend(fontsize=8)
    return to_png(figure)


def hierarchy_figure(cosines: Mapping[str, Sequence[float]], floors: Mapping[str, float]) -> bytes:
    """Mean cosine of items sharing a prefix against prefix length; ``floors`` are the random-pair means."""
    figure = Figure(figsize=(5.6, 3.8), layout="constrained")
    axis = figure.subplots()
    for index, (method, values) in enumerate(cosines.items()):
        depths = np.arange(1, len(values) + 1)
        axis.plot(depths, values, color=color(index), marker="o", ms=4, lw=1.5, label=method)
    if floors:
        floor = float(np.mean(list(floors.values())))
        axis.axhline(floor, color="#999999", ls=":", lw=1, label="random pairs")
    axis.set_xlabel("shared prefix length")
    axis.set_ylabel("mean cosine (original embeddings)")
    axis.set_title("prefix hierarchy")
    axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    return to_png(figure)
