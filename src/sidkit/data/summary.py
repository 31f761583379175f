"""A short, printable summary of a dataset directory."""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass

import numpy as np

from sidkit.data.dataset import load_dataset


@dataclass(frozen=True)
class DatasetSummary:
    source: str
    num_items: int
    num_users: int
    num_interactions: int
    first_time: int
    last_time: int
    interactions_per_user_median: float
    interactions_per_item_median: float
    rating_mean: float | None
    label_rates: dict[str, float]
    item_columns: tuple[str, ...]
    user_columns: tuple[str, ...]
    embedding_shape: tuple[int, int] | None
    embedding_model: str | None
    embedding_mean_norm: float | None

    def rows(self) -> list[tuple[str, str]]:
        """(name, value) pairs for a two-column table."""
        rows = [
            ("source", self.source),
            ("items", f"{self.num_items:,}"),
            ("users", f"{self.num_users:,}"),
            ("interactions", f"{self.num_interactions:,}"),
            ("time range", f"{_when(self.first_time)} .. {_when(self.last_time)}"),
            ("interactions per user (median)", f"{self.interactions_per_user_median:g}"),
            ("interactions per item (median)", f"{self.interactions_per_item_median:g}"),
        ]
        if self.rating_mean is not None:
            rows.append(("mean rating", f"{self.rating_mean:.3f}"))
        rows += [(f"label '{k}' rate", f"{v:.3f}") for k, v in self.label_rates.items()]
        rows.append(("item columns", ", ".join(self.item_columns) or "-"))
        rows.append(("user columns", ", ".join(self.user_columns) or "-"))
        if self.embedding_shape is None:
            rows.append(("embeddings", "none (run `sidkit embed --data DIR`)"))
        else:
            rows.append(("embeddings", f"{self.embedding_shape[0]:,} x {self.embedding_shape[1]} float32, "
                                       f"model {self.embedding_model or 'unknown'}, "
                                       f"mean norm {self.embedding_mean_norm:.3f}"))
        return rows


def summarize_dataset(directory: str | os.PathLike[str]) -> DatasetSummary:
    """Summarize the dataset directory (embeddings are memory-mapped, never loaded whole)."""
    dataset = load_dataset(directory, mmap=True)
    inter = dataset.interactions
    _, per_user = np.unique(inter.user_ids, return_counts=True)
    _, per_item = np.unique(inter.item_ids, return_counts=True)
    emb = dataset.catalog.embeddings
    mean_norm = None
    if emb is not None:
        sample = np.asarray(emb[: min(len(emb), 100_000)], dtype=np.float64)
        mean_norm = float(np.linalg.norm(sample, axis=1).mean())
    assert dataset.manifest is not None
    return DatasetSummary(
        source=dataset.manifest.source,
        num_items=len(dataset.catalog),
        num_users=inter.num_users,
        num_interactions=len(inter),
        first_time=int(inter.timestamps.min()),
        last_time=int(inter.timestamps.max()),
        interactions_per_user_median=float(np.median(per_user)),
        interactions_per_item_median=float(np.median(per_item)),
        rating_mean=None if inter.ratings is None else float(inter.ratings.mean()),
        label_rates={k: float(v.mean()) for k, v in inter.labels.items()},
        item_columns=tuple(dataset.catalog.columns),
        user_columns=() if dataset.users is None else tuple(dataset.users.column_names),
        embedding_shape=None if emb is None else (int(emb.shape[0]), int(emb.shape[1])),
        embedding_model=dataset.manifest.embedding_model,
        embedding_mean_norm=mean_norm,
    )


def _when(timestamp: int) -> str:
    # Unix seconds after 1990 print as dates; synthetic step counters print as numbers.
    if timestamp > 631_152_000:
        return dt.datetime.fromtimestamp(timestamp, dt.UTC).strftime("%Y-%m-%d")
    return str(timestamp)
