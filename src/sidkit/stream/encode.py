"""Encode embeddings larger than memory: read a chunk, encode it, append its codes, repeat.

Memory holds one chunk of embeddings and its codes at a time (plus the writer's row group), so a
10^7 x 128 file encodes in well under 1.5 GB; the codes equal ``tokenizer.encode`` on the whole array.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from sidkit.data.validation import as_id_array
from sidkit.errors import DataError
from sidkit.progress import Bar
from sidkit.stream.source import DEFAULT_CHUNK_ROWS, EmbeddingSource, check_chunk_rows, open_embeddings
from sidkit.stream.writers import codes_writer
from sidkit.tokenizers.base import Tokenizer


@dataclass(frozen=True)
class StreamEncodeResult:
    """What :func:`stream_encode` wrote.

    Attributes:
        path: the codes file.
        num_items: rows encoded (N).
        levels: code levels L.
        seconds: wall time, reading and writing included.
    """

    path: Path
    num_items: int
    levels: int
    seconds: float

    @property
    def items_per_second(self) -> float:
        return self.num_items / self.seconds if self.seconds > 0 else float("inf")


def stream_encode(tokenizer: Tokenizer, source: EmbeddingSource | str | os.PathLike[str],
                  out: str | os.PathLike[str], *,
                  item_ids: np.ndarray | Literal["source"] | None = "source",
                  chunk_rows: int = DEFAULT_CHUNK_ROWS, progress: bool | None = None) -> StreamEncodeResult:
    """Encode every row of ``source`` and write the (N, L) codes to ``out`` (.parquet or .npy), chunk by chunk.

    Args:
        tokenizer: a fitted tokenizer.
        source: an :class:`EmbeddingSource` or a path for :func:`open_embeddings` (.npy, .parquet, a
            directory of parquet files).
        out: ``codes.parquet`` (optional ``item_id``, ``level_*``, ``sid``) or ``codes.npy`` ((N, L) int64).
        item_ids: (N,) ids for the parquet ``item_id`` column; ``"source"`` takes the source's own
            ``item_id`` column when it has one; None writes no ids.
        chunk_rows: rows read, encoded and written at a time (bounds memory).
        progress: show a bar with rate and ETA (None: when stderr is a terminal).
    """
    started = time.perf_counter()
    reader = source if isinstance(source, EmbeddingSource) else open_embeddings(source)
    chunk_rows = check_chunk_rows(chunk_rows)
    ids = None
    if item_ids is not None and not isinstance(item_ids, str):
        ids = as_id_array(item_ids, where="item_ids")
        if ids.shape != (reader.num_rows,):
            raise DataError(f"{len(ids)} item ids for {reader.num_rows} embeddings", where="item_ids",
                            fix="pass one id per embedding row, in row order")
    use_source_ids = isinstance(item_ids, str) and item_ids == "source" and reader.has_item_ids
    with codes_writer(out, tokenizer.codebook_sizes, num_rows=reader.num_rows) as writer, \
            Bar("encode", reader.num_rows, enabled=progress, rate_unit="rows") as bar:
        for chunk in reader.chunks(chunk_rows):
            codes = tokenizer.encode(chunk.embeddings, batch_size=chunk_rows).codes
            chunk_ids = ids[chunk.start:chunk.stop] if ids is not None else (
                chunk.item_ids if use_source_ids else None)
            writer.write(codes, chunk_ids)
            bar.advance(len(chunk))
    return StreamEncodeResult(Path(out), reader.num_rows, tokenizer.levels, time.perf_counter() - started)
