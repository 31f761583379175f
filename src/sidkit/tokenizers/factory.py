"""Tokenizers by method name, as the CLI and the comparison runner name them."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

from sidkit.errors import ConfigError
from sidkit.tokenizers.base import Tokenizer
from sidkit.tokenizers.drq import DRQVAE
from sidkit.tokenizers.rq_kmeans import RQKMeans
from sidkit.tokenizers.rq_vae import RQPVAE, RQVAE

TokenizerFactory = Callable[..., Tokenizer]

METHODS: dict[str, TokenizerFactory] = {
    "rq-kmeans": RQKMeans,
    "rq-vae": RQVAE,
    "rqp-vae": RQPVAE,
    "drq-vae": DRQVAE,
    "drq-vae-cl": functools.partial(DRQVAE, contrastive=True),  # fit(X, pairs=...) needs behaviour pairs
}


def make_tokenizer(method: str, *, levels: int, codebook_size: int | Sequence[int],
                   **options: Any) -> Tokenizer:
    """A new, unfitted tokenizer of ``method`` (one of ``METHODS``) with the given options."""
    key = method.strip().lower()
    if key not in METHODS:
        raise ConfigError(f"unknown tokenizer method '{method}'", where="--method",
                          fix=f"use one of: {', '.join(METHODS)}")
    return METHODS[key](levels=levels, codebook_size=codebook_size, **options)
