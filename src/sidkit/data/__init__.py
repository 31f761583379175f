"""Item catalogs, interactions, dataset directories, and the sources that fill them.

    from sidkit.data import load_dataset, behaviour_pairs
    dataset = load_dataset("data/ml-100k")
    pairs = behaviour_pairs(dataset.interactions, dataset.catalog)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sidkit._exports import lazy_exports

# Public name -> the module that defines it; imported on first use.
_EXPORTS = {
    "sidkit.data.catalog": ("ItemCatalog",),
    "sidkit.data.interactions": ("Interactions",),
    "sidkit.data.dataset": ("Dataset", "load_dataset", "save_dataset", "save_embeddings", "load_embeddings"),
    "sidkit.data.files": ("read_embeddings", "read_table", "read_interactions", "read_catalog",
                          "dataset_from_files"),
    "sidkit.data.pairs": ("BehaviourPairs", "behaviour_pairs"),
    "sidkit.data.summary": ("DatasetSummary", "summarize_dataset"),
    "sidkit.data.synthetic": ("SyntheticConfig", "generate_synthetic", "write_synthetic"),
    "sidkit.data.movielens": ("load_movielens_100k", "fetch_movielens_100k"),
    "sidkit.data.movielens_1m": ("load_movielens_1m",),
    "sidkit.data.recbole": ("load_recbole", "read_atomic_file"),
}
__all__ = [*(name for names in _EXPORTS.values() for name in names)]
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from sidkit.data.catalog import ItemCatalog as ItemCatalog
    from sidkit.data.dataset import (
        Dataset as Dataset,
        load_dataset as load_dataset,
        load_embeddings as load_embeddings,
        save_dataset as save_dataset,
        save_embeddings as save_embeddings,
    )
    from sidkit.data.files import (
        dataset_from_files as dataset_from_files,
        read_catalog as read_catalog,
        read_embeddings as read_embeddings,
        read_interactions as read_interactions,
        read_table as read_table,
    )
    from sidkit.data.interactions import Interactions as Interactions
    from sidkit.data.movielens import (
        fetch_movielens_100k as fetch_movielens_100k,
        load_movielens_100k as load_movielens_100k,
    )
    from sidkit.data.movielens_1m import load_movielens_1m as load_movielens_1m
    from sidkit.data.pairs import BehaviourPairs as BehaviourPairs, behaviour_pairs as behaviour_pairs
    from sidkit.data.recbole import load_recbole as load_recbole, read_atomic_file as read_atomic_file
    from sidkit.data.summary import DatasetSummary as DatasetSummary, summarize_dataset as summarize_dataset
    from sidkit.data.synthetic import (
        SyntheticConfig as SyntheticConfig,
        generate_synthetic as generate_synthetic,
        write_synthetic as write_synthetic,
    )
