"""Item catalog: ids, text, and content embeddings aligned row by row."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import NoReturn

import numpy as np

from sidkit.data.validation import (
    as_id_array,
    check_embedding_values,
    check_length,
    check_not_empty,
    check_unique,
)
from sidkit.errors import DataError


@dataclass(frozen=True, eq=False)
class ItemCatalog:
    """Items with text and (optionally) content embeddings.

    Attributes:
        item_ids: (N,) int64 or str, unique.
        text: (N,) str, the text that embeddings are computed from.
        embeddings: (N, D) float32, finite, or None before embedding. May be memory-mapped.
        columns: extra per-item columns, each of length N.
    """

    item_ids: np.ndarray
    text: np.ndarray
    embeddings: np.ndarray | None = None
    columns: Mapping[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        ids = as_id_array(self.item_ids, where="items.item_id")
        check_not_empty(len(ids), where="items")
        check_unique(ids, where="items.item_id")
        text = np.asarray(self.text, dtype=object)
        if text.ndim != 1:
            raise DataError(f"text must be one-dimensional, got shape {text.shape}", where="items.text",
                            fix="give one text per item")
        check_length(text, len(ids), where="items.text", against="item_id")
        if not all(isinstance(t, str) for t in text.tolist()):
            raise DataError("text holds values that are not strings", where="items.text",
                            fix="fill missing text with an empty string")
        object.__setattr__(self, "item_ids", ids)
        object.__setattr__(self, "text", text)
        if self.embeddings is not None:
            object.__setattr__(self, "embeddings", _checked_embeddings(self.embeddings, len(ids)))
        columns = {}
        for name, values in self.columns.items():
            column = np.asarray(values)
            check_length(column, len(ids), where=f"items.{name}", against="item_id")
            columns[name] = column
        object.__setattr__(self, "columns", columns)

    def __len__(self) -> int:
        return len(self.item_ids)

    @property
    def dim(self) -> int | None:
        """Embedding dimension, or None when there are no embeddings."""
        return None if self.embeddings is None else int(self.embeddings.shape[1])

    def with_embeddings(self, embeddings: np.ndarray) -> ItemCatalog:
        """A copy of this catalog with new embeddings (validated)."""
        return ItemCatalog(self.item_ids, self.text, embeddings, self.columns)

    def index_of(self, item_ids: np.ndarray) -> np.ndarray:
        """Row positions of ``item_ids``; raises if any id is not in the catalog."""
        query = as_id_array(item_ids, where="item_id")
        ids = self.item_ids
        if ids.dtype.kind == "i" and query.dtype.kind == "i":
            low, high = int(ids.min()), int(ids.max())
            # Dense integer ids (the common case): one table lookup, far faster than a sorted search.
            if high - low <= 4 * len(ids) + 1024:
                table = np.full(high - low + 1, -1, dtype=np.int64)
                table[ids - low] = np.arange(len(ids))
                inside = (query >= low) & (query <= high)
                rows = np.full(len(query), -1, dtype=np.int64)
                rows[inside] = table[query[inside] - low]
                missing = rows < 0
                if not np.any(missing):
                    return rows
                self._raise_missing(query, missing)
        if ids.dtype.kind != query.dtype.kind:
            self._raise_missing(query, np.ones(len(query), dtype=bool))
        order = np.argsort(ids, kind="stable")
        pos = np.searchsorted(ids, query, sorter=order)
        pos = np.clip(pos, 0, len(order) - 1)
        rows = order[pos]
        missing = ids[rows] != query
        if np.any(missing):
            self._raise_missing(query, missing)
        return rows

    @staticmethod
    def _raise_missing(query: np.ndarray, missing: np.ndarray) -> NoReturn:
        examples = np.unique(query[missing])[:5].tolist()
        raise DataError(f"{int(missing.sum())} rows refer to item ids not in the catalog, for example "
                        f"{examples}", where="item_id",
                        fix="add those items to items.parquet or drop their interactions")


def _checked_embeddings(embeddings: np.ndarray, n_items: int) -> np.ndarray:
    array = embeddings if isinstance(embeddings, np.memmap) else np.asarray(embeddings)
    if array.ndim != 2:
        raise DataError(f"embeddings must be 2-d (items, dim), got shape {array.shape}",
                        where="embeddings", fix="reshape to (number of items, embedding dimension)")
    if array.shape[0] != n_items:
        raise DataError(f"embeddings have {array.shape[0]} rows but the catalog has {n_items} items",
                        where="embeddings", fix="embeddings.npy must align row by row with items.parquet; "
                        "re-run `sidkit embed`")
    if array.shape[1] == 0:
        raise DataError("embeddings have dimension 0", where="embeddings", fix="pass an (N, D) array with D >= 1")
    if array.dtype.kind != "f":
        raise DataError(f"embeddings must be floating point, got {array.dtype}", where="embeddings",
                        fix="convert with .astype(np.float32)")
    if array.dtype != np.float32:
        array = array.astype(np.float32)
    check_embedding_values(array, where="embeddings")
    return array


def check_embedding_dim(embeddings: np.ndarray, expected_dim: int, *, where: str) -> None:
    """Raise when embeddings have the wrong width for a model fitted on ``expected_dim``."""
    if embeddings.ndim != 2 or embeddings.shape[1] != expected_dim:
        raise DataError(f"expected embeddings of dimension {expected_dim}, got shape {embeddings.shape}",
                        where=where, fix="use embeddings from the same model the tokenizer was fitted on")
