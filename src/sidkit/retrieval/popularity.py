"""Popularity: the most interacted-with training items the user does not have yet.

Scores are training interaction counts (held-out items count 0); ties go to the lower catalogue row.
"""

from __future__ import annotations

import numpy as np
import torch

from sidkit.errors import ConfigError
from sidkit.retrieval.data import Examples, NextItemData
from sidkit.retrieval.metrics import top_k_items


class Popularity:
    """Popularity retriever; ``seed`` and ``device`` are accepted for a uniform interface."""

    def __init__(self, *, seed: int = 0, device: str = "cpu") -> None:
        self.seed = seed
        self.device = torch.device(device)
        self.counts_: np.ndarray | None = None

    num_parameters = 0

    def fit(self, data: NextItemData) -> Popularity:
        self.counts_ = data.train_counts.astype(np.int64)
        self._candidates = data.candidates
        return self

    def recommend(self, examples: Examples, k: int, *, candidates: np.ndarray | None = None) -> np.ndarray:
        """(E, k) catalogue rows, best first; ``candidates`` ((N,) bool) narrows the candidates further."""
        if self.counts_ is None:
            raise ConfigError("popularity is not fitted", where="Popularity.recommend", fix="call fit(data) first")
        n = len(self.counts_)
        out = np.full((len(examples), k), -1, dtype=np.int64)
        scores = torch.from_numpy(self.counts_.astype(np.float64)).unsqueeze(0)
        for start in range(0, len(examples), 4096):
            part = examples.take(np.arange(start, min(start + 4096, len(examples))))
            pool = self._candidates if candidates is None else self._candidates & np.asarray(candidates, dtype=bool)
            allowed = torch.from_numpy(pool[None, :] & ~part.exclusion_mask(n))
            out[start:start + len(part)] = top_k_items(scores.expand(len(part), -1), allowed, k).numpy()
        return out
