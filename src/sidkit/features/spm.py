"""SentencePiece over Semantic IDs (Singh et al.'s SPM SID): learn variable-length code pieces.

Each item's SID becomes a string with one character per (level, code) symbol, so ``(12, 4, 9)`` and
``(4, 12, 9)`` are different strings. A BPE model trained on the SIDs of training impressions merges
the code sequences that training traffic shows often into single pieces (popular prefixes, whole SIDs
of popular items) and leaves rare ones as shorter pieces, down to single symbols. Only training
items reach the trainer, so held-out items cannot shape the vocabulary.

The trainer also sees every symbol of the alphabet once, alone: the alphabet is fixed by the
tokenizer (levels and codebook sizes), not by any item, and it gives every symbol a piece, so an
item whose codes never occurred in training still splits into its own symbols instead of ``<unk>``.
"""

from __future__ import annotations

import io
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sidkit.errors import ConfigError, DataError
from sidkit.ids import SemanticIds

# Symbols are Unicode private-use characters: planes 15 and 16 hold 65,534 each, and no
# normalization or script rule of SentencePiece touches them.
_PLANES = (0xF0000, 0x100000)
_PLANE_SIZE = 65_534
MAX_SYMBOLS = len(_PLANES) * _PLANE_SIZE
UNK_PIECE = 0  # SentencePiece's <unk> id; token rows are piece id + 1, row 0 stays padding


@dataclass(frozen=True, eq=False)
class SidSentencePiece:
    """A trained SentencePiece model over SIDs of one codebook shape.

    Attributes:
        model: the serialized SentencePiece model (protobuf bytes).
        sizes: the codebook size of each level, as in :class:`SemanticIds`.
        vocab_size: the requested vocabulary (the table budget); the model may hold fewer pieces
            when the training SIDs allow no more merges.
    """

    model: bytes
    sizes: tuple[int, ...]
    vocab_size: int

    @property
    def num_pieces(self) -> int:
        """Pieces the model really holds, ``<unk>`` included (at most ``vocab_size``)."""
        return int(self._processor().get_piece_size())

    def pieces(self) -> list[str]:
        """The vocabulary as SID strings, index = piece id, e.g. ``"<a_12><b_4>"``; id 0 is ``<unk>``."""
        processor = self._processor()
        return [_piece_to_sid(processor.id_to_piece(i), self.sizes) if i != UNK_PIECE else "<unk>"
                for i in range(processor.get_piece_size())]

    def encode(self, sids: SemanticIds) -> list[np.ndarray]:
        """Piece ids of each item's SID: a list of N int64 arrays of varying length (each >= 1)."""
        if sids.sizes != self.sizes:
            raise DataError(f"SIDs have codebook sizes {sids.sizes}, the SPM model was trained on {self.sizes}",
                            where="sids", fix="encode with SIDs from the tokenizer the SPM model was trained on")
        strings = sid_strings(sids)
        distinct, inverse = np.unique(np.asarray(strings, dtype=object), return_inverse=True)
        encoded = self._processor().encode(distinct.tolist())
        pieces = [np.asarray(ids, dtype=np.int64) for ids in encoded]
        return [pieces[j] for j in inverse.reshape(-1).tolist()]

    def _processor(self) -> Any:
        sentencepiece = _import_sentencepiece()
        return sentencepiece.SentencePieceProcessor(model_proto=self.model)


def train_sid_spm(sids: SemanticIds, weights: np.ndarray, *, vocab_size: int) -> SidSentencePiece:
    """Train BPE pieces on the SIDs of items with positive weight.

    Args:
        sids: (N, L) codes of all catalog items.
        weights: (N,) bool (item is in training) or non-negative integers (training impressions of
            the item); items with weight 0 never reach the trainer.
        vocab_size: pieces in the vocabulary (``<unk>`` included), at least the number of symbols
            ``sum(sizes) + 1``.

    Returns:
        The trained model. Training is deterministic: the same inputs give the same model.
    """
    sentencepiece = _import_sentencepiece()
    alphabet = int(sum(sids.sizes))
    if alphabet > MAX_SYMBOLS:
        raise ConfigError(f"SIDs have {alphabet} symbols (sum of codebook sizes), more than the {MAX_SYMBOLS} "
                          "SPM supports", where="sids", fix="use fewer levels or smaller codebooks for sid-spm")
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, (int, np.integer)) or vocab_size <= alphabet:
        raise ConfigError(f"the SPM vocabulary must exceed the {alphabet} SID symbols (sum of codebook sizes "
                          f"{sids.sizes}), got {vocab_size!r}", where="budget",
                          fix=f"give sid-spm a budget of at least {alphabet + 1}")
    counts = _checked_weights(weights, len(sids))
    if not counts.any():
        raise DataError("no training items: every weight is zero", where="train_items",
                        fix="pass the training items (e.g. RankingData.train_items or training impression counts)")
    strings = np.asarray(sid_strings(sids), dtype=object)
    used = counts > 0
    distinct, inverse = np.unique(strings[used], return_inverse=True)
    totals = np.bincount(inverse.reshape(-1), weights=counts[used].astype(np.float64)).astype(np.int64)
    symbols = [_symbol(i) for i in range(alphabet)]
    model = io.BytesIO()
    with tempfile.TemporaryDirectory(prefix="sidkit-spm-") as tmp:
        corpus = Path(tmp) / "sids.tsv"
        with corpus.open("w", encoding="utf-8") as handle:
            for text, total in zip(distinct.tolist(), totals.tolist(), strict=True):
                handle.write(f"{text}\t{total}\n")
            for symbol in symbols:
                handle.write(f"{symbol}\t1\n")
        sentencepiece.SentencePieceTrainer.train(
            input=os.fspath(corpus), input_format="tsv", model_writer=model, model_type="bpe",
            vocab_size=int(vocab_size), hard_vocab_limit=False, character_coverage=1.0,
            required_chars="".join(symbols), max_sentencepiece_length=max(len(sids.sizes), 1),
            add_dummy_prefix=False, remove_extra_whitespaces=False, normalization_rule_name="identity",
            split_by_whitespace=False, split_by_unicode_script=False, split_by_number=False,
            bos_id=-1, eos_id=-1, pad_id=-1, unk_id=UNK_PIECE, num_threads=1, minloglevel=2)
    return SidSentencePiece(model.getvalue(), sids.sizes, int(vocab_size))


def sid_strings(sids: SemanticIds) -> list[str]:
    """Each item's SID as one character per (level, code) symbol: a list of N strings of length L."""
    offsets = np.concatenate([[0], np.cumsum(sids.sizes)[:-1]]).astype(np.int64)
    symbols = sids.codes + offsets[None, :]
    table = np.array([_symbol(i) for i in range(int(sum(sids.sizes)))], dtype=object)
    chars = table[symbols]
    return ["".join(row) for row in chars.tolist()]


def _symbol(index: int) -> str:
    plane, rest = divmod(index, _PLANE_SIZE)
    return chr(_PLANES[plane] + rest)


def _piece_to_sid(piece: str, sizes: tuple[int, ...]) -> str:
    from sidkit.ids import level_letter

    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    parts = []
    for char in piece:
        point = ord(char)
        index = point - _PLANES[0] if point < _PLANES[1] else _PLANE_SIZE + point - _PLANES[1]
        level = int(np.searchsorted(offsets, index, side="right") - 1)
        parts.append(f"<{level_letter(level)}_{index - offsets[level]}>")
    return "".join(parts)


def _checked_weights(weights: np.ndarray, n: int) -> np.ndarray:
    array = np.asarray(weights)
    if array.shape != (n,):
        raise DataError(f"train_items must have one entry per item ({n},), got shape {array.shape}",
                        where="train_items", fix="pass a bool mask or impression counts over the catalog")
    if array.dtype == np.bool_:
        return array.astype(np.int64)
    if array.dtype.kind not in "iu" or (array.size and array.min() < 0):
        raise DataError(f"train_items must be bool or non-negative integers, got {array.dtype}",
                        where="train_items", fix="pass a bool mask or impression counts over the catalog")
    return array.astype(np.int64)


def _import_sentencepiece() -> Any:
    try:
        import sentencepiece
    except ImportError as error:
        raise ConfigError("the sid-spm representation needs the sentencepiece package", where="sid-spm",
                          fix="pip install sentencepiece") from error
    return sentencepiece
