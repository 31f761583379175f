"""SemanticIds: the codes a tokenizer gives each item, with the size of each level."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sidkit.errors import DataError


@dataclass(frozen=True, eq=False)
class SemanticIds:
    """Codes of N items over L levels.

    Attributes:
        codes: (N, L) int64, ``codes[i, l]`` in ``[0, sizes[l])``.
        sizes: the codebook size of each level, length L.
    """

    codes: np.ndarray
    sizes: tuple[int, ...]

    def __post_init__(self) -> None:
        codes = np.asarray(self.codes)
        sizes = tuple(int(s) for s in self.sizes)
        if codes.ndim != 2:
            raise DataError(f"codes must be 2-d (items, levels), got shape {codes.shape}", where="codes")
        if codes.shape[1] != len(sizes):
            raise DataError(f"codes have {codes.shape[1]} levels but {len(sizes)} sizes were given",
                            where="sizes", fix="give one codebook size per level")
        if codes.dtype.kind not in "iu":
            raise DataError(f"codes must be integers, got {codes.dtype}", where="codes")
        if any(s < 1 for s in sizes):
            raise DataError(f"codebook sizes must be positive, got {sizes}", where="sizes")
        codes = codes.astype(np.int64, copy=False)
        if codes.size:
            low, high = codes.min(axis=0), codes.max(axis=0)
            for level, size in enumerate(sizes):
                if low[level] < 0 or high[level] >= size:
                    raise DataError(f"level {level} holds codes outside [0, {size})", where="codes",
                                    fix="check that sizes match the tokenizer that made the codes")
        object.__setattr__(self, "codes", codes)
        object.__setattr__(self, "sizes", sizes)

    def __len__(self) -> int:
        return int(self.codes.shape[0])

    @property
    def levels(self) -> int:
        return len(self.sizes)
