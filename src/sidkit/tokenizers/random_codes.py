"""Random codes: the control tokenizer whose Semantic IDs carry no content.

Fitting draws every item's code at each level uniformly at random (the same shapes as a real
tokenizer, TIGER's random-ID ablation). So that the diagnostics can be computed on it like on any
tokenizer, it is a residual quantizer with those fixed assignments: codeword j of level l is the
mean residual (what levels 0..l-1 left) of the items given code j there, and an item's quantized
vector and reconstruction are the sum of its codewords. Encoding a vector gives the codes of the
nearest fitted item (squared distance), so the fitted items encode to their own drawn codes and a
perturbed item keeps its codes until another item is nearer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from sidkit.errors import DataError
from sidkit.tokenizers.base import Tokenizer, register_tokenizer
from sidkit.tokenizers.rq_kmeans import _level_sizes


@register_tokenizer
class RandomCodes(Tokenizer):
    """Uniformly random codes over ``levels`` levels of ``codebook_size`` codes.

    Args:
        levels: number of code levels L.
        codebook_size: codes per level, one int for all levels or a sequence of L ints.
        seed: the random seed of the draw.

    Example:
        >>> ids = RandomCodes(levels=3, codebook_size=128, seed=0).fit(embeddings).encode(embeddings)  # doctest: +SKIP
    """

    def __init__(self, levels: int = 3, codebook_size: int | Sequence[int] = 256, *, seed: int = 0) -> None:
        super().__init__(seed=seed)
        self._sizes = _level_sizes(levels, codebook_size)
        self.points: torch.Tensor = torch.empty(0)
        """(N, D) float32 fitted items (empty until fitted)."""
        self.codes: torch.Tensor = torch.empty(0, dtype=torch.int64)
        """(N, L) int64 their drawn codes."""
        self.codebooks: list[torch.Tensor] = []
        """Per level, the (K_l, D) mean residual of each code's items."""

    @property
    def codebook_sizes(self) -> tuple[int, ...]:
        return self._sizes

    def get_config(self) -> dict[str, Any]:
        return {"levels": len(self._sizes), "codebook_size": list(self._sizes), "seed": self.seed}

    def _fit(self, x: np.ndarray, *, device: torch.device, seed: int) -> None:
        rng = np.random.default_rng(np.random.SeedSequence([seed, 0xC0DE5]))
        codes = np.column_stack([rng.integers(0, size, len(x)) for size in self._sizes]).astype(np.int64)
        points = torch.tensor(np.asarray(x, dtype=np.float32), device=device)
        self.points = points
        self.codes = torch.from_numpy(codes).to(device)
        residual = points.clone()
        books = []
        for level, size in enumerate(self._sizes):
            chosen = self.codes[:, level]
            sums = torch.zeros((size, points.shape[1]), device=device).index_add_(0, chosen, residual)
            counts = torch.bincount(chosen, minlength=size).clamp_min(1).unsqueeze(1).to(sums.dtype)
            books.append(sums / counts)
            residual -= books[-1][chosen]
        self.codebooks = books

    def _encode_batch(self, x: torch.Tensor) -> torch.Tensor:
        # argmin ||x - p||^2 = argmax (2 x.p - ||p||^2); ties go to the lower row.
        scores = 2.0 * x @ self.points.T - (self.points * self.points).sum(dim=1)
        return self.codes[scores.argmax(dim=1)]

    def _quantized_batch(self, codes: torch.Tensor) -> torch.Tensor:
        total = self.codebooks[0][codes[:, 0]].clone()
        for level in range(1, self.levels):
            total += self.codebooks[level][codes[:, level]]
        return total

    def _state_dict(self) -> dict[str, torch.Tensor]:
        return {"points": self.points, "codes": self.codes,
                **{f"codebook.{level}": book for level, book in enumerate(self.codebooks)}}

    def _load_state_dict(self, tensors: Mapping[str, torch.Tensor], *, dim: int) -> None:
        points, codes = tensors.get("points"), tensors.get("codes")
        if points is None or codes is None or points.ndim != 2 or points.shape[1] != dim \
                or tuple(codes.shape) != (points.shape[0], self.levels):
            raise DataError("the weights do not hold (N, D) points and their (N, L) codes", where="weights",
                            fix="save the model again")
        books = []
        for level, size in enumerate(self._sizes):
            book = tensors.get(f"codebook.{level}")
            if book is None or tuple(book.shape) != (size, dim):
                raise DataError(f"weight codebook.{level} should have shape {(size, dim)}", where="weights",
                                fix="save the model again")
            books.append(book.float().contiguous())
        self.points, self.codes, self.codebooks = points.float().contiguous(), codes.long(), books
