"""Multi-task rankers that take item representations (hashed ids, Semantic IDs) as features.

Models (:class:`DNN`, :class:`SharedBottom`, :class:`MMoE`, :class:`PLE`, :class:`DTN`, any
registered one through :func:`build_model`), their training (:func:`train_model`), the
experiment runner :func:`run_ranking` (feature sets x budgets x seeds, intervals, report), and
saved rankers (:func:`load_ranker`, :func:`score_impressions`, behind ``sidkit predict``).

    from sidkit.ranking import run_ranking, RankSettings
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sidkit._exports import lazy_exports

# Public name -> the module that defines it; imported on first use.
_EXPORTS = {
    "sidkit.ranking.experiment": ("run_ranking", "quick_rank", "RankSettings", "RankingExperiment"),
    "sidkit.ranking.models": ("ModelConfig", "MultiTaskRanker", "DNN", "SharedBottom", "MMoE", "PLE", "build_model",
                              "register_model", "model_names"),
    "sidkit.ranking.dtn": ("DTN", "DTNConfig"),
    "sidkit.ranking.capacity": ("match_capacity", "CapacityMatch"),
    "sidkit.ranking.data": ("build_ranking_data", "encode_users"),
    "sidkit.ranking.types": ("RankingData", "RankingSplit"),
    "sidkit.ranking.training": ("train_model", "TrainConfig", "TrainResult"),
    "sidkit.ranking.metrics": ("roc_auc", "grouped_auc", "RankingMetrics"),
    "sidkit.ranking.importance": ("permutation_importance", "importance_across_runs", "FeatureImportance"),
    "sidkit.ranking.interactions": ("GDCN", "MaskNet", "MemoNet", "SimHashCrossMemory"),
    "sidkit.ranking.saved": ("save_ranker", "load_ranker", "score_impressions", "SavedRanker"),
}
__all__ = [*(name for names in _EXPORTS.values() for name in names)]
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from sidkit.ranking.capacity import CapacityMatch as CapacityMatch, match_capacity as match_capacity
    from sidkit.ranking.data import build_ranking_data as build_ranking_data, encode_users as encode_users
    from sidkit.ranking.dtn import DTN as DTN, DTNConfig as DTNConfig
    from sidkit.ranking.experiment import (
        RankingExperiment as RankingExperiment,
        RankSettings as RankSettings,
        quick_rank as quick_rank,
        run_ranking as run_ranking,
    )
    from sidkit.ranking.importance import (
        FeatureImportance as FeatureImportance,
        importance_across_runs as importance_across_runs,
        permutation_importance as permutation_importance,
    )
    from sidkit.ranking.interactions import (
        GDCN as GDCN,
        MaskNet as MaskNet,
        MemoNet as MemoNet,
        SimHashCrossMemory as SimHashCrossMemory,
    )
    from sidkit.ranking.metrics import RankingMetrics as RankingMetrics, grouped_auc as grouped_auc, roc_auc as roc_auc
    from sidkit.ranking.models import (
        DNN as DNN,
        PLE as PLE,
        MMoE as MMoE,
        ModelConfig as ModelConfig,
        MultiTaskRanker as MultiTaskRanker,
        SharedBottom as SharedBottom,
        build_model as build_model,
        model_names as model_names,
        register_model as register_model,
    )
    from sidkit.ranking.saved import (
        SavedRanker as SavedRanker,
        load_ranker as load_ranker,
        save_ranker as save_ranker,
        score_impressions as score_impressions,
    )
    from sidkit.ranking.training import (
        TrainConfig as TrainConfig,
        TrainResult as TrainResult,
        train_model as train_model,
    )
    from sidkit.ranking.types import RankingData as RankingData, RankingSplit as RankingSplit
