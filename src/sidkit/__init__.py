"""sidkit: Semantic IDs for recommendation: tokenize item embeddings, diagnose the IDs, rank with them."""

from __future__ import annotations

__version__ = "0.1.0"
