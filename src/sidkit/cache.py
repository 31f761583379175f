"""Where sidkit keeps downloaded data and computed embeddings between runs."""

from __future__ import annotations

import os
from pathlib import Path

from platformdirs import user_cache_dir


def cache_dir(*parts: str) -> Path:
    """The cache directory (``SIDKIT_CACHE`` overrides the user cache) joined with ``parts``, created."""
    root = Path(os.environ.get("SIDKIT_CACHE") or user_cache_dir("sidkit"))
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
