"""Tokenizers: turn (N, D) item embeddings into (N, L) Semantic ID codes and back.

Every tokenizer follows the contract in :mod:`sidkit.tokenizers.base` (``fit``, ``encode``,
``decode``, ``quantized``, ``save``, ``load``); :func:`sidkit.tokenizers.base.load_tokenizer` opens
any saved one. Available: :class:`sidkit.tokenizers.rq_kmeans.RQKMeans` (greedy residual k-means),
built on the torch k-means in :mod:`sidkit.tokenizers.kmeans`.
"""
