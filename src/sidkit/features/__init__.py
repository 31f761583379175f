"""Item representations for rankers: Semantic-ID token bags, hashed ids, dense content.

    from sidkit.features import build_representation
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sidkit._exports import lazy_exports

# Public name -> the module that defines it; imported on first use.
_EXPORTS = {
    "sidkit.features.types": ("ItemRepresentation",),
    "sidkit.features.representations": ("build_representation", "build_representations", "parse_representation",
                                        "natural_size"),
    "sidkit.features.spm": ("SidSentencePiece", "train_sid_spm"),
    "sidkit.features.hashing": ("hash_rows",),
}
__all__ = [*(name for names in _EXPORTS.values() for name in names)]
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from sidkit.features.hashing import hash_rows as hash_rows
    from sidkit.features.representations import (
        build_representation as build_representation,
        build_representations as build_representations,
        natural_size as natural_size,
        parse_representation as parse_representation,
    )
    from sidkit.features.spm import SidSentencePiece as SidSentencePiece, train_sid_spm as train_sid_spm
    from sidkit.features.types import ItemRepresentation as ItemRepresentation
