"""Streaming over embeddings larger than memory: chunked readers, incremental code writers, mergeable metrics.

- :mod:`sidkit.stream.source`: read (N, D) embeddings chunk by chunk from a memory-mapped ``.npy``
  file or a parquet file / dataset directory, in bounded memory.
- :mod:`sidkit.stream.encode`: encode such a source and write codes incrementally (parquet or npy).
- :mod:`sidkit.stream.metrics`: usage and reconstruction partials that merge across chunks and workers.
- :mod:`sidkit.stream.overlap`: the expected codeword overlap O_pi from chunks, as a mergeable accumulator.
"""
