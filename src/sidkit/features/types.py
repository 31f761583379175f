"""The value every item representation produces, and every ranker consumes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sidkit.errors import DataError

PAD_TOKEN = 0


@dataclass(frozen=True, eq=False)
class ItemRepresentation:
    """A sum-pooled bag of embedding-table rows per item (plus, optionally, a dense vector).

    The same representation serves the candidate item and each item of a user's history.

    Attributes:
        name: the feature-set name, e.g. ``"hash"``, ``"sid-prefix"``, ``"hash+sid-prefix"``.
        tokens: (N + 1, T) int64 embedding-table rows of each of the N catalog items; row N is the
            padding item used to pad histories. Token ``PAD_TOKEN`` (0) is padding: its embedding is
            fixed at zero, so items with fewer than T tokens pad with 0.
        num_embeddings: rows of the embedding table, padding row 0 included (the budget + 1).
        dense: (N + 1, D) float32 content vectors (row N zeros) for representations that project
            dense content, else None.
        budget: the table size that was asked for (hash buckets, SPM vocabulary, ...), for reports.
    """

    name: str
    tokens: np.ndarray
    num_embeddings: int
    dense: np.ndarray | None = None
    budget: int | None = None

    def __post_init__(self) -> None:
        tokens = np.asarray(self.tokens)
        if tokens.ndim != 2 or tokens.dtype.kind not in "iu":
            raise DataError(f"tokens must be a 2-d integer array, got {tokens.dtype} {tokens.shape}",
                            where=f"representation {self.name}")
        if tokens.size and (tokens.min() < 0 or tokens.max() >= self.num_embeddings):
            raise DataError(f"tokens fall outside [0, {self.num_embeddings})", where=f"representation {self.name}")
        if tokens.shape[0] >= 1 and np.any(tokens[-1] != PAD_TOKEN):
            raise DataError("the last row (padding item) must hold only padding tokens",
                            where=f"representation {self.name}")
        object.__setattr__(self, "tokens", tokens.astype(np.int64, copy=False))
        if self.dense is not None:
            dense = np.asarray(self.dense, dtype=np.float32)
            if dense.shape[0] != tokens.shape[0]:
                raise DataError(f"dense has {dense.shape[0]} rows, tokens {tokens.shape[0]}",
                                where=f"representation {self.name}")
            object.__setattr__(self, "dense", dense)

    @property
    def num_items(self) -> int:
        """N, the catalog items (the padding row excluded)."""
        return int(self.tokens.shape[0] - 1)

    @property
    def pad_item(self) -> int:
        """The index of the padding item, used to pad histories."""
        return self.num_items

    @property
    def table_rows(self) -> int:
        """Rows of the embedding table, padding excluded."""
        return int(self.num_embeddings - 1)

    @property
    def rows_used(self) -> int:
        """Distinct table rows that some catalog item's tokens use (padding excluded)."""
        tokens = self.tokens[:-1]
        return int(np.unique(tokens[tokens != PAD_TOKEN]).size)

    def param_count(self, embedding_dim: int) -> int:
        """Parameters of this representation's embedding table (and dense projection) at ``embedding_dim``."""
        count = self.num_embeddings * embedding_dim
        if self.dense is not None:
            count += self.dense.shape[1] * embedding_dim + embedding_dim
        return count
