"""Generative retrieval on Semantic IDs: next-item data, TIGER with trie-constrained beam search, baselines.

:func:`build_next_item_data` turns a dataset into per-user chronological sequences with a
``leave-one-out`` or ``global-time`` split and an optional item hold-out (the ``new`` slice);
:class:`Tiger` (an encoder-decoder over SID tokens), :class:`Sasrec` (full softmax cross-entropy) and
:class:`Popularity` train on it and return ranked items; :func:`retrieval_metrics` gives Recall@K and
NDCG@K counted by item; :func:`run_retrieval` runs models over seeds (and, with fitted tokenizers,
correlates each ``sidkit compare`` diagnostic with Recall@10) and writes the tables and a report::

    from sidkit.retrieval import RetrieveSettings, run_retrieval
    result = run_retrieval("data/ml-1m", "runs/ret", RetrieveSettings(seeds=3), tokenizer="models/rqk")
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sidkit._exports import lazy_exports

# Public name -> the module that defines it; imported on first use.
_EXPORTS = {
    "sidkit.retrieval.data": ("NextItemData", "Sequences", "Examples", "build_next_item_data"),
    "sidkit.retrieval.trie": ("SidTrie",),
    "sidkit.retrieval.beam": ("BeamResult", "constrained_beam_search"),
    "sidkit.retrieval.tiger": ("Tiger", "TigerConfig", "TigerModel", "tiger_codes"),
    "sidkit.retrieval.sasrec": ("Sasrec", "SasrecConfig"),
    "sidkit.retrieval.popularity": ("Popularity",),
    "sidkit.retrieval.metrics": ("RetrievalMetrics", "MetricValue", "retrieval_metrics"),
    "sidkit.retrieval.experiment": ("RetrieveSettings", "RetrievalExperiment", "RunResult", "TableRow",
                                    "Correlation", "run_retrieval", "run_model"),
}
__all__ = [*(name for names in _EXPORTS.values() for name in names)]
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from sidkit.retrieval.beam import BeamResult as BeamResult, constrained_beam_search as constrained_beam_search
    from sidkit.retrieval.data import (
        Examples as Examples,
        NextItemData as NextItemData,
        Sequences as Sequences,
        build_next_item_data as build_next_item_data,
    )
    from sidkit.retrieval.experiment import (
        Correlation as Correlation,
        RetrievalExperiment as RetrievalExperiment,
        RetrieveSettings as RetrieveSettings,
        RunResult as RunResult,
        TableRow as TableRow,
        run_model as run_model,
        run_retrieval as run_retrieval,
    )
    from sidkit.retrieval.metrics import (
        MetricValue as MetricValue,
        RetrievalMetrics as RetrievalMetrics,
        retrieval_metrics as retrieval_metrics,
    )
    from sidkit.retrieval.popularity import Popularity as Popularity
    from sidkit.retrieval.sasrec import Sasrec as Sasrec, SasrecConfig as SasrecConfig
    from sidkit.retrieval.tiger import (
        Tiger as Tiger,
        TigerConfig as TigerConfig,
        TigerModel as TigerModel,
        tiger_codes as tiger_codes,
    )
    from sidkit.retrieval.trie import SidTrie as SidTrie
