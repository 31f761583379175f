"""Diagnostics of Semantic IDs: how they use their codes, how well they reconstruct, and why they fail.

One module per question: ``usage`` (active and dead codes, perplexity, Gini, collisions),
``reconstruction`` (MSE, relative error, cosine), ``overlap`` (O_pi, K_eff, distribution and geometry
penalties; ``overlap_counts`` holds its Monte Carlo estimator, ``overlap_reference`` noise models
with exact answers), ``retrieval`` (hit-rate retention, SID-embedding AUC), ``hierarchy`` (prefix cosine
table), ``stability`` (agreement between two fitted tokenizers), and ``basic`` (usage and
reconstruction streamed in chunks). Their entry points and result types are importable from here:

    from sidkit.diagnostics import usage_report, expected_overlap, retention
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sidkit._exports import lazy_exports

# Public name -> the module that defines it; imported on first use.
_EXPORTS = {
    "sidkit.diagnostics.usage": ("usage_report", "level_usage", "sid_usage", "gini", "UsageReport", "LevelUsage",
                                 "SidUsage", "UsageAccumulator"),
    "sidkit.diagnostics.reconstruction": ("reconstruction_report", "ReconstructionReport",
                                          "ReconstructionAccumulator"),
    "sidkit.diagnostics.overlap": ("expected_overlap", "overlap_sweep", "analytic_expected_overlap",
                                   "analytic_sweep", "noise_sigma", "OverlapReport", "OverlapSweep",
                                   "SymbolOverlap", "Overlap"),
    "sidkit.diagnostics.overlap_counts": ("OverlapCounts", "OverlapEstimate"),
    "sidkit.diagnostics.retrieval": ("retention", "sid_embedding_auc", "hit_rates", "novel_pairs", "RetentionReport",
                                     "AucReport", "HitRates"),
    "sidkit.diagnostics.hierarchy": ("prefix_hierarchy", "HierarchyReport", "PrefixDepth"),
    "sidkit.diagnostics.stability": ("tokenizer_stability", "StabilityReport"),
    "sidkit.diagnostics.basic": ("basic_diagnostics", "BasicDiagnostics"),
}
__all__ = [*(name for names in _EXPORTS.values() for name in names)]
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from sidkit.diagnostics.basic import BasicDiagnostics as BasicDiagnostics, basic_diagnostics as basic_diagnostics
    from sidkit.diagnostics.hierarchy import (
        HierarchyReport as HierarchyReport,
        PrefixDepth as PrefixDepth,
        prefix_hierarchy as prefix_hierarchy,
    )
    from sidkit.diagnostics.overlap import (
        Overlap as Overlap,
        OverlapReport as OverlapReport,
        OverlapSweep as OverlapSweep,
        SymbolOverlap as SymbolOverlap,
        analytic_expected_overlap as analytic_expected_overlap,
        analytic_sweep as analytic_sweep,
        expected_overlap as expected_overlap,
        noise_sigma as noise_sigma,
        overlap_sweep as overlap_sweep,
    )
    from sidkit.diagnostics.overlap_counts import OverlapCounts as OverlapCounts, OverlapEstimate as OverlapEstimate
    from sidkit.diagnostics.reconstruction import (
        ReconstructionAccumulator as ReconstructionAccumulator,
        ReconstructionReport as ReconstructionReport,
        reconstruction_report as reconstruction_report,
    )
    from sidkit.diagnostics.retrieval import (
        AucReport as AucReport,
        HitRates as HitRates,
        RetentionReport as RetentionReport,
        hit_rates as hit_rates,
        novel_pairs as novel_pairs,
        retention as retention,
        sid_embedding_auc as sid_embedding_auc,
    )
    from sidkit.diagnostics.stability import (
        StabilityReport as StabilityReport,
        tokenizer_stability as tokenizer_stability,
    )
    from sidkit.diagnostics.usage import (
        LevelUsage as LevelUsage,
        SidUsage as SidUsage,
        UsageAccumulator as UsageAccumulator,
        UsageReport as UsageReport,
        gini as gini,
        level_usage as level_usage,
        sid_usage as sid_usage,
        usage_report as usage_report,
    )
