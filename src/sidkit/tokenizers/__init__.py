"""Tokenizers: turn (N, D) item embeddings into (N, L) Semantic ID codes and back.

Every tokenizer follows the contract in :mod:`sidkit.tokenizers.base` (``fit``, ``encode``,
``decode``, ``quantized``, ``save``, ``load``); :func:`sidkit.tokenizers.base.load_tokenizer` opens
any saved one, and :func:`sidkit.tokenizers.factory.make_tokenizer` builds one by method name.
Available: :class:`~sidkit.tokenizers.rq_kmeans.RQKMeans` (greedy residual k-means on the torch
k-means of :mod:`sidkit.tokenizers.kmeans`), :class:`~sidkit.tokenizers.rq_vae.RQVAE` and
:class:`~sidkit.tokenizers.rq_vae.RQPVAE` (EMA codebooks, dead-code reset), and
:class:`~sidkit.tokenizers.drq.DRQVAE` (a continuous VAE, then RQ-KMeans on its latent means;
``contrastive=True`` is DRQ-VAE+CL).
"""
