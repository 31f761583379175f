"""Tokenizers: turn (N, D) item embeddings into (N, L) Semantic ID codes and back.

Every tokenizer follows the contract of :class:`Tokenizer` (``fit``, ``encode``, ``decode``,
``quantized``, ``save``, ``load``) and scikit-learn's estimator conventions (explicit keyword
settings, the ``seed`` among them; ``get_params`` / ``set_params``). :func:`load_tokenizer` opens any
saved one; :func:`make_tokenizer` builds one by method name (``METHODS``). Available:
:class:`RQKMeans` (greedy residual k-means), :class:`RQVAE` and :class:`RQPVAE` (EMA codebooks,
dead-code reset), and :class:`DRQVAE` (a continuous VAE, then RQ-KMeans on its latent means;
``contrastive=True`` is DRQ-VAE+CL); :class:`RandomCodes` (codes drawn at random: the control).

    from sidkit.tokenizers import RQKMeans
    ids = RQKMeans(levels=3, codebook_size=256, seed=0).fit(x).encode(x)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sidkit._exports import lazy_exports

# Public name -> the module that defines it; imported on first use.
_EXPORTS = {
    "sidkit.tokenizers.base": ("Tokenizer", "load_tokenizer", "register_tokenizer"),
    "sidkit.tokenizers.rq_kmeans": ("RQKMeans",),
    "sidkit.tokenizers.rq_vae": ("RQVAE", "RQPVAE"),
    "sidkit.tokenizers.drq": ("DRQVAE",),
    "sidkit.tokenizers.random_codes": ("RandomCodes",),
    "sidkit.tokenizers.factory": ("METHODS", "make_tokenizer"),
    "sidkit.tokenizers.history": ("TrainingHistory", "EpochRecord"),
    "sidkit.tokenizers.kmeans": ("KMeansResult",),
}
__all__ = [*(name for names in _EXPORTS.values() for name in names)]
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from sidkit.tokenizers.base import (
        Tokenizer as Tokenizer,
        load_tokenizer as load_tokenizer,
        register_tokenizer as register_tokenizer,
    )
    from sidkit.tokenizers.drq import DRQVAE as DRQVAE
    from sidkit.tokenizers.factory import METHODS as METHODS, make_tokenizer as make_tokenizer
    from sidkit.tokenizers.history import EpochRecord as EpochRecord, TrainingHistory as TrainingHistory
    from sidkit.tokenizers.kmeans import KMeansResult as KMeansResult
    from sidkit.tokenizers.random_codes import RandomCodes as RandomCodes
    from sidkit.tokenizers.rq_kmeans import RQKMeans as RQKMeans
    from sidkit.tokenizers.rq_vae import RQPVAE as RQPVAE, RQVAE as RQVAE
