"""Streaming over embeddings larger than memory: chunked readers, incremental code writers, mergeable metrics.

- :mod:`sidkit.stream.source`: read (N, D) embeddings chunk by chunk from a memory-mapped ``.npy``
  file or a parquet file / dataset directory, in bounded memory.
- :mod:`sidkit.stream.encode`: encode such a source and write codes incrementally (parquet or npy).
- :mod:`sidkit.stream.metrics`: usage and reconstruction partials that merge across chunks and workers.
- :mod:`sidkit.stream.overlap`: the expected codeword overlap O_pi from chunks, as a mergeable accumulator.

    from sidkit.stream import stream_encode, open_embeddings
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sidkit._exports import lazy_exports

# Public name -> the module that defines it; imported on first use.
_EXPORTS = {
    "sidkit.stream.encode": ("stream_encode", "StreamEncodeResult"),
    "sidkit.stream.source": ("open_embeddings", "EmbeddingSource", "NpySource", "ParquetSource", "DatasetSource"),
    "sidkit.stream.metrics": ("stream_diagnose",),
    "sidkit.stream.overlap": ("OverlapAccumulator", "stream_overlap_sweep"),
}
__all__ = [*(name for names in _EXPORTS.values() for name in names)]
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from sidkit.stream.encode import StreamEncodeResult as StreamEncodeResult, stream_encode as stream_encode
    from sidkit.stream.metrics import stream_diagnose as stream_diagnose
    from sidkit.stream.overlap import (
        OverlapAccumulator as OverlapAccumulator,
        stream_overlap_sweep as stream_overlap_sweep,
    )
    from sidkit.stream.source import (
        DatasetSource as DatasetSource,
        EmbeddingSource as EmbeddingSource,
        NpySource as NpySource,
        ParquetSource as ParquetSource,
        open_embeddings as open_embeddings,
    )
