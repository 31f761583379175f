"""sidkit: Semantic IDs for recommendation: tokenize item embeddings, diagnose the IDs, rank with them.

The main names are importable from the package itself; importing it is cheap (torch loads only when
a name that needs it is first used)::

    from sidkit import RQKMeans, SemanticIds, usage_report, load_tokenizer
    tokenizer = RQKMeans(levels=3, codebook_size=256, seed=0).fit(embeddings)
    ids = tokenizer.encode(embeddings)

Each subpackage exports its own public names too: :mod:`sidkit.tokenizers`, :mod:`sidkit.diagnostics`,
:mod:`sidkit.data`, :mod:`sidkit.features`, :mod:`sidkit.ranking`, :mod:`sidkit.retrieval`, :mod:`sidkit.stream`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

# First, before anything loads torch: OpenMP reads its wait policy once, when torch loads it.
from sidkit import threads as _threads  # noqa: F401
from sidkit._exports import lazy_exports

__version__ = "0.1.0"

# Public name -> the module that defines it; imported on first use.
_EXPORTS = {
    "sidkit.tokenizers.base": ("Tokenizer", "load_tokenizer"),
    "sidkit.tokenizers.rq_kmeans": ("RQKMeans",),
    "sidkit.tokenizers.rq_vae": ("RQVAE", "RQPVAE"),
    "sidkit.tokenizers.drq": ("DRQVAE",),
    "sidkit.tokenizers.factory": ("make_tokenizer",),
    "sidkit.ids": ("SemanticIds",),
    "sidkit.errors": ("SidkitError", "DataError", "ConfigError", "NotFittedError"),
    "sidkit.data.dataset": ("Dataset", "load_dataset", "save_dataset"),
    "sidkit.data.catalog": ("ItemCatalog",),
    "sidkit.data.interactions": ("Interactions",),
    "sidkit.data.pairs": ("BehaviourPairs", "behaviour_pairs"),
    "sidkit.data.synthetic": ("generate_synthetic",),
    "sidkit.embed": ("embed_texts", "embed_dataset"),
    "sidkit.diagnostics.usage": ("usage_report",),
    "sidkit.diagnostics.reconstruction": ("reconstruction_report",),
    "sidkit.diagnostics.overlap": ("expected_overlap", "overlap_sweep", "analytic_expected_overlap"),
    "sidkit.diagnostics.retrieval": ("retention", "sid_embedding_auc"),
    "sidkit.diagnostics.hierarchy": ("prefix_hierarchy",),
    "sidkit.diagnostics.stability": ("tokenizer_stability",),
    "sidkit.diagnostics.basic": ("basic_diagnostics",),
    "sidkit.compare": ("run_comparison", "CompareSettings"),
    "sidkit.ranking.experiment": ("run_ranking", "RankSettings"),
    "sidkit.ranking.models": ("DNN", "SharedBottom", "MMoE", "PLE", "build_model"),
    "sidkit.ranking.dtn": ("DTN",),
    "sidkit.retrieval.experiment": ("run_retrieval", "RetrieveSettings"),
    "sidkit.stream.encode": ("stream_encode",),
    "sidkit.registry": ("SidRegistry",),
}
__all__ = [*(name for names in _EXPORTS.values() for name in names), "__version__"]
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS,
                                     submodules=("backends", "data", "diagnostics", "features", "ranking", "report",
                                                 "retrieval", "stream", "tokenizers"))

if TYPE_CHECKING:
    from sidkit.compare import CompareSettings as CompareSettings, run_comparison as run_comparison
    from sidkit.data.catalog import ItemCatalog as ItemCatalog
    from sidkit.data.dataset import Dataset as Dataset, load_dataset as load_dataset, save_dataset as save_dataset
    from sidkit.data.interactions import Interactions as Interactions
    from sidkit.data.pairs import BehaviourPairs as BehaviourPairs, behaviour_pairs as behaviour_pairs
    from sidkit.data.synthetic import generate_synthetic as generate_synthetic
    from sidkit.diagnostics.basic import basic_diagnostics as basic_diagnostics
    from sidkit.diagnostics.hierarchy import prefix_hierarchy as prefix_hierarchy
    from sidkit.diagnostics.overlap import (
        analytic_expected_overlap as analytic_expected_overlap,
        expected_overlap as expected_overlap,
        overlap_sweep as overlap_sweep,
    )
    from sidkit.diagnostics.reconstruction import reconstruction_report as reconstruction_report
    from sidkit.diagnostics.retrieval import retention as retention, sid_embedding_auc as sid_embedding_auc
    from sidkit.diagnostics.stability import tokenizer_stability as tokenizer_stability
    from sidkit.diagnostics.usage import usage_report as usage_report
    from sidkit.embed import embed_dataset as embed_dataset, embed_texts as embed_texts
    from sidkit.errors import (
        ConfigError as ConfigError,
        DataError as DataError,
        NotFittedError as NotFittedError,
        SidkitError as SidkitError,
    )
    from sidkit.ids import SemanticIds as SemanticIds
    from sidkit.ranking.dtn import DTN as DTN
    from sidkit.ranking.experiment import RankSettings as RankSettings, run_ranking as run_ranking
    from sidkit.ranking.models import (
        DNN as DNN,
        PLE as PLE,
        MMoE as MMoE,
        SharedBottom as SharedBottom,
        build_model as build_model,
    )
    from sidkit.registry import SidRegistry as SidRegistry
    from sidkit.retrieval.experiment import RetrieveSettings as RetrieveSettings, run_retrieval as run_retrieval
    from sidkit.stream.encode import stream_encode as stream_encode
    from sidkit.tokenizers.base import Tokenizer as Tokenizer, load_tokenizer as load_tokenizer
    from sidkit.tokenizers.drq import DRQVAE as DRQVAE
    from sidkit.tokenizers.factory import make_tokenizer as make_tokenizer
    from sidkit.tokenizers.rq_kmeans import RQKMeans as RQKMeans
    from sidkit.tokenizers.rq_vae import RQPVAE as RQPVAE, RQVAE as RQVAE
