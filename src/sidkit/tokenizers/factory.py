"""Tokenizers by method name, as the CLI and the comparison runner name them."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

from sidkit.errors import ConfigError
from sidkit.tokenizers.base import Tokenizer
from sidkit.tokenizers.drq import DRQVAE
from sidkit.tokenizers.random_codes import RandomCodes
from sidkit.tokenizers.rq_kmeans import RQKMeans
from sidkit.tokenizers.rq_vae import RQPVAE, RQVAE

TokenizerFactory = Callable[..., Tokenizer]

METHODS: dict[str, TokenizerFactory] = {
    "rq-kmeans": RQKMeans,
    "rq-vae": RQVAE,
    "rqp-vae": RQPVAE,
    "drq-vae": DRQVAE,
    "drq-vae-cl": functools.partial(DRQVAE, contrastive=True),  # fit(X, pairs=...) needs behaviour pairs
    "random": RandomCodes,  # the control: codes drawn at random, no content
}


def default_codebook_size(num_items: int) -> int:
    """Codes per level for a catalog of ``num_items``: 256, or fewer for small catalogs: the largest
    power of two with at least 16 items per level-0 code on average, and at least 8 (ML-100K's 1,682
    items: 64; 4,096 items or more: 256). ``sidkit fit`` and ``sidkit compare`` use it by default."""
    size = 8
    while size * 2 <= min(256, num_items // 16):
        size *= 2
    return size


def make_tokenizer(method: str, *, levels: int, codebook_size: int | Sequence[int],
                   **options: Any) -> Tokenizer:
    """A new, unfitted tokenizer of ``method`` (one of ``METHODS``) with the given options."""
    key = method.strip().lower()
    if key not in METHODS:
        raise ConfigError(f"unknown tokenizer method '{method}'", where="--method",
                          fix=f"use one of: {', '.join(METHODS)}")
    return METHODS[key](levels=levels, codebook_size=codebook_size, **options)
