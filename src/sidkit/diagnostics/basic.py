"""Usage and reconstruction of a tokenizer on a set of embeddings, computed in bounded memory."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from sidkit.diagnostics.reconstruction import ReconstructionAccumulator, ReconstructionReport
from sidkit.diagnostics.usage import UsageAccumulator, UsageReport
from sidkit.progress import track
from sidkit.tokenizers.base import Tokenizer, check_embeddings

DEFAULT_CHUNK_ROWS = 65_536


@dataclass(frozen=True)
class BasicDiagnostics:
    """Code usage per level and of the full SID, and reconstruction quality."""

    usage: UsageReport
    reconstruction: ReconstructionReport

    def to_dict(self) -> dict[str, Any]:
        """JSON shape: ``usage`` (a list per level), ``sid``, ``reconstruction``, ``num_items``."""
        usage = self.usage.to_dict()
        return {"num_items": self.usage.num_items, "usage": usage["usage"], "sid": usage["sid"],
                "reconstruction": self.reconstruction.to_dict()}


def basic_diagnostics(tokenizer: Tokenizer, X: Any, *, chunk_rows: int = DEFAULT_CHUNK_ROWS,
                      progress: bool | None = None) -> BasicDiagnostics:
    """Encode ``X`` (N, D) chunk by chunk, accumulating usage and reconstruction.

    Memory stays bounded by ``chunk_rows`` rows, so a memory-mapped ``X`` of any size works; the
    result equals the one-shot ``usage_report`` and ``reconstruction_report`` exactly.
    """
    x = check_embeddings(X, where="embeddings", expected_dim=tokenizer.dim)
    usage = UsageAccumulator(tokenizer.codebook_sizes)
    recon = ReconstructionAccumulator()
    starts = range(0, len(x), chunk_rows)
    for start in track(starts, total=len(starts), description="diagnose", enabled=progress):
        chunk = np.asarray(x[start:start + chunk_rows], dtype=np.float32)
        ids = tokenizer.encode(chunk)
        usage.update(ids)
        recon.update(chunk, tokenizer.decode(ids))
    return BasicDiagnostics(usage.finalize(), recon.finalize())
